//! The cache quota, pins, gc, crash safety, a full disk and the one-daemon lock, end to end:
//! real `distfs add`, `distfs serve` (127.0.0.1 port 0) and `distfs mount` processes, the
//! kernel's FUSE, and the cache directory measured and re-hashed from outside.

#[path = "support/mod.rs"]
mod support;

#[path = "mount/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use harness::{poll, run, run_ok, Mount, MountOpts, Serve};
use sha2::{Digest, Sha256};
use support::cache::{bad_blocks, block_files};
use support::{det_bytes, distfs_add, distfs_bin, tempdir, write_bytes};

const MIB: u64 = 1024 * 1024;
/// Requests in flight the quota test allows the daemon (`--max-in-flight`).
const IN_FLIGHT: usize = distfs::dist::readahead::MIN_WINDOW_BLOCKS;
/// One fetch batch: the daemon's readahead window, as many blocks as the fetcher keeps in
/// flight (at most `IN_FLIGHT`, and never under `MIN_WINDOW_BLOCKS`), the most a single
/// read can bring in at once past the moment the quota is crossed.
const FETCH_BATCH: u64 = IN_FLIGHT as u64 * distfs::dist::readahead::WINDOW_BLOCK;

/// A distribution `proj/<version>/<name>` of deterministic files, imported and served.
struct Dist {
    tmp: tempfile::TempDir,
    root: String,
    serve: Serve,
    files: Vec<(String, Vec<u8>)>,
}

impl Dist {
    /// `files`: (path under the root, seed, length).
    fn new(files: &[(&str, usize)]) -> Dist {
        let tmp = tempdir();
        let src = tmp.path().join("src");
        let mut out = Vec::new();
        for (rel, len) in files {
            let data = det_bytes(rel, *len);
            write_bytes(&src.join(rel), &data);
            out.push(((*rel).to_owned(), data));
        }
        let store = tmp.path().join("store");
        let root = distfs_add(&src, &["--store", store.to_str().unwrap()]).expect("distfs add");
        let serve = Serve::start(&store);
        Dist {
            tmp,
            root,
            serve,
            files: out,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn try_mount(&self, mnt: &str, cache: &Path, extra: &[&str]) -> Result<Mount, String> {
        let url = self.serve.url.clone();
        Mount::try_start(
            &self.path(mnt),
            &MountOpts {
                root: &self.root,
                gateways: &[&url],
                cache,
                extra,
            },
        )
    }

    fn mount(&self, mnt: &str, cache: &Path, extra: &[&str]) -> Mount {
        self.try_mount(mnt, cache, extra)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn expected(&self, rel: &str) -> &[u8] {
        &self
            .files
            .iter()
            .find(|(r, _)| r == rel)
            .expect("a fixture file")
            .1
    }
}

/// Apparent bytes of every file under `dir` (block files, temp files, everything).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// Reads `path` in 1 MiB pieces, calling `between` after each; the bytes.
fn read_in_pieces(path: &Path, mut between: impl FnMut()) -> Vec<u8> {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut all = Vec::new();
    let mut buf = vec![0u8; MIB as usize];
    loop {
        let n = f.read(&mut buf).expect("read through the mount");
        if n == 0 {
            return all;
        }
        all.extend_from_slice(&buf[..n]);
        between();
    }
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn assert_same(rel: &str, got: &[u8], want: &[u8]) {
    assert!(
        got.len() == want.len() && sha(got) == sha(want),
        "{rel}: wrong bytes through the mount ({} bytes read, {} expected)",
        got.len(),
        want.len()
    );
}

#[test]
fn reading_three_times_the_quota_stays_within_one_fetch_batch() {
    const QUOTA: u64 = 16 * MIB;
    let names = ["proj/1.0/a.bin", "proj/1.0/b.bin", "proj/1.0/c.bin"];
    let files: Vec<(&str, usize)> = names.iter().map(|n| (*n, QUOTA as usize)).collect();
    let d = Dist::new(&files);
    let cache = d.path("cache");
    let in_flight = IN_FLIGHT.to_string();
    let m = d.mount(
        "mnt",
        &cache,
        &["--cache-size", "16M", "--max-in-flight", &in_flight],
    );
    let mut peak = 0;
    for rel in names {
        let got = read_in_pieces(&m.path(rel), || peak = peak.max(dir_bytes(&cache)));
        assert_same(rel, &got, d.expected(rel));
    }
    let settled = poll("eviction to settle", Duration::from_secs(30), || {
        let b = dir_bytes(&cache);
        (b <= QUOTA).then_some(b)
    });
    eprintln!(
        "read {} MiB with a {} MiB quota: cache peak {peak} bytes, settled {settled}",
        3 * QUOTA / MIB,
        QUOTA / MIB
    );
    assert!(
        peak <= QUOTA + FETCH_BATCH,
        "the cache reached {peak} bytes, over the {QUOTA}-byte quota by more than one \
         fetch batch ({FETCH_BATCH})"
    );
    assert!(
        peak > QUOTA / 2,
        "the cache never filled (peak {peak}): the measurement saw nothing"
    );
    // What was read last is cached; what was read first has been evicted to make room.
    drop(m);
    let blocks = block_files(&cache).len();
    assert!(blocks > 0 && dir_bytes(&cache) <= QUOTA, "{blocks} blocks");
}

/// The block file names of `file` imported alone with `distfs add`'s defaults (the options
/// the fixture distribution was imported with): the blocks a read of it brings into a cache.
fn blocks_of(file: &Path, scratch: &Path) -> Vec<String> {
    distfs_add(file, &["--store", scratch.to_str().unwrap()]).expect("distfs add");
    let names: Vec<String> = block_files(scratch).into_iter().map(|(_, n)| n).collect();
    assert!(names.len() > 1, "{} imported as {names:?}", file.display());
    names
}

#[test]
fn an_open_file_keeps_its_blocks_through_eviction_until_it_is_closed() {
    const QUOTA: u64 = 16 * MIB;
    let d = Dist::new(&[
        ("proj/1.0/held.bin", 6 * MIB as usize),
        ("proj/1.0/x.bin", QUOTA as usize),
        ("proj/1.0/y.bin", QUOTA as usize),
        ("proj/1.0/z.bin", QUOTA as usize),
    ]);
    let held_blocks = blocks_of(&d.path("src/proj/1.0/held.bin"), &d.path("alone"));
    let cache = d.path("cache");
    let m = d.mount("mnt", &cache, &["--cache-size", "16M"]);
    let cached = |name: &String| {
        let shard = &name[name.len() - 64..][..2];
        cache.join("blocks").join(shard).join(name).exists()
    };

    let mut held = fs::File::open(m.path("proj/1.0/held.bin")).unwrap();
    let mut got = Vec::new();
    held.read_to_end(&mut got).unwrap();
    assert_same("proj/1.0/held.bin", &got, d.expected("proj/1.0/held.bin"));
    // Twice the quota read by others while the file stays open: its blocks, the least
    // recently used, are what plain LRU would take first.
    for rel in ["proj/1.0/x.bin", "proj/1.0/y.bin"] {
        let got = fs::read(m.path(rel)).unwrap();
        assert_same(rel, &got, d.expected(rel));
    }
    poll("eviction to settle", Duration::from_secs(30), || {
        (dir_bytes(&cache) <= QUOTA).then_some(())
    });
    let lost: Vec<&String> = held_blocks.iter().filter(|b| !cached(b)).collect();
    assert!(
        lost.is_empty(),
        "{} of the {} blocks of a file held open were evicted (first: {:?})",
        lost.len(),
        held_blocks.len(),
        lost.first()
    );

    // Closed, its blocks are ordinary least recently used ones: the next reads evict them.
    drop(held);
    let got = fs::read(m.path("proj/1.0/z.bin")).unwrap();
    assert_same("proj/1.0/z.bin", &got, d.expected("proj/1.0/z.bin"));
    let gone = poll(
        "the closed file's blocks to be evicted",
        Duration::from_secs(30),
        || {
            let gone = held_blocks.iter().filter(|b| !cached(b)).count();
            (gone > 0).then_some(gone)
        },
    );
    eprintln!("{gone} of {} blocks evicted after close", held_blocks.len());
}

#[test]
fn pinned_data_survives_gc_and_a_restart_without_the_gateway() {
    let d = Dist::new(&[
        ("proj/1.0/keep.bin", 6 * MIB as usize),
        ("proj/1.0/small.txt", 100),
        ("proj/2.0/other.bin", 12 * MIB as usize),
    ]);
    let cache = d.path("cache");
    let cache_s = cache.to_str().unwrap();
    let target = format!("/ipfs/{}/proj/1.0", d.root);
    let out = run_ok(
        distfs_bin().to_str().unwrap(),
        &[
            "pin",
            &target,
            "--cache-dir",
            cache_s,
            "--gateway",
            &d.serve.url,
        ],
    );
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains(&format!("pinned {target}")), "{out}");

    // Fill the cache with unpinned data through a mount with a quota below the pinned bytes:
    // eviction must take only unpinned blocks.
    {
        let m = d.mount("mnt", &cache, &["--cache-size", "4M"]);
        let got = fs::read(m.path("proj/2.0/other.bin")).unwrap();
        assert_same("proj/2.0/other.bin", &got, d.expected("proj/2.0/other.bin"));
    }
    let gc = run_ok(
        distfs_bin().to_str().unwrap(),
        &["gc", "--cache-dir", cache_s, "--cache-size", "1M", "--json"],
    );
    let report: serde_json::Value = serde_json::from_slice(&gc).expect("gc --json");
    assert!(
        report["pinned_bytes"].as_u64().unwrap() >= 6 * MIB,
        "{report}"
    );
    assert_eq!(
        report["bytes"], report["pinned_bytes"],
        "gc left unpinned blocks over the quota: {report}"
    );

    // Restart with the gateway gone: the pinned version reads in full, the rest cannot.
    let mut d = d;
    d.serve.kill();
    let m = d.mount("mnt2", &cache, &["--offline"]);
    for rel in ["proj/1.0/keep.bin", "proj/1.0/small.txt"] {
        let got = fs::read(m.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_same(rel, &got, d.expected(rel));
    }
    assert!(
        fs::read(m.path("proj/2.0/other.bin")).is_err(),
        "the unpinned file was still whole in the cache: gc evicted nothing"
    );
    drop(m);

    // Unpinned, the same data goes at the next gc.
    run_ok(
        distfs_bin().to_str().unwrap(),
        &["unpin", &target, "--cache-dir", cache_s],
    );
    let gc = run_ok(
        distfs_bin().to_str().unwrap(),
        &["gc", "--cache-dir", cache_s, "--cache-size", "1M", "--json"],
    );
    let report: serde_json::Value = serde_json::from_slice(&gc).unwrap();
    assert!(report["bytes"].as_u64().unwrap() <= MIB, "{report}");
}

#[test]
fn kill_9_during_heavy_reads_leaves_a_cache_that_verifies_and_restarts() {
    let names: Vec<String> = (0..4).map(|i| format!("proj/1.0/f{i}.bin")).collect();
    let files: Vec<(&str, usize)> = names
        .iter()
        .map(|n| (n.as_str(), 24 * MIB as usize))
        .collect();
    let d = Dist::new(&files);
    let cache = d.path("cache");
    let mut m = d.mount("mnt", &cache, &["--cache-size", "40M"]);
    let readers: Vec<_> = names
        .iter()
        .map(|rel| {
            let path = m.path(rel);
            std::thread::spawn(move || {
                // Reads end in EIO/ENOTCONN when the daemon dies; only the cache matters.
                let _ = fs::read(path);
            })
        })
        .collect();
    poll(
        "the cache to fill under load",
        Duration::from_secs(60),
        || (dir_bytes(&cache) > 16 * MIB).then_some(()),
    );
    let st = m.signal_and_wait(libc::SIGKILL);
    assert!(!st.success());
    drop(m); // fusermount3 -u -z: the dead mount goes, the readers' calls fail
    for r in readers {
        r.join().unwrap();
    }

    let (checked, bad) = bad_blocks(&cache);
    assert!(checked > 0, "nothing was cached before the kill");
    assert!(
        bad.is_empty(),
        "blocks that do not match their names: {bad:?}"
    );

    // What a crash (or a power loss, given no fsync) can also leave: a dead writer's temp
    // file, an empty block file, and a torn one with the right name and wrong bytes.
    let (victim, vname) = block_files(&cache)
        .into_iter()
        .find(|(_, n)| !n.starts_with(".tmp-"))
        .unwrap();
    let shard = victim.parent().unwrap().to_path_buf();
    fs::write(shard.join(".tmp-999999-0"), b"half a block").unwrap();
    let (empty, _) = block_files(&cache)
        .into_iter()
        .find(|(_, n)| !n.starts_with(".tmp-") && *n != vname)
        .unwrap();
    fs::write(&empty, b"").unwrap();
    let len = fs::metadata(&victim).unwrap().len() as usize;
    fs::write(&victim, vec![0x5a; len]).unwrap();

    let m = d.mount("mnt2", &cache, &["--cache-size", "40M"]);
    assert!(
        !shard.join(".tmp-999999-0").exists() && !empty.exists(),
        "the start-up scan left crash leftovers in place"
    );
    for rel in &names {
        let got = fs::read(m.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_same(rel, &got, d.expected(rel));
    }
    drop(m);
    let (checked, bad) = bad_blocks(&cache);
    assert!(checked > 0);
    assert!(
        bad.is_empty(),
        "blocks that do not match their names after restart: {bad:?}"
    );
}

#[test]
fn a_second_daemon_on_the_same_cache_dir_is_refused_naming_the_first() {
    let d = Dist::new(&[("proj/1.0/x.txt", 10)]);
    let cache = d.path("cache");
    let first = d.mount("mnt", &cache, &[]);
    let err = match d.try_mount("mnt2", &cache, &[]) {
        Ok(_) => panic!("a second daemon mounted the same cache dir"),
        Err(e) => e,
    };
    let pid = first.pid().unwrap();
    let want = format!(
        "cache dir {} is in use by distfs pid {pid} mounted at {}",
        cache.display(),
        first.dir.display()
    );
    assert!(err.contains(&want), "want {want:?} in: {err}");
    assert!(err.contains("exited with exit status: 1"), "{err}");
    // gc does not fight the daemon for the lock: the daemon collects, through its socket.
    let out = run(
        distfs_bin().to_str().unwrap(),
        &["gc", "--cache-dir", cache.to_str().unwrap()],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("by the running daemon"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(first);
    // Released with the first daemon.
    drop(d.mount("mnt3", &cache, &[]));
}

/// A small tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn new(dir: PathBuf, size: &str) -> Tmpfs {
        fs::create_dir_all(&dir).unwrap();
        let opt = format!("size={size}");
        run_ok(
            "mount",
            &["-t", "tmpfs", "-o", &opt, "tmpfs", dir.to_str().unwrap()],
        );
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_cache_disk_keeps_reads_correct_and_warns_once() {
    let names: Vec<String> = (0..4).map(|i| format!("proj/1.0/f{i}.bin")).collect();
    let files: Vec<(&str, usize)> = names
        .iter()
        .map(|n| (n.as_str(), 6 * MIB as usize))
        .collect();
    let d = Dist::new(&files);
    // 8 MiB of disk for 24 MiB of data, and no --cache-size: only ENOSPC says stop.
    let disk = Tmpfs::new(d.path("small"), "8M");
    let cache = disk.0.join("cache");
    let m = d.mount("mnt", &cache, &[]);
    for _ in 0..2 {
        for rel in &names {
            let got = fs::read(m.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
            assert_same(rel, &got, d.expected(rel));
        }
    }
    let log = m.log_text();
    drop(m);
    let warnings = log.matches("the cache disk is full").count();
    assert_eq!(warnings, 1, "want one disk-full warning, log:\n{log}");
    assert!(
        !log.contains("could not be cached on disk"),
        "a per-block warning was logged for a full disk:\n{log}"
    );
    let (checked, bad) = bad_blocks(&cache);
    assert!(
        checked > 0 && bad.is_empty(),
        "{checked} checked, bad: {bad:?}"
    );
    drop(disk);
}
