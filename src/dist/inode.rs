//! The inode table of the `/dist` view: stable inode numbers and what each one stands for.
//!
//! Numbering rules: inode 1 is the mount root; a directory is numbered by where it is
//! (parent inode + name), because the kernel does not allow one directory at two places; a
//! file or symlink is numbered by its content (CID + permission bits), so identical files in
//! different versions are one inode and share the kernel's page cache. Numbers are never
//! reused while the daemon runs (entries are not evicted yet; see the issue notes).
//!
//! The table is one `std::sync::Mutex` over plain maps: every critical section is a map
//! lookup or insert, never an `.await`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use cid::Cid;

use crate::unixfs::Mtime;

/// The mount root's inode number.
pub const ROOT_INO: u64 = 1;

/// Where in the `/dist` hierarchy a directory sits; decides TTLs and synthetic entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
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
    pub version_info: Arc<OnceLock<VersionInfo>>,
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

/// How an inode is found again (its identity).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    /// A directory or synthetic entry at (parent, name).
    Place(u64, String),
    /// A file or symlink by content.
    Content(Cid, u16),
}

#[derive(Default)]
struct Table {
    inodes: Vec<Inode>,
    keys: HashMap<Key, u64>,
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
            version_info: Arc::default(),
        };
        Inodes {
            table: Mutex::new(Table {
                inodes: vec![root],
                keys: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The inode numbered `ino`.
    pub fn get(&self, ino: u64) -> Option<Inode> {
        let idx = usize::try_from(ino.checked_sub(1)?).ok()?;
        self.lock().inodes.get(idx).cloned()
    }

    /// Records the entry `name` of `parent` and returns its inode, reusing the number it had
    /// if it was seen before (a directory at the same place; a file with the same content).
    /// A directory whose place now holds other content (after a root swap) keeps its number
    /// and takes the new content.
    pub fn intern(&self, parent: u64, name: &str, mut node: Inode) -> Inode {
        let key = match node.kind {
            Kind::File | Kind::Symlink => Key::Content(node.cid, node.perm),
            Kind::Dir | Kind::Latest(_) => Key::Place(parent, name.to_string()),
        };
        let mut t = self.lock();
        if let Some(&ino) = t.keys.get(&key) {
            let idx = (ino - 1) as usize;
            if let Some(existing) = t.inodes.get_mut(idx) {
                if existing.cid != node.cid || existing.kind != node.kind {
                    node.ino = ino;
                    node.parent = parent;
                    *existing = node;
                }
                return existing.clone();
            }
        }
        let ino = t.inodes.len() as u64 + 1;
        node.ino = ino;
        node.parent = parent;
        t.inodes.push(node.clone());
        t.keys.insert(key, ino);
        node
    }

    /// Points the root inode at `root` (a root swap); returns the CID it had. Every other
    /// inode keeps its number: directories take new content when they are looked up again
    /// at their place, files are numbered by content, so open files and working directories
    /// inside older versions keep resolving to what they were.
    pub fn set_root(&self, root: Cid) -> Cid {
        let mut t = self.lock();
        match t.inodes.first_mut() {
            Some(r) => std::mem::replace(&mut r.cid, root),
            None => root,
        }
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
