//! distfs: mounts a peer-to-peer software distribution (UnixFS DAGs on IPFS) as a read-only
//! filesystem.
//!
//! Layering (see DESIGN.md): a pure core (`block`, `unixfs`, `import`, `car`) that turns
//! bytes into values with no I/O; an async I/O ring (`store`, `walk`) that owns every wait;
//! and edges (`serve`, the CLI) that translate the outside world. Arrows point inward only.

pub mod block;
pub mod car;
pub mod daemon;
pub mod dist;
pub mod doctor;
pub mod fetch;
pub mod fs;
pub mod import;
pub mod name;
pub mod publish;
pub mod serve;
pub mod store;
pub mod unixfs;
pub mod walk;
