//! Single-flight: concurrent requests for the same key share one execution.
//!
//! The first caller for a key spawns the work as a tokio task; later callers for the same key
//! (while it runs) await the same task's result. The work runs as its own task so that it
//! finishes (and releases whatever it holds, such as a request permit) even when every
//! caller has given up waiting; it removes its own map entry when done.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::{BoxFuture, FutureExt, Shared};

/// The shared task ended without producing a value (it panicked, or the runtime is
/// shutting down).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shared task ended without an answer: {reason}")]
pub struct FlightLost {
    /// What the runtime said about the task.
    pub reason: String,
}

type Flight<V> = Shared<BoxFuture<'static, Result<V, FlightLost>>>;

/// A map of in-flight work keyed by `K`. Cheap to clone (clones share the map).
///
/// The map sits behind a `std::sync::Mutex`: every critical section is a map lookup,
/// insert or remove with no `.await` while the lock is held, so a blocking mutex is correct
/// and cheaper than an async one.
pub struct SingleFlight<K, V> {
    map: Arc<Mutex<HashMap<K, Flight<V>>>>,
}

impl<K, V> Clone for SingleFlight<K, V> {
    fn clone(&self) -> Self {
        SingleFlight {
            map: Arc::clone(&self.map),
        }
    }
}

impl<K, V> Default for SingleFlight<K, V> {
    fn default() -> Self {
        SingleFlight {
            map: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl<K, V> SingleFlight<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `make()` for `key` unless a run for `key` is already in flight, in which case
    /// its result is awaited instead. `make` is only called by the first caller. Must be
    /// called within a tokio runtime.
    pub async fn run<F, Fut>(&self, key: K, make: F) -> Result<V, FlightLost>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        let flight = {
            let mut map = lock(&self.map);
            match map.get(&key) {
                Some(f) => {
                    drop(make); // release what the unused closure holds, now
                    f.clone()
                }
                None => {
                    let work = make();
                    let owner = Arc::clone(&self.map);
                    let k = key.clone();
                    // Spawned while the lock is held: the task's own removal (below) waits
                    // for our insert, so it always removes its own entry.
                    let handle = tokio::spawn(async move {
                        // Removes the entry however the task ends (value, panic, abort).
                        let _guard = RemoveOnDrop { map: owner, key: k };
                        work.await
                    });
                    let f: Flight<V> = async move {
                        handle.await.map_err(|e| FlightLost {
                            reason: e.to_string(),
                        })
                    }
                    .boxed()
                    .shared();
                    map.insert(key, f.clone());
                    f
                }
            }
        };
        flight.await
    }

    /// How many keys are in flight now.
    pub fn in_flight(&self) -> usize {
        lock(&self.map).len()
    }
}

/// Removes its key from the flight map when dropped.
struct RemoveOnDrop<K: Eq + Hash, V> {
    map: Arc<Mutex<HashMap<K, Flight<V>>>>,
    key: K,
}

impl<K: Eq + Hash, V> Drop for RemoveOnDrop<K, V> {
    fn drop(&mut self) {
        lock(&self.map).remove(&self.key);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_runs_share_one_execution() {
        let sf: SingleFlight<u32, u32> = SingleFlight::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let rx = Arc::new(Mutex::new(Some(rx)));
        // Each caller's closure holds a token; a joiner drops its closure on joining and
        // the leader's is consumed, so the count tells when all 16 have joined.
        let token = Arc::new(());
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (sf, runs, rx, token) = (sf.clone(), runs.clone(), rx.clone(), token.clone());
            tasks.push(tokio::spawn(async move {
                sf.run(7, move || {
                    let _token = token;
                    runs.fetch_add(1, Ordering::SeqCst);
                    let rx = rx.lock().unwrap().take().unwrap();
                    async move {
                        let _ = rx.await;
                        42
                    }
                })
                .await
            }));
        }
        while Arc::strong_count(&token) > 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(sf.in_flight(), 1);
        tx.send(()).unwrap();
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(42));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(sf.in_flight(), 0);
        // A later run executes again.
        assert_eq!(sf.run(7, || async { 43 }).await, Ok(43));
    }

    #[tokio::test]
    async fn work_finishes_when_the_caller_gives_up() {
        let sf: SingleFlight<u32, u32> = SingleFlight::new();
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        let r = tokio::time::timeout(
            Duration::from_millis(10),
            sf.run(1, move || async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                d.fetch_add(1, Ordering::SeqCst);
                1
            }),
        )
        .await;
        assert!(r.is_err(), "the caller timed out");
        while sf.in_flight() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_panicking_task_is_reported() {
        let sf: SingleFlight<u32, u32> = SingleFlight::new();
        let r = sf.run(1, || async { panic!("boom") }).await;
        assert!(r.is_err());
        // The failed flight does not stick: the next run executes afresh.
        assert_eq!(sf.run(1, || async { 5 }).await, Ok(5));
    }
}
