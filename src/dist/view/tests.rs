//! Unit tests of the view: lookups answered from a cached listing.

use super::*;
use crate::import::{add_path, ImportOptions};
use crate::store::MemStore;

/// After a listing, lookups are answered from it, the same as through the DAG.
#[tokio::test]
async fn lookups_in_a_listed_directory_come_from_the_listing() {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = tmp.path().join("dist/proj/v1");
    std::fs::create_dir_all(&v1).unwrap();
    for (name, body) in [("a.txt", "a\n"), ("b.sh", "#!/bin/sh\n"), ("c", "cc\n")] {
        std::fs::write(v1.join(name), body).unwrap();
    }
    let mut store = MemStore::new();
    let opts = ImportOptions::default();
    let root = add_path(&tmp.path().join("dist"), &opts, &mut store, &mut |_| {}).unwrap();
    let view = DistView::new(Arc::new(store), root, Duration::from_secs(30));
    let proj = view.lookup(ROOT_INO, "proj").await.unwrap();
    let v1 = view.lookup(proj.ino, "v1").await.unwrap();
    assert!(
        view.lookup_listed(v1.ino, "a.txt").is_none(),
        "not listed yet"
    );
    let listing = view.readdir(v1.ino).await.unwrap();
    assert_eq!(listing.len(), 3);
    for e in listing.iter() {
        let listed = view.lookup_listed(v1.ino, &e.name).unwrap().unwrap();
        let looked_up = view.lookup(v1.ino, &e.name).await.unwrap();
        for (a, b) in [(&listed, &e.inode), (&looked_up, &e.inode)] {
            assert_eq!(
                (a.ino, a.cid, a.size, a.perm),
                (b.ino, b.cid, b.size, b.perm)
            );
        }
    }
    assert!(matches!(
        view.lookup_listed(v1.ino, "b"),
        Some(Err(ViewError::NotFound { .. }))
    ));
    assert!(matches!(
        view.lookup(v1.ino, "zz").await,
        Err(ViewError::NotFound { .. })
    ));
    // The root is a union of projects: never answered from its listing.
    view.readdir(ROOT_INO).await.unwrap();
    assert!(view.lookup_listed(ROOT_INO, "proj").is_none());
}

/// A sequential reader's readahead also brings in the DAG one window past the window it
/// tops up, so that the next top-up does not first wait a round trip for the internal node
/// above its leaves: with 4 links per node, the leaf two windows on has been asked for (the
/// scout reads one byte there), and the leaf before it has not.
#[tokio::test]
async fn readahead_scouts_the_dag_one_window_past_its_window() {
    const CHUNK: usize = 256 * 1024;
    const MIB: u64 = 1024 * 1024;
    let tmp = tempfile::tempdir().unwrap();
    let v1 = tmp.path().join("dist/proj/v1");
    std::fs::create_dir_all(&v1).unwrap();
    // 24 MiB of distinct chunks, so that each leaf has its own CID.
    let chunk = |i: usize| -> Vec<u8> {
        let mut c = vec![(i % 251) as u8; CHUNK];
        c[..8].copy_from_slice(&(i as u64).to_le_bytes());
        c
    };
    let body: Vec<u8> = (0..96).flat_map(chunk).collect();
    std::fs::write(v1.join("big.bin"), &body).unwrap();
    let mut store = MemStore::new();
    let opts = ImportOptions {
        raw_leaves: true,
        cid_version: cid::Version::V1,
        chunker: crate::import::ChunkerSpec::Size(CHUNK),
        max_links: 4,
        ..ImportOptions::default()
    };
    let root = add_path(&tmp.path().join("dist"), &opts, &mut store, &mut |_| {}).unwrap();
    let counting = Arc::new(crate::walk::CountingStore::new(store));
    let view = DistView::new(counting.clone(), root, Duration::from_secs(30));
    let proj = view.lookup(ROOT_INO, "proj").await.unwrap();
    let v1 = view.lookup(proj.ino, "v1").await.unwrap();
    let file = view.lookup(v1.ino, "big.bin").await.unwrap();
    let leaf_at = |offset: u64| {
        let i = (offset / CHUNK as u64) as usize;
        let data = bytes::Bytes::from(chunk(i));
        *crate::block::Block::encode(cid::Version::V1, crate::block::codec::RAW, data).cid()
    };
    // A first READ at 0, then the one that continues it: a window of 8 MiB from 2 MiB.
    view.read(file.ino, 0, MIB as u32).await.unwrap();
    view.read(file.ino, MIB, MIB as u32).await.unwrap();
    let (scouted, before) = (leaf_at(18 * MIB), leaf_at(18 * MIB - CHUNK as u64));
    let mut waited = 0;
    while counting.gets(&scouted) == 0 && waited < 3000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    assert_eq!(counting.gets(&scouted), 1, "the leaf two windows on");
    assert!(counting.gets(&leaf_at(9 * MIB)) >= 1, "the window itself");
    assert_eq!(counting.gets(&before), 0, "nothing between");
}
