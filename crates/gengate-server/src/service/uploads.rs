//! Uploads: a user's input file (the image of an image-to-video task),
//! checked and stored so that a task's `url` input can name it. The type
//! comes from the bytes and must agree with the one declared; an image's
//! pixel count is read from its header and bounded before anything is
//! stored.

use std::sync::Arc;
use std::time::Duration;

use gengate_engine::media::Media;
use gengate_engine::media::upload::{image_size, sniff_upload};
use gengate_store::Caller;

use super::ServiceError;
use super::media_urls::MediaUrls;

/// Rules of uploads.
#[derive(Debug, Clone, Copy)]
pub struct UploadRules {
    pub max_bytes: u64,
    pub max_pixels: u64,
    /// How long an upload's signed URL stays valid.
    pub url_ttl: Duration,
}

/// A stored upload, as answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub id: String,
    /// Where it is fetched: signed until `expires_at` on this server's media.
    pub url: String,
    pub content_type: &'static str,
    pub bytes: u64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Unix ms after which `url` stops working (`None`: it does not expire).
    pub expires_at: Option<i64>,
}

/// Stores uploads.
#[derive(Clone)]
pub struct UploadService {
    media: Arc<Media>,
    rules: UploadRules,
}

impl UploadService {
    pub fn new(media: Arc<Media>, rules: UploadRules) -> Self {
        Self { media, rules }
    }

    pub fn rules(&self) -> UploadRules {
        self.rules
    }

    /// Checks `body`, declared as `declared` (one of the upload types), and
    /// stores it for `caller`.
    ///
    /// # Errors
    /// [`ServiceError::Invalid`] when the bytes are not what was declared,
    /// are not an image whose size can be read, or hold too many pixels;
    /// [`ServiceError::Store`] (unavailable) when the storage fails.
    pub async fn upload(
        &self,
        caller: &Caller,
        declared: &'static str,
        body: &[u8],
        urls: Option<&MediaUrls>,
        now_ms: i64,
    ) -> Result<Upload, ServiceError> {
        let invalid = |code: &'static str, message: String| ServiceError::Invalid {
            code,
            field: "body".into(),
            message,
        };
        let actual = sniff_upload(body).ok_or_else(|| {
            invalid(
                "unrecognized_content",
                format!("the body is not a {declared} file (nor any type uploads take)"),
            )
        })?;
        if actual != declared {
            return Err(invalid(
                "content_type_mismatch",
                format!("the body is {actual}, not {declared} as declared"),
            ));
        }
        let size = if declared.starts_with("image/") {
            let (w, h) = image_size(declared, body).ok_or_else(|| {
                invalid(
                    "unreadable_image",
                    "the image's size cannot be read from its header".into(),
                )
            })?;
            let pixels = u64::from(w) * u64::from(h);
            if pixels == 0 || pixels > self.rules.max_pixels {
                return Err(invalid(
                    "too_many_pixels",
                    format!(
                        "the image is {w}x{h}; at most {} pixels are taken",
                        self.rules.max_pixels
                    ),
                ));
            }
            Some((w, h))
        } else {
            None
        };
        let stored = self
            .media
            .store_upload(caller.user_id, declared, body)
            .await
            .map_err(|e| {
                ServiceError::Store(gengate_store::StoreError::Unavailable(format!(
                    "storing the upload failed: {e}"
                )))
            })?;
        let exp = now_ms / 1000 + self.rules.url_ttl.as_secs() as i64;
        let (url, expires_at) = match urls.filter(|u| u.own_path(&stored.url).is_some()) {
            Some(u) => (u.sign_until(&stored.url, exp), Some(exp * 1000)),
            None => (stored.url, None),
        };
        Ok(Upload {
            id: stored.id,
            url,
            content_type: declared,
            bytes: body.len() as u64,
            width: size.map(|s| s.0),
            height: size.map(|s| s.1),
            expires_at,
        })
    }
}
