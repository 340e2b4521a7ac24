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
