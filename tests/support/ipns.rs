//! IPNS records for tests: signing one for a CID, and publishing it to a `distfs serve`
//! through its delegated-routing PUT (the way a publisher pushes one).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use distfs::name::Keypair;

/// A record for `/ipfs/{cid}` with sequence `seq` and TTL `ttl`, valid for a day.
pub fn record(key: &Keypair, cid: &str, seq: u64, ttl: Duration) -> Vec<u8> {
    record_until(
        key,
        cid,
        seq,
        SystemTime::now() + Duration::from_secs(86_400),
        ttl,
    )
}

/// A record for `/ipfs/{cid}` valid until `eol` (in the past for an expired one).
pub fn record_until(key: &Keypair, cid: &str, seq: u64, eol: SystemTime, ttl: Duration) -> Vec<u8> {
    distfs::name::create(key, &format!("/ipfs/{cid}"), seq, eol, ttl)
        .expect("signing a record")
        .to_vec()
}

/// PUTs `bytes` as the record of `name` to the gateway at `base` (`PUT
/// /routing/v1/ipns/{name}`) with curl; the HTTP status ("200" when accepted). `dir` holds
/// the request body file.
pub fn put_record(base: &str, name: &str, bytes: &[u8], dir: &Path) -> String {
    let file = dir.join(format!("put-{}-{}.rec", bytes.len(), std::process::id()));
    std::fs::write(&file, bytes).expect("writing the record file");
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "PUT",
            "-H",
        ])
        .arg("content-type: application/vnd.ipfs.ipns-record")
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg(format!("{base}/routing/v1/ipns/{name}"))
        .output()
        .expect("running curl");
    assert!(out.status.success(), "curl failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
