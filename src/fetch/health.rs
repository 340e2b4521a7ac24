//! Per-source health: latency EWMA, decaying recent-error count, `Retry-After` backoff, the
//! dropped flag, and the counters the status command prints.
//!
//! The score used to rank sources is `latency × (1 + 2 × recent errors)`: lower is better.
//! A source with no latency sample yet is assumed to take [`UNKNOWN_LATENCY_MS`], so new
//! sources get tried. Recent errors halve every [`ERROR_HALF_LIFE`], and halve again on each
//! verified block, so a demoted source recovers its rank when it stops failing.
//!
//! Re-probing: a demoted source is rarely picked, so without help its score would only
//! recover by time and its latency average would never move. [`probe_pick`] names, for one
//! fetch in [`PROBE_EVERY`], a source that is not the best and has not been asked for
//! [`PROBE_COOLDOWN`]; the fetcher sends it the same request on the side (its answer only
//! updates the health), so a recovered source earns its rank back within a bounded number of
//! requests and the reader never waits on a probe.

use std::time::{Duration, Instant};

/// Assumed latency of a source that has not answered yet.
pub(crate) const UNKNOWN_LATENCY_MS: f64 = 100.0;
/// How fast the error count decays.
pub(crate) const ERROR_HALF_LIFE: Duration = Duration::from_secs(30);
/// Weight of the newest latency sample in the EWMA.
const EWMA_ALPHA: f64 = 0.3;
/// One fetch in this many may carry a side probe to a demoted source.
pub(crate) const PROBE_EVERY: u64 = 8;
/// A source is probed only when nobody has asked it for this long.
pub(crate) const PROBE_COOLDOWN: Duration = Duration::from_secs(2);

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
    /// Where the source came from: `config` (configured or probed at start) or `routing`
    /// (found through delegated routing).
    pub origin: String,
    /// Side probes sent to it while it was demoted.
    pub probes: u64,
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
    /// When a request was last sent (the start, for a new source).
    last_asked: Instant,
    pub(crate) probes: u64,
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
            last_asked: now,
            probes: 0,
        }
    }

    /// A request is being sent now.
    pub(crate) fn on_request(&mut self, now: Instant) {
        self.requests += 1;
        self.last_asked = now;
    }

    /// What [`probe_pick`] needs to know about this source.
    pub(crate) fn probe_view(&self, now: Instant) -> ProbeView {
        ProbeView {
            score: self.score(now),
            idle: now.saturating_duration_since(self.last_asked),
            usable: !self.dropped && self.backoff_until(now).is_none(),
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
    /// Each success also halves the recent errors: a source that answers again is not kept
    /// down for minutes by its old failures.
    pub(crate) fn on_block(&mut self, took: Duration, bytes: usize) {
        self.blocks += 1;
        self.bytes += bytes as u64;
        self.observe_latency(took);
        self.recent_errors /= 2.0;
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

    pub(crate) fn snapshot(&self, name: &str, origin: &str, now: Instant) -> SourceStats {
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
            origin: origin.to_string(),
            probes: self.probes,
        }
    }
}

/// One source as [`probe_pick`] sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProbeView {
    /// [`Health::score`] now.
    pub(crate) score: f64,
    /// Time since it was last asked.
    pub(crate) idle: Duration,
    /// Not dropped and not backing off.
    pub(crate) usable: bool,
}

/// The source to probe on the side of fetch number `nth`, if any: only one fetch in
/// [`PROBE_EVERY`] probes; the candidate is a usable source that is not the best-scored one
/// and has been idle for at least [`PROBE_COOLDOWN`] (the longest idle wins).
pub(crate) fn probe_pick(views: &[ProbeView], nth: u64) -> Option<usize> {
    if nth % PROBE_EVERY != 0 || views.len() < 2 {
        return None;
    }
    let best = views
        .iter()
        .enumerate()
        .filter(|(_, v)| v.usable)
        .min_by(|a, b| a.1.score.total_cmp(&b.1.score))
        .map(|(i, _)| i)?;
    views
        .iter()
        .enumerate()
        .filter(|(i, v)| *i != best && v.usable && v.idle >= PROBE_COOLDOWN)
        .max_by_key(|(_, v)| v.idle)
        .map(|(i, _)| i)
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

    /// The soak test's gap: a fast source fails for a while, the fetcher moves to the slower
    /// one and asks only it; once the fast source works again, side probes must bring it back
    /// to first place within a bounded number of requests (time alone would take minutes).
    #[test]
    fn a_recovered_source_is_ranked_first_again() {
        let t0 = Instant::now();
        let (fast_ms, slow_ms) = (Duration::from_millis(10), Duration::from_millis(40));
        let mut hs = [Health::new(t0), Health::new(t0)];
        hs[0].on_block(fast_ms, 1);
        hs[1].on_block(slow_ms, 1);
        // The fast source fails five times in a row: demoted.
        for _ in 0..5 {
            hs[0].on_request(t0);
            hs[0].on_error(t0, None);
        }
        assert!(hs[0].score(t0) > hs[1].score(t0));
        // It recovers now. Requests arrive every 50 ms; each goes to the best-scored source
        // and, when `probe_pick` says so, also to the probed one.
        let best = |hs: &[Health; 2], now| {
            if hs[0].score(now) <= hs[1].score(now) {
                0
            } else {
                1
            }
        };
        let mut probes = 0;
        let mut first_again = None;
        for n in 1..=400u64 {
            let now = t0 + Duration::from_millis(50 * n);
            if best(&hs, now) == 0 {
                first_again = Some(n);
                break;
            }
            hs[1].on_request(now);
            hs[1].on_block(slow_ms, 1);
            let views = [hs[0].probe_view(now), hs[1].probe_view(now)];
            if let Some(p) = probe_pick(&views, n) {
                assert_eq!(p, 0, "only the demoted source is probed");
                probes += 1;
                hs[0].on_request(now);
                hs[0].on_block(fast_ms, 1);
            }
        }
        let n =
            first_again.expect("the recovered source was ranked first again within 400 requests");
        // 20 s of simulated time: errors decaying by time alone would still be 3.1 and keep
        // it ranked last, so the probes did it.
        assert!(probes > 0 && n < 400, "n = {n}, probes = {probes}");
    }

    #[test]
    fn probes_are_rare_and_spare_busy_sources() {
        let v = |score, idle_ms| ProbeView {
            score,
            idle: Duration::from_millis(idle_ms),
            usable: true,
        };
        let views = [v(10.0, 0), v(50.0, 5_000)];
        assert_eq!(probe_pick(&views, PROBE_EVERY), Some(1));
        assert_eq!(probe_pick(&views, PROBE_EVERY + 1), None, "one fetch in N");
        // Asked recently: no probe. The best source is never probed.
        assert_eq!(
            probe_pick(&[v(10.0, 9_000), v(50.0, 100)], PROBE_EVERY),
            None
        );
        let mut dead = v(50.0, 9_000);
        dead.usable = false;
        assert_eq!(probe_pick(&[v(10.0, 0), dead], PROBE_EVERY), None);
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
