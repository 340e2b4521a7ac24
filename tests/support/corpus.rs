//! The conformance corpus (shared by conformance.rs and car_interop.rs): files and trees generated deterministically in a temp dir, each
//! tagged with what it exercises so option sets can pick the cases that matter to them.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{det_bytes, write_bytes, write_det};

pub const CHUNK: usize = 262_144;
/// Kubo's default links per file node.
pub const LINKS: usize = 174;

/// Tags: which option sets a case is relevant to.
pub const FILE: u32 = 1; // a single regular file
pub const TREE: u32 = 1 << 1; // a directory tree
pub const BIG: u32 = 1 << 2; // ≥ 45 MiB: run only where the layout matters
pub const HAMT_V0: u32 = 1 << 3; // directory sized around the CIDv0 sharding threshold
pub const HAMT_V1: u32 = 1 << 4; // directory sized around the CIDv1 sharding threshold
pub const HIDDEN: u32 = 1 << 5; // contains dotfiles: needs `--hidden` to match Kubo's AddFile
pub const META: u32 = 1 << 6; // non-default modes/mtimes, for --preserve-mode/--preserve-mtime
pub const SMALLCHUNK: u32 = 1 << 7; // a few KiB: interesting with a tiny chunker
pub const JS_SUBDIR_ESTIMATE: u32 = 1 << 8; // JS under-counts subdirs in the shard estimate
pub const META_SINGLE: u32 = 1 << 10; // one-chunk files with mode/mtime (see conformance.rs)
pub const AT_THRESHOLD_V0: u32 = 1 << 9; // exactly 262144: Kubo 0.22 shards (`>=`), Kubo ≥ 0.40 not

pub struct Case {
    pub name: &'static str,
    pub path: PathBuf,
    pub tags: u32,
    /// A CID published by Kubo/IPIP-0499 for this input with Kubo defaults, if any.
    pub published_v0: Option<&'static str>,
}

impl Case {
    pub fn has(&self, tag: u32) -> bool {
        self.tags & tag != 0
    }
}

pub struct Corpus {
    pub cases: Vec<Case>,
}

fn set_mtime(path: &Path, t: SystemTime) {
    let f = fs::File::open(path).expect("open for set_modified");
    f.set_modified(t).expect("set mtime");
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A directory of `n` small files whose names make Σ(len(name) + cid_len) exactly
/// `target` (names of equal length, the last adjusted by `delta` bytes).
fn threshold_dir(dir: &Path, n: usize, cid_len: usize, delta: isize) {
    let target = 262_144usize;
    assert_eq!(target % n, 0, "pick n dividing 262144");
    let name_len = target / n - cid_len;
    for i in 0..n {
        let mut len = name_len;
        if i == n - 1 {
            len = (len as isize + delta) as usize;
        }
        let stem = format!("{i:05}-");
        let name: String = stem
            .chars()
            .chain(std::iter::repeat('n'))
            .take(len)
            .collect();
        write_bytes(&dir.join(name), format!("{i}\n").as_bytes());
    }
}

/// Collects cases, generating each one's files only if the selector wants it.
struct Builder<'a> {
    root: PathBuf,
    sel: &'a dyn Fn(&str, u32) -> bool,
    cases: Vec<Case>,
}

impl Builder<'_> {
    fn case(
        &mut self,
        name: &'static str,
        tags: u32,
        published_v0: Option<&'static str>,
        make: impl FnOnce(&Path) -> PathBuf,
    ) {
        if (self.sel)(name, tags) {
            let path = make(&self.root);
            self.cases.push(Case {
                name,
                path,
                tags,
                published_v0,
            });
        }
    }
}

/// Builds the corpus under `root`: every case for which `sel(name, tags)` is true.
pub fn build(root: &Path, sel: &dyn Fn(&str, u32) -> bool) -> Corpus {
    let mut b = Builder {
        root: root.to_path_buf(),
        sel,
        cases: Vec::new(),
    };

    // --- single files: chunk boundaries (what each size exercises is in its name) ---
    let file = |name: &'static str, seed: &'static str, len: usize| {
        move |r: &Path| write_det(&r.join("files").join(name), seed, len)
    };
    b.case(
        "empty",
        FILE,
        Some("QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"),
        |r| write_bytes(&r.join("files/empty"), b""),
    );
    b.case("one-byte", FILE | SMALLCHUNK, None, |r| {
        write_bytes(&r.join("files/one"), b"x")
    });
    b.case(
        "hello-world",
        FILE | SMALLCHUNK,
        Some("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"),
        |r| write_bytes(&r.join("files/hello"), b"hello world\n"),
    );
    b.case(
        "1000B",
        FILE | SMALLCHUNK,
        None,
        file("1000", "small-1000", 1000),
    );
    b.case(
        "4097B",
        FILE | SMALLCHUNK,
        None,
        file("4097", "small-4097", 4097),
    );
    b.case(
        "chunk-1",
        FILE,
        None,
        file("c-1", "chunk-v0-seed", CHUNK - 1),
    );
    b.case(
        "chunk",
        FILE,
        Some("QmWmRj3dFDZdb6ABvbmKhEL6TmPbAfBZ1t5BxsEyJrcZhE"),
        file("c", "chunk-v0-seed", CHUNK),
    );
    b.case(
        "chunk+1",
        FILE,
        Some("QmYyLxtzZyW22zpoVAtKANLRHpDjZtNeDjQdJrcQNWoRkJ"),
        file("c+1", "chunk-v0-seed", CHUNK + 1),
    );
    b.case("2chunks", FILE, None, file("2c", "two-chunks", 2 * CHUNK));
    b.case("1MiB+1", FILE, None, file("1m+1", "one-mib", 1_048_577));
    b.case(
        "3MiB+17",
        FILE,
        None,
        file("3m", "three-mib", 3 * 1_048_576 + 17),
    );
    b.case("7MiB", FILE, None, file("7m", "seven-mib", 7 * 1_048_576));
    // 174 chunks fill one internal node exactly; ±1 byte flips to depth 2 / shortens a leaf.
    b.case(
        "174chunks-1",
        FILE | BIG,
        None,
        file("174c-1", "v0-seed", LINKS * CHUNK - 1),
    );
    b.case(
        "174chunks",
        FILE | BIG,
        Some("QmUbBALi174SnogsUzLpYbD4xPiBSFANF4iztWCsHbMKh2"),
        file("174c", "v0-seed", LINKS * CHUNK),
    );
    b.case(
        "174chunks+1",
        FILE | BIG,
        Some("QmV81WL765sC8DXsRhE5fJv2rwhS4icHRaf3J9Zk5FdRnW"),
        file("174c+1", "v0-seed", LINKS * CHUNK + 1),
    );
    // Kubo's trickle vector input (its trickle CID is checked in the oracle self-check).
    b.case(
        "45MiB-trickle-seed",
        FILE | BIG,
        None,
        file("trickle-test", "trickle-test", 47_185_920),
    );

    // --- trees ---
    b.case("flat-dir", TREE, None, |r| {
        let d = r.join("trees/flat");
        write_bytes(&d.join("a.txt"), b"hello world\n");
        write_det(&d.join("b.bin"), "flat-b", 300_000);
        write_bytes(&d.join("c"), b"");
        d
    });
    b.case(
        "empty-dir",
        TREE,
        Some("QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"),
        |r| {
            let d = r.join("trees/empty-dir");
            fs::create_dir_all(&d).unwrap();
            d
        },
    );
    b.case("only-empty-dirs", TREE, None, |r| {
        let d = r.join("trees/only-empty-dirs");
        for n in ["a", "b", "c/d/e"] {
            fs::create_dir_all(d.join(n)).unwrap();
        }
        d
    });
    b.case("nested-empty-files", TREE, None, |r| {
        let d = r.join("trees/nested-empty-files");
        for n in ["e", "a/e", "a/b/e", "a/b/c/e", "x/y/z/e"] {
            write_bytes(&d.join(n), b"");
        }
        d
    });
    b.case("deep-20", TREE, None, |r| {
        let d = r.join("trees/deep");
        let mut p = d.clone();
        for level in 0..20 {
            p = p.join(format!("level-{level:02}"));
            write_bytes(
                &p.join(format!("f{level}")),
                format!("depth {level}\n").as_bytes(),
            );
        }
        write_det(&p.join("bottom.bin"), "deep-bottom", 600_000);
        d
    });
    b.case("unicode-and-spaces", TREE, None, |r| {
        let d = r.join("trees/unicode");
        for n in [
            "é",
            "ü ber",
            "日本語.txt",
            "emoji 🦀",
            "with space",
            " leading",
            "trailing ",
            "a\u{0301}",
        ] {
            write_bytes(&d.join(n), n.as_bytes());
        }
        write_bytes(&d.join("dir ü/ïnner file"), b"inner\n");
        d
    });
    b.case("name-byte-order", TREE, None, |r| {
        let d = r.join("trees/name-order");
        for n in [
            "a", "a.txt", "a b", "A", "Z", "~", "ä", "aa", "a-", "a_", "0", "10", "9",
        ] {
            write_bytes(&d.join(n), n.as_bytes());
        }
        d
    });
    b.case("255-byte-name", TREE, None, |r| {
        let d = r.join("trees/long-name");
        write_bytes(&d.join("n".repeat(255)), b"255\n");
        d
    });
    b.case("symlinks", TREE, None, |r| {
        let d = r.join("trees/symlinks");
        write_bytes(&d.join("target.txt"), b"content\n");
        write_bytes(&d.join("sub/inner"), b"inner\n");
        symlink("target.txt", d.join("rel-file")).unwrap();
        symlink("sub", d.join("rel-dir")).unwrap();
        symlink("../target.txt", d.join("sub/up")).unwrap();
        symlink("does/not/exist", d.join("dangling")).unwrap();
        symlink("/etc/hostname-not-followed", d.join("absolute")).unwrap();
        d
    });
    b.case("dotfiles", TREE | HIDDEN, None, |r| {
        let d = r.join("trees/hidden");
        write_bytes(&d.join(".dotfile"), b"hidden\n");
        write_bytes(&d.join(".dotdir/inside"), b"x\n");
        write_bytes(&d.join("visible"), b"v\n");
        d
    });
    b.case("mixed-tree", TREE, None, |r| {
        let d = r.join("trees/mixed");
        write_det(&d.join("big/3m.bin"), "mixed-3m", 3 * 1_048_576 + 5);
        write_det(&d.join("big/chunk.bin"), "mixed-c", CHUNK);
        write_bytes(&d.join("docs/readme"), b"read me\n");
        write_bytes(&d.join("docs/dup"), b"read me\n"); // same content twice
        fs::create_dir_all(d.join("docs/empty")).unwrap();
        symlink("docs/readme", d.join("readme-link")).unwrap();
        d
    });
    b.case("dir-with-one-big-file", TREE, None, |r| {
        let d = r.join("trees/single-big-file");
        write_det(&d.join("payload"), "single-big", 5 * 1_048_576 + 3);
        d
    });

    // Sharding threshold (SPECS §3.6): Σ len(name)+len(cid) over entries; CIDv0 = 34 bytes.
    // Exactly 262144 shards in Kubo ≤ 0.39 (boxo `>=`, e.g. the Kubo 0.22 oracle) but not in
    // current Kubo or JS (`>`).
    let thr = |name: &'static str, cid_len: usize, delta: isize| {
        move |r: &Path| {
            let d = r.join("trees").join(name);
            threshold_dir(&d, 2048, cid_len, delta);
            d
        }
    };
    b.case(
        "hamt-v0-below (262143)",
        TREE | HAMT_V0,
        None,
        thr("hamt-v0-below", 34, -1),
    );
    b.case(
        "hamt-v0-exact (262144)",
        TREE | HAMT_V0 | AT_THRESHOLD_V0,
        None,
        thr("hamt-v0-exact", 34, 0),
    );
    b.case(
        "hamt-v0-above (262145)",
        TREE | HAMT_V0,
        None,
        thr("hamt-v0-above", 34, 1),
    );
    b.case(
        "hamt-v1-exact (262144)",
        TREE | HAMT_V1,
        None,
        thr("hamt-v1-exact", 36, 0),
    );
    b.case(
        "hamt-v1-above (262145)",
        TREE | HAMT_V1,
        None,
        thr("hamt-v1-above", 36, 1),
    );

    // A big sharded dir with multi-level shards, mixed entry kinds.
    b.case("hamt-3000-mixed", TREE | HAMT_V0 | HAMT_V1, None, |r| {
        let d = r.join("trees/hamt-big");
        for i in 0..3000 {
            let name = format!("entry-{i:04}-{}", "x".repeat(i % 97));
            match i % 10 {
                0 => fs::create_dir_all(d.join(&name)).unwrap(),
                1 => symlink(format!("target-{i}"), d.join(&name)).unwrap(),
                _ => {
                    write_bytes(&d.join(&name), &det_bytes(&name, i % 700));
                }
            }
        }
        d
    });

    // 2100 non-empty subdirectories with long names: Kubo counts them toward the shard
    // estimate, JS's DirFlat does not (they have no CID yet when it estimates).
    b.case("hamt-2100-subdirs", TREE | JS_SUBDIR_ESTIMATE, None, |r| {
        let d = r.join("trees/hamt-subdirs");
        for i in 0..2100 {
            write_bytes(
                &d.join(format!("{i:04}-{}", "s".repeat(96))).join("f"),
                b"f\n",
            );
        }
        d
    });

    // Non-default modes and mtimes (JS omits mode 0644 on files and 0755 on dirs, Kubo
    // writes any non-zero mode, so defaults are avoided here). Files are ≥ 2 chunks at the
    // default chunker so the metadata sits on an internal node (JS mishandles single-chunk
    // dag-pb files with metadata; see conformance.rs).
    b.case("modes-and-mtimes", TREE | META, None, |r| {
        let d = r.join("trees/meta");
        let t0 = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        let files = [
            ("rw-owner", 0o600, t0),
            ("exec", 0o755, UNIX_EPOCH + Duration::new(1_600_000_000, 0)),
            ("group", 0o640, UNIX_EPOCH + Duration::new(1, 1)),
            ("setuid", 0o4750, t0),
            (
                "before-1970",
                0o600,
                UNIX_EPOCH - Duration::new(1, 500_000_000),
            ),
        ];
        for (n, mode, mtime) in files {
            let p = write_det(&d.join(n), n, CHUNK + 100);
            set_mode(&p, mode);
            set_mtime(&p, mtime);
        }
        let sub = d.join("private");
        write_det(&sub.join("data"), "meta-data", 2 * CHUNK + 1);
        set_mode(&sub.join("data"), 0o604);
        set_mtime(&sub.join("data"), t0);
        set_mode(&sub, 0o700);
        set_mtime(&sub, UNIX_EPOCH + Duration::new(1_234_567_890, 5));
        set_mode(&d, 0o750);
        set_mtime(&d, UNIX_EPOCH + Duration::new(1_500_000_000, 999_999_999));
        d
    });
    b.case("file-with-mode-mtime", FILE | META, None, |r| {
        let p = write_det(&r.join("files/meta-file"), "meta-file", 3 * CHUNK);
        set_mode(&p, 0o751);
        set_mtime(&p, UNIX_EPOCH + Duration::new(1_000_000_000, 500));
        p
    });

    b.case("one-chunk-with-mode-mtime", FILE | META_SINGLE, None, |r| {
        let p = write_bytes(&r.join("files/meta-small"), b"hello world\n");
        set_mode(&p, 0o600);
        set_mtime(&p, UNIX_EPOCH + Duration::new(1_700_000_000, 42));
        p
    });
    b.case("empty-with-mode-mtime", FILE | META_SINGLE, None, |r| {
        let p = write_bytes(&r.join("files/meta-empty"), b"");
        set_mode(&p, 0o700);
        set_mtime(&p, UNIX_EPOCH + Duration::new(1_700_000_001, 0));
        p
    });

    Corpus { cases: b.cases }
}
