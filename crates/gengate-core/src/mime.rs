//! Media types and file extensions: the one table gengate uses to name a
//! file it stores, to serve it, and to read a provider's output URL.

/// Extension (lower case, no dot) and media type. The first extension of a
/// type is the one gengate writes.
const TABLE: &[(&str, &str)] = &[
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("webp", "image/webp"),
    ("gif", "image/gif"),
    ("bmp", "image/bmp"),
    ("tif", "image/tiff"),
    ("tiff", "image/tiff"),
    ("mp4", "video/mp4"),
    ("mov", "video/quicktime"),
    ("webm", "video/webm"),
    ("avi", "video/x-msvideo"),
    ("mkv", "video/x-matroska"),
    ("mp3", "audio/mpeg"),
    ("wav", "audio/wav"),
    ("flac", "audio/flac"),
    ("txt", "text/plain"),
    ("json", "application/json"),
    ("zip", "application/zip"),
    ("glb", "model/gltf-binary"),
];

/// The media type an extension (`png`, `.PNG`) names.
pub fn of_extension(ext: &str) -> Option<&'static str> {
    let ext = ext.trim().trim_start_matches('.').to_ascii_lowercase();
    TABLE
        .iter()
        .find(|(e, _)| *e == ext)
        .map(|(_, media_type)| *media_type)
}

/// The media type a path's (or URL path's) file extension names.
pub fn of_path(path: &str) -> Option<&'static str> {
    let name = path.rsplit('/').next().unwrap_or(path);
    of_extension(name.rsplit_once('.')?.1)
}

/// The media type a URL's path names by its extension (its query and
/// fragment ignored).
pub fn of_url(url: &str) -> Option<&'static str> {
    of_path(url.split(['?', '#']).next().unwrap_or(url))
}

/// The extension gengate gives a file of `media_type` (`bin` when it has
/// none in the table).
pub fn extension(media_type: &str) -> &'static str {
    TABLE
        .iter()
        .find(|(_, t)| *t == media_type)
        .map_or("bin", |(e, _)| *e)
}

/// `image`, `video` or `audio` (or the whole type for anything else).
pub fn family(media_type: &str) -> &str {
    media_type.split('/').next().unwrap_or(media_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_and_types_map_both_ways() {
        assert_eq!(of_extension(".JPEG"), Some("image/jpeg"));
        assert_eq!(of_path("/a/b.c/d.MOV"), Some("video/quicktime"));
        assert_eq!(of_path("/a/b"), None);
        assert_eq!(
            of_url("https://x.cn/o/1.webp?sig=a.png#b.gif"),
            Some("image/webp")
        );
        assert_eq!(of_url("https://cdn.example.com"), None);
        assert_eq!(extension("image/jpeg"), "jpg");
        assert_eq!(extension("application/zip"), "zip");
        assert_eq!(extension("application/x-unknown"), "bin");
        for (ext, media_type) in TABLE {
            assert_eq!(of_extension(ext), Some(*media_type));
            assert_eq!(of_extension(extension(media_type)), Some(*media_type));
        }
        assert_eq!(family("video/mp4"), "video");
    }
}
