//! The health of one provider account as the dispatcher sees it: a circuit
//! breaker over failed calls, the slots the account really takes (lowered
//! when the provider says it is full, raised again slowly), and a pause when
//! the account cannot pay or refuses our credentials.
//!
//! Pure bookkeeping with the clock passed in; the dispatcher asks
//! [`Health::gate`] before each submission and reports every outcome.

use serde::Serialize;
use utoipa::ToSchema;

/// Knobs of one account's health.
#[derive(Debug, Clone, Copy)]
pub struct HealthSettings {
    /// Consecutive failed calls that open the circuit.
    pub failures: u32,
    /// First open period; doubled after each failed probe.
    pub cooldown_ms: i64,
    pub max_cooldown_ms: i64,
    /// Pause after the account ran out of balance or refused our keys.
    pub pause_ms: i64,
    /// After the provider said "full", one slot comes back per this long
    /// without another such answer.
    pub recover_ms: i64,
    /// A probe whose outcome was never reported (its task was canceled
    /// before the call, say) stops counting after this long.
    pub probe_timeout_ms: i64,
}

/// Why the account takes no work for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountProblem {
    /// Out of balance, resource pack used up, in arrears.
    Exhausted,
    /// Credentials refused.
    Unauthorized,
}

#[derive(Debug, Clone)]
struct Pause {
    until: i64,
    problem: AccountProblem,
    message: String,
}

/// What the gate says about one more submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Go ahead.
    Open,
    /// Go ahead: this one probes an open circuit or a paused account.
    Probe,
    /// Not now (circuit open, account paused or all usable slots taken).
    Closed,
}

#[derive(Debug)]
pub(crate) struct Health {
    s: HealthSettings,
    /// The configured slots.
    limit: usize,
    /// The slots used now: `limit`, or fewer after the provider said full.
    effective: usize,
    last_full_at: i64,
    consecutive_failures: u32,
    open_until: Option<i64>,
    cooldown_ms: i64,
    /// When the submission probing a blocked account went out; only a
    /// submission's outcome (or the timeout) ends it.
    probe_since: Option<i64>,
    pause: Option<Pause>,
    /// Times the circuit opened and the account paused, for the stats.
    pub(crate) opened: u64,
    /// The last failed call without a usable answer, kept after recovery
    /// (its time says how old it is).
    last_error: Option<LastError>,
}

#[derive(Debug, Clone)]
struct LastError {
    at: i64,
    message: String,
    fix: Option<&'static str>,
}

/// The last call to a provider that failed without a usable answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LastErrorView {
    /// When (RFC 3339).
    pub at: String,
    /// What happened, with its cause (URLs redacted), e.g. "certificate not
    /// trusted (UnknownIssuer)" or "connection refused".
    pub message: String,
    /// What an operator can do about it, when there is something to say.
    pub fix: Option<String>,
}

/// What `/v1/admin/stats` shows of an account's health.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthView {
    /// `closed` (calls flow), `open` (no calls until it cools down) or
    /// `half_open` (one probe allowed).
    pub circuit: &'static str,
    pub consecutive_failures: u32,
    /// Slots gengate uses now (below the configured limit after the
    /// provider said the account was full).
    pub effective_limit: usize,
    /// Set while dispatching is paused for an account problem.
    pub account_problem: Option<AccountProblem>,
    pub account_message: Option<String>,
    /// Times the circuit has opened since start.
    pub circuit_opened: u64,
    /// The last call that failed without a usable answer (unreachable,
    /// 5xx, timeout, garbage), even if calls work again since.
    pub last_error: Option<LastErrorView>,
}

impl Health {
    pub(crate) fn new(limit: usize, s: HealthSettings) -> Self {
        Self {
            s,
            limit,
            effective: limit,
            last_full_at: 0,
            consecutive_failures: 0,
            open_until: None,
            cooldown_ms: s.cooldown_ms,
            probe_since: None,
            pause: None,
            opened: 0,
            last_error: None,
        }
    }

    /// Remembers a failed call's cause for the stats.
    pub(crate) fn note_error(&mut self, now: i64, message: &str, fix: Option<&'static str>) {
        self.last_error = Some(LastError {
            at: now,
            message: message.to_owned(),
            fix,
        });
    }

    /// Whether one more submission may go now, given `in_flight` slots in use.
    pub(crate) fn gate(&mut self, now: i64, in_flight: usize) -> Gate {
        if self.effective < self.limit && now - self.last_full_at >= self.s.recover_ms {
            self.effective += 1;
            self.last_full_at = now;
        }
        if in_flight >= self.effective {
            return Gate::Closed;
        }
        let blocked_until = self
            .pause
            .as_ref()
            .map(|p| p.until)
            .into_iter()
            .chain(self.open_until)
            .max();
        let probing = self
            .probe_since
            .is_some_and(|at| now - at < self.s.probe_timeout_ms);
        match blocked_until {
            None => Gate::Open,
            Some(until) if now < until || probing => Gate::Closed,
            Some(_) => {
                self.probe_since = Some(now);
                Gate::Probe
            }
        }
    }

    /// When the lane may next submit, if it is blocked by time (not slots).
    pub(crate) fn blocked_until(&self, now: i64) -> Option<i64> {
        let until = self
            .pause
            .as_ref()
            .map(|p| p.until)
            .into_iter()
            .chain(self.open_until)
            .max()?;
        (until > now).then_some(until)
    }

    /// Whether the account takes work now or soon: used to decide failover.
    pub(crate) fn available(&self, now: i64) -> bool {
        self.blocked_until(now).is_none()
    }

    /// Whether status queries may go now; `Some(at)` postpones them.
    pub(crate) fn polls_blocked_until(&self, now: i64) -> Option<i64> {
        self.open_until.filter(|&at| at > now)
    }

    /// The provider took a submission.
    pub(crate) fn on_accepted(&mut self) {
        self.pause = None;
        self.on_answer();
    }

    /// The provider answered a submission (refusing the request itself,
    /// say): it is reachable.
    pub(crate) fn on_answer(&mut self) {
        self.probe_since = None;
        self.on_poll_answer();
    }

    /// The provider answered a status query: it is reachable. Says nothing
    /// about the account's balance, so a pause stays.
    pub(crate) fn on_poll_answer(&mut self) {
        self.consecutive_failures = 0;
        self.open_until = None;
        self.cooldown_ms = self.s.cooldown_ms;
    }

    /// A submission was not made after all (its task was canceled or moved
    /// between the gate and the call): a probe it was is given back.
    pub(crate) fn abandon_probe(&mut self) {
        self.probe_since = None;
    }

    /// A submission failed without an answer (unreachable, 5xx, timeout,
    /// garbage). Returns `true` when this opened the circuit.
    pub(crate) fn on_failure(&mut self, now: i64) -> bool {
        let probe_failed = self.probe_since.take().is_some();
        self.count_failure(now, probe_failed)
    }

    /// A status query failed without an answer.
    pub(crate) fn on_poll_failure(&mut self, now: i64) -> bool {
        self.count_failure(now, false)
    }

    fn count_failure(&mut self, now: i64, probe_failed: bool) -> bool {
        self.consecutive_failures += 1;
        let was_open = self.open_until.is_some();
        if probe_failed || self.consecutive_failures >= self.s.failures {
            if was_open {
                self.cooldown_ms = (self.cooldown_ms * 2).min(self.s.max_cooldown_ms);
            }
            self.open_until = Some(now + self.cooldown_ms);
            if !was_open {
                self.opened += 1;
                return true;
            }
        }
        false
    }

    /// The provider said the account is full while `others` of our tasks
    /// held slots there: use no more than that (at least one).
    /// Returns whether that lowered the slots used.
    pub(crate) fn on_full(&mut self, now: i64, others: usize) -> bool {
        let before = self.effective;
        self.effective = others.clamp(1, self.limit);
        self.last_full_at = now;
        self.on_answer();
        self.effective < before
    }

    /// The account cannot take work: pause dispatching to it.
    pub(crate) fn on_account_problem(
        &mut self,
        now: i64,
        problem: AccountProblem,
        message: String,
    ) {
        self.on_answer();
        self.pause = Some(Pause {
            until: now + self.s.pause_ms,
            problem,
            message,
        });
    }

    /// The slots used now (the configured limit, or fewer after the
    /// provider said the account was full).
    pub(crate) fn effective(&self) -> usize {
        self.effective
    }

    pub(crate) fn view(&self, now: i64) -> HealthView {
        let circuit = match self.open_until {
            None => "closed",
            Some(at) if at > now => "open",
            Some(_) => "half_open",
        };
        HealthView {
            circuit,
            consecutive_failures: self.consecutive_failures,
            effective_limit: self.effective,
            account_problem: self.pause.as_ref().map(|p| p.problem),
            account_message: self.pause.as_ref().map(|p| p.message.clone()),
            circuit_opened: self.opened,
            last_error: self.last_error.as_ref().map(|e| LastErrorView {
                at: gengate_core::time::rfc3339(e.at),
                message: e.message.clone(),
                fix: e.fix.map(str::to_owned),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> HealthSettings {
        HealthSettings {
            failures: 3,
            cooldown_ms: 1000,
            max_cooldown_ms: 4000,
            pause_ms: 10_000,
            recover_ms: 5000,
            probe_timeout_ms: 20_000,
        }
    }

    #[test]
    fn circuit_opens_after_consecutive_failures_and_probes_once() {
        let mut h = Health::new(4, settings());
        assert!(!h.on_failure(0));
        assert!(!h.on_failure(1));
        h.on_answer();
        assert!(!h.on_failure(2) && !h.on_failure(3));
        assert!(h.on_failure(4), "third failure in a row opens it");
        assert_eq!(h.gate(500, 0), Gate::Closed);
        assert_eq!(h.polls_blocked_until(500), Some(1004));
        assert_eq!(h.gate(1004, 0), Gate::Probe);
        assert_eq!(h.gate(1004, 0), Gate::Closed, "one probe at a time");
        assert!(!h.on_failure(1100), "a failed probe re-opens, longer");
        assert_eq!(h.blocked_until(1100), Some(3100));
        assert_eq!(h.gate(3100, 0), Gate::Probe);
        h.on_accepted();
        assert_eq!(h.gate(3101, 0), Gate::Open);
        assert_eq!(h.view(3101).circuit, "closed");
    }

    #[test]
    fn full_account_lowers_slots_then_recovers_one_at_a_time() {
        let mut h = Health::new(4, settings());
        h.on_full(100, 2);
        assert_eq!(h.gate(200, 2), Gate::Closed);
        assert_eq!(h.gate(200, 1), Gate::Open);
        assert_eq!(h.gate(5100, 3), Gate::Closed, "one slot back after 5 s");
        assert_eq!(h.view(5100).effective_limit, 3);
        assert_eq!(h.gate(5100, 2), Gate::Open);
        h.on_full(6000, 0);
        assert_eq!(h.view(6000).effective_limit, 1, "never below one");
    }

    #[test]
    fn account_problem_pauses_until_a_probe_succeeds() {
        let mut h = Health::new(2, settings());
        h.on_account_problem(0, AccountProblem::Exhausted, "1102: no balance".into());
        assert_eq!(h.gate(9_999, 0), Gate::Closed);
        assert!(!h.available(9_999));
        assert_eq!(h.view(1).account_problem, Some(AccountProblem::Exhausted));
        assert_eq!(h.gate(10_000, 0), Gate::Probe);
        h.on_poll_answer();
        assert_eq!(
            h.gate(10_001, 0),
            Gate::Closed,
            "a poll does not end the probe"
        );
        h.abandon_probe();
        assert_eq!(
            h.gate(10_002, 0),
            Gate::Probe,
            "an abandoned probe is handed out again"
        );
        assert_eq!(h.gate(30_001, 0), Gate::Closed);
        assert_eq!(h.gate(30_002, 0), Gate::Probe, "a lost probe times out");
        h.on_accepted();
        assert_eq!(h.view(10_001).account_problem, None);
        assert_eq!(h.gate(10_001, 0), Gate::Open);
    }
}
