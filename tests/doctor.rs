//! `distfs doctor` against real mounts and gateways: a live mount is ok; after `kill -9` of
//! its daemon the mount is reported dead and `--fix` clears it; after `kill -STOP` it is
//! reported hung within the probe bound and `--fix` aborts the connection and clears it; a
//! gateway that does not answer fails naming its URL, a working one and a published name
//! pass. Mount checks are limited to this test's mount points (`--mount`) so that other
//! mounts on the machine are never touched. Needs /dev/fuse and fusermount3 (fails, never
//! skips).

#[path = "support/mod.rs"]
mod support;

#[allow(dead_code)]
#[path = "mount/harness.rs"]
mod harness;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use distfs::name::Keypair;
use harness::{is_mounted, Mount, MountOpts, Serve};
use support::ipns::{put_record, record};
use support::{distfs_add, distfs_bin, tempdir, write_det};

/// Runs `distfs doctor ARGS` with stdin closed (no prompt), bounded by the probe timeouts.
fn doctor(args: &[&str]) -> (bool, String) {
    let out: Output = Command::new(distfs_bin())
        .arg("doctor")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawn distfs doctor");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn has_line(text: &str, start: &str) -> bool {
    text.lines().any(|l| l.starts_with(start))
}

/// A one-file distribution in a store, served.
fn fixture(tmp: &Path) -> (String, Serve) {
    let src = tmp.join("src");
    write_det(&src.join("app/1.0.0/a.bin"), "doctor", 5000);
    let store = tmp.join("store");
    let root = distfs_add(
        &src,
        &["--cid-version", "1", "--store", store.to_str().unwrap()],
    )
    .unwrap();
    (root, Serve::start(&store))
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill has no memory preconditions; the pid is our own child.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

#[test]
fn doctor_finds_a_dead_mount_and_clears_it() {
    let tmp = tempdir();
    let (root, serve) = fixture(tmp.path());
    let cache = tmp.path().join("cache");
    let opts = MountOpts {
        root: &root,
        gateways: &[&serve.url],
        cache: &cache,
        extra: &[],
    };
    let mut mnt = Mount::try_start(&tmp.path().join("mnt"), &opts).unwrap();
    let dir = mnt.dir.to_str().unwrap().to_string();
    let cache_s = cache.to_str().unwrap();
    let pid = mnt.pid().unwrap();
    let args = [
        "--mount",
        &dir,
        "--cache-dir",
        cache_s,
        "--gateway",
        &serve.url,
    ];

    let (ok, out) = doctor(&args);
    assert!(ok, "{out}");
    assert!(has_line(&out, &format!("ok   mount {dir}: alive")), "{out}");
    assert!(
        has_line(&out, &format!("ok   gateway {}: answers", serve.url)),
        "{out}"
    );
    assert!(
        out.contains(&format!("in use by distfs pid {pid} mounted at {dir}")),
        "{out}"
    );
    assert!(has_line(&out, "ok   /dev/fuse"), "{out}");
    // The test machines run Linux 6.9 or later, as root.
    assert!(has_line(&out, "ok   passthrough: kernel "), "{out}");

    // The daemon dies: the mount is dead, and the doctor says so and how to fix it.
    mnt.signal_and_wait(libc::SIGKILL);
    let (ok, out) = doctor(&args);
    assert!(!ok, "{out}");
    assert!(has_line(&out, &format!("FAIL mount {dir}: dead")), "{out}");
    assert!(out.contains("fix: distfs doctor --fix"), "{out}");
    assert!(
        out.contains("not in use"),
        "the dead daemon's lock is free: {out}"
    );

    let (ok, out) = doctor(&[&args[..], &["--fix"]].concat());
    assert!(ok, "{out}");
    assert!(
        has_line(&out, &format!("ok   mount {dir}: cleared")),
        "{out}"
    );
    assert!(!is_mounted(&mnt.dir));
    assert!(std::fs::metadata(&mnt.dir).unwrap().is_dir());
    let (ok, out) = doctor(&args);
    assert!(!ok && out.contains("no distfs mount there"), "{out}");
}

#[test]
fn doctor_finds_a_hung_mount_and_aborts_it() {
    let tmp = tempdir();
    let (root, serve) = fixture(tmp.path());
    let cache = tmp.path().join("cache");
    let opts = MountOpts {
        root: &root,
        gateways: &[&serve.url],
        cache: &cache,
        extra: &[],
    };
    let mut mnt = Mount::try_start(&tmp.path().join("mnt"), &opts).unwrap();
    let dir = mnt.dir.to_str().unwrap().to_string();
    let pid = mnt.pid().unwrap();
    let args = [
        "--mount",
        &dir,
        "--cache-dir",
        cache.to_str().unwrap(),
        "--timeout",
        "2",
    ];

    signal(pid, libc::SIGSTOP);
    let (ok, out) = doctor(&args);
    assert!(!ok, "{out}");
    assert!(
        has_line(
            &out,
            &format!("FAIL mount {dir}: hung (no answer within 2s")
        ),
        "{out}"
    );
    assert!(
        out.contains("/abort"),
        "the fix names the fusectl remedy: {out}"
    );

    let (ok, out) = doctor(&[&args[..], &["--fix"]].concat());
    assert!(ok, "{out}");
    assert!(
        has_line(
            &out,
            &format!("ok   mount {dir}: cleared (connection aborted")
        ),
        "{out}"
    );
    assert!(!is_mounted(&mnt.dir));
    // The stopped daemon is killed (SIGKILL works on a stopped process) and reaped.
    mnt.signal_and_wait(libc::SIGKILL);
}

#[test]
fn doctor_checks_gateways_and_names() {
    let tmp = tempdir();
    let (root, serve) = fixture(tmp.path());
    // A port nothing listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let key = Keypair::generate();
    let k = key.name().to_string();
    let rec = record(&key, &root, 3, Duration::from_secs(60));
    assert_eq!(put_record(&serve.url, &k, &rec, tmp.path()), "200");
    let nowhere = tmp.path().join("no-mount");
    let spec = format!("/ipns/{k}");
    let (ok, out) = doctor(&[
        "--cache-dir",
        tmp.path().join("cache").to_str().unwrap(),
        "--mount",
        nowhere.to_str().unwrap(),
        "--gateway",
        &serve.url,
        "--gateway",
        &dead,
        "--root",
        &spec,
    ]);
    assert!(!ok, "{out}");
    assert!(
        has_line(&out, &format!("ok   gateway {}: answers", serve.url)),
        "{out}"
    );
    assert!(has_line(&out, &format!("FAIL gateway {dead}: ")), "{out}");
    assert!(
        out.contains(&format!("curl -s '{dead}/ipfs/bafkqaaa?format=raw'")),
        "{out}"
    );
    assert!(
        has_line(&out, &format!("ok   root {spec}: resolves to {root}"))
            && out.contains("sequence 3"),
        "{out}"
    );
    assert!(has_line(&out, "ok   cache dir"), "{out}");
}
