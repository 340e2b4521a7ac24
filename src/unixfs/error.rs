//! `UnixfsError`: everything that can be wrong with a block read as UnixFS.

use cid::Cid;

/// Why a block is not usable UnixFS. Every variant names the block; most say which
/// field or link is at fault. All of these mean "the DAG is wrong, not the network":
/// refetching the same CID yields the same bytes, so callers should not retry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnixfsError {
    /// The block's codec is neither dag-pb nor raw (e.g. dag-cbor): it is IPLD data, not a
    /// UnixFS file or directory. Show it as an "other" object; do not try to read it.
    #[error("block {cid}: codec {codec:#x} is not UnixFS (only dag-pb 0x70 and raw 0x55 are)")]
    NotUnixfs { cid: Cid, codec: u64 },
    /// The dag-pb or UnixFS protobuf does not decode.
    #[error("block {cid}: malformed {what} protobuf: {reason}")]
    Protobuf {
        cid: Cid,
        what: &'static str,
        reason: String,
    },
    /// A dag-pb node without a UnixFS `Data` field (valid dag-pb, not UnixFS).
    #[error("block {cid}: dag-pb node has no UnixFS Data field")]
    NoData { cid: Cid },
    /// The UnixFS type is one we cannot read (Metadata, or an unknown number).
    #[error("block {cid}: unsupported UnixFS type {ty}")]
    UnsupportedType { cid: Cid, ty: i32 },
    /// A link has no Hash, or its Hash is not a valid binary CID.
    #[error("block {cid}: link {index} has a missing or invalid Hash: {reason}")]
    BadLink {
        cid: Cid,
        index: usize,
        reason: String,
    },
    /// More links than [`super::MAX_LINKS`].
    #[error("block {cid}: {count} links exceeds the limit of {max}")]
    TooManyLinks { cid: Cid, count: usize, max: usize },
    /// A File node whose `blocksizes` does not pair up with its links.
    #[error("file {cid}: {links} links but {blocksizes} blocksizes")]
    BlocksizesMismatch {
        cid: Cid,
        links: usize,
        blocksizes: usize,
    },
    /// A File node whose `filesize` disagrees with its inline data plus its blocksizes.
    #[error("file {cid}: filesize {filesize} but inline data + blocksizes = {computed}")]
    FilesizeMismatch {
        cid: Cid,
        filesize: u64,
        computed: u64,
    },
    /// A file chunk link carries a name (chunk links must be unnamed).
    #[error("file {cid}: chunk link {index} has a name {name:?} (file chunks are unnamed)")]
    NamedChunkLink {
        cid: Cid,
        index: usize,
        name: String,
    },
    /// A file chunk that is not dag-pb or raw.
    #[error("file {cid}: chunk link {index} uses codec {codec:#x} (must be dag-pb or raw)")]
    BadChunkCodec { cid: Cid, index: usize, codec: u64 },
    /// A child's actual size differs from what its parent's `blocksizes` promised.
    #[error("file {parent}: child {child} holds {actual} bytes but blocksizes says {expected}")]
    ChildSizeMismatch {
        parent: Cid,
        child: Cid,
        expected: u64,
        actual: u64,
    },
    /// A child of a file is not a file (a directory, symlink or HAMT shard).
    #[error("file {parent}: child {child} is not a file chunk")]
    ChildNotFile { parent: Cid, child: Cid },
    /// Sizes overflow 64 bits.
    #[error("file {cid}: sizes overflow")]
    SizeOverflow { cid: Cid },
    /// A HAMT shard with a hash function other than murmur3-x64-64 (0x22).
    #[error("HAMT shard {cid}: hashType {hash_type:?} is not murmur3-x64-64 (0x22)")]
    BadHashType { cid: Cid, hash_type: Option<u64> },
    /// A HAMT shard with an impossible fanout (must be a power of two, a multiple of 8
    /// and at most 1024: CVE-2023-23625).
    #[error("HAMT shard {cid}: fanout {fanout:?} is not a power of two in 8..=1024")]
    BadFanout { cid: Cid, fanout: Option<u64> },
    /// A HAMT bitfield longer than fanout/8 bytes.
    #[error("HAMT shard {cid}: bitfield of {len} bytes is longer than fanout/8 = {max}")]
    BadBitfield { cid: Cid, len: usize, max: usize },
    /// A HAMT link whose name does not start with a valid bucket prefix.
    #[error("HAMT shard {cid}: link {index} name {name:?} has no valid {width}-digit uppercase hex bucket prefix below the fanout")]
    BadShardLinkName {
        cid: Cid,
        index: usize,
        name: String,
        width: usize,
    },
    /// A HAMT lookup ran out of hash bits (more levels than 64 bits allow).
    #[error("HAMT shard {cid}: lookup of {name:?} needs more than 64 hash bits (DAG too deep)")]
    HamtTooDeep { cid: Cid, name: String },
    /// A name that may never be used as a path component.
    #[error("invalid name {name:?}: {reason}")]
    BadName { name: String, reason: &'static str },
}

impl UnixfsError {
    /// True for `NotUnixfs`: the block is fine, it just is not UnixFS (show as "other").
    pub fn is_not_unixfs(&self) -> bool {
        matches!(self, UnixfsError::NotUnixfs { .. })
    }
}
