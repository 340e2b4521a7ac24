//! Magic extended attributes on a real mount (`dist::xattr`), read with `getfattr` and with
//! raw getxattr(2)/listxattr(2) calls for the xattr(7) size contract:
//! - files: `user.distfs.cached` is 0 before any read, between 0 and the size after a
//!   partial read, the size after `cat`; `user.distfs.source` is absent before the first
//!   read, the gateway's URL after a cold read, and `cache` after a restart on the warm cache
//!   with the gateway stopped (every block then comes from disk);
//! - the root of an `/ipns/` mount: `user.distfs.root`, `.sequence` and `.publisher` match
//!   the published record and move after a republish and the refresh that follows;
//! - `listxattr` names exactly the attributes that exist for each node.
//!
//! Needs /dev/fuse, fusermount3 and getfattr (fails, never skips).

#[path = "support/mod.rs"]
mod support;

#[allow(dead_code)]
#[path = "mount/harness.rs"]
mod harness;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::Path;
use std::time::Duration;

use distfs::name::Keypair;
use harness::{poll, run_ok, Mount, MountOpts, Serve};
use support::ipns::{put_record, record};
use support::{distfs_add, tempdir, write_det};

/// Larger than the widest readahead window (`MAX_WINDOW_BLOCKS` × 256 KiB = 32 MiB), so
/// that a 100 kB `head` cannot fetch it all: at 3 MiB the window's prefetch, at least 8 MiB,
/// could finish the whole file before the test looked (seen once under a loaded run).
const FILE_LEN: usize = 40 * 1024 * 1024 + 123;
const FILE: &str = "app/1.0.0/data.bin";

/// Every xattr of `path`, as `getfattr -d -m - --absolute-names` prints them.
fn xattrs(path: &Path) -> BTreeMap<String, String> {
    let out = run_ok(
        "getfattr",
        &["-d", "-m", "-", "--absolute-names", path.to_str().unwrap()],
    );
    String::from_utf8(out)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("bad line {l:?}"));
            (k.to_string(), v.trim_matches('"').to_string())
        })
        .collect()
}

fn names(map: &BTreeMap<String, String>) -> Vec<&str> {
    map.keys().map(String::as_str).collect()
}

fn cached(path: &Path) -> u64 {
    xattrs(path)["user.distfs.cached"].parse().unwrap()
}

/// getxattr(2) with a buffer of `size` bytes: the length, or the errno.
fn getxattr(path: &Path, name: &str, size: usize) -> Result<usize, i32> {
    let p = CString::new(path.to_str().unwrap()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; size];
    // SAFETY: valid C strings and a buffer of `size` bytes (null when 0, as the contract allows).
    let rc = unsafe {
        let ptr = if size == 0 {
            std::ptr::null_mut()
        } else {
            buf.as_mut_ptr().cast()
        };
        libc::getxattr(p.as_ptr(), n.as_ptr(), ptr, size)
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(rc as usize)
    }
}

/// listxattr(2): the names, NUL-separated, after a size probe.
fn listxattr(path: &Path) -> Vec<String> {
    let p = CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a size probe with a null buffer, then a buffer of the probed size.
    let len = unsafe { libc::listxattr(p.as_ptr(), std::ptr::null_mut(), 0) };
    assert!(len > 0, "listxattr size probe: {len}");
    let mut buf = vec![0u8; len as usize];
    let got = unsafe { libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(got, len, "listxattr returned what it probed");
    buf.split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

#[test]
fn file_xattrs_follow_the_cache_and_the_source() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    write_det(&src.join(FILE), "xattr", FILE_LEN);
    let store = tmp.path().join("store");
    // Stored modes: looking the file up then never reads its head (to guess `x`), so
    // nothing of its content is fetched before the first read.
    let flags = ["--preserve-mode", "--store", store.to_str().unwrap()];
    let root = distfs_add(&src, &flags).unwrap();
    let cache = tmp.path().join("cache");
    let mut serve = Serve::start(&store);
    let url = serve.url.clone();
    let opts = MountOpts {
        root: &root,
        gateways: &[&url],
        cache: &cache,
        extra: &["--no-background-fetch"],
    };
    let mnt = Mount::try_start(&tmp.path().join("mnt"), &opts).unwrap();
    let file = mnt.path(FILE);

    // Before any read: the CID and 0 bytes held; no source yet.
    let before = xattrs(&file);
    assert_eq!(
        names(&before),
        ["user.distfs.cached", "user.ipfs.cid"],
        "{before:?}"
    );
    assert_eq!(before["user.distfs.cached"], "0");
    let mut listed = listxattr(&file);
    listed.sort();
    assert_eq!(listed, ["user.distfs.cached", "user.ipfs.cid"]);

    // A directory and the root of an /ipfs mount: no file attributes, no name facts.
    assert_eq!(names(&xattrs(&mnt.path("app"))), ["user.ipfs.cid"]);
    let top = xattrs(&mnt.dir);
    assert_eq!(
        names(&top),
        ["user.distfs.root", "user.ipfs.cid"],
        "{top:?}"
    );
    assert_eq!(top["user.distfs.root"], format!("/ipfs/{root}"));
    assert_eq!(top["user.ipfs.cid"], root);

    // xattr(7): a size probe gets the length, a short buffer ERANGE, a missing name ENODATA.
    let len = getxattr(&mnt.dir, "user.distfs.root", 0).unwrap();
    assert_eq!(len, format!("/ipfs/{root}").len());
    assert_eq!(getxattr(&mnt.dir, "user.distfs.root", len), Ok(len));
    assert_eq!(
        getxattr(&mnt.dir, "user.distfs.root", len - 1),
        Err(libc::ERANGE)
    );
    assert_eq!(
        getxattr(&mnt.dir, "user.distfs.sequence", 64),
        Err(libc::ENODATA)
    );
    assert_eq!(getxattr(&file, "user.distfs.nope", 64), Err(libc::ENODATA));

    // A partial read: some of the file is held, not all; the gateway served it.
    run_ok("head", &["-c", "100000", file.to_str().unwrap()]);
    let part = cached(&file);
    assert!(
        part >= 100_000 && part < FILE_LEN as u64,
        "cached after head: {part}"
    );
    let after_head = xattrs(&file);
    assert_eq!(after_head["user.distfs.source"], url);
    let mut listed = listxattr(&file);
    listed.sort();
    assert_eq!(
        listed,
        ["user.distfs.cached", "user.distfs.source", "user.ipfs.cid"]
    );

    // The whole file: all of it held.
    run_ok("cat", &[file.to_str().unwrap()]);
    assert_eq!(cached(&file), FILE_LEN as u64);
    assert_eq!(xattrs(&file)["user.distfs.source"], url);

    // Restart on the warm cache with the gateway gone: everything comes from disk.
    drop(mnt);
    serve.kill();
    let mnt = Mount::try_start(&tmp.path().join("mnt"), &opts).unwrap();
    let file = mnt.path(FILE);
    let warm = xattrs(&file);
    assert_eq!(warm["user.distfs.cached"], FILE_LEN.to_string());
    assert!(!warm.contains_key("user.distfs.source"), "{warm:?}");
    run_ok("cat", &[file.to_str().unwrap()]);
    assert_eq!(xattrs(&file)["user.distfs.source"], "cache");
}

#[test]
fn root_xattrs_name_the_record_and_move_with_it() {
    let tmp = tempdir();
    let store = tmp.path().join("store");
    let store_s = store.display().to_string();
    let serve = Serve::start(&store);
    let key = Keypair::generate();
    let k = key.name().to_string();
    let v1 = tmp.path().join("v1");
    write_det(&v1.join("app/1.0.0/a.bin"), "root-v1", 1000);
    let cid1 = distfs_add(&v1, &["--cid-version", "1", "--store", &store_s]).unwrap();
    assert_eq!(
        put_record(
            &serve.url,
            &k,
            &record(&key, &cid1, 5, Duration::from_secs(1)),
            tmp.path()
        ),
        "200"
    );

    let spec = format!("/ipns/{k}");
    let opts = MountOpts {
        root: &spec,
        gateways: &[&serve.url],
        cache: &tmp.path().join("cache"),
        extra: &["--min-ttl", "1", "--max-ttl", "2"],
    };
    let mnt = Mount::try_start(&tmp.path().join("mnt"), &opts).unwrap();
    let top = xattrs(&mnt.dir);
    let want: BTreeMap<String, String> = [
        ("user.distfs.publisher", k.clone()),
        ("user.distfs.root", spec.clone()),
        ("user.distfs.sequence", "5".to_string()),
        ("user.ipfs.cid", cid1.clone()),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b))
    .collect();
    assert_eq!(top, want);
    let mut listed = listxattr(&mnt.dir);
    listed.sort();
    assert_eq!(listed, names(&want));

    // Republish (sequence 7, a new version): after the refresh the root's facts move.
    let v2 = tmp.path().join("v2");
    write_det(&v2.join("app/2.0.0/a.bin"), "root-v2", 1000);
    let cid2 = distfs_add(&v2, &["--cid-version", "1", "--store", &store_s]).unwrap();
    assert_eq!(
        put_record(
            &serve.url,
            &k,
            &record(&key, &cid2, 7, Duration::from_secs(1)),
            tmp.path()
        ),
        "200"
    );
    let moved = poll(
        "the root xattrs to show sequence 7",
        Duration::from_secs(30),
        || {
            let now = xattrs(&mnt.dir);
            (now["user.distfs.sequence"] == "7").then_some(now)
        },
    );
    assert_eq!(moved["user.ipfs.cid"], cid2);
    assert_eq!(moved["user.distfs.publisher"], k);
    assert_eq!(moved["user.distfs.root"], spec);
}
