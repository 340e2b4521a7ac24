//! A lying trustless gateway: answers every `GET /ipfs/{cid}` with 200, the raw-block content
//! type and bytes that hash to nothing it was asked for. Plain std threads; counts requests.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The body every lie carries; tests check that none of it reaches a reader. Exactly one
/// 256 KiB leaf long: with raw leaves, a client that skipped verification would take it for
/// a full leaf and hand it to the reader.
pub fn lie_body() -> Vec<u8> {
    crate::support::det_bytes("the liar", 262_144)
}

/// A running liar on 127.0.0.1; the listener thread lives as long as the test process.
pub struct Liar {
    pub url: String,
    hits: Arc<AtomicUsize>,
}

impl Liar {
    pub fn start() -> Liar {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    // One request per connection: read the head, answer, close.
                    let mut first = String::new();
                    if reader.read_line(&mut first).is_err() {
                        return;
                    }
                    loop {
                        let mut line = String::new();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    if first.starts_with("GET /ipfs/") {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    let body = lie_body();
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.ipld.raw\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(head.as_bytes());
                    let _ = conn.write_all(&body);
                });
            }
        });
        Liar { url, hits }
    }

    /// Block requests received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}
