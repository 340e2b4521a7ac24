//! distfs: mounts a peer-to-peer software distribution (UnixFS DAGs on IPFS) as a read-only
//! filesystem.
//!
//! Layering (see DESIGN.md): a pure core (`block`, `unixfs`, `import`, `car`) that turns
//! bytes into values with no I/O; an async I/O ring (`store`, `walk`) that owns every wait;
//! and edges (`serve`, the CLI) that translate the outside world. Arrows point inward only.
//!
//! The `daemon` feature (on by default) adds everything past the pure core and the record
//! checks: the I/O ring, the mount, the gateway, fetching and publishing. The fuzz build turns
//! it off so that it compiles only the decoders, not the whole network stack.

pub mod block;
pub mod car;
#[cfg(feature = "daemon")]
pub mod daemon;
#[cfg(feature = "daemon")]
pub mod dist;
#[cfg(feature = "daemon")]
pub mod doctor;
#[cfg(feature = "daemon")]
pub mod fetch;
#[cfg(feature = "daemon")]
pub mod fs;
pub mod import;
pub mod name;
#[cfg(feature = "daemon")]
pub mod publish;
#[cfg(feature = "daemon")]
pub mod serve;
#[cfg(feature = "daemon")]
pub mod store;
pub mod unixfs;
#[cfg(feature = "daemon")]
pub mod walk;
