//! Restarting a node without refusing a request: the running process hands
//! its listening socket to its successor over a Unix socket (`--handoff
//! PATH`), then stops accepting and drains. Both processes hold the same
//! socket, so connections arriving meanwhile wait in its queue and the
//! successor accepts them; none is refused or reset, unlike closing one
//! listener of a `SO_REUSEPORT` pair.
//!
//! The exchange: the successor connects and sends `take`; the running
//! process answers `ok` with the socket attached (`SCM_RIGHTS`) and keeps
//! serving. The successor opens its store and builds everything that can
//! fail, then tells systemd it is the main process and sends `go`; only then
//! does the running process begin its shutdown (if the successor fails or
//! goes silent first, it serves on as if nothing happened). It writes `done`
//! once its dispatcher has stopped and stored what was under way. On a store
//! only one process may dispatch from (SQLite), the successor waits for
//! `done` before it starts its own dispatcher; on a shared store it starts
//! at once (leases keep the two apart).

use std::io::{BufRead, BufReader, IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use tokio_util::sync::CancellationToken;

/// The running process's side of a takeover, kept by the successor.
pub(crate) struct Predecessor {
    stream: UnixStream,
}

impl Predecessor {
    /// Tells the predecessor to stop (this process is ready to take over),
    /// after telling systemd that this process is the service's main one.
    pub(crate) fn go(&mut self) -> anyhow::Result<()> {
        notify(&format!("MAINPID={}\n", std::process::id()));
        self.stream
            .write_all(b"go\n")
            .context("telling the running process to hand over")
    }

    /// Waits (up to `timeout`) until the predecessor says its dispatcher has
    /// stopped, or is gone.
    pub(crate) async fn wait_done(self, timeout: Duration) {
        let stream = self.stream;
        let _ = tokio::task::spawn_blocking(move || {
            let _ = stream.set_read_timeout(Some(timeout));
            let mut line = String::new();
            let _ = BufReader::new(stream).read_line(&mut line);
        })
        .await;
    }
}

/// Asks the process serving at `path` for its listening socket. `None`
/// when no process answers there (a first start, or a stale file).
///
/// # Errors
/// When a process answers but the exchange fails.
pub(crate) async fn take(
    path: &Path,
) -> anyhow::Result<Option<(std::net::TcpListener, Predecessor)>> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || take_blocking(&path)).await?
}

fn take_blocking(path: &Path) -> anyhow::Result<Option<(std::net::TcpListener, Predecessor)>> {
    let mut stream = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e).with_context(|| format!("connecting to {}", path.display())),
    };
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"take\n")?;
    let mut data = [0u8; 16];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        &stream,
        &mut [IoSliceMut::new(&mut data)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .context("receiving the listening socket")?;
    let mut fd: Option<OwnedFd> = None;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg {
            fd = fds.next();
        }
    }
    let fd = fd
        .filter(|_| data[..got.bytes].starts_with(b"ok"))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the running process at {} did not hand over its socket",
                path.display()
            )
        })?;
    let listener = std::net::TcpListener::from(fd);
    listener.set_nonblocking(true)?;
    stream.set_read_timeout(None)?;
    Ok(Some((listener, Predecessor { stream })))
}

/// Serves takeovers at `path` for as long as this process listens: hands
/// `listener` to the first successor that asks, then fires `shutdown`. The
/// successor's connection is kept in `successor`, to be told `done`.
///
/// # Errors
/// When `path` cannot be bound.
pub(crate) fn offer(
    path: &Path,
    listener: OwnedFd,
    shutdown: CancellationToken,
    successor: Arc<Mutex<Option<UnixStream>>>,
    took_over: bool,
) -> anyhow::Result<()> {
    // The predecessor's file (it handed over and listens there no more), or
    // one left by a process that died (nobody answers on it).
    if path.exists() && (took_over || UnixStream::connect(path).is_err()) {
        let _ = std::fs::remove_file(path);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let unix = UnixListener::bind(path)
        .with_context(|| format!("listening for a handoff on {}", path.display()))?;
    std::thread::Builder::new()
        .name("gengate-handoff".into())
        .spawn(move || {
            for conn in unix.incoming() {
                let Ok(conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut line = String::new();
                let asked =
                    BufReader::new(&conn).read_line(&mut line).is_ok() && line.trim() == "take";
                if !asked {
                    continue;
                }
                let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
                let mut control = SendAncillaryBuffer::new(&mut space);
                let fds = [listener.as_fd()];
                control.push(SendAncillaryMessage::ScmRights(&fds));
                if let Err(e) = rustix::net::sendmsg(
                    &conn,
                    &[IoSlice::new(b"ok\n")],
                    &mut control,
                    SendFlags::empty(),
                ) {
                    tracing::warn!(error = %e, "handing over the listening socket failed: {e}");
                    continue;
                }
                // Serve on until the successor is ready (it opens its store
                // and builds everything first).
                let _ = conn.set_read_timeout(Some(SUCCESSOR_SETUP));
                let mut line = String::new();
                let ready =
                    BufReader::new(&conn).read_line(&mut line).is_ok() && line.trim() == "go";
                if !ready {
                    tracing::warn!("the new process did not get ready; this one goes on serving");
                    continue;
                }
                tracing::info!("a new process took the listening socket over; draining");
                let _ = conn.set_read_timeout(None);
                *successor.lock().expect("handoff lock") = Some(conn);
                // The successor listens at `path` from now on.
                shutdown.cancel();
                return;
            }
        })?;
    Ok(())
}

/// Tells the successor, if any, that this process's dispatcher has stopped.
pub(crate) fn done(successor: &Mutex<Option<UnixStream>>) {
    if let Some(mut s) = successor.lock().expect("handoff lock").take() {
        let _ = s.write_all(b"done\n");
    }
}

/// How long a successor may take to get ready (open its store, build its
/// providers) before the running process gives up waiting and serves on.
const SUCCESSOR_SETUP: Duration = Duration::from_secs(120);

/// Tells systemd (`Type=notify`) that this process serves, and that it is
/// the service's main process now (after a takeover it is a new one).
pub(crate) fn notify_ready() {
    notify(&format!("READY=1\nMAINPID={}\n", std::process::id()));
}

/// Sends `msg` to systemd's notification socket, if there is one.
fn notify(msg: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let target = target.to_string_lossy().into_owned();
    let sent = match target.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .and_then(|addr| sock.send_to_addr(msg.as_bytes(), &addr))
        }
        None => sock.send_to(msg.as_bytes(), &target),
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "telling systemd this process is ready failed: {e}");
    }
}
