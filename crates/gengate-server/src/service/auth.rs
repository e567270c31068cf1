//! Authentication of API keys, with a short-lived cache so the hot read paths
//! do not query the store on every request. Revocation takes effect within
//! [`CACHE_TTL`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gengate_core::Role;
use gengate_store::{Caller, KeyInfo, Store};

use super::ServiceError;
use crate::keys;

/// How long a key lookup (found or not) is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(1);
/// Beyond this many cached lookups the cache starts over, bounding memory
/// under a flood of random keys.
const CACHE_MAX: usize = 10_000;

/// Key hash → the lookup's result and when it was made.
type KeyCache = HashMap<String, (Option<Caller>, Instant)>;

/// Verifies bearer keys.
#[derive(Clone)]
pub struct AuthService {
    store: Arc<dyn Store>,
    cache: Arc<Mutex<KeyCache>>,
}

impl AuthService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            cache: Arc::default(),
        }
    }

    /// The caller a secret key belongs to.
    ///
    /// # Errors
    /// [`ServiceError::Unauthenticated`] for an unknown or revoked key.
    pub async fn authenticate(&self, secret: &str) -> Result<Caller, ServiceError> {
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
