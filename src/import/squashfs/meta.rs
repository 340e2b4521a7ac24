//! Squashfs metadata blocks (and the little-endian readers the other parts share): the
//! 2-byte header (length, "stored uncompressed" bit) and
//! decompression with the image's compressor, each block bounded to 8 KiB of output.
//!
//! gzip (zlib streams), xz, lz4 and zstd are decoded with pure-Rust crates; lzma (legacy)
//! and lzo are recognised but not decoded, which makes the chunker fall back to buzhash for
//! an image whose tables are compressed with them.

use std::io::{self, Read, Write};

/// Uncompressed bytes in one metadata block (all but the last block of a table are full).
pub const METADATA_SIZE: usize = 8192;
/// Header bit: the block is stored uncompressed.
const STORED: u16 = 1 << 15;

/// Little-endian `u16` at `at` (callers have checked the bounds).
pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// Little-endian `u32` at `at` (callers have checked the bounds).
pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Little-endian `u64` at `at` (callers have checked the bounds).
pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// The compressor named in the superblock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compressor {
    /// `gzip` (1): zlib streams.
    Gzip,
    /// `lzma` (2): legacy, not decoded.
    Lzma,
    /// `lzo` (3): not decoded.
    Lzo,
    /// `xz` (4).
    Xz,
    /// `lz4` (5): raw LZ4 blocks.
    Lz4,
    /// `zstd` (6).
    Zstd,
}

impl Compressor {
    /// The compressor with superblock id `id`.
    pub fn from_id(id: u16) -> Option<Compressor> {
        Some(match id {
            1 => Compressor::Gzip,
            2 => Compressor::Lzma,
            3 => Compressor::Lzo,
            4 => Compressor::Xz,
            5 => Compressor::Lz4,
            6 => Compressor::Zstd,
            _ => return None,
        })
    }

    /// Whether metadata compressed with it can be decoded here.
    pub fn is_supported(self) -> bool {
        !matches!(self, Compressor::Lzma | Compressor::Lzo)
    }
}

/// One metadata block found in a byte region: where it is and how long (header included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSpan {
    /// Offset of the header inside the region.
    pub start: usize,
    /// Header + payload length.
    pub len: usize,
}

/// Reads the metadata block header at the start of `bytes`: (payload length, stored
/// uncompressed). `None` if it is cut off or its length is 0 or over 8 KiB.
pub fn header(bytes: &[u8]) -> Option<(usize, bool)> {
    let h = u16::from_le_bytes([*bytes.first()?, *bytes.get(1)?]);
    let len = usize::from(h & !STORED);
    (1..=METADATA_SIZE)
        .contains(&len)
        .then_some((len, h & STORED != 0))
}

/// Walks the chain of metadata blocks that must fill `region` exactly. With `out`, each block
/// is decoded with `comp` and appended to it, as long as it stays under `budget` bytes.
pub fn walk_chain(
    region: &[u8],
    comp: Compressor,
    mut out: Option<&mut Vec<u8>>,
    budget: usize,
) -> Result<Vec<BlockSpan>, &'static str> {
    let mut spans = Vec::new();
    let mut pos = 0usize;
    // Each block takes at least 3 bytes, so this loop ends within region.len() / 3 turns.
    while pos < region.len() {
        let (len, stored) = header(&region[pos..]).ok_or("bad metadata block header")?;
        let end = pos + 2 + len;
        let payload = region
            .get(pos + 2..end)
            .ok_or("metadata block runs past its table")?;
        if let Some(out) = out.as_deref_mut() {
            if out.len() + METADATA_SIZE > budget {
                return Err("tables too large to index");
            }
            if stored {
                out.extend_from_slice(payload);
            } else {
                let plain = decompress(comp, payload, METADATA_SIZE)
                    .ok_or("metadata block does not decompress")?;
                out.extend_from_slice(&plain);
            }
        }
        spans.push(BlockSpan {
            start: pos,
            len: 2 + len,
        });
        pos = end;
    }
    Ok(spans)
}

/// Decodes one compressed block of at most `max` output bytes; `None` on any error or if it
/// would produce more than `max` bytes.
pub fn decompress(comp: Compressor, input: &[u8], max: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let limit = max as u64 + 1;
    match comp {
        Compressor::Gzip => {
            flate2::read::ZlibDecoder::new(input)
                .take(limit)
                .read_to_end(&mut out)
                .ok()?;
        }
        Compressor::Zstd => {
            ruzstd::decoding::StreamingDecoder::new(input)
                .ok()?
                .take(limit)
                .read_to_end(&mut out)
                .ok()?;
        }
        Compressor::Xz => {
            let mut w = Bounded { out, max };
            lzma_rs::xz_decompress(&mut &input[..], &mut w).ok()?;
            out = w.out;
        }
        Compressor::Lz4 => {
            out = vec![0; max];
            let n = lz4_flex::block::decompress_into(input, &mut out).ok()?;
            out.truncate(n);
        }
        Compressor::Lzma | Compressor::Lzo => return None,
    }
    (out.len() <= max).then_some(out)
}

/// A writer that refuses to grow past `max` bytes (the xz decoder writes into it).
struct Bounded {
    out: Vec<u8>,
    max: usize,
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.out.len() + buf.len() > self.max {
            return Err(io::Error::other("block decompresses past its size limit"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        assert_eq!(header(&[0x10, 0x00]), Some((16, false)));
        assert_eq!(header(&[0x00, 0xa0]), Some((8192, true)));
        assert_eq!(header(&[0x01, 0xa0]), None, "over 8 KiB");
        assert_eq!(header(&[0x00, 0x80]), None, "empty");
        assert_eq!(header(&[0x10]), None, "cut off");
    }

    #[test]
    fn chain_must_fill_its_region() {
        let mut region = vec![0x03, 0x80, b'a', b'b', b'c', 0x01, 0x80, b'd'];
        let mut out = Vec::new();
        let spans = walk_chain(&region, Compressor::Lzo, Some(&mut out), 1 << 20).unwrap();
        assert_eq!(spans.len(), 2);
        assert_eq!(out, b"abcd");
        region.pop();
        assert!(walk_chain(&region, Compressor::Lzo, None, 0).is_err());
    }

    #[test]
    fn gzip_round_trip_and_bound() {
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&[7u8; 9000]).unwrap();
        let z = enc.finish().unwrap();
        assert_eq!(decompress(Compressor::Gzip, &z, 9000).unwrap().len(), 9000);
        assert!(decompress(Compressor::Gzip, &z, 8192).is_none());
        assert!(decompress(Compressor::Gzip, b"garbage", 8192).is_none());
        assert!(decompress(Compressor::Zstd, b"garbage", 8192).is_none());
        assert!(decompress(Compressor::Xz, b"garbage", 8192).is_none());
        assert!(decompress(Compressor::Lz4, b"\xff\xff\xff", 8192).is_none());
    }
}
