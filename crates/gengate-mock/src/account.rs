//! A mock account's books: its jobs and where each is, the slots they hold
//! against the account's concurrency, the counters `/_mock/stats` shows,
//! errors a test asked for, and the callbacks it posts.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use gengate_core::ModelKind;
use rand::Rng;
use serde_json::{Value, json};

use crate::config::MockConfig;
use crate::render;
use crate::sim::{now_ms, prompt_of};

/// Where a mock job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl Phase {
    pub(crate) fn is_final(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed | Phase::Canceled)
    }
}

/// One job at a mock account.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub(crate) id: String,
    pub(crate) external_id: Option<String>,
    pub(crate) kind: ModelKind,
    /// The provider operation that made it (Kling's `text2video`, …).
    pub(crate) family: String,
    pub(crate) seed: u64,
    pub(crate) caption: String,
    pub(crate) input: Value,
    /// The request body as received, for tests that check the mapping.
    pub(crate) request: Value,
    pub(crate) start_ms: i64,
    pub(crate) done_ms: i64,
    pub(crate) fails: bool,
    pub(crate) canceled_at: Option<i64>,
    /// Account slots it holds while unfinished.
    pub(crate) slots: usize,
    /// Outputs it makes when it succeeds.
    pub(crate) outputs: usize,
    pub(crate) callback_url: Option<String>,
}

impl Job {
    pub(crate) fn phase(&self, now: i64) -> Phase {
        if self.canceled_at.is_some() {
            Phase::Canceled
        } else if now >= self.done_ms {
            if self.fails {
                Phase::Failed
            } else {
                Phase::Succeeded
            }
        } else if (now - self.start_ms) * 10 < (self.done_ms - self.start_ms) {
            Phase::Queued
        } else {
            Phase::Running
        }
    }

    /// When the job moves from queued to running.
    pub(crate) fn running_at(&self) -> i64 {
        self.start_ms + (self.done_ms - self.start_ms + 9) / 10
    }

    pub(crate) fn progress(&self, now: i64) -> f64 {
        let span = (self.done_ms - self.start_ms).max(1) as f64;
        ((now - self.start_ms) as f64 / span).clamp(0.0, 1.0)
    }
}

/// The account's books.
#[derive(Default)]
pub(crate) struct Ledger {
    pub(crate) jobs: HashMap<String, Job>,
    pub(crate) by_external: HashMap<String, String>,
    /// Unfinished jobs by end time, and the slots each holds.
    active: BTreeMap<(i64, String), usize>,
    active_slots: usize,
    pub(crate) submissions: u64,
    /// Submissions refused because the account was full.
    pub(crate) refused: u64,
    /// Submissions refused because their external id was taken.
    pub(crate) duplicates: u64,
    /// Status queries received.
    pub(crate) polls: u64,
    pub(crate) callbacks_sent: u64,
    pub(crate) callbacks_dropped: u64,
    /// Requests refused for bad credentials or signatures.
    pub(crate) auth_failures: u64,
    peak_slots: usize,
    next_id: u64,
    /// Errors a test asked for (`POST /_mock/inject`), in the provider's own
    /// terms (its error code), answered to the next submissions in order.
    forced: VecDeque<String>,
}

impl Ledger {
    fn expire(&mut self, now: i64) {
        while let Some(((done, _), slots)) = self.active.first_key_value() {
            if *done > now {
                break;
            }
            self.active_slots -= *slots;
            self.active.pop_first();
        }
    }

    /// Whether `slots` more fit in the account now; counts a refusal if not.
    pub(crate) fn admit(&mut self, now: i64, slots: usize, limit: usize) -> bool {
        self.expire(now);
        if self.active_slots + slots > limit {
            self.refused += 1;
            return false;
        }
        true
    }

    /// A fresh job id: `next` makes it from the sequence number.
    pub(crate) fn next_id(&mut self, make: impl FnOnce(u64) -> String) -> String {
        self.next_id += 1;
        make(self.next_id)
    }

    /// Records an admitted job.
    pub(crate) fn add(&mut self, job: Job) {
        self.submissions += 1;
        self.active.insert((job.done_ms, job.id.clone()), job.slots);
        self.active_slots += job.slots;
        self.peak_slots = self.peak_slots.max(self.active_slots);
        if let Some(ext) = &job.external_id {
            self.by_external.insert(ext.clone(), job.id.clone());
        }
        self.jobs.insert(job.id.clone(), job);
    }

    /// Cancels an unfinished job; `false` when it had finished already.
    pub(crate) fn cancel(&mut self, id: &str, now: i64) -> bool {
        let Some(job) = self.jobs.get_mut(id) else {
            return false;
        };
        if job.phase(now).is_final() {
            return false;
        }
        job.canceled_at = Some(now);
        if let Some(slots) = self.active.remove(&(job.done_ms, job.id.clone())) {
            self.active_slots -= slots;
        }
        true
    }

    /// Answers the next `count` submissions with the provider error `code`.
    pub(crate) fn force(&mut self, code: &str, count: usize) {
        for _ in 0..count {
            self.forced.push_back(code.to_owned());
        }
    }

    /// The next error a test injected, if any: the provider's error code.
    pub(crate) fn take_forced(&mut self) -> Option<String> {
        self.forced.pop_front()
    }

    pub(crate) fn in_flight(&mut self, now: i64) -> usize {
        self.expire(now);
        self.active.len()
    }
}

/// A mock account: its settings, books and the client it posts callbacks
/// with.
pub(crate) struct Account {
    pub(crate) cfg: MockConfig,
    ledger: Mutex<Ledger>,
    http: reqwest::Client,
}

pub(crate) type SharedAccount = Arc<Account>;

impl Account {
    pub(crate) fn new(cfg: MockConfig) -> SharedAccount {
        let http = gengate_net::Outbound::default().tool(Duration::from_secs(5));
        Arc::new(Account {
            cfg,
            ledger: Mutex::default(),
            http,
        })
    }

    pub(crate) fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().expect("mock ledger lock")
    }

    /// A new job's timing and fate, drawn from the account's behaviour.
    pub(crate) fn draw_job(
        &self,
        id: String,
        kind: ModelKind,
        family: &str,
        input: Value,
        request: Value,
        now: i64,
    ) -> Job {
        let (latency, fails) = self.cfg.behavior.draw(&mut rand::thread_rng());
        let caption = prompt_of(&input).to_owned();
        Job {
            id,
            external_id: None,
            kind,
            family: family.to_owned(),
            seed: render::seed_from_prompt(&caption),
            caption,
            input,
            request,
            start_ms: now,
            done_ms: now + latency.as_millis() as i64,
            fails,
            canceled_at: None,
            slots: 1,
            outputs: 1,
            callback_url: None,
        }
    }

    /// The URL of output `index` of a finished job, with its expiry when the
    /// account's URLs expire.
    pub(crate) fn output_url(&self, job: &Job, index: usize) -> String {
        let ext = match job.kind {
            ModelKind::Image => "png",
            ModelKind::Video => "avi",
        };
        let base = format!("{}/files/{}-{index}.{ext}", self.cfg.public_url, job.id);
        match self.cfg.url_ttl {
            Some(ttl) => format!("{base}?expires={}", job.done_ms + ttl.as_millis() as i64),
            None => base,
        }
    }

    /// Posts `body` to `url` at `at_ms` unless the job was canceled by then
    /// (or the callback is dropped by fault injection). `body` is built at
    /// send time from the job as it is then.
    pub(crate) fn post_at(
        self: &Arc<Self>,
        job_id: String,
        url: String,
        at_ms: i64,
        body: impl FnOnce(&Job, i64) -> Option<Value> + Send + 'static,
    ) {
        let account = self.clone();
        tokio::spawn(async move {
            let wait = (at_ms - now_ms()).max(0) as u64;
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let now = now_ms();
            let payload = {
                let mut l = account.ledger();
                let Some(job) = l.jobs.get(&job_id).cloned() else {
                    return;
                };
                let Some(payload) = body(&job, now) else {
                    return;
                };
                if rand::thread_rng().gen_bool(account.cfg.faults.drop_webhooks.clamp(0.0, 1.0)) {
                    l.callbacks_dropped += 1;
                    return;
                }
                l.callbacks_sent += 1;
                payload
            };
            // One retry, as the real services retry a receiver that fails.
            for delay in [0u64, 1000] {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                match account.http.post(&url).json(&payload).send().await {
                    Ok(r) if r.status().is_success() => return,
                    _ => {}
                }
            }
        });
    }

    /// The ledger as `/_mock/stats` shows it.
    pub(crate) fn stats(&self) -> Value {
        let mut l = self.ledger();
        let in_flight = l.in_flight(now_ms());
        json!({
            "submissions": l.submissions,
            "in_flight": in_flight,
            "slots_in_use": l.active_slots,
            "peak_concurrency": l.peak_slots,
            "refused": l.refused,
            "duplicates": l.duplicates,
            "polls": l.polls,
            "callbacks_sent": l.callbacks_sent,
            "callbacks_dropped": l.callbacks_dropped,
            "auth_failures": l.auth_failures,
            "concurrency_limit": self.cfg.concurrency,
        })
    }
}
