//! The in-test trustless gateway: serves real fixture blocks over HTTP on 127.0.0.1 port 0,
//! misbehaves on demand (lie, 404, fail then recover, rate-limit, stall, delay, wrong
//! content type, oversized or endless bodies) and counts the requests it receives per CID.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use cid::Cid;
use distfs::block::{codec, Block};
use distfs::car::CarReader;
use distfs::fetch::{BlockSource, GatewayClient};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/gateway-conformance/fixtures/"
);

/// Real blocks: a HAMT directory with multi-block files (CIDv0 dag-pb, CIDv1 raw) and the
/// sha2-512 raw block of the subdomain fixture.
pub fn fixture_blocks() -> Vec<Block> {
    let mut out = Vec::new();
    for car in [
        "trustless_gateway_car/single-layer-hamt-with-multi-block-files.car",
        "subdomain_gateway/fixtures.car",
    ] {
        let f = std::fs::File::open(format!("{FIXTURES}{car}")).unwrap();
        for b in CarReader::new(std::io::BufReader::new(f)).unwrap() {
            out.push(b.unwrap());
        }
    }
    assert!(out.len() > 20, "fixtures hold many blocks");
    assert!(
        out.iter().any(|b| b.cid().hash().code() == 0x13),
        "the sha2-512 block is included"
    );
    out
}

/// A block no gateway holds.
pub fn absent_block() -> Block {
    Block::encode(
        cid::Version::V1,
        codec::RAW,
        Bytes::from_static(b"nobody has this"),
    )
}

#[derive(Clone, Debug)]
pub enum Mode {
    Honest,
    /// 200 with bytes that do not hash to the CID.
    Lie,
    /// The first `times` requests for each CID get `status`, then honest.
    Fail {
        status: u16,
        times: usize,
    },
    /// The first `times` requests for each CID get 429 with `Retry-After: secs`.
    RateLimit {
        secs: u64,
        times: usize,
    },
    /// Never answers.
    Stall,
    /// Answers honestly after a delay.
    Delay(Duration),
    /// The right bytes labelled text/html.
    WrongType,
    /// A 3 MiB body, with or without Content-Length.
    Huge {
        chunked: bool,
    },
}

pub struct GwState {
    blocks: HashMap<String, Bytes>,
    mode: Mutex<Mode>,
    hits: Mutex<HashMap<String, usize>>,
    pub times: Mutex<Vec<Instant>>,
    in_flight: AtomicUsize,
    pub peak_in_flight: AtomicUsize,
}

struct InFlight<'a>(&'a GwState);
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

pub struct TestGateway {
    pub url: String,
    pub state: Arc<GwState>,
    task: tokio::task::JoinHandle<()>,
}

impl TestGateway {
    pub async fn start(blocks: &[Block], mode: Mode) -> TestGateway {
        let state = Arc::new(GwState {
            blocks: blocks
                .iter()
                .map(|b| (b.cid().to_string(), b.data().clone()))
                .collect(),
            mode: Mutex::new(mode),
            hits: Mutex::new(HashMap::new()),
            times: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            peak_in_flight: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/ipfs/{cid}", get(serve_block))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TestGateway {
            url: format!("http://{addr}"),
            state,
            task,
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    pub fn requests(&self, cid: &Cid) -> usize {
        let hits = self.state.hits.lock().unwrap();
        hits.get(&cid.to_string()).copied().unwrap_or(0)
    }

    pub fn total(&self) -> usize {
        self.state.hits.lock().unwrap().values().sum()
    }

    pub fn client(&self) -> Arc<dyn BlockSource> {
        Arc::new(GatewayClient::new(&self.url).unwrap())
    }

    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn serve_block(
    State(st): State<Arc<GwState>>,
    Path(cid): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    // The client must ask for a raw block both ways (SPECS.md §6.1).
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if query.as_deref() != Some("format=raw") || accept != Some("application/vnd.ipld.raw") {
        return (StatusCode::BAD_REQUEST, "want format=raw and Accept").into_response();
    }
    let n = {
        let mut hits = st.hits.lock().unwrap();
        let n = hits.entry(cid.clone()).or_insert(0);
        *n += 1;
        *n
    };
    st.times.lock().unwrap().push(Instant::now());
    let now = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    st.peak_in_flight.fetch_max(now, Ordering::SeqCst);
    let _guard = InFlight(&st);
    let mode = st.mode.lock().unwrap().clone();
    let raw = |body: Body| {
        Response::builder()
            .header(header::CONTENT_TYPE, "application/vnd.ipld.raw")
            .body(body)
            .unwrap()
    };
    let honest = || match st.blocks.get(&cid) {
        Some(b) => raw(Body::from(b.clone())),
        None => StatusCode::NOT_FOUND.into_response(),
    };
    match mode {
        Mode::Honest => honest(),
        Mode::Lie => match st.blocks.get(&cid) {
            Some(b) => {
                let mut v = b.to_vec();
                v.push(b'!');
                raw(Body::from(v))
            }
            None => StatusCode::NOT_FOUND.into_response(),
        },
        Mode::Fail { status, times } if n <= times => {
            StatusCode::from_u16(status).unwrap().into_response()
        }
        Mode::RateLimit { secs, times } if n <= times => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, secs.to_string())],
        )
            .into_response(),
        Mode::Fail { .. } | Mode::RateLimit { .. } => honest(),
        Mode::Stall => std::future::pending().await,
        Mode::Delay(d) => {
            tokio::time::sleep(d).await;
            honest()
        }
        Mode::WrongType => match st.blocks.get(&cid) {
            Some(b) => ([(header::CONTENT_TYPE, "text/html")], b.clone()).into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        },
        Mode::Huge { chunked: false } => raw(Body::from(vec![0u8; 3 * 1024 * 1024])),
        Mode::Huge { chunked: true } => {
            // Never ends: only a client that stops reading at the cap gets past this.
            let chunk = Bytes::from(vec![0u8; 65536]);
            raw(Body::from_stream(futures::stream::repeat_with(move || {
                Ok::<_, Infallible>(chunk.clone())
            })))
        }
    }
}
