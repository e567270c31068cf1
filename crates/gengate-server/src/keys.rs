//! API keys: `gg_` + 40 random base62 characters (≈238 bits). Only the
//! SHA-256 of a key is stored; a key is shown once, when it is made. A fast
//! hash is right here (unlike for passwords) because the key has far more
//! entropy than any guessing attack can search.

use rand::Rng;
use sha2::{Digest, Sha256};

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
pub const KEY_PREFIX: &str = "gg_";
/// Characters of a key shown in listings (`gg_` and 8 more).
const SHOWN: usize = 11;

/// A freshly made key: the secret (shown once) and what is stored.
#[derive(Debug)]
pub struct NewKey {
    pub secret: String,
    pub hash: String,
    pub prefix: String,
}

/// Makes a new random key.
pub fn generate() -> NewKey {
    let mut rng = rand::thread_rng();
    let body: String = (0..40)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    let secret = format!("{KEY_PREFIX}{body}");
    NewKey {
        hash: hash(&secret),
        prefix: secret[..SHOWN].to_owned(),
        secret,
    }
}

/// The stored form of a key.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_prefixed_and_hash_stably() {
        let a = generate();
        let b = generate();
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with("gg_") && a.secret.len() == 43);
        assert_eq!(a.hash, hash(&a.secret));
        assert_eq!(a.hash.len(), 64);
        assert!(a.secret.starts_with(&a.prefix));
    }
}
