//! UnixFS over dag-pb, pure: bytes in, values out (no I/O, no async).
//!
//! Owns: decoding a block into a typed [`Node`] with every structural check of SPECS.md §2
//! and the HAMT rules of §3.6 ([`node`], [`hamt`]); entry-name policy ([`name`]); read
//! planning from `blocksizes` ([`plan`]); and all size/count limits of the read side.
//! Fetching blocks is the caller's job (see `crate::walk`): HAMT lookup is a step machine
//! that asks for the next block instead of fetching it.

// Errors carry the CIDs they are about; a `Cid` is ~100 bytes inline, which trips
// clippy's 128-byte `Err` threshold. Errors are the cold path and callers match on them,
// so they are not boxed.
#![allow(clippy::result_large_err)]

mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod hamt;
pub mod name;
pub mod node;
pub mod pb;
pub mod plan;

pub use error::UnixfsError;
pub use hamt::{murmur3_x64_64, HamtLookup, ShardLink, ShardNode, Step};
pub use name::{validate_name, MAX_NAME_LEN};
pub use node::{
    DirEntry, DirNode, FileChild, FileNode, HiddenEntry, Meta, Mtime, Node, SymlinkNode, MAX_LINKS,
};
pub use plan::{plan_read, ByteRange, ChildRead, ReadPlan};

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testutil;
