//! CAR v1: reading and writing Content Addressable aRchives (SPECS.md §5.1).
//!
//! The reader takes any `Read` and yields verified [`Block`]s one section at a time, so a
//! CAR of any size streams in bounded memory; every length it reads is checked against the
//! block limit before anything is allocated. The writer emits the header and sections as
//! byte vectors too ([`encode_header`], [`encode_section`]) so that `serve` can stream a CAR
//! over HTTP without a `Write` in between.

use std::io::{self, Read, Write};

use bytes::Bytes;
use cid::Cid;

use crate::block::{Block, BlockError, MAX_BLOCK_SIZE};

/// The largest header we accept (a header only lists root CIDs).
pub const MAX_HEADER_SIZE: usize = 64 * 1024;
/// The longest binary CID we accept in a section (version, codec, hash code, length, a
/// 64-byte digest, with room to spare for varints and identity digests).
const MAX_CID_SIZE: usize = 256;

/// Why a CAR could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CarError {
    /// Reading the underlying stream failed.
    #[error("reading CAR: {0}")]
    Io(#[from] io::Error),
    /// The stream ended inside a header or section.
    #[error("CAR truncated: {what} ends early (wanted {wanted} more bytes)")]
    Truncated { what: &'static str, wanted: usize },
    /// The header is not a valid CARv1 header.
    #[error("bad CAR header: {0}")]
    BadHeader(String),
    /// A section's declared length is impossible.
    #[error("bad CAR section at byte {offset}: {reason}")]
    BadSection { offset: u64, reason: String },
    /// A section's bytes do not match its CID.
    #[error("CAR block failed verification: {0}")]
    Block(#[from] BlockError),
}

/// A streaming CARv1 reader that verifies every block.
pub struct CarReader<R> {
    inner: R,
    roots: Vec<Cid>,
    offset: u64,
}

impl<R: Read> CarReader<R> {
    /// Reads and checks the header.
    pub fn new(mut inner: R) -> Result<CarReader<R>, CarError> {
        let (len, n) = match read_varint(&mut inner)? {
            Some(v) => v,
            None => return Err(CarError::BadHeader("empty stream".into())),
        };
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l > 0 && *l <= MAX_HEADER_SIZE)
            .ok_or_else(|| {
                CarError::BadHeader(format!(
                    "header length {len} out of range 1..={MAX_HEADER_SIZE}"
                ))
            })?;
        let buf = read_exact_vec(&mut inner, len, "header")?;
        let roots = parse_header(&buf)?;
        Ok(CarReader {
            inner,
            roots,
            offset: (n + len) as u64,
        })
    }

    /// The roots listed in the header (a hint only: clients must not trust them).
    pub fn roots(&self) -> &[Cid] {
        &self.roots
    }

    /// The next verified block, or `None` at a clean end of stream.
    pub fn next_block(&mut self) -> Result<Option<Block>, CarError> {
        let start = self.offset;
        let Some((len, n)) = read_varint(&mut self.inner)? else {
            return Ok(None);
        };
        let bad = |reason: String| CarError::BadSection {
            offset: start,
            reason,
        };
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= MAX_BLOCK_SIZE + MAX_CID_SIZE)
            .ok_or_else(|| bad(format!("section length {len} exceeds the block limit")))?;
        if len == 0 {
            return Err(bad("zero-length section".into()));
        }
        let buf = read_exact_vec(&mut self.inner, len, "section")?;
        let cid_len = cid_length(&buf).map_err(bad)?;
        let cid = Cid::try_from(&buf[..cid_len]).map_err(|e| bad(format!("bad CID: {e}")))?;
        let data = Bytes::from(buf).slice(cid_len..);
        self.offset += (n + len) as u64;
        Ok(Some(Block::verified(cid, data)?))
    }
}

impl<R: Read> Iterator for CarReader<R> {
    type Item = Result<Block, CarError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_block().transpose()
    }
}

/// The bytes of a CARv1 header listing `roots`.
pub fn encode_header(roots: &[Cid]) -> Vec<u8> {
    // DAG-CBOR map, keys in length-first order: "roots" then "version".
    let mut cbor = vec![0xa2];
    cbor_text(&mut cbor, "roots");
    cbor_head(&mut cbor, 4, roots.len() as u64);
    for root in roots {
        let bytes = root.to_bytes();
        cbor.extend_from_slice(&[0xd8, 0x2a]);
        cbor_head(&mut cbor, 2, bytes.len() as u64 + 1);
        cbor.push(0x00);
        cbor.extend_from_slice(&bytes);
    }
    cbor_text(&mut cbor, "version");
    cbor.push(0x01);
    let mut out = Vec::with_capacity(cbor.len() + 4);
    write_varint(&mut out, cbor.len() as u64);
    out.extend_from_slice(&cbor);
    out
}

/// The bytes of one CAR section holding `block`.
pub fn encode_section(block: &Block) -> Vec<u8> {
    let cid = block.cid().to_bytes();
    let mut out = Vec::with_capacity(cid.len() + block.data().len() + 10);
    write_varint(&mut out, (cid.len() + block.data().len()) as u64);
    out.extend_from_slice(&cid);
    out.extend_from_slice(block.data());
    out
}

/// A CARv1 writer over any `Write`.
pub struct CarWriter<W> {
    inner: W,
}

impl<W: Write> CarWriter<W> {
    /// Writes the header and returns the writer.
    pub fn new(mut inner: W, roots: &[Cid]) -> io::Result<CarWriter<W>> {
        inner.write_all(&encode_header(roots))?;
        Ok(CarWriter { inner })
    }

    /// Appends one block.
    pub fn write_block(&mut self, block: &Block) -> io::Result<()> {
        self.inner.write_all(&encode_section(block))
    }

    /// Flushes and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.inner.flush()?;
        Ok(self.inner)
    }
}

/// Appends an unsigned LEB128 varint.
pub fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads an unsigned LEB128 varint; `None` at a clean end of stream before its first byte.
fn read_varint<R: Read>(r: &mut R) -> Result<Option<(u64, usize)>, CarError> {
    let mut value = 0u64;
    for i in 0..10 {
        let mut byte = [0u8];
        match r.read(&mut byte) {
            Ok(0) if i == 0 => return Ok(None),
            Ok(0) => {
                return Err(CarError::Truncated {
                    what: "varint",
                    wanted: 1,
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        let b = byte[0];
        if i == 9 && b > 1 {
            break;
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    Err(CarError::BadSection {
        offset: 0,
        reason: "varint longer than 64 bits".into(),
    })
}

fn read_exact_vec<R: Read>(r: &mut R, len: usize, what: &'static str) -> Result<Vec<u8>, CarError> {
    let mut buf = Vec::with_capacity(len.min(1 << 20));
    let got = r.take(len as u64).read_to_end(&mut buf)?;
    if got < len {
        return Err(CarError::Truncated {
            what,
            wanted: len - got,
        });
    }
    Ok(buf)
}

/// The length of the binary CID at the start of `buf`.
fn cid_length(buf: &[u8]) -> Result<usize, String> {
    if buf.len() >= 2 && buf[0] == 0x12 && buf[1] == 0x20 {
        return if buf.len() >= 34 {
            Ok(34)
        } else {
            Err("CIDv0 cut short".into())
        };
    }
    let mut pos = 0;
    let mut next = || -> Result<u64, String> {
        let (v, n) = slice_varint(&buf[pos.min(buf.len())..]).ok_or("CID varint cut short")?;
        pos += n;
        Ok(v)
    };
    let version = next()?;
    if version != 1 {
        return Err(format!("unsupported CID version {version}"));
    }
    let _codec = next()?;
    let _hash_code = next()?;
    let digest_len = next()?;
    let end = usize::try_from(digest_len)
        .ok()
        .and_then(|d| pos.checked_add(d))
        .filter(|end| *end <= buf.len() && *end <= MAX_CID_SIZE)
        .ok_or_else(|| format!("CID digest length {digest_len} overruns the section"))?;
    Ok(end)
}

fn slice_varint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, b) in buf.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

fn cbor_head(out: &mut Vec<u8>, major: u8, v: u64) {
    let m = major << 5;
    match v {
        0..=23 => out.push(m | v as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, v as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(v as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(v as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

fn cbor_text(out: &mut Vec<u8>, s: &str) {
    cbor_head(out, 3, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Parses the DAG-CBOR header map `{roots: [CID...], version: 1}`, keys in any order,
/// other keys ignored.
fn parse_header(buf: &[u8]) -> Result<Vec<Cid>, CarError> {
    let bad = |s: &str| CarError::BadHeader(s.to_string());
    let mut c = Cbor { buf, pos: 0 };
    let (major, n) = c.head().ok_or_else(|| bad("not CBOR"))?;
    if major != 5 {
        return Err(bad("header is not a CBOR map"));
    }
    let mut roots = None;
    let mut version = None;
    for _ in 0..n.min(64) {
        let (major, len) = c.head().ok_or_else(|| bad("truncated key"))?;
        if major != 3 {
            return Err(bad("map key is not a string"));
        }
        let key = c.take(len).ok_or_else(|| bad("truncated key"))?;
        match key {
            b"roots" => {
                let (major, count) = c.head().ok_or_else(|| bad("truncated roots"))?;
                if major != 4 {
                    return Err(bad("roots is not an array"));
                }
                let mut list = Vec::new();
                for _ in 0..count {
                    let (major, tag) = c.head().ok_or_else(|| bad("truncated root"))?;
                    if major != 6 || tag != 42 {
                        return Err(bad("root is not a CID (tag 42)"));
                    }
                    let (major, len) = c.head().ok_or_else(|| bad("truncated root"))?;
                    if major != 2 {
                        return Err(bad("root CID is not a byte string"));
                    }
                    let bytes = c.take(len).ok_or_else(|| bad("truncated root"))?;
                    let (first, rest) = bytes.split_first().ok_or_else(|| bad("empty root"))?;
                    if *first != 0 {
                        return Err(bad("root CID lacks the identity multibase prefix"));
                    }
                    list.push(
                        Cid::try_from(rest)
                            .map_err(|e| CarError::BadHeader(format!("bad root CID: {e}")))?,
                    );
                }
                roots = Some(list);
            }
            b"version" => {
                let (major, v) = c.head().ok_or_else(|| bad("truncated version"))?;
                if major != 0 {
                    return Err(bad("version is not an integer"));
                }
                version = Some(v);
            }
            _ => return Err(bad("unexpected key in CARv1 header")),
        }
    }
    match version {
        Some(1) => {}
        Some(2) => return Err(bad("CARv2 is not supported (want a CARv1 stream)")),
        Some(v) => return Err(CarError::BadHeader(format!("unsupported CAR version {v}"))),
        None => return Err(bad("missing version")),
    }
    roots.ok_or_else(|| bad("missing roots"))
}

/// A bounded cursor over CBOR bytes, enough for the CAR header.
struct Cbor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cbor<'a> {
    fn head(&mut self) -> Option<(u8, u64)> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        let info = b & 0x1f;
        let v = match info {
            0..=23 => u64::from(info),
            24 => u64::from(*self.take(1)?.first()?),
            25 => u64::from(u16::from_be_bytes(self.take(2)?.try_into().ok()?)),
            26 => u64::from(u32::from_be_bytes(self.take(4)?.try_into().ok()?)),
            27 => u64::from_be_bytes(self.take(8)?.try_into().ok()?),
            _ => return None,
        };
        Some((b >> 5, v))
    }

    fn take(&mut self, n: u64) -> Option<&'a [u8]> {
        let n = usize::try_from(n).ok()?;
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::codec;

    #[test]
    fn round_trip() {
        let a = Block::encode(cid::Version::V1, codec::RAW, Bytes::from_static(b"a"));
        let b = Block::encode(cid::Version::V1, codec::RAW, Bytes::from_static(b"bb"));
        let mut w = CarWriter::new(Vec::new(), &[*a.cid()]).unwrap();
        w.write_block(&a).unwrap();
        w.write_block(&b).unwrap();
        let bytes = w.finish().unwrap();
        let mut r = CarReader::new(&bytes[..]).unwrap();
        assert_eq!(r.roots(), &[*a.cid()]);
        let blocks: Vec<Block> = r.by_ref().collect::<Result<_, _>>().unwrap();
        assert_eq!(blocks, vec![a, b]);
    }

    #[test]
    fn lying_section_length_is_an_error() {
        let a = Block::encode(cid::Version::V1, codec::RAW, Bytes::from_static(b"abc"));
        let mut bytes = encode_header(&[*a.cid()]);
        let mut section = encode_section(&a);
        section[0] += 10; // claims 10 more bytes than follow
        bytes.extend_from_slice(&section);
        let mut r = CarReader::new(&bytes[..]).unwrap();
        assert!(matches!(r.next_block(), Err(CarError::Truncated { .. })));
    }

    #[test]
    fn huge_section_length_is_refused_before_allocating() {
        let mut bytes = encode_header(&[]);
        write_varint(&mut bytes, u64::MAX >> 1);
        let mut r = CarReader::new(&bytes[..]).unwrap();
        assert!(matches!(r.next_block(), Err(CarError::BadSection { .. })));
    }
}

/// The body of the `car_read` fuzz target (`fuzz/`), kept in the crate so the same checks run
/// as a plain `#[test]` over the seed corpus on stable Rust.
pub mod fuzzing {
    use super::{CarReader, CarWriter};

    /// Reads `input` as a CAR stream (a gateway's response body): nothing may panic, every
    /// block handed out is verified, and what was accepted writes and reads back the same.
    pub fn check(input: &[u8]) {
        let Ok(reader) = CarReader::new(input) else {
            return;
        };
        let roots = reader.roots().to_vec();
        let mut blocks = Vec::new();
        for block in reader {
            match block {
                Ok(b) => {
                    assert!(
                        crate::block::verify(b.cid(), b.data()).is_ok(),
                        "an unverified block came out of a CAR"
                    );
                    blocks.push(b);
                }
                Err(_) => break,
            }
        }
        let Ok(mut writer) = CarWriter::new(Vec::new(), &roots) else {
            return;
        };
        for b in &blocks {
            writer.write_block(b).expect("writing to memory");
        }
        let bytes = writer.finish().expect("writing to memory");
        let again = CarReader::new(&bytes[..]).expect("a CAR we wrote reads back");
        assert_eq!(again.roots(), &roots[..]);
        let again: Vec<_> = again
            .collect::<Result<_, _>>()
            .expect("blocks we wrote read back");
        assert_eq!(again, blocks);
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn seed_corpus_passes_the_fuzz_checks() {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/car_read");
            let mut n = 0;
            for entry in std::fs::read_dir(dir).unwrap() {
                let data = std::fs::read(entry.unwrap().path()).unwrap();
                super::check(&data);
                // Every prefix too: a gateway may cut a body anywhere.
                for cut in (0..data.len()).step_by(97) {
                    super::check(&data[..cut]);
                }
                n += 1;
            }
            assert!(n >= 5, "seed corpus has {n} files");
        }
    }
}
