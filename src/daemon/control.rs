//! The control socket `<cache-dir>/control.sock`: a Unix stream socket, mode 0600, serving
//! [`Request`]s from root and the mounting user only (the peer's uid is checked with
//! `SO_PEERCRED`; others get an error line and are closed). A stale socket file is removed
//! at start (the cache lock proves no other daemon owns it) and the file is removed at exit.
//! Each connection: one request line (bounded size and time), answer lines, close.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::metrics;
use super::pin::{self, PinPath, Recorder};
use super::protocol::{
    GcOutcome, Outcome, PinOutcome, Reply, Request, RestartOutcome, MAX_REQUEST,
};
use super::state::Shared;
use crate::store::pins::PinProgress;

/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 8;
/// How long a client may take to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// An error and its causes on one line, each cause once (some messages already end with
/// their cause).
fn text(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !out.ends_with(&more) {
            out = format!("{out}: {more}");
        }
        cause = c.source();
    }
    out
}

/// Whether a peer with `uid` may use a daemon run by `owner`: root and the owner only.
pub fn peer_allowed(uid: u32, owner: u32) -> bool {
    uid == 0 || uid == owner
}

/// The bound socket; its file is removed on drop.
pub(crate) struct ControlSocket {
    listener: Option<UnixListener>,
    path: PathBuf,
}

impl ControlSocket {
    /// Binds `path` (removing a stale file first) with mode 0600. Must run inside a runtime.
    pub(crate) fn bind(path: &Path) -> std::io::Result<ControlSocket> {
        match std::fs::remove_file(path) {
            Ok(()) => tracing::info!(path = %path.display(), "removed a stale control socket"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(ControlSocket {
            listener: Some(listener),
            path: path.to_path_buf(),
        })
    }

    /// Serves requests until the runtime shuts down.
    pub(crate) fn serve(&mut self, shared: Arc<Shared>) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        tokio::spawn(accept_loop(listener, shared));
    }

    /// Removes the socket file now (also done on drop).
    pub(crate) fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.remove();
    }
}

async fn accept_loop(listener: UnixListener, shared: Arc<Shared>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("control socket accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            if let Err(e) = connection(stream, &shared).await {
                tracing::debug!("control connection ended: {e}");
            }
            drop(permit);
        });
    }
}

/// Writes one reply line.
async fn send(stream: &mut UnixStream, reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line).await
}

#[tracing::instrument(skip_all, fields(uid))]
async fn connection(mut stream: UnixStream, shared: &Shared) -> std::io::Result<()> {
    let uid = stream.peer_cred()?.uid();
    tracing::Span::current().record("uid", uid);
    if !peer_allowed(uid, shared.owner_uid) {
        tracing::warn!(uid, "control socket: refused a request from another user");
        let message = format!(
            "permission denied: only root and the mounting user (uid {}) may use this daemon; you are uid {uid}",
            shared.owner_uid
        );
        return send(&mut stream, &Reply::Error { message }).await;
    }
    let mut line = String::new();
    let read = {
        let mut reader = BufReader::new((&mut stream).take(MAX_REQUEST as u64 + 1));
        tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await
    };
    let request = match read {
        Err(_) => return Err(std::io::Error::other("no request within the time limit")),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(_)) if line.len() > MAX_REQUEST => Err("request line too long".to_owned()),
        Ok(Ok(_)) => {
            serde_json::from_str::<Request>(line.trim()).map_err(|e| format!("bad request: {e}"))
        }
    };
    let reply = match request {
        Err(message) => Reply::Error { message },
        Ok(req) => match handle(req, shared, &mut stream).await {
            Ok(result) => Reply::Done { result },
            Err(message) => Reply::Error { message },
        },
    };
    let restarted = matches!(
        reply,
        Reply::Done {
            result: Outcome::Restarted(_)
        }
    );
    let sent = send(&mut stream, &reply).await;
    if restarted {
        // The new daemon serves the mount: leave without running a destructor (the mount,
        // the control socket file and the lock are the new daemon's now).
        let _ = stream.flush().await;
        if let Some(delay) = exit_delay() {
            // Still able to read the connection (its FUSE thread runs) while it waits: the
            // window in which a resend sent too early lost requests for good.
            tracing::debug!(?delay, "lingering before exit ({EXIT_DELAY_ENV})");
            tokio::time::sleep(delay).await;
        }
        tracing::debug!("the old daemon exits now");
        std::process::exit(0);
    }
    sent
}

#[tracing::instrument(skip_all, fields(op = ?req))]
async fn handle(req: Request, shared: &Shared, stream: &mut UnixStream) -> Result<Outcome, String> {
    match req {
        Request::Status => Ok(Outcome::Status(Box::new(shared.status()))),
        Request::Metrics => metrics::encode(&shared.status()).map(Outcome::Metrics),
        Request::Refresh => refresh(shared).await,
        Request::Gc { target } => gc(shared, target).await,
        Request::Pin { path } => pin_path(shared, &path, stream).await,
        Request::Unpin { path } => unpin_path(shared, &path).await,
        Request::Restart { binary } => restart(shared, binary).await,
    }
}

/// Makes the old daemon of a restart wait this many milliseconds between answering the
/// client and exiting. For tests: a slow exit (a loaded machine, a long flush) must lose no
/// request, and this widens that window so a test lands requests in it.
pub const EXIT_DELAY_ENV: &str = "DISTFS_RESTART_EXIT_DELAY_MS";

fn exit_delay() -> Option<std::time::Duration> {
    let ms: u64 = std::env::var(EXIT_DELAY_ENV).ok()?.parse().ok()?;
    Some(std::time::Duration::from_millis(ms.min(60_000)))
}

/// How long pending cache writes may take before the old daemon of a restart exits.
const RESTART_FLUSH_LIMIT: Duration = Duration::from_secs(30);

async fn restart(shared: &Shared, binary: Option<String>) -> Result<Outcome, String> {
    let Some(handover) = shared.handover.get().cloned() else {
        return Err("the mount is not up yet; try again in a moment".to_owned());
    };
    let binary = super::restart::successor_binary(binary.map(std::path::PathBuf::from))
        .map_err(|e| text(&e))?;
    let store = shared.store.clone();
    let rt = tokio::runtime::Handle::current();
    let flush = move || {
        if !rt.block_on(store.flush(RESTART_FLUSH_LIMIT)) {
            tracing::warn!("some fetched blocks were not written to the cache before the restart");
        }
    };
    let new_pid = tokio::task::spawn_blocking(move || handover.run(&binary, &flush))
        .await
        .map_err(|e| text(&e))?
        .map_err(|e| text(&e))?;
    Ok(Outcome::Restarted(RestartOutcome {
        old_pid: std::process::id(),
        new_pid,
    }))
}

async fn refresh(shared: &Shared) -> Result<Outcome, String> {
    let Some(tx) = &shared.refresh else {
        return Err(format!(
            "the root {} is not a name: there is nothing to re-resolve",
            shared.spec
        ));
    };
    let (reply_tx, reply_rx) = oneshot::channel();
    tx.send(reply_tx)
        .await
        .map_err(|_| "the refresh task has stopped".to_owned())?;
    let outcome = reply_rx
        .await
        .map_err(|_| "the refresh task has stopped".to_owned())??;
    Ok(Outcome::Refreshed(outcome))
}

async fn gc(shared: &Shared, target: Option<u64>) -> Result<Outcome, String> {
    let quota = Arc::clone(shared.store.quota());
    let limit = target.or(quota.limit());
    let report = shared.store.gc().await.map_err(|e| text(&e))?;
    let (mut blocks, mut bytes) = (report.evicted_blocks, report.evicted_bytes);
    if let Some(t) = target {
        let (b, n) = tokio::task::spawn_blocking(move || quota.evict_to(t))
            .await
            .map_err(|e| text(&e))?;
        blocks += b;
        bytes += n;
    }
    let usage = shared.store.usage();
    Ok(Outcome::Collected(GcOutcome {
        temp_removed: report.temp_removed,
        evicted_blocks: blocks,
        evicted_bytes: bytes,
        bytes: usage.bytes,
        blocks: usage.blocks,
        pinned_bytes: usage.pinned_bytes,
        limit,
    }))
}

/// The CID and label a pin path stands for, and the blocks on the way to it.
async fn resolve(shared: &Shared, path: &str) -> Result<(cid::Cid, String, Vec<cid::Cid>), String> {
    let (root, segs) = match pin::classify(path, &shared.mountpoint).map_err(|e| text(&e))? {
        PinPath::Ipfs(cid, segs) => (cid, segs),
        PinPath::Mount(segs) => pin::dag_path(&shared.view, &segs)
            .await
            .map_err(|e| text(&e))?,
    };
    let label = pin::label(&root, &segs);
    let rec = Recorder::new(&shared.store);
    let refs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let target = crate::walk::resolve_path(&rec, &root, &refs)
        .await
        .map_err(|e| format!("resolving {label}: {}", text(&e)))?;
    Ok((target, label, rec.into_seen()))
}

async fn pin_path(shared: &Shared, path: &str, stream: &mut UnixStream) -> Result<Outcome, String> {
    let (target, label, extra) = resolve(shared, path).await?;
    // Progress goes through a channel so the pin never waits on a slow client.
    let (tx, mut rx) = mpsc::unbounded_channel::<PinProgress>();
    let progress = move |p: PinProgress| {
        let _ = tx.send(p);
    };
    let report = {
        let pinning = shared.store.pin(target, &extra, &label, &progress);
        tokio::pin!(pinning);
        let mut client_gone = false;
        loop {
            tokio::select! {
                r = &mut pinning => break r,
                Some(p) = rx.recv() => {
                    if !client_gone {
                        let reply = Reply::Progress { blocks: p.blocks, bytes: p.bytes, queued: p.queued };
                        client_gone = send(stream, &reply).await.is_err();
                    }
                }
            }
        }
    }
    .map_err(|e| text(&e))?;
    tracing::info!(%label, blocks = report.blocks, bytes = report.bytes, "pinned");
    Ok(Outcome::Pinned(PinOutcome {
        label,
        cid: target.to_string(),
        blocks: report.blocks,
        bytes: report.bytes,
        fetched: report.fetched,
    }))
}

async fn unpin_path(shared: &Shared, path: &str) -> Result<Outcome, String> {
    let what = path.trim_end_matches('/');
    // A pinned CID or label as given, else the path resolved like `pin` resolves it.
    let mut removed = shared.store.unpin(what).await.map_err(|e| text(&e))?;
    if removed.is_empty() {
        let (target, label, _) = resolve(shared, path).await?;
        removed = shared
            .store
            .unpin(&target.to_string())
            .await
            .map_err(|e| text(&e))?;
        if removed.is_empty() {
            return Err(format!("{path}: not pinned ({label} = {target})"));
        }
    }
    Ok(Outcome::Unpinned(
        removed
            .into_iter()
            .map(|r| (r.label, r.keys.len() as u64))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_and_the_owner_are_allowed() {
        assert!(peer_allowed(0, 1000));
        assert!(peer_allowed(1000, 1000));
        assert!(!peer_allowed(65534, 1000));
        assert!(!peer_allowed(65534, 0));
    }
}
