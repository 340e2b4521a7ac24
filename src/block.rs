//! Verified blocks: a CID and its bytes, constructible only by hashing or verifying.
//!
//! `block` owns the one rule everything else depends on: bytes are only ever paired with a
//! CID after the CID's multihash has been recomputed over them. Producers (the importer)
//! call [`Block::encode`], which hashes; consumers of untrusted bytes (the CAR reader, the
//! gateway client, the disk store on read-back of an unsealed file) call [`Block::verified`],
//! which checks. The disk store's seals (`store::seal`) vouch for bytes it verified before.
//! Identity CIDs carry their data inline and are decoded locally, never fetched.

use bytes::Bytes;
use cid::Cid;
use multihash::Multihash;
use sha2::{Digest, Sha256, Sha512};

/// The largest block we accept or produce (the Bitswap limit, SPECS.md §2.2).
pub const MAX_BLOCK_SIZE: usize = 2 * 1024 * 1024;
/// The largest identity digest a UnixFS context accepts (IPIP-0512).
pub const MAX_IDENTITY_SIZE: usize = 128;

/// Multicodec codes used by distfs.
pub mod codec {
    /// Raw binary block.
    pub const RAW: u64 = 0x55;
    /// dag-pb (UnixFS nodes).
    pub const DAG_PB: u64 = 0x70;
    /// DAG-CBOR.
    pub const DAG_CBOR: u64 = 0x71;
    /// libp2p public key (IPNS names).
    pub const LIBP2P_KEY: u64 = 0x72;
}

/// Multihash codes used by distfs.
pub mod mh {
    /// Identity: the digest is the data.
    pub const IDENTITY: u64 = 0x00;
    /// SHA2-256.
    pub const SHA2_256: u64 = 0x12;
    /// SHA2-512.
    pub const SHA2_512: u64 = 0x13;
}

/// Why bytes could not become a [`Block`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlockError {
    /// The recomputed hash differs from the CID's digest: the source lied or the data rotted.
    #[error("block {cid}: hash mismatch (the bytes are not what the CID names)")]
    HashMismatch { cid: Cid },
    /// The CID uses a hash function we do not implement, so the bytes cannot be checked.
    #[error("block {cid}: unsupported multihash code {code:#x}")]
    UnsupportedHash { cid: Cid, code: u64 },
    /// Larger than [`MAX_BLOCK_SIZE`].
    #[error("block {cid}: {size} bytes exceeds the {max}-byte block limit")]
    TooLarge { cid: Cid, size: usize, max: usize },
    /// An identity CID whose inline data exceeds [`MAX_IDENTITY_SIZE`].
    #[error("identity CID {cid}: {size} inline bytes exceeds the {max}-byte limit")]
    IdentityTooLarge { cid: Cid, size: usize, max: usize },
}

impl BlockError {
    /// True when the bytes were wrong (as opposed to unsupported): the source that sent
    /// them must be distrusted and the bytes dropped.
    pub fn is_corrupt(&self) -> bool {
        matches!(self, BlockError::HashMismatch { .. })
    }
}

/// A block whose bytes are known to match its CID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    cid: Cid,
    data: Bytes,
}

impl Block {
    /// Checks `data` against `cid` and pairs them. This is the only way untrusted bytes
    /// become a block.
    pub fn verified(cid: Cid, data: Bytes) -> Result<Block, BlockError> {
        verify(&cid, &data)?;
        Ok(Block { cid, data })
    }

    /// Pairs bytes read back from our own block store with the CID they were verified
    /// against when they were stored, without hashing them again. Only `store::seal` calls
    /// this, and only after the file's seal (a checksum of the multihash and the bytes,
    /// written together with the verified bytes) matched what was read.
    #[cfg(feature = "daemon")]
    pub(crate) fn from_sealed(cid: Cid, data: Bytes) -> Block {
        Block { cid, data }
    }

    /// Hashes `data` with SHA2-256 and names it with a CID of the given version and codec.
    /// CIDv0 is only possible for dag-pb; any other codec is bumped to CIDv1, as go-cid does.
    pub fn encode(version: cid::Version, codec: u64, data: Bytes) -> Block {
        let digest = Sha256::digest(&data);
        let hash = Multihash::<64>::wrap(mh::SHA2_256, &digest).expect("32-byte digest fits");
        let cid = if version == cid::Version::V0 && codec == codec::DAG_PB {
            Cid::new_v0(hash).expect("sha2-256 is a valid CIDv0 hash")
        } else {
            Cid::new_v1(codec, hash)
        };
        Block { cid, data }
    }

    /// The block an identity CID carries inline.
    pub fn from_identity(cid: &Cid) -> Result<Option<Block>, BlockError> {
        if cid.hash().code() != mh::IDENTITY {
            return Ok(None);
        }
        let digest = cid.hash().digest();
        if digest.len() > MAX_IDENTITY_SIZE {
            return Err(BlockError::IdentityTooLarge {
                cid: *cid,
                size: digest.len(),
                max: MAX_IDENTITY_SIZE,
            });
        }
        Ok(Some(Block {
            cid: *cid,
            data: Bytes::copy_from_slice(digest),
        }))
    }

    /// The block's CID.
    pub fn cid(&self) -> &Cid {
        &self.cid
    }

    /// The block's bytes.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The same bytes under another CID with the same multihash (another version or codec
    /// label); `None` when `cid` names different bytes.
    pub fn relabel(&self, cid: &Cid) -> Option<Block> {
        (cid.hash() == self.cid.hash()).then(|| Block {
            cid: *cid,
            data: self.data.clone(),
        })
    }

    /// Splits the block into its parts.
    pub fn into_parts(self) -> (Cid, Bytes) {
        (self.cid, self.data)
    }
}

/// Recomputes `cid`'s multihash over `data`.
pub fn verify(cid: &Cid, data: &[u8]) -> Result<(), BlockError> {
    if data.len() > MAX_BLOCK_SIZE {
        return Err(BlockError::TooLarge {
            cid: *cid,
            size: data.len(),
            max: MAX_BLOCK_SIZE,
        });
    }
    let hash = cid.hash();
    let ok = match hash.code() {
        mh::SHA2_256 => hash.digest() == Sha256::digest(data).as_slice(),
        mh::SHA2_512 => hash.digest() == Sha512::digest(data).as_slice(),
        mh::IDENTITY => {
            if hash.digest().len() > MAX_IDENTITY_SIZE {
                return Err(BlockError::IdentityTooLarge {
                    cid: *cid,
                    size: hash.digest().len(),
                    max: MAX_IDENTITY_SIZE,
                });
            }
            hash.digest() == data
        }
        code => return Err(BlockError::UnsupportedHash { cid: *cid, code }),
    };
    if ok {
        Ok(())
    } else {
        Err(BlockError::HashMismatch { cid: *cid })
    }
}

/// A stable key for a block's content: its multihash bytes. Two CIDs that differ only in
/// version or codec name the same bytes and share one key (one copy on disk).
pub fn multihash_key(cid: &Cid) -> Vec<u8> {
    cid.hash().to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn hello_world_leaf_matches_kubo() {
        // SPECS.md §4.1: the Kubo dag-pb leaf for "hello world\n".
        let data = hex::decode("0a120802120c68656c6c6f20776f726c640a180c").unwrap();
        let b = Block::encode(cid::Version::V0, codec::DAG_PB, Bytes::from(data));
        assert_eq!(
            b.cid().to_string(),
            "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
        );
    }

    #[test]
    fn raw_block_is_cidv1_even_when_v0_is_asked() {
        let b = Block::encode(
            cid::Version::V0,
            codec::RAW,
            Bytes::from_static(b"hello world\n"),
        );
        assert_eq!(
            b.cid().to_string(),
            "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
        );
    }

    #[test]
    fn verify_rejects_wrong_bytes() {
        let cid =
            Cid::from_str("bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4").unwrap();
        assert!(Block::verified(cid, Bytes::from_static(b"hello world\n")).is_ok());
        let err = Block::verified(cid, Bytes::from_static(b"hello world!")).unwrap_err();
        assert!(err.is_corrupt());
    }

    #[test]
    fn identity_cid_decodes_inline() {
        let cid = Cid::from_str("bafkqaaa").unwrap();
        let b = Block::from_identity(&cid).unwrap().unwrap();
        assert!(b.data().is_empty());
    }

    #[test]
    fn oversize_block_is_refused() {
        let data = vec![0u8; MAX_BLOCK_SIZE + 1];
        let b = Block::encode(cid::Version::V1, codec::RAW, Bytes::from(data.clone()));
        let err = Block::verified(*b.cid(), Bytes::from(data)).unwrap_err();
        assert!(matches!(err, BlockError::TooLarge { .. }));
    }
}
