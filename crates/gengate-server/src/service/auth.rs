//! Authentication of API keys, with a short-lived cache so the hot read paths
//! do not query the store on every request. Revocation takes effect within
//! [`CACHE_TTL`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gengate_store::{Caller, Store};

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
}
