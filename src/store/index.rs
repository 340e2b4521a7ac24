//! The in-memory index of the blocks a cache directory holds: size and recency of each
//! block (keyed by multihash bytes, like the file names), the total, and the blocks that must
//! not be evicted (pinned, or in use by an open file). Pure bookkeeping: it picks eviction
//! victims but never touches a file (see `quota` for that).
//!
//! [`scan`] builds the first index from the blocks directory, cleaning up what a crash can
//! leave behind: temp files of a write that never finished, and empty or oversized files.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::Path;
use std::time::SystemTime;

use super::disk::WHOLE_MARK;
use crate::block::MAX_BLOCK_SIZE;

/// A block's index key: its multihash bytes.
pub type Key = Vec<u8>;

/// Sizes and recency of cached blocks, and what must stay.
#[derive(Debug)]
pub struct Index {
    lru: lru::LruCache<Key, u64>,
    bytes: u64,
    pinned: HashMap<Key, u32>,
    in_use: HashMap<Key, u32>,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            lru: lru::LruCache::unbounded(),
            bytes: 0,
            pinned: HashMap::new(),
            in_use: HashMap::new(),
        }
    }
}

impl Index {
    /// Bytes of all indexed blocks.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Number of indexed blocks.
    pub fn blocks(&self) -> usize {
        self.lru.len()
    }

    /// Records a block (or updates its size) as the most recently used.
    pub fn insert(&mut self, key: Key, size: u64) {
        if let Some(old) = self.lru.put(key, size) {
            self.bytes -= old;
        }
        self.bytes += size;
    }

    /// Marks a block as just used; false if it is not indexed.
    pub fn touch(&mut self, key: &[u8]) -> bool {
        self.lru.get(key).is_some()
    }

    /// Forgets a block (its file is gone); its size, if it was indexed.
    pub fn remove(&mut self, key: &[u8]) -> Option<u64> {
        let size = self.lru.pop(key)?;
        self.bytes -= size;
        Some(size)
    }

    /// Whether the block is indexed.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.lru.contains(key)
    }

    /// Adds one pin reference to a block.
    pub fn pin(&mut self, key: Key) {
        *self.pinned.entry(key).or_insert(0) += 1;
    }

    /// Drops one pin reference.
    pub fn unpin(&mut self, key: &[u8]) {
        release(&mut self.pinned, key);
    }

    /// Whether any pin holds the block.
    pub fn is_pinned(&self, key: &[u8]) -> bool {
        self.pinned.contains_key(key)
    }

    /// Bytes of indexed blocks that are pinned.
    pub fn pinned_bytes(&self) -> u64 {
        self.pinned.keys().filter_map(|k| self.lru.peek(k)).sum()
    }

    /// Adds one in-use reference (an open file reads this block).
    pub fn hold(&mut self, key: Key) {
        *self.in_use.entry(key).or_insert(0) += 1;
    }

    /// Drops one in-use reference.
    pub fn release(&mut self, key: &[u8]) {
        release(&mut self.in_use, key);
    }

    /// Removes least recently used blocks, skipping pinned and in-use ones, until the total
    /// is at most `target`; returns them (key, size) for the caller to delete.
    pub fn take_victims(&mut self, target: u64) -> Vec<(Key, u64)> {
        let mut need = self.bytes.saturating_sub(target);
        if need == 0 {
            return Vec::new();
        }
        let mut chosen = Vec::new();
        for (key, size) in self.lru.iter().rev() {
            if need == 0 {
                break;
            }
            if self.pinned.contains_key(key) || self.in_use.contains_key(key) {
                continue;
            }
            need = need.saturating_sub(*size);
            chosen.push(key.clone());
        }
        chosen
            .into_iter()
            .filter_map(|k| self.remove(&k).map(|s| (k, s)))
            .collect()
    }
}

fn release(map: &mut HashMap<Key, u32>, key: &[u8]) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

/// What [`scan`] found and cleaned.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ScanReport {
    /// Block files indexed.
    pub blocks: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Temp files of unfinished writes removed.
    pub temp_removed: u64,
    /// Empty or oversized block files removed (torn by a crash; never valid blocks).
    pub bad_removed: u64,
    /// Files ignored because their names are not block names.
    pub foreign: u64,
}

/// Whether a file name is one of our write temp files (`.tmp-<pid>-<n>`), and its pid.
pub fn temp_file_pid(name: &str) -> Option<Option<u32>> {
    let rest = name.strip_prefix(".tmp-")?;
    Some(rest.split('-').next().and_then(|p| p.parse().ok()))
}

/// Reads the blocks directory `blocks` (`<xx>/<hex multihash>`) and the whole-file directory
/// `whole` (same layout, see `store::whole`): indexes every file, oldest modification first
/// (so the least recently written are evicted first), and removes temp files whose writer is
/// not `keep_pid`, and files that cannot be what they are named (empty, or a block larger
/// than a block can be). Whole files are indexed under their multihash followed by
/// [`WHOLE_MARK`]. Call only while holding the cache lock.
pub fn scan(blocks: &Path, whole: &Path, keep_pid: u32) -> io::Result<(Index, ScanReport)> {
    let mut found: Vec<(SystemTime, Key, u64)> = Vec::new();
    let mut report = ScanReport::default();
    scan_dir(blocks, None, keep_pid, &mut found, &mut report)?;
    scan_dir(whole, Some(WHOLE_MARK), keep_pid, &mut found, &mut report)?;
    found.sort_unstable_by_key(|a| a.0);
    let mut index = Index::default();
    for (_, key, len) in found {
        report.blocks += 1;
        report.bytes += len;
        index.insert(key, len);
    }
    Ok((index, report))
}

/// One directory of [`scan`]: its keys get `mark` appended; only blocks have a size limit.
fn scan_dir(
    top: &Path,
    mark: Option<u8>,
    keep_pid: u32,
    found: &mut Vec<(SystemTime, Key, u64)>,
    report: &mut ScanReport,
) -> io::Result<()> {
    let shards = match fs::read_dir(top) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for shard in shards {
        let shard = shard?;
        if !shard.file_type()?.is_dir() {
            continue;
        }
        for entry in fs::read_dir(shard.path())? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(pid) = temp_file_pid(&name) {
                if pid != Some(keep_pid) && remove_quietly(&entry.path()) {
                    report.temp_removed += 1;
                }
                continue;
            }
            let Ok(mut key) = hex::decode(name.as_bytes()) else {
                report.foreign += 1;
                continue;
            };
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if !meta.is_file() {
                report.foreign += 1;
                continue;
            }
            let len = meta.len();
            if len == 0 || (mark.is_none() && len > MAX_BLOCK_SIZE as u64) {
                if remove_quietly(&entry.path()) {
                    report.bad_removed += 1;
                }
                continue;
            }
            key.extend(mark);
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            found.push((mtime, key, len));
        }
    }
    Ok(())
}

fn remove_quietly(path: &Path) -> bool {
    match fs::remove_file(path) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(path = %path.display(), "could not remove a leftover cache file: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: u8) -> Key {
        vec![n]
    }

    #[test]
    fn victims_are_least_recent_and_skip_pinned_and_in_use() {
        let mut ix = Index::default();
        for n in 1..=5 {
            ix.insert(k(n), 10);
        }
        assert!(ix.touch(&k(1))); // order, least recent first: 2 3 4 5 1
        ix.pin(k(2));
        ix.hold(k(3));
        let v = ix.take_victims(30);
        assert_eq!(v, vec![(k(4), 10), (k(5), 10)]);
        assert_eq!(ix.bytes(), 30);
        ix.unpin(&k(2));
        ix.release(&k(3));
        assert_eq!(ix.take_victims(15), vec![(k(2), 10), (k(3), 10)]);
        assert_eq!((ix.bytes(), ix.blocks()), (10, 1));
        // Everything left is pinned: nothing to take, no loop.
        ix.pin(k(1));
        assert!(ix.take_victims(0).is_empty());
        assert_eq!(ix.pinned_bytes(), 10);
    }

    #[test]
    fn reinsert_does_not_double_count() {
        let mut ix = Index::default();
        ix.insert(k(1), 10);
        ix.insert(k(1), 12);
        assert_eq!((ix.bytes(), ix.blocks()), (12, 1));
        assert_eq!(ix.remove(&k(1)), Some(12));
        assert_eq!(ix.bytes(), 0);
    }

    #[test]
    fn scan_cleans_crash_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let shard = dir.path().join("ab");
        fs::create_dir_all(&shard).unwrap();
        fs::write(shard.join("1220ab01"), b"block").unwrap();
        fs::write(shard.join("1220ab02"), b"").unwrap(); // torn: empty
        fs::write(shard.join(".tmp-1-0"), b"half").unwrap(); // a dead writer's temp file
        fs::write(shard.join(".tmp-77-0"), b"mine").unwrap(); // the live writer's
        fs::write(shard.join("README"), b"not a block").unwrap();
        let (ix, report) = scan(dir.path(), &dir.path().join("none"), 77).unwrap();
        assert_eq!(
            report,
            ScanReport {
                blocks: 1,
                bytes: 5,
                temp_removed: 1,
                bad_removed: 1,
                foreign: 1
            }
        );
        assert!(ix.contains(&[0x12, 0x20, 0xab, 0x01]));
        assert!(!shard.join(".tmp-1-0").exists() && shard.join(".tmp-77-0").exists());
        assert!(!shard.join("1220ab02").exists());
    }
}
