//! Unit tests of the pure read side: plan_read on synthetic DAGs (boundary sizes and a
//! property test against a flat byte vector), and one clear error per kind of bad input.

use bytes::Bytes;
use cid::Cid;
use proptest::prelude::*;
use prost::Message;

use super::pb::{encode_pb_node, Data, DataType, PbLink, UnixTime};
use super::testutil::{balanced, internal, leaf, read_via_plan, shaped, Blocks, Leaf};
use super::*;
use crate::block::{codec, Block, BlockError, MAX_BLOCK_SIZE};

fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn pb(links: &[PbLink], data: &Data) -> Block {
    let bytes = encode_pb_node(links, Some(&data.encode_to_vec()));
    Block::encode(cid::Version::V0, codec::DAG_PB, bytes.into())
}

fn decode(b: &Block) -> Result<Node, UnixfsError> {
    Node::decode(b.cid(), b.data())
}

fn link(cid: &Cid, name: &str) -> PbLink {
    PbLink {
        hash: Some(cid.to_bytes()),
        name: Some(name.to_owned()),
        tsize: Some(1),
    }
}

fn raw(data: &[u8]) -> Cid {
    *Block::encode(cid::Version::V1, codec::RAW, Bytes::copy_from_slice(data)).cid()
}

fn dir_data() -> Data {
    Data {
        r#type: DataType::Directory as i32,
        ..Default::default()
    }
}

fn shard_data(fanout: Option<u64>, hash_type: Option<u64>) -> Data {
    Data {
        r#type: DataType::HamtShard as i32,
        hash_type,
        fanout,
        ..Default::default()
    }
}

const CHUNK: usize = 256;
const WIDTH: usize = 174;

/// Each size exercises one layout edge: empty file (single empty leaf), 1 byte, a short
/// leaf, exactly one leaf (root = leaf), one leaf + 1 byte (first internal node), a full
/// 174-link node −1/±0/+1 byte (the last leaf short; exactly full; the first 2-level
/// tree with a 1-leaf second subtree), and two full level-1 nodes.
const SIZES: [usize; 9] = [
    0,
    1,
    CHUNK - 1,
    CHUNK,
    CHUNK + 1,
    WIDTH * CHUNK - 1,
    WIDTH * CHUNK,
    WIDTH * CHUNK + 1,
    2 * WIDTH * CHUNK,
];

#[test]
fn plan_read_boundary_table() {
    for kind in [Leaf::Raw, Leaf::PbFile, Leaf::PbRaw] {
        for size in SIZES {
            let data = bytes(size);
            let mut blocks = Blocks::default();
            let root = balanced(&mut blocks, &data, CHUNK, WIDTH, kind);
            let Node::File(f) = blocks.node(&root) else {
                panic!()
            };
            assert_eq!(f.size, size as u64, "{kind:?} {size}");
            let s = size as u64;
            let c = CHUNK as u64;
            // (offset, len) pairs: whole, first byte, last byte, across the first chunk
            // boundary, across the 174-leaf boundary, at/after EOF, huge len.
            for (off, len) in [
                (0, s),
                (0, 1),
                (s.saturating_sub(1), 1),
                (c - 1, 2),
                (WIDTH as u64 * c - 1, 2),
                (s, 10),
                (s + 5, 10),
                (1, u64::MAX),
            ] {
                let (got, visited) = read_via_plan(&blocks, &root, off, len);
                let lo = (off as usize).min(size);
                let hi = (off.saturating_add(len) as usize).min(size);
                assert_eq!(got, &data[lo..hi], "{kind:?} size {size} range {off}+{len}");
                // Exactly the root, the level-1 nodes and the leaves that intersect the
                // range are visited: nothing else.
                if lo < hi {
                    let span = |unit: usize| (hi - 1) / unit - lo / unit + 1;
                    let want = if size <= CHUNK {
                        1
                    } else if size <= WIDTH * CHUNK {
                        1 + span(CHUNK)
                    } else {
                        1 + span(WIDTH * CHUNK) + span(CHUNK)
                    };
                    assert_eq!(visited, want, "{kind:?} size {size} range {off}+{len}");
                } else {
                    assert_eq!(visited, 1);
                }
            }
        }
    }
}

#[test]
fn plan_read_uses_blocksizes_only() {
    // A single-leaf range in a 3-leaf node names exactly that child, no other.
    let mut blocks = Blocks::default();
    let kids: Vec<(Cid, u64)> = [b"aaaa".as_slice(), b"bbbb", b"cc"]
        .iter()
        .map(|c| leaf(&mut blocks, c, Leaf::Raw))
        .collect();
    let (root, _) = internal(&mut blocks, b"xy", &kids);
    let Node::File(f) = blocks.node(&root) else {
        panic!()
    };
    let p = plan_read(&f, 1, 3);
    assert_eq!(p.inline, 1..2);
    assert_eq!(p.children.len(), 1);
    assert_eq!(
        (
            p.children[0].index,
            p.children[0].offset,
            p.children[0].len,
            p.children[0].dest
        ),
        (0, 0, 2, 1)
    );
    let p = plan_read(&f, 7, 100);
    assert_eq!(p.len, 5);
    assert!(p.inline.is_empty());
    let got: Vec<_> = p
        .children
        .iter()
        .map(|c| (c.index, c.offset, c.len, c.dest))
        .collect();
    assert_eq!(got, [(1, 1, 3, 0), (2, 0, 2, 3)]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn plan_read_matches_flat_bytes(
        size in 0usize..3000,
        shape in proptest::collection::vec(any::<u8>(), 1..16),
        off in 0u64..3200,
        len in 0u64..3200,
    ) {
        let data = bytes(size);
        let mut blocks = Blocks::default();
        let (root, total) = shaped(&mut blocks, &data, &shape, 4);
        prop_assert_eq!(total, size as u64);
        let (got, _) = read_via_plan(&blocks, &root, off, len);
        let lo = (off as usize).min(size);
        let hi = (off.saturating_add(len) as usize).min(size);
        prop_assert_eq!(&got[..], &data[lo..hi]);
    }
}

#[test]
fn byte_range_resolution() {
    let r = |s: &str| ByteRange::from_str_checked(s);
    assert_eq!(r("0:0").resolve(10), Some((0, 1)));
    assert_eq!(r("0:*").resolve(10), Some((0, 10)));
    assert_eq!(r("-3:*").resolve(10), Some((7, 3)));
    assert_eq!(r("-30:*").resolve(10), Some((0, 10)));
    assert_eq!(r("2:-3").resolve(10), Some((2, 6)));
    assert_eq!(r("5:100").resolve(10), Some((5, 5)));
    assert_eq!(r("10:*").resolve(10), None);
    assert_eq!(r("5:4").resolve(10), None);
    assert_eq!(r("0:*").resolve(0), None);
    assert!("5".parse::<ByteRange>().is_err());
    assert!("a:*".parse::<ByteRange>().is_err());
    assert!("1:b".parse::<ByteRange>().is_err());
}

impl ByteRange {
    fn from_str_checked(s: &str) -> ByteRange {
        s.parse().unwrap()
    }
}

#[test]
fn garbage_and_truncated_protobuf_are_clear_errors() {
    let good = pb(&[link(&raw(b"x"), "x")], &dir_data());
    for cut in 1..good.data().len() {
        let b = Block::encode(cid::Version::V0, codec::DAG_PB, good.data().slice(..cut));
        // Some prefixes are themselves valid (e.g. links only, no Data); none may panic.
        if let Err(e) = decode(&b) {
            assert!(
                matches!(e, UnixfsError::Protobuf { .. } | UnixfsError::NoData { .. }),
                "{e}"
            );
        }
    }
    let junk = Block::encode(
        cid::Version::V0,
        codec::DAG_PB,
        Bytes::from_static(&[0xff; 9]),
    );
    assert!(matches!(decode(&junk), Err(UnixfsError::Protobuf { .. })));
    // Valid dag-pb, not UnixFS.
    let empty = Block::encode(cid::Version::V0, codec::DAG_PB, Bytes::new());
    assert!(matches!(decode(&empty), Err(UnixfsError::NoData { .. })));
    let bad_data = Block::encode(
        cid::Version::V0,
        codec::DAG_PB,
        encode_pb_node(&[], Some(&[0xff, 0xff])).into(),
    );
    assert!(matches!(
        decode(&bad_data),
        Err(UnixfsError::Protobuf {
            what: "UnixFS Data",
            ..
        })
    ));
    let meta = pb(
        &[],
        &Data {
            r#type: DataType::Metadata as i32,
            ..Default::default()
        },
    );
    assert!(matches!(
        decode(&meta),
        Err(UnixfsError::UnsupportedType { ty: 3, .. })
    ));
    let unknown = pb(
        &[],
        &Data {
            r#type: 42,
            ..Default::default()
        },
    );
    assert!(matches!(
        decode(&unknown),
        Err(UnixfsError::UnsupportedType { ty: 42, .. })
    ));
}

#[test]
fn non_utf8_entry_names_are_hidden_not_fatal() {
    // Go writes names as arbitrary bytes; one bad name must not hide its siblings.
    let patch = |mut bytes: Vec<u8>, marker: &[u8]| {
        let at = bytes
            .windows(marker.len())
            .position(|w| w == marker)
            .unwrap();
        bytes[at] = 0xff;
        Block::encode(cid::Version::V0, codec::DAG_PB, bytes.into())
    };
    let links = [link(&raw(b"x"), "ab"), link(&raw(b"y"), "ok")];
    let dir = patch(
        encode_pb_node(&links, Some(&dir_data().encode_to_vec())),
        b"ab",
    );
    let Node::Directory(d) = decode(&dir).unwrap() else {
        panic!()
    };
    assert_eq!(d.entries.len(), 1);
    assert_eq!(d.entries[0].name, "ok");
    assert_eq!(d.hidden[0].reason, "name is not UTF-8");
    let links = [link(&raw(b"x"), "00ab"), link(&raw(b"y"), "01ok")];
    let data = shard_data(Some(256), Some(0x22)).encode_to_vec();
    let shard = patch(encode_pb_node(&links, Some(&data)), b"ab");
    let Node::HamtShard(s) = decode(&shard).unwrap() else {
        panic!()
    };
    assert_eq!(s.listing().0.len(), 1);
    assert_eq!(s.hidden.len(), 1);
    // In a file, a non-UTF-8 chunk name is still a named chunk link: an error.
    let f = Data {
        r#type: DataType::File as i32,
        blocksizes: vec![1],
        ..Default::default()
    };
    let file = patch(
        encode_pb_node(&[link(&raw(b"x"), "ab")], Some(&f.encode_to_vec())),
        b"ab",
    );
    assert!(matches!(
        decode(&file),
        Err(UnixfsError::NamedChunkLink { .. })
    ));
}

#[test]
fn other_codecs_are_not_unixfs() {
    let b = Block::encode(
        cid::Version::V1,
        codec::DAG_CBOR,
        Bytes::from_static(&[0xa0]),
    );
    let e = decode(&b).unwrap_err();
    assert!(e.is_not_unixfs(), "{e}");
}

#[test]
fn file_structure_errors() {
    let child = raw(b"abcd");
    let file = |links: Vec<PbLink>, blocksizes: Vec<u64>, filesize: Option<u64>| {
        pb(
            &links,
            &Data {
                r#type: DataType::File as i32,
                filesize,
                blocksizes,
                ..Default::default()
            },
        )
    };
    let e = decode(&file(vec![link(&child, "")], vec![], None)).unwrap_err();
    assert!(
        matches!(
            e,
            UnixfsError::BlocksizesMismatch {
                links: 1,
                blocksizes: 0,
                ..
            }
        ),
        "{e}"
    );
    let e = decode(&file(vec![link(&child, "")], vec![4], Some(5))).unwrap_err();
    assert!(
        matches!(
            e,
            UnixfsError::FilesizeMismatch {
                filesize: 5,
                computed: 4,
                ..
            }
        ),
        "{e}"
    );
    let e = decode(&file(vec![link(&child, "name")], vec![4], Some(4))).unwrap_err();
    assert!(
        matches!(e, UnixfsError::NamedChunkLink { index: 0, .. }),
        "{e}"
    );
    let cbor = *Block::encode(
        cid::Version::V1,
        codec::DAG_CBOR,
        Bytes::from_static(&[0xa0]),
    )
    .cid();
    let e = decode(&file(vec![link(&cbor, "")], vec![1], None)).unwrap_err();
    assert!(matches!(e, UnixfsError::BadChunkCodec { .. }), "{e}");
    let e = decode(&file(
        vec![link(&child, ""), link(&child, "")],
        vec![u64::MAX, 1],
        None,
    ))
    .unwrap_err();
    assert!(matches!(e, UnixfsError::SizeOverflow { .. }), "{e}");
    // Absent filesize is computed; absent name and "" are both fine.
    let mut unnamed = link(&child, "");
    unnamed.name = None;
    match decode(&file(vec![unnamed], vec![4], None)).unwrap() {
        Node::File(f) => assert_eq!(f.size, 4),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_links_are_clear_errors() {
    let mut no_hash = link(&raw(b"x"), "x");
    no_hash.hash = None;
    let e = decode(&pb(&[no_hash], &dir_data())).unwrap_err();
    assert!(matches!(e, UnixfsError::BadLink { index: 0, .. }), "{e}");
    let mut junk = link(&raw(b"x"), "x");
    junk.hash = Some(vec![0x01, 0x55, 0x12, 0x20, 0x00]);
    let e = decode(&pb(&[junk], &dir_data())).unwrap_err();
    assert!(matches!(e, UnixfsError::BadLink { .. }), "{e}");
    let big = multihash::Multihash::<256>::wrap(0, &[7u8; 129]).unwrap();
    let mut ident = link(&raw(b"x"), "x");
    let mut bytes = vec![0x01, 0x55];
    bytes.extend(big.to_bytes());
    ident.hash = Some(bytes);
    let e = decode(&pb(&[ident], &dir_data())).unwrap_err();
    // `cid::Cid` holds at most a 64-byte digest, so this fails while parsing the CID (and
    // identity CIDs of 65..=128 bytes, legal per IPIP-0512, are refused too: see report).
    assert!(matches!(e, UnixfsError::BadLink { .. }), "{e}");
    let many: Vec<PbLink> = (0..MAX_LINKS + 1).map(|_| link(&raw(b""), "")).collect();
    let b = Block::encode(
        cid::Version::V0,
        codec::DAG_PB,
        encode_pb_node(&many, Some(&dir_data().encode_to_vec())).into(),
    );
    let e = decode(&b).unwrap_err();
    assert!(matches!(e, UnixfsError::TooManyLinks { .. }), "{e}");
}

#[test]
fn hostile_and_duplicate_directory_names_are_hidden() {
    let a = raw(b"a");
    let b = raw(b"b");
    let long = "x".repeat(256);
    let names = ["ok", "", ".", "..", "a/b", "nul\0", long.as_str(), "ok"];
    let links: Vec<PbLink> = names
        .iter()
        .map(|n| link(if *n == "ok" { &a } else { &b }, n))
        .collect();
    let Node::Directory(d) = decode(&pb(&links, &dir_data())).unwrap() else {
        panic!()
    };
    assert_eq!(d.entries.len(), 1);
    assert_eq!(
        (d.entries[0].name.as_str(), d.entries[0].cid),
        ("ok", a),
        "first wins"
    );
    assert_eq!(d.hidden.len(), 7);
    assert!(d.hidden.last().unwrap().reason.contains("duplicate"));
}

#[test]
fn wrong_hash_and_oversize_blocks_are_refused() {
    let b = raw(b"hello");
    let e = Block::verified(b, Bytes::from_static(b"hellO")).unwrap_err();
    assert!(matches!(e, BlockError::HashMismatch { .. }));
    let big = Bytes::from(vec![0u8; MAX_BLOCK_SIZE + 1]);
    let cid = *Block::encode(cid::Version::V1, codec::RAW, big.clone()).cid();
    assert!(matches!(
        Block::verified(cid, big),
        Err(BlockError::TooLarge { .. })
    ));
}

#[test]
fn mode_is_masked_and_zero_nanos_mtime_is_ignored() {
    let node = |mtime: UnixTime| {
        pb(
            &[],
            &Data {
                r#type: DataType::Directory as i32,
                mode: Some(0o1_777_755 | 0xfff0_0000),
                mtime: Some(mtime),
                ..Default::default()
            },
        )
    };
    let m = decode(&node(UnixTime {
        seconds: Some(-5),
        fractional_nanoseconds: Some(0),
    }))
    .unwrap()
    .meta();
    assert_eq!(m.perm(), Some(0o7755));
    assert_eq!(m.mtime, None, "nanos = 0 on the wire is invalid");
    let m = decode(&node(UnixTime {
        seconds: Some(-5),
        fractional_nanoseconds: Some(7),
    }))
    .unwrap()
    .meta();
    assert_eq!(
        m.mtime,
        Some(Mtime {
            seconds: -5,
            nanos: 7
        })
    );
    let m = decode(&node(UnixTime {
        seconds: Some(9),
        fractional_nanoseconds: None,
    }))
    .unwrap()
    .meta();
    assert_eq!(
        m.mtime,
        Some(Mtime {
            seconds: 9,
            nanos: 0
        })
    );
    let m = decode(&node(UnixTime {
        seconds: None,
        fractional_nanoseconds: Some(7),
    }))
    .unwrap()
    .meta();
    assert_eq!(m.mtime, None);
}

mod hamt;
