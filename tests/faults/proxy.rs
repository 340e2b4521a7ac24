//! A fault-injecting HTTP proxy for tests: it sits on 127.0.0.1 in front of a real `distfs
//! serve`, forwards each request (one per connection, `Connection: close`) and, when told,
//! spoils the answer to block requests (`/ipfs/...`) in one chosen way, or answers IPNS
//! record requests (`/ipns/{name}`, `/routing/v1/ipns/{name}`) with planted record bytes.
//!
//! Which block requests are spoiled is decided by a seeded PRNG (splitmix64, fixed seed, so
//! the sequence of decisions is reproducible; which request gets which decision still depends
//! on the order concurrent requests arrive in). It counts what it injected and what it
//! passed through. Plain std threads; every wait is bounded (socket timeouts, a capped
//! trickle), and the accept loop stops when the proxy is dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One way to spoil a block answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 100–600 ms added before an honest answer (jitter from the PRNG).
    Latency,
    /// The connection is closed before any response byte.
    Drop,
    /// Head and half the body, then a TCP reset (SO_LINGER 0).
    ResetMidBody,
    /// The full Content-Length announced, half the body sent, then EOF.
    Truncated,
    /// A Content-Length of half the body and exactly that half: a complete, short answer.
    ShortLength,
    /// One byte of the body flipped.
    FlipByte,
    /// The body of another block (the last one passed through).
    OtherBlock,
    /// Head, then one body byte per second (at most 30 bytes, then the connection closes).
    SlowLoris,
    /// 429 with `Retry-After: 1`.
    TooMany,
    /// 503 with `Retry-After: 1`.
    Unavailable,
    /// 200 with no Content-Length and 2 MiB + 4 KiB of body, ended by closing.
    OversizeStreamed,
    /// 200 announcing a Content-Length of 1 GiB, 64 KiB sent, then EOF.
    OversizeAnnounced,
    /// 200 `text/html` with a login page (a captive portal).
    WrongType,
}

impl Fault {
    /// Every block fault, in report order.
    pub const ALL: [Fault; 13] = [
        Fault::Latency,
        Fault::Drop,
        Fault::ResetMidBody,
        Fault::Truncated,
        Fault::ShortLength,
        Fault::FlipByte,
        Fault::OtherBlock,
        Fault::SlowLoris,
        Fault::TooMany,
        Fault::Unavailable,
        Fault::OversizeStreamed,
        Fault::OversizeAnnounced,
        Fault::WrongType,
    ];

    /// Whether the answer fails hash verification when it is complete (the fetcher then
    /// drops the source for the session).
    pub fn corrupts(self) -> bool {
        matches!(
            self,
            Fault::ShortLength | Fault::FlipByte | Fault::OtherBlock
        )
    }
}

/// Counters, readable while the proxy runs.
#[derive(Debug, Default)]
pub struct Counts {
    /// Block answers spoiled.
    pub injected: AtomicU64,
    /// Requests forwarded unchanged.
    pub passed: AtomicU64,
    /// IPNS record requests answered with the planted record.
    pub records_planted: AtomicU64,
    /// IPNS record answers spoiled by the record fault.
    pub records_spoiled: AtomicU64,
}

struct Shared {
    upstream: String,
    fault: Mutex<Option<(Fault, f64)>>,
    record: Mutex<Option<Vec<u8>>>,
    record_fault: Mutex<Option<Fault>>,
    rng: Mutex<u64>,
    last_block: Mutex<Vec<u8>>,
    counts: Counts,
    stop: AtomicBool,
}

impl Shared {
    /// The next PRNG output (splitmix64).
    fn next(&self) -> u64 {
        let mut s = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A PRNG draw in [0, 1).
    fn unit(&self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A running proxy; the accept loop ends when it is dropped.
pub struct FaultyProxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    shared: Arc<Shared>,
}

impl FaultyProxy {
    /// A proxy in front of `upstream` (`http://host:port`), honest until told otherwise,
    /// its PRNG seeded with `seed`.
    pub fn start(upstream: &str, seed: u64) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let url = format!("http://{}", listener.local_addr().expect("proxy address"));
        let shared = Arc::new(Shared {
            upstream: upstream.trim_start_matches("http://").to_string(),
            fault: Mutex::new(None),
            record: Mutex::new(None),
            record_fault: Mutex::new(None),
            rng: Mutex::new(seed),
            last_block: Mutex::new(Vec::new()),
            counts: Counts::default(),
            stop: AtomicBool::new(false),
        });
        let sh = shared.clone();
        std::thread::spawn(move || {
            while !sh.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let sh = sh.clone();
                        std::thread::spawn(move || handle(&sh, conn));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FaultyProxy { url, shared }
    }

    /// Spoils block answers with `fault`, each with probability `p`; `None`: honest.
    pub fn set_fault(&self, fault: Option<(Fault, f64)>) {
        *self.shared.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }

    /// Answers every IPNS record request with `record`; `None`: forward them.
    pub fn plant_record(&self, record: Option<Vec<u8>>) {
        *self.shared.record.lock().unwrap_or_else(|e| e.into_inner()) = record;
    }

    /// Spoils every IPNS record answer with `fault` (the record's bytes play the block's
    /// part); `None`: forward them.
    pub fn set_record_fault(&self, fault: Option<Fault>) {
        *self
            .shared
            .record_fault
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = fault;
    }

    /// The counters.
    pub fn counts(&self) -> &Counts {
        &self.shared.counts
    }

    /// Block answers spoiled so far.
    pub fn injected(&self) -> u64 {
        self.shared.counts.injected.load(Ordering::SeqCst)
    }

    /// Requests passed through unchanged so far.
    pub fn passed(&self) -> u64 {
        self.shared.counts.passed.load(Ordering::SeqCst)
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

/// An upstream answer, de-chunked.
struct Answer {
    status: String,
    content_type: Option<String>,
    retry_after: Option<String>,
    body: Vec<u8>,
}

/// Serves one connection: one request, one (possibly spoiled) answer, close.
fn handle(sh: &Shared, conn: TcpStream) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(10)));
    let Ok(read_half) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    let mut accept = None;
    for _ in 0..100 {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("accept") {
                        accept = Some(v.trim().to_string());
                    }
                }
            }
        }
    }
    let mut parts = first.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return;
    };
    let mut conn = conn;
    if method != "GET" {
        let _ = conn.write_all(
            b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    }
    if path.starts_with("/ipns/") || path.starts_with("/routing/v1/ipns/") {
        let planted = sh.record.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(rec) = planted {
            sh.counts.records_planted.fetch_add(1, Ordering::SeqCst);
            respond(
                &mut conn,
                "200 OK",
                Some("application/vnd.ipfs.ipns-record"),
                None,
                Some(rec.len()),
                &rec,
            );
            return;
        }
    }
    let Some(answer) = forward(sh, path, accept.as_deref()) else {
        let _ = conn.write_all(
            b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    };
    if path.starts_with("/ipns/") || path.starts_with("/routing/v1/ipns/") {
        let fault = *sh.record_fault.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = fault {
            sh.counts.records_spoiled.fetch_add(1, Ordering::SeqCst);
            inject(sh, f, &mut conn, answer);
            return;
        }
    }
    let fault = *sh.fault.lock().unwrap_or_else(|e| e.into_inner());
    let spoil = match fault {
        Some((f, p)) if path.starts_with("/ipfs/") && answer.status.starts_with("200") => {
            (sh.unit() < p).then_some(f)
        }
        _ => None,
    };
    let Some(f) = spoil else {
        if path.starts_with("/ipfs/") && answer.status.starts_with("200") {
            *sh.last_block.lock().unwrap_or_else(|e| e.into_inner()) = answer.body.clone();
        }
        sh.counts.passed.fetch_add(1, Ordering::SeqCst);
        respond_answer(&mut conn, &answer);
        return;
    };
    sh.counts.injected.fetch_add(1, Ordering::SeqCst);
    inject(sh, f, &mut conn, answer);
}

/// Writes `answer` spoiled by `f`.
fn inject(sh: &Shared, f: Fault, conn: &mut TcpStream, answer: Answer) {
    let ct = answer.content_type.as_deref();
    let body = answer.body;
    let half = body.len() / 2;
    match f {
        Fault::Latency => {
            let ms = 100 + sh.next() % 500;
            std::thread::sleep(Duration::from_millis(ms));
            respond(conn, "200 OK", ct, None, Some(body.len()), &body);
        }
        Fault::Drop => {
            let _ = conn.shutdown(Shutdown::Both);
        }
        Fault::ResetMidBody => {
            let _ = head(conn, "200 OK", ct, None, Some(body.len()));
            let _ = conn.write_all(&body[..half]);
            let _ = conn.flush();
            std::thread::sleep(Duration::from_millis(20));
            reset(conn);
        }
        Fault::Truncated => {
            let _ = head(conn, "200 OK", ct, None, Some(body.len()));
            let _ = conn.write_all(&body[..half]);
            let _ = conn.shutdown(Shutdown::Both);
        }
        Fault::ShortLength => respond(conn, "200 OK", ct, None, Some(half), &body[..half]),
        Fault::FlipByte => {
            let mut b = body;
            if let Some(x) = b.get_mut(half) {
                *x ^= 0x20;
            } else {
                b.push(b'!');
            }
            respond(conn, "200 OK", ct, None, Some(b.len()), &b);
        }
        Fault::OtherBlock => {
            let mut other = sh
                .last_block
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if other == body {
                other.push(0);
            }
            respond(conn, "200 OK", ct, None, Some(other.len()), &other);
        }
        Fault::SlowLoris => {
            if head(conn, "200 OK", ct, None, Some(body.len())).is_err() {
                return;
            }
            for b in body.iter().take(30) {
                if conn.write_all(&[*b]).is_err() || conn.flush().is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            let _ = conn.shutdown(Shutdown::Both);
        }
        Fault::TooMany => respond(
            conn,
            "429 Too Many Requests",
            Some("text/plain"),
            Some("1"),
            Some(4),
            b"slow",
        ),
        Fault::Unavailable => respond(
            conn,
            "503 Service Unavailable",
            Some("text/plain"),
            Some("1"),
            Some(4),
            b"down",
        ),
        Fault::OversizeStreamed => {
            if head(conn, "200 OK", ct, None, None).is_err() {
                return;
            }
            let chunk = vec![0x5a; 64 * 1024];
            for _ in 0..32 {
                if conn.write_all(&chunk).is_err() {
                    return;
                }
            }
            let _ = conn.write_all(&chunk[..4096]);
            let _ = conn.shutdown(Shutdown::Both);
        }
        Fault::OversizeAnnounced => {
            if head(conn, "200 OK", ct, None, Some(1 << 30)).is_err() {
                return;
            }
            let _ = conn.write_all(&vec![0x5a; 64 * 1024]);
            let _ = conn.shutdown(Shutdown::Both);
        }
        Fault::WrongType => {
            let page = b"<html><body><form>Log in to use this Wi-Fi</form></body></html>";
            respond(
                conn,
                "200 OK",
                Some("text/html"),
                None,
                Some(page.len()),
                page,
            );
        }
    }
}

/// Closes `conn` with a TCP reset instead of a FIN.
fn reset(conn: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid fd owned by `conn`, a pointer to a live `linger` and its size.
    unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::from_ref(&linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    // Dropping the clone does not close the fd while `conn` lives; the caller's drop does.
}

fn head(
    conn: &mut TcpStream,
    status: &str,
    ct: Option<&str>,
    retry_after: Option<&str>,
    len: Option<usize>,
) -> std::io::Result<()> {
    let mut h = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    if let Some(ct) = ct {
        h.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    if let Some(ra) = retry_after {
        h.push_str(&format!("Retry-After: {ra}\r\n"));
    }
    if let Some(n) = len {
        h.push_str(&format!("Content-Length: {n}\r\n"));
    }
    h.push_str("\r\n");
    conn.write_all(h.as_bytes())
}

fn respond(
    conn: &mut TcpStream,
    status: &str,
    ct: Option<&str>,
    retry_after: Option<&str>,
    len: Option<usize>,
    body: &[u8],
) {
    if head(conn, status, ct, retry_after, len).is_ok() {
        let _ = conn.write_all(body);
    }
    let _ = conn.shutdown(Shutdown::Write);
}

fn respond_answer(conn: &mut TcpStream, a: &Answer) {
    respond(
        conn,
        &a.status,
        a.content_type.as_deref(),
        a.retry_after.as_deref(),
        Some(a.body.len()),
        &a.body,
    );
}

/// Forwards `GET path` upstream; `None` if upstream cannot be reached or answers nonsense.
fn forward(sh: &Shared, path: &str, accept: Option<&str>) -> Option<Answer> {
    let mut up = TcpStream::connect(&sh.upstream).ok()?;
    up.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        sh.upstream
    );
    if let Some(a) = accept {
        req.push_str(&format!("Accept: {a}\r\n"));
    }
    req.push_str("\r\n");
    up.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    up.take(64 << 20).read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_once(' ')?.1.to_string();
    let (mut content_type, mut retry_after, mut chunked) = (None, None, false);
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let v = v.trim().to_string();
        if k.eq_ignore_ascii_case("content-type") {
            content_type = Some(v);
        } else if k.eq_ignore_ascii_case("retry-after") {
            retry_after = Some(v);
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.eq_ignore_ascii_case("chunked");
        }
    }
    let rest = &raw[split + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Some(Answer {
        status,
        content_type,
        retry_after,
        body,
    })
}

/// Decodes a chunked body (no trailers expected).
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for _ in 0..100_000 {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
    None
}
