//! `distfs mount` end to end: real `distfs add`, `distfs serve` and `distfs mount` processes,
//! the kernel's FUSE, and ordinary tools reading the mount. Every process and mount is owned
//! by a guard that cleans up on drop or panic (`mount/harness.rs`). Needs /dev/fuse and
//! fusermount3 (the tests fail, never skip, without them).

#[path = "support/mod.rs"]
mod support;

#[path = "mount/harness.rs"]
mod harness;
#[path = "mount/liar.rs"]
mod liar;
#[path = "mount/tree.rs"]
mod tree;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use harness::{is_mounted, run, run_ok, Mount, MountOpts, Serve};
use sha2::{Digest, Sha256};
use support::{det_bytes, distfs_add, tempdir, write_bytes, write_det};

/// A source tree imported into a block store, and a gateway serving it.
struct Fixture {
    tmp: tempfile::TempDir,
    root: String,
    serve: Serve,
}

impl Fixture {
    /// Builds the source under `tmp/src` with `build`, imports it with `flags` into
    /// `tmp/store` and starts `distfs serve` on it.
    fn new(flags: &[&str], build: impl FnOnce(&Path)) -> Fixture {
        let tmp = tempdir();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        build(&src);
        let store = tmp.path().join("store");
        let store_s = store.to_str().unwrap();
        let mut all = flags.to_vec();
        all.extend(["--store", store_s]);
        let root = distfs_add(&src, &all).expect("distfs add");
        let serve = Serve::start(&store);
        Fixture { tmp, root, serve }
    }

    fn src(&self) -> PathBuf {
        self.tmp.path().join("src")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Mounts at `tmp/<mnt>` with cache `tmp/<cache>` and the given gateways.
    fn mount(&self, mnt: &str, cache: &str, gateways: &[&str], extra: &[&str]) -> Mount {
        self.try_mount(mnt, cache, gateways, extra)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_mount(
        &self,
        mnt: &str,
        cache: &str,
        gateways: &[&str],
        extra: &[&str],
    ) -> Result<Mount, String> {
        Mount::try_start(
            &self.path(mnt),
            &MountOpts {
                root: &self.root,
                gateways,
                cache: &self.path(cache),
                extra,
            },
        )
    }
}

// ---------------------------------------------------------------------------------------
// 1. Tree equality, four import variants
// ---------------------------------------------------------------------------------------

fn tree_case(flags: &'static [&'static str], preserved: bool) {
    let mut ph = support::Phases::start();
    let fx = Fixture::new(flags, |src| tree::build(src, preserved));
    ph.mark("built and imported the tree");
    let m = fx.mount("mnt", "cache", &[&fx.serve.url], &[]);
    ph.mark("mounted");
    let v = tree::Variant { flags, preserved };
    tree::compare(&fx.src(), &m.dir, &v, fx.tmp.path());
    let root_xattr = run_ok(
        "getfattr",
        &[
            "-n",
            "user.ipfs.cid",
            "--only-values",
            m.dir.to_str().unwrap(),
        ],
    );
    assert_eq!(String::from_utf8_lossy(&root_xattr), fx.root, "root CID");
    // The big directory really is a HAMT shard (else the test would not cover them).
    let many = distfs_add(&fx.src().join("beta/0.10.0/many"), flags).unwrap();
    let block = harness::http_get(&fx.serve.url, &format!("/ipfs/{many}?format=raw"));
    let cid: cid::Cid = many.parse().unwrap();
    let node = distfs::unixfs::Node::decode(&cid, &block).unwrap();
    assert!(
        matches!(node, distfs::unixfs::Node::HamtShard(_)),
        "beta/0.10.0/many is a HAMT shard"
    );
    ph.mark("compared");
}

#[test]
fn tree_matches_source_defaults() {
    tree_case(&[], false);
}

#[test]
fn tree_matches_source_cid_v1() {
    tree_case(&["--cid-version", "1"], false);
}

#[test]
fn tree_matches_source_trickle() {
    tree_case(&["--trickle"], false);
}

#[test]
fn tree_matches_source_preserved_mode_and_mtime() {
    tree_case(&["--preserve-mode", "--preserve-mtime"], true);
}

// ---------------------------------------------------------------------------------------
// 2. Laziness and the persistent cache
// ---------------------------------------------------------------------------------------

const BIG: usize = 200 * 1024 * 1024;
const AT: usize = 100 * 1024 * 1024;

fn dd(path: &Path, offset: usize, count: usize) -> std::process::Output {
    run(
        "dd",
        &[
            &format!("if={}", path.display()),
            "iflag=skip_bytes,count_bytes",
            &format!("skip={offset}"),
            &format!("count={count}"),
            "bs=4096",
            "status=none",
        ],
    )
}

#[test]
fn reads_fetch_only_the_blocks_on_their_path_and_stay_cached() {
    let data = det_bytes("lazy 200 MiB", BIG);
    let fx = Fixture::new(&[], |src| {
        write_bytes(&src.join("big/1.0.0/blob.bin"), &data);
    });
    let file = "big/1.0.0/blob.bin";
    let m = fx.mount("mnt", "cache", &[&fx.serve.url], &[]);
    // The lookups and the 4-byte sniff that decides the mode (root, first internal node,
    // first leaf), before counting.
    run_ok("stat", &[m.path(file).to_str().unwrap()]);
    let before = fx.serve.settled_raw_requests();

    let out = dd(&m.path(file), AT, 4096);
    assert!(
        out.status.success(),
        "dd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, &data[AT..AT + 4096], "the 4 KiB at 100 MiB");
    let used = fx.serve.settled_raw_requests() - before;
    // The file is ~800 leaves of 256 KiB under 5 internal nodes. A 4 KiB read needs the
    // internal node covering 100 MiB and one leaf (the root is cached from the sniff). The
    // kernel's readahead may widen the read to 128 KiB..1 MiB, i.e. up to 4 more leaves (and
    // a second internal node if the window crossed one). 10 allows that and nothing more.
    eprintln!("raw block requests for a 4 KiB read at 100 MiB: {used}");
    assert!(
        used >= 2,
        "the read fetched its internal node and leaf ({used})"
    );
    assert!(
        used < 10,
        "a 4 KiB read fetched {used} blocks of a ~800-block file"
    );
    // A read at the start is sequential; readahead may fetch ahead there, which is fine.
    let head = dd(&m.path(file), 0, 4);
    assert_eq!(head.stdout, &data[..4]);
    drop(m);

    // The gateway stopped: a second mount on the same cache reads what the first read.
    let dead = fx.serve.url.clone();
    let mut fx = fx;
    fx.serve.kill();
    let m2 = fx.mount("mnt2", "cache", &[&dead], &["--read-timeout", "3"]);
    let again = dd(&m2.path(file), AT, 4096);
    assert!(
        again.status.success(),
        "cached read: {}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(again.stdout, &data[AT..AT + 4096]);
    assert_eq!(dd(&m2.path(file), 0, 4).stdout, &data[..4]);
    // And it really is the cache: data never read is not there.
    let far = dd(&m2.path(file), 150 * 1024 * 1024, 4096);
    assert!(
        !far.status.success(),
        "an uncached read with the gateway down must fail"
    );
    assert!(String::from_utf8_lossy(&far.stderr).contains("Input/output error"));
}

// ---------------------------------------------------------------------------------------
// 3. Verification and failover
// ---------------------------------------------------------------------------------------

/// A small distribution: two versions of multi-block files.
fn small_tree(src: &Path) {
    write_det(&src.join("app/1.0.0/a.bin"), "a", 3 * 1024 * 1024 + 1);
    write_det(&src.join("app/1.0.0/b.bin"), "b", 1024 * 1024 + 1);
    write_bytes(&src.join("app/1.0.0/c.txt"), b"see\n");
    write_det(&src.join("app/2.0.0/d.bin"), "d", 5 * 1024 * 1024);
    write_det(&src.join("app/2.0.0/e.bin"), "e", 2 * 1024 * 1024 + 7);
}

/// Reads `rel` under the mount with `cat`.
fn cat(m: &Mount, rel: &str) -> std::process::Output {
    run("cat", &[m.path(rel).to_str().unwrap()])
}

fn assert_eio_without_lies(out: &std::process::Output, want: &[u8], what: &str) {
    assert!(!out.status.success(), "{what}: cat must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Input/output error"), "{what}: {err}");
    assert!(
        out.stdout.len() < want.len() && want.starts_with(&out.stdout),
        "{what}: cat printed {} bytes that are not a prefix of the file",
        out.stdout.len()
    );
    // Redundant with the prefix check unless the lie matched the file; cheap: any run of
    // 127+ lie bytes contains one of its aligned 64-byte chunks.
    let lie = liar::lie_body();
    let chunks: std::collections::HashSet<&[u8]> = lie.chunks(64).collect();
    assert!(
        !out.stdout.windows(64).any(|w| chunks.contains(w)),
        "{what}: bytes from the liar reached the reader"
    );
}

#[test]
fn a_lying_gateway_is_never_believed() {
    // CIDv1 with raw leaves: a leaf is its bytes, so only hashing tells a lie from the truth
    // (dag-pb leaves would also be caught by a failing protobuf decode).
    let mut ph = support::Phases::start();
    let fx = Fixture::new(&["--cid-version", "1"], small_tree);
    let src = fx.src();
    let liar = liar::Liar::start();

    // Liar first, honest second: everything reads right.
    let m = fx.mount("mnt", "cache1", &[&liar.url, &fx.serve.url], &[]);
    for f in [
        "1.0.0/a.bin",
        "1.0.0/b.bin",
        "1.0.0/c.txt",
        "2.0.0/d.bin",
        "2.0.0/e.bin",
    ] {
        let out = cat(&m, &format!("app/{f}"));
        assert!(
            out.status.success(),
            "{f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout == std::fs::read(src.join("app").join(f)).unwrap(),
            "{f} content"
        );
    }
    assert!(liar.hits() > 0, "the liar, listed first, was asked");
    drop(m);
    ph.mark("liar first, honest second: all files read right");

    // Only the liar, empty cache: the root cannot be had, so the mount refuses to start.
    let err = fx
        .try_mount(
            "mnt-liar",
            "cache-liar",
            &[&liar.url],
            &["--read-timeout", "3"],
        )
        .err()
        .expect("a mount with only a lying gateway and no cache must not start");
    assert!(err.contains("exited with exit status: 1"), "{err}");
    ph.mark("only the liar, no cache: the mount refused to start");

    // Cache the directories (and each file's first leaf, read to sniff its mode) from the
    // honest gateway, then remount with only the liar: uncached blocks fail with EIO.
    let m = fx.mount("mnt2", "cache2", &[&fx.serve.url], &[]);
    run_ok("ls", &["-lR", m.dir.to_str().unwrap()]);
    drop(m);
    ph.mark("cached the directories");
    let m = fx.mount("mnt3", "cache2", &[&liar.url], &["--read-timeout", "3"]);
    let ls = run_ok("ls", &[m.path("app/2.0.0").to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&ls), "d.bin\ne.bin\n");
    let hits = liar.hits();
    let want = std::fs::read(src.join("app/2.0.0/d.bin")).unwrap();
    assert_eio_without_lies(&cat(&m, "app/2.0.0/d.bin"), &want, "only the liar");
    assert!(liar.hits() > hits, "the read asked the liar");
    ph.mark("only the liar: EIO");
}

#[test]
fn gateway_down_fails_reads_with_eio_and_keeps_the_mount_usable() {
    let mut fx = Fixture::new(&[], small_tree);
    let src = fx.src();
    let m = fx.mount("mnt", "cache", &[&fx.serve.url], &["--read-timeout", "3"]);
    let a = std::fs::read(src.join("app/1.0.0/a.bin")).unwrap();
    assert!(cat(&m, "app/1.0.0/a.bin").stdout == a);
    // Listing stats each entry (and reads each file's first 4 bytes for its mode), so
    // after these both directories are cached; only d.bin's later blocks are not.
    run_ok("ls", &["-l", m.path("app/1.0.0").to_str().unwrap()]);
    run_ok("ls", &["-l", m.path("app/2.0.0").to_str().unwrap()]);
    fx.serve.kill();

    let start = Instant::now();
    let want = std::fs::read(src.join("app/2.0.0/d.bin")).unwrap();
    let out = cat(&m, "app/2.0.0/d.bin");
    let took = start.elapsed();
    eprintln!("uncached read with the gateway down failed after {took:?}");
    assert!(
        took < Duration::from_secs(60),
        "the read returned ({took:?})"
    );
    assert!(!out.status.success(), "cat must fail");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Input/output error"));
    assert!(
        want.starts_with(&out.stdout),
        "only right bytes before the error"
    );

    // Still usable: cached directories list and cached files read.
    let ls = run_ok("ls", &[m.path("app/1.0.0").to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&ls), "a.bin\nb.bin\nc.txt\n");
    assert!(
        cat(&m, "app/1.0.0/a.bin").stdout == a,
        "a cached file still reads"
    );
    assert!(is_mounted(&m.dir));
}

// ---------------------------------------------------------------------------------------
// 4. Concurrency
// ---------------------------------------------------------------------------------------

#[test]
fn sixteen_concurrent_readers_get_the_right_bytes() {
    let sizes: Vec<usize> = (0..16).map(|i| 2 * 1024 * 1024 + i * 123_457).collect();
    let fx = Fixture::new(&[], |src| {
        for (i, n) in sizes.iter().enumerate() {
            write_det(
                &src.join(format!("many/1.{}.0/f{i}.bin", i % 2)),
                &format!("c{i}"),
                *n,
            );
        }
    });
    let m = fx.mount("mnt", "cache", &[&fx.serve.url], &[]);
    let threads: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let path = m.path(&format!("many/1.{}.0/f{i}.bin", i % 2));
            let want = hex::encode(Sha256::digest(det_bytes(&format!("c{i}"), *n)));
            std::thread::spawn(move || {
                let got = if i % 2 == 0 {
                    hex::encode(Sha256::digest(std::fs::read(&path).unwrap()))
                } else {
                    let out = run_ok("sha256sum", &[path.to_str().unwrap()]);
                    String::from_utf8_lossy(&out)[..64].to_string()
                };
                assert_eq!(got, want, "reader {i}");
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a reader failed");
    }
}

// ---------------------------------------------------------------------------------------
// 5. Read-only
// ---------------------------------------------------------------------------------------

#[test]
fn every_write_fails_with_erofs_and_changes_nothing() {
    let fx = Fixture::new(&[], small_tree);
    let m = fx.mount("mnt", "cache", &[&fx.serve.url], &[]);
    let snapshot = || {
        let script = "cd \"$1\" && find . -printf '%y %s %m %p\\n' | sort && find . -type f -print0 | sort -z | xargs -0 sha256sum";
        run_ok("sh", &["-c", script, "sh", m.dir.to_str().unwrap()])
    };
    let before = snapshot();
    let p = |r: &str| m.path(r).to_str().unwrap().to_string();
    let (file, dir) = (p("app/1.0.0/c.txt"), p("app/1.0.0"));
    let cmds: Vec<Vec<String>> = vec![
        vec!["touch".into(), file.clone()],
        vec!["touch".into(), p("app/1.0.0/new")],
        vec!["mkdir".into(), p("app/1.0.0/newdir")],
        vec!["rm".into(), file.clone()],
        vec!["rm".into(), "-r".into(), dir.clone()],
        vec!["mv".into(), file.clone(), p("app/1.0.0/moved")],
        vec!["sh".into(), "-c".into(), format!("echo x > '{file}'")],
        vec![
            "sh".into(),
            "-c".into(),
            format!("echo x > '{}'", p("app/new")),
        ],
        vec!["truncate".into(), "-s".into(), "0".into(), file.clone()],
        vec!["chmod".into(), "777".into(), file.clone()],
        vec![
            "setfattr".into(),
            "-n".into(),
            "user.x".into(),
            "-v".into(),
            "1".into(),
            file.clone(),
        ],
        vec!["ln".into(), "-s".into(), "x".into(), p("app/1.0.0/ln")],
    ];
    for c in &cmds {
        let args: Vec<&str> = c[1..].iter().map(String::as_str).collect();
        let out = run(&c[0], &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{c:?} succeeded on a read-only mount"
        );
        assert!(err.contains("Read-only file system"), "{c:?}: {err}");
    }
    assert_eq!(snapshot(), before, "a write changed the mount");
}

// ---------------------------------------------------------------------------------------
// 6. Life cycle
// ---------------------------------------------------------------------------------------

#[test]
fn sigterm_unmount_and_stale_mount_recovery() {
    let fx = Fixture::new(&[], small_tree);
    let want = b"see\n".to_vec();

    // SIGTERM: exit 0, mount gone.
    let mut m = fx.mount("mnt", "cache", &[&fx.serve.url], &[]);
    assert_eq!(cat(&m, "app/1.0.0/c.txt").stdout, want);
    let st = m.signal_and_wait(libc::SIGTERM);
    assert_eq!(
        st.code(),
        Some(0),
        "exit status after SIGTERM: {}",
        m.log_text()
    );
    assert!(!is_mounted(&m.dir), "still mounted after SIGTERM");
    drop(m);

    // fusermount3 -u: the daemon exits 0.
    let mut m = fx.mount("mnt", "cache", &[&fx.serve.url], &[]);
    assert_eq!(cat(&m, "app/1.0.0/c.txt").stdout, want);
    run_ok("fusermount3", &["-u", m.dir.to_str().unwrap()]);
    let st = m.wait_exit();
    assert_eq!(
        st.code(),
        Some(0),
        "exit status after fusermount3 -u: {}",
        m.log_text()
    );
    drop(m);

    // SIGKILL leaves a dead mount; a new daemon clears it and serves.
    let mut dead = fx.mount("mnt", "cache", &[&fx.serve.url], &[]);
    let st = dead.signal_and_wait(libc::SIGKILL);
    assert_eq!(st.code(), None, "killed by a signal");
    // The kernel answers `stat` of the root from its attribute cache until the 1 s TTL of
    // the root runs out; after that it must report the dead connection.
    let err = harness::poll(
        "stat of the dead mount to fail",
        Duration::from_secs(10),
        || {
            let out = run("stat", &[dead.dir.to_str().unwrap()]);
            (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).to_string())
        },
    );
    assert!(err.contains("Transport endpoint is not connected"), "{err}");
    let m = fx.mount("mnt", "cache", &[&fx.serve.url], &[]);
    dead.disarm();
    assert_eq!(cat(&m, "app/1.0.0/c.txt").stdout, want);
    let a = std::fs::read(fx.src().join("app/1.0.0/a.bin")).unwrap();
    assert!(cat(&m, "app/1.0.0/a.bin").stdout == a);
}
