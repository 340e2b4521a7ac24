//! Async walks of UnixFS DAGs over a block store (placeholder).
