//! The FUSE bridge: a `fuser::Filesystem` that relays the kernel's requests to a
//! [`DistView`] and its answers back. The only module that names `fuser` or errnos.
//!
//! Rule: a FUSE thread never waits on the network. Every callback that may need blocks copies
//! its arguments into owned values and moves its `Reply*` into a task on the tokio runtime;
//! a dropped reply answers EIO, so a failing task never leaves a caller hanging, and the
//! view's own deadline bounds every wait. Kernel caching: everything inside a version
//! directory is immutable (long entry/attr TTLs, `FOPEN_KEEP_CACHE`, `FOPEN_CACHE_DIR`); the
//! root, project directories and `latest` get a short TTL; no file handle needs a FLUSH at
//! close (`FOPEN_NOFLUSH`: nothing is ever written). Every write-type request answers
//! EROFS (the mount is also read-only, so the kernel refuses most before they reach us).
//! Extended attributes are the view's (`dist::xattr`): which exist for a node, and their
//! values, computed on the runtime like reads. Every reply that hands the kernel state
//! (entries, handles, data) passes the hand-over [`handover::Gate`], so a restart can stop
//! answering at a known point. Whether an open file is read through the daemon or by
//! passthrough to a whole copy in the cache is `iomode`'s.

pub mod handover;
pub mod iomode;
pub mod mount;
pub mod probe;

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, OpenAccMode, OpenFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request,
};

use crate::dist::{DistView, Inode, Kind, ViewError};
use crate::walk::WalkError;

/// Entry and attribute TTL for immutable content.
const TTL_IMMUTABLE: Duration = Duration::from_secs(24 * 3600);
/// Entry and attribute TTL for the root, project directories and `latest`.
const TTL_MUTABLE: Duration = Duration::from_secs(1);
/// `st_blksize`: large, so that tools size their buffers for streaming.
const BLKSIZE: u32 = 1024 * 1024;

/// The filesystem handed to fuser.
pub struct DistFs {
    view: Arc<DistView>,
    rt: tokio::runtime::Handle,
    uid: u32,
    gid: u32,
    gate: Arc<handover::Gate>,
    init: handover::InitRecord,
    modes: Arc<iomode::IoModes>,
}

impl DistFs {
    /// A filesystem answering from `view`, running its waits on `rt`. Files are owned by
    /// `uid`/`gid` (the mounting user).
    pub fn new(view: Arc<DistView>, rt: tokio::runtime::Handle, uid: u32, gid: u32) -> DistFs {
        DistFs {
            view,
            rt,
            uid,
            gid,
            gate: Arc::default(),
            init: Arc::default(),
            modes: Arc::default(),
        }
    }

    /// This filesystem with `modes` deciding how files are read (`iomode`: whether
    /// passthrough to whole files is allowed, and its journal).
    pub fn with_io_modes(mut self, modes: iomode::IoModes) -> DistFs {
        self.modes = Arc::new(modes);
        self
    }

    /// How open files are read (for status and a hot restart).
    pub fn io_modes(&self) -> Arc<iomode::IoModes> {
        self.modes.clone()
    }

    /// The gate every stateful reply passes (freeze it to hand the connection over).
    pub fn gate(&self) -> Arc<handover::Gate> {
        self.gate.clone()
    }

    /// Where the connection's FUSE_INIT is recorded (for a later hand-over).
    pub fn init_record(&self) -> handover::InitRecord {
        self.init.clone()
    }

    fn attr(&self, node: &Inode) -> FileAttr {
        attr_of(node, self.uid, self.gid)
    }
}

/// The kernel's view of an inode.
pub fn attr_of(node: &Inode, uid: u32, gid: u32) -> FileAttr {
    let time = node
        .mtime
        .and_then(|m| {
            let secs = u64::try_from(m.seconds).ok()?;
            UNIX_EPOCH.checked_add(Duration::new(secs, m.nanos))
        })
        .unwrap_or(UNIX_EPOCH);
    let kind = match node.kind {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink | Kind::Latest(_) => FileType::Symlink,
    };
    FileAttr {
        ino: INodeNo(node.ino),
        size: node.size,
        blocks: node.size.div_ceil(512),
        atime: time,
        mtime: time,
        ctime: time,
        crtime: time,
        kind,
        perm: node.perm,
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid,
        gid,
        rdev: 0,
        blksize: BLKSIZE,
        flags: 0,
    }
}

fn ttl(node: &Inode) -> Duration {
    if node.is_immutable() {
        TTL_IMMUTABLE
    } else {
        TTL_MUTABLE
    }
}

/// What distfs asks of the kernel at FUSE_INIT (shared with the supervisor's mount, which
/// answers the INIT before a daemon serves the connection). Passthrough is asked for
/// whenever the kernel offers it (whether a daemon uses it is its own setting); returns
/// whether it was.
pub(crate) fn configure(config: &mut KernelConfig) -> bool {
    let wanted = InitFlags::FUSE_PARALLEL_DIROPS
        | InitFlags::FUSE_CACHE_SYMLINKS
        | InitFlags::FUSE_DO_READDIRPLUS
        | InitFlags::FUSE_READDIRPLUS_AUTO;
    if let Err(missing) = config.add_capabilities(wanted) {
        tracing::debug!("kernel lacks capabilities {missing:?}");
    }
    let _ = config.set_max_background(64);
    let _ = config.set_congestion_threshold(48);
    let _ = config.set_max_readahead(1024 * 1024);
    // Depth 1: backing files on a plain filesystem, and /dist itself may still be a layer
    // of an overlayfs.
    config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
        && config.set_max_stack_depth(1).is_ok()
}

/// The one errno table.
pub fn errno(err: &ViewError) -> Errno {
    match err {
        ViewError::NotFound { .. } | ViewError::NoSuchInode(_) => Errno::ENOENT,
        ViewError::NotADirectory { .. } => Errno::ENOTDIR,
        ViewError::NotAFile { .. } => Errno::EISDIR,
        ViewError::NotASymlink { .. } => Errno::EINVAL,
        ViewError::Timeout { .. } | ViewError::Project { .. } => Errno::EIO,
        ViewError::Walk(e) if matches!(**e, WalkError::NotFound { .. }) => Errno::ENOENT,
        ViewError::Walk(_) => Errno::EIO,
    }
}

fn log_err(op: &'static str, err: &ViewError) -> Errno {
    let code = errno(err);
    if code == Errno::EIO {
        tracing::warn!(op, "{err}");
    } else {
        tracing::debug!(op, "{err}");
    }
    code
}

fn name_of(name: &OsStr) -> Option<String> {
    name.to_str().map(str::to_string)
}

impl fuser::Filesystem for DistFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = self.init.set(handover::KernelInit::of(config));
        let passthrough = configure(config);
        self.modes.negotiated(passthrough);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(name) = name_of(name) else {
            return reply.error(Errno::ENOENT);
        };
        // A name of a directory already listed (`ls -l`, `find`): no task, no wake-up.
        if let Some(result) = self.view.lookup_listed(parent.0, &name) {
            return self.gate.answer(reply, |reply| match result {
                Ok(node) => reply.entry(&ttl(&node), &self.attr(&node), Generation(0)),
                Err(e) => reply.error(log_err("lookup", &e)),
            });
        }
        let (view, uid, gid, gate) = (self.view.clone(), self.uid, self.gid, self.gate.clone());
        self.rt.spawn(async move {
            let result = view.lookup(parent.0, &name).await;
            gate.answer(reply, |reply| match result {
                Ok(node) => reply.entry(&ttl(&node), &attr_of(&node, uid, gid), Generation(0)),
                Err(e) => reply.error(log_err("lookup", &e)),
            });
        });
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.gate
            .answer(reply, |reply| match self.view.inode(ino.0) {
                Ok(node) => reply.attr(&ttl(&node), &self.attr(&node)),
                Err(e) => reply.error(errno(&e)),
            });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let (view, gate) = (self.view.clone(), self.gate.clone());
        self.rt.spawn(async move {
            let result = view.readlink(ino.0).await;
            gate.answer(reply, |reply| match result {
                Ok(target) => reply.data(&target),
                Err(e) => reply.error(log_err("readlink", &e)),
            });
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        self.gate
            .answer(reply, |reply| match self.view.inode(ino.0) {
                Ok(node) if node.kind == Kind::File => {
                    // Nothing is ever written, so a close needs no FLUSH round trip.
                    let cache = if node.is_immutable() {
                        FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH
                    } else {
                        FopenFlags::FOPEN_NOFLUSH
                    };
                    let fh = FileHandle(self.view.opened(ino.0));
                    self.modes
                        .open(ino.0, fh, cache, reply, || self.view.whole_file(&node));
                }
                Ok(_) => reply.error(Errno::EISDIR),
                Err(e) => reply.error(errno(&e)),
            });
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let (view, gate) = (self.view.clone(), self.gate.clone());
        self.rt.spawn(async move {
            let result = view.read_handle(ino.0, fh.0, offset, size).await;
            gate.answer(reply, |reply| match result {
                Ok(bytes) => reply.data(&bytes),
                Err(e) => reply.error(log_err("read", &e)),
            });
        });
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // Inside the runtime: releasing the handle's eviction guard may start an eviction.
        // Frozen (handing over), the handle stays for the next process, which gets the
        // release again.
        // The last handle that read through the daemon offers the file for a whole copy,
        // which later opens read by passthrough.
        self.gate.answer(reply, |reply| {
            let view = self.view.clone();
            let offer = self.modes.release(ino.0);
            self.rt.spawn(async move {
                view.released(fh.0);
                if offer {
                    view.offer_whole(ino.0);
                }
            });
            reply.ok();
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.gate
            .answer(reply, |reply| match self.view.inode(ino.0) {
                Ok(node) if node.kind == Kind::Dir => {
                    let cache = if node.is_immutable() {
                        FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE
                    } else {
                        FopenFlags::empty()
                    };
                    reply.opened(FileHandle(0), cache);
                }
                Ok(_) => reply.error(Errno::ENOTDIR),
                Err(e) => reply.error(errno(&e)),
            });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        let (view, gate) = (self.view.clone(), self.gate.clone());
        self.rt.spawn(async move {
            let listed = listed_dir(&view, ino.0).await;
            gate.answer(reply, |reply| fill_dir(reply, listed, offset));
        });
    }

    /// READDIRPLUS (asked for at INIT): the entries with their attributes, so that `ls -l`
    /// and `find` need no LOOKUP per name.
    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        let (view, gate, uid, gid) = (self.view.clone(), self.gate.clone(), self.uid, self.gid);
        self.rt.spawn(async move {
            let listed = listed_dir(&view, ino.0).await;
            gate.answer(reply, |reply| {
                fill_dir_plus(reply, listed, offset, uid, gid)
            });
        });
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let files = self.view.inode_count() as u64;
        reply.statfs(0, 0, 0, files, 0, BLKSIZE, 255, BLKSIZE);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let Some(name) = name_of(name) else {
            return reply.error(Errno::NO_XATTR);
        };
        // Ours are all `user.`; `ls -l` asks every file for `security.selinux` and
        // `system.posix_acl_access`: answered here, without a task.
        if !name.starts_with("user.") {
            return reply.error(Errno::NO_XATTR);
        }
        // `user.distfs.cached` walks the file's DAG through the store: off this thread.
        let (view, gate) = (self.view.clone(), self.gate.clone());
        self.rt.spawn(async move {
            let result = view.xattr(ino.0, &name).await;
            gate.answer(reply, |reply| match result {
                Ok(Some(value)) => xattr_reply(reply, size, &value),
                Ok(None) => reply.error(Errno::NO_XATTR),
                Err(e) => reply.error(log_err("getxattr", &e)),
            });
        });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.gate
            .answer(reply, |reply| match self.view.xattr_names(ino.0) {
                Ok(names) => {
                    let list: Vec<u8> = names
                        .iter()
                        .flat_map(|n| n.as_bytes().iter().chain(b"\0"))
                        .copied()
                        .collect();
                    xattr_reply(reply, size, &list);
                }
                Err(e) => reply.error(errno(&e)),
            });
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        self.gate
            .answer(reply, |reply| match self.view.inode(ino.0) {
                Ok(_) if mask.contains(AccessFlags::W_OK) => reply.error(Errno::EROFS),
                Ok(_) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            });
    }

    // Every write-type operation: read-only filesystem.

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(Errno::EROFS);
    }
}

/// A READDIR answer from the directory and its listing (or why there is none).
fn fill_dir(
    mut reply: ReplyDirectory,
    listed: Result<(Arc<Inode>, Arc<Vec<crate::dist::Entry>>), ViewError>,
    offset: u64,
) {
    let (dir, entries) = match listed {
        Ok(l) => l,
        Err(e @ ViewError::NoSuchInode(_)) => return reply.error(errno(&e)),
        Err(e) => return reply.error(log_err("readdir", &e)),
    };
    // Offsets: 1 = ".", 2 = "..", 3.. = entries; each names the *next* position.
    let dots = [(dir.ino, "."), (dir.parent, "..")];
    let all = dots
        .iter()
        .map(|(i, n)| (*i, FileType::Directory, *n))
        .chain(entries.iter().map(|e| {
            let kind = attr_of(&e.inode, 0, 0).kind;
            (e.inode.ino, kind, e.name.as_str())
        }));
    for (pos, (ino, kind, name)) in all.enumerate().skip(offset as usize) {
        if reply.add(INodeNo(ino), pos as u64 + 1, kind, name) {
            break;
        }
    }
    reply.ok();
}

/// The directory `ino` and its entries, for READDIR and READDIRPLUS.
async fn listed_dir(
    view: &DistView,
    ino: u64,
) -> Result<(Arc<Inode>, Arc<Vec<crate::dist::Entry>>), ViewError> {
    let dir = view.inode(ino)?;
    Ok((dir, view.readdir(ino).await?))
}

/// [`fill_dir`] with each entry's attributes and entry TTL. The kernel makes no dentry for
/// `.` and `..` (their attributes are ignored), and takes one lookup reference per other
/// entry, as a LOOKUP would.
fn fill_dir_plus(
    mut reply: ReplyDirectoryPlus,
    listed: Result<(Arc<Inode>, Arc<Vec<crate::dist::Entry>>), ViewError>,
    offset: u64,
    uid: u32,
    gid: u32,
) {
    let (dir, entries) = match listed {
        Ok(l) => l,
        Err(e @ ViewError::NoSuchInode(_)) => return reply.error(errno(&e)),
        Err(e) => return reply.error(log_err("readdirplus", &e)),
    };
    let all = [".", ".."]
        .into_iter()
        .map(|n| (&dir, n))
        .chain(entries.iter().map(|e| (&e.inode, e.name.as_str())));
    for (pos, (node, name)) in all.enumerate().skip(offset as usize) {
        let attr = attr_of(node, uid, gid);
        let ino = if pos == 1 { dir.parent } else { node.ino };
        if reply.add(
            INodeNo(ino),
            pos as u64 + 1,
            name,
            &ttl(node),
            &attr,
            Generation(0),
        ) {
            break;
        }
    }
    reply.ok();
}

/// xattr(7) replies: a size probe (`size` 0) gets the length, a buffer too small ERANGE.
fn xattr_reply(reply: ReplyXattr, size: u32, value: &[u8]) {
    let len = value.len() as u32;
    if size == 0 {
        reply.size(len);
    } else if size < len {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}
