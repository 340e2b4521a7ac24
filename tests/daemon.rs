//! The daemon's operations surface end to end, with real processes: `distfs serve` on
//! 127.0.0.1 port 0 holds the blocks (and records), `distfs mount` runs with a config file
//! and flags, and `distfs status`, `pin`, `unpin`, `gc` and `refresh` talk to it through the
//! control socket in its cache dir; `/metrics` is fetched with curl; a second user (`nobody`
//! via `setpriv`) is refused by the socket's peer check. Needs /dev/fuse and fusermount3
//! (fails, never skips).

#[path = "support/mod.rs"]
mod support;

#[path = "mount/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use distfs::name::Keypair;
use harness::{is_mounted, run, run_ok, wait_bounded, Mount, MountOpts, Serve};
use serde_json::Value;
use support::ipns::{put_record, record};
use support::{det_bytes, distfs_add, distfs_bin, tempdir, write_bytes};

const MIB: usize = 1024 * 1024;

fn bin() -> String {
    distfs_bin().display().to_string()
}

/// A distribution of deterministic files, imported into a store and served.
struct Dist {
    tmp: tempfile::TempDir,
    root: String,
    serve: Serve,
}

impl Dist {
    /// `files`: (path, length); the bytes are seeded by the path.
    fn new(files: &[(&str, usize)]) -> Dist {
        let seeded: Vec<(&str, &str, usize)> = files.iter().map(|(r, l)| (*r, *r, *l)).collect();
        Dist::seeded(&seeded)
    }

    /// `files`: (path, seed, length).
    fn seeded(files: &[(&str, &str, usize)]) -> Dist {
        let tmp = tempdir();
        let src = tmp.path().join("src");
        for (rel, seed, len) in files {
            write_bytes(&src.join(rel), &det_bytes(seed, *len));
        }
        let store = tmp.path().join("store");
        let root = distfs_add(&src, &["--store", store.to_str().unwrap()]).expect("distfs add");
        let serve = Serve::start(&store);
        Dist { tmp, root, serve }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn mount(&self, name: &str, cache: &Path, extra: &[&str]) -> Mount {
        let opts = MountOpts {
            root: &self.root,
            gateways: &[&self.serve.url],
            cache,
            extra,
        };
        Mount::try_start(&self.path(name), &opts).unwrap()
    }
}

/// `distfs status --json` for the daemon of `cache`.
fn status(cache: &Path) -> Value {
    let out = run_ok(
        &bin(),
        &["status", "--json", "--cache-dir", cache.to_str().unwrap()],
    );
    serde_json::from_slice(&out).expect("status --json is JSON")
}

/// `distfs gc --cache-size SIZE --json` on the cache dir (through its daemon, if one runs).
fn gc_to(cache: &Path, size: &str) -> Value {
    let out = run_ok(
        &bin(),
        &[
            "gc",
            "--cache-dir",
            cache.to_str().unwrap(),
            "--cache-size",
            size,
            "--json",
        ],
    );
    serde_json::from_slice(&out).expect("gc --json is JSON")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A `distfs mount` started with only a config file (no mount point or root on the
/// command line); SIGTERM and a lazy unmount on drop.
struct ConfigMount {
    child: Child,
    dir: PathBuf,
}

impl ConfigMount {
    /// Starts `distfs mount ARGS` with `DISTFS_CONFIG=config`; waits (bounded) for the mount
    /// or returns the failed run's output.
    fn start(config: &Path, args: &[&str], dir: &Path) -> Result<ConfigMount, Output> {
        fs::create_dir_all(dir).unwrap();
        let child = Command::new(distfs_bin())
            .arg("mount")
            .args(args)
            .env("DISTFS_CONFIG", config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut m = ConfigMount {
            child,
            dir: dir.to_path_buf(),
        };
        let start = std::time::Instant::now();
        loop {
            if is_mounted(dir) {
                return Ok(m);
            }
            if let Ok(Some(_)) = m.child.try_wait() {
                let child = std::mem::replace(&mut m.child, Command::new("true").spawn().unwrap());
                return Err(child.wait_with_output().unwrap());
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "not mounted after 60 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ConfigMount {
    fn drop(&mut self) {
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        if wait_bounded(&mut self.child, Duration::from_secs(10)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = Command::new("fusermount3")
            .args(["-u", "-z"])
            .arg(&self.dir)
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn a_config_file_sets_the_mount_a_flag_overrides_it_and_unknown_keys_fail() {
    let d = Dist::new(&[("proj/1.0/a.bin", 300 * 1024)]);
    let cache = d.path("cache");
    let mnt = d.path("mnt");
    let config = d.path("config.toml");
    fs::write(
        &config,
        format!(
            "# the whole mount from the file\nmountpoint = \"{}\"\nroot = \"/ipfs/{}\"\n\
             gateway = [\"{}\"]\ncache-dir = \"{}\"\ncache-size = \"64M\"\nlocal-gateway = \"\"\n\
             background-fetch = false\n",
            mnt.display(),
            d.root,
            d.serve.url,
            cache.display()
        ),
    )
    .unwrap();
    let m = ConfigMount::start(&config, &["--cache-size", "5M"], &mnt)
        .unwrap_or_else(|o| panic!("mount from the config file failed: {}", stderr(&o)));
    assert_eq!(
        fs::read(mnt.join("proj/1.0/a.bin")).unwrap(),
        det_bytes("proj/1.0/a.bin", 300 * 1024)
    );
    // `status` finds the cache dir through the same config file.
    let out = Command::new(distfs_bin())
        .args(["status", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["cache"]["dir"], cache.display().to_string());
    assert_eq!(s["cache"]["limit"], 5 * MIB as u64, "the flag wins: {s}");
    assert_eq!(s["mountpoint"], mnt.display().to_string());
    let urls: Vec<&str> = s["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["url"].as_str().unwrap())
        .collect();
    assert_eq!(urls, [d.serve.url.as_str()], "{s}");
    drop(m);

    // An unknown key fails naming the key, the file and the line; nothing is mounted.
    let bad = d.path("bad.toml");
    fs::write(
        &bad,
        format!("mountpoint = \"{}\"\ncache-sise = \"1G\"\n", mnt.display()),
    )
    .unwrap();
    let out = ConfigMount::start(&bad, &[], &mnt)
        .map(|_| ())
        .expect_err("a config with an unknown key must not mount");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("cache-sise") && err.contains("bad.toml") && err.contains("line 2"),
        "{err}"
    );
    // A bad value names its key too; a --config file that is missing is an error.
    fs::write(&bad, "cache-size = \"lots\"\n").unwrap();
    let out = run(&bin(), &["gc", "--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cache-size"), "{}", stderr(&out));
    let out = run(&bin(), &["status", "--config", "/nonexistent/distfs.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/nonexistent/distfs.toml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn status_json_and_metrics_show_reads_moving_the_counters() {
    // Two files with the same bytes: the second is new to the kernel but not to the cache.
    let d = Dist::seeded(&[
        ("proj/1.0/big.bin", "big", 3 * MIB),
        ("proj/1.0/same.bin", "big", 3 * MIB),
    ]);
    let cache = d.path("cache");
    let cache_s = cache.display().to_string();

    // No daemon yet: status says so and fails.
    let out = run(&bin(), &["status", "--cache-dir", &cache_s]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no distfs mount uses"),
        "{}",
        stderr(&out)
    );

    // Block-read counters: with passthrough, a second read of a fully cached file is the
    // kernel's, and moves none of them (tests/passthrough.rs covers that side).
    let m = d.mount(
        "mnt",
        &cache,
        &["--metrics-listen", "127.0.0.1:0", "--no-passthrough"],
    );
    let before = status(&cache);
    assert_eq!(before["root"]["spec"], format!("/ipfs/{}", d.root));
    assert_eq!(before["root"]["cid"], d.root);
    assert_eq!(before["mountpoint"], m.dir.display().to_string());
    assert_eq!(before["pid"], m.pid().unwrap());
    assert_eq!(before["offline"], false);
    assert_eq!(
        before["names"],
        Value::Array(vec![]),
        "an /ipfs root follows no name"
    );

    let data = fs::read(m.path("proj/1.0/big.bin")).unwrap();
    assert_eq!(data, det_bytes("big", 3 * MIB));
    let n = |v: &Value, k: &str| v["cache"][k].as_u64().unwrap_or_else(|| panic!("{k}: {v}"));
    // Blocks are written behind the reads: the cache's bytes catch up once they land.
    let after = harness::poll("the cache holds the file", Duration::from_secs(30), || {
        let s = status(&cache);
        (n(&s, "bytes") >= 3 * MIB as u64).then_some(s)
    });
    assert!(n(&after, "misses") > n(&before, "misses"), "{after}");
    assert!(n(&after, "fetched_bytes") >= 3 * MIB as u64, "{after}");
    assert!(n(&after, "blocks") > n(&before, "blocks"), "{after}");
    assert!(after["cache"]["hit_ratio"].as_f64().is_some(), "{after}");
    assert_eq!(
        n(&after, "in_flight"),
        0,
        "nothing is being fetched now: {after}"
    );
    let g = &after["gateways"][0];
    assert_eq!(g["url"], d.serve.url);
    assert!(g["requests"].as_u64().unwrap() > 0, "{g}");
    assert!(g["latency_ewma_ms"].as_f64().is_some(), "{g}");
    assert_eq!(g["dropped"], false);
    // The same blocks under another name: served from the cache, so hits move and fetches
    // do not.
    let _ = fs::read(m.path("proj/1.0/same.bin")).unwrap();
    let again = status(&cache);
    assert!(n(&again, "hits") > n(&after, "hits"), "{again}");
    assert_eq!(n(&again, "fetches"), n(&after, "fetches"), "{again}");

    // An /ipfs root has no name to re-resolve: refresh says so and fails.
    let out = run(&bin(), &["refresh", "--cache-dir", &cache_s]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not a name"), "{}", stderr(&out));

    // The human form names the same things.
    let text = String::from_utf8(run_ok(&bin(), &["status", "--cache-dir", &cache_s])).unwrap();
    for want in [d.root.as_str(), d.serve.url.as_str(), "hits", "in flight"] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }

    // Metrics: over HTTP on the bound loopback port, and over the socket.
    let addr = again["metrics_listen"]
        .as_str()
        .expect("metrics address")
        .to_owned();
    let http =
        String::from_utf8(run_ok("curl", &["-sf", &format!("http://{addr}/metrics")])).unwrap();
    let hits = format!("distfs_cache_hits_total {}", n(&again, "hits"));
    assert!(http.contains(&hits), "{hits:?} not in:\n{http}");
    assert!(
        http.contains(&format!(
            "distfs_gateway_requests_total{{gateway=\"{}\"}}",
            d.serve.url
        )),
        "{http}"
    );
    assert!(http.contains("distfs_cache_bytes "), "{http}");
    let out = run(&bin(), &["status", "--prometheus", "--cache-dir", &cache_s]);
    let socket_text = String::from_utf8_lossy(&out.stdout);
    assert!(
        socket_text.contains("distfs_fetched_bytes_total"),
        "{socket_text}"
    );
    let nf = run(
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://{addr}/nope"),
        ],
    );
    assert_eq!(String::from_utf8_lossy(&nf.stdout), "404");
}

#[test]
fn pin_through_the_socket_survives_gc_and_unpin_releases_it() {
    let d = Dist::new(&[
        ("proj/1.0/keep.bin", 6 * MIB),
        ("proj/1.0/small.txt", 100),
        ("proj/2.0/other.bin", 8 * MIB),
    ]);
    let cache = d.path("cache");
    let cache_s = cache.display().to_string();
    let m = d.mount("mnt", &cache, &["--cache-size", "4M"]);
    let inside = m.path("proj/1.0").display().to_string();
    let out = run(&bin(), &["pin", &inside, "--cache-dir", &cache_s]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("pinned /ipfs/{}/proj/1.0", d.root)),
        "{said}"
    );
    assert!(
        stderr(&out).contains("pinning:"),
        "progress lines (not a terminal): {}",
        stderr(&out)
    );
    let s = status(&cache);
    assert!(
        s["cache"]["pinned_bytes"].as_u64().unwrap() >= 6 * MIB as u64,
        "{s}"
    );

    // Push unpinned data through the 4M quota, then gc through the daemon to 1M: only the
    // pinned blocks stay. The kernel sends RELEASE after close() returns, and until the
    // daemon has it the file's open handle still holds its blocks: gc again until it lands.
    let _ = fs::read(m.path("proj/2.0/other.bin")).unwrap();
    let report: Value = harness::poll(
        "gc to leave only the pinned blocks",
        Duration::from_secs(30),
        || {
            let report = gc_to(&cache, "1M");
            (report["bytes"] == report["pinned_bytes"]).then_some(report)
        },
    );
    assert!(
        report["pinned_bytes"].as_u64().unwrap() >= 6 * MIB as u64,
        "{report}"
    );

    // Through `latest` (relative to the mount root), then released by its label.
    let out = run(
        &bin(),
        &["pin", "proj/latest/other.bin", "--cache-dir", &cache_s],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let label = format!("/ipfs/{}/proj/2.0/other.bin", d.root);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&label));
    let out = run_ok(&bin(), &["unpin", &label, "--cache-dir", &cache_s]);
    assert!(String::from_utf8_lossy(&out).contains(&format!("unpinned {label}")));

    // The pinned file reads with the gateway gone.
    let mut d = d;
    d.serve.kill();
    assert_eq!(
        fs::read(m.path("proj/1.0/keep.bin")).unwrap(),
        det_bytes("proj/1.0/keep.bin", 6 * MIB)
    );

    // Unpin by the path relative to the mount root; the next gc may take it all.
    let out = run_ok(&bin(), &["unpin", "proj/1.0", "--cache-dir", &cache_s]);
    assert!(String::from_utf8_lossy(&out).contains("unpinned"));
    let report = gc_to(&cache, "1M");
    assert_eq!(report["pinned_bytes"], 0, "{report}");
    assert!(report["bytes"].as_u64().unwrap() <= MIB as u64, "{report}");
    // Nothing is pinned any more: a second unpin fails.
    let out = run(&bin(), &["unpin", "proj/1.0", "--cache-dir", &cache_s]);
    assert_eq!(out.status.code(), Some(1));
    // A path outside the mount is refused with the reason.
    let out = run(&bin(), &["pin", "/etc/passwd", "--cache-dir", &cache_s]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("inside the mount"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_pinned_publisher_refuses_a_root_signed_by_another_key() {
    let tmp = tempdir();
    let store = tmp.path().join("store");
    let serve = Serve::start(&store);
    let src = tmp.path().join("src");
    write_bytes(&src.join("app/1.0.0/app.bin"), &det_bytes("p", 1000));
    let cid = distfs_add(
        &src,
        &[
            "--cid-version",
            "1",
            "--store",
            &store.display().to_string(),
        ],
    )
    .unwrap();
    let (key, stranger) = (Keypair::generate(), Keypair::generate());
    let k = key.name().to_string();
    let rec = record(&key, &cid, 1, Duration::from_secs(60));
    assert_eq!(put_record(&serve.url, &k, &rec, tmp.path()), "200");
    let root = format!("/ipns/{k}");
    let mount = |dir: &str, publisher: &str| {
        let extra = ["--publisher", publisher];
        Mount::try_start(
            &tmp.path().join(dir),
            &MountOpts {
                root: &root,
                gateways: &[&serve.url],
                cache: &tmp.path().join(format!("{dir}.cache")),
                extra: &extra,
            },
        )
    };
    let refused = mount("no", &stranger.name().to_string())
        .err()
        .expect("mount refused");
    assert!(
        refused.contains("configured publisher") && refused.contains(&k),
        "{refused}"
    );
    // The right key (also accepted in its /ipns/ form) mounts.
    let m = mount("yes", &format!("/ipns/{k}")).unwrap();
    assert_eq!(
        fs::read(m.path("app/1.0.0/app.bin")).unwrap(),
        det_bytes("p", 1000)
    );
}

#[test]
fn refresh_through_the_socket_reports_the_new_sequence() {
    let tmp = tempdir();
    let store = tmp.path().join("store");
    let store_s = store.display().to_string();
    let cache = tmp.path().join("cache");
    let cache_s = cache.display().to_string();
    let serve = Serve::start(&store);
    let key = Keypair::generate();
    let k = key.name().to_string();
    let add = |dir: &str, ver: &str| {
        let src = tmp.path().join(dir);
        write_bytes(
            &src.join(format!("app/{ver}/app.bin")),
            &det_bytes(ver, 1000),
        );
        distfs_add(&src, &["--cid-version", "1", "--store", &store_s]).unwrap()
    };
    let cid1 = add("v1", "1.0.0");
    assert_eq!(
        put_record(
            &serve.url,
            &k,
            &record(&key, &cid1, 1, Duration::from_secs(1)),
            tmp.path()
        ),
        "200"
    );
    let root = format!("/ipns/{k}");
    let opts = MountOpts {
        root: &root,
        gateways: &[&serve.url],
        cache: &cache,
        extra: &["--min-ttl", "3600", "--max-ttl", "3600"],
    };
    let m = Mount::try_start(&tmp.path().join("mnt"), &opts).unwrap();
    let s = status(&cache);
    assert_eq!(s["names"][0]["name"], root);
    assert_eq!(s["names"][0]["sequence"], 1);
    assert_eq!(s["names"][0]["cid"], cid1);
    assert!(s["names"][0]["last_refresh_unix"].as_u64().is_some(), "{s}");

    let cid2 = add("v2", "2.0.0");
    assert_eq!(
        put_record(
            &serve.url,
            &k,
            &record(&key, &cid2, 2, Duration::from_secs(1)),
            tmp.path()
        ),
        "200"
    );
    let out = run(&bin(), &["refresh", "--cache-dir", &cache_s]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("moved from {cid1} to {cid2}, sequence 2")),
        "{said}"
    );
    let s = status(&cache);
    assert_eq!(s["root"]["cid"], cid2);
    assert_eq!(s["names"][0]["sequence"], 2);
    assert_eq!(s["names"][0]["last_refresh_error"], Value::Null);

    // SIGHUP still asks for a refresh (the status shows when it has happened).
    let cid3 = add("v3", "3.0.0");
    assert_eq!(
        put_record(
            &serve.url,
            &k,
            &record(&key, &cid3, 3, Duration::from_secs(1)),
            tmp.path()
        ),
        "200"
    );
    // SAFETY: kill has no memory preconditions; the pid is the daemon we started.
    unsafe { libc::kill(m.pid().unwrap() as i32, libc::SIGHUP) };
    harness::poll(
        "SIGHUP to move the root to sequence 3",
        Duration::from_secs(30),
        || (status(&cache)["names"][0]["sequence"] == 3).then_some(()),
    );
    assert_eq!(status(&cache)["root"]["cid"], cid3);
}

#[test]
fn another_user_is_refused_by_the_control_socket() {
    let d = Dist::new(&[("proj/1.0/a.txt", 10)]);
    let cache = d.path("cache");
    let cache_s = cache.display().to_string();
    let _m = d.mount("mnt", &cache, &[]);
    let sock = cache.join("control.sock");
    let mode = fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the socket is for its owner only");

    // Open the file permissions, so that only the daemon's peer check stands in the way.
    for dir in [d.tmp.path(), cache.as_path()] {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::set_permissions(&sock, fs::Permissions::from_mode(0o666)).unwrap();
    let out = run(
        "setpriv",
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            &bin(),
            "status",
            "--cache-dir",
            &cache_s,
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = stderr(&out);
    assert!(
        err.contains("permission denied") && err.contains("uid 65534"),
        "{err}"
    );
    // Root still gets an answer.
    assert_eq!(status(&cache)["root"]["cid"], d.root);
}

#[test]
fn a_local_gateway_that_answers_the_probe_is_used_first() {
    let d = Dist::new(&[("proj/1.0/a.bin", 200 * 1024)]);
    let cache = d.path("cache");
    let local = d.serve.url.trim_start_matches("http://").to_owned();
    // No --gateway: the defaults, with the local gateway probed and put first.
    let opts = MountOpts {
        root: &d.root,
        gateways: &[],
        cache: &cache,
        extra: &["--local-gateway", &local],
    };
    let m = Mount::try_start(&d.path("mnt"), &opts).unwrap();
    assert_eq!(
        fs::read(m.path("proj/1.0/a.bin")).unwrap(),
        det_bytes("proj/1.0/a.bin", 200 * 1024)
    );
    let s = status(&cache);
    let g = &s["gateways"][0];
    assert_eq!(g["url"], d.serve.url, "{s}");
    assert_eq!(g["local"], true, "{s}");
    assert!(g["blocks"].as_u64().unwrap() > 0, "{s}");
    assert!(
        s["gateways"].as_array().unwrap().len() > 1,
        "public defaults too: {s}"
    );
    drop(m);

    // Turned off with "": only the public defaults are configured.
    let opts = MountOpts {
        root: &d.root,
        gateways: &[],
        cache: &cache,
        extra: &["--local-gateway", ""],
    };
    let _m = Mount::try_start(&d.path("mnt2"), &opts).unwrap();
    let s = status(&cache);
    let local_used = s["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["url"] == d.serve.url || g["local"] == true);
    assert!(!local_used, "{s}");
}
