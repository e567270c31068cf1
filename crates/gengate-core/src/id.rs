//! Task identifiers: `tsk_` + 26 Crockford base32 characters encoding a
//! 48-bit millisecond timestamp and 80 random bits (the ULID layout).
//!
//! Ids sort by creation time, so "newest first" and cursor paging can order by
//! id alone, and two nodes never need to coordinate to mint one.

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// The prefix every task id carries, so ids of different kinds never mix.
pub const TASK_PREFIX: &str = "tsk_";
const BODY_LEN: usize = 26;

/// Builds a task id from a creation time and 80 bits of randomness.
/// The caller supplies both, which keeps this function pure.
pub fn task_id(now_ms: i64, random: u128) -> String {
    let value: u128 = ((now_ms as u128 & 0xFFFF_FFFF_FFFF) << 80) | (random & ((1u128 << 80) - 1));
    let mut out = String::with_capacity(TASK_PREFIX.len() + BODY_LEN);
    out.push_str(TASK_PREFIX);
    for i in (0..BODY_LEN).rev() {
        let digit = ((value >> (i * 5)) & 0x1F) as usize;
        out.push(ALPHABET[digit] as char);
    }
    out
}

/// Mints task ids that sort in the order they were made, even within one
/// millisecond: a repeated (or backwards) millisecond reuses the last one and
/// increments the random part, as monotonic ULIDs do.
#[derive(Debug, Default)]
pub struct IdGen {
    last_ms: i64,
    last_random: u128,
}

impl IdGen {
    /// The next id, given the time and 80 fresh random bits.
    pub fn next(&mut self, now_ms: i64, random: u128) -> String {
        const MASK: u128 = (1u128 << 80) - 1;
        if now_ms > self.last_ms {
            self.last_ms = now_ms;
            // Leave room above so increments within the millisecond cannot
            // overflow into the timestamp.
            self.last_random = (random & MASK) >> 1;
        } else {
            self.last_random = (self.last_random + 1) & MASK;
        }
        task_id(self.last_ms, self.last_random)
    }
}

/// Whether `s` has the shape of a task id (it may still name no task).
pub fn is_task_id(s: &str) -> bool {
    s.strip_prefix(TASK_PREFIX).is_some_and(|body| {
        body.len() == BODY_LEN
            && body.bytes().all(|b| ALPHABET.contains(&b))
            && body.as_bytes()[0] <= b'7'
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_validate() {
        let a = task_id(1_700_000_000_000, u128::MAX);
        let b = task_id(1_700_000_000_001, 0);
        assert!(a < b);
        assert!(is_task_id(&a) && is_task_id(&b));
        assert_eq!(a.len(), 30);
        assert!(!is_task_id("tsk_short"));
        assert!(!is_task_id("tsk_0000000000000000000000000I"));
        assert!(!is_task_id("abc_00000000000000000000000000"));
    }

    #[test]
    fn generated_ids_are_monotonic_within_a_millisecond_and_across_clock_steps_back() {
        let mut g = IdGen::default();
        let mut last = String::new();
        for (now, random) in [
            (5, u128::MAX),
            (5, 0),
            (5, 7),
            (4, 1),
            (6, 0),
            (6, u128::MAX),
        ] {
            let id = g.next(now, random);
            assert!(id > last, "{id} after {last}");
            last = id;
        }
    }
}
