//! The search for the most users that meet the SLO: double until a step
//! breaks it, then bisect. What a step runs is the caller's business.

use serde::Serialize;

use super::step::Step;

/// The result of a ramp.
#[derive(Debug, Clone, Serialize)]
pub struct Ramp {
    /// In the order they ran.
    pub steps: Vec<Step>,
    /// The most users that met the SLO (0: not even the first step did).
    pub best: usize,
    /// The fewest users that broke it, if any did.
    pub first_failing: Option<usize>,
    /// True when the ramp hit the user cap without breaking the SLO.
    pub capped: bool,
}

/// Doubles the users from `start` until a step fails the SLO (or `max` is
/// reached), then bisects between the last good and the first bad number
/// until they are within `tolerance` (a share of the good number) or 1.
///
/// # Errors
/// When a step fails to run.
pub fn ramp(
    start: usize,
    max: usize,
    tolerance: f64,
    mut step: impl FnMut(usize) -> anyhow::Result<Step>,
) -> anyhow::Result<Ramp> {
    let mut steps = Vec::new();
    let mut good = 0usize;
    let mut bad: Option<usize> = None;
    let mut users = start.clamp(1, max.max(1));
    loop {
        let s = step(users)?;
        let ok = s.meets_slo;
        steps.push(s);
        if ok {
            good = users;
            if users >= max {
                break;
            }
            users = (users * 2).min(max);
        } else {
            bad = Some(users);
            break;
        }
    }
    if let Some(mut hi) = bad {
        loop {
            let gap = hi - good;
            let enough = (good as f64 * tolerance).max(1.0);
            if gap as f64 <= enough {
                break;
            }
            let mid = good + gap / 2;
            if mid == good || mid == hi {
                break;
            }
            let s = step(mid)?;
            let ok = s.meets_slo;
            steps.push(s);
            if ok {
                good = mid;
            } else {
                hi = mid;
            }
        }
        bad = Some(hi);
    }
    Ok(Ramp {
        steps,
        best: good,
        first_failing: bad,
        capped: bad.is_none(),
    })
}
