//! Where stored outputs go: a directory gengate serves itself (`local`), or
//! an S3-compatible bucket behind the operator's CDN (`s3`: Tencent COS,
//! Aliyun OSS, AWS S3, MinIO). Requests to S3 are built and signed by
//! `rusty-s3` (sans-IO) and sent with reqwest.
//!
//! Writes stream: the local backend appends to a temp file and renames it
//! into place; the S3 backend sends fixed-size parts of a multipart upload
//! (a single PUT when the whole file fits in one part), so memory stays at
//! one part whatever the file's size. Writing a key again replaces it, which
//! makes a repeated copy after a crash harmless.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use tokio::io::AsyncWriteExt;

/// Why a storage operation failed. All are worth retrying.
#[derive(Debug, thiserror::Error)]
#[error("storage: {0}")]
pub struct StorageError(pub String);

/// A storage error from any text: every URL in it redacted (a presigned
/// URL's query carries its signature, which must reach no log or task).
fn err(e: impl std::fmt::Display) -> StorageError {
    StorageError(gengate_net::redact_text(&e.to_string()))
}

/// A storage error from a failed request: what happened, the URL redacted.
fn http_err(e: &reqwest::Error) -> StorageError {
    StorageError(gengate_net::Failure::of(e).to_string())
}

/// S3 settings, validated.
#[derive(Clone)]
pub struct S3Settings {
    pub endpoint: reqwest::Url,
    pub region: String,
    pub bucket: String,
    pub path_style: bool,
    pub access_key: String,
    pub secret_key: String,
    /// Prepended to every key (e.g. `gengate/`).
    pub prefix: String,
    /// Public URLs are `<public_base_url>/<prefix><key>`.
    pub public_base_url: String,
    /// Size of multipart parts (S3 needs at least 5 MiB but for the last).
    pub part_size: usize,
}

/// A storage backend.
#[expect(
    clippy::large_enum_variant,
    reason = "one backend per process, built once: its size does not matter"
)]
pub enum Backend {
    Local {
        dir: PathBuf,
        /// `<public_url>/media`.
        base_url: String,
    },
    S3 {
        bucket: Bucket,
        creds: Credentials,
        settings: S3Settings,
        client: reqwest::Client,
    },
}

/// How long signed S3 requests stay valid.
const SIGN_TTL: Duration = Duration::from_secs(3600);

impl Backend {
    /// The S3 backend, reached through `net`'s storage client.
    ///
    /// # Errors
    /// When the bucket settings do not make a valid URL.
    pub fn s3(settings: S3Settings, net: &gengate_net::Outbound) -> Result<Self, StorageError> {
        let style = if settings.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(
            settings.endpoint.clone(),
            style,
            settings.bucket.clone(),
            settings.region.clone(),
        )
        .map_err(err)?;
        let creds = Credentials::new(settings.access_key.clone(), settings.secret_key.clone());
        let client = net.storage(Duration::from_secs(300)).map_err(err)?;
        Ok(Backend::S3 {
            bucket,
            creds,
            settings,
            client,
        })
    }

    /// The public URL of `key`.
    pub fn public_url(&self, key: &str) -> String {
        match self {
            Backend::Local { base_url, .. } => format!("{base_url}/{key}"),
            Backend::S3 { settings, .. } => format!(
                "{}/{}{key}",
                settings.public_base_url.trim_end_matches('/'),
                settings.prefix
            ),
        }
    }

    /// The local file behind a public URL of this server's own media, if
    /// `url` is one (the in-process simulator writes its outputs there).
    pub fn local_file_of(dir: &Path, base_url: &str, url: &str) -> Option<(String, PathBuf)> {
        let rel = url.strip_prefix(base_url)?.strip_prefix('/')?;
        let safe = rel
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != ".." && !s.starts_with('.'));
        (safe && !rel.contains(['?', '#', '\\'])).then(|| (rel.to_owned(), dir.join(rel)))
    }

    /// Starts writing `key`.
    ///
    /// # Errors
    /// When the write cannot begin.
    pub async fn writer(&self, key: &str, content_type: &str) -> Result<Writer<'_>, StorageError> {
        match self {
            Backend::Local { dir, .. } => {
                let path = dir.join(key);
                let parent = path.parent().ok_or_else(|| err("key has no directory"))?;
                tokio::fs::create_dir_all(parent).await.map_err(err)?;
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
                let tmp = parent.join(format!(".{name}.{}.tmp", rand::random::<u32>()));
                let file = tokio::fs::File::create(&tmp).await.map_err(err)?;
                Ok(Writer::Local { file, tmp, path })
            }
            Backend::S3 { settings, .. } => Ok(Writer::S3 {
                backend: self,
                key: format!("{}{key}", settings.prefix),
                content_type: content_type.to_owned(),
                buf: BytesMut::with_capacity(settings.part_size),
                upload_id: None,
                etags: Vec::new(),
            }),
        }
    }

    /// Deletes `key` (absent keys are fine).
    ///
    /// # Errors
    /// When the storage cannot be reached.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self {
            Backend::Local { dir, .. } => match tokio::fs::remove_file(dir.join(key)).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(err(e)),
                _ => Ok(()),
            },
            Backend::S3 {
                bucket,
                creds,
                settings,
                client,
            } => {
                let url = bucket
                    .delete_object(Some(creds), &format!("{}{key}", settings.prefix))
                    .sign(SIGN_TTL);
                let r = client.delete(url).send().await.map_err(|e| http_err(&e))?;
                if r.status().is_success() || r.status() == reqwest::StatusCode::NOT_FOUND {
                    Ok(())
                } else {
                    Err(err(format!("DELETE answered {}", r.status())))
                }
            }
        }
    }

    /// Every key stored under `under` (relative to the prefix), with its
    /// last-modified time where known.
    ///
    /// # Errors
    /// When the storage cannot be read.
    pub async fn list(&self, under: &str) -> Result<Vec<String>, StorageError> {
        match self {
            Backend::Local { dir, .. } => {
                let root = dir.join(under);
                let mut out = Vec::new();
                let mut stack = vec![root];
                while let Some(d) = stack.pop() {
                    let Ok(mut rd) = tokio::fs::read_dir(&d).await else {
                        continue;
                    };
                    while let Some(e) = rd.next_entry().await.map_err(err)? {
                        let p = e.path();
                        if e.file_type().await.map_err(err)?.is_dir() {
                            stack.push(p);
                        } else if let Ok(rel) = p.strip_prefix(dir) {
                            out.push(rel.to_string_lossy().replace('\\', "/"));
                        }
                    }
                }
                Ok(out)
            }
            Backend::S3 {
                bucket,
                creds,
                settings,
                client,
            } => {
                let mut out = Vec::new();
                let mut token: Option<String> = None;
                loop {
                    let mut action = bucket.list_objects_v2(Some(creds));
                    action.with_prefix(format!("{}{under}", settings.prefix));
                    if let Some(t) = &token {
                        action.with_continuation_token(t.clone());
                    }
                    let url = action.sign(SIGN_TTL);
                    let r = client.get(url).send().await.map_err(|e| http_err(&e))?;
                    if !r.status().is_success() {
                        return Err(err(format!("ListObjectsV2 answered {}", r.status())));
                    }
                    let text = r.text().await.map_err(|e| http_err(&e))?;
                    let page =
                        rusty_s3::actions::ListObjectsV2::parse_response(&text).map_err(err)?;
                    out.extend(
                        page.contents.into_iter().filter_map(|c| {
                            c.key.strip_prefix(&settings.prefix).map(str::to_owned)
                        }),
                    );
                    match page.next_continuation_token {
                        Some(t) => token = Some(t),
                        None => break,
                    }
                }
                Ok(out)
            }
        }
    }
}

/// One object being written.
pub enum Writer<'a> {
    Local {
        file: tokio::fs::File,
        tmp: PathBuf,
        path: PathBuf,
    },
    S3 {
        backend: &'a Backend,
        key: String,
        content_type: String,
        /// The part being filled; never more than one part is held.
        buf: BytesMut,
        upload_id: Option<String>,
        etags: Vec<String>,
    },
}

impl Writer<'_> {
    /// Appends bytes.
    ///
    /// # Errors
    /// When the storage refuses them.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), StorageError> {
        match self {
            Writer::Local { file, .. } => file.write_all(chunk).await.map_err(err),
            Writer::S3 { .. } => {
                let mut rest = chunk;
                while !rest.is_empty() {
                    let part_size = self.part_size();
                    let Writer::S3 { buf, .. } = self else {
                        unreachable!("matched above")
                    };
                    let take = (part_size - buf.len()).min(rest.len());
                    buf.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if buf.len() == part_size {
                        self.flush_part().await?;
                    }
                }
                Ok(())
            }
        }
    }

    fn part_size(&self) -> usize {
        match self {
            Writer::S3 {
                backend: Backend::S3 { settings, .. },
                ..
            } => settings.part_size,
            _ => usize::MAX,
        }
    }

    async fn flush_part(&mut self) -> Result<(), StorageError> {
        let Writer::S3 {
            backend:
                Backend::S3 {
                    bucket,
                    creds,
                    client,
                    ..
                },
            key,
            content_type,
            buf,
            upload_id,
            etags,
        } = self
        else {
            return Ok(());
        };
        let id = match upload_id {
            Some(id) => id.clone(),
            None => {
                let url = bucket
                    .create_multipart_upload(Some(creds), key)
                    .sign(SIGN_TTL);
                let r = client
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, content_type.as_str())
                    .send()
                    .await
                    .map_err(|e| http_err(&e))?;
                if !r.status().is_success() {
                    return Err(err(format!(
                        "CreateMultipartUpload answered {}",
                        r.status()
                    )));
                }
                let text = r.text().await.map_err(|e| http_err(&e))?;
                let created =
                    rusty_s3::actions::CreateMultipartUpload::parse_response(&text).map_err(err)?;
                let id = created.upload_id().to_owned();
                *upload_id = Some(id.clone());
                id
            }
        };
        let number = u16::try_from(etags.len() + 1)
            .ok()
            .filter(|n| *n <= 10_000)
            .ok_or_else(|| err("more than 10000 parts: raise media.s3.part_size"))?;
        let body: Bytes = buf.split().freeze();
        let url = bucket
            .upload_part(Some(creds), key, number, &id)
            .sign(SIGN_TTL);
        let r = client
            .put(url)
            .body(body)
            .send()
            .await
            .map_err(|e| http_err(&e))?;
        if !r.status().is_success() {
            return Err(err(format!("UploadPart answered {}", r.status())));
        }
        let etag = r
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| err("UploadPart answer has no ETag"))?
            .to_owned();
        etags.push(etag);
        Ok(())
    }

    /// Makes the object visible under its key.
    ///
    /// # Errors
    /// When the storage refuses; nothing is visible then, and the temp file
    /// or the multipart upload (whose parts the bucket would keep, and bill)
    /// is removed.
    pub async fn finish(mut self) -> Result<(), StorageError> {
        let result = self.complete().await;
        if result.is_err() {
            self.abort().await;
        }
        result
    }

    async fn complete(&mut self) -> Result<(), StorageError> {
        match self {
            Writer::Local { file, tmp, path } => {
                file.flush().await.map_err(err)?;
                file.sync_all().await.map_err(err)?;
                tokio::fs::rename(&tmp, &path).await.map_err(err)
            }
            Writer::S3 {
                backend:
                    Backend::S3 {
                        bucket,
                        creds,
                        client,
                        ..
                    },
                key,
                content_type,
                buf,
                upload_id,
                ..
            } => {
                if upload_id.is_none() {
                    // It all fits in one part: one PUT.
                    let url = bucket.put_object(Some(creds), key).sign(SIGN_TTL);
                    let body = buf.split().freeze();
                    let r = client
                        .put(url)
                        .header(reqwest::header::CONTENT_TYPE, content_type.as_str())
                        .body(body)
                        .send()
                        .await
                        .map_err(|e| http_err(&e))?;
                    return if r.status().is_success() {
                        Ok(())
                    } else {
                        Err(err(format!("PutObject answered {}", r.status())))
                    };
                }
                if !buf.is_empty() {
                    self.flush_part().await?;
                }
                let Writer::S3 {
                    backend:
                        Backend::S3 {
                            bucket,
                            creds,
                            client,
                            ..
                        },
                    key,
                    upload_id: Some(id),
                    etags,
                    ..
                } = &*self
                else {
                    return Err(err("multipart upload lost its id"));
                };
                let action = bucket.complete_multipart_upload(
                    Some(creds),
                    key,
                    id,
                    etags.iter().map(String::as_str),
                );
                let url = action.sign(SIGN_TTL);
                let r = client
                    .post(url)
                    .body(action.body())
                    .send()
                    .await
                    .map_err(|e| http_err(&e))?;
                // S3 can answer 200 with an error document inside.
                let ok = r.status().is_success();
                let text = r.text().await.unwrap_or_default();
                if ok && !text.contains("<Error>") {
                    Ok(())
                } else {
                    Err(err("CompleteMultipartUpload failed"))
                }
            }
            Writer::S3 { .. } => Err(err("S3 writer on a local backend")),
        }
    }

    /// Gives up: removes the temp file or aborts the multipart upload.
    pub async fn abort(self) {
        match self {
            Writer::Local { tmp, .. } => {
                let _ = tokio::fs::remove_file(tmp).await;
            }
            Writer::S3 {
                backend:
                    Backend::S3 {
                        bucket,
                        creds,
                        client,
                        ..
                    },
                key,
                upload_id: Some(id),
                ..
            } => {
                let url = bucket
                    .abort_multipart_upload(Some(creds), &key, &id)
                    .sign(SIGN_TTL);
                let _ = client.delete(url).send().await;
            }
            Writer::S3 { .. } => {}
        }
    }
}
