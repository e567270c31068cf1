//! Deterministic rendering of real, decodable media for the simulated providers.
//!
//! Mock providers hand back files that browsers, image viewers and video
//! players really open, and that visibly differ per prompt so a person clicking
//! through results can tell them apart. Everything here is a pure function of
//! its inputs (no clock, no global RNG), so mock responses are reproducible
//! across runs and machines and can be compared byte for byte.
//!
//! This module owns the prompt → seed hash, the seed → scene mapping (palette,
//! gradient, bands, circles), a tiny 5×7 bitmap font for captions, PNG
//! encoding, and a minimal uncompressed AVI muxer.

use std::f32::consts::TAU;

const PNG_MIN_SIDE: u32 = 16;
const PNG_MAX_SIDE: u32 = 2048;
const AVI_MIN_SIDE: u32 = 16;
const AVI_MAX_SIDE: u32 = 320;
/// Raw video is ~300 KB per frame at the largest size, so the frame count is
/// capped to keep a single response below ~100 MB.
const AVI_MAX_FRAMES: u32 = 300;
const AVI_MAX_FPS: u32 = 120;
const CAPTION_MAX_CHARS: usize = 40;

/// Seed from the prompt text: a stable 64-bit FNV-1a hash (do not use std's randomized hasher).
pub fn seed_from_prompt(prompt: &str) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    prompt.bytes().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

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

/// A small but valid uncompressed AVI video of the seed's pattern drifting
/// over time.
///
/// `width`×`height` are clamped to 16..=320 and rounded down to even numbers,
/// `frames` is clamped to 1..=300 and `fps` to 1..=120. Frames are raw 24-bit
/// bottom-up BGR (`DIB ` / `BI_RGB`), which every mainstream player decodes.
/// The motion loops seamlessly: the last frame leads back into the first.
pub fn render_avi(seed: u64, width: u32, height: u32, frames: u32, fps: u32) -> Vec<u8> {
    let width = width.clamp(AVI_MIN_SIDE, AVI_MAX_SIDE) & !1;
    let height = height.clamp(AVI_MIN_SIDE, AVI_MAX_SIDE) & !1;
    let frames = frames.clamp(1, AVI_MAX_FRAMES);
    let fps = fps.clamp(1, AVI_MAX_FPS);
    let (w, h) = (width as usize, height as usize);

    // DIB rows are padded to a 4-byte boundary.
    let stride = (w * 3 + 3) & !3;
    let frame_bytes = stride * h;
    let frame_bytes_u32 = u32_of(frame_bytes);

    let mut out = Vec::with_capacity(frames as usize * (frame_bytes + 8 + 16) + 512);
    let riff = begin_list(&mut out, b"RIFF", b"AVI ");

    let hdrl = begin_list(&mut out, b"LIST", b"hdrl");
    let avih = begin_chunk(&mut out, b"avih");
    push_u32(&mut out, 1_000_000 / fps); // dwMicroSecPerFrame
    push_u32(&mut out, frame_bytes_u32.saturating_mul(fps)); // dwMaxBytesPerSec
    push_u32(&mut out, 0); // dwPaddingGranularity
    push_u32(&mut out, AVIF_HASINDEX);
    push_u32(&mut out, frames); // dwTotalFrames
    push_u32(&mut out, 0); // dwInitialFrames
    push_u32(&mut out, 1); // dwStreams
    push_u32(&mut out, frame_bytes_u32); // dwSuggestedBufferSize
    push_u32(&mut out, width);
    push_u32(&mut out, height);
    out.extend_from_slice(&[0; 16]); // dwReserved[4]
    end_chunk(&mut out, avih);

    let strl = begin_list(&mut out, b"LIST", b"strl");
    let strh = begin_chunk(&mut out, b"strh");
    out.extend_from_slice(b"vids");
    out.extend_from_slice(b"DIB ");
    push_u32(&mut out, 0); // dwFlags
    push_u16(&mut out, 0); // wPriority
    push_u16(&mut out, 0); // wLanguage
    push_u32(&mut out, 0); // dwInitialFrames
    push_u32(&mut out, 1); // dwScale
    push_u32(&mut out, fps); // dwRate: fps = dwRate / dwScale
    push_u32(&mut out, 0); // dwStart
    push_u32(&mut out, frames); // dwLength
    push_u32(&mut out, frame_bytes_u32); // dwSuggestedBufferSize
    push_u32(&mut out, u32::MAX); // dwQuality: -1 means "driver default"
    push_u32(&mut out, 0); // dwSampleSize: 0 because each chunk is one frame
    for v in [0, 0, width, height] {
        // rcFrame is four signed 16-bit values; sides are at most 320.
        push_u16(
            &mut out,
            u16::try_from(v).expect("AVI sides are clamped to 320"),
        );
    }
    end_chunk(&mut out, strh);

    let strf = begin_chunk(&mut out, b"strf");
    push_u32(&mut out, 40); // biSize
    push_u32(&mut out, width); // biWidth
    push_u32(&mut out, height); // biHeight > 0 means rows are stored bottom-up
    push_u16(&mut out, 1); // biPlanes
    push_u16(&mut out, 24); // biBitCount
    push_u32(&mut out, 0); // biCompression = BI_RGB
    push_u32(&mut out, frame_bytes_u32); // biSizeImage
    out.extend_from_slice(&[0; 16]); // pels per metre ×2, colours used, important
    end_chunk(&mut out, strf);
    end_chunk(&mut out, strl);
    end_chunk(&mut out, hdrl);

    let movi = begin_list(&mut out, b"LIST", b"movi");
    // idx1 offsets are relative to the 'movi' fourcc, the convention players
    // (and ffmpeg's demuxer) expect first.
    let movi_fourcc = movi + 8;
    let mut chunk_offsets = Vec::with_capacity(frames as usize);
    let scene = Scene::new(seed);
    let mut rgb_row = vec![0u8; w * 3];
    for index in 0..frames {
        chunk_offsets.push(out.len() - movi_fourcc);
        let chunk = begin_chunk(&mut out, b"00db");
        let t = index as f32 / frames as f32;
        let frame = scene.frame(w, h, t);
        for y in (0..h).rev() {
            frame.shade_row(y, &mut rgb_row);
            for px in rgb_row.chunks_exact(3) {
                out.extend_from_slice(&[px[2], px[1], px[0]]);
            }
            out.resize(out.len() + (stride - w * 3), 0);
        }
        end_chunk(&mut out, chunk);
    }
    end_chunk(&mut out, movi);

    let idx1 = begin_chunk(&mut out, b"idx1");
    for offset in chunk_offsets {
        out.extend_from_slice(b"00db");
        push_u32(&mut out, AVIIF_KEYFRAME);
        push_u32(&mut out, u32_of(offset));
        push_u32(&mut out, frame_bytes_u32);
    }
    end_chunk(&mut out, idx1);
    end_chunk(&mut out, riff);
    out
}

const AVIF_HASINDEX: u32 = 0x10;
const AVIIF_KEYFRAME: u32 = 0x10;

/// Every size and offset is bounded by the clamps above (≈93 MB at most), so
/// overflowing RIFF's 32-bit fields would be a bug here, not bad input.
fn u32_of(value: usize) -> u32 {
    u32::try_from(value).expect("AVI sizes are bounded well below 4 GiB")
}

fn push_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn push_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// Writes a chunk header with a placeholder size; returns where the header
/// starts so [`end_chunk`] can patch the size once the payload is known.
fn begin_chunk(out: &mut Vec<u8>, fourcc: &[u8; 4]) -> usize {
    let start = out.len();
    out.extend_from_slice(fourcc);
    push_u32(out, 0);
    start
}

fn begin_list(out: &mut Vec<u8>, fourcc: &[u8; 4], kind: &[u8; 4]) -> usize {
    let start = begin_chunk(out, fourcc);
    out.extend_from_slice(kind);
    start
}

fn end_chunk(out: &mut Vec<u8>, start: usize) {
    let size = out.len() - start - 8;
    out[start + 4..start + 8].copy_from_slice(&u32_of(size).to_le_bytes());
    // RIFF chunks are word aligned; the pad byte is not part of the size.
    if size % 2 == 1 {
        out.push(0);
    }
}

/// xorshift64*: tiny, fast and fully specified, so scenes never change when
/// a dependency's RNG does.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        // Run the seed through splitmix64 first: FNV seeds of similar prompts
        // share many bits, and xorshift's early outputs would echo that.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // An all-zero state would be stuck at zero forever.
        Self(if z == 0 { 0x2545_f491_4f6c_dd1d } else { z })
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[0, 1)` using the top 24 bits, exactly what an f32 holds.
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u32 << 24) as f32
    }

    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in `lo..=hi`; the modulo bias is irrelevant for art.
    fn int(&mut self, lo: i32, hi: i32) -> i32 {
        let span = (hi - lo + 1).unsigned_abs();
        lo + (self.next_u64() % u64::from(span)) as i32
    }

    fn sign(&mut self) -> f32 {
        if self.next_u64() & 1 == 0 { -1.0 } else { 1.0 }
    }
}

type Rgb = [f32; 3];

fn hsv(hue: f32, saturation: f32, value: f32) -> Rgb {
    let h = (hue - hue.floor()) * 6.0;
    let sector = h.floor();
    let f = h - sector;
    let p = value * (1.0 - saturation);
    let q = value * (1.0 - saturation * f);
    let t = value * (1.0 - saturation * (1.0 - f));
    match sector as u32 {
        0 => [value, t, p],
        1 => [q, value, p],
        2 => [p, value, t],
        3 => [p, q, value],
        4 => [t, p, value],
        _ => [value, p, q],
    }
}

fn lerp(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

fn to_byte(channel: f32) -> u8 {
    (channel.clamp(0.0, 1.0) * 255.0 + 0.5) as u8
}

struct Circle {
    /// Centre in unit coordinates of the image (wraps around the edges).
    cx: f32,
    cy: f32,
    /// Radius in units of the image's shorter side, so circles stay round.
    radius: f32,
    color: Rgb,
    alpha: f32,
    /// Whole laps per animation loop, which makes the video loop seamlessly.
    laps_x: f32,
    laps_y: f32,
}

/// The seed's look, independent of output size: the same seed gives the same
/// composition at any resolution and in both the PNG and the AVI.
struct Scene {
    dark: Rgb,
    light: Rgb,
    gradient_dir: (f32, f32),
    /// Whole band repeats across the image, so bands also tile when wrapped.
    band_freq: (f32, f32),
    band_laps: f32,
    band_strength: f32,
    circles: Vec<Circle>,
}

impl Scene {
    fn new(seed: u64) -> Self {
        let mut rng = XorShift::new(seed);
        let hue = rng.unit();
        let dark = hsv(hue, rng.range(0.55, 0.9), rng.range(0.25, 0.5));
        let light = hsv(
            hue + rng.range(0.2, 0.55),
            rng.range(0.4, 0.8),
            rng.range(0.75, 0.95),
        );
        let angle = rng.unit() * TAU;
        let band_freq = (rng.int(-3, 3) as f32, rng.int(1, 4) as f32);
        let band_laps = rng.sign();
        let band_strength = rng.range(0.05, 0.14);
        let count = rng.int(3, 6);
        let circles = (0..count)
            .map(|_| Circle {
                cx: rng.unit(),
                cy: rng.unit(),
                radius: rng.range(0.07, 0.3),
                color: hsv(
                    hue + rng.range(-0.25, 0.25),
                    rng.range(0.35, 0.9),
                    rng.range(0.6, 1.0),
                ),
                alpha: rng.range(0.3, 0.75),
                laps_x: rng.sign(),
                laps_y: rng.int(-1, 1) as f32,
            })
            .collect();
        Self {
            dark,
            light,
            gradient_dir: (angle.cos(), angle.sin()),
            band_freq,
            band_laps,
            band_strength,
            circles,
        }
    }

    /// Fixes the scene at a size and at animation phase `t` in `[0, 1)`,
    /// precomputing everything that does not vary per pixel.
    fn frame(&self, w: usize, h: usize, t: f32) -> Frame<'_> {
        let short = w.min(h) as f32;
        // Half a pixel plus a little: antialiased yet still crisp edges.
        let feather = 1.5 / short + 0.004;
        let circles = self
            .circles
            .iter()
            .map(|c| {
                let inner = (c.radius - feather).max(0.0);
                let outer = c.radius + feather;
                PlacedCircle {
                    cx: wrap_unit(c.cx + c.laps_x * t),
                    cy: wrap_unit(c.cy + c.laps_y * t),
                    radius: c.radius,
                    inner_sq: inner * inner,
                    outer_sq: outer * outer,
                    inv_feather: 1.0 / (2.0 * feather),
                    color: c.color,
                    alpha: c.alpha,
                }
            })
            .collect();
        Frame {
            scene: self,
            w,
            inv_w: 1.0 / w as f32,
            inv_h: 1.0 / h as f32,
            aspect_x: w as f32 / short,
            aspect_y: h as f32 / short,
            band_phase: self.band_laps * t,
            circles,
        }
    }
}

fn wrap_unit(v: f32) -> f32 {
    v - v.floor()
}

struct PlacedCircle {
    cx: f32,
    cy: f32,
    radius: f32,
    inner_sq: f32,
    outer_sq: f32,
    inv_feather: f32,
    color: Rgb,
    alpha: f32,
}

struct Frame<'a> {
    scene: &'a Scene,
    w: usize,
    inv_w: f32,
    inv_h: f32,
    aspect_x: f32,
    aspect_y: f32,
    band_phase: f32,
    circles: Vec<PlacedCircle>,
}

impl Frame<'_> {
    /// Fills one row of RGB bytes (`row.len() == 3 * w`).
    fn shade_row(&self, y: usize, row: &mut [u8]) {
        let s = self.scene;
        let v = (y as f32 + 0.5) * self.inv_h;
        let grad_v = (v - 0.5) * s.gradient_dir.1;
        let band_v = v * s.band_freq.1 + self.band_phase;
        for (x, px) in row.chunks_exact_mut(3).take(self.w).enumerate() {
            let u = (x as f32 + 0.5) * self.inv_w;

            let g = ((u - 0.5) * s.gradient_dir.0 + grad_v + 0.5).clamp(0.0, 1.0);
            let smooth = g * g * (3.0 - 2.0 * g);
            let mut color = lerp(s.dark, s.light, smooth);

            // A triangle wave rather than sin(): same soft look, far cheaper.
            let band = wrap_unit(u * s.band_freq.0 + band_v);
            let shade = 1.0 - s.band_strength * (2.0 * band - 1.0).abs();
            color = [color[0] * shade, color[1] * shade, color[2] * shade];

            for c in &self.circles {
                // Distances wrap around the edges so moving circles re-enter
                // on the other side instead of popping.
                let mut du = u - c.cx;
                du -= du.round();
                let mut dv = v - c.cy;
                dv -= dv.round();
                let dx = du * self.aspect_x;
                let dy = dv * self.aspect_y;
                let d_sq = dx * dx + dy * dy;
                if d_sq >= c.outer_sq {
                    continue;
                }
                let coverage = if d_sq <= c.inner_sq {
                    1.0
                } else {
                    ((c.radius - d_sq.sqrt()) * c.inv_feather + 0.5).clamp(0.0, 1.0)
                };
                color = lerp(color, c.color, coverage * c.alpha);
            }

            px[0] = to_byte(color[0]);
            px[1] = to_byte(color[1]);
            px[2] = to_byte(color[2]);
        }
    }
}

const GLYPH_W: usize = 5;
const GLYPH_H: usize = 7;
/// Advance and line pitch in font pixels: one column / two rows of spacing.
const CELL_W: usize = GLYPH_W + 1;
const CELL_H: usize = GLYPH_H + 2;

/// Shown for characters the font lacks, so the text keeps its shape.
const BOX_GLYPH: [u8; 7] = [
    0b11111, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b11111,
];

/// 5×7 glyph rows, top to bottom; bit 4 is the leftmost column.
fn glyph(c: char) -> [u8; 7] {
    match c {
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        ' ' => [0; 7],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        ',' => [0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08],
        '!' => [0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04],
        '?' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        ';' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x04, 0x08],
        '\'' => [0x04, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00],
        '"' => [0x0A, 0x0A, 0x0A, 0x00, 0x00, 0x00, 0x00],
        '/' => [0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '+' => [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00],
        '=' => [0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00],
        '_' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F],
        '#' => [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '&' => [0x0C, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0D],
        '*' => [0x00, 0x04, 0x15, 0x0E, 0x15, 0x04, 0x00],
        '@' => [0x0E, 0x11, 0x01, 0x0D, 0x15, 0x15, 0x0E],
        _ => BOX_GLYPH,
    }
}

/// Uppercased, whitespace-normalised caption cut to ~40 characters; an
/// ellipsis marks the cut so the picture does not claim the whole prompt.
fn caption_chars(caption: &str) -> Vec<char> {
    let normalise = |c: char| {
        if c.is_whitespace() || c.is_control() {
            ' '
        } else {
            c.to_ascii_uppercase()
        }
    };
    let mut chars: Vec<char> = caption
        .trim()
        .chars()
        .map(normalise)
        .take(CAPTION_MAX_CHARS + 1)
        .collect();
    if chars.len() > CAPTION_MAX_CHARS {
        chars.truncate(CAPTION_MAX_CHARS - 3);
        chars.extend(['.', '.', '.']);
    }
    chars
}

/// Greedy word wrap to `cols` characters; words longer than a line are split.
fn wrap_words(text: &[char], cols: usize) -> Vec<Vec<char>> {
    let mut lines: Vec<Vec<char>> = Vec::new();
    let mut line: Vec<char> = Vec::with_capacity(cols);
    for mut word in text.split(|&c| c == ' ').filter(|w| !w.is_empty()) {
        while word.len() > cols {
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            let (head, tail) = word.split_at(cols);
            lines.push(head.to_vec());
            word = tail;
        }
        if word.is_empty() {
            continue;
        }
        let needed = if line.is_empty() {
            word.len()
        } else {
            line.len() + 1 + word.len()
        };
        if needed > cols {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.extend_from_slice(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Draws the caption bottom-centred on a darkened strip so it reads on any
/// background. The font scale shrinks until the text fits in half the height.
fn draw_caption(pixels: &mut [u8], w: usize, h: usize, caption: &str) {
    let text = caption_chars(caption);
    if text.iter().all(|&c| c == ' ') {
        return;
    }

    let mut scale = (w.min(h) / 128).clamp(1, 8);
    let (lines, scale) = loop {
        let pad = 2 * scale;
        let usable = w.saturating_sub(2 * pad) + scale;
        let cols = (usable / (CELL_W * scale)).max(1);
        let lines = wrap_words(&text, cols);
        let block = lines.len() * CELL_H * scale - 2 * scale + 2 * pad;
        if block <= h / 2 || scale == 1 {
            break (lines, scale);
        }
        scale -= 1;
    };

    let pad = 2 * scale;
    let line_h = CELL_H * scale;
    // At the smallest scale the text may still be too tall: keep what fits.
    let max_lines = ((h / 2).saturating_sub(2 * pad) + 2 * scale) / line_h;
    let shown = &lines[..lines.len().min(max_lines.max(1))];
    let block = shown.len() * line_h - 2 * scale + 2 * pad;
    let top = h.saturating_sub(block);

    for byte in &mut pixels[top * w * 3..] {
        *byte = ((u16::from(*byte) * 96) >> 8) as u8;
    }

    for (i, line) in shown.iter().enumerate() {
        let line_w = line.len() * CELL_W * scale - scale;
        let x0 = w.saturating_sub(line_w) / 2;
        let y0 = top + pad + i * line_h;
        for (j, &c) in line.iter().enumerate() {
            let gx = x0 + j * CELL_W * scale;
            for (r, bits) in glyph(c).iter().enumerate() {
                for col in 0..GLYPH_W {
                    if bits & (0x10 >> col) != 0 {
                        fill_rect(pixels, w, h, gx + col * scale, y0 + r * scale, scale);
                    }
                }
            }
        }
    }
}

/// Paints a `size`×`size` near-white square, clipped to the image.
fn fill_rect(pixels: &mut [u8], w: usize, h: usize, x: usize, y: usize, size: usize) {
    const INK: [u8; 3] = [250, 250, 245];
    let (x_end, y_end) = ((x + size).min(w), (y + size).min(h));
    if x >= x_end {
        return;
    }
    for row in y..y_end {
        let start = (row * w + x) * 3;
        let end = (row * w + x_end) * 3;
        for px in pixels[start..end].chunks_exact_mut(3) {
            px.copy_from_slice(&INK);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_png(bytes: &[u8]) -> (png::OutputInfo, Vec<u8>) {
        let decoder = png::Decoder::new(bytes);
        let mut reader = decoder.read_info().expect("valid PNG header");
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).expect("valid PNG data");
        buf.truncate(info.buffer_size());
        (info, buf)
    }

    fn le32(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
    }

    /// One RIFF chunk: its fourcc, where its payload starts, and payload size.
    struct Chunk {
        id: [u8; 4],
        data: usize,
        size: usize,
    }

    /// Lists the chunks laid out back to back in `bytes[start..end]`,
    /// honouring RIFF's word alignment and checking nothing overruns.
    fn chunks(bytes: &[u8], start: usize, end: usize) -> Vec<Chunk> {
        let mut found = Vec::new();
        let mut pos = start;
        while pos < end {
            assert!(pos + 8 <= end, "truncated chunk header at {pos}");
            let mut id = [0; 4];
            id.copy_from_slice(&bytes[pos..pos + 4]);
            let size = le32(bytes, pos + 4) as usize;
            assert!(pos + 8 + size <= end, "chunk at {pos} overruns its parent");
            found.push(Chunk {
                id,
                data: pos + 8,
                size,
            });
            pos += 8 + size + (size & 1);
        }
        assert_eq!(pos, end, "chunks do not exactly fill their parent");
        found
    }

    fn find<'a>(
        list: &'a [Chunk],
        bytes: &[u8],
        id: &[u8; 4],
        kind: Option<&[u8; 4]>,
    ) -> &'a Chunk {
        list.iter()
            .find(|c| &c.id == id && kind.is_none_or(|k| &bytes[c.data..c.data + 4] == k))
            .unwrap_or_else(|| panic!("missing chunk {:?}", String::from_utf8_lossy(id)))
    }

    #[test]
    fn seed_is_standard_fnv1a() {
        assert_eq!(seed_from_prompt(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(seed_from_prompt("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(seed_from_prompt("foobar"), 0x8594_4171_f739_67e8);
        assert_ne!(seed_from_prompt("a cat"), seed_from_prompt("a dog"));
    }

    #[test]
    fn png_decodes_with_requested_size() {
        let bytes = render_png(seed_from_prompt("a red fox"), "a red fox", 96, 64);
        let (info, data) = decode_png(&bytes);
        assert_eq!((info.width, info.height), (96, 64));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        assert_eq!(data.len(), 96 * 64 * 3);
    }

    #[test]
    fn png_sides_are_clamped() {
        let (info, _) = decode_png(&render_png(1, "x", 0, 5000));
        assert_eq!((info.width, info.height), (16, 2048));
        let (info, _) = decode_png(&render_png(1, "", 3, 3));
        assert_eq!((info.width, info.height), (16, 16));
    }

    #[test]
    fn png_is_deterministic_and_prompt_dependent() {
        let render = |p: &str| render_png(seed_from_prompt(p), p, 128, 128);
        assert_eq!(
            render("a lighthouse at dusk"),
            render("a lighthouse at dusk")
        );
        assert_ne!(
            render("a lighthouse at dusk"),
            render("a lighthouse at dawn")
        );

        // The background alone must differ too, not only the caption.
        let (_, a) = decode_png(&render_png(seed_from_prompt("one"), "", 64, 64));
        let (_, b) = decode_png(&render_png(seed_from_prompt("two"), "", 64, 64));
        assert_ne!(a, b);
    }

    #[test]
    fn png_background_varies_and_caption_is_drawn() {
        let seed = seed_from_prompt("mountains");
        let (_, plain) = decode_png(&render_png(seed, "", 256, 256));
        let first = &plain[..3];
        assert!(plain.chunks_exact(3).any(|px| px != first), "flat image");

        let (_, captioned) = decode_png(&render_png(seed, "Mountains, at 5am!", 256, 256));
        assert_ne!(plain, captioned);
        // Glyph ink is near-white, which the darkened strip never is.
        let ink = captioned
            .chunks_exact(3)
            .filter(|px| px == &[250, 250, 245])
            .count();
        assert!(ink > 100, "expected visible caption ink, got {ink} pixels");
    }

    #[test]
    fn caption_is_cut_and_wrapped() {
        let long = "abcdefghij ".repeat(10);
        let chars = caption_chars(&long);
        assert_eq!(chars.len(), CAPTION_MAX_CHARS);
        assert!(chars.ends_with(&['.', '.', '.']));
        assert!(chars.iter().all(|c| !c.is_ascii_lowercase()));

        let text: Vec<char> = "HELLO WONDERFUL WORLD".chars().collect();
        let lines = wrap_words(&text, 10);
        let lines: Vec<String> = lines.iter().map(|l| l.iter().collect()).collect();
        assert_eq!(lines, ["HELLO", "WONDERFUL", "WORLD"]);
        let lines = wrap_words(&text, 4);
        assert!(lines.iter().all(|l| l.len() <= 4));

        // Tiny images and odd characters must not panic.
        for caption in [&long[..], "日本語 ✓ ~`|", "\n\t", "W"] {
            let (info, _) = decode_png(&render_png(7, caption, 16, 16));
            assert_eq!((info.width, info.height), (16, 16));
        }
    }

    /// Parses the whole RIFF tree and checks every field a player relies on.
    fn check_avi(bytes: &[u8], width: u32, height: u32, frames: u32, fps: u32) {
        assert_eq!(&bytes[..4], b"RIFF");
        assert_eq!(le32(bytes, 4) as usize, bytes.len() - 8);
        assert_eq!(&bytes[8..12], b"AVI ");
        let top = chunks(bytes, 12, bytes.len());

        let hdrl = find(&top, bytes, b"LIST", Some(b"hdrl"));
        let hdrl_children = chunks(bytes, hdrl.data + 4, hdrl.data + hdrl.size);
        let avih = find(&hdrl_children, bytes, b"avih", None);
        assert_eq!(avih.size, 56);
        let a = avih.data;
        assert_eq!(le32(bytes, a), 1_000_000 / fps);
        assert_eq!(le32(bytes, a + 12) & AVIF_HASINDEX, AVIF_HASINDEX);
        assert_eq!(le32(bytes, a + 16), frames);
        assert_eq!(le32(bytes, a + 24), 1);
        assert_eq!(le32(bytes, a + 32), width);
        assert_eq!(le32(bytes, a + 36), height);

        let strl = find(&hdrl_children, bytes, b"LIST", Some(b"strl"));
        let strl_children = chunks(bytes, strl.data + 4, strl.data + strl.size);
        let strh = find(&strl_children, bytes, b"strh", None);
        assert_eq!(strh.size, 56);
        assert_eq!(&bytes[strh.data..strh.data + 4], b"vids");
        assert_eq!(&bytes[strh.data + 4..strh.data + 8], b"DIB ");
        assert_eq!(le32(bytes, strh.data + 20), 1); // dwScale
        assert_eq!(le32(bytes, strh.data + 24), fps); // dwRate
        assert_eq!(le32(bytes, strh.data + 32), frames); // dwLength
        let strf = find(&strl_children, bytes, b"strf", None);
        assert_eq!(strf.size, 40);
        let f = strf.data;
        assert_eq!(le32(bytes, f), 40);
        assert_eq!(le32(bytes, f + 4), width);
        assert_eq!(le32(bytes, f + 8), height);
        assert_eq!(u16::from_le_bytes([bytes[f + 14], bytes[f + 15]]), 24);
        assert_eq!(le32(bytes, f + 16), 0);

        let stride = (width as usize * 3 + 3) & !3;
        let frame_size = stride * height as usize;
        assert_eq!(le32(bytes, f + 20) as usize, frame_size);

        let movi = find(&top, bytes, b"LIST", Some(b"movi"));
        let movi_fourcc = movi.data;
        let frame_chunks = chunks(bytes, movi.data + 4, movi.data + movi.size);
        assert_eq!(frame_chunks.len(), frames as usize);
        for chunk in &frame_chunks {
            assert_eq!(&chunk.id, b"00db");
            assert_eq!(chunk.size, frame_size);
            // Row padding bytes must be zero.
            for row in bytes[chunk.data..chunk.data + chunk.size].chunks_exact(stride) {
                assert!(row[width as usize * 3..].iter().all(|&b| b == 0));
            }
        }

        let idx1 = find(&top, bytes, b"idx1", None);
        assert_eq!(idx1.size, 16 * frames as usize);
        for (i, chunk) in frame_chunks.iter().enumerate() {
            let e = idx1.data + 16 * i;
            assert_eq!(&bytes[e..e + 4], b"00db");
            assert_eq!(le32(bytes, e + 4), AVIIF_KEYFRAME);
            assert_eq!(le32(bytes, e + 8) as usize, chunk.data - 8 - movi_fourcc);
            assert_eq!(le32(bytes, e + 12) as usize, frame_size);
        }
    }

    #[test]
    fn avi_structure_is_valid() {
        // 18 px rows are 54 bytes, so this also exercises row padding.
        let bytes = render_avi(seed_from_prompt("waves"), 18, 20, 5, 12);
        check_avi(&bytes, 18, 20, 5, 12);
        let bytes = render_avi(seed_from_prompt("waves"), 64, 48, 3, 24);
        check_avi(&bytes, 64, 48, 3, 24);
    }

    #[test]
    fn avi_parameters_are_clamped() {
        check_avi(&render_avi(3, 17, 1000, 0, 0), 16, 320, 1, 1);
        check_avi(&render_avi(3, 33, 21, 2, 1000), 32, 20, 2, AVI_MAX_FPS);
    }

    #[test]
    fn avi_is_deterministic_animated_and_seed_dependent() {
        let a = render_avi(seed_from_prompt("rain"), 32, 32, 4, 8);
        assert_eq!(a, render_avi(seed_from_prompt("rain"), 32, 32, 4, 8));
        assert_ne!(a, render_avi(seed_from_prompt("snow"), 32, 32, 4, 8));

        let top = chunks(&a, 12, a.len());
        let movi = find(&top, &a, b"LIST", Some(b"movi"));
        let frames = chunks(&a, movi.data + 4, movi.data + movi.size);
        let pixels = |c: &Chunk| &a[c.data..c.data + c.size];
        assert_ne!(pixels(&frames[0]), pixels(&frames[1]), "frames should move");
    }
}
