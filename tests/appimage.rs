//! AppImages run in place from a `distfs mount` (issue 5): real AppImages built with the
//! project's runtime and `mksquashfs`, imported with `distfs add`, served by `distfs serve` on
//! port 0 and mounted with `distfs mount`; the AppImage is executed from the mount, so the
//! kernel, our FUSE bridge and squashfuse (reading the AppImage through our mount) all take
//! part. Needs /dev/fuse, fusermount3, squashfuse and squashfs-tools (`scripts/lib.sh`
//! `ensure_base` installs them); the tests fail, never skip, without them.

#[path = "support/mod.rs"]
mod support;

#[path = "appimage/factory.rs"]
mod factory;
#[path = "mount/harness.rs"]
#[allow(dead_code)] // shared with tests/mount.rs, which uses all of it
mod harness;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use factory::appimage_name;
use harness::{http_get_json, Mount, MountOpts, Serve};
use sha2::{Digest, Sha256};
use support::{distfs_add, tempdir};

/// Flags for `distfs add`; `DISTFS_TEST_ADD_FLAGS` (space-separated) replaces them, so the
/// same tests run over other chunkers (`--cid-version 1 --chunker squashfs`).
fn add_flags() -> Vec<String> {
    std::env::var("DISTFS_TEST_ADD_FLAGS")
        .unwrap_or_else(|_| "--cid-version 1".into())
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Two versions of `hello` as AppImages in a distribution tree, imported and served.
struct Fixture {
    tmp: tempfile::TempDir,
    root: String,
    serve: Serve,
}

const VERSIONS: [&str; 2] = ["v1.0.0", "v1.1.0"];

impl Fixture {
    fn new(payload_mib: u32) -> Fixture {
        Fixture::with(payload_mib, |_| {})
    }

    /// Like [`Fixture::new`], with `edit` applied to the distribution tree before import.
    fn with(payload_mib: u32, edit: impl FnOnce(&Path)) -> Fixture {
        let tmp = tempdir();
        let dist = tmp.path().join("dist");
        factory::dist_tree(
            &dist,
            &tmp.path().join("appdirs"),
            "hello",
            &VERSIONS,
            payload_mib,
        );
        edit(&dist);
        let (root, serve) = import_and_serve(&dist, &tmp.path().join("store"));
        Fixture { tmp, root, serve }
    }

    /// Imports the (changed) tree again into a new store served by a new gateway.
    fn reimport(&mut self, store: &str) {
        let (root, serve) = import_and_serve(&self.path("dist"), &self.path(store));
        self.root = root;
        self.serve = serve;
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn appdir(&self, version: &str) -> PathBuf {
        self.path("appdirs").join(version)
    }

    fn mount(&self, mnt: &str, extra: &[&str]) -> Mount {
        self.mount_with_cache(mnt, &format!("{mnt}.cache"), extra)
    }

    fn mount_with_cache(&self, mnt: &str, cache: &str, extra: &[&str]) -> Mount {
        Mount::try_start(
            &self.path(mnt),
            &MountOpts {
                root: &self.root,
                gateways: &[&self.serve.url],
                cache: &self.path(cache),
                extra,
            },
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Successful raw-block responses per CID so far.
    fn raw_by_cid(&self) -> BTreeMap<String, u64> {
        let stats = http_get_json(&self.serve.url, "/debug/stats");
        let by_cid = stats["by_cid"].as_object().cloned().unwrap_or_default();
        by_cid
            .into_iter()
            .map(|(k, v)| (k, v.as_u64().unwrap_or(0)))
            .collect()
    }
}

fn import_and_serve(dist: &Path, store: &Path) -> (String, Serve) {
    let mut flags = add_flags();
    flags.extend(["--store".into(), store.to_str().unwrap().into()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let root = distfs_add(dist, &flags).expect("distfs add");
    (root, Serve::start(store))
}

/// `len` bytes of `path` at `offset`.
fn read_at(path: &Path, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf)?;
    Ok(buf)
}

/// Runs `prog args` in `cwd` (stdin closed); its output.
fn run_in(cwd: &Path, prog: &Path, args: &[&str]) -> Output {
    Command::new(prog)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", prog.display()))
}

fn stdout_ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): stdout {:?} stderr {:?}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the demo AppRun prints for `version` and `args`, computed from the source AppDir.
fn expected_output(appdir: &Path, version: &str, args: &str) -> String {
    let core = std::fs::read(appdir.join("usr/lib/hello/libcore.so")).unwrap();
    let sha = hex::encode(Sha256::digest(&core));
    format!(
        "Hello from hello {version}!\nargs: {args}\ncore: {}\n",
        &sha[..16]
    )
}

#[test]
fn appimage_runs_from_the_mount_with_its_arguments() {
    let fx = Fixture::new(4);
    let m = fx.mount("mnt", &[]);
    let app = m.path(&format!("hello/latest/{}", appimage_name("hello")));
    let out = run_in(fx.tmp.path(), &app, &["--greet", "world"]);
    let text = stdout_ok(&out, "the AppImage from the mount");
    assert_eq!(
        text,
        expected_output(&fx.appdir("v1.1.0"), "1.1.0", "--greet world")
    );

    // The runtime options work from the mount too, and the image is where the runtime says.
    let out = run_in(fx.tmp.path(), &app, &["--appimage-offset"]);
    let offset: u64 = stdout_ok(&out, "--appimage-offset").trim().parse().unwrap();
    let bytes = std::fs::read(&app).unwrap();
    assert_eq!(&bytes[offset as usize..offset as usize + 4], b"hsqs");

    // An older version by its own path.
    let old = m.path(&format!("hello/v1.0.0/{}", appimage_name("hello")));
    let text = stdout_ok(&run_in(fx.tmp.path(), &old, &[]), "v1.0.0 from the mount");
    assert_eq!(text, expected_output(&fx.appdir("v1.0.0"), "1.0.0", ""));
}

#[test]
fn appimage_exit_status_and_missing_squashfuse_are_reported() {
    let fx = Fixture::new(1);
    let m = fx.mount("mnt", &[]);
    let app = m.path(&format!("hello/latest/{}", appimage_name("hello")));
    // Without squashfuse in PATH the runtime says what is missing and how to get it.
    let out = Command::new(&app)
        .env("PATH", fx.path("empty-path"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "stderr: {err}");
    assert!(
        err.contains("squashfuse not found") && err.contains("apt install"),
        "unhelpful error: {err}"
    );
    let out = run_in(fx.tmp.path(), &app, &["--appimage-no-such-option"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown runtime option"));
    // Nothing is left mounted or behind in the temp dir by the runs above.
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".mount_hello"))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

#[test]
fn appimage_extract_from_the_mount_gives_the_source_tree() {
    let fx = Fixture::new(4);
    let m = fx.mount("mnt", &[]);
    let app = m.path(&format!("hello/v1.0.0/{}", appimage_name("hello")));
    let cwd = fx.path("extract");
    std::fs::create_dir_all(&cwd).unwrap();
    stdout_ok(
        &run_in(&cwd, &app, &["--appimage-extract"]),
        "--appimage-extract",
    );
    let diff = Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(fx.appdir("v1.0.0"))
        .arg(cwd.join("squashfs-root"))
        .output()
        .unwrap();
    assert!(
        diff.status.success(),
        "extracted tree differs from the source: {}",
        String::from_utf8_lossy(&diff.stdout)
    );
    // Modes survive (AppRun executable), and a pattern extracts only what it names.
    let mode = std::fs::metadata(cwd.join("squashfs-root/AppRun"))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()))
        .unwrap();
    assert_eq!(mode & 0o111, 0o111, "AppRun lost its execute bits");
    let only = fx.path("only");
    std::fs::create_dir_all(&only).unwrap();
    stdout_ok(
        &run_in(
            &only,
            &app,
            &["--appimage-extract", "usr/share/hello/version"],
        ),
        "--appimage-extract PATTERN",
    );
    assert_eq!(
        std::fs::read_to_string(only.join("squashfs-root/usr/share/hello/version")).unwrap(),
        "1.0.0\n"
    );
    assert!(!only.join("squashfs-root/AppRun").exists());
}

#[test]
fn two_versions_fetch_their_shared_blocks_once() {
    let fx = Fixture::new(4);
    let m = fx.mount("mnt", &[]);
    let before = fx.serve.settled_raw_requests();
    for (v, version) in [("v1.0.0", "1.0.0"), ("v1.1.0", "1.1.0")] {
        let app = m.path(&format!("hello/{v}/{}", appimage_name("hello")));
        let text = stdout_ok(&run_in(fx.tmp.path(), &app, &["x"]), v);
        assert_eq!(text, expected_output(&fx.appdir(v), version, "x"));
    }
    let after_both = fx.serve.settled_raw_requests();
    // Every block either run needed was fetched from the gateway exactly once, however
    // many times the runs (and the two versions) used it.
    let by_cid = fx.raw_by_cid();
    let twice: Vec<_> = by_cid.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "blocks fetched more than once: {twice:?}");

    // Running both versions again fetches nothing.
    for v in VERSIONS {
        let app = m.path(&format!("hello/{v}/{}", appimage_name("hello")));
        stdout_ok(&run_in(fx.tmp.path(), &app, &[]), v);
    }
    assert_eq!(fx.serve.settled_raw_requests(), after_both);

    // A fresh mount (empty cache) running only v1.1.0 fetches as much as v1.1.0 alone needs:
    // more than the second version cost after the first, because the first brought the
    // blocks the versions share.
    let fresh = fx.mount("mnt2", &[]);
    let start = fx.serve.settled_raw_requests();
    let app = fresh.path(&format!("hello/v1.1.0/{}", appimage_name("hello")));
    stdout_ok(&run_in(fx.tmp.path(), &app, &[]), "v1.1.0 alone");
    let alone = fx.serve.settled_raw_requests() - start;
    let both = after_both - before;
    eprintln!("raw requests: both versions {both}, v1.1.0 alone {alone}");
    // Without sharing the second version would cost about what it costs alone.
    assert!(
        both - alone <= alone / 2,
        "two versions cost {both} requests, v1.1.0 alone {alone}: too little was shared"
    );
}

const MIB: u64 = 1024 * 1024;

#[test]
fn background_fetch_completes_an_opened_appimage_into_the_cache() {
    let fx = Fixture::new(8);
    let rel = format!("hello/v1.1.0/{}", appimage_name("hello"));
    let src = std::fs::read(fx.path("dist").join(&rel)).unwrap();
    let other = format!("hello/v1.0.0/{}", appimage_name("hello"));

    // Opening is enough (no read): the rest comes in the background. With the switch off,
    // opening fetches nothing of the file.
    for (mnt, extra) in [("on", &[][..]), ("off", &["--no-background-fetch"][..])] {
        let m = fx.mount(mnt, extra);
        let f = std::fs::File::open(m.path(&rel)).unwrap();
        fx.serve.settled_raw_requests();
        drop(f);
    }

    // Offline, from the caches alone: the whole file is there after the background fetch,
    // byte for byte; the version never opened is not, nor is the file with the switch off.
    let on = fx.mount_with_cache("on-offline", "on.cache", &["--offline"]);
    let got = std::fs::read(on.path(&rel)).expect("the whole AppImage from the cache");
    assert!(got == src, "cached AppImage differs from the source");
    assert!(read_at(&on.path(&other), 4 * MIB, 4096).is_err());
    let off = fx.mount_with_cache("off-offline", "off.cache", &["--offline"]);
    assert!(
        read_at(&off.path(&rel), 4 * MIB, 4096).is_err(),
        "--no-background-fetch still fetched the file"
    );
}

/// A sidecar listing two ranges far from the start of v1.1.0's AppImage.
fn write_sidecar(dist: &Path, ranges: &[(u64, u64)]) {
    let rel = format!("hello/v1.1.0/{}", appimage_name("hello"));
    let size = std::fs::metadata(dist.join(&rel)).unwrap().len();
    let list: Vec<String> = ranges.iter().map(|(o, l)| format!("[{o},{l}]")).collect();
    std::fs::write(
        dist.join(format!("{rel}.prefetch")),
        format!(
            r#"{{"version":1,"size":{size},"ranges":[{}]}}"#,
            list.join(",")
        ),
    )
    .unwrap();
}

#[test]
fn prefetch_list_ranges_are_fetched_when_the_file_is_opened() {
    let ranges = [(10 * MIB, MIB), (14 * MIB, MIB / 2)];
    let fx = Fixture::with(16, |dist| write_sidecar(dist, &ranges));
    let rel = format!("hello/v1.1.0/{}", appimage_name("hello"));
    let src = std::fs::read(fx.path("dist").join(&rel)).unwrap();
    {
        let m = fx.mount("mnt", &["--no-background-fetch"]);
        let before = fx.serve.settled_raw_requests();
        let f = std::fs::File::open(m.path(&rel)).unwrap();
        let fetched = fx.serve.settled_raw_requests() - before;
        // 1.5 MiB in 256 KiB leaves, the sidecar, and the file's root node.
        assert!(fetched >= 6, "open fetched only {fetched} blocks");
        drop(f);
    }
    let m = fx.mount_with_cache("offline", "mnt.cache", &["--offline"]);
    let path = m.path(&rel);
    for (o, l) in ranges {
        let got = read_at(&path, o, l as usize).expect("a listed range from the cache");
        assert!(
            got == src[o as usize..(o + l) as usize],
            "range {o}+{l} differs"
        );
    }
    assert!(
        read_at(&path, 12 * MIB, 4096).is_err(),
        "an unlisted range was fetched too"
    );
}

#[test]
fn a_traced_run_becomes_a_prefetch_list_that_covers_the_next_run() {
    let mut fx = Fixture::new(8);
    let rel = format!("hello/v1.1.0/{}", appimage_name("hello"));
    let trace = fx.path("reads.jsonl");
    {
        let mut m = fx.mount(
            "traced",
            &["--no-background-fetch", "--trace", trace.to_str().unwrap()],
        );
        stdout_ok(&run_in(fx.tmp.path(), &m.path(&rel), &[]), "the traced run");
        assert!(m.signal_and_wait(libc::SIGTERM).success());
    }
    let out = harness::run_ok(
        support::distfs_bin().to_str().unwrap(),
        &[
            "trace",
            trace.to_str().unwrap(),
            "--out-dir",
            fx.path("dist").to_str().unwrap(),
            "--only",
            ".AppImage",
        ],
    );
    eprintln!("{}", String::from_utf8_lossy(&out));
    let sidecar = fx.path("dist").join(format!("{rel}.prefetch"));
    let list: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sidecar).expect("distfs trace wrote a sidecar"))
            .unwrap();
    let size = std::fs::metadata(fx.path("dist").join(&rel)).unwrap().len();
    assert_eq!(list["size"].as_u64(), Some(size));
    let ranges = list["ranges"].as_array().unwrap();
    assert_eq!(
        ranges[0][0].as_u64(),
        Some(0),
        "the ELF header was not traced"
    );
    let covered: u64 = ranges.iter().map(|r| r[1].as_u64().unwrap()).sum();
    assert!(covered < size / 2, "the run read {covered} of {size} bytes");

    // Published with the list: opening the file (no run) fetches what a run needs, so the
    // next run works offline from that cache alone.
    fx.reimport("store2");
    {
        let m = fx.mount("warm", &["--no-background-fetch"]);
        let f = std::fs::File::open(m.path(&rel)).unwrap();
        fx.serve.settled_raw_requests();
        drop(f);
    }
    let m = fx.mount_with_cache("offline", "warm.cache", &["--offline"]);
    let text = stdout_ok(
        &run_in(fx.tmp.path(), &m.path(&rel), &["offline"]),
        "the run from the prefetched cache",
    );
    assert_eq!(
        text,
        expected_output(&fx.appdir("v1.1.0"), "1.1.0", "offline")
    );
}
