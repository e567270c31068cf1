//! Signed media URLs: a private output, thumbnail or upload served by this
//! server's `/media/…` is fetched with `?exp=<unix seconds>&sig=<mac>`,
//! an HMAC-SHA256 over its path and expiry, or by its owner's key or
//! browser token. The task view hands out such URLs, so an `<img>` tag or
//! a provider fetching an input needs no header; a link that leaks stops
//! working when it expires.
//!
//! Expiries are rounded up to the hour ([`VIEW_TTL`] plus at most an hour):
//! a task read twice in the same hour shows the same URLs, so browsers and
//! ETags keep caching them.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The least time a URL in a task view stays valid.
pub const VIEW_TTL_S: i64 = 3600;
/// What the media key is derived with from the shared token key, so that
/// neither signature can stand for the other.
const DERIVE: &[u8] = b"gengate signed media urls v1";
/// Bytes of the MAC kept in a URL (128 bits).
const SIG_LEN: usize = 16;

/// What a request's signature says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// The query carries none.
    Absent,
    /// Valid until the given Unix second.
    Valid(i64),
    Expired,
    /// Malformed, or not made by this deployment for this path.
    Invalid,
}

/// Signs and checks media URLs.
#[derive(Clone)]
pub struct MediaUrls {
    key: Vec<u8>,
    /// `<public_url>/media/`: the URLs this server serves.
    prefix: String,
}

impl MediaUrls {
    /// `token_key` is the shared browser-token key (every node has the
    /// same); `media_base` is `<public_url>/media`.
    pub fn new(token_key: &[u8], media_base: &str) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(token_key).expect("HMAC takes any key");
        mac.update(DERIVE);
        Self {
            key: mac.finalize().into_bytes().to_vec(),
            prefix: format!("{}/", media_base.trim_end_matches('/')),
        }
    }

    fn mac(&self, path: &str, exp: i64) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(exp.to_string().as_bytes());
        URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..SIG_LEN])
    }

    /// The path below `/media/` of one of this server's media URLs.
    pub fn own_path<'a>(&self, url: &'a str) -> Option<&'a str> {
        url.strip_prefix(&self.prefix)
            .map(|p| p.split(['?', '#']).next().unwrap_or(p))
    }

    /// `url` signed until `exp` (Unix seconds), when it is one of this
    /// server's media URLs; anything else (a bucket's, a provider's) as is.
    pub fn sign_until(&self, url: &str, exp: i64) -> String {
        match self.own_path(url) {
            Some(path) if !url.contains('?') => {
                format!("{url}?exp={exp}&sig={}", self.mac(path, exp))
            }
            _ => url.to_owned(),
        }
    }

    /// `url` signed for a task view read at `now_ms`: valid [`VIEW_TTL_S`]
    /// and up to an hour more, the same all hour.
    pub fn sign_for_view(&self, url: &str, now_ms: i64) -> String {
        let hour = now_ms.div_euclid(1000).div_euclid(3600);
        self.sign_until(url, (hour + 1) * 3600 + VIEW_TTL_S)
    }

    /// What the query (`exp=…&sig=…`, other parameters ignored) of a
    /// request for `path` (below `/media/`) says at `now_ms`.
    pub fn check(&self, path: &str, query: Option<&str>, now_ms: i64) -> Signature {
        let (mut exp, mut sig) = (None, None);
        for pair in query.unwrap_or("").split('&') {
            match pair.split_once('=') {
                Some(("exp", v)) => exp = Some(v),
                Some(("sig", v)) => sig = Some(v),
                _ => {}
            }
        }
        let (exp, sig) = match (exp, sig) {
            (None, None) => return Signature::Absent,
            (Some(e), Some(s)) => (e, s),
            _ => return Signature::Invalid,
        };
        let Ok(exp) = exp.parse::<i64>() else {
            return Signature::Invalid;
        };
        let Ok(given) = URL_SAFE_NO_PAD.decode(sig) else {
            return Signature::Invalid;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(exp.to_string().as_bytes());
        if mac.verify_truncated_left(&given).is_err() || given.len() != SIG_LEN {
            return Signature::Invalid;
        }
        if exp * 1000 <= now_ms {
            Signature::Expired
        } else {
            Signature::Valid(exp)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls() -> MediaUrls {
        MediaUrls::new(b"k", "https://gg.example/media")
    }

    fn query(url: &str) -> &str {
        url.split_once('?').unwrap().1
    }

    #[test]
    fn a_signed_url_opens_its_path_until_it_expires() {
        let u = urls();
        let url = u.sign_until("https://gg.example/media/t/x/0.png", 2_000);
        assert_eq!(
            u.check("t/x/0.png", Some(query(&url)), 1_999_999),
            Signature::Valid(2_000)
        );
        assert_eq!(
            u.check("t/x/0.png", Some(query(&url)), 2_000_000),
            Signature::Expired
        );
        assert_eq!(
            u.check("t/y/0.png", Some(query(&url)), 0),
            Signature::Invalid,
            "another path"
        );
        let later = query(&url).replace("exp=2000", "exp=9000");
        assert_eq!(u.check("t/x/0.png", Some(&later), 0), Signature::Invalid);
        assert_eq!(u.check("t/x/0.png", None, 0), Signature::Absent);
        assert_eq!(u.check("t/x/0.png", Some("exp=1"), 0), Signature::Invalid);
        let other = MediaUrls::new(b"other", "https://gg.example/media");
        assert_eq!(
            other.check("t/x/0.png", Some(query(&url)), 0),
            Signature::Invalid,
            "another deployment's key"
        );
    }

    #[test]
    fn only_this_servers_urls_are_signed_and_views_keep_theirs_all_hour() {
        let u = urls();
        let bucket = "https://bucket.example/t/x/0.png";
        assert_eq!(u.sign_until(bucket, 5), bucket);
        let a = u.sign_for_view("https://gg.example/media/t/x/0.png", 3_600_000);
        let b = u.sign_for_view("https://gg.example/media/t/x/0.png", 7_199_999);
        assert_eq!(a, b);
        assert!(a.contains("exp=10800&"), "{a}");
    }
}
