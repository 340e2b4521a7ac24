//! Unit tests of HAMT shards: header and link-name checks, and lookups stepping through
//! sub-shards within the bounds of the hash.

use super::*;

#[test]
fn hamt_header_checks() {
    for fanout in [
        None,
        Some(0),
        Some(4),
        Some(12),
        Some(24),
        Some(2048),
        Some(1 << 40),
    ] {
        let e = decode(&pb(&[], &shard_data(fanout, Some(0x22)))).unwrap_err();
        assert!(
            matches!(e, UnixfsError::BadFanout { .. }),
            "{fanout:?}: {e}"
        );
    }
    for ht in [None, Some(0x12), Some(0)] {
        let e = decode(&pb(&[], &shard_data(Some(256), ht))).unwrap_err();
        assert!(matches!(e, UnixfsError::BadHashType { .. }), "{e}");
    }
    let mut d = shard_data(Some(8), Some(0x22));
    d.data = Some(vec![0xff, 0xff].into());
    let e = decode(&pb(&[], &d)).unwrap_err();
    assert!(
        matches!(e, UnixfsError::BadBitfield { len: 2, max: 1, .. }),
        "{e}"
    );
    for fanout in [8, 16, 256, 1024] {
        assert!(decode(&pb(&[], &shard_data(Some(fanout), Some(0x22)))).is_ok());
    }
}

#[test]
fn hamt_link_names_are_checked() {
    let x = raw(b"x");
    // fanout 8 → 1 hex digit, indexes 0..=7: "9" is an impossible bucket.
    for bad in ["9name", "9", "", "aname", "Zname"] {
        let e = decode(&pb(&[link(&x, bad)], &shard_data(Some(8), Some(0x22)))).unwrap_err();
        assert!(
            matches!(e, UnixfsError::BadShardLinkName { .. }),
            "{bad:?}: {e}"
        );
    }
    // fanout 256 → 2 digits; a lowercase prefix is not what boxo writes.
    for bad in ["0", "ffname", "G0name"] {
        let e = decode(&pb(&[link(&x, bad)], &shard_data(Some(256), Some(0x22)))).unwrap_err();
        assert!(
            matches!(e, UnixfsError::BadShardLinkName { .. }),
            "{bad:?}: {e}"
        );
    }
    let links = [
        link(&x, "7"),
        link(&x, "3ok"),
        link(&x, "3.."),
        link(&x, "3ok"),
    ];
    let Node::HamtShard(s) = decode(&pb(&links, &shard_data(Some(8), Some(0x22)))).unwrap() else {
        panic!()
    };
    let (entries, shards) = s.listing();
    assert_eq!(shards, [x]);
    assert_eq!(entries.len(), 1);
    assert_eq!(s.hidden.len(), 2);
}

/// Bucket of `name` at `level` for fanout 256.
fn bucket(name: &str, level: u32) -> u8 {
    (murmur3_x64_64(name.as_bytes()) >> (56 - 8 * level)) as u8
}

fn shard(links: &[PbLink]) -> Block {
    pb(links, &shard_data(Some(256), Some(0x22)))
}

#[test]
fn hamt_lookup_steps_through_sub_shards() {
    // Two names colliding at level 0 live in a sub-shard keyed by their level-1 bytes.
    let a = "n0".to_owned();
    let b = (1..)
        .map(|i| format!("n{i}"))
        .find(|n| bucket(n, 0) == bucket(&a, 0) && bucket(n, 1) != bucket(&a, 1))
        .unwrap();
    let (fa, fb) = (raw(b"a"), raw(b"b"));
    let sub = shard(&[
        link(&fa, &format!("{:02X}{a}", bucket(&a, 1))),
        link(&fb, &format!("{:02X}{b}", bucket(&b, 1))),
    ]);
    let root = shard(&[link(sub.cid(), &format!("{:02X}", bucket(&a, 0)))]);
    let Node::HamtShard(root_node) = decode(&root).unwrap() else {
        panic!()
    };
    let Node::HamtShard(sub_node) = decode(&sub).unwrap() else {
        panic!()
    };
    for (name, want) in [(&a, fa), (&b, fb)] {
        let mut l = HamtLookup::new(name).unwrap();
        assert_eq!(l.step(&root_node).unwrap(), Step::NeedBlock(*sub.cid()));
        match l.step(&sub_node).unwrap() {
            Step::Found(e) => assert_eq!((e.name.as_str(), e.cid), (name.as_str(), want)),
            other => panic!("{other:?}"),
        }
    }
    // A name in an empty bucket, and a name in a bucket holding another name.
    let absent = (1..)
        .map(|i| format!("m{i}"))
        .find(|n| bucket(n, 0) != bucket(&a, 0))
        .unwrap();
    assert_eq!(
        HamtLookup::new(&absent).unwrap().step(&root_node).unwrap(),
        Step::Missing
    );
    let near = (1..)
        .map(|i| format!("z{i}"))
        .find(|n| bucket(n, 0) == bucket(&a, 0) && bucket(n, 1) == bucket(&a, 1))
        .unwrap();
    let mut l = HamtLookup::new(&near).unwrap();
    l.step(&root_node).unwrap();
    assert_eq!(l.step(&sub_node).unwrap(), Step::Missing);
    assert!(HamtLookup::new("a/b").is_err());
}

#[test]
fn hamt_lookup_is_bounded_by_hash_bits() {
    // A chain of 9 sub-shards along one name's hash path: fanout 256 has 8 levels of
    // 64 bits, so the 9th step must fail instead of following the chain.
    let name = "deep.txt";
    let h = murmur3_x64_64(name.as_bytes()).to_be_bytes();
    let mut nodes = Vec::new();
    let mut below = shard(&[]);
    for level in (0..9).rev() {
        let idx = h.get(level).copied().unwrap_or(0);
        nodes.push(below.clone());
        below = shard(&[link(below.cid(), &format!("{idx:02X}"))]);
    }
    nodes.push(below);
    nodes.reverse();
    let mut l = HamtLookup::new(name).unwrap();
    for (i, n) in nodes.iter().enumerate() {
        let Node::HamtShard(s) = decode(n).unwrap() else {
            panic!()
        };
        match l.step(&s) {
            Ok(Step::NeedBlock(_)) => assert!(i < 8),
            Err(UnixfsError::HamtTooDeep { .. }) => {
                assert_eq!(i, 8);
                return;
            }
            other => panic!("level {i}: {other:?}"),
        }
    }
    panic!("never hit the depth bound");
}
