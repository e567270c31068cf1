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
//!
//! Each of those is a file here: [`seed_from_prompt`] and the generator it
//! seeds (`seed`), the scene (`scene`), the caption font (`text`), and the
//! two encoders (`png`, `avi`).

mod avi;
mod png;
mod scene;
mod seed;
mod text;

#[cfg(test)]
mod tests;

pub use avi::render_avi;
pub use png::render_png;
pub use seed::seed_from_prompt;
