//! The on-disk block store (placeholder).
