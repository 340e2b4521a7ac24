//! `distfs publish` end to end: a real `distfs serve` on port 0 accepting uploads, real
//! `distfs publish` processes, then the published tree read back through the gateway (the
//! record fetched and verified, the `/dist` view over a caching fetcher) and through a real
//! FUSE mount of the new root.

#[path = "support/mod.rs"]
mod support;

#[allow(dead_code)] // the mount tests use the rest
#[path = "mount/harness.rs"]
mod harness;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cid::Cid;
use distfs::dist::{DistView, Kind, ROOT_INO};
use distfs::fetch::{Fetcher, FetcherConfig};
use distfs::name::key::Keypair;
use distfs::name::{record, IpnsName};
use distfs::store::cache::CacheStore;
use distfs::store::disk::DiskStore;
use harness::{is_mounted, Mount, MountOpts, Serve};
use sha2::{Digest, Sha512};
use support::{det_bytes, distfs_bin, tempdir, write_bytes};

const TOKEN: &str = "publish-test-token";

/// A `distfs serve` that accepts uploads into `store`; killed on drop (with `_serve`).
struct Server {
    _serve: Serve,
    url: String,
}

impl Server {
    fn start(dir: &Path, extra: &[&str]) -> Server {
        let token = write_bytes(&dir.join("token"), format!("{TOKEN}\n").as_bytes());
        let mut args: Vec<&OsStr> = vec![OsStr::new("--upload-token-file"), token.as_os_str()];
        args.extend(extra.iter().map(OsStr::new));
        let serve = Serve::start_with(&dir.join("store"), &args, Stdio::inherit());
        let url = serve.url.clone();
        Server { _serve: serve, url }
    }

    fn stats(&self) -> serde_json::Value {
        harness::http_get_json(&self.url, "/debug/stats")
    }

    /// The record the server holds for `name`, verified; `None` when it has none.
    async fn record(&self, name: &IpnsName) -> Option<record::Record> {
        let resp = reqwest::Client::new()
            .get(format!("{}/routing/v1/ipns/{name}", self.url))
            .header("accept", "application/vnd.ipfs.ipns-record")
            .send()
            .await
            .expect("GET the record");
        if resp.status() == 404 {
            return None;
        }
        assert_eq!(resp.status(), 200);
        let bytes = resp.bytes().await.unwrap();
        Some(record::verify(name, &bytes, SystemTime::now()).expect("served record verifies"))
    }
}

/// Runs `distfs publish` with `args` then `files`.
fn publish(server: &Server, key: &Path, token: &str, args: &[&str], files: &[&Path]) -> Output {
    let tmp_token = key.with_file_name(format!("token-{}", token.len()));
    std::fs::write(&tmp_token, token).unwrap();
    Command::new(distfs_bin())
        .arg("publish")
        .arg("--key")
        .arg(key)
        .args(["--to", &server.url])
        .arg("--token-file")
        .arg(&tmp_token)
        .args(args)
        .args(files)
        .stdin(Stdio::null())
        .output()
        .expect("spawn distfs publish")
}

/// `distfs publish` that must succeed; returns its `key value` lines as a map.
fn publish_ok(
    server: &Server,
    key: &Path,
    args: &[&str],
    files: &[&Path],
) -> std::collections::HashMap<String, String> {
    let out = publish(server, key, TOKEN, args, files);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "publish {args:?} failed: {}\nstdout: {stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn root_of(fields: &std::collections::HashMap<String, String>) -> Cid {
    fields["root"]
        .strip_prefix("/ipfs/")
        .expect("root is an /ipfs/ path")
        .parse()
        .expect("root is a CID")
}

/// "pushed S of N new blocks (B bytes) in U uploads; K were already at the target".
fn pushed_counts(fields: &std::collections::HashMap<String, String>) -> (u64, u64, u64) {
    let words: Vec<&str> = fields["pushed"].split_whitespace().collect();
    let n = |i: usize| words[i].trim_start_matches('(').parse::<u64>().unwrap();
    (n(0), n(2), n(10))
}

fn sha512_hex(bytes: &[u8]) -> String {
    hex::encode(Sha512::digest(bytes))
}

/// A view of `root` read from `server` through a caching fetcher (the mount's read path).
fn view_of(server: &Server, root: Cid, cache: &Path) -> DistView {
    let fetcher = Fetcher::from_gateways(&[server.url.as_str()], FetcherConfig::default()).unwrap();
    let store = CacheStore::new(DiskStore::open(cache).unwrap(), fetcher);
    DistView::new(Arc::new(store), root, Duration::from_secs(30))
}

async fn names(view: &DistView, ino: u64) -> Vec<String> {
    view.readdir(ino)
        .await
        .unwrap()
        .iter()
        .map(|e| e.name.clone())
        .collect()
}

async fn read_all(view: &DistView, ino: u64) -> Vec<u8> {
    let size = view.inode(ino).unwrap().size;
    view.read(ino, 0, u32::try_from(size).unwrap())
        .await
        .unwrap()
        .to_vec()
}

async fn path_ino(view: &DistView, path: &[&str]) -> u64 {
    let mut ino = ROOT_INO;
    for seg in path {
        ino = view
            .lookup(ino, seg)
            .await
            .unwrap_or_else(|e| panic!("lookup {seg}: {e}"))
            .ino;
    }
    ino
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_versions_and_read_them_back() {
    let tmp = tempdir();
    let server = Server::start(tmp.path(), &[]);
    let key_path = tmp.path().join("key");
    let key = Keypair::generate();
    key.save(&key_path).unwrap();
    let name = key.name();
    assert!(server.record(&name).await.is_none());

    // Release files: the README is the same in every version (its blocks must not be sent
    // twice); the tarballs differ.
    let src = tmp.path().join("src");
    let readme_bytes = det_bytes("readme", 700_000);
    let readme = write_bytes(&src.join("README.md"), &readme_bytes);
    // Over 2 MiB, so one upload is larger than common default body limits.
    let v1_bytes = det_bytes("hello-v1", 3_000_000);
    let v1 = write_bytes(&src.join("v1/hello_v1.0.0_linux-amd64.tar.gz"), &v1_bytes);
    // Named like an AppImage: it goes through the squashfs chunker (which cuts a file that is
    // not an image with buzhash), and is published whole and byte-exact.
    let app = write_bytes(
        &src.join("v2/hello-x86_64.AppImage"),
        &det_bytes("hello-app", 400_000),
    );
    let v2 = write_bytes(
        &src.join("v2/hello_v1.1.0_linux-amd64.tar.gz"),
        &det_bytes("hello-v2", 900_000),
    );
    let rc = write_bytes(
        &src.join("rc/hello_v1.2.0-rc1_linux-amd64.tar.gz"),
        &det_bytes("hello-rc", 300_000),
    );
    let other = write_bytes(
        &src.join("other/tool-linux-arm64"),
        b"#!/bin/sh\necho tool\n",
    );

    let p1 = publish_ok(
        &server,
        &key_path,
        &[
            "--project",
            "hello",
            "--version",
            "v1.0.0",
            "--owner",
            "tests",
        ],
        &[&v1, &readme],
    );
    assert_eq!(p1["sequence"], "0");
    assert_eq!(p1["name"], name.to_string());
    let after_first = server.stats()["uploads"].clone();

    let p2 = publish_ok(
        &server,
        &key_path,
        &["--project", "hello", "--version", "v1.1.0"],
        &[&v2, &app, &readme],
    );
    assert_eq!(p2["sequence"], "1");
    assert_eq!(p2["previous"], p1["root"]);
    // The README's DAG (3 raw leaves + its root node) was already at the target: the
    // publisher asked and skipped it, and the server never received a block it had.
    let (sent, total, skipped) = pushed_counts(&p2);
    assert!(skipped >= 4, "README blocks skipped: {p2:?}");
    assert_eq!(sent + skipped, total);
    let stats = server.stats()["uploads"].clone();
    assert_eq!(stats["blocks_already_present"], 0, "{stats}");
    let v2_stored =
        stats["blocks_stored"].as_u64().unwrap() - after_first["blocks_stored"].as_u64().unwrap();
    assert_eq!(v2_stored, sent);
    let v2_bytes = stats["bytes"].as_u64().unwrap() - after_first["bytes"].as_u64().unwrap();
    assert!(
        v2_bytes < 900_000 + 400_000 + 100_000,
        "second version uploaded {v2_bytes} bytes: the README was sent again"
    );

    let raw_before = server.stats()["by_kind"]["raw"].as_u64().unwrap_or(0);
    let p3 = publish_ok(
        &server,
        &key_path,
        &[
            "--project",
            "hello",
            "--version",
            "v1.2.0-rc1",
            "--channel",
            "beta",
        ],
        &[&rc],
    );
    assert_eq!(p3["sequence"], "2");
    // Only the path was read: one HEAD per new block, plus GETs of the root, the project
    // directory and its versions file — not the ~40 blocks of the tree so far.
    let raw_requests = server.stats()["by_kind"]["raw"].as_u64().unwrap() - raw_before;
    let (_, new_blocks, _) = pushed_counts(&p3);
    assert_eq!(raw_requests, new_blocks + 3, "{p3:?}");
    let p4 = publish_ok(
        &server,
        &key_path,
        &["--project", "other", "--version", "r1", "--ttl", "30s"],
        &[&other],
    );
    assert_eq!(p4["sequence"], "3");
    let root = root_of(&p4);

    // The record at the target names the newest root, with our TTL.
    let rec = server.record(&name).await.expect("a record is held");
    assert_eq!(rec.sequence, 3);
    assert_eq!(rec.value, format!("/ipfs/{root}"));
    assert_eq!(rec.ttl, Duration::from_secs(30));

    // A republish of an existing version is refused and changes nothing.
    let out = publish(
        &server,
        &key_path,
        TOKEN,
        &["--project", "hello", "--version", "v1.1.0"],
        &[&v2],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already published"), "{err}");
    // A bad token is refused and stores nothing; the record stays.
    let before = server.stats()["uploads"].clone();
    let out = publish(
        &server,
        &key_path,
        "wrong-token",
        &["--project", "hello", "--version", "v9.0.0"],
        &[&v2],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401"), "{err}");
    let after = server.stats()["uploads"].clone();
    assert_eq!(after["blocks_stored"], before["blocks_stored"]);
    assert_eq!(after["accepted"], before["accepted"]);
    assert!(after["refused"].as_u64() > before["refused"].as_u64());
    assert_eq!(server.record(&name).await.unwrap().sequence, 3);

    // Read the tree back through the gateway with the /dist view.
    let cache = tmp.path().join("cache");
    let view = view_of(&server, root, &cache);
    assert_eq!(names(&view, ROOT_INO).await, ["hello", "other"]);
    let hello = path_ino(&view, &["hello"]).await;
    assert_eq!(
        names(&view, hello).await,
        [
            "beta",
            "channels",
            "latest",
            "v1.0.0",
            "v1.1.0",
            "v1.2.0-rc1",
            "versions"
        ]
    );
    let versions = path_ino(&view, &["hello", "versions"]).await;
    assert_eq!(
        read_all(&view, versions).await,
        b"v1.0.0\nv1.1.0\nv1.2.0-rc1\n"
    );
    // latest: the newest stable version; beta: the channel.
    let latest = path_ino(&view, &["hello", "latest"]).await;
    assert_eq!(&view.readlink(latest).await.unwrap()[..], b"v1.1.0");
    let beta = path_ino(&view, &["hello", "beta"]).await;
    assert!(matches!(view.inode(beta).unwrap().kind, Kind::Latest(_)));
    assert_eq!(&view.readlink(beta).await.unwrap()[..], b"v1.2.0-rc1");
    // Bytes and dist.json of the first version.
    let tar = path_ino(
        &view,
        &["hello", "v1.0.0", "hello_v1.0.0_linux-amd64.tar.gz"],
    )
    .await;
    assert_eq!(read_all(&view, tar).await, v1_bytes);
    assert_eq!(
        view.inode(tar).unwrap().perm,
        0o555,
        "listed in dist.json: a binary"
    );
    let rd = path_ino(&view, &["hello", "v1.1.0", "README.md"]).await;
    assert_eq!(read_all(&view, rd).await, readme_bytes);
    let app_ino = path_ino(&view, &["hello", "v1.1.0", "hello-x86_64.AppImage"]).await;
    assert_eq!(
        read_all(&view, app_ino).await,
        det_bytes("hello-app", 400_000)
    );
    assert_eq!(view.inode(app_ino).unwrap().perm, 0o555);
    let dj = path_ino(&view, &["hello", "v1.0.0", "dist.json"]).await;
    let dist: serde_json::Value = serde_json::from_slice(&read_all(&view, dj).await).unwrap();
    assert_eq!(dist["id"], "hello");
    assert_eq!(dist["version"], "v1.0.0");
    assert_eq!(dist["releaseLink"], "hello/v1.0.0");
    assert_eq!(dist["owner"], "tests");
    let amd64 = &dist["platforms"]["linux"]["archs"]["amd64"];
    assert_eq!(amd64["link"], "/hello_v1.0.0_linux-amd64.tar.gz");
    assert_eq!(amd64["sha512"], sha512_hex(&v1_bytes));
    assert_eq!(amd64["cid"], view.inode(tar).unwrap().cid.to_string());
    let other_ino = path_ino(&view, &["other", "r1", "tool-linux-arm64"]).await;
    assert_eq!(read_all(&view, other_ino).await, b"#!/bin/sh\necho tool\n");

    // And through a real FUSE mount of the published root.
    let mnt = tmp.path().join("mnt");
    let url = server.url.clone();
    let root_s = root.to_string();
    let mcache = tmp.path().join("mcache");
    let checked = tokio::task::spawn_blocking(move || {
        let mount = Mount::try_start(
            &mnt,
            &MountOpts {
                root: &root_s,
                gateways: &[url.as_str()],
                cache: &mcache,
                extra: &[],
            },
        )
        .expect("mount the published root");
        assert!(is_mounted(&mnt));
        let read = |p: &str| std::fs::read(mnt.join(p)).unwrap();
        let link = |p: &str| std::fs::read_link(mnt.join(p)).unwrap();
        assert_eq!(link("hello/latest"), PathBuf::from("v1.1.0"));
        assert_eq!(link("hello/beta"), PathBuf::from("v1.2.0-rc1"));
        let versions = read("hello/versions");
        let tar = read("hello/latest/hello_v1.1.0_linux-amd64.tar.gz");
        let rc = read("hello/beta/hello_v1.2.0-rc1_linux-amd64.tar.gz");
        drop(mount);
        (versions, tar, rc)
    })
    .await
    .unwrap();
    assert_eq!(checked.0, b"v1.0.0\nv1.1.0\nv1.2.0-rc1\n");

    // --root builds on a given root instead of the record's: a branch off the first
    // release, read back from a second gateway (--gateway) since the target is asked first.
    let p5 = publish_ok(
        &server,
        &key_path,
        &[
            "--project",
            "hello",
            "--version",
            "v1.0.1",
            "--root",
            &p1["root"],
            "--gateway",
            &server.url,
        ],
        &[&readme],
    );
    assert_eq!(p5["sequence"], "4");
    assert_eq!(p5["previous"], p1["root"]);
    let view = view_of(&server, root_of(&p5), &tmp.path().join("cache5"));
    let versions = path_ino(&view, &["hello", "versions"]).await;
    assert_eq!(read_all(&view, versions).await, b"v1.0.0\nv1.0.1\n");
    assert_eq!(names(&view, ROOT_INO).await, ["hello"]);
    assert_eq!(checked.1, det_bytes("hello-v2", 900_000));
    assert_eq!(checked.2, det_bytes("hello-rc", 300_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_refused_without_a_token_or_with_a_bad_car() {
    let tmp = tempdir();
    let server = Server::start(tmp.path(), &["--upload-max-size", "4K"]);
    let car = {
        let mut v = distfs::car::encode_header(&[]);
        let b = distfs::block::Block::encode(
            cid::Version::V1,
            distfs::block::codec::RAW,
            bytes::Bytes::from_static(b"upload me"),
        );
        v.extend(distfs::car::encode_section(&b));
        (v, *b.cid())
    };
    let http = reqwest::Client::new();
    let post = |auth: Option<&str>, ct: &str, body: Vec<u8>| {
        let mut req = http
            .post(format!("{}/api/v1/car", server.url))
            .header("content-type", ct)
            .body(body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send()
    };
    let raw = format!("{}/ipfs/{}?format=raw", server.url, car.1);
    let car_type = "application/vnd.ipld.car";
    let resp = post(None, car_type, car.0.clone()).await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    let resp = post(Some("Bearer nope"), car_type, car.0.clone())
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let bearer = format!("Bearer {TOKEN}");
    let resp = post(Some(&bearer), "application/octet-stream", car.0.clone())
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let mut corrupt = car.0.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x20;
    let resp = post(Some(&bearer), car_type, corrupt).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("nothing was stored"));
    assert_eq!(reqwest::get(&raw).await.unwrap().status(), 404);
    // Over --upload-max-size: refused by the declared length, and (streamed without one) by
    // the bytes read.
    let big = {
        let mut v = distfs::car::encode_header(&[]);
        let b = distfs::block::Block::encode(
            cid::Version::V1,
            distfs::block::codec::RAW,
            bytes::Bytes::from(vec![7u8; 5000]),
        );
        v.extend(distfs::car::encode_section(&b));
        v
    };
    let resp = post(Some(&bearer), car_type, big.clone()).await.unwrap();
    assert_eq!(resp.status(), 413);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(1000).map(|c| Ok(c.to_vec())).collect();
    let resp = http
        .post(format!("{}/api/v1/car", server.url))
        .header("content-type", car_type)
        .header("authorization", &bearer)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // The good CAR with the token goes in, and is then served.
    let resp = post(Some(&bearer), car_type, car.0.clone()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let receipt: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(receipt["stored"], 1);
    let got = reqwest::get(&raw).await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(&got.bytes().await.unwrap()[..], b"upload me");

    // A gateway without a token file refuses every upload.
    let plain = tmp.path().join("plain");
    let mut child = Command::new(distfs_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--store"])
        .arg(&plain)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let resp = http
        .post(format!("http://{}/api/v1/car", line.trim()))
        .header("content-type", car_type)
        .header("authorization", &bearer)
        .body(car.0)
        .send()
        .await;
    let _ = child.kill();
    let _ = harness::wait_bounded(&mut child, Duration::from_secs(10));
    assert_eq!(resp.unwrap().status(), 403);
}

/// A squashfs image of `files` (name, bytes), reproducible (fixed times, root-owned).
fn squashfs_image(dir: &Path, name: &str, files: &[(&str, Vec<u8>)]) -> PathBuf {
    let tree = dir.join(format!("{name}.tree"));
    for (file, bytes) in files {
        write_bytes(&tree.join(file), bytes);
    }
    let out = dir.join(name);
    let status = Command::new("mksquashfs")
        .arg(&tree)
        .arg(&out)
        .args([
            "-noappend",
            "-root-owned",
            "-all-time",
            "0",
            "-mkfs-time",
            "0",
        ])
        .args(["-no-xattrs", "-comp", "gzip", "-quiet", "-no-progress"])
        .stdout(Stdio::null())
        .status()
        .expect("run mksquashfs (apt package squashfs-tools; scripts/lib.sh installs it)");
    assert!(status.success(), "mksquashfs failed");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_versions_share_blocks_through_the_squashfs_chunker() {
    let tmp = tempdir();
    let server = Server::start(tmp.path(), &[]);
    let key_path = tmp.path().join("key");
    Keypair::generate().save(&key_path).unwrap();
    // Version 2 adds a file that sorts first, so every later byte of the image moves: fixed
    // 256 KiB chunks would share almost nothing, squashfs-aware chunks share the files.
    let lib = det_bytes("lib", 1_500_000);
    let data = det_bytes("data", 1_500_000);
    let new = det_bytes("new", 300_000);
    let v1 = squashfs_image(
        tmp.path(),
        "v1/app.squashfs",
        &[("lib.so", lib.clone()), ("data.bin", data.clone())],
    );
    let v2 = squashfs_image(
        tmp.path(),
        "v2/app.squashfs",
        &[("a-new.dat", new), ("lib.so", lib), ("data.bin", data)],
    );
    publish_ok(
        &server,
        &key_path,
        &["--project", "app", "--version", "1"],
        &[&v1],
    );
    let before = server.stats()["uploads"]["bytes"].as_u64().unwrap();
    let p2 = publish_ok(
        &server,
        &key_path,
        &["--project", "app", "--version", "2"],
        &[&v2],
    );
    let sent = server.stats()["uploads"]["bytes"].as_u64().unwrap() - before;
    let image = std::fs::read(&v2).unwrap();
    eprintln!("version 2: {sent} of {} image bytes uploaded", image.len());
    assert!(
        sent < 400_000,
        "version 2 sent {sent} of its {} image bytes: its unchanged files were not shared",
        image.len()
    );
    let view = view_of(&server, root_of(&p2), &tmp.path().join("cache"));
    let ino = path_ino(&view, &["app", "2", "app.squashfs"]).await;
    assert_eq!(read_all(&view, ino).await, image);
}

/// Issue 4's end to end with the real publisher: a mount follows the key's name while
/// `distfs publish` adds a version; `latest` moves to it within the TTL, and a file of the
/// first version opened before the switch reads to its end.
#[test]
fn a_mount_following_the_name_sees_a_published_version() {
    use std::io::Read;
    let tmp = tempdir();
    let server = Server::start(tmp.path(), &[]);
    let key_path = tmp.path().join("key");
    let key = Keypair::generate();
    key.save(&key_path).unwrap();
    let src = tmp.path().join("src");
    let v1_bytes = det_bytes("follow-v1", 2_000_000);
    let v1 = write_bytes(&src.join("1/tool_linux-amd64.tar.gz"), &v1_bytes);
    let v2_bytes = det_bytes("follow-v2", 1_500_000);
    let v2 = write_bytes(&src.join("2/tool_linux-amd64.tar.gz"), &v2_bytes);
    let ver = |v: &'static str| ["--project", "tool", "--version", v, "--ttl", "1s"];
    publish_ok(&server, &key_path, &ver("1.0.0"), &[&v1]);

    let root = format!("/ipns/{}", key.name());
    let mnt = tmp.path().join("mnt");
    let mount = Mount::try_start(
        &mnt,
        &MountOpts {
            root: &root,
            gateways: &[server.url.as_str()],
            cache: &tmp.path().join("mcache"),
            extra: &["--min-ttl", "1", "--max-ttl", "2"],
        },
    )
    .expect("mount the name");
    let target = |p: &str| std::fs::read_link(mount.path(p)).map(|t| t.display().to_string());
    assert_eq!(target("tool/latest").unwrap(), "1.0.0");
    let mut old = std::fs::File::open(mount.path("tool/1.0.0/tool_linux-amd64.tar.gz")).unwrap();
    let mut head = vec![0u8; 4096];
    old.read_exact(&mut head).unwrap();

    publish_ok(&server, &key_path, &ver("1.1.0"), &[&v2]);
    harness::poll("latest to move to 1.1.0", Duration::from_secs(30), || {
        (target("tool/latest").ok()? == "1.1.0").then_some(())
    });
    let new = std::fs::read(mount.path("tool/latest/tool_linux-amd64.tar.gz")).unwrap();
    assert!(new == v2_bytes, "the new version's bytes through latest");
    let mut rest = Vec::new();
    old.read_to_end(&mut rest).unwrap();
    head.extend_from_slice(&rest);
    assert!(
        head == v1_bytes,
        "the file opened before the switch read to its end"
    );
}
