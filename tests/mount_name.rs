//! A mount that follows an IPNS name, end to end with real processes: `distfs serve` holds
//! the blocks (added with `distfs add --store`) and the record (PUT with curl), `distfs
//! mount --root /ipns/<name>` follows it. A new version published under the name appears in
//! `ls` and `latest` within a short TTL, while a reader that opened an old-version file
//! before the switch, and a shell whose working directory is inside the old version, read
//! it to the end with the right bytes. Forged and lower-sequence records planted straight
//! into the serve's record directory are refused and the root is kept, also across a daemon
//! restart on the same cache dir. Needs /dev/fuse and fusermount3 (fails, never skips).

#[path = "support/mod.rs"]
mod support;

#[allow(dead_code)]
#[path = "mount/harness.rs"]
mod harness;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use distfs::name::Keypair;
use harness::{poll, run_ok, Mount, MountOpts, Serve};
use sha2::{Digest, Sha256};
use support::ipns::{put_record, record};
use support::{det_bytes, distfs_add, tempdir, write_det};

const FILE_LEN: usize = 3 * 1024 * 1024 + 123;
const TTL: Duration = Duration::from_secs(1);

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

fn latest(mnt: &Mount) -> String {
    std::fs::read_link(mnt.path("app/latest"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn hex_sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[test]
fn mount_follows_a_name_keeps_open_files_and_refuses_bad_records() {
    let tmp = tempdir();
    let store = tmp.path().join("store");
    let cache = tmp.path().join("cache");
    let store_s = store.display().to_string();
    let serve = Serve::start(&store);
    let key = Keypair::generate();
    let k = key.name().to_string();

    // Version 1 of the distribution, published as sequence 1.
    let v1 = tmp.path().join("v1");
    write_det(&v1.join("app/1.0.0/app.bin"), "name-v1", FILE_LEN);
    let cid1 = distfs_add(&v1, &["--cid-version", "1", "--store", &store_s]).unwrap();
    assert_eq!(
        put_record(&serve.url, &k, &record(&key, &cid1, 1, TTL), tmp.path()),
        "200"
    );

    let root = format!("/ipns/{k}");
    let opts = MountOpts {
        root: &root,
        gateways: &[&serve.url],
        cache: &cache,
        extra: &["--min-ttl", "1", "--max-ttl", "2"],
    };
    let mnt = Mount::try_start(&tmp.path().join("mnt"), &opts).unwrap();
    assert_eq!(ls(&mnt.path("app")), ["1.0.0", "latest"]);
    assert_eq!(latest(&mnt), "1.0.0");

    // A reader opens the old file and reads part of it; a shell sits inside the old version.
    let old_bytes = det_bytes("name-v1", FILE_LEN);
    let mut reader = std::fs::File::open(mnt.path("app/1.0.0/app.bin")).unwrap();
    let mut head = vec![0u8; 1024 * 1024];
    reader.read_exact(&mut head).unwrap();
    let go = tmp.path().join("go");
    let shell = Command::new("sh")
        .arg("-c")
        // Bounded: waits at most 60 s for the signal file, then hashes from its cwd.
        .arg(r#"cd "$1" || exit 9; i=0; while [ ! -e "$2" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; sha256sum app.bin"#)
        .arg("sh")
        .arg(mnt.path("app/1.0.0"))
        .arg(&go)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();

    // Version 2 replaces 1.0.0 with 2.0.0, published as sequence 2.
    let v2 = tmp.path().join("v2");
    write_det(&v2.join("app/2.0.0/app.bin"), "name-v2", FILE_LEN);
    let cid2 = distfs_add(&v2, &["--cid-version", "1", "--store", &store_s]).unwrap();
    assert_eq!(
        put_record(&serve.url, &k, &record(&key, &cid2, 2, TTL), tmp.path()),
        "200"
    );
    poll(
        "the mount to show version 2.0.0",
        Duration::from_secs(30),
        || (ls(&mnt.path("app")) == ["2.0.0", "latest"] && latest(&mnt) == "2.0.0").then_some(()),
    );
    let new = std::fs::read(mnt.path("app/latest/app.bin")).unwrap();
    assert_eq!(hex_sha(&new), hex_sha(&det_bytes("name-v2", FILE_LEN)));

    // The old file reads on to its end, and the shell in the old version hashes it right.
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    head.extend_from_slice(&rest);
    assert_eq!(head.len(), FILE_LEN);
    assert!(head == old_bytes, "the old file changed under its reader");
    std::fs::write(&go, b"").unwrap();
    let out = shell.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "shell in the old version failed: {out:?}"
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.starts_with(&hex_sha(&old_bytes)), "{printed}");

    // Bad records planted past the serve's checks: refused, root kept.
    let planted = store.join("ipns").join(format!("{k}.ipns-record"));
    let forger = Keypair::generate();
    std::fs::write(&planted, record(&forger, &cid1, 99, TTL)).unwrap();
    poll(
        "the mount to refuse the forged record",
        Duration::from_secs(30),
        || mnt.log_text().contains("bad-signature").then_some(()),
    );
    std::fs::write(&planted, record(&key, &cid1, 1, TTL)).unwrap();
    poll(
        "the mount to refuse the lower sequence",
        Duration::from_secs(30),
        || {
            mnt.log_text()
                .contains("below the 2 already seen")
                .then_some(())
        },
    );
    assert_eq!(ls(&mnt.path("app")), ["2.0.0", "latest"]);
    assert_eq!(latest(&mnt), "2.0.0");

    // A restart on the same cache dir, with the serve still offering sequence 1: version 2.
    drop(mnt);
    let mnt = Mount::try_start(&tmp.path().join("mnt"), &opts).unwrap();
    assert_eq!(ls(&mnt.path("app")), ["2.0.0", "latest"]);
    assert_eq!(latest(&mnt), "2.0.0");
    assert!(
        mnt.log_text().contains("below the 2 already seen"),
        "{}",
        mnt.log_text()
    );
}

#[test]
fn distfs_refresh_makes_the_mount_re_resolve_before_its_ttl() {
    let tmp = tempdir();
    let store = tmp.path().join("store");
    let cache = tmp.path().join("cache");
    let store_s = store.display().to_string();
    let serve = Serve::start(&store);
    let key = Keypair::generate();
    let k = key.name().to_string();
    let v1 = tmp.path().join("v1");
    write_det(&v1.join("app/1.0.0/app.bin"), "refresh-v1", 1000);
    let cid1 = distfs_add(&v1, &["--cid-version", "1", "--store", &store_s]).unwrap();
    assert_eq!(
        put_record(&serve.url, &k, &record(&key, &cid1, 1, TTL), tmp.path()),
        "200"
    );

    // Nobody mounts this cache dir yet: refresh says so and fails.
    let cache_s = cache.display().to_string();
    let out = harness::run(
        support::distfs_bin().to_str().unwrap(),
        &["refresh", "--cache-dir", &cache_s],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no distfs mount uses"));

    let root = format!("/ipns/{k}");
    let opts = MountOpts {
        root: &root,
        gateways: &[&serve.url],
        cache: &cache,
        // An hour: only `distfs refresh` can make this mount look again within the test.
        extra: &["--min-ttl", "3600", "--max-ttl", "3600"],
    };
    let mnt = Mount::try_start(&tmp.path().join("mnt"), &opts).unwrap();
    assert_eq!(ls(&mnt.path("app")), ["1.0.0", "latest"]);

    let v2 = tmp.path().join("v2");
    write_det(&v2.join("app/2.0.0/app.bin"), "refresh-v2", 1000);
    let cid2 = distfs_add(&v2, &["--cid-version", "1", "--store", &store_s]).unwrap();
    assert_eq!(
        put_record(&serve.url, &k, &record(&key, &cid2, 2, TTL), tmp.path()),
        "200"
    );
    assert_eq!(
        ls(&mnt.path("app")),
        ["1.0.0", "latest"],
        "no refresh before the TTL"
    );
    let said = run_ok(
        support::distfs_bin().to_str().unwrap(),
        &["refresh", "--cache-dir", &cache_s],
    );
    assert!(String::from_utf8_lossy(&said).contains("re-resolve"));
    poll(
        "the refreshed mount to show 2.0.0",
        Duration::from_secs(30),
        || (ls(&mnt.path("app")) == ["2.0.0", "latest"]).then_some(()),
    );
}
