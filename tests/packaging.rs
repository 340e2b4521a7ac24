//! Packaging end to end: multi-user mounts (`--allow-other` with `default_permissions`, checked
//! as the `nobody` user through `runuser`), the `mount.fuse.distfs` helper driven by real
//! mount(8) and umount(8), the systemd unit under `systemd-analyze verify`, the install script
//! into a staging root, and the man pages rendered by man(1).
//!
//! These tests run as root (the project's test machines do): mounting through mount(8) and
//! switching users need it. They fail, never skip, when a tool is missing; `scripts/lib.sh`'s
//! `ensure_base` installs them.

#[path = "support/mod.rs"]
mod support;

#[path = "mount/harness.rs"]
#[allow(dead_code)] // shared with tests/mount.rs, which uses all of it
mod harness;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use harness::{is_mounted, Mount, MountOpts, Serve};
use support::{distfs_add, repo_root, tempdir, write_bytes};

/// A small distribution (`proj/v1.0.0/...`, modes preserved) imported into a store and
/// served by a real `distfs serve`.
struct Dist {
    tmp: tempfile::TempDir,
    root: String,
    serve: Serve,
}

/// Files of the test distribution: (path under `proj/v1.0.0`, contents, mode).
const FILES: &[(&str, &[u8], u32)] = &[
    ("README", b"read me\n", 0o644),
    ("secret", b"only the mounting user\n", 0o600),
    ("tool", b"#!/bin/sh\necho tool ran\n", 0o755),
];

impl Dist {
    fn new() -> Dist {
        let tmp = tempdir();
        // Other users must be able to reach mount points inside the temp dir.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let src = tmp.path().join("src");
        for (name, body, mode) in FILES {
            let p = write_bytes(&src.join("proj/v1.0.0").join(name), body);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
        }
        let store = tmp.path().join("store");
        let root = distfs_add(
            &src,
            &["--preserve-mode", "--store", store.to_str().unwrap()],
        )
        .expect("distfs add");
        let serve = Serve::start(&store);
        Dist { tmp, root, serve }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// `distfs mount` of this distribution at `tmp/<mnt>` with `extra` flags.
    fn mount(&self, mnt: &str, extra: &[&str]) -> Mount {
        let cache = self.path(&format!("{mnt}.cache"));
        Mount::try_start(
            &self.path(mnt),
            &MountOpts {
                root: &self.root,
                gateways: &[&self.serve.url],
                cache: &cache,
                extra,
            },
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Runs `sh -c script` as the user `nobody` (through runuser), stdin closed.
fn as_nobody(script: &str) -> Output {
    Command::new("runuser")
        .args(["-u", "nobody", "--", "sh", "-c", script])
        .stdin(Stdio::null())
        .output()
        .expect("spawn runuser (util-linux)")
}

fn show(out: &Output) -> String {
    format!(
        "{} stdout={:?} stderr={:?}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Single-quotes `p` for a shell script (paths here are temp dirs without quotes).
fn q(p: &Path) -> String {
    let s = p.to_str().expect("utf-8 temp path");
    assert!(!s.contains('\''), "{s}");
    format!("'{s}'")
}

#[test]
fn allow_other_lets_other_users_read_and_default_permissions_applies_the_modes() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test mounts as root and switches to nobody"
    );
    let dist = Dist::new();

    // Without --allow-other, nobody cannot even look (the FUSE default).
    let private = dist.mount("private", &[]);
    let file = private.path("proj/v1.0.0/README");
    let out = as_nobody(&format!("cat {}", q(&file)));
    assert!(
        !out.status.success(),
        "nobody read a private mount: {}",
        show(&out)
    );
    drop(private);

    let m = dist.mount("shared", &["--allow-other"]);
    let dir = m.path("proj/v1.0.0");
    let (readme, secret, tool) = (dir.join("README"), dir.join("secret"), dir.join("tool"));

    // Other users read what the "other" bits allow.
    let out = as_nobody(&format!("cat {}", q(&readme)));
    assert!(out.status.success(), "nobody cat README: {}", show(&out));
    assert_eq!(out.stdout, b"read me\n");
    let out = as_nobody(&q(&tool));
    assert!(out.status.success(), "nobody runs tool: {}", show(&out));
    assert_eq!(out.stdout, b"tool ran\n");

    // Writing fails for everyone.
    let out = as_nobody(&format!("echo x > {}", q(&readme)));
    assert!(!out.status.success(), "nobody wrote README: {}", show(&out));
    assert_eq!(std::fs::read(&readme).unwrap(), b"read me\n");

    // default_permissions: the kernel checks the modes, so a 0600 file stays private to the
    // mounting user, and access(2) reports a 0644 file as not executable. Without it, the
    // daemon's permissive access() and open() would let both through.
    let out = as_nobody(&format!("cat {}", q(&secret)));
    assert!(
        !out.status.success(),
        "nobody read a 0600 file: {}",
        show(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        show(&out)
    );
    let out = as_nobody(&format!("test -x {}", q(&readme)));
    assert!(
        !out.status.success(),
        "0644 README reported executable to nobody"
    );
    let out = as_nobody(&format!("test -x {}", q(&tool)));
    assert!(out.status.success(), "0755 tool not executable for nobody");
    // The mounting user (root) still reads the private file.
    assert_eq!(std::fs::read(&secret).unwrap(), b"only the mounting user\n");
    assert!(is_mounted(&m.dir));
}

// ---------------------------------------------------------------------------------------
// Man pages
// ---------------------------------------------------------------------------------------

/// Renders a page with man(1) as a terminal of 80 columns would show it, as plain text
/// (`MANWIDTH=80 man --warnings=w -l PAGE | col -b`). Fails on any groff warning.
fn man_render(page: &Path) -> String {
    let out = Command::new("man")
        .args(["--warnings=w", "-l"])
        .arg(page)
        .env("MANWIDTH", "80")
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::null())
        .output()
        .expect("spawn man (apt package man-db)");
    assert!(
        out.status.success(),
        "man -l {}: {}",
        page.display(),
        show(&out)
    );
    assert!(
        out.stderr.is_empty(),
        "man -l {} warned:\n{}",
        page.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut col = Command::new("col")
        .arg("-b")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn col (bsdextrautils)");
    let mut stdin = col.stdin.take().unwrap();
    let text = out.stdout;
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &text));
    let plain = col.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(plain.status.success());
    String::from_utf8(plain.stdout).expect("UTF-8 page")
}

/// `distfs ARGS --help` as text.
fn help(args: &[&str]) -> String {
    let out = Command::new(support::distfs_bin())
        .args(args)
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .expect("spawn distfs");
    assert!(
        out.status.success(),
        "distfs {args:?} --help: {}",
        show(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommand names listed under "Commands:" in a help text (without `help`).
fn help_commands(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// Every `--long-flag` a help text mentions.
fn long_flags(text: &str) -> Vec<String> {
    let mut flags = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("--") {
        let start = i + at;
        let mut end = start + 2;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'-') {
            end += 1;
        }
        if end > start + 2 && (start == 0 || !bytes[start - 1].is_ascii_alphanumeric()) {
            flags.push(text[start..end].trim_end_matches('-').to_string());
        }
        i = end;
    }
    flags.sort();
    flags.dedup();
    flags
}

#[test]
fn distfs_1_renders_and_documents_every_subcommand_and_flag() {
    let page = man_render(&repo_root().join("man/distfs.1"));
    // `distfs key gen` etc.: walk the help tree, as a user would.
    let mut todo: Vec<Vec<String>> = help_commands(&help(&[]))
        .into_iter()
        .map(|c| vec![c])
        .collect();
    assert!(
        todo.len() >= 8,
        "too few subcommands in distfs --help: {todo:?}"
    );
    let mut checked = 0;
    let mut missing = Vec::new();
    while let Some(path) = todo.pop() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let text = help(&args);
        let subs = help_commands(&text);
        let name = format!("distfs {}", path.join(" "));
        if !subs.is_empty() {
            todo.extend(subs.into_iter().map(|s| {
                let mut p = path.clone();
                p.push(s);
                p
            }));
            continue;
        }
        if !page.contains(&format!("   {name}")) {
            missing.push(format!("section {name:?}"));
        }
        for flag in long_flags(&text) {
            if !page.contains(&flag) {
                missing.push(format!("{flag} of {name}"));
            }
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} commands checked");
    assert!(missing.is_empty(), "man/distfs.1 lacks: {missing:?}");
}

#[test]
fn committed_distfs_1_is_what_generate_man_writes() {
    let tmp = tempdir();
    let out = Command::new(support::distfs_bin())
        .arg("generate-man")
        .arg(tmp.path())
        .stdin(Stdio::null())
        .output()
        .expect("spawn distfs");
    assert!(out.status.success(), "distfs generate-man: {}", show(&out));
    let fresh = std::fs::read_to_string(tmp.path().join("distfs.1")).unwrap();
    let committed = std::fs::read_to_string(repo_root().join("man/distfs.1")).unwrap();
    assert!(
        fresh == committed,
        "man/distfs.1 is stale: regenerate it with `cargo run -- generate-man man/` and commit it"
    );
}

/// Every key of the configuration file schema (a `distfs mount` flag's long name).
const CONFIG_KEYS: &[&str] = &[
    "mountpoint",
    "root",
    "gateway",
    "routing",
    "dns-server",
    "cache-dir",
    "cache-size",
    "offline",
    "allow-other",
    "read-timeout",
    "max-in-flight",
    "min-ttl",
    "max-ttl",
    "background-fetch",
    "passthrough",
    "trace",
    "metrics-listen",
    "local-gateway",
];

#[test]
fn distfs_conf_5_renders_and_documents_every_key() {
    let page = man_render(&repo_root().join("man/distfs.conf.5"));
    for key in CONFIG_KEYS {
        let entry = format!("\n       {key} (");
        assert!(
            page.contains(&entry),
            "distfs.conf(5) has no entry for {key}"
        );
    }
    for needed in [
        "/etc/distfs/config.toml",
        "--config",
        "DISTFS_CONFIG",
        "EXAMPLE",
    ] {
        assert!(
            page.contains(needed),
            "distfs.conf(5) does not mention {needed}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The mount(8) helper
// ---------------------------------------------------------------------------------------

/// Makes `scripts/mount.fuse.distfs` visible as /sbin/mount.fuse.distfs, where mount(8)
/// looks for helpers (it ignores PATH), without touching the machine: the calling thread
/// moves to a private mount namespace (unshare(CLONE_NEWNS) moves only the caller, and every
/// process it spawns inherits it), where an overlay of `tmp/sbin` on top of /sbin adds the
/// helper. The FUSE mounts made from this thread live in that namespace too, so a killed
/// test leaves neither a helper nor a mount behind. Must run on the test's own thread.
fn helper_on_sbin(tmp: &Path) {
    // SAFETY: plain syscalls with constant arguments.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNS) };
    assert_eq!(
        rc,
        0,
        "unshare(CLONE_NEWNS): {}",
        std::io::Error::last_os_error()
    );
    harness::run_ok("mount", &["--make-rprivate", "/"]);
    let extra = tmp.join("sbin");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::copy(
        repo_root().join("scripts/mount.fuse.distfs"),
        extra.join("mount.fuse.distfs"),
    )
    .unwrap();
    let sbin = std::fs::canonicalize("/sbin").unwrap();
    let (extra, sbin) = (extra.to_str().unwrap(), sbin.to_str().unwrap());
    let lower = format!("lowerdir={extra}:{sbin}");
    harness::run_ok("mount", &["-t", "overlay", "overlay", "-o", &lower, sbin]);
    assert!(Path::new("/sbin/mount.fuse.distfs").exists());
}

/// A daemon started by the helper (not our child: this process adopts it as a subreaper);
/// on drop it is stopped if still running.
struct Daemon(libc::pid_t);

impl Daemon {
    /// The pid the helper reports with `-v` ("distfs pid N serves ...").
    fn from_helper_output(out: &Output) -> Daemon {
        let err = String::from_utf8_lossy(&out.stderr);
        let pid = err
            .split("distfs pid ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no daemon pid in the helper's output: {}", show(out)));
        Daemon(pid)
    }

    /// Waits (at most 20 s) for the daemon to exit; its exit code.
    fn wait_exit(mut self) -> i32 {
        let start = std::time::Instant::now();
        loop {
            let mut status = 0;
            // SAFETY: waitpid on a pid this process reaps (subreaper), status is a local.
            let rc = unsafe { libc::waitpid(self.0, &mut status, libc::WNOHANG) };
            assert!(rc >= 0, "waitpid: {}", std::io::Error::last_os_error());
            if rc == self.0 {
                self.0 = 0;
                assert!(
                    libc::WIFEXITED(status),
                    "daemon died by a signal: {status:#x}"
                );
                return libc::WEXITSTATUS(status);
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(20),
                "the daemon did not exit within 20 s of umount"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.0 > 0 {
            // SAFETY: signalling and reaping our adopted child.
            unsafe {
                libc::kill(self.0, libc::SIGTERM);
                std::thread::sleep(std::time::Duration::from_millis(500));
                libc::kill(self.0, libc::SIGKILL);
                libc::waitpid(self.0, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// Runs `mount ARGS` with the helper finding our `distfs` through `DISTFS_BIN`.
fn mount_cmd(args: &[&str]) -> Output {
    Command::new("mount")
        .args(args)
        .env("DISTFS_BIN", support::distfs_bin())
        .stdin(Stdio::null())
        .output()
        .expect("spawn mount")
}

/// After a successful `mount -v ...` at `mnt`: the daemon serves the distribution, and
/// `umount` ends it with exit status 0.
fn check_mounted_then_umount(out: &Output, mnt: &Path) {
    assert!(out.status.success(), "mount: {}", show(out));
    let daemon = Daemon::from_helper_output(out);
    assert!(is_mounted(mnt), "mount returned but nothing is mounted");
    let mnt_s = mnt.to_str().unwrap();
    // As root, fuser mounts with type "fuse" (the subtype only reaches fusermount3), so the
    // source name identifies the mount.
    let found = harness::run_ok("findmnt", &["-n", "-o", "SOURCE,FSTYPE", mnt_s]);
    let found = String::from_utf8_lossy(&found);
    let mut cols = found.split_whitespace();
    assert_eq!(cols.next(), Some("distfs"), "{found}");
    assert!(
        cols.next().is_some_and(|t| t.starts_with("fuse")),
        "{found}"
    );
    assert_eq!(
        std::fs::read(mnt.join("proj/v1.0.0/README")).unwrap(),
        b"read me\n"
    );
    harness::run_ok("umount", &[mnt_s]);
    assert_eq!(daemon.wait_exit(), 0, "distfs exit status after umount");
    assert!(!is_mounted(mnt), "still mounted after umount");
}

#[test]
fn mount_t_fuse_distfs_and_an_fstab_line_mount_through_the_helper() {
    let dist = Dist::new();
    let tmp = dist.tmp.path();
    helper_on_sbin(tmp);
    // SAFETY: prctl with constant arguments; makes orphaned descendants (the daemons the
    // helper detaches) our children, so their exit status can be read.
    assert_eq!(
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) },
        0
    );
    let mnt = tmp.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let mnt_s = mnt.to_str().unwrap();
    let cache = tmp.join("cache");
    let source = format!("/ipfs/{}", dist.root);
    let opts = format!("gateway={},cache_dir={}", dist.serve.url, cache.display());

    // mount -t, with generic options mount(8) and fstab users pass.
    let out = mount_cmd(&[
        "-v",
        "-t",
        "fuse.distfs",
        &source,
        mnt_s,
        "-o",
        &format!("ro,nosuid,{opts}"),
    ]);
    check_mounted_then_umount(&out, &mnt);
    assert!(
        cache.join("mount.log").exists(),
        "the daemon's log is not in the cache dir"
    );

    // A log past its size limit (10 MiB) is moved aside at the next start, not grown forever.
    let log = cache.join("mount.log");
    let old_log = vec![b'x'; 11 << 20];
    std::fs::write(&log, &old_log).unwrap();

    // An fstab line, mounted by its mount point.
    let fstab = tmp.join("fstab");
    std::fs::write(
        &fstab,
        format!("# test\n{source}  {mnt_s}  fuse.distfs  noauto,_netdev,nofail,x-systemd.automount,allow_other,{opts}  0  0\n"),
    )
    .unwrap();
    let out = mount_cmd(&["-v", "-T", fstab.to_str().unwrap(), mnt_s]);
    check_mounted_then_umount(&out, &mnt);
    assert_eq!(
        std::fs::read(cache.join("mount.log.1")).unwrap(),
        old_log,
        "the full log was not rotated to mount.log.1"
    );
    let fresh = std::fs::metadata(&log).unwrap().len();
    assert!(
        fresh > 0 && fresh < 1 << 20,
        "mount.log after rotation: {fresh} bytes"
    );

    // The daemon's own error comes back through mount, which fails.
    let out = mount_cmd(&["-t", "fuse.distfs", "/ipfs/not-a-cid", mnt_s, "-o", &opts]);
    assert!(!out.status.success(), "a bad root mounted: {}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("distfs exited with status 1") && err.contains("--root"),
        "{err}"
    );
    assert!(!is_mounted(&mnt));

    // Options are checked, never passed to a shell.
    for (bad, why) in [
        ("evil=1", "unknown option: evil=1"),
        (
            "cache_dir=$(touch /tmp/pwned)x,gateway=",
            "option gateway needs a value",
        ),
    ] {
        let out = mount_cmd(&["-t", "fuse.distfs", &source, mnt_s, "-o", bad]);
        assert!(!out.status.success(), "-o {bad} mounted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(why),
            "-o {bad}: {}",
            show(&out)
        );
    }
    assert!(!is_mounted(&mnt));
}

/// The helper run directly in fake mode (`-f -v`: print the distfs command, start nothing).
fn helper_fake(source: &str, dir: &Path, opts: &str) -> Output {
    Command::new("sh")
        .arg(repo_root().join("scripts/mount.fuse.distfs"))
        .arg(source)
        .arg(dir)
        .args(["-f", "-v", "-o", opts])
        .env("DISTFS_BIN", "/nonexistent/distfs")
        .stdin(Stdio::null())
        .output()
        .expect("spawn sh")
}

#[test]
fn helper_maps_mount_options_to_distfs_flags() {
    let tmp = tempdir();
    let dir = tmp.path();
    let d = dir.to_str().unwrap();
    let log = dir.join("log");
    let out = helper_fake(
        "/ipns/dist.example.org",
        dir,
        &format!(
            "rw,nosuid,nodev,noauto,_netdev,nofail,x-systemd.automount,user,defaults,\
             allow_other,offline,cache_dir={d}/c,cache-size=20G,\
             gateway=http://a:8080:gateway=https://b,gateway=http://c,routing=http://r,\
             read_timeout=7,config={d}/x.toml,log={}",
            log.display()
        ),
    );
    assert!(out.status.success(), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "would run: /nonexistent/distfs mount {d} --root=/ipns/dist.example.org --allow-other \
         --offline --cache-dir={d}/c --cache-size=20G --gateway=http://a:8080 \
         --gateway=https://b --gateway=http://c --routing=http://r --read-timeout=7 \
         --config={d}/x.toml\n"
    );
    assert!(err.ends_with(&want), "got {err:?}\nwant …{want:?}");

    // `distfs` (or `default`) as the source: the configured root, no --root.
    let out = helper_fake("distfs", dir, &format!("log={}", log.display()));
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).ends_with(&format!("mount {d}\n")));

    // Refusals, each with the reason.
    for (source, opts, why) in [
        ("/etc/passwd", "ro", "source must be /ipfs/CID"),
        ("/ipfs/x", "allow_root", "unknown option: allow_root"),
        ("/ipfs/x", "trace", "unknown option: trace"),
        ("/ipfs/x", "cache_size=", "option cache-size needs a value"),
        ("/ipfs/x", "gateway=http://a\nb", "control characters"),
    ] {
        let out = helper_fake(source, dir, opts);
        assert!(!out.status.success(), "{source} -o {opts:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{source} -o {opts:?}: {err}");
    }
}

// ---------------------------------------------------------------------------------------
// systemd unit and install script
// ---------------------------------------------------------------------------------------

/// `systemd-analyze verify` on a unit, with the man pages it documents on MANPATH; fails on
/// any complaint (verify exits 0 on unknown keys, so its stderr must be empty too).
fn systemd_verify(unit: &Path, manpath: &Path) {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .env("MANPATH", manpath)
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .stdin(Stdio::null())
        .output()
        .expect("spawn systemd-analyze (apt package systemd)");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify {}: {}",
        unit.display(),
        show(&out)
    );
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let tmp = tempdir();
    // verify checks that ExecStart's binary exists: point it at the one cargo built.
    let text = std::fs::read_to_string(repo_root().join("scripts/distfs.service")).unwrap();
    assert!(text.contains("ExecStart=/usr/local/bin/distfs mount /dist\n"));
    let unit = tmp.path().join("distfs.service");
    let bin = support::distfs_bin();
    std::fs::write(
        &unit,
        text.replace("/usr/local/bin/distfs", bin.to_str().unwrap()),
    )
    .unwrap();
    let man = tmp.path().join("man");
    for (sec, page) in [("man1", "distfs.1"), ("man5", "distfs.conf.5")] {
        std::fs::create_dir_all(man.join(sec)).unwrap();
        std::fs::copy(repo_root().join("man").join(page), man.join(sec).join(page)).unwrap();
    }
    systemd_verify(&unit, &man);
    // A unit with a mount namespace would hide the mount from everyone else.
    for key in [
        "ProtectSystem=",
        "PrivateTmp=",
        "PrivateDevices=",
        "ReadWritePaths=",
        "ProtectHome=",
    ] {
        assert!(
            !text.lines().any(|l| l.starts_with(key)),
            "{key} in the unit"
        );
    }
}

/// Runs scripts/install with `env`; its stdout.
fn install(env: &[(&str, &Path)]) -> String {
    let mut cmd = Command::new(repo_root().join("scripts/install"));
    cmd.env("DISTFS_BIN", support::distfs_bin());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("spawn scripts/install");
    assert!(out.status.success(), "scripts/install: {}", show(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn install_script_stages_every_file_and_keeps_an_existing_config() {
    let tmp = tempdir();
    let dest = tmp.path().join("stage");
    install(&[("DESTDIR", &dest)]);
    let at = |rel: &str| dest.join(rel.trim_start_matches('/'));
    for (file, want_mode) in [
        ("/usr/local/bin/distfs", 0o755),
        ("/sbin/mount.fuse.distfs", 0o755),
        ("/etc/systemd/system/distfs.service", 0o644),
        ("/etc/distfs/config.toml", 0o644),
        ("/usr/local/share/man/man1/distfs.1", 0o644),
        ("/usr/local/share/man/man5/distfs.conf.5", 0o644),
    ] {
        assert_eq!(mode(&at(file)), want_mode, "{file}");
    }
    assert_eq!(
        std::fs::read(at("/usr/local/bin/distfs")).unwrap(),
        std::fs::read(support::distfs_bin()).unwrap()
    );
    let unit = std::fs::read_to_string(at("/etc/systemd/system/distfs.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/distfs mount /dist"),
        "{unit}"
    );
    assert!(
        !unit.contains(dest.to_str().unwrap()),
        "DESTDIR leaked into the unit"
    );
    let helper = std::fs::read_to_string(at("/sbin/mount.fuse.distfs")).unwrap();
    assert!(helper.contains("installed_bin=/usr/local/bin/distfs\n"));
    // The example configuration is all comments (an empty configuration).
    let conf = std::fs::read_to_string(at("/etc/distfs/config.toml")).unwrap();
    assert!(
        conf.lines().all(|l| l.is_empty() || l.starts_with('#')),
        "{conf}"
    );
    for key in CONFIG_KEYS {
        assert!(conf.contains(&format!("#{key} = ")), "example lacks {key}");
    }

    // Again, over an edited configuration: it succeeds and keeps the file.
    std::fs::write(at("/etc/distfs/config.toml"), "root = \"/ipfs/bafkqaaa\"\n").unwrap();
    let second = install(&[("DESTDIR", &dest)]);
    assert!(second.contains("kept"), "{second}");
    assert_eq!(
        std::fs::read_to_string(at("/etc/distfs/config.toml")).unwrap(),
        "root = \"/ipfs/bafkqaaa\"\n"
    );
    std::fs::remove_dir_all(&dest).unwrap(); // the binary is large

    // Another PREFIX: the unit and helper name the binary where it will be.
    let dest = tmp.path().join("opt");
    install(&[("DESTDIR", &dest), ("PREFIX", Path::new("/opt/distfs"))]);
    let unit = std::fs::read_to_string(dest.join("etc/systemd/system/distfs.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/opt/distfs/bin/distfs mount /dist"),
        "{unit}"
    );
    let helper = std::fs::read_to_string(dest.join("sbin/mount.fuse.distfs")).unwrap();
    assert!(helper.contains("installed_bin=/opt/distfs/bin/distfs\n"));
    assert!(dest.join("opt/distfs/share/man/man1/distfs.1").exists());
    let v = harness::run_ok(
        dest.join("opt/distfs/bin/distfs").to_str().unwrap(),
        &["--version"],
    );
    assert!(String::from_utf8_lossy(&v).starts_with("distfs "));
}
