//! Several real `gengate serve` nodes on one shared database (MariaDB and
//! PostgreSQL, from `TEST_MYSQL_URL` and `TEST_POSTGRES_URL`), against the
//! external mock provider: nodes are `kill -9`ed and paused, and the
//! provider's own ledger shows that nothing was lost, nothing submitted
//! twice, and its concurrency limit held across the cluster.

use std::collections::HashSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gengate_testkit::db::{Engine, FreshDb};
use gengate_testkit::wait_until_every;
use serde_json::{Value, json};

use crate::process::{Proc, create_key, get_json, run, start_mock};

/// The lease period the tests configure: a dead node's tasks are taken
/// over within it (plus one heartbeat of the node that takes them).
const LEASE: Duration = Duration::from_secs(3);
/// How often a wait reads the database: each read starts its client process.
const EVERY: Duration = Duration::from_millis(100);

/// A fresh database for one cluster test.
type Db = FreshDb;

fn fresh(engine: Engine) -> Option<Db> {
    FreshDb::create(engine, "gg_cluster")
}

/// A cluster: the mock provider, the config, and N nodes sharing `data`.
struct Cluster {
    _dir: tempfile::TempDir,
    cwd: std::path::PathBuf,
    config: std::path::PathBuf,
    data: std::path::PathBuf,
    mock: Proc,
    nodes: Vec<Option<Proc>>,
}

impl Cluster {
    /// `cluster` goes into the `[cluster]` table (more tables may follow it).
    fn start(db: &Db, nodes: usize, mock_latency: &str, cluster: &str) -> Cluster {
        Self::start_with_model(db, nodes, mock_latency, cluster, "")
    }

    /// As [`Cluster::start`], with `model` added to the model's table (a
    /// price, say).
    fn start_with_model(
        db: &Db,
        nodes: usize,
        mock_latency: &str,
        cluster: &str,
        model: &str,
    ) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path().to_owned();
        let mock = start_mock(&cwd, "sim", mock_latency, &["--concurrency", "8"]);
        let config = cwd.join("gengate.toml");
        std::fs::write(
            &config,
            format!(
                r#"[store]
url = "{}"
pool_size = 8

[cluster]
lease = "{}ms"
{cluster}

# Each user keeps many tasks in flight.
[limits]
max_active = 0

[providers.sim]
kind = "sim"
base_url = "{}"
concurrency = 8

[dispatch]
poll_initial = "100ms"
poll_max = "500ms"

# The demo model, with run times like the mock's (first polls follow them).
[models.sim-image]
provider = "sim"
kind = "image"
expected = "{expected}"
{model}
[models.sim-image.input.prompt]
type = "string"
required = true
[models.sim-image.input.size]
type = "enum"
values = ["512x512"]

[media]
allow_private = true
"#,
                db.url,
                LEASE.as_millis(),
                mock.url,
                expected = mock_latency,
            ),
        )
        .unwrap();
        let data = cwd.join("data");
        let mut c = Cluster {
            _dir: dir,
            cwd,
            config,
            data,
            mock,
            nodes: Vec::new(),
        };
        let (code, out, err) = run(&c.args(&["migrate"]), &c.cwd);
        assert_eq!(code, 0, "migrate: {out}{err}");
        let (code, out, _) = run(&c.args(&["migrate"]), &c.cwd);
        assert_eq!(code, 0);
        assert!(out.contains("up to date"), "migrate is idempotent: {out}");
        for i in 0..nodes {
            let node = c.start_node(i);
            c.nodes.push(Some(node));
        }
        c
    }

    fn args<'a>(&'a self, head: &[&'a str]) -> Vec<&'a str> {
        let mut v = head.to_vec();
        v.extend([
            "--config",
            self.config.to_str().unwrap(),
            "--data-dir",
            self.data.to_str().unwrap(),
        ]);
        v
    }

    fn start_node(&self, i: usize) -> Proc {
        let mut cmd_args = self.args(&["serve", "--listen", "127.0.0.1:0"]);
        cmd_args.push("--node-name");
        let name = format!("n{i}");
        cmd_args.push(&name);
        Proc::start(&cmd_args, &self.cwd)
    }

    fn key(&self, user: &str) -> String {
        create_key(&self.cwd, &self.args(&[])[..], user)
    }

    fn url(&self, i: usize) -> String {
        self.nodes[i].as_ref().expect("node up").url.clone()
    }

    async fn ledger(&self) -> Value {
        get_json(
            &reqwest::Client::new(),
            &format!("{}/_mock/stats", self.mock.url),
            None,
        )
        .await
    }
}

/// Creates a task on `url`, with an idempotency key so a retry on another
/// node after a failure cannot make a second one.
async fn create(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    idem: &str,
    prompt: &str,
) -> Result<String, String> {
    let r = client
        .post(format!("{url}/v1/tasks"))
        .bearer_auth(key)
        .header("Idempotency-Key", idem)
        .json(&json!({"model": "sim-image", "input": {"prompt": prompt, "size": "512x512"}}))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status();
    let body: Value = r.json().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(body["id"].as_str().expect("an id").to_owned())
    } else {
        Err(format!("{status}: {body}"))
    }
}

fn status_counts(db: &Db) -> String {
    db.sql("SELECT status, COUNT(*) FROM tasks GROUP BY status ORDER BY status")
        .replace('\n', ", ")
}

async fn two_thousand_tasks_survive_a_node_killed_every_few_seconds(engine: Engine) {
    let Some(db) = fresh(engine) else { return };
    // Each task costs a credit: whatever node dies, whichever node takes a
    // task over or replays its create, it is held once and settled once.
    let cluster = Arc::new(Mutex::new(Cluster::start_with_model(
        &db,
        3,
        "100ms..300ms",
        "",
        "price = 1",
    )));
    let keys: Vec<String> = {
        let c = cluster.lock().unwrap();
        (0..10).map(|u| c.key(&format!("user{u}"))).collect()
    };
    let (admin, url) = {
        let c = cluster.lock().unwrap();
        let mut extra = c.args(&[]);
        extra.extend(["--role", "admin"]);
        (create_key(&c.cwd, &extra, "root"), c.url(0))
    };
    for u in 0..10 {
        let r = reqwest::Client::new()
            .post(format!("{url}/v1/admin/users/user{u}/credits"))
            .bearer_auth(&admin)
            .json(&json!({"amount": 250, "reason": "test credits"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let urls = Arc::new(Mutex::new(
        (0..3)
            .map(|i| Some(cluster.lock().unwrap().url(i)))
            .collect::<Vec<_>>(),
    ));
    let created = Arc::new(Mutex::new(HashSet::new()));

    // The creators: 2,000 tasks across 10 users, over whichever nodes are up.
    let client = reqwest::Client::new();
    let creators = {
        let (urls, created, keys, client) =
            (urls.clone(), created.clone(), keys.clone(), client.clone());
        tokio::spawn(async move {
            let sem = Arc::new(tokio::sync::Semaphore::new(16));
            let mut handles = Vec::new();
            for i in 0..2000usize {
                let permit = sem.clone().acquire_owned().await.unwrap();
                let (urls, created, key, client) = (
                    urls.clone(),
                    created.clone(),
                    keys[i % 10].clone(),
                    client.clone(),
                );
                handles.push(tokio::spawn(async move {
                    let idem = format!("task-{i}");
                    for attempt in 0..200 {
                        let url = {
                            let u = urls.lock().unwrap();
                            u.iter()
                                .flatten()
                                .nth(attempt % 3)
                                .or_else(|| u.iter().flatten().next())
                                .cloned()
                        };
                        if let Some(url) = url
                            && let Ok(id) =
                                create(&client, &url, &key, &idem, &format!("cluster {i}")).await
                        {
                            created.lock().unwrap().insert(id);
                            drop(permit);
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    panic!("task {i} could not be created on any node");
                }));
            }
            for h in handles {
                h.await.unwrap();
            }
        })
    };

    // The killer: every few seconds a node dies without warning and comes
    // back a second later; its tasks must be taken over within the lease.
    let mut kills = 0;
    let mut worst_takeover = Duration::ZERO;
    let start = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let succeeded = db.count("SELECT COUNT(*) FROM tasks WHERE status = 'succeeded'");
        if creators.is_finished() && kills >= 6 && succeeded >= 1600 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(400),
            "too slow: {}",
            status_counts(&db)
        );
        let victim = kills % 3;
        let (pid, mut proc) = {
            let mut c = cluster.lock().unwrap();
            let proc = c.nodes[victim].take().expect("node up");
            (proc.child.id(), proc)
        };
        urls.lock().unwrap()[victim] = None;
        let owner = format!("n{victim}-{pid}-");
        proc.kill9();
        let killed_at = Instant::now();
        kills += 1;
        let held: Vec<String> = db
            .sql(&format!(
                "SELECT id FROM tasks WHERE lease_owner LIKE '{owner}%' AND status IN ('submitting','running','storing')"
            ))
            .lines()
            .map(str::to_owned)
            .collect();
        // Back a second later, as a supervisor would bring it back.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let node = {
            let c = cluster.lock().unwrap();
            c.start_node(victim)
        };
        urls.lock().unwrap()[victim] = Some(node.url.clone());
        cluster.lock().unwrap().nodes[victim] = Some(node);
        // Every task the dead node held is someone else's (or finished)
        // within the lease period plus one heartbeat of the others.
        if !held.is_empty() {
            let list = held
                .iter()
                .map(|id| format!("'{id}'"))
                .collect::<Vec<_>>()
                .join(",");
            let stuck = format!(
                "SELECT COUNT(*) FROM tasks WHERE id IN ({list}) AND lease_owner LIKE '{owner}%' AND status IN ('submitting','running','storing')"
            );
            let within =
                (LEASE + LEASE / 3 + Duration::from_secs(3)).saturating_sub(killed_at.elapsed());
            wait_until_every(
                "the killed node's tasks to be taken over",
                within,
                EVERY,
                || std::future::ready((db.count(&stuck) == 0).then_some(())),
            )
            .await;
            worst_takeover = worst_takeover.max(killed_at.elapsed());
        }
    }
    creators.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let succeeded = db.count("SELECT COUNT(*) FROM tasks WHERE status = 'succeeded'");
        if succeeded == 2000 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not all succeeded: {}",
            status_counts(&db)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        db.count("SELECT COUNT(*) FROM tasks"),
        2000,
        "one task per idempotency key"
    );
    assert_eq!(created.lock().unwrap().len(), 2000);
    let mock = cluster.lock().unwrap().mock.url.clone();
    let ledger = get_json(&client, &format!("{mock}/_mock/stats"), None).await;
    eprintln!("{engine:?}: {kills} kills, worst takeover {worst_takeover:?}, ledger {ledger}");
    assert_eq!(
        ledger["submissions"], 2000,
        "exactly one submission per task: {ledger}"
    );
    assert_eq!(ledger["duplicates"], 0, "{ledger}");
    assert!(
        ledger["peak_concurrency"].as_u64().unwrap() <= 8,
        "the provider's limit held across the cluster: {ledger}"
    );
    // The money: one hold and one settlement per task, 200 credits from
    // each user, and every balance its ledger's sum.
    for (kind, n) in [
        ("hold", 2000),
        ("settle", 2000),
        ("refund", 0),
        ("grant", 10),
    ] {
        let sql = format!("SELECT COUNT(*) FROM ledger WHERE kind = '{kind}'");
        assert_eq!(db.count(&sql), n, "{kind} entries");
    }
    let sql = "SELECT COUNT(*) FROM users WHERE name LIKE 'user%' AND balance = 50 AND held = 0";
    assert_eq!(db.count(sql), 10, "each user paid for 200 tasks");
    let c = cluster.lock().unwrap();
    let (code, out) = doctor(&c, &[]);
    assert!(out.contains("PASS  credits ledger"), "{code}: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_two_thousand_tasks_survive_a_node_killed_every_few_seconds() {
    two_thousand_tasks_survive_a_node_killed_every_few_seconds(Engine::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_thousand_tasks_survive_a_node_killed_every_few_seconds() {
    two_thousand_tasks_survive_a_node_killed_every_few_seconds(Engine::Postgres).await;
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill {sig} {pid}");
}

async fn metric(url: &str, name: &str) -> u64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn a_paused_node_writes_nothing_for_the_tasks_it_lost(engine: Engine) {
    let Some(db) = fresh(engine) else { return };
    // Slow tasks, so the paused node holds running ones.
    let mut c = Cluster::start(&db, 2, "6s..8s", "");
    let key = c.key("ann");
    let client = reqwest::Client::new();
    for i in 0..8 {
        create(&client, &c.url(i % 2), &key, &format!("p{i}"), "pause")
            .await
            .unwrap();
    }
    // Wait until a node holds running tasks: that one is paused.
    let pids: Vec<u32> = c
        .nodes
        .iter()
        .map(|n| n.as_ref().unwrap().child.id())
        .collect();
    let (paused, pid, owner, held) = wait_until_every(
        "a node to run a task",
        Duration::from_secs(20),
        EVERY,
        || {
            std::future::ready(pids.iter().enumerate().find_map(|(i, pid)| {
                let owner = format!("n{i}-{pid}-");
                let held: Vec<String> = db
                .sql(&format!(
                    "SELECT id FROM tasks WHERE lease_owner LIKE '{owner}%' AND status = 'running'"
                ))
                .lines()
                .map(str::to_owned)
                .collect();
                (!held.is_empty()).then_some((i, *pid, owner, held))
            }))
        },
    )
    .await;
    let list = held
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(",");
    signal(pid, "-STOP");
    // Past its lease: the other node takes the tasks over.
    let still =
        format!("SELECT COUNT(*) FROM tasks WHERE id IN ({list}) AND lease_owner LIKE '{owner}%'");
    wait_until_every(
        "the paused node's tasks to be taken over",
        LEASE * 3,
        EVERY,
        || std::future::ready((db.count(&still) == 0).then_some(())),
    )
    .await;
    let versions = db.sql(&format!(
        "SELECT id, version FROM tasks WHERE id IN ({list}) ORDER BY id"
    ));
    signal(pid, "-CONT");
    // Awake again, with polls due and leases it no longer has: for a while
    // nothing of those tasks may carry its name again.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let back = db.count(&format!(
            "SELECT COUNT(*) FROM tasks WHERE id IN ({list}) AND lease_owner LIKE '{owner}%'"
        ));
        assert_eq!(back, 0, "the paused node wrote a task it had lost");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let woken = c.url(paused);
    let lost = metric(&woken, "gengate_leases_lost_total").await;
    let fenced = metric(&woken, "gengate_fenced_writes_total").await;
    assert!(
        lost + fenced > 0,
        "the woken node noticed it had lost its leases (lost {lost}, fenced {fenced})"
    );
    eprintln!(
        "{engine:?}: versions at takeover {versions}; woken node let go of {lost}, had {fenced} writes refused"
    );
    // And every task still finishes once, at the provider and here.
    wait_until_every(
        "all 8 tasks to succeed",
        Duration::from_secs(60),
        EVERY,
        || {
            std::future::ready(
                (db.count("SELECT COUNT(*) FROM tasks WHERE status = 'succeeded'") == 8)
                    .then_some(()),
            )
        },
    )
    .await;
    let ledger = c.ledger().await;
    assert_eq!(ledger["submissions"], 8, "{ledger}");
    assert_eq!(ledger["duplicates"], 0, "{ledger}");
    c.nodes.clear();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_a_paused_node_writes_nothing_for_the_tasks_it_lost() {
    a_paused_node_writes_nothing_for_the_tasks_it_lost(Engine::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_paused_node_writes_nothing_for_the_tasks_it_lost() {
    a_paused_node_writes_nothing_for_the_tasks_it_lost(Engine::Postgres).await;
}

async fn one_idempotency_key_fifty_times_over_three_nodes_makes_one_task(engine: Engine) {
    let Some(db) = fresh(engine) else { return };
    let c = Cluster::start(&db, 3, "1s..2s", "");
    let key = c.key("ann");
    let client = reqwest::Client::new();
    let mut handles = Vec::new();
    for i in 0..50 {
        let (client, url, key) = (client.clone(), c.url(i % 3), key.clone());
        handles.push(tokio::spawn(async move {
            create(&client, &url, &key, "same-key", "once").await
        }));
    }
    let mut ids = HashSet::new();
    for h in handles {
        match h.await.unwrap() {
            Ok(id) => {
                ids.insert(id);
            }
            // Only "still in progress" may refuse; nothing else.
            Err(e) => assert!(e.contains("idempotency_key_in_progress"), "{e}"),
        }
    }
    assert_eq!(ids.len(), 1, "every success names the same task: {ids:?}");
    assert_eq!(db.count("SELECT COUNT(*) FROM tasks"), 1);
    assert_eq!(db.count("SELECT COUNT(*) FROM idempotency_keys"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_one_idempotency_key_fifty_times_over_three_nodes_makes_one_task() {
    one_idempotency_key_fifty_times_over_three_nodes_makes_one_task(Engine::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_one_idempotency_key_fifty_times_over_three_nodes_makes_one_task() {
    one_idempotency_key_fifty_times_over_three_nodes_makes_one_task(Engine::Postgres).await;
}

/// Reads an event stream until `done` says so; the events' data.
async fn read_events(
    resp: reqwest::Response,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let mut resp = resp;
    let mut buf = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .unwrap_or_else(|_| panic!("no final event in {within:?}; got {events:?}"))
            .expect("stream readable")
            .expect("stream open");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            for line in block.lines() {
                if let Some(data) = line.strip_prefix("data:") {
                    let v: Value = serde_json::from_str(data.trim()).expect("JSON event data");
                    let finished = done(&v);
                    events.push(v);
                    if finished {
                        return events;
                    }
                }
            }
        }
    }
}

async fn events_reach_a_client_on_another_node(engine: Engine, extra: &str) {
    let Some(db) = fresh(engine) else { return };
    let c = Cluster::start(&db, 2, "1s..2s", extra);
    let key = c.key("ann");
    let client = reqwest::Client::new();
    // The stream of all of ann's tasks is open on node 1 before the task
    // exists; the task is created on node 0.
    let stream = client
        .get(format!("{}/v1/events", c.url(1)))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let id = create(&client, &c.url(0), &key, "ev", "events")
        .await
        .unwrap();
    let events = read_events(stream, Duration::from_secs(30), |v| {
        v["id"] == id.as_str() && v["status"] == "succeeded"
    })
    .await;
    // Changes made elsewhere arrive as the task's state when they are read,
    // so quick ones may be seen together; they are never seen backwards.
    let order = ["queued", "submitting", "running", "storing", "succeeded"];
    let seen: Vec<usize> = events
        .iter()
        .filter(|v| v["id"] == id.as_str())
        .map(|v| {
            order
                .iter()
                .position(|s| v["status"] == *s)
                .expect("a known status")
        })
        .collect();
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{events:?}");
    // A long poll on node 1 for a task created on node 0 wakes on its end.
    let id2 = create(&client, &c.url(0), &key, "ev2", "events")
        .await
        .unwrap();
    // (`wait` returns on any change of status: wait again until the end.)
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let asked = Instant::now();
        let t = get_json(
            &client,
            &format!("{}/v1/tasks/{id2}?wait=20", c.url(1)),
            Some(&key),
        )
        .await;
        if t["status"] == "succeeded" {
            break;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(15),
            "the long poll on node 1 did not wake on node 0's change: {t}"
        );
        assert!(Instant::now() < deadline, "{t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_events_reach_a_client_on_another_node_by_polling() {
    events_reach_a_client_on_another_node(Engine::MariaDb, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_events_reach_a_client_on_another_node_through_redis() {
    let Some(redis) = gengate_testkit::service_url("TEST_REDIS_URL") else {
        return;
    };
    let cluster = format!("redis_url = \"{redis}\"\n");
    events_reach_a_client_on_another_node(Engine::MariaDb, &cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_events_reach_a_client_on_another_node_by_notify() {
    events_reach_a_client_on_another_node(Engine::Postgres, "").await;
}

fn doctor(c: &Cluster, extra: &[&str]) -> (i32, String) {
    let mut args = c.args(&["doctor", "--skip-providers"]);
    args.extend_from_slice(extra);
    let (code, out, err) = run(&args, &c.cwd);
    (code, format!("{out}{err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_a_healthy_deployment_and_names_each_misconfiguration() {
    let Some(db) = fresh(Engine::Postgres) else {
        return;
    };
    let c = Cluster::start(&db, 1, "1s..2s", "");
    let (code, out) = doctor(&c, &["--nodes", "3"]);
    assert_eq!(code, 0, "{out}");
    for check in [
        "store reachable",
        "store migrated",
        "connections",
        "clock skew",
        "open files",
        "disk space",
        "media writable",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("PASS") && l.contains(check)),
            "{check}: {out}"
        );
    }
    // Too many nodes for the database's connection limit.
    let (code, out) = doctor(&c, &["--nodes", "1000"]);
    assert_eq!(code, 1, "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("connections"))
        .expect("a connections finding");
    assert!(
        line.starts_with("FAIL") && line.contains("max_connections"),
        "{out}"
    );
    assert!(
        out.contains("lower store.pool_size"),
        "the fix is named: {out}"
    );
    // An unmigrated database, a media directory that cannot be written,
    // an unreachable Redis.
    let Some(empty) = fresh(Engine::Postgres) else {
        return;
    };
    let bad = c.cwd.join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&c.config)
            .unwrap()
            .replace(&db.url, &empty.url)
            .replace(
                "[cluster]\n",
                "[cluster]\nredis_url = \"redis://127.0.0.1:1\"\n",
            ),
    )
    .unwrap();
    let args = [
        "doctor",
        "--skip-providers",
        "--config",
        bad.to_str().unwrap(),
        "--data-dir",
        "/proc/gengate-nowhere",
    ];
    let (code, out, err) = run(&args, &c.cwd);
    let out = format!("{out}{err}");
    assert_eq!(code, 1, "{out}");
    for (check, fix) in [
        ("store migrated", "gengate migrate"),
        ("redis", "cluster.redis_url"),
        ("media writable", "permissions"),
    ] {
        let line = out
            .lines()
            .find(|l| l.contains(check))
            .unwrap_or_else(|| panic!("{check}: {out}"));
        assert!(line.starts_with("FAIL"), "{check}: {out}");
        assert!(out.contains(fix), "{check} names its fix: {out}");
    }
}
