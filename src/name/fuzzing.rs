//! The bodies of the `ipns_record` and `dnslink_txt` fuzz targets (`fuzz/`), kept in the
//! crate so the same checks also run as plain `#[test]`s over the seed corpora on stable Rust.
//!
//! The input is a serialized record. It is verified under the name its own embedded key
//! gives (else a fixed Ed25519 name) at the Unix epoch, so expiry never stops it early; its
//! `data` field and the whole input are also fed to the DAG-CBOR decoder, and the input's
//! text (if any) to the name parser. Nothing may panic, and an accepted record must
//! re-verify to the same value.

use std::time::SystemTime;

use prost::Message;

use super::pb::IpnsEntry;
use super::{cbor, verify, IpnsName, PublicKey};

/// A fixed Ed25519 name for inputs that carry no key.
const FALLBACK: &str = "k51qzi5uqu5dk3v4rmjber23h16xnr23bsggmqqil9z2gduiis5se8dht36dam";

/// Runs every decoder on `input`; panics only if an invariant breaks.
pub fn check(input: &[u8]) {
    let _ = cbor::decode(input);
    if let Ok(text) = std::str::from_utf8(input) {
        if let Ok(name) = text.parse::<IpnsName>() {
            assert_eq!(name.to_string().parse::<IpnsName>().ok(), Some(name));
        }
    }
    let entry = IpnsEntry::decode(input).ok();
    if let Some(data) = entry.as_ref().and_then(|e| e.data.as_deref()) {
        if let Ok(map) = cbor::decode(data) {
            assert_eq!(cbor::decode(&cbor::encode(&map)).ok(), Some(map));
        }
    }
    let name = entry
        .as_ref()
        .and_then(|e| e.pub_key.as_deref())
        .and_then(|k| PublicKey::from_protobuf(k).ok())
        .map(|k| k.name())
        .or_else(|| FALLBACK.parse().ok());
    let Some(name) = name else { return };
    if let Ok(rec) = verify(&name, input, SystemTime::UNIX_EPOCH) {
        let again = verify(&name, &rec.raw, SystemTime::UNIX_EPOCH).ok();
        assert_eq!(again.map(|r| r.value), Some(rec.value));
    }
}

/// The `dnslink_txt` target: the input's first line is a domain and the other lines are the
/// TXT strings a DNS server answered for `_dnslink.<domain>` (any bytes, as a hostile server
/// may send). The domain check, the choice of the one `dnslink=` value and the parse of that
/// value as a root must not panic; a value picked is one of the namespaces, and a root parsed
/// from it prints back to itself.
pub fn check_dnslink(input: &[u8]) {
    use super::dnslink::{check_domain, pick};
    use super::root::RootSpec;
    let text = String::from_utf8_lossy(input);
    let mut lines = text.split('\n');
    let domain = lines.next().unwrap_or_default();
    let txt: Vec<String> = lines.map(str::to_owned).collect();
    let _ = check_domain(domain);
    for line in std::iter::once(domain).chain(txt.iter().map(String::as_str)) {
        if let Ok(spec) = line.parse::<RootSpec>() {
            assert_eq!(spec.to_string().parse::<RootSpec>().ok(), Some(spec));
        }
    }
    if let Ok(value) = pick(domain, &txt) {
        assert!(value.starts_with("/ipfs/") || value.starts_with("/ipns/"));
        if let Ok(spec) = value.parse::<RootSpec>() {
            assert_eq!(spec.to_string().parse::<RootSpec>().ok(), Some(spec));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dnslink_seed_corpus_passes_the_fuzz_checks() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/dnslink_txt");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            super::check_dnslink(&std::fs::read(entry.unwrap().path()).unwrap());
            n += 1;
        }
        assert!(n >= 8, "seed corpus has {n} files");
    }

    /// The seed corpus runs through the fuzz body on every `cargo test`.
    #[test]
    fn seed_corpus_passes_the_fuzz_checks() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/ipns_record");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            super::check(&std::fs::read(entry.unwrap().path()).unwrap());
            n += 1;
        }
        assert!(n >= 10, "seed corpus has {n} files");
    }
}
