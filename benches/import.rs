//! Import throughput on 64 MiB of pseudo-random bytes into a null sink, with the fixed-size
//! and buzhash chunkers, next to plain SHA-256 over the same bytes (the floor: every byte
//! is hashed at least once). Run: `cargo bench --bench import`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sha2::{Digest, Sha256};

use distfs::import::{import_file, ChunkerSpec, ImportOptions, Metadata, NullSink, Profile};

const SIZE: usize = 64 * 1024 * 1024;

fn data() -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut out = Vec::with_capacity(SIZE);
    while out.len() < SIZE {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(SIZE);
    out
}

fn bench(c: &mut Criterion) {
    let input = data();
    let mut g = c.benchmark_group("import_64MiB");
    g.throughput(Throughput::Bytes(SIZE as u64));
    g.sample_size(10);
    g.bench_function("sha256_baseline", |b| {
        b.iter(|| Sha256::digest(&input));
    });
    let cases = [
        ("fixed_256KiB_dagpb", Profile::UnixfsV0_2015.options()),
        (
            "fixed_256KiB_raw",
            ImportOptions {
                raw_leaves: true,
                ..Profile::UnixfsV0_2015.options()
            },
        ),
        (
            "buzhash_dagpb",
            ImportOptions {
                chunker: ChunkerSpec::Buzhash,
                ..Profile::UnixfsV0_2015.options()
            },
        ),
    ];
    for (name, opts) in cases {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut sink = NullSink::default();
                import_file(&input[..], &opts, &Metadata::default(), &mut sink)
                    .expect("import of in-memory bytes cannot fail")
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
