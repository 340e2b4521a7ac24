//! IPNS names, keys and records (SPECS.md §7), DNSLink (§9), and the resolver that turns a
//! mount's root spec into a CID.
//!
//! Pure parts: [`IpnsName`] in all its spellings, Ed25519 [`Keypair`]s stored as libp2p
//! `PrivateKey` protobufs, and signed records built by [`create`] and checked by [`verify`]
//! (size, signature V2 over the DAG-CBOR `data`, V1 fields agreeing with it, key matching
//! the name, validity). I/O parts: [`dnslink`] (TXT lookups) and `resolve` (records from
//! every configured source, highest valid sequence, never back below a sequence once seen,
//! the last good record persisted in the cache dir). [`RootSpec`] parses and prints roots.
//! The I/O parts exist only with the `daemon` feature (the fuzz build has none).

mod cbor;
pub mod dnslink;
#[doc(hidden)]
pub mod fuzzing;
pub mod key;
mod pb;
pub mod record;
#[cfg(feature = "daemon")]
pub mod resolve;
pub mod root;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use cid::multibase::{self, Base};
use cid::Cid;
use multihash::Multihash;

pub use key::{Keypair, PublicKey};
pub use record::{create, verify, Record, RecordError, MAX_RECORD_SIZE};
#[cfg(feature = "daemon")]
pub use resolve::{Resolved, Resolver, ResolverConfig};
pub use root::{RootSpec, RootSpecError};

/// Multicodec `libp2p-key`: the codec of a CID that names an IPNS key.
pub const LIBP2P_KEY_CODEC: u64 = 0x72;
/// Multicodec `dag-pb`: legacy CIDv1 spelling of a peer ID (`k50…`), accepted on input.
const DAG_PB_CODEC: u64 = 0x70;
/// Multihash code `identity`: the digest is the serialized public key itself.
pub const IDENTITY_MH: u64 = 0x00;
/// Multihash code `sha2-256` (names of keys whose serialized form exceeds 42 bytes).
pub const SHA2_256_MH: u64 = 0x12;
/// Longest name string accepted (the longest real spelling is ~65 characters).
const MAX_NAME_LEN: usize = 256;

/// Errors of names and keys.
#[derive(Debug, thiserror::Error)]
pub enum NameError {
    /// A string that is no IPNS name.
    #[error("{input:?} is not an IPNS name: {reason}")]
    BadName {
        /// The input (shortened).
        input: String,
        /// Why it was refused.
        reason: String,
    },
    /// A key file could not be read or written.
    #[error("key file {}: {source}", path.display())]
    KeyIo {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key file that exists already is never overwritten.
    #[error("key file {} exists already: refusing to overwrite a key", path.display())]
    KeyExists {
        /// The file.
        path: PathBuf,
    },
    /// A key file whose contents are not an Ed25519 libp2p private key.
    #[error("key file {}: {reason}", path.display())]
    KeyFormat {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The system's random source failed while generating a key.
    #[error("no randomness for a new key: {0}")]
    Random(String),
    /// A record could not be built from the given fields.
    #[error("cannot create an IPNS record: {0}")]
    Create(String),
}

/// An IPNS name: the binary multihash of a serialized libp2p public key (identity multihash
/// for Ed25519 keys, which then carry the key inside the name; sha2-256 for larger keys).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpnsName {
    mh: Multihash<64>,
}

impl IpnsName {
    /// The name of a multihash, checked to be identity (≤ 42-byte digest) or sha2-256.
    pub fn from_multihash(mh: Multihash<64>) -> Result<IpnsName, NameError> {
        let bad = |reason: &str| NameError::BadName {
            input: hex::encode(mh.to_bytes()),
            reason: reason.into(),
        };
        match mh.code() {
            IDENTITY_MH if mh.size() <= 42 && mh.size() > 0 => Ok(IpnsName { mh }),
            IDENTITY_MH => Err(bad("identity multihash must hold 1..=42 bytes")),
            SHA2_256_MH if mh.size() == 32 => Ok(IpnsName { mh }),
            SHA2_256_MH => Err(bad("sha2-256 digest must be 32 bytes")),
            _ => Err(bad("multihash must be identity or sha2-256")),
        }
    }

    /// The binary multihash.
    pub fn multihash(&self) -> &Multihash<64> {
        &self.mh
    }

    /// The binary multihash as bytes (the key the serve's record store uses).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.mh.to_bytes()
    }

    /// The DHT/routing key: ASCII `/ipns/` followed by the binary multihash.
    pub fn routing_key(&self) -> Vec<u8> {
        let mut key = b"/ipns/".to_vec();
        key.extend_from_slice(&self.mh.to_bytes());
        key
    }

    /// The public key inlined in an identity-multihash name (Ed25519), if this name has one.
    pub fn inline_key(&self) -> Option<PublicKey> {
        if self.mh.code() != IDENTITY_MH {
            return None;
        }
        PublicKey::from_protobuf(self.mh.digest()).ok()
    }

    /// The name as a CIDv1 with the libp2p-key codec.
    pub fn to_cid(&self) -> Cid {
        Cid::new_v1(LIBP2P_KEY_CODEC, self.mh)
    }
}

impl FromStr for IpnsName {
    type Err = NameError;

    /// Accepts a CIDv1 libp2p-key in any multibase (`k51…` base36, `bafz…` base32), the
    /// legacy dag-pb CIDv1 form (`k50…`), a CIDv0 (`Qm…`) and a bare base58btc multihash
    /// (`12D3KooW…`).
    fn from_str(s: &str) -> Result<IpnsName, NameError> {
        let bad = |reason: String| NameError::BadName {
            input: s.chars().take(80).collect(),
            reason,
        };
        if s.is_empty() || s.len() > MAX_NAME_LEN {
            return Err(bad(format!("length must be 1..={MAX_NAME_LEN}")));
        }
        let mh = match Cid::try_from(s) {
            Ok(cid) => {
                if cid.version() == cid::Version::V1
                    && cid.codec() != LIBP2P_KEY_CODEC
                    && cid.codec() != DAG_PB_CODEC
                {
                    return Err(bad(format!(
                        "a CID naming a key has codec libp2p-key (0x72), not {:#x}",
                        cid.codec()
                    )));
                }
                *cid.hash()
            }
            Err(cid_err) => {
                let bytes = Base::Base58Btc.decode(s).map_err(|_| {
                    bad(format!(
                        "neither a CID ({cid_err}) nor a base58btc multihash"
                    ))
                })?;
                Multihash::<64>::from_bytes(&bytes)
                    .map_err(|e| bad(format!("base58btc but not a multihash: {e}")))?
            }
        };
        IpnsName::from_multihash(mh).map_err(|e| match e {
            NameError::BadName { reason, .. } => bad(reason),
            other => other,
        })
    }
}

impl fmt::Display for IpnsName {
    /// Canonical spelling, as Kubo prints it: CIDv1 libp2p-key in base36 (`k51…`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&multibase::encode(
            Base::Base36Lower,
            self.to_cid().to_bytes(),
        ))
    }
}

impl fmt::Debug for IpnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IpnsName({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B36: &str = "k51qzi5uqu5dk3v4rmjber23h16xnr23bsggmqqil9z2gduiis5se8dht36dam";
    const B58: &str = "12D3KooWLQzUv2FHWGVPXTXSZpdHs7oHbXub2G5WC8Tx4NQhyd2d";
    const B32: &str = "bafzaajaiaejcbhltvusd6q2t7tm3lmke4vu4lieeerm25eihikbh3ncjntnm6t6o";

    #[test]
    fn three_spellings_one_name_base36_canonical() {
        // SPECS.md §7.2 vector.
        let a: IpnsName = B36.parse().unwrap();
        let b: IpnsName = B58.parse().unwrap();
        let c: IpnsName = B32.parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert_eq!(a.to_string(), B36);
        assert_eq!(c.to_string(), B36);
        assert!(a.inline_key().is_some());
        // The dag-pb CIDv1 spelling of the same key (conformance B11).
        let d: IpnsName = "k50rm9yjlt0jey4fqg6wafvqprktgbkpgkqdg27tpqje6iimzxewnhvtin9hhq"
            .parse()
            .unwrap();
        assert_eq!(d, a);
    }

    #[test]
    fn rsa_name_is_sha256_without_inline_key() {
        let n: IpnsName = "QmVujd5Vb7moysJj8itnGufN7MEtPRCNHkKpNuA4onsRa3"
            .parse()
            .unwrap();
        assert_eq!(n.multihash().code(), SHA2_256_MH);
        assert!(n.inline_key().is_none());
        assert!(n.to_string().starts_with("k2k4r8"));
    }

    #[test]
    fn refuses_non_names() {
        for bad in [
            "",
            "not a name!",
            "dist.ipfs.tech",
            // A raw-codec CID is content, not a key.
            "bafkqaaa",
            &"k".repeat(300),
        ] {
            let err = bad.parse::<IpnsName>().unwrap_err();
            assert!(matches!(err, NameError::BadName { .. }), "{bad}: {err}");
        }
    }
}
