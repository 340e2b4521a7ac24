//! CAR interoperability with the JS reference (`@ipld/car`, `ipfs-unixfs-importer`):
//! - CARs written by `distfs add --car OUT` are read by `tests/oracles/car_read.mjs`, which
//!   re-hashes every block: same roots, same block set as ours and as the JS importer's own
//!   DAG for the same input, each block once.
//! - CARs written by the JS importer are read by `distfs::car::CarReader` into a `MemStore`,
//!   and every file of the source tree read back through `distfs::walk` is byte-identical
//!   (whole files and ranges straddling chunk boundaries); every directory lists exactly
//!   the source's names (plain and HAMT), every symlink holds the source's target.
//!
//! Install the oracles with `scripts/install-oracles`; a missing oracle fails the test.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use cid::Cid;
use distfs::car::CarReader;
use distfs::store::MemStore;
use serde_json::{json, Value};
use support::corpus::{self, Case};
use support::{distfs_add, tempdir, Oracles};

/// Cases exercising every node kind: empty/one-chunk/multi-chunk files, deep, unicode,
/// symlinks, duplicate content, HAMT shards.
const CASES: &[&str] = &[
    "empty",
    "hello-world",
    "chunk+1",
    "3MiB+17",
    "flat-dir",
    "nested-empty-files",
    "deep-20",
    "unicode-and-spaces",
    "symlinks",
    "mixed-tree",
    "hamt-3000-mixed",
];

/// (name, distfs flags, equivalent JS options; see conformance.rs for the mapping).
fn option_sets() -> Vec<(&'static str, Vec<&'static str>, Value)> {
    let base = |v: u8, raw: bool, trickle: bool| {
        let mut o = json!({
            "cidVersion": v, "rawLeaves": raw, "chunkSize": 262_144,
            "layout": if trickle { "trickle" } else { "balanced" },
            "maxChildrenPerNode": 174, "leafType": if trickle { "raw" } else { "file" },
            "reduceSingleLeafToSelf": !trickle,
            "shardSplitThresholdBytes": 262_144, "shardSplitStrategy": "links-bytes",
        });
        if trickle {
            o["layerRepeat"] = json!(4);
        }
        o
    };
    vec![
        ("defaults", vec![], base(0, false, false)),
        ("cid-v1", vec!["--cid-version", "1"], base(1, true, false)),
        ("trickle", vec!["--trickle"], base(0, false, true)),
    ]
}

fn build_corpus(root: &Path) -> corpus::Corpus {
    corpus::build(root, &|name, _| CASES.contains(&name))
}

/// Reads a CAR with our reader (which verifies every block); returns roots and blocks.
fn read_ours(car: &Path) -> (Vec<Cid>, Vec<distfs::block::Block>) {
    let file = std::fs::File::open(car).expect("open CAR");
    let mut reader = CarReader::new(std::io::BufReader::new(file)).expect("CAR header");
    let roots = reader.roots().to_vec();
    let mut blocks = Vec::new();
    while let Some(b) = reader.next_block().expect("a verified block") {
        blocks.push(b);
    }
    (roots, blocks)
}

#[test]
fn distfs_car_is_read_by_js_car_reader() {
    let oracles = Oracles::get();
    let tmp = tempdir();
    let corpus = build_corpus(&tmp.path().join("data"));
    let mut failures = Vec::new();
    for (set, flags, js_opts) in option_sets() {
        let js_dir = tmp.path().join(format!("js-{set}"));
        std::fs::create_dir_all(&js_dir).unwrap();
        let paths: Vec<&Path> = corpus.cases.iter().map(|c| c.path.as_path()).collect();
        let js_roots = oracles.js_add(&js_opts, &paths, Some(&js_dir));
        for (i, case) in corpus.cases.iter().enumerate() {
            let car = tmp.path().join(format!("ours-{set}-{i}.car"));
            let mut f = flags.clone();
            let car_arg = car.to_str().expect("utf-8 temp path");
            f.extend(["--car", car_arg]);
            let ours = match distfs_add(&case.path, &f) {
                Ok(cid) => cid,
                Err(e) => {
                    failures.push(format!("{set}/{}: distfs add --car failed: {e}", case.name));
                    continue;
                }
            };
            // @ipld/car reads and verifies our CAR.
            let js_view = oracles.car_read(&car);
            let (our_roots, our_blocks) = read_ours(&car);
            let ours_set: BTreeSet<String> =
                our_blocks.iter().map(|b| b.cid().to_string()).collect();
            let js_set: BTreeSet<String> = js_view.blocks.iter().cloned().collect();
            let js_dag = read_ours(&js_dir.join(format!("{i}.car"))).1;
            let js_dag_set: BTreeSet<String> = js_dag.iter().map(|b| b.cid().to_string()).collect();
            let checks = [
                (js_view.version == 1, "CAR version is 1".to_string()),
                (
                    js_view.roots == vec![ours.clone()],
                    format!("roots {:?} == [{ours}]", js_view.roots),
                ),
                (
                    our_roots.iter().map(|c| c.to_string()).collect::<Vec<_>>()
                        == vec![ours.clone()],
                    "our reader sees the same root".into(),
                ),
                (
                    js_set == ours_set,
                    "JS and our reader see the same block set".into(),
                ),
                (
                    js_view.blocks.len() == js_set.len(),
                    format!(
                        "each block once ({} sections, {} distinct)",
                        js_view.blocks.len(),
                        js_set.len()
                    ),
                ),
                (
                    ours == js_roots[&case.path],
                    format!("root equals the JS importer's {}", js_roots[&case.path]),
                ),
                (
                    ours_set == js_dag_set,
                    format!(
                        "block set equals the JS importer's DAG ({} vs {} blocks)",
                        ours_set.len(),
                        js_dag_set.len()
                    ),
                ),
            ];
            for (ok, what) in checks {
                if !ok {
                    failures.push(format!("{set}/{}: expected {what}", case.name));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// What a source tree holds, as path segments from the root.
#[derive(Default)]
struct Source {
    files: Vec<(Vec<String>, PathBuf)>,
    /// Each directory with its entry names, sorted by bytes.
    dirs: Vec<(Vec<String>, Vec<String>)>,
    /// Each symlink with its target, byte-exact.
    links: Vec<(Vec<String>, Vec<u8>)>,
}

/// Walks `root` without following symlinks.
fn source_tree(root: &Path) -> Source {
    fn walk(dir: &Path, prefix: &[String], out: &mut Source) {
        let mut names = Vec::new();
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let e = e.expect("dir entry");
            let ty = e.file_type().expect("file type");
            let name = e.file_name().into_string().expect("utf-8 name");
            names.push(name.clone());
            let mut segs = prefix.to_vec();
            segs.push(name);
            if ty.is_dir() {
                walk(&e.path(), &segs, out);
            } else if ty.is_file() {
                out.files.push((segs, e.path()));
            } else if ty.is_symlink() {
                let target = std::fs::read_link(e.path()).expect("readlink");
                out.links
                    .push((segs, target.into_os_string().into_encoded_bytes()));
            }
        }
        names.sort();
        out.dirs.push((prefix.to_vec(), names));
    }
    let mut out = Source::default();
    if root.is_file() {
        out.files.push((Vec::new(), root.to_path_buf()));
    } else {
        walk(root, &[], &mut out);
    }
    out
}

/// Offsets/lengths that straddle chunk boundaries and the end of the file.
fn ranges(len: u64) -> Vec<(u64, u64)> {
    let c = 262_144u64;
    let mut r = vec![
        (0, len),
        (0, 1),
        (len.saturating_sub(1), 1),
        (len / 2, 1000),
    ];
    for k in [1, 2, 5, 12] {
        if k * c < len {
            r.push((k * c - 7, 14));
            r.push((k * c, c + 1));
        }
    }
    r.push((len, 10)); // at EOF: empty
    r.into_iter().filter(|(o, _)| *o <= len).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_car_is_read_back_by_distfs_walk() {
    let oracles = Oracles::get();
    let tmp = tempdir();
    let corpus = build_corpus(&tmp.path().join("data"));
    let mut failures = Vec::new();
    let mut checked = 0usize;
    for (set, _flags, js_opts) in option_sets() {
        let js_dir = tmp.path().join(format!("js-{set}"));
        std::fs::create_dir_all(&js_dir).unwrap();
        let paths: Vec<&Path> = corpus.cases.iter().map(|c| c.path.as_path()).collect();
        let js_roots: HashMap<PathBuf, String> = oracles.js_add(&js_opts, &paths, Some(&js_dir));
        for (i, case) in corpus.cases.iter().enumerate() {
            let (roots, blocks) = read_ours(&js_dir.join(format!("{i}.car")));
            assert_eq!(roots.len(), 1, "{set}/{}: one root", case.name);
            assert_eq!(roots[0].to_string(), js_roots[&case.path]);
            let store = MemStore::new();
            for b in blocks {
                store.insert(b);
            }
            check_tree(&store, &roots[0], case, set, &mut failures, &mut checked).await;
        }
    }
    assert!(checked > 100, "only {checked} reads checked");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

async fn check_tree(
    store: &MemStore,
    root: &Cid,
    case: &Case,
    set: &str,
    failures: &mut Vec<String>,
    checked: &mut usize,
) {
    let source = source_tree(&case.path);
    for (segs, names) in &source.dirs {
        let seg_refs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let listed = match distfs::walk::resolve_path(store, root, &seg_refs).await {
            Ok(cid) => distfs::walk::list_dir(store, &cid)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        *checked += 1;
        match listed {
            Ok(entries) => {
                let got: Vec<String> = entries.into_iter().map(|e| e.name).collect();
                if &got != names {
                    failures.push(format!(
                        "{set}/{}/{}: list_dir gave {} names, the source has {} (first differing: {:?})",
                        case.name,
                        segs.join("/"),
                        got.len(),
                        names.len(),
                        got.iter().zip(names).find(|(a, b)| a != b)
                    ));
                }
            }
            Err(e) => failures.push(format!(
                "{set}/{}/{}: list_dir: {e}",
                case.name,
                segs.join("/")
            )),
        }
    }
    for (segs, target) in &source.links {
        let seg_refs: Vec<&str> = segs.iter().map(String::as_str).collect();
        *checked += 1;
        let node = match distfs::walk::resolve_path(store, root, &seg_refs).await {
            Ok(cid) => distfs::walk::load(store, &cid)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match node {
            Ok(distfs::unixfs::Node::Symlink(l)) if l.target.as_ref() == target.as_slice() => {}
            Ok(_) => failures.push(format!(
                "{set}/{}/{}: not a symlink to {:?}",
                case.name,
                segs.join("/"),
                String::from_utf8_lossy(target)
            )),
            Err(e) => failures.push(format!("{set}/{}/{}: load: {e}", case.name, segs.join("/"))),
        }
    }
    for (segs, path) in source.files {
        let want = std::fs::read(&path).expect("read source file");
        let seg_refs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let cid = match distfs::walk::resolve_path(store, root, &seg_refs).await {
            Ok(cid) => cid,
            Err(e) => {
                failures.push(format!(
                    "{set}/{}/{}: resolve_path: {e}",
                    case.name,
                    segs.join("/")
                ));
                continue;
            }
        };
        for (off, len) in ranges(want.len() as u64) {
            *checked += 1;
            let end = (off + len).min(want.len() as u64) as usize;
            let expect = &want[off as usize..end];
            match distfs::walk::read_range(store, &cid, off, len).await {
                Ok(got) if got.as_ref() == expect => {}
                Ok(got) => failures.push(format!(
                    "{set}/{}/{}: read_range({off}, {len}) returned {} bytes, differing from the source ({} bytes)",
                    case.name,
                    segs.join("/"),
                    got.len(),
                    expect.len()
                )),
                Err(e) => failures.push(format!(
                    "{set}/{}/{}: read_range({off}, {len}): {e}",
                    case.name,
                    segs.join("/")
                )),
            }
        }
    }
}
