//! Keys in libp2p's encodings (SPECS.md §7.2): an Ed25519 [`Keypair`] stored as a libp2p
//! `PrivateKey` protobuf (the format of `ipfs key export`), and the [`PublicKey`] a record
//! is checked against (Ed25519, or RSA for legacy names), serialized as a libp2p
//! `PublicKey` protobuf whose multihash is the IPNS name.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use multihash::Multihash;
use prost::Message;
use sha2::{Digest, Sha256};

use super::pb::{KeyPb, KEY_TYPE_ED25519};
use super::record::RecordError;
use super::{IpnsName, NameError, IDENTITY_MH, SHA2_256_MH};

/// Largest key file read (an Ed25519 key file is 68 bytes).
const MAX_KEY_FILE: u64 = 4096;
/// A serialized public key up to this size is inlined in the name (identity multihash).
const MAX_INLINE_KEY: usize = 42;

/// libp2p `KeyType::RSA`.
const KEY_TYPE_RSA: i32 = 0;
/// Smallest RSA modulus accepted (go-libp2p's minimum); the crate caps it at 4096 bits.
const MIN_RSA_BITS: usize = 2048;

/// A public key a record signature is checked with: Ed25519, or RSA for legacy names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    /// An Ed25519 key.
    Ed25519(VerifyingKey),
    /// An RSA key (DER PKIX `SubjectPublicKeyInfo`, as libp2p serializes it; checked to
    /// parse when decoded). Signatures are PKCS#1 v1.5 over SHA-256.
    Rsa(Vec<u8>),
}

impl PublicKey {
    /// Decodes a serialized libp2p `PublicKey` protobuf.
    pub fn from_protobuf(bytes: &[u8]) -> Result<PublicKey, RecordError> {
        let pb = KeyPb::decode(bytes).map_err(|e| RecordError::BadPublicKey {
            reason: format!("not a libp2p PublicKey protobuf: {e}"),
        })?;
        let data = pb.data.unwrap_or_default();
        match pb.key_type {
            Some(KEY_TYPE_ED25519) => {
                let raw: [u8; 32] =
                    data.as_slice()
                        .try_into()
                        .map_err(|_| RecordError::BadPublicKey {
                            reason: format!("Ed25519 key is {} bytes, not 32", data.len()),
                        })?;
                VerifyingKey::from_bytes(&raw)
                    .map(PublicKey::Ed25519)
                    .map_err(|e| RecordError::BadPublicKey {
                        reason: format!("not an Ed25519 point: {e}"),
                    })
            }
            Some(KEY_TYPE_RSA) => {
                rsa_key(&data)?;
                Ok(PublicKey::Rsa(data))
            }
            other => Err(RecordError::UnsupportedKeyType {
                key_type: key_type_name(other.unwrap_or(0)),
            }),
        }
    }

    /// The libp2p `PublicKey` protobuf (`08 01 12 20 <key>` for Ed25519).
    pub fn to_protobuf(&self) -> Vec<u8> {
        match self {
            PublicKey::Ed25519(vk) => KeyPb {
                key_type: Some(KEY_TYPE_ED25519),
                data: Some(vk.to_bytes().to_vec()),
            }
            .encode_to_vec(),
            PublicKey::Rsa(der) => KeyPb {
                key_type: Some(KEY_TYPE_RSA),
                data: Some(der.clone()),
            }
            .encode_to_vec(),
        }
    }

    /// The IPNS name of this key: identity multihash of the protobuf when it is at most
    /// 42 bytes, sha2-256 otherwise.
    pub fn name(&self) -> IpnsName {
        let pb = self.to_protobuf();
        let mh = if pb.len() <= MAX_INLINE_KEY {
            Multihash::<64>::wrap(IDENTITY_MH, &pb)
        } else {
            Multihash::<64>::wrap(SHA2_256_MH, &Sha256::digest(&pb))
        };
        // Both branches build a well-formed multihash within the 64-byte bound.
        IpnsName {
            mh: mh.unwrap_or_default(),
        }
    }

    /// Whether `signature` is this key's signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            PublicKey::Ed25519(vk) => ed25519_dalek::Signature::from_slice(signature)
                .map(|sig| vk.verify(message, &sig).is_ok())
                .unwrap_or(false),
            PublicKey::Rsa(der) => {
                let Ok(key) = rsa_key(der) else {
                    return false;
                };
                let vk = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key);
                rsa::pkcs1v15::Signature::try_from(signature)
                    .map(|sig| rsa::signature::Verifier::verify(&vk, message, &sig).is_ok())
                    .unwrap_or(false)
            }
        }
    }
}

/// Parses a DER PKIX RSA public key, refusing moduli under [`MIN_RSA_BITS`].
fn rsa_key(der: &[u8]) -> Result<rsa::RsaPublicKey, RecordError> {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::traits::PublicKeyParts;
    let key =
        rsa::RsaPublicKey::from_public_key_der(der).map_err(|e| RecordError::BadPublicKey {
            reason: format!("not a DER RSA public key: {e}"),
        })?;
    if key.size() * 8 < MIN_RSA_BITS {
        return Err(RecordError::BadPublicKey {
            reason: format!("RSA key of {} bits, under {MIN_RSA_BITS}", key.size() * 8),
        });
    }
    Ok(key)
}

fn key_type_name(t: i32) -> &'static str {
    match t {
        0 => "RSA",
        1 => "Ed25519",
        2 => "Secp256k1",
        3 => "ECDSA",
        _ => "unknown",
    }
}

/// An Ed25519 signing key.
pub struct Keypair {
    signing: SigningKey,
}

impl std::fmt::Debug for Keypair {
    /// Shows the name only, never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keypair({})", self.name())
    }
}

impl Keypair {
    /// A fresh key from the operating system's random source.
    ///
    /// # Panics
    /// Never in practice: if the OS random source fails, use [`Keypair::try_generate`].
    pub fn generate() -> Keypair {
        match Keypair::try_generate() {
            Ok(k) => k,
            // getrandom only fails when the kernel has no entropy interface at all.
            Err(e) => panic!("{e}"),
        }
    }

    /// A fresh key, or the random source's error.
    pub fn try_generate() -> Result<Keypair, NameError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| NameError::Random(e.to_string()))?;
        Ok(Keypair::from_seed(seed))
    }

    /// The key with this 32-byte Ed25519 seed (for tests and imports).
    pub fn from_seed(seed: [u8; 32]) -> Keypair {
        Keypair {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// Reads a libp2p `PrivateKey` protobuf file (type Ed25519; the 64-byte seed ‖ public
    /// form that Kubo and JS libp2p write, or a bare 32-byte seed).
    pub fn load(path: &Path) -> Result<Keypair, NameError> {
        let io = |source| NameError::KeyIo {
            path: path.to_path_buf(),
            source,
        };
        let fmt = |reason: String| NameError::KeyFormat {
            path: path.to_path_buf(),
            reason,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_KEY_FILE {
            return Err(fmt(format!("{len} bytes: too large for a key")));
        }
        let bytes = std::fs::read(path).map_err(io)?;
        Keypair::from_protobuf(&bytes).map_err(fmt)
    }

    /// Decodes a libp2p `PrivateKey` protobuf.
    pub fn from_protobuf(bytes: &[u8]) -> Result<Keypair, String> {
        let pb =
            KeyPb::decode(bytes).map_err(|e| format!("not a libp2p PrivateKey protobuf: {e}"))?;
        if pb.key_type != Some(KEY_TYPE_ED25519) {
            return Err(format!(
                "key type {} is not supported (Ed25519 only)",
                key_type_name(pb.key_type.unwrap_or(0))
            ));
        }
        let data = pb.data.unwrap_or_default();
        let seed: [u8; 32] = match data.len() {
            32 | 64 => data
                .get(..32)
                .and_then(|s| s.try_into().ok())
                .ok_or("short key")?,
            n => return Err(format!("Ed25519 private key is {n} bytes, not 64 or 32")),
        };
        let key = Keypair::from_seed(seed);
        let public = key.signing.verifying_key().to_bytes();
        if data.len() == 64 && data.get(32..) != Some(&public[..]) {
            return Err("the public half does not match the private key".into());
        }
        Ok(key)
    }

    /// The libp2p `PrivateKey` protobuf: type Ed25519, data = seed ‖ public key.
    pub fn to_protobuf(&self) -> Vec<u8> {
        let mut data = self.signing.to_bytes().to_vec();
        data.extend_from_slice(self.signing.verifying_key().as_bytes());
        KeyPb {
            key_type: Some(KEY_TYPE_ED25519),
            data: Some(data),
        }
        .encode_to_vec()
    }

    /// Writes the key to a new file with mode 0600; an existing file is never replaced.
    pub fn save(&self, path: &Path) -> Result<(), NameError> {
        let io = |source| NameError::KeyIo {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    NameError::KeyExists {
                        path: path.to_path_buf(),
                    }
                } else {
                    io(e)
                }
            })?;
        file.write_all(&self.to_protobuf()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey::Ed25519(self.signing.verifying_key())
    }

    /// The IPNS name this key publishes under.
    pub fn name(&self) -> IpnsName {
        self.public().name()
    }

    /// Signs `message` (plain Ed25519, 64 bytes).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.signing.sign(message).to_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_name_is_identity_of_the_protobuf() {
        let k = Keypair::from_seed([7; 32]);
        let name = k.name();
        let bytes = name.to_cid().to_bytes();
        // SPECS.md §7.2: 01 72 00 24 08 01 12 20 <32-byte key>.
        assert_eq!(
            bytes.get(..8).unwrap(),
            &[0x01, 0x72, 0x00, 0x24, 0x08, 0x01, 0x12, 0x20]
        );
        assert!(name.to_string().starts_with("k51qzi5uqu5d"));
        assert_eq!(name.inline_key(), Some(k.public()));
    }

    #[test]
    fn save_load_round_trip_and_no_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let k = Keypair::generate();
        k.save(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Keypair::load(&path).unwrap().name(), k.name());
        let err = Keypair::generate().save(&path).unwrap_err();
        assert!(matches!(err, NameError::KeyExists { .. }), "{err}");
        assert_eq!(Keypair::load(&path).unwrap().name(), k.name());
    }

    #[test]
    fn load_refuses_wrong_files() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, Vec<u8>); 3] = [
            ("garbage", b"\xff\xff\xff not a key".to_vec()),
            (
                "rsa",
                KeyPb {
                    key_type: Some(0),
                    data: Some(vec![1; 64]),
                }
                .encode_to_vec(),
            ),
            ("mismatch", {
                let mut data = [1u8; 32].to_vec();
                data.extend_from_slice(&Keypair::from_seed([2; 32]).public_bytes());
                KeyPb {
                    key_type: Some(1),
                    data: Some(data),
                }
                .encode_to_vec()
            }),
        ];
        for (name, bytes) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let err = Keypair::load(&path).unwrap_err();
            assert!(matches!(err, NameError::KeyFormat { .. }), "{name}: {err}");
        }
    }

    impl Keypair {
        fn public_bytes(&self) -> [u8; 32] {
            self.signing.verifying_key().to_bytes()
        }
    }
}
