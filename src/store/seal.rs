//! Seals: how the disk store knows, without hashing a block again, that the bytes it reads
//! back are the bytes it verified when it stored them.
//!
//! Every block is verified against its CID before it is stored (the fetcher, the CAR reader
//! and the importer only ever hand over [`Block`]s). When the store writes a block file it
//! also writes a seal into the file's extended attribute `user.distfs.seal`: a version byte
//! and the XXH3-128 of the block's bytes, seeded with the XXH3-64 of its multihash. On
//! read-back a matching seal stands in for the CID's SHA-256: XXH3 runs at memory speed, and
//! hashing every block again was a third of a warm read's CPU time (benches/README.md).
//!
//! What a seal catches is what a cache on a real disk must survive: a flipped bit, a file torn
//! or truncated by a power loss (the cache does not fsync), a file left under another block's
//! name — the seed binds the seal to the name. What it is not: a defence against someone who
//! can write the cache directory, who could rewrite the seal as easily as the bytes (and could
//! as easily replace the daemon's configuration). A file without a seal (a store written by an
//! older distfs, a filesystem without user extended attributes) or with a seal that does not
//! match is verified with its CID's own hash, and sealed when that passes. Blocks under
//! [`MIN_SEALED`] bytes are never sealed: hashing them is cheaper than reading an xattr.

use std::ffi::CStr;
use std::fs::File;
use std::os::fd::AsRawFd;

use cid::Cid;
use xxhash_rust::xxh3::{xxh3_128_with_seed, xxh3_64, Xxh3};

use crate::block::Block;

/// The extended attribute that holds a block file's seal.
const ATTR: &CStr = c"user.distfs.seal";
/// The seal format: XXH3-128 of the bytes, seeded with XXH3-64 of the multihash.
const VERSION: u8 = 1;
pub(super) const LEN: usize = 17;

/// Blocks shorter than this are not sealed: they are hashed on every read instead. Their
/// SHA-256 (about 1 µs for 1 KiB with SHA-NI) costs less than the xattr syscall that reads a
/// seal, and a tree of small files is mostly such blocks.
pub(super) const MIN_SEALED: usize = 1024;

/// Whether a block of `len` bytes is sealed when stored (and its seal read when loaded).
pub(super) fn sealed_size(len: usize) -> bool {
    len >= MIN_SEALED
}

/// What a block file's seal says about the bytes read from it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Seal {
    /// The seal matches: these are the bytes that were verified when they were stored.
    Matches,
    /// No seal, an unknown format, or a seal that does not match: hash the bytes.
    Unproven,
}

fn compute(cid: &Cid, data: &[u8]) -> [u8; LEN] {
    let seed = xxh3_64(&cid.hash().to_bytes());
    let mut seal = [0u8; LEN];
    seal[0] = VERSION;
    seal[1..].copy_from_slice(&xxh3_128_with_seed(data, seed).to_le_bytes());
    seal
}

/// Seals `file`, which holds `block`'s bytes. Best effort: a filesystem without user
/// extended attributes leaves the file unsealed, and its reads hash the bytes instead.
pub(super) fn write(file: &File, block: &Block) -> bool {
    write_seal(file, &compute(block.cid(), block.data()))
}

/// Reads `file`'s seal and checks it against `data`, read from the same file, as `cid`.
pub(super) fn check(file: &File, cid: &Cid, data: &[u8]) -> Seal {
    if read_seal(file) == Some(compute(cid, data)) {
        Seal::Matches
    } else {
        Seal::Unproven
    }
}

/// The seal of a file too large to hold in memory (a whole file of the `whole` tier),
/// computed as its bytes stream by. Equal to the seal of the same bytes in one piece.
pub(super) struct Streaming(Xxh3);

impl Streaming {
    /// A seal of bytes stored under `cid`'s name.
    pub(super) fn new(cid: &Cid) -> Streaming {
        Streaming(Xxh3::with_seed(xxh3_64(&cid.hash().to_bytes())))
    }

    /// Adds the next bytes.
    pub(super) fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The seal of all the bytes given.
    pub(super) fn finish(&self) -> [u8; LEN] {
        let mut seal = [0u8; LEN];
        seal[0] = VERSION;
        seal[1..].copy_from_slice(&self.0.digest128().to_le_bytes());
        seal
    }
}

/// Writes `seal` into `file`'s seal attribute; false if the filesystem refused.
pub(super) fn write_seal(file: &File, seal: &[u8; LEN]) -> bool {
    set_attr(file, ATTR, seal)
}

/// `file`'s seal attribute, if it has one of the right length.
pub(super) fn read_seal(file: &File) -> Option<[u8; LEN]> {
    let mut found = [0u8; LEN];
    (get_attr(file, ATTR, &mut found) == Some(LEN)).then_some(found)
}

/// Sets the extended attribute `name` of `file` to `value`; false if refused.
fn set_attr(file: &File, name: &CStr, value: &[u8]) -> bool {
    // SAFETY: `name` is NUL-terminated and `value` is a live buffer of the length given.
    let rc = unsafe {
        libc::fsetxattr(
            file.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    rc == 0
}

/// Reads the extended attribute `name` of `file` into `buf`: its length, or `None` if it
/// is missing, unreadable or longer than `buf`.
fn get_attr(file: &File, name: &CStr, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: `name` is NUL-terminated and `buf` is a live buffer of the length given; the
    // kernel writes at most that many bytes (ERANGE if the attribute is longer).
    let n = unsafe {
        libc::fgetxattr(
            file.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    usize::try_from(n).ok()
}

/// The extended attribute that holds a whole file's chunk sums.
const SUMS_ATTR: &CStr = c"user.distfs.sums";
/// The chunk sums format: a version byte, the chunk size's log2, the chunk count (u32 LE),
/// then each chunk's XXH3-64 (u64 LE), seeded by the whole file's seal seed and the chunk's
/// number.
const SUMS_VERSION: u8 = 1;
/// At most this many chunks, so the attribute (2 KiB and a few bytes) fits beside the seal
/// in the one 4 KiB block ext4 keeps for all of a file's attributes.
const MAX_CHUNKS: u64 = 256;
/// The smallest chunk: 1 MiB, at most one FUSE read's worth of reading ahead.
const MIN_CHUNK_SHIFT: u32 = 20;
const MAX_CHUNK_SHIFT: u32 = 48;
const SUMS_HEADER: usize = 6;

/// The seed of chunk `index` of the file named `cid`.
fn chunk_seed(base: u64, index: u64) -> u64 {
    base ^ (index + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Per-chunk seals of a whole file (`store::whole`): what lets the daemon serve a part of a
/// copy it has not proved in full, checking only the chunks that part touches. Chunks are a
/// power of two of at least 1 MiB, and a file has at most 256 of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ChunkSums {
    shift: u32,
    sums: Vec<u64>,
    seed: u64,
}

/// The chunk size's log2 for a file of `size` bytes.
fn chunk_shift(size: u64) -> u32 {
    let per = size.div_ceil(MAX_CHUNKS).max(1);
    per.next_power_of_two()
        .trailing_zeros()
        .clamp(MIN_CHUNK_SHIFT, MAX_CHUNK_SHIFT)
}

impl ChunkSums {
    /// The chunk size in bytes.
    pub(super) fn chunk_size(&self) -> u64 {
        1 << self.shift
    }

    /// How many chunks the file has.
    pub(super) fn count(&self) -> usize {
        self.sums.len()
    }

    /// The chunk that holds byte `offset`.
    pub(super) fn chunk_of(&self, offset: u64) -> u64 {
        offset >> self.shift
    }

    /// A hasher for chunk `index`'s bytes, to give to [`ChunkSums::matches`].
    pub(super) fn hasher(&self, index: u64) -> Xxh3 {
        Xxh3::with_seed(chunk_seed(self.seed, index))
    }

    /// Whether the bytes `hasher` (from [`ChunkSums::hasher`]) saw are chunk `index`'s.
    pub(super) fn matches(&self, index: u64, hasher: &Xxh3) -> bool {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.sums.get(i))
            .is_some_and(|&want| hasher.digest() == want)
    }

    /// Whether `data` is chunk `index`'s bytes.
    #[cfg(test)]
    fn check(&self, index: u64, data: &[u8]) -> bool {
        let mut hasher = self.hasher(index);
        hasher.update(data);
        self.matches(index, &hasher)
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SUMS_HEADER + 8 * self.sums.len());
        out.push(SUMS_VERSION);
        out.push(self.shift as u8);
        out.extend_from_slice(&(self.sums.len() as u32).to_le_bytes());
        for sum in &self.sums {
            out.extend_from_slice(&sum.to_le_bytes());
        }
        out
    }
}

/// Chunk sums computed as a whole file's bytes stream by.
pub(super) struct StreamingSums {
    shift: u32,
    seed: u64,
    sums: Vec<u64>,
    chunk: Xxh3,
    in_chunk: u64,
}

impl StreamingSums {
    /// The sums of a file of `size` bytes stored under `cid`'s name.
    pub(super) fn new(cid: &Cid, size: u64) -> StreamingSums {
        let seed = xxh3_64(&cid.hash().to_bytes());
        StreamingSums {
            shift: chunk_shift(size),
            seed,
            sums: Vec::new(),
            chunk: Xxh3::with_seed(chunk_seed(seed, 0)),
            in_chunk: 0,
        }
    }

    /// Adds the next bytes.
    pub(super) fn update(&mut self, mut bytes: &[u8]) {
        let size = 1u64 << self.shift;
        while !bytes.is_empty() {
            let take = usize::try_from(size - self.in_chunk)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            self.chunk.update(&bytes[..take]);
            self.in_chunk += take as u64;
            bytes = &bytes[take..];
            if self.in_chunk == size {
                self.close_chunk();
            }
        }
    }

    fn close_chunk(&mut self) {
        self.sums.push(self.chunk.digest());
        let next = chunk_seed(self.seed, self.sums.len() as u64);
        self.chunk = Xxh3::with_seed(next);
        self.in_chunk = 0;
    }

    /// The sums of all the bytes given.
    pub(super) fn finish(mut self) -> ChunkSums {
        if self.in_chunk > 0 {
            self.close_chunk();
        }
        ChunkSums {
            shift: self.shift,
            sums: self.sums,
            seed: self.seed,
        }
    }
}

/// Writes `sums` into `file`'s chunk sums attribute; false if the filesystem refused.
pub(super) fn write_sums(file: &File, sums: &ChunkSums) -> bool {
    set_attr(file, SUMS_ATTR, &sums.encode())
}

/// The chunk sums of `file`, a whole file of `size` bytes stored under `cid`'s name, if it
/// has sums of the right format and shape for that size.
pub(super) fn read_sums(file: &File, cid: &Cid, size: u64) -> Option<ChunkSums> {
    let mut found = vec![0u8; SUMS_HEADER + 8 * MAX_CHUNKS as usize];
    let n = get_attr(file, SUMS_ATTR, &mut found)?;
    let found = found.get(..n)?;
    let (header, body) = found.split_at_checked(SUMS_HEADER)?;
    let shift = u32::from(header[1]);
    let count = u32::from_le_bytes(header[2..6].try_into().ok()?);
    if header[0] != SUMS_VERSION
        || shift != chunk_shift(size)
        || u64::from(count) != size.div_ceil(1 << shift)
        || body.len() != 8 * count as usize
    {
        return None;
    }
    let sums = body
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
        .collect();
    Some(ChunkSums {
        shift,
        sums,
        seed: xxh3_64(&cid.hash().to_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::codec;
    use bytes::Bytes;
    use std::io::Write;

    fn block(data: &'static [u8]) -> Block {
        Block::encode(cid::Version::V1, codec::RAW, Bytes::from_static(data))
    }

    #[test]
    fn a_seal_covers_the_bytes_and_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b");
        let mut f = File::create(&path).unwrap();
        let (a, b) = (block(b"hello\n"), block(b"other\n"));
        f.write_all(a.data()).unwrap();
        // The tests' temp dir is on a filesystem with user xattrs (ext4, or tmpfs since 6.6).
        assert!(
            write(&f, &a),
            "could not set {ATTR:?} in {}",
            dir.path().display()
        );
        let f = File::open(&path).unwrap();
        assert_eq!(check(&f, a.cid(), a.data()), Seal::Matches);
        assert_eq!(check(&f, a.cid(), b"hellO\n"), Seal::Unproven);
        assert_eq!(check(&f, a.cid(), b"hello"), Seal::Unproven);
        // The same bytes under another block's name do not match.
        assert_eq!(check(&f, b.cid(), a.data()), Seal::Unproven);
        let unsealed = File::create(dir.path().join("c")).unwrap();
        assert_eq!(check(&unsealed, a.cid(), a.data()), Seal::Unproven);
    }

    #[test]
    fn a_streamed_seal_equals_the_seal_in_one_piece() {
        let a = block(b"hello, whole world\n");
        let mut s = Streaming::new(a.cid());
        for piece in a.data().chunks(5) {
            s.update(piece);
        }
        assert_eq!(s.finish(), compute(a.cid(), a.data()));
    }

    #[test]
    fn chunk_sums_check_each_chunk_and_survive_their_attribute() {
        let name = block(b"a whole file's root");
        let size = 3 * 1024 * 1024 + 5;
        let data: Vec<u8> = (0..size).map(|i| (i * 13 % 253) as u8).collect();
        let mut s = StreamingSums::new(name.cid(), size as u64);
        // Pieces that straddle chunk boundaries.
        for piece in data.chunks(700_001) {
            s.update(piece);
        }
        let sums = s.finish();
        assert_eq!(sums.chunk_size(), 1 << 20);
        assert_eq!(sums.count(), 4);
        for (i, chunk) in data.chunks(1 << 20).enumerate() {
            assert!(sums.check(i as u64, chunk), "chunk {i}");
            assert!(
                !sums.check(i as u64 + 1, chunk),
                "chunk {i} under another number"
            );
        }
        let mut bad = data[..1 << 20].to_vec();
        bad[77] ^= 1;
        assert!(!sums.check(0, &bad));
        assert!(!sums.check(99, b""));

        let dir = tempfile::tempdir().unwrap();
        let f = File::create(dir.path().join("w")).unwrap();
        assert!(write_sums(&f, &sums));
        assert_eq!(read_sums(&f, name.cid(), size as u64), Some(sums.clone()));
        // Sums of another size, or under another name, do not apply.
        assert_eq!(read_sums(&f, name.cid(), size as u64 + (1 << 20)), None);
        let other = read_sums(&f, block(b"other").cid(), size as u64).unwrap();
        assert!(!other.check(0, &data[..1 << 20]));
        assert_eq!(
            read_sums(&File::create(dir.path().join("x")).unwrap(), name.cid(), 5),
            None
        );
    }

    #[test]
    fn large_files_get_larger_chunks_never_more_than_the_attribute_holds() {
        assert_eq!(chunk_shift(1), MIN_CHUNK_SHIFT);
        assert_eq!(chunk_shift(256 << 20), 20);
        assert_eq!(chunk_shift((256 << 20) + 1), 21);
        assert_eq!(chunk_shift(1 << 30), 22);
        for size in [1u64, 1 << 20, 5 << 30, (1 << 40) + 3, 1 << 56] {
            let shift = chunk_shift(size);
            assert!(size.div_ceil(1 << shift) <= MAX_CHUNKS, "{size}");
        }
    }
}
