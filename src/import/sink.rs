//! Where the importer puts the blocks it makes: the sync [`BlockSink`] trait and its
//! implementations (CAR file, disk store, memory store, a counting null sink, and a tee).
//!
//! The importer emits each block once, as soon as it is complete (leaves first, the root
//! last). Sinks that must not repeat a block (a CAR) remember what they wrote.

use std::collections::HashSet;
use std::io::Write;

use crate::block::{multihash_key, Block};
use crate::car::CarWriter;

use super::ImportError;

/// A synchronous consumer of freshly made blocks.
pub trait BlockSink {
    /// Takes one block. Called once per block the importer makes; the same bytes may
    /// arrive again (identical chunks), sinks decide whether to keep duplicates.
    fn put(&mut self, block: Block) -> Result<(), ImportError>;
}

impl<S: BlockSink + ?Sized> BlockSink for &mut S {
    fn put(&mut self, block: Block) -> Result<(), ImportError> {
        (**self).put(block)
    }
}

/// Appends every block it is given as a CAR section (duplicates included; see [`CarSink`]).
impl<W: Write> BlockSink for CarWriter<W> {
    fn put(&mut self, block: Block) -> Result<(), ImportError> {
        self.write_block(&block).map_err(|e| ImportError::Sink {
            cid: *block.cid(),
            reason: format!("writing CAR section: {e}"),
        })
    }
}

/// A CAR writer that writes each distinct block once.
pub struct CarSink<W> {
    writer: CarWriter<W>,
    seen: HashSet<Vec<u8>>,
}

impl<W: Write> CarSink<W> {
    /// Wraps a writer whose header is already written.
    pub fn new(writer: CarWriter<W>) -> CarSink<W> {
        CarSink {
            writer,
            seen: HashSet::new(),
        }
    }

    /// Flushes and returns the inner writer.
    pub fn finish(self) -> std::io::Result<W> {
        self.writer.finish()
    }
}

impl<W: Write> BlockSink for CarSink<W> {
    fn put(&mut self, block: Block) -> Result<(), ImportError> {
        if self.seen.insert(block.cid().to_bytes()) {
            self.writer.put(block)?;
        }
        Ok(())
    }
}

/// Keeps nothing; counts blocks and bytes (hash-only runs, benchmarks, memory tests).
#[derive(Clone, Debug, Default)]
pub struct NullSink {
    /// Blocks received.
    pub blocks: u64,
    /// Bytes received.
    pub bytes: u64,
    /// The largest block received.
    pub largest: usize,
}

impl BlockSink for NullSink {
    fn put(&mut self, block: Block) -> Result<(), ImportError> {
        self.blocks += 1;
        self.bytes += block.data().len() as u64;
        self.largest = self.largest.max(block.data().len());
        Ok(())
    }
}

/// Gives every block to two sinks (e.g. `--car` and `--store` together).
pub struct Tee<A, B>(pub A, pub B);

impl<A: BlockSink, B: BlockSink> BlockSink for Tee<A, B> {
    fn put(&mut self, block: Block) -> Result<(), ImportError> {
        self.0.put(block.clone())?;
        self.1.put(block)
    }
}

/// Keeps blocks in a map by multihash (tests: inspect what was made).
#[derive(Default)]
pub struct VecSink {
    /// Blocks in arrival order, duplicates dropped.
    pub blocks: Vec<Block>,
    seen: HashSet<Vec<u8>>,
}

impl BlockSink for VecSink {
    fn put(&mut self, block: Block) -> Result<(), ImportError> {
        if self.seen.insert(multihash_key(block.cid())) {
            self.blocks.push(block);
        }
        Ok(())
    }
}
