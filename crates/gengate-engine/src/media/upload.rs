//! Users' uploads (input images, videos and sounds for a task): what a
//! file is, judged by its bytes and not by what the client says, its
//! pixel size for images, and where it is stored (`u/<user id>/<random>`:
//! under its user, with a name nobody can guess).

use gengate_core::{UserId, mime};

pub use super::sniff::image_size;
use super::sniff::sniff;
use super::{Media, StorageError};

/// The types an upload may have.
pub const UPLOAD_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/webp",
    "image/gif",
    "video/mp4",
    "video/quicktime",
    "audio/mpeg",
    "audio/wav",
];

/// The media type a client's `Content-Type` names, in the form
/// [`UPLOAD_TYPES`] uses (parameters dropped, common aliases folded).
pub fn declared_type(content_type: &str) -> Option<&'static str> {
    let t = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let t = match t.as_str() {
        "image/jpg" | "image/pjpeg" => "image/jpeg",
        "audio/mp3" => "audio/mpeg",
        "audio/wave" | "audio/x-wav" | "audio/vnd.wave" => "audio/wav",
        other => other,
    };
    UPLOAD_TYPES.iter().copied().find(|u| *u == t)
}

/// What the bytes of an upload are, among [`UPLOAD_TYPES`].
pub fn sniff_upload(bytes: &[u8]) -> Option<&'static str> {
    let at = |off: usize, magic: &[u8]| bytes.get(off..off + magic.len()) == Some(magic);
    if at(0, b"RIFF") && at(8, b"WAVE") {
        return Some("audio/wav");
    }
    if at(0, b"ID3") || (bytes.len() > 2 && bytes[0] == 0xff && bytes[1] & 0xe0 == 0xe0) {
        // An ID3 tag, or an MPEG audio frame's sync word (a JPEG's
        // `ff d8` is not one: d8 lacks the three high bits).
        return Some("audio/mpeg");
    }
    match sniff(bytes)? {
        "video/mp4" if at(8, b"qt  ") => Some("video/quicktime"),
        t if UPLOAD_TYPES.contains(&t) => Some(t),
        _ => None,
    }
}

/// A stored upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// `upl_` and the random part of its key.
    pub id: String,
    pub key: String,
    /// The storage's URL of it (unsigned).
    pub url: String,
}

impl Media {
    /// Stores an upload of `user` (already checked) under a fresh key.
    ///
    /// # Errors
    /// When the storage fails; nothing is left behind then.
    pub async fn store_upload(
        &self,
        user: UserId,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<Stored, StorageError> {
        let name = hex::encode(rand::random::<[u8; 16]>());
        let key = format!("u/{user}/{name}.{}", mime::extension(content_type));
        let mut w = self.backend.writer(&key, content_type).await?;
        for chunk in bytes.chunks(1 << 20) {
            if let Err(e) = w.write(chunk).await {
                w.abort().await;
                return Err(e);
            }
        }
        w.finish().await?;
        Ok(Stored {
            id: format!("upl_{name}"),
            url: self.backend.public_url(&key),
            key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_come_from_the_bytes() {
        assert_eq!(sniff_upload(b"\x89PNG\r\n\x1a\n\0\0"), Some("image/png"));
        assert_eq!(
            sniff_upload(b"\xff\xd8\xff\xe0\0\x10JFIF"),
            Some("image/jpeg")
        );
        assert_eq!(
            sniff_upload(b"\0\0\0\x14ftypqt  \0\0"),
            Some("video/quicktime")
        );
        assert_eq!(sniff_upload(b"\0\0\0\x20ftypisom\0\0"), Some("video/mp4"));
        assert_eq!(sniff_upload(b"ID3\x04\0\0\0\0"), Some("audio/mpeg"));
        assert_eq!(sniff_upload(b"\xff\xfb\x90\x64"), Some("audio/mpeg"));
        assert_eq!(sniff_upload(b"RIFF\0\0\0\0WAVEfmt "), Some("audio/wav"));
        assert_eq!(
            sniff_upload(b"RIFF\0\0\0\0AVI LIST"),
            None,
            "not an upload type"
        );
        assert_eq!(sniff_upload(b"<html>"), None);
        assert_eq!(declared_type("image/JPG; q=1"), Some("image/jpeg"));
        assert_eq!(declared_type("audio/x-wav"), Some("audio/wav"));
        assert_eq!(declared_type("text/html"), None);
    }
}
