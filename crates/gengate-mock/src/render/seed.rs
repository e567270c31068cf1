//! The prompt → seed hash, and the small generator a seed drives: both
//! fully specified, so a prompt gives the same picture on every machine and
//! in every version of our dependencies.

/// Seed from the prompt text: a stable 64-bit FNV-1a hash (do not use std's randomized hasher).
pub fn seed_from_prompt(prompt: &str) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    prompt.bytes().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// xorshift64*: tiny, fast and fully specified, so scenes never change when
/// a dependency's RNG does.
pub(super) struct XorShift(u64);

impl XorShift {
    pub(super) fn new(seed: u64) -> Self {
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
    pub(super) fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u32 << 24) as f32
    }

    pub(super) fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in `lo..=hi`; the modulo bias is irrelevant for art.
    pub(super) fn int(&mut self, lo: i32, hi: i32) -> i32 {
        let span = (hi - lo + 1).unsigned_abs();
        lo + (self.next_u64() % u64::from(span)) as i32
    }

    pub(super) fn sign(&mut self) -> f32 {
        if self.next_u64() & 1 == 0 { -1.0 } else { 1.0 }
    }
}
