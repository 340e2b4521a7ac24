//! The inode table of the `/dist` view: stable inode numbers and what each one stands for.
//!
//! Numbering rules: inode 1 is the mount root; a directory is numbered by where it is
//! (parent inode + name), because the kernel does not allow one directory at two places; a
//! file or symlink is numbered by its content (CID + permission bits), so identical files in
//! different versions are one inode and share the kernel's page cache. Numbers are never
//! reused while the daemon runs (entries are not evicted yet; see the issue notes).
//!
//! A hot restart carries the whole table to the next process ([`Inodes::snapshot`],
//! [`Inodes::restore`]), so every number the kernel holds keeps meaning the same thing. Under
//! a supervisor (`distfs mount --supervise`) a daemon can die with no chance to hand anything
//! over, so the table is also journaled ([`Inodes::journaled`]): each number is appended to
//! a file in the cache dir *before* the reply that hands it to the kernel, and the next
//! daemon replays the file. A process crash keeps the journal (the write reached the page
//! cache); a machine crash ends the mount anyway.
//!
//! The table is one `std::sync::Mutex` over plain maps: every critical section is a map
//! lookup or insert, never an `.await`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use cid::Cid;
use serde::{Deserialize, Serialize};

use crate::unixfs::Mtime;

/// The mount root's inode number.
pub const ROOT_INO: u64 = 1;

/// Where in the `/dist` hierarchy a directory sits; decides TTLs and synthetic entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Level {
    /// The mount root: lists projects.
    Root,
    /// `/dist/<project>`: version directories, `versions`, and a synthetic `latest`.
    Project,
    /// `/dist/<project>/<version>`: immutable, with `dist.json` naming its binaries.
    Version,
    /// Anything deeper, or anything that is not a directory.
    Content,
}

/// What an inode is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// A directory (plain or HAMT) backed by a DAG node.
    Dir,
    /// A regular file backed by a DAG.
    File,
    /// A symlink backed by a DAG node.
    Symlink,
    /// A synthetic symlink of a project (`latest` or a channel): its target text.
    Latest(String),
}

/// Attributes and identity of one inode.
#[derive(Clone, Debug)]
pub struct Inode {
    /// The inode number.
    pub ino: u64,
    /// The parent directory's inode (the root is its own parent).
    pub parent: u64,
    /// The DAG node behind it (for `Latest`, the project directory's CID).
    pub cid: Cid,
    /// What it is.
    pub kind: Kind,
    /// Where it sits.
    pub level: Level,
    /// File bytes or symlink target length; 0 for directories.
    pub size: u64,
    /// Permission bits (already defaulted and masked: no setuid/setgid/sticky).
    pub perm: u16,
    /// Modification time, if the DAG has one.
    pub mtime: Option<Mtime>,
    /// Per-version facts, loaded on first use (only for `Level::Version` directories).
    pub version_info: OnceLock<VersionInfo>,
}

impl Inode {
    /// True when the node and everything below it can never change.
    pub fn is_immutable(&self) -> bool {
        matches!(self.level, Level::Version | Level::Content)
            && !matches!(self.kind, Kind::Latest(_))
    }
}

/// What a version directory's `dist.json` says.
#[derive(Clone, Debug, Default)]
pub struct VersionInfo {
    /// File names listed as downloads (binaries).
    pub binaries: std::collections::BTreeSet<String>,
}

/// Files and symlinks found again by content (CID + permission bits). Only their numbers are
/// kept, hashed by that key and compared with the inode each names: a `HashMap<(Cid, u16),
/// u64>` held every CID a second time, about 130 bytes an entry (13 MiB for a tree of
/// 100,000 files), where this holds 9.
#[derive(Default)]
struct ByContent {
    numbers: hashbrown::HashTable<u64>,
    hasher: std::hash::RandomState,
}

fn content_hash(hasher: &std::hash::RandomState, cid: &Cid, perm: u16) -> u64 {
    use std::hash::BuildHasher;
    hasher.hash_one((cid, perm))
}

/// The inode numbered `ino` in `inodes`.
fn numbered(inodes: &[Arc<Inode>], ino: u64) -> Option<&Arc<Inode>> {
    inodes.get(usize::try_from(ino.checked_sub(1)?).ok()?)
}

impl ByContent {
    fn find(&self, inodes: &[Arc<Inode>], cid: &Cid, perm: u16) -> Option<u64> {
        let hash = content_hash(&self.hasher, cid, perm);
        self.numbers
            .find(hash, |&ino| {
                numbered(inodes, ino).is_some_and(|n| n.cid == *cid && n.perm == perm)
            })
            .copied()
    }

    /// Makes `ino` (already in `inodes`) the number its content is found by.
    fn set(&mut self, inodes: &[Arc<Inode>], ino: u64) {
        let Some(node) = numbered(inodes, ino) else {
            return;
        };
        let hasher = &self.hasher;
        let hash = content_hash(hasher, &node.cid, node.perm);
        let same = |&n: &u64| {
            numbered(inodes, n).is_some_and(|n| n.cid == node.cid && n.perm == node.perm)
        };
        match self.numbers.find_mut(hash, same) {
            Some(slot) => *slot = ino,
            None => {
                self.numbers.insert_unique(hash, ino, |&n| {
                    numbered(inodes, n).map_or(0, |n| content_hash(hasher, &n.cid, n.perm))
                });
            }
        }
    }
}

/// One inode as carried across a hot restart.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InodeRecord {
    /// The inode number.
    pub ino: u64,
    /// Its parent's number.
    pub parent: u64,
    /// The DAG node behind it.
    pub cid: String,
    /// What it is.
    pub kind: Kind,
    /// Where it sits.
    pub level: Level,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits.
    pub perm: u16,
    /// Modification time (seconds, nanoseconds).
    pub mtime: Option<(i64, u32)>,
    /// The entry name a directory or synthetic entry is found again by (its place).
    pub name: Option<String>,
}

/// The inode table as carried across a hot restart: every inode, in number order.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct InodeSnapshot {
    /// Inodes 1..=n.
    pub inodes: Vec<InodeRecord>,
}

/// Why a snapshot could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The numbers are not 1..=n in order, or the root is missing.
    #[error("inode snapshot: entry {index} has number {ino}, expected {}", index + 1)]
    Numbering { index: usize, ino: u64 },
    /// A CID does not parse.
    #[error("inode snapshot: inode {ino} has a bad CID {cid:?}")]
    Cid { ino: u64, cid: String },
    /// A directory or synthetic entry without the name it is found by.
    #[error("inode snapshot: directory inode {ino} has no name")]
    NoName { ino: u64 },
}

#[derive(Default)]
struct Table {
    /// Shared with the listings that name them: one allocation per inode, however many
    /// cached listings hold it.
    inodes: Vec<Arc<Inode>>,
    /// Directories and synthetic entries, by place (parent, name).
    places: HashMap<(u64, String), u64>,
    /// Files and symlinks, by content.
    contents: ByContent,
    /// The journal, when the table is journaled: one JSON [`InodeRecord`] per line.
    journal: Option<std::fs::File>,
}

fn record_of(i: &Inode, name: Option<&str>) -> InodeRecord {
    InodeRecord {
        ino: i.ino,
        parent: i.parent,
        cid: i.cid.to_string(),
        kind: i.kind.clone(),
        level: i.level,
        size: i.size,
        perm: i.perm,
        mtime: i.mtime.map(|m| (m.seconds, m.nanos)),
        name: name.map(str::to_string),
    }
}

impl Table {
    /// Appends `node` to the journal (a short `write(2)` to the page cache; see the module
    /// doc). A failed write turns journaling off, loudly.
    fn journal(&mut self, node: &Inode, name: Option<&str>) {
        use std::io::Write;
        let Some(file) = self.journal.as_mut() else {
            return;
        };
        let mut line = serde_json::to_vec(&record_of(node, name)).unwrap_or_default();
        line.push(b'\n');
        if let Err(e) = file.write_all(&line) {
            tracing::error!("inode journal write failed, journaling stops: {e}");
            self.journal = None;
        }
    }
}

/// The inode table.
pub struct Inodes {
    table: Mutex<Table>,
}

impl Inodes {
    /// A table holding only the root directory `root`.
    pub fn new(root: Cid) -> Inodes {
        let root = Inode {
            ino: ROOT_INO,
            parent: ROOT_INO,
            cid: root,
            kind: Kind::Dir,
            level: Level::Root,
            size: 0,
            perm: 0o555,
            mtime: None,
            version_info: OnceLock::new(),
        };
        Inodes {
            table: Mutex::new(Table {
                inodes: vec![Arc::new(root)],
                ..Table::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The inode numbered `ino`.
    pub fn get(&self, ino: u64) -> Option<Arc<Inode>> {
        let idx = usize::try_from(ino.checked_sub(1)?).ok()?;
        self.lock().inodes.get(idx).cloned()
    }

    /// Records the entry `name` of `parent` and returns its inode, reusing the number it had
    /// if it was seen before (a directory at the same place; a file with the same content).
    /// A directory whose place now holds other content (after a root swap) keeps its number
    /// and takes the new content.
    pub fn intern(&self, parent: u64, name: &str, mut node: Inode) -> Arc<Inode> {
        let by_place = matches!(node.kind, Kind::Dir | Kind::Latest(_));
        let mut t = self.lock();
        let found = if by_place {
            t.places.get(&(parent, name.to_string())).copied()
        } else {
            t.contents.find(&t.inodes, &node.cid, node.perm)
        };
        let place = by_place.then_some(name);
        if let Some(ino) = found {
            let idx = (ino - 1) as usize;
            if let Some(existing) = t.inodes.get(idx) {
                if existing.cid == node.cid && existing.kind == node.kind {
                    return existing.clone();
                }
                node.ino = ino;
                node.parent = parent;
                t.journal(&node, place);
                let node = Arc::new(node);
                t.inodes[idx] = Arc::clone(&node);
                return node;
            }
        }
        let ino = t.inodes.len() as u64 + 1;
        node.ino = ino;
        node.parent = parent;
        t.journal(&node, place);
        let node = Arc::new(node);
        t.inodes.push(Arc::clone(&node));
        if by_place {
            t.places.insert((parent, name.to_string()), ino);
        } else {
            let t = &mut *t;
            t.contents.set(&t.inodes, ino);
        }
        node
    }

    /// Points the root inode at `root` (a root swap); returns the CID it had. Every other
    /// inode keeps its number: directories take new content when they are looked up again
    /// at their place, files are numbered by content, so open files and working directories
    /// inside older versions keep resolving to what they were.
    pub fn set_root(&self, root: Cid) -> Cid {
        let mut t = self.lock();
        match t.inodes.first_mut() {
            Some(r) => std::mem::replace(&mut Arc::make_mut(r).cid, root),
            None => root,
        }
    }

    /// Every inode and how it is found again, for the next process of a hot restart.
    pub fn snapshot(&self) -> InodeSnapshot {
        let t = self.lock();
        let names: HashMap<u64, &str> = t
            .places
            .iter()
            .map(|((_, name), ino)| (*ino, name.as_str()))
            .collect();
        let inodes = t
            .inodes
            .iter()
            .map(|i| record_of(i, names.get(&i.ino).copied()))
            .collect();
        InodeSnapshot { inodes }
    }

    /// A journaled table at `path` (see the module doc): with `replay`, the numbers the
    /// journal holds (a later line for a number replaces an earlier one) and the root
    /// pointed at `root`; without, or when the journal is unusable, a fresh table whose
    /// journal starts empty.
    pub fn journaled(path: &std::path::Path, root: Cid, replay: bool) -> std::io::Result<Inodes> {
        let mut restored = None;
        if replay {
            if let Ok(text) = std::fs::read_to_string(path) {
                let mut records: Vec<InodeRecord> = Vec::new();
                for line in text.lines() {
                    let Ok(r) = serde_json::from_str::<InodeRecord>(line) else {
                        continue; // a line cut short by the crash
                    };
                    match usize::try_from(r.ino).ok().and_then(|i| i.checked_sub(1)) {
                        Some(i) if i < records.len() => records[i] = r,
                        Some(i) if i == records.len() => records.push(r),
                        _ => {}
                    }
                }
                match Inodes::restore(&InodeSnapshot { inodes: records }) {
                    Ok(t) => restored = Some(t),
                    Err(e) => tracing::warn!("inode journal not usable, starting afresh: {e}"),
                }
            }
        }
        let append = restored.is_some();
        let inodes = match restored {
            Some(t) => {
                t.set_root(root);
                t
            }
            None => Inodes::new(root),
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .truncate(false)
            .open(path)?;
        let mut t = inodes.lock();
        if !append {
            file.set_len(0)?;
            let root_node = t.inodes[0].clone();
            t.journal = Some(file);
            t.journal(&root_node, None);
        } else {
            t.journal = Some(file);
        }
        drop(t);
        Ok(inodes)
    }

    /// Starts journaling this table into `path` (replacing its content with the table now),
    /// for a supervised daemon that took over from a hot restart.
    pub fn attach_journal(&self, path: &std::path::Path) -> std::io::Result<()> {
        use std::io::Write;
        let snapshot = self.snapshot();
        let mut text = Vec::new();
        for r in &snapshot.inodes {
            text.extend(serde_json::to_vec(r).unwrap_or_default());
            text.push(b'\n');
        }
        let mut file = std::fs::File::create(path)?;
        file.write_all(&text)?;
        self.lock().journal = Some(file);
        Ok(())
    }

    /// The table a [`Inodes::snapshot`] describes: the same numbers for the same things.
    pub fn restore(snapshot: &InodeSnapshot) -> Result<Inodes, RestoreError> {
        let mut table = Table::default();
        for (index, r) in snapshot.inodes.iter().enumerate() {
            if r.ino != index as u64 + 1 {
                return Err(RestoreError::Numbering { index, ino: r.ino });
            }
            let cid: Cid = r.cid.parse().map_err(|_| RestoreError::Cid {
                ino: r.ino,
                cid: r.cid.clone(),
            })?;
            table.inodes.push(Arc::new(Inode {
                ino: r.ino,
                parent: r.parent,
                cid,
                kind: r.kind.clone(),
                level: r.level,
                size: r.size,
                perm: r.perm,
                mtime: r.mtime.map(|(seconds, nanos)| Mtime { seconds, nanos }),
                version_info: OnceLock::new(),
            }));
            if r.ino != ROOT_INO {
                match r.kind {
                    Kind::File | Kind::Symlink => table.contents.set(&table.inodes, r.ino),
                    Kind::Dir | Kind::Latest(_) => {
                        let name = r.name.clone().ok_or(RestoreError::NoName { ino: r.ino })?;
                        table.places.insert((r.parent, name), r.ino);
                    }
                }
            }
        }
        if table.inodes.is_empty() {
            return Err(RestoreError::Numbering { index: 0, ino: 0 });
        }
        Ok(Inodes {
            table: Mutex::new(table),
        })
    }

    /// The number of inodes allocated.
    pub fn len(&self) -> usize {
        self.lock().inodes.len()
    }

    /// Whether only the root exists.
    pub fn is_empty(&self) -> bool {
        self.len() <= 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(n: u8) -> Cid {
        let hash = multihash::Multihash::<64>::wrap(0x12, &[n; 32]).unwrap();
        Cid::new_v1(0x70, hash)
    }

    fn node(kind: Kind, c: Cid) -> Inode {
        Inode {
            ino: 0,
            parent: 0,
            cid: c,
            kind,
            level: Level::Content,
            size: 3,
            perm: 0o444,
            mtime: Some(Mtime {
                seconds: 5,
                nanos: 6,
            }),
            version_info: OnceLock::new(),
        }
    }

    #[test]
    fn files_are_found_again_by_content_and_permission_bits() {
        let t = Inodes::new(cid(0));
        let mut first = Vec::new();
        for n in 1..=200u8 {
            let mut exec = node(Kind::File, cid(n));
            exec.perm = 0o555;
            first.push((
                t.intern(ROOT_INO, "a", node(Kind::File, cid(n))).ino,
                t.intern(ROOT_INO, "b", exec).ino,
            ));
        }
        assert_eq!(t.len(), 401);
        for (n, (plain, exec)) in (1..=200u8).zip(first) {
            assert_ne!(plain, exec);
            // Under another name, in another directory: the same inode.
            assert_eq!(t.intern(7, "c", node(Kind::File, cid(n))).ino, plain);
            assert_eq!(t.get(plain).unwrap().cid, cid(n));
        }
        assert_eq!(t.len(), 401);
    }

    #[test]
    fn snapshot_restores_the_same_numbers_and_keys() {
        let t = Inodes::new(cid(0));
        let dir = t.intern(ROOT_INO, "app", node(Kind::Dir, cid(1)));
        let file = t.intern(dir.ino, "a.txt", node(Kind::File, cid(2)));
        let link = t.intern(dir.ino, "latest", node(Kind::Latest("1.0".into()), cid(1)));
        let snap = t.snapshot();
        let json = serde_json::to_string(&snap).unwrap();
        let back = Inodes::restore(&serde_json::from_str(&json).unwrap()).unwrap();
        assert_eq!(back.len(), 4);
        for ino in [dir.ino, file.ino, link.ino] {
            let (a, b) = (t.get(ino).unwrap(), back.get(ino).unwrap());
            assert_eq!(
                (a.cid, &a.kind, a.parent, a.mtime),
                (b.cid, &b.kind, b.parent, b.mtime)
            );
        }
        // Found again by the same keys: no new numbers.
        assert_eq!(
            back.intern(ROOT_INO, "app", node(Kind::Dir, cid(1))).ino,
            dir.ino
        );
        assert_eq!(back.intern(99, "b", node(Kind::File, cid(2))).ino, file.ino);
        assert_eq!(back.intern(ROOT_INO, "new", node(Kind::Dir, cid(3))).ino, 5);
        // The journal gives the same numbers to the next process.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inodes");
        let j = Inodes::journaled(&path, cid(0), true).unwrap();
        let d = j.intern(ROOT_INO, "app", node(Kind::Dir, cid(1)));
        let f = j.intern(d.ino, "a.txt", node(Kind::File, cid(2)));
        drop(j);
        let again = Inodes::journaled(&path, cid(9), true).unwrap();
        assert_eq!(again.get(ROOT_INO).unwrap().cid, cid(9));
        assert_eq!(
            again.intern(ROOT_INO, "app", node(Kind::Dir, cid(1))).ino,
            d.ino
        );
        assert_eq!(again.get(f.ino).unwrap().cid, cid(2));
        let fresh = Inodes::journaled(&path, cid(0), false).unwrap();
        assert_eq!(fresh.len(), 1);
        // A gap in the numbering is refused.
        let mut bad = snap.clone();
        bad.inodes.remove(1);
        assert!(Inodes::restore(&bad).is_err());
    }
}
