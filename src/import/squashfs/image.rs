//! Finding a squashfs 4.0 image in a file (bare, or after an AppImage's ELF runtime) and
//! listing its blocks: superblock, every file's data blocks, fragment blocks, and the metadata
//! blocks and index arrays of its tables — each with its offset in the file.
//!
//! Everything read is input: every offset is checked against the image before it is used,
//! every count against the bytes that hold it, decompressed tables are capped
//! ([`MAX_TABLE_BYTES`]), and any inconsistency (overlapping blocks, a table chain that does
//! not end where the next table starts) rejects the image with an [`Unrecognized`] reason.

use std::collections::BTreeSet;
use std::io;

use super::inode::regular_files;
use super::locate::locate;
use super::meta::{self, u16_at, u32_at, u64_at, walk_chain, Compressor, METADATA_SIZE};

/// The squashfs magic, `hsqs`.
pub const MAGIC: &[u8; 4] = b"hsqs";
/// Superblock length.
pub const SUPERBLOCK_LEN: u64 = 96;
/// Most decompressed table bytes (inodes + fragment table) held while planning.
pub const MAX_TABLE_BYTES: usize = 64 << 20;
/// Most blocks listed for one image.
pub const MAX_PIECES: usize = 2 << 20;
/// "No such table" in the superblock.
const INVALID: u64 = u64::MAX;
/// Data block size word: stored uncompressed.
const BLOCK_STORED: u32 = 1 << 24;
/// Superblock flag: a compressor options metadata block follows the superblock.
const FLAG_COMPRESSOR_OPTIONS: u16 = 0x0400;

/// Positioned reads of the file being imported.
pub trait ImageSource {
    /// The file length.
    fn size(&self) -> u64;
    /// Fills `buf` from `offset` (callers keep `offset + buf.len() <= size()`).
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

impl ImageSource for &[u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// Why a file is not chunked by its squashfs structure (it is chunked with buzhash instead).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unrecognized {
    /// No superblock at offset 0, at the end of the ELF sections, or in the scan window.
    #[error("no squashfs 4.0 superblock found")]
    NotFound,
    /// A superblock was found but its fields do not hold together.
    #[error("superblock at byte {offset}: {reason}")]
    BadSuperblock {
        /// Where the magic was.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// The tables are compressed with a compressor that is not decoded here.
    #[error("compressor {0:?} is not supported (gzip, xz, lz4 and zstd are)")]
    UnsupportedCompressor(Compressor),
    /// A table is inconsistent.
    #[error("{table} at byte {offset}: {reason}")]
    Malformed {
        /// Which table.
        table: &'static str,
        /// Its offset in the file.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
}

/// A squashfs 4.0 superblock (little-endian, 96 bytes); offsets are relative to the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// Inodes in the inode table.
    pub inode_count: u32,
    /// Data block size (a power of two, 4 KiB ..= 1 MiB).
    pub block_size: u32,
    /// Entries in the fragment table.
    pub fragment_count: u32,
    /// The compressor.
    pub compressor: Compressor,
    /// Flag bits.
    pub flags: u16,
    /// Entries in the id table.
    pub id_count: u16,
    /// Image length (without padding).
    pub bytes_used: u64,
    /// Id table index.
    pub id_table: u64,
    /// Xattr id table header, or none.
    pub xattr_id_table: u64,
    /// Inode table start.
    pub inode_table: u64,
    /// Directory table start.
    pub directory_table: u64,
    /// Fragment table index, or none.
    pub fragment_table: u64,
    /// Export table index, or none.
    pub export_table: u64,
}

impl Superblock {
    /// Parses and checks a superblock; `room` is how many bytes the file has from its start.
    pub fn parse(b: &[u8; 96], room: u64) -> Result<Superblock, &'static str> {
        if &b[..4] != MAGIC {
            return Err("no magic");
        }
        if (u16_at(b, 28), u16_at(b, 30)) != (4, 0) {
            return Err("not squashfs 4.0");
        }
        let block_size = u32_at(b, 12);
        if !block_size.is_power_of_two()
            || !(4096..=1 << 20).contains(&block_size)
            || u32::from(u16_at(b, 22)) != block_size.trailing_zeros()
        {
            return Err("bad block size");
        }
        let compressor = Compressor::from_id(u16_at(b, 20)).ok_or("unknown compressor")?;
        let sb = Superblock {
            inode_count: u32_at(b, 4),
            block_size,
            fragment_count: u32_at(b, 16),
            compressor,
            flags: u16_at(b, 24),
            id_count: u16_at(b, 26),
            bytes_used: u64_at(b, 40),
            id_table: u64_at(b, 48),
            xattr_id_table: u64_at(b, 56),
            inode_table: u64_at(b, 64),
            directory_table: u64_at(b, 72),
            fragment_table: u64_at(b, 80),
            export_table: u64_at(b, 88),
        };
        if sb.bytes_used < SUPERBLOCK_LEN || sb.bytes_used > room {
            return Err("image length past the end of the file");
        }
        if !(SUPERBLOCK_LEN <= sb.inode_table
            && sb.inode_table < sb.directory_table
            && sb.directory_table <= sb.id_table
            && sb.id_table < sb.bytes_used)
        {
            return Err("tables out of order");
        }
        for t in [sb.xattr_id_table, sb.fragment_table, sb.export_table] {
            if t != INVALID && !(sb.directory_table..sb.bytes_used).contains(&t) {
                return Err("table outside the image");
            }
        }
        if sb.fragment_count > 0 && sb.fragment_table == INVALID {
            return Err("fragments without a fragment table");
        }
        if sb.inode_count == 0 || sb.id_count == 0 {
            return Err("no inodes or no ids");
        }
        Ok(sb)
    }
}

/// What a [`Piece`] of the image is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PieceKind {
    /// The superblock.
    Superblock,
    /// One data block of a file; blocks of the same run share the number.
    Data {
        /// Which file run.
        run: u32,
    },
    /// A fragment block (tails of several small files).
    Fragment,
    /// A metadata block of a table (or the compressor options).
    Metadata,
    /// An uncompressed table index (or the xattr id table header).
    Index,
}

/// One block of the image, at absolute file offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Offset in the file.
    pub start: u64,
    /// Length in bytes (never 0).
    pub len: u32,
    /// What it is.
    pub kind: PieceKind,
}

impl Piece {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.start + u64::from(self.len)
    }
}

/// A recognised image: where it starts and its blocks in file order, disjoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Offset of the superblock in the file (0 for a bare image, the runtime length for an
    /// AppImage).
    pub offset: u64,
    /// The superblock.
    pub superblock: Superblock,
    /// Every block, sorted by offset, non-overlapping.
    pub pieces: Vec<Piece>,
}

/// Finds and indexes the squashfs image in `src`. I/O errors are returned as such; anything
/// wrong with the bytes is an [`Unrecognized`] reason.
pub fn read_image<S: ImageSource>(src: &mut S) -> io::Result<Result<Image, Unrecognized>> {
    let (offset, sb) = match locate(src)? {
        Ok(found) => found,
        Err(e) => return Ok(Err(e)),
    };
    if !sb.compressor.is_supported() {
        return Ok(Err(Unrecognized::UnsupportedCompressor(sb.compressor)));
    }
    let mut walker = Walker {
        src,
        base: offset,
        sb,
        pieces: Vec::new(),
        anchors: BTreeSet::new(),
    };
    Ok(match walker.walk() {
        Ok(()) => finish(offset, sb, walker.pieces),
        Err(Fail::Io(e)) => return Err(e),
        Err(Fail::Bad(u)) => Err(u),
    })
}

enum Fail {
    Io(io::Error),
    Bad(Unrecognized),
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Fail {
        Fail::Io(e)
    }
}

struct Walker<'a, S> {
    src: &'a mut S,
    base: u64,
    sb: Superblock,
    pieces: Vec<Piece>,
    /// Table starts (image-relative): where one metadata chain must end.
    anchors: BTreeSet<u64>,
}

fn bad(table: &'static str, offset: u64, reason: &'static str) -> Fail {
    Fail::Bad(Unrecognized::Malformed {
        table,
        offset,
        reason,
    })
}

impl<S: ImageSource> Walker<'_, S> {
    fn walk(&mut self) -> Result<(), Fail> {
        let sb = self.sb;
        self.push(0, SUPERBLOCK_LEN, PieceKind::Superblock)?;
        let mut data_start = SUPERBLOCK_LEN;
        if sb.flags & FLAG_COMPRESSOR_OPTIONS != 0 {
            let b = self.read("compressor options", SUPERBLOCK_LEN, 2)?;
            let (len, _) = meta::header(&b)
                .ok_or_else(|| bad("compressor options", self.base + 96, "bad header"))?;
            data_start += 2 + len as u64;
            if data_start > sb.inode_table {
                return Err(bad(
                    "compressor options",
                    self.base + 96,
                    "overlaps the data",
                ));
            }
            self.push(SUPERBLOCK_LEN, 2 + len as u64, PieceKind::Metadata)?;
        }
        for t in [
            sb.inode_table,
            sb.directory_table,
            sb.id_table,
            sb.bytes_used,
        ] {
            self.anchors.insert(t);
        }
        for t in [sb.fragment_table, sb.export_table, sb.xattr_id_table] {
            if t != INVALID {
                self.anchors.insert(t);
            }
        }
        // Indexed tables first: their block pointers are anchors for the chains.
        let fragments = if sb.fragment_count > 0 {
            let raw = self.indexed(
                "fragment table",
                sb.fragment_table,
                sb.fragment_count,
                16,
                true,
            )?;
            self.fragments(&raw, data_start)?
        } else {
            0
        };
        if sb.export_table != INVALID {
            self.indexed("export table", sb.export_table, sb.inode_count, 8, false)?;
        }
        self.indexed("id table", sb.id_table, u32::from(sb.id_count), 4, false)?;
        if sb.xattr_id_table != INVALID {
            self.xattrs()?;
        }
        // The inode table must end exactly where the directory table starts.
        let inodes = self.chain(
            "inode table",
            sb.inode_table,
            Some(sb.directory_table),
            true,
        )?;
        self.chain("directory table", sb.directory_table, None, false)?;
        self.files(&inodes, fragments, data_start)
    }

    /// Reads `len` bytes at image offset `at`, which the caller has bounded by the image.
    fn read(&mut self, table: &'static str, at: u64, len: u64) -> Result<Vec<u8>, Fail> {
        if at
            .checked_add(len)
            .is_none_or(|end| end > self.sb.bytes_used)
        {
            return Err(bad(
                table,
                self.base.saturating_add(at),
                "runs past the image",
            ));
        }
        let n = usize::try_from(len).map_err(|_| bad(table, self.base + at, "too large"))?;
        let mut buf = vec![0u8; n];
        self.src.read_at(self.base + at, &mut buf)?;
        Ok(buf)
    }

    fn push(&mut self, at: u64, len: u64, kind: PieceKind) -> Result<(), Fail> {
        if self.pieces.len() >= MAX_PIECES {
            return Err(bad("image", self.base, "too many blocks to index"));
        }
        let len = u32::try_from(len).map_err(|_| bad("image", self.base + at, "block too long"))?;
        self.pieces.push(Piece {
            start: self.base + at,
            len,
            kind,
        });
        Ok(())
    }

    /// A table stored as metadata blocks listed by an index of u64 pointers at `index`:
    /// records both as pieces and (with `decode`) returns the table's decompressed bytes.
    fn indexed(
        &mut self,
        table: &'static str,
        index: u64,
        entries: u32,
        entry_len: u64,
        decode: bool,
    ) -> Result<Vec<u8>, Fail> {
        let bytes = u64::from(entries) * entry_len;
        let blocks = bytes.div_ceil(METADATA_SIZE as u64);
        let ptrs = self.read(table, index, blocks * 8)?;
        self.push(index, blocks * 8, PieceKind::Index)?;
        let mut out = Vec::new();
        for p in ptrs.chunks_exact(8) {
            let at = u64_at(p, 0);
            if at < self.sb.inode_table || at >= index {
                return Err(bad(
                    table,
                    self.base + index,
                    "block pointer outside the tables",
                ));
            }
            self.anchors.insert(at);
            let head = self.read(table, at, 2)?;
            let (len, _) = meta::header(&head)
                .ok_or_else(|| bad(table, self.base + at, "bad metadata block header"))?;
            let block = self.read(table, at, 2 + len as u64)?;
            let spans = walk_chain(
                &block,
                self.sb.compressor,
                decode.then_some(&mut out),
                MAX_TABLE_BYTES,
            )
            .map_err(|r| bad(table, self.base + at, r))?;
            if spans.len() != 1 {
                return Err(bad(table, self.base + at, "not one metadata block"));
            }
            self.push(at, 2 + len as u64, PieceKind::Metadata)?;
        }
        if decode && (out.len() as u64) < bytes {
            return Err(bad(
                table,
                self.base + index,
                "shorter than its entry count",
            ));
        }
        Ok(out)
    }

    /// The xattr id table (header + index + id blocks) and the key/value chain before it.
    fn xattrs(&mut self) -> Result<(), Fail> {
        let at = self.sb.xattr_id_table;
        let head = self.read("xattr id table", at, 16)?;
        let kv_start = u64_at(&head, 0);
        let ids = u32_at(&head, 8);
        let blocks = u64::from(ids)
            .saturating_mul(16)
            .div_ceil(METADATA_SIZE as u64);
        let ptrs = self.read("xattr id table", at + 16, blocks * 8)?;
        self.push(at, 16 + blocks * 8, PieceKind::Index)?;
        for p in ptrs.chunks_exact(8) {
            let b = u64_at(p, 0);
            if b < self.sb.inode_table || b >= at {
                return Err(bad(
                    "xattr id table",
                    self.base + at,
                    "block pointer outside the tables",
                ));
            }
            self.anchors.insert(b);
            let h = self.read("xattr id table", b, 2)?;
            let (len, _) = meta::header(&h)
                .ok_or_else(|| bad("xattr id table", self.base + b, "bad metadata block header"))?;
            self.push(b, 2 + len as u64, PieceKind::Metadata)?;
        }
        if kv_start < self.sb.inode_table || kv_start >= at {
            return Err(bad(
                "xattr table",
                self.base + at,
                "starts outside the tables",
            ));
        }
        self.anchors.insert(kv_start);
        self.chain("xattr table", kv_start, None, false)?;
        Ok(())
    }

    /// A chain of metadata blocks from `start` to `end` (default: the next table start),
    /// recorded as pieces; decoded when `decode`.
    fn chain(
        &mut self,
        table: &'static str,
        start: u64,
        end: Option<u64>,
        decode: bool,
    ) -> Result<Vec<u8>, Fail> {
        let end = match end {
            Some(e) => e,
            None => match self.anchors.range(start + 1..).next() {
                Some(&e) => e,
                None => self.sb.bytes_used,
            },
        };
        if end.saturating_sub(start) > MAX_TABLE_BYTES as u64 {
            return Err(bad(table, self.base + start, "too large to index"));
        }
        let region = self.read(table, start, end.saturating_sub(start))?;
        let mut out = Vec::new();
        let spans = walk_chain(
            &region,
            self.sb.compressor,
            decode.then_some(&mut out),
            MAX_TABLE_BYTES,
        )
        .map_err(|r| bad(table, self.base + start, r))?;
        for s in spans {
            self.push(start + s.start as u64, s.len as u64, PieceKind::Metadata)?;
        }
        Ok(out)
    }

    /// Fragment blocks from the decoded fragment table.
    /// Records the fragment blocks listed in the decoded fragment table; returns how many.
    fn fragments(&mut self, raw: &[u8], data_start: u64) -> Result<u32, Fail> {
        let n = self.sb.fragment_count as usize;
        for e in raw.chunks_exact(16).take(n) {
            let start = u64_at(e, 0);
            let len = self.block_len(u32_at(e, 8), "fragment table")?;
            self.data_piece(
                "fragment table",
                start,
                len,
                data_start,
                PieceKind::Fragment,
            )?;
        }
        Ok(self.sb.fragment_count)
    }

    fn block_len(&self, word: u32, table: &'static str) -> Result<u64, Fail> {
        let len = word & !BLOCK_STORED;
        if len > self.sb.block_size {
            return Err(bad(table, self.base, "block longer than the block size"));
        }
        Ok(u64::from(len))
    }

    fn data_piece(
        &mut self,
        table: &'static str,
        start: u64,
        len: u64,
        data_start: u64,
        kind: PieceKind,
    ) -> Result<(), Fail> {
        if len == 0 {
            return Err(bad(
                table,
                self.base + start.min(self.sb.bytes_used),
                "empty block",
            ));
        }
        if start < data_start
            || start
                .checked_add(len)
                .is_none_or(|e| e > self.sb.inode_table)
        {
            return Err(bad(table, self.base, "block outside the data area"));
        }
        self.push(start, len, kind)
    }

    /// Records each regular file's data blocks, from the decoded inode table.
    fn files(&mut self, t: &[u8], fragments: u32, data_start: u64) -> Result<(), Fail> {
        let table = "inode table";
        let at = self.base + self.sb.inode_table;
        let files = regular_files(t, self.sb.inode_count, self.sb.block_size, fragments)
            .map_err(|reason| bad(table, at, reason))?;
        for (run, file) in files.iter().enumerate() {
            let run = u32::try_from(run).map_err(|_| bad(table, at, "too many files"))?;
            let mut cursor = file.start;
            for word in file.words.chunks_exact(4) {
                let len = self.block_len(u32_at(word, 0), table)?;
                if len == 0 {
                    continue; // a sparse block: no bytes on disk
                }
                self.data_piece(table, cursor, len, data_start, PieceKind::Data { run })?;
                cursor += len;
            }
        }
        Ok(())
    }
}

/// Sorts the pieces, drops exact duplicates (files that mksquashfs stored once and whose
/// inodes share blocks), and rejects any other overlap.
fn finish(offset: u64, sb: Superblock, mut pieces: Vec<Piece>) -> Result<Image, Unrecognized> {
    pieces.sort_by_key(|p| (p.start, p.len, p.kind));
    let mut out: Vec<Piece> = Vec::with_capacity(pieces.len());
    for p in pieces {
        if let Some(last) = out.last() {
            if last.start == p.start && last.len == p.len {
                continue;
            }
            if p.start < last.end() {
                return Err(Unrecognized::Malformed {
                    table: "image",
                    offset: p.start,
                    reason: "blocks overlap",
                });
            }
        }
        out.push(p);
    }
    Ok(Image {
        offset,
        superblock: sb,
        pieces: out,
    })
}
