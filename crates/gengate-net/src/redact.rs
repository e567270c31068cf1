//! URLs as errors and logs may show them: `scheme://host[:port]/path`,
//! without credentials, query or fragment. A presigned S3 URL carries its
//! signature in the query, a callback URL its token, a store URL its
//! password; none of them may reach a task's `error.message`, a log line or
//! `doctor`'s output.

/// `url` as `scheme://host[:port]/path`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) if u.has_host() => {
            let mut s = format!("{}://{}", u.scheme(), u.host_str().unwrap_or_default());
            if let Some(port) = u.port() {
                s.push_str(&format!(":{port}"));
            }
            s.push_str(u.path());
            s
        }
        // Not a URL with a host: keep what precedes any query or fragment,
        // and drop anything that may be credentials.
        _ => {
            let cut = url.find(['?', '#']).unwrap_or(url.len());
            let head = &url[..cut];
            match (head.find("://"), head.rfind('@')) {
                (Some(s), Some(at)) if at > s => format!("{}***{}", &head[..s + 3], &head[at..]),
                _ => head.to_owned(),
            }
        }
    }
}

/// `text` with every URL in it redacted by [`redact_url`].
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(sep) = rest.find("://") {
        // The scheme: the letters, digits, `+`, `-` and `.` before `://`.
        let start = rest[..sep]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let end = rest[sep..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .map_or(rest.len(), |i| sep + i);
        // Punctuation that closes a sentence or a parenthesis stays outside.
        let end = sep
            + rest[sep..end]
                .trim_end_matches([')', ']', '}', ',', '.', ';', ':', '!'])
                .len();
        out.push_str(&rest[..start]);
        if start == sep {
            // `://` with no scheme before it: not a URL.
            out.push_str("://");
            rest = &rest[sep + 3..];
            continue;
        }
        out.push_str(&redact_url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_fragments_and_credentials_go() {
        assert_eq!(
            redact_url(
                "https://bucket.s3.example.com/t/tsk_1/0.png?X-Amz-Signature=abc&X-Amz-Credential=k"
            ),
            "https://bucket.s3.example.com/t/tsk_1/0.png"
        );
        assert_eq!(
            redact_url("http://user:pw@127.0.0.1:9000/v1/callbacks/kling?task=t&token=secret#x"),
            "http://127.0.0.1:9000/v1/callbacks/kling"
        );
        assert_eq!(
            redact_url("mysql://root:pw@db:3306/gengate?ssl-mode=REQUIRED"),
            "mysql://db:3306/gengate"
        );
        assert_eq!(redact_url("not a url?token=x"), "not a url");
    }

    #[test]
    fn every_url_in_a_text_is_redacted() {
        let text = "error sending request for url (https://b.example.com/k?X-Amz-Signature=s): \
                    redirect to http://other:81/p?q=1 refused";
        let r = redact_text(text);
        assert!(!r.contains("X-Amz") && !r.contains("q=1"), "{r}");
        assert!(r.contains("(https://b.example.com/k)"), "{r}");
        assert!(r.contains("http://other:81/p refused"), "{r}");
        assert_eq!(redact_text("no urls here"), "no urls here");
        assert_eq!(redact_text("odd :// text"), "odd :// text");
    }
}
