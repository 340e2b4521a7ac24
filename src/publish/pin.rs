//! After a publish: asking IPFS Pinning Service API endpoints (`--pin-service URL`, ours or
//! a commercial one) to keep the new root, and waiting a bounded time for each to report.
//!
//! Each endpoint gets `POST /pins` with the root CID, a name (`project/version`) and, as
//! origins, the multiaddr of the gateway the blocks were pushed to; then `GET
//! /pins/{requestid}` is polled (250 ms, doubling to 2 s) until the request is pinned or
//! failed, or `wait` has passed. Only spec fields are sent and read. Endpoints are asked
//! concurrently; a failure at one never affects the others, nor the publish itself.

use std::time::Duration;

use tokio::time::Instant;

use crate::fetch::pinning::{Pin, PinStatus, PinningClient, PinningError};

const FIRST_POLL: Duration = Duration::from_millis(250);
const MAX_POLL: Duration = Duration::from_secs(2);

/// What one endpoint said.
#[derive(Debug)]
pub struct PinOutcome {
    /// The endpoint URL.
    pub endpoint: String,
    /// The request's last known state (pinned or failed, or still queued/pinning when the
    /// wait ran out), or why the endpoint could not be asked or polled.
    pub result: Result<PinStatus, PinningError>,
}

/// Asks every endpoint to pin `pin`, waiting at most `wait` for each to finish.
pub async fn request_pins(clients: &[PinningClient], pin: &Pin, wait: Duration) -> Vec<PinOutcome> {
    let asks = clients.iter().map(|c| async move {
        PinOutcome {
            endpoint: c.endpoint().to_string(),
            result: pin_and_wait(c, pin, wait).await,
        }
    });
    futures::future::join_all(asks).await
}

#[tracing::instrument(skip_all, fields(endpoint = %client.endpoint(), cid = %pin.cid))]
async fn pin_and_wait(
    client: &PinningClient,
    pin: &Pin,
    wait: Duration,
) -> Result<PinStatus, PinningError> {
    let deadline = Instant::now() + wait;
    let mut status = client.add(pin).await?;
    let mut delay = FIRST_POLL;
    while !status.status.is_final() {
        if Instant::now() + delay > deadline {
            break;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_POLL);
        match client.status(&status.requestid).await {
            Ok(s) => status = s,
            // A hiccup while polling: keep the last state and poll again within the wait.
            Err(e) if e.is_retryable() => tracing::debug!("polling the pin: {e}"),
            Err(e) => return Err(e),
        }
    }
    Ok(status)
}
