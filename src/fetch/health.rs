//! Per-source health: latency EWMA, decaying recent-error count, `Retry-After` backoff, the
//! dropped flag, and the counters the status command prints.
//!
//! The score used to rank sources is `latency × (1 + 2 × recent errors)`: lower is better.
//! A source with no latency sample yet is assumed to take [`UNKNOWN_LATENCY_MS`], so new
//! sources get tried. Recent errors halve every [`ERROR_HALF_LIFE`], so a demoted source
//! recovers its rank when it stops failing.

use std::time::{Duration, Instant};

/// Assumed latency of a source that has not answered yet.
pub(crate) const UNKNOWN_LATENCY_MS: f64 = 100.0;
/// How fast the error count decays.
pub(crate) const ERROR_HALF_LIFE: Duration = Duration::from_secs(30);
/// Weight of the newest latency sample in the EWMA.
const EWMA_ALPHA: f64 = 0.3;

/// A snapshot of one source's health and counters.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SourceStats {
    /// The source's name (a gateway's base URL).
    pub name: String,
    /// Requests sent.
    pub requests: u64,
    /// Blocks delivered (verified).
    pub blocks: u64,
    /// Definite "not found" answers.
    pub not_found: u64,
    /// Failed requests (errors, timeouts, bad answers, corrupt blocks).
    pub errors: u64,
    /// Verified bytes delivered.
    pub bytes: u64,
    /// Exponentially weighted moving average of answer latency, if any answer came.
    pub latency_ewma_ms: Option<f64>,
    /// The decayed recent-error count used for ranking.
    pub recent_errors: f64,
    /// True once the source sent a wrong block; it is not asked again this session.
    pub dropped: bool,
    /// Time left in a `Retry-After` backoff, if one is running.
    pub backoff_ms: Option<u64>,
}

/// Mutable health of one source (kept behind a short-lived mutex by the fetcher).
#[derive(Debug)]
pub(crate) struct Health {
    pub(crate) requests: u64,
    pub(crate) blocks: u64,
    pub(crate) not_found: u64,
    pub(crate) errors: u64,
    pub(crate) bytes: u64,
    latency_ewma_ms: Option<f64>,
    recent_errors: f64,
    errors_at: Instant,
    pub(crate) dropped: bool,
    backoff_until: Option<Instant>,
}

impl Health {
    pub(crate) fn new(now: Instant) -> Health {
        Health {
            requests: 0,
            blocks: 0,
            not_found: 0,
            errors: 0,
            bytes: 0,
            latency_ewma_ms: None,
            recent_errors: 0.0,
            errors_at: now,
            dropped: false,
            backoff_until: None,
        }
    }

    fn observe_latency(&mut self, took: Duration) {
        let ms = took.as_secs_f64() * 1000.0;
        self.latency_ewma_ms = Some(match self.latency_ewma_ms {
            Some(avg) => avg + EWMA_ALPHA * (ms - avg),
            None => ms,
        });
    }

    fn decayed_errors(&self, now: Instant) -> f64 {
        let age = now.saturating_duration_since(self.errors_at).as_secs_f64();
        self.recent_errors * 0.5f64.powf(age / ERROR_HALF_LIFE.as_secs_f64())
    }

    /// A verified block arrived.
    pub(crate) fn on_block(&mut self, took: Duration, bytes: usize) {
        self.blocks += 1;
        self.bytes += bytes as u64;
        self.observe_latency(took);
    }

    /// The source answered "not found": a real, timely answer, not an error.
    pub(crate) fn on_not_found(&mut self, took: Duration) {
        self.not_found += 1;
        self.observe_latency(took);
    }

    /// The request failed; `backoff` is how long the source asked us to stay away.
    pub(crate) fn on_error(&mut self, now: Instant, backoff: Option<Duration>) {
        self.errors += 1;
        self.recent_errors = self.decayed_errors(now) + 1.0;
        self.errors_at = now;
        if let Some(b) = backoff {
            let until = now + b;
            self.backoff_until = Some(self.backoff_until.map_or(until, |u| u.max(until)));
        }
    }

    /// The latency EWMA in milliseconds, if the source has answered.
    pub(crate) fn latency_ewma_ms(&self) -> Option<f64> {
        self.latency_ewma_ms
    }

    /// When the source may be asked again, if it is backing off now.
    pub(crate) fn backoff_until(&self, now: Instant) -> Option<Instant> {
        self.backoff_until.filter(|u| *u > now)
    }

    /// The ranking score: lower is better.
    pub(crate) fn score(&self, now: Instant) -> f64 {
        let latency = self.latency_ewma_ms.unwrap_or(UNKNOWN_LATENCY_MS).max(0.1);
        latency * (1.0 + 2.0 * self.decayed_errors(now))
    }

    pub(crate) fn snapshot(&self, name: &str, now: Instant) -> SourceStats {
        SourceStats {
            name: name.to_string(),
            requests: self.requests,
            blocks: self.blocks,
            not_found: self.not_found,
            errors: self.errors,
            bytes: self.bytes,
            latency_ewma_ms: self.latency_ewma_ms,
            recent_errors: self.decayed_errors(now),
            dropped: self.dropped,
            backoff_ms: self
                .backoff_until(now)
                .map(|u| u.saturating_duration_since(now).as_millis() as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_demote_and_decay() {
        let t0 = Instant::now();
        let mut fast_but_failing = Health::new(t0);
        fast_but_failing.on_block(Duration::from_millis(10), 1);
        let mut slow = Health::new(t0);
        slow.on_block(Duration::from_millis(25), 1);
        assert!(fast_but_failing.score(t0) < slow.score(t0));
        fast_but_failing.on_error(t0, None);
        assert!(
            fast_but_failing.score(t0) > slow.score(t0),
            "one error demotes"
        );
        // Four half-lives later the error has mostly decayed and the fast source wins again.
        let later = t0 + ERROR_HALF_LIFE * 4;
        assert!(fast_but_failing.score(later) < slow.score(later));
    }

    #[test]
    fn ewma_moves_towards_new_samples() {
        let mut h = Health::new(Instant::now());
        h.on_block(Duration::from_millis(100), 1);
        h.on_block(Duration::from_millis(200), 1);
        let avg = h.latency_ewma_ms.unwrap();
        assert!((avg - 130.0).abs() < 1e-6, "{avg}");
    }

    #[test]
    fn backoff_expires() {
        let t0 = Instant::now();
        let mut h = Health::new(t0);
        h.on_error(t0, Some(Duration::from_secs(2)));
        assert!(h.backoff_until(t0 + Duration::from_secs(1)).is_some());
        assert!(h.backoff_until(t0 + Duration::from_secs(3)).is_none());
    }
}
