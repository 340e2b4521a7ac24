//! Block fetching over real HTTP: `GatewayClient`, `Fetcher` and `CacheStore` against small
//! in-test trustless gateways (`fetch/gateway.rs`) on 127.0.0.1 port 0 that serve real
//! fixture blocks and can be told to misbehave.

#[path = "fetch/gateway.rs"]
mod gateway;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cid::Cid;
use distfs::block::{codec, Block, MAX_BLOCK_SIZE};
use distfs::fetch::{BlockSource, FetchError, Fetcher, FetcherConfig, GatewayClient};
use distfs::store::cache::{CacheError, CacheStore};
use distfs::store::disk::DiskStore;
use distfs::store::BlockStore;
use gateway::{absent_block, fixture_blocks, Mode, TestGateway};

/// Fast retries, generous per-attempt time.
fn config() -> FetcherConfig {
    FetcherConfig {
        retry_delay: Duration::from_millis(10),
        ..FetcherConfig::default()
    }
}

fn fetcher(gws: &[&TestGateway], config: FetcherConfig) -> Fetcher {
    Fetcher::new(gws.iter().map(|g| g.client()).collect(), config)
}

/// Gets every block on its own task, all at once, and checks each arrives.
async fn get_all_at_once(f: &Fetcher, blocks: &[Block]) {
    let tasks: Vec<_> = blocks
        .iter()
        .map(|b| {
            let (f, cid) = (f.clone(), *b.cid());
            tokio::spawn(async move { f.get(&cid).await })
        })
        .collect();
    for (t, b) in tasks.into_iter().zip(blocks) {
        assert_eq!(&t.await.unwrap().unwrap(), b);
    }
}

/// The contract every `BlockSource` keeps: verified blocks, a definite NotFound for an
/// absent block, identity CIDs answered inline.
async fn source_conformance(src: &dyn BlockSource, blocks: &[Block]) {
    for b in blocks {
        assert_eq!(&src.get(b.cid()).await.unwrap(), b, "{}", src.name());
    }
    let err = src.get(absent_block().cid()).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let id: Cid = "bafkqaaa".parse().unwrap();
    assert!(src.get(&id).await.unwrap().data().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_source_kind_passes_the_conformance_suite() {
    let blocks = fixture_blocks();
    let gw = TestGateway::start(&blocks, Mode::Honest).await;
    let client = GatewayClient::new(&gw.url).unwrap();
    source_conformance(&client, &blocks).await;
    let fetcher = fetcher(&[&gw], config());
    source_conformance(&fetcher, &blocks).await;
    // Each block was requested once by each source kind; the identity CID never.
    assert_eq!(gw.requests(blocks[0].cid()), 2);
    assert_eq!(gw.requests(&"bafkqaaa".parse().unwrap()), 0);
    let st = &fetcher.stats()[0];
    assert_eq!(st.blocks, blocks.len() as u64);
    assert_eq!(st.not_found, 1);
    let bytes: usize = blocks.iter().map(|b| b.data().len()).sum();
    assert_eq!(st.bytes, bytes as u64);
    assert!(st.latency_ewma_ms.is_some());
}

#[tokio::test]
async fn wrong_bytes_are_never_returned() {
    let blocks = fixture_blocks();
    let gw = TestGateway::start(&blocks, Mode::Lie).await;
    let client = GatewayClient::new(&gw.url).unwrap();
    let err = client.get(blocks[0].cid()).await.unwrap_err();
    assert!(err.is_corrupt(), "{err}");
    assert!(matches!(err, FetchError::Corrupt { url, .. } if url.starts_with(&gw.url)));
    // Through the fetcher: the only source lies, so the get fails and the source is gone.
    let f = fetcher(&[&gw], config());
    let err = f.get(blocks[1].cid()).await.unwrap_err();
    assert!(matches!(err, FetchError::AllSourcesFailed { .. }), "{err}");
    assert_eq!(f.live_sources(), 0);
    assert!(f.stats()[0].dropped);
    let err = f.get(blocks[2].cid()).await.unwrap_err();
    assert!(matches!(err, FetchError::NoSources { .. }), "{err}");
    assert_eq!(
        gw.requests(blocks[2].cid()),
        0,
        "a dropped source is not asked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liar_first_honest_second_every_get_succeeds() {
    let blocks = fixture_blocks();
    let liar = TestGateway::start(&blocks, Mode::Lie).await;
    let honest = TestGateway::start(&blocks, Mode::Honest).await;
    let f = fetcher(&[&liar, &honest], config());
    for b in &blocks {
        assert_eq!(&f.get(b.cid()).await.unwrap(), b);
    }
    assert_eq!(liar.total(), 1, "the liar was asked once, then dropped");
    let stats = f.stats();
    assert!(stats[0].dropped && !stats[1].dropped);
    assert_eq!(stats[1].blocks, blocks.len() as u64);
}

#[tokio::test]
async fn bad_answers_are_errors_not_corruption() {
    let blocks = fixture_blocks();
    let gw = TestGateway::start(&blocks, Mode::WrongType).await;
    let client = GatewayClient::new(&gw.url).unwrap();
    let err = client.get(blocks[0].cid()).await.unwrap_err();
    assert!(matches!(err, FetchError::BadContentType { .. }), "{err}");
    for chunked in [false, true] {
        gw.set_mode(Mode::Huge { chunked });
        let err = client.get(blocks[0].cid()).await.unwrap_err();
        assert!(
            matches!(err, FetchError::TooLarge { limit, .. } if limit == MAX_BLOCK_SIZE),
            "chunked={chunked}: {err}"
        );
    }
    gw.set_mode(Mode::Fail {
        status: 400,
        times: usize::MAX,
    });
    let err = client.get(blocks[0].cid()).await.unwrap_err();
    assert!(matches!(err, FetchError::Status { status: 400, .. }) && !err.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_source_is_failed_over_and_demoted() {
    let blocks = fixture_blocks();
    let bad = TestGateway::start(
        &blocks,
        Mode::Fail {
            status: 500,
            times: usize::MAX,
        },
    )
    .await;
    let good = TestGateway::start(&blocks, Mode::Honest).await;
    let f = fetcher(&[&bad, &good], config());
    for b in &blocks[..8] {
        assert_eq!(&f.get(b.cid()).await.unwrap(), b);
    }
    assert_eq!(
        bad.total(),
        1,
        "after one failure the bad source is ranked last"
    );
    let stats = f.stats();
    assert_eq!((stats[0].errors, stats[0].dropped), (1, false));
    assert_eq!(stats[1].blocks, 8);
}

#[tokio::test]
async fn server_errors_are_retried_within_the_budget() {
    let blocks = fixture_blocks();
    let gw = TestGateway::start(
        &blocks,
        Mode::Fail {
            status: 503,
            times: 2,
        },
    )
    .await;
    let f = fetcher(&[&gw], config());
    assert_eq!(&f.get(blocks[0].cid()).await.unwrap(), &blocks[0]);
    assert_eq!(gw.requests(blocks[0].cid()), 3);

    gw.set_mode(Mode::Fail {
        status: 500,
        times: usize::MAX,
    });
    let f = fetcher(
        &[&gw],
        FetcherConfig {
            max_attempts: 3,
            ..config()
        },
    );
    let err = f.get(blocks[1].cid()).await.unwrap_err();
    match &err {
        FetchError::AllSourcesFailed { attempts, .. } => {
            assert_eq!(attempts.len(), 3);
            assert!(attempts[0].0.starts_with(&gw.url) && attempts[0].1.contains("500"));
        }
        other => panic!("expected AllSourcesFailed, got {other}"),
    }
    assert!(err.is_retryable());
    assert_eq!(
        gw.requests(blocks[1].cid()),
        3,
        "the budget bounds the requests"
    );
}

#[tokio::test]
async fn rate_limit_respects_retry_after() {
    let blocks = fixture_blocks();
    let gw = TestGateway::start(&blocks, Mode::RateLimit { secs: 1, times: 1 }).await;
    let f = fetcher(&[&gw], config());
    assert_eq!(&f.get(blocks[0].cid()).await.unwrap(), &blocks[0]);
    let times = gw.state.times.lock().unwrap().clone();
    assert_eq!(times.len(), 2);
    let gap = times[1] - times[0];
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
}

#[tokio::test]
async fn not_found_everywhere_is_not_found() {
    let blocks = fixture_blocks();
    let a = TestGateway::start(&blocks, Mode::Honest).await;
    let b = TestGateway::start(&blocks, Mode::Honest).await;
    let f = fetcher(&[&a, &b], config());
    let absent = absent_block();
    let err = f.get(absent.cid()).await.unwrap_err();
    assert!(err.is_not_found() && !err.is_retryable(), "{err}");
    assert_eq!((a.total(), b.total()), (1, 1), "each source asked once");
    assert_eq!(f.stats()[0].errors, 0, "not found is not a source error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_gets_of_one_cid_share_one_request() {
    let blocks = fixture_blocks();
    let gw = TestGateway::start(&blocks, Mode::Delay(Duration::from_millis(300))).await;
    let f = fetcher(&[&gw], config());
    let cid = *blocks[3].cid();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let f = f.clone();
            tokio::spawn(async move { f.get(&cid).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), blocks[3]);
    }
    assert_eq!(gw.requests(&cid), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_requests_are_bounded() {
    let blocks = fixture_blocks();
    let gw = TestGateway::start(&blocks, Mode::Delay(Duration::from_millis(100))).await;
    let f = fetcher(
        &[&gw],
        FetcherConfig {
            max_in_flight: 2,
            ..config()
        },
    );
    get_all_at_once(&f, &blocks[..12]).await;
    assert_eq!(gw.total(), 12);
    assert_eq!(gw.state.peak_in_flight.load(Ordering::SeqCst), 2);
}

/// 256 KiB raw blocks (the default chunk), each with its own bytes.
fn large_blocks(n: u32) -> Vec<Block> {
    (0..n)
        .map(|i| {
            let data: Vec<u8> = (0..256 * 1024u32)
                .map(|j| (j.wrapping_mul(31) ^ i.wrapping_mul(7919)) as u8)
                .collect();
            Block::encode(cid::Version::V1, codec::RAW, data.into())
        })
        .collect()
}

/// The window follows the round trip: a source 2 ms away needs about 5 requests of 256 KiB
/// in flight for 512 MiB/s (the floor is 8), so a burst of gets is held to that instead of
/// the cap of 128 (each request held open costs a connection and its buffers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_near_source_gets_a_small_window() {
    let blocks = large_blocks(40);
    let gw = TestGateway::start(&blocks, Mode::Delay(Duration::from_millis(2))).await;
    let f = fetcher(&[&gw], config());
    assert_eq!(f.config().max_in_flight, 128);
    // One at a time first: the smallest of these round trips sizes the window.
    let (warm, burst) = blocks.split_at(10);
    for b in warm {
        f.get(b.cid()).await.unwrap();
    }
    // 16 would need every one of ten round trips to take over 7.8 ms on loopback.
    assert!(f.window() <= 16, "window {}", f.window());
    assert!(burst.len() > 16, "the burst could exceed the window");
    get_all_at_once(&f, burst).await;
    let peak = gw.state.peak_in_flight.load(Ordering::SeqCst);
    assert!(peak <= 16, "{peak} requests were in flight at once");
}

/// Small blocks cost a request little, so the same near source gets a wider window for
/// them (a listing of small files is one request per file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_blocks_get_a_wider_window() {
    let blocks = fixture_blocks();
    assert!(blocks.iter().all(|b| b.data().len() < 16 * 1024));
    let gw = TestGateway::start(&blocks, Mode::Delay(Duration::from_millis(2))).await;
    let f = fetcher(&[&gw], config());
    for b in &blocks {
        f.get(b.cid()).await.unwrap();
    }
    // The window for 256 KiB blocks stays as it was; the one for these is several times it.
    let (window, nominal) = (f.window(), f.nominal_window());
    assert!(nominal <= 16, "nominal {nominal}");
    assert!(window >= 3 * nominal, "window {window}, nominal {nominal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_only_source_times_out_at_the_deadline() {
    let blocks = fixture_blocks();
    let gw = TestGateway::start(&blocks, Mode::Stall).await;
    let deadline = Duration::from_secs(2);
    let f = fetcher(
        &[&gw],
        FetcherConfig {
            deadline,
            attempt_timeout: Duration::from_secs(30),
            ..config()
        },
    );
    let start = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(60), f.get(blocks[0].cid()))
        .await
        .expect("the get returned at all");
    let err = r.unwrap_err();
    assert_eq!(
        err,
        FetchError::Timeout {
            cid: *blocks[0].cid(),
            after: deadline
        }
    );
    assert!(err.is_retryable());
    assert!(start.elapsed() >= deadline);
    // The source recovers: a later get of the same block works.
    gw.set_mode(Mode::Honest);
    let b = tokio::time::timeout(Duration::from_secs(60), f.get(blocks[0].cid()))
        .await
        .expect("the get returned at all")
        .unwrap();
    assert_eq!(b, blocks[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_source_is_failed_over() {
    let blocks = fixture_blocks();
    let stalled = TestGateway::start(&blocks, Mode::Stall).await;
    let good = TestGateway::start(&blocks, Mode::Honest).await;
    let f = fetcher(
        &[&stalled, &good],
        FetcherConfig {
            attempt_timeout: Duration::from_secs(1),
            hedge_after: None,
            ..config()
        },
    );
    let b = tokio::time::timeout(Duration::from_secs(60), f.get(blocks[0].cid()))
        .await
        .expect("the get returned at all")
        .unwrap();
    assert_eq!(b, blocks[0]);
    assert_eq!(stalled.total(), 1);
    assert_eq!(f.stats()[0].errors, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_source_is_hedged() {
    let blocks = fixture_blocks();
    let stalled = TestGateway::start(&blocks, Mode::Stall).await;
    let good = TestGateway::start(&blocks, Mode::Honest).await;
    // Without hedging the stalled source would hold the get until the deadline (Timeout).
    let f = fetcher(
        &[&stalled, &good],
        FetcherConfig {
            deadline: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(30),
            hedge_after: Some(Duration::from_millis(200)),
            ..config()
        },
    );
    let b = tokio::time::timeout(Duration::from_secs(60), f.get(blocks[0].cid()))
        .await
        .expect("the get returned at all")
        .unwrap();
    assert_eq!(b, blocks[0]);
    assert_eq!((stalled.total(), good.total()), (1, 1));
    let stats = f.stats();
    assert_eq!(
        stats[0].errors, 0,
        "the cancelled slow request is not an error"
    );
    assert_eq!(stats[1].blocks, 1);
}

#[tokio::test]
async fn unverifiable_and_identity_cids_are_never_requested() {
    let blocks = fixture_blocks();
    let gw = TestGateway::start(&blocks, Mode::Honest).await;
    let f = fetcher(&[&gw], config());
    // blake2b-256: we cannot check it, so we must not ask for it.
    let mh = multihash::Multihash::<64>::wrap(0xb220, &[1u8; 32]).unwrap();
    let cid = Cid::new_v1(codec::RAW, mh);
    let err = f.get(&cid).await.unwrap_err();
    assert!(matches!(err, FetchError::Unverifiable { .. }), "{err}");
    let id = Block::from_identity(&"bafkqaaa".parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(f.get(id.cid()).await.unwrap(), id);
    assert_eq!(gw.total(), 0);
}

#[tokio::test]
async fn from_gateways_builds_working_sources() {
    let blocks = fixture_blocks();
    let a = TestGateway::start(&blocks, Mode::Honest).await;
    let f = Fetcher::from_gateways(&[a.url.as_str(), "http://127.0.0.1:9/"], config()).unwrap();
    assert_eq!(f.stats().len(), 2);
    assert_eq!(f.stats()[0].name, a.url);
    assert_eq!(&f.get(blocks[0].cid()).await.unwrap(), &blocks[0]);
    assert!(Fetcher::from_gateways(&["gopher://x"], config()).is_err());
}

// ---------------------------------------------------------------- CacheStore

fn cache(dir: &std::path::Path, gws: &[&TestGateway]) -> CacheStore {
    CacheStore::new(DiskStore::open(dir).unwrap(), fetcher(gws, config()))
}

#[tokio::test]
async fn cache_miss_then_hit() {
    let blocks = fixture_blocks();
    let gw = TestGateway::start(&blocks, Mode::Honest).await;
    let dir = tempfile::tempdir().unwrap();
    let c = cache(dir.path(), &[&gw]);
    let b = &blocks[5];
    assert_eq!(&c.get(b.cid()).await.unwrap(), b);
    assert_eq!(&c.get(b.cid()).await.unwrap(), b);
    assert_eq!(gw.requests(b.cid()), 1, "the second get made no request");
    let s = c.stats();
    assert_eq!((s.hits, s.misses, s.fetches), (1, 1, 1));
    assert_eq!(s.fetched_bytes, b.data().len() as u64);
    // The disk write happens behind the reader's back; flush waits for it.
    assert!(c.flush(Duration::from_secs(30)).await, "writes finished");
    assert!(c.disk().path_of(b.cid()).exists());
}

#[tokio::test]
async fn preload_brings_held_blocks_into_memory_and_drops_corrupt_ones() {
    let blocks = fixture_blocks();
    let dir = tempfile::tempdir().unwrap();
    let disk = DiskStore::open(dir.path()).unwrap();
    for b in &blocks[..4] {
        disk.put(b.clone()).await.unwrap();
    }
    // Block 3 rots on disk; block 4 was never stored.
    let rotten = disk.path_of(blocks[3].cid());
    let mut bytes = std::fs::read(&rotten).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&rotten, bytes).unwrap();
    let c = CacheStore::new(disk.clone(), fetcher(&[], config())).with_offline(true);
    let cids: Vec<Cid> = blocks[..5].iter().map(|b| *b.cid()).collect();
    c.preload(&cids).await;
    // The held blocks are in memory now: their files can go and the gets still answer.
    for b in &blocks[..3] {
        std::fs::remove_file(disk.path_of(b.cid())).unwrap();
        assert_eq!(&c.get(b.cid()).await.unwrap(), b);
    }
    // The rotten one was checked, dropped and counted; nothing was fetched (offline).
    assert!(!rotten.exists());
    assert_eq!(c.stats().corrupt_dropped, 1);
    assert!(c.get(blocks[3].cid()).await.is_err());
    assert!(c.get(blocks[4].cid()).await.is_err());
}

#[tokio::test]
async fn cache_persists_across_reopen() {
    let blocks = fixture_blocks();
    let gw = TestGateway::start(&blocks, Mode::Honest).await;
    let url = gw.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let c = cache(dir.path(), &[&gw]);
    for b in &blocks[..4] {
        c.get(b.cid()).await.unwrap();
    }
    assert!(c.flush(Duration::from_secs(30)).await, "writes finished");
    drop(c);
    gw.stop().await;
    // A new cache on the same directory, pointing at the stopped gateway.
    let f = Fetcher::from_gateways(&[url], config()).unwrap();
    let c = CacheStore::new(DiskStore::open(dir.path()).unwrap(), f);
    for b in &blocks[..4] {
        assert_eq!(&c.get(b.cid()).await.unwrap(), b);
    }
    assert_eq!(c.stats().hits, 4);
    // A block never cached needs the (dead) gateway: a retryable failure, not a None.
    let err = c.get(blocks[4].cid()).await.unwrap_err();
    assert!(err.is_retryable() && !err.is_not_found(), "{err}");
}

#[tokio::test]
async fn corrupt_cached_block_is_fetched_again() {
    let blocks = fixture_blocks();
    let gw = TestGateway::start(&blocks, Mode::Honest).await;
    let dir = tempfile::tempdir().unwrap();
    let c = cache(dir.path(), &[&gw]);
    let b = &blocks[6];
    c.get(b.cid()).await.unwrap();
    assert!(c.flush(Duration::from_secs(30)).await, "writes finished");
    let path = c.disk().path_of(b.cid());
    std::fs::write(&path, b"rotten bytes").unwrap();
    // The running cache still holds the verified block in memory: right bytes, no request.
    assert_eq!(&c.get(b.cid()).await.unwrap(), b);
    assert_eq!(gw.requests(b.cid()), 1);
    // After a restart only the disk is left: the rot is detected, dropped and refetched.
    let c = cache(dir.path(), &[&gw]);
    assert_eq!(&c.get(b.cid()).await.unwrap(), b);
    assert_eq!(gw.requests(b.cid()), 2);
    assert_eq!(c.stats().corrupt_dropped, 1);
    assert!(c.flush(Duration::from_secs(30)).await, "writes finished");
    assert_eq!(std::fs::read(&path).unwrap(), b.data().to_vec(), "repaired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cache_misses_fetch_once() {
    let blocks = fixture_blocks();
    let gw = TestGateway::start(&blocks, Mode::Delay(Duration::from_millis(300))).await;
    let dir = tempfile::tempdir().unwrap();
    let c = cache(dir.path(), &[&gw]);
    let b = blocks[7].clone();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (c, cid) = (c.clone(), *b.cid());
            tokio::spawn(async move { c.get(&cid).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), b);
    }
    assert_eq!(gw.requests(b.cid()), 1);
    assert_eq!(c.stats().fetches, 1);
}

#[tokio::test]
async fn offline_cache_serves_hits_and_never_fetches() {
    let blocks = fixture_blocks();
    let gw = TestGateway::start(&blocks, Mode::Honest).await;
    let dir = tempfile::tempdir().unwrap();
    let c = cache(dir.path(), &[&gw]);
    c.get(blocks[0].cid()).await.unwrap();
    let c = c.with_offline(true);
    assert_eq!(&c.get(blocks[0].cid()).await.unwrap(), &blocks[0]);
    let err = c.get(blocks[1].cid()).await.unwrap_err();
    assert!(matches!(err, CacheError::Offline { .. }), "{err}");
    assert_eq!(gw.requests(blocks[1].cid()), 0);
    // Through the BlockStore trait an offline miss is an error, not a None.
    assert!(BlockStore::get(&c, blocks[1].cid()).await.is_err());
    assert_eq!(gw.total(), 1);
}

#[tokio::test]
async fn cache_as_block_store() {
    let blocks = fixture_blocks();
    let gw = TestGateway::start(&blocks, Mode::Honest).await;
    let dir = tempfile::tempdir().unwrap();
    let c = cache(dir.path(), &[&gw]);
    let store: &dyn BlockStore = &c;
    assert!(
        !store.has(blocks[0].cid()).await.unwrap(),
        "has never fetches"
    );
    assert_eq!(
        store.get(blocks[0].cid()).await.unwrap().as_ref(),
        Some(&blocks[0])
    );
    assert!(store.has(blocks[0].cid()).await.unwrap());
    assert_eq!(store.get(absent_block().cid()).await.unwrap(), None);
    let mine = absent_block();
    store.put(mine.clone()).await.unwrap();
    assert_eq!(store.get(mine.cid()).await.unwrap(), Some(mine));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_deadline_surfaces_as_timed_out_io_error() {
    let blocks = fixture_blocks();
    let gw = TestGateway::start(&blocks, Mode::Stall).await;
    let dir = tempfile::tempdir().unwrap();
    let f = fetcher(
        &[&gw],
        FetcherConfig {
            deadline: Duration::from_secs(1),
            ..config()
        },
    );
    let c = CacheStore::new(DiskStore::open(dir.path()).unwrap(), f);
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        BlockStore::get(&c, blocks[0].cid()),
    )
    .await
    .expect("the get returned at all")
    .unwrap_err();
    match err {
        distfs::store::StoreError::Io { source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::TimedOut);
            let inner = source
                .get_ref()
                .and_then(|e| e.downcast_ref::<CacheError>());
            assert!(inner.is_some_and(|e| e.is_retryable()), "{source}");
        }
        other => panic!("expected an I/O error, got {other}"),
    }
}
