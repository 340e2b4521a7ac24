//! Per-file facts the `/dist` view derives from content rather than from UnixFS metadata:
//! which files are binaries (listed in their version's `dist.json`, named `*.AppImage`, or
//! starting with an ELF header or `#!`), and the permission bits that follow. Pure functions.

use std::collections::BTreeSet;

/// The largest `dist.json` we parse; real ones are a few KiB.
pub const MAX_DIST_JSON: usize = 1024 * 1024;

/// Permission bits of a directory with no UnixFS mode.
pub const DIR_MODE: u32 = 0o555;
/// Permission bits of a plain file with no UnixFS mode.
pub const FILE_MODE: u32 = 0o444;
/// Permission bits of an executable file with no UnixFS mode.
pub const EXEC_MODE: u32 = 0o555;

/// Why `dist.json` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// Larger than [`MAX_DIST_JSON`].
    #[error("dist.json is {size} bytes, over the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    /// Not JSON.
    #[error("dist.json is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// The file names a `dist.json` lists as downloads: the last path segment of every `link`
/// string, wherever it appears. Tolerates both layouts dist.ipfs.tech has used (`platforms`
/// as an array of `{archs: [{link}]}` and as a map of `{archs: {arch: {link, cid, sha512}}}`).
pub fn binaries_in_dist_json(bytes: &[u8]) -> Result<BTreeSet<String>, MetaError> {
    if bytes.len() > MAX_DIST_JSON {
        return Err(MetaError::TooLarge {
            size: bytes.len(),
            max: MAX_DIST_JSON,
        });
    }
    let value: serde_json::Value = serde_json::from_slice(bytes)?;
    let mut out = BTreeSet::new();
    collect_links(&value, 0, &mut out);
    Ok(out)
}

fn collect_links(v: &serde_json::Value, depth: usize, out: &mut BTreeSet<String>) {
    // serde_json already limits nesting to 128; keep our own walk bounded too.
    if depth > 32 {
        return;
    }
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map {
                match (k.as_str(), child) {
                    ("link", serde_json::Value::String(link)) => {
                        if let Some(name) = link.rsplit('/').next().filter(|n| !n.is_empty()) {
                            out.insert(name.to_string());
                        }
                    }
                    _ => collect_links(child, depth + 1, out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for child in items {
                collect_links(child, depth + 1, out);
            }
        }
        _ => {}
    }
}

/// Whether a file should be executable when its DAG carries no mode: an AppImage by name, or
/// content that starts like a program (ELF magic or a `#!` interpreter line).
pub fn looks_executable(name: &str, first_bytes: &[u8]) -> bool {
    name.ends_with(".AppImage")
        || first_bytes.starts_with(b"\x7fELF")
        || first_bytes.starts_with(b"#!")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_from_map_layout() {
        let json = br#"{"id":"kubo","version":"v0.22.0","platforms":{
            "linux":{"name":"Linux Binary","archs":{
                "amd64":{"link":"/kubo_v0.22.0_linux-amd64.tar.gz","cid":"Qm1","sha512":"ab"},
                "arm64":{"link":"/kubo_v0.22.0_linux-arm64.tar.gz"}}}}}"#;
        let got = binaries_in_dist_json(json).unwrap();
        assert!(got.contains("kubo_v0.22.0_linux-amd64.tar.gz"));
        assert!(got.contains("kubo_v0.22.0_linux-arm64.tar.gz"));
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn links_from_array_layout() {
        let json = br#"{"platforms":[{"id":"linux","archs":[{"id":"amd64","link":"go-ipfs_v0.4.0_linux-amd64.tar.gz"}]}]}"#;
        let got = binaries_in_dist_json(json).unwrap();
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            vec!["go-ipfs_v0.4.0_linux-amd64.tar.gz"]
        );
    }

    #[test]
    fn bad_dist_json_is_an_error() {
        assert!(binaries_in_dist_json(b"{not json").is_err());
        let big = vec![b' '; MAX_DIST_JSON + 1];
        assert!(matches!(
            binaries_in_dist_json(&big),
            Err(MetaError::TooLarge { .. })
        ));
    }

    #[test]
    fn executables_by_name_or_magic() {
        assert!(looks_executable("hello-x86_64.AppImage", b""));
        assert!(looks_executable("tool", b"\x7fELF\x02\x01"));
        assert!(looks_executable("install.sh", b"#!/bin/sh\n"));
        assert!(!looks_executable("README.md", b"# hello"));
    }
}
