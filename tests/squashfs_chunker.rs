//! The squashfs-aware chunker (`--chunker squashfs`) on real `mksquashfs` images and on
//! AppImage-like files (an ELF followed by an image): chunk boundaries land where the image's
//! structure puts them, unchanged files keep their leaves across versions, imports read back
//! byte for byte (checked with `sha256` and by extracting the read-back image with
//! `unsquashfs`), and anything that is not a sound image falls back to buzhash — the same
//! CID as `--chunker buzhash` — without an error.
//!
//! Needs `mksquashfs`/`unsquashfs` (squashfs-tools; `scripts/test` installs them).

mod support;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use distfs::block::codec;
use distfs::import::chunker::Chunker;
use distfs::import::squashfs::{SquashfsChunker, Unrecognized, SQUASHFS_MAX_CHUNK};
use distfs::import::{add_path, AddFlags, ChunkerSpec, VecSink};
use distfs::store::MemStore;
use distfs::walk;
use sha2::{Digest, Sha256};
use support::{det_bytes, distfs_add, tempdir, write_bytes};

const BLOCK: usize = 128 * 1024;

/// Options every image here is built with: reproducible (fixed times, root-owned).
const REPRO: &[&str] = &[
    "-noappend",
    "-quiet",
    "-no-progress",
    "-all-root",
    "-no-xattrs",
    "-mkfs-time",
    "0",
    "-all-time",
    "0",
];

fn mksquashfs(src: &Path, out: &Path, opts: &[&str]) {
    let status = Command::new("mksquashfs")
        .arg(src)
        .arg(out)
        .args(REPRO)
        .args(opts)
        .status()
        .expect("run mksquashfs (install squashfs-tools; scripts/test does)");
    assert!(status.success(), "mksquashfs {opts:?} failed");
}

/// File sizes that exercise the block layout (128 KiB blocks; 1 MiB = 8 blocks when grouped).
const SIZES: &[(&str, usize)] = &[
    ("empty", 0),                       // no blocks at all
    ("one-byte", 1),                    // only a tail
    ("small", 100_000),                 // < 1 block: tail only (a fragment, or one short block)
    ("one-block", BLOCK),               // exactly one block, no tail
    ("two-blocks", 2 * BLOCK),          // exact multiple
    ("blocks-and-tail", 3 * BLOCK + 5), // full blocks and a tail
    ("eight-blocks", 8 * BLOCK),        // exactly one 1 MiB group
    ("large", 21 * BLOCK + 777),        // several groups and a tail
];

/// A tree of incompressible files of [`SIZES`] plus `many` small text files.
fn make_tree(root: &Path, seed: &str, many: usize) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for (name, size) in SIZES {
        files.insert(
            format!("sizes/{name}.bin"),
            det_bytes(&format!("{seed}-{name}"), *size),
        );
    }
    for i in 0..many {
        files.insert(
            format!("many/{:03}/f{i:05}.txt", i / 100),
            format!("file {i} of {seed}\n")
                .repeat(i % 37 + 1)
                .into_bytes(),
        );
    }
    for (rel, data) in &files {
        write_bytes(&root.join(rel), data);
    }
    files
}

/// One chunk: (offset, length, sha256).
type ChunkInfo = (u64, usize, [u8; 32]);

/// The chunks the squashfs chunker makes of `path` (data blocks grouped up to `group`
/// bytes; 0 = the default, one chunk per block), in order, and why the image was not
/// recognised (if it was not).
fn chunks_of(path: &Path, group: usize) -> (Vec<ChunkInfo>, Option<Unrecognized>) {
    let file = File::open(path).unwrap();
    let (mut chunker, image) = SquashfsChunker::open(file, group).unwrap();
    let mut out = Vec::new();
    let mut at = 0u64;
    while let Some(c) = chunker.next_chunk().unwrap() {
        assert!(!c.is_empty(), "empty chunk at {at}");
        assert!(
            c.len() <= SQUASHFS_MAX_CHUNK,
            "chunk of {} at {at}",
            c.len()
        );
        out.push((at, c.len(), Sha256::digest(&c).into()));
        at += c.len() as u64;
    }
    assert_eq!(
        at,
        fs::metadata(path).unwrap().len(),
        "chunks cover the file"
    );
    (out, image.err())
}

fn boundaries(chunks: &[ChunkInfo]) -> BTreeSet<u64> {
    chunks.iter().map(|c| c.0).collect()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Data stored uncompressed (`-noD -noF`) is the files' bytes verbatim, so where each file
/// lies in the image can be found by searching for its bytes: the chunk boundaries must be
/// exactly at its start, then at every block (by default) or every 8 blocks (grouped up to
/// 1 MiB), and at its end.
#[test]
fn cuts_at_each_files_blocks() {
    let dir = tempdir();
    let files = make_tree(&dir.path().join("tree"), "cuts", 0);
    for (label, opts) in [
        ("fragments", &["-noD", "-noF", "-comp", "gzip"][..]),
        (
            "no-fragments",
            &["-noD", "-no-fragments", "-comp", "zstd"][..],
        ),
    ] {
        let img = dir.path().join(format!("{label}.sqfs"));
        mksquashfs(&dir.path().join("tree"), &img, opts);
        let bytes = fs::read(&img).unwrap();
        for group in [0, SQUASHFS_MAX_CHUNK] {
            let step = if group == 0 { BLOCK } else { group };
            let (chunks, why) = chunks_of(&img, group);
            assert_eq!(why, None, "{label}: image recognised");
            let cuts = boundaries(&chunks);
            assert_eq!(chunks[0].0, 0);
            assert_eq!(chunks[0].1, 96, "{label}: the superblock is its own chunk");
            for (rel, data) in &files {
                // mksquashfs ≥ 4.5 packs only files smaller than a block into fragments
                // (`-no-tailends` is its default): bigger files are all runs of blocks.
                let full = if label == "fragments" && data.len() < BLOCK {
                    0
                } else {
                    data.len()
                };
                if full < 64 {
                    continue; // too short to find by its bytes
                }
                let pos = find(&bytes, &data[..64])
                    .unwrap_or_else(|| panic!("{label}: {rel} not found"))
                    as u64;
                let mut want = vec![pos];
                let mut at = 0;
                while at < full {
                    at = (at + step).min(full);
                    want.push(pos + at as u64);
                }
                for w in &want {
                    assert!(
                        cuts.contains(w),
                        "{label}: {rel}: no cut at {w} (want {want:?})"
                    );
                }
                let inside = cuts.range(pos + 1..pos + full as u64).count();
                assert_eq!(
                    inside,
                    want.len() - 2,
                    "{label}: {rel}: extra cuts inside the file"
                );
            }
            if label == "fragments" {
                // Small files are in a fragment block, which is a chunk of its own: their bytes
                // lie inside exactly one chunk.
                for (rel, data) in &files {
                    let tail = &data[..];
                    if tail.len() < 64 || tail.len() >= BLOCK {
                        continue;
                    }
                    let pos = find(&bytes, &tail[..64]).unwrap() as u64;
                    let end = pos + tail.len() as u64;
                    assert!(
                        cuts.range(pos + 1..end).next().is_none(),
                        "{label}: {rel}: tail split"
                    );
                }
            }
        }
    }
}

fn leaves(path: &Path, chunker: ChunkerSpec) -> Vec<(cid::Cid, usize)> {
    let opts = AddFlags {
        cid_version: Some(1),
        chunker: Some(chunker),
        ..AddFlags::default()
    }
    .resolve()
    .unwrap();
    let mut sink = VecSink::default();
    add_path(path, &opts, &mut sink, &mut |_| {}).unwrap();
    sink.blocks
        .iter()
        .filter(|b| b.cid().codec() == codec::RAW)
        .map(|b| (*b.cid(), b.data().len()))
        .collect()
}

/// Bytes of `new`'s leaves that are not leaves of `old`, and how many leaves are shared.
fn new_bytes(old: &Path, new: &Path, chunker: ChunkerSpec) -> (u64, usize) {
    let before: HashSet<_> = leaves(old, chunker).into_iter().map(|l| l.0).collect();
    let after = leaves(new, chunker);
    let fresh = after
        .iter()
        .filter(|l| !before.contains(&l.0))
        .map(|l| l.1 as u64)
        .sum();
    let shared = after.iter().filter(|l| before.contains(&l.0)).count();
    (fresh, shared)
}

/// Two versions of a tree that differ in one file (which also changes length, so every block
/// after it moves): the unchanged files' leaves are shared, and version 2 costs about the
/// changed file plus the tables — far less than with fixed 256 KiB chunks, whose cuts all
/// shift. gzip and zstd, with and without fragments, bare and after an ELF runtime.
#[test]
fn unchanged_files_share_their_leaves() {
    let dir = tempdir();
    let v1 = dir.path().join("v1");
    let v2 = dir.path().join("v2");
    make_tree(&v1, "share", 300);
    make_tree(&v2, "share", 300);
    // The changed file sorts early ("sizes/blocks-..." is the first big file).
    let changed = det_bytes("share-changed", 3 * BLOCK + 5000);
    write_bytes(&v2.join("sizes/blocks-and-tail.bin"), &changed);
    let runtime = fs::read("/bin/true").unwrap();
    for (label, opts) in [
        ("gzip", &["-comp", "gzip"][..]),
        ("zstd", &["-comp", "zstd"][..]),
        ("gzip-no-fragments", &["-comp", "gzip", "-no-fragments"][..]),
        ("zstd-no-fragments", &["-comp", "zstd", "-no-fragments"][..]),
    ] {
        let mut imgs: Vec<PathBuf> = Vec::new();
        for (v, tree) in [("1", &v1), ("2", &v2)] {
            let img = dir.path().join(format!("{label}-{v}.sqfs"));
            mksquashfs(tree, &img, opts);
            imgs.push(img);
        }
        let tables = {
            let b = fs::read(&imgs[1]).unwrap();
            let bytes_used = u64::from_le_bytes(b[40..48].try_into().unwrap());
            let inode_table = u64::from_le_bytes(b[64..72].try_into().unwrap());
            bytes_used - inode_table
        };
        for appimage in [false, true] {
            let (old, new) = if appimage {
                let mut pair = Vec::new();
                for (v, img) in imgs.iter().enumerate() {
                    let mut bytes = runtime.clone();
                    bytes.extend(fs::read(img).unwrap());
                    pair.push(write_bytes(
                        &dir.path().join(format!("{label}-{v}.AppImage")),
                        &bytes,
                    ));
                }
                (pair[0].clone(), pair[1].clone())
            } else {
                (imgs[0].clone(), imgs[1].clone())
            };
            let what = format!("{label}{}", if appimage { " AppImage" } else { "" });
            let (_, why) = chunks_of(&new, 0);
            assert_eq!(why, None, "{what}: image recognised");
            let (fresh, shared) = new_bytes(&old, &new, ChunkerSpec::Squashfs);
            // The changed file (incompressible), a fragment block, the tables, the superblock.
            let bound = changed.len() as u64 + BLOCK as u64 + tables + 4096;
            assert!(fresh <= bound, "{what}: {fresh} new bytes > {bound}");
            // Every unchanged big file keeps at least one leaf, plus the runtime for AppImages.
            assert!(
                shared >= SIZES.len() - 3,
                "{what}: only {shared} shared leaves"
            );
            let (fixed, _) = new_bytes(&old, &new, ChunkerSpec::Size(262_144));
            assert!(
                fresh * 2 < fixed,
                "{what}: squashfs {fresh} new bytes vs fixed 256 KiB {fixed}"
            );
        }
    }
}

/// Imports through `add_path` into a block store and reads the file back through
/// `walk::read_range`; the read-back bytes hash the same and extract (with `unsquashfs`) to
/// the original tree.
#[tokio::test]
async fn round_trip_through_walk_and_unsquashfs() {
    let dir = tempdir();
    let tree = dir.path().join("tree");
    let files = make_tree(&tree, "rt", 1200);
    let img = dir.path().join("img.sqfs");
    mksquashfs(&tree, &img, &["-comp", "zstd", "-b", "65536"]);
    let mut app = fs::read("/bin/true").unwrap();
    let runtime_len = app.len();
    app.extend(fs::read(&img).unwrap());
    let app = write_bytes(&dir.path().join("app.AppImage"), &app);
    for (path, offset) in [(&img, 0usize), (&app, runtime_len)] {
        for profile in [
            AddFlags::default(),
            AddFlags {
                cid_version: Some(1),
                ..AddFlags::default()
            },
        ] {
            let opts = AddFlags {
                chunker: Some(ChunkerSpec::Squashfs),
                ..profile
            }
            .resolve()
            .unwrap();
            let mut store = MemStore::new();
            let root = add_path(path, &opts, &mut store, &mut |_| {}).unwrap();
            let want = fs::read(path).unwrap();
            let got = walk::read_range(&store, &root, 0, want.len() as u64 + 1)
                .await
                .unwrap();
            assert_eq!(
                Sha256::digest(&got),
                Sha256::digest(&want),
                "{}: read back",
                path.display()
            );
            let back = write_bytes(&dir.path().join("back.sqfs"), &got[offset..]);
            let out = dir.path().join("extracted");
            let _ = fs::remove_dir_all(&out);
            let st = Command::new("unsquashfs")
                .args(["-quiet", "-no-progress", "-d"])
                .arg(&out)
                .arg(&back)
                .status()
                .unwrap();
            assert!(st.success(), "unsquashfs of the read-back image");
            for (rel, data) in &files {
                assert_eq!(&fs::read(out.join(rel)).unwrap(), data, "{rel}");
            }
        }
    }
}

/// `distfs add --chunker squashfs` on the command line: accepted, different from the
/// default chunking of an image, and equal to buzhash on a file that is not an image.
#[test]
fn cli_add_chunker_squashfs() {
    let dir = tempdir();
    make_tree(&dir.path().join("tree"), "cli", 10);
    let img = dir.path().join("img.sqfs");
    mksquashfs(&dir.path().join("tree"), &img, &["-comp", "gzip"]);
    let sq = distfs_add(&img, &["--chunker", "squashfs"]).unwrap();
    let sq_raw = distfs_add(&img, &["--chunker", "squashfs", "--raw-leaves"]).unwrap();
    let fixed = distfs_add(&img, &[]).unwrap();
    assert_ne!(sq, fixed);
    assert_ne!(sq, sq_raw);
    let plain = write_bytes(&dir.path().join("plain.bin"), &det_bytes("plain", 3 << 20));
    assert_eq!(
        distfs_add(&plain, &["--chunker", "squashfs"]).unwrap(),
        distfs_add(&plain, &["--chunker", "buzhash"]).unwrap()
    );
}

/// Not an image, a cut-off image, and images whose superblock or tables lie: never an error
/// or a panic, always the input's bytes; when the superblock itself is unusable the whole
/// file is buzhash (the same CID as `--chunker buzhash`).
#[tokio::test]
async fn garbage_and_lies_fall_back() {
    let dir = tempdir();
    make_tree(&dir.path().join("tree"), "lies", 200);
    let img = dir.path().join("img.sqfs");
    mksquashfs(&dir.path().join("tree"), &img, &["-comp", "gzip"]);
    let good = fs::read(&img).unwrap();
    let inode_table = u64::from_le_bytes(good[64..72].try_into().unwrap()) as usize;
    let bytes_used = u64::from_le_bytes(good[40..48].try_into().unwrap()) as usize;

    let mut cases: Vec<(String, Vec<u8>, bool)> = vec![
        ("garbage".into(), det_bytes("garbage", 700_000), true),
        ("magic only".into(), b"hsqs".repeat(100), true),
        ("truncated".into(), good[..good.len() / 2].to_vec(), true),
        (
            "elf without image".into(),
            fs::read("/bin/true").unwrap(),
            true,
        ),
    ];
    let patch = |at: usize, v: &[u8]| {
        let mut b = good.clone();
        b[at..at + v.len()].copy_from_slice(v);
        b
    };
    cases.push((
        "bytes_used past the end".into(),
        patch(40, &u64::MAX.to_le_bytes()),
        true,
    ));
    cases.push((
        "block size lie".into(),
        patch(12, &4096u32.to_le_bytes()),
        true,
    ));
    cases.push(("version 3".into(), patch(28, &3u16.to_le_bytes()), true));
    cases.push((
        "inode table moved".into(),
        patch(64, &((inode_table + 3) as u64).to_le_bytes()),
        false,
    ));
    cases.push((
        "inode count lie".into(),
        patch(4, &u32::MAX.to_le_bytes()),
        false,
    ));
    cases.push((
        "fragment count lie".into(),
        patch(16, &1_000_000u32.to_le_bytes()),
        false,
    ));
    cases.push(("lzo".into(), patch(20, &3u16.to_le_bytes()), true));
    // Flip bytes all over the tables (bounded: every 97th byte).
    for at in (inode_table..bytes_used).step_by(97) {
        let mut b = good.clone();
        b[at] ^= 0x5a;
        cases.push((format!("table byte {at} flipped"), b, false));
    }
    for (label, bytes, whole_buzhash) in cases {
        let path = write_bytes(&dir.path().join("case.bin"), &bytes);
        let (chunks, why) = chunks_of(&path, 0);
        if whole_buzhash {
            assert!(why.is_some(), "{label}: should not be recognised");
            let buz = distfs_add(&path, &["--chunker", "buzhash"]).unwrap();
            assert_eq!(
                distfs_add(&path, &["--chunker", "squashfs"]).unwrap(),
                buz,
                "{label}"
            );
        }
        // Whatever the plan, the leaves are the file.
        let joined: usize = chunks.iter().map(|c| c.1).sum();
        assert_eq!(joined, bytes.len(), "{label}");
        let opts = AddFlags {
            chunker: Some(ChunkerSpec::Squashfs),
            ..AddFlags::default()
        }
        .resolve()
        .unwrap();
        let mut store = MemStore::new();
        let root = add_path(&path, &opts, &mut store, &mut |_| {}).unwrap();
        let got = walk::read_range(&store, &root, 0, bytes.len() as u64)
            .await
            .unwrap();
        assert!(got[..] == bytes[..], "{label}: read back");
    }
}

/// The fuzz seed corpus (small images: gzip, zstd, xz, lz4 with uncompressed tables, an
/// exportable image, an ELF followed by an image) is recognised in full.
#[test]
fn seed_corpus_is_recognised() {
    let dir = support::repo_root().join("fuzz/corpus/squashfs_chunker");
    let mut seen = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let (chunks, why) = chunks_of(&path, 0);
        assert_eq!(why, None, "{}", path.display());
        assert!(
            chunks.len() > 5,
            "{}: {} chunks",
            path.display(),
            chunks.len()
        );
        seen += 1;
    }
    assert!(seen >= 6);
}
