//! One HTTP/1.1 keep-alive connection, on hyper's low-level client over a
//! plain `TcpStream` wrapped to count the bytes the socket reads: with no
//! pipelining, the bytes read between sending a request and the end of its
//! body are exactly that response on the wire, headers included.
//!
//! It knows nothing about scenarios or statistics; `schedule` drives it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Why a request got no HTTP answer, as counted in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// The TCP connection could not be opened.
    Connect,
    /// No complete answer within the request timeout.
    Timeout,
    /// The server closed or reset the connection mid-request.
    Closed,
    /// The answer was not valid HTTP/1.1.
    Protocol,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Closed => "closed",
            ErrorKind::Protocol => "protocol",
        }
    }
}

/// A `TcpStream` that adds every byte it reads to a counter.
struct Counting {
    stream: TcpStream,
    read: Arc<AtomicU64>,
}

impl AsyncRead for Counting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.stream).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.read.fetch_add(n as u64, Ordering::Relaxed);
        }
        poll
    }
}

impl AsyncWrite for Counting {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// An answer: its status, its size on the wire, and its body when asked for.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub wire_bytes: u64,
    pub body: Option<Bytes>,
}

/// What to do with a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Read it to the end and drop it.
    Discard,
    /// Keep it (for parsing).
    Keep,
    /// Read frames until one contains any of these byte strings (an event
    /// stream reaching a final state), then drop the connection.
    Until(&'static [&'static str]),
}

/// One keep-alive connection. After an error it must be dropped.
pub struct Conn {
    send: http1::SendRequest<Full<Bytes>>,
    read: Arc<AtomicU64>,
}

impl Conn {
    /// Opens a connection and starts its driver on the current `LocalSet`
    /// (or runtime).
    ///
    /// # Errors
    /// [`ErrorKind::Connect`] when the socket or the handshake fails.
    pub async fn open(addr: SocketAddr) -> Result<Conn, ErrorKind> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|_| ErrorKind::Connect)?;
        let _ = stream.set_nodelay(true);
        let read = Arc::new(AtomicU64::new(0));
        let io = TokioIo::new(Counting {
            stream,
            read: read.clone(),
        });
        let (send, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|_| ErrorKind::Connect)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { send, read })
    }

    /// Sends one request and reads its answer.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] or [`ErrorKind::Protocol`]; the connection is
    /// then unusable. The caller applies the timeout.
    pub async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
        body: Body,
    ) -> Result<Answer, ErrorKind> {
        self.send.ready().await.map_err(|_| ErrorKind::Closed)?;
        let before = self.read.load(Ordering::Relaxed);
        let resp = self
            .send
            .send_request(req)
            .await
            .map_err(|e| classify(&e))?;
        let status = resp.status();
        let mut incoming = resp.into_body();
        let kept = match body {
            Body::Discard => {
                while let Some(frame) = incoming.frame().await {
                    frame.map_err(|e| classify(&e))?;
                }
                None
            }
            Body::Keep => Some(
                incoming
                    .collect()
                    .await
                    .map_err(|e| classify(&e))?
                    .to_bytes(),
            ),
            Body::Until(needles) => {
                let mut seen = BytesMut::new();
                while let Some(frame) = incoming.frame().await {
                    if let Ok(data) = frame.map_err(|e| classify(&e))?.into_data() {
                        seen.extend_from_slice(&data);
                        let text = String::from_utf8_lossy(&seen);
                        if needles.iter().any(|n| text.contains(n)) {
                            break;
                        }
                    }
                }
                Some(seen.freeze())
            }
        };
        Ok(Answer {
            status,
            wire_bytes: self.read.load(Ordering::Relaxed) - before,
            body: kept,
        })
    }
}

fn classify(e: &hyper::Error) -> ErrorKind {
    if e.is_parse() || e.is_parse_status() {
        ErrorKind::Protocol
    } else {
        ErrorKind::Closed
    }
}

/// One request on a fresh connection, for setup work (detection,
/// provisioning, stats): not measured.
///
/// # Errors
/// A message naming the request when it gets no answer.
pub async fn once(
    addr: SocketAddr,
    req: Request<Full<Bytes>>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let what = format!("{} {}", req.method(), req.uri());
    let run = async {
        let mut conn = Conn::open(addr).await?;
        conn.send(req, Body::Keep).await
    };
    match tokio::time::timeout(std::time::Duration::from_secs(30), run).await {
        Ok(Ok(a)) => Ok((a.status, a.body.unwrap_or_default())),
        Ok(Err(kind)) => anyhow::bail!("{what} to {addr} failed: {}", kind.as_str()),
        Err(_) => anyhow::bail!("{what} to {addr} got no answer within 30 s"),
    }
}
