//! The body of the `unixfs_decode` fuzz target (`fuzz/`), kept in the crate so the same
//! checks also run as a plain `#[test]` over the seed corpus on stable Rust.
//!
//! Input format: first byte picks the codec (even = dag-pb, 1 mod 4 = raw, else
//! dag-cbor), the rest is the block. Any input may be rejected; none may panic, and every
//! accepted node must satisfy the invariants asserted here.

use bytes::Bytes;

use super::{plan_read, validate_name, HamtLookup, Node, Step};
use crate::block::{codec, Block};

/// Decodes `input` as a block and exercises everything built on the decoded node.
/// Panics only if an invariant breaks (that is the bug the fuzzer looks for).
pub fn check(input: &[u8]) {
    let Some((&sel, body)) = input.split_first() else {
        return;
    };
    let (version, codec) = match sel % 4 {
        0 | 2 => (cid::Version::V0, codec::DAG_PB),
        1 => (cid::Version::V1, codec::RAW),
        _ => (cid::Version::V1, codec::DAG_CBOR),
    };
    let block = Block::encode(version, codec, Bytes::copy_from_slice(body));
    let decoded = Node::decode(block.cid(), body);
    assert_eq!(
        decoded,
        Node::from_block(&block),
        "decode and from_block agree"
    );
    let Ok(node) = decoded else {
        return;
    };
    match &node {
        Node::File(f) => {
            let sum = f.children.iter().map(|c| c.blocksize).sum::<u64>();
            assert_eq!(f.size, f.data.len() as u64 + sum);
            let seed = u64::from(sel);
            for (off, len) in [
                (0, u64::MAX),
                (seed, 1),
                (f.size / 2, seed + 7),
                (f.size, 1),
            ] {
                let plan = plan_read(f, off, len);
                assert!(plan.len <= len && plan.len <= f.size.saturating_sub(off));
                let mut covered = plan.inline.len() as u64;
                for c in &plan.children {
                    let child = &f.children[c.index];
                    assert!(c.len > 0 && c.offset + c.len <= child.blocksize);
                    assert!(c.dest + c.len <= plan.len);
                    covered += c.len;
                }
                assert_eq!(covered, plan.len, "plan covers the range exactly");
            }
        }
        Node::Directory(d) => {
            for e in &d.entries {
                assert!(validate_name(&e.name).is_ok());
            }
        }
        Node::HamtShard(s) => {
            let (entries, _) = s.listing();
            for e in &entries {
                assert!(validate_name(&e.name).is_ok());
                let mut lookup = HamtLookup::new(&e.name).expect("listed names are valid");
                if let Step::Found(found) = lookup.step(s).expect("one step never runs out of bits")
                {
                    assert_eq!(found.name, e.name);
                }
            }
            if let Ok(mut lookup) =
                HamtLookup::new(&String::from_utf8_lossy(&body[..body.len().min(16)]))
            {
                let _ = lookup.step(s);
            }
        }
        Node::Symlink(_) => {}
    }
}

#[cfg(test)]
mod tests {
    /// The fuzz target's checks over the seed corpus plus cheap mutations of it
    /// (truncations and single-byte flips), runnable on stable without libFuzzer.
    #[test]
    fn corpus_smoke() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/unixfs_decode");
        let mut seeds = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let input = std::fs::read(entry.unwrap().path()).unwrap();
            seeds += 1;
            super::check(&input);
            for cut in (0..input.len()).step_by(input.len() / 64 + 1) {
                super::check(&input[..cut]);
            }
            for i in (1..input.len()).step_by(input.len() / 128 + 1) {
                let mut m = input.clone();
                m[i] ^= 0x5a;
                super::check(&m);
                m[0] = m[0].wrapping_add(1);
                super::check(&m);
            }
        }
        assert!(seeds >= 10, "seed corpus missing ({seeds} files)");
    }
}
