//! The start-up probe for a local Kubo gateway: the trustless-gateway client's own probe
//! (`GET /ipfs/bafkqaaa?format=raw`, the empty identity CID, which any trustless gateway
//! answers without a lookup), answered within [`PROBE_TIMEOUT`]. Only a yes/no: the fetcher
//! checks every block it later gets from the gateway anyway.

use std::net::SocketAddr;
use std::time::Duration;

use crate::fetch::GatewayClient;

/// How long the probe waits for the answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// The URL of a gateway at `addr`.
pub fn gateway_url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// True when a trustless gateway answers at `addr` within [`PROBE_TIMEOUT`].
#[tracing::instrument(skip_all, fields(%addr))]
pub async fn local_gateway_answers(addr: SocketAddr) -> bool {
    let client = match GatewayClient::http_client() {
        Ok(http) => GatewayClient::with_client(&gateway_url(addr), http, PROBE_TIMEOUT),
        Err(e) => Err(e),
    };
    let answer = match client {
        Ok(c) => tokio::time::timeout(PROBE_TIMEOUT * 2, c.probe()).await,
        Err(e) => Ok(Err(e)),
    };
    match answer {
        Ok(Ok(_)) => true,
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
