//! The `/dist` view of a distribution root: projects, their version directories, the
//! `versions` file, `latest`, and per-version `dist.json` facts (which files are binaries).
pub mod meta;
pub mod versions;
