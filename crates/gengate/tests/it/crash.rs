//! Crash safety: `kill -9` the server while tasks are queued and running,
//! start it again on the same data dir, and prove nothing was lost and nothing
//! was submitted twice, from the mock provider's own ledger.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use gengate_testkit::{wait_for, wait_until};

use crate::process::{Proc, create_key, get_json, serve_args, start_mock};

async fn statuses(client: &reqwest::Client, url: &str, keys: &[String]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for key in keys {
        for t in all_pages(client, url, "/v1/tasks", "data", key).await {
            out.insert(
                t["id"].as_str().unwrap().to_owned(),
                t["status"].as_str().unwrap().to_owned(),
            );
        }
    }
    out
}

/// The items (under `field`) of every page of the listing at `path`, as
/// `key`, following `next_cursor`.
async fn all_pages(
    client: &reqwest::Client,
    url: &str,
    path: &str,
    field: &str,
    key: &str,
) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = get_json(client, &format!("{url}{path}?limit=100{cursor}"), Some(key)).await;
        out.extend(page[field].as_array().expect("a page").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

/// The provider account a crash test runs against: a mock process, the
/// config that reaches it, and the model to create tasks of.
struct Account {
    mock: Proc,
    config: String,
    model: &'static str,
    /// Input fields besides the prompt.
    input: Value,
    /// The client that reads the mock's ledger (it trusts the mock's CA).
    client: reqwest::Client,
}

/// The sim mock over plain HTTP.
fn sim_account(cwd: &std::path::Path) -> Account {
    let mock = start_mock(cwd, "sim", "1s..3s", &["--concurrency", "8"]);
    let config = format!(
        "[providers.sim]\nkind = \"sim\"\nbase_url = \"{}\"\nconcurrency = 8\n\n[dispatch]\npoll_initial = \"200ms\"\npoll_max = \"500ms\"\n\n[media]\nallow_private = true\n",
        mock.url
    );
    Account {
        mock,
        config,
        model: "sim-image",
        input: json!({"size": "512x512"}),
        client: reqwest::Client::new(),
    }
}

/// The RunningHub mock over HTTPS, with a throwaway CA that gengate trusts
/// through `tls.ca_file`.
fn runninghub_https_account(cwd: &std::path::Path) -> Account {
    const KEY: &str = "0123456789abcdef0123456789abcdef";
    let ca = cwd.join("mock-ca.pem");
    let mock = start_mock(
        cwd,
        "runninghub",
        "1s..3s",
        &[
            "--credentials",
            KEY,
            "--concurrency",
            "8",
            "--tls",
            "--tls-ca-out",
            ca.to_str().unwrap(),
        ],
    );
    assert!(mock.url.starts_with("https://"), "{}", mock.url);
    let config = format!(
        r#"[tls]
ca_file = "{ca}"

[providers.rh]
kind = "runninghub"
base_url = "{url}"
api_key = "{KEY}"
concurrency = 8

[models.rh-image]
provider = "rh"
kind = "image"
expected = "1s..3s"
[models.rh-image.input.prompt]
type = "string"
required = true
[models.rh-image.params]
workflowId = "1904136902449209346"
nodeInfoList = [{{ nodeId = "6", fieldName = "text", fieldValue = "{{{{prompt}}}}" }}]

[dispatch]
poll_initial = "200ms"
poll_max = "500ms"

[media]
allow_private = true  # the mock serves outputs on loopback
"#,
        ca = ca.display(),
        url = mock.url,
    );
    let trust = gengate_net::Trust::load(Some(&ca)).expect("the mock's CA");
    Account {
        mock,
        config,
        model: "rh-image",
        input: json!({}),
        client: gengate_net::Outbound::new(trust).tool(Duration::from_secs(10)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_tasks_are_queued_and_running_loses_nothing_and_submits_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let account = sim_account(dir.path());
    kill_9_loses_nothing_and_submits_nothing_twice(dir.path(), account).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_runninghub_over_https_loses_nothing_and_submits_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let account = runninghub_https_account(dir.path());
    kill_9_loses_nothing_and_submits_nothing_twice(dir.path(), account).await;
}

async fn kill_9_loses_nothing_and_submits_nothing_twice(cwd: &std::path::Path, account: Account) {
    let Account {
        mock,
        config: config_text,
        model,
        input,
        client: mock_client,
    } = account;
    let config = cwd.join("gengate.toml");
    // Each user keeps dozens of tasks in flight: no cap on them.
    std::fs::write(
        &config,
        format!("{config_text}\n[limits]\nmax_active = 0\n"),
    )
    .unwrap();
    let data = cwd.join("data");
    let common = [
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let keys: Vec<String> = ["ann", "ben", "cyd"]
        .iter()
        .map(|u| create_key(cwd, &common, u))
        .collect();
    let serve = serve_args(&common);

    let client = reqwest::Client::new();
    let mut server = Proc::start(&serve, cwd);
    let mut ids = Vec::new();
    for i in 0..200 {
        let r = client
            .post(format!("{}/v1/tasks", server.url))
            .bearer_auth(&keys[i % 3])
            .json(&{
                let mut input = input.clone();
                input["prompt"] = json!(format!("crash {i}"));
                json!({"model": model, "input": input})
            })
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        ids.push(
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // Let some run, then pull the plug, twice, at different moments.
    for pause_ms in [1500, 2500] {
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        let before = statuses(&client, &server.url, &keys).await;
        assert!(
            before.values().any(|s| s == "running"),
            "some tasks are running when killed"
        );
        assert!(
            before.values().any(|s| s == "queued"),
            "some tasks are queued when killed"
        );
        server.kill9();
        server = Proc::start(&serve, cwd);
        let after = statuses(&client, &server.url, &keys).await;
        assert_eq!(after.len(), 200, "no accepted task was lost");
    }

    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let now = statuses(&client, &server.url, &keys).await;
        let done = now.values().filter(|s| *s == "succeeded").count();
        assert!(
            !now.values().any(|s| s == "failed" || s == "canceled"),
            "a task failed: {now:?}"
        );
        if done == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of 200 succeeded in time"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for id in &ids {
        let t = get_json(
            &client,
            &format!("{}/v1/tasks/{id}", server.url),
            Some(&keys[0]),
        )
        .await;
        // Keys of other users see 404 here, which is fine; the list above
        // already covered every task of every user.
        if t["id"].is_string() {
            assert_eq!(t["attempts"], 1, "{t}");
        }
    }
    let stats = get_json(&mock_client, &format!("{}/_mock/stats", mock.url), None).await;
    assert_eq!(
        stats["submissions"], 200,
        "exactly one submission per task: {stats}"
    );
    assert!(stats["peak_concurrency"].as_u64().unwrap() <= 8, "{stats}");
    assert_eq!(stats["duplicates"], 0, "nothing was resubmitted: {stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_answered_202_survives_kill_9_during_a_burst_of_creates() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data = cwd.join("data");
    let config = cwd.join("gengate.toml");
    std::fs::write(&config, "[limits]\nmax_active = 0\n").unwrap();
    let common = [
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let key = create_key(cwd, &common, "burst");
    let serve = serve_args(&common);
    let mut server = Proc::start(&serve, cwd);
    let url = server.url.clone();
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut creators = Vec::new();
    for w in 0..8 {
        let (url, key, accepted) = (url.clone(), key.clone(), accepted.clone());
        creators.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for i in 0.. {
                let r = client
                    .post(format!("{url}/v1/tasks"))
                    .bearer_auth(&key)
                    .header("Idempotency-Key", format!("w{w}-{i}"))
                    .json(&json!({"model": "sim-image", "input": {"prompt": format!("burst {w} {i}")}}))
                    .send()
                    .await;
                // Once the server is gone, requests fail: stop.
                let Ok(r) = r else { break };
                if r.status() != 202 {
                    break;
                }
                let Ok(body) = r.json::<Value>().await else { break };
                accepted.lock().unwrap().push(body["id"].as_str().unwrap().to_owned());
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill9();
    for c in creators {
        c.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    assert!(
        accepted.len() > 50,
        "the burst made progress before the kill ({})",
        accepted.len()
    );
    let server = Proc::start(&serve, cwd);
    let client = reqwest::Client::new();
    for id in &accepted {
        let r = client
            .get(format!("{}/v1/tasks/{id}", server.url))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "task {id} was answered 202 but is gone after kill -9"
        );
    }
}

/// Polls `GET /v1/tasks/{id}` until `pred` holds for its status.
async fn wait_status(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    id: &str,
    within: Duration,
    pred: impl Fn(&str) -> bool,
) -> Value {
    let what = format!("task {id} to reach the awaited status");
    let url = format!("{url}/v1/tasks/{id}");
    wait_until(&what, within, || async {
        let t = get_json(client, &url, Some(key)).await;
        pred(t["status"].as_str().unwrap_or("")).then_some(t)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kling_task_caught_in_submitting_by_kill_9_is_found_by_external_task_id_not_resubmitted() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    // Every answer comes 3 s after the request took effect: a kill in that
    // window leaves a task the provider has and gengate does not know it has.
    let mock = start_mock(
        cwd,
        "kling",
        "1s..2s",
        &[
            "--credentials",
            "ak-test:sk-test",
            "--concurrency",
            "4",
            "--slow",
            "1",
            "--slow-delay",
            "3s",
        ],
    );
    let config = cwd.join("gengate.toml");
    std::fs::write(
        &config,
        format!(
            r#"[providers.kling]
kind = "kling"
base_url = "{}"
access_key = "ak-test"
secret_key = "sk-test"
concurrency = 4
timeout = "10s"

[models.kling-video]
provider = "kling"
kind = "video"
expected = "1s..2s"
[models.kling-video.input.prompt]
type = "string"
required = true
[models.kling-video.params]
model_name = "kling-v1-6"
prompt = "{{{{prompt}}}}"
duration = "5"

[dispatch]
poll_initial = "200ms"
poll_max = "1s"

[media]
allow_private = true  # the mock serves outputs on loopback
"#,
            mock.url
        ),
    )
    .unwrap();
    let data = cwd.join("data");
    let common = [
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let key = create_key(cwd, &common, "kim");
    let serve = serve_args(&common);
    let client = reqwest::Client::new();
    let mut server = Proc::start(&serve, cwd);
    let r = client
        .post(format!("{}/v1/tasks", server.url))
        .bearer_auth(&key)
        .json(&json!({"model": "kling-video", "input": {"prompt": "a paper boat on a river"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_status(
        &client,
        &server.url,
        &key,
        &id,
        Duration::from_secs(10),
        |s| s == "submitting",
    )
    .await;
    // The create reached the mock; its answer is held back.
    let stats_url = format!("{}/_mock/stats", mock.url);
    wait_for(
        "the create to reach the mock",
        Duration::from_secs(5),
        || async { get_json(&client, &stats_url, None).await["submissions"] == 1 },
    )
    .await;
    server.kill9();

    let server = Proc::start(&serve, cwd);
    let t = wait_status(
        &client,
        &server.url,
        &key,
        &id,
        Duration::from_secs(60),
        |s| s == "succeeded" || s == "failed",
    )
    .await;
    assert_eq!(t["status"], "succeeded", "{t}");
    assert_eq!(t["attempts"], 1, "{t}");
    let stats = get_json(&client, &format!("{}/_mock/stats", mock.url), None).await;
    assert_eq!(stats["submissions"], 1, "exactly one submission: {stats}");
    assert_eq!(stats["duplicates"], 0, "{stats}");
    let jobs = get_json(&client, &format!("{}/_mock/jobs", mock.url), None).await;
    assert_eq!(
        jobs[0]["external_task_id"]
            .as_str()
            .or(jobs[0]["external_id"].as_str()),
        Some(format!("{id}.1").as_str()),
        "the job carries our reference: {jobs}"
    );
}

/// A config for paid tasks on the mock simulator at `mock`, at `price`
/// credits each.
fn paid_config(mock: &str, price: u32) -> String {
    format!(
        r#"[limits]
max_active = 0

[providers.sim]
kind = "sim"
base_url = "{mock}"
concurrency = 6

[dispatch]
poll_initial = "100ms"
poll_max = "300ms"
retry_base = "100ms"

[models.sim-image]
provider = "sim"
kind = "image"
expected = "300ms"
max_attempts = 2
price = {price}
[models.sim-image.input.prompt]
type = "string"
required = true

[media]
allow_private = true
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_paid_creates_successes_and_failures_keeps_every_ledger_whole() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    // A third of the jobs fail: failures are refunded, successes settled.
    let mock = start_mock(cwd, "sim", "100ms..600ms", &["--fail-rate", "0.3"]);
    let config = cwd.join("gengate.toml");
    std::fs::write(&config, paid_config(&mock.url, 1)).unwrap();
    let data = cwd.join("data");
    let common = [
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let users = ["ann", "ben", "cyd"];
    let keys: Vec<String> = users.iter().map(|u| create_key(cwd, &common, u)).collect();
    let mut admin_args = common.to_vec();
    admin_args.extend(["--role", "admin"]);
    let admin = create_key(cwd, &admin_args, "root");
    let serve = serve_args(&common);
    let mut server = Proc::start(&serve, cwd);
    let client = reqwest::Client::new();
    for u in users {
        let r = client
            .post(format!("{}/v1/admin/users/{u}/credits", server.url))
            .bearer_auth(&admin)
            .json(&json!({"amount": 40, "reason": "start"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    // Two creators per user until the kill (or their credits run out),
    // cancelling every fourth task they made.
    let mut creators = Vec::new();
    for (u, key) in keys.iter().enumerate() {
        for w in 0..2 {
            let (url, key, client) = (server.url.clone(), key.clone(), client.clone());
            creators.push(tokio::spawn(async move {
                for i in 0.. {
                    let r = client
                        .post(format!("{url}/v1/tasks"))
                        .bearer_auth(&key)
                        .json(&json!({"model": "sim-image", "input": {"prompt": format!("{u} {w} {i}")}}))
                        .send()
                        .await;
                    let Ok(r) = r else { break };
                    if r.status() != 202 {
                        break;
                    }
                    let Ok(body) = r.json::<Value>().await else { break };
                    if i % 4 == 3 {
                        let id = body["id"].as_str().unwrap();
                        let cancel = client
                            .post(format!("{url}/v1/tasks/{id}/cancel"))
                            .bearer_auth(&key)
                            .send()
                            .await;
                        if cancel.is_err() {
                            break;
                        }
                    }
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    server.kill9();
    for c in creators {
        c.await.unwrap();
    }
    // Back with the price raised: tasks made before keep the price they
    // were made with.
    std::fs::write(&config, paid_config(&mock.url, 7)).unwrap();
    let server = Proc::start(&serve, cwd);
    let url = server.url.clone();
    wait_until("every task to finish", Duration::from_secs(60), || async {
        let stats = get_json(&client, &format!("{url}/v1/admin/stats"), Some(&admin)).await;
        let open = stats["tasks"].as_array().unwrap().iter().any(|c| {
            !matches!(
                c["status"].as_str(),
                Some("succeeded" | "failed" | "canceled")
            ) && c["count"].as_u64() > Some(0)
        });
        (!open).then_some(())
    })
    .await;
    let mut kinds_seen = HashMap::new();
    for key in &keys {
        let entries = all_pages(&client, &url, "/v1/ledger", "entries", key).await;
        let balance = get_json(&client, &format!("{url}/v1/balance"), Some(key)).await;
        let sum: i64 = entries.iter().map(|e| e["amount"].as_i64().unwrap()).sum();
        assert_eq!(
            balance["balance"].as_i64(),
            Some(sum),
            "the balance is the ledger's sum"
        );
        assert_eq!(
            balance["held"], 0,
            "nothing is held once every task finished"
        );
        let mut per_task: HashMap<String, Vec<(String, i64)>> = HashMap::new();
        for e in &entries {
            let kind = e["kind"].as_str().unwrap().to_owned();
            *kinds_seen.entry(kind.clone()).or_insert(0) += 1;
            if let Some(t) = e["task_id"].as_str() {
                per_task
                    .entry(t.to_owned())
                    .or_default()
                    .push((kind, e["amount"].as_i64().unwrap()));
            }
        }
        let listed = all_pages(&client, &url, "/v1/tasks", "data", key)
            .await
            .len();
        assert_eq!(listed, per_task.len(), "every task is in the ledger");
        for (task, mut moves) in per_task {
            moves.sort();
            let t = get_json(&client, &format!("{url}/v1/tasks/{task}"), Some(key)).await;
            let want = match t["status"].as_str() {
                Some("succeeded") => vec![("hold".to_owned(), -1), ("settle".to_owned(), 0)],
                Some("failed" | "canceled") => {
                    vec![("hold".to_owned(), -1), ("refund".to_owned(), 1)]
                }
                other => panic!("task {task} is {other:?} after every task finished"),
            };
            assert_eq!(moves, want, "task {task}: held at 1 credit, closed once");
        }
    }
    for kind in ["hold", "settle", "refund"] {
        assert!(
            kinds_seen.get(kind).copied().unwrap_or(0) > 0,
            "no {kind}: {kinds_seen:?}"
        );
    }
    let (code, out, err) = crate::process::run(
        &[
            "doctor",
            "--skip-providers",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        cwd,
    );
    assert!(out.contains("PASS  credits ledger"), "{code}: {out}{err}");
}
