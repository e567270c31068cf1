//! A minimal uncompressed AVI muxer for the rendered scene in motion.

use super::scene::Scene;

const AVI_MIN_SIDE: u32 = 16;
const AVI_MAX_SIDE: u32 = 320;
/// Raw video is ~300 KB per frame at the largest size, so the frame count is
/// capped to keep a single response below ~100 MB.
const AVI_MAX_FRAMES: u32 = 300;
pub(super) const AVI_MAX_FPS: u32 = 120;

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

pub(super) const AVIF_HASINDEX: u32 = 0x10;
pub(super) const AVIIF_KEYFRAME: u32 = 0x10;

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
