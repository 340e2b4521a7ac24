//! `distfs trace`: turns a read trace (`distfs mount --trace FILE` while the program runs from
//! the mount) into publisher prefetch lists, one `<file>.prefetch` sidecar per file read,
//! written under the publisher's tree at the file's path in the mount.

use std::io::BufRead;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context};
use distfs::dist::prefetch::{lists_from_trace, TracedRead, SIDECAR_SUFFIX};

/// Arguments of `distfs trace`.
#[derive(clap::Args)]
pub struct TraceArgs {
    /// The trace written by `distfs mount --trace FILE`.
    pub trace: PathBuf,
    /// The publisher's distribution tree: `DIR/<path>.prefetch` is written for every file
    /// the trace read (its directory must exist).
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
    /// Only files whose path in the mount ends with this (e.g. `.AppImage`).
    #[arg(long, value_name = "SUFFIX")]
    pub only: Option<String>,
}

/// Writes the prefetch lists.
pub fn run(args: TraceArgs) -> anyhow::Result<()> {
    let file = std::fs::File::open(&args.trace)
        .with_context(|| format!("opening the trace {}", args.trace.display()))?;
    let mut reads = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", args.trace.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let read: TracedRead = serde_json::from_str(&line).with_context(|| {
            format!("{} line {}: not a traced read", args.trace.display(), n + 1)
        })?;
        if args.only.as_deref().is_none_or(|s| read.path.ends_with(s)) {
            reads.push(read);
        }
    }
    let lists = lists_from_trace(reads);
    if lists.is_empty() {
        bail!(
            "the trace has no reads{}: run the program from the mount while it traces",
            match &args.only {
                Some(s) => format!(" of files ending in {s}"),
                None => String::new(),
            }
        );
    }
    for (path, list) in lists {
        let rel = safe_relative(&path)?;
        let out = args
            .out_dir
            .join(format!("{}{SIDECAR_SUFFIX}", rel.display()));
        let dir = out.parent().unwrap_or(Path::new("."));
        if !dir.is_dir() {
            bail!("{}: no such directory in the publisher's tree (is --out-dir the tree that was mounted?)", dir.display());
        }
        std::fs::write(&out, list.to_json())
            .with_context(|| format!("writing {}", out.display()))?;
        println!(
            "{}: {} ranges, {} of {} bytes",
            out.display(),
            list.ranges.len(),
            list.total_bytes(),
            list.size
        );
    }
    Ok(())
}

/// `path` from a trace as a relative path with no `..`, root or empty parts.
fn safe_relative(path: &str) -> anyhow::Result<PathBuf> {
    let p = Path::new(path);
    if path.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        bail!("trace path {path:?} is not a plain relative path");
    }
    Ok(p.to_path_buf())
}
