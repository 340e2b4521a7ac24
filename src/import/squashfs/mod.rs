//! The squashfs-aware chunker (`--chunker squashfs`): cuts AppImages and bare squashfs images
//! where the image's own structure has boundaries, so a file that is unchanged between two
//! versions of an image becomes the same leaves in both.
//!
//! Two passes over a seekable input:
//! 1. **Plan** ([`plan`]): positioned reads of the superblock and tables (which sit at the
//!    end of the image) list the image's blocks ([`image::read_image`]); the plan is a list
//!    of [`Segment`]s covering the whole file in order: the runtime before the image, the
//!    superblock, each file's run of data blocks (split at block boundaries so no chunk
//!    exceeds the maximum), each fragment block, each metadata block and table index.
//!    Bytes that no structure explains (the ELF runtime, padding, gaps) are
//!    [`SegmentKind::Opaque`] and cut with buzhash. A file that is not a recognisable image
//!    — or whose image is in any way inconsistent — is one opaque segment: plain buzhash.
//! 2. **Stream** ([`SquashfsChunker`]): reads the file front to back once more and hands out
//!    the planned chunks. The output is always exactly the bytes read: if the file is
//!    shorter than planned the stream just ends, and bytes past the plan are buzhash-cut.
//!
//! **One chunk per squashfs block, at most 1 MiB** ([`SQUASHFS_MAX_CHUNK`]). Squashfs blocks
//! are at most 1 MiB, so every data or fragment block fits in one chunk whatever block size
//! the image uses, and a 1 MiB leaf stays well under the 2 MiB block limit with its framing.
//! Consecutive data blocks of a file are *not* grouped by default: a small edit changes one
//! compressed block, and a group of 8 blocks (1 MiB) would turn it into 1 MiB of new bytes —
//! measured on typescript 5.4.4 → 5.4.5, grouping up to 1 MiB stored 1.6× the ideal where
//! one block per chunk stores ≈ 1.0× (`benches/README.md`, dedup section). [`plan`] takes a
//! grouping limit so the benchmark can show that.
//!
//! Memory while planning: the decompressed inode and fragment tables (about 40 bytes per
//! file; capped at [`image::MAX_TABLE_BYTES`] each) and the block list; while streaming:
//! the plan (16 bytes per chunk) plus one chunk.

pub mod image;
pub mod inode;
pub mod locate;
pub mod meta;

use std::io::{self, Read, Seek, SeekFrom, Take};

use super::buzhash::Buzhash;
use super::chunker::{read_full, Chunker};
pub use image::{read_image, Image, ImageSource, Piece, PieceKind, Unrecognized};

/// The largest chunk the squashfs chunker hands out.
pub const SQUASHFS_MAX_CHUNK: usize = 1 << 20;

/// How a segment is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentKind {
    /// Exactly one chunk.
    Exact,
    /// Cut with buzhash (as if it were a file of its own).
    Opaque,
}

/// A byte range of the input and how it is chunked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// First byte.
    pub start: u64,
    /// Length (never 0).
    pub len: u64,
    /// Exact chunk or buzhash.
    pub kind: SegmentKind,
}

/// The chunking plan of one file.
#[derive(Debug)]
pub struct Plan {
    /// Segments in file order, covering `0..size` with no gaps.
    pub segments: Vec<Segment>,
    /// The image found, or why the file is chunked with buzhash only.
    pub image: Result<ImageSummary, Unrecognized>,
}

/// What was recognised (for logs and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageSummary {
    /// Offset of the image in the file.
    pub offset: u64,
    /// The image's length (`bytes_used`).
    pub len: u64,
    /// Blocks indexed.
    pub pieces: usize,
}

/// Plans the chunks of the file behind `src`. Consecutive data blocks of one file are
/// grouped into one chunk while the group stays within `group` bytes (0: every block is its
/// own chunk, the default); a block over [`SQUASHFS_MAX_CHUNK`] is cut with buzhash. Only
/// I/O errors are errors.
pub fn plan<S: ImageSource>(src: &mut S, group: usize) -> io::Result<Plan> {
    let size = src.size();
    let image = read_image(src)?;
    let mut segs = Segments::default();
    let summary = image.as_ref().map(|img| {
        segs.cut(img, group.min(SQUASHFS_MAX_CHUNK) as u64);
        ImageSummary {
            offset: img.offset,
            len: img.superblock.bytes_used,
            pieces: img.pieces.len(),
        }
    });
    segs.opaque_to(size);
    Ok(Plan {
        segments: segs.list,
        image: summary.map_err(Clone::clone),
    })
}

#[derive(Default)]
struct Segments {
    list: Vec<Segment>,
    cursor: u64,
}

impl Segments {
    /// Covers `cursor..end` with an opaque segment (merged into a preceding opaque one).
    fn opaque_to(&mut self, end: u64) {
        if end <= self.cursor {
            return;
        }
        match self.list.last_mut() {
            Some(last) if last.kind == SegmentKind::Opaque => last.len += end - self.cursor,
            _ => self.list.push(Segment {
                start: self.cursor,
                len: end - self.cursor,
                kind: SegmentKind::Opaque,
            }),
        }
        self.cursor = end;
    }

    fn exact(&mut self, end: u64) {
        self.list.push(Segment {
            start: self.cursor,
            len: end - self.cursor,
            kind: SegmentKind::Exact,
        });
        self.cursor = end;
    }

    /// One exact segment per piece, consecutive data blocks of one file grouped up to
    /// `group` bytes.
    fn cut(&mut self, img: &Image, group: u64) {
        let pieces = &img.pieces;
        let mut i = 0;
        while let Some(p) = pieces.get(i) {
            self.opaque_to(p.start);
            let mut end = p.end();
            i += 1;
            if matches!(p.kind, PieceKind::Data { .. }) {
                while let Some(q) = pieces.get(i) {
                    if q.kind != p.kind || q.start != end || q.end() - p.start > group {
                        break;
                    }
                    end = q.end();
                    i += 1;
                }
            }
            if end - p.start > SQUASHFS_MAX_CHUNK as u64 {
                self.opaque_to(end);
            } else {
                self.exact(end);
            }
        }
    }
}

/// Positioned reads through `Read + Seek`.
pub struct SeekSource<'a, R> {
    inner: &'a mut R,
    size: u64,
}

impl<'a, R: Read + Seek> SeekSource<'a, R> {
    /// Measures the input (seeking to its end).
    pub fn new(inner: &'a mut R) -> io::Result<SeekSource<'a, R>> {
        let size = inner.seek(SeekFrom::End(0))?;
        Ok(SeekSource { inner, size })
    }
}

impl<R: Read + Seek> ImageSource for SeekSource<'_, R> {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.seek(SeekFrom::Start(offset))?;
        self.inner.read_exact(buf)
    }
}

/// Streams the chunks of a [`Plan`] from a reader positioned at the start of the file.
pub struct SquashfsChunker<R> {
    /// `None` while a buzhash segment holds it.
    reader: Option<R>,
    opaque: Option<Buzhash<Take<R>>>,
    segments: std::vec::IntoIter<Segment>,
    tail_started: bool,
    finished: bool,
}

impl<R: Read + Seek> SquashfsChunker<R> {
    /// Plans `reader`'s file (grouping data blocks up to `group` bytes, see [`plan`]) and
    /// rewinds it.
    pub fn open(
        mut reader: R,
        group: usize,
    ) -> io::Result<(SquashfsChunker<R>, Result<ImageSummary, Unrecognized>)> {
        let plan = plan(&mut SeekSource::new(&mut reader)?, group)?;
        reader.seek(SeekFrom::Start(0))?;
        match &plan.image {
            Ok(img) => tracing::debug!(
                offset = img.offset,
                pieces = img.pieces,
                "squashfs chunker: image found"
            ),
            Err(why) => tracing::debug!(%why, "squashfs chunker: using buzhash for the whole file"),
        }
        Ok((SquashfsChunker::new(reader, plan.segments), plan.image))
    }
}

impl<R: Read> SquashfsChunker<R> {
    /// Chunks `reader` (at offset 0) by a plan's segments.
    pub fn new(reader: R, segments: Vec<Segment>) -> SquashfsChunker<R> {
        SquashfsChunker {
            reader: Some(reader),
            opaque: None,
            segments: segments.into_iter(),
            tail_started: false,
            finished: false,
        }
    }

    fn start_opaque(&mut self, len: u64) -> io::Result<()> {
        let reader = self.reader.take().ok_or_else(lost)?;
        self.opaque = Some(Buzhash::new(reader.take(len)));
        Ok(())
    }
}

fn lost() -> io::Error {
    io::Error::other("squashfs chunker lost its reader")
}

impl<R: Read> Chunker for SquashfsChunker<R> {
    fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        // Each turn either returns or consumes one segment (or the one tail), so this ends.
        loop {
            if let Some(bz) = self.opaque.as_mut() {
                if let Some(chunk) = bz.next_chunk()? {
                    return Ok(Some(chunk));
                }
                if let Some(bz) = self.opaque.take() {
                    self.reader = Some(bz.into_inner().into_inner());
                }
            }
            if self.finished {
                return Ok(None);
            }
            match self.segments.next() {
                Some(Segment {
                    len,
                    kind: SegmentKind::Exact,
                    ..
                }) => {
                    let reader = self.reader.as_mut().ok_or_else(lost)?;
                    let n = usize::try_from(len).map_err(|_| lost())?;
                    let mut buf = vec![0u8; n];
                    let (got, short) = read_full(reader, &mut buf)?;
                    if short {
                        // The file shrank since it was planned: hand out what is there.
                        self.finished = true;
                        if got == 0 {
                            return Ok(None);
                        }
                        buf.truncate(got);
                    }
                    return Ok(Some(buf));
                }
                Some(Segment { len, .. }) => self.start_opaque(len)?,
                None if !self.tail_started => {
                    // Bytes past the plan (the file grew): buzhash.
                    self.tail_started = true;
                    self.start_opaque(u64::MAX)?;
                }
                None => self.finished = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(start: u64, len: u64) -> Segment {
        Segment {
            start,
            len,
            kind: SegmentKind::Exact,
        }
    }

    fn lens(data: &[u8], segments: Vec<Segment>) -> Vec<usize> {
        let mut c = SquashfsChunker::new(data, segments);
        let mut out = Vec::new();
        let mut joined = Vec::new();
        while let Some(chunk) = c.next_chunk().unwrap() {
            out.push(chunk.len());
            joined.extend(chunk);
        }
        assert_eq!(joined, data, "chunks join to the input");
        out
    }

    #[test]
    fn stream_follows_the_plan_and_survives_a_changed_file() {
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let plan = vec![exact(0, 96), exact(96, 404), exact(500, 500)];
        assert_eq!(lens(&data, plan.clone()), vec![96, 404, 500]);
        // Shrunk since planning: the stream ends early, nothing is invented.
        assert_eq!(lens(&data[..600], plan.clone()), vec![96, 404, 100]);
        // Grown: the extra bytes are buzhash-cut (one short chunk here).
        let mut more = data.clone();
        more.extend([7u8; 50]);
        assert_eq!(lens(&more, plan), vec![96, 404, 500, 50]);
        assert_eq!(lens(&[], Vec::new()), Vec::<usize>::new());
    }

    #[test]
    fn not_an_image_is_one_opaque_segment() {
        let data = vec![0x42u8; 5000];
        let p = plan(&mut &data[..], 0).unwrap();
        assert_eq!(p.image, Err(Unrecognized::NotFound));
        assert_eq!(
            p.segments,
            vec![Segment {
                start: 0,
                len: 5000,
                kind: SegmentKind::Opaque
            }]
        );
        assert!(plan(&mut &[][..], 0).unwrap().segments.is_empty());
    }
}
