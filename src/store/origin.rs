//! Where the blocks a task read came from: a task-local note the caching store writes when
//! a `get` had to fetch, and that a reader ([`track`]) collects after its read. It lets the
//! filesystem say which gateway served a file (`user.distfs.source`) without threading a
//! return value through every walk.
//!
//! The note lives in the reading task: the walks poll their block loads inside it (they do
//! not spawn), so every `get` of one read reaches the same note. A `get` outside any
//! [`track`] notes nothing.

use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;

tokio::task_local! {
    static ORIGIN: RefCell<Option<Arc<str>>>;
}

/// Runs `fut` and returns its output with the name of the source that delivered the last
/// block fetched while it ran (`None`: every block it read was already held locally).
pub async fn track<F: Future>(fut: F) -> (F::Output, Option<Arc<str>>) {
    ORIGIN
        .scope(RefCell::new(None), async {
            let out = fut.await;
            let source = ORIGIN.try_with(|o| o.borrow_mut().take()).ok().flatten();
            (out, source)
        })
        .await
}

/// Notes that `source` delivered a block to the current task (no-op outside [`track`]).
pub(crate) fn note(source: &Arc<str>) {
    let _ = ORIGIN.try_with(|o| *o.borrow_mut() = Some(Arc::clone(source)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn notes_reach_the_tracking_task_only() {
        let gw: Arc<str> = Arc::from("http://gw");
        let ((), none) = track(async {}).await;
        assert_eq!(none, None);
        let ((), some) = track(async { note(&gw) }).await;
        assert_eq!(some.as_deref(), Some("http://gw"));
        note(&gw); // outside any track: ignored, no panic
    }
}
