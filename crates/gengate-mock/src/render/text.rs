//! Captions: the prompt cut and wrapped to fit, drawn in a tiny built-in
//! 5×7 bitmap font.

/// Longest caption drawn, its ellipsis included.
pub(super) const CAPTION_MAX_CHARS: usize = 40;

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
pub(super) fn caption_chars(caption: &str) -> Vec<char> {
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
pub(super) fn wrap_words(text: &[char], cols: usize) -> Vec<Vec<char>> {
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
pub(super) fn draw_caption(pixels: &mut [u8], w: usize, h: usize, caption: &str) {
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
