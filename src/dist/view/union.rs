//! The view's side of the union (`dist::union`): the root listing as the union of the main
//! root's projects, configured projects and hub entries (configured > main root > hub), the
//! main root's `projects.json` read when it changes, a project directory's CID taken from its
//! own resolution when something looks inside, and the kernel entries to drop when a
//! project's name moves. A child of `view`, so it reads the view's caches directly.

use super::*;
use crate::dist::hub::{self, HUB_FILE, MAX_HUB_FILE};
use crate::dist::union::{Clash, Origin, Project};

impl DistView {
    /// This view with projects under names of their own beside the main root's.
    pub fn with_union(mut self, union: Arc<Union>) -> DistView {
        self.union = union;
        self
    }

    /// The projects under names of their own.
    pub fn union(&self) -> &Arc<Union> {
        &self.union
    }

    /// The root entry inode of project `p` (its resolved CID, else the main root's as a
    /// placeholder never read: a listing or lookup inside waits for the real one).
    fn project_inode(&self, p: &Arc<Project>) -> Arc<Inode> {
        let node = Inode {
            ino: 0,
            parent: ROOT_INO,
            cid: p.cid().unwrap_or_else(|| self.root_cid()),
            kind: Kind::Dir,
            level: Level::Project,
            size: 0,
            perm: meta::DIR_MODE as u16,
            mtime: None,
            version_info: Default::default(),
        };
        let inode = self.inodes.intern(ROOT_INO, &p.name, node);
        self.union.shown_at(inode.ino, p);
        inode
    }

    /// A root lookup among the union's projects: the configured ones (`configured` true,
    /// asked before the main root) or the hub entries (asked after it).
    pub(super) async fn union_lookup(
        &self,
        root: &Inode,
        name: &str,
        configured: bool,
    ) -> Result<Option<Arc<Inode>>, ViewError> {
        if configured {
            return Ok(self
                .union
                .configured_named(name)
                .map(|p| self.project_inode(&p)));
        }
        if let Some(entry) = walk::lookup(self.store.as_ref(), &root.cid, HUB_FILE).await? {
            self.load_hub_file(Some(entry.cid)).await?;
        }
        Ok(self.union.hub_named(name).map(|p| self.project_inode(&p)))
    }

    /// `dir` with the CID of its own resolution when it is a project of the union: starts
    /// the project's follower the first time and waits for its outcome (the caller bounds
    /// the wait). A project that never resolved is an error naming why.
    pub(super) async fn mounted_dir(&self, dir: Arc<Inode>) -> Result<Arc<Inode>, ViewError> {
        let Some(p) = self.union.at_inode(dir.ino) else {
            return Ok(dir);
        };
        self.union.start(&p);
        let cid = p.wait().await.map_err(|reason| ViewError::Project {
            name: p.name.clone(),
            reason,
        })?;
        if cid == dir.cid {
            return Ok(dir);
        }
        Ok(self.project_inode(&p))
    }

    /// Reads the main root's `projects.json` (an entry of `raw`) when it changed.
    pub(super) async fn load_hub(&self, raw: &[crate::unixfs::DirEntry]) -> Result<(), ViewError> {
        let file = raw.iter().find(|e| e.name == HUB_FILE).map(|e| e.cid);
        self.load_hub_file(file).await
    }

    async fn load_hub_file(&self, file: Option<Cid>) -> Result<(), ViewError> {
        if file == self.union.hub_file() {
            return Ok(());
        }
        let Some(cid) = file else {
            self.union.set_hub(None, Ok(Default::default()));
            return Ok(());
        };
        let stat = walk::stat(self.store.as_ref(), &cid).await?;
        let index = if stat.kind != walk::Kind::File {
            Err(format!("{HUB_FILE} is not a file"))
        } else if stat.size > MAX_HUB_FILE {
            Err(hub::HubError::TooLarge { size: stat.size }.to_string())
        } else {
            let bytes = walk::read_range(self.store.as_ref(), &cid, 0, stat.size).await?;
            hub::parse(&bytes).map_err(|e| e.to_string())
        };
        self.union.set_hub(Some(cid), index);
        Ok(())
    }

    /// Adds the union's projects to the root listing `entries` (made from the main root,
    /// whose names were `main`), records which inode shows which project and the clashes.
    pub(super) fn merge_union(&self, main: &[String], entries: &mut Vec<Entry>) {
        let mut shown = HashMap::new();
        let mut clashes: Vec<Clash> = Vec::new();
        let in_main = |name: &str| main.iter().any(|n| n == name);
        for p in self.union.configured() {
            let inode = self.project_inode(p);
            shown.insert(inode.ino, Arc::clone(p));
            entries.push(Entry {
                name: p.name.clone(),
                inode,
            });
            if in_main(&p.name) {
                clashes.push(Clash {
                    name: p.name.clone(),
                    shown: Origin::Configured,
                    hidden: vec![Origin::MainRoot],
                });
            }
        }
        for p in self.union.hub_projects() {
            let winner = if self.union.configured_named(&p.name).is_some() {
                Some(Origin::Configured)
            } else if in_main(&p.name) {
                Some(Origin::MainRoot)
            } else {
                None
            };
            match winner {
                Some(shown_origin) => match clashes.iter_mut().find(|c| c.name == p.name) {
                    Some(c) => c.hidden.push(Origin::Hub),
                    None => clashes.push(Clash {
                        name: p.name.clone(),
                        shown: shown_origin,
                        hidden: vec![Origin::Hub],
                    }),
                },
                None => {
                    let inode = self.project_inode(&p);
                    shown.insert(inode.ino, Arc::clone(&p));
                    entries.push(Entry {
                        name: p.name.clone(),
                        inode,
                    });
                }
            }
        }
        entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        self.union.set_listing(shown, clashes);
    }

    /// Checks that a project's new root can be listed before it is shown.
    pub async fn check_project_root(&self, cid: Cid) -> Result<(), ViewError> {
        self.bounded(async {
            walk::list_dir(self.store.as_ref(), &cid).await?;
            Ok(())
        })
        .await
    }

    /// After project `p` took a new root ([`Project::ready`]): re-lists it where it is shown
    /// and returns the kernel entries that may now be stale (its directory, its `latest`
    /// and channel links as they were and are). Nothing when it is not shown.
    pub async fn project_moved(&self, p: &Arc<Project>) -> Vec<Invalidation> {
        if !self.union.is_shown(p) {
            return Vec::new();
        }
        let inode = self.project_inode(p);
        let mut out = vec![
            Invalidation::Entry {
                parent: ROOT_INO,
                name: p.name.clone(),
            },
            Invalidation::Inode(inode.ino),
        ];
        let before = lock(&self.listings).get(&inode.ino).map(|(_, l)| l.clone());
        let after = match self.bounded(self.listing(&inode)).await {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(project = %p.name, "listing the moved project failed: {e}");
                None
            }
        };
        for link in before.iter().chain(after.iter()).flat_map(|l| l.iter()) {
            if matches!(link.inode.kind, Kind::Latest(_)) {
                out.push(Invalidation::Entry {
                    parent: inode.ino,
                    name: link.name.clone(),
                });
                out.push(Invalidation::Inode(link.inode.ino));
            }
        }
        out.dedup();
        out
    }
}
