//! Redis, through the `redis` crate: one multiplexed connection for commands
//! (rate-limit counters and event publishes pipeline on it; none waits
//! behind another), and pub/sub connections for task events between nodes.
//! `redis://` or `rediss://` (TLS, trusting `tls.ca_file` as well as the
//! system's and Mozilla's roots).
//!
//! Redis is never a system of record here: a lost connection costs a
//! reconnect, every command has a deadline, and callers decide what a
//! failed command means.

use std::sync::Mutex;
use std::time::Duration;

use gengate_net::Trust;
use redis::aio::{MultiplexedConnection, PubSub};
use redis::{AsyncConnectionConfig, Client as RedisClient, RedisError};

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("redis: {0}")]
    Redis(String),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

impl From<RedisError> for Error {
    fn from(e: RedisError) -> Self {
        Error::Redis(gengate_net::redact_text(&e.to_string()))
    }
}

/// Checks a Redis URL: `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]` or the
/// same with `rediss://`.
///
/// # Errors
/// What is wrong with it.
pub fn check_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err("must be redis://HOST:PORT[/DB] or rediss://HOST:PORT[/DB]".to_owned());
    }
    redis::Client::open(url)
        .map(|_| ())
        .map_err(|e| gengate_net::redact_text(&e.to_string()))
}

/// A Redis server: the client that makes connections, and the shared
/// command connection, made on first use and again after it fails.
pub struct Redis {
    client: RedisClient,
    timeout: Duration,
    conn: Mutex<Option<MultiplexedConnection>>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// Redis at `url`; every connect and command waits `timeout` at most.
    /// Nothing is connected yet.
    ///
    /// # Errors
    /// When the URL is not a Redis URL, or its TLS roots cannot be used.
    pub fn open(url: &str, trust: &Trust, timeout: Duration) -> Result<Self, Error> {
        check_url(url).map_err(Error::Redis)?;
        let client = match (url.starts_with("rediss://"), trust.pem_bundle()) {
            (true, Some(roots)) => RedisClient::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(roots),
                },
            )?,
            _ => RedisClient::open(url)?,
        };
        Ok(Self {
            client,
            timeout,
            conn: Mutex::new(None),
        })
    }

    /// The command connection, connecting first when there is none.
    async fn connection(&self) -> Result<MultiplexedConnection, Error> {
        if let Some(c) = self.conn.lock().expect("redis connection lock").clone() {
            return Ok(c);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let c = tokio::time::timeout(
            self.timeout,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| Error::Timeout(self.timeout))??;
        *self.conn.lock().expect("redis connection lock") = Some(c.clone());
        Ok(c)
    }

    /// Runs `cmd`, connecting first if needed. A connection that failed or
    /// timed out is dropped, so the next command reconnects; an error reply
    /// leaves it in use.
    ///
    /// # Errors
    /// When Redis cannot be reached, times out or answers with an error.
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, Error> {
        let mut c = self.connection().await?;
        self.bounded(cmd.query_async::<T>(&mut c)).await
    }

    /// Runs a pipeline of commands, answered in one round trip.
    ///
    /// # Errors
    /// As [`Redis::query`].
    pub async fn pipeline(&self, pipe: &redis::Pipeline) -> Result<(), Error> {
        let mut c = self.connection().await?;
        self.bounded(pipe.exec_async(&mut c)).await
    }

    /// Waits for `call` up to the timeout; a connection that failed or
    /// timed out is dropped, so the next command reconnects.
    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                    self.forget();
                }
                Err(e.into())
            }
            Err(_) => {
                self.forget();
                Err(Error::Timeout(self.timeout))
            }
        }
    }

    fn forget(&self) {
        *self.conn.lock().expect("redis connection lock") = None;
    }

    /// A new pub/sub connection subscribed to `channel`.
    ///
    /// # Errors
    /// When Redis cannot be reached or refuses.
    pub async fn subscribe(&self, channel: &str) -> Result<PubSub, Error> {
        let mut pubsub = tokio::time::timeout(self.timeout, self.client.get_async_pubsub())
            .await
            .map_err(|_| Error::Timeout(self.timeout))??;
        tokio::time::timeout(self.timeout, pubsub.subscribe(channel))
            .await
            .map_err(|_| Error::Timeout(self.timeout))??;
        Ok(pubsub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        for good in [
            "redis://127.0.0.1:6380/2",
            "redis://:s3cret@cache",
            "redis://user:pw@[::1]:7000/",
            "rediss://cache.example.com:6380",
        ] {
            check_url(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in ["http://x", "redis://h:port", "redis://h/db", "cache:6379"] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    /// Against the Redis server named by `TEST_REDIS_URL` (skipped without
    /// it, except under CI).
    #[tokio::test]
    async fn commands_and_pubsub_against_a_real_server() {
        use futures_util::StreamExt as _;
        let Some(url) = gengate_testkit::service_url("TEST_REDIS_URL") else {
            return;
        };
        let r = Redis::open(&url, &Trust::public(), Duration::from_secs(2)).unwrap();
        let key = format!("gengate-test-{}", std::process::id());
        let _: i64 = r.query(redis::cmd("DEL").arg(&key)).await.unwrap();
        let n: i64 = r.query(redis::cmd("INCR").arg(&key)).await.unwrap();
        assert_eq!(n, 1);
        assert!(r.query::<()>(&redis::cmd("NOSUCHCOMMAND")).await.is_err());
        let v: String = r.query(redis::cmd("GET").arg(&key)).await.unwrap();
        assert_eq!(v, "1", "an error reply leaves the connection usable");
        let _: i64 = r.query(redis::cmd("DEL").arg(&key)).await.unwrap();

        let channel = format!("{key}-chan");
        let mut sub = r.subscribe(&channel).await.unwrap();
        let mut pipe = redis::pipe();
        pipe.cmd("PUBLISH")
            .arg(&channel)
            .arg("hello world")
            .ignore();
        r.pipeline(&pipe).await.unwrap();
        let msg = tokio::time::timeout(Duration::from_secs(2), sub.on_message().next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(msg.get_channel_name(), channel);
        assert_eq!(msg.get_payload_bytes(), b"hello world");
    }

    /// `rediss://` against the TLS server of `TEST_REDISS_URL`, whose
    /// certificate comes from the CA in `TEST_TLS_CA`: trusted through
    /// `tls.ca_file`, refused without it.
    #[tokio::test]
    async fn rediss_is_verified_against_tls_ca_file() {
        let (Some(url), Some(ca)) = (
            gengate_testkit::service_url("TEST_REDISS_URL"),
            gengate_testkit::service_url("TEST_TLS_CA"),
        ) else {
            return;
        };
        let trust = Trust::load(Some(std::path::Path::new(&ca))).unwrap();
        let r = Redis::open(&url, &trust, Duration::from_secs(2)).unwrap();
        let pong: String = r.query(&redis::cmd("PING")).await.unwrap();
        assert_eq!(pong, "PONG");
        let untrusting = Redis::open(&url, &Trust::public(), Duration::from_secs(2)).unwrap();
        let e = untrusting
            .query::<String>(&redis::cmd("PING"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.to_lowercase().contains("certificate") || e.contains("UnknownIssuer"),
            "{e}"
        );
    }
}
