//! The media step: copies each output a provider reports into the
//! operator's storage ([`backend`]) and records key, public URL, sniffed
//! content type, size and SHA-256 on the task. The dispatcher runs it for
//! tasks in `storing` and decides what a failure does to the task; this
//! module owns how outputs are fetched (through a guarded client of
//! `gengate_net`, whose address policy refuses private and special
//! destinations; each redirect hop checked again), how they are checked
//! ([`sniff`]) and how they are streamed (one chunk in memory, or one S3
//! part).

pub mod backend;
pub mod gc;
pub mod sniff;
pub mod thumb;
pub mod upload;
pub mod video;

use std::collections::HashMap;
use std::time::Duration;

use gengate_core::{Output, Task, mime};
use gengate_net::{Cause, Destinations, Failure, Forbidden, Outbound, check_url};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

pub use backend::{Backend, S3Settings, StorageError};

/// Rules of the media step.
#[derive(Clone)]
pub struct Settings {
    /// Copies under way at once (across tasks).
    pub concurrency: usize,
    /// Largest output accepted, bytes.
    pub max_bytes: u64,
    /// Tries per output before the task fails with `output_copy_failed`.
    pub max_attempts: u32,
    /// First retry delay; doubled each attempt.
    pub retry_base: Duration,
    /// Fetch from loopback and private addresses (the mocks in tests).
    pub allow_private: bool,
    /// Hosts outputs may come from besides each provider's own (empty with
    /// no provider hosts known: any public host).
    pub allowed_hosts: Vec<String>,
    /// Per provider entry: its own API host.
    pub provider_hosts: HashMap<String, Vec<String>>,
    /// Timeout of one fetch, from request to last byte.
    pub fetch_timeout: Duration,
    /// Provider entries whose outputs are files in this server's own media
    /// directory (the in-process simulator). Only their URLs are read from
    /// disk: another provider naming one of our URLs must not get a copy
    /// of someone else's file.
    pub in_place_providers: Vec<String>,
}

/// Why one output could not be copied.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The provider's URL has expired (403/404/410 after its `expires_at`).
    #[error("the provider's URL has expired ({0})")]
    Expired(String),
    /// Refused for good: forbidden address or host, too large, not the
    /// type it claims. Retrying would be refused again.
    #[error("{0}")]
    Refused(String),
    /// The fetch or the upload failed in a way another try may fix.
    #[error("{0}")]
    Transient(String),
}

impl From<Forbidden> for CopyError {
    fn from(f: Forbidden) -> Self {
        CopyError::Refused(f.to_string())
    }
}

impl From<StorageError> for CopyError {
    fn from(e: StorageError) -> Self {
        CopyError::Transient(e.to_string())
    }
}

/// Links `to` to the file `from` (replacing what `to` was, as a copy after
/// a crash does); whether it could.
async fn link(from: &std::path::Path, to: &std::path::Path) -> bool {
    let Some(parent) = to.parent() else {
        return false;
    };
    if tokio::fs::create_dir_all(parent).await.is_err() {
        return false;
    }
    match tokio::fs::remove_file(to).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return false,
        _ => {}
    }
    tokio::fs::hard_link(from, to).await.is_ok()
}

/// A temporary copy of an output being streamed elsewhere (to S3), for
/// `ffprobe`; removed when dropped.
struct TempCopy {
    file: tokio::fs::File,
    path: std::path::PathBuf,
}

impl TempCopy {
    async fn create() -> Option<Self> {
        let path = std::env::temp_dir().join(format!(
            "gengate-probe-{}.tmp",
            hex::encode(rand::random::<[u8; 8]>())
        ));
        let file = tokio::fs::File::create(&path).await.ok()?;
        Some(Self { file, path })
    }

    /// Appends `chunk`; whether it could (a full disk only costs the poster).
    async fn write(&mut self, chunk: &[u8]) -> bool {
        use tokio::io::AsyncWriteExt as _;
        self.file.write_all(chunk).await.is_ok() && self.file.flush().await.is_ok()
    }
}

impl Drop for TempCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Redirect hops followed at most.
const MAX_REDIRECTS: usize = 5;

/// The media step's shared parts. Cheap to share behind an `Arc`.
pub struct Media {
    pub backend: Backend,
    pub settings: Settings,
    client: reqwest::Client,
    /// Where the client may connect (public addresses unless
    /// `media.allow_private`).
    destinations: Destinations,
    /// This server's own media: (dir, `<public_url>/media`), where the
    /// in-process simulator's outputs already are.
    own: (std::path::PathBuf, String),
}

impl Media {
    /// Fetches go through a guarded client of `net`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(
        backend: Backend,
        settings: Settings,
        own_dir: std::path::PathBuf,
        own_base_url: String,
        net: &Outbound,
    ) -> anyhow::Result<Self> {
        let destinations = Destinations::guarded(settings.allow_private, "media.allow_private");
        let client = net.guarded(destinations, settings.fetch_timeout)?;
        Ok(Self {
            backend,
            settings,
            client,
            destinations,
            own: (own_dir, own_base_url),
        })
    }

    /// The key of output `index` of a task: `<task id>/<index>.<ext>`.
    pub fn key_of(task_id: &str, index: usize, content_type: &str) -> String {
        format!("t/{task_id}/{index}.{}", mime::extension(content_type))
    }

    /// Copies every output of a storing task, each with its own retries.
    ///
    /// # Errors
    /// The first output that could not be copied, as the task's error.
    pub async fn copy_all(&self, task: &Task) -> Result<Vec<Output>, gengate_core::TaskError> {
        let mut stored = Vec::with_capacity(task.outputs.len());
        for (index, out) in task.outputs.iter().enumerate() {
            if out.key.is_some() {
                stored.push(out.clone());
                continue;
            }
            let mut attempt = 0;
            let result = loop {
                attempt += 1;
                match self.copy_one(task, index, out).await {
                    Err(CopyError::Transient(msg)) if attempt < self.settings.max_attempts => {
                        let wait = self.settings.retry_base * 2u32.saturating_pow(attempt - 1);
                        tracing::warn!(task.id = %task.id, attempt, "copying output {index} of task {} failed: {msg}; retrying in {wait:?}", task.id);
                        tokio::time::sleep(wait).await;
                    }
                    other => break other,
                }
            };
            match result {
                Ok(o) => stored.push(o),
                Err(CopyError::Expired(msg)) => {
                    return Err(gengate_core::TaskError::new(
                        "output_expired",
                        format!("output {index}: the provider's URL has expired ({msg})"),
                        false,
                    ));
                }
                Err(e) => {
                    return Err(gengate_core::TaskError::new(
                        "output_copy_failed",
                        format!("output {index}: {e}"),
                        false,
                    ));
                }
            }
        }
        Ok(stored)
    }

    /// Copies one output to its key (again, if a crash interrupted it).
    ///
    /// # Errors
    /// [`CopyError`] says whether another try may help.
    pub async fn copy_one(
        &self,
        task: &Task,
        index: usize,
        out: &Output,
    ) -> Result<Output, CopyError> {
        let own_file = self
            .settings
            .in_place_providers
            .contains(&task.provider)
            .then(|| Backend::local_file_of(&self.own.0, &self.own.1, &out.url))
            .flatten();
        let mut source = match &own_file {
            Some((_, path)) => Source::File(
                tokio::fs::File::open(&path)
                    .await
                    .map_err(|e| CopyError::Refused(format!("own media file: {e}")))?,
            ),
            None => Source::Http(self.fetch(task, out).await?),
        };
        let max = self.settings.max_bytes;
        if let Some(len) = source.declared_len()
            && len > max
        {
            return Err(CopyError::Refused(format!(
                "output is {len} bytes, over media.max_bytes ({max})"
            )));
        }
        // Enough bytes to sniff the type before anything is stored.
        let mut head: Vec<u8> = Vec::new();
        while head.len() < sniff::SNIFF_LEN {
            match source.chunk().await? {
                Some(c) => head.extend_from_slice(&c),
                None => break,
            }
        }
        let Some(actual) = sniff::sniff(&head) else {
            return Err(CopyError::Refused(
                "the content is not a recognized image or video".into(),
            ));
        };
        let declared = url_path(&out.url)
            .and_then(|p| sniff::type_of_extension(&p))
            .unwrap_or(out.content_type.as_str());
        for claimed in [declared, out.content_type.as_str()] {
            if mime::family(claimed) != mime::family(actual) {
                return Err(CopyError::Refused(format!(
                    "the content is {actual}, not the {claimed} it claims to be"
                )));
            }
        }
        let key = Self::key_of(&task.id, index, actual);
        // Already in our media directory (the in-process simulator's): a
        // hard link gives it the task's key, so that it is served by the
        // task's rules (private unless in the gallery), without a copy.
        let linked = match (&self.backend, &own_file) {
            (Backend::Local { dir, .. }, Some((_, path))) => link(path, &dir.join(&key)).await,
            _ => false,
        };
        let mut writer = if linked {
            None
        } else {
            Some(self.backend.writer(&key, actual).await?)
        };
        let mut hasher = Sha256::new();
        let mut total: u64 = 0;
        // Images small enough are kept for their thumbnail; anything larger
        // (and every video) only streams through.
        let mut for_thumb: Option<Vec<u8>> = (thumb::wanted(actual)
            && source
                .declared_len()
                .is_none_or(|n| n <= thumb::MAX_INPUT_BYTES))
        .then(Vec::new);
        // A video's bytes are probed from a file: the stored one on local
        // storage, else a temporary copy made as it streams through.
        let probe_video = mime::family(actual) == "video" && video::available();
        let mut tee = match (&self.backend, probe_video) {
            (Backend::S3 { .. }, true) => TempCopy::create().await,
            _ => None,
        };
        let mut pending = Some(bytes::Bytes::from(head));
        let result: Result<(), CopyError> = async {
            loop {
                let chunk = match pending.take() {
                    Some(c) => c,
                    None => match source.chunk().await? {
                        Some(c) => c,
                        None => break,
                    },
                };
                total += chunk.len() as u64;
                if total > max {
                    return Err(CopyError::Refused(format!(
                        "output is over media.max_bytes ({max})"
                    )));
                }
                hasher.update(&chunk);
                if let Some(buf) = for_thumb.as_mut() {
                    if (buf.len() + chunk.len()) as u64 > thumb::MAX_INPUT_BYTES {
                        for_thumb = None;
                    } else {
                        buf.extend_from_slice(&chunk);
                    }
                }
                if let Some(w) = writer.as_mut() {
                    w.write(&chunk).await?;
                }
                if let Some(t) = tee.as_mut()
                    && !t.write(&chunk).await
                {
                    tee = None;
                }
            }
            Ok(())
        }
        .await;
        match (result, writer) {
            (Err(e), Some(w)) => {
                w.abort().await;
                return Err(e);
            }
            (Err(e), None) => return Err(e),
            (Ok(()), Some(w)) => w.finish().await?,
            (Ok(()), None) => {}
        }
        let sha256 = hex::encode(hasher.finalize());
        let (mut width, mut height, mut duration_s) = (out.width, out.height, out.duration_s);
        let thumbnail_url = match for_thumb {
            Some(bytes) => {
                if let Some((w, h)) = sniff::image_size(actual, &bytes) {
                    (width, height) = (Some(w), Some(h));
                }
                self.store_thumbnail(task, &key, bytes).await?
            }
            None if probe_video => {
                let path = match (&self.backend, &tee) {
                    (Backend::Local { dir, .. }, _) => Some(dir.join(&key)),
                    (_, Some(t)) => Some(t.path.clone()),
                    _ => None,
                };
                let info = match path {
                    Some(p) => video::inspect(&p).await,
                    None => None,
                };
                drop(tee);
                match info {
                    Some(info) => {
                        width = info.width.or(width);
                        height = info.height.or(height);
                        duration_s = info.duration_s.or(duration_s);
                        match info.poster {
                            Some(jpeg) => Some(self.store_jpeg(&thumb_key(&key), &jpeg).await?),
                            None => out.thumbnail_url.clone(),
                        }
                    }
                    None => {
                        tracing::warn!(task.id = %task.id, "no poster or metadata for {key}: ffprobe could not read it");
                        out.thumbnail_url.clone()
                    }
                }
            }
            None => out.thumbnail_url.clone(),
        };
        tracing::debug!(task.id = %task.id, size_bytes = total, key = %key, "stored output {index} of task {}", task.id);
        Ok(Output {
            url: self.backend.public_url(&key),
            content_type: actual.to_owned(),
            bytes: Some(total),
            expires_at: None,
            key: Some(key),
            sha256: Some(sha256),
            thumbnail_url,
            width,
            height,
            duration_s,
        })
    }

    /// Renders and stores the thumbnail of an image output; an image that
    /// cannot be rendered simply gets none.
    async fn store_thumbnail(
        &self,
        task: &Task,
        key: &str,
        bytes: Vec<u8>,
    ) -> Result<Option<String>, CopyError> {
        let rendered = tokio::task::spawn_blocking(move || thumb::render(&bytes))
            .await
            .map_err(|e| CopyError::Transient(format!("thumbnail task: {e}")))?;
        let jpeg = match rendered {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(task.id = %task.id, "no thumbnail for {key}: {e}");
                return Ok(None);
            }
        };
        self.store_jpeg(&thumb_key(key), &jpeg).await.map(Some)
    }

    /// Stores a JPEG (a thumbnail or a poster) at `key`; its URL.
    async fn store_jpeg(&self, key: &str, jpeg: &[u8]) -> Result<String, CopyError> {
        let mut w = self.backend.writer(key, "image/jpeg").await?;
        if let Err(e) = w.write(jpeg).await {
            w.abort().await;
            return Err(e.into());
        }
        w.finish().await?;
        Ok(self.backend.public_url(key))
    }

    /// Opens the provider's URL, following redirects by hand so that each
    /// hop is checked like the first.
    async fn fetch(&self, task: &Task, out: &Output) -> Result<reqwest::Response, CopyError> {
        let mut allowed: Vec<String> = self.settings.allowed_hosts.clone();
        if !allowed.is_empty()
            && let Some(own) = self.settings.provider_hosts.get(&task.provider)
        {
            allowed.extend(own.iter().cloned());
        }
        let mut url = reqwest::Url::parse(&out.url)
            .map_err(|e| CopyError::Refused(format!("bad output URL: {e}")))?;
        for _ in 0..=MAX_REDIRECTS {
            check_url(&url, &allowed, self.destinations)?;
            let r = match self.client.get(url.clone()).send().await {
                Ok(r) => r,
                Err(e) => {
                    let failure = Failure::of(&e);
                    return Err(match failure.cause {
                        Cause::Forbidden(why) => Forbidden(why).into(),
                        _ => CopyError::Transient(format!("fetching the output: {failure}")),
                    });
                }
            };
            let status = r.status();
            if status.is_redirection() {
                let next = r
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|loc| url.join(loc).ok())
                    .ok_or_else(|| {
                        CopyError::Refused(format!("{status} without a usable Location"))
                    })?;
                url = next;
                continue;
            }
            if status.is_success() {
                return Ok(r);
            }
            let past_expiry = out.expires_at.is_some_and(|at| crate::now_ms() >= at);
            return Err(match status.as_u16() {
                403 | 404 | 410 if past_expiry => CopyError::Expired(format!("HTTP {status}")),
                408 | 429 => CopyError::Transient(format!("the provider answered {status}")),
                s if s >= 500 => CopyError::Transient(format!("the provider answered {status}")),
                // A 403/404 before the expiry may be a CDN not yet in sync.
                403 | 404 => CopyError::Transient(format!("the provider answered {status}")),
                _ => CopyError::Refused(format!("the provider answered {status}")),
            });
        }
        Err(CopyError::Refused(format!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }

    /// Deletes the stored objects of these outputs (best effort per key).
    ///
    /// # Errors
    /// The first key that could not be deleted.
    pub async fn delete_outputs(&self, outputs: &[Output]) -> Result<(), StorageError> {
        for o in outputs {
            if let Some(key) = &o.key {
                self.backend.delete(key).await?;
                if o.thumbnail_url.is_some() {
                    self.backend.delete(&thumb_key(key)).await?;
                }
            }
        }
        Ok(())
    }
}

/// The key of an output's thumbnail, beside it.
pub fn thumb_key(key: &str) -> String {
    format!("{key}.thumb.jpg")
}

fn url_path(url: &str) -> Option<String> {
    reqwest::Url::parse(url).ok().map(|u| u.path().to_owned())
}

/// Where the bytes of an output come from.
enum Source {
    Http(reqwest::Response),
    File(tokio::fs::File),
}

/// Read size for local files.
const FILE_CHUNK: usize = 256 * 1024;

impl Source {
    fn declared_len(&self) -> Option<u64> {
        match self {
            Source::Http(r) => r.content_length(),
            Source::File(_) => None,
        }
    }

    async fn chunk(&mut self) -> Result<Option<bytes::Bytes>, CopyError> {
        match self {
            Source::Http(r) => r.chunk().await.map_err(|e| {
                CopyError::Transient(format!("reading the output: {}", Failure::of(&e)))
            }),
            Source::File(f) => {
                let mut buf = vec![0u8; FILE_CHUNK];
                let n = f
                    .read(&mut buf)
                    .await
                    .map_err(|e| CopyError::Transient(format!("reading the output: {e}")))?;
                buf.truncate(n);
                Ok((n > 0).then(|| bytes::Bytes::from(buf)))
            }
        }
    }
}
