//! The renderer's outputs, decoded and parsed back: the PNG by the `png`
//! crate, the AVI's RIFF tree field by field.

use super::avi::{AVI_MAX_FPS, AVIF_HASINDEX, AVIIF_KEYFRAME};
use super::text::{CAPTION_MAX_CHARS, caption_chars, wrap_words};
use super::{render_avi, render_png, seed_from_prompt};

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

fn find<'a>(list: &'a [Chunk], bytes: &[u8], id: &[u8; 4], kind: Option<&[u8; 4]>) -> &'a Chunk {
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
