//! Directory nodes: a basic UnixFS directory, or a HAMT when Kubo would shard it
//! (SPECS.md §3.6; boxo `io/directory.go`).
//!
//! The sharding decision is made on the complete entry list. boxo decides incrementally
//! while entries are added, but during `ipfs add` a directory only grows (entries are
//! added, or replaced by the same name with a larger Tsize), so its largest estimate is the
//! final one and the outcome is the same.

use bytes::Bytes;
use cid::Cid;
use prost::Message;

use super::hamt::build_hamt;
use super::{BlockSink, ImportError, ImportOptions, Metadata, SizeEstimate, ThresholdCompare};
use crate::block::{codec, Block, MAX_BLOCK_SIZE};
use crate::unixfs::pb::{encode_pb_node, Data, DataType, PbLink};

/// One directory entry: a name and the DAG it points to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Entry name (unique within the directory, UTF-8, no `/`).
    pub name: String,
    /// Root CID of the entry.
    pub cid: Cid,
    /// Cumulative size of the entry's DAG.
    pub tsize: u64,
}

/// A finished directory (basic or HAMT root).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirNode {
    /// Root CID.
    pub cid: Cid,
    /// Cumulative size (block + Σ link Tsize).
    pub tsize: u64,
    /// Whether it became a HAMT.
    pub sharded: bool,
}

/// Builds a directory from `entries` (any order; sorted by name bytes here), writing its
/// block(s) to `sink`.
pub fn build_directory<S: BlockSink + ?Sized>(
    mut entries: Vec<DirEntry>,
    meta: &Metadata,
    opts: &ImportOptions,
    sink: &mut S,
) -> Result<DirNode, ImportError> {
    entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    entries.dedup_by(|a, b| a.name == b.name);
    let hamt = opts.hamt;
    let mut basic = None;
    let estimate = match hamt.estimate {
        SizeEstimate::Links => entries
            .iter()
            .map(|e| e.name.len() + e.cid.to_bytes().len())
            .sum::<usize>(),
        SizeEstimate::Block => {
            let bytes = encode_basic(&entries, meta);
            let len = bytes.len();
            basic = Some(bytes);
            len
        }
    };
    let shard = hamt.threshold > 0
        && match hamt.compare {
            ThresholdCompare::Greater => estimate > hamt.threshold,
            ThresholdCompare::GreaterOrEqual => estimate >= hamt.threshold,
        };
    if shard {
        return build_hamt(&entries, meta, opts, sink);
    }
    let bytes = basic.unwrap_or_else(|| encode_basic(&entries, meta));
    if bytes.len() > MAX_BLOCK_SIZE {
        return Err(ImportError::BlockTooLarge {
            kind: "directory",
            size: bytes.len(),
            max: MAX_BLOCK_SIZE,
        });
    }
    let block = Block::encode(opts.cid_version, codec::DAG_PB, Bytes::from(bytes));
    let tsize = block.data().len() as u64 + entries.iter().map(|e| e.tsize).sum::<u64>();
    let cid = *block.cid();
    sink.put(block)?;
    Ok(DirNode {
        cid,
        tsize,
        sharded: false,
    })
}

/// The bytes of a basic directory with `entries` (already sorted).
pub fn encode_basic(entries: &[DirEntry], meta: &Metadata) -> Vec<u8> {
    let links: Vec<PbLink> = entries
        .iter()
        .map(|e| PbLink {
            hash: Some(e.cid.to_bytes()),
            name: Some(e.name.clone()),
            tsize: Some(e.tsize),
        })
        .collect();
    let mut ud = Data {
        r#type: DataType::Directory as i32,
        ..Default::default()
    };
    meta.apply(&mut ud);
    encode_pb_node(&links, Some(&ud.encode_to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::VecSink;

    #[test]
    fn empty_directory_is_kubo_empty_dir() {
        let mut sink = VecSink::default();
        let d = build_directory(
            vec![],
            &Metadata::default(),
            &ImportOptions::default(),
            &mut sink,
        )
        .unwrap();
        assert_eq!(
            d.cid.to_string(),
            "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
        );
        assert_eq!(d.tsize, 4);
        let v1 = ImportOptions {
            cid_version: cid::Version::V1,
            ..Default::default()
        };
        let d = build_directory(vec![], &Metadata::default(), &v1, &mut sink).unwrap();
        assert_eq!(
            d.cid.to_string(),
            "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"
        );
    }

    #[test]
    fn threshold_comparison_is_selectable() {
        // 4096 entries × (30-char name + 34-byte CIDv0) = exactly 262144: basic with `>`
        // (current Kubo), HAMT with `>=` (Kubo ≤ 0.39, e.g. 0.22).
        let cid: Cid = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
            .parse()
            .unwrap();
        let entries: Vec<DirEntry> = (0..4096)
            .map(|i| DirEntry {
                name: format!("{i:030}"),
                cid,
                tsize: 20,
            })
            .collect();
        let mut sink = VecSink::default();
        let mut opts = ImportOptions::default();
        let d = build_directory(entries.clone(), &Metadata::default(), &opts, &mut sink).unwrap();
        assert!(!d.sharded);
        opts.hamt.compare = ThresholdCompare::GreaterOrEqual;
        let d = build_directory(entries, &Metadata::default(), &opts, &mut sink).unwrap();
        assert!(d.sharded);
    }
}
