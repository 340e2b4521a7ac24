//! The edge of the importer that reads the file system: adds a file, symlink or directory
//! tree like `ipfs add -r PATH` and reports each added entry in Kubo's order.
//!
//! Kubo's behaviour reproduced here (kubo `core/coreunix/add.go`, `core/commands/add.go`):
//! - entries are visited in byte order of their names; files and symlinks are reported as
//!   they are added, with paths `TOP/sub/file`; directories are reported after everything
//!   else, children before parents (post-order), the top directory last;
//! - the top entry is named by its base name (`.` → the current directory's name);
//! - dotfiles below the top are skipped unless `include_hidden` (`--hidden`); a hidden path
//!   given explicitly is added;
//! - symlinks are stored as UnixFS Symlink nodes with the target bytes as read by
//!   `readlink`, never followed (a symlink given as PATH is added as a symlink too); with
//!   `preserve_mtime` they carry an mtime, never a mode;
//! - empty directories are kept; fifos, sockets and devices are an error;
//! - with `preserve_mode`/`preserve_mtime`, every file and directory carries its own
//!   permission bits (`& 0o7777`, omitted when zero) and modification time.

use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use cid::Cid;
use prost::Message;

use super::dir::{build_directory, DirEntry};
use super::file::import_file_seekable;
use super::{BlockSink, ImportError, ImportOptions, Metadata, Mtime};
use crate::block::{codec, Block};
use crate::unixfs::pb::{encode_pb_node, Data, DataType};

/// What kind of entry an [`AddedEntry`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// A directory.
    Directory,
}

/// One `added <cid> <path>` event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddedEntry {
    /// Path as Kubo prints it (`TOP/sub/name`).
    pub path: String,
    /// Root CID of the entry.
    pub cid: Cid,
    /// Cumulative DAG size.
    pub tsize: u64,
    /// File, symlink or directory.
    pub kind: EntryKind,
}

/// Adds `path` (file, symlink or directory tree) with `opts`, writing blocks to `sink` and
/// calling `on_added` for every entry in Kubo's output order. Returns the root CID (the last
/// event).
#[tracing::instrument(skip_all, fields(path = %path.display()))]
pub fn add_path<S: BlockSink + ?Sized>(
    path: &Path,
    opts: &ImportOptions,
    sink: &mut S,
    on_added: &mut dyn FnMut(&AddedEntry),
) -> Result<Cid, ImportError> {
    let name = top_name(path)?;
    let mut walker = Walker {
        opts,
        sink,
        on_added,
        dirs: Vec::new(),
    };
    let top = walker.add_entry(path, &name)?;
    let dirs = std::mem::take(&mut walker.dirs);
    for d in &dirs {
        (walker.on_added)(d);
    }
    if top.kind != EntryKind::Directory {
        (walker.on_added)(&top);
    }
    Ok(top.cid)
}

/// Kubo names the top entry by the base name of the cleaned absolute path.
fn top_name(path: &Path) -> Result<String, ImportError> {
    let io = |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let owned: PathBuf;
    let base = match path.file_name() {
        Some(n)
            if path
                .components()
                .next_back()
                .is_some_and(|c| c.as_os_str() == n) =>
        {
            n
        }
        _ => {
            owned = fs::canonicalize(path).map_err(io)?;
            owned.file_name().unwrap_or(owned.as_os_str())
        }
    };
    base.to_str()
        .map(str::to_string)
        .ok_or_else(|| ImportError::NonUtf8Name {
            path: path.to_path_buf(),
        })
}

struct Walker<'a, S: ?Sized> {
    opts: &'a ImportOptions,
    sink: &'a mut S,
    on_added: &'a mut dyn FnMut(&AddedEntry),
    dirs: Vec<AddedEntry>,
}

impl<S: BlockSink + ?Sized> Walker<'_, S> {
    /// Adds one entry at `path` reported as `rel`. Files and symlinks below the top are
    /// reported here; directories are queued in `dirs` (post-order).
    fn add_entry(&mut self, path: &Path, rel: &str) -> Result<AddedEntry, ImportError> {
        let io = |source| ImportError::Io {
            path: path.to_path_buf(),
            source,
        };
        let md = fs::symlink_metadata(path).map_err(io)?;
        let ft = md.file_type();
        let meta = self.metadata(&md, ft.is_symlink());
        let entry = if ft.is_symlink() {
            let target = fs::read_link(path).map_err(io)?;
            let (cid, tsize) = self.symlink(target.as_os_str().as_bytes(), &meta)?;
            AddedEntry {
                path: rel.to_string(),
                cid,
                tsize,
                kind: EntryKind::Symlink,
            }
        } else if ft.is_file() {
            let file = File::open(path).map_err(io)?;
            let node = import_file_seekable(file, self.opts, &meta, self.sink)
                .map_err(|e| e.with_path(path))?;
            AddedEntry {
                path: rel.to_string(),
                cid: node.cid,
                tsize: node.tsize,
                kind: EntryKind::File,
            }
        } else if ft.is_dir() {
            let entry = self.directory(path, rel, &meta)?;
            self.dirs.push(entry.clone());
            return Ok(entry);
        } else {
            return Err(ImportError::UnsupportedFileType {
                path: path.to_path_buf(),
            });
        };
        Ok(entry)
    }

    fn directory(
        &mut self,
        path: &Path,
        rel: &str,
        meta: &Metadata,
    ) -> Result<AddedEntry, ImportError> {
        let io = |source| ImportError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut names = Vec::new();
        for item in fs::read_dir(path).map_err(io)? {
            let item = item.map_err(io)?;
            let os_name = item.file_name();
            let child = path.join(&os_name);
            let name = os_name
                .to_str()
                .ok_or(ImportError::NonUtf8Name { path: child })?
                .to_string();
            if !self.opts.include_hidden && name.starts_with('.') {
                continue;
            }
            names.push(name);
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            let child_rel = format!("{rel}/{name}");
            let added = self.add_entry(&path.join(&name), &child_rel)?;
            if added.kind != EntryKind::Directory {
                (self.on_added)(&added);
            }
            entries.push(DirEntry {
                name,
                cid: added.cid,
                tsize: added.tsize,
            });
        }
        let node = build_directory(entries, meta, self.opts, self.sink)?;
        Ok(AddedEntry {
            path: rel.to_string(),
            cid: node.cid,
            tsize: node.tsize,
            kind: EntryKind::Directory,
        })
    }

    fn symlink(&mut self, target: &[u8], meta: &Metadata) -> Result<(Cid, u64), ImportError> {
        let mut ud = Data {
            r#type: DataType::Symlink as i32,
            data: Some(bytes::Bytes::copy_from_slice(target)),
            ..Default::default()
        };
        meta.apply(&mut ud);
        let bytes = encode_pb_node(&[], Some(&ud.encode_to_vec()));
        let block = Block::encode(self.opts.cid_version, codec::DAG_PB, Bytes::from(bytes));
        let out = (*block.cid(), block.data().len() as u64);
        self.sink.put(block)?;
        Ok(out)
    }

    fn metadata(&self, md: &fs::Metadata, symlink: bool) -> Metadata {
        let mode = md.mode() & 0o7777;
        Metadata {
            mode: (self.opts.preserve_mode && !symlink && mode != 0).then_some(mode),
            mtime: self.opts.preserve_mtime.then(|| Mtime {
                seconds: md.mtime(),
                nanos: u32::try_from(md.mtime_nsec()).unwrap_or(0),
            }),
        }
    }
}
