//! When requests are sent, and by how many connections: closed loop (each
//! connection sends its next request when the previous one is answered, after
//! an optional think time) or open loop (request *i* is planned at
//! `start + i / rate`, and its latency is measured from that planned time, so
//! a server that stalls cannot hide the queue it causes: coordinated omission
//! corrected, as wrk2 does).
//!
//! Connections are spread over OS threads, each running a `current_thread`
//! runtime with a `LocalSet`, each thread with its own [`Stats`] merged at the
//! end. What a connection sends is the scenario's business: [`run`] takes any
//! [`Drive`] ([`crate::scenario::Plan`] is the one bench uses), so this module
//! knows when requests go out and never what they are.

use std::cell::RefCell;
use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use rand::SeedableRng as _;
use rand::rngs::StdRng;

use crate::client::{Answer, Body, Conn, ErrorKind};
use crate::collect::{Live, Stats};

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// Each connection sends again as soon as it has its answer, after
    /// `think` (zero: as fast as possible).
    Closed { think: Duration },
    /// A constant arrival rate over all connections, in requests per second.
    Open { rate: f64 },
}

/// How a run is shaped.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Where connections go, round-robin by connection (several nodes of a
    /// cluster sharing one store; usually one).
    pub addrs: Vec<SocketAddr>,
    pub connections: usize,
    /// OS threads generating load (at most one per connection).
    pub threads: usize,
    pub load: Load,
    /// The run stops at this time after the start…
    pub duration: Option<Duration>,
    /// …or after this many requests, whichever comes first.
    pub requests: Option<u64>,
    /// A request without a complete answer by then counts as a `timeout` error.
    pub timeout: Duration,
    /// Print a live progress line on stderr (only when it is a terminal).
    pub progress: bool,
}

/// When the run ends, shared by every connection.
#[derive(Debug)]
pub struct Stop {
    pub start: Instant,
    deadline: Option<Instant>,
    budget: Option<u64>,
    /// Requests started so far (closed loop's share of the budget).
    issued: AtomicU64,
}

impl Stop {
    fn over(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// One connection's view of the run: its socket, its thread's stats, the
/// stop rule, and its own random numbers.
pub struct Session {
    addr: SocketAddr,
    conn: Option<Conn>,
    stats: Rc<RefCell<Stats>>,
    /// Only with a progress line: shared counters cost a cache line
    /// bouncing between the load threads on every request.
    live: Option<Arc<Live>>,
    stop: Arc<Stop>,
    timeout: Duration,
    /// This connection's number, `0..connections`.
    pub index: usize,
    pub connections: usize,
    pub rng: StdRng,
}

impl Session {
    pub fn start(&self) -> Instant {
        self.stop.start
    }

    /// Whether the run still goes on.
    pub fn running(&self) -> bool {
        !self.stop.over()
    }

    /// Takes one request from the run's budget; `false` when it is spent or
    /// the time is up.
    pub fn take_slot(&self) -> bool {
        if self.stop.over() {
            return false;
        }
        match self.stop.budget {
            None => true,
            Some(b) => self.stop.issued.fetch_add(1, Ordering::Relaxed) < b,
        }
    }

    /// Sleeps; `false` if the run ended first.
    pub async fn sleep_until(&self, t: Instant) -> bool {
        if let Some(d) = self.stop.deadline
            && d <= t
        {
            tokio::time::sleep_until(d.into()).await;
            return false;
        }
        tokio::time::sleep_until(t.into()).await;
        true
    }

    pub async fn sleep(&self, d: Duration) -> bool {
        self.sleep_until(Instant::now() + d).await
    }

    pub fn stats(&self) -> std::cell::RefMut<'_, Stats> {
        self.stats.borrow_mut()
    }

    /// Opens the connection now (before the start, so connecting is not
    /// measured as the first request's latency).
    async fn connect(&mut self) {
        if self.conn.is_none() {
            match Conn::open(self.addr).await {
                Ok(c) => self.conn = Some(c),
                Err(kind) => self.error(kind),
            }
        }
    }

    fn error(&self, kind: ErrorKind) {
        self.stats.borrow_mut().error(kind);
        if let Some(live) = &self.live {
            live.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends a request planned at `planned` and records its answer under
    /// `op`, with its latency measured from `planned`. `held` operations
    /// (long polls, event streams: their latency is the wait the client
    /// asked for) are reported on their own, outside the overall figures.
    /// `None` when there was no answer (counted as an error) or the run ended
    /// while waiting (not counted).
    pub async fn request(
        &mut self,
        op: &'static str,
        req: Request<Full<Bytes>>,
        body: Body,
        planned: Instant,
        held: bool,
    ) -> Option<Answer> {
        if self.conn.is_none() {
            self.connect().await;
            if self.conn.is_none() {
                // Do not spin when the server is down.
                self.sleep(Duration::from_millis(10)).await;
                return None;
            }
        }
        let conn = self.conn.as_mut()?;
        // One timer per request: the request timeout or the end of the run,
        // whichever comes first.
        let limit = Instant::now() + self.timeout;
        let until = self.stop.deadline.map_or(limit, |d| d.min(limit));
        let sent = Instant::now();
        let result = tokio::time::timeout_at(until.into(), conn.send(req, body)).await;
        let answer = match result {
            Ok(Ok(a)) => a,
            Ok(Err(kind)) => {
                self.conn = None;
                self.error(kind);
                return None;
            }
            Err(_) if self.stop.over() => return None,
            Err(_) => {
                self.conn = None;
                self.error(ErrorKind::Timeout);
                return None;
            }
        };
        if matches!(body, Body::Until(_)) {
            // The stream was left open; this connection cannot be reused.
            self.conn = None;
        }
        // From the planned time when the request went out late (the open
        // loop's correction), from the send when the timer woke a little
        // early: never less than the server took.
        let latency = Instant::now().saturating_duration_since(planned.min(sent));
        let mut stats = self.stats.borrow_mut();
        if held {
            stats.held(op, answer.status.as_u16(), latency, answer.wire_bytes);
        } else {
            stats.answer(op, answer.status.as_u16(), latency, answer.wire_bytes);
            if let Some(live) = &self.live {
                live.answers.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(stats);
        Some(answer)
    }
}

/// What one connection does for the whole run, given its [`Session`]:
/// which requests it sends, paced by [`paced`] or by its own think time.
pub trait Drive {
    /// Drives connection `s.index` until the run ends.
    fn drive(&self, s: &mut Session) -> impl Future<Output = ()>;
}

/// The granularity of tokio's timer.
const TIMER_TICK: Duration = Duration::from_millis(1);

/// Sends the requests `make` builds, paced by `load`, until the run ends.
pub async fn paced(
    s: &mut Session,
    load: Load,
    mut make: impl FnMut(&mut Session, u64) -> (&'static str, Request<Full<Bytes>>),
) {
    match load {
        Load::Closed { think } => {
            // With think time, spread the connections' first requests over
            // one think time, as people do not all click at once.
            if !think.is_zero() {
                let offset = think.mul_f64(s.index as f64 / s.connections as f64);
                if !s.sleep(offset).await {
                    return;
                }
            }
            let mut i = 0u64;
            while s.take_slot() {
                let (op, req) = make(s, i);
                s.request(op, req, Body::Discard, Instant::now(), false)
                    .await;
                i += 1;
                if !think.is_zero() && !s.sleep(think).await {
                    break;
                }
            }
        }
        Load::Open { rate } => {
            // Connection k sends requests k, k + C, k + 2C, …, request i
            // planned at start + i / rate: together, one arrival every 1/rate.
            let step = s.connections as u64;
            let mut i = s.index as u64;
            loop {
                if s.stop.budget.is_some_and(|b| i >= b) {
                    break;
                }
                let planned = s.stop.start + Duration::from_secs_f64(i as f64 / rate);
                // tokio's timer fires on the first millisecond tick at or
                // after the deadline; aiming one tick early centres the wake
                // on the planned time instead of up to 1 ms after it.
                if !s
                    .sleep_until(planned - TIMER_TICK.min(planned - s.stop.start))
                    .await
                {
                    break;
                }
                let (op, req) = make(s, i);
                s.request(op, req, Body::Discard, planned, false).await;
                i += step;
            }
        }
    }
}

/// Runs `plan` as `spec` says and returns the merged stats and the
/// measured duration (from the start to the last answer or the deadline).
///
/// # Errors
/// When a load thread cannot start its runtime.
pub fn run<P>(spec: &RunSpec, plan: &Arc<P>) -> anyhow::Result<(Stats, Duration)>
where
    P: Drive + Send + Sync + 'static,
{
    let connections = spec.connections.max(1);
    let threads = spec.threads.clamp(1, connections);
    // Leave time for the threads to open their connections before the start.
    let start = Instant::now() + Duration::from_millis(50 + connections as u64 / 20);
    let stop = Arc::new(Stop {
        start,
        deadline: spec.duration.map(|d| start + d),
        budget: spec.requests,
        issued: AtomicU64::new(0),
    });
    let live = Arc::new(Live::default());
    let finished = Arc::new(AtomicBool::new(false));
    let show = spec.progress && std::io::stderr().is_terminal();
    let progress = show.then(|| {
        let live = live.clone();
        let finished = finished.clone();
        std::thread::spawn(move || progress_line(start, &live, &finished))
    });
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let plan = plan.clone();
            let stop = stop.clone();
            let live = live.clone();
            let spec = spec.clone();
            std::thread::Builder::new()
                .name(format!("bench-{t}"))
                .spawn(move || -> anyhow::Result<(Stats, Instant)> {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    let stats = Rc::new(RefCell::new(Stats::default()));
                    let local = tokio::task::LocalSet::new();
                    let mut joins = Vec::new();
                    for index in (t..connections).step_by(threads) {
                        let mut session = Session {
                            addr: spec.addrs[index % spec.addrs.len()],
                            conn: None,
                            stats: stats.clone(),
                            live: show.then(|| live.clone()),
                            stop: stop.clone(),
                            timeout: spec.timeout,
                            index,
                            connections,
                            rng: StdRng::seed_from_u64(0x9e37_79b9 ^ index as u64),
                        };
                        let plan = plan.clone();
                        joins.push(local.spawn_local(async move {
                            session.connect().await;
                            tokio::time::sleep_until(session.start().into()).await;
                            plan.drive(&mut session).await;
                            Instant::now()
                        }));
                    }
                    let last = local.block_on(&rt, async {
                        let mut last = start;
                        for j in joins {
                            if let Ok(at) = j.await {
                                last = last.max(at);
                            }
                        }
                        last
                    });
                    drop(local);
                    let stats = std::mem::take(&mut *stats.borrow_mut());
                    Ok((stats, last))
                })
        })
        .collect::<Result<_, _>>()?;
    let mut merged = Stats::default();
    let mut last = start;
    for h in handles {
        let (stats, at) = h
            .join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
        merged.merge(&stats);
        last = last.max(at);
    }
    finished.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        let _ = p.join();
    }
    let end = match stop.deadline {
        Some(d) => last.min(d),
        None => last,
    };
    Ok((merged, end.saturating_duration_since(start)))
}

fn progress_line(start: Instant, live: &Live, finished: &AtomicBool) {
    let mut err = std::io::stderr();
    let mut prev = (0, start.max(Instant::now()));
    while !finished.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(250));
        let now = Instant::now();
        if now < start || now.duration_since(prev.1) < Duration::from_secs(1) {
            continue;
        }
        let (answers, errors) = live.snapshot();
        let rps = (answers - prev.0) as f64 / now.duration_since(prev.1).as_secs_f64();
        let _ = write!(
            err,
            "\r\x1b[2K  {:>6.1}s  {answers:>10} requests  {rps:>10.0} req/s  {errors} errors",
            now.duration_since(start).as_secs_f64()
        );
        let _ = err.flush();
        prev = (answers, now);
    }
    let _ = write!(err, "\r\x1b[2K");
    let _ = err.flush();
}
