//! The read trace of `distfs mount --trace FILE`: one JSON line ([`TracedRead`]) per READ
//! the kernel sent, written by a dedicated thread so that no request waits on the trace file.
//! `distfs trace` turns a trace into prefetch lists (`dist::prefetch`).

use std::io::{self, LineWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Mutex;
use std::thread::JoinHandle;

use super::prefetch::TracedRead;

/// Reads queued for the writer thread at most; more are counted as dropped.
const QUEUE: usize = 65_536;

/// A trace being written. The mutexes guard only taking the sender or the thread handle out
/// at the end (and one channel send); there is no `.await` while they are held.
pub struct Tracer {
    tx: Mutex<Option<SyncSender<TracedRead>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    dropped: AtomicU64,
}

impl Tracer {
    /// Creates (truncates) `path` and starts the writer thread.
    pub fn create(path: &Path) -> io::Result<Tracer> {
        let file = std::fs::File::create(path)?;
        let (tx, rx) = sync_channel::<TracedRead>(QUEUE);
        let shown = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("distfs-trace".into())
            .spawn(move || {
                let mut out = LineWriter::new(file);
                for read in rx {
                    let line = serde_json::to_string(&read).unwrap_or_default();
                    if let Err(e) = writeln!(out, "{line}") {
                        tracing::warn!(path = %shown, "writing the read trace failed: {e}");
                        return;
                    }
                }
                let _ = out.flush();
            })?;
        Ok(Tracer {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            dropped: AtomicU64::new(0),
        })
    }

    /// Queues one read (never waits; a full queue drops it and counts it).
    pub fn record(&self, read: TracedRead) {
        let guard = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = guard.as_ref() {
            if let Err(TrySendError::Full(_)) = tx.try_send(read) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Stops taking reads and waits until every queued one is written. Blocking: call it
    /// outside the async runtime, when the mount has ended.
    pub fn finish(&self) {
        drop(self.tx.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "the read trace is missing reads (the writer fell behind)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_recorded_read_is_a_line_after_finish() {
        let dir = std::env::temp_dir().join(format!("distfs-trace-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("trace.jsonl");
        let t = Tracer::create(&path).unwrap();
        for i in 0..1000 {
            t.record(TracedRead {
                path: "p/v/f".into(),
                size: 1 << 30,
                offset: i * 4096,
                len: 4096,
            });
        }
        t.finish();
        t.record(TracedRead {
            path: "late".into(),
            size: 1,
            offset: 0,
            len: 1,
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let reads: Vec<TracedRead> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(reads.len(), 1000);
        assert_eq!(reads[999].offset, 999 * 4096);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
