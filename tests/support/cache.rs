//! Looking at a daemon's block cache from outside: list the block files and re-hash each
//! against its name, so tests can prove a cache holds no corrupt block.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Every file under `cache/blocks`: (path, name). Empty when there is no `blocks` dir yet.
pub fn block_files(cache: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let Ok(shards) = fs::read_dir(cache.join("blocks")) else {
        return out;
    };
    for shard in shards.flatten() {
        let Ok(files) = fs::read_dir(shard.path()) else {
            continue;
        };
        for f in files.flatten() {
            out.push((f.path(), f.file_name().to_string_lossy().into_owned()));
        }
    }
    out
}

/// Re-hashes every block file against its name (hex sha2-256 multihash); the number
/// checked and the names of the files that do not match. Temp files (`.tmp-*`) are skipped
/// (the start-up scan removes them); any other name must be a sha2-256 multihash.
pub fn bad_blocks(cache: &Path) -> (usize, Vec<String>) {
    let mut checked = 0;
    let mut bad = Vec::new();
    for (path, name) in block_files(cache) {
        if name.starts_with(".tmp-") {
            continue;
        }
        checked += 1;
        let data = fs::read(&path).unwrap_or_default();
        let want = format!("1220{}", hex::encode(Sha256::digest(&data)));
        if name != want {
            bad.push(name);
        }
    }
    (checked, bad)
}
