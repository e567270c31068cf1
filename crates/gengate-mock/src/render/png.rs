//! PNG encoding of a rendered still.

use super::scene::Scene;
use super::text::draw_caption;

const PNG_MIN_SIDE: u32 = 16;
const PNG_MAX_SIDE: u32 = 2048;

/// An RGB PNG of `width`×`height` (each clamped to 16..=2048) rendered from
/// `seed`, with the first ~40 characters of `caption` drawn on it in a small
/// built-in 5×7 bitmap font scaled up by an integer factor.
///
/// Lowercase letters are drawn as uppercase; characters the font lacks are
/// drawn as a hollow box so the caption length stays recognisable.
pub fn render_png(seed: u64, caption: &str, width: u32, height: u32) -> Vec<u8> {
    let width = width.clamp(PNG_MIN_SIDE, PNG_MAX_SIDE);
    let height = height.clamp(PNG_MIN_SIDE, PNG_MAX_SIDE);
    let (w, h) = (width as usize, height as usize);

    let scene = Scene::new(seed);
    let frame = scene.frame(w, h, 0.0);
    let mut pixels = vec![0u8; w * h * 3];
    for (y, row) in pixels.chunks_exact_mut(w * 3).enumerate() {
        frame.shade_row(y, row);
    }
    draw_caption(&mut pixels, w, h, caption);

    // Raw RGB is 3 bytes per pixel and the scene is smooth, so a fast deflate
    // plus the Paeth predictor keeps files small without a slow encoder.
    let mut out = Vec::with_capacity(w * h / 4 + 1024);
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    encoder.set_filter(png::FilterType::Paeth);
    // Dimensions are clamped non-zero and the buffer length matches them, so
    // the only possible failure left is I/O, and a Vec sink has none.
    let mut writer = encoder
        .write_header()
        .expect("writing to a Vec cannot fail");
    writer
        .write_image_data(&pixels)
        .expect("writing to a Vec cannot fail");
    writer.finish().expect("writing to a Vec cannot fail");
    out
}
