//! Pin requests on disk: one JSON file per request, `DIR/pin-service/<requestid>.json`,
//! written to a temp file, fsynced and renamed (a crash leaves the old state or the new one),
//! removed on delete. Blocking functions: call them on a blocking thread.
//!
//! The blocks themselves are kept by the store's own pin records (`store::pins`, one per
//! root, labelled [`LABEL_PREFIX`]`<cid>`), which the quota loads at start so pinned blocks
//! are protected before the first request is answered.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::fetch::pinning::PinStatus;

/// The directory of request files inside the store directory.
pub const REQUESTS_DIR: &str = "pin-service";
/// The label of the store pin records the service makes (followed by the root CID).
pub const LABEL_PREFIX: &str = "pin-service ";
/// The largest request file read back (a request is well under this).
const MAX_RECORD_BYTES: u64 = 256 * 1024;

/// One pin request as kept in memory and on disk.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// The request as answered (`delegates` left empty: they are filled per answer).
    pub status: PinStatus,
    /// `created` as Unix nanoseconds (for sorting and the `before`/`after` filters).
    pub created_ns: i64,
    /// The CID of the request this one replaced, whose blocks stay pinned until this one
    /// is finished (so blocks common to both are never dropped in between).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

/// Whether `id` has the shape of our request ids (32 lowercase hex digits), so that it can
/// name a file.
pub fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn dir_of(store: &Path) -> PathBuf {
    store.join(REQUESTS_DIR)
}

fn path_of(store: &Path, id: &str) -> PathBuf {
    dir_of(store).join(format!("{id}.json"))
}

/// Every readable request in `store`; unreadable or foreign files are logged and skipped.
pub fn load_all(store: &Path) -> Vec<Entry> {
    let Ok(entries) = fs::read_dir(dir_of(store)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in entries.flatten() {
        let path = item.path();
        let Some(id) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        if !valid_id(id) {
            continue;
        }
        let read = || -> Result<Entry, String> {
            let len = item.metadata().map_err(|e| e.to_string())?.len();
            if len > MAX_RECORD_BYTES {
                return Err(format!("over {MAX_RECORD_BYTES} bytes"));
            }
            let text = fs::read(&path).map_err(|e| e.to_string())?;
            let entry: Entry = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
            if entry.status.requestid != id {
                return Err("the request id inside does not match the file name".into());
            }
            Ok(entry)
        };
        match read() {
            Ok(e) => out.push(e),
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring unreadable pin request: {e}")
            }
        }
    }
    out
}

/// Writes a request atomically (temp file, fsync, rename, fsync of the directory).
pub fn write(store: &Path, entry: &Entry) -> io::Result<()> {
    let dir = dir_of(store);
    let id = &entry.status.requestid;
    let tmp = dir.join(format!(".tmp-{}-{id}", std::process::id()));
    let result = (|| {
        fs::create_dir_all(&dir)?;
        let text = serde_json::to_vec(entry).map_err(io::Error::other)?;
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        fs::rename(&tmp, path_of(store, id))?;
        fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes a request's file (a missing file is fine).
pub fn remove(store: &Path, id: &str) -> io::Result<()> {
    match fs::remove_file(path_of(store, id)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::pinning::{Pin, PinState};

    #[test]
    fn round_trip_and_junk_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let id = "0123456789abcdef0123456789abcdef";
        let entry = Entry {
            status: PinStatus {
                requestid: id.into(),
                status: PinState::Queued,
                created: "2026-01-01T00:00:00Z".into(),
                pin: Pin {
                    cid: "bafkqaaa".into(),
                    ..Pin::default()
                },
                delegates: Vec::new(),
                info: Default::default(),
            },
            created_ns: 1,
            replaces: Some("bafkqaaa".into()),
        };
        write(dir.path(), &entry).unwrap();
        let d = dir.path().join(REQUESTS_DIR);
        fs::write(d.join("ffffffffffffffffffffffffffffffff.json"), "{").unwrap();
        fs::write(d.join("../escape.json"), "{}").unwrap();
        fs::write(d.join("notes.txt"), "x").unwrap();
        assert_eq!(load_all(dir.path()), vec![entry]);
        remove(dir.path(), id).unwrap();
        remove(dir.path(), id).unwrap();
        assert_eq!(load_all(dir.path()), vec![]);
        assert!(!valid_id("../../etc/passwd"));
        assert!(!valid_id("0123456789ABCDEF0123456789abcdef"));
    }
}
