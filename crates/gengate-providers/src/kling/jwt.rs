//! The HS256 JWT Kling wants on every request (§3.2), and the codes a fresh
//! one may cure.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use crate::wire;

/// `nbf` is set this far in the past so a server clock slightly behind ours
/// still accepts a fresh token (§3.2).
const NOT_BEFORE_SKEW_SECS: i64 = 5;

/// A minted token and when it runs out.
pub(super) struct Token {
    pub(super) value: String,
    /// Unix seconds.
    pub(super) exp: i64,
}

pub(super) fn unix_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2))
}

/// An HS256 JWT as Kling wants it (§3.2): `iss` = AccessKey, valid from five
/// seconds ago for `ttl_secs`, signed with the SecretKey.
pub(super) fn mint_jwt(access_key: &str, secret_key: &str, now_secs: i64, ttl_secs: i64) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({
        "iss": access_key,
        "exp": now_secs + ttl_secs,
        "nbf": now_secs - NOT_BEFORE_SKEW_SECS,
    });
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{claims}");
    let signature = wire::hmac_sha256(secret_key.as_bytes(), signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Codes a fresh token may cure (auth failed, empty, invalid, not yet valid,
/// expired).
pub(super) fn is_token_code(code: &str) -> bool {
    matches!(code, "1000" | "1001" | "1002" | "1003" | "1004")
}
