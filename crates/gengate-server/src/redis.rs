//! A small Redis client: RESP2 over one TCP connection, enough for what
//! gengate asks of Redis (PUBLISH/SUBSCRIBE for task events between nodes,
//! EVAL for shared rate-limit counters). Redis is never a system of record
//! here: a lost connection costs a reconnect, and callers decide what a
//! failed command means.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Where Redis is: `redis://[[:PASSWORD]@]HOST:PORT[/DB]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    pub host: String,
    pub port: u16,
    pub db: u32,
    pub password: Option<String>,
}

impl Addr {
    pub fn parse(url: &str) -> Option<Self> {
        let rest = url.strip_prefix("redis://")?;
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((a, r)) => (Some(a), r),
            None => (None, rest),
        };
        let (hostport, db) = match rest.split_once('/') {
            Some((hp, "")) => (hp, 0),
            Some((hp, db)) => (hp, db.parse().ok()?),
            None => (rest, 0),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (hostport, 6379),
        };
        if host.is_empty() {
            return None;
        }
        let password = auth
            .map(|a| a.rsplit_once(':').map_or(a, |(_, p)| p).to_owned())
            .filter(|p| !p.is_empty());
        Some(Self {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            db,
            password,
        })
    }
}

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("redis connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("redis protocol: {0}")]
    Protocol(String),
    #[error("redis: {0}")]
    Server(String),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// Replies larger than this are refused (gengate's never are).
const MAX_BULK: usize = 16 * 1024 * 1024;

/// One connection.
pub struct Conn {
    io: BufReader<TcpStream>,
}

impl Conn {
    /// Connects, authenticates and selects the database.
    ///
    /// # Errors
    /// When Redis cannot be reached or refuses.
    pub async fn connect(addr: &Addr, timeout: Duration) -> Result<Self, Error> {
        let stream =
            tokio::time::timeout(timeout, TcpStream::connect((addr.host.as_str(), addr.port)))
                .await
                .map_err(|_| Error::Timeout(timeout))??;
        stream.set_nodelay(true)?;
        let mut conn = Self {
            io: BufReader::new(stream),
        };
        if let Some(pw) = &addr.password {
            conn.call(&[b"AUTH", pw.as_bytes()]).await?;
        }
        if addr.db != 0 {
            conn.call(&[b"SELECT", addr.db.to_string().as_bytes()])
                .await?;
        }
        Ok(conn)
    }

    /// Sends one command without reading its reply.
    pub async fn send(&mut self, args: &[&[u8]]) -> Result<(), Error> {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            buf.extend_from_slice(a);
            buf.extend_from_slice(b"\r\n");
        }
        self.io.get_mut().write_all(&buf).await?;
        Ok(())
    }

    /// Sends a command and reads its reply; an error reply is an [`Error`].
    pub async fn call(&mut self, args: &[&[u8]]) -> Result<Reply, Error> {
        self.send(args).await?;
        match self.read().await? {
            Reply::Error(e) => Err(Error::Server(e)),
            r => Ok(r),
        }
    }

    /// Reads the next reply (or pushed message, once subscribed).
    pub async fn read(&mut self) -> Result<Reply, Error> {
        Box::pin(self.read_inner()).await
    }

    async fn read_inner(&mut self) -> Result<Reply, Error> {
        let line = self.line().await?;
        let (kind, rest) = line.split_at(1);
        let int = |s: &str| {
            s.parse::<i64>()
                .map_err(|_| Error::Protocol(format!("bad integer {s:?}")))
        };
        Ok(match kind {
            "+" => Reply::Status(rest.to_owned()),
            "-" => Reply::Error(rest.to_owned()),
            ":" => Reply::Int(int(rest)?),
            "$" => {
                let n = int(rest)?;
                if n < 0 {
                    Reply::Bulk(None)
                } else {
                    let n = n as usize;
                    if n > MAX_BULK {
                        return Err(Error::Protocol(format!("bulk reply of {n} bytes")));
                    }
                    let mut data = vec![0; n + 2];
                    self.io.read_exact(&mut data).await?;
                    data.truncate(n);
                    Reply::Bulk(Some(data))
                }
            }
            "*" => {
                let n = int(rest)?;
                if n < 0 {
                    Reply::Array(None)
                } else {
                    let mut items = Vec::with_capacity((n as usize).min(1024));
                    for _ in 0..n {
                        items.push(Box::pin(self.read_inner()).await?);
                    }
                    Reply::Array(Some(items))
                }
            }
            _ => return Err(Error::Protocol(format!("unexpected reply {line:?}"))),
        })
    }

    async fn line(&mut self) -> Result<String, Error> {
        let mut line = String::new();
        let n = (&mut self.io).take(64 * 1024).read_line(&mut line).await?;
        if n == 0 {
            return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        if !line.ends_with("\r\n") || line.len() < 3 {
            return Err(Error::Protocol(format!("malformed line {line:?}")));
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }
}

/// A command connection shared by callers, reconnected when it fails.
pub struct Client {
    addr: Addr,
    timeout: Duration,
    conn: tokio::sync::Mutex<Option<Conn>>,
}

impl Client {
    pub fn new(addr: Addr, timeout: Duration) -> Self {
        Self {
            addr,
            timeout,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// Runs one command, connecting first if needed. A failed connection
    /// is dropped, so the next command reconnects.
    ///
    /// # Errors
    /// When Redis cannot be reached, times out or answers with an error.
    pub async fn call(&self, args: &[&[u8]]) -> Result<Reply, Error> {
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            *guard = Some(Conn::connect(&self.addr, self.timeout).await?);
        }
        let conn = guard.as_mut().expect("connected above");
        match tokio::time::timeout(self.timeout, conn.call(args)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e @ Error::Server(_))) => Err(e),
            Ok(Err(e)) => {
                *guard = None;
                Err(e)
            }
            Err(_) => {
                *guard = None;
                Err(Error::Timeout(self.timeout))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_and_without_port_db_and_password() {
        let a = Addr::parse("redis://127.0.0.1:6380/2").unwrap();
        assert_eq!(
            (a.host.as_str(), a.port, a.db, a.password),
            ("127.0.0.1", 6380, 2, None)
        );
        let a = Addr::parse("redis://:s3cret@cache").unwrap();
        assert_eq!(
            (a.host.as_str(), a.port, a.password.as_deref()),
            ("cache", 6379, Some("s3cret"))
        );
        let a = Addr::parse("redis://user:pw@[::1]:7000/").unwrap();
        assert_eq!(
            (a.host.as_str(), a.port, a.password.as_deref()),
            ("::1", 7000, Some("pw"))
        );
        for bad in ["http://x", "redis://", "redis://h:port", "redis://h/db"] {
            assert!(Addr::parse(bad).is_none(), "{bad}");
        }
    }

    /// Against the Redis server named by `TEST_REDIS_URL` (skipped without
    /// it, except under CI).
    #[tokio::test]
    async fn commands_and_pubsub_against_a_real_server() {
        let Some(url) = crate::test_service_url("TEST_REDIS_URL") else {
            return;
        };
        let addr = Addr::parse(&url).unwrap();
        let client = Client::new(addr.clone(), Duration::from_secs(2));
        let key = format!("gengate-test-{}", std::process::id());
        assert_eq!(
            client.call(&[b"DEL", key.as_bytes()]).await.unwrap(),
            Reply::Int(0)
        );
        assert_eq!(
            client.call(&[b"INCR", key.as_bytes()]).await.unwrap(),
            Reply::Int(1)
        );
        assert!(matches!(
            client.call(&[b"NOSUCHCOMMAND"]).await,
            Err(Error::Server(_))
        ));
        assert_eq!(
            client.call(&[b"GET", key.as_bytes()]).await.unwrap(),
            Reply::Bulk(Some(b"1".to_vec())),
            "an error reply leaves the connection usable"
        );
        client.call(&[b"DEL", key.as_bytes()]).await.unwrap();

        let mut sub = Conn::connect(&addr, Duration::from_secs(2)).await.unwrap();
        let channel = format!("{key}-chan");
        sub.call(&[b"SUBSCRIBE", channel.as_bytes()]).await.unwrap();
        client
            .call(&[b"PUBLISH", channel.as_bytes(), b"hello world"])
            .await
            .unwrap();
        let msg = tokio::time::timeout(Duration::from_secs(2), sub.read())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            msg,
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"message".to_vec())),
                Reply::Bulk(Some(channel.into_bytes())),
                Reply::Bulk(Some(b"hello world".to_vec())),
            ]))
        );
    }
}
