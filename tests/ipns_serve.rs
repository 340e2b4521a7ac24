//! `distfs serve` as an IPNS record holder, end to end over real HTTP: `PUT
//! /routing/v1/ipns/{name}` accepts only records that verify for the name and raise its
//! sequence (the refusals name their reason), accepted records persist across a restart and
//! come back on both GET routes with `max-age` from their TTL; and `fetch::RecordClient`
//! reads them through the gateway and routing APIs, bounded in size.

#[path = "support/mod.rs"]
mod support;

// Shared with the mount tests; this file uses only the `Serve` guard.
#[allow(dead_code)]
#[path = "mount/harness.rs"]
mod harness;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use distfs::fetch::{RecordApi, RecordClient, RecordFetchError};
use distfs::name::{self, Keypair};
use harness::Serve;
use support::tempdir;

const DAY: Duration = Duration::from_secs(86_400);
const RECORD_TYPE: &str = "application/vnd.ipfs.ipns-record";

async fn put(base: &str, name: &str, body: Bytes, content_type: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .put(format!("{base}/routing/v1/ipns/{name}"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn client(base: &str, api: RecordApi) -> RecordClient {
    RecordClient::new(base, api, reqwest::Client::new(), Duration::from_secs(10)).unwrap()
}

fn record(key: &Keypair, seq: u64, ttl: Duration) -> Bytes {
    let value = format!("/ipfs/bafkqaaa/{seq}");
    name::create(key, &value, seq, SystemTime::now() + DAY, ttl).unwrap()
}

#[tokio::test]
async fn put_accepts_only_verified_higher_sequences_and_persists_them() {
    let store = tempdir();
    let mut serve = Serve::start(store.path());
    let key = Keypair::generate();
    let name = key.name().to_string();
    let gw = client(&serve.url, RecordApi::Gateway);
    let routing = client(&serve.url, RecordApi::Routing);
    assert_eq!(
        gw.get(&name).await.unwrap(),
        None,
        "nothing held yet: 404 → None"
    );

    let r5 = record(&key, 5, Duration::from_secs(42));
    assert_eq!(put(&serve.url, &name, r5.clone(), RECORD_TYPE).await.0, 200);
    assert_eq!(gw.get(&name).await.unwrap(), Some(r5.clone()));
    assert_eq!(routing.get(&name).await.unwrap(), Some(r5.clone()));
    // The base58 spelling of the same name reaches the same record.
    let b58 = cid::multibase::Base::Base58Btc.encode(key.name().multihash().to_bytes());
    assert_eq!(routing.get(&b58).await.unwrap(), Some(r5.clone()));
    let resp = reqwest::Client::new()
        .get(format!("{}/routing/v1/ipns/{name}", serve.url))
        .header("accept", RECORD_TYPE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["cache-control"], "public, max-age=42");

    // Refusals, each with its reason in the body.
    let other = Keypair::generate();
    let cases: Vec<(&str, Bytes, &str, u16, &str)> = vec![
        (
            "same sequence",
            record(&key, 5, DAY),
            RECORD_TYPE,
            409,
            "not above the held sequence 5",
        ),
        (
            "lower sequence",
            record(&key, 4, DAY),
            RECORD_TYPE,
            409,
            "sequence 4",
        ),
        (
            "another key's record",
            record(&other, 9, DAY),
            RECORD_TYPE,
            400,
            "signatureV2",
        ),
        (
            "expired",
            name::create(&key, "/ipfs/bafkqaaa", 9, SystemTime::now() - DAY, DAY).unwrap(),
            RECORD_TYPE,
            400,
            "expired",
        ),
        (
            "garbage",
            Bytes::from_static(b"\xff\xfe garbage"),
            RECORD_TYPE,
            400,
            "not an IPNS record",
        ),
        (
            "oversize",
            Bytes::from(vec![0u8; 11 * 1024]),
            RECORD_TYPE,
            400,
            "limit",
        ),
        (
            "wrong type",
            record(&key, 9, DAY),
            "application/octet-stream",
            406,
            "Content-Type",
        ),
    ];
    for (what, body, ct, status, reason) in cases {
        let (got, text) = put(&serve.url, &name, body, ct).await;
        assert_eq!(got, status, "{what}: {text}");
        assert!(text.contains(reason), "{what}: {text:?} lacks {reason:?}");
    }
    assert_eq!(
        gw.get(&name).await.unwrap(),
        Some(r5.clone()),
        "refusals left it alone"
    );

    // Persisted: the file is there, and a restarted serve still holds and defends it.
    let file = store
        .path()
        .join("ipns")
        .join(format!("{name}.ipns-record"));
    assert_eq!(std::fs::read(&file).unwrap(), r5.to_vec());
    serve.kill();
    let serve = Serve::start(store.path());
    let routing = client(&serve.url, RecordApi::Routing);
    assert_eq!(routing.get(&name).await.unwrap(), Some(r5.clone()));
    assert_eq!(
        put(&serve.url, &name, record(&key, 5, DAY), RECORD_TYPE)
            .await
            .0,
        409
    );
    let r6 = record(&key, 6, DAY);
    assert_eq!(put(&serve.url, &name, r6.clone(), RECORD_TYPE).await.0, 200);
    assert_eq!(routing.get(&name).await.unwrap(), Some(r6));
}

/// A one-shot HTTP server answering every request with `status`, `content_type` and `body`.
fn canned(status: &str, content_type: &'static str, body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let status = status.to_string();
    std::thread::spawn(move || {
        // Bounded: serves at most 4 connections, then the thread ends.
        for stream in listener.incoming().take(4) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn record_client_refuses_what_is_not_a_bounded_record() {
    let name = Keypair::generate().name().to_string();
    let big = canned("200 OK", RECORD_TYPE, vec![0u8; 20 * 1024]);
    let err = client(&big, RecordApi::Gateway)
        .get(&name)
        .await
        .unwrap_err();
    assert!(matches!(err, RecordFetchError::TooLarge { .. }), "{err}");
    let html = canned("200 OK", "text/html", b"<html>".to_vec());
    let err = client(&html, RecordApi::Routing)
        .get(&name)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RecordFetchError::BadContentType { .. }),
        "{err}"
    );
    let down = canned("503 Service Unavailable", "text/plain", b"busy".to_vec());
    let err = client(&down, RecordApi::Routing)
        .get(&name)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RecordFetchError::Status { status: 503, .. }),
        "{err}"
    );
}
