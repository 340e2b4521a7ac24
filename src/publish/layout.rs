//! Adding a version to a distribution tree: reads only the directories on the way (the root,
//! the project directory, its `versions` and `channels` files) and re-encodes only those.
//!
//! Rules: a plain directory is rebuilt with the importer's directory builder (which shards it
//! only when it grows past Kubo's threshold); a HAMT-sharded directory stays sharded, rebuilt
//! with the HAMT builder at its own fanout, whatever its size. Metadata (mode, mtime) of a
//! rebuilt directory is kept. Entries the reader hides (invalid names) are not carried over.
//! The new version is appended to `versions`; a version that already exists — as a directory
//! or a `versions` line — is refused. `--channel` rewrites the project's `channels` file
//! (format: `dist::versions`).

use bytes::Bytes;
use cid::Cid;

use super::PublishError;
use crate::dist::versions::{self, CHANNELS_FILE, VERSIONS_FILE};
use crate::import::hamt::build_hamt;
use crate::import::{
    build_directory, import_file, BlockSink, DirEntry, ImportOptions, Metadata, Mtime,
};
use crate::store::BlockStore;
use crate::unixfs::Node;
use crate::walk;

/// The most bytes of a `versions` or `channels` file read.
pub const MAX_LIST_FILE: u64 = 1024 * 1024;

/// What to add.
#[derive(Clone, Debug)]
pub struct Addition {
    /// Project directory name.
    pub project: String,
    /// Version directory name.
    pub version: String,
    /// Channel to point at the new version, if any.
    pub channel: Option<String>,
    /// The version directory's entries (files and `dist.json`).
    pub entries: Vec<DirEntry>,
}

/// The rebuilt tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTree {
    /// The new root directory.
    pub root: Cid,
    /// The new project directory.
    pub project_dir: Cid,
    /// The new version directory.
    pub version_dir: Cid,
    /// The new `versions` text.
    pub versions: String,
    /// Whether the root is HAMT-sharded.
    pub root_sharded: bool,
}

/// Checks a project or version name: a valid entry name, not hidden, not a name the project
/// directory reserves.
pub fn check_name(what: &'static str, name: &str) -> Result<(), PublishError> {
    let bad = |reason: String| PublishError::BadName {
        what,
        name: name.chars().take(100).collect(),
        reason,
    };
    crate::unixfs::validate_name(name).map_err(|e| bad(e.to_string()))?;
    if name.starts_with('.') {
        return Err(bad("must not start with `.`".into()));
    }
    if what == "version" && matches!(name, "latest" | VERSIONS_FILE | CHANNELS_FILE | "dist.json") {
        return Err(bad("is a name the project directory already uses".into()));
    }
    Ok(())
}

/// A directory read back for rebuilding.
struct Dir {
    entries: Vec<DirEntry>,
    meta: Metadata,
    /// `Some(fanout)` when HAMT-sharded.
    fanout: Option<usize>,
}

impl Dir {
    fn empty() -> Dir {
        Dir {
            entries: Vec::new(),
            meta: Metadata::default(),
            fanout: None,
        }
    }

    fn get(&self, name: &str) -> Option<&DirEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Replaces or inserts `entry`.
    fn set(&mut self, entry: DirEntry) {
        self.entries.retain(|e| e.name != entry.name);
        self.entries.push(entry);
    }

    /// Encodes the directory into `sink`: HAMT again if it was one, else the plain builder.
    fn write<S: BlockSink + ?Sized>(
        mut self,
        opts: &ImportOptions,
        sink: &mut S,
    ) -> Result<(DirEntryTarget, bool), PublishError> {
        match self.fanout {
            Some(fanout) => {
                self.entries
                    .sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
                let mut o = *opts;
                o.hamt.fanout = fanout;
                let node = build_hamt(&self.entries, &self.meta, &o, sink)?;
                Ok(((node.cid, node.tsize), true))
            }
            None => {
                let node = build_directory(self.entries, &self.meta, opts, sink)?;
                Ok(((node.cid, node.tsize), node.sharded))
            }
        }
    }
}

/// A written entry: CID and Tsize.
type DirEntryTarget = (Cid, u64);

async fn read_dir<S: BlockStore + ?Sized>(
    store: &S,
    cid: &Cid,
    what: &str,
) -> Result<Dir, PublishError> {
    let not_dir = || PublishError::NotADirectory {
        what: what.to_string(),
        cid: *cid,
    };
    let (meta, fanout) = match walk::load(store, cid).await? {
        Node::Directory(d) => (d.meta, None),
        Node::HamtShard(s) => (s.meta, Some(s.fanout as usize)),
        _ => return Err(not_dir()),
    };
    let entries = walk::list_dir(store, cid)
        .await?
        .into_iter()
        .map(|e| DirEntry {
            name: e.name,
            cid: e.cid,
            tsize: e.tsize.unwrap_or(0),
        })
        .collect();
    Ok(Dir {
        entries,
        meta: Metadata {
            mode: meta.mode,
            mtime: meta.mtime.map(|t| Mtime {
                seconds: t.seconds,
                nanos: t.nanos,
            }),
        },
        fanout,
    })
}

/// The text of a small file (`versions`, `channels`), at most [`MAX_LIST_FILE`] bytes.
async fn read_text<S: BlockStore + ?Sized>(
    store: &S,
    cid: &Cid,
    what: &str,
) -> Result<String, PublishError> {
    let stat = walk::stat(store, cid).await?;
    if stat.kind != walk::Kind::File {
        return Err(PublishError::NotAFile {
            what: what.to_string(),
            cid: *cid,
        });
    }
    if stat.size > MAX_LIST_FILE {
        return Err(PublishError::TooLarge {
            what: what.to_string(),
            size: stat.size,
            max: MAX_LIST_FILE,
        });
    }
    let bytes = walk::read_range(store, cid, 0, stat.size).await?;
    String::from_utf8(bytes.to_vec()).map_err(|_| PublishError::NotText {
        what: what.to_string(),
    })
}

/// Imports `text` as a file with `opts` and returns its directory entry.
fn write_text<S: BlockSink + ?Sized>(
    name: &str,
    text: &str,
    opts: &ImportOptions,
    sink: &mut S,
) -> Result<DirEntry, PublishError> {
    let node = import_file(
        std::io::Cursor::new(Bytes::copy_from_slice(text.as_bytes())),
        opts,
        &Metadata::default(),
        sink,
    )?;
    Ok(DirEntry {
        name: name.to_string(),
        cid: node.cid,
        tsize: node.tsize,
    })
}

/// Adds `add` to the tree rooted at `base` (`None` = an empty distribution), reading through
/// `store` and writing every new block to `sink`. Returns the new root and what changed.
#[tracing::instrument(skip_all, fields(project = %add.project, version = %add.version))]
pub async fn add_version<S: BlockStore + ?Sized, K: BlockSink + ?Sized>(
    store: &S,
    base: Option<&Cid>,
    add: Addition,
    opts: &ImportOptions,
    sink: &mut K,
) -> Result<NewTree, PublishError> {
    check_name("project", &add.project)?;
    check_name("version", &add.version)?;
    let mut root = match base {
        Some(cid) => read_dir(store, cid, "the distribution root").await?,
        None => Dir::empty(),
    };
    let project_base = root.get(&add.project).map(|e| e.cid);
    let project =
        add_version_to_project(store, project_base.as_ref(), add.clone(), opts, sink).await?;
    root.set(DirEntry {
        name: add.project.clone(),
        cid: project.root,
        tsize: project.tsize,
    });
    let ((root_cid, _), root_sharded) = root.write(opts, sink)?;
    Ok(NewTree {
        root: root_cid,
        project_dir: project.root,
        version_dir: project.version_dir,
        versions: project.versions,
        root_sharded,
    })
}

/// A rebuilt project tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewProject {
    /// The new project directory.
    pub root: Cid,
    /// Its Tsize.
    pub tsize: u64,
    /// The new version directory.
    pub version_dir: Cid,
    /// The new `versions` text.
    pub versions: String,
    /// Whether the project directory is HAMT-sharded.
    pub sharded: bool,
}

/// Adds `add` to the project tree rooted at `base` (`None` = a new project): the version
/// directory, `versions` and `channels`, with no level above. Used on its own for a project
/// published under its own name, and by [`add_version`] inside a distribution.
#[tracing::instrument(skip_all, fields(project = %add.project, version = %add.version))]
pub async fn add_version_to_project<S: BlockStore + ?Sized, K: BlockSink + ?Sized>(
    store: &S,
    base: Option<&Cid>,
    add: Addition,
    opts: &ImportOptions,
    sink: &mut K,
) -> Result<NewProject, PublishError> {
    check_name("project", &add.project)?;
    check_name("version", &add.version)?;
    let mut project = match base {
        Some(cid) => read_dir(store, cid, &format!("project {}", add.project)).await?,
        None => Dir::empty(),
    };
    let exists = || PublishError::VersionExists {
        project: add.project.clone(),
        version: add.version.clone(),
    };
    if project.get(&add.version).is_some() {
        return Err(exists());
    }
    let mut versions_text = match project.get(VERSIONS_FILE) {
        Some(e) => {
            let cid = e.cid;
            read_text(store, &cid, &format!("{}/{VERSIONS_FILE}", add.project)).await?
        }
        None => String::new(),
    };
    if versions_text.lines().any(|l| l.trim() == add.version) {
        return Err(exists());
    }
    if let Some(channel) = &add.channel {
        versions::valid_channel(channel).map_err(|reason| PublishError::BadName {
            what: "channel",
            name: channel.chars().take(100).collect(),
            reason: reason.to_string(),
        })?;
        if project.get(channel).is_some() || *channel == add.version {
            return Err(PublishError::ChannelConflict {
                channel: channel.clone(),
                project: add.project.clone(),
            });
        }
    }

    let version_dir = build_directory(add.entries, &Metadata::default(), opts, sink)?;
    project.set(DirEntry {
        name: add.version.clone(),
        cid: version_dir.cid,
        tsize: version_dir.tsize,
    });
    if !versions_text.is_empty() && !versions_text.ends_with('\n') {
        versions_text.push('\n');
    }
    versions_text.push_str(&add.version);
    versions_text.push('\n');
    project.set(write_text(VERSIONS_FILE, &versions_text, opts, sink)?);
    if let Some(channel) = &add.channel {
        let mut channels = match project.get(CHANNELS_FILE) {
            Some(e) => {
                let cid = e.cid;
                let text =
                    read_text(store, &cid, &format!("{}/{CHANNELS_FILE}", add.project)).await?;
                versions::parse_channels(&text)
            }
            None => Default::default(),
        };
        channels.insert(channel.clone(), add.version.clone());
        let text = versions::format_channels(&channels);
        project.set(write_text(CHANNELS_FILE, &text, opts, sink)?);
    }
    let ((project_cid, project_tsize), sharded) = project.write(opts, sink)?;
    Ok(NewProject {
        root: project_cid,
        tsize: project_tsize,
        version_dir: version_dir.cid,
        versions: versions_text,
        sharded,
    })
}

/// Replaces (or adds) the file `name` of the directory `base` (`None` = empty) with `text`;
/// the new directory's CID. Used by the hub curator for `projects.json`.
pub async fn set_text_file<S: BlockStore + ?Sized, K: BlockSink + ?Sized>(
    store: &S,
    base: Option<&Cid>,
    name: &str,
    text: &str,
    opts: &ImportOptions,
    sink: &mut K,
) -> Result<Cid, PublishError> {
    let mut dir = match base {
        Some(cid) => read_dir(store, cid, "the distribution root").await?,
        None => Dir::empty(),
    };
    dir.set(write_text(name, text, opts, sink)?);
    let ((cid, _), _) = dir.write(opts, sink)?;
    Ok(cid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::VecSink;
    use crate::store::MemStore;

    fn opts() -> ImportOptions {
        super::super::import_options()
    }

    fn file(sink: &mut VecSink, name: &str, text: &str) -> DirEntry {
        write_text(name, text, &opts(), sink).unwrap()
    }

    fn store_of(sink: VecSink) -> MemStore {
        let store = MemStore::new();
        for b in sink.blocks {
            store.insert(b);
        }
        store
    }

    async fn add(
        store: &MemStore,
        base: Option<&Cid>,
        project: &str,
        version: &str,
        channel: Option<&str>,
    ) -> Result<NewTree, PublishError> {
        let mut sink = VecSink::default();
        let entries = vec![file(&mut sink, "a.txt", &format!("{project} {version}\n"))];
        let tree = add_version(
            store,
            base,
            Addition {
                project: project.into(),
                version: version.into(),
                channel: channel.map(str::to_string),
                entries,
            },
            &opts(),
            &mut sink,
        )
        .await?;
        for b in sink.blocks {
            store.insert(b);
        }
        Ok(tree)
    }

    #[tokio::test]
    async fn versions_accumulate_and_duplicates_are_refused() {
        let store = MemStore::new();
        let t1 = add(&store, None, "hello", "v1.0.0", None).await.unwrap();
        let t2 = add(&store, Some(&t1.root), "hello", "v1.1.0", Some("beta"))
            .await
            .unwrap();
        assert_eq!(t2.versions, "v1.0.0\nv1.1.0\n");
        let t3 = add(&store, Some(&t2.root), "other", "r1", None)
            .await
            .unwrap();
        let projects: Vec<String> = walk::list_dir(&store, &t3.root)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(projects, ["hello", "other"]);
        let hello = walk::resolve_path(&store, &t3.root, &["hello"])
            .await
            .unwrap();
        let names: Vec<String> = walk::list_dir(&store, &hello)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["channels", "v1.0.0", "v1.1.0", "versions"]);
        let ch = walk::resolve_path(&store, &t3.root, &["hello", "channels"])
            .await
            .unwrap();
        let text = walk::read_range(&store, &ch, 0, 100).await.unwrap();
        assert_eq!(&text[..], b"beta v1.1.0\n");
        let again = add(&store, Some(&t3.root), "hello", "v1.0.0", None).await;
        assert!(
            matches!(again, Err(PublishError::VersionExists { .. })),
            "{again:?}"
        );
        let clash = add(&store, Some(&t3.root), "hello", "v2", Some("v1.0.0")).await;
        assert!(
            matches!(clash, Err(PublishError::ChannelConflict { .. })),
            "{clash:?}"
        );
        let bad = add(&store, Some(&t3.root), "hello", "latest", None).await;
        assert!(matches!(bad, Err(PublishError::BadName { .. })), "{bad:?}");
    }

    #[tokio::test]
    async fn a_sharded_root_stays_sharded_and_complete() {
        // A HAMT root (small fanout, forced) with 300 projects: after adding a version to one
        // of them and a new project, every entry is still found by a HAMT lookup.
        let mut sink = VecSink::default();
        let mut o = opts();
        o.hamt.fanout = 16;
        let entries: Vec<DirEntry> = (0..300)
            .map(|i| file(&mut sink, &format!("p{i:03}"), &format!("{i}")))
            .collect();
        let mut sorted = entries.clone();
        sorted.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        let root = build_hamt(&sorted, &Metadata::default(), &o, &mut sink).unwrap();
        let store = store_of(sink);
        let t = add(&store, Some(&root.cid), "newproj", "v1", None)
            .await
            .unwrap();
        assert!(t.root_sharded);
        let t = add(&store, Some(&t.root), "zzz", "v1", None).await.unwrap();
        match walk::load(&store, &t.root).await.unwrap() {
            Node::HamtShard(s) => assert_eq!(s.fanout, 16),
            other => panic!("root is no longer a HAMT: {other:?}"),
        }
        let all = walk::list_dir(&store, &t.root).await.unwrap();
        assert_eq!(all.len(), 302);
        for name in ["p000", "p150", "p299", "newproj", "zzz"] {
            assert!(
                walk::lookup(&store, &t.root, name).await.unwrap().is_some(),
                "{name}"
            );
        }
        let v = walk::resolve_path(&store, &t.root, &["newproj", "v1", "a.txt"])
            .await
            .unwrap();
        assert_eq!(
            &walk::read_range(&store, &v, 0, 100).await.unwrap()[..],
            b"newproj v1\n"
        );
    }

    #[tokio::test]
    async fn a_plain_root_stays_plain() {
        let store = MemStore::new();
        let t = add(&store, None, "a", "1", None).await.unwrap();
        assert!(!t.root_sharded);
        assert!(matches!(
            walk::load(&store, &t.root).await.unwrap(),
            Node::Directory(_)
        ));
    }
}
