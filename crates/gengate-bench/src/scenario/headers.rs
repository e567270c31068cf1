//! Headers given with `-H`, and the admin key among them.

use hyper::header::{AUTHORIZATION, HeaderName, HeaderValue};

/// Parses `-H 'Name: value'`.
///
/// # Errors
/// A message naming what is wrong.
pub fn parse_header(s: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: write it like 'Name: value'"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("{:?} is not a header name", name.trim()))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("the value of {name} is not a valid header value"))?;
    Ok((name, value))
}

/// The bearer token in `-H 'Authorization: Bearer …'`, if any.
pub fn bearer_in(headers: &[(HeaderName, HeaderValue)]) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k == AUTHORIZATION)
        .and_then(|(_, v)| {
            let v = v.to_str().ok()?;
            let (scheme, token) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        })
}
