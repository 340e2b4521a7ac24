//! IPNS records and keys against independent implementations: the gateway-conformance
//! fixtures (made by boxo/Kubo) and the JS `ipns` package, in both directions, plus the
//! refusals the mount relies on (bad signature, foreign key, expired, oversize, garbage).

mod support;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use distfs::name::{self, IpnsName, Keypair, RecordError};
use support::{fixture, tempdir, Oracles};

const HOUR: Duration = Duration::from_secs(3600);

/// (file under fixtures/, expected value or the refusal's kind, TTL seconds, sequence).
const FIXTURES: &[(&str, Result<&str, &str>, u64, u64)] = &[
    (
        "fixtures/ipns_records/k51qzi5uqu5dlkw8pxuw9qmqayfdeh4kfebhmreauqdc6a7c3y7d5i9fi8mk9w_v1-v2.ipns-record",
        Ok("/ipfs/bafkqaddwgevxmmraojswg33smq"),
        1800,
        0,
    ),
    (
        "fixtures/ipns_records/k51qzi5uqu5dit2ku9mutlfgwyz8u730on38kd10m97m36bjt66my99hb6103f_v2.ipns-record",
        Ok("/ipfs/bafkqadtwgiww63tmpeqhezldn5zgi"),
        1800,
        0,
    ),
    (
        "fixtures/ipns_records/k51qzi5uqu5dilgf7gorsh9vcqqq4myo6jd4zmqkuy9pxyxi5fua3uf7axph4y_v1-v2-broken-signature-v1.ipns-record",
        Ok("/ipfs/bafkqahtwgevxmmrao5uxi2bamjzg623fnyqhg2lhnzqxi5lsmuqhmmi"),
        1800,
        0,
    ),
    (
        "fixtures/ipns_records/k51qzi5uqu5dm4tm0wt8srkg9h9suud4wuiwjimndrkydqm81cqtlb5ak6p7ku_v1.ipns-record",
        Err("missing-field"),
        0,
        0,
    ),
    (
        "fixtures/ipns_records/k51qzi5uqu5dlmit2tuwdvnx4sbnyqgmvbxftl0eo3f33wwtb9gr7yozae9kpw_v1-v2-broken-v1-value.ipns-record",
        Err("v1-mismatch"),
        0,
        0,
    ),
    (
        "fixtures/ipns_records/k51qzi5uqu5diamp7qnnvs1p1gzmku3eijkeijs3418j23j077zrkok63xdm8c_v1-v2-broken-signature-v2.ipns-record",
        Err("bad-signature"),
        0,
        0,
    ),
    (
        "fixtures/gateway-cache/k51qzi5uqu5dlxdsdu5fpuu7h69wu4ohp32iwm9pdt9nq3y5rpn3ln9j12zfhe.ipns-record",
        Ok("/ipfs/bafybeib3ffl2teiqdncv3mkz4r23b5ctrwkzrrhctdbne6iboayxuxk5ui"),
        876_600 * 3600,
        0,
    ),
    (
        "fixtures/gateway-cache/k51qzi5uqu5djokp3m1keo36hoxtd6u3a1d2rg1camf6al7p3huy63dojlm57c.ipns-record",
        Ok("/ipfs/bafybeib3ffl2teiqdncv3mkz4r23b5ctrwkzrrhctdbne6iboayxuxk5ui/root2"),
        1800,
        0,
    ),
    (
        "fixtures/path_gateway_dag/k51qzi5uqu5dghjous0agrwavl8vzl64xckoqzwqeqwudfr74kfd11zcyk3b7l.ipns-record",
        Ok("/ipfs/bafyreibs4utpgbn7uqegmd2goqz4bkyflre2ek2iwv743fhvylwi4zeeim"),
        876_600 * 3600,
        0,
    ),
    (
        "fixtures/subdomain_gateway/12D3KooWLQzUv2FHWGVPXTXSZpdHs7oHbXub2G5WC8Tx4NQhyd2d.ipns-record",
        Ok("/ipfs/bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am"),
        876_600 * 3600,
        0,
    ),
    (
        "tooling/ipns/_fixtures/k51qzi5uqu5dgh7y9l90nqs6tvnzcm9erbt8fhzg3fu79p5qt9zb2izvfu51ki.ipns-record",
        Ok("/ipfs/bafyaaeykceeaeeqlnbswy3dpo5xxe3debimaw"),
        60,
        1,
    ),
    (
        "tooling/ipns/_fixtures/k51qzi5uqu5dh71qgwangrt6r0nd4094i88nsady6qgd1dhjcyfsaqmpp143ab.ipns-record",
        Ok("/ipfs/bafkreidfdrlkeq4m4xnxuyx6iae76fdm4wgl5d4xzsb77ixhyqwumhz244"),
        876_600 * 3600,
        0,
    ),
    (
        // RSA: the key travels in the record and must hash to the name.
        "fixtures/subdomain_gateway/QmVujd5Vb7moysJj8itnGufN7MEtPRCNHkKpNuA4onsRa3.ipns-record",
        Ok("/ipfs/bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am"),
        876_600 * 3600,
        0,
    ),
];

/// The name a fixture file is for: its stem up to the first `_`.
fn fixture_name(rel: &str) -> IpnsName {
    let stem = Path::new(rel).file_stem().unwrap().to_str().unwrap();
    stem.split('_').next().unwrap().parse().unwrap()
}

#[test]
fn conformance_fixtures_verify_or_are_refused_for_the_right_reason() {
    let now = SystemTime::now();
    for (rel, want, ttl_s, seq) in FIXTURES {
        let bytes = std::fs::read(fixture(rel)).unwrap();
        let got = name::verify(&fixture_name(rel), &bytes, now);
        match (want, got) {
            (Ok(value), Ok(rec)) => {
                assert_eq!(rec.value, *value, "{rel}");
                assert_eq!(rec.ttl, Duration::from_secs(*ttl_s), "{rel}");
                assert_eq!(rec.sequence, *seq, "{rel}");
                assert_eq!(&rec.raw[..], &bytes[..], "{rel}");
            }
            (Err(kind), Err(e)) => assert_eq!(e.kind(), *kind, "{rel}: {e}"),
            (want, got) => panic!("{rel}: wanted {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn the_rsa_fixture_is_refused_under_another_name_and_with_a_flipped_signature() {
    let rel =
        "fixtures/subdomain_gateway/QmVujd5Vb7moysJj8itnGufN7MEtPRCNHkKpNuA4onsRa3.ipns-record";
    let bytes = std::fs::read(fixture(rel)).unwrap();
    let now = SystemTime::now();
    // Under an Ed25519 name, the embedded RSA key does not hash to the name.
    let err = name::verify(&fixture_name(FIXTURES[0].0), &bytes, now).unwrap_err();
    assert_eq!(err.kind(), "key-mismatch", "{err}");
    // The last bytes are inside signatureV2 or data: any flip breaks the signature.
    let mut forged = bytes.clone();
    let at = forged.len() / 2;
    forged[at] ^= 0x40;
    assert!(name::verify(&fixture_name(rel), &forged, now).is_err());
}

#[test]
fn a_fixture_is_refused_under_another_name_and_after_its_eol() {
    let rel = FIXTURES[0].0;
    let bytes = std::fs::read(fixture(rel)).unwrap();
    let other = fixture_name(FIXTURES[1].0);
    let err = name::verify(&other, &bytes, SystemTime::now()).unwrap_err();
    assert_eq!(err, RecordError::BadSignature);
    // Validity 2123-08-14T12:17:03.694052Z: a clock past it sees the record expired.
    let later = SystemTime::UNIX_EPOCH + Duration::from_secs(4_900_000_000);
    let err = name::verify(&fixture_name(rel), &bytes, later).unwrap_err();
    assert!(
        matches!(err, RecordError::Expired { ref eol } if eol == "2123-08-14T12:17:03.694052Z")
    );
}

fn os<S: AsRef<OsStr> + ?Sized>(s: &S) -> &OsStr {
    s.as_ref()
}

#[test]
fn key_gen_cli_writes_a_key_that_js_signs_with_under_the_same_name() {
    let oracles = Oracles::get();
    let dir = tempdir();
    let key = dir.path().join("publisher.key");
    let out = Command::new(support::distfs_bin())
        .args([os("key"), os("gen"), key.as_os_str()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(printed.starts_with("k51qzi5uqu5d"), "{printed}");
    assert_eq!(Keypair::load(&key).unwrap().name().to_string(), printed);
    // Never overwrites: a second gen on the same file fails and leaves the key alone.
    let again = Command::new(support::distfs_bin())
        .args([os("key"), os("gen"), key.as_os_str()])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    assert_eq!(Keypair::load(&key).unwrap().name().to_string(), printed);

    // JS reads our key file and signs under the very name we printed; we verify it.
    let rec = dir.path().join("js.rec");
    let js = oracles
        .ipns(&[
            os("create"),
            key.as_os_str(),
            os("/ipfs/bafkqaaa"),
            os("3"),
            os("3600000"),
            os("60000000000"),
            rec.as_os_str(),
        ])
        .unwrap();
    assert_eq!(js["name"], printed.as_str());
    let verified = name::verify(
        &printed.parse().unwrap(),
        &std::fs::read(&rec).unwrap(),
        SystemTime::now(),
    )
    .unwrap();
    assert_eq!(
        (verified.value.as_str(), verified.sequence),
        ("/ipfs/bafkqaaa", 3)
    );
}

#[test]
fn records_made_by_js_verify_in_distfs() {
    let oracles = Oracles::get();
    let dir = tempdir();
    let key = dir.path().join("js.key");
    let made = oracles.ipns(&[os("keygen"), key.as_os_str()]).unwrap();
    let js_name = made["name"].as_str().unwrap().to_string();
    // Our reading of a key file written by JS gives the same name.
    let out = Command::new(support::distfs_bin())
        .args([os("key"), os("name"), key.as_os_str()])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), js_name);
    let name: IpnsName = js_name.parse().unwrap();
    let now = SystemTime::now();
    for (shape, seq, ttl_ns) in [
        ("v1v2", "1", "300000000000"),
        ("v2", "18446744073709551615", "1"),
    ] {
        let value = "/ipns/k51qzi5uqu5dk3v4rmjber23h16xnr23bsggmqqil9z2gduiis5se8dht36dam";
        let rec = dir.path().join(format!("{shape}.rec"));
        oracles
            .ipns(&[
                os("create"),
                key.as_os_str(),
                os(value),
                os(seq),
                os("86400000"),
                os(ttl_ns),
                rec.as_os_str(),
                os(shape),
            ])
            .unwrap();
        let bytes = std::fs::read(&rec).unwrap();
        let r = name::verify(&name, &bytes, now).unwrap_or_else(|e| panic!("{shape}: {e}"));
        assert_eq!(r.value, value);
        assert_eq!(r.sequence.to_string(), seq);
        assert_eq!(r.ttl.as_nanos().to_string(), ttl_ns);
        // JS's 9-digit validity is about a day ahead.
        let left = r.validity.duration_since(now).unwrap();
        assert!(left > 23 * HOUR && left <= 25 * HOUR, "{shape}: {left:?}");
        // Two days later it has expired.
        let err = name::verify(&name, &bytes, now + 48 * HOUR).unwrap_err();
        assert_eq!(err.kind(), "expired", "{shape}");
        // One flipped bit anywhere in the signed data breaks it.
        let mut forged = bytes.clone();
        let at = forged.len() - 3;
        forged[at] ^= 0x01;
        assert!(
            name::verify(&name, &forged, now).is_err(),
            "{shape}: forged accepted"
        );
    }
    // Over 10 KiB: JS signs it, distfs refuses it before parsing.
    let big = format!("/ipfs/bafkqaaa/{}", "a".repeat(11 * 1024));
    let rec = dir.path().join("big.rec");
    oracles
        .ipns(&[
            os("create"),
            key.as_os_str(),
            os(&big),
            os("1"),
            os("86400000"),
            os("1"),
            rec.as_os_str(),
        ])
        .unwrap();
    let err = name::verify(&name, &std::fs::read(&rec).unwrap(), now).unwrap_err();
    assert_eq!(err.kind(), "too-large");
}

#[test]
fn records_made_by_distfs_validate_in_js() {
    let oracles = Oracles::get();
    let dir = tempdir();
    let key = Keypair::generate();
    let key_name = key.name().to_string();
    let eol = SystemTime::now() + 48 * HOUR;
    for (i, (value, seq, ttl)) in [
        (
            "/ipfs/bafybeib3ffl2teiqdncv3mkz4r23b5ctrwkzrrhctdbne6iboayxuxk5ui",
            0u64,
            300u64,
        ),
        (
            "/ipfs/bafybeib3ffl2teiqdncv3mkz4r23b5ctrwkzrrhctdbne6iboayxuxk5ui/root2",
            24,
            1,
        ),
        ("/ipns/dist.ipfs.tech", u64::MAX, 3600),
    ]
    .into_iter()
    .enumerate()
    {
        let bytes = name::create(&key, value, seq, eol, Duration::from_secs(ttl)).unwrap();
        let rec = dir.path().join(format!("{i}.rec"));
        std::fs::write(&rec, &bytes).unwrap();
        let js = oracles
            .ipns(&[os("validate"), os(&key_name), rec.as_os_str()])
            .unwrap_or_else(|e| panic!("JS refused our record {i}: {e}"));
        assert_eq!(js["value"], value);
        assert_eq!(js["sequence"], seq.to_string());
        assert_eq!(js["ttl"], (u128::from(ttl) * 1_000_000_000).to_string());
        // The JS name spelling (base58) names the same key.
        let b58 = key.name().multihash().to_bytes();
        let b58 = cid::multibase::Base::Base58Btc.encode(b58);
        assert_eq!(b58.parse::<IpnsName>().unwrap().to_string(), key_name);
    }
    // And JS refuses what we refuse: our record under someone else's name, and an expired one.
    let rec = dir.path().join("0.rec");
    let other = Keypair::generate().name().to_string();
    let err = oracles
        .ipns(&[os("validate"), os(&other), rec.as_os_str()])
        .unwrap_err();
    assert!(
        err.contains("Signature") || err.contains("signature"),
        "{err}"
    );
    let expired = name::create(
        &key,
        "/ipfs/bafkqaaa",
        1,
        SystemTime::now() - HOUR,
        Duration::from_secs(1),
    )
    .unwrap();
    let rec = dir.path().join("expired.rec");
    std::fs::write(&rec, &expired).unwrap();
    let err = oracles
        .ipns(&[os("validate"), os(&key_name), rec.as_os_str()])
        .unwrap_err();
    assert!(err.contains("xpired"), "{err}");
}

#[test]
fn garbage_is_refused_without_panicking() {
    let name: IpnsName = "k51qzi5uqu5dk3v4rmjber23h16xnr23bsggmqqil9z2gduiis5se8dht36dam"
        .parse()
        .unwrap();
    let now = SystemTime::now();
    let mut seed = 0x1234_5678u32;
    for len in [0usize, 1, 2, 7, 64, 188, 400, 10 * 1024] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (seed >> 16) as u8
            })
            .collect();
        assert!(
            name::verify(&name, &bytes, now).is_err(),
            "{len} random bytes"
        );
    }
}
