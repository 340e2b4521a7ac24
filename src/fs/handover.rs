//! Handing a live FUSE connection to another process (hot restart), on the fuser side.
//!
//! Three pieces:
//! - [`Gate`]: every stateful reply of [`DistFs`] passes through it. Once the old process
//!   freezes it, requests are still read but their replies are *forgotten*, not sent (a
//!   dropped fuser reply would answer EIO): the kernel keeps them as "being processed", and
//!   the new process has the kernel re-deliver them with [`notify_resend`]. Freezing waits for
//!   replies being sent, so every reply the kernel got refers to state taken by the snapshot.
//! - [`adopt`]: fuser 0.18's `Session::from_fd` always waits for a fresh FUSE_INIT, which a
//!   live connection never sends again. So fuser is first given one end of a
//!   `AF_UNIX` datagram pair (message boundaries like `/dev/fuse`), into which a synthetic
//!   FUSE_INIT carrying the connection's recorded ABI version, capabilities and readahead
//!   ([`KernelInit`]) is written; fuser runs its handshake against it and its INIT reply is
//!   read back and dropped. Then `dup2` puts the real connection's fd at the number fuser
//!   holds, so the session reads and answers `/dev/fuse` directly: no relay, no copy, and its
//!   notifier (root-swap invalidation) writes to the real connection too.
//! - [`notify_resend`]: FUSE_NOTIFY_RESEND (kernel ≥ 6.9) moves every request read but not
//!   answered back to the pending queue.
//!
//! The kernel side of the connection was negotiated once, at mount; nothing fuser does after
//! its handshake depends on what it negotiated, so the synthetic INIT only has to pass
//! fuser's checks. The one exception is passthrough: whether the new process may use it follows
//! from the recorded INIT too (it was asked for at mount whenever the kernel offered it), and
//! a connection an older daemon negotiated without it refuses the first backing file, which
//! turns passthrough off (`iomode`). Backing ids of open files are carried in the snapshot.

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, OnceLock, RwLock};

use fuser::{Config, KernelConfig, Session, SessionACL};
use serde::{Deserialize, Serialize};

use super::DistFs;

/// FUSE_INIT's opcode.
const FUSE_INIT: u32 = 26;
/// The FUSE_INIT_EXT flag: `flags2` carries the upper 32 capability bits.
const FUSE_INIT_EXT: u64 = 1 << 30;
/// The notification code of FUSE_NOTIFY_RESEND.
const FUSE_NOTIFY_RESEND: i32 = 7;
/// The unique id of the synthetic INIT (any value; its reply is dropped).
const SYNTHETIC_UNIQUE: u64 = 1;

/// Why a hand-over step failed.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    /// A socket or fd operation failed.
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// fuser's handshake against the synthetic INIT failed.
    #[error("fuser refused the synthetic FUSE_INIT: {0}")]
    Handshake(#[source] io::Error),
    /// fuser's INIT reply was an error.
    #[error("fuser answered the synthetic FUSE_INIT with error {0}")]
    InitRefused(i32),
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> HandoverError {
    move |source| HandoverError::Io { what, source }
}

/// What the kernel offered in the connection's FUSE_INIT, recorded by [`DistFs`]'s `init`
/// and carried in the hand-over snapshot so the next process's synthetic INIT matches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelInit {
    /// ABI major version.
    pub major: u32,
    /// ABI minor version.
    pub minor: u32,
    /// The kernel's capability bits (both words).
    pub flags: u64,
    /// The largest readahead the kernel allows.
    pub max_readahead: u32,
}

impl KernelInit {
    /// What `config` (the kernel's INIT, before our changes) offers.
    pub fn of(config: &mut KernelConfig) -> KernelInit {
        let abi = config.kernel_abi();
        // Asking for the impossible returns the kernel's limit without changing anything.
        let max_readahead = match config.set_max_readahead(u32::MAX) {
            Ok(previous) => previous,
            Err(limit) => limit,
        };
        KernelInit {
            major: abi.0,
            minor: abi.1,
            flags: config.capabilities().bits(),
            max_readahead,
        }
    }

    /// The FUSE_INIT request bytes (`fuse_in_header` + `fuse_init_in`) a kernel with these
    /// values sends, from user `uid`/`gid`.
    pub fn request(&self, uid: u32, gid: u32) -> Vec<u8> {
        let mut flags = self.flags & !FUSE_INIT_EXT;
        let flags2 = (flags >> 32) as u32;
        if flags2 != 0 {
            flags |= FUSE_INIT_EXT;
        }
        let mut body = Vec::with_capacity(64);
        for word in [
            self.major,
            self.minor,
            self.max_readahead,
            flags as u32,
            flags2,
        ] {
            body.extend_from_slice(&word.to_ne_bytes());
        }
        body.resize(64, 0); // fuse_init_in's unused[11]
        let len = 40 + body.len() as u32;
        let mut out = Vec::with_capacity(len as usize);
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&FUSE_INIT.to_ne_bytes());
        out.extend_from_slice(&SYNTHETIC_UNIQUE.to_ne_bytes());
        out.extend_from_slice(&0u64.to_ne_bytes()); // nodeid
        out.extend_from_slice(&uid.to_ne_bytes());
        out.extend_from_slice(&gid.to_ne_bytes());
        out.extend_from_slice(&std::process::id().to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes()); // padding
        out.extend_from_slice(&body);
        out
    }
}

/// Where [`DistFs`] records the connection's INIT (set once, at the real handshake).
pub type InitRecord = Arc<OnceLock<KernelInit>>;

/// The freeze switch between a process's replies and the kernel (see the module doc).
///
/// A `std::sync::RwLock`: a reply holds it shared only while checking the switch and writing
/// one message to the connection; [`Gate::freeze`] takes it exclusively for as long as it
/// takes to flip the switch. No `.await` while held.
#[derive(Debug, Default)]
pub struct Gate {
    frozen: RwLock<bool>,
}

impl Gate {
    /// Sends `reply` with `send`, or, when frozen, forgets it unsent so the kernel keeps the
    /// request for a resend.
    pub fn answer<R>(&self, reply: R, send: impl FnOnce(R)) {
        let frozen = self.frozen.read().unwrap_or_else(|e| e.into_inner());
        if *frozen {
            tracing::debug!("frozen: reply held back for a resend");
            std::mem::forget(reply);
        } else {
            send(reply);
        }
    }

    /// Stops all replies; returns once no reply is being sent.
    pub fn freeze(&self) {
        *self.frozen.write().unwrap_or_else(|e| e.into_inner()) = true;
        tracing::debug!("replies frozen");
    }

    /// Lets replies through again (a hand-over that failed).
    pub fn thaw(&self) {
        *self.frozen.write().unwrap_or_else(|e| e.into_inner()) = false;
    }

    /// Whether replies are held back.
    pub fn is_frozen(&self) -> bool {
        *self.frozen.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// Asks the kernel to queue again every request of the connection `fuse` that was read but
/// not answered (FUSE_NOTIFY_RESEND).
pub fn notify_resend(fuse: &impl AsFd) -> Result<(), HandoverError> {
    let mut msg = Vec::with_capacity(16);
    msg.extend_from_slice(&16u32.to_ne_bytes());
    msg.extend_from_slice(&FUSE_NOTIFY_RESEND.to_ne_bytes());
    msg.extend_from_slice(&0u64.to_ne_bytes());
    // One write(2) per message on /dev/fuse; a borrowed File does not close the fd.
    let fd = fuse.as_fd().try_clone_to_owned().map_err(io_err("dup"))?;
    let mut file = std::fs::File::from(fd);
    file.write_all(&msg)
        .map_err(io_err("writing FUSE_NOTIFY_RESEND"))?;
    tracing::debug!("sent FUSE_NOTIFY_RESEND");
    Ok(())
}

/// A session that owns a handed-over connection but reads nothing from it yet.
///
/// Reading starts only with [`Adopted::serve`], after the previous owner is gone and the kernel
/// was asked to re-deliver what it held back: a request this process read *before* the resend
/// would be delivered to it a second time (the resend moves every unanswered request, its own
/// included), and an OPEN answered twice leaks a handle.
pub struct Adopted(Session<DistFs>);

impl Adopted {
    /// Starts reading and answering the connection from a background thread. Dropping the
    /// returned session does not unmount (it has no mount handle).
    pub fn serve(self) -> Result<fuser::BackgroundSession, HandoverError> {
        self.0.spawn().map_err(io_err("starting the FUSE thread"))
    }
}

/// Prepares to serve `fs` on the live FUSE connection `fuse` (handed over from another
/// process), with the synthetic-INIT handshake and `dup2` described in the module doc.
pub fn adopt(
    fs: DistFs,
    fuse: OwnedFd,
    init: KernelInit,
    allow_other: bool,
    uid: u32,
    gid: u32,
) -> Result<Adopted, HandoverError> {
    let (ours, theirs) = UnixDatagram::pair().map_err(io_err("socketpair"))?;
    // A datagram pair keeps message boundaries both ways, as /dev/fuse does (one read, one
    // request), which is all fuser's handshake needs.
    ours.send(&init.request(uid, gid))
        .map_err(io_err("writing the synthetic FUSE_INIT"))?;
    let acl = if allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    let session = Session::from_fd(fs, OwnedFd::from(theirs), acl, Config::default())
        .map_err(HandoverError::Handshake)?;
    let mut reply = vec![0u8; 4096];
    ours.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .map_err(io_err("socket timeout"))?;
    let n = ours
        .recv(&mut reply)
        .map_err(io_err("reading fuser's INIT reply"))?;
    if n >= 8 {
        let error = i32::from_ne_bytes([reply[4], reply[5], reply[6], reply[7]]);
        if error != 0 {
            return Err(HandoverError::InitRefused(error));
        }
    }
    // The session's fd number now names the real connection.
    let target = session.as_fd().as_raw_fd();
    // SAFETY: both are open fds owned by this process; dup2 replaces `target` atomically, and
    // the session (the only user of `target`) is not running yet.
    let rc = unsafe { libc::dup2(fuse.as_raw_fd(), target) };
    if rc < 0 {
        return Err(HandoverError::Io {
            what: "dup2 of the FUSE fd",
            source: io::Error::last_os_error(),
        });
    }
    drop(fuse);
    Ok(Adopted(session))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_init_layout() {
        let init = KernelInit {
            major: 7,
            minor: 45,
            flags: (1 << 33) | 1,
            max_readahead: 131072,
        };
        let bytes = init.request(5, 6);
        assert_eq!(bytes.len(), 104);
        assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), 104);
        assert_eq!(
            u32::from_ne_bytes(bytes[4..8].try_into().unwrap()),
            FUSE_INIT
        );
        assert_eq!(u32::from_ne_bytes(bytes[24..28].try_into().unwrap()), 5);
        assert_eq!(u32::from_ne_bytes(bytes[40..44].try_into().unwrap()), 7);
        assert_eq!(u32::from_ne_bytes(bytes[44..48].try_into().unwrap()), 45);
        assert_eq!(
            u32::from_ne_bytes(bytes[48..52].try_into().unwrap()),
            131072
        );
        // Upper capability bits travel in flags2, announced by FUSE_INIT_EXT.
        let flags = u32::from_ne_bytes(bytes[52..56].try_into().unwrap());
        assert_eq!(u64::from(flags), 1 | FUSE_INIT_EXT);
        assert_eq!(u32::from_ne_bytes(bytes[56..60].try_into().unwrap()), 2);
    }

    #[test]
    fn frozen_gate_forgets_replies() {
        let gate = Gate::default();
        let mut sent = 0;
        gate.answer((), |()| sent += 1);
        gate.freeze();
        gate.answer((), |()| sent += 1);
        assert!(gate.is_frozen());
        gate.thaw();
        gate.answer((), |()| sent += 1);
        assert_eq!(sent, 2);
    }
}
