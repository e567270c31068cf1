//! Pieces every HTTP adapter needs: hashing and signing primitives, reading
//! a bounded answer (redirects refused), and lenient field types for
//! providers whose JSON types wobble. The clients themselves are built by
//! `gengate_net::Outbound` and handed to each adapter in its settings.
//!
//! The public items serve code outside this crate that must do the same:
//! the HTTP sim client reads its answers with [`read_answer`], and the mocks
//! sign and compare secrets as the providers do.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};

use crate::ProviderError;

/// Largest provider answer read; a bigger one is treated as garbage.
pub const MAX_ANSWER_BYTES: usize = 4 << 20;

/// The wall clock in Unix milliseconds (0 before 1970).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// HMAC-SHA256 of `msg` under `key`.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
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

/// Reads an answer's status and body, at most [`MAX_ANSWER_BYTES`] (the cap
/// applies while the body streams in). A transport failure while reading is
/// ambiguous for a request that changes state; callers of queries relax it.
///
/// A redirect is refused, naming where it points: providers are reached at
/// their configured address only (RunningHub sends its key in the body, and
/// following a 307 would hand it to another host). The request was not
/// carried out where it was sent, so it counts as unreachable.
///
/// # Errors
/// [`ProviderError::Unreachable`] for a redirect,
/// [`ProviderError::Ambiguous`] for a body too large or cut off.
pub async fn read_answer(resp: reqwest::Response) -> Result<(u16, bytes::Bytes), ProviderError> {
    let status = resp.status().as_u16();
    if resp.status().is_redirection() {
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| "nowhere".to_owned(), gengate_net::redact_url);
        let from = gengate_net::redact_url(resp.url().as_str());
        return Err(ProviderError::Unreachable {
            message: format!(
                "{from} answered HTTP {status}, a redirect to {location}; gengate follows no redirects from providers"
            ),
            fix: Some(
                "set the provider's base_url to the address it redirects to, if that is the provider's own",
            ),
        });
    }
    match gengate_net::read_capped(resp, MAX_ANSWER_BYTES).await {
        Ok(body) => Ok((status, body)),
        Err(gengate_net::ReadError::TooLarge { .. }) => Err(ProviderError::Ambiguous(format!(
            "answer of HTTP {status} is larger than {MAX_ANSWER_BYTES} bytes"
        ))),
        Err(gengate_net::ReadError::Failed(f)) => Err(ProviderError::Ambiguous(format!(
            "reading the answer failed: {f}"
        ))),
    }
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
/// carry prompts or URLs), never a URL's query (signed output URLs), and
/// never invalid UTF-8.
pub(crate) fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(120)]);
    let s: String = s.chars().filter(|c| !c.is_control()).collect();
    gengate_net::redact_text(&s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
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
