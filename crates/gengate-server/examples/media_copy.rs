//! Benchmark of the media step's memory: copies one large output from a
//! URL into the local backend (and an S3 backend when `S3_URL` is set),
//! through the same `Media::copy_one` the dispatcher uses, and prints the
//! peak RSS growth over the process's resting RSS. Run by
//! `bench/media-copy.sh`, which serves the file from loopback.
//!
//!   cargo run --release --example media_copy -- URL [S3_URL]

use std::time::{Duration, Instant};

use gengate_core::task::NewTask;
use gengate_core::{Output, Task};
use gengate_engine::media::{self, Backend, Media, S3Settings};

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn task(url: &str) -> Task {
    let mut t = NewTask {
        id: "tsk_01BENCH".into(),
        user_id: 1,
        model: "m".into(),
        provider: "p".into(),
        input: serde_json::json!({}),
        public: false,
        priority: 0,
        max_attempts: 1,
        deadline_at: i64::MAX,
        created_at: 0,
        webhook_url: None,
        billing: None,
        limits: Default::default(),
    }
    .into_task();
    t.outputs = vec![Output::new(url, "video/mp4")];
    t
}

async fn run(name: &str, backend: Backend, url: &str, dir: &std::path::Path) -> anyhow::Result<()> {
    let m = Media::new(
        backend,
        media::Settings {
            concurrency: 1,
            max_bytes: 2 << 30,
            max_attempts: 1,
            retry_base: Duration::from_millis(10),
            allow_private: true,
            allowed_hosts: Vec::new(),
            provider_hosts: Default::default(),
            fetch_timeout: Duration::from_secs(600),
            in_place_providers: Vec::new(),
        },
        dir.to_owned(),
        "http://bench.invalid/media".into(),
        &gengate_net::Outbound::default(),
    )?;
    let t = task(url);
    let rest_kb = status_kb("VmRSS:");
    // Reset the peak so it measures this copy alone.
    std::fs::write("/proc/self/clear_refs", "5")?;
    let start = Instant::now();
    let out = m.copy_one(&t, 0, &t.outputs[0]).await?;
    let secs = start.elapsed().as_secs_f64();
    let peak_kb = status_kb("VmHWM:");
    let mb = out.bytes.unwrap_or(0) as f64 / 1e6;
    println!(
        "{name}: copied {mb:.0} MB in {secs:.1}s ({:.0} MB/s); RSS at rest {:.1} MB, peak {:.1} MB, growth {:.1} MB",
        mb / secs,
        rest_kb as f64 / 1024.0,
        peak_kb as f64 / 1024.0,
        peak_kb.saturating_sub(rest_kb) as f64 / 1024.0
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args.next().expect("usage: media_copy URL [S3_URL]");
    let s3 = args.next();
    let dir = tempfile::tempdir()?;
    run(
        "local",
        Backend::Local {
            dir: dir.path().to_owned(),
            base_url: "http://bench.invalid/media".into(),
        },
        &url,
        dir.path(),
    )
    .await?;
    if let Some(s3) = s3 {
        let backend = Backend::s3(
            S3Settings {
                endpoint: s3.parse()?,
                region: "us-east-1".into(),
                bucket: "bench".into(),
                path_style: true,
                access_key: "testing".into(),
                secret_key: "testing".into(),
                prefix: String::new(),
                public_base_url: "https://cdn.example.com".into(),
                part_size: 8 << 20,
            },
            &gengate_net::Outbound::default(),
        )?;
        run("s3 (8 MiB parts)", backend, &url, dir.path()).await?;
    }
    Ok(())
}
