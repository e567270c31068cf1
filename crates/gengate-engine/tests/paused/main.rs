//! The dispatcher's rules of time, under tokio's paused clock.
//!
//! With [`Clock::tokio`] the dispatcher reads the time tokio's timers keep,
//! so an hour of polls and a deadline pass in a moment of the test, exactly
//! as the timers say: no test sleeps, and none depends on the machine's
//! speed. The store is wrapped in [`steady::Steady`], so that the clock
//! does not move while SQLite's writer thread works.

mod steady;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use gengate_core::task::NewTask;
use gengate_core::{ModelKind, ModelSpec, Role, Status, Task};
use gengate_engine::Clock;
use gengate_engine::dispatch::{Dispatcher, HealthSettings, LaneConfig, Settings};
use gengate_engine::hub::Hub;
use gengate_engine::media::{self, Backend, Media};
use gengate_engine::metrics::Metrics;
use gengate_net::{Outbound, Trust};
use gengate_providers::{FollowRef, JobState, Provider, ProviderError, SubmitRequest};
use gengate_store::Store;
use tokio_util::sync::CancellationToken;

const HOUR_MS: i64 = 3_600_000;
const POLL_MAX: Duration = Duration::from_secs(60);

/// A provider whose jobs never end: it takes every submission and answers
/// every poll "still running", noting when each poll came by the test's
/// clock.
struct Endless {
    clock: Clock,
    submissions: AtomicU32,
    polls: std::sync::Mutex<Vec<i64>>,
}

#[async_trait]
impl Provider for Endless {
    fn name(&self) -> &str {
        "endless"
    }

    async fn submit(&self, _req: SubmitRequest<'_>) -> Result<String, ProviderError> {
        let n = self.submissions.fetch_add(1, Ordering::SeqCst);
        Ok(format!("job-{n}"))
    }

    async fn poll(&self, _task: FollowRef<'_>) -> Result<JobState, ProviderError> {
        self.polls.lock().unwrap().push(self.clock.now_ms());
        Ok(JobState::Pending { progress: 0.5 })
    }

    async fn cancel(&self, _task: FollowRef<'_>) -> Result<(), ProviderError> {
        Ok(())
    }
}

fn model(deadline_ms: i64) -> ModelSpec {
    ModelSpec {
        name: "slow".into(),
        provider: "endless".into(),
        kind: ModelKind::Image,
        description: String::new(),
        max_attempts: 3,
        deadline_ms,
        expected_seconds: 30.0,
        expected_range: (20.0, 40.0),
        fields: BTreeMap::new(),
        endpoint: None,
        params: serde_json::Value::Null,
        failover: None,
        price: None,
        refund_on: Default::default(),
    }
}

/// A dispatcher on a fresh SQLite store with one lane, `endless`, reading
/// `clock`; the store and the directory it lives in.
async fn dispatcher(
    provider: Arc<dyn Provider>,
    spec: &ModelSpec,
    clock: Clock,
    shutdown: CancellationToken,
) -> (Dispatcher, Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = gengate_store::open(&format!("sqlite://{}", dir.path().join("g.db").display()))
        .await
        .expect("the store opens");
    let store: Arc<dyn Store> = Arc::new(steady::Steady(store));
    let net = Outbound::new(Trust::load(None).expect("the built-in roots"));
    let media_dir = dir.path().join("media");
    let media = Media::new(
        Backend::Local {
            dir: media_dir.clone(),
            base_url: "http://127.0.0.1/media".into(),
        },
        media::Settings {
            concurrency: 1,
            max_bytes: 1 << 20,
            max_attempts: 1,
            retry_base: Duration::from_millis(10),
            allow_private: false,
            allowed_hosts: Vec::new(),
            provider_hosts: HashMap::new(),
            fetch_timeout: Duration::from_secs(5),
            in_place_providers: Vec::new(),
        },
        media_dir,
        "http://127.0.0.1/media".into(),
        &net,
    )
    .expect("the media step");
    let lane = LaneConfig {
        provider,
        concurrency: 2,
        resubmit_unknown: false,
        health: HealthSettings {
            failures: 5,
            cooldown_ms: 30_000,
            max_cooldown_ms: 300_000,
            pause_ms: 60_000,
            recover_ms: 30_000,
            probe_timeout_ms: 60_000,
        },
        poll_rate: 10.0,
        callbacks: None,
        daily_credits: None,
    };
    let settings = Settings {
        poll_initial: Duration::from_secs(2),
        poll_max: POLL_MAX,
        retry_base: Duration::from_secs(1),
        retry_max: Duration::from_secs(60),
        idempotency_ttl: Duration::from_secs(86_400),
        lease: Duration::from_secs(15),
        clock,
    };
    let dispatcher = Dispatcher::new(
        store.clone(),
        Arc::new(Hub::new(64, 64, clock.now_ms())),
        HashMap::from([("endless".to_owned(), lane)]),
        std::slice::from_ref(spec),
        settings,
        Arc::new(Metrics::default()),
        Arc::new(media),
        shutdown,
    );
    dispatcher.recover().await.expect("recovery");
    (dispatcher, store, dir)
}

/// Stores a new task of `spec`'s model, created now by `clock`, and hands
/// it to the dispatcher.
async fn create(
    store: &dyn Store,
    dispatcher: &Dispatcher,
    spec: &ModelSpec,
    clock: Clock,
) -> Task {
    let now = clock.now_ms();
    let key = store
        .create_key("ada", Role::User, "hash-of-ada", "gg_ada", now)
        .await
        .expect("a user");
    let created = store
        .create_task(
            NewTask {
                id: gengate_core::id::task_id(now, rand_bits()),
                user_id: key.user_id,
                model: spec.name.clone(),
                provider: spec.provider.clone(),
                input: serde_json::json!({"prompt": "a lighthouse"}),
                public: false,
                priority: 0,
                max_attempts: spec.max_attempts,
                deadline_at: now + spec.deadline_ms,
                created_at: now,
                webhook_url: None,
                billing: None,
                limits: Default::default(),
            },
            None,
        )
        .await
        .expect("the task is stored");
    dispatcher.enqueue(&created.task);
    created.task
}

/// Task `task` once finished, read every second of the paused clock.
async fn finished(store: &dyn Store, task: &Task, clock: Clock) -> Task {
    loop {
        let t = store.get_task(&task.id).await.unwrap().unwrap();
        if t.status.is_terminal() {
            return t;
        }
        assert!(
            clock.now_ms() < task.deadline_at + HOUR_MS,
            "still {} long after its deadline",
            t.status.as_str()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn rand_bits() -> u128 {
    u128::from(std::process::id()) << 64 | 0x5eed
}

/// A task the provider never finishes is polled all along, less often as
/// it runs on (never more than once per `poll_max` once backed off), and
/// fails with `deadline_exceeded` at its deadline, an hour after it was
/// created, not a poll later. The hour passes on tokio's paused clock.
#[tokio::test(start_paused = true)]
async fn an_endless_job_is_polled_with_backoff_and_fails_at_its_deadline() {
    let clock = Clock::tokio();
    let provider = Arc::new(Endless {
        clock,
        submissions: AtomicU32::new(0),
        polls: std::sync::Mutex::default(),
    });
    let spec = model(HOUR_MS);
    let shutdown = CancellationToken::new();
    let (dispatcher, store, _dir) =
        dispatcher(provider.clone(), &spec, clock, shutdown.clone()).await;
    let running = tokio::spawn(dispatcher.clone().run(Duration::from_secs(1)));
    let task = create(&*store, &dispatcher, &spec, clock).await;

    let finished = finished(&*store, &task, clock).await;
    assert_eq!(finished.status, Status::Failed);
    assert_eq!(finished.error.as_ref().unwrap().code, "deadline_exceeded");
    let late = finished.finished_at.unwrap() - finished.deadline_at;
    assert!(
        (0..=1_000).contains(&late),
        "failed {late} ms after its deadline"
    );
    assert_eq!(provider.submissions.load(Ordering::SeqCst), 1);
    // First polled when the quickest such tasks finish (20 s, the low end
    // of the model's expected range, spread by up to 20%), then ever less
    // often, up to one poll a minute (±10% jitter) for the rest of the hour.
    let polls: Vec<i64> = (provider.polls.lock().unwrap().iter())
        .map(|at| at - task.created_at)
        .collect();
    let gaps: Vec<i64> = polls.windows(2).map(|w| w[1] - w[0]).collect();
    assert!((20_000..25_000).contains(&polls[0]), "first poll {polls:?}");
    let max = POLL_MAX.as_millis() as i64;
    assert!(
        gaps.iter().all(|&g| g <= max * 11 / 10 + 1_000),
        "a gap above poll_max: {gaps:?}"
    );
    let backed_off = gaps
        .iter()
        .position(|&g| g >= max * 9 / 10)
        .expect("backs off");
    assert!(
        backed_off < 10,
        "backed off only after {backed_off} polls: {gaps:?}"
    );
    assert!(
        gaps[backed_off..].iter().all(|&g| g >= max * 9 / 10),
        "polled faster again after backing off: {gaps:?}"
    );
    assert!(
        HOUR_MS - polls[polls.len() - 1] <= max * 11 / 10 + 1_000,
        "polling stopped early: {polls:?}"
    );
    assert!(dispatcher.audit().is_empty(), "{:?}", dispatcher.audit());
    assert!(dispatcher.is_idle(), "the slot is free again");
    shutdown.cancel();
    running.await.unwrap().unwrap();
}

/// A provider nobody can connect to: every submission fails before a byte
/// is sent. It notes when each try came, by the test's clock.
struct Unreachable {
    clock: Clock,
    tries: std::sync::Mutex<Vec<i64>>,
}

#[async_trait]
impl Provider for Unreachable {
    fn name(&self) -> &str {
        "endless"
    }

    async fn submit(&self, _req: SubmitRequest<'_>) -> Result<String, ProviderError> {
        self.tries.lock().unwrap().push(self.clock.now_ms());
        Err(ProviderError::Unreachable {
            message: "connection refused".into(),
            fix: None,
        })
    }

    async fn poll(&self, _task: FollowRef<'_>) -> Result<JobState, ProviderError> {
        unreachable!("nothing was ever accepted")
    }

    async fn cancel(&self, _task: FollowRef<'_>) -> Result<(), ProviderError> {
        Ok(())
    }
}

/// A provider that cannot be reached costs the task no attempt: the circuit
/// opens after five failed tries, then lets one probe through per cooldown,
/// the cooldown doubling up to its maximum, and the task fails only at its
/// deadline, ten minutes on, never submitted.
#[tokio::test(start_paused = true)]
async fn an_unreachable_provider_is_probed_ever_less_often_until_the_deadline() {
    let clock = Clock::tokio();
    let provider = Arc::new(Unreachable {
        clock,
        tries: std::sync::Mutex::default(),
    });
    let spec = model(10 * 60_000);
    let shutdown = CancellationToken::new();
    let (dispatcher, store, _dir) =
        dispatcher(provider.clone(), &spec, clock, shutdown.clone()).await;
    let running = tokio::spawn(dispatcher.clone().run(Duration::from_secs(1)));
    let task = create(&*store, &dispatcher, &spec, clock).await;

    let done = finished(&*store, &task, clock).await;
    assert_eq!(done.status, Status::Failed);
    assert_eq!(done.error.as_ref().unwrap().code, "deadline_exceeded");
    assert_eq!(done.attempts, 0, "no try reached the provider");

    let tries = provider.tries.lock().unwrap().clone();
    let gaps: Vec<i64> = tries.windows(2).map(|w| w[1] - w[0]).collect();
    // Five tries open the circuit (each waits out a short retry delay).
    assert!(tries[0] - task.created_at < 1_000, "first try {tries:?}");
    assert!(tries.len() > 5, "{tries:?}");
    assert!(gaps[..4].iter().all(|&g| g < 5_000), "{gaps:?}");
    // Then one probe per cooldown: 30 s, 60 s, 120 s, 240 s (the 300 s
    // one would come after the deadline).
    let probes = &gaps[4..];
    assert_eq!(probes.len(), 4, "probe gaps {probes:?}");
    for (gap, cooldown) in probes.iter().zip([30_000, 60_000, 120_000, 240_000]) {
        assert!(
            (cooldown..cooldown + 1_000).contains(gap),
            "probe after {gap} ms, cooldown {cooldown} ms: {probes:?}"
        );
    }
    assert!(dispatcher.audit().is_empty(), "{:?}", dispatcher.audit());
    shutdown.cancel();
    running.await.unwrap().unwrap();
}
