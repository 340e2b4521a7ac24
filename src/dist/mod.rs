//! The `/dist` view of a distribution root: projects, their version directories, the
//! `versions` file, `latest`, and per-version `dist.json` facts (which files are binaries);
//! the inode table; [`DistView`], the filesystem answers `fs` relays to the kernel, including
//! the atomic root swap ([`DistView::swap_root`]) when a name moves; and cold-start help for
//! files run from the mount (prefetch lists, background fetch, traces); and the magic
//! extended attributes (`xattr`); and the projects under names of their own beside the main
//! root's (`union`), some listed by the main root's hub index (`hub`).
pub mod coldstart;
pub mod hub;
pub mod inode;
pub mod meta;
pub mod open;
pub mod prefetch;
pub mod readahead;
pub mod trace;
pub mod union;
pub mod versions;
pub mod view;
mod whole;
pub mod xattr;

pub use inode::{Inode, Kind, Level, ROOT_INO};
pub use view::{DistView, Entry, Invalidation, ViewError};
pub use xattr::RootInfo;
