//! The site cache (`distfs serve --upstream`), end to end: an origin `distfs serve` holds a
//! distribution, site cache A sits in front of it with its own store, and real mounts B and C
//! use only A as their gateway. The origin counts what it serves per CID (`/debug/stats`), so
//! the tests can prove each block crossed the origin link once, however many machines read
//! it, also when two of them miss on the same blocks at the same moment. A lying upstream
//! never gets a wrong byte to a reader or into A's store, and A's store stays under its quota.
//! Needs /dev/fuse and fusermount3.

#[path = "support/mod.rs"]
mod support;

#[allow(dead_code)]
#[path = "mount/harness.rs"]
mod harness;

#[allow(dead_code)]
#[path = "faults/proxy.rs"]
mod proxy;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use harness::{http_get_json, poll, Mount, MountOpts, Serve};
use proxy::{Fault, FaultyProxy};
use sha2::{Digest, Sha256};
use support::cache::{bad_blocks, block_files};
use support::{det_bytes, distfs_add, tempdir, write_bytes};

/// Read sequentially: B twice, C once.
const V1: [(&str, usize); 4] = [
    ("proj/1.0/app.bin", 1_310_720 + 17),
    ("proj/1.0/lib/data.bin", 700_000),
    ("proj/1.0/lib/small.txt", 5_000),
    ("proj/1.0/README", 12),
];
/// Read by B and C at the same time, both cold.
const V2: [(&str, usize); 2] = [
    ("proj/2.0/app.bin", 3 * 1_048_576 + 5),
    ("proj/2.0/other.bin", 900_000),
];

/// A distribution imported into the origin's store, and the origin serving it.
struct Origin {
    tmp: tempfile::TempDir,
    root: String,
    store: PathBuf,
    serve: Serve,
}

impl Origin {
    fn new(files: &[(&str, usize)]) -> Origin {
        let tmp = tempdir();
        let src = tmp.path().join("src");
        for (rel, len) in files {
            write_bytes(&src.join(rel), &det_bytes(rel, *len));
        }
        let store = tmp.path().join("origin-store");
        let root = distfs_add(&src, &["--store", store.to_str().unwrap()]).expect("distfs add");
        let serve = Serve::start(&store);
        Origin {
            tmp,
            root,
            store,
            serve,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn mount(&self, name: &str, gateway: &str) -> Mount {
        Mount::try_start(
            &self.path(name),
            &MountOpts {
                root: &self.root,
                gateways: &[gateway],
                cache: &self.path(&format!("{name}-cache")),
                extra: &[],
            },
        )
        .unwrap_or_else(|e| panic!("mount {name}: {e}"))
    }

    /// Successful origin answers per block, keyed by the hex multihash (the block file name
    /// in a store), whatever CID label the block was asked under.
    fn served_per_block(&self) -> BTreeMap<String, u64> {
        self.serve.settled_raw_requests();
        let stats = http_get_json(&self.serve.url, "/debug/stats");
        let mut out = BTreeMap::new();
        let by_cid = stats["by_cid"].as_object().expect("by_cid in /debug/stats");
        for (cid, n) in by_cid {
            let cid: cid::Cid = cid.parse().expect("a CID key");
            *out.entry(hex::encode(cid.hash().to_bytes())).or_default() += n.as_u64().unwrap();
        }
        out
    }
}

/// A site cache: `distfs serve --store DIR --upstream URL... [extra]`.
fn site_cache(store: &Path, upstreams: &[&str], extra: &[&str]) -> Serve {
    let mut args: Vec<&OsStr> = Vec::new();
    for u in upstreams {
        args.push(OsStr::new("--upstream"));
        args.push(OsStr::new(u));
    }
    args.extend(extra.iter().map(OsStr::new));
    Serve::start_with(store, &args, Stdio::null())
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Reads every file of `files` through `m` and checks its sha256.
fn read_all(m: &Mount, files: &[(&str, usize)]) {
    for (rel, len) in files {
        let got = std::fs::read(m.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"));
        assert_eq!(sha(&got), sha(&det_bytes(rel, *len)), "{rel}: wrong bytes");
    }
}

/// `GET path` on `base`; the status code (any status, unlike `harness::http_get`).
fn status_of(base: &str, path: &str) -> u16 {
    let host = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(host).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/vnd.ipld.raw\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read the response");
    let head = String::from_utf8_lossy(&resp[..resp.len().min(12)]).to_string();
    head.get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("GET {path}: not an HTTP response: {head:?}"))
}

#[test]
fn each_block_crosses_the_origin_link_once() {
    let files: Vec<(&str, usize)> = V1.iter().chain(V2.iter()).copied().collect();
    let origin = Origin::new(&files);
    let a = site_cache(&origin.path("a-store"), &[&origin.serve.url], &[]);
    let b = origin.mount("b", &a.url);
    let c = origin.mount("c", &a.url);

    // B reads the version twice, C once: A fetches each block once and serves C from its store.
    read_all(&b, &V1);
    read_all(&b, &V1);
    read_all(&c, &V1);

    // Cold reads of one version from B and C at the same time.
    std::thread::scope(|s| {
        let (b, c) = (&b, &c);
        let one = s.spawn(move || read_all(b, &V2));
        let two = s.spawn(move || read_all(c, &V2));
        one.join().expect("B's reads");
        two.join().expect("C's reads");
    });

    let served = origin.served_per_block();
    let held: Vec<String> = block_files(&origin.store)
        .into_iter()
        .map(|(_, name)| name)
        .collect();
    assert!(held.len() > 20, "the DAG has many blocks: {}", held.len());
    for name in &held {
        assert_eq!(
            served.get(name).copied().unwrap_or(0),
            1,
            "origin block {name}: served {:?} times (every block is read, each must cross once)",
            served.get(name)
        );
    }
    assert_eq!(
        served.len(),
        held.len(),
        "the origin served only blocks it holds"
    );

    // A's counters say the same: one upstream fetch per block, the rest were hits.
    let stats = http_get_json(&a.url, "/debug/stats");
    let up = &stats["upstream"];
    assert_eq!(up["fetches"].as_u64(), Some(held.len() as u64), "{up}");
    assert!(
        up["hits"].as_u64().unwrap_or(0) > 0,
        "C's reads were hits: {up}"
    );
    assert_eq!(
        up["sources"][0]["name"].as_str(),
        Some(origin.serve.url.as_str())
    );
    let metrics = String::from_utf8(harness::http_get(&a.url, "/metrics")).unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == format!("distfs_serve_upstream_fetches_total {}", held.len())),
        "{metrics}"
    );
    let (checked, bad) = bad_blocks(&origin.path("a-store"));
    assert!(checked >= held.len() && bad.is_empty(), "{checked} {bad:?}");
}

#[test]
fn a_lying_upstream_never_gets_wrong_bytes_through() {
    let origin = Origin::new(&V1);
    let liar = FaultyProxy::start(&origin.serve.url, 0x5173);
    liar.set_fault(Some((Fault::FlipByte, 1.0)));

    // With only the liar upstream, a client gets a clean 502, and nothing is stored.
    let alone = site_cache(&origin.path("alone-store"), &[&liar.url], &[]);
    let root_raw = format!("/ipfs/{}?format=raw", origin.root);
    assert_eq!(status_of(&alone.url, &root_raw), 502);
    let (_, bad) = bad_blocks(&origin.path("alone-store"));
    assert!(bad.is_empty(), "{bad:?}");
    assert!(block_files(&origin.path("alone-store")).is_empty());

    // With the liar first and the origin second, the liar is dropped on its first lie and
    // a mount reads every file right; the store holds only good blocks.
    let a = site_cache(
        &origin.path("a-store"),
        &[&liar.url, &origin.serve.url],
        &[],
    );
    let d = origin.mount("d", &a.url);
    read_all(&d, &V1);
    assert!(liar.injected() > 0, "the liar lied");
    let stats = http_get_json(&a.url, "/debug/stats");
    let sources = stats["upstream"]["sources"].as_array().unwrap();
    assert_eq!(sources[0]["dropped"].as_bool(), Some(true), "{sources:?}");
    let (checked, bad) = bad_blocks(&origin.path("a-store"));
    assert!(checked > 0 && bad.is_empty(), "{checked} {bad:?}");
}

#[test]
fn the_site_cache_stays_under_its_quota() {
    const MIB: u64 = 1024 * 1024;
    let files = [
        ("big/one.bin", 3 * MIB as usize),
        ("big/two.bin", 2 * MIB as usize),
    ];
    let origin = Origin::new(&files);
    let store = origin.path("a-store");
    let a = site_cache(&store, &[&origin.serve.url], &["--store-size", "1M"]);
    let e = origin.mount("e", &a.url);
    read_all(&e, &files);
    // Eviction runs on every write and on a 2 s sweep: wait (bounded) for it to settle to
    // the quota plus at most one block whose write landed after the last sweep.
    let limit = MIB + 256 * 1024;
    let size = |dir: &Path| -> u64 {
        block_files(dir)
            .iter()
            .filter_map(|(p, _)| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    };
    let held = poll(
        "the site cache under its quota",
        Duration::from_secs(20),
        || {
            let n = size(&store);
            (n <= limit).then_some(n)
        },
    );
    assert!(held > 0, "the store keeps what fits");
    let stats = http_get_json(&a.url, "/debug/stats");
    assert_eq!(stats["upstream"]["limit"].as_u64(), Some(MIB), "{stats}");
}
