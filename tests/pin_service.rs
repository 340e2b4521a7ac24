//! The pinning service in `distfs serve` (issue 9 item 3), end to end with real processes: a
//! publisher asks a second `serve` to pin its release (`distfs publish --pin-service`), the
//! publisher's store is then deleted and a real FUSE mount reads the release through the
//! pinning serve alone. Plus the API itself (tokens, filters, replace, delete, restarts, a
//! pin nobody can serve) and pins holding through quota eviction.

#[path = "support/mod.rs"]
mod support;

#[allow(dead_code)] // the mount tests use the rest
#[path = "mount/harness.rs"]
mod harness;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cid::Cid;
use distfs::block::Block;
use distfs::car::CarReader;
use distfs::fetch::{Fetcher, FetcherConfig};
use distfs::serve::pins::{PinConfig, PinService};
use distfs::serve::{Gateway, GatewayConfig};
use distfs::store::cache::CacheStore;
use distfs::store::disk::DiskStore;
use distfs::store::quota::Quota;
use harness::{is_mounted, Mount, MountOpts, Serve};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::{det_bytes, distfs_add, distfs_bin, tempdir, write_bytes};

const TOKEN: &str = "pin-test-token";

/// A `distfs serve` with the pinning API on (token file in `dir`), over `dir/store`.
fn start_pinner(dir: &Path) -> Serve {
    let token = write_bytes(&dir.join("pin-token"), format!("{TOKEN}\n").as_bytes());
    Serve::start_with(
        &dir.join("store"),
        &[OsStr::new("--pin-token-file"), token.as_os_str()],
        Stdio::inherit(),
    )
}

/// `http://127.0.0.1:PORT` → `/ip4/127.0.0.1/tcp/PORT/http`.
fn multiaddr(url: &str) -> String {
    let (host, port) = url
        .trim_start_matches("http://")
        .split_once(':')
        .expect("host:port");
    format!("/ip4/{host}/tcp/{port}/http")
}

/// A client of one pinning API endpoint.
struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(base: &str) -> Api {
        Api {
            base: base.to_string(),
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(Duration::from_secs(30));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.expect("send a pinning API request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"))
        };
        (status, value)
    }

    async fn add(&self, pin: Value) -> Value {
        let (st, v) = self
            .call(reqwest::Method::POST, "/pins", Some(TOKEN), Some(pin))
            .await;
        assert_eq!(st, 202, "POST /pins: {v}");
        assert_eq!(v["status"], "queued", "a new request starts queued: {v}");
        v
    }

    async fn get(&self, id: &str) -> (u16, Value) {
        self.call(
            reqwest::Method::GET,
            &format!("/pins/{id}"),
            Some(TOKEN),
            None,
        )
        .await
    }

    async fn list(&self, query: &str) -> Value {
        let (st, v) = self
            .call(
                reqwest::Method::GET,
                &format!("/pins{query}"),
                Some(TOKEN),
                None,
            )
            .await;
        assert_eq!(st, 200, "GET /pins{query}: {v}");
        v
    }

    /// Polls the request until it is pinned or failed (at most `limit`); its last state.
    async fn wait_final(&self, id: &str, limit: Duration) -> Value {
        let start = Instant::now();
        loop {
            let (st, v) = self.get(id).await;
            assert_eq!(st, 200, "GET /pins/{id}: {v}");
            if v["status"] == "pinned" || v["status"] == "failed" {
                return v;
            }
            assert!(
                start.elapsed() < limit,
                "request {id} still {} after {limit:?}: {v}",
                v["status"]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Ids of a listing's results, in order.
fn ids(list: &Value) -> Vec<String> {
    list["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["requestid"].as_str().unwrap().to_string())
        .collect()
}

/// `distfs add` of `len` deterministic bytes into a CAR; `(root, car path)`.
fn dag(dir: &Path, seed: &str, len: usize) -> (Cid, PathBuf) {
    let file = write_bytes(&dir.join(seed), &det_bytes(seed, len));
    let car = dir.join(format!("{seed}.car"));
    let car_s = car.to_str().unwrap().to_string();
    let root = distfs_add(
        &file,
        &["--cid-version", "1", "--raw-leaves", "--car", &car_s],
    )
    .unwrap_or_else(|e| panic!("distfs add {seed}: {e}"));
    (root.parse().unwrap(), car)
}

/// Every block in a CAR.
fn car_blocks(car: &Path) -> Vec<Block> {
    let mut r = CarReader::new(std::io::BufReader::new(std::fs::File::open(car).unwrap())).unwrap();
    let mut out = Vec::new();
    while let Some(b) = r.next_block().unwrap() {
        out.push(b);
    }
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_release_survives_the_publisher_through_the_pinning_serve() {
    let tmp = tempdir();
    let pinner = start_pinner(&tmp.path().join("pinner"));
    let publisher_dir = tmp.path().join("publisher");
    let upload_token = write_bytes(&tmp.path().join("upload-token"), b"upload-secret\n");
    let mut publisher = Serve::start_with(
        &publisher_dir,
        &[OsStr::new("--upload-token-file"), upload_token.as_os_str()],
        Stdio::inherit(),
    );
    let key = tmp.path().join("key");
    let out = Command::new(distfs_bin())
        .args(["key", "gen"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "key gen: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The release: a multi-block tarball, a small file and a subdirectory.
    let src = tmp.path().join("src");
    let files: BTreeMap<&str, Vec<u8>> = [
        (
            "tool_linux-amd64.tar.gz",
            det_bytes("pin-rel-tar", 1_500_000),
        ),
        (
            "README.md",
            b"# tool\nkept alive by a pinning service\n".to_vec(),
        ),
        ("docs/guide.txt", det_bytes("pin-rel-guide", 300_000)),
    ]
    .into_iter()
    .collect();
    for (name, bytes) in &files {
        write_bytes(&src.join(name), bytes);
    }
    let out = Command::new(distfs_bin())
        .arg("publish")
        .arg("--key")
        .arg(&key)
        .args([
            "--project",
            "tool",
            "--version",
            "1.0.0",
            "--to",
            &publisher.url,
        ])
        .arg("--token-file")
        .arg(&upload_token)
        .args(["--pin-service", &pinner.url, "--pin-wait", "60s"])
        .arg(src.join("tool_linux-amd64.tar.gz"))
        .arg(src.join("README.md"))
        .arg(src.join("docs"))
        .env("DISTFS_PIN_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .output()
        .expect("spawn distfs publish");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "publish failed: {}\nstdout: {stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = stdout
        .lines()
        .find_map(|l| l.strip_prefix("root /ipfs/"))
        .expect("a root line")
        .to_string();
    let pin_line = stdout
        .lines()
        .find(|l| l.starts_with("pin "))
        .unwrap_or_else(|| panic!("no pin line in {stdout}"));
    let words: Vec<&str> = pin_line.split_whitespace().collect();
    assert_eq!(words[1], pinner.url, "{pin_line}");
    assert_eq!(
        words[2],
        "pinned",
        "{pin_line}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The pinning serve lists it under the release's name, with the publisher as origin.
    let api = Api::new(&pinner.url);
    let list = api.list(&format!("?cid={root}")).await;
    assert_eq!(list["count"], 1, "{list}");
    let st = &list["results"][0];
    assert_eq!(st["requestid"], words[3]);
    assert_eq!(st["pin"]["name"], "tool/1.0.0");
    assert_eq!(st["pin"]["origins"][0], multiaddr(&publisher.url));
    assert_eq!(st["delegates"][0], multiaddr(&pinner.url));

    // The publisher goes away with its blocks.
    publisher.kill();
    std::fs::remove_dir_all(&publisher_dir).unwrap();

    // A mount whose only gateway is the pinning serve reads every file of the release.
    let mnt = tmp.path().join("mnt");
    let mcache = tmp.path().join("mcache");
    let url = pinner.url.clone();
    let expected: BTreeMap<String, String> = files
        .iter()
        .map(|(n, b)| (n.to_string(), sha256_hex(b)))
        .collect();
    tokio::task::spawn_blocking(move || {
        let mount = Mount::try_start(
            &mnt,
            &MountOpts {
                root: &root,
                gateways: &[url.as_str()],
                cache: &mcache,
                extra: &[],
            },
        )
        .expect("mount the release through the pinning serve");
        assert!(is_mounted(&mnt));
        let version = mnt.join("tool/1.0.0");
        for (name, sum) in &expected {
            let bytes = std::fs::read(version.join(name))
                .unwrap_or_else(|e| panic!("read {name}: {e}\n{}", mount.log_text()));
            assert_eq!(&sha256_hex(&bytes), sum, "{name}");
        }
        // And everything else in the version directory (dist.json) reads too.
        let dist = std::fs::read(version.join("dist.json")).expect("read dist.json");
        let dist: Value = serde_json::from_slice(&dist).expect("dist.json is JSON");
        assert!(dist.is_object());
        drop(mount);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_errors_and_a_pin_nobody_has() {
    let tmp = tempdir();
    let pinner = start_pinner(tmp.path());
    let origin = Serve::start(&tmp.path().join("empty-origin"));
    let api = Api::new(&pinner.url);
    let get = reqwest::Method::GET;

    // 401 without a token and with a wrong one, in the spec's error shape.
    for token in [None, Some("wrong-token"), Some("pin-test-tokeN")] {
        let (st, v) = api.call(get.clone(), "/pins", token, None).await;
        assert_eq!(st, 401, "{token:?}: {v}");
        assert_eq!(v["error"]["reason"], "UNAUTHORIZED");
        assert!(v["error"]["details"].as_str().unwrap().contains("Bearer"));
    }
    let (st, _) = api
        .call(
            reqwest::Method::POST,
            "/pins",
            Some("wrong"),
            Some(json!({"cid": "bafkqaaa"})),
        )
        .await;
    assert_eq!(st, 401);
    assert_eq!(
        api.list("?status=queued,pinning,pinned,failed").await["count"],
        0
    );

    // Bad requests are 400/404 with a reason.
    for (body, what) in [
        (json!({"name": "no cid"}), "missing cid"),
        (json!({"cid": "not-a-cid"}), "bad cid"),
        (
            json!({"cid": "bafkqaaa", "name": "x".repeat(256)}),
            "long name",
        ),
        (
            json!({"cid": "bafkqaaa", "meta": {"n": 1}}),
            "non-string meta",
        ),
    ] {
        let (st, v) = api
            .call(reqwest::Method::POST, "/pins", Some(TOKEN), Some(body))
            .await;
        assert_eq!(st, 400, "{what}: {v}");
        assert_eq!(v["error"]["reason"], "BAD_REQUEST", "{what}");
    }
    let (st, v) = api
        .call(get.clone(), "/pins?limit=0", Some(TOKEN), None)
        .await;
    assert_eq!(
        (st, v["error"]["reason"].as_str()),
        (400, Some("BAD_REQUEST"))
    );
    let (st, v) = api.get("0123456789abcdef0123456789abcdef").await;
    assert_eq!(
        (st, v["error"]["reason"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    let (st, _) = api.get("..%2F..%2Fetc").await;
    assert_eq!(st, 404);

    // A serve without a pin token has the API off.
    let plain = Api::new(&origin.url);
    let (st, v) = plain.call(get.clone(), "/pins", Some(TOKEN), None).await;
    assert_eq!(
        (st, v["error"]["reason"].as_str()),
        (403, Some("PINNING_DISABLED"))
    );

    // A CID nobody has: its origin answers 404 → failed with a reason, in bounded time.
    let missing = Block::encode(
        cid::Version::V1,
        0x55,
        bytes::Bytes::from_static(b"nobody has this block"),
    );
    let missing = missing.cid().to_string();
    let req = api
        .add(json!({"cid": missing, "name": "ghost", "origins": [multiaddr(&origin.url)]}))
        .await;
    let id = req["requestid"].as_str().unwrap();
    let done = api.wait_final(id, Duration::from_secs(90)).await;
    assert_eq!(done["status"], "failed", "{done}");
    let reason = done["info"]["reason"].as_str().expect("info.reason");
    assert!(
        reason.contains(&missing) && reason.contains("not found"),
        "{reason}"
    );
    // With no origin at all the reason says what to give.
    let req = api.add(json!({"cid": missing})).await;
    let done = api
        .wait_final(req["requestid"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(done["status"], "failed");
    assert!(
        done["info"]["reason"].as_str().unwrap().contains("origins"),
        "{done}"
    );
    // Failed requests are listed only when asked for.
    assert_eq!(api.list("").await["count"], 0);
    assert_eq!(api.list("?status=failed").await["count"], 2);
    assert_eq!(api.list("?status=failed&name=ghost").await["count"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_list_replace_delete_and_survive_a_restart() {
    let tmp = tempdir();
    let (a, a_car) = dag(tmp.path(), "pin-a", 700_000);
    let (b, b_car) = dag(tmp.path(), "pin-b", 500_000);
    let mut origin = Serve::start_with(
        &tmp.path().join("origin"),
        &[
            OsStr::new("--car"),
            a_car.as_os_str(),
            OsStr::new("--car"),
            b_car.as_os_str(),
        ],
        Stdio::inherit(),
    );
    let pdir = tmp.path().join("pinner");
    let mut pinner = start_pinner(&pdir);
    let api = Api::new(&pinner.url);
    let from = json!([multiaddr(&origin.url)]);

    let r1 = api
        .add(
            json!({"cid": a.to_string(), "name": "Alpha-1", "origins": from, "meta": {"app": "t"}}),
        )
        .await;
    let id1 = r1["requestid"].as_str().unwrap().to_string();
    let r2 = api
        .add(json!({"cid": b.to_string(), "name": "beta", "origins": from}))
        .await;
    let id2 = r2["requestid"].as_str().unwrap().to_string();
    assert_ne!(id1, id2);
    assert!(r1["created"].as_str().unwrap() < r2["created"].as_str().unwrap());
    for id in [&id1, &id2] {
        let done = api.wait_final(id, Duration::from_secs(60)).await;
        assert_eq!(done["status"], "pinned", "{done}");
    }
    let st1 = api.get(&id1).await.1;
    let dag_size: u64 = st1["info"]["dag_size"].as_str().unwrap().parse().unwrap();
    assert!(dag_size > 700_000, "{st1}");
    for b in car_blocks(&a_car).iter().chain(&car_blocks(&b_car)) {
        assert!(DiskStore::open(pdir.join("store"))
            .unwrap()
            .has_sync(b.cid()));
    }

    // Listing: newest first, filters, limit.
    assert_eq!(ids(&api.list("").await), vec![id2.clone(), id1.clone()]);
    let l = api.list("?limit=1").await;
    assert_eq!((l["count"].as_u64(), ids(&l)), (Some(2), vec![id2.clone()]));
    assert_eq!(
        ids(&api.list(&format!("?cid={a}")).await),
        vec![id1.clone()]
    );
    assert_eq!(ids(&api.list(&format!("?cid={a},{b}")).await).len(), 2);
    assert_eq!(ids(&api.list("?name=Alpha-1").await), vec![id1.clone()]);
    assert_eq!(api.list("?name=alpha-1").await["count"], 0);
    assert_eq!(
        ids(&api.list("?name=ALPHA&match=ipartial").await),
        vec![id1.clone()]
    );
    assert_eq!(
        ids(&api.list("?meta=%7B%22app%22%3A%22t%22%7D").await),
        vec![id1.clone()]
    );
    assert_eq!(api.list("?status=queued,pinning,failed").await["count"], 0);
    let created2 = r2["created"].as_str().unwrap();
    assert_eq!(
        ids(&api.list(&format!("?before={created2}")).await),
        vec![id1.clone()]
    );
    assert_eq!(
        ids(&api
            .list(&format!("?after={}", r1["created"].as_str().unwrap()))
            .await),
        vec![id2.clone()]
    );

    // Restart: the requests and their blocks are still there, served with the origin gone.
    pinner.kill();
    origin.kill();
    let pinner = start_pinner(&pdir);
    let api = Api::new(&pinner.url);
    assert_eq!(api.get(&id1).await.1["status"], "pinned");
    assert_eq!(ids(&api.list("").await), vec![id2.clone(), id1.clone()]);
    let raw = harness::http_get(&pinner.url, &format!("/ipfs/{a}?format=raw"));
    assert!(Block::verified(a, bytes::Bytes::from(raw)).is_ok());

    // Replace: a new id for the new pin, the old one gone; b is pinned by both for a moment.
    let (st, r3) = api
        .call(
            reqwest::Method::POST,
            &format!("/pins/{id1}"),
            Some(TOKEN),
            Some(json!({"cid": b.to_string(), "name": "alpha-now-b"})),
        )
        .await;
    assert_eq!(st, 202, "{r3}");
    let id3 = r3["requestid"].as_str().unwrap().to_string();
    assert_ne!(id3, id1);
    assert_eq!(api.get(&id1).await.0, 404);
    let done = api.wait_final(&id3, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "pinned", "b is already held: {done}");
    assert_eq!(
        ids(&api.list(&format!("?cid={b}")).await),
        vec![id3.clone(), id2.clone()]
    );
    // a is no longer pinned by anyone: its store pin is released.
    let a_pin = pdir.join("store/pins").join(format!("{a}.pin"));
    harness::poll(
        "a's store pin to be released",
        Duration::from_secs(20),
        || (!a_pin.exists()).then_some(()),
    );
    let b_pin = pdir.join("store/pins").join(format!("{b}.pin"));
    assert!(b_pin.exists());

    // Delete: 202, then 404; b stays pinned while id3 still wants it, released after.
    let (st, v) = api
        .call(
            reqwest::Method::DELETE,
            &format!("/pins/{id2}"),
            Some(TOKEN),
            None,
        )
        .await;
    assert_eq!((st, v), (202, Value::Null));
    assert_eq!(api.get(&id2).await.0, 404);
    let (st, _) = api
        .call(
            reqwest::Method::DELETE,
            &format!("/pins/{id2}"),
            Some(TOKEN),
            None,
        )
        .await;
    assert_eq!(st, 404);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b_pin.exists(), "b is still pinned by {id3}");
    let (st, _) = api
        .call(
            reqwest::Method::DELETE,
            &format!("/pins/{id3}"),
            Some(TOKEN),
            None,
        )
        .await;
    assert_eq!(st, 202);
    harness::poll(
        "b's store pin to be released",
        Duration::from_secs(20),
        || (!b_pin.exists()).then_some(()),
    );
    assert_eq!(
        api.list("?status=queued,pinning,pinned,failed").await["count"],
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_dag_survives_quota_eviction() {
    let tmp = tempdir();
    let (kept, kept_car) = dag(tmp.path(), "pin-kept", 1_000_000);
    let (_filler, filler_car) = dag(tmp.path(), "pin-filler", 3_000_000);
    let origin = Serve::start_with(
        &tmp.path().join("origin"),
        &[
            OsStr::new("--car"),
            kept_car.as_os_str(),
            OsStr::new("--car"),
            filler_car.as_os_str(),
        ],
        Stdio::inherit(),
    );

    // The pinning store has a 2 MiB quota it shares with a cache reading through it (what a
    // caching serve does), and the API in front of it.
    const LIMIT: u64 = 2 * 1024 * 1024;
    let dir = tmp.path().join("pinstore");
    let disk = DiskStore::open(&dir).unwrap();
    let quota = Arc::new(Quota::open(disk.clone(), Some(LIMIT)).unwrap());
    let svc = PinService::with_quota(Arc::clone(&quota), PinConfig::new(TOKEN.into()))
        .await
        .unwrap();
    let gw = Gateway::new(Arc::new(disk.clone()), GatewayConfig::default()).with_pins(svc);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(distfs::serve::run(
        listener,
        Arc::new(gw),
        std::future::pending(),
    ));
    let api = Api::new(&base);

    let req = api
        .add(json!({"cid": kept.to_string(), "origins": [multiaddr(&origin.url)]}))
        .await;
    let id = req["requestid"].as_str().unwrap().to_string();
    assert_eq!(
        api.wait_final(&id, Duration::from_secs(60)).await["status"],
        "pinned"
    );

    // Read 3 MB of other blocks through the same quota: it must evict, and only them.
    let fetcher = Fetcher::from_gateways(&[origin.url.as_str()], FetcherConfig::default()).unwrap();
    let cache = CacheStore::with_quota(Arc::clone(&quota), fetcher);
    let filler = car_blocks(&filler_car);
    for b in &filler {
        cache.get(b.cid()).await.unwrap();
    }
    assert!(
        cache.flush(Duration::from_secs(30)).await,
        "cache writes finished"
    );
    quota.evict_if_over();
    harness::poll("the quota to evict", Duration::from_secs(20), || {
        (quota.evicted().0 > 0 && quota.usage().bytes <= LIMIT).then_some(())
    });
    let kept_blocks = car_blocks(&kept_car);
    for b in &kept_blocks {
        assert!(
            disk.has_sync(b.cid()),
            "pinned block {} was evicted",
            b.cid()
        );
    }
    let filler_left = filler.iter().filter(|b| disk.has_sync(b.cid())).count();
    assert!(filler_left < filler.len(), "unpinned blocks were evicted");

    // Once the request is deleted the same blocks are evictable.
    let (st, _) = api
        .call(
            reqwest::Method::DELETE,
            &format!("/pins/{id}"),
            Some(TOKEN),
            None,
        )
        .await;
    assert_eq!(st, 202);
    harness::poll("the pin to be released", Duration::from_secs(20), || {
        (!quota.is_pinned(&kept)).then_some(())
    });
    quota.evict_to(0);
    assert!(kept_blocks.iter().all(|b| !disk.has_sync(b.cid())));
}

/// A request left queued by a crash (its file written, no walk done) is walked at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_left_unfinished_is_resumed_at_start() {
    let tmp = tempdir();
    let (a, a_car) = dag(tmp.path(), "pin-resume", 400_000);
    let origin = Serve::start_with(
        &tmp.path().join("origin"),
        &[OsStr::new("--car"), a_car.as_os_str()],
        Stdio::inherit(),
    );
    let id = "00112233445566778899aabbccddeeff";
    let request = json!({
        "status": {
            "requestid": id,
            "status": "pinning",
            "created": "2026-01-01T00:00:00Z",
            "pin": {"cid": a.to_string(), "origins": [multiaddr(&origin.url)]},
            "delegates": [],
        },
        "created_ns": 1_767_225_600_000_000_000_i64,
    });
    let dir = tmp.path().join("pinner");
    write_bytes(
        &dir.join("store/pin-service").join(format!("{id}.json")),
        request.to_string().as_bytes(),
    );
    let pinner = start_pinner(&dir);
    let api = Api::new(&pinner.url);
    let done = api.wait_final(id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "pinned", "{done}");
    assert!(dir.join("store/pins").join(format!("{a}.pin")).exists());
}
