//! The DAG-CBOR map inside an IPNS record's `data` field (SPECS.md §7.1): a strict encoder
//! that writes exactly what Kubo and JS `ipns` write (keys length-first: `TTL`, `Value`,
//! `Sequence`, `Validity`, `ValidityType`; minimal integer heads), and a decoder that
//! accepts any well-formed DAG-CBOR map holding those five keys with the right types,
//! skipping extra keys. DAG-CBOR rules enforced: definite lengths only, minimal integer
//! encoding, text keys, no duplicate keys, only tag 42, only 64-bit floats, UTF-8 text,
//! no trailing bytes. Nesting is capped at [`MAX_DEPTH`].

/// Deepest nesting of arrays/maps accepted inside extra keys.
pub const MAX_DEPTH: usize = 32;

/// The signed fields of a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataMap {
    /// Content path, as bytes.
    pub value: Vec<u8>,
    /// RFC 3339 expiry, as bytes.
    pub validity: Vec<u8>,
    /// 0 = EOL.
    pub validity_type: u64,
    /// Version counter.
    pub sequence: u64,
    /// Cache time, nanoseconds.
    pub ttl: u64,
}

/// Encodes the map in DAG-CBOR canonical order.
pub fn encode(d: &DataMap) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + d.value.len() + d.validity.len());
    head(&mut out, 5, 5);
    text(&mut out, "TTL");
    head(&mut out, 0, d.ttl);
    text(&mut out, "Value");
    head(&mut out, 2, d.value.len() as u64);
    out.extend_from_slice(&d.value);
    text(&mut out, "Sequence");
    head(&mut out, 0, d.sequence);
    text(&mut out, "Validity");
    head(&mut out, 2, d.validity.len() as u64);
    out.extend_from_slice(&d.validity);
    text(&mut out, "ValidityType");
    head(&mut out, 0, d.validity_type);
    out
}

fn text(out: &mut Vec<u8>, s: &str) {
    head(out, 3, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A CBOR head with the shortest argument encoding.
fn head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    if arg < 24 {
        out.push(m | arg as u8);
    } else if arg <= u8::MAX as u64 {
        out.extend_from_slice(&[m | 24, arg as u8]);
    } else if arg <= u16::MAX as u64 {
        out.push(m | 25);
        out.extend_from_slice(&(arg as u16).to_be_bytes());
    } else if arg <= u32::MAX as u64 {
        out.push(m | 26);
        out.extend_from_slice(&(arg as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&arg.to_be_bytes());
    }
}

/// Decodes the `data` map; the error says what is wrong and where.
pub fn decode(bytes: &[u8]) -> Result<DataMap, String> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let (major, count) = r.head()?;
    if major != 5 {
        return Err(format!("data is CBOR major type {major}, not a map"));
    }
    let mut value = None;
    let mut validity = None;
    let mut validity_type = None;
    let mut sequence = None;
    let mut ttl = None;
    let mut seen: Vec<&[u8]> = Vec::new();
    for _ in 0..count {
        let key = r.text()?;
        if seen.contains(&key) {
            return Err(format!("duplicate key {:?}", String::from_utf8_lossy(key)));
        }
        seen.push(key);
        match key {
            b"Value" => value = Some(r.bytes()?.to_vec()),
            b"Validity" => validity = Some(r.bytes()?.to_vec()),
            b"ValidityType" => validity_type = Some(r.uint("ValidityType")?),
            b"Sequence" => sequence = Some(r.uint("Sequence")?),
            b"TTL" => ttl = Some(r.uint("TTL")?),
            _ => r.skip(0)?,
        }
    }
    if r.pos != bytes.len() {
        return Err(format!(
            "{} trailing bytes after the map",
            bytes.len() - r.pos
        ));
    }
    let missing = |k: &str| format!("data has no {k:?} key");
    Ok(DataMap {
        value: value.ok_or_else(|| missing("Value"))?,
        validity: validity.ok_or_else(|| missing("Validity"))?,
        validity_type: validity_type.ok_or_else(|| missing("ValidityType"))?,
        sequence: sequence.ok_or_else(|| missing("Sequence"))?,
        ttl: ttl.ok_or_else(|| missing("TTL"))?,
    })
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64) -> Result<&'a [u8], String> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| format!("truncated at byte {}", self.pos))?;
        let s = self.buf.get(self.pos..end).ok_or("truncated")?;
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?.first().copied().unwrap_or_default())
    }

    /// Reads a head: (major type, argument), refusing non-minimal and indefinite forms.
    /// For major type 7 the argument is the raw additional-info value (floats are skipped
    /// by the caller).
    fn head(&mut self) -> Result<(u8, u64), String> {
        let at = self.pos;
        let b = self.byte()?;
        let major = b >> 5;
        let info = b & 0x1f;
        if major == 7 {
            return Ok((7, u64::from(info)));
        }
        let arg = match info {
            0..=23 => u64::from(info),
            24 => u64::from(self.byte()?),
            25 => u64::from(u16::from_be_bytes(self.array()?)),
            26 => u64::from(u32::from_be_bytes(self.array()?)),
            27 => u64::from_be_bytes(self.array()?),
            31 => return Err(format!("indefinite length at byte {at} (not DAG-CBOR)")),
            _ => return Err(format!("reserved additional info {info} at byte {at}")),
        };
        let minimal = match info {
            24 => arg >= 24,
            25 => arg > u8::MAX as u64,
            26 => arg > u16::MAX as u64,
            27 => arg > u32::MAX as u64,
            _ => true,
        };
        if !minimal {
            return Err(format!("non-minimal integer encoding at byte {at}"));
        }
        Ok((major, arg))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        self.take(N as u64)?
            .try_into()
            .map_err(|_| "truncated".to_string())
    }

    fn text(&mut self) -> Result<&'a [u8], String> {
        let at = self.pos;
        match self.head()? {
            (3, len) => {
                let s = self.take(len)?;
                std::str::from_utf8(s).map_err(|_| format!("invalid UTF-8 at byte {at}"))?;
                Ok(s)
            }
            (major, _) => Err(format!(
                "map key at byte {at} is major type {major}, not text"
            )),
        }
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let at = self.pos;
        match self.head()? {
            (2, len) => self.take(len),
            (major, _) => Err(format!(
                "value at byte {at} is major type {major}, not bytes"
            )),
        }
    }

    fn uint(&mut self, key: &str) -> Result<u64, String> {
        match self.head()? {
            (0, n) => Ok(n),
            (1, _) => Err(format!("{key} is negative")),
            (major, _) => Err(format!(
                "{key} is major type {major}, not an unsigned integer"
            )),
        }
    }

    /// Skips one well-formed DAG-CBOR item.
    fn skip(&mut self, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH}"));
        }
        let at = self.pos;
        match self.head()? {
            (0 | 1, _) => Ok(()),
            (2, len) => self.take(len).map(drop),
            (3, len) => {
                let s = self.take(len)?;
                std::str::from_utf8(s)
                    .map(drop)
                    .map_err(|_| format!("invalid UTF-8 at byte {at}"))
            }
            (4, n) => (0..n).try_for_each(|_| self.skip(depth + 1)),
            (5, n) => {
                let mut keys: Vec<&[u8]> = Vec::new();
                for _ in 0..n {
                    let k = self.text()?;
                    if keys.contains(&k) {
                        return Err(format!("duplicate key in nested map at byte {at}"));
                    }
                    keys.push(k);
                    self.skip(depth + 1)?;
                }
                Ok(())
            }
            (6, 42) => match self.head()? {
                (2, len) => self.take(len).map(drop),
                _ => Err(format!("tag 42 at byte {at} does not wrap bytes")),
            },
            (6, tag) => Err(format!("tag {tag} at byte {at} (DAG-CBOR allows only 42)")),
            (7, 20..=22) => Ok(()),
            (7, 27) => self.take(8).map(drop),
            (7, info) => Err(format!(
                "simple/float with additional info {info} at byte {at} (not DAG-CBOR)"
            )),
            (major, _) => Err(format!("major type {major} at byte {at}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DataMap {
        DataMap {
            value: b"/ipfs/bafkqaddwgevxmmraojswg33smq".to_vec(),
            validity: b"2123-08-14T12:17:03.694052Z".to_vec(),
            validity_type: 0,
            sequence: 0,
            ttl: 1_800_000_000_000,
        }
    }

    #[test]
    fn encodes_the_fixture_bytes() {
        // The `data` field of conformance record B1 (SPECS.md §7.5), byte for byte.
        let want = hex::decode(concat!(
            "a56354544c1b000001a3185c50006556616c756558212f697066732f6261666b7161",
            "646477676576786d6d72616f6a737767333373",
            "6d716853657175656e6365006856616c69646974795",
            "81b323132332d30382d31345431323a31373a30332e3639343035325a",
            "6c56616c69646974795479706500"
        ))
        .unwrap();
        assert_eq!(encode(&sample()), want);
        assert_eq!(decode(&want).unwrap(), sample());
    }

    #[test]
    fn integer_boundaries_round_trip() {
        for n in [0, 23, 24, 255, 256, 65535, 65536, u32::MAX as u64, u64::MAX] {
            let d = DataMap {
                sequence: n,
                ttl: n,
                ..sample()
            };
            assert_eq!(decode(&encode(&d)).unwrap(), d, "{n}");
        }
    }

    #[test]
    fn extra_keys_are_skipped_in_any_order() {
        let mut m = Vec::new();
        head(&mut m, 5, 6);
        text(&mut m, "_x");
        // [1, -2, "s", h'00', {"k": null}, 42(h'0001'), 1.5]
        head(&mut m, 4, 7);
        m.extend_from_slice(&[0x01, 0x21, 0x61, b's', 0x41, 0x00]);
        m.extend_from_slice(&[0xa1, 0x61, b'k', 0xf6]);
        m.extend_from_slice(&[0xd8, 42, 0x42, 0x00, 0x01]);
        m.push(0xfb);
        m.extend_from_slice(&1.5f64.to_be_bytes());
        text(&mut m, "ValidityType");
        head(&mut m, 0, 0);
        text(&mut m, "Value");
        head(&mut m, 2, 2);
        m.extend_from_slice(b"/x");
        text(&mut m, "Sequence");
        head(&mut m, 0, 9);
        text(&mut m, "TTL");
        head(&mut m, 0, 1);
        text(&mut m, "Validity");
        head(&mut m, 2, 1);
        m.push(b'v');
        let d = decode(&m).unwrap();
        assert_eq!((d.sequence, d.ttl, d.value.as_slice()), (9, 1, &b"/x"[..]));
    }

    #[test]
    fn refuses_malformed_maps() {
        let good = encode(&sample());
        let mut trailing = good.clone();
        trailing.push(0);
        let mut nonminimal = good.clone();
        // TTL 0x1b <8 bytes> → a 0x18-prefixed small value would be non-minimal.
        nonminimal.splice(5..14, [0x18, 0x05]);
        let mut negative_ttl = good.clone();
        negative_ttl.splice(5..14, [0x20]);
        let mut dup = Vec::new();
        head(&mut dup, 5, 2);
        text(&mut dup, "TTL");
        head(&mut dup, 0, 1);
        text(&mut dup, "TTL");
        head(&mut dup, 0, 1);
        let mut deep = vec![0xa1, 0x62, b'_', b'd'];
        deep.extend(std::iter::repeat_n(0x81, 100));
        deep.push(0);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("array", vec![0x80]),
            ("indefinite map", vec![0xbf, 0xff]),
            ("truncated", good.get(..good.len() - 3).unwrap().to_vec()),
            ("trailing", trailing),
            ("non-minimal", nonminimal),
            ("negative ttl", negative_ttl),
            ("duplicate", dup),
            ("too deep", deep),
            ("missing keys", vec![0xa0]),
            (
                "huge length",
                vec![0xa1, 0x7b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            ),
        ];
        for (what, bytes) in cases {
            assert!(decode(&bytes).is_err(), "{what} decoded");
        }
    }
}
