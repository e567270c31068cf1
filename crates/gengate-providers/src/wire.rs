//! Pieces every HTTP adapter needs: the client, hashing and signing
//! primitives, reading a bounded answer, and lenient field types for
//! providers whose JSON types wobble.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};

use crate::ProviderError;

/// Largest provider answer read; a bigger one is treated as garbage.
pub(crate) const MAX_ANSWER_BYTES: usize = 4 << 20;

/// One client per provider, with connect and whole-request timeouts.
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| format!("cannot build HTTP client: {e}"))
}

pub(crate) fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// A key as it may be printed: a short fingerprint that tells two
/// configured keys apart without revealing either.
pub(crate) fn masked(key: &str) -> String {
    if key.is_empty() {
        "<empty>".to_owned()
    } else {
        format!("*** (sha256 {})", &sha256_hex(key.as_bytes())[..8])
    }
}

/// Compares secrets without an early exit on the first differing byte.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads an answer's status and body (at most [`MAX_ANSWER_BYTES`]). A
/// transport failure while reading is ambiguous for a request that changes
/// state, so the caller decides with `sent_mutation`.
pub(crate) async fn read_answer(
    resp: reqwest::Response,
) -> Result<(u16, bytes::Bytes), ProviderError> {
    let status = resp.status().as_u16();
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Err(ProviderError::Ambiguous(format!(
            "answer of HTTP {status} is larger than {MAX_ANSWER_BYTES} bytes"
        )));
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| ProviderError::Ambiguous(format!("reading the answer failed: {e}")))?;
    if body.len() > MAX_ANSWER_BYTES {
        return Err(ProviderError::Ambiguous(format!(
            "answer of HTTP {status} is larger than {MAX_ANSWER_BYTES} bytes"
        )));
    }
    Ok((status, body))
}

/// A field that arrives as a string, a number, or not at all (RunningHub's
/// `taskId`, `taskCostTime`, `remainCoins`; Kling's `duration`).
pub(crate) fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        S(String),
        I(i64),
        U(u64),
        F(f64),
        B(bool),
    }
    Ok(Option::<Raw>::deserialize(d)?.map(|r| match r {
        Raw::S(s) => s,
        Raw::I(n) => n.to_string(),
        Raw::U(n) => n.to_string(),
        Raw::F(n) => n.to_string(),
        Raw::B(b) => b.to_string(),
    }))
}

/// Prefix of a short body for error messages: never the whole body (it may
/// carry prompts or URLs), and never invalid UTF-8.
pub(crate) fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(120)]);
    s.chars().filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_hashes() {
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn lenient_strings_take_numbers() {
        #[derive(Deserialize)]
        struct T {
            #[serde(default, deserialize_with = "lenient_string")]
            a: Option<String>,
        }
        let t: T = serde_json::from_str(r#"{"a": 1910246754753896450}"#).unwrap();
        assert_eq!(t.a.as_deref(), Some("1910246754753896450"));
        let t: T = serde_json::from_str(r#"{"a": "7"}"#).unwrap();
        assert_eq!(t.a.as_deref(), Some("7"));
        let t: T = serde_json::from_str(r#"{}"#).unwrap();
        assert_eq!(t.a, None);
    }
}
