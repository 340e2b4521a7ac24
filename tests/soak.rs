//! The soak test (issue 8): everything at once for a while, against real parts. One `distfs
//! serve` origin, the fault proxy (`faults/proxy.rs`) in front of it injecting a rotating
//! mix of fault classes at a low rate, the origin itself as an honest second gateway, and a
//! `distfs mount` of an IPNS name root (TTL 1 s, `--read-timeout 5`). Until the duration
//! ends (`DISTFS_SOAK_SECONDS`, default 90; `scripts/soak` runs it longer): readers hash
//! whole files against their source, `cp -r` copies a version directory checked byte for
//! byte, `ls -lR` walks the tree, an AppImage runs from the mount, and a publisher imports a
//! new version and PUTs a higher-sequence record every few seconds, waiting for the mount to
//! follow. The daemon's RSS and open fds are sampled every second: after the warm-up (the
//! first 20 %) neither may grow past a generous bound (leaks, not speed). At the end the
//! mount is alive, every cached block hashes to its name, and one `soak:` summary line is
//! printed. Wrong bytes fail at once; any other error is counted. Needs /dev/fuse,
//! fusermount3, squashfuse and squashfs-tools.

#[path = "support/mod.rs"]
mod support;

#[allow(dead_code)]
#[path = "mount/harness.rs"]
mod harness;

#[allow(dead_code)]
#[path = "faults/proxy.rs"]
mod proxy;

#[allow(dead_code)]
#[path = "appimage/factory.rs"]
mod factory;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use harness::{is_mounted, poll, Mount, MountOpts, Serve};
use proxy::{Fault, FaultyProxy};
use sha2::{Digest, Sha256};
use support::cache::bad_blocks;
use support::ipns::{put_record, record};
use support::{det_bytes, distfs_add, tempdir, write_bytes};

/// Files of every version directory `v/N/`: (name, length).
const FILES: [(&str, usize); 4] = [
    ("big.bin", 1_310_720 + 17),
    ("mid.bin", 300_001),
    ("small.bin", 4_096),
    ("tiny.txt", 100),
];
/// The record TTL (and the mount's min/max TTL).
const TTL: Duration = Duration::from_secs(1);
/// Probability that the proxy spoils a block answer.
const P: f64 = 0.25;
/// The non-corrupting classes the proxy rotates through (a corrupting one gets the proxy
/// dropped for the rest of the session, so those run only in the last part).
/// `Latency` is left out: the fetcher ranks sources by their latency average, which only
/// answers update, so once slowed the proxy would never be asked again and no later fault
/// would land.
const MIX: [Fault; 9] = [
    Fault::Drop,
    Fault::ResetMidBody,
    Fault::Truncated,
    Fault::SlowLoris,
    Fault::TooMany,
    Fault::Unavailable,
    Fault::OversizeStreamed,
    Fault::OversizeAnnounced,
    Fault::WrongType,
];
/// The corrupting classes, in the last 15 % of the run.
const LATE: [Fault; 3] = [Fault::FlipByte, Fault::OtherBlock, Fault::ShortLength];
/// How long past the end a worker may take to notice it before it counts as hung.
const HANG: Duration = Duration::from_secs(120);
/// Bounds on growth after the warm-up. RSS may grow by the block store's memory tier (it
/// fills as new versions are read; a short run fills it after the warm-up) plus 32 MiB or
/// 50 %, whichever is more.
const RSS_SLACK_MIB: u64 = 32;
const FD_GROWTH: u64 = 32;

fn content(version: u64, file: &str, len: usize) -> Vec<u8> {
    det_bytes(&format!("soak/{version}/{file}"), len)
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// The source bytes of `v/{version}/{file}`, or `None` for an unknown name.
fn expected(version: &str, file: &str) -> Option<Vec<u8>> {
    let v: u64 = version.parse().ok()?;
    let (_, len) = FILES.iter().find(|(n, _)| *n == file)?;
    Some(content(v, file, *len))
}

#[derive(Default)]
struct Stats {
    reads: AtomicU64,
    eio: AtomicU64,
    other_err: AtomicU64,
    bytes: AtomicU64,
    copies: AtomicU64,
    copy_failed: AtomicU64,
    listings: AtomicU64,
    listing_failed: AtomicU64,
    app_runs: AtomicU64,
    app_failed: AtomicU64,
    published: AtomicU64,
    followed: AtomicU64,
    /// The first wrong bytes seen (the test fails with it).
    wrong: Mutex<Vec<String>>,
    /// Other hard failures (a republish not followed).
    failures: Mutex<Vec<String>>,
}

impl Stats {
    fn wrong(&self, msg: String) {
        self.wrong
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(msg);
    }
}

/// Version directories currently listed under `v/` in the mount, numerically.
fn versions(mnt: &Path) -> Vec<u64> {
    let mut vs: Vec<u64> = std::fs::read_dir(mnt.join("v"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    vs.sort_unstable();
    vs
}

/// Reads `path` whole after asking the kernel to drop its cached pages of it, so the read
/// goes through the FUSE bridge to the daemon instead of the page cache.
fn read_uncached(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let mut f = std::fs::File::open(path)?;
    // SAFETY: a plain advisory call on an open descriptor we own.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    Ok(out)
}

/// One reader: whole files of the listed versions, hashed against their source.
fn reader(id: u64, mnt: PathBuf, end: Instant, st: Arc<Stats>) {
    let mut i = id;
    while Instant::now() < end {
        i += 1;
        let vs = versions(&mnt);
        let Some(v) = vs.get(i as usize % vs.len().max(1)) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let (file, len) = FILES[(i / 2) as usize % FILES.len()];
        let path = mnt.join(format!("v/{v}/{file}"));
        st.reads.fetch_add(1, SeqCst);
        match read_uncached(&path) {
            Ok(b) => {
                let want = content(*v, file, len);
                if b != want {
                    st.wrong(format!(
                        "{}: {} bytes sha256 {}, want {} bytes {}",
                        path.display(),
                        b.len(),
                        sha(&b),
                        want.len(),
                        sha(&want)
                    ));
                    return;
                }
                st.bytes.fetch_add(b.len() as u64, SeqCst);
            }
            Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                st.eio.fetch_add(1, SeqCst);
            }
            // The version dropped out of the root between listing and opening.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                st.reads.fetch_sub(1, SeqCst);
            }
            Err(e) => {
                st.other_err.fetch_add(1, SeqCst);
                eprintln!("soak: reading {}: {e}", path.display());
            }
        }
    }
}

/// `cp -r` of a version directory, every copied file compared with its source.
fn copier(mnt: PathBuf, scratch: PathBuf, end: Instant, st: Arc<Stats>) {
    let mut n = 0u64;
    while Instant::now() < end {
        n += 1;
        let vs = versions(&mnt);
        let Some(v) = vs.last() else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let dest = scratch.join(format!("copy-{n}"));
        let ok = Command::new("cp")
            .arg("-r")
            .arg(mnt.join(format!("v/{v}")))
            .arg(&dest)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            st.copy_failed.fetch_add(1, SeqCst);
        } else {
            let mut seen = 0;
            for e in std::fs::read_dir(&dest).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let got = std::fs::read(e.path()).unwrap_or_default();
                match expected(&v.to_string(), &name) {
                    Some(want) if want == got => {
                        seen += 1;
                        st.bytes.fetch_add(got.len() as u64, SeqCst);
                    }
                    _ => {
                        st.wrong(format!(
                            "cp -r: {name} of version {v} differs from its source"
                        ));
                        return;
                    }
                }
            }
            if seen != FILES.len() {
                st.wrong(format!("cp -r of version {v} copied {seen} files"));
                return;
            }
            st.copies.fetch_add(1, SeqCst);
        }
        let _ = std::fs::remove_dir_all(&dest);
    }
}

/// `ls -lR` of the whole tree.
fn lister(mnt: PathBuf, end: Instant, st: Arc<Stats>) {
    while Instant::now() < end {
        let out = Command::new("ls")
            .arg("-lR")
            .arg(&mnt)
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() && !o.stdout.is_empty() => st.listings.fetch_add(1, SeqCst),
            _ => st.listing_failed.fetch_add(1, SeqCst),
        };
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Runs the AppImage from the mount and compares its output.
fn app_runner(mnt: PathBuf, cwd: PathBuf, want: String, end: Instant, st: Arc<Stats>) {
    let app = mnt.join("app").join(factory::appimage_name("hello"));
    while Instant::now() < end {
        let out = Command::new(&app)
            .arg("soak")
            .current_dir(&cwd)
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let got = String::from_utf8_lossy(&o.stdout);
                if got != want {
                    st.wrong(format!("the AppImage printed {got:?}, want {want:?}"));
                    return;
                }
                st.app_runs.fetch_add(1, SeqCst);
            }
            Ok(o) => {
                st.app_failed.fetch_add(1, SeqCst);
                eprintln!(
                    "soak: AppImage run failed ({}): {}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            Err(e) => {
                st.app_failed.fetch_add(1, SeqCst);
                eprintln!("soak: AppImage spawn failed: {e}");
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A distribution tree of `version`: `v/{version-1}` and `v/{version}` (readers of the
/// previous one keep finding it for one more publish) and the AppImage.
fn write_version(dir: &Path, version: u64, appimage: &Path) {
    for v in version.saturating_sub(1).max(1)..=version {
        for (f, len) in FILES {
            write_bytes(&dir.join(format!("v/{v}/{f}")), &content(v, f, len));
        }
    }
    let app = dir.join("app").join(factory::appimage_name("hello"));
    std::fs::create_dir_all(app.parent().expect("app dir")).expect("create app dir");
    std::fs::copy(appimage, &app).expect("copy the AppImage");
}

/// One sample of the daemon: (VmRSS in KiB, open fds); `None` once it is gone.
fn sample(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((rss, fds))
}

#[test]
fn soak() {
    let secs: u64 = std::env::var("DISTFS_SOAK_SECONDS")
        .ok()
        .map(|s| {
            s.parse()
                .expect("DISTFS_SOAK_SECONDS is a number of seconds")
        })
        .unwrap_or(90);
    assert!(secs >= 10, "DISTFS_SOAK_SECONDS must be at least 10");
    let tmp = tempdir();
    let store = tmp.path().join("store");
    let store_s = store.display().to_string();

    // The AppImage every version carries (small payload: it is built once).
    let appdir = tmp.path().join("appdir");
    factory::app_dir("hello", "1.0", &appdir, 0);
    let appimage = tmp.path().join("hello.AppImage");
    factory::pack(&appdir, &appimage);
    let core = std::fs::read(appdir.join("usr/lib/hello/libcore.so")).expect("libcore.so");
    let want_app = format!(
        "Hello from hello 1.0!\nargs: soak\ncore: {}\n",
        &sha(&core)[..16]
    );

    let serve = Serve::start(&store);
    let proxy = Arc::new(FaultyProxy::start(&serve.url, 0x50a4));
    // The honest second gateway goes through a proxy too, never told to fault: both then
    // answer about as fast, so the fetcher keeps asking the faulty one (it ranks sources by
    // latency) and the faults keep landing.
    let honest = FaultyProxy::start(&serve.url, 0x50a5);
    let key = distfs::name::Keypair::generate();
    let name = key.name().to_string();
    let publish = |version: u64| {
        let dir = tmp.path().join(format!("src-{version}"));
        write_version(&dir, version, &appimage);
        let cid = distfs_add(&dir, &["--cid-version", "1", "--store", &store_s])
            .unwrap_or_else(|e| panic!("distfs add of version {version}: {e}"));
        let _ = std::fs::remove_dir_all(&dir);
        let rec = record(&key, &cid, version, TTL);
        let status = put_record(&serve.url, &name, &rec, tmp.path());
        assert_eq!(status, "200", "PUT of the record of version {version}");
    };
    publish(1);

    let cache = tmp.path().join("cache");
    let root = format!("/ipns/{name}");
    let ttl = TTL.as_secs().to_string();
    let m = Mount::try_start(
        &tmp.path().join("mnt"),
        &MountOpts {
            root: &root,
            gateways: &[&proxy.url, &honest.url],
            cache: &cache,
            extra: &["--min-ttl", &ttl, "--max-ttl", &ttl, "--read-timeout", "5"],
        },
    )
    .unwrap_or_else(|e| panic!("mount: {e}"));
    let pid = m.pid().expect("the daemon runs");
    let mnt = m.dir.clone();
    poll("version 1 in the mount", Duration::from_secs(60), || {
        (versions(&mnt) == [1]).then_some(())
    });

    let start = Instant::now();
    let duration = Duration::from_secs(secs);
    let end = start + duration;
    let st = Arc::new(Stats::default());
    let (done_tx, done_rx) = mpsc::channel::<&'static str>();
    let mut workers = 0;
    let mut spawn = |what: &'static str, f: Box<dyn FnOnce() + Send>| {
        workers += 1;
        let tx = done_tx.clone();
        std::thread::spawn(move || {
            f();
            let _ = tx.send(what);
        });
    };
    for id in 0..3 {
        let (mnt, st) = (mnt.clone(), st.clone());
        spawn("reader", Box::new(move || reader(id * 7, mnt, end, st)));
    }
    {
        let (mnt, st, scratch) = (mnt.clone(), st.clone(), tmp.path().join("copies"));
        std::fs::create_dir_all(&scratch).expect("scratch dir");
        spawn("cp -r", Box::new(move || copier(mnt, scratch, end, st)));
    }
    {
        let (mnt, st) = (mnt.clone(), st.clone());
        spawn("ls -lR", Box::new(move || lister(mnt, end, st)));
    }
    {
        let (mnt, st, cwd) = (mnt.clone(), st.clone(), tmp.path().to_path_buf());
        spawn(
            "AppImage",
            Box::new(move || app_runner(mnt, cwd, want_app, end, st)),
        );
    }
    // The fault mix: a new class every 2 s, corrupting ones only in the last 15 %.
    let injected: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    {
        let (proxy, injected) = (proxy.clone(), injected.clone());
        let late = start + duration.mul_f64(0.85);
        spawn(
            "faults",
            Box::new(move || {
                let mut i = 0usize;
                while Instant::now() < end {
                    let fault = if Instant::now() < late {
                        MIX[i % MIX.len()]
                    } else {
                        LATE[i % LATE.len()]
                    };
                    let before = proxy.injected();
                    proxy.set_fault(Some((fault, P)));
                    std::thread::sleep(Duration::from_secs(2).min(end - Instant::now().min(end)));
                    proxy.set_fault(None);
                    *injected
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(format!("{fault:?}"))
                        .or_default() += proxy.injected() - before;
                    i += 1;
                }
            }),
        );
    }
    // Memory and fds, every second.
    let samples: Arc<Mutex<Vec<(Duration, u64, u64)>>> = Arc::default();
    let stop_sampling = Arc::new(AtomicBool::new(false));
    {
        let (samples, stop) = (samples.clone(), stop_sampling.clone());
        spawn(
            "sampler",
            Box::new(move || {
                while Instant::now() < end && !stop.load(SeqCst) {
                    if let Some((rss, fds)) = sample(pid) {
                        samples.lock().unwrap_or_else(|e| e.into_inner()).push((
                            start.elapsed(),
                            rss,
                            fds,
                        ));
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }),
        );
    }
    drop(done_tx);

    // The publisher, on this thread: a new version every few seconds, each followed.
    let mut version = 1;
    let mut longest_follow = Duration::ZERO;
    while Instant::now() + Duration::from_secs(5) < end {
        std::thread::sleep(Duration::from_secs(3));
        version += 1;
        publish(version);
        st.published.fetch_add(1, SeqCst);
        let t = Instant::now();
        let followed = loop {
            if versions(&mnt).last() == Some(&version) {
                break true;
            }
            if t.elapsed() > Duration::from_secs(30) {
                break false;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        if followed {
            st.followed.fetch_add(1, SeqCst);
            longest_follow = longest_follow.max(t.elapsed());
        } else {
            st.failures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("version {version} not followed within 30 s"));
        }
        if !st
            .wrong
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
        {
            break;
        }
    }
    // Every worker ends by itself (all their waits are bounded); one that does not is hung.
    let mut finished = Vec::new();
    for _ in 0..workers {
        let left = (end + HANG).saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok(w) => finished.push(w),
            Err(_) => {
                stop_sampling.store(true, SeqCst);
                panic!("a worker hung past the end of the soak (finished: {finished:?})");
            }
        }
    }
    let wall = start.elapsed();

    let wrong = st.wrong.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(wrong.is_empty(), "WRONG BYTES: {wrong:?}\n{}", m.log_text());
    assert!(is_mounted(&m.dir), "the mount is gone: {}", m.log_text());
    assert!(
        sample(pid).is_some(),
        "the daemon is gone: {}",
        m.log_text()
    );
    let (blocks, bad) = bad_blocks(&cache);
    assert!(blocks > 0, "no block was cached");
    assert!(bad.is_empty(), "corrupt blocks in the cache: {bad:?}");

    let samples = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let warm = duration.mul_f64(0.2);
    let (early, late): (Vec<(Duration, u64, u64)>, Vec<_>) =
        samples.iter().partition(|(t, _, _)| *t < warm);
    assert!(
        !early.is_empty() && !late.is_empty(),
        "too few memory samples: {}",
        samples.len()
    );
    let base_rss = early.iter().map(|s| s.1).max().unwrap_or(0);
    let base_fds = early.iter().map(|s| s.2).max().unwrap_or(0);
    let peak_rss = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let peak_fds = samples.iter().map(|s| s.2).max().unwrap_or(0);
    let late_rss = late.iter().map(|s| s.1).max().unwrap_or(0);
    let late_fds = late.iter().map(|s| s.2).max().unwrap_or(0);
    let last = samples.last().copied().unwrap_or_default();

    // RSS at each fifth of the run, to show a trend.
    let trend: Vec<String> = (1..=5)
        .filter_map(|k| samples.get(samples.len() * k / 5 - 1))
        .map(|s| (s.1 / 1024).to_string())
        .collect();
    let n = |a: &AtomicU64| a.load(SeqCst);
    let injected = injected.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let injected_s: Vec<String> = injected.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    eprintln!(
        "soak: duration_s={} reads={} eio={} other_errors={} bytes_verified={} wrong_bytes=0 copies={} copy_failed={} listings={} listing_failed={} appimage_runs={} appimage_failed={} published={} followed={} longest_follow_ms={} injected={} passed={} honest_passed={} injected_by_class=[{}] cache_blocks_verified={blocks} rss_kib_warm={base_rss} rss_kib_peak={peak_rss} rss_kib_last={} rss_mib_by_fifth=[{}] fds_warm={base_fds} fds_peak={peak_fds} fds_last={} samples={}",
        wall.as_secs(),
        n(&st.reads),
        n(&st.eio),
        n(&st.other_err),
        n(&st.bytes),
        n(&st.copies),
        n(&st.copy_failed),
        n(&st.listings),
        n(&st.listing_failed),
        n(&st.app_runs),
        n(&st.app_failed),
        n(&st.published),
        n(&st.followed),
        longest_follow.as_millis(),
        proxy.injected(),
        proxy.passed(),
        honest.passed(),
        injected_s.join(" "),
        last.1,
        trend.join(" "),
        last.2,
        samples.len(),
    );

    let failures = st
        .failures
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    assert!(failures.is_empty(), "{failures:?}\n{}", m.log_text());
    assert!(proxy.injected() > 0, "the proxy injected nothing");
    let reads = n(&st.reads);
    let ok_reads = reads - n(&st.eio) - n(&st.other_err);
    assert!(reads >= 20, "only {reads} reads in {secs} s");
    assert!(
        ok_reads * 10 >= reads * 9,
        "fewer than 90 % of reads succeeded: {ok_reads} of {reads}"
    );
    assert_eq!(
        n(&st.other_err),
        0,
        "reads failed with errors other than EIO"
    );
    assert!(n(&st.copies) > 0, "no cp -r completed");
    assert!(
        n(&st.copies) >= n(&st.copy_failed),
        "most cp -r failed: {} ok, {} failed",
        n(&st.copies),
        n(&st.copy_failed)
    );
    assert!(n(&st.listings) > 0, "no ls -lR completed");
    assert!(
        n(&st.app_runs) > 0 && n(&st.app_runs) >= n(&st.app_failed),
        "the AppImage ran {} times and failed {} times",
        n(&st.app_runs),
        n(&st.app_failed)
    );
    assert!(n(&st.followed) >= 2, "fewer than 2 republishes followed");
    let tier_kib = distfs::store::cache::MEMORY_TIER_BYTES as u64 / 1024;
    let rss_bound = base_rss + tier_kib + (base_rss / 2).max(RSS_SLACK_MIB * 1024);
    assert!(
        late_rss <= rss_bound,
        "RSS grew after the warm-up: {base_rss} KiB -> {late_rss} KiB (bound {rss_bound})"
    );
    assert!(
        late_fds <= base_fds + FD_GROWTH,
        "open fds grew after the warm-up: {base_fds} -> {late_fds}"
    );
}
