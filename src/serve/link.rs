//! A modelled network link for benchmarks (`distfs serve --rate-mbit`): every response body
//! of the gateway goes through one shared pipe of a given rate, first come first served, so
//! a benchmark on loopback can see what a user on a real link sees (the gateway's
//! `--latency` adds the round trip). Off (no pacing at all) unless a rate is set.
//!
//! The pipe is a single clock, "when the link is next free": a body's data frame of `n`
//! bytes is booked at `max(now, free)` for `n / rate` seconds and sent when its booking
//! ends. The mutex guards only that arithmetic.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use bytes::Bytes;
use tokio::time::{Instant, Sleep};

/// One shared link of a fixed rate.
#[derive(Debug)]
pub struct Link {
    bytes_per_sec: f64,
    free_at: Mutex<Instant>,
}

impl Link {
    /// A link that carries `bits_per_sec` (at least one bit per second).
    pub fn new(bits_per_sec: u64) -> Link {
        Link {
            bytes_per_sec: bits_per_sec.max(1) as f64 / 8.0,
            free_at: Mutex::new(Instant::now()),
        }
    }

    /// Books `n` bytes on the link; the instant their last byte has crossed it.
    fn book(&self, n: usize) -> Instant {
        let mut free = self.free_at.lock().unwrap_or_else(|e| e.into_inner());
        let start = (*free).max(Instant::now());
        let end = start + Duration::from_secs_f64(n as f64 / self.bytes_per_sec);
        *free = end;
        end
    }

    /// `body`, each data frame held until the link has carried it.
    pub fn pace(self: &Arc<Self>, body: Body) -> Body {
        Body::new(Paced {
            inner: body,
            link: Arc::clone(self),
            held: None,
        })
    }
}

/// A body whose data frames wait for their turn on a [`Link`]. Keeps the inner body's size
/// hint, so `Content-Length` stays.
struct Paced {
    inner: Body,
    link: Arc<Link>,
    /// A frame booked on the link and the timer until its booking ends.
    held: Option<(http_body::Frame<Bytes>, Pin<Box<Sleep>>)>,
}

impl HttpBody for Paced {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if this.held.is_none() {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let n = frame.data_ref().map_or(0, Bytes::len);
                    if n == 0 {
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    let until = this.link.book(n);
                    this.held = Some((frame, Box::pin(tokio::time::sleep_until(until))));
                }
                other => return other,
            }
        }
        let Some((_, sleep)) = this.held.as_mut() else {
            return Poll::Pending; // unreachable: `held` was just filled
        };
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(this.held.take().map(|(frame, _)| Ok(frame))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let mut hint = self.inner.size_hint();
        if let Some(n) = self
            .held
            .as_ref()
            .and_then(|(f, _)| f.data_ref())
            .map(|d| d.len() as u64)
        {
            hint.set_lower(hint.lower().saturating_add(n));
            if let Some(upper) = hint.upper() {
                hint.set_upper(upper.saturating_add(n));
            }
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bodies_share_the_link_in_turn() {
        let link = Arc::new(Link::new(8_000_000)); // 1 MB/s
        let t0 = Instant::now();
        let a = link.pace(Body::from(vec![0u8; 500_000]));
        let b = link.pace(Body::from(vec![1u8; 250_000]));
        assert_eq!(a.size_hint().exact(), Some(500_000), "Content-Length stays");
        let a = axum::body::to_bytes(a, usize::MAX).await.expect("a");
        let after_a = Instant::now() - t0;
        let b = axum::body::to_bytes(b, usize::MAX).await.expect("b");
        let after_b = Instant::now() - t0;
        assert_eq!((a.len(), b.len()), (500_000, 250_000));
        assert_eq!(after_a, Duration::from_millis(500));
        assert_eq!(after_b, Duration::from_millis(750), "b waited for a's turn");
    }
}
