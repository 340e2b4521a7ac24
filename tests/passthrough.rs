//! FUSE passthrough to whole copies of cached files, end to end: real `distfs add`, `distfs
//! serve` and `distfs mount` processes and the kernel's FUSE (passthrough needs kernel 6.9
//! or later and root, which the test machines have; a kernel without it fails these tests,
//! it never skips them). What is checked: a file read in full is copied whole and later
//! opens are read by the kernel with the daemon out of the path; a copy is proved again by
//! each new daemon before it is used, and a wrong one is deleted; a new daemon reads a copy
//! chunk by chunk, each checked against its sum, before it is proved; the mode the kernel
//! enforces per inode (one kind of handle at a time, one backing id) is kept; a hot restart
//! carries open passthrough handles and proofs over, and a supervised daemon started after a
//! crash reuses the dead one's backing ids; a refused backing file (a cache dir on
//! overlayfs) turns passthrough off and reads go on; `--no-passthrough` turns it all off.

#[path = "support/mod.rs"]
mod support;

#[path = "mount/harness.rs"]
#[allow(dead_code)] // shared with tests/mount.rs, which uses all of it
mod harness;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use harness::{poll, Mount, MountOpts, Serve};
use serde_json::Value;
use support::{det_bytes, distfs_add, distfs_bin, tempdir, write_bytes};

/// 24 MiB: more leaves (96) than the daemon's 16 MiB memory tier holds.
const SIZE: usize = 24 * 1024 * 1024;
const FILE: &str = "big/1.0.0/blob.bin";
const SMALL: &str = "big/1.0.0/small.bin";
/// A second file over the 1 MiB minimum.
const OTHER: &str = "big/1.0.0/other.bin";

struct Fixture {
    tmp: tempfile::TempDir,
    root: String,
    serve: Serve,
    data: Vec<u8>,
    small: Vec<u8>,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempdir();
        let src = tmp.path().join("src");
        let data = det_bytes("passthrough", SIZE);
        let small = det_bytes("small", 100 * 1024);
        write_bytes(&src.join(FILE), &data);
        write_bytes(&src.join(SMALL), &small);
        write_bytes(&src.join(OTHER), &det_bytes("other", 2 * 1024 * 1024));
        let store = tmp.path().join("store");
        let root = distfs_add(&src, &["--store", store.to_str().unwrap()]).expect("distfs add");
        let serve = Serve::start(&store);
        Fixture {
            tmp,
            root,
            serve,
            data,
            small,
        }
    }

    fn cache(&self) -> PathBuf {
        self.tmp.path().join("cache")
    }

    fn mount(&self, mnt: &str, extra: &[&str]) -> Mount {
        self.mount_env(mnt, extra, &[])
    }

    fn mount_env(&self, mnt: &str, extra: &[&str], env: &[(&str, &str)]) -> Mount {
        Mount::try_start_env(
            &self.tmp.path().join(mnt),
            &MountOpts {
                root: &self.root,
                gateways: &[&self.serve.url],
                cache: &self.cache(),
                extra,
            },
            env,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `distfs status --json` of the daemon on this cache.
    fn status(&self) -> Value {
        status_at(&self.cache()).expect("distfs status answers")
    }

    fn whole(&self, field: &str) -> u64 {
        whole_field(&self.status(), field)
    }

    /// Block reads the daemon answered (from the cache or the network).
    fn block_reads(&self) -> u64 {
        let s = self.status();
        s["cache"]["hits"].as_u64().unwrap() + s["cache"]["misses"].as_u64().unwrap()
    }

    /// Waits (bounded) until `cache.whole.<field>` reaches `n`.
    fn wait_whole(&self, field: &str, n: u64, m: &Mount) {
        poll(
            &format!("cache.whole.{field} = {n}"),
            Duration::from_secs(120),
            || (self.whole(field) >= n).then_some(()),
        );
        assert_eq!(self.whole(field), n, "daemon log:\n{}", m.log_text());
    }

    /// The whole-file copies in the cache dir.
    fn whole_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for shard in std::fs::read_dir(self.cache().join("whole"))
            .into_iter()
            .flatten()
            .flatten()
        {
            for e in std::fs::read_dir(shard.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                out.push(e.path());
            }
        }
        out
    }
}

/// `distfs status --json` of the daemon on `cache`, if one answers.
fn status_at(cache: &Path) -> Option<Value> {
    let out = Command::new(distfs_bin())
        .args(["status", "--json", "--cache-dir"])
        .arg(cache)
        .output()
        .expect("run distfs status");
    serde_json::from_slice(&out.stdout).ok()
}

/// Opens `path` (by passthrough, in the tests that call it) and reads its first 4 KiB.
fn open_and_read_head(path: &Path) -> (std::fs::File, Vec<u8>) {
    let mut held = std::fs::File::open(path).unwrap();
    let mut head = vec![0u8; 4096];
    held.read_exact(&mut head).unwrap();
    (held, head)
}

/// Reads the rest of a handle from [`open_and_read_head`] (leaving it open) and checks all
/// its bytes.
fn finish_reading(held: &mut std::fs::File, mut head: Vec<u8>, want: &[u8], what: &str) {
    held.read_to_end(&mut head).unwrap();
    same(&head, want, what);
}

fn whole_field(status: &Value, field: &str) -> u64 {
    status["cache"]["whole"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("no cache.whole.{field} in {status}"))
}

fn read_all(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut out))
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    out
}

fn same(got: &[u8], want: &[u8], what: &str) {
    assert!(
        got == want,
        "{what}: {} bytes, not the file's bytes",
        got.len()
    );
}

#[test]
fn a_fully_read_file_is_then_read_by_the_kernel_without_the_daemon() {
    let mut fx = Fixture::new();
    let m = fx.mount("mnt", &[]);
    assert_eq!(fx.status()["cache"]["whole"]["passthrough"], true);

    // The first read goes through the daemon; closing the file copies it whole.
    same(&read_all(&m.path(FILE)), &fx.data, "first read");
    fx.wait_whole("written", 1, &m);
    assert_eq!(fx.whole_files().len(), 1, "one whole copy");
    // Status counts it apart from the blocks (96 leaves and a root), its bytes in the total.
    let status = fx.status();
    assert_eq!(whole_field(&status, "files"), 1);
    assert_eq!(whole_field(&status, "bytes"), SIZE as u64);
    let blocks = status["cache"]["blocks"].as_u64().unwrap();
    assert!((97..110).contains(&blocks), "{blocks} blocks");
    assert!(status["cache"]["bytes"].as_u64().unwrap() > 2 * SIZE as u64);
    // Files under 1 MiB are never copied.
    same(&read_all(&m.path(SMALL)), &fx.small, "small file");

    // The next open is read by the kernel from the copy: the daemon answers no block read
    // for its 96 leaves (a few lookups of the root at open are allowed).
    let before = fx.block_reads();
    same(&read_all(&m.path(FILE)), &fx.data, "passthrough read");
    let used = fx.block_reads() - before;
    assert!(
        used < 8,
        "a passthrough read of 96 leaves asked for {used} blocks"
    );
    assert_eq!(fx.whole("passthrough_opens"), 1);

    // Not even the blocks are needed any more: gateway gone, block files deleted.
    fx.serve.kill();
    std::fs::remove_dir_all(fx.cache().join("blocks")).unwrap();
    same(&read_all(&m.path(FILE)), &fx.data, "read with no blocks");
    assert_eq!(fx.whole("passthrough_opens"), 2);
    assert_eq!(fx.whole("written"), 1);
    assert!(fx.whole_files().len() == 1, "the small file got no copy");

    // Sysadmins see it in the metrics too.
    let out = Command::new(distfs_bin())
        .args(["status", "--prometheus", "--cache-dir"])
        .arg(fx.cache())
        .output()
        .expect("run distfs status --prometheus");
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "distfs_passthrough_enabled 1",
        "distfs_passthrough_opens_total 2",
        "distfs_whole_written_total 1",
        "distfs_whole_files 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
}

#[test]
fn a_new_daemon_proves_a_copy_before_using_it_and_deletes_a_wrong_one() {
    let fx = Fixture::new();
    let m = fx.mount("mnt", &[]);
    same(&read_all(&m.path(FILE)), &fx.data, "first read");
    fx.wait_whole("written", 1, &m);
    drop(m);

    // A new daemon: the first open reads through it while the copy is proved.
    let m = fx.mount("mnt", &[]);
    same(
        &read_all(&m.path(FILE)),
        &fx.data,
        "first read after restart",
    );
    assert_eq!(
        fx.whole("passthrough_opens"),
        0,
        "not proved yet at the first open"
    );
    fx.wait_whole("proved", 1, &m);
    same(
        &read_all(&m.path(FILE)),
        &fx.data,
        "second read after restart",
    );
    assert_eq!(fx.whole("passthrough_opens"), 1);
    drop(m);

    // One flipped bit in the copy, written in place (its seal attribute stays).
    let copy = fx.whole_files().pop().expect("the copy");
    let mut bytes = std::fs::read(&copy).unwrap();
    bytes[SIZE / 3] ^= 0x10;
    std::fs::write(&copy, &bytes).unwrap();
    let m = fx.mount("mnt", &[]);
    same(&read_all(&m.path(FILE)), &fx.data, "read with a wrong copy");
    fx.wait_whole("dropped", 1, &m);
    assert_eq!(fx.whole("proved"), 0);
    // Every later read is right, and none by passthrough until a new copy is written
    // (the next close after the drop writes one).
    for _ in 0..3 {
        same(&read_all(&m.path(FILE)), &fx.data, "read after the drop");
    }
    fx.wait_whole("written", 1, &m);
    let copies = fx.whole_files();
    assert_eq!(copies.len(), 1);
    same(
        &std::fs::read(&copies[0]).unwrap(),
        &fx.data,
        "the new copy",
    );
}

#[test]
fn a_new_daemon_reads_the_copy_chunk_by_chunk_before_it_is_proved() {
    let mut fx = Fixture::new();
    let m = fx.mount("mnt", &[]);
    same(&read_all(&m.path(FILE)), &fx.data, "first read");
    fx.wait_whole("written", 1, &m);
    drop(m);

    // Only the copy is left: no gateway, no block files of the file's leaves.
    fx.serve.kill();
    let m = fx.mount("mnt", &["--offline"]);
    let meta = std::fs::metadata(m.path(FILE)).unwrap();
    assert_eq!(meta.len(), SIZE as u64);
    std::fs::remove_dir_all(fx.cache().join("blocks")).unwrap();
    same(
        &read_all(&m.path(FILE)),
        &fx.data,
        "first read of a new daemon",
    );
    assert_eq!(fx.whole("passthrough_opens"), 0, "read through the daemon");
    // Every chunk was checked as it was read: proved without a second read of the copy.
    assert_eq!(fx.whole("proved"), 1, "daemon log:\n{}", m.log_text());
    same(&read_all(&m.path(FILE)), &fx.data, "second read");
    assert_eq!(fx.whole("passthrough_opens"), 1);
}

#[test]
fn handles_open_together_share_the_mode_the_kernel_enforces() {
    let fx = Fixture::new();
    let m = fx.mount("mnt", &[]);
    same(&read_all(&m.path(FILE)), &fx.data, "first read");
    fx.wait_whole("written", 1, &m);

    // Passthrough handles open together share one backing id (the kernel fails a second
    // one with EIO).
    let mut a = std::fs::File::open(m.path(FILE)).unwrap();
    let mut b = std::fs::File::open(m.path(FILE)).unwrap();
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    a.read_to_end(&mut got_a).unwrap();
    b.read_to_end(&mut got_b).unwrap();
    same(&got_a, &fx.data, "handle a");
    same(&got_b, &fx.data, "handle b");
    assert_eq!(fx.whole("passthrough_opens"), 2);
    drop((a, b));
    drop(m);

    // A new daemon, whose jobs wait 3 s before they start: the first close starts the
    // copy's proof; a handle opened meanwhile reads through the daemon, and one opened
    // while it is open, after the proof, must too (the kernel fails a passthrough open of
    // an inode with cached handles with EIO).
    // The first reader reads only the head: it checks a chunk or two of the copy, and the
    // proof of the rest is the job's.
    let m = fx.mount_env("mnt", &[], &[("DISTFS_WHOLE_JOB_DELAY_MS", "3000")]);
    let (_, head) = open_and_read_head(&m.path(FILE));
    same(&head, &fx.data[..head.len()], "head");
    let mut a = std::fs::File::open(m.path(FILE)).unwrap();
    assert_eq!(fx.whole("proved"), 0, "the proof waits");
    fx.wait_whole("proved", 1, &m);
    let mut b = std::fs::File::open(m.path(FILE)).unwrap();
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    b.read_to_end(&mut got_b).unwrap();
    a.read_to_end(&mut got_a).unwrap();
    same(&got_a, &fx.data, "cached handle a");
    same(&got_b, &fx.data, "cached handle b");
    assert_eq!(fx.whole("passthrough_opens"), 0);
    drop((a, b));
    // With both closed, the next open uses the copy.
    same(&read_all(&m.path(FILE)), &fx.data, "read after close");
    assert_eq!(fx.whole("passthrough_opens"), 1);
}

#[test]
fn a_hot_restart_carries_open_passthrough_handles_over() {
    let fx = Fixture::new();
    let mut m = fx.mount("mnt", &[]);
    same(&read_all(&m.path(FILE)), &fx.data, "first read");
    fx.wait_whole("written", 1, &m);
    let (mut held, head) = open_and_read_head(&m.path(FILE));
    assert_eq!(fx.whole("passthrough_opens"), 1);

    let out = Command::new(distfs_bin())
        .args(["restart", "--cache-dir"])
        .arg(fx.cache())
        .output()
        .expect("run distfs restart");
    assert!(
        out.status.success(),
        "distfs restart: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        m.log_text()
    );
    assert!(m.wait_exit().success(), "the old daemon exits 0");
    m.disarm();
    let pid = fx.status()["pid"]
        .as_u64()
        .expect("the new daemon answers status") as i32;
    let _adopted = Adopted {
        pid,
        dir: m.dir.clone(),
    };

    // The handle opened before goes on reading, and a new open of the same inode shares
    // its backing id (a new one would make the kernel fail the open with EIO).
    finish_reading(
        &mut held,
        head,
        &fx.data,
        "the handle held over the restart",
    );
    same(
        &read_all(&m.path(FILE)),
        &fx.data,
        "a new open after the restart",
    );
    assert_eq!(
        fx.whole("passthrough_opens"),
        1,
        "counted by the new daemon"
    );
    drop(held);
    // Once all are closed, opens start afresh, still by passthrough: the old daemon's
    // proof of the copy was handed over, so the new one does not read it again.
    same(
        &read_all(&m.path(FILE)),
        &fx.data,
        "an open after all closed",
    );
    assert_eq!(fx.whole("passthrough_opens"), 2);
    assert_eq!(fx.whole("proved"), 0, "no second proof");
}

#[test]
fn a_supervised_daemon_that_crashed_answers_opens_with_the_ids_the_kernel_holds() {
    let fx = Fixture::new();
    let m = fx.mount("mnt", &["--supervise"]);
    same(&read_all(&m.path(FILE)), &fx.data, "first read");
    fx.wait_whole("written", 1, &m);
    let (mut held, head) = open_and_read_head(&m.path(FILE));
    assert_eq!(fx.whole("passthrough_opens"), 1);

    let first = fx.status()["pid"].as_u64().unwrap() as i32;
    // SAFETY: kill has no memory preconditions.
    unsafe {
        libc::kill(first, libc::SIGKILL);
    }
    poll("a new daemon", Duration::from_secs(60), || {
        status_at(&fx.cache())?["pid"]
            .as_u64()
            .filter(|p| *p as i32 != first)
    });

    // The kernel still reads the held handle from the dead daemon's backing file; a new
    // open of the inode must use that backing id (a new one, or an open through the
    // daemon, fails with EIO while the held handle is open).
    same(
        &read_all(&m.path(FILE)),
        &fx.data,
        "an open after the crash",
    );
    finish_reading(&mut held, head, &fx.data, "the handle held over the crash");
    drop(held);
    same(
        &read_all(&m.path(FILE)),
        &fx.data,
        "an open after it closed",
    );
    assert_eq!(fx.whole("passthrough_opens"), 2);
}

/// Stops the daemon a restart started (no other guard owns it) and unmounts.
struct Adopted {
    pid: i32,
    dir: PathBuf,
}

impl Drop for Adopted {
    fn drop(&mut self) {
        // SAFETY: kill has no memory preconditions.
        unsafe {
            libc::kill(self.pid, libc::SIGTERM);
        }
        for _ in 0..500 {
            // SAFETY: as above; signal 0 only asks whether the process exists.
            if unsafe { libc::kill(self.pid, 0) } != 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("fusermount3")
            .args(["-u", "-z"])
            .arg(&self.dir)
            .status();
    }
}

#[test]
fn no_passthrough_keeps_every_read_in_the_daemon() {
    let fx = Fixture::new();
    let m = fx.mount("mnt", &["--no-passthrough"]);
    assert_eq!(fx.status()["cache"]["whole"]["passthrough"], false);
    for _ in 0..2 {
        same(&read_all(&m.path(FILE)), &fx.data, "read");
    }
    assert_eq!(fx.whole("written"), 0);
    assert_eq!(fx.whole("passthrough_opens"), 0);
    assert!(fx.whole_files().is_empty());
}

#[test]
fn a_refused_backing_file_turns_passthrough_off_and_reads_go_on() {
    // A cache dir on overlayfs (as in many containers): the kernel refuses a backing file on
    // a stacked filesystem (ELOOP), since /dist itself asks for a stacking depth of 1.
    let fx = Fixture::new();
    let base = fx.tmp.path().join("ovl");
    let (lower, upper, work, merged) = (
        base.join("lower"),
        base.join("upper"),
        base.join("work"),
        base.join("merged"),
    );
    for d in [&lower, &upper, &work, &merged] {
        std::fs::create_dir_all(d).unwrap();
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let out = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(&merged)
        .output()
        .expect("run mount");
    assert!(
        out.status.success(),
        "mount overlay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _overlay = Overlay(merged.clone());
    let cache = merged.join("cache");
    let status = || status_at(&cache).expect("distfs status answers");
    {
        let m = Mount::try_start(
            &fx.tmp.path().join("mnt"),
            &MountOpts {
                root: &fx.root,
                gateways: &[&fx.serve.url],
                cache: &cache,
                extra: &[],
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        same(&read_all(&m.path(FILE)), &fx.data, "first read");
        poll("the first copy", Duration::from_secs(120), || {
            (whole_field(&status(), "written") == 1).then_some(())
        });
        // The open that would use the copy is refused by the kernel: it reads through the
        // daemon instead, and passthrough is off from then on.
        same(&read_all(&m.path(FILE)), &fx.data, "read after the refusal");
        let s = status();
        assert_eq!(s["cache"]["whole"]["passthrough"], false, "{s}");
        assert_eq!(whole_field(&s, "passthrough_opens"), 0);
        // No more copies that nothing would read.
        same(
            &read_all(&m.path(OTHER)),
            &det_bytes("other", 2 << 20),
            "other file",
        );
        same(&read_all(&m.path(FILE)), &fx.data, "read after that");
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(whole_field(&status(), "written"), 1);
        let log = m.log_text();
        assert!(
            log.contains("stacked filesystem"),
            "the warning says why: {log}"
        );
    }
}

/// Unmounts an overlayfs mount.
struct Overlay(PathBuf);

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
