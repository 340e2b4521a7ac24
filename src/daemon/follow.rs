//! The refresh task of a name root: re-resolves it when its TTL runs out, on SIGHUP and on a
//! control-socket `refresh`; swaps the view's root when the name moved and invalidates the
//! kernel's entries. A refresh that fails keeps the current root, records why (shown by
//! `distfs status`) and tries again after the shortest TTL.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};

use super::protocol::RefreshOutcome;
use crate::dist::DistView;
use crate::fs::mount::Invalidator;
use crate::name::{Resolved, Resolver, RootSpec};

/// A refresh asked for over the control socket; answered with the outcome or the reason.
pub(crate) type RefreshAsk = oneshot::Sender<Result<RefreshOutcome, String>>;

/// What is known about the followed name (the mutex guards only copies in and out; no
/// `.await` while held).
#[derive(Debug, Clone)]
pub(crate) struct NameState {
    pub(crate) cid: cid::Cid,
    pub(crate) sequence: Option<u64>,
    pub(crate) ttl: Duration,
    pub(crate) source: String,
    pub(crate) last_refresh: Option<SystemTime>,
    pub(crate) last_error: Option<String>,
}

impl NameState {
    pub(crate) fn from_resolved(r: &Resolved) -> NameState {
        NameState {
            cid: r.cid,
            sequence: r.sequence,
            ttl: r.ttl,
            source: r.source.clone(),
            last_refresh: Some(SystemTime::now()),
            last_error: None,
        }
    }
}

/// The followed name's state, shared with the status reporter.
#[derive(Debug)]
pub(crate) struct NameCell {
    pub(crate) state: Mutex<NameState>,
    pub(crate) failures: AtomicU64,
}

impl NameCell {
    pub(crate) fn get(&self) -> NameState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, f: impl FnOnce(&mut NameState)) {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// The root's facts for its xattrs (`user.distfs.root`, `.sequence`, `.publisher`).
pub(crate) fn root_info(spec: &RootSpec, resolved: &Resolved) -> crate::dist::RootInfo {
    crate::dist::RootInfo {
        spec: spec.to_string(),
        sequence: resolved.sequence,
        publisher: resolved.publisher.clone(),
    }
}

/// Logs the records a resolution refused.
pub(crate) fn log_refused(spec: &RootSpec, resolved: &Resolved) {
    for (source, reason) in &resolved.refused {
        tracing::warn!(root = %spec, %source, "{reason}");
    }
}

/// The refresh task.
pub(crate) struct Follow {
    pub(crate) spec: RootSpec,
    pub(crate) resolver: Arc<Resolver>,
    pub(crate) view: Arc<DistView>,
    pub(crate) invalidator: Invalidator,
    pub(crate) min_ttl: Duration,
    pub(crate) cell: Arc<NameCell>,
}

impl Follow {
    /// Re-resolves at each TTL, on SIGHUP and on each ask until the runtime shuts down.
    pub(crate) async fn run(self, first_ttl: Duration, mut asks: mpsc::Receiver<RefreshAsk>) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup()).ok();
        let mut wait = first_ttl;
        loop {
            let hup_recv = async {
                match hup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let mut reply = None;
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = hup_recv => tracing::info!(root = %self.spec, "SIGHUP: refreshing"),
                ask = asks.recv() => match ask {
                    Some(tx) => reply = Some(tx),
                    // The control server is gone: keep following on TTLs and SIGHUP only.
                    None => asks = mpsc::channel(1).1,
                },
            }
            let outcome = self.refresh_impl().await;
            wait = match &outcome {
                Ok(o) => Duration::from_secs(o.ttl_secs),
                Err(e) => {
                    tracing::warn!(root = %self.spec, "refresh failed, keeping the current root {}: {e}", self.view.root_cid());
                    self.cell.failures.fetch_add(1, Ordering::Relaxed);
                    self.cell.set(|s| s.last_error = Some(e.clone()));
                    self.min_ttl
                }
            };
            if let Some(tx) = reply {
                let _ = tx.send(outcome);
            }
        }
    }

    /// One refresh: resolve, and swap the root if it moved.
    async fn refresh_impl(&self) -> Result<RefreshOutcome, String> {
        let resolved = self
            .resolver
            .resolve(&self.spec)
            .await
            .map_err(|e| e.to_string())?;
        log_refused(&self.spec, &resolved);
        let current = self.view.root_cid();
        if resolved.cid != current {
            let stale = self
                .view
                .swap_root(resolved.cid)
                .await
                .map_err(|e| format!("new root {} is not readable: {e}", resolved.cid))?;
            let n = self.invalidator.apply(stale).await;
            tracing::info!(
                root = %self.spec,
                old = %current,
                new = %resolved.cid,
                sequence = ?resolved.sequence,
                source = %resolved.source,
                invalidated = n,
                "root moved"
            );
        }
        // Also when the CID stayed: the sequence may have moved.
        self.view.set_root_info(root_info(&self.spec, &resolved));
        let state = NameState::from_resolved(&resolved);
        self.cell.set(|s| *s = state);
        Ok(RefreshOutcome {
            root: self.spec.to_string(),
            old: current.to_string(),
            new: resolved.cid.to_string(),
            sequence: resolved.sequence,
            source: resolved.source,
            ttl_secs: resolved.ttl.as_secs(),
        })
    }
}
