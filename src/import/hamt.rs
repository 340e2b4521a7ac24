//! HAMT-sharded directory writer, as boxo `hamt/hamt.go` serializes it (SPECS.md §3.6).
//!
//! Hash: murmur3 x64_128 `h1`, big-endian; `log2(fanout)` bits per level, MSB first. A bucket
//! holds one entry, or a sub-shard when two or more names share its prefix; with no removals
//! the shape depends only on the set of names. Links are written in bucket order: entries as
//! `HEX(idx) ‖ name` with the entry's CID and Tsize, sub-shards as `HEX(idx)` with cumulative
//! Tsize; HEX is uppercase, zero-padded to the width of `HEX(fanout − 1)`. Every shard's Data
//! is `{Type=HAMTShard, Data=bitfield, hashType=0x22, fanout}`; the bitfield is the
//! big-endian integer with bit `idx` set for each used bucket, leading zero bytes stripped.
//! Mode/mtime, when asked for, go on the root shard only (UNVERIFIED against Kubo).

use std::collections::BTreeMap;

use bytes::Bytes;
use prost::Message;

use super::dir::{DirEntry, DirNode};
use crate::unixfs::murmur3_x64_64;

/// The HAMT hash of a name: h1 as 8 big-endian bytes (what boxo's `hash.Sum(nil)` gives).
fn hamt_hash(name: &[u8]) -> [u8; 8] {
    murmur3_x64_64(name).to_be_bytes()
}
use super::{BlockSink, ImportError, ImportOptions, Metadata};
use crate::block::{codec, Block, MAX_BLOCK_SIZE};
use crate::unixfs::pb::{encode_pb_node, Data, DataType, PbLink};

/// Multicodec of the HAMT hash function (murmur3-x64-64).
pub const HASH_TYPE_MURMUR3: u64 = 0x22;

enum Slot {
    Entry(usize),
    Shard(Shard),
}

#[derive(Default)]
struct Shard {
    slots: BTreeMap<usize, Slot>,
}

/// Builds the HAMT for `entries` (sorted, unique names) and writes every shard to `sink`.
pub fn build_hamt<S: BlockSink + ?Sized>(
    entries: &[DirEntry],
    meta: &Metadata,
    opts: &ImportOptions,
    sink: &mut S,
) -> Result<DirNode, ImportError> {
    let fanout = opts.hamt.fanout;
    if !(8..=1024).contains(&fanout) || !fanout.is_power_of_two() {
        return Err(ImportError::InvalidOptions(format!(
            "HAMT fanout {fanout} must be a power of two between 8 and 1024"
        )));
    }
    let bits = fanout.trailing_zeros() as usize;
    let hashes: Vec<[u8; 8]> = entries
        .iter()
        .map(|e| hamt_hash(e.name.as_bytes()))
        .collect();
    let mut root = Shard::default();
    for i in 0..entries.len() {
        insert(&mut root, i, 0, bits, &hashes, entries)?;
    }
    let pad = format!("{:X}", fanout - 1).len();
    let w = Writer {
        entries,
        fanout,
        pad,
        opts,
    };
    let (cid, tsize) = w.write(&root, Some(meta), sink)?;
    Ok(DirNode {
        cid,
        tsize,
        sharded: true,
    })
}

/// Bucket index of `hash` at `depth`, or `None` when the 64 bits are used up.
fn index(hash: &[u8; 8], depth: usize, bits: usize) -> Option<usize> {
    let start = depth * bits;
    if start + bits > 64 {
        return None;
    }
    let v = u64::from_be_bytes(*hash);
    Some(((v << start) >> (64 - bits)) as usize)
}

fn insert(
    shard: &mut Shard,
    i: usize,
    depth: usize,
    bits: usize,
    hashes: &[[u8; 8]],
    entries: &[DirEntry],
) -> Result<(), ImportError> {
    let too_deep = |j: usize| ImportError::HamtTooDeep {
        first: entries.get(j).map(|e| e.name.clone()).unwrap_or_default(),
        second: entries.get(i).map(|e| e.name.clone()).unwrap_or_default(),
    };
    let idx = index(&hashes[i], depth, bits).ok_or_else(|| too_deep(i))?;
    match shard.slots.remove(&idx) {
        None => {
            shard.slots.insert(idx, Slot::Entry(i));
        }
        Some(Slot::Entry(j)) => {
            let mut child = Shard::default();
            insert(&mut child, j, depth + 1, bits, hashes, entries)?;
            insert(&mut child, i, depth + 1, bits, hashes, entries)?;
            shard.slots.insert(idx, Slot::Shard(child));
        }
        Some(Slot::Shard(mut child)) => {
            insert(&mut child, i, depth + 1, bits, hashes, entries)?;
            shard.slots.insert(idx, Slot::Shard(child));
        }
    }
    Ok(())
}

struct Writer<'a> {
    entries: &'a [DirEntry],
    fanout: usize,
    pad: usize,
    opts: &'a ImportOptions,
}

impl Writer<'_> {
    fn write<S: BlockSink + ?Sized>(
        &self,
        shard: &Shard,
        meta: Option<&Metadata>,
        sink: &mut S,
    ) -> Result<(cid::Cid, u64), ImportError> {
        let mut links = Vec::with_capacity(shard.slots.len());
        let mut child_tsize = 0u64;
        let mut bitfield = vec![0u8; self.fanout / 8];
        for (&idx, slot) in &shard.slots {
            let last = bitfield.len() - 1;
            if let Some(byte) = bitfield.get_mut(last - idx / 8) {
                *byte |= 1 << (idx % 8);
            }
            let prefix = format!("{:0width$X}", idx, width = self.pad);
            let (name, cid, tsize) = match slot {
                Slot::Entry(i) => {
                    let e = &self.entries[*i];
                    (format!("{prefix}{}", e.name), e.cid, e.tsize)
                }
                Slot::Shard(child) => {
                    let (cid, tsize) = self.write(child, None, sink)?;
                    (prefix, cid, tsize)
                }
            };
            child_tsize += tsize;
            links.push(PbLink {
                hash: Some(cid.to_bytes()),
                name: Some(name),
                tsize: Some(tsize),
            });
        }
        let first_nonzero = bitfield
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(bitfield.len());
        let mut ud = Data {
            r#type: DataType::HamtShard as i32,
            data: Some(bitfield.split_off(first_nonzero).into()),
            hash_type: Some(HASH_TYPE_MURMUR3),
            fanout: Some(self.fanout as u64),
            ..Default::default()
        };
        if let Some(m) = meta {
            m.apply(&mut ud);
        }
        let bytes = encode_pb_node(&links, Some(&ud.encode_to_vec()));
        if bytes.len() > MAX_BLOCK_SIZE {
            return Err(ImportError::BlockTooLarge {
                kind: "HAMT shard",
                size: bytes.len(),
                max: MAX_BLOCK_SIZE,
            });
        }
        let block = Block::encode(self.opts.cid_version, codec::DAG_PB, Bytes::from(bytes));
        let out = (*block.cid(), block.data().len() as u64 + child_tsize);
        sink.put(block)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_takes_msb_first_bits() {
        let h = hamt_hash(b"470.txt"); // 006e88df5847e67c
        assert_eq!(index(&h, 0, 8), Some(0x00));
        assert_eq!(index(&h, 1, 8), Some(0x6e));
        assert_eq!(index(&h, 7, 8), Some(0x7c));
        assert_eq!(index(&h, 8, 8), None);
        // fanout 16: nibbles.
        assert_eq!(index(&h, 2, 4), Some(0x6));
        assert_eq!(index(&h, 3, 4), Some(0xe));
    }
}
