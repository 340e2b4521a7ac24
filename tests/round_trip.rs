//! Round trip through our own parts: trees imported by `import` into a block store read back
//! through `walk` byte for byte (files whole and in pieces across chunk boundaries, directory
//! listings, symlink targets), for every layout and leaf kind; and a range read fetches only
//! the blocks on its path.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use cid::Cid;
use distfs::import::{add_path, AddFlags, ChunkerSpec, Profile};
use distfs::store::MemStore;
use distfs::walk::{self, CountingStore, Kind};

/// Sizes around the chunk and fan-out boundaries (chunk = 1024 here, so the DAGs get deep
/// without big inputs): empty, one byte, chunk−1/chunk/chunk+1, a full 174-link node ±1,
/// and past two levels.
const SIZES: &[usize] = &[
    0,
    1,
    1023,
    1024,
    1025,
    174 * 1024 - 1,
    174 * 1024,
    174 * 1024 + 1,
    400_000,
];

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

/// A tree with every size above, a symlink, an empty dir, a deep path and a directory big
/// enough to shard (names long enough to pass 256 KiB of link estimate).
fn make_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for (i, size) in SIZES.iter().enumerate() {
        let rel = format!("sizes/f{i}-{size}.bin");
        files.insert(rel, bytes(*size, i as u8));
    }
    files.insert("deep/a/b/c/d/e/f/g/leaf.txt".into(), b"deep\n".to_vec());
    files.insert("names/ünïcödé file.txt".into(), b"unicode\n".to_vec());
    for i in 0..2100 {
        files.insert(format!("big/{i:04}-{}", "n".repeat(100)), vec![b'x'; i % 7]);
    }
    for (rel, data) in &files {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }
    fs::create_dir_all(root.join("empty")).unwrap();
    std::os::unix::fs::symlink("../sizes/f1-1.bin", root.join("names/link")).unwrap();
    files
}

fn import(tree: &Path, flags: AddFlags) -> (MemStore, Cid) {
    let opts = flags.resolve().unwrap();
    let mut store = MemStore::new();
    let root = add_path(tree, &opts, &mut store, &mut |_| {}).unwrap();
    (store, root)
}

async fn check_tree(store: &MemStore, root: &Cid, files: &BTreeMap<String, Vec<u8>>, label: &str) {
    for (rel, want) in files {
        let segs: Vec<&str> = rel.split('/').collect();
        let cid = walk::resolve_path(store, root, &segs).await.unwrap();
        let whole = walk::read_range(store, &cid, 0, want.len() as u64 + 10)
            .await
            .unwrap();
        assert_eq!(&whole[..], &want[..], "{label}: {rel} whole");
        // Pieces that straddle chunk boundaries.
        let mut off = 0usize;
        let mut got = Vec::new();
        while off < want.len() {
            let piece = walk::read_range(store, &cid, off as u64, 777)
                .await
                .unwrap();
            assert!(!piece.is_empty(), "{label}: {rel} short read at {off}");
            got.extend_from_slice(&piece);
            off += piece.len();
        }
        assert_eq!(got, *want, "{label}: {rel} in pieces");
    }
    let big = walk::resolve_path(store, root, &["big"]).await.unwrap();
    let listed = walk::list_dir(store, &big).await.unwrap();
    assert_eq!(listed.len(), 2100, "{label}: big listing");
    let link = walk::resolve_path(store, root, &["names", "link"])
        .await
        .unwrap();
    let stat = walk::stat(store, &link).await.unwrap();
    assert_eq!(stat.kind, Kind::Symlink, "{label}");
    let empty = walk::resolve_path(store, root, &["empty"]).await.unwrap();
    assert!(
        walk::list_dir(store, &empty).await.unwrap().is_empty(),
        "{label}"
    );
}

#[tokio::test]
async fn every_layout_reads_back_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let files = make_tree(&tree);
    let small = Some(ChunkerSpec::Size(1024));
    let cases: Vec<(&str, AddFlags)> = vec![
        (
            "kubo defaults, 1 KiB chunks",
            AddFlags {
                chunker: small,
                ..Default::default()
            },
        ),
        (
            "cidv1 raw leaves",
            AddFlags {
                chunker: small,
                cid_version: Some(1),
                ..Default::default()
            },
        ),
        (
            "trickle",
            AddFlags {
                chunker: small,
                trickle: true,
                ..Default::default()
            },
        ),
        (
            "trickle raw",
            AddFlags {
                chunker: small,
                trickle: true,
                cid_version: Some(1),
                ..Default::default()
            },
        ),
        (
            "buzhash",
            AddFlags {
                chunker: Some(ChunkerSpec::Buzhash),
                ..Default::default()
            },
        ),
        (
            "unixfs-v1-2025",
            AddFlags {
                profile: Some(Profile::UnixfsV1_2025),
                ..Default::default()
            },
        ),
        (
            "mode+mtime",
            AddFlags {
                chunker: small,
                preserve_mode: true,
                preserve_mtime: true,
                ..Default::default()
            },
        ),
    ];
    for (label, flags) in cases {
        let (store, root) = import(&tree, flags);
        let big = walk::resolve_path(&store, &root, &["big"]).await.unwrap();
        let shard = matches!(
            walk::load(&store, &big).await.unwrap(),
            distfs::unixfs::Node::HamtShard(_)
        );
        assert!(
            shard,
            "{label}: the 2,100-entry directory should be HAMT-sharded"
        );
        check_tree(&store, &root, &files, label).await;
    }
}

#[tokio::test]
async fn a_range_read_touches_only_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file.bin");
    // 400,000 bytes in 1 KiB chunks: 391 leaves under a root with 3 internal children.
    fs::write(&path, bytes(400_000, 9)).unwrap();
    let flags = AddFlags {
        chunker: Some(ChunkerSpec::Size(1024)),
        ..Default::default()
    };
    let (store, root) = import(&path, flags);
    let counting = CountingStore::new(store);
    // 100 bytes inside one leaf: root, one internal node, one leaf.
    let got = walk::read_range(&counting, &root, 200_000, 100)
        .await
        .unwrap();
    assert_eq!(&got[..], &bytes(400_000, 9)[200_000..200_100]);
    assert_eq!(counting.total(), 3, "blocks touched: {:?}", counting.log());
    // Across one leaf boundary (1024-aligned): root, internal node, two leaves.
    counting.reset();
    walk::read_range(&counting, &root, 1024 * 200 - 10, 20)
        .await
        .unwrap();
    assert_eq!(counting.total(), 4, "blocks touched: {:?}", counting.log());
}
