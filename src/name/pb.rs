//! Wire types: the IPNS `IpnsEntry` protobuf (SPECS.md §7.1) and libp2p's `PublicKey` /
//! `PrivateKey` (§7.2). Fields are `optional` so that zero values written by Kubo (e.g.
//! `validityType = 0`) are written back the same way and absent fields stay absent.

use prost::Message;

/// libp2p `KeyType::Ed25519`.
pub const KEY_TYPE_ED25519: i32 = 1;

/// A signed IPNS record as it travels.
#[derive(Clone, PartialEq, Message)]
pub struct IpnsEntry {
    /// Legacy V1 copy of `data.Value`.
    #[prost(bytes = "vec", optional, tag = "1")]
    pub value: Option<Vec<u8>>,
    /// Legacy signature (never used for validation).
    #[prost(bytes = "vec", optional, tag = "2")]
    pub signature_v1: Option<Vec<u8>>,
    /// Legacy copy of `data.ValidityType` (0 = EOL).
    #[prost(int32, optional, tag = "3")]
    pub validity_type: Option<i32>,
    /// Legacy copy of `data.Validity`.
    #[prost(bytes = "vec", optional, tag = "4")]
    pub validity: Option<Vec<u8>>,
    /// Legacy copy of `data.Sequence`.
    #[prost(uint64, optional, tag = "5")]
    pub sequence: Option<u64>,
    /// Legacy copy of `data.TTL` (nanoseconds).
    #[prost(uint64, optional, tag = "6")]
    pub ttl: Option<u64>,
    /// Serialized libp2p `PublicKey`, needed when the name is a hash of the key.
    #[prost(bytes = "vec", optional, tag = "7")]
    pub pub_key: Option<Vec<u8>>,
    /// Signature over `"ipns-signature:" ‖ data`.
    #[prost(bytes = "vec", optional, tag = "8")]
    pub signature_v2: Option<Vec<u8>>,
    /// The DAG-CBOR map that signature V2 covers.
    #[prost(bytes = "vec", optional, tag = "9")]
    pub data: Option<Vec<u8>>,
}

/// libp2p `PublicKey` / `PrivateKey` (same shape: a type and the key bytes).
#[derive(Clone, PartialEq, Message)]
pub struct KeyPb {
    /// `RSA = 0, Ed25519 = 1, Secp256k1 = 2, ECDSA = 3`.
    #[prost(int32, optional, tag = "1")]
    pub key_type: Option<i32>,
    /// The key bytes (Ed25519 public: 32 bytes; private: 64 bytes, seed ‖ public).
    #[prost(bytes = "vec", optional, tag = "2")]
    pub data: Option<Vec<u8>>,
}
