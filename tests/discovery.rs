//! Provider discovery, end to end: a `distfs serve --accept-providers` plays the delegated
//! routing endpoint, an origin `distfs serve` holding the distribution is registered there as
//! an HTTP provider of its root, and a real mount whose only configured gateway is down (a
//! closed port) finds the origin through `--routing` and reads every file with the right
//! bytes; `distfs status` shows the provider with its origin. A gateway started with
//! `--announce` registers itself. Needs /dev/fuse and fusermount3.

#[path = "support/mod.rs"]
mod support;

#[allow(dead_code)]
#[path = "mount/harness.rs"]
mod harness;

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::time::Duration;

use harness::{http_get_json, poll, run_ok, Mount, MountOpts, Serve};
use sha2::{Digest, Sha256};
use support::{det_bytes, distfs_add, distfs_bin, tempdir, write_bytes};

const FILES: [(&str, usize); 3] = [
    ("proj/1.0/app.bin", 1_310_720 + 17),
    ("proj/1.0/lib/data.bin", 300_000),
    ("proj/1.0/README", 12),
];

/// `PUT path` with a JSON body on `base`; the status code.
fn put_json(base: &str, path: &str, body: &str) -> u16 {
    let host = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(host).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read the response");
    String::from_utf8_lossy(&resp)
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .expect("an HTTP status")
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn serve_with(store: &std::path::Path, extra: &[&str]) -> Serve {
    let args: Vec<&OsStr> = extra.iter().map(OsStr::new).collect();
    Serve::start_with(store, &args, Stdio::null())
}

#[test]
fn a_provider_found_through_routing_serves_when_the_gateway_is_down() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    for (rel, len) in FILES {
        write_bytes(&src.join(rel), &det_bytes(rel, len));
    }
    let store = tmp.path().join("store");
    let root = distfs_add(&src, &["--store", store.to_str().unwrap()]).expect("distfs add");
    let origin = Serve::start(&store);
    let routing = serve_with(&tmp.path().join("routing-store"), &["--accept-providers"]);

    // Register the origin as an HTTP provider of the root, the way `serve --announce` does.
    let port = origin.url.rsplit(':').next().unwrap();
    let record = format!(
        r#"{{"Providers":[{{"Schema":"peer","ID":"k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8","Addrs":["/ip4/127.0.0.1/tcp/{port}/http"],"Protocols":["transport-ipfs-gateway-http"],"Keys":["{root}"]}}]}}"#
    );
    assert_eq!(
        put_json(&routing.url, "/routing/v1/providers", &record),
        204
    );
    let answer = http_get_json(
        &routing.url,
        &format!("/routing/v1/providers/{root}?filter-protocols=transport-ipfs-gateway-http"),
    );
    assert_eq!(
        answer["Providers"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );

    let down = format!("http://127.0.0.1:{}", closed_port());
    let cache = tmp.path().join("cache");
    let m = Mount::try_start(
        &tmp.path().join("mnt"),
        &MountOpts {
            root: &root,
            gateways: &[&down],
            cache: &cache,
            extra: &["--routing", &routing.url, "--read-timeout", "10"],
        },
    )
    .unwrap_or_else(|e| panic!("mount: {e}"));
    for (rel, len) in FILES {
        let got = std::fs::read(m.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"));
        assert_eq!(
            hex::encode(Sha256::digest(&got)),
            hex::encode(Sha256::digest(det_bytes(rel, len))),
            "{rel}: wrong bytes"
        );
    }
    assert!(
        origin.raw_requests() > 0,
        "the blocks came from the provider"
    );

    let status = run_ok(
        distfs_bin().to_str().unwrap(),
        &["status", "--json", "--cache-dir", cache.to_str().unwrap()],
    );
    let status: serde_json::Value = serde_json::from_slice(&status).expect("status JSON");
    let gateways = status["gateways"].as_array().expect("gateways in status");
    let found = gateways
        .iter()
        .find(|g| g["origin"] == "routing")
        .unwrap_or_else(|| panic!("no routing provider in {gateways:?}"));
    assert_eq!(found["url"], format!("http://127.0.0.1:{port}"));
    assert!(found["blocks"].as_u64().unwrap_or(0) > 0, "{found}");
}

#[test]
fn serve_announces_itself_to_a_routing_endpoint() {
    let tmp = tempdir();
    let routing = serve_with(&tmp.path().join("routing-store"), &["--accept-providers"]);
    let cid = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";
    let _gw = serve_with(
        &tmp.path().join("store"),
        &[
            "--announce",
            &routing.url,
            "--public-url",
            "http://127.0.0.1:9",
            "--announce-root",
            cid,
        ],
    );
    let path = format!("/routing/v1/providers/{cid}");
    let answer = poll(
        "the announcement to reach the routing endpoint",
        Duration::from_secs(20),
        || {
            let a = http_get_json(&routing.url, &path);
            (a["Providers"].as_array().map(Vec::len) == Some(1)).then_some(a)
        },
    );
    let rec = &answer["Providers"][0];
    assert_eq!(rec["Schema"], "peer");
    assert_eq!(rec["Addrs"][0], "/ip4/127.0.0.1/tcp/9/http");
    assert_eq!(rec["Protocols"][0], "transport-ipfs-gateway-http");
    // Without the gateway protocol in the filter, nothing matches.
    let other = http_get_json(
        &routing.url,
        &format!("{path}?filter-protocols=transport-bitswap"),
    );
    assert_eq!(other["Providers"].as_array().map(Vec::len), Some(0));
    // A gateway that does not accept announcements refuses them.
    let plain = serve_with(&tmp.path().join("plain-store"), &[]);
    let body = answer
        .to_string()
        .replace("\"Schema\"", &format!("\"Keys\":[\"{cid}\"],\"Schema\""));
    assert_eq!(put_json(&plain.url, "/routing/v1/providers", &body), 406);
}
