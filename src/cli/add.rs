//! `distfs add PATH`: import a file or tree like Kubo's `ipfs add -r`, print Kubo's
//! `added <cid> <path>` lines (or only the root with `-Q`), and optionally write the blocks
//! to a CAR file (`--car`) and/or a block store (`--store`).
//!
//! The CAR header must name the root, which is only known at the end, so blocks are
//! spooled to `OUT.partial` next to `OUT` and the final file is header + spool.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use distfs::block::Block;
use distfs::car::{encode_header, CarWriter};
use distfs::import::{
    add_path, AddFlags, BlockSink, CarSink, ChunkerSpec, ImportError, NullSink, Profile,
};
use distfs::store::disk::DiskStore;

/// Arguments of `distfs add` (Kubo `ipfs add` names and meanings).
#[derive(clap::Args, Debug)]
pub struct AddArgs {
    /// File, directory or symlink to add (directories are always recursive).
    pub path: PathBuf,
    /// Print only the root CID.
    #[arg(short = 'Q', long)]
    pub quieter: bool,
    /// Print only CIDs, one per added entry.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Accepted for Kubo compatibility; directories are always added recursively.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// CID version of dag-pb nodes (0 or 1); 1 turns raw leaves on unless set.
    #[arg(long, value_name = "0|1")]
    pub cid_version: Option<u8>,
    /// Use raw blocks for leaves (`--raw-leaves`, `--raw-leaves=false`).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub raw_leaves: Option<bool>,
    /// Chunker: size-N, buzhash, squashfs (AppImages/squashfs images) or default.
    #[arg(short = 's', long, value_name = "SPEC")]
    pub chunker: Option<String>,
    /// Use the trickle DAG layout.
    #[arg(short = 't', long)]
    pub trickle: bool,
    /// Store permission bits (UnixFS 1.5; disables raw leaves).
    #[arg(long)]
    pub preserve_mode: bool,
    /// Store modification times (UnixFS 1.5; disables raw leaves).
    #[arg(long)]
    pub preserve_mtime: bool,
    /// Import profile: unixfs-v0-2015 (Kubo default) or unixfs-v1-2025.
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Include dotfiles inside directories.
    #[arg(short = 'H', long)]
    pub hidden: bool,
    /// Shard directories at estimate >= 256 KiB like Kubo <= 0.39 (e.g. 0.22), not >.
    #[arg(long)]
    pub legacy_hamt_threshold: bool,
    /// Write the DAG as a CARv1 file (root in the header, each block once).
    #[arg(long, value_name = "OUT")]
    pub car: Option<PathBuf>,
    /// Write the blocks into this block store directory.
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
}

/// Runs `distfs add`.
pub fn run(args: AddArgs) -> anyhow::Result<()> {
    let flags = AddFlags {
        profile: args.profile.as_deref().map(Profile::parse).transpose()?,
        cid_version: args.cid_version,
        raw_leaves: args.raw_leaves,
        chunker: args
            .chunker
            .as_deref()
            .map(ChunkerSpec::parse)
            .transpose()?,
        trickle: args.trickle,
        preserve_mode: args.preserve_mode,
        preserve_mtime: args.preserve_mtime,
        hidden: args.hidden,
        legacy_hamt_threshold: args.legacy_hamt_threshold,
    };
    let opts = flags.resolve()?;
    let store = match &args.store {
        Some(dir) => {
            Some(DiskStore::open(dir).with_context(|| format!("opening store {}", dir.display()))?)
        }
        None => None,
    };
    let spool = match &args.car {
        Some(out) => Some(Spool::create(out)?),
        None => None,
    };
    let mut sink = Sinks {
        car: spool.as_ref().map(|s| s.sink()).transpose()?,
        store,
        count: NullSink::default(),
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut print_err = None;
    let result = add_path(&args.path, &opts, &mut sink, &mut |e| {
        if args.quieter || print_err.is_some() {
            return;
        }
        let line = if args.quiet {
            writeln!(out, "{}", e.cid)
        } else {
            writeln!(out, "added {} {}", e.cid, e.path)
        };
        if let Err(err) = line {
            print_err = Some(err);
        }
    });
    let root = match result {
        Ok(root) => root,
        Err(e) => {
            if let Some(s) = spool {
                s.abandon();
            }
            return Err(e).with_context(|| format!("adding {}", args.path.display()));
        }
    };
    if let Some(err) = print_err {
        return Err(err).context("writing to stdout");
    }
    if let (Some(s), Some(car)) = (spool, sink.car.take()) {
        s.finish(car, &root)?;
    }
    if args.quieter {
        writeln!(out, "{root}").context("writing to stdout")?;
    }
    tracing::info!(blocks = sink.count.blocks, bytes = sink.count.bytes, root = %root, "added");
    Ok(())
}

/// The sinks chosen on the command line, plus a counter.
struct Sinks {
    car: Option<CarSink<BufWriter<File>>>,
    store: Option<DiskStore>,
    count: NullSink,
}

impl BlockSink for Sinks {
    fn put(&mut self, block: Block) -> Result<(), ImportError> {
        if let Some(store) = self.store.as_mut() {
            store.put(block.clone())?;
        }
        if let Some(car) = self.car.as_mut() {
            car.put(block.clone())?;
        }
        self.count.put(block)
    }
}

/// The temporary file a CAR's sections go to until the root is known.
struct Spool {
    out: PathBuf,
    tmp: PathBuf,
}

impl Spool {
    fn create(out: &Path) -> anyhow::Result<Spool> {
        let mut tmp = out.as_os_str().to_owned();
        tmp.push(".partial");
        Ok(Spool {
            out: out.to_path_buf(),
            tmp: PathBuf::from(tmp),
        })
    }

    /// A CAR sink over the spool (its header lists no roots; it is replaced at the end).
    fn sink(&self) -> anyhow::Result<CarSink<BufWriter<File>>> {
        let file =
            File::create(&self.tmp).with_context(|| format!("creating {}", self.tmp.display()))?;
        let writer = CarWriter::new(BufWriter::new(file), &[])
            .with_context(|| format!("writing {}", self.tmp.display()))?;
        Ok(CarSink::new(writer))
    }

    /// Writes `OUT` = header naming `root` + the spooled sections, then removes the spool.
    fn finish(self, car: CarSink<BufWriter<File>>, root: &cid::Cid) -> anyhow::Result<()> {
        let ctx = |p: &Path| format!("writing CAR {}", p.display());
        let spooled = car
            .finish()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .with_context(|| ctx(&self.tmp))?;
        drop(spooled);
        let mut input = File::open(&self.tmp).with_context(|| ctx(&self.tmp))?;
        input
            .seek(SeekFrom::Start(encode_header(&[]).len() as u64))
            .with_context(|| ctx(&self.tmp))?;
        let mut output = BufWriter::new(File::create(&self.out).with_context(|| ctx(&self.out))?);
        output
            .write_all(&encode_header(&[*root]))
            .with_context(|| ctx(&self.out))?;
        io::copy(&mut input, &mut output).with_context(|| ctx(&self.out))?;
        output.flush().with_context(|| ctx(&self.out))?;
        std::fs::remove_file(&self.tmp).with_context(|| ctx(&self.tmp))?;
        Ok(())
    }

    fn abandon(self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}
