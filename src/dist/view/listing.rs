//! How the view lists a directory: its entries from the DAG, each child's inode made from its
//! root block (kind, size, mode, mtime), the synthetic `latest` and channel links of a
//! project, and the listing cached per directory inode while its CID stays the same. A child
//! of `view`, so it reads the view's store and caches directly.

use super::*;

/// Children stat'ed at once while listing a directory. As many as the fetcher can keep in
/// flight (its window decides how many of these are really requests at once): with 32, a
/// cold listing of 10,000 files 20 ms away took 10.1 s, one round trip per 32 children.
const LIST_CONCURRENCY: usize = 128;
/// Children whose blocks a listing asks the store to preload at once.
const LIST_PRELOAD: usize = 256;

impl DistView {
    /// The listing of `dir`, cached per inode while its CID stays the same.
    pub(super) async fn listing(&self, dir: &Inode) -> Result<Arc<Vec<Entry>>, ViewError> {
        if let Some((cid, entries)) = lock(&self.listings).get(&dir.ino) {
            if *cid == dir.cid {
                return Ok(entries.clone());
            }
        }
        let mut raw = walk::list_dir(self.store.as_ref(), &dir.cid).await?;
        let main_names: Vec<String> = if dir.level == Level::Root {
            self.load_hub(&raw).await?;
            let names = raw.iter().map(|e| e.name.clone()).collect();
            // A configured project wins over the main root's directory of that name.
            raw.retain(|e| self.union.configured_named(&e.name).is_none());
            names
        } else {
            Vec::new()
        };
        // At most LIST_CONCURRENCY futures exist at once: each is a few KiB, and building
        // them all up front for a 10,000-entry directory held 50 MiB. (A loop, not a
        // stream closure, keeps the task `Send`.) Each run of LIST_PRELOAD children's blocks
        // that are on disk comes into memory in one blocking call before the first of them
        // starts: one trip to a blocking thread per child was a quarter of a warm listing.
        // Unordered, so that one slow child does not hold the other slots: each result goes
        // to its child's place.
        let mut made: Vec<Option<Arc<Inode>>> = vec![None; raw.len()];
        let (mut next, mut preloaded) = (0, 0);
        let mut in_flight = FuturesUnordered::new();
        loop {
            while in_flight.len() < LIST_CONCURRENCY {
                let Some(e) = raw.get(next) else { break };
                if next == preloaded {
                    let end = raw.len().min(next + LIST_PRELOAD);
                    let cids: Vec<Cid> = raw[next..end].iter().map(|e| e.cid).collect();
                    self.store.preload(&cids).await;
                    preloaded = end;
                }
                let at = next;
                let child = self.make_inode(dir, &e.name, e.cid);
                in_flight.push(async move { (at, child.await) });
                next += 1;
            }
            match in_flight.next().await {
                Some((at, inode)) => {
                    if let Some(slot) = made.get_mut(at) {
                        *slot = inode?;
                    }
                }
                None => break,
            }
        }
        let mut entries: Vec<Entry> = raw
            .iter()
            .zip(made)
            .filter_map(|(e, inode)| {
                inode.map(|inode| Entry {
                    name: e.name.clone(),
                    inode,
                })
            })
            .collect();
        if dir.level == Level::Project {
            let mut links = self.channel_targets(&entries).await?;
            if let Some(target) = self.latest_target(&entries).await? {
                links.push(("latest".to_string(), target));
            }
            for (name, target) in links {
                if entries.iter().any(|e| e.name == name) {
                    continue; // the DAG's own entry of that name wins
                }
                let node = Inode {
                    ino: 0,
                    parent: dir.ino,
                    cid: dir.cid,
                    size: target.len() as u64,
                    kind: Kind::Latest(target),
                    level: Level::Project,
                    perm: 0o777,
                    mtime: None,
                    version_info: Default::default(),
                };
                let inode = self.inodes.intern(dir.ino, &name, node);
                entries.push(Entry { name, inode });
            }
            entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        }
        if dir.level == Level::Root {
            self.merge_union(&main_names, &mut entries);
        }
        let entries = Arc::new(entries);
        lock(&self.listings).insert(dir.ino, (dir.cid, entries.clone()));
        Ok(entries)
    }

    /// Builds (or finds) the inode for entry `name` → `cid` of `dir`. `None` for entries
    /// that are not UnixFS (they cannot be shown as files).
    pub(super) async fn make_inode(
        &self,
        dir: &Inode,
        name: &str,
        cid: Cid,
    ) -> Result<Option<Arc<Inode>>, ViewError> {
        let stat = match walk::stat(self.store.as_ref(), &cid).await {
            Ok(stat) => stat,
            // The child's verified block does not decode as a node we serve (an unsupported
            // UnixFS type, a broken protobuf): that never changes, so hide this one entry
            // like a hostile name instead of failing the whole directory. Fetch and store
            // failures still fail the listing (they may pass; a listing is cached).
            Err(walk::WalkError::Unixfs(e)) => {
                tracing::warn!(%cid, name, "hiding an entry that cannot be served: {e}");
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let level = match (dir.level, stat.kind) {
            (Level::Root, walk::Kind::Directory) => Level::Project,
            (Level::Project, walk::Kind::Directory) => Level::Version,
            _ => Level::Content,
        };
        let (kind, default_perm) = match stat.kind {
            walk::Kind::Directory => (Kind::Dir, meta::DIR_MODE),
            walk::Kind::Symlink => (Kind::Symlink, 0o777),
            walk::Kind::File => {
                let exec = stat.mode.is_none() && self.is_binary(dir, name, &cid).await?;
                (
                    Kind::File,
                    if exec {
                        meta::EXEC_MODE
                    } else {
                        meta::FILE_MODE
                    },
                )
            }
            walk::Kind::Other => {
                tracing::debug!(%cid, name, "hiding an entry that is not UnixFS");
                return Ok(None);
            }
        };
        // Setuid, setgid and sticky bits from a DAG are never honoured.
        let perm = stat.mode.map_or(default_perm, |m| m & 0o777) as u16;
        let node = Inode {
            ino: 0,
            parent: dir.ino,
            cid,
            kind,
            level,
            size: stat.size,
            perm,
            mtime: stat.mtime,
            version_info: Default::default(),
        };
        let inode = self.inodes.intern(dir.ino, name, node);
        self.cold.saw(inode.ino, dir.ino, name);
        Ok(Some(inode))
    }
}
