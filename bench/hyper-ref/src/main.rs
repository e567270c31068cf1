//! The limit for gengate's read-path benchmarks: a bare hyper HTTP/1.1 server
//! that answers every request with the same ~350-byte JSON body (the size of
//! a task object), with keep-alive, on a multi-threaded tokio runtime. No
//! routing, no auth, no storage: what the hardware and hyper alone allow.
//!
//!   hyper-ref [ADDR]      (default 127.0.0.1:0; prints "listening on http://ADDR")

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const BODY: &str = r#"{"id":"tsk_01JD5Z8K3V7Q2M9X4N6B1C0R8T","model":"sim-image","status":"succeeded","input":{"prompt":"a red fox in the snow","size":"1024x1024","steps":20},"outputs":[{"url":"http://127.0.0.1:8080/media/sim/a.png","content_type":"image/png","bytes":123456}],"error":null,"queue_position":null,"eta_seconds":null,"progress":1.0,"attempts":1,"public":true}"#;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("127.0.0.1:0")
        .parse()
        .map_err(std::io::Error::other)?;
    let listener = TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(|_req: Request<hyper::body::Incoming>| async {
                let mut resp = Response::new(Full::new(Bytes::from_static(BODY.as_bytes())));
                resp.headers_mut().insert(
                    "content-type",
                    hyper::header::HeaderValue::from_static("application/json"),
                );
                Ok::<_, Infallible>(resp)
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
