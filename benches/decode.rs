//! Decode throughput of the read side's hot blocks, with SHA-256 over the same bytes as
//! the baseline (every fetched block is hashed once anyway): a 174-link internal file node,
//! a 256 KiB dag-pb leaf and raw leaf, and `plan_read` through a 2-level balanced DAG.

use std::collections::HashMap;
use std::hint::black_box;

use bytes::Bytes;
use cid::Cid;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use distfs::block::{codec, Block};
use distfs::unixfs::pb::{encode_pb_node, Data, DataType, PbLink};
use distfs::unixfs::{plan_read, FileNode, Node};
use prost::Message;
use sha2::{Digest, Sha256};

const CHUNK: u64 = 262_144;
const WIDTH: usize = 174;

fn leaf_block(seed: u8) -> Block {
    let data: Vec<u8> = (0..CHUNK as usize).map(|i| (i as u8) ^ seed).collect();
    let d = Data {
        r#type: DataType::File as i32,
        data: Some(data.into()),
        filesize: Some(CHUNK),
        ..Default::default()
    };
    Block::encode(
        cid::Version::V0,
        codec::DAG_PB,
        encode_pb_node(&[], Some(&d.encode_to_vec())).into(),
    )
}

fn internal_block(children: &[(Cid, u64)]) -> Block {
    let links: Vec<PbLink> = children
        .iter()
        .map(|(c, s)| PbLink {
            hash: Some(c.to_bytes()),
            name: Some(String::new()),
            tsize: Some(*s + 14),
        })
        .collect();
    let d = Data {
        r#type: DataType::File as i32,
        filesize: Some(children.iter().map(|c| c.1).sum()),
        blocksizes: children.iter().map(|c| c.1).collect(),
        ..Default::default()
    };
    Block::encode(
        cid::Version::V0,
        codec::DAG_PB,
        encode_pb_node(&links, Some(&d.encode_to_vec())).into(),
    )
}

fn file(b: &Block) -> FileNode {
    match Node::from_block(b).unwrap() {
        Node::File(f) => f,
        _ => unreachable!(),
    }
}

fn benches(c: &mut Criterion) {
    let leaf = leaf_block(1);
    let raw_leaf = Block::encode(
        cid::Version::V1,
        codec::RAW,
        Bytes::from(vec![7u8; CHUNK as usize]),
    );
    // Distinct fake child CIDs (decoding never fetches them).
    let kids: Vec<(Cid, u64)> = (0..WIDTH)
        .map(|i| {
            let b = Block::encode(
                cid::Version::V0,
                codec::DAG_PB,
                Bytes::from(vec![i as u8; 4]),
            );
            (*b.cid(), CHUNK)
        })
        .collect();
    let node = internal_block(&kids);

    let mut g = c.benchmark_group("decode");
    for (name, block) in [
        ("internal_174", &node),
        ("leaf_256k_dag_pb", &leaf),
        ("leaf_256k_raw", &raw_leaf),
    ] {
        g.throughput(Throughput::Bytes(block.data().len() as u64));
        g.bench_function(format!("{name}/unixfs"), |b| {
            b.iter(|| Node::from_block(black_box(block)).unwrap())
        });
        g.bench_function(format!("{name}/sha256_baseline"), |b| {
            b.iter(|| Sha256::digest(black_box(block.data())))
        });
    }
    g.finish();

    // 2-level DAG: a root over 174 level-1 nodes of 174 leaves each (7.4 GiB of file);
    // plan a 1 MiB read at a position that straddles two level-1 nodes.
    let level1: Vec<(Cid, u64)> = kids
        .iter()
        .map(|_| (*node.cid(), CHUNK * WIDTH as u64))
        .collect();
    let root = file(&internal_block(&level1));
    let mid = file(&node);
    let nodes: HashMap<Cid, FileNode> = [(*node.cid(), mid)].into();
    let offset = CHUNK * WIDTH as u64 * 3 - 300_000;
    let mut g = c.benchmark_group("plan_read");
    g.bench_function("two_level_1MiB", |b| {
        b.iter(|| {
            let plan = plan_read(black_box(&root), offset, 1 << 20);
            let mut leaves = 0;
            for child in &plan.children {
                leaves += plan_read(&nodes[&child.cid], child.offset, child.len)
                    .children
                    .len();
            }
            assert_eq!(leaves, 5);
            leaves
        })
    });
    g.finish();
}

criterion_group!(decode, benches);
criterion_main!(decode);
