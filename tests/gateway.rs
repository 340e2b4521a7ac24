//! End-to-end tests of `distfs serve`: real processes on 127.0.0.1 port 0 (the address is
//! read from the first stdout line, never a fixed sleep), real HTTP with reqwest, the
//! gateway-conformance fixture CARs and IPNS records as data. CAR responses are parsed with
//! `distfs::car::CarReader` (which verifies every block) and compared by exact CID order.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use bytes::Bytes;
use cid::Cid;
use distfs::block::Block;
use distfs::car::CarReader;

const FIX: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/gateway-conformance/fixtures"
);

fn fixture(rel: &str) -> PathBuf {
    let p = PathBuf::from(FIX).join(rel);
    assert!(p.exists(), "fixture missing: {}", p.display());
    p
}

/// A running `distfs serve`, killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_distfs"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn distfs serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        let n = BufReader::new(stdout).read_line(&mut line).unwrap();
        // Construct the guard first so a failed assertion still kills the child.
        let server = Server {
            child,
            base: format!("http://{}", line.trim()),
        };
        assert!(n > 0, "distfs serve exited before printing its address");
        assert!(
            line.trim().starts_with("127.0.0.1:"),
            "unexpected address line {line:?}"
        );
        server
    }

    /// A server over the fixture CARs most tests use, plus the IPNS fixture records.
    fn fixtures() -> Server {
        let cars = [
            "trustless_gateway_car/dir-with-duplicate-files.car",
            "trustless_gateway_car/single-layer-hamt-with-multi-block-files.car",
            "trustless_gateway_car/subdir-with-mixed-block-files.car",
            "trustless_gateway_car/subdir-with-two-single-block-files.car",
            "trustless_gateway_car/file-3k-and-3-blocks-missing-block.car",
            "gateway-raw-block.car",
            "path_gateway_unixfs/dir-with-percent-encoded-filename.car",
            "dir_listing/fixtures.car",
        ];
        let paths: Vec<String> = cars
            .iter()
            .map(|c| fixture(c).display().to_string())
            .collect();
        let ipns = fixture("ipns_records").display().to_string();
        let mut args = Vec::new();
        for p in &paths {
            args.push("--car");
            args.push(p.as_str());
        }
        args.extend(["--ipns-dir", ipns.as_str()]);
        Server::start(&args)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(self.url(path)).await.expect("request")
    }

    async fn get_accept(&self, path: &str, accept: &str) -> reqwest::Response {
        reqwest::Client::new()
            .get(self.url(path))
            .header("accept", accept)
            .send()
            .await
            .expect("request")
    }

    /// GETs a CAR and returns its block CIDs in order (every block verified by CarReader).
    async fn car(&self, path: &str) -> Vec<String> {
        let resp = self.get(path).await;
        assert_eq!(resp.status(), 200, "{path}: {:?}", resp.text().await);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(
            ct.starts_with("application/vnd.ipld.car; version=1; order=dfs"),
            "{ct}"
        );
        let body = resp.bytes().await.unwrap();
        car_cids(&body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn car_cids(bytes: &[u8]) -> Vec<String> {
    let reader = CarReader::new(bytes).expect("CAR header");
    reader
        .map(|b| b.expect("verified CAR block").cid().to_string())
        .collect()
}

fn fixture_order(rel: &str) -> Vec<String> {
    car_cids(&std::fs::read(fixture(rel)).unwrap())
}

const ASCII: &str = "bafkreifkam6ns4aoolg3wedr4uzrs3kvq66p4pecirz6y2vlrngla62mxm";
const DUP_ROOT: &str = "bafybeihchr7vmgjaasntayyatmp5sv6xza57iy2h4xj7g46bpjij6yhrmy";
const HAMT_ROOT: &str = "bafybeidbclfqleg2uojchspzd4bob56dqetqjsj27gy2cq3klkkgxtpn4i";
const MIXED_ROOT: &str = "bafybeidh6k2vzukelqtrjsmd4p52cpmltd2ufqrdtdg6yigi73in672fwu";
const MIXED_SUBDIR: &str = "bafybeicnmple4ehlz3ostv2sbojz3zhh5q7tz5r2qkfdpqfilgggeen7xm";
const TWO_ROOT: &str = "bafybeietjm63oynimmv5yyqay33nui4y4wx6u3peezwetxgiwvfmelutzu";
const TWO_SUBDIR: &str = "bafybeiggghzz6dlue3m6nb2dttnbrygxh3lrjl5764f2m4gq7dgzdt55o4";
const MULTI: &str = "bafybeigcisqd7m5nf3qmuvjdbakl5bdnh4ocrmacaqkpuh77qjvggmt2sa";
const LEAVES: [&str; 5] = [
    "bafkreie5noke3mb7hqxukzcy73nl23k6lxszxi5w3dtmuwz62wnvkpsscm",
    "bafkreih4ephajybraj6wnxsbwjwa77fukurtpl7oj7t7pfq545duhot7cq",
    "bafkreigu7buvm3cfunb35766dn7tmqyh2um62zcio63en2btvxuybgcpue",
    "bafkreicll3huefkc3qnrzeony7zcfo7cr3nbx64hnxrqzsixpceg332fhe",
    "bafkreifst3pqztuvj57lycamoi7z34b4emf7gawxs74nwrc2c7jncmpaqm",
];
const MISSING_ROOT: &str = "QmYhmPjhFjYFyaoiuNzYv8WGavpSRDwdHWe5B4M5du5Rtk";
const MISSING_LEAF1: &str = "QmPKt7ptM2ZYSGPUc8PmPT2VBkLDK3iqpG9TBJY7PCE9rF";
const MISSING_LEAF3: &str = "QmWXY482zQdwecnfBsj78poUUuPXvyw2JAFAEMw4tzTavV";
const IPNS_V2: &str = "k51qzi5uqu5dit2ku9mutlfgwyz8u730on38kd10m97m36bjt66my99hb6103f";

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn raw_block_verifies_against_its_cid_with_trustless_headers() {
    let s = Server::fixtures();
    // The dag-pb `dir` block of gateway-raw-block.car and a raw leaf.
    for cid in [
        "bafybeifaqksygmsbnqe76kwvxoqxtkzcwssq5jkhuo65ldtqiunr3bxlra",
        ASCII,
    ] {
        let resp = s.get(&format!("/ipfs/{cid}?format=raw")).await;
        assert_eq!(resp.status(), 200);
        let h = resp.headers().clone();
        assert_eq!(h["content-type"], "application/vnd.ipld.raw");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["cache-control"], "public, max-age=29030400, immutable");
        assert_eq!(h["etag"], format!("\"{cid}.raw\"").as_str());
        assert_eq!(h["x-ipfs-path"], format!("/ipfs/{cid}").as_str());
        assert_eq!(h["x-ipfs-roots"], cid);
        assert!(h["content-disposition"]
            .to_str()
            .unwrap()
            .contains(&format!("{cid}.bin")));
        let body = resp.bytes().await.unwrap();
        assert_eq!(h["content-length"], body.len().to_string().as_str());
        let cid: Cid = cid.parse().unwrap();
        Block::verified(cid, body).expect("served bytes hash to the CID");
    }
    // Accept header alone also selects raw.
    let resp = s
        .get_accept(&format!("/ipfs/{ASCII}"), "application/vnd.ipld.raw")
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.bytes().await.unwrap(),
        Bytes::from_static(b"hello application/vnd.ipld.car\n")
    );
}

#[tokio::test]
async fn head_has_headers_and_no_body() {
    let s = Server::fixtures();
    let resp = reqwest::Client::new()
        .head(s.url(&format!("/ipfs/{ASCII}?format=raw")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], "31");
    assert_eq!(resp.headers()["content-type"], "application/vnd.ipld.raw");
    assert!(resp.bytes().await.unwrap().is_empty());
    let resp = reqwest::Client::new()
        .head(s.url(&format!("/ipfs/{DUP_ROOT}?format=car")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/vnd.ipld.car"));
    assert!(resp.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn range_requests_on_a_raw_block() {
    let s = Server::fixtures();
    let client = reqwest::Client::new();
    let get = |range: &'static str| {
        client
            .get(s.url(&format!("/ipfs/{ASCII}?format=raw")))
            .header("range", range)
            .send()
    };
    let resp = get("bytes=6-16").await.unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.headers()["content-range"], "bytes 6-16/31");
    assert_eq!(
        resp.bytes().await.unwrap(),
        Bytes::from_static(b"application")
    );
    let resp = get("bytes=-3").await.unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.headers()["content-range"], "bytes 28-30/31");
    assert_eq!(resp.bytes().await.unwrap(), Bytes::from_static(b"ar\n"));
    let resp = get("bytes=31-").await.unwrap();
    assert_eq!(resp.status(), 416);
    assert_eq!(resp.headers()["content-range"], "bytes */31");
}

#[tokio::test]
async fn car_dag_scope_all_matches_kubo_export_order() {
    let s = Server::fixtures();
    // Kubo's `dag export` (the fixture file) is DFS pre-order without duplicates.
    for (root, file) in [
        (
            DUP_ROOT,
            "trustless_gateway_car/dir-with-duplicate-files.car",
        ),
        (
            HAMT_ROOT,
            "trustless_gateway_car/single-layer-hamt-with-multi-block-files.car",
        ),
        (
            MIXED_ROOT,
            "trustless_gateway_car/subdir-with-mixed-block-files.car",
        ),
    ] {
        let got = s.car(&format!("/ipfs/{root}?format=car")).await;
        assert_eq!(got, fixture_order(file), "{file}");
    }
    // dups=y repeats the ascii block (linked twice); dups=n has it once.
    let dups = s
        .car(&format!("/ipfs/{DUP_ROOT}?format=car&car-dups=y"))
        .await;
    let once = s
        .car(&format!("/ipfs/{DUP_ROOT}?format=car&car-dups=n"))
        .await;
    assert_eq!(dups.iter().filter(|c| *c == ASCII).count(), 2);
    assert_eq!(once.iter().filter(|c| *c == ASCII).count(), 1);
    assert_eq!(dups.len(), once.len() + 1);
    let resp = s
        .get_accept(
            &format!("/ipfs/{DUP_ROOT}"),
            "application/vnd.ipld.car; version=1; order=dfs; dups=y",
        )
        .await;
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.ipld.car; version=1; order=dfs; dups=y"
    );
    assert_eq!(car_cids(&resp.bytes().await.unwrap()), dups);
    // order=unk is accepted and answered as dfs.
    let unk = s
        .car(&format!("/ipfs/{DUP_ROOT}?format=car&car-order=unk"))
        .await;
    assert_eq!(unk, once);
}

#[tokio::test]
async fn car_paths_and_block_scope() {
    let s = Server::fixtures();
    let got = s
        .car(&format!("/ipfs/{TWO_ROOT}/subdir/ascii.txt?format=car"))
        .await;
    assert_eq!(got, strs(&[TWO_ROOT, TWO_SUBDIR, ASCII]));
    let got = s
        .car(&format!(
            "/ipfs/{TWO_ROOT}/subdir?format=car&dag-scope=block"
        ))
        .await;
    assert_eq!(got, strs(&[TWO_ROOT, TWO_SUBDIR]));
    // Entity of a plain directory is the directory block alone.
    let got = s
        .car(&format!(
            "/ipfs/{TWO_ROOT}/subdir?format=car&dag-scope=entity"
        ))
        .await;
    assert_eq!(got, strs(&[TWO_ROOT, TWO_SUBDIR]));
    // X-Ipfs-Roots lists the CID of every segment.
    let resp = s
        .get(&format!("/ipfs/{TWO_ROOT}/subdir/ascii.txt?format=car"))
        .await;
    assert_eq!(
        resp.headers()["x-ipfs-roots"],
        format!("{TWO_ROOT},{TWO_SUBDIR},{ASCII}").as_str()
    );
}

#[tokio::test]
async fn path_segments_are_percent_decoded_exactly_once() {
    let s = Server::fixtures();
    // The name is literally `Portugal%2C+España=Peninsula Ibérica.txt`: its `%` travels as
    // `%25`, so decoding twice would look for `Portugal,+...` and miss.
    let root = "bafybeig675grnxcmshiuzdaz2xalm6ef4thxxds6o6ypakpghm5kghpc34";
    let file = "bafkreihfmctcb2kuvoljqeuphqr2fg2r45vz5cxgq5c2yrxnqg5erbitmq";
    let name = "Portugal%252C+Espa%C3%B1a=Peninsula%20Ib%C3%A9rica.txt";
    let got = s.car(&format!("/ipfs/{root}/{name}?format=car")).await;
    assert_eq!(got, strs(&[root, file]));
    // UTF-8 names at every level: ą/ę/file-źł.txt.
    let root = "bafybeig6ka5mlwkl4subqhaiatalkcleo4jgnr3hqwvpmsqfca27cijp3i";
    let file = "bafkreialihlqnf5uwo4byh4n3cmwlntwqzxxs2fg5vanqdi3d7tb2l5xkm";
    let got = s
        .car(&format!(
            "/ipfs/{root}/%C4%85/%C4%99/file-%C5%BA%C5%82.txt?format=car&dag-scope=block"
        ))
        .await;
    assert_eq!(got.len(), 4);
    assert_eq!(got.first().map(String::as_str), Some(root));
    assert_eq!(got.last().map(String::as_str), Some(file));
}

#[tokio::test]
async fn only_if_cached_is_412_for_an_absent_root() {
    let s = Server::fixtures();
    let client = reqwest::Client::new();
    let absent = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
    for (cid, want) in [(absent, 412), (ASCII, 200)] {
        let resp = client
            .get(s.url(&format!("/ipfs/{cid}?format=raw")))
            .header("cache-control", "only-if-cached")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), want, "{cid}");
    }
}

#[tokio::test]
async fn car_through_a_hamt() {
    let s = Server::fixtures();
    // Entity of the HAMT: all 237 shard blocks, none of the file blocks.
    let got = s
        .car(&format!("/ipfs/{HAMT_ROOT}?format=car&dag-scope=entity"))
        .await;
    assert_eq!(got.len(), 237);
    assert!(!got
        .iter()
        .any(|c| c == MULTI || LEAVES.contains(&c.as_str())));
    // /685.txt: root shard, shard FD, the file root and its 5 leaves, in that order.
    let got = s
        .car(&format!("/ipfs/{HAMT_ROOT}/685.txt?format=car"))
        .await;
    let mut want = strs(&[HAMT_ROOT]);
    want.push(got[1].clone());
    want.push(MULTI.into());
    want.extend(strs(&LEAVES));
    assert_eq!(got, want);
    assert!(
        fixture_order("trustless_gateway_car/single-layer-hamt-with-multi-block-files.car")
            .contains(&got[1])
    );
    // 402.txt needs two sub-shard hops (21 then B6).
    let got = s
        .car(&format!(
            "/ipfs/{HAMT_ROOT}/402.txt?format=car&dag-scope=block"
        ))
        .await;
    assert_eq!(
        got,
        strs(&[
            HAMT_ROOT,
            "bafybeideiqxgeyxk26wxqkggniwjmrjizsprlqza4vak6giyevg6k5nht4",
            "bafybeiapvu3jqyfk2xkzbadquejv4lrry4flddc6en4xadar55pgfuy6ga",
            MULTI
        ])
    );
}

#[tokio::test]
async fn car_entity_bytes_picks_the_minimal_leaves() {
    let s = Server::fixtures();
    let base = format!("/ipfs/{MIXED_ROOT}/subdir/multiblock.txt?format=car");
    let leaves = |idx: &[usize]| {
        let mut v = strs(&[MIXED_ROOT, MIXED_SUBDIR, MULTI]);
        v.extend(idx.iter().map(|i| LEAVES[*i - 1].to_string()));
        v
    };
    for (range, want) in [
        ("512:*", leaves(&[3, 4, 5])),
        ("512:1023", leaves(&[3, 4])),
        ("512:-256", leaves(&[3, 4])),
        ("-5:*", leaves(&[4, 5])),
        ("0:0", leaves(&[1])),
        ("-9999:*", leaves(&[1, 2, 3, 4, 5])),
        ("-9999:-3", leaves(&[1, 2, 3, 4])),
        ("5000:*", leaves(&[])),
    ] {
        let got = s.car(&format!("{base}&entity-bytes={range}")).await;
        assert_eq!(got, want, "entity-bytes={range}");
    }
    // The file with a missing middle leaf: ranges that avoid it succeed.
    let got = s
        .car(&format!(
            "/ipfs/{MISSING_ROOT}?format=car&entity-bytes=0:1000"
        ))
        .await;
    assert_eq!(got, strs(&[MISSING_ROOT, MISSING_LEAF1]));
    let got = s
        .car(&format!(
            "/ipfs/{MISSING_ROOT}?format=car&entity-bytes=2200:*"
        ))
        .await;
    assert_eq!(got, strs(&[MISSING_ROOT, MISSING_LEAF3]));
}

#[tokio::test]
async fn missing_block_mid_stream_aborts_the_body() {
    let s = Server::fixtures();
    // The root exists (so the response is not a 404) but leaf 2 does not: the server has
    // committed to a 200 and must abort the transfer. Depending on how far hyper got before
    // the walk failed, the client sees either an incomplete message or a body error; what it
    // must never see is a clean end (a short CAR that looks complete).
    let url = s.url(&format!("/ipfs/{MISSING_ROOT}?format=car"));
    match reqwest::get(url).await {
        Err(e) => assert!(e.is_request() || e.is_body(), "{e:?}"),
        Ok(resp) => {
            assert_eq!(resp.status(), 200);
            assert!(resp.bytes().await.is_err(), "truncated CAR ended cleanly");
        }
    }
    // The same server still answers normally afterwards.
    assert_eq!(
        s.get(&format!("/ipfs/{MISSING_LEAF1}?format=raw"))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn client_errors() {
    let s = Server::fixtures();
    let status = |path: String| {
        let s = &s;
        async move { s.get(&path).await.status().as_u16() }
    };
    // 400: bad CID, bad parameters, raw with a path, no format at all.
    assert_eq!(status("/ipfs/not-a-cid?format=raw".into()).await, 400);
    let e = format!("/ipfs/{DUP_ROOT}?format=car&entity-bytes=");
    assert_eq!(status(format!("{e}10:5")).await, 400);
    assert_eq!(status(format!("{e}a:b")).await, 400);
    let q = format!("/ipfs/{DUP_ROOT}?format=car");
    assert_eq!(status(format!("{q}&car-version=2")).await, 400);
    assert_eq!(status(format!("{q}&dag-scope=most")).await, 400);
    assert_eq!(
        status(format!("/ipfs/{DUP_ROOT}/ascii.txt?format=raw")).await,
        400
    );
    assert_eq!(status(format!("/ipfs/{DUP_ROOT}")).await, 400);
    // 404: a valid CID nobody holds; a path segment that does not exist.
    let absent = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
    assert_eq!(status(format!("/ipfs/{absent}?format=raw")).await, 404);
    assert_eq!(status(format!("/ipfs/{absent}?format=car")).await, 404);
    let missing = format!("/ipfs/{TWO_ROOT}/subdir/i-do-not-exist?format=car");
    assert_eq!(status(missing).await, 404);
    // 406: formats this trustless gateway does not produce.
    assert_eq!(status(format!("/ipfs/{DUP_ROOT}?format=tar")).await, 406);
    let json = s
        .get_accept(&format!("/ipfs/{DUP_ROOT}"), "application/json")
        .await;
    assert_eq!(json.status(), 406);
    // format= wins over Accept (IPIP-0523).
    let both = reqwest::Client::new()
        .get(s.url(&format!("/ipfs/{ASCII}?format=raw")))
        .header("accept", "application/vnd.ipld.car")
        .send()
        .await
        .unwrap();
    assert_eq!(both.headers()["content-type"], "application/vnd.ipld.raw");
    // Error bodies are one line of text.
    let body = s
        .get("/ipfs/not-a-cid?format=raw")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(body.lines().count(), 1, "{body:?}");
}

#[tokio::test]
async fn ipns_records_on_both_routes() {
    let s = Server::fixtures();
    let file = fixture(&format!("ipns_records/{IPNS_V2}_v2.ipns-record"));
    let want = Bytes::from(std::fs::read(file).unwrap());
    let resp = s.get(&format!("/ipns/{IPNS_V2}?format=ipns-record")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.ipfs.ipns-record"
    );
    // max-age is the record's TTL (30 min), as gateway-conformance expects.
    assert_eq!(resp.headers()["cache-control"], "public, max-age=1800");
    assert_eq!(resp.bytes().await.unwrap(), want);
    let resp = s
        .get_accept(
            &format!("/routing/v1/ipns/{IPNS_V2}"),
            "application/vnd.ipfs.ipns-record",
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.ipfs.ipns-record"
    );
    assert_eq!(resp.bytes().await.unwrap(), want);
    // Routing without the record Accept is 406; unknown names are 404.
    let resp = s.get(&format!("/routing/v1/ipns/{IPNS_V2}")).await;
    assert_eq!(resp.status(), 406);
    let unknown = "k51qzi5uqu5dk3v4rmjber23h16xnr23bsggmqqil9z2gduiis5se8dht36dam";
    let resp = s.get(&format!("/ipns/{unknown}?format=ipns-record")).await;
    assert_eq!(resp.status(), 404);
    let resp = s.get("/ipns/not!a!name?format=ipns-record").await;
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn bafkqaaa_probe() {
    let s = Server::start(&[]);
    let resp = s.get("/ipfs/bafkqaaa?format=raw").await;
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.unwrap().is_empty());
    // As a CAR: the root is listed, the identity block itself is never written.
    let resp = s.get("/ipfs/bafkqaaa?format=car").await;
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await.unwrap();
    let reader = CarReader::new(&body[..]).unwrap();
    assert_eq!(reader.roots(), &["bafkqaaa".parse::<Cid>().unwrap()]);
    assert_eq!(reader.count(), 0);
}

#[tokio::test]
async fn disk_store_blocks_are_served_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let store = distfs::store::disk::DiskStore::open(dir.path()).unwrap();
    let block = Block::encode(
        cid::Version::V1,
        distfs::block::codec::RAW,
        Bytes::from_static(b"written by put_sync\n"),
    );
    store.put_sync(&block).unwrap();
    let s = Server::start(&["--store", dir.path().to_str().unwrap()]);
    let cid = block.cid().to_string();
    for _ in 0..2 {
        let resp = s.get(&format!("/ipfs/{cid}?format=raw")).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.bytes().await.unwrap(), block.data().clone());
    }
    let car = s.car(&format!("/ipfs/{cid}?format=car")).await;
    assert_eq!(car, vec![cid.clone()]);
    let stats = s.get("/debug/stats").await.bytes().await.unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&stats).unwrap();
    assert_eq!(stats["by_kind"]["raw"], 2);
    assert_eq!(stats["by_kind"]["car"], 1);
    assert_eq!(stats["by_cid"][&cid], 3);
}

#[test]
fn sigterm_exits_zero_and_requests_are_logged() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_distfs"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-requests"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn distfs serve");
    let stdout = child.stdout.take().unwrap();
    // Kill the child if an assertion below fails before it is reaped.
    let mut guard = KillOnDrop(Some(child));
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line.trim().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        let resp = reqwest::get(format!("http://{addr}/ipfs/bafkqaaa?format=raw"))
            .await
            .unwrap();
        let status = resp.status();
        resp.bytes().await.unwrap();
        status
    });
    drop(rt);
    assert_eq!(status, 200);
    let killed = Command::new("kill")
        .args(["-TERM", &guard.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = guard.0.take().unwrap().wait_with_output().unwrap();
    assert!(out.status.success(), "exit status {:?}", out.status);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("GET /ipfs/bafkqaaa?format=raw 200 0"),
        "no request log line in {stderr:?}"
    );
}

struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `--latency` delays every response by at least the given time (a lower bound only: the
/// machine may be slower, never faster).
#[tokio::test]
async fn latency_option_delays_each_response() {
    let s = Server::start(&["--latency", "300"]);
    for _ in 0..2 {
        let start = std::time::Instant::now();
        let resp = s.get("/ipfs/bafkqaaa?format=raw").await;
        assert_eq!(resp.status(), 200);
        assert!(start.elapsed() >= std::time::Duration::from_millis(300));
    }
}

/// `--rate-mbit` sends every body through one shared link: two 1 MB CARs at 8 Mbit/s take
/// at least two seconds together (a lower bound only), and arrive whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_option_shares_one_link_between_responses() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one-megabyte.bin");
    let data: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();
    let store = dir.path().join("store");
    let out = Command::new(env!("CARGO_BIN_EXE_distfs"))
        .arg("add")
        .arg(&file)
        .arg("--store")
        .arg(&store)
        .output()
        .expect("run distfs add");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let root = stdout
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no CID in {stdout:?}"))
        .to_string();
    let s = Server::start(&["--store", store.to_str().unwrap(), "--rate-mbit", "8"]);
    let path = format!("/ipfs/{root}?format=car");
    let start = std::time::Instant::now();
    let (a, b) = tokio::join!(s.car(&path), s.car(&path));
    let took = start.elapsed();
    assert_eq!(a, b);
    assert!(a.len() > 3, "a multi-block file: {a:?}");
    assert!(
        took >= std::time::Duration::from_millis(1_900),
        "2 MB at 1 MB/s took only {took:?}"
    );
}
