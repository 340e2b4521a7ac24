//! Publisher-declared prefetch lists: the byte ranges of a file that a real run reads first,
//! stored beside the file as a sidecar `<file>.prefetch`, and how a read trace
//! (`distfs mount --trace`) becomes such lists. Pure: bytes in, values out.
//!
//! The sidecar is JSON: `{"version": 1, "size": <file bytes>, "ranges": [[offset, len], ...]}`,
//! ranges sorted, disjoint and inside the file. A list whose `size` does not match the file
//! it sits beside is ignored (it was made for other bytes). A sidecar rather than a
//! `dist.json` field: it travels with the file (a release can be re-laid out without editing
//! metadata), is found by one lookup in a directory the kernel has just listed, and a
//! publisher writes it with no knowledge of `dist.json`.

use std::collections::BTreeMap;

/// What a prefetch sidecar's name adds to the file's name.
pub const SIDECAR_SUFFIX: &str = ".prefetch";
/// The largest sidecar read.
pub const MAX_SIDECAR_BYTES: u64 = 1024 * 1024;
/// The most ranges one list may hold.
pub const MAX_RANGES: usize = 4096;
/// Traced reads closer than this are merged into one range (one fetch instead of two; the
/// blocks between are usually needed soon anyway).
pub const MERGE_GAP: u64 = 64 * 1024;
/// The sidecar format version this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Why a sidecar cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PrefetchError {
    /// Not JSON of the expected shape.
    #[error("prefetch list is not valid: {reason}")]
    Malformed { reason: String },
    /// A format version we do not read.
    #[error("prefetch list version {found} is not supported (this distfs reads version {FORMAT_VERSION})")]
    Version { found: u32 },
    /// Made for a file of another size.
    #[error("prefetch list was made for a file of {list} bytes, but the file has {file}; regenerate it with distfs trace")]
    SizeMismatch { list: u64, file: u64 },
    /// Too many ranges.
    #[error("prefetch list has {count} ranges, more than the limit of {MAX_RANGES}")]
    TooMany { count: usize },
    /// A range that is empty, out of order, overlapping or past the end of the file.
    #[error(
        "prefetch range {offset}+{len} is empty, out of order or outside the file ({size} bytes)"
    )]
    BadRange { offset: u64, len: u64, size: u64 },
}

/// A file's prefetch list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefetchList {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// The size of the file the list was made for.
    pub size: u64,
    /// `(offset, len)` pairs, sorted and disjoint.
    pub ranges: Vec<(u64, u64)>,
}

impl PrefetchList {
    /// Parses and checks a sidecar for a file of `file_size` bytes.
    pub fn parse(bytes: &[u8], file_size: u64) -> Result<PrefetchList, PrefetchError> {
        let list: PrefetchList =
            serde_json::from_slice(bytes).map_err(|e| PrefetchError::Malformed {
                reason: e.to_string(),
            })?;
        if list.version != FORMAT_VERSION {
            return Err(PrefetchError::Version {
                found: list.version,
            });
        }
        if list.size != file_size {
            return Err(PrefetchError::SizeMismatch {
                list: list.size,
                file: file_size,
            });
        }
        if list.ranges.len() > MAX_RANGES {
            return Err(PrefetchError::TooMany {
                count: list.ranges.len(),
            });
        }
        let mut prev_end = 0;
        for &(offset, len) in &list.ranges {
            let end = offset.checked_add(len).filter(|e| *e <= file_size);
            match end {
                Some(end) if len > 0 && offset >= prev_end => prev_end = end,
                _ => {
                    return Err(PrefetchError::BadRange {
                        offset,
                        len,
                        size: file_size,
                    })
                }
            }
        }
        Ok(list)
    }

    /// The list for a file of `size` bytes that covers `reads` (`(offset, len)`, any order,
    /// clamped to the file), reads closer than [`MERGE_GAP`] merged; wider gaps are merged
    /// too if that is what it takes to stay within [`MAX_RANGES`].
    pub fn from_reads(size: u64, reads: impl IntoIterator<Item = (u64, u64)>) -> PrefetchList {
        let mut sorted: Vec<(u64, u64)> = reads
            .into_iter()
            .filter_map(|(o, l)| {
                let end = o.saturating_add(l).min(size);
                (end > o).then_some((o, end))
            })
            .collect();
        sorted.sort_unstable();
        let mut gap = MERGE_GAP;
        loop {
            let merged = merge(&sorted, gap);
            if merged.len() <= MAX_RANGES {
                return PrefetchList {
                    version: FORMAT_VERSION,
                    size,
                    ranges: merged.into_iter().map(|(s, e)| (s, e - s)).collect(),
                };
            }
            gap = gap.saturating_mul(2);
        }
    }

    /// The bytes the list covers.
    pub fn total_bytes(&self) -> u64 {
        self.ranges.iter().map(|r| r.1).sum()
    }

    /// The sidecar text.
    pub fn to_json(&self) -> String {
        // Serializing plain integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Merges sorted `(start, end)` spans whose gap is at most `gap`.
fn merge(sorted: &[(u64, u64)], gap: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &(s, e) in sorted {
        match out.last_mut() {
            Some(last) if s <= last.1.saturating_add(gap) => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// One READ recorded by `distfs mount --trace`: a JSON line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TracedRead {
    /// The file's path inside the mount, `/`-separated, no leading `/`.
    pub path: String,
    /// The file's size.
    pub size: u64,
    /// Where the read started.
    pub offset: u64,
    /// How many bytes it asked for.
    pub len: u64,
}

/// Groups traced reads by file into one prefetch list per path.
pub fn lists_from_trace(
    reads: impl IntoIterator<Item = TracedRead>,
) -> BTreeMap<String, PrefetchList> {
    let mut by_path: BTreeMap<String, (u64, Vec<(u64, u64)>)> = BTreeMap::new();
    for r in reads {
        let entry = by_path.entry(r.path).or_insert((r.size, Vec::new()));
        entry.0 = r.size;
        entry.1.push((r.offset, r.len));
    }
    by_path
        .into_iter()
        .map(|(path, (size, reads))| (path, PrefetchList::from_reads(size, reads)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_merge_across_small_gaps_only() {
        let l = PrefetchList::from_reads(
            10_000_000,
            [
                (0, 4096),
                (4096, 4096),
                // 60 KiB gap: merged.
                (8192 + 60 * 1024, 100),
                // 1 MiB gap: separate.
                (2_000_000, 131_072),
                // Overlapping and out of order.
                (2_000_000 + 1000, 10),
                // Clamped to the file.
                (9_999_000, 5000),
                // Empty: dropped.
                (5_000_000, 0),
            ],
        );
        assert_eq!(
            l.ranges,
            vec![
                (0, 8192 + 60 * 1024 + 100),
                (2_000_000, 131_072),
                (9_999_000, 1000)
            ]
        );
        assert_eq!(
            PrefetchList::parse(l.to_json().as_bytes(), 10_000_000),
            Ok(l)
        );
    }

    #[test]
    fn too_many_reads_are_merged_down_to_the_limit() {
        let reads = (0..3 * MAX_RANGES as u64).map(|i| (i * 1024 * 1024, 10));
        let l = PrefetchList::from_reads(u64::MAX / 2, reads);
        assert!(l.ranges.len() <= MAX_RANGES, "{}", l.ranges.len());
        assert_eq!(l.ranges[0].0, 0);
    }

    #[test]
    fn bad_sidecars_are_refused_with_the_reason() {
        let p = |s: &str| PrefetchList::parse(s.as_bytes(), 1000);
        assert_eq!(
            p(r#"{"version":1,"size":1000,"ranges":[[0,10],[20,980]]}"#)
                .unwrap()
                .total_bytes(),
            990
        );
        assert!(matches!(
            p("not json"),
            Err(PrefetchError::Malformed { .. })
        ));
        assert!(matches!(
            p(r#"{"version":1,"size":1000,"ranges":[],"extra":1}"#),
            Err(PrefetchError::Malformed { .. })
        ));
        assert_eq!(
            p(r#"{"version":2,"size":1000,"ranges":[]}"#),
            Err(PrefetchError::Version { found: 2 })
        );
        assert_eq!(
            p(r#"{"version":1,"size":999,"ranges":[]}"#),
            Err(PrefetchError::SizeMismatch {
                list: 999,
                file: 1000
            })
        );
        for bad in [
            "[[990,11]]",
            "[[0,0]]",
            "[[10,10],[5,1]]",
            "[[0,10],[9,1]]",
            "[[18446744073709551615,2]]",
        ] {
            let text = format!(r#"{{"version":1,"size":1000,"ranges":{bad}}}"#);
            assert!(
                matches!(p(&text), Err(PrefetchError::BadRange { .. })),
                "{bad} was accepted"
            );
        }
    }

    #[test]
    fn a_trace_becomes_one_list_per_file() {
        let r = |path: &str, offset, len| TracedRead {
            path: path.into(),
            size: 1 << 20,
            offset,
            len,
        };
        let lists = lists_from_trace([
            r("a/x.AppImage", 0, 4096),
            r("b/y", 500_000, 4096),
            r("a/x.AppImage", 4096, 4096),
        ]);
        assert_eq!(lists.len(), 2);
        assert_eq!(lists["a/x.AppImage"].ranges, vec![(0, 8192)]);
        assert_eq!(lists["b/y"].ranges, vec![(500_000, 4096)]);
    }
}
