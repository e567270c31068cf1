//! The seed → scene mapping (palette, gradient, bands, circles) and its
//! per-pixel shading, shared by the PNG and the AVI encoder.

use std::f32::consts::TAU;

use super::seed::XorShift;

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
pub(super) struct Scene {
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
    pub(super) fn new(seed: u64) -> Self {
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
    pub(super) fn frame(&self, w: usize, h: usize, t: f32) -> Frame<'_> {
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

/// A scene fixed at one size and moment, ready to shade row by row.
pub(super) struct Frame<'a> {
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
    pub(super) fn shade_row(&self, y: usize, row: &mut [u8]) {
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
