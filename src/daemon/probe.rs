//! The start-up probe for a local Kubo gateway: `GET /ipfs/bafkqaaa?format=raw` (the empty
//! identity CID, which any trustless gateway answers without a lookup) over plain HTTP/1.0,
//! answered with `200` within [`PROBE_TIMEOUT`]. Only a yes/no: the fetcher checks every
//! block it later gets from the gateway anyway.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long the probe waits for the whole answer's status line.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// The URL of a gateway at `addr`.
pub fn gateway_url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// True when a trustless gateway answers at `addr` within [`PROBE_TIMEOUT`].
#[tracing::instrument(skip_all, fields(%addr))]
pub async fn local_gateway_answers(addr: SocketAddr) -> bool {
    match tokio::time::timeout(PROBE_TIMEOUT, probe(addr)).await {
        Ok(Ok(ok)) => ok,
        Ok(Err(e)) => {
            tracing::debug!("no local gateway: {e}");
            false
        }
        Err(_) => {
            tracing::debug!("no local gateway: no answer within {PROBE_TIMEOUT:?}");
            false
        }
    }
}

async fn probe(addr: SocketAddr) -> std::io::Result<bool> {
    let mut s = TcpStream::connect(addr).await?;
    let req = format!(
        "GET /ipfs/bafkqaaa?format=raw HTTP/1.0\r\nHost: {addr}\r\nAccept: application/vnd.ipld.raw\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < head.len() {
        let got = s.read(&mut head[n..]).await?;
        if got == 0 {
            break;
        }
        n += got;
        if head[..n].contains(&b'\n') {
            break;
        }
    }
    let line = String::from_utf8_lossy(&head[..n]);
    let code = line.split_whitespace().nth(1).unwrap_or_default();
    Ok(line.starts_with("HTTP/") && code == "200")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_or_a_non_gateway_is_no_gateway() {
        // A port that was free a moment ago: connection refused.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        assert!(!local_gateway_answers(addr).await);
        // Something that answers, but not 200: not a gateway.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            if let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.0 404 Not Found\r\n\r\n").await;
            }
        });
        assert!(!local_gateway_answers(addr).await);
    }
}
