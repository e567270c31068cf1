//! Video outputs' metadata and poster: width, height and duration from
//! `ffprobe`, and a JPEG of the first frame (320 px wide at most) from
//! `ffmpeg`, when both are installed (`gengate doctor` says whether they
//! are). Each run is bounded in time and output, and killed when it is
//! dropped: a provider's file is not trusted.

use std::path::Path;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// How long one `ffprobe` or `ffmpeg` run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);
/// The most a poster may be, bytes.
const MAX_POSTER: u64 = 2 << 20;

/// What a video is.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub duration_s: Option<f64>,
    /// A JPEG of its first frame.
    pub poster: Option<Vec<u8>>,
}

/// Whether `ffprobe` and `ffmpeg` run here (asked once).
pub fn available() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        ["ffprobe", "ffmpeg"].iter().all(|tool| {
            std::process::Command::new(tool)
                .arg("-version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
    })
}

/// Runs `cmd`, keeping at most `max` bytes of its output; `None` when it
/// fails, outputs more, or takes longer than [`RUN_TIMEOUT`].
async fn run(mut cmd: Command, max: u64) -> Option<Vec<u8>> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd.spawn().ok()?;
    let mut stdout = child.stdout.take()?;
    let work = async {
        let mut out = Vec::new();
        (&mut stdout)
            .take(max + 1)
            .read_to_end(&mut out)
            .await
            .ok()?;
        let status = child.wait().await.ok()?;
        (status.success() && out.len() as u64 <= max).then_some(out)
    };
    tokio::time::timeout(RUN_TIMEOUT, work).await.ok().flatten()
}

/// Width, height and duration of the video file at `path`, and its poster.
/// `None` when the tools are missing or cannot read it.
pub async fn inspect(path: &Path) -> Option<VideoInfo> {
    if !available() {
        return None;
    }
    let mut probe = Command::new("ffprobe");
    probe
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args(["stream=width,height:format=duration", "-of", "json"])
        .arg(path);
    let meta: serde_json::Value = serde_json::from_slice(&run(probe, 1 << 16).await?).ok()?;
    let stream = &meta["streams"][0];
    let dim = |k: &str| stream[k].as_u64().and_then(|v| u32::try_from(v).ok());
    let duration_s = meta["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d >= 0.0);
    let mut poster = Command::new("ffmpeg");
    poster
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(path)
        .args(["-frames:v", "1", "-vf", "scale='min(320,iw)':-2"])
        .args(["-f", "image2pipe", "-c:v", "mjpeg", "-q:v", "4", "pipe:1"]);
    let poster = run(poster, MAX_POSTER)
        .await
        .filter(|j| j.starts_with(b"\xff\xd8"));
    Some(VideoInfo {
        width: dim("width"),
        height: dim("height"),
        duration_s,
        poster,
    })
}
