//! The server under test when capacity starts it itself (`--spawn`), with a
//! mock provider beside it, and pinning processes to cores with `taskset`.

use std::io::{self, BufRead as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::options::SpawnOptions;

/// The server under test when capacity starts it, and the mock provider it
/// calls over HTTP (so the simulator's rendering is not billed to the
/// server, as a real provider's work is not): both killed on drop.
pub(super) struct Spawned {
    pub(super) child: Child,
    provider: Option<Child>,
    pub(super) dir: PathBuf,
    pub(super) url: String,
    pub(super) admin_key: Option<String>,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        for c in [Some(&mut self.child), self.provider.as_mut()]
            .into_iter()
            .flatten()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(super) fn cpu_list(from: usize, to: usize) -> String {
    if from + 1 == to {
        from.to_string()
    } else {
        format!("{from}-{}", to - 1)
    }
}

/// Starts `exe ARGS…` (under `taskset -c CPUS` when given) and returns it
/// with the URL it prints and an admin key if it prints one.
fn start(
    exe: &std::path::Path,
    args: &[&std::ffi::OsStr],
    cpus: Option<&str>,
    quiet: bool,
) -> anyhow::Result<(Child, String, Option<String>)> {
    let mut cmd = match cpus {
        Some(list) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(list).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(if quiet {
            Stdio::null()
        } else {
            Stdio::inherit()
        });
    let mut child = cmd.spawn().with_context(|| {
        format!(
            "starting {}{}",
            exe.display(),
            if cpus.is_some() { " under taskset" } else { "" }
        )
    })?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let give_up = Instant::now() + Duration::from_secs(30);
    let mut key = None;
    loop {
        let left = give_up.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            bail!("{} did not say where it listens within 30 s", exe.display());
        };
        if let Some(k) = line.split_whitespace().find(|w| w.starts_with("gg_")) {
            key = Some(k.to_owned());
        }
        if let Some(at) = line.find("http://") {
            return Ok((child, line[at..].trim().to_owned(), key));
        }
    }
}

pub(super) fn spawn_server(
    o: &SpawnOptions,
    pin: Option<usize>,
    ncpu: usize,
) -> anyhow::Result<Spawned> {
    let dir = std::env::temp_dir().join(format!("gengate-capacity-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let others = pin.filter(|n| *n < ncpu).map(|n| cpu_list(n, ncpu));
    let concurrency = o.provider_concurrency.to_string();
    let mock_slots = (o.provider_concurrency * 2).to_string();
    let (provider, provider_url, _) = start(
        &o.exe,
        &[
            "mock-provider",
            "--kind",
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--latency",
            &o.provider_latency,
            "--concurrency",
            &mock_slots,
        ]
        .map(std::ffi::OsStr::new),
        others.as_deref(),
        true,
    )?;
    let cfg = dir.join("gengate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\ndata_dir = \"{}\"\n[log]\nlevel = \"warn\"\n[providers.sim]\nkind = \"sim\"\nconcurrency = {concurrency}\nbase_url = \"{provider_url}\"\n",
            dir.join("data").display()
        ),
    )?;
    let mut spawned = Spawned {
        child: provider,
        provider: None,
        dir,
        url: String::new(),
        admin_key: None,
    };
    let (child, url, key) = start(
        &o.exe,
        &[
            std::ffi::OsStr::new("serve"),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--config".as_ref(),
            cfg.as_os_str(),
        ],
        pin.map(|n| cpu_list(0, n)).as_deref(),
        false,
    )?;
    // The server is the child measured; the mock rides along.
    spawned.provider = Some(std::mem::replace(&mut spawned.child, child));
    spawned.url = url;
    spawned.admin_key = key;
    Ok(spawned)
}

pub(super) fn pin_pid(pid: u32, cpus: &str) -> anyhow::Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .context("running taskset (util-linux)")?;
    if !status.success() {
        bail!("taskset -a -p -c {cpus} {pid} failed");
    }
    Ok(())
}
