//! Provider callbacks. A callback only says "look now": its token binds it
//! to a task we submitted, and the poll it triggers decides what happened.

use std::cmp::Reverse;

use gengate_providers::CallbackHint;
use subtle::ConstantTimeEq;
use tracing::{debug, warn};

use super::dispatcher::Dispatcher;

/// The token a callback URL carries for one task: an HMAC of the provider
/// entry and task id, so a callback is bound to a task we submitted and
/// nobody can forge one for another task.
pub fn callback_token(key: &[u8], provider: &str, task_id: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(provider.as_bytes());
    mac.update(b"\n");
    mac.update(task_id.as_bytes());
    let tag = mac.finalize().into_bytes();
    hex::encode(&tag[..16])
}

/// Why a provider callback is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackRefusal {
    /// No such provider entry, or it does not use callbacks.
    UnknownProvider,
    /// The token does not belong to this provider entry and task.
    BadToken,
    /// The body is not this provider's callback.
    Malformed(String),
}

impl Dispatcher {
    /// Takes a provider callback for task `task_id` carrying `token`: checks
    /// the token, reads the body with the provider's adapter, and polls the
    /// task now if it is one we follow under the id the callback names.
    /// Returns whether a poll was scheduled (`false`: a late or repeated
    /// callback, or one for a task not yet accepted; nothing to do).
    ///
    /// # Errors
    /// [`CallbackRefusal`] says why the callback is refused.
    pub fn callback(
        &self,
        provider: &str,
        task_id: &str,
        token: &str,
        body: &[u8],
    ) -> Result<bool, CallbackRefusal> {
        let lane = self
            .inner
            .lanes
            .get(provider)
            .ok_or(CallbackRefusal::UnknownProvider)?;
        let target = lane
            .callbacks
            .as_ref()
            .ok_or(CallbackRefusal::UnknownProvider)?;
        let expected = callback_token(&target.key, provider, task_id);
        // In constant time: a timing difference must not reveal how much of
        // a guessed token is right.
        let matches: bool = expected.as_bytes().ct_eq(token.as_bytes()).into();
        if !matches {
            warn!(provider, "refused a {provider} callback with a bad token");
            return Err(CallbackRefusal::BadToken);
        }
        let hint = lane
            .provider
            .parse_callback(body)
            .map_err(|e| CallbackRefusal::Malformed(e.to_string()))?;
        let checking = self.poke(provider, task_id, &hint);
        debug!(task.id = %task_id, checking, finished = hint.finished, "callback from {provider} for task {task_id}");
        Ok(checking)
    }

    /// A callback says task `id` at `provider` changed: poll it now (it only
    /// tells us to look; the poll decides). Returns whether the callback
    /// names a task we follow under that provider task id.
    pub fn poke(&self, provider: &str, id: &str, hint: &CallbackHint) -> bool {
        let Some(lane) = self.inner.lanes.get(provider) else {
            return false;
        };
        let mut st = lane.lock();
        let now = self.now();
        let Some(f) = st.following.get_mut(id) else {
            return false;
        };
        if !hint.is_about(&f.provider_task_id) {
            return false;
        }
        // Only a finished task is worth asking about now (Kling also posts
        // "submitted" and "processing"). Repeated callbacks coalesce; one
        // that comes while a poll is under way gets another poll after it,
        // since that poll may have asked too early.
        if hint.finished {
            if f.next_at > now + 200 {
                f.next_at = now;
                st.timers.push(Reverse((now, id.to_owned())));
            } else {
                f.poke = true;
            }
        }
        st.callbacks += 1;
        drop(st);
        lane.follow_wake.notify_one();
        true
    }
}
