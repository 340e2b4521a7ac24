//! Hot restart (`distfs restart`): the running daemon hands its live FUSE connection and its
//! state to a new process of (usually) a new binary, and exits without unmounting.
//!
//! The conversation, over a Unix socket pair whose other end the new process inherits (its
//! number in `DISTFS_HANDOVER_FD`; it is started with the old process's own arguments, so it
//! reads the same, possibly edited, config):
//!
//! 1. new → old: `{"hello":PID}` once its config is read and valid.
//! 2. old: freezes its replies (`fs::handover::Gate`), takes the [`Snapshot`] (inode table,
//!    open handles and their passthrough backing ids, proved whole copies, root, name state,
//!    the connection's INIT values) and sends it framed, with
//!    the FUSE fd and the cache-lock fd attached (`SCM_RIGHTS`).
//! 3. new: opens the cache, rebuilds the view from the snapshot, makes its FUSE session on
//!    the handed fd (`fs::handover::adopt`, which reads nothing yet) and answers
//!    `{"ready":true}` (or `{"failed":"why"}`).
//! 4. old: flushes its pending cache writes, answers the client and exits at once (no
//!    destructor runs, so nothing unmounts and the control socket file stays). Its end of
//!    the socket stays open until the exit itself closes it.
//! 5. new: sees the socket close (the old process is gone, with every thread that could
//!    still read the connection; if it takes too long, it is killed first), asks the kernel
//!    to re-deliver what the old process read but did not answer (FUSE_NOTIFY_RESEND), and
//!    only then starts reading the connection (so no request reaches it twice), then binds
//!    the control socket. Until then requests wait in the kernel's queue.
//!
//! If the new process fails or goes silent before step 4, the old one kills it, thaws and
//! has the kernel re-deliver what it held back: the mount carries on as before.
//!
//! What does not survive: in-memory counters (cache hit/miss statistics, fetch and source
//! health scores, status uptime), the decoded-node and listing caches (refilled on use), the
//! cold-start bookkeeping of which files were looked up where, and a metrics listener bound
//! to a fixed port that the new process cannot bind (logged).

use std::ffi::OsString;
use std::io::{BufRead, BufReader, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::dist::inode::InodeSnapshot;
use crate::dist::DistView;
use crate::fs::handover::{self, Gate, InitRecord, KernelInit};
use crate::fs::iomode::{IoModes, ModeRecord};
use crate::store::whole::WholeFiles;

/// The environment variable naming the inherited hand-over socket.
pub const HANDOVER_ENV: &str = "DISTFS_HANDOVER_FD";
/// How long the new process may take to say hello (start and read its config).
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the new process may take from the snapshot to serving (open the cache).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the new process waits for the old one to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest snapshot accepted.
const MAX_SNAPSHOT: usize = 256 * 1024 * 1024;

/// Why a hand-over failed.
#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    /// Starting the new process failed.
    #[error("starting {}: {source}", binary.display())]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The conversation broke.
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The other side said something that is not the protocol.
    #[error("hand-over protocol: {0}")]
    Protocol(String),
    /// The new process reported a failure.
    #[error("the new process failed to take over: {0}")]
    Failed(String),
    /// The FUSE side of the hand-over failed.
    #[error(transparent)]
    Fuse(#[from] handover::HandoverError),
    /// A hand-over is already running.
    #[error("a restart is already in progress")]
    Busy,
    /// The connection's INIT was never recorded (the mount did not finish its handshake).
    #[error("the FUSE connection's INIT was not recorded; cannot hand it over")]
    NoInit,
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> RestartError {
    move |source| RestartError::Io { what, source }
}

/// The state the kernel still refers to, carried to the new process.
#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot {
    /// The old process's pid.
    pub old_pid: u32,
    /// The mount point (the new process must have the same).
    pub mountpoint: PathBuf,
    /// The cache dir (the new process must have the same).
    pub cache_dir: PathBuf,
    /// What the kernel offered at the connection's INIT.
    pub init: KernelInit,
    /// The root directory being served.
    pub root: String,
    /// The inode table.
    pub inodes: InodeSnapshot,
    /// The next file handle number.
    pub next_fh: u64,
    /// Handles open now.
    pub open_fhs: Vec<u64>,
    /// How the inodes with open handles are read (passthrough backing ids stay registered
    /// with the kernel across the hand-over).
    #[serde(default)]
    pub io_modes: Vec<ModeRecord>,
    /// The whole copies the old process proved (hex index keys, `store::whole`).
    #[serde(default)]
    pub whole_proved: Vec<String>,
    /// The followed name's last answer, if the root is a name.
    pub name: Option<NameSnapshot>,
}

/// What is known about a followed name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NameSnapshot {
    /// The record's sequence number.
    pub sequence: Option<u64>,
    /// Where it came from.
    pub source: String,
    /// Its publisher key.
    pub publisher: Option<String>,
}

/// The resolution a taken-over mount starts from: the snapshot's root, as if just resolved
/// with the shortest TTL (so a followed name is checked again soon).
pub fn resolved_of(
    snapshot: &Snapshot,
    ttl: Duration,
) -> Result<crate::name::Resolved, RestartError> {
    let cid = snapshot
        .root
        .parse()
        .map_err(|_| RestartError::Protocol(format!("bad root CID {:?}", snapshot.root)))?;
    let name = snapshot.name.clone();
    Ok(crate::name::Resolved {
        cid,
        ttl,
        sequence: name.as_ref().and_then(|n| n.sequence),
        publisher: name.as_ref().and_then(|n| n.publisher.clone()),
        source: name.map_or_else(|| "fixed".to_owned(), |n| n.source),
        refused: Vec::new(),
    })
}

/// One line of the new process's side of the conversation.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Said {
    Hello(u32),
    Ready(bool),
    Failed(String),
}

fn say(stream: &mut UnixStream, said: &Said) -> Result<(), RestartError> {
    let mut line = serde_json::to_vec(said).map_err(|e| RestartError::Protocol(e.to_string()))?;
    line.push(b'\n');
    stream
        .write_all(&line)
        .map_err(io("writing to the other process"))
}

fn hear(reader: &mut BufReader<UnixStream>) -> Result<Option<Said>, RestartError> {
    let mut line = String::new();
    let n = reader
        .by_ref()
        .take(64 * 1024)
        .read_line(&mut line)
        .map_err(io("reading from the new process"))?;
    if n == 0 {
        return Ok(None);
    }
    serde_json::from_str(line.trim())
        .map(Some)
        .map_err(|e| RestartError::Protocol(format!("{e}: {}", line.trim())))
}

/// What the old process needs to hand its mount over (set once the mount is up).
pub(crate) struct Handover {
    pub(crate) gate: Arc<Gate>,
    pub(crate) init: InitRecord,
    pub(crate) io_modes: Arc<IoModes>,
    pub(crate) whole: Option<Arc<WholeFiles>>,
    pub(crate) fuse: OwnedFd,
    pub(crate) lock: OwnedFd,
    pub(crate) view: Arc<DistView>,
    pub(crate) mountpoint: PathBuf,
    pub(crate) cache_dir: PathBuf,
    pub(crate) name: Option<Arc<super::follow::NameCell>>,
    pub(crate) publisher: Option<String>,
    /// Held while a hand-over runs (only one at a time).
    pub(crate) busy: Mutex<()>,
}

/// The binary the new process runs: `binary`, else this process's executable as it is named
/// now (after an upgrade replaced the file, the kernel calls the old one "... (deleted)";
/// the path then names the new file).
pub fn successor_binary(binary: Option<PathBuf>) -> Result<PathBuf, RestartError> {
    if let Some(b) = binary {
        return Ok(b);
    }
    let exe = std::fs::read_link("/proc/self/exe").map_err(io("reading /proc/self/exe"))?;
    let text = exe.as_os_str().to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(path) => PathBuf::from(path),
        None => exe,
    })
}

impl Handover {
    /// Runs the old side of the conversation (blocking): on success returns the new pid; the
    /// caller answers its client and exits at once. On failure the mount is serving again
    /// from this process.
    pub(crate) fn run(&self, binary: &Path, flush: &dyn Fn()) -> Result<u32, RestartError> {
        let Ok(_busy) = self.busy.try_lock() else {
            return Err(RestartError::Busy);
        };
        let init = *self.init.get().ok_or(RestartError::NoInit)?;
        let (ours, theirs) = UnixStream::pair().map_err(io("socketpair"))?;
        let mut child = spawn_successor(binary, &theirs)?;
        drop(theirs);
        // The new process resends what this one held back when it reads EOF on the socket,
        // so the socket must stay open until no thread here can read the connection any
        // more: until this process has exited, which closes it (it is close-on-exec, so no
        // child keeps it). Closing it when the conversation ends left a window (answering
        // the client, exiting) in which this process read requests after the resend and
        // forgot them for good: a READ lost, its reader stuck in D state.
        let held_open = ours.try_clone().map_err(io("socket clone"))?;
        let result = self.converse(ours, init, &mut child, flush);
        if result.is_ok() {
            let _ = held_open.into_raw_fd();
        } else if self.gate.is_frozen() {
            // The new process may have read requests: it must be gone before they are resent.
            let _ = child.kill();
            let _ = child.wait();
            self.gate.thaw();
            if let Err(e) = handover::notify_resend(&self.fuse) {
                tracing::warn!("re-delivering held requests failed: {e}");
            }
        } else {
            let _ = child.kill();
            let _ = child.wait();
        }
        result
    }

    fn converse(
        &self,
        ours: UnixStream,
        init: KernelInit,
        child: &mut Child,
        flush: &dyn Fn(),
    ) -> Result<u32, RestartError> {
        ours.set_read_timeout(Some(HELLO_TIMEOUT))
            .map_err(io("socket timeout"))?;
        let mut writer = ours.try_clone().map_err(io("socket clone"))?;
        let mut reader = BufReader::new(ours);
        let pid = match hear(&mut reader)? {
            Some(Said::Hello(pid)) => pid,
            Some(Said::Failed(why)) => return Err(RestartError::Failed(why)),
            Some(other) => return Err(RestartError::Protocol(format!("{other:?} before hello"))),
            None => {
                let status = child.try_wait().ok().flatten();
                return Err(RestartError::Failed(format!(
                    "it exited before taking over ({}); see its error in the daemon's log",
                    status.map_or("still running".to_owned(), |s| s.to_string())
                )));
            }
        };
        let started = Instant::now();
        self.gate.freeze();
        let (next_fh, open_fhs) = self.view.handle_snapshot();
        let snapshot = Snapshot {
            old_pid: std::process::id(),
            mountpoint: self.mountpoint.clone(),
            cache_dir: self.cache_dir.clone(),
            init,
            root: self.view.root_cid().to_string(),
            inodes: self.view.inode_snapshot(),
            next_fh,
            open_fhs,
            io_modes: self.io_modes.snapshot(),
            whole_proved: self
                .whole
                .as_ref()
                .map(|w| w.proved_snapshot())
                .unwrap_or_default(),
            name: self.name.as_ref().map(|cell| {
                let state = cell.get();
                NameSnapshot {
                    sequence: state.sequence,
                    source: state.source,
                    publisher: self.publisher.clone(),
                }
            }),
        };
        let body =
            serde_json::to_vec(&snapshot).map_err(|e| RestartError::Protocol(e.to_string()))?;
        send_with_fds(
            &writer,
            &body,
            &[self.fuse.as_raw_fd(), self.lock.as_raw_fd()],
        )?;
        writer
            .write_all(&body)
            .map_err(io("sending the snapshot"))?;
        reader
            .get_ref()
            .set_read_timeout(Some(READY_TIMEOUT))
            .map_err(io("socket timeout"))?;
        match hear(&mut reader)? {
            Some(Said::Ready(true)) => {}
            Some(Said::Failed(why)) => return Err(RestartError::Failed(why)),
            Some(other) => {
                return Err(RestartError::Protocol(format!(
                    "{other:?} instead of ready"
                )))
            }
            None => {
                return Err(RestartError::Failed(
                    "it exited before serving; see its error in the daemon's log".to_owned(),
                ))
            }
        }
        flush();
        tracing::info!(
            new_pid = pid,
            inodes = snapshot.inodes.inodes.len(),
            open_files = snapshot.open_fhs.len(),
            frozen_ms = started.elapsed().as_millis() as u64,
            "handed the mount over; exiting"
        );
        Ok(pid)
    }
}

/// Starts `binary` with this process's arguments and the hand-over socket `theirs` inherited.
fn spawn_successor(binary: &Path, theirs: &UnixStream) -> Result<Child, RestartError> {
    let fd = theirs.as_raw_fd();
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let mut cmd = Command::new(binary);
    cmd.args(&args)
        .env(HANDOVER_ENV, fd.to_string())
        .stdin(Stdio::null());
    // SAFETY: between fork and exec only fcntl, which is async-signal-safe, runs; it clears
    // close-on-exec on the one fd the new process is told about.
    unsafe {
        cmd.pre_exec(move || {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|source| RestartError::Spawn {
        binary: binary.to_path_buf(),
        source,
    })
}

/// Sends the body's length (4 bytes, big-endian) with `fds` attached.
fn send_with_fds(stream: &UnixStream, body: &[u8], fds: &[RawFd]) -> Result<(), RestartError> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let len = u32::try_from(body.len())
        .map_err(|_| RestartError::Protocol("snapshot too large".to_owned()))?
        .to_be_bytes();
    let iov = [IoSlice::new(&len)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let sent =
        sendmsg::<()>(stream.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None).map_err(|e| {
            RestartError::Io {
                what: "sending the FUSE fd",
                source: e.into(),
            }
        })?;
    if sent != len.len() {
        return Err(RestartError::Protocol(
            "short send of the frame header".to_owned(),
        ));
    }
    Ok(())
}

/// Receives a frame header and its fds, then the body.
fn recv_with_fds(stream: &mut UnixStream) -> Result<(Vec<u8>, Vec<OwnedFd>), RestartError> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut len = [0u8; 4];
    let mut fds = Vec::new();
    let got = {
        let mut iov = [IoSliceMut::new(&mut len)];
        let mut space = nix::cmsg_space!([RawFd; 4]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| RestartError::Io {
            what: "receiving the FUSE fd",
            source: e.into(),
        })?;
        for c in msg.cmsgs().map_err(|e| RestartError::Io {
            what: "reading the attached fds",
            source: e.into(),
        })? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: the kernel just installed these fds in this process for us.
                fds.extend(
                    raw.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        msg.bytes
    };
    if got != len.len() {
        stream
            .read_exact(&mut len[got..])
            .map_err(io("reading the frame header"))?;
    }
    let n = u32::from_be_bytes(len) as usize;
    if n > MAX_SNAPSHOT {
        return Err(RestartError::Protocol(format!("snapshot of {n} bytes")));
    }
    let mut body = vec![0u8; n];
    stream
        .read_exact(&mut body)
        .map_err(io("reading the snapshot"))?;
    Ok((body, fds))
}

/// The new process's side, from the inherited socket to the snapshot. Dropped before
/// [`Incoming::finish`] (this process failed to start), it tells the old process, which
/// then carries on serving.
pub struct Incoming {
    stream: UnixStream,
    /// What the old process handed over.
    pub snapshot: Snapshot,
    /// The live FUSE connection.
    pub fuse: OwnedFd,
    /// The open, locked cache lock file.
    pub lock: std::fs::File,
    done: bool,
}

/// The hand-over socket this process was started with, if it was started by a restart.
pub fn inherited() -> Option<RawFd> {
    std::env::var(HANDOVER_ENV).ok()?.parse().ok()
}

impl Incoming {
    /// Says hello on the inherited socket `fd` and receives the snapshot and fds.
    pub fn receive(fd: RawFd) -> Result<Incoming, RestartError> {
        // SAFETY: the old process passed this fd for us alone; nothing else in this process
        // uses it (its number is read once, here).
        let mut stream = unsafe { UnixStream::from_raw_fd(fd) };
        // Not inherited by anything this process starts.
        // SAFETY: fcntl on an fd we own.
        unsafe {
            libc::fcntl(stream.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC);
        }
        stream
            .set_read_timeout(Some(READY_TIMEOUT))
            .map_err(io("socket timeout"))?;
        say(&mut stream, &Said::Hello(std::process::id()))?;
        let (body, mut fds) = recv_with_fds(&mut stream)?;
        if fds.len() != 2 {
            return Err(RestartError::Protocol(format!(
                "expected 2 fds (FUSE, lock), got {}",
                fds.len()
            )));
        }
        let snapshot: Snapshot =
            serde_json::from_slice(&body).map_err(|e| RestartError::Protocol(e.to_string()))?;
        let lock = std::fs::File::from(fds.remove(1));
        let fuse = fds.remove(0);
        Ok(Incoming {
            stream,
            snapshot,
            fuse,
            lock,
            done: false,
        })
    }

    /// Tells the old process this one serves, waits (bounded) for it to exit, and has the
    /// kernel re-deliver what it read but never answered.
    pub fn finish(mut self) -> Result<(), RestartError> {
        self.done = true;
        // systemd must know the new main process before the old one exits.
        super::notify::sd_notify(&format!("MAINPID={}", std::process::id()));
        say(&mut self.stream, &Said::Ready(true))?;
        self.stream
            .set_read_timeout(Some(EXIT_TIMEOUT))
            .map_err(io("socket timeout"))?;
        let started = Instant::now();
        // EOF once every thread of the old process is gone (it holds its end until exit).
        if let Err(e) = self.wait_for_eof() {
            // It is frozen and of no further use; until it is gone, a request it reads after
            // the resend would never be answered.
            tracing::warn!(
                old_pid = self.snapshot.old_pid,
                "the old process did not exit in time ({e}); killing it"
            );
            // SAFETY: kill has no memory preconditions; the pid is still the old process's,
            // which cannot have been reaped while its end of the socket is open.
            unsafe {
                libc::kill(self.snapshot.old_pid as libc::pid_t, libc::SIGKILL);
            }
            self.wait_for_eof()?;
        }
        tracing::info!(
            old_pid = self.snapshot.old_pid,
            waited_ms = started.elapsed().as_millis() as u64,
            "the old process has exited"
        );
        handover::notify_resend(&self.fuse)?;
        Ok(())
    }

    /// Reads the socket to its end (bounded by the read timeout set on it).
    fn wait_for_eof(&mut self) -> Result<(), RestartError> {
        let mut rest = Vec::new();
        self.stream
            .read_to_end(&mut rest)
            .map(drop)
            .map_err(io("waiting for the old process to exit"))
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if !self.done {
            let why = "it stopped while starting; see its error in the daemon's log";
            let _ = say(&mut self.stream, &Said::Failed(why.to_owned()));
        }
    }
}
