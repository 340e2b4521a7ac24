//! Hostile networks, end to end: a real `distfs mount` reads a real `distfs serve` through
//! a fault-injecting proxy (`faults/proxy.rs`), one test per fault class. Every read returns
//! the right bytes or fails with EIO, within a bounded wait; afterwards the daemon still
//! serves (reads through an honest gateway work, `mountpoint -q` holds) and every block file
//! in its cache hashes to its name. IPNS records that are stale, forged, expired or rolled
//! back never move a name root. Security: setuid/setgid/sticky bits from DAG metadata, node
//! types the mount does not serve, and hostile entry names. Each class prints one summary
//! line (`faults: ...`) that RELIABILITY.md quotes. Needs /dev/fuse and fusermount3.

#[path = "support/mod.rs"]
mod support;

#[allow(dead_code)]
#[path = "mount/harness.rs"]
mod harness;

#[path = "faults/proxy.rs"]
mod proxy;

use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use harness::{is_mounted, poll, Mount, MountOpts, Serve};
use proxy::{Fault, FaultyProxy};
use sha2::{Digest, Sha256};
use support::cache::bad_blocks;
use support::{det_bytes, distfs_add, tempdir, write_bytes};

/// `--read-timeout` of every mount here (seconds).
const READ_TIMEOUT: &str = "5";
/// How long a test waits for one read before calling it a hang: well above the read
/// timeout (a read may span a few blocks, each bounded by it).
const HANG: Duration = Duration::from_secs(40);
/// The proxy's PRNG seed (fixed: runs are reproducible up to request ordering).
const SEED: u64 = 0x00d1_57f5;
/// Probability that the proxy spoils a block answer while a fault is on.
const P: f64 = 0.5;

/// Files read while the fault is on, then again after it is off.
const FAULTED: [(&str, usize); 3] = [
    ("app/1.0/a.bin", 1_310_720 + 17),
    ("app/1.0/b.bin", 1_048_576 + 3),
    ("app/1.0/c.bin", 700_000),
];
/// A file first read after the fault is off (nothing of it is cached yet).
const LATER: (&str, usize) = ("app/1.0/later.bin", 600_000);

/// A distribution imported into a store, and the gateway serving it.
struct Dist {
    tmp: tempfile::TempDir,
    root: String,
    serve: Serve,
}

impl Dist {
    fn new(seed: &str) -> Dist {
        let tmp = tempdir();
        let src = tmp.path().join("src");
        for (rel, len) in FAULTED.iter().chain([&LATER]) {
            write_bytes(&src.join(rel), &content(seed, rel, *len));
        }
        let store = tmp.path().join("store");
        let root = distfs_add(&src, &["--store", store.to_str().unwrap()]).expect("distfs add");
        let serve = Serve::start(&store);
        Dist { tmp, root, serve }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
}

fn content(seed: &str, rel: &str, len: usize) -> Vec<u8> {
    det_bytes(&format!("{seed}/{rel}"), len)
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Reads `path` whole in a thread, 128 KiB per `read(2)`; the result, how long the whole
/// read took and the longest single call (`open(2)`, which looks the file up, or `read(2)`). Panics (fails the test) if the read has not
/// returned within [`HANG`].
fn timed_read(path: &Path) -> (std::io::Result<Vec<u8>>, Duration, Duration) {
    let (tx, rx) = mpsc::channel();
    let p = path.to_path_buf();
    let start = Instant::now();
    std::thread::spawn(move || {
        let mut longest = Duration::ZERO;
        let result = (|| {
            use std::io::Read;
            let t = Instant::now();
            let opened = std::fs::File::open(p);
            longest = t.elapsed();
            let mut f = opened?;
            let (mut out, mut buf) = (Vec::new(), vec![0u8; 128 * 1024]);
            loop {
                let t = Instant::now();
                let n = f.read(&mut buf);
                longest = longest.max(t.elapsed());
                match n? {
                    0 => return Ok(out),
                    n => out.extend_from_slice(&buf[..n]),
                }
            }
        })();
        let _ = tx.send((result, longest));
    });
    match rx.recv_timeout(HANG) {
        Ok((r, longest)) => (r, start.elapsed(), longest),
        Err(_) => panic!("reading {} hung for {HANG:?}", path.display()),
    }
}

/// What one class's reads came to.
#[derive(Default)]
struct Tally {
    reads: u64,
    eio: u64,
    bytes: u64,
    /// Longest single `open(2)` or `read(2)`.
    longest: Duration,
    /// Longest whole-file read.
    longest_file: Duration,
}

impl Tally {
    /// Checks one read: right bytes (counted) or EIO (counted); anything else panics.
    fn check(&mut self, what: &str, path: &Path, want: &[u8], allow_eio: bool) {
        let (got, took, call) = timed_read(path);
        self.reads += 1;
        self.longest = self.longest.max(call);
        self.longest_file = self.longest_file.max(took);
        match got {
            Ok(b) => {
                assert!(
                    b.len() == want.len() && sha(&b) == sha(want),
                    "{what}: {} returned WRONG BYTES ({} bytes, sha256 {}, want {} bytes, {})",
                    path.display(),
                    b.len(),
                    sha(&b),
                    want.len(),
                    sha(want)
                );
                self.bytes += b.len() as u64;
            }
            Err(e) if allow_eio && e.raw_os_error() == Some(libc::EIO) => self.eio += 1,
            Err(e) => panic!("{what}: reading {} failed: {e}", path.display()),
        }
    }
}

/// One fault class end to end (see the crate doc).
fn fault_class(fault: Fault) {
    let what = format!("{fault:?}");
    let d = Dist::new(&what);
    let proxy = FaultyProxy::start(&d.serve.url, SEED);
    // A wrong block gets its source dropped for the session: those classes get a second,
    // honest gateway to recover through. The others retry through the proxy alone.
    let mut gateways = vec![proxy.url.as_str()];
    if fault.corrupts() {
        gateways.push(d.serve.url.as_str());
    }
    let cache = d.path("cache");
    let m = Mount::try_start(
        &d.path("mnt"),
        &MountOpts {
            root: &d.root,
            gateways: &gateways,
            cache: &cache,
            extra: &["--read-timeout", READ_TIMEOUT],
        },
    )
    .unwrap_or_else(|e| panic!("{what}: {e}"));

    let mut t = Tally::default();
    proxy.set_fault(Some((fault, P)));
    for (rel, len) in FAULTED {
        t.check(&what, &m.path(rel), &content(&what, rel, len), true);
    }
    let injected = proxy.injected();
    proxy.set_fault(None);

    // The daemon is alive and recovers: everything reads right through an honest gateway,
    // the files that failed included.
    let (later, len) = LATER;
    t.check(&what, &m.path(later), &content(&what, later, len), false);
    for (rel, len) in FAULTED {
        t.check(&what, &m.path(rel), &content(&what, rel, len), false);
    }
    assert!(is_mounted(&m.dir), "{what}: the mount is gone");
    assert!(
        injected > 0,
        "{what}: the proxy injected nothing, the test proved nothing"
    );
    let (checked, bad) = bad_blocks(&cache);
    assert!(checked > 0, "{what}: no block was cached");
    assert!(
        bad.is_empty(),
        "{what}: corrupt blocks in the cache: {bad:?}"
    );
    eprintln!(
        "faults: class={what} mode={} injected={injected} passed={} reads={} eio={} bytes_verified={} wrong_bytes=0 longest_call_ms={} longest_file_ms={} cache_blocks_verified={checked}",
        if fault.corrupts() { "p0.5+honest" } else { "p0.5-only" },
        proxy.passed(),
        t.reads,
        t.eio,
        t.bytes,
        t.longest.as_millis(),
        t.longest_file.as_millis()
    );
}

#[test]
fn latency_and_jitter() {
    fault_class(Fault::Latency);
}

#[test]
fn connection_dropped_before_the_response() {
    fault_class(Fault::Drop);
}

#[test]
fn reset_mid_body() {
    fault_class(Fault::ResetMidBody);
}

#[test]
fn truncated_body_with_the_full_content_length() {
    fault_class(Fault::Truncated);
}

#[test]
fn truncated_body_with_a_lying_short_content_length() {
    fault_class(Fault::ShortLength);
}

#[test]
fn a_flipped_byte() {
    fault_class(Fault::FlipByte);
}

#[test]
fn another_blocks_bytes() {
    fault_class(Fault::OtherBlock);
}

#[test]
fn slow_loris_trickle() {
    fault_class(Fault::SlowLoris);
}

#[test]
fn too_many_requests_with_retry_after() {
    fault_class(Fault::TooMany);
}

#[test]
fn service_unavailable_with_retry_after() {
    fault_class(Fault::Unavailable);
}

#[test]
fn oversized_body_without_a_length() {
    fault_class(Fault::OversizeStreamed);
}

#[test]
fn oversized_body_announcing_one_gib() {
    fault_class(Fault::OversizeAnnounced);
}

#[test]
fn captive_portal_html() {
    fault_class(Fault::WrongType);
}

/// The proxy really spoils each class (else the mount tests could pass vacuously), and the
/// library's gateway client names each spoiled answer for what it is.
#[test]
fn the_proxy_spoils_every_class_and_the_gateway_client_names_each() {
    use distfs::fetch::{BlockSource, FetchError, GatewayClient};
    let d = Dist::new("client");
    let proxy = FaultyProxy::start(&d.serve.url, SEED);
    let cid: cid::Cid = d.root.parse().unwrap();
    let want = harness::http_get(&d.serve.url, &format!("/ipfs/{cid}?format=raw"));
    let http = GatewayClient::http_client().unwrap();
    let client = GatewayClient::with_client(&proxy.url, http, Duration::from_secs(3)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // An honest answer first, so `OtherBlock` has another body to send.
    let honest = rt.block_on(client.get(&cid)).unwrap();
    assert_eq!(honest.data().as_ref(), want.as_slice());
    for fault in Fault::ALL {
        proxy.set_fault(Some((fault, 1.0)));
        let got = rt.block_on(client.get(&cid));
        let ok = match (&fault, &got) {
            (Fault::Latency, Ok(b)) => b.data().as_ref() == want.as_slice(),
            (Fault::Drop | Fault::ResetMidBody | Fault::Truncated, Err(e)) => {
                matches!(e, FetchError::Transport { .. }) && e.is_retryable()
            }
            (Fault::ShortLength | Fault::FlipByte | Fault::OtherBlock, Err(e)) => e.is_corrupt(),
            (Fault::SlowLoris, Err(e)) => matches!(e, FetchError::AttemptTimeout { .. }),
            (Fault::TooMany, Err(e)) => {
                matches!(e, FetchError::Status { status: 429, .. })
                    && e.retry_after() == Some(Duration::from_secs(1))
            }
            (Fault::Unavailable, Err(e)) => {
                matches!(e, FetchError::Status { status: 503, .. })
                    && e.retry_after() == Some(Duration::from_secs(1))
            }
            (Fault::OversizeStreamed | Fault::OversizeAnnounced, Err(e)) => {
                matches!(e, FetchError::TooLarge { .. })
            }
            (Fault::WrongType, Err(e)) => matches!(e, FetchError::BadContentType { .. }),
            _ => false,
        };
        assert!(
            ok,
            "{fault:?}: unexpected answer {:?}",
            got.map(|b| b.data().len())
        );
    }
    assert_eq!(proxy.injected(), Fault::ALL.len() as u64);
}

/// Every class at once-per-request (p = 1) on the first gateway, an honest second one:
/// every read returns the right bytes, none fails, and the cache verifies. One mount per
/// class (a fresh cache each), so every block is fetched under the fault.
#[test]
fn every_class_fails_over_to_an_honest_gateway() {
    let d = Dist::new("failover");
    let mut failures = Vec::new();
    for fault in Fault::ALL {
        let what = format!("{fault:?}");
        let proxy = FaultyProxy::start(&d.serve.url, SEED);
        let cache = d.path(&format!("cache-{what}"));
        let m = Mount::try_start(
            &d.path(&format!("mnt-{what}")),
            &MountOpts {
                root: &d.root,
                gateways: &[&proxy.url, &d.serve.url],
                cache: &cache,
                extra: &["--read-timeout", READ_TIMEOUT],
            },
        )
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        proxy.set_fault(Some((fault, 1.0)));
        let mut t = Tally::default();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for (rel, len) in FAULTED.iter().chain([&LATER]) {
                t.check(&what, &m.path(rel), &content("failover", rel, *len), false);
            }
            let (checked, bad) = bad_blocks(&cache);
            assert!(
                bad.is_empty(),
                "{what}: corrupt blocks in the cache: {bad:?}"
            );
            assert!(is_mounted(&m.dir), "{what}: the mount is gone");
            assert!(proxy.injected() > 0, "{what}: nothing injected");
            checked
        }));
        match result {
            Ok(checked) => eprintln!(
                "faults: class={what} mode=failover injected={} passed={} reads={} eio={} bytes_verified={} wrong_bytes=0 longest_call_ms={} longest_file_ms={} cache_blocks_verified={checked}",
                proxy.injected(),
                proxy.passed(),
                t.reads,
                t.eio,
                t.bytes,
                t.longest.as_millis(),
                t.longest_file.as_millis()
            ),
            Err(e) => failures.push(format!(
                "{what}: {}",
                e.downcast_ref::<String>().map_or("panic", String::as_str)
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "failover failed:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_fault_class_has_a_test() {
    // The list above is by hand; this keeps it honest when a class is added.
    let src = std::fs::read_to_string(support::repo_root().join("tests/faults.rs")).unwrap();
    for f in Fault::ALL {
        assert!(
            src.contains(&format!("fault_class(Fault::{f:?})")),
            "no test for {f:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// IPNS records: stale, forged, expired, rolled back
// ---------------------------------------------------------------------------------------

fn ls(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A signed record for `/ipfs/{cid}` valid until `eol`, TTL 1 s.
fn record(key: &distfs::name::Keypair, cid: &str, seq: u64, eol: SystemTime) -> Vec<u8> {
    distfs::name::create(
        key,
        &format!("/ipfs/{cid}"),
        seq,
        eol,
        Duration::from_secs(1),
    )
    .unwrap()
    .to_vec()
}

/// PUTs `bytes` as the record for `name` to the serve with curl; the HTTP status.
fn put_record(serve: &Serve, name: &str, bytes: &[u8], dir: &Path) -> String {
    let file = dir.join("put.rec");
    std::fs::write(&file, bytes).unwrap();
    let out = harness::run_ok(
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "PUT",
            "-H",
            "content-type: application/vnd.ipfs.ipns-record",
            "--data-binary",
            &format!("@{}", file.display()),
            &format!("{}/routing/v1/ipns/{name}", serve.url),
        ],
    );
    String::from_utf8(out).unwrap()
}

/// Counts lines of the mount's log containing `needle`.
fn log_count(m: &Mount, needle: &str) -> usize {
    m.log_text().lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn ipns_records_stale_forged_expired_or_rolled_back_never_move_the_root() {
    let tmp = tempdir();
    let store = tmp.path().join("store");
    let store_s = store.display().to_string();
    let serve = Serve::start(&store);
    let proxy = FaultyProxy::start(&serve.url, SEED);
    let key = distfs::name::Keypair::generate();
    let k = key.name().to_string();
    let day = Duration::from_secs(86_400);
    let fresh = || SystemTime::now() + day;
    let mut cids = Vec::new();
    for v in 1..=3 {
        let dir = tmp.path().join(format!("v{v}"));
        write_bytes(
            &dir.join(format!("app/{v}.0/app.bin")),
            &det_bytes(&format!("ipns-v{v}"), 4096),
        );
        cids.push(distfs_add(&dir, &["--cid-version", "1", "--store", &store_s]).unwrap());
    }
    // The honest gateway holds sequence 2 (version 2.0).
    assert_eq!(
        put_record(&serve, &k, &record(&key, &cids[1], 2, fresh()), tmp.path()),
        "200"
    );

    // Stale: the proxy lags behind with sequence 1 (version 1.0); the higher one wins.
    proxy.plant_record(Some(record(&key, &cids[0], 1, fresh())));
    let root = format!("/ipns/{k}");
    let cache = tmp.path().join("cache");
    let opts = MountOpts {
        root: &root,
        gateways: &[&proxy.url, &serve.url],
        cache: &cache,
        extra: &[
            "--min-ttl",
            "1",
            "--max-ttl",
            "1",
            "--read-timeout",
            READ_TIMEOUT,
        ],
    };
    let m = Mount::try_start(&tmp.path().join("mnt"), &opts).unwrap();
    let app = m.path("app");
    assert_eq!(
        ls(&app),
        ["2.0", "latest"],
        "stale: the root follows sequence 2"
    );
    let planted = |m: &Mount, what: &str, rec: Vec<u8>, why: &str| {
        let before = proxy
            .counts()
            .records_planted
            .load(std::sync::atomic::Ordering::SeqCst);
        let seen = log_count(m, why);
        proxy.plant_record(Some(rec));
        let start = Instant::now();
        poll(
            &format!("the mount to refuse the {what} record"),
            Duration::from_secs(30),
            || (log_count(m, why) > seen).then_some(()),
        );
        let waited = start.elapsed();
        let n = proxy
            .counts()
            .records_planted
            .load(std::sync::atomic::Ordering::SeqCst)
            - before;
        eprintln!("faults: class=ipns-{what} injected={n} refused_with={why:?} longest_wait_ms={} root_moved=0", waited.as_millis());
    };
    // A stale answer is not refused (another source has a better one), only outranked:
    // the root stays on 2.0 through several resolutions.
    let seen = proxy
        .counts()
        .records_planted
        .load(std::sync::atomic::Ordering::SeqCst);
    poll(
        "a few resolutions with the stale record",
        Duration::from_secs(30),
        || {
            (proxy
                .counts()
                .records_planted
                .load(std::sync::atomic::Ordering::SeqCst)
                >= seen + 3)
                .then_some(())
        },
    );
    assert_eq!(ls(&app), ["2.0", "latest"], "stale record moved the root");
    eprintln!(
        "faults: class=ipns-stale injected={} outranked_by=sequence-2 root_moved=0",
        proxy
            .counts()
            .records_planted
            .load(std::sync::atomic::Ordering::SeqCst)
    );

    // Forged: a higher sequence, signed by another key.
    let forger = distfs::name::Keypair::generate();
    planted(
        &m,
        "forged",
        record(&forger, &cids[2], 99, fresh()),
        "bad-signature",
    );
    assert_eq!(
        ls(&app),
        ["2.0", "latest"],
        "a forged record moved the root"
    );

    // Expired: the right key, a higher sequence, a validity in the past.
    planted(
        &m,
        "expired",
        record(&key, &cids[2], 50, SystemTime::now() - day),
        "expired",
    );
    assert_eq!(
        ls(&app),
        ["2.0", "latest"],
        "an expired record moved the root"
    );

    // A newer record (sequence 3) is followed...
    proxy.plant_record(Some(record(&key, &cids[2], 3, fresh())));
    poll("the root to move to 3.0", Duration::from_secs(30), || {
        (ls(&app) == ["3.0", "latest"]).then_some(())
    });
    // ...and a roll-back to sequence 1 afterwards is refused (the honest gateway's 2 too).
    planted(
        &m,
        "rolled-back",
        record(&key, &cids[0], 1, fresh()),
        "below the 3 already seen",
    );
    assert_eq!(
        ls(&app),
        ["3.0", "latest"],
        "a rolled-back record moved the root"
    );
    let got = timed_read(&m.path("app/3.0/app.bin")).0.unwrap();
    assert_eq!(sha(&got), sha(&det_bytes("ipns-v3", 4096)));
    assert!(is_mounted(&m.dir));

    // The refusal survives a restart on the same cache dir.
    drop(m);
    let m = Mount::try_start(&tmp.path().join("mnt"), &opts).unwrap();
    assert_eq!(ls(&m.path("app")), ["3.0", "latest"], "after a restart");
    assert!(m.log_text().contains("already seen"), "{}", m.log_text());
}

/// Record answers spoiled in transit by every block-fault class (the record's bytes play the
/// block's part): the root never moves, files read on, and a newer record on the honest
/// gateway is still followed while the other one trickles.
#[test]
fn ipns_record_answers_spoiled_in_transit_never_move_the_root_or_stall_reads() {
    use std::sync::atomic::Ordering::SeqCst;
    let tmp = tempdir();
    let store = tmp.path().join("store");
    let store_s = store.display().to_string();
    let serve = Serve::start(&store);
    let proxy = FaultyProxy::start(&serve.url, SEED);
    let key = distfs::name::Keypair::generate();
    let k = key.name().to_string();
    let fresh = || SystemTime::now() + Duration::from_secs(86_400);
    let mut cids = Vec::new();
    for v in 1..=2 {
        let dir = tmp.path().join(format!("v{v}"));
        let data = det_bytes(&format!("transit-v{v}"), 300_000);
        write_bytes(&dir.join(format!("app/{v}.0/app.bin")), &data);
        cids.push(distfs_add(&dir, &["--cid-version", "1", "--store", &store_s]).unwrap());
    }
    let put = |seq: u64, cid: &str| {
        let status = put_record(&serve, &k, &record(&key, cid, seq, fresh()), tmp.path());
        assert_eq!(status, "200");
    };
    put(1, &cids[0]);
    let root = format!("/ipns/{k}");
    let opts = MountOpts {
        root: &root,
        gateways: &[&proxy.url, &serve.url],
        cache: &tmp.path().join("cache"),
        extra: &[
            "--min-ttl",
            "1",
            "--max-ttl",
            "1",
            "--read-timeout",
            READ_TIMEOUT,
        ],
    };
    let m = Mount::try_start(&tmp.path().join("mnt"), &opts).unwrap();
    let app = m.path("app");
    assert_eq!(ls(&app), ["1.0", "latest"]);
    let want = det_bytes("transit-v1", 300_000);
    // Slow-loris last: each resolution then waits out the record timeout (15 s).
    let order = Fault::ALL.iter().filter(|f| **f != Fault::SlowLoris);
    for &fault in order.chain([&Fault::SlowLoris]) {
        let what = format!("ipns-transit-{fault:?}");
        let before = proxy.counts().records_spoiled.load(SeqCst);
        proxy.set_record_fault(Some(fault));
        let start = Instant::now();
        poll(
            &format!("{what}: a spoiled record answer"),
            Duration::from_secs(60),
            || (proxy.counts().records_spoiled.load(SeqCst) > before).then_some(()),
        );
        // One more resolution after the spoiled one, unless it trickles (15 s each).
        if fault != Fault::SlowLoris {
            poll(
                &format!("{what}: a second resolution"),
                Duration::from_secs(60),
                || (proxy.counts().records_spoiled.load(SeqCst) > before + 1).then_some(()),
            );
        }
        let (got, _, _) = timed_read(&m.path("app/1.0/app.bin"));
        let got = got.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(sha(&got), sha(&want), "{what}: wrong bytes");
        assert_eq!(ls(&app), ["1.0", "latest"], "{what}: the root moved");
        eprintln!(
            "faults: class={what} injected={} root_moved=0 reads=1 wrong_bytes=0 observed_for_ms={}",
            proxy.counts().records_spoiled.load(SeqCst) - before,
            start.elapsed().as_millis()
        );
    }
    // A newer record on the honest gateway is followed while the proxy trickles.
    put(2, &cids[1]);
    let start = Instant::now();
    poll(
        "the root to move to 2.0 past a trickling gateway",
        Duration::from_secs(60),
        || (ls(&app) == ["2.0", "latest"]).then_some(()),
    );
    eprintln!(
        "faults: class=ipns-transit-follow-past-SlowLoris followed_after_ms={}",
        start.elapsed().as_millis()
    );
    assert!(is_mounted(&m.dir));
}

// ---------------------------------------------------------------------------------------
// Security: special mode bits, node types the mount does not serve, hostile names
// ---------------------------------------------------------------------------------------

#[test]
fn setuid_setgid_and_sticky_bits_from_the_dag_are_never_shown() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    let suid = write_bytes(&src.join("proj/1.0/suid"), b"#!/bin/sh\necho root\n");
    let sgid = write_bytes(&src.join("proj/1.0/sgid"), b"#!/bin/sh\necho group\n");
    let sticky = src.join("proj/1.0/sticky");
    std::fs::create_dir_all(&sticky).unwrap();
    write_bytes(&sticky.join("f"), b"x");
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o6755)).unwrap();
    std::fs::set_permissions(&sgid, std::fs::Permissions::from_mode(0o2755)).unwrap();
    std::fs::set_permissions(&sticky, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let store = tmp.path().join("store");
    let flags = ["--preserve-mode", "--store", store.to_str().unwrap()];
    let root = distfs_add(&src, &flags).unwrap();
    let serve = Serve::start(&store);

    // The DAG really carries the bits (else this test could not fail).
    let suid_cid = distfs_add(&suid, &flags).unwrap();
    let block = harness::http_get(&serve.url, &format!("/ipfs/{suid_cid}?format=raw"));
    let node = distfs::unixfs::Node::decode(&suid_cid.parse().unwrap(), &block).unwrap();
    assert_eq!(
        node.meta().perm(),
        Some(0o6755),
        "the DAG keeps the setuid bits"
    );

    let m = Mount::try_start(
        &tmp.path().join("mnt"),
        &MountOpts {
            root: &root,
            gateways: &[&serve.url],
            cache: &tmp.path().join("cache"),
            extra: &[],
        },
    )
    .unwrap();
    for (rel, want) in [("suid", 0o755), ("sgid", 0o755), ("sticky", 0o777)] {
        let mode = std::fs::metadata(m.path(&format!("proj/1.0/{rel}")))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7000, 0, "{rel}: special bits shown ({mode:o})");
        assert_eq!(mode & 0o777, want, "{rel}: permission bits ({mode:o})");
    }
}

/// A dag-pb UnixFS node of `ty` with `links` (name, cid), sorted by name bytes.
fn pb_node(ty: i32, links: &[(&str, cid::Cid)], data: Option<Vec<u8>>) -> distfs::block::Block {
    use distfs::unixfs::pb::{encode_pb_node, Data, PbLink};
    use prost::Message;
    let mut links: Vec<PbLink> = links
        .iter()
        .map(|(n, c)| PbLink {
            hash: Some(c.to_bytes()),
            name: Some((*n).to_string()),
            tsize: Some(10),
        })
        .collect();
    links.sort_by(|a, b| {
        a.name
            .as_deref()
            .unwrap_or("")
            .as_bytes()
            .cmp(b.name.as_deref().unwrap_or("").as_bytes())
    });
    let unixfs = Data {
        r#type: ty,
        data: data.map(Into::into),
        ..Default::default()
    };
    let bytes = encode_pb_node(&links, Some(&unixfs.encode_to_vec()));
    distfs::block::Block::encode(cid::Version::V1, 0x70, bytes.into())
}

#[test]
fn hostile_names_and_unserved_node_types_never_appear_or_resolve() {
    let tmp = tempdir();
    let store = tmp.path().join("store");
    let disk = distfs::store::disk::DiskStore::open(&store).unwrap();
    let put = |b: distfs::block::Block| {
        let c = *b.cid();
        disk.put_sync(&b).unwrap();
        c
    };
    let good = put(distfs::block::Block::encode(
        cid::Version::V1,
        0x55,
        b"good bytes\n".to_vec().into(),
    ));
    // UnixFS types: Raw 0, Directory 1, File 2, Metadata 3, Symlink 4, HAMTShard 5. The
    // mount serves files, directories, symlinks and HAMT shards; devices, fifos and sockets
    // are not UnixFS types at all, so anything else (Metadata, an unknown number) is refused.
    let meta = put(pb_node(3, &[], Some(b"mime: x".to_vec())));
    let weird = put(pb_node(9, &[], None));
    let long = "x".repeat(256);
    let hostile = [
        ("..", good),
        (".", good),
        ("a/b", good),
        ("nul\0x", good),
        ("", good),
        (long.as_str(), good),
    ];
    let mut entries: Vec<(&str, cid::Cid)> = hostile.to_vec();
    entries.push(("good.txt", good));
    let h = put(pb_node(1, &entries, None));
    // The unserved types sit in a directory of their own: today one such entry makes its
    // whole directory fail to list (see RELIABILITY.md, "Known gaps").
    let types = put(pb_node(1, &[("meta", meta), ("weird", weird)], None));
    let v = put(pb_node(1, &[("h", h), ("types", types)], None));
    let p = put(pb_node(1, &[("1.0", v)], None));
    let root = put(pb_node(1, &[("proj", p)], None));
    drop(disk);
    let serve = Serve::start(&store);
    let m = Mount::try_start(
        &tmp.path().join("mnt"),
        &MountOpts {
            root: &root.to_string(),
            gateways: &[&serve.url],
            cache: &tmp.path().join("cache"),
            extra: &["--read-timeout", READ_TIMEOUT],
        },
    )
    .unwrap();
    let dir = m.path("proj/1.0/h");
    let listed = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    assert_eq!(listed, ["good.txt"], "hostile names listed");
    assert_eq!(
        std::fs::read(dir.join("good.txt")).unwrap(),
        b"good bytes\n"
    );
    // The parts of the hostile names before the `/` and the NUL do not resolve to them.
    for name in ["a", "nul"] {
        let e = std::fs::metadata(dir.join(name)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{name}: {e}");
    }
    // `..` and `.` are the kernel's: the parent and the directory itself.
    assert_eq!(
        std::fs::canonicalize(dir.join("..")).unwrap(),
        std::fs::canonicalize(m.path("proj/1.0")).unwrap()
    );
    let log = m.log_text();
    for reason in [
        "empty name",
        "`.` and `..`",
        "contains `/`",
        "contains NUL",
        "longer than 255",
    ] {
        assert!(log.contains(reason), "no log of hiding ({reason}): {log}");
    }

    // The unserved types are never listed, and fail with EIO or ENOENT when looked up
    // or read.
    let tdir = m.path("proj/1.0/types");
    match std::fs::read_dir(&tdir) {
        Ok(rd) => {
            for e in rd {
                match e {
                    Ok(e) => panic!("unserved entry listed: {:?}", e.file_name()),
                    Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}"),
                }
            }
        }
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}"),
    }
    for name in ["meta", "weird"] {
        let errno = match std::fs::metadata(tdir.join(name)) {
            Err(e) => e.raw_os_error(),
            Ok(_) => std::fs::read(tdir.join(name))
                .err()
                .and_then(|e| e.raw_os_error()),
        };
        assert!(
            matches!(errno, Some(libc::EIO) | Some(libc::ENOENT)),
            "{name}: served (errno {errno:?})"
        );
    }
    let log = m.log_text();
    assert!(log.contains("unsupported UnixFS type 3"), "{log}");
    assert!(log.contains("unsupported UnixFS type 9"), "{log}");
    assert!(is_mounted(&m.dir));
}
