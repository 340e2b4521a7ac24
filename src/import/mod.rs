//! Importing files and trees into UnixFS DAGs (placeholder).
