//! Process harness for the mount tests: `distfs serve` and `distfs mount` as real child
//! processes behind guards that always clean up (SIGTERM, bounded wait, SIGKILL, then
//! `fusermount3 -u -z`), bounded polling helpers, and small wrappers over the shell tools the
//! tests compare with.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::distfs_bin;

/// Polls `f` every 20 ms until it returns `Some`, or panics after `limit` naming `what`.
pub fn poll<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `child` to exit, at most `limit`; `None` if it is still running.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: i32) {
    let pid = i32::try_from(child.id()).expect("pid fits");
    // SAFETY: kill has no memory preconditions; the pid is our own un-reaped child.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Runs `prog args...` to completion (stdin closed) and returns its output.
pub fn run(prog: &str, args: &[&str]) -> Output {
    Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawn {prog}: {e}"))
}

/// Like [`run`] but panics unless the command succeeds; returns stdout.
pub fn run_ok(prog: &str, args: &[&str]) -> Vec<u8> {
    let out = run(prog, args);
    assert!(
        out.status.success(),
        "{prog} {args:?} failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Whether something is mounted at `path` (`mountpoint -q`).
pub fn is_mounted(path: &Path) -> bool {
    Command::new("mountpoint")
        .arg("-q")
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A running `distfs serve --store DIR --listen 127.0.0.1:0`; killed on drop.
pub struct Serve {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Serve {
    /// Starts the gateway over `store` and waits (bounded) for it to print its address.
    pub fn start(store: &Path) -> Serve {
        Serve::start_with(store, &[], Stdio::null())
    }

    /// [`Serve::start`] with more `distfs serve` arguments, and its stderr sent to `stderr`.
    pub fn start_with(store: &Path, extra: &[&OsStr], stderr: Stdio) -> Serve {
        let mut child = Command::new(distfs_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--store"])
            .arg(store)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn distfs serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut serve = Serve {
            child: Some(child),
            url: String::new(),
        };
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("distfs serve printed its address within 30 s");
        assert!(
            !line.trim().is_empty(),
            "distfs serve exited before printing its address"
        );
        serve.url = format!("http://{}", line.trim());
        serve
    }

    /// Requests answered as raw blocks so far (`GET /debug/stats`, `by_kind.raw`).
    pub fn raw_requests(&self) -> u64 {
        let stats = http_get_json(&self.url, "/debug/stats");
        stats["by_kind"]["raw"].as_u64().unwrap_or(0)
    }

    /// Raw-block requests, once the count has stopped changing (background fetches done):
    /// polls until three reads 100 ms apart agree, at most 10 s.
    pub fn settled_raw_requests(&self) -> u64 {
        let mut last = self.raw_requests();
        let mut same = 0;
        poll(
            "the gateway's request count to settle",
            Duration::from_secs(10),
            || {
                std::thread::sleep(Duration::from_millis(80));
                let now = self.raw_requests();
                if now == last {
                    same += 1;
                } else {
                    same = 0;
                    last = now;
                }
                (same >= 3).then_some(now)
            },
        )
    }

    /// Kills the gateway and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = wait_bounded(&mut c, Duration::from_secs(10));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `GET path` on `base` (`http://host:port`) with a plain TCP client; the body of a 200.
/// (Stats and raw blocks are sent with Content-Length, not chunked.)
pub fn http_get(base: &str, path: &str) -> Vec<u8> {
    let host = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(host).expect("connect to the gateway");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read the response");
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let head = String::from_utf8_lossy(&resp[..split]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    resp.split_off(split + 4)
}

/// [`http_get`], the body parsed as JSON.
pub fn http_get_json(base: &str, path: &str) -> serde_json::Value {
    let body = http_get(base, path);
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("GET {path}: bad JSON: {e}"))
}

/// A running `distfs mount`; on drop: SIGTERM, bounded wait, SIGKILL, `fusermount3 -u -z`.
pub struct Mount {
    child: Option<Child>,
    /// Cleared by [`Mount::disarm`]: the mount point now belongs to another guard.
    armed: bool,
    /// The mount point.
    pub dir: PathBuf,
    log: PathBuf,
}

/// Options for [`Mount::start`].
pub struct MountOpts<'a> {
    /// A CID (mounted as `/ipfs/<cid>`) or a whole root spec starting with `/`.
    pub root: &'a str,
    pub gateways: &'a [&'a str],
    pub cache: &'a Path,
    pub extra: &'a [&'a str],
}

impl Mount {
    /// Spawns `distfs mount` and waits (bounded) until `mountpoint -q` succeeds; `Err` with
    /// the daemon's exit status and stderr if it exits first.
    pub fn try_start(dir: &Path, o: &MountOpts) -> Result<Mount, String> {
        Mount::try_start_env(dir, o, &[])
    }

    /// [`Mount::try_start`] with extra environment variables for the daemon.
    pub fn try_start_env(dir: &Path, o: &MountOpts, env: &[(&str, &str)]) -> Result<Mount, String> {
        std::fs::create_dir_all(dir).ok();
        let log = dir.with_extension("log");
        let err = std::fs::File::create(&log).expect("create mount log");
        let mut cmd = Command::new(distfs_bin());
        cmd.arg("mount")
            .arg(dir)
            .arg("--root")
            .arg(if o.root.starts_with('/') {
                o.root.to_string()
            } else {
                format!("/ipfs/{}", o.root)
            });
        for g in o.gateways {
            cmd.arg("--gateway").arg(g);
        }
        cmd.arg("--cache-dir").arg(o.cache).args(o.extra);
        let child = cmd
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("spawn distfs mount");
        let mut m = Mount {
            child: Some(child),
            armed: true,
            dir: dir.to_path_buf(),
            log,
        };
        let start = Instant::now();
        loop {
            if is_mounted(dir) {
                return Ok(m);
            }
            if let Some(st) = m.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                m.child = None;
                return Err(format!("distfs mount exited with {st}: {}", m.log_text()));
            }
            if start.elapsed() > Duration::from_secs(60) {
                return Err(format!("not mounted after 60 s: {}", m.log_text()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's process id, while it runs.
    #[allow(
        dead_code,
        reason = "not every test binary that includes the harness uses it"
    )]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What the daemon wrote to stderr.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `dir/rel`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Sends `sig` and waits up to 20 s for the daemon to exit; its status.
    pub fn signal_and_wait(&mut self, sig: i32) -> ExitStatus {
        let mut c = self.child.take().expect("the daemon is running");
        signal(&c, sig);
        match wait_bounded(&mut c, Duration::from_secs(20)) {
            Some(st) => st,
            None => {
                let _ = c.kill();
                let _ = c.wait();
                panic!("distfs mount did not exit within 20 s of signal {sig}");
            }
        }
    }

    /// Stops this guard from unmounting on drop (a newer mount owns the mount point).
    pub fn disarm(&mut self) {
        self.armed = false;
    }

    /// Waits up to 20 s for the daemon to exit on its own (after an external unmount).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("the daemon is running");
        match wait_bounded(&mut c, Duration::from_secs(20)) {
            Some(st) => st,
            None => {
                let _ = c.kill();
                let _ = c.wait();
                panic!("distfs mount did not exit within 20 s");
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, libc::SIGTERM);
            if wait_bounded(&mut c, Duration::from_secs(10)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if !self.armed {
            return;
        }
        // Unconditional: a dead mount (ENOTCONN) is not reported by `mountpoint -q`.
        let _ = Command::new("fusermount3")
            .args(["-u", "-z"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
