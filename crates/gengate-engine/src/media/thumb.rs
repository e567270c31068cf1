//! Thumbnails of image outputs: 320 px on the longest side, JPEG, stored
//! beside the original, so a gallery page on a slow link does not pull
//! full-size images. Decoding is bounded: inputs over
//! [`MAX_INPUT_BYTES`] are not buffered and images over [`MAX_PIXELS`] are
//! not decoded (a small file can claim huge dimensions).

use std::io::Cursor;

use image::{ImageDecoder, ImageReader, Limits};

/// Longest side of a thumbnail, pixels.
pub const SIZE: u32 = 320;
/// Images larger than this (bytes) get no thumbnail.
pub const MAX_INPUT_BYTES: u64 = 16 << 20;
/// Images with more pixels than this are not decoded.
pub const MAX_PIXELS: u64 = 40_000_000;

/// Whether outputs of this type get a thumbnail.
pub fn wanted(content_type: &str) -> bool {
    matches!(content_type, "image/png" | "image/jpeg" | "image/webp")
}

/// A JPEG thumbnail of an encoded image. CPU-bound: run it off the async
/// threads.
///
/// # Errors
/// When the image cannot be decoded or is too large to decode.
pub fn render(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 4 + (64 << 20));
    let mut decoder = reader.into_decoder().map_err(|e| e.to_string())?;
    let (w, h) = decoder.dimensions();
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(format!("{w}x{h} is over {MAX_PIXELS} pixels"));
    }
    decoder.set_limits(limits).map_err(|e| e.to_string())?;
    let img = image::DynamicImage::from_decoder(decoder).map_err(|e| e.to_string())?;
    let small = if w.max(h) > SIZE {
        img.thumbnail(SIZE, SIZE)
    } else {
        img
    };
    let rgb = small.to_rgb8();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode_image(&rgb)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
        });
        let mut out = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn thumbnails_are_320px_jpegs() {
        let t = render(&png(1024, 512)).unwrap();
        assert_eq!(&t[..3], b"\xff\xd8\xff");
        let img = image::load_from_memory(&t).unwrap();
        assert_eq!((img.width(), img.height()), (320, 160));
    }

    #[test]
    fn huge_dimensions_are_refused_before_decoding() {
        // A valid PNG header claiming 100000 x 100000 pixels.
        let mut head = png(1, 1);
        head[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        head[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let err = render(&head).unwrap_err();
        assert!(
            err.contains("pixels") || err.contains("CRC") || err.contains("limit"),
            "{err}"
        );
        assert!(render(b"<html>").is_err());
    }
}
