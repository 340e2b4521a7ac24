//! The end of a daemon's run: waiting for an unmount or a signal, unmounting in order on a
//! signal (lazily, then aborting a connection the kernel no longer serves), and letting the
//! cache's pending writes land before the process exits.

use std::time::{Duration, Instant};

use crate::fs::mount::lazy_unmount;
use crate::store::cache::CacheStore;

/// How long an unmount on a signal may take before the connection is aborted.
const UNMOUNT_GRACE: Duration = Duration::from_secs(3);
/// How long pending cache writes may take at exit.
const FLUSH_LIMIT: Duration = Duration::from_secs(30);

/// Serves the mount until it is unmounted or a signal comes. On a signal, unmounts lazily and
/// waits [`UNMOUNT_GRACE`] for the session to end; when it does not, aborts the connection
/// (`fuse_dev`, through fusectl) and returns `true` without joining the FUSE thread, which is
/// stuck on a connection the kernel no longer serves: the caller must then exit.
pub(super) fn serve_until_end(
    runtime: &tokio::runtime::Runtime,
    session: fuser::BackgroundSession,
    fuse_dev: Option<u64>,
    mountpoint: &std::path::Path,
) -> bool {
    let finished = || session.guard.is_finished();
    if runtime.block_on(wait_for_end(&finished)) {
        tracing::info!("signal received: unmounting");
        lazy_unmount(mountpoint);
        let start = Instant::now();
        while !finished() && start.elapsed() < UNMOUNT_GRACE {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !finished() {
            if let Some(dev) = fuse_dev {
                abort_connection(dev);
            }
            // Dropping the session would join the stuck thread.
            std::mem::forget(session);
            return true;
        }
    }
    if let Err(e) = session.join() {
        tracing::debug!("FUSE session ended with: {e}");
    }
    false
}

/// Lets the cache's background disk writes finish, so the next mount finds what this one
/// fetched.
pub(super) fn flush_cache(runtime: &tokio::runtime::Runtime, store: &CacheStore) {
    if !runtime.block_on(store.flush(FLUSH_LIMIT)) {
        tracing::warn!("some fetched blocks were not written to the cache before exit");
    }
}

/// Waits for SIGINT/SIGTERM (true) or for the session to end by an external unmount (false).
async fn wait_for_end(finished: &dyn Fn() -> bool) -> bool {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot listen for signals; unmount with fusermount3 -u");
        while !finished() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        return false;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return true,
            _ = int.recv() => return true,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                if finished() {
                    return false;
                }
            }
        }
    }
}

/// Aborts the FUSE connection with device number `dev` through fusectl (root only; best
/// effort).
fn abort_connection(dev: u64) {
    let minor = libc::minor(dev);
    if let Err(e) = crate::fs::probe::abort_connection(minor) {
        tracing::debug!(minor, "could not abort the FUSE connection: {e}");
    }
}
