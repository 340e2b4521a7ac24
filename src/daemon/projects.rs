//! One follower per project of its own name (`dist::union`): resolves the project's root
//! with its own pinned publisher (the resolver keeps each IPNS name's rollback memory on its
//! own), shows it once its root lists, and re-resolves when its own TTL runs out. A failure
//! touches only that project: one that never resolved answers EIO with the reason (in
//! `distfs status` and the log); one that did keeps its last good root and retries after the
//! shortest TTL. Followers start when the view first needs a project (configured projects
//! at mount time; hub entries on first lookup inside) and stop when a hub entry is removed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::dist::union::{Project, Resolution};
use crate::dist::DistView;
use crate::fs::mount::Invalidator;
use crate::name::Resolver;

/// What every project follower shares.
#[derive(Clone)]
pub(crate) struct Followers {
    pub(crate) resolver: Arc<Resolver>,
    pub(crate) view: Arc<DistView>,
    pub(crate) invalidator: Arc<Invalidator>,
    pub(crate) min_ttl: Duration,
}

impl Followers {
    /// Starts a follower for each project sent on `starts`, until the sender is gone.
    pub(crate) async fn run(self, mut starts: mpsc::UnboundedReceiver<Arc<Project>>) {
        while let Some(project) = starts.recv().await {
            tokio::spawn(self.clone().follow(project));
        }
    }

    async fn follow(self, project: Arc<Project>) {
        while !project.is_retired() {
            let wait = match self.refresh_impl(&project).await {
                Ok(ttl) => ttl,
                Err(reason) => {
                    tracing::warn!(project = %project.name, root = %project.source.root, "{reason}");
                    project.failed(reason);
                    self.min_ttl
                }
            };
            tokio::time::sleep(wait).await;
        }
        tracing::debug!(project = %project.name, "project removed from the hub: follower stops");
    }

    /// One resolution; the TTL until the next.
    #[tracing::instrument(skip_all, fields(project = %project.name))]
    async fn refresh_impl(&self, project: &Arc<Project>) -> Result<Duration, String> {
        let resolved = self
            .resolver
            .resolve_as(&project.source.root, project.source.publisher.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        for (source, reason) in &resolved.refused {
            tracing::warn!(project = %project.name, %source, "{reason}");
        }
        let old = project.cid();
        if old != Some(resolved.cid) {
            self.view
                .check_project_root(resolved.cid)
                .await
                .map_err(|e| format!("new root {} is not readable: {e}", resolved.cid))?;
        }
        let ttl = resolved.ttl;
        project.ready(Resolution {
            cid: resolved.cid,
            sequence: resolved.sequence,
            ttl,
            source: resolved.source,
        });
        if let Some(old) = old.filter(|o| *o != resolved.cid) {
            let stale = self.view.project_moved(project).await;
            let n = self.invalidator.apply(stale).await;
            tracing::info!(project = %project.name, %old, new = %resolved.cid, sequence = ?resolved.sequence, invalidated = n, "project moved");
        }
        Ok(ttl)
    }
}
