//! The client side of the control socket, for `distfs status`, `pin`, `unpin`, `gc` and
//! `refresh`: finds the daemon of a cache directory (the holder of its lock), sends one
//! request and reads the answer lines. Blocking (the CLI has no runtime for this); every
//! read is bounded by a socket timeout.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::protocol::{Outcome, Reply, Request, SOCKET_FILE};
use crate::store::lock;

/// How long the client waits for the next answer line (a pin sends progress at least once
/// per DAG level; a level waits at most the read deadline per block).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(600);

/// Why a request to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon holds the cache directory.
    #[error("no distfs mount uses the cache dir {}", dir.display())]
    NoDaemon { dir: PathBuf },
    /// The lock could not be read.
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    /// The socket could not be reached.
    #[error("control socket {}", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Talking to the daemon failed.
    #[error("talking to the daemon through {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The daemon answered with something that is not the protocol.
    #[error("the daemon's answer is not understood: {0}")]
    Protocol(String),
    /// The daemon refused or failed the request.
    #[error("{0}")]
    Daemon(String),
}

/// The daemon holding `dir`, if one does: its pid and what it does ("mounted at ...").
/// Another kind of holder (a gc or an offline pin) is not a daemon.
pub fn daemon_of(dir: &Path) -> Result<Option<(String, String)>, ClientError> {
    Ok(lock::holder(dir)?.filter(|(_, what)| what.starts_with("mounted at")))
}

/// Sends `request` to the daemon of `dir` and returns its final answer; `progress` sees each
/// progress line before it.
pub fn request(
    dir: &Path,
    request: &Request,
    mut progress: impl FnMut(u64, u64, u64),
) -> Result<Outcome, ClientError> {
    let path = dir.join(SOCKET_FILE);
    if daemon_of(dir)?.is_none() {
        return Err(ClientError::NoDaemon {
            dir: dir.to_path_buf(),
        });
    }
    let io = |source| ClientError::Io {
        path: path.clone(),
        source,
    };
    let mut stream = UnixStream::connect(&path).map_err(|source| ClientError::Connect {
        path: path.clone(),
        source,
    })?;
    stream.set_read_timeout(Some(REPLY_TIMEOUT)).map_err(io)?;
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    let mut line = serde_json::to_vec(request).map_err(|e| ClientError::Protocol(e.to_string()))?;
    line.push(b'\n');
    // The daemon may have refused us before reading: a failed write is read past.
    let _ = stream.write_all(&line);
    let mut reader = BufReader::new(stream);
    loop {
        let mut text = String::new();
        if reader.read_line(&mut text).map_err(io)? == 0 {
            return Err(ClientError::Protocol(
                "the daemon closed the connection without an answer".to_owned(),
            ));
        }
        match serde_json::from_str::<Reply>(text.trim()) {
            Ok(Reply::Progress {
                blocks,
                bytes,
                queued,
            }) => progress(blocks, bytes, queued),
            Ok(Reply::Done { result }) => return Ok(result),
            Ok(Reply::Error { message }) => return Err(ClientError::Daemon(message)),
            Err(e) => return Err(ClientError::Protocol(format!("{e}: {}", text.trim()))),
        }
    }
}
