//! The read side (`unixfs` + `walk`) against the real gateway-conformance CARs made by
//! Kubo: every fact the fixtures README states about decoding, lookups, ranges and CAR
//! block order is checked here, with a counting store proving which blocks were touched.

use std::collections::HashSet;
use std::fs::File;
use std::str::FromStr;

use cid::Cid;
use distfs::block::Block;
use distfs::car::CarReader;
use distfs::store::MemStore;
use distfs::unixfs::{ByteRange, Node};
use distfs::walk::{
    self, collect_car_blocks, CarOptions, CountingStore, DagScope, Kind, WalkError,
};

const FIX: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/gateway-conformance/"
);

const MULTI: &str = "bafybeigcisqd7m5nf3qmuvjdbakl5bdnh4ocrmacaqkpuh77qjvggmt2sa";
const MULTI_LEAVES: [&str; 5] = [
    "bafkreie5noke3mb7hqxukzcy73nl23k6lxszxi5w3dtmuwz62wnvkpsscm",
    "bafkreih4ephajybraj6wnxsbwjwa77fukurtpl7oj7t7pfq545duhot7cq",
    "bafkreigu7buvm3cfunb35766dn7tmqyh2um62zcio63en2btvxuybgcpue",
    "bafkreicll3huefkc3qnrzeony7zcfo7cr3nbx64hnxrqzsixpceg332fhe",
    "bafkreifst3pqztuvj57lycamoi7z34b4emf7gawxs74nwrc2c7jncmpaqm",
];

fn c(s: &str) -> Cid {
    Cid::from_str(s).unwrap()
}

/// Reads a CAR into a counting MemStore; returns (store, root, blocks in file order).
fn load(rel: &str) -> (CountingStore<MemStore>, Cid, Vec<Block>) {
    let mut reader = CarReader::new(File::open(format!("{FIX}{rel}")).unwrap()).unwrap();
    let root = reader.roots()[0];
    let store = MemStore::new();
    let mut blocks = Vec::new();
    while let Some(b) = reader.next_block().unwrap() {
        store.insert(b.clone());
        blocks.push(b);
    }
    (CountingStore::new(store), root, blocks)
}

fn cids(blocks: &[Block]) -> Vec<Cid> {
    blocks.iter().map(|b| *b.cid()).collect()
}

fn ranged(r: &str) -> CarOptions {
    CarOptions {
        scope: DagScope::Entity,
        entity_bytes: Some(ByteRange::from_str(r).unwrap()),
        dups: false,
    }
}

#[tokio::test]
async fn all_scope_reproduces_kubo_dag_export_order() {
    // Kubo's `dag export` writes DFS pre-order, each block once: a dups=n All walk of
    // the root must give the CAR's exact block sequence.
    for rel in [
        "fixtures/trustless_gateway_car/single-layer-hamt-with-multi-block-files.car",
        "fixtures/trustless_gateway_car/subdir-with-mixed-block-files.car",
        "fixtures/trustless_gateway_car/subdir-with-two-single-block-files.car",
        "fixtures/trustless_gateway_car/dir-with-duplicate-files.car",
        "fixtures/path_gateway_unixfs/symlink.car",
        "fixtures/path_gateway_unixfs/dir-with-percent-encoded-filename.car",
        "fixtures/dir_listing/fixtures.car",
        "fixtures/gateway-cache/fixtures.car",
        "fixtures/gateway-raw-block.car",
        "fixtures/redirects_file/redirects.car",
        "tooling/car/_fixtures/issue-54.car",
    ] {
        let (store, root, blocks) = load(rel);
        let (got, end) = collect_car_blocks(&store, root, &[], CarOptions::default()).await;
        end.unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(cids(&got), cids(&blocks), "{rel}");
    }
}

#[tokio::test]
async fn hamt_lists_1000_entries_touching_every_shard_once() {
    let (store, root, _) =
        load("fixtures/trustless_gateway_car/single-layer-hamt-with-multi-block-files.car");
    let st = walk::stat(&store, &root).await.unwrap();
    assert_eq!((st.kind, st.size), (Kind::Directory, 0));
    store.reset();
    let entries = walk::list_dir(&store, &root).await.unwrap();
    assert_eq!(entries.len(), 1000);
    let mut want: Vec<String> = (1..=1000).map(|i| format!("{i}.txt")).collect();
    want.sort();
    let names: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
    assert_eq!(names, want, "sorted by name bytes");
    assert!(entries.iter().all(|e| e.cid == c(MULTI)));
    let counts = store.counts();
    assert_eq!(counts.len(), 237, "all 237 shard blocks, no file block");
    assert!(counts.values().all(|n| *n == 1));
    assert!(!counts.contains_key(&c(MULTI)));
}

#[tokio::test]
async fn hamt_lookups_touch_only_the_hash_path() {
    let (store, root, _) =
        load("fixtures/trustless_gateway_car/single-layer-hamt-with-multi-block-files.car");
    // 402.txt: root → 21 → B6 (README row 1).
    let e = walk::lookup(&store, &root, "402.txt")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.cid, c(MULTI));
    assert_eq!(
        store.log(),
        vec![
            root,
            c("bafybeideiqxgeyxk26wxqkggniwjmrjizsprlqza4vak6giyevg6k5nht4"),
            c("bafybeiapvu3jqyfk2xkzbadquejv4lrry4flddc6en4xadar55pgfuy6ga"),
        ]
    );
    for name in ["1.txt", "685.txt", "111.txt"] {
        store.reset();
        let e = walk::lookup(&store, &root, name).await.unwrap().unwrap();
        assert_eq!(e.cid, c(MULTI), "{name}");
        assert_eq!(store.total(), 2, "{name}: root + one sub-shard");
    }
    store.reset();
    assert_eq!(walk::lookup(&store, &root, "1001.txt").await.unwrap(), None);
    assert!(store.total() <= 3);
    // Every listed name resolves by lookup too.
    for i in (1..=1000).step_by(37) {
        let name = format!("{i}.txt");
        assert!(
            walk::lookup(&store, &root, &name).await.unwrap().is_some(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn hamt_car_path_is_root_shard_path_file_then_leaves() {
    let (store, root, _) =
        load("fixtures/trustless_gateway_car/single-layer-hamt-with-multi-block-files.car");
    let (got, end) = collect_car_blocks(&store, root, &["685.txt"], CarOptions::default()).await;
    end.unwrap();
    let got = cids(&got);
    assert_eq!(got.len(), 8, "root, shard FD, file root, 5 leaves");
    assert_eq!(got[0], root);
    let shard = walk::load(&store, &got[1]).await.unwrap();
    assert!(matches!(shard, Node::HamtShard(_)));
    assert_eq!(got[2], c(MULTI));
    assert_eq!(&got[3..], &MULTI_LEAVES.map(c)[..]);
    // Entity scope on the directory: every shard block, no file block.
    let opts = CarOptions {
        scope: DagScope::Entity,
        ..CarOptions::default()
    };
    let (got, end) = collect_car_blocks(&store, root, &[], opts).await;
    end.unwrap();
    assert_eq!(got.len(), 237);
    assert!(!cids(&got).contains(&c(MULTI)));
}

#[tokio::test]
async fn multiblock_entity_bytes_need_the_minimal_leaves() {
    let (store, root, _) = load("fixtures/trustless_gateway_car/subdir-with-mixed-block-files.car");
    let subdir = c("bafybeicnmple4ehlz3ostv2sbojz3zhh5q7tz5r2qkfdpqfilgggeen7xm");
    // README row 2, leaves numbered 1..=5.
    for (range, leaves) in [
        ("512:*", vec![3, 4, 5]),
        ("512:1023", vec![3, 4]),
        ("512:-256", vec![3, 4]),
        ("-5:*", vec![4, 5]),
        ("0:0", vec![1]),
        ("-9999:*", vec![1, 2, 3, 4, 5]),
        ("-9999:-3", vec![1, 2, 3, 4]),
    ] {
        let (got, end) =
            collect_car_blocks(&store, root, &["subdir", "multiblock.txt"], ranged(range)).await;
        end.unwrap();
        let mut want = vec![root, subdir, c(MULTI)];
        want.extend(leaves.iter().map(|i| c(MULTI_LEAVES[i - 1])));
        assert_eq!(cids(&got), want, "entity-bytes={range}");
    }
    // Fully outside the file: like dag-scope=block.
    let (got, end) = collect_car_blocks(
        &store,
        root,
        &["subdir", "multiblock.txt"],
        ranged("2000:*"),
    )
    .await;
    end.unwrap();
    assert_eq!(cids(&got), vec![root, subdir, c(MULTI)]);

    // read_range fetches the same minimal set and returns the right bytes.
    let whole = walk::read_range(&store, &c(MULTI), 0, u64::MAX)
        .await
        .unwrap();
    assert_eq!(whole.len(), 1026);
    assert_eq!(
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&whole)),
        "998785f13287a9aabc2d7048e4c2905d502ff13ef40f2d135f163b5a762701c5"
    );
    store.reset();
    let part = walk::read_range(&store, &c(MULTI), 512, 512).await.unwrap();
    assert_eq!(&part[..], &whole[512..1024]);
    let touched: HashSet<Cid> = store.log().into_iter().collect();
    let want: HashSet<Cid> = [c(MULTI), c(MULTI_LEAVES[2]), c(MULTI_LEAVES[3])].into();
    assert_eq!(touched, want);
    assert_eq!(store.total(), 3);
}

#[tokio::test]
async fn file_with_missing_middle_block_serves_ranges_around_it() {
    let (store, root, blocks) =
        load("fixtures/trustless_gateway_car/file-3k-and-3-blocks-missing-block.car");
    let leaf1 = c("QmPKt7ptM2ZYSGPUc8PmPT2VBkLDK3iqpG9TBJY7PCE9rF");
    let leaf2 = c("QmSNLTo6Wv9dfroVaw7MFYjLqf9ho7PKrgsjdzYDtv8h1W");
    let leaf3 = c("QmWXY482zQdwecnfBsj78poUUuPXvyw2JAFAEMw4tzTavV");
    let leaf_data =
        |cid: Cid| match Node::from_block(blocks.iter().find(|b| *b.cid() == cid).unwrap()) {
            Ok(Node::File(f)) => f.data,
            other => panic!("{other:?}"),
        };
    let st = walk::stat(&store, &root).await.unwrap();
    assert_eq!((st.kind, st.size), (Kind::File, 3072));

    let a = walk::read_range(&store, &root, 997, 4).await.unwrap();
    assert_eq!(&a[..], &leaf_data(leaf1)[997..1001]);
    let b = walk::read_range(&store, &root, 2200, 2).await.unwrap();
    assert_eq!(&b[..], &leaf_data(leaf3)[2200 - 2048..2202 - 2048]);
    let err = walk::read_range(&store, &root, 1000, 100)
        .await
        .unwrap_err();
    assert_eq!(err.missing_block(), Some(&leaf2), "{err}");

    let (got, end) = collect_car_blocks(&store, root, &[], ranged("0:1000")).await;
    end.unwrap();
    assert_eq!(cids(&got), vec![root, leaf1]);
    let (got, end) = collect_car_blocks(&store, root, &[], ranged("2200:*")).await;
    end.unwrap();
    assert_eq!(cids(&got), vec![root, leaf3]);
    // A full walk sends what precedes the hole, then reports the hole.
    let (got, end) = collect_car_blocks(&store, root, &[], CarOptions::default()).await;
    assert_eq!(cids(&got), vec![root, leaf1]);
    assert_eq!(end.unwrap_err().missing_block(), Some(&leaf2));
}

#[tokio::test]
async fn symlink_target_and_listing() {
    let (store, root, _) = load("fixtures/path_gateway_unixfs/symlink.car");
    let names: Vec<String> = walk::list_dir(&store, &root)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["bar", "foo"]);
    let bar = walk::resolve_path(&store, &root, &["bar"]).await.unwrap();
    assert_eq!(bar, c("QmTB8BaCJdCH5H3k7GrxJsxgDNmNYGGR71C58ERkivXoj5"));
    match walk::load(&store, &bar).await.unwrap() {
        Node::Symlink(s) => assert_eq!(&s.target[..], b"foo"),
        other => panic!("{other:?}"),
    }
    let st = walk::stat(&store, &bar).await.unwrap();
    assert_eq!((st.kind, st.size), (Kind::Symlink, 3));
    let foo = walk::resolve_path(&store, &root, &["foo"]).await.unwrap();
    assert_eq!(
        &walk::read_range(&store, &foo, 0, 100).await.unwrap()[..],
        b"content\n"
    );
}

#[tokio::test]
async fn percent_encoded_and_utf8_names_are_byte_exact() {
    let (store, root, _) =
        load("fixtures/path_gateway_unixfs/dir-with-percent-encoded-filename.car");
    let name = "Portugal%2C+España=Peninsula Ibérica.txt";
    let entries = walk::list_dir(&store, &root).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].name.as_bytes(), name.as_bytes());
    let file = walk::resolve_path(&store, &root, &[name]).await.unwrap();
    assert_eq!(
        &walk::read_range(&store, &file, 0, 1000).await.unwrap()[..],
        b"hello from a percent encoded filename\n"
    );
    let decoded_once = "Portugal, España=Peninsula Ibérica.txt";
    let err = walk::resolve_path(&store, &root, &[decoded_once])
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");

    let (store, root, _) = load("fixtures/dir_listing/fixtures.car");
    let file = walk::resolve_path(&store, &root, &["ą", "ę", "file-źł.txt"])
        .await
        .unwrap();
    assert_eq!(
        file,
        c("bafkreialihlqnf5uwo4byh4n3cmwlntwqzxxs2fg5vanqdi3d7tb2l5xkm")
    );
    assert_eq!(
        &walk::read_range(&store, &file, 0, 1000).await.unwrap()[..],
        b"I am a txt file on path with utf8\n"
    );
    let err = walk::resolve_path(&store, &root, &["ą", "nope", "x"])
        .await
        .unwrap_err();
    match err {
        WalkError::NotFound { path } => assert_eq!(path, "ą/nope"),
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn duplicate_files_and_dups_flag() {
    let (store, root, blocks) = load("fixtures/trustless_gateway_car/dir-with-duplicate-files.car");
    assert_eq!(blocks.len(), 9);
    let names: Vec<String> = walk::list_dir(&store, &root)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(
        names,
        ["ascii-copy.txt", "ascii.txt", "hello.txt", "multiblock.txt"]
    );
    let ascii = c("bafkreifkam6ns4aoolg3wedr4uzrs3kvq66p4pecirz6y2vlrngla62mxm");
    let count = |v: &[Block]| v.iter().filter(|b| *b.cid() == ascii).count();
    let (once, end) = collect_car_blocks(&store, root, &[], CarOptions::default()).await;
    end.unwrap();
    assert_eq!((once.len(), count(&once)), (9, 1));
    let dups = CarOptions {
        dups: true,
        ..CarOptions::default()
    };
    let (twice, end) = collect_car_blocks(&store, root, &[], dups).await;
    end.unwrap();
    assert_eq!((twice.len(), count(&twice)), (10, 2));
    let f = walk::resolve_path(&store, &root, &["ascii.txt"])
        .await
        .unwrap();
    assert_eq!(
        &walk::read_range(&store, &f, 6, 11).await.unwrap()[..],
        b"application"
    );
}

#[tokio::test]
async fn dag_cbor_child_is_listed_and_reported_as_other() {
    let (store, root, _) = load("fixtures/trustless_gateway_car/dir-with-dag-cbor-with-links.car");
    let doc = c("bafyreidy4q6mmetut5jzc54ambsfnatbyoujmwbfzyyolqw24majazwgha");
    let entries = walk::list_dir(&store, &root).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].name.as_str(), entries[0].cid),
        ("document", doc)
    );
    assert_eq!(walk::stat(&store, &doc).await.unwrap().kind, Kind::Other);
    let err = walk::load(&store, &doc).await.unwrap_err();
    assert!(
        matches!(err, WalkError::Unixfs(ref u) if u.is_not_unixfs()),
        "{err}"
    );
    let err = walk::resolve_path(&store, &root, &["document", "files"])
        .await
        .unwrap_err();
    assert!(matches!(err, WalkError::NotADirectory { .. }), "{err}");
    let opts = CarOptions {
        scope: DagScope::Entity,
        ..CarOptions::default()
    };
    let (got, end) = collect_car_blocks(&store, root, &["document"], opts).await;
    end.unwrap();
    assert_eq!(cids(&got), vec![root, doc]);
}

#[tokio::test]
async fn every_hello_variant_reads_hello_including_sha2_512() {
    let (store, root, _) = load("fixtures/subdomain_gateway/fixtures.car");
    for name in [
        "hello-CIDv1",
        "hello-CIDv0",
        "hello-CIDv0to1",
        "hello-CIDv1_TOO_LONG",
    ] {
        let f = walk::resolve_path(&store, &root, &[name]).await.unwrap();
        assert_eq!(
            &walk::read_range(&store, &f, 0, 64).await.unwrap()[..],
            b"hello\n",
            "{name}"
        );
    }
    let long = walk::resolve_path(&store, &root, &["hello-CIDv1_TOO_LONG"])
        .await
        .unwrap();
    assert_eq!(long.hash().code(), distfs::block::mh::SHA2_512);
}

#[tokio::test]
async fn car_paths_and_scopes_on_subdir() {
    let (store, root, _) =
        load("fixtures/trustless_gateway_car/subdir-with-two-single-block-files.car");
    let subdir = c("bafybeiggghzz6dlue3m6nb2dttnbrygxh3lrjl5764f2m4gq7dgzdt55o4");
    let ascii = c("bafkreifkam6ns4aoolg3wedr4uzrs3kvq66p4pecirz6y2vlrngla62mxm");
    let (got, end) = collect_car_blocks(
        &store,
        root,
        &["subdir", "ascii.txt"],
        CarOptions::default(),
    )
    .await;
    end.unwrap();
    assert_eq!(cids(&got), vec![root, subdir, ascii]);
    let (got, end) = collect_car_blocks(
        &store,
        root,
        &["subdir", "i-do-not-exist"],
        CarOptions::default(),
    )
    .await;
    assert_eq!(
        cids(&got),
        vec![root, subdir],
        "partial CAR up to the parent"
    );
    assert!(end.unwrap_err().is_not_found());
    let block = CarOptions {
        scope: DagScope::Block,
        ..CarOptions::default()
    };
    let (got, end) = collect_car_blocks(&store, root, &["subdir"], block).await;
    end.unwrap();
    assert_eq!(cids(&got), vec![root, subdir]);
    // resolve() first: a server can answer 404 before sending anything.
    let mut w = walk::CarWalker::new(&store, root, &["nope"], CarOptions::default());
    assert!(w.resolve().await.unwrap_err().is_not_found());
    let mut w = walk::CarWalker::new(&store, root, &["subdir", "ascii.txt"], block);
    assert_eq!(w.resolve().await.unwrap(), ascii);
    let mut n = 0;
    while let Some(b) = w.next_block().await.unwrap() {
        assert_eq!(*b.cid(), [root, subdir, ascii][n]);
        n += 1;
    }
    assert_eq!(n, 3);
}

#[tokio::test]
async fn hostile_names_are_hidden_from_listings_and_refused_by_lookup() {
    let (store, root, _) = load("fixtures/path_gateway_tar/outside-root.car");
    let names: Vec<String> = walk::list_dir(&store, &root)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["bar"]);
    match walk::load(&store, &root).await.unwrap() {
        Node::Directory(d) => assert_eq!(d.hidden[0].name, "../foo"),
        other => panic!("{other:?}"),
    }
    let err = walk::lookup(&store, &root, "../foo").await.unwrap_err();
    assert!(err.is_not_found() && !err.is_corrupt(), "{err}");
    // All scope still sends the whole DAG, hostile names or not.
    let (got, end) = collect_car_blocks(&store, root, &[], CarOptions::default()).await;
    end.unwrap();
    assert_eq!(got.len(), 2);

    let (store, root, _) = load("fixtures/path_gateway_tar/inside-root.car");
    let d = walk::resolve_path(&store, &root, &["foobar", "directory"])
        .await
        .unwrap();
    assert!(walk::list_dir(&store, &d).await.unwrap().is_empty());
}

#[tokio::test]
async fn identity_cids_decode_without_the_store() {
    let store = MemStore::new();
    let empty_dir = c("bafyaabakaieac");
    assert!(walk::list_dir(&store, &empty_dir).await.unwrap().is_empty());
    // IPNS fixture B13's value: an identity dag-pb file "helloworld\n".
    let f = c("bafyaaeykceeaeeqlnbswy3dpo5xxe3debimaw");
    assert_eq!(
        &walk::read_range(&store, &f, 0, 100).await.unwrap()[..],
        b"helloworld\n"
    );
    // Identity blocks are never put in a CAR.
    let (got, end) = collect_car_blocks(&store, f, &[], CarOptions::default()).await;
    end.unwrap();
    assert!(got.is_empty());
}

#[tokio::test]
async fn small_dag_pb_leaves_and_deep_paths() {
    let (store, root, _) = load("tooling/car/_fixtures/issue-54.car");
    let f = walk::resolve_path(&store, &root, &["sub1", "hello.txt"])
        .await
        .unwrap();
    match walk::load(&store, &f).await.unwrap() {
        Node::File(n) => {
            let kids: Vec<Cid> = n.children.iter().map(|ch| ch.cid).collect();
            assert_eq!(
                kids,
                [
                    c("QmaATBg1yioWhYHhoA8XSUqD1Ya91KKCibWVD4USQXwaVZ"),
                    c("QmdQEnYhrhgFKPCq5eKc7xb1k7rKyb3fGMitUPKvFAscVK")
                ]
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        &walk::read_range(&store, &f, 0, 7).await.unwrap()[..],
        b"abc123\n"
    );
    assert_eq!(
        &walk::read_range(&store, &f, 4, 2).await.unwrap()[..],
        b"23"
    );
    let g = walk::resolve_path(&store, &root, &["sub2", "hello.txt"])
        .await
        .unwrap();
    assert_eq!(
        &walk::read_range(&store, &g, 3, 100).await.unwrap()[..],
        b"456\n"
    );

    let (store, root, _) = load("fixtures/redirects_file/redirects.car");
    let path = [
        "examples",
        "articles",
        "2022",
        "06",
        "15",
        "hello-world",
        "index.html",
    ];
    let f = walk::resolve_path(&store, &root, &path).await.unwrap();
    assert_eq!(
        &walk::read_range(&store, &f, 0, 100).await.unwrap()[..],
        b"hello world\n"
    );
    let big = walk::resolve_path(&store, &root, &["too-large", "_redirects"])
        .await
        .unwrap();
    assert_eq!(walk::stat(&store, &big).await.unwrap().size, 65_548);

    let (store, root, _) = load("fixtures/gateway-cache/fixtures.car");
    let path = ["root2", "root3", "root4", "index.html"];
    let (got, end) = collect_car_blocks(&store, root, &path, CarOptions::default()).await;
    end.unwrap();
    assert_eq!(got.len(), 5);
    assert_eq!(got[3].data().len(), 58, "root4 block is pinned at 58 bytes");
}

#[tokio::test]
async fn ipfs_car_packer_tree_matches_source_files() {
    let (store, root, _) = load("tooling/car/_fixtures/dag.car");
    for (path, src) in [
        (vec!["a-file.txt"], "a-file.txt"),
        (vec!["b-file.txt"], "b-file.txt"),
        (vec!["subdir", "leaf.txt"], "subdir/leaf.txt"),
    ] {
        let f = walk::resolve_path(&store, &root, &path).await.unwrap();
        let want = std::fs::read(format!("{FIX}tooling/car/_fixtures/dir/{src}")).unwrap();
        assert_eq!(
            &walk::read_range(&store, &f, 0, u64::MAX).await.unwrap()[..],
            &want[..]
        );
    }
}
