//! Chunkers: how a byte stream is cut into leaves, and the `--chunker` spec parser.
//!
//! Every chunker reads incrementally from a `std::io::Read` and hands out one owned chunk at a
//! time, so memory stays flat whatever the file size. Specs follow Kubo/boxo
//! `chunker/parse.go`: `size-N` (fixed, `0 < N <= 2096896`), `buzhash`, and `default`/`""`
//! (= `size-262144`); Rabin is recognised and refused. `squashfs` is ours
//! ([`super::squashfs`]): it reads the image's tables before streaming, so it needs a
//! seekable input ([`ChunkerSpec::open_seekable`]).

use std::io::{self, Read, Seek};

use super::buzhash::Buzhash;
use super::squashfs::SquashfsChunker;
use super::ImportError;

/// Kubo's default chunk size (`size-262144`).
pub const DEFAULT_CHUNK_SIZE: usize = 262_144;
/// The largest fixed chunk Kubo accepts: 2 MiB minus 256 bytes of room for node framing.
pub const MAX_CHUNK_SIZE: usize = 2 * 1024 * 1024 - 256;

/// A parsed `--chunker` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkerSpec {
    /// Fixed-size chunks of this many bytes (the last one may be shorter).
    Size(usize),
    /// boxo's buzhash content-defined chunker (128 KiB min, 512 KiB max).
    Buzhash,
    /// Cuts AppImages and squashfs images at their blocks (one chunk per block), else
    /// buzhash.
    Squashfs,
}

impl Default for ChunkerSpec {
    fn default() -> Self {
        ChunkerSpec::Size(DEFAULT_CHUNK_SIZE)
    }
}

impl ChunkerSpec {
    /// Parses a Kubo chunker spec.
    pub fn parse(spec: &str) -> Result<ChunkerSpec, ImportError> {
        let bad = |reason: &str| ImportError::BadChunker {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        match spec {
            "" | "default" => return Ok(ChunkerSpec::default()),
            "buzhash" => return Ok(ChunkerSpec::Buzhash),
            "squashfs" => return Ok(ChunkerSpec::Squashfs),
            _ => {}
        }
        if let Some(n) = spec.strip_prefix("size-") {
            let size: usize = n
                .parse()
                .map_err(|_| bad("expected size-N with N a positive number of bytes"))?;
            if size == 0 {
                return Err(bad("chunk size must be greater than 0"));
            }
            if size > MAX_CHUNK_SIZE {
                return Err(bad(&format!(
                    "chunk size must not exceed {MAX_CHUNK_SIZE} bytes"
                )));
            }
            return Ok(ChunkerSpec::Size(size));
        }
        if spec.starts_with("rabin") {
            return Err(bad(
                "rabin chunking is not supported by distfs; use size-N or buzhash",
            ));
        }
        Err(bad(
            "unknown chunker; use size-N, buzhash, squashfs or default",
        ))
    }

    /// A chunker of this kind over a seekable `reader` positioned at its start: any spec,
    /// including `squashfs`.
    pub fn open_seekable<R: Read + Seek>(self, reader: R) -> Result<AnyChunker<R>, ImportError> {
        match self {
            ChunkerSpec::Squashfs => {
                let (chunker, _) =
                    SquashfsChunker::open(reader, 0).map_err(ImportError::stream_io)?;
                Ok(AnyChunker::Squashfs(chunker))
            }
            other => other.open(reader),
        }
    }

    /// A chunker of this kind over a stream. `squashfs` needs [`ChunkerSpec::open_seekable`].
    pub fn open<R: Read>(self, reader: R) -> Result<AnyChunker<R>, ImportError> {
        match self {
            ChunkerSpec::Size(n) if n > 0 && n <= MAX_CHUNK_SIZE => {
                Ok(AnyChunker::Fixed(FixedChunker::new(reader, n)))
            }
            ChunkerSpec::Size(n) => Err(ImportError::BadChunker {
                spec: format!("size-{n}"),
                reason: format!("chunk size must be in 1..={MAX_CHUNK_SIZE}"),
            }),
            ChunkerSpec::Buzhash => Ok(AnyChunker::Buzhash(Buzhash::new(reader))),
            ChunkerSpec::Squashfs => Err(ImportError::BadChunker {
                spec: "squashfs".into(),
                reason: "the squashfs chunker reads the image's tables first and needs a \
                         seekable file, not a stream; add the file by path"
                    .into(),
            }),
        }
    }
}

impl std::fmt::Display for ChunkerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkerSpec::Size(n) => write!(f, "size-{n}"),
            ChunkerSpec::Buzhash => f.write_str("buzhash"),
            ChunkerSpec::Squashfs => f.write_str("squashfs"),
        }
    }
}

/// A source of chunks. `Ok(None)` ends the stream; chunks are never empty.
pub trait Chunker {
    /// The next chunk.
    fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>>;
}

/// Any of the implemented chunkers (enum dispatch, no boxing).
pub enum AnyChunker<R> {
    /// Fixed size.
    Fixed(FixedChunker<R>),
    /// Buzhash.
    Buzhash(Buzhash<R>),
    /// Squashfs-aware.
    Squashfs(SquashfsChunker<R>),
}

impl<R: Read> Chunker for AnyChunker<R> {
    fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        match self {
            AnyChunker::Fixed(c) => c.next_chunk(),
            AnyChunker::Buzhash(c) => c.next_chunk(),
            AnyChunker::Squashfs(c) => c.next_chunk(),
        }
    }
}

/// Fixed-size chunks, like boxo's `sizeSplitterv2`: each chunk is a full read of `size`
/// bytes; a short read ends the stream with a shorter last chunk; no empty chunks.
pub struct FixedChunker<R> {
    reader: R,
    size: usize,
    finished: bool,
}

impl<R: Read> FixedChunker<R> {
    /// A chunker handing out `size`-byte chunks.
    pub fn new(reader: R, size: usize) -> FixedChunker<R> {
        FixedChunker {
            reader,
            size,
            finished: false,
        }
    }
}

impl<R: Read> Chunker for FixedChunker<R> {
    fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.finished {
            return Ok(None);
        }
        let mut buf = vec![0u8; self.size];
        let (got, short) = read_full(&mut self.reader, &mut buf)?;
        if short {
            self.finished = true;
            if got == 0 {
                return Ok(None);
            }
            buf.truncate(got);
        }
        Ok(Some(buf))
    }
}

/// Reads until `buf` is full or the stream ends; returns the count and whether it ended
/// early (Go's `io.ReadFull` returning `EOF`/`ErrUnexpectedEOF`).
pub(crate) fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<(usize, bool)> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Ok((got, true)),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((got, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubo_specs() {
        assert_eq!(ChunkerSpec::parse("").unwrap(), ChunkerSpec::Size(262_144));
        assert_eq!(
            ChunkerSpec::parse("default").unwrap(),
            ChunkerSpec::Size(262_144)
        );
        assert_eq!(
            ChunkerSpec::parse("size-1024").unwrap(),
            ChunkerSpec::Size(1024)
        );
        assert_eq!(
            ChunkerSpec::parse("size-2096896").unwrap(),
            ChunkerSpec::Size(2_096_896)
        );
        assert_eq!(ChunkerSpec::parse("buzhash").unwrap(), ChunkerSpec::Buzhash);
        assert_eq!(
            ChunkerSpec::parse("squashfs").unwrap(),
            ChunkerSpec::Squashfs
        );
        // The squashfs chunker needs to seek; a plain stream is told so.
        assert!(ChunkerSpec::Squashfs.open(&b"x"[..]).is_err());
        for bad in [
            "size-0",
            "size-2096897",
            "size-",
            "size-x",
            "rabin",
            "rabin-16-32-64",
            "foo",
        ] {
            assert!(ChunkerSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fixed_chunker_boundaries() {
        // (input length, chunk size) -> expected chunk sizes; no empty trailing chunk.
        let cases: &[(usize, usize, &[usize])] = &[
            (0, 4, &[]),
            (3, 4, &[3]),
            (4, 4, &[4]),
            (5, 4, &[4, 1]),
            (8, 4, &[4, 4]),
        ];
        for (len, size, want) in cases {
            let data = vec![1u8; *len];
            let mut c = FixedChunker::new(&data[..], *size);
            let mut got = Vec::new();
            while let Some(ch) = c.next_chunk().unwrap() {
                got.push(ch.len());
            }
            assert_eq!(&got, want, "len {len} size {size}");
        }
    }

    /// A reader that returns one byte per call: chunkers must still fill whole chunks.
    struct Trickling<'a>(&'a [u8]);
    impl Read for Trickling<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((b, rest)), Some(out)) => {
                    *out = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn short_reads_do_not_shorten_chunks() {
        let data = vec![9u8; 10];
        let mut c = FixedChunker::new(Trickling(&data), 4);
        let mut got = Vec::new();
        while let Some(ch) = c.next_chunk().unwrap() {
            got.push(ch.len());
        }
        assert_eq!(got, vec![4, 4, 2]);
    }
}
