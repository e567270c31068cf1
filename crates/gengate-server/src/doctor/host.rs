//! The host: open files for the expected connections, disk space.

use std::path::Path;

use gengate_config::Config;

use super::finding::{Finding, Level, Options, fmt_bytes};

/// Total RAM from `/proc/meminfo`.
pub(super) fn mem_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The soft open-file limit of this process, from `/proc/self/limits`.
pub(super) fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

pub(super) fn check_open_files(cfg: &Config, opts: &Options) -> Finding {
    let need = opts.connections
        + u64::from(cfg.store.pool_size)
        + u64::from(cfg.media.concurrency as u32)
        + 64;
    match open_file_limit() {
        Some(limit) if limit < need => Finding::new(
            "open files",
            Level::Fail,
            format!(
                "the open-file limit is {limit}; {} client connections, the store pool and media copies need about {need}",
                opts.connections
            ),
            "raise it: LimitNOFILE=65536 in the systemd unit (deploy/gengate.service has it), or `ulimit -n 65536` before starting",
        ),
        Some(limit) if limit < need * 2 => Finding::new(
            "open files",
            Level::Warn,
            format!("the open-file limit {limit} leaves little headroom over the ~{need} expected"),
            "raise it to 65536 (LimitNOFILE in the systemd unit)",
        ),
        Some(limit) => Finding::pass("open files", format!("limit {limit} for ~{need} expected")),
        None => Finding::new(
            "open files",
            Level::Warn,
            "cannot read /proc/self/limits",
            "check `ulimit -n` by hand",
        ),
    }
}

/// Free and total bytes of the file system holding `dir`, from `df`.
pub(super) fn disk_space(dir: &Path) -> Option<(u64, u64)> {
    let out = std::process::Command::new("df")
        .args(["-Pk"])
        .arg(dir)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let fields: Vec<&str> = text.lines().nth(1)?.split_whitespace().collect();
    let total: u64 = fields.get(1)?.parse().ok()?;
    let avail: u64 = fields.get(3)?.parse().ok()?;
    Some((avail * 1024, total * 1024))
}

pub(super) fn check_disk(dir: &Path) -> Finding {
    let probe = if dir.exists() { dir } else { Path::new(".") };
    match disk_space(probe) {
        Some((free, _)) if free < 100 * 1024 * 1024 => Finding::new(
            "disk space",
            Level::Fail,
            format!("{} free at {}", fmt_bytes(free), dir.display()),
            "free space or move server.data_dir: SQLite, local media and logs stop at a full disk",
        ),
        Some((free, total)) if free < 1024 * 1024 * 1024 || free * 10 < total => Finding::new(
            "disk space",
            Level::Warn,
            format!(
                "{} free of {} at {}",
                fmt_bytes(free),
                fmt_bytes(total),
                dir.display()
            ),
            "free space, or set media.retention and run `gengate media gc` from cron",
        ),
        Some((free, total)) => Finding::pass(
            "disk space",
            format!(
                "{} free of {} at {}",
                fmt_bytes(free),
                fmt_bytes(total),
                dir.display()
            ),
        ),
        None => Finding::new(
            "disk space",
            Level::Warn,
            format!("cannot read free space at {}", dir.display()),
            "check `df -h` by hand",
        ),
    }
}

/// Whether video outputs get a poster, a size and a duration.
pub(super) fn check_video_tools() -> Finding {
    if gengate_engine::media::video::available() {
        Finding::pass(
            "ffmpeg",
            "ffprobe and ffmpeg run: videos get a poster, width, height and duration",
        )
    } else {
        Finding::new(
            "ffmpeg",
            Level::Warn,
            "ffprobe or ffmpeg is not installed",
            "install ffmpeg (apt-get install ffmpeg) for video posters and metadata",
        )
    }
}
