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
    // SAFETY: `ATTR` is NUL-terminated and `seal` is a live buffer of the length given.
    let rc = unsafe {
        libc::fsetxattr(
            file.as_raw_fd(),
            ATTR.as_ptr(),
            seal.as_ptr().cast(),
            seal.len(),
            0,
        )
    };
    rc == 0
}

/// `file`'s seal attribute, if it has one of the right length.
pub(super) fn read_seal(file: &File) -> Option<[u8; LEN]> {
    let mut found = [0u8; LEN];
    // SAFETY: `ATTR` is NUL-terminated and `found` is a live buffer of the length given; the
    // kernel writes at most that many bytes (ERANGE if the attribute is longer).
    let n = unsafe {
        libc::fgetxattr(
            file.as_raw_fd(),
            ATTR.as_ptr(),
            found.as_mut_ptr().cast(),
            found.len(),
        )
    };
    (n == LEN as isize).then_some(found)
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
}
