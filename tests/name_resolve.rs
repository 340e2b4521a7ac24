//! The name resolver against real servers: DNSLink through a real DNS server on loopback
//! (Debian's dnsmasq, started by the test on a free port and restarted to change the TXT
//! record), IPNS records through real `distfs serve` processes (gateway and routing APIs),
//! the highest valid sequence among sources, and the rule that a name never goes back below
//! a sequence once seen, across a restart on the same state directory too.

#[path = "support/mod.rs"]
mod support;

// Shared with the mount tests; this file uses only `Serve` and `poll`.
#[allow(dead_code)]
#[path = "mount/harness.rs"]
mod harness;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use cid::Cid;
use distfs::fetch::{RecordApi, RecordClient};
use distfs::name::resolve::ResolveError;
use distfs::name::{self, IpnsName, Keypair, Resolver, ResolverConfig, RootSpec};
use harness::Serve;
use support::tempdir;

const DAY: Duration = Duration::from_secs(86_400);
const CID1: &str = "bafybeib3ffl2teiqdncv3mkz4r23b5ctrwkzrrhctdbne6iboayxuxk5ui";
const CID2: &str = "bafybeih2w7hjocxjg6g2ku25hvmd53zj7og4txpby3vsusfefw5rrg5sii";
const CID3: &str = "bafybeiawdvhmjcz65x5egzx4iukxc72hg4woks6v6fvgyupiyt3oczk5ja";

/// dnsmasq serving only the given TXT records on 127.0.0.1:`port`; killed on drop.
struct Dns {
    child: Child,
}

impl Dns {
    fn start(port: u16, txt: &[(&str, &str)]) -> Dns {
        let mut cmd = Command::new("dnsmasq");
        cmd.args([
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--conf-file=/dev/null",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--pid-file=",
            "--local-ttl=1",
        ])
        .arg(format!("--port={port}"));
        for (name, value) in txt {
            cmd.arg(format!("--txt-record={name},{value}"));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "spawn dnsmasq (apt-get install dnsmasq-base; scripts/lib.sh ensure_base does)",
            );
        Dns { child }
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn resolver(sources: Vec<RecordClient>, dns: Option<SocketAddr>, state: Option<&Path>) -> Resolver {
    pinned_resolver(sources, dns, state, None)
}

fn pinned_resolver(
    sources: Vec<RecordClient>,
    dns: Option<SocketAddr>,
    state: Option<&Path>,
    publisher: Option<IpnsName>,
) -> Resolver {
    Resolver::new(ResolverConfig {
        sources,
        dns_server: dns,
        state_dir: state.map(Path::to_path_buf),
        min_ttl: Duration::from_secs(1),
        max_ttl: Duration::from_secs(3600),
        publisher,
    })
    .unwrap()
}

fn gw(serve: &Serve) -> RecordClient {
    RecordClient::new(
        &serve.url,
        RecordApi::Gateway,
        reqwest::Client::new(),
        Duration::from_secs(10),
    )
    .unwrap()
}

fn routing(serve: &Serve) -> RecordClient {
    RecordClient::new(
        &serve.url,
        RecordApi::Routing,
        reqwest::Client::new(),
        Duration::from_secs(10),
    )
    .unwrap()
}

fn cid(s: &str) -> Cid {
    s.parse().unwrap()
}

/// Resolves `spec` again and again (bounded) until it gives `want` — for a DNS server that
/// is still starting.
async fn resolve_until(r: &Resolver, spec: &RootSpec, want: &str) {
    let mut last = None;
    for _ in 0..100 {
        match r.resolve(spec).await {
            Ok(got) if got.cid.to_string() == want => return,
            other => last = Some(other),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{spec} never resolved to {want}; last answer {last:?}");
}

/// Writes `bytes` as the record the serve in `store` holds for `name`, bypassing its checks.
fn plant(store: &Path, name: &str, bytes: &[u8]) {
    let dir = store.join("ipns");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.ipns-record")), bytes).unwrap();
}

fn rec(key: &Keypair, value: &str, seq: u64) -> bytes::Bytes {
    name::create(
        key,
        value,
        seq,
        SystemTime::now() + DAY,
        Duration::from_secs(60),
    )
    .unwrap()
}

#[tokio::test]
async fn dnslink_resolves_follows_a_changed_txt_record_and_chains_through_ipns() {
    let store = tempdir();
    let serve = Serve::start(store.path());
    let key = Keypair::generate();
    let k = key.name().to_string();
    plant(store.path(), &k, &rec(&key, &format!("/ipfs/{CID3}"), 1));

    let port = free_udp_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let r = resolver(vec![gw(&serve)], Some(addr), None);
    let site = RootSpec::DnsLink("dist.example.test".into());
    let chain = RootSpec::DnsLink("chain.example.test".into());
    let looped = RootSpec::DnsLink("a.example.test".into());
    let v1 = format!("dnslink=/ipfs/{CID1}");
    let via_ipns = format!("dnslink=/ipns/{k}");
    {
        let _dns = Dns::start(
            port,
            &[
                ("_dnslink.dist.example.test", &v1),
                ("_dnslink.dist.example.test", "v=spf1 -all"),
                ("_dnslink.chain.example.test", &via_ipns),
                ("_dnslink.a.example.test", "dnslink=/ipns/b.example.test"),
                ("_dnslink.b.example.test", "dnslink=/ipns/a.example.test"),
            ],
        );
        resolve_until(&r, &site, CID1).await;
        let got = r.resolve(&chain).await.unwrap();
        assert_eq!(got.cid, cid(CID3));
        assert_eq!(got.sequence, Some(1));
        let err = r.resolve(&looped).await.unwrap_err();
        assert!(matches!(err, ResolveError::TooDeep { .. }), "{err}");
        let err = r
            .resolve(&RootSpec::DnsLink("missing.example.test".into()))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("_dnslink.missing.example.test"),
            "{err}"
        );
    }
    // The TXT record changes (the server restarts with the new value): followed.
    let v2 = format!("dnslink=/ipfs/{CID2}");
    let _dns = Dns::start(port, &[("_dnslink.dist.example.test", &v2)]);
    resolve_until(&r, &site, CID2).await;
}

#[tokio::test]
async fn a_pinned_publisher_key_refuses_roots_signed_by_any_other_key_or_none() {
    let store = tempdir();
    let serve = Serve::start(store.path());
    let (good, other) = (Keypair::generate(), Keypair::generate());
    let (g, o) = (good.name().to_string(), other.name().to_string());
    plant(store.path(), &g, &rec(&good, &format!("/ipfs/{CID1}"), 1));
    plant(store.path(), &o, &rec(&other, &format!("/ipfs/{CID2}"), 1));
    let port = free_udp_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let r = pinned_resolver(vec![gw(&serve)], Some(addr), None, Some(good.name()));
    let (via_good, via_other) = (format!("dnslink=/ipns/{g}"), format!("dnslink=/ipns/{o}"));
    let direct = format!("dnslink=/ipfs/{CID3}");
    let _dns = Dns::start(
        port,
        &[
            ("_dnslink.good.example.test", &via_good),
            ("_dnslink.other.example.test", &via_other),
            ("_dnslink.direct.example.test", &direct),
        ],
    );
    let got = r.resolve(&RootSpec::Ipns(good.name())).await.unwrap();
    assert_eq!(got.cid, cid(CID1));
    resolve_until(&r, &RootSpec::DnsLink("good.example.test".into()), CID1).await;
    // Another key's valid record, named directly or through DNSLink; a DNSLink straight
    // to /ipfs/ (no signature at all): refused, naming the pinned key.
    for spec in [
        RootSpec::Ipns(other.name()),
        RootSpec::DnsLink("other.example.test".into()),
        RootSpec::DnsLink("direct.example.test".into()),
    ] {
        let err = r.resolve(&spec).await.unwrap_err();
        assert!(
            matches!(&err, ResolveError::WrongPublisher { pinned, .. } if *pinned == g),
            "{spec}: {err}"
        );
        assert!(err.to_string().contains(&g), "{err}");
    }
}

#[tokio::test]
async fn highest_valid_sequence_wins_and_never_goes_back_even_after_a_restart() {
    let (store_a, store_b, state) = (tempdir(), tempdir(), tempdir());
    let a = Serve::start(store_a.path());
    let b = Serve::start(store_b.path());
    let key = Keypair::generate();
    let k = key.name().to_string();
    let spec: RootSpec = format!("/ipns/{k}").parse().unwrap();
    plant(store_a.path(), &k, &rec(&key, &format!("/ipfs/{CID1}"), 3));
    plant(store_b.path(), &k, &rec(&key, &format!("/ipfs/{CID2}"), 4));

    let r = resolver(vec![gw(&a), routing(&b)], None, Some(state.path()));
    let got = r.resolve(&spec).await.unwrap();
    assert_eq!((got.cid, got.sequence), (cid(CID2), Some(4)), "{got:?}");
    assert!(got.source.contains(&b.url), "{got:?}");
    assert_eq!(got.ttl, Duration::from_secs(60));

    // b is rolled back to sequence 2 and a gets a forged record: neither is taken.
    plant(store_b.path(), &k, &rec(&key, &format!("/ipfs/{CID3}"), 2));
    let forger = Keypair::generate();
    plant(
        store_a.path(),
        &k,
        &rec(&forger, &format!("/ipfs/{CID3}"), 99),
    );
    let got = r.resolve(&spec).await.unwrap();
    assert_eq!((got.cid, got.sequence), (cid(CID2), Some(4)), "{got:?}");
    assert_eq!(got.source, "state");
    let why = format!("{:?}", got.refused);
    assert!(why.contains("below the 4 already seen"), "{why}");
    assert!(why.contains("bad-signature"), "{why}");

    // A new resolver on the same state dir (a daemon restart): still sequence 4, from disk.
    drop(r);
    let r = resolver(vec![gw(&a), routing(&b)], None, Some(state.path()));
    let got = r.resolve(&spec).await.unwrap();
    assert_eq!((got.cid, got.sequence), (cid(CID2), Some(4)), "{got:?}");
    // With every source gone, the remembered record still answers (while valid).
    drop((a, b));
    let r = resolver(vec![], None, Some(state.path()));
    let got = r.resolve(&spec).await.unwrap();
    assert_eq!((got.cid, got.source.as_str()), (cid(CID2), "state"));
    // Without state and without sources: a clear error.
    let r = resolver(vec![], None, None);
    let err = r.resolve(&spec).await.unwrap_err();
    assert!(
        err.to_string().contains("no gateway or routing endpoint"),
        "{err}"
    );
}

#[tokio::test]
async fn a_higher_sequence_replaces_the_remembered_one() {
    let (store, state) = (tempdir(), tempdir());
    let serve = Serve::start(store.path());
    let key = Keypair::generate();
    let k = key.name().to_string();
    let spec: RootSpec = format!("/ipns/{k}").parse().unwrap();
    let r = resolver(vec![gw(&serve)], None, Some(state.path()));
    let err = r.resolve(&spec).await.unwrap_err();
    assert!(err.to_string().contains("no record (404)"), "{err}");
    plant(store.path(), &k, &rec(&key, &format!("/ipfs/{CID1}"), 1));
    assert_eq!(r.resolve(&spec).await.unwrap().cid, cid(CID1));
    plant(store.path(), &k, &rec(&key, &format!("/ipfs/{CID2}"), 2));
    assert_eq!(r.resolve(&spec).await.unwrap().cid, cid(CID2));
    let saved = std::fs::read(state.path().join(format!("{k}.ipns-record"))).unwrap();
    let saved = name::verify(&key.name(), &saved, SystemTime::now()).unwrap();
    assert_eq!(saved.sequence, 2);
}
