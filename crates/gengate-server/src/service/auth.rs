//! Authentication of API keys, with a short-lived cache so the hot read paths
//! do not query the store on every request. Revocation takes effect within
//! [`CACHE_TTL`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gengate_core::Role;
use gengate_core::UserId;
use gengate_store::{Caller, KeyInfo, Store, TokenScope};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::ServiceError;
use super::media_urls::MediaUrls;
use crate::keys;

/// How long a key lookup (found or not) is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(1);
/// Beyond this many cached lookups the cache starts over, bounding memory
/// under a flood of random keys.
const CACHE_MAX: usize = 10_000;

/// The header in which a service key names the end user it acts for.
pub const END_USER_HEADER: &str = "x-gengate-user";
/// The longest end-user id, in characters.
pub const END_USER_MAX: usize = 128;

/// How browser tokens start (API keys start with [`keys::KEY_PREFIX`]).
pub const TOKEN_PREFIX: &str = "ggt_";
/// A browser token's life unless asked otherwise, and the longest.
pub const TOKEN_TTL_DEFAULT: Duration = Duration::from_secs(15 * 60);
pub const TOKEN_TTL_MAX: Duration = Duration::from_secs(24 * 60 * 60);
/// The shared setting holding the tokens' signing key (hex): made by the
/// first node that needs it, the same for every node.
const TOKEN_KEY_SETTING: &str = "token_key";

/// What a browser token says, signed.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The user, by id and name.
    u: UserId,
    n: String,
    /// Expiry (Unix ms).
    e: i64,
    /// The one task it may read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t: Option<String>,
}

/// Key hash → the lookup's result and when it was made.
type KeyCache = HashMap<String, (Option<Caller>, Instant)>;
/// An end user's stored name → their user id. Users are never deleted, so
/// an entry stays true.
type EndUserCache = HashMap<String, UserId>;

/// Verifies bearer keys.
#[derive(Clone)]
pub struct AuthService {
    store: Arc<dyn Store>,
    cache: Arc<Mutex<KeyCache>>,
    end_users: Arc<Mutex<EndUserCache>>,
    token_key: Arc<tokio::sync::OnceCell<Vec<u8>>>,
    /// `<public_url>/media`, and its signer once the key is read.
    media_base: Arc<str>,
    media_urls: Arc<std::sync::OnceLock<MediaUrls>>,
}

/// Whether `id` may name an end user: 1 to [`END_USER_MAX`] printable ASCII
/// characters, no space (it travels in a header and in logs).
pub fn valid_end_user(id: &str) -> bool {
    (1..=END_USER_MAX).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

impl AuthService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            cache: Arc::default(),
            end_users: Arc::default(),
            token_key: Arc::default(),
            media_base: Arc::from(""),
            media_urls: Arc::default(),
        }
    }

    /// Media URLs under `media_base` (`<public_url>/media`) are signed.
    pub fn with_media_base(mut self, media_base: &str) -> Self {
        self.media_base = Arc::from(media_base);
        self
    }

    /// Reads (or makes) the signing key of media URLs; the server does so
    /// before it serves, so that [`AuthService::media_urls`] has it.
    ///
    /// # Errors
    /// A store failure reading the key.
    pub async fn init_media_urls(&self) -> Result<&MediaUrls, ServiceError> {
        let key = self.token_key().await?;
        Ok(self
            .media_urls
            .get_or_init(|| MediaUrls::new(key, &self.media_base)))
    }

    /// The media URL signer (`None` before [`AuthService::init_media_urls`]).
    pub fn media_urls(&self) -> Option<&MediaUrls> {
        self.media_urls.get()
    }

    /// The browser tokens' signing key, read (or made) once.
    async fn token_key(&self) -> Result<&[u8], ServiceError> {
        self.token_key
            .get_or_try_init(|| async {
                let candidate = hex::encode(rand::random::<[u8; 32]>());
                let stored = self
                    .store
                    .accounts()
                    .setting(TOKEN_KEY_SETTING, Some(&candidate))
                    .await?
                    .unwrap_or(candidate);
                hex::decode(stored).map_err(|e| {
                    ServiceError::Store(gengate_store::StoreError::Corrupt(format!(
                        "setting {TOKEN_KEY_SETTING}: {e}"
                    )))
                })
            })
            .await
            .map(Vec::as_slice)
    }

    fn sign(key: &[u8], payload: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
        mac.update(payload.as_bytes());
        mac
    }

    /// A signed, read-only token for `caller` (a user, or a service key's
    /// end user), valid for `ttl` from `now` and, with `task_id`, for that
    /// task alone; returns it with its expiry (Unix ms).
    ///
    /// # Errors
    /// A store failure reading the signing key.
    pub async fn issue_token(
        &self,
        caller: &Caller,
        task_id: Option<String>,
        ttl: Duration,
        now: i64,
    ) -> Result<(String, i64), ServiceError> {
        let claims = Claims {
            u: caller.user_id,
            n: caller.user_name.clone(),
            e: now + ttl.as_millis() as i64,
            t: task_id,
        };
        let payload =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("claims serialize"));
        let sig = Self::sign(self.token_key().await?, &payload).finalize();
        let sig = URL_SAFE_NO_PAD.encode(sig.into_bytes());
        Ok((format!("{TOKEN_PREFIX}{payload}.{sig}"), claims.e))
    }

    /// The caller a browser token stands for, if its signature holds and
    /// it has not expired by `now`.
    async fn verify_token(&self, token: &str, now: i64) -> Result<Caller, ServiceError> {
        let (payload, sig) = token
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|t| t.split_once('.'))
            .ok_or(ServiceError::Unauthenticated)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| ServiceError::Unauthenticated)?;
        Self::sign(self.token_key().await?, payload)
            .verify_slice(&sig)
            .map_err(|_| ServiceError::Unauthenticated)?;
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|b: Vec<u8>| serde_json::from_slice(&b).ok())
            .ok_or(ServiceError::Unauthenticated)?;
        if claims.e <= now {
            return Err(ServiceError::Unauthenticated);
        }
        Ok(Caller {
            key_id: 0,
            user_id: claims.u,
            user_name: claims.n,
            role: Role::User,
            token: Some(TokenScope {
                task_id: claims.t,
                expires_at: claims.e,
            }),
        })
    }

    /// The caller a service key acts as for its end user `id` (checked with
    /// [`valid_end_user`]): that user, with the `user` role, created on first
    /// use. An app's end users are its own: they are stored as
    /// `<app>/<id>`, where `<app>` is the service key's user, whose name
    /// cannot hold a `/`; so two apps' `alice` are two users, and neither is
    /// the user `alice` of a user key.
    ///
    /// # Errors
    /// [`ServiceError::Store`] when the store cannot be read or written.
    pub async fn end_user(&self, service: &Caller, id: &str) -> Result<Caller, ServiceError> {
        debug_assert_eq!(service.role, Role::Service);
        let name = format!("{}/{id}", service.user_name);
        let cached = self
            .end_users
            .lock()
            .expect("end-user cache lock")
            .get(&name)
            .copied();
        let user_id = match cached {
            Some(id) => id,
            None => {
                let id = self.store.user_named(&name, crate::now_ms()).await?;
                let mut cache = self.end_users.lock().expect("end-user cache lock");
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
                cache.insert(name.clone(), id);
                id
            }
        };
        Ok(Caller {
            key_id: service.key_id,
            user_id,
            user_name: name,
            role: Role::User,
            token: None,
        })
    }

    /// The caller a secret key or a browser token belongs to.
    ///
    /// # Errors
    /// [`ServiceError::Unauthenticated`] for an unknown or revoked key, or
    /// a token that is forged or expired.
    pub async fn authenticate(&self, secret: &str) -> Result<Caller, ServiceError> {
        if secret.starts_with(TOKEN_PREFIX) && secret.len() <= 1024 {
            return self.verify_token(secret, crate::now_ms()).await;
        }
        if !secret.starts_with(keys::KEY_PREFIX) || secret.len() > 128 {
            return Err(ServiceError::Unauthenticated);
        }
        let hash = keys::hash(secret);
        let cached = self
            .cache
            .lock()
            .expect("auth cache lock")
            .get(&hash)
            .and_then(|(c, at)| (at.elapsed() < CACHE_TTL).then(|| c.clone()));
        let caller = match cached {
            Some(c) => c,
            None => {
                let found = self.store.find_key(&hash).await?;
                let mut cache = self.cache.lock().expect("auth cache lock");
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
                cache.insert(hash, (found.clone(), Instant::now()));
                found
            }
        };
        caller.ok_or(ServiceError::Unauthenticated)
    }

    /// Makes a key for `user_name` (the user is created on first use) and
    /// returns what is stored about it with the secret, which exists only in
    /// this answer.
    ///
    /// # Errors
    /// [`ServiceError::Invalid`] for a user name that is not 1..64 characters
    /// of letters, digits, `-_.@` (the rule `gengate keys create` applies).
    pub async fn create_key(
        &self,
        user_name: &str,
        role: Role,
    ) -> Result<(KeyInfo, String), ServiceError> {
        let valid = !user_name.is_empty()
            && user_name.len() <= 64
            && user_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
        if !valid {
            return Err(ServiceError::Invalid {
                code: "invalid_request",
                field: "user".into(),
                message: "user must be 1..64 characters of letters, digits, - _ . @".into(),
            });
        }
        let key = keys::generate();
        let info = self
            .store
            .create_key(user_name, role, &key.hash, &key.prefix, crate::now_ms())
            .await?;
        Ok((info, key.secret))
    }
}
