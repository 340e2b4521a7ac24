//! Test-only builders of small synthetic UnixFS DAGs (balanced, arbitrary-shape, every
//! leaf kind) and a pure reader that follows `plan_read` through them. Independent of
//! the importer on purpose: the read side is tested against DAGs built here by hand.

use std::collections::HashMap;

use bytes::Bytes;
use cid::Cid;
use prost::Message;

use super::pb::{encode_pb_node, Data, DataType, PbLink};
use super::{plan_read, Node};
use crate::block::{codec, Block};

/// How leaves are encoded.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Leaf {
    /// Raw-codec blocks (CIDv1).
    Raw,
    /// dag-pb UnixFS File leaves (Kubo CIDv0 default).
    PbFile,
    /// dag-pb UnixFS Raw leaves (trickle, dag-pb mode).
    PbRaw,
    /// Raw data inlined in identity CIDs (≤ 64 bytes: `cid::Cid`'s digest capacity).
    Identity,
}

/// Blocks by CID, as a DAG builder's sink.
#[derive(Default)]
pub(crate) struct Blocks(pub HashMap<Cid, Block>);

impl Blocks {
    fn put(&mut self, b: Block) -> Cid {
        let cid = *b.cid();
        self.0.insert(cid, b);
        cid
    }

    pub(crate) fn node(&self, cid: &Cid) -> Node {
        if let Ok(Some(b)) = Block::from_identity(cid) {
            return Node::from_block(&b).unwrap();
        }
        Node::from_block(&self.0[cid]).unwrap()
    }
}

/// A leaf holding `chunk`; returns (cid, size).
pub(crate) fn leaf(blocks: &mut Blocks, chunk: &[u8], kind: Leaf) -> (Cid, u64) {
    let size = chunk.len() as u64;
    let cid = match kind {
        Leaf::Raw => blocks.put(Block::encode(
            cid::Version::V1,
            codec::RAW,
            Bytes::copy_from_slice(chunk),
        )),
        Leaf::Identity => {
            let mh = multihash::Multihash::<64>::wrap(0, chunk).unwrap();
            Cid::new_v1(codec::RAW, mh)
        }
        Leaf::PbFile | Leaf::PbRaw => {
            let ty = if matches!(kind, Leaf::PbFile) {
                DataType::File
            } else {
                DataType::Raw
            };
            let data = Data {
                r#type: ty as i32,
                data: (!chunk.is_empty()).then(|| Bytes::copy_from_slice(chunk)),
                filesize: Some(size),
                ..Default::default()
            };
            let bytes = encode_pb_node(&[], Some(&data.encode_to_vec()));
            blocks.put(Block::encode(cid::Version::V0, codec::DAG_PB, bytes.into()))
        }
    };
    (cid, size)
}

/// An internal File node with optional inline data over `children` (cid, size).
pub(crate) fn internal(blocks: &mut Blocks, inline: &[u8], children: &[(Cid, u64)]) -> (Cid, u64) {
    let links: Vec<PbLink> = children
        .iter()
        .map(|(cid, size)| PbLink {
            hash: Some(cid.to_bytes()),
            name: Some(String::new()),
            tsize: Some(*size),
        })
        .collect();
    let size = inline.len() as u64 + children.iter().map(|c| c.1).sum::<u64>();
    let data = Data {
        r#type: DataType::File as i32,
        data: (!inline.is_empty()).then(|| Bytes::copy_from_slice(inline)),
        filesize: Some(size),
        blocksizes: children.iter().map(|c| c.1).collect(),
        ..Default::default()
    };
    let bytes = encode_pb_node(&links, Some(&data.encode_to_vec()));
    let b = Block::encode(cid::Version::V0, codec::DAG_PB, bytes.into());
    (blocks.put(b), size)
}

/// A balanced DAG (Kubo's layout) of `data` in `chunk`-byte leaves, `width` links per node.
pub(crate) fn balanced(
    blocks: &mut Blocks,
    data: &[u8],
    chunk: usize,
    width: usize,
    kind: Leaf,
) -> Cid {
    let mut level: Vec<(Cid, u64)> = if data.is_empty() {
        vec![leaf(blocks, &[], kind)]
    } else {
        data.chunks(chunk).map(|c| leaf(blocks, c, kind)).collect()
    };
    while level.len() > 1 {
        level = level
            .chunks(width)
            .map(|group| internal(blocks, &[], group))
            .collect();
    }
    level[0].0
}

/// An arbitrary-shape file DAG (trickle-like or worse): `shape` bytes drive the splits,
/// inline data in internal nodes and mixed leaf kinds. Returns (cid, size).
pub(crate) fn shaped(blocks: &mut Blocks, data: &[u8], shape: &[u8], depth: usize) -> (Cid, u64) {
    let s = |i: usize| shape.get(i % shape.len().max(1)).copied().unwrap_or(0) as usize;
    let kinds = [Leaf::Raw, Leaf::PbFile, Leaf::PbRaw, Leaf::Identity];
    if depth == 0 || data.len() < 4 || s(depth) % 4 == 0 {
        let kind = kinds[s(depth + 1) % 4];
        let kind = if matches!(kind, Leaf::Identity) && data.len() > 64 {
            Leaf::Raw
        } else {
            kind
        };
        return leaf(blocks, data, kind);
    }
    let inline_len = (s(depth + 2) % 3).min(data.len());
    let (inline, rest) = data.split_at(inline_len);
    let parts = 1 + s(depth + 3) % 5;
    let step = rest.len().div_ceil(parts).max(1);
    let children: Vec<(Cid, u64)> = rest
        .chunks(step)
        .enumerate()
        .map(|(i, c)| shaped(blocks, c, &shape[(i + 1).min(shape.len())..], depth - 1))
        .collect();
    internal(blocks, inline, &children)
}

/// Reads `[offset, offset+len)` of `cid` by following `plan_read` recursively; returns the
/// bytes and the number of blocks visited (identity blocks included).
pub(crate) fn read_via_plan(blocks: &Blocks, cid: &Cid, offset: u64, len: u64) -> (Vec<u8>, usize) {
    let Node::File(f) = blocks.node(cid) else {
        panic!("not a file")
    };
    let plan = plan_read(&f, offset, len);
    let mut out = vec![0u8; plan.len as usize];
    out[..plan.inline.len()].copy_from_slice(&f.data[plan.inline.clone()]);
    let mut visited = 1;
    for c in &plan.children {
        let (bytes, n) = read_via_plan(blocks, &c.cid, c.offset, c.len);
        assert_eq!(bytes.len() as u64, c.len);
        out[c.dest as usize..(c.dest + c.len) as usize].copy_from_slice(&bytes);
        visited += n;
    }
    (out, visited)
}
