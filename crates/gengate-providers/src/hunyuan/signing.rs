//! TC3-HMAC-SHA256, the signature of Tencent Cloud API 3.0, kept step by
//! step so Tencent's published example can be checked at each one.

use crate::wire::{hmac_sha256, sha256_hex};

/// Tencent rejects signatures whose timestamp is further than this from its
/// clock (`AuthFailure.SignatureExpire`).
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// What a TC3-HMAC-SHA256 signature is made of, each step kept so the
/// published example can be checked step by step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tc3Signature {
    /// Hex SHA-256 of the exact body bytes.
    pub payload_hash: String,
    /// Hex SHA-256 of the canonical request.
    pub canonical_request_hash: String,
    /// `YYYY-MM-DD/service/tc3_request`.
    pub credential_scope: String,
    /// The signed header names, lower case, sorted, joined with `;`.
    pub signed_headers: String,
    /// The final signature, lower-case hex.
    pub signature: String,
}

impl Tc3Signature {
    /// The `Authorization` header value for `secret_id`.
    pub fn authorization(&self, secret_id: &str) -> String {
        format!(
            "TC3-HMAC-SHA256 Credential={secret_id}/{}, SignedHeaders={}, Signature={}",
            self.credential_scope, self.signed_headers, self.signature
        )
    }
}

/// Signs a `POST /` request the TC3-HMAC-SHA256 way (Tencent Cloud API 3.0):
/// `headers` are the signed headers as sent (name, value; they must include
/// `content-type` and `host`), `payload` the exact body bytes, `timestamp`
/// the `X-TC-Timestamp` sent. The credential date is the UTC date of
/// `timestamp`, never local time.
pub fn sign(
    secret_key: &str,
    service: &str,
    timestamp: i64,
    headers: &[(&str, &str)],
    payload: &[u8],
) -> Tc3Signature {
    let mut canonical: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase()))
        .collect();
    canonical.sort();
    let canonical_headers: String = canonical
        .iter()
        .map(|(k, v)| format!("{k}:{v}\n"))
        .collect();
    let signed_headers = canonical
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let payload_hash = sha256_hex(payload);
    let canonical_request =
        format!("POST\n/\n\n{canonical_headers}\n{signed_headers}\n{payload_hash}");
    let canonical_request_hash = sha256_hex(canonical_request.as_bytes());
    let date = gengate_core::time::utc_date(timestamp);
    let credential_scope = format!("{date}/{service}/tc3_request");
    let string_to_sign =
        format!("TC3-HMAC-SHA256\n{timestamp}\n{credential_scope}\n{canonical_request_hash}");
    let k_date = hmac_sha256(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let k_service = hmac_sha256(&k_date, service.as_bytes());
    let k_signing = hmac_sha256(&k_service, b"tc3_request");
    let signature = hex::encode(hmac_sha256(&k_signing, string_to_sign.as_bytes()));
    Tc3Signature {
        payload_hash,
        canonical_request_hash,
        credential_scope,
        signed_headers,
        signature,
    }
}
