//! Unit tests of the async walk over synthetic DAGs: ranged reads against a flat byte
//! vector, laziness (blocks touched), and the errors a lying or hostile DAG must produce.

use bytes::Bytes;
use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::block::codec;
use crate::store::MemStore;
use crate::unixfs::pb::{encode_pb_node, Data, DataType};
use crate::unixfs::testutil::{balanced, internal, leaf, shaped, Blocks, Leaf};

fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 13 + i / 241) as u8).collect()
}

fn store_of(blocks: Blocks) -> CountingStore<MemStore> {
    let store = MemStore::new();
    for b in blocks.0.into_values() {
        store.insert(b);
    }
    CountingStore::new(store)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    #[test]
    fn read_range_matches_flat_bytes(
        size in 0usize..4000,
        shape in proptest::collection::vec(any::<u8>(), 1..16),
        off in 0u64..4200,
        len in 0u64..4200,
    ) {
        let data = bytes(size);
        let mut blocks = Blocks::default();
        let (root, _) = shaped(&mut blocks, &data, &shape, 5);
        let store = store_of(blocks);
        let got = rt().block_on(read_range(&store, &root, off, len)).unwrap();
        let lo = (off as usize).min(size);
        let hi = (off.saturating_add(len) as usize).min(size);
        prop_assert_eq!(&got[..], &data[lo..hi]);
    }
}

#[tokio::test]
async fn range_reads_touch_only_their_leaves() {
    // 2-level balanced DAG: 10 leaves of 100 bytes, 4 per node.
    let data = bytes(1000);
    let mut blocks = Blocks::default();
    let root = balanced(&mut blocks, &data, 100, 4, Leaf::Raw);
    let store = store_of(blocks);
    let got = read_range(&store, &root, 450, 100).await.unwrap();
    assert_eq!(&got[..], &data[450..550]);
    // root, the level-1 node holding leaves 4..8, leaves 4 and 5.
    assert_eq!(store.total(), 4);
    store.reset();
    assert!(read_range(&store, &root, 5000, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.total(), 1, "past EOF: root only");
    let st = stat(&store, &root).await.unwrap();
    assert_eq!((st.kind, st.size), (Kind::File, 1000));
}

#[tokio::test]
async fn cached_reads_decode_internal_nodes_once_and_share_leaf_buffers() {
    // Same 2-level DAG; a sequential reader in 50-byte reads, as the kernel would send.
    let data = bytes(1000);
    let mut blocks = Blocks::default();
    let root = balanced(&mut blocks, &data, 100, 4, Leaf::Raw);
    let store = store_of(blocks);
    let nodes = NodeCache::default();
    for off in (0..1000).step_by(50) {
        let got = read_range_cached(&store, &nodes, &root, off, 50)
            .await
            .unwrap();
        assert_eq!(&got[..], &data[off as usize..off as usize + 50]);
    }
    // Each block once: root + 3 level-1 nodes from the cache after the first use, and each
    // of the 10 leaves twice (two reads per leaf; leaves are not node-cached).
    assert_eq!(store.gets(&root), 1, "root decoded once");
    assert_eq!(store.total(), 1 + 3 + 10 * 2);
    assert_eq!(nodes.len(), 4, "root and the three level-1 nodes");
    // A read inside one leaf is a slice of the block, not a copy.
    let leaf = read_range_cached(&store, &nodes, &root, 120, 30)
        .await
        .unwrap();
    let again = read_range_cached(&store, &nodes, &root, 120, 30)
        .await
        .unwrap();
    assert_eq!(
        leaf.as_ptr(),
        again.as_ptr(),
        "both share the stored block's buffer"
    );
    // Spanning two leaves is assembled, and right.
    let span = read_range_cached(&store, &nodes, &root, 190, 20)
        .await
        .unwrap();
    assert_eq!(&span[..], &data[190..210]);
    // Prefetch touches the same blocks and returns nothing.
    store.reset();
    prefetch_range(&store, &nodes, &root, 400, 300)
        .await
        .unwrap();
    assert_eq!(
        store.total(),
        3,
        "leaves 4, 5 and 6 only: the nodes are cached"
    );
}

#[tokio::test]
async fn oversized_reads_are_refused_before_fetching_children() {
    // A root claiming two children of MAX_READ_LEN bytes each (the children need not exist).
    let mut blocks = Blocks::default();
    let (a, _) = leaf(&mut blocks, b"x", Leaf::Raw);
    let (root, size) = internal(&mut blocks, b"", &[(a, MAX_READ_LEN), (a, MAX_READ_LEN)]);
    assert_eq!(size, 2 * MAX_READ_LEN);
    let store = store_of(blocks);
    let e = read_range(&store, &root, 0, u64::MAX).await.unwrap_err();
    assert!(matches!(e, WalkError::ReadTooLarge { .. }), "{e}");
    assert_eq!(store.total(), 1);
}

#[tokio::test]
async fn lying_blocksizes_and_non_file_children_are_errors() {
    let mut blocks = Blocks::default();
    let (a, _) = leaf(&mut blocks, b"abcd", Leaf::Raw);
    // Parent claims the 4-byte leaf holds 5 bytes.
    let (liar, _) = internal(&mut blocks, b"", &[(a, 5)]);
    let dir = encode_pb_node(
        &[],
        Some(
            &Data {
                r#type: DataType::Directory as i32,
                ..Default::default()
            }
            .encode_to_vec(),
        ),
    );
    let dir = crate::block::Block::encode(cid::Version::V0, codec::DAG_PB, dir.into());
    let dir_cid = *dir.cid();
    blocks.0.insert(dir_cid, dir);
    let (holder, _) = internal(&mut blocks, b"", &[(dir_cid, 0), (a, 4)]);
    let store = store_of(blocks);
    let e = read_range(&store, &liar, 0, 5).await.unwrap_err();
    assert!(
        matches!(
            e,
            WalkError::Unixfs(UnixfsError::ChildSizeMismatch {
                expected: 5,
                actual: 4,
                ..
            })
        ),
        "{e}"
    );
    assert!(e.is_corrupt());
    // A zero-size directory child is not in any non-empty range: the read succeeds...
    assert_eq!(
        &read_range(&store, &holder, 0, 4).await.unwrap()[..],
        b"abcd"
    );
    let e = read_range(&store, &dir_cid, 0, 4).await.unwrap_err();
    assert!(matches!(e, WalkError::NotAFile { .. }), "{e}");
    let e = list_dir(&store, &a).await.unwrap_err();
    assert!(matches!(e, WalkError::NotADirectory { .. }), "{e}");
}

#[tokio::test]
async fn a_dag_deeper_than_the_limit_is_refused() {
    let mut blocks = Blocks::default();
    let (mut top, _) = leaf(&mut blocks, b"x", Leaf::Raw);
    for _ in 0..=MAX_DEPTH {
        top = internal(&mut blocks, b"", &[(top, 1)]).0;
    }
    let store = store_of(blocks);
    let e = read_range(&store, &top, 0, 1).await.unwrap_err();
    assert!(matches!(e, WalkError::TooDeep { .. }), "{e}");
    let (got, end) = collect_car_blocks(&store, top, &[], CarOptions::default()).await;
    assert!(matches!(end, Err(WalkError::TooDeep { .. })));
    assert_eq!(got.len(), MAX_DEPTH + 1);
}

#[tokio::test]
async fn missing_root_is_reported_with_its_cid() {
    let store = MemStore::new();
    let cid =
        *crate::block::Block::encode(cid::Version::V1, codec::RAW, Bytes::from_static(b"nope"))
            .cid();
    let e = read_range(&store, &cid, 0, 1).await.unwrap_err();
    assert_eq!(e.missing_block(), Some(&cid));
    let e = resolve_path(&store, &cid, &["a"]).await.unwrap_err();
    assert_eq!(e.missing_block(), Some(&cid));
}

#[tokio::test]
async fn a_hamt_linking_one_sub_shard_many_times_is_walked_once() {
    use crate::unixfs::pb::PbLink;
    let shard = |links: Vec<PbLink>| {
        let d = Data {
            r#type: DataType::HamtShard as i32,
            hash_type: Some(0x22),
            fanout: Some(256),
            ..Default::default()
        };
        crate::block::Block::encode(
            cid::Version::V0,
            codec::DAG_PB,
            encode_pb_node(&links, Some(&d.encode_to_vec())).into(),
        )
    };
    let to = |c: &crate::block::Block, name: String| PbLink {
        hash: Some(c.cid().to_bytes()),
        name: Some(name),
        tsize: Some(1),
    };
    // 8 levels, each linking the level below from all 256 buckets: 256^8 paths.
    let store = MemStore::new();
    let mut below = shard(vec![]);
    for _ in 0..8 {
        store.insert(below.clone());
        below = shard((0..256).map(|i| to(&below, format!("{i:02X}"))).collect());
    }
    store.insert(below.clone());
    let store = CountingStore::new(store);
    assert!(list_dir(&store, below.cid()).await.unwrap().is_empty());
    assert_eq!(store.total(), 9);
}
