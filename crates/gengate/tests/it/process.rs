//! Starting and killing real `gengate` processes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_gengate");

/// `gengate ARGS`, hermetic: no `GENGATE_*` variable of the caller's
/// environment leaks into the child's configuration.
pub(crate) fn command(args: &[&str], cwd: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(cwd);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("GENGATE_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// A running process and the URL it printed.
pub(crate) struct Proc {
    pub(crate) child: Child,
    pub(crate) url: String,
    /// Lines printed on stdout before the "listening" line.
    pub(crate) banner: Vec<String>,
}

impl Proc {
    /// Starts `gengate ARGS` and waits for its "listening on http://…" line.
    pub(crate) fn start(args: &[&str], cwd: &Path) -> Proc {
        Self::start_with_env(args, cwd, &[])
    }

    /// [`Proc::start`] with these environment variables set.
    pub(crate) fn start_with_env(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Proc {
        let stderr = if std::env::var_os("TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        let mut child = command(args, cwd)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("gengate starts");
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut banner = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.split("listening on ").nth(1) {
                    let _ = tx.send(Some((url.trim().to_owned(), std::mem::take(&mut banner))));
                } else {
                    banner.push(line);
                }
            }
            let _ = tx.send(None);
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Some((url, banner))) => Proc { child, url, banner },
            other => {
                let _ = child.kill();
                panic!("gengate {args:?} did not report its address: {other:?}");
            }
        }
    }

    /// `kill -9`: no chance to clean up.
    pub(crate) fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL delivered");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `gengate ARGS` to completion; returns (exit code, stdout, stderr).
pub(crate) fn run(args: &[&str], cwd: &Path) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("gengate runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Makes a user key with `gengate keys create`.
/// `gengate mock-provider --kind KIND` on a free loopback port, its jobs
/// taking `latency` (`1s..3s`), with `extra` flags (`--concurrency`,
/// credentials, TLS).
pub(crate) fn start_mock(cwd: &Path, kind: &str, latency: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        "mock-provider",
        "--kind",
        kind,
        "--listen",
        "127.0.0.1:0",
        "--latency",
        latency,
    ];
    args.extend_from_slice(extra);
    Proc::start(&args, cwd)
}

/// The arguments of `gengate serve` on a free loopback port, then `extra`.
pub(crate) fn serve_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    ["serve", "--listen", "127.0.0.1:0"]
        .into_iter()
        .chain(extra.iter().copied())
        .collect()
}

pub(crate) fn create_key(cwd: &Path, extra: &[&str], user: &str) -> String {
    let mut args = vec!["keys", "create", "--user", user];
    args.extend_from_slice(extra);
    let (code, out, err) = run(&args, cwd);
    assert_eq!(code, 0, "keys create failed: {err}");
    out.trim().to_owned()
}

/// `GET url` with an optional bearer key, answered as JSON.
pub(crate) async fn get_json(
    client: &reqwest::Client,
    url: &str,
    key: Option<&str>,
) -> serde_json::Value {
    let mut req = client.get(url);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    req.send()
        .await
        .expect("request sent")
        .json()
        .await
        .expect("a JSON answer")
}
