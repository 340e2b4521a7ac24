//! Signed IPNS records (SPECS.md §7): [`create`] builds a V1+V2 record the way Kubo emits
//! it, [`verify`] applies the validation steps of §7.4 in order and returns the typed
//! [`Record`], or a [`RecordError`] naming the first rule the bytes broke.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use prost::Message;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::cbor::{self, DataMap};
use super::key::{Keypair, PublicKey};
use super::pb::IpnsEntry;
use super::{IpnsName, NameError, IDENTITY_MH};

/// Largest serialized record accepted (boxo `MaxRecordSize`).
pub const MAX_RECORD_SIZE: usize = 10 * 1024;
/// What signature V2 signs before the `data` bytes.
pub const SIGNATURE_V2_PREFIX: &[u8] = b"ipns-signature:";
/// `ValidityType` EOL: `Validity` is an RFC 3339 expiry time.
const VALIDITY_EOL: u64 = 0;

/// Why a record was refused. Each variant is one rule of SPECS.md §7.4.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Over [`MAX_RECORD_SIZE`].
    #[error("record is {size} bytes, over the {MAX_RECORD_SIZE}-byte limit")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// Not an `IpnsEntry` protobuf.
    #[error("not an IPNS record: {reason}")]
    Malformed {
        /// The decoder's complaint.
        reason: String,
    },
    /// A field the record must carry is absent or empty (a V1-only record lacks both).
    #[error("record has no {field} (V1-only records are not accepted)")]
    MissingField {
        /// `signatureV2` or `data`.
        field: &'static str,
    },
    /// The `data` field is not the DAG-CBOR map the spec defines.
    #[error("record data is not a valid DAG-CBOR IPNS map: {reason}")]
    BadData {
        /// What is wrong.
        reason: String,
    },
    /// The embedded or inlined public key cannot be decoded.
    #[error("bad public key: {reason}")]
    BadPublicKey {
        /// What is wrong.
        reason: String,
    },
    /// A key type this build does not verify.
    #[error("{key_type} keys are not supported (Ed25519 and RSA only)")]
    UnsupportedKeyType {
        /// The libp2p key type.
        key_type: &'static str,
    },
    /// The name is a hash of a key and the record carries no key.
    #[error("record carries no public key and the name does not inline one")]
    NoKey,
    /// The record's public key is not the key the name stands for.
    #[error("record's public key belongs to {found}, not to the requested name")]
    KeyMismatch {
        /// The name of the key the record carries.
        found: String,
    },
    /// Signature V2 does not verify.
    #[error("signatureV2 does not verify against the name's key")]
    BadSignature,
    /// A legacy V1 field disagrees with its signed `data` counterpart.
    #[error("V1 field {field} differs from the signed data")]
    V1Mismatch {
        /// The field.
        field: &'static str,
    },
    /// `ValidityType` is not EOL (0).
    #[error("validity type {validity_type} is not supported (EOL = 0 only)")]
    UnsupportedValidityType {
        /// The type.
        validity_type: u64,
    },
    /// `Validity` is not an RFC 3339 time.
    #[error("validity {text:?} is not an RFC 3339 time")]
    BadValidity {
        /// The text (lossy).
        text: String,
    },
    /// The `Value` is not UTF-8 text.
    #[error("record value is not UTF-8 text")]
    BadValue,
    /// The record's end of life has passed.
    #[error("record expired at {eol}")]
    Expired {
        /// The expiry as written in the record.
        eol: String,
    },
}

impl RecordError {
    /// A short stable word for logs and metrics (`too-large`, `bad-signature`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            RecordError::TooLarge { .. } => "too-large",
            RecordError::Malformed { .. } => "malformed",
            RecordError::MissingField { .. } => "missing-field",
            RecordError::BadData { .. } => "bad-data",
            RecordError::BadPublicKey { .. } => "bad-public-key",
            RecordError::UnsupportedKeyType { .. } => "unsupported-key-type",
            RecordError::NoKey => "no-key",
            RecordError::KeyMismatch { .. } => "key-mismatch",
            RecordError::BadSignature => "bad-signature",
            RecordError::V1Mismatch { .. } => "v1-mismatch",
            RecordError::UnsupportedValidityType { .. } => "unsupported-validity-type",
            RecordError::BadValidity { .. } => "bad-validity",
            RecordError::BadValue => "bad-value",
            RecordError::Expired { .. } => "expired",
        }
    }
}

/// A verified record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The content path it points to (`/ipfs/<cid>[/path]`, `/ipns/<name>`, …).
    pub value: String,
    /// Version counter: higher wins.
    pub sequence: u64,
    /// End of life: the record is invalid after this instant.
    pub validity: SystemTime,
    /// How long a resolver may cache the record.
    pub ttl: Duration,
    /// The serialized record, as verified.
    pub raw: Bytes,
    /// The key that signed it.
    pub public_key: PublicKey,
}

impl Record {
    /// Whether `self` should replace `other` (boxo `compare`/`Select`: higher sequence,
    /// then later validity, then bytewise larger record).
    pub fn supersedes(&self, other: &Record) -> bool {
        (self.sequence, self.validity, &self.raw[..])
            > (other.sequence, other.validity, &other.raw[..])
    }
}

/// Formats an instant as Go's RFC3339Nano does (UTC, `Z`, fraction without trailing zeros).
pub fn format_validity(t: SystemTime) -> Result<String, NameError> {
    OffsetDateTime::from(t)
        .format(&Rfc3339)
        .map_err(|e| NameError::Create(format!("validity not representable in RFC 3339: {e}")))
}

fn parse_validity(bytes: &[u8]) -> Result<SystemTime, RecordError> {
    let bad = || RecordError::BadValidity {
        text: String::from_utf8_lossy(bytes).chars().take(64).collect(),
    };
    let s = std::str::from_utf8(bytes).map_err(|_| bad())?;
    OffsetDateTime::parse(s, &Rfc3339)
        .map(SystemTime::from)
        .map_err(|_| bad())
}

/// Builds and signs a record pointing at `value`, valid until `eol`, cacheable for `ttl`.
/// Like Kubo (`--v1compat`, the default), it carries the V1 fields and signature too.
pub fn create(
    key: &Keypair,
    value: &str,
    sequence: u64,
    eol: SystemTime,
    ttl: Duration,
) -> Result<Bytes, NameError> {
    let validity = format_validity(eol)?;
    let ttl_ns = u64::try_from(ttl.as_nanos())
        .map_err(|_| NameError::Create(format!("ttl {ttl:?} does not fit in u64 nanoseconds")))?;
    let data = cbor::encode(&DataMap {
        value: value.as_bytes().to_vec(),
        validity: validity.as_bytes().to_vec(),
        validity_type: VALIDITY_EOL,
        sequence,
        ttl: ttl_ns,
    });
    let mut v2_message = SIGNATURE_V2_PREFIX.to_vec();
    v2_message.extend_from_slice(&data);
    let mut v1_message = value.as_bytes().to_vec();
    v1_message.extend_from_slice(validity.as_bytes());
    v1_message.extend_from_slice(b"EOL");
    let public = key.public().to_protobuf();
    let entry = IpnsEntry {
        value: Some(value.as_bytes().to_vec()),
        signature_v1: Some(key.sign(&v1_message)),
        validity_type: Some(0),
        validity: Some(validity.into_bytes()),
        sequence: Some(sequence),
        ttl: Some(ttl_ns),
        // Ed25519 keys are inlined in the name; only larger keys travel in the record.
        pub_key: (key.name().multihash().code() != IDENTITY_MH).then_some(public),
        signature_v2: Some(key.sign(&v2_message)),
        data: Some(data),
    };
    let bytes = entry.encode_to_vec();
    if bytes.len() > MAX_RECORD_SIZE {
        return Err(NameError::Create(format!(
            "record would be {} bytes, over the {MAX_RECORD_SIZE}-byte limit (value too long)",
            bytes.len()
        )));
    }
    Ok(Bytes::from(bytes))
}

/// Verifies `bytes` as a record for `name` at time `now` (SPECS.md §7.4, in order).
pub fn verify(name: &IpnsName, bytes: &[u8], now: SystemTime) -> Result<Record, RecordError> {
    if bytes.len() > MAX_RECORD_SIZE {
        return Err(RecordError::TooLarge { size: bytes.len() });
    }
    let entry = IpnsEntry::decode(bytes).map_err(|e| RecordError::Malformed {
        reason: e.to_string(),
    })?;
    let signature_v2 = entry
        .signature_v2
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or(RecordError::MissingField {
            field: "signatureV2",
        })?;
    let data = entry
        .data
        .as_deref()
        .filter(|d| !d.is_empty())
        .ok_or(RecordError::MissingField { field: "data" })?;
    let public_key = record_key(name, entry.pub_key.as_deref())?;
    let fields = cbor::decode(data).map_err(|reason| RecordError::BadData { reason })?;
    let mut message = SIGNATURE_V2_PREFIX.to_vec();
    message.extend_from_slice(data);
    if !public_key.verify(&message, signature_v2) {
        return Err(RecordError::BadSignature);
    }
    if entry.value.as_deref().is_some_and(|v| !v.is_empty())
        || entry.signature_v1.as_deref().is_some_and(|s| !s.is_empty())
    {
        check_v1_fields(&entry, &fields)?;
    }
    if fields.validity_type != VALIDITY_EOL {
        return Err(RecordError::UnsupportedValidityType {
            validity_type: fields.validity_type,
        });
    }
    let validity = parse_validity(&fields.validity)?;
    if now > validity {
        return Err(RecordError::Expired {
            eol: String::from_utf8_lossy(&fields.validity).into_owned(),
        });
    }
    let value = String::from_utf8(fields.value).map_err(|_| RecordError::BadValue)?;
    Ok(Record {
        value,
        sequence: fields.sequence,
        validity,
        ttl: Duration::from_nanos(fields.ttl),
        raw: Bytes::copy_from_slice(bytes),
        public_key,
    })
}

/// The key to check the signature with: the record's own (which must hash to the name),
/// else the one inlined in an identity-multihash name.
fn record_key(name: &IpnsName, embedded: Option<&[u8]>) -> Result<PublicKey, RecordError> {
    match embedded.filter(|k| !k.is_empty()) {
        Some(pb) => {
            let key = PublicKey::from_protobuf(pb)?;
            let found = key.name();
            if &found != name {
                return Err(RecordError::KeyMismatch {
                    found: found.to_string(),
                });
            }
            Ok(key)
        }
        None if name.multihash().code() == IDENTITY_MH => {
            PublicKey::from_protobuf(name.multihash().digest())
        }
        None => Err(RecordError::NoKey),
    }
}

/// When V1 fields are present they must equal the signed data (absent = protobuf default).
fn check_v1_fields(entry: &IpnsEntry, d: &DataMap) -> Result<(), RecordError> {
    let mismatch = |field| Err(RecordError::V1Mismatch { field });
    if entry.value.as_deref().unwrap_or_default() != d.value.as_slice() {
        return mismatch("value");
    }
    if entry.validity.as_deref().unwrap_or_default() != d.validity.as_slice() {
        return mismatch("validity");
    }
    if u64::try_from(entry.validity_type.unwrap_or(0)).ok() != Some(d.validity_type) {
        return mismatch("validityType");
    }
    if entry.sequence.unwrap_or(0) != d.sequence {
        return mismatch("sequence");
    }
    if entry.ttl.unwrap_or(0) != d.ttl {
        return mismatch("ttl");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn validity_formats_like_go_rfc3339nano() {
        let t = parse_validity(b"2123-08-14T12:17:03.694052Z").unwrap();
        assert_eq!(format_validity(t).unwrap(), "2123-08-14T12:17:03.694052Z");
        let t = parse_validity(b"2126-01-31T15:56:12.714899293Z").unwrap();
        assert_eq!(
            format_validity(t).unwrap(),
            "2126-01-31T15:56:12.714899293Z"
        );
        let whole = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(format_validity(whole).unwrap(), "2023-11-14T22:13:20Z");
        // Offsets other than Z are valid RFC 3339.
        assert_eq!(parse_validity(b"2023-11-14T23:13:20+01:00").unwrap(), whole);
    }

    #[test]
    fn create_then_verify() {
        let key = Keypair::from_seed([3; 32]);
        let now = SystemTime::now();
        let bytes = create(
            &key,
            "/ipfs/bafkqaaa",
            7,
            now + DAY,
            Duration::from_secs(300),
        )
        .unwrap();
        let rec = verify(&key.name(), &bytes, now).unwrap();
        assert_eq!(rec.value, "/ipfs/bafkqaaa");
        assert_eq!(rec.sequence, 7);
        assert_eq!(rec.ttl, Duration::from_secs(300));
        assert_eq!(rec.public_key, key.public());
        // Kubo's shape: no pubKey for Ed25519, V1 fields present and agreeing.
        let entry = IpnsEntry::decode(&bytes[..]).unwrap();
        assert!(entry.pub_key.is_none());
        assert_eq!(entry.sequence, Some(7));
        assert_eq!(entry.validity_type, Some(0));
    }

    #[test]
    fn refusals_name_their_reason() {
        let key = Keypair::from_seed([4; 32]);
        let other = Keypair::from_seed([5; 32]);
        let now = SystemTime::now();
        let good = create(&key, "/ipfs/bafkqaaa", 1, now + DAY, DAY).unwrap();
        // Flip one byte of signatureV2.
        let mut entry = IpnsEntry::decode(&good[..]).unwrap();
        if let Some(sig) = entry.signature_v2.as_mut() {
            sig[0] ^= 1;
        }
        let bad_sig = entry.encode_to_vec();
        // Right signature, wrong V1 copy of the sequence.
        let mut entry = IpnsEntry::decode(&good[..]).unwrap();
        entry.sequence = Some(2);
        let v1_mismatch = entry.encode_to_vec();
        // A record whose embedded key is not the name's.
        let mut entry = IpnsEntry::decode(&good[..]).unwrap();
        entry.pub_key = Some(other.public().to_protobuf());
        let foreign_key = entry.encode_to_vec();
        let expired = create(&key, "/ipfs/bafkqaaa", 1, now - DAY, DAY).unwrap();
        let mut v1_only = IpnsEntry::decode(&good[..]).unwrap();
        v1_only.signature_v2 = None;
        v1_only.data = None;
        let (name, other_name, v1_only) = (key.name(), other.name(), v1_only.encode_to_vec());
        let cases: Vec<(&[u8], &IpnsName, &str)> = vec![
            (&bad_sig, &name, "bad-signature"),
            (&good, &other_name, "bad-signature"),
            (&v1_mismatch, &name, "v1-mismatch"),
            (&foreign_key, &name, "key-mismatch"),
            (&expired, &name, "expired"),
            (&v1_only, &name, "missing-field"),
            (&[0u8; MAX_RECORD_SIZE + 1], &name, "too-large"),
            (b"\xff\xff\xff\xff garbage", &name, "malformed"),
        ];
        for (bytes, name, want) in cases {
            let err = verify(name, bytes, now).unwrap_err();
            assert_eq!(err.kind(), want, "{err}");
        }
    }

    #[test]
    fn supersedes_orders_by_sequence_then_validity() {
        let key = Keypair::from_seed([6; 32]);
        let now = SystemTime::now();
        let rec = |seq, eol| {
            let b = create(&key, "/ipfs/bafkqaaa", seq, eol, DAY).unwrap();
            verify(&key.name(), &b, now).unwrap()
        };
        assert!(rec(2, now + DAY).supersedes(&rec(1, now + 2 * DAY)));
        assert!(rec(1, now + 2 * DAY).supersedes(&rec(1, now + DAY)));
        assert!(!rec(1, now + DAY).supersedes(&rec(2, now + DAY)));
    }
}
