//! Content sniffing: what the first bytes of a file say it is. Only the
//! types gengate stores are recognized; anything else is refused. Names
//! and extensions come from `gengate_core::mime`.

use gengate_core::mime;

/// The media types recognized by their magic bytes.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    let at = |off: usize, magic: &[u8]| head.get(off..off + magic.len()) == Some(magic);
    if at(0, b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if at(0, b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if at(0, b"RIFF") && at(8, b"WEBP") {
        Some("image/webp")
    } else if at(0, b"GIF87a") || at(0, b"GIF89a") {
        Some("image/gif")
    } else if at(0, b"RIFF") && at(8, b"AVI ") {
        Some("video/x-msvideo")
    } else if at(4, b"ftyp") {
        // ISO base media: the brand says MP4 or QuickTime; both play as mp4.
        Some("video/mp4")
    } else if at(0, b"\x1a\x45\xdf\xa3") {
        Some("video/webm")
    } else {
        None
    }
}

/// Width and height of an image, read from its header alone (no pixel is
/// decoded, so a decompression bomb costs nothing here).
pub fn image_size(content_type: &str, bytes: &[u8]) -> Option<(u32, u32)> {
    let le16 = |i: usize| {
        Some(u32::from(u16::from_le_bytes([
            *bytes.get(i)?,
            *bytes.get(i + 1)?,
        ])))
    };
    match content_type {
        "image/gif" => Some((le16(6)?, le16(8)?)),
        "image/png" | "image/jpeg" | "image/webp" => {
            let format = image::ImageFormat::from_mime_type(content_type)?;
            image::ImageReader::with_format(std::io::Cursor::new(bytes), format)
                .into_dimensions()
                .ok()
        }
        _ => None,
    }
}

/// Bytes [`sniff`] needs at most.
pub const SNIFF_LEN: usize = 16;

/// The type a URL path's extension names, if any. Text-like extensions
/// name `text/plain`, so that such a file is refused as an output rather
/// than guessed at.
pub fn type_of_extension(path: &str) -> Option<&'static str> {
    if let Some(t) = mime::of_path(path) {
        return Some(t);
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    matches!(ext.as_str(), "html" | "htm" | "txt" | "json" | "xml" | "js").then_some("text/plain")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_name_the_type() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Some("image/png"));
        assert_eq!(sniff(b"\xff\xd8\xff\xe0\0\x10JFIF"), Some("image/jpeg"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"GIF89a\x01\0"), Some("image/gif"));
        assert_eq!(sniff(b"RIFF\0\0\0\0AVI LIST"), Some("video/x-msvideo"));
        assert_eq!(sniff(b"\0\0\0\x20ftypisom"), Some("video/mp4"));
        assert_eq!(sniff(b"\x1a\x45\xdf\xa3\x9f"), Some("video/webm"));
        assert_eq!(sniff(b"<!doctype html><html>"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn extensions_and_families() {
        assert_eq!(type_of_extension("/a/b.PNG"), Some("image/png"));
        assert_eq!(type_of_extension("/a/b.html"), Some("text/plain"));
        assert_eq!(type_of_extension("/a/b"), None);
    }

    #[test]
    fn sizes_come_from_headers() {
        let mut png = Vec::new();
        image::RgbImage::new(7, 3)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        assert_eq!(image_size("image/png", &png), Some((7, 3)));
        assert_eq!(
            image_size("image/gif", b"GIF89a\x10\x00\x20\x00"),
            Some((16, 32))
        );
        assert_eq!(
            image_size("image/png", b"\x89PNG\r\n\x1a\n"),
            None,
            "cut short"
        );
    }
}
