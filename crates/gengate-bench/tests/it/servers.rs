//! Test servers: a hyper HTTP/1.1 server on 127.0.0.1:0, on its own runtime
//! thread, whose every answer waits as long as a closure says.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

pub(crate) const BODY: &str = r#"{"status":"ok","pad":"0123456789abcdef"}"#;

type Delay = Box<dyn Fn(u64) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A running test server; stops when dropped.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    pub(crate) fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts a server whose answer to request number `n` (from 0) waits for
/// `delay(n)` to finish.
pub(crate) fn spawn(delay: Delay) -> TestServer {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let counter = Arc::new(AtomicU64::new(0));
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let delay = Arc::new(delay);
            let accept = async {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let delay = delay.clone();
                    let counter = counter.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                            let n = counter.fetch_add(1, Ordering::Relaxed);
                            let wait = delay(n);
                            async move {
                                wait.await;
                                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                                    BODY.as_bytes(),
                                ))))
                            }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            };
            tokio::select! {
                () = accept => {}
                _ = stop_rx => {}
            }
        });
    });
    TestServer {
        addr: addr_rx.recv().unwrap(),
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

/// Every answer after `ms` milliseconds, or `slow_ms` for every `every`-th.
pub(crate) fn fixed_latency(ms: u64, slow_ms: u64, every: u64) -> TestServer {
    spawn(Box::new(move |n| {
        let d = if (n + 1) % every == 0 { slow_ms } else { ms };
        Box::pin(tokio::time::sleep(Duration::from_millis(d)))
    }))
}

/// Answers at once, except that after `after` requests the server stalls
/// for `stall`: every request that arrives meanwhile waits until it ends,
/// like a process frozen by a GC pause or a swap storm.
pub(crate) fn stalls_once(after: u64, stall: Duration) -> TestServer {
    let until: Arc<Mutex<Option<Instant>>> = Arc::default();
    spawn(Box::new(move |n| {
        let mut u = until.lock().unwrap();
        if n == after {
            *u = Some(Instant::now() + stall);
        }
        let wait = u.filter(|t| *t > Instant::now());
        drop(u);
        Box::pin(async move {
            if let Some(t) = wait {
                tokio::time::sleep_until(t.into()).await;
            }
        })
    }))
}

/// The size of one answer on the wire: hyper's status line, `content-length`
/// and `date` (always 29 characters) headers, the blank line, the body.
pub(crate) fn wire_size() -> usize {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ndate: Sat, 28 Nov 2026 01:30:12 GMT\r\n\r\n",
        BODY.len()
    );
    head.len() + BODY.len()
}
/// Serves at most `per_sec` requests per second: each answer is given at the
/// next free slot, 1/`per_sec` after the previous one (a server with a fixed
/// capacity; beyond it, requests queue).
pub(crate) fn fixed_capacity(per_sec: f64) -> TestServer {
    let next: Arc<Mutex<Option<Instant>>> = Arc::default();
    let gap = Duration::from_secs_f64(1.0 / per_sec);
    spawn(Box::new(move |_| {
        let mut next = next.lock().unwrap();
        let now = Instant::now();
        let slot = next.map_or(now, |t| t.max(now));
        *next = Some(slot + gap);
        drop(next);
        Box::pin(async move { tokio::time::sleep_until((slot + gap).into()).await })
    }))
}
