//! `distfs serve`'s `GET /metrics` over real HTTP: after a known mix of requests (raw blocks,
//! a HEAD, a miss, a CAR, an accepted and a refused record PUT) the exposition parses as
//! Prometheus/OpenMetrics text (every `# TYPE` valid, every sample `name{labels} value` of a
//! declared family, `# EOF` last) and each counter moved by exactly what was done.
//! `--no-metrics` turns the route off.

#[path = "support/mod.rs"]
mod support;

#[allow(dead_code)]
#[path = "mount/harness.rs"]
mod harness;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use distfs::name::{self, Keypair};
use harness::Serve;
use support::{distfs_add, tempdir, write_det};

/// Parses an exposition strictly; the samples keyed `name{labels}` (labels as written).
fn parse(text: &str) -> BTreeMap<String, f64> {
    const TYPES: &[&str] = &[
        "counter",
        "gauge",
        "histogram",
        "gaugehistogram",
        "summary",
        "info",
        "stateset",
        "unknown",
    ];
    const SUFFIXES: &[&str] = &["", "_total", "_created", "_bucket", "_sum", "_count"];
    let mut families: HashMap<String, String> = HashMap::new();
    let mut samples = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.last(),
        Some(&"# EOF"),
        "the exposition ends with # EOF"
    );
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (what, name) = (parts.next().unwrap(), parts.next().expect("a family name"));
            assert!(valid_name(name), "bad family name in {line:?}");
            match what {
                "TYPE" => {
                    let kind = parts.next().expect("a type");
                    assert!(TYPES.contains(&kind), "bad type in {line:?}");
                    families.insert(name.to_string(), kind.to_string());
                }
                "HELP" | "UNIT" => {}
                _ => panic!("unknown comment {line:?}"),
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).expect("a sample has a value");
        let name = &line[..name_end];
        assert!(valid_name(name), "bad metric name in {line:?}");
        let (labels, rest) = if line[name_end..].starts_with('{') {
            let close = line.find('}').expect("closing brace");
            (&line[name_end + 1..close], &line[close + 1..])
        } else {
            ("", &line[name_end..])
        };
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').expect("label k=v");
            assert!(valid_name(k), "bad label name in {line:?}");
            assert!(
                v.len() >= 2 && v.starts_with('"') && v.ends_with('"'),
                "unquoted label value in {line:?}"
            );
        }
        let value = rest.strip_prefix(' ').expect("one space before the value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let family_known = SUFFIXES.iter().any(|s| {
            name.strip_suffix(s)
                .is_some_and(|base| families.contains_key(base))
        });
        assert!(family_known, "sample of an undeclared family: {line:?}");
        let key = if labels.is_empty() {
            name.to_string()
        } else {
            format!("{name}{{{labels}}}")
        };
        samples.insert(key, value);
    }
    samples
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

async fn get_metrics(base: &str) -> BTreeMap<String, f64> {
    let resp = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    parse(&resp.text().await.unwrap())
}

fn value(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_parse_and_count_what_was_served() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    write_det(&src.join("a.bin"), "metrics-a", 1000);
    write_det(&src.join("b.bin"), "metrics-b", 2000);
    let store = tmp.path().join("store");
    let root = distfs_add(
        &src,
        &["--cid-version", "1", "--store", store.to_str().unwrap()],
    )
    .unwrap();
    let serve = Serve::start(&store);
    let base = serve.url.clone();
    let http = reqwest::Client::new();

    let before = get_metrics(&base).await;
    assert_eq!(
        value(
            &before,
            "distfs_serve_requests_total{route=\"raw\",status=\"2xx\"}"
        ),
        0.0
    );

    // Two raw GETs of the root block, one HEAD, one miss.
    let raw_url = format!("{base}/ipfs/{root}?format=raw");
    let mut block_len = 0;
    for _ in 0..2 {
        let resp = http.get(&raw_url).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        block_len = resp.bytes().await.unwrap().len();
    }
    assert_eq!(http.head(&raw_url).send().await.unwrap().status(), 200);
    let missing = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";
    let resp = http
        .get(format!("{base}/ipfs/{missing}?format=raw"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let miss_len = resp.bytes().await.unwrap().len();
    // A CAR of the whole tree: the directory and its two raw-leaf files.
    let resp = http
        .get(format!("{base}/ipfs/{root}?format=car"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let car_len = resp.bytes().await.unwrap().len();
    // An accepted and a refused record PUT.
    let key = Keypair::generate();
    let k = key.name().to_string();
    let rec = name::create(
        &key,
        &format!("/ipfs/{root}"),
        1,
        SystemTime::now() + Duration::from_secs(86_400),
        Duration::from_secs(60),
    )
    .unwrap();
    for (body, want) in [(rec.to_vec(), 200), (b"not a record".to_vec(), 400)] {
        let resp = http
            .put(format!("{base}/routing/v1/ipns/{k}"))
            .header("content-type", "application/vnd.ipfs.ipns-record")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), want);
    }

    // Bytes are counted when a body is done: poll (bounded) until they are all in. The
    // miss's error body counts too.
    let car_bytes = "distfs_serve_response_bytes_total{route=\"car\"}";
    let raw_bytes = "distfs_serve_response_bytes_total{route=\"raw\"}";
    let raw_len = 2 * block_len + miss_len;
    let mut m = get_metrics(&base).await;
    for _ in 0..100 {
        if value(&m, car_bytes) >= car_len as f64 && value(&m, raw_bytes) >= raw_len as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        m = get_metrics(&base).await;
    }
    let want = [
        (
            "distfs_serve_requests_total{route=\"raw\",status=\"2xx\"}",
            3.0,
        ),
        (
            "distfs_serve_requests_total{route=\"raw\",status=\"4xx\"}",
            1.0,
        ),
        (
            "distfs_serve_requests_total{route=\"car\",status=\"2xx\"}",
            1.0,
        ),
        (
            "distfs_serve_requests_total{route=\"routing-ipns\",status=\"2xx\"}",
            1.0,
        ),
        (
            "distfs_serve_requests_total{route=\"routing-ipns\",status=\"4xx\"}",
            1.0,
        ),
        ("distfs_serve_blocks_total{route=\"raw\"}", 2.0),
        ("distfs_serve_blocks_total{route=\"car\"}", 3.0),
        ("distfs_serve_car_responses_total", 1.0),
        ("distfs_serve_record_puts_total{result=\"accepted\"}", 1.0),
        ("distfs_serve_record_puts_total{result=\"refused\"}", 1.0),
        (raw_bytes, raw_len as f64),
        (car_bytes, car_len as f64),
        (
            "distfs_serve_request_duration_seconds_count{route=\"raw\"}",
            4.0,
        ),
    ];
    for (key, v) in want {
        assert_eq!(value(&m, key), v, "{key}");
    }
    // The scrapes before this one were counted too (as `other`, 2xx).
    assert!(
        value(
            &m,
            "distfs_serve_requests_total{route=\"other\",status=\"2xx\"}"
        ) >= 1.0
    );
    let inf = "distfs_serve_request_duration_seconds_bucket{le=\"+Inf\",route=\"raw\"}";
    let inf_alt = "distfs_serve_request_duration_seconds_bucket{route=\"raw\",le=\"+Inf\"}";
    assert_eq!(value(&m, inf).max(value(&m, inf_alt)), 4.0);

    // Off: the route is gone.
    let quiet = Serve::start_with(&store, &[OsStr::new("--no-metrics")], Stdio::null());
    let resp = reqwest::get(format!("{}/metrics", quiet.url))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(!resp.text().await.unwrap().contains("distfs_serve_requests"));
}
