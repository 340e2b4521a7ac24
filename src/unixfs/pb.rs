//! Wire types of dag-pb (`PBNode`, `PBLink`) and UnixFS (`Data`, `UnixTime`), and the
//! canonical dag-pb encoding Kubo's CIDs depend on (SPECS.md §2.1, §3.2).
//!
//! prost encodes fields in field-number order, which is right for `PBLink` and the UnixFS
//! `Data` message but wrong for `PBNode`: canonical dag-pb puts Links (field 2) before
//! Data (field 1). [`encode_pb_node`] writes that order by hand; decoding accepts both.

use prost::Message;

/// A dag-pb link. Kubo writes all three fields on every link, an empty `name` included.
#[derive(Clone, PartialEq, Message)]
pub struct PbLink {
    /// Binary CID of the target.
    #[prost(bytes = "vec", optional, tag = "1")]
    pub hash: Option<Vec<u8>>,
    /// Entry name (UTF-8 in practice, but kept as bytes-valid string by prost).
    #[prost(string, optional, tag = "2")]
    pub name: Option<String>,
    /// Cumulative serialized size of the linked DAG (a hint only).
    #[prost(uint64, optional, tag = "3")]
    pub tsize: Option<u64>,
}

/// A dag-pb node as decoded (field order on the wire is not preserved).
#[derive(Clone, PartialEq, Message)]
pub struct PbNode {
    /// Opaque payload: for UnixFS, an encoded [`Data`] message.
    #[prost(bytes = "vec", optional, tag = "1")]
    pub data: Option<Vec<u8>>,
    /// Links in traversal order.
    #[prost(message, repeated, tag = "2")]
    pub links: Vec<PbLink>,
}

/// A dag-pb link as the reader decodes it: same wire format as [`PbLink`], but the name
/// kept as raw bytes, since nothing on the wire guarantees UTF-8 (Go writes any bytes).
#[derive(Clone, PartialEq, Message)]
pub struct PbLinkBytes {
    /// Binary CID of the target.
    #[prost(bytes = "vec", optional, tag = "1")]
    pub hash: Option<Vec<u8>>,
    /// Entry name, raw bytes.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub name: Option<Vec<u8>>,
    /// Cumulative serialized size of the linked DAG (a hint only).
    #[prost(uint64, optional, tag = "3")]
    pub tsize: Option<u64>,
}

/// A dag-pb node as the reader decodes it (links with byte names, see [`PbLinkBytes`]).
#[derive(Clone, PartialEq, Message)]
pub struct PbNodeBytes {
    /// Opaque payload: for UnixFS, an encoded [`Data`] message. `Bytes`, so that decoding
    /// from a block's buffer shares it instead of copying (a leaf's file bytes live here).
    #[prost(bytes = "bytes", optional, tag = "1")]
    pub data: Option<bytes::Bytes>,
    /// Links in traversal order.
    #[prost(message, repeated, tag = "2")]
    pub links: Vec<PbLinkBytes>,
}

/// UnixFS node types (the spec text once swaps File and Raw; these are the real numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DataType {
    /// Raw file bytes (trickle leaves in dag-pb mode).
    Raw = 0,
    /// Plain directory.
    Directory = 1,
    /// File (leaf or internal node).
    File = 2,
    /// Metadata (unused).
    Metadata = 3,
    /// Symbolic link; target in `data`.
    Symlink = 4,
    /// HAMT-sharded directory node.
    HamtShard = 5,
}

/// UnixFS 1.5 modification time.
#[derive(Clone, PartialEq, Message)]
pub struct UnixTime {
    /// Seconds since the epoch (plain varint, may be negative).
    #[prost(int64, optional, tag = "1")]
    pub seconds: Option<i64>,
    /// Nanoseconds, 1..=999_999_999 when present.
    #[prost(fixed32, optional, tag = "2")]
    pub fractional_nanoseconds: Option<u32>,
}

/// The UnixFS `Data` message carried in `PbNode.data`.
#[derive(Clone, PartialEq, Message)]
pub struct Data {
    /// Node type (required).
    #[prost(enumeration = "DataType", required, tag = "1")]
    pub r#type: i32,
    /// File bytes, symlink target, or HAMT bitfield (`Bytes`: decoded without a copy).
    #[prost(bytes = "bytes", optional, tag = "2")]
    pub data: Option<bytes::Bytes>,
    /// Total file bytes below this node.
    #[prost(uint64, optional, tag = "3")]
    pub filesize: Option<u64>,
    /// File bytes of each child; Kubo writes them unpacked.
    #[prost(uint64, repeated, packed = "false", tag = "4")]
    pub blocksizes: Vec<u64>,
    /// HAMT hash function (0x22).
    #[prost(uint64, optional, tag = "5")]
    pub hash_type: Option<u64>,
    /// HAMT fanout.
    #[prost(uint64, optional, tag = "6")]
    pub fanout: Option<u64>,
    /// UnixFS 1.5 permission bits.
    #[prost(uint32, optional, tag = "7")]
    pub mode: Option<u32>,
    /// UnixFS 1.5 modification time.
    #[prost(message, optional, tag = "8")]
    pub mtime: Option<UnixTime>,
}

/// Encodes a dag-pb node canonically: every link (Hash, Name, Tsize in that order), then
/// Data if present. Callers sort directory links by name bytes before calling.
pub fn encode_pb_node(links: &[PbLink], data: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        links.iter().map(|l| l.encoded_len() + 4).sum::<usize>() + data.map_or(0, |d| d.len() + 6),
    );
    for link in links {
        prost::encoding::message::encode(2, link, &mut out);
    }
    if let Some(d) = data {
        prost::encoding::bytes::encode(1, &d.to_vec(), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_world_leaf_bytes_match_kubo() {
        let data = Data {
            r#type: DataType::File as i32,
            data: Some(bytes::Bytes::from_static(b"hello world\n")),
            filesize: Some(12),
            ..Default::default()
        };
        let node = encode_pb_node(&[], Some(&data.encode_to_vec()));
        assert_eq!(
            hex::encode(node),
            "0a120802120c68656c6c6f20776f726c640a180c"
        );
    }

    #[test]
    fn links_come_before_data() {
        let link = PbLink {
            hash: Some(vec![1, 2]),
            name: Some(String::new()),
            tsize: Some(3),
        };
        let node = encode_pb_node(&[link], Some(&[8, 1]));
        assert_eq!(
            hex::encode(node),
            "1208 0a020102 1200 1803 0a020801".replace(' ', "")
        );
    }
}
