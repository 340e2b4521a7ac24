//! The trustless HTTP gateway (placeholder).
