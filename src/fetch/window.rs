//! The fetch window: how many block requests may be in flight at once, adapted to the
//! round trip of the sources.
//!
//! Each request in flight costs a connection and its buffers (an HTTP/1.1 connection's read
//! buffer grows to ~400 KiB on a fast link, plus the body being received), so a fixed window
//! sized for a distant gateway wastes ~100 MiB next to a near one. What a reader needs is the
//! bandwidth-delay product: `WINDOW_RATE × round trip / block size` requests keep a pipe of
//! [`WINDOW_RATE`] full. The block size is a running average of the blocks answered, between
//! [`SMALL_BLOCK`] and [`NOMINAL_BLOCK`]: a listing of small files moves a few hundred bytes
//! a request, so its requests cost no buffers to speak of and the window can hold many more
//! of them (with 256 KiB assumed, a cold listing of 10,000 files 20 ms away went 41 files
//! a round trip). [`Window::nominal`] is the window for 256 KiB blocks, which readahead
//! sizes itself by. A source's round trip is the smallest time a successful request to
//! it took in the last one or two [`RTT_EPOCH`]s (a windowed minimum, as BBR keeps its
//! `min_rtt`): the propagation delay, not the queueing that a busy source or a busy machine
//! adds (an average would grow the window exactly when more requests only queue). The
//! window is sized for the farthest source that answered in that time, so a near site cache
//! that holds a few blocks does not starve a distant gateway that sends the rest. It stays
//! within [`MIN_WINDOW`] and the configured `max_in_flight`, and starts at
//! [`INITIAL_WINDOW`] until the first answer.
//!
//! The permits live in a tokio semaphore that grows at once and shrinks as permits come
//! back. The mutex guards only arithmetic (no `.await` while held).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

/// The throughput the window is sized to sustain (bytes per second): about what two cores
/// verify and store, with headroom.
pub const WINDOW_RATE: f64 = 512.0 * 1024.0 * 1024.0;
/// The block size the window assumes (the default chunk of `ipfs add` and `distfs add`).
pub const NOMINAL_BLOCK: f64 = 256.0 * 1024.0;
/// The smallest block size the window is sized for (smaller blocks count as this).
pub const SMALL_BLOCK: f64 = 16.0 * 1024.0;
/// How much of the block-size average one answer moves (an EWMA weight).
const BLOCK_WEIGHT: f64 = 1.0 / 16.0;
/// The window never goes below this, however near the source.
pub const MIN_WINDOW: usize = 8;
/// The window before any request has been answered.
pub const INITIAL_WINDOW: usize = 32;
/// How long a round-trip minimum is remembered: the minimum is taken over the current
/// epoch and the one before it, so a route that got slower is followed within two epochs.
pub const RTT_EPOCH: Duration = Duration::from_secs(10);

/// The adaptive limit on requests in flight.
pub struct Window {
    permits: Semaphore,
    max: usize,
    state: Mutex<State>,
}

struct State {
    /// Permits the semaphore holds now, taken or not.
    total: usize,
    /// The window wanted; `total` comes down to it as permits are returned.
    target: usize,
    /// The window for [`NOMINAL_BLOCK`]s at the same round trip.
    nominal: usize,
    /// Running average of the answered blocks' sizes, within SMALL_BLOCK..=NOMINAL_BLOCK.
    block: f64,
    /// Per source (by the fetcher's index): the smallest round trip this epoch and last.
    rtts: Vec<[Option<Duration>; 2]>,
    epoch_start: Instant,
}

impl Window {
    /// A window of at most `max` requests (at least one).
    pub fn new(max: usize) -> Window {
        let max = max.max(1);
        let start = INITIAL_WINDOW.min(max);
        Window {
            permits: Semaphore::new(start),
            max,
            state: Mutex::new(State {
                total: start,
                target: start,
                nominal: start,
                block: NOMINAL_BLOCK,
                rtts: Vec::new(),
                epoch_start: Instant::now(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a slot; the request may go when this returns (`None` only if the semaphore
    /// were closed, which it never is).
    pub async fn acquire(&self) -> Option<WindowPermit<'_>> {
        let permit = self.permits.acquire().await.ok()?;
        Some(WindowPermit {
            window: self,
            permit: Some(permit),
        })
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.state()
            .total
            .saturating_sub(self.permits.available_permits())
    }

    /// The window now (what the semaphore is being brought to).
    pub fn limit(&self) -> usize {
        self.state().target
    }

    /// The window the round trip gives for [`NOMINAL_BLOCK`]s, whatever sizes are moving now.
    pub fn nominal(&self) -> usize {
        self.state().nominal
    }

    /// The round trip the window is sized by (the farthest source's), once a request has
    /// been answered.
    #[cfg(test)]
    fn sizing_rtt(&self) -> Option<Duration> {
        self.state()
            .rtts
            .iter()
            .filter_map(|r| min_opt(r[0], r[1]))
            .max()
    }

    /// Books a successful request to source `source` that took `took` and brought a block
    /// of `bytes`, at `now`, and resizes the window.
    pub fn on_answer(&self, source: usize, took: Duration, bytes: usize, now: Instant) {
        let mut s = self.state();
        let size = (bytes as f64).clamp(SMALL_BLOCK, NOMINAL_BLOCK);
        s.block += (size - s.block) * BLOCK_WEIGHT;
        if now.saturating_duration_since(s.epoch_start) >= RTT_EPOCH {
            for r in &mut s.rtts {
                *r = [None, r[0]];
            }
            s.epoch_start = now;
        }
        if s.rtts.len() <= source {
            s.rtts.resize(source + 1, [None, None]);
        }
        if let Some(r) = s.rtts.get_mut(source) {
            r[0] = min_opt(r[0], Some(took));
        }
        let farthest = s.rtts.iter().filter_map(|r| min_opt(r[0], r[1])).max();
        if let Some(rtt) = farthest {
            s.target = window_for(rtt, self.max, s.block);
            s.nominal = window_for(rtt, self.max, NOMINAL_BLOCK);
        }
        self.settle(&mut s);
    }

    /// Brings the semaphore's permits toward the target: adds at once, removes only what is
    /// not taken (the rest when it comes back, see [`WindowPermit`]).
    fn settle(&self, s: &mut State) {
        if s.target > s.total {
            self.permits.add_permits(s.target - s.total);
            s.total = s.target;
        } else if s.target < s.total {
            let gone = self.permits.forget_permits(s.total - s.target);
            s.total -= gone;
        }
    }
}

/// A slot in the window; returning it lets the window shrink if it is over its target.
pub struct WindowPermit<'a> {
    window: &'a Window,
    permit: Option<SemaphorePermit<'a>>,
}

impl Drop for WindowPermit<'_> {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let mut s = self.window.state();
        if s.total > s.target {
            permit.forget();
            s.total -= 1;
        } else {
            drop(permit);
        }
    }
}

/// Requests of `block` bytes that keep [`WINDOW_RATE`] flowing over a round trip of `rtt`,
/// within [`MIN_WINDOW`]..=`max`.
pub fn window_for(rtt: Duration, max: usize, block: f64) -> usize {
    let wanted = (WINDOW_RATE * rtt.as_secs_f64() / block.max(1.0)).ceil();
    // `as` saturates for floats; the clamp keeps the result in range.
    (wanted as usize).clamp(MIN_WINDOW.min(max), max)
}

fn min_opt(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const BLOCK: usize = NOMINAL_BLOCK as usize;

    #[test]
    fn the_window_is_the_bandwidth_delay_product_within_its_bounds() {
        assert_eq!(
            window_for(20 * MS, 128, NOMINAL_BLOCK),
            41,
            "512 MiB/s × 20 ms / 256 KiB"
        );
        assert_eq!(
            window_for(100 * MS, 128, NOMINAL_BLOCK),
            128,
            "capped at max_in_flight"
        );
        assert_eq!(
            window_for(MS / 10, 128, NOMINAL_BLOCK),
            MIN_WINDOW,
            "a near source"
        );
        assert_eq!(
            window_for(20 * MS, 4, NOMINAL_BLOCK),
            4,
            "a max below the floor wins"
        );
        assert_eq!(window_for(Duration::ZERO, 1, NOMINAL_BLOCK), 1);
    }

    #[tokio::test]
    async fn the_window_follows_the_smallest_recent_round_trip() {
        let w = Window::new(128);
        assert_eq!(w.limit(), INITIAL_WINDOW);
        let t0 = Instant::now();
        w.on_answer(0, 100 * MS, BLOCK, t0);
        assert_eq!(w.limit(), 128);
        assert_eq!(w.permits.available_permits(), 128, "grows at once");
        // A queued answer (slower) does not grow it; a faster one shrinks it.
        w.on_answer(0, 20 * MS, BLOCK, t0 + MS);
        w.on_answer(0, 300 * MS, BLOCK, t0 + 2 * MS);
        assert_eq!(w.limit(), 41);
        assert_eq!(w.sizing_rtt(), Some(20 * MS));
        // The minimum is remembered for the epoch after its own, then forgotten.
        w.on_answer(0, 60 * MS, BLOCK, t0 + RTT_EPOCH + MS);
        assert_eq!(w.limit(), 41);
        w.on_answer(0, 60 * MS, BLOCK, t0 + 2 * RTT_EPOCH + 2 * MS);
        assert_eq!(w.sizing_rtt(), Some(60 * MS));
        assert_eq!(w.limit(), 123);
    }

    #[tokio::test]
    async fn the_farthest_answering_source_sizes_the_window() {
        let w = Window::new(128);
        let t0 = Instant::now();
        w.on_answer(0, MS, BLOCK, t0); // a near site cache
        assert_eq!(w.limit(), MIN_WINDOW);
        w.on_answer(3, 40 * MS, BLOCK, t0 + MS); // a distant gateway sends the rest
        assert_eq!(w.limit(), 82);
        w.on_answer(0, MS, BLOCK, t0 + 2 * MS);
        assert_eq!(w.limit(), 82, "the near source's answers do not shrink it");
        // Two epochs without an answer from the distant one: sized by the near one again.
        w.on_answer(0, MS, BLOCK, t0 + RTT_EPOCH + 3 * MS);
        w.on_answer(0, MS, BLOCK, t0 + 2 * RTT_EPOCH + 4 * MS);
        assert_eq!(w.limit(), MIN_WINDOW);
    }

    #[tokio::test]
    async fn small_blocks_widen_the_window_and_large_ones_narrow_it_again() {
        let w = Window::new(128);
        let t0 = Instant::now();
        w.on_answer(0, 20 * MS, BLOCK, t0);
        assert_eq!((w.limit(), w.nominal()), (41, 41));
        // A listing of small files: a few hundred bytes an answer.
        for n in 1..=64 {
            w.on_answer(0, 20 * MS, 300, t0 + n * MS);
        }
        assert_eq!(w.limit(), 128, "small requests cost little: up to the cap");
        assert_eq!(w.nominal(), 41, "readahead's width stays the 256 KiB one");
        // A sequential read follows: the window comes back down as large blocks arrive.
        for n in 1..=64 {
            w.on_answer(0, 20 * MS, BLOCK, t0 + (100 + n) * MS);
        }
        assert!(w.limit() <= 45, "{}", w.limit());
        assert_eq!(window_for(20 * MS, 128, SMALL_BLOCK), 128);
        assert_eq!(window_for(2 * MS, 128, SMALL_BLOCK), 66);
    }

    #[tokio::test]
    async fn a_shrinking_window_takes_back_permits_as_they_return() {
        let w = Window::new(128);
        w.on_answer(0, 100 * MS, BLOCK, Instant::now());
        let mut held = Vec::new();
        for _ in 0..100 {
            held.push(w.acquire().await.expect("a permit"));
        }
        assert_eq!(w.in_flight(), 100);
        // Near source now: target 8, but 100 are out; only the 28 free ones go at once.
        w.on_answer(0, MS / 10, BLOCK, Instant::now() + RTT_EPOCH * 2);
        assert_eq!(w.limit(), MIN_WINDOW);
        assert_eq!(w.permits.available_permits(), 0);
        assert_eq!(w.in_flight(), 100);
        held.truncate(5);
        assert_eq!(w.in_flight(), 5);
        assert_eq!(
            w.permits.available_permits(),
            3,
            "5 out + 3 free = the window of 8"
        );
        drop(held);
        assert_eq!(w.permits.available_permits(), MIN_WINDOW);
    }
}
