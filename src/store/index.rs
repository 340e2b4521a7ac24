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
    /// Whole files among the entries ([`is_whole`]), and their bytes.
    whole: usize,
    whole_bytes: u64,
    pinned: HashMap<Key, u32>,
    in_use: HashMap<Key, u32>,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            lru: lru::LruCache::unbounded(),
            bytes: 0,
            whole: 0,
            whole_bytes: 0,
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

    /// Number of indexed blocks (whole files not counted).
    pub fn blocks(&self) -> usize {
        self.lru.len() - self.whole
    }

    /// Number of indexed whole files (`store::whole`).
    pub fn whole_files(&self) -> usize {
        self.whole
    }

    /// Bytes of indexed whole files (counted in [`Index::bytes`] too).
    pub fn whole_bytes(&self) -> u64 {
        self.whole_bytes
    }

    /// Records a block (or updates its size) as the most recently used.
    pub fn insert(&mut self, key: Key, size: u64) {
        let whole = is_whole(&key);
        match self.lru.put(key, size) {
            Some(old) => {
                self.bytes -= old;
                if whole {
                    self.whole_bytes -= old;
                }
            }
            None if whole => self.whole += 1,
            None => {}
        }
        self.bytes += size;
        if whole {
            self.whole_bytes += size;
        }
    }

    /// Marks a block as just used; false if it is not indexed.
    pub fn touch(&mut self, key: &[u8]) -> bool {
        self.lru.get(key).is_some()
    }

    /// Forgets a block (its file is gone); its size, if it was indexed.
    pub fn remove(&mut self, key: &[u8]) -> Option<u64> {
        let size = self.lru.pop(key)?;
        self.bytes -= size;
        if is_whole(key) {
            self.whole -= 1;
            self.whole_bytes -= size;
        }
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

/// Whether `key` is a whole file's (a multihash followed by [`WHOLE_MARK`]) rather than a
/// block's (a multihash): told by the multihash's own length, since a digest may end in
/// the mark's byte too.
pub fn is_whole(key: &[u8]) -> bool {
    let mut rest = key;
    multihash::Multihash::<64>::read(&mut rest).is_ok() && rest == [WHOLE_MARK]
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
    /// Bytes of block files and whole files indexed: what the quota counts.
    pub bytes: u64,
    /// Whole files indexed (`store::whole`), whose bytes `bytes` counts too.
    pub whole_files: u64,
    /// Bytes of whole files indexed.
    pub whole_bytes: u64,
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
        if is_whole(&key) {
            report.whole_files += 1;
            report.whole_bytes += len;
        } else {
            report.blocks += 1;
        }
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

    #[test]
    fn whole_files_are_counted_apart_from_blocks_even_when_a_digest_ends_in_the_mark() {
        // sha2-256 multihashes: code 0x12, length 32; one digest ends in the mark's byte.
        let mh = |last: u8| {
            let mut key = vec![0x12, 32];
            key.extend([7u8; 31]);
            key.push(last);
            key
        };
        let block_like_mark = mh(WHOLE_MARK);
        let mut whole = mh(1);
        whole.push(WHOLE_MARK);
        assert!(!is_whole(&block_like_mark));
        assert!(is_whole(&whole));
        assert!(!is_whole(&[]) && !is_whole(&[0x12]) && !is_whole(&[0xff; 12]));

        let mut ix = Index::default();
        ix.insert(block_like_mark.clone(), 10);
        ix.insert(whole.clone(), 1000);
        ix.insert(whole.clone(), 1200); // a new size for the same copy
        assert_eq!((ix.blocks(), ix.whole_files()), (1, 1));
        assert_eq!((ix.bytes(), ix.whole_bytes()), (1210, 1200));
        assert_eq!(ix.remove(&whole), Some(1200));
        assert_eq!((ix.blocks(), ix.whole_files(), ix.whole_bytes()), (1, 0, 0));
        ix.insert(whole.clone(), 5);
        let victims = ix.take_victims(0);
        assert_eq!(victims.len(), 2);
        assert_eq!(
            (ix.blocks(), ix.whole_files(), ix.whole_bytes(), ix.bytes()),
            (0, 0, 0, 0)
        );
    }

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
        // A whole copy of a file (a full sha2-256 multihash as its name): not a block.
        let wdir = tempfile::tempdir().unwrap();
        let whole = wdir.path().join("whole");
        fs::create_dir_all(whole.join("cd")).unwrap();
        let copy = format!("1220{}", "cd".repeat(32));
        fs::write(whole.join("cd").join(&copy), [0u8; 1000]).unwrap();
        let (ix, report) = scan(dir.path(), &whole, 77).unwrap();
        assert_eq!(
            report,
            ScanReport {
                blocks: 1,
                bytes: 1005,
                whole_files: 1,
                whole_bytes: 1000,
                temp_removed: 1,
                bad_removed: 1,
                foreign: 1
            }
        );
        assert_eq!((ix.blocks(), ix.whole_files()), (1, 1));
        assert!(ix.contains(&[0x12, 0x20, 0xab, 0x01]));
        assert!(!shard.join(".tmp-1-0").exists() && shard.join(".tmp-77-0").exists());
        assert!(!shard.join("1220ab02").exists());
    }
}
