//! The command line as a newcomer meets it.

use gengate_testkit::{wait_for, wait_until};

use crate::process::{Proc, run};

#[test]
fn help_is_there_for_every_subcommand_and_bad_flags_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["keys", "create", "--help"],
        vec!["mock-provider", "--help"],
        vec!["bench", "--help"],
        vec!["media", "gc", "--help"],
    ] {
        let (code, out, _) = run(&args, dir.path());
        assert_eq!(code, 0, "{args:?}");
        assert!(out.contains("Usage"), "{args:?}: {out}");
    }
    let (code, _, err) = run(
        &["mock-provider", "--kind", "sim", "--latency", "soon"],
        dir.path(),
    );
    assert_eq!(code, 2);
    assert!(err.contains("--latency"), "{err}");
    for (args, flag) in [
        (vec!["mock-provider", "--kind", "kling"], "--credentials"),
        (
            vec![
                "mock-provider",
                "--kind",
                "hunyuan",
                "--credentials",
                "a:b",
                "--drop-webhooks",
                "2",
            ],
            "--drop-webhooks",
        ),
        (
            vec![
                "mock-provider",
                "--kind",
                "runninghub",
                "--credentials",
                "k",
                "--slow-delay",
                "later",
            ],
            "--slow-delay",
        ),
        (vec!["mock-provider", "--kind", "openai"], "--kind"),
        (
            vec![
                "mock-provider",
                "--kind",
                "kling",
                "--credentials",
                "no-colon",
            ],
            "--credentials",
        ),
    ] {
        let (code, _, err) = run(&args, dir.path());
        assert_eq!(code, 2, "{args:?}");
        assert!(err.contains(flag), "{args:?}: {err}");
    }
    let (code, _, err) = run(
        &["serve", "--config", "/nonexistent/gengate.toml"],
        dir.path(),
    );
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/gengate.toml"), "{err}");
}

#[test]
fn a_bad_config_key_is_refused_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gengate.toml");
    std::fs::write(
        &cfg,
        "[server]\nlisten = \"127.0.0.1:0\"\nbody_limt = \"1MiB\"\n",
    )
    .unwrap();
    let (code, _, err) = run(&["serve", "--config", cfg.to_str().unwrap()], dir.path());
    assert_eq!(code, 1);
    assert!(err.contains("body_limt"), "{err}");
    let out = crate::process::command(&["serve", "--listen", "127.0.0.1:0"], dir.path())
        .env("GENGATE_DISPATCH__RETRY_MAX", "forever")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("dispatch.retry_max"));
}

#[test]
fn first_start_prints_an_admin_key_once_and_keys_can_be_managed() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let mut first = Proc::start(&["serve", "--listen", "127.0.0.1:0"], cwd);
    let banner = first.banner.join("\n");
    let admin_key = banner
        .split_whitespace()
        .find(|w| w.starts_with("gg_"))
        .expect("admin key printed")
        .to_owned();
    assert!(
        cwd.join("data/gengate.db").exists(),
        "SQLite under ./data by default"
    );
    first.kill9();
    let mut second = Proc::start(&["serve", "--listen", "127.0.0.1:0"], cwd);
    assert!(
        !second.banner.join("\n").contains("gg_"),
        "the admin key is shown only on the first start"
    );
    second.kill9();

    let (code, list, _) = run(&["keys", "list"], cwd);
    assert_eq!(code, 0);
    assert!(
        list.contains("admin") && list.contains(&admin_key[..11]),
        "{list}"
    );
    assert!(!list.contains(&admin_key), "secrets are never listed");
    let user_key = crate::process::create_key(cwd, &[], "dana");
    assert!(user_key.starts_with("gg_"));
    let (code, _, _) = run(&["keys", "revoke", &user_key[..11]], cwd);
    assert_eq!(code, 0);
    let (code, _, err) = run(&["keys", "revoke", &user_key[..11]], cwd);
    assert_eq!(code, 1, "revoking twice is an error");
    assert!(err.contains("no live key"), "{err}");

    let service_key = crate::process::create_key(cwd, &["--role", "service"], "shop");
    let (_, list, _) = run(&["keys", "list"], cwd);
    let line = list
        .lines()
        .find(|l| l.contains(&service_key[..11]))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(line.contains("shop") && line.contains("service"), "{line}");
    let (code, _, err) = run(&["keys", "create", "--user", "x", "--role", "owner"], cwd);
    assert_eq!(code, 2, "an unknown role is a usage error");
    assert!(err.contains("user, admin or service"), "{err}");
    let (code, _, err) = run(
        &["keys", "create", "--user", "x", "--role", "user", "--admin"],
        cwd,
    );
    assert_eq!(code, 2, "--admin and --role conflict: {err}");
}

#[test]
fn sigterm_drains_and_exits_cleanly_with_everything_durable() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let key = crate::process::create_key(cwd, &[], "term");
    let mut server = Proc::start(&["serve", "--listen", "127.0.0.1:0"], cwd);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let id = rt.block_on(async {
        let r: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/v1/tasks", server.url))
            .bearer_auth(&key)
            .json(&serde_json::json!({"model": "sim-image", "input": {"prompt": "term"}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["id"].as_str().unwrap().to_owned()
    });
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = rt.block_on(wait_until(
        "gengate to stop after SIGTERM",
        std::time::Duration::from_secs(15),
        || std::future::ready(server.child.try_wait().unwrap()),
    ));
    assert_eq!(exit.code(), Some(0), "a requested shutdown is a clean exit");
    // The task is still there after a restart and finishes.
    let server = Proc::start(&["serve", "--listen", "127.0.0.1:0"], cwd);
    let client = reqwest::Client::new();
    let url = format!("{}/v1/tasks/{id}", server.url);
    rt.block_on(wait_for(
        "the task to finish after the restart",
        std::time::Duration::from_secs(20),
        || async {
            crate::process::get_json(&client, &url, Some(&key)).await["status"] == "succeeded"
        },
    ));
}

#[test]
fn bench_refuses_bad_flags_with_exit_2_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let t = "http://127.0.0.1:9/";
    for (args, flag) in [
        (
            vec!["bench", "--target", t, "-c", "10", "--rate", "100"],
            "--rate",
        ),
        (
            vec!["bench", "--target", t, "--duration", "soon"],
            "--duration",
        ),
        (
            vec!["bench", "--target", t, "--requests", "10x"],
            "--requests",
        ),
        (vec!["bench", "--target", t, "--rate", "0"], "--rate"),
        (
            vec!["bench", "--target", t, "--scenario", "browse"],
            "--scenario",
        ),
        (vec!["bench", "--target", t, "-H", "no colon"], "--header"),
        (vec!["bench", "--target", t, "--mix", "create=x"], "--mix"),
        (
            vec!["bench", "--target", t, "--rate-connections", "8"],
            "--rate",
        ),
        (vec!["bench", "-c", "10"], "--target"),
    ] {
        let (code, _, err) = run(&args, dir.path());
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?} should name {flag}: {err}");
    }
    for (args, flag) in [
        (vec!["capacity"], "--target"),
        (vec!["capacity", "--spawn", "--target", t], "--target"),
        (
            vec!["capacity", "--spawn", "--server", "cpus=4,gpus=1"],
            "--server",
        ),
        (vec!["capacity", "--spawn", "--slo", "p95=fast"], "--slo"),
        (vec!["capacity", "--spawn", "--pin-cpus", "0"], "--pin-cpus"),
        (
            vec!["capacity", "--spawn", "--scenarios", "mixed,browse"],
            "--scenarios",
        ),
    ] {
        let (code, _, err) = run(&args, dir.path());
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?} should name {flag}: {err}");
    }
    // A well-formed command against nobody: a clear error, exit 1.
    let (code, _, err) = run(
        &["bench", "--target", "https://127.0.0.1:9/", "-d", "1s"],
        dir.path(),
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("https"), "{err}");
}

#[test]
fn media_gc_removes_objects_no_task_refers_to() {
    let dir = tempfile::tempdir().unwrap();
    let orphan = dir.path().join("data/media/t/tsk_01GONE/0.png");
    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    std::fs::write(&orphan, b"\x89PNG\r\n\x1a\n").unwrap();
    let (code, out, err) = run(&["media", "gc", "--dry-run"], dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("would delete orphan t/tsk_01GONE/0.png"),
        "{out}"
    );
    assert!(orphan.exists(), "a dry run deletes nothing");
    let (code, out, err) = run(&["media", "gc"], dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("scanned 1 objects: 1 orphaned"), "{out}");
    assert!(!orphan.exists());
}

/// A restart through the handoff socket: while clients keep making new
/// connections, a second process takes the listening socket over and the
/// first drains and exits; not one request fails. Then once more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_through_the_handoff_socket_refuses_no_request() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data = cwd.join("data");
    let sock = cwd.join("run").join("handoff.sock");
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
        "--handoff",
        sock.to_str().unwrap(),
    ];
    let mut old = Proc::start(&args, cwd);
    let url = old.url.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), url.clone());
        clients.push(tokio::spawn(async move {
            // A new connection for every request: each one has to be
            // accepted by whichever process holds the socket.
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .unwrap();
            while !stop.load(Ordering::Relaxed) {
                match client.get(format!("{url}/healthz")).send().await {
                    Ok(r) if r.status().is_success() => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(r) => panic!("{}", r.status()),
                    Err(e) => {
                        eprintln!("request failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    // A successor that cannot start (here: a store it cannot open) takes
    // the socket, fails before it says `go`, and the running process serves
    // on as if nothing happened.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut failing: Vec<&str> = args.to_vec();
    failing.extend(["--store-url", "nosuch://x"]);
    let (code, _, err) = run(&failing, cwd);
    assert_ne!(code, 0, "the broken successor fails: {err}");
    assert!(err.contains("nosuch"), "{err}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        old.child.try_wait().unwrap().is_none(),
        "the running process serves on"
    );
    for round in 0..2 {
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        let before = ok.load(Ordering::Relaxed);
        let new = Proc::start(&args, cwd);
        assert_eq!(new.url, url, "the successor serves the same address");
        let status = wait_until(
            "the old process to exit",
            std::time::Duration::from_secs(30),
            || std::future::ready(old.child.try_wait().unwrap()),
        )
        .await;
        assert!(
            status.success(),
            "round {round}: the old process drained and exited cleanly: {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert!(
            ok.load(Ordering::Relaxed) > before,
            "round {round}: requests went on"
        );
        old = new;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("{ok} requests served across two restarts, {failed} failed");
    assert_eq!(failed, 0, "no request was refused");
    assert!(ok > 100);
}
