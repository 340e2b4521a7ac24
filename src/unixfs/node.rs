//! Typed UnixFS nodes and the decoder that turns one block's bytes into one of them,
//! checking every structural rule of SPECS.md §2 and §3.6 on the way.

use bytes::Bytes;
use cid::Cid;
use prost::Message;

use super::hamt::{ShardLink, ShardNode};
use super::name::validate_name;
use super::pb::{Data, DataType, PbLinkBytes, PbNodeBytes};
use super::UnixfsError;
use crate::block::{codec, mh, Block, MAX_IDENTITY_SIZE};

/// The most links one node may carry. A 2 MiB block of sha2-256 links (≥ 38 bytes each)
/// cannot exceed ~55k, so this never rejects a real node; it bounds hostile ones.
pub const MAX_LINKS: usize = 65_536;

/// UnixFS 1.5 modification time (only valid ones: see [`Meta`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mtime {
    /// Seconds since the epoch (negative = before 1970).
    pub seconds: i64,
    /// Nanoseconds, 0 when absent on the wire, else 1..=999_999_999.
    pub nanos: u32,
}

/// Optional UnixFS 1.5 metadata.
///
/// `mtime` policy (SPECS §2.3): a `FractionalNanoseconds` of 0 or above 999,999,999, or a
/// missing `Seconds`, makes the mtime invalid; we then treat it as absent (logged), and
/// keep the rest of the node, since mtime is advisory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// The mode exactly as on the wire (upper bits preserved); see [`Meta::perm`].
    pub mode: Option<u32>,
    /// Modification time, if present and valid.
    pub mtime: Option<Mtime>,
}

impl Meta {
    /// Permission bits (mode masked with `0o7777`), if a mode was stored.
    pub fn perm(&self) -> Option<u32> {
        self.mode.map(|m| m & 0o7777)
    }
}

/// A child of a file node: where its bytes sit in the parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileChild {
    /// The child block (a raw leaf, or a dag-pb File/Raw node).
    pub cid: Cid,
    /// File bytes below the child (from the parent's `blocksizes`).
    pub blocksize: u64,
    /// Tsize hint from the link (never used for accounting).
    pub tsize: Option<u64>,
}

/// A file node: a raw block, a dag-pb leaf, or an internal node of a balanced or trickle
/// DAG. Content = `data` followed by each child's content in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileNode {
    /// The block this node came from.
    pub cid: Cid,
    /// Inline file bytes (the whole block for a raw leaf).
    pub data: Bytes,
    /// Children in content order.
    pub children: Vec<FileChild>,
    /// `data.len() + Σ blocksize`, checked against `filesize` when present.
    pub size: u64,
    /// Mode and mtime.
    pub meta: Meta,
}

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DirEntry {
    /// The name, byte-exact as stored (already checked with [`validate_name`]).
    pub name: String,
    /// The entry's root block.
    pub cid: Cid,
    /// Tsize hint from the link.
    pub tsize: Option<u64>,
}

/// A link that was hidden from a listing, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HiddenEntry {
    /// The name as stored.
    pub name: String,
    /// The target.
    pub cid: Cid,
    /// Why it is hidden (hostile name, or a duplicate of an earlier entry).
    pub reason: &'static str,
}

/// A plain (unsharded) directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirNode {
    /// The block this node came from.
    pub cid: Cid,
    /// Entries in link order, hostile names and duplicates removed (first wins).
    pub entries: Vec<DirEntry>,
    /// Entries that were removed, for diagnostics.
    pub hidden: Vec<HiddenEntry>,
    /// Mode and mtime.
    pub meta: Meta,
}

/// A symbolic link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymlinkNode {
    /// The block this node came from.
    pub cid: Cid,
    /// The target path, byte-exact (not interpreted).
    pub target: Bytes,
    /// Mode and mtime.
    pub meta: Meta,
}

/// One decoded UnixFS node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A file (or part of one).
    File(FileNode),
    /// A plain directory.
    Directory(DirNode),
    /// One node of a HAMT-sharded directory.
    HamtShard(ShardNode),
    /// A symbolic link.
    Symlink(SymlinkNode),
}

impl Node {
    /// Decodes one block. Raw codec → a single-block file; dag-pb → the typed node; any
    /// other codec → [`UnixfsError::NotUnixfs`].
    pub fn decode(cid: &Cid, data: &[u8]) -> Result<Node, UnixfsError> {
        match cid.codec() {
            codec::RAW => Ok(raw_file(cid, Bytes::copy_from_slice(data))),
            codec::DAG_PB => decode_dag_pb(cid, Bytes::copy_from_slice(data)),
            other => Err(UnixfsError::NotUnixfs {
                cid: *cid,
                codec: other,
            }),
        }
    }

    /// Like [`Node::decode`], sharing the block's buffer for raw leaves (no copy).
    pub fn from_block(block: &Block) -> Result<Node, UnixfsError> {
        if block.cid().codec() == codec::RAW {
            return Ok(raw_file(block.cid(), block.data().clone()));
        }
        match block.cid().codec() {
            codec::DAG_PB => decode_dag_pb(block.cid(), block.data().clone()),
            _ => Node::decode(block.cid(), block.data()),
        }
    }

    /// The CID of the block this node came from.
    pub fn cid(&self) -> &Cid {
        match self {
            Node::File(n) => &n.cid,
            Node::Directory(n) => &n.cid,
            Node::HamtShard(n) => &n.cid,
            Node::Symlink(n) => &n.cid,
        }
    }

    /// Mode and mtime.
    pub fn meta(&self) -> Meta {
        match self {
            Node::File(n) => n.meta,
            Node::Directory(n) => n.meta,
            Node::HamtShard(n) => n.meta,
            Node::Symlink(n) => n.meta,
        }
    }
}

fn raw_file(cid: &Cid, data: Bytes) -> Node {
    Node::File(FileNode {
        cid: *cid,
        size: data.len() as u64,
        data,
        children: Vec::new(),
        meta: Meta::default(),
    })
}

/// Decodes a dag-pb block; byte fields (a leaf's file bytes) share `bytes`' buffer.
fn decode_dag_pb(cid: &Cid, bytes: Bytes) -> Result<Node, UnixfsError> {
    let pb = PbNodeBytes::decode(bytes).map_err(|e| UnixfsError::Protobuf {
        cid: *cid,
        what: "dag-pb PBNode",
        reason: e.to_string(),
    })?;
    if pb.links.len() > MAX_LINKS {
        return Err(UnixfsError::TooManyLinks {
            cid: *cid,
            count: pb.links.len(),
            max: MAX_LINKS,
        });
    }
    let raw = pb.data.ok_or(UnixfsError::NoData { cid: *cid })?;
    let data = Data::decode(raw).map_err(|e| UnixfsError::Protobuf {
        cid: *cid,
        what: "UnixFS Data",
        reason: e.to_string(),
    })?;
    let links = pb
        .links
        .iter()
        .enumerate()
        .map(|(i, l)| link_cid(cid, i, l))
        .collect::<Result<Vec<Cid>, _>>()?;
    let meta = meta(cid, &data);
    match DataType::try_from(data.r#type) {
        Ok(DataType::File) | Ok(DataType::Raw) => file(cid, data, &pb.links, links, meta),
        Ok(DataType::Directory) => Ok(Node::Directory(directory(cid, &pb.links, links, meta))),
        Ok(DataType::HamtShard) => {
            ShardNode::from_parts(cid, data, &pb.links, links, meta).map(Node::HamtShard)
        }
        Ok(DataType::Symlink) => Ok(Node::Symlink(SymlinkNode {
            cid: *cid,
            target: data.data.unwrap_or_default(),
            meta,
        })),
        Ok(DataType::Metadata) | Err(_) => Err(UnixfsError::UnsupportedType {
            cid: *cid,
            ty: data.r#type,
        }),
    }
}

/// Parses a link's Hash into a CID, refusing identity CIDs over the IPIP-0512 limit.
pub(crate) fn link_cid(parent: &Cid, index: usize, link: &PbLinkBytes) -> Result<Cid, UnixfsError> {
    let bad = |reason: String| UnixfsError::BadLink {
        cid: *parent,
        index,
        reason,
    };
    let hash = link.hash.as_deref().ok_or_else(|| bad("no Hash".into()))?;
    let cid = Cid::try_from(hash).map_err(|e| bad(e.to_string()))?;
    if cid.hash().code() == mh::IDENTITY && cid.hash().digest().len() > MAX_IDENTITY_SIZE {
        return Err(bad(format!(
            "identity CID with {} inline bytes exceeds the {MAX_IDENTITY_SIZE}-byte limit",
            cid.hash().digest().len()
        )));
    }
    Ok(cid)
}

fn meta(cid: &Cid, data: &Data) -> Meta {
    let mtime = data.mtime.as_ref().and_then(|t| match (t.seconds, t.fractional_nanoseconds) {
        (Some(seconds), None) => Some(Mtime { seconds, nanos: 0 }),
        (Some(seconds), Some(n)) if (1..=999_999_999).contains(&n) => {
            Some(Mtime { seconds, nanos: n })
        }
        _ => {
            tracing::warn!(%cid, "ignoring invalid UnixFS mtime (missing seconds or nanos out of 1..=999999999)");
            None
        }
    });
    Meta {
        mode: data.mode,
        mtime,
    }
}

fn file(
    cid: &Cid,
    data: Data,
    pb_links: &[PbLinkBytes],
    links: Vec<Cid>,
    meta: Meta,
) -> Result<Node, UnixfsError> {
    if links.len() != data.blocksizes.len() {
        return Err(UnixfsError::BlocksizesMismatch {
            cid: *cid,
            links: links.len(),
            blocksizes: data.blocksizes.len(),
        });
    }
    let inline = data.data.clone().unwrap_or_default();
    let mut size = inline.len() as u64;
    let mut children = Vec::with_capacity(links.len());
    for (index, ((child, pb), blocksize)) in links
        .into_iter()
        .zip(pb_links)
        .zip(&data.blocksizes)
        .enumerate()
    {
        if let Some(name) = pb.name.as_deref().filter(|n| !n.is_empty()) {
            return Err(UnixfsError::NamedChunkLink {
                cid: *cid,
                index,
                name: String::from_utf8_lossy(name).into_owned(),
            });
        }
        if child.codec() != codec::RAW && child.codec() != codec::DAG_PB {
            return Err(UnixfsError::BadChunkCodec {
                cid: *cid,
                index,
                codec: child.codec(),
            });
        }
        size = size
            .checked_add(*blocksize)
            .ok_or(UnixfsError::SizeOverflow { cid: *cid })?;
        children.push(FileChild {
            cid: child,
            blocksize: *blocksize,
            tsize: pb.tsize,
        });
    }
    if let Some(filesize) = data.filesize {
        if filesize != size {
            return Err(UnixfsError::FilesizeMismatch {
                cid: *cid,
                filesize,
                computed: size,
            });
        }
    }
    Ok(Node::File(FileNode {
        cid: *cid,
        data: inline,
        children,
        size,
        meta,
    }))
}

fn directory(cid: &Cid, pb_links: &[PbLinkBytes], links: Vec<Cid>, meta: Meta) -> DirNode {
    let mut entries: Vec<DirEntry> = Vec::with_capacity(links.len());
    let mut hidden = Vec::new();
    let mut seen = std::collections::HashSet::with_capacity(links.len());
    for (target, pb) in links.into_iter().zip(pb_links) {
        let (name, utf8) = name_of(pb.name.as_deref().unwrap_or_default());
        if let Some(reason) = utf8.err().or_else(|| hide_reason(&name, &mut seen)) {
            tracing::warn!(%cid, name = %name.escape_debug(), reason, "hiding directory entry");
            hidden.push(HiddenEntry {
                name,
                cid: target,
                reason,
            });
            continue;
        }
        entries.push(DirEntry {
            name,
            cid: target,
            tsize: pb.tsize,
        });
    }
    DirNode {
        cid: *cid,
        entries,
        hidden,
        meta,
    }
}

/// A link name as a `String`, and whether it was valid UTF-8 (if not, the lossy form is
/// returned for diagnostics and the entry must be hidden).
pub(crate) fn name_of(raw: &[u8]) -> (String, Result<(), &'static str>) {
    match std::str::from_utf8(raw) {
        Ok(s) => (s.to_owned(), Ok(())),
        Err(_) => (
            String::from_utf8_lossy(raw).into_owned(),
            Err("name is not UTF-8"),
        ),
    }
}

/// Why an entry must be hidden: a hostile name, or a name already seen (first wins).
pub(crate) fn hide_reason(
    name: &str,
    seen: &mut std::collections::HashSet<String>,
) -> Option<&'static str> {
    if let Err(UnixfsError::BadName { reason, .. }) = validate_name(name) {
        return Some(reason);
    }
    if !seen.insert(name.to_owned()) {
        return Some("duplicate name (the first entry wins)");
    }
    None
}

impl ShardNode {
    /// Convenience for tests and tools: the node's links of a given kind.
    pub fn entry_links(&self) -> impl Iterator<Item = &DirEntry> {
        self.links.iter().filter_map(|l| match l {
            ShardLink::Entry { entry, .. } => Some(entry),
            ShardLink::Shard { .. } => None,
        })
    }
}
