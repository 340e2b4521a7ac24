//! MurmurHash3 x64_128 (seed 0), the HAMT hash of UnixFS sharded directories.
//!
//! boxo hashes each entry name with spaolacci/murmur3 and keeps the first 64-bit half (`h1`)
//! serialized big-endian (SPECS.md §3.6). Written from the public-domain algorithm
//! description; checked against a vector from SPECS.md. The read side (`unixfs`) carries its
//! own copy for now; the two are to be merged.

const C1: u64 = 0x87c3_7b91_1142_53d5;
const C2: u64 = 0x4cf5_ad43_2745_937f;

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// The two 64-bit halves of MurmurHash3_x64_128 of `data` with seed 0.
pub fn murmur3_x64_128(data: &[u8]) -> (u64, u64) {
    let (mut h1, mut h2) = (0u64, 0u64);
    let mut blocks = data.chunks_exact(16);
    for block in blocks.by_ref() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&block[..8]);
        let k1 = u64::from_le_bytes(w);
        w.copy_from_slice(&block[8..]);
        let k2 = u64::from_le_bytes(w);
        h1 ^= k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        h2 ^= k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }
    let tail = blocks.remainder();
    let (mut k1, mut k2) = (0u64, 0u64);
    for (i, b) in tail.iter().enumerate() {
        if i < 8 {
            k1 |= u64::from(*b) << (8 * i);
        } else {
            k2 |= u64::from(*b) << (8 * (i - 8));
        }
    }
    if tail.len() > 8 {
        h2 ^= k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
    }
    if !tail.is_empty() {
        h1 ^= k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
    }
    let len = data.len() as u64;
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix64(h1);
    h2 = fmix64(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    (h1, h2)
}

/// The HAMT hash of a name: `h1` as 8 big-endian bytes (what boxo's `hash.Sum(nil)` gives).
pub fn hamt_hash(name: &[u8]) -> [u8; 8] {
    murmur3_x64_128(name).0.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_boxo_bucket_vector() {
        // SPECS.md §3.6: murmur3("470.txt") h1 = 006e88df5847e67c.
        assert_eq!(hex::encode(hamt_hash(b"470.txt")), "006e88df5847e67c");
    }

    #[test]
    fn empty_input_is_zero() {
        // MurmurHash3 with seed 0 over no bytes is all zeros (fmix64(0) = 0).
        assert_eq!(murmur3_x64_128(b""), (0, 0));
    }

    #[test]
    fn reference_vector_hello() {
        // Widely published x64_128 seed-0 digest of "hello":
        // cbd8a7b341bd9b02 5b1e906a48ae1d19 (h1, h2 as printed by the reference C code).
        let (h1, h2) = murmur3_x64_128(b"hello");
        assert_eq!(
            format!("{h1:016x}{h2:016x}"),
            "cbd8a7b341bd9b025b1e906a48ae1d19"
        );
    }
}
