//! Dedup benchmark: for version N+1 of a file after version N, how many bytes must be stored
//! (and fetched, for a reader that has N cached) under each way of cutting it, against the
//! ideal and against zsync. Driven by `benches/dedup.sh`, which builds the inputs; run by
//! hand as `cargo bench --profile dev --bench dedup -- LABEL=OLD,NEW ...`.
//!
//! For each pair it prints one Markdown table row per method:
//! - **fixed 256 KiB / buzhash / squashfs-aware** (one chunk per squashfs block, and for
//!   comparison consecutive blocks of a file grouped up to 256 KiB and 1 MiB): the file
//!   imported with CIDv1 raw leaves; bytes of every block of N+1's DAG (leaves and internal
//!   nodes) whose multihash is not among N's blocks, and how many of those bytes are
//!   internal nodes (links: ≈ 40 bytes per leaf, rewritten wherever a leaf below changed).
//! - **ideal**: bytes of N+1's squashfs blocks (compressed data blocks, fragment blocks,
//!   metadata blocks, superblock, table indexes) whose contents do not occur as a block of N.
//! - **zsync**: N+1 cut into zsync's fixed blocks (2048 bytes below 100 MB, else 4096, as
//!   zsyncmake picks them), each looked up in N at any offset with the rsync rolling checksum
//!   and confirmed byte for byte; bytes = unmatched blocks, plus the `.zsync` control file a
//!   client downloads first (block count × hash lengths from zsyncmake's formula). Every
//!   block is matched on its own (zsync also demands a second consecutive match when it uses
//!   `seq_matches = 2`), so this is a lower bound on what zsync fetches.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use distfs::block::Block;
use distfs::block::{codec, multihash_key};
use distfs::import::chunker::{AnyChunker, FixedChunker};
use distfs::import::squashfs::{read_image, SeekSource, SquashfsChunker};
use distfs::import::{
    import_chunked, AddFlags, BlockSink, ChunkerSpec, ImportError, ImportOptions, Metadata,
};
use sha2::{Digest, Sha256};

/// Collects each block's length and whether it is a leaf (raw), by multihash.
#[derive(Default)]
struct Sizes(HashMap<Vec<u8>, (usize, bool)>);

impl BlockSink for Sizes {
    fn put(&mut self, block: Block) -> Result<(), ImportError> {
        let leaf = block.cid().codec() == codec::RAW;
        self.0
            .insert(multihash_key(block.cid()), (block.data().len(), leaf));
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Method {
    Fixed,
    Buzhash,
    Squashfs(usize),
}

impl Method {
    fn name(self) -> String {
        match self {
            Method::Fixed => "fixed 256 KiB (Kubo default)".into(),
            Method::Buzhash => "buzhash".into(),
            Method::Squashfs(0) => "**squashfs-aware** (one chunk per block)".into(),
            Method::Squashfs(g) => format!("squashfs-aware, blocks grouped up to {} KiB", g >> 10),
        }
    }
}

fn opts() -> ImportOptions {
    AddFlags {
        cid_version: Some(1),
        ..AddFlags::default()
    }
    .resolve()
    .expect("CIDv1 options")
}

fn dag(path: &Path, method: Method) -> Sizes {
    let file = File::open(path).expect("open input");
    let chunks = match method {
        Method::Fixed => AnyChunker::Fixed(FixedChunker::new(file, 262_144)),
        Method::Buzhash => ChunkerSpec::Buzhash.open(file).expect("buzhash"),
        Method::Squashfs(group) => {
            let (c, image) = SquashfsChunker::open(file, group).expect("plan");
            if let Err(why) = image {
                panic!("{}: not recognised as squashfs: {why}", path.display());
            }
            AnyChunker::Squashfs(c)
        }
    };
    let mut sizes = Sizes::default();
    import_chunked(chunks, &opts(), &Metadata::default(), &mut sizes).expect("import");
    sizes
}

/// Bytes of `new`'s blocks not in `old`: (all blocks, internal nodes only).
fn fresh(old: &Sizes, new: &Sizes) -> (u64, u64) {
    let mut all = 0;
    let mut internal = 0;
    for (k, (n, leaf)) in &new.0 {
        if !old.0.contains_key(k) {
            all += *n as u64;
            if !leaf {
                internal += *n as u64;
            }
        }
    }
    (all, internal)
}

/// (sha256 of each squashfs block, its length) of the image in `path`.
fn squashfs_blocks(path: &Path) -> Vec<([u8; 32], u64)> {
    let mut file = File::open(path).expect("open input");
    let image = read_image(&mut SeekSource::new(&mut file).expect("size"))
        .expect("read")
        .expect("recognised image");
    image
        .pieces
        .iter()
        .map(|p| {
            let mut buf = vec![0u8; p.len as usize];
            file.seek(SeekFrom::Start(p.start)).expect("seek");
            file.read_exact(&mut buf).expect("read block");
            (Sha256::digest(&buf).into(), u64::from(p.len))
        })
        .collect()
}

fn ideal(old: &Path, new: &Path) -> u64 {
    let have: HashSet<[u8; 32]> = squashfs_blocks(old).into_iter().map(|b| b.0).collect();
    let mut counted = HashSet::new();
    squashfs_blocks(new)
        .into_iter()
        .filter(|(h, _)| !have.contains(h) && counted.insert(*h))
        .map(|(_, n)| n)
        .sum()
}

/// rsync's weak checksum (zsync's `rsum`): a = Σ bytes, b = Σ (len − i)·byte, both mod 2^16.
fn rsum(block: &[u8]) -> (u16, u16) {
    let n = block.len();
    let mut a = 0u16;
    let mut b = 0u16;
    for (i, &x) in block.iter().enumerate() {
        a = a.wrapping_add(u16::from(x));
        b = b.wrapping_add(((n - i) as u16).wrapping_mul(u16::from(x)));
    }
    (a, b)
}

/// Bytes a zsync client with `old` downloads for `new`: (unmatched blocks, control file).
fn zsync(old: &[u8], new: &[u8]) -> (u64, u64) {
    let bs = if new.len() < 100_000_000 { 2048 } else { 4096 };
    let blocks: Vec<&[u8]> = new.chunks(bs).collect();
    let mut by_sum: HashMap<(u16, u16), Vec<usize>> = HashMap::new();
    for (i, b) in blocks.iter().enumerate() {
        if b.len() == bs {
            by_sum.entry(rsum(b)).or_default().push(i);
        }
    }
    let mut matched = vec![false; blocks.len()];
    if old.len() >= bs {
        let (mut a, mut b) = rsum(&old[..bs]);
        for off in 0..=old.len() - bs {
            if let Some(cands) = by_sum.get(&(a, b)) {
                let window = &old[off..off + bs];
                for &i in cands {
                    if !matched[i] && blocks[i] == window {
                        matched[i] = true;
                    }
                }
            }
            if off + bs < old.len() {
                let out = u16::from(old[off]);
                let inc = u16::from(old[off + bs]);
                a = a.wrapping_sub(out).wrapping_add(inc);
                b = b
                    .wrapping_sub((bs as u16).wrapping_mul(out))
                    .wrapping_add(a);
            }
        }
    }
    let unmatched = blocks
        .iter()
        .zip(&matched)
        .filter(|(_, m)| !**m)
        .map(|(b, _)| b.len() as u64)
        .sum();
    // zsyncmake's hash lengths with seq_matches = 2 (files longer than one block).
    let len = new.len() as f64;
    let bsf = bs as f64;
    let seq = 2.0;
    let rsum_len = (((len.ln() + bsf.ln()) / 2f64.ln() - 8.6) / seq / 8.0)
        .ceil()
        .clamp(2.0, 4.0);
    let nblocks = (1.0 + len / bsf).floor();
    let c1 = ((20.0 + (len.ln() + nblocks.ln()) / 2f64.ln()) / seq / 8.0).ceil();
    let c2 = ((7.9 + (20.0 + nblocks.ln() / 2f64.ln())) / 8.0).floor();
    let control = blocks.len() as u64 * (rsum_len + c1.max(c2)) as u64;
    (unmatched, control)
}

fn human(n: u64) -> String {
    format!("{:.2} MiB", n as f64 / 1048576.0)
}

fn main() {
    // Test runners list every target's tests (`--list`); this bench has none.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let pairs: Vec<(String, PathBuf, PathBuf)> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .map(|a| {
            let (label, paths) = a.split_once('=').expect("LABEL=OLD,NEW");
            let (old, new) = paths.split_once(',').expect("LABEL=OLD,NEW");
            (label.to_string(), old.into(), new.into())
        })
        .collect();
    if pairs.is_empty() {
        eprintln!("usage: cargo bench --profile dev --bench dedup -- LABEL=OLD,NEW ...");
        std::process::exit(2);
    }
    let methods = [
        Method::Fixed,
        Method::Buzhash,
        Method::Squashfs(0),
        Method::Squashfs(256 << 10),
        Method::Squashfs(1 << 20),
    ];
    for (label, old, new) in pairs {
        let new_len = std::fs::metadata(&new).expect("stat").len();
        let best = ideal(&old, &new);
        println!(
            "\n#### {label}: N+1 is {} ({new_len} bytes)\n",
            human(new_len)
        );
        println!("| method | bytes of N+1 not in N | % of N+1 | × ideal | of which DAG nodes |");
        println!("| --- | ---: | ---: | ---: | ---: |");
        let row = |name: &str, bytes: u64, internal: Option<u64>| {
            println!(
                "| {name} | {} ({bytes}) | {:.1}% | {:.2} | {} |",
                human(bytes),
                100.0 * bytes as f64 / new_len as f64,
                bytes as f64 / best.max(1) as f64,
                internal.map_or("–".to_string(), |n| n.to_string()),
            );
        };
        for m in methods {
            let (a, b) = (dag(&old, m), dag(&new, m));
            let (all, internal) = fresh(&a, &b);
            row(&m.name(), all, Some(internal));
        }
        row("**ideal** (squashfs blocks of N+1 not in N)", best, None);
        let (o, n) = (
            std::fs::read(&old).expect("read"),
            std::fs::read(&new).expect("read"),
        );
        let (blocks, control) = zsync(&o, &n);
        row("zsync blocks (2 KiB, any offset)", blocks, None);
        row("zsync blocks + .zsync control file", blocks + control, None);
    }
}
