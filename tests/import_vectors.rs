//! Byte-exact importer vectors: the IPIP-0499 profile vectors (SPECS.md §4.2, generated
//! with Kubo's ChaCha20 data generator), the trickle 45 MiB vector, SPECS.md §4.1 CIDs,
//! Kubo sharness outputs (`test/sharness/t0040-add-and-cat.sh`), the CAR/store sinks, and a
//! streaming-memory check on a 200 MiB input.

use std::io::{self, Read};
use std::path::Path;

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;
use cid::Cid;
use sha2::{Digest, Sha256};

use distfs::car::CarReader;
use distfs::import::{
    add_path, build_directory, import_file, AddFlags, AddedEntry, ChunkerSpec, DirEntry,
    ImportOptions, Layout, Metadata, NullSink, Profile,
};

// ---------------------------------------------------------------------------------------
// Kubo's deterministic data (kubo test/cli/testutils/random_deterministic.go): the ChaCha20
// keystream with key = sha256(seed), a 12-byte zero nonce, counter 0.

struct KuboRandom {
    cipher: ChaCha20,
    remaining: u64,
}

impl KuboRandom {
    fn new(size: u64, seed: &str) -> KuboRandom {
        let key: [u8; 32] = Sha256::digest(seed.as_bytes()).into();
        let nonce = [0u8; 12];
        KuboRandom {
            cipher: ChaCha20::new(&key.into(), &nonce.into()),
            remaining: size,
        }
    }
}

impl Read for KuboRandom {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let out = &mut buf[..n];
        out.fill(0);
        self.cipher.apply_keystream(out);
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn add_stream(size: u64, seed: &str, opts: &ImportOptions) -> String {
    let mut sink = NullSink::default();
    import_file(
        KuboRandom::new(size, seed),
        opts,
        &Metadata::default(),
        &mut sink,
    )
    .unwrap()
    .cid
    .to_string()
}

fn add_bytes(data: &[u8], opts: &ImportOptions) -> String {
    let mut sink = NullSink::default();
    import_file(data, opts, &Metadata::default(), &mut sink)
        .unwrap()
        .cid
        .to_string()
}

fn v0() -> ImportOptions {
    Profile::UnixfsV0_2015.options()
}

fn v1() -> ImportOptions {
    Profile::UnixfsV1_2025.options()
}

const MIB: u64 = 1024 * 1024;

// ---------------------------------------------------------------------------------------
// IPIP-0499 file vectors.

#[test]
fn v0_small() {
    assert_eq!(
        add_bytes(b"hello world", &v0()),
        "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD"
    );
}

#[test]
fn v0_exactly_one_chunk() {
    // A file of exactly one chunk is its leaf.
    assert_eq!(
        add_stream(262_144, "chunk-v0-seed", &v0()),
        "QmWmRj3dFDZdb6ABvbmKhEL6TmPbAfBZ1t5BxsEyJrcZhE"
    );
}

#[test]
fn v0_one_chunk_plus_one_byte() {
    // Two leaves under one root: the first internal node.
    assert_eq!(
        add_stream(262_145, "chunk-v0-seed", &v0()),
        "QmYyLxtzZyW22zpoVAtKANLRHpDjZtNeDjQdJrcQNWoRkJ"
    );
}

#[test]
fn v0_exactly_max_links() {
    // 174 chunks fill one internal node exactly.
    assert_eq!(
        add_stream(174 * 262_144, "v0-seed", &v0()),
        "QmUbBALi174SnogsUzLpYbD4xPiBSFANF4iztWCsHbMKh2"
    );
}

#[test]
fn v0_max_links_plus_one_byte() {
    // 175th chunk of one byte: depth grows to 2 with a 1-leaf subtree.
    assert_eq!(
        add_stream(174 * 262_144 + 1, "v0-seed", &v0()),
        "QmV81WL765sC8DXsRhE5fJv2rwhS4icHRaf3J9Zk5FdRnW"
    );
}

#[test]
fn v1_small() {
    // One raw leaf, CIDv1 raw.
    assert_eq!(
        add_bytes(b"hello world", &v1()),
        "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    );
}

#[test]
fn v1_exactly_one_chunk() {
    assert_eq!(
        add_stream(MIB, "chunk-v1-seed", &v1()),
        "bafkreiacndfy443ter6qr2tmbbdhadvxxheowwf75s6zehscklu6ezxmta"
    );
}

#[test]
fn v1_one_chunk_plus_one_byte() {
    assert_eq!(
        add_stream(MIB + 1, "chunk-v1-seed", &v1()),
        "bafybeigmix7t42i6jacydtquhet7srwvgpizfg7gjbq7627d35mjomtu64"
    );
}

#[test]
fn v1_exactly_max_links_1gib() {
    // 1024 × 1 MiB: one full 1024-link node. Streams 1 GiB.
    assert_eq!(
        add_stream(1024 * MIB, "v1-2025-seed", &v1()),
        "bafybeihmf37wcuvtx4hpu7he5zl5qaf2ineo2lqlfrapokkm5zzw7zyhvm"
    );
}

#[test]
fn v1_max_links_plus_one_byte_1gib() {
    assert_eq!(
        add_stream(1024 * MIB + 1, "v1-2025-seed", &v1()),
        "bafybeibdsi225ugbkmpbdohnxioyab6jsqrmkts3twhpvfnzp77xtzpyhe"
    );
}

#[test]
fn trickle_45mib() {
    // Kubo `--trickle`, CIDv0: 180 leaves, depth 1–2 (SPECS.md §4.2 extra vectors).
    let opts = ImportOptions {
        layout: Layout::Trickle,
        ..v0()
    };
    assert_eq!(
        add_stream(47_185_920, "trickle-test", &opts),
        "QmbqR6g7YCpndLcCZZXkGyj13uMcSrwDYUvZ47vJqBVjUH"
    );
}

#[test]
fn balanced_45mib_matches_specs_computation() {
    // Not published by Kubo (SPECS.md marks it UNVERIFIED): a cross-check that two
    // independent implementations agree, not proof of Kubo compatibility.
    assert_eq!(
        add_stream(47_185_920, "balanced-test", &v0()),
        "QmQW4ctrL1JEK8qfxwvJiEnETXsYURMKxZ2zuvTCHRrLUP"
    );
}

// ---------------------------------------------------------------------------------------
// IPIP-0499 directory vectors (kubo test/cli/add_test.go `createDeterministicFiles`):
// names drawn from one deterministic 1 MiB stream, each byte mapped into a 39-character
// alphabet; every file holds "x".

const ALPHABET_EASY: &[u8] = b"abcdefghijklmnopqrstuvwxyz01234567890-_";

fn names(count: usize, len: usize, last_len: usize, seed: &str) -> Vec<String> {
    let mut rng = KuboRandom::new(MIB, seed);
    (0..count)
        .map(|i| {
            let n = if i == count - 1 { last_len } else { len };
            let mut buf = vec![0u8; n];
            rng.read_exact(&mut buf).unwrap();
            buf.iter()
                .map(|b| char::from(ALPHABET_EASY[usize::from(*b) % ALPHABET_EASY.len()]))
                .collect()
        })
        .collect()
}

fn dir_of_x(names: Vec<String>, opts: &ImportOptions) -> (String, bool) {
    let mut sink = NullSink::default();
    let x = import_file(&b"x"[..], opts, &Metadata::default(), &mut sink).unwrap();
    let entries = names
        .into_iter()
        .map(|name| DirEntry {
            name,
            cid: x.cid,
            tsize: x.tsize,
        })
        .collect();
    let d = build_directory(entries, &Metadata::default(), opts, &mut sink).unwrap();
    (d.cid.to_string(), d.sharded)
}

#[test]
fn v0_dir_at_threshold_stays_basic() {
    // links estimate 4096 × (30 + 34) = 262144 = threshold: basic with `>`.
    let (cid, sharded) = dir_of_x(names(4096, 30, 30, "hamt-unixfs-v0-2015"), &v0());
    assert!(!sharded);
    assert_eq!(cid, "QmX5GtRk3TSSEHtdrykgqm4eqMEn3n2XhfkFAis5fjyZmN");
}

#[test]
fn v0_dir_over_threshold_is_hamt() {
    // 4033 × (31 + 34) = 262145 > threshold: HAMT.
    let (cid, sharded) = dir_of_x(names(4033, 31, 31, "hamt-unixfs-v0-2015"), &v0());
    assert!(sharded);
    assert_eq!(cid, "QmeMiJzmhpJAUgynAcxTQYek5PPKgdv3qEvFsdV3XpVnvP");
}

#[test]
fn v1_dir_at_threshold_stays_basic() {
    // block estimate 4765 × 55 + 65 + 4 = 262144 bytes: basic.
    let (cid, sharded) = dir_of_x(names(4766, 11, 21, "hamt-unixfs-v1-2025"), &v1());
    assert!(!sharded);
    assert_eq!(
        cid,
        "bafybeic3h7rwruealwxkacabdy45jivq2crwz6bufb5ljwupn36gicplx4"
    );
}

#[test]
fn v1_dir_over_threshold_is_hamt() {
    let (cid, sharded) = dir_of_x(names(4766, 11, 22, "hamt-unixfs-v1-2025"), &v1());
    assert!(sharded);
    assert_eq!(
        cid,
        "bafybeiegvuterwurhdtkikfhbxcldohmxp566vpjdofhzmnhv6o4freidu"
    );
}

#[test]
fn v0_hamt_vector_through_the_file_system() {
    // The same HAMT vector, but written to disk and added with the tree walker (real
    // read_dir order, real files), reporting the directory last.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hamt");
    std::fs::create_dir(&dir).unwrap();
    for name in names(4033, 31, 31, "hamt-unixfs-v0-2015") {
        std::fs::write(dir.join(name), b"x").unwrap();
    }
    let mut events = Vec::new();
    let root = add_path(&dir, &v0(), &mut NullSink::default(), &mut |e| {
        events.push(e.clone())
    })
    .unwrap();
    assert_eq!(
        root.to_string(),
        "QmeMiJzmhpJAUgynAcxTQYek5PPKgdv3qEvFsdV3XpVnvP"
    );
    assert_eq!(events.len(), 4034);
    assert_eq!(events.last().map(|e| e.path.as_str()), Some("hamt"));
}

// ---------------------------------------------------------------------------------------
// Well-known CIDs (SPECS.md §4.1).

#[test]
fn well_known_cids() {
    let v0_v1 = ImportOptions {
        cid_version: cid::Version::V1,
        ..v0()
    };
    let v1_raw = ImportOptions {
        cid_version: cid::Version::V1,
        raw_leaves: true,
        ..v0()
    };
    let cases: &[(&[u8], ImportOptions, &str)] = &[
        (
            b"hello world\n",
            v0(),
            "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
        ),
        (
            b"hello world\n",
            v0_v1,
            "bafybeicg2rebjoofv4kbyovkw7af3rpiitvnl6i7ckcywaq6xjcxnc2mby",
        ),
        (
            b"hello world\n",
            v1_raw,
            "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4",
        ),
        (
            b"hello\n",
            v0(),
            "QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN",
        ),
        (
            b"hello\n",
            v1(),
            "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am",
        ),
        (b"", v0(), "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"),
        (
            b"",
            v0_v1,
            "bafybeif7ztnhq65lumvvtr4ekcwd2ifwgm3awq4zfr3srh462rwyinlb4y",
        ),
        (
            b"",
            v1(),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
        ),
    ];
    for (data, opts, want) in cases {
        assert_eq!(
            &add_bytes(data, opts),
            want,
            "{:?}",
            String::from_utf8_lossy(data)
        );
    }
    let mut sink = NullSink::default();
    let empty = build_directory(vec![], &Metadata::default(), &v0(), &mut sink).unwrap();
    assert_eq!(
        empty.cid.to_string(),
        "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
    );
}

#[test]
fn buzhash_small_file_matches_kubo_sharness() {
    // t0040: `ipfs add --chunker buzhash hello.txt` ("Hello Worlds!\n") → QmVr26…, the same
    // as the default chunker because the file is below 128 KiB (the short-input path).
    let opts = ImportOptions {
        chunker: ChunkerSpec::Buzhash,
        ..v0()
    };
    assert_eq!(
        add_bytes(b"Hello Worlds!\n", &opts),
        "QmVr26fY1tKyspEJBniVhqxQeEjhF78XerGiqWAwraVLQH"
    );
}

#[test]
fn buzhash_kubo_issue_6953_data() {
    // kubo#6953: `yes "foo" | head -n 40000` (160000 bytes) with --chunker=buzhash. The
    // hashing path runs (data > 128 KiB) and finds no boundary, so the whole file is one
    // chunk: the issue's first leaf, QmcNJ4… (dag-pb) / bafkreigqq7… (raw). go-ipfs < 0.5
    // then appended an empty leaf (root QmX4kkx8…); Kubo since go-ipfs-chunker#22 does
    // not, so the file is that leaf itself.
    let data = "foo\n".repeat(40_000);
    let opts = ImportOptions {
        chunker: ChunkerSpec::Buzhash,
        ..v0()
    };
    let cid = add_bytes(data.as_bytes(), &opts);
    assert_eq!(cid, "QmcNJ4CKYGuya2ndNr9ymV7oQsT4S69SdwmTzaiW7c9vAC");
    assert_ne!(cid, "QmX4kkx8AWgy6GmF9zVtgPVta5GtpEJpPTtatexZ8xrwBs");
    let raw = ImportOptions {
        raw_leaves: true,
        ..opts
    };
    assert_eq!(
        add_bytes(data.as_bytes(), &raw),
        "bafkreigqq7maj23te3dkn4j76n7haab7lgmdz5fztubrdgsv44k4vyipsa"
    );
}

// ---------------------------------------------------------------------------------------
// Kubo sharness t0040 trees: CIDs and the order of `added` lines.

fn write_tree(root: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
}

fn added(path: &Path, flags: AddFlags) -> Vec<String> {
    let opts = flags.resolve().unwrap();
    let mut lines = Vec::new();
    add_path(
        path,
        &opts,
        &mut NullSink::default(),
        &mut |e: &AddedEntry| lines.push(format!("{} {}", e.cid, e.path)),
    )
    .unwrap();
    lines
}

#[test]
fn sharness_planets_with_four_option_sets() {
    let tmp = tempfile::tempdir().unwrap();
    write_tree(
        tmp.path(),
        &[
            ("planets/mars.txt", "Hello Mars!\n"),
            ("planets/venus.txt", "Hello Venus!\n"),
        ],
    );
    let p = tmp.path().join("planets");
    let cases = [
        (
            AddFlags::default(),
            [
                "QmPrrHqJzto9m7SyiRzarwkqPcCSsKR2EB1AyqJfe8L8tN",
                "QmU5kp3BH3B8tnWUU2Pikdb2maksBNkb92FHRr56hyghh4",
                "QmWSgS32xQEcXMeqd3YPJLrNBLSdsfYCep2U7CFkyrjXwY",
            ],
        ),
        (
            AddFlags {
                raw_leaves: Some(true),
                ..Default::default()
            },
            [
                "bafkreibmlvvgdyihetgocpof6xk64kjjzdeq2e4c7hqs3krdheosk4tgj4",
                "bafkreihfsphazrk2ilejpekyltjeh5k4yvwgjuwg26ueafohqioeo3sdca",
                "QmfWfQfKCY5Ukv9peBbxM5vqWM9BzmqUSXvdCgjT2wsiBT",
            ],
        ),
        (
            AddFlags {
                cid_version: Some(1),
                ..Default::default()
            },
            [
                "bafkreibmlvvgdyihetgocpof6xk64kjjzdeq2e4c7hqs3krdheosk4tgj4",
                "bafkreihfsphazrk2ilejpekyltjeh5k4yvwgjuwg26ueafohqioeo3sdca",
                "bafybeih7e5dmkyk25up5vxug4q3hrg2fxbzf23dfrac2fns5h7z4aa7ioi",
            ],
        ),
        (
            AddFlags {
                cid_version: Some(1),
                raw_leaves: Some(false),
                ..Default::default()
            },
            [
                "bafybeiawta2ntdmsy24aro35w3homzl4ak7svr3si7l7gesvq4erglyye4",
                "bafybeicvkvhs2fr75ynebtdjqpgm4g2fc63abqbmysupwpmcjl4gx7mzrm",
                "bafybeif5tuep5ap2d7zyhbktucey75aoacxufgt6i3v4gebmixyipnyp7y",
            ],
        ),
    ];
    for (flags, [mars, venus, planets]) in cases {
        assert_eq!(
            added(&p, flags),
            vec![
                format!("{mars} planets/mars.txt"),
                format!("{venus} planets/venus.txt"),
                format!("{planets} planets"),
            ]
        );
    }
}

#[test]
fn sharness_moons_order_is_files_then_dirs_post_order() {
    let tmp = tempfile::tempdir().unwrap();
    write_tree(
        tmp.path(),
        &[
            ("moons/jupiter/europa.txt", "Hello Europa!\n"),
            ("moons/saturn/titan.txt", "Hello Titan!\n"),
            ("moons/mercury.txt", "hey youre no moon!\n"),
        ],
    );
    assert_eq!(
        added(&tmp.path().join("moons"), AddFlags::default()),
        vec![
            "Qmbjg7zWdqdMaK2BucPncJQDxiALExph5k3NkQv5RHpccu moons/jupiter/europa.txt",
            "QmUJjVtnN8YEeYcS8VmUeWffTWhnMQAkk5DzZdKnPhqUdK moons/mercury.txt",
            "QmZzppb9WHn552rmRqpPfgU5FEiHH6gDwi3MrB9cTdPwdb moons/saturn/titan.txt",
            "QmS5mZddhFPLWFX3w6FzAy9QxyYkaxvUpsWCtZ3r7jub9J moons/jupiter",
            "QmaMagZT4rTE7Nonw8KGSK4oe1bh533yhZrCo1HihSG8FK moons/saturn",
            "QmVKvomp91nMih5j6hYBA8KjbiaYvEetU2Q7KvtZkLe9nQ moons",
        ]
    );
}

#[test]
fn sharness_trickle_and_current_dir() {
    let tmp = tempfile::tempdir().unwrap();
    write_tree(
        tmp.path(),
        &[
            ("hello.txt", "Hello Worlds!\n"),
            ("test_current_dir/hey", "Hey\n"),
            ("test_current_dir/hello/world", "World\n"),
        ],
    );
    let trickle = AddFlags {
        trickle: true,
        ..Default::default()
    };
    assert_eq!(
        added(&tmp.path().join("hello.txt"), trickle),
        vec!["QmUkUQgxXeggyaD5Ckv8ZqfW8wHBX6cYyeiyqvVZYzq5Bi hello.txt"]
    );
    // `ipfs add -r .` names the root after the directory: a path ending in `..` (no base
    // name of its own) is resolved the same way, without changing the working directory.
    let dotdot = tmp.path().join("test_current_dir").join("hello").join("..");
    assert_eq!(
        added(&dotdot, AddFlags::default()).last().unwrap(),
        "QmZQWnfcqJ6hNkkPvrY9Q5X39GP3jUnUbAV4AbmbbR3Cb1 test_current_dir"
    );
}

#[test]
fn symlink_tree_matches_gateway_fixture() {
    // gateway-conformance symlink.car: dir { bar -> "foo", foo = "content\n" }, CIDv0.
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("foo"), "content\n").unwrap();
    std::os::unix::fs::symlink("foo", d.join("bar")).unwrap();
    assert_eq!(
        added(&d, AddFlags::default()),
        vec![
            "QmTB8BaCJdCH5H3k7GrxJsxgDNmNYGGR71C58ERkivXoj5 d/bar",
            "Qme2y5HA5kvo2jAx13UsnV5bQJVijiAJCPvaW3JGQWhvJZ d/foo",
            "QmWvY6FaqFMS89YAQ9NAPjVP4WZKA1qbHbicc9HeSKQTgt d",
        ]
    );
    // A symlink given as the path is added as a symlink, not followed.
    assert_eq!(
        added(&d.join("bar"), AddFlags::default()),
        vec!["QmTB8BaCJdCH5H3k7GrxJsxgDNmNYGGR71C58ERkivXoj5 bar"]
    );
}

#[test]
fn hidden_files_are_skipped_unless_asked() {
    let tmp = tempfile::tempdir().unwrap();
    write_tree(
        tmp.path(),
        &[("d/a", "a\n"), ("d/.secret", "s\n"), (".top", "t\n")],
    );
    let plain = added(&tmp.path().join("d"), AddFlags::default());
    assert_eq!(plain.len(), 2, "{plain:?}");
    let hidden = added(
        &tmp.path().join("d"),
        AddFlags {
            hidden: true,
            ..Default::default()
        },
    );
    assert_eq!(hidden.len(), 3, "{hidden:?}");
    assert_ne!(plain.last(), hidden.last());
    // A dotfile named explicitly is added (Kubo: "only takes effect on recursive add").
    assert_eq!(
        added(&tmp.path().join(".top"), AddFlags::default()).len(),
        1
    );
}

#[test]
fn non_utf8_name_is_a_clear_error() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join(std::ffi::OsStr::from_bytes(b"bad\xff")), "x").unwrap();
    let err = add_path(&d, &v0(), &mut NullSink::default(), &mut |_| {}).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("not valid UTF-8") && msg.contains("bad"),
        "{msg}"
    );
}

#[test]
fn preserve_flags_force_dag_pb_leaves() {
    let flags = AddFlags {
        cid_version: Some(1),
        preserve_mtime: true,
        ..Default::default()
    };
    let opts = flags.resolve().unwrap();
    assert!(!opts.raw_leaves);
    let explicit = AddFlags {
        raw_leaves: Some(true),
        preserve_mode: true,
        ..Default::default()
    };
    assert!(explicit.resolve().is_err());
}

// ---------------------------------------------------------------------------------------
// Sinks: a CAR with the root in its header and each block once; the disk store.

#[test]
fn car_and_store_sinks_hold_the_whole_dag() {
    use distfs::car::CarWriter;
    use distfs::import::{CarSink, Tee};
    use distfs::store::disk::DiskStore;
    let tmp = tempfile::tempdir().unwrap();
    let store = DiskStore::open(tmp.path().join("store")).unwrap();
    // 3 identical chunks: one leaf block written once.
    let data = vec![42u8; 3 * 1024];
    let opts = ImportOptions {
        chunker: ChunkerSpec::Size(1024),
        ..v0()
    };
    let car = CarSink::new(CarWriter::new(Vec::new(), &[]).unwrap());
    let mut tee = Tee(car, store.clone());
    let root = import_file(&data[..], &opts, &Metadata::default(), &mut tee).unwrap();
    let bytes = tee.0.finish().unwrap();
    let blocks: Vec<_> = CarReader::new(&bytes[..])
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(blocks.len(), 2, "leaf once + root");
    assert_eq!(blocks.last().unwrap().cid(), &root.cid);
    for b in &blocks {
        assert_eq!(store.get_sync(b.cid()).unwrap().as_ref(), Some(b));
    }
}

#[test]
fn cli_car_output_has_root_in_header() {
    let tmp = tempfile::tempdir().unwrap();
    write_tree(tmp.path(), &[("t/a", "a\n"), ("t/b/c", "c\n")]);
    let car = tmp.path().join("out.car");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_distfs"))
        .arg("add")
        .arg("-Q")
        .arg("--car")
        .arg(&car)
        .arg(tmp.path().join("t"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root: Cid = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let file = std::fs::File::open(&car).unwrap();
    let mut reader = CarReader::new(file).unwrap();
    assert_eq!(reader.roots(), &[root]);
    let cids: Vec<Cid> = reader.by_ref().map(|b| *b.unwrap().cid()).collect();
    assert_eq!(cids.len(), 4, "2 files + 2 dirs, once each: {cids:?}");
    assert!(cids.contains(&root));
    assert!(!tmp.path().join("out.car.partial").exists());
}

// ---------------------------------------------------------------------------------------
// Streaming: importing 200 MiB must not hold the file in memory. A per-thread counting
// allocator measures the peak of live heap bytes allocated by the importing thread.

#[path = "support/heap.rs"]
mod heap;

#[global_allocator]
static ALLOC: heap::Counting = heap::Counting;

/// A cheap generated stream that counts what was read.
struct Generated {
    remaining: u64,
    state: u64,
    read_total: u64,
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        for chunk in buf[..n].chunks_mut(8) {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let bytes = self.state.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        self.remaining -= n as u64;
        self.read_total += n as u64;
        Ok(n)
    }
}

fn peak_heap_for(opts: &ImportOptions, size: u64) -> (isize, NullSink) {
    let mut src = Generated {
        remaining: size,
        state: 0x9e37_79b9_7f4a_7c15,
        read_total: 0,
    };
    let mut sink = NullSink::default();
    let (root, peak) =
        heap::peak_of(|| import_file(&mut src, opts, &Metadata::default(), &mut sink));
    let root = root.unwrap();
    assert_eq!(src.read_total, size);
    assert_eq!(root.filesize, size);
    (peak, sink)
}

#[test]
fn streaming_200mib_keeps_memory_flat() {
    const SIZE: u64 = 200 * MIB;
    let buzhash = ImportOptions {
        chunker: ChunkerSpec::Buzhash,
        ..v0()
    };
    let trickle = ImportOptions {
        layout: Layout::Trickle,
        ..v0()
    };
    for (name, opts, limit) in [
        ("fixed 256 KiB", v0(), 4 * MIB as isize),
        ("buzhash", buzhash, 6 * MIB as isize),
        ("trickle", trickle, 4 * MIB as isize),
    ] {
        let (peak, sink) = peak_heap_for(&opts, SIZE);
        assert!(
            sink.bytes > SIZE,
            "{name}: every byte reached the sink ({})",
            sink.bytes
        );
        assert!(
            peak < limit,
            "{name}: peak live heap {peak} bytes for a {SIZE}-byte input (limit {limit})"
        );
        eprintln!("{name}: peak heap {peak} bytes while importing {SIZE} bytes");
    }
}

#[test]
fn memory_probe_detects_buffering() {
    // The probe must be able to fail: reading the whole input first is caught.
    let mut all = Vec::new();
    let (read, peak) = heap::peak_of(|| {
        Generated {
            remaining: 16 * MIB,
            state: 1,
            read_total: 0,
        }
        .read_to_end(&mut all)
    });
    read.unwrap();
    assert!(peak >= 16 * MIB as isize);
}

// ---------------------------------------------------------------------------------------
// Rebuilding real Kubo-made gateway-conformance fixtures from their file contents.

fn fixture(rel: &str) -> std::collections::HashMap<Cid, distfs::block::Block> {
    let path = format!(
        "{}/../shared/fixtures/gateway-conformance/fixtures/{rel}",
        env!("CARGO_MANIFEST_DIR")
    );
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    CarReader::new(file)
        .unwrap()
        .map(|b| {
            let b = b.unwrap();
            (*b.cid(), b)
        })
        .collect()
}

/// The bytes of the UnixFS file rooted at `cid` (raw leaves under one dag-pb node).
fn file_bytes(blocks: &std::collections::HashMap<Cid, distfs::block::Block>, cid: &Cid) -> Vec<u8> {
    use prost::Message;
    let b = &blocks[cid];
    if cid.codec() == distfs::block::codec::RAW {
        return b.data().to_vec();
    }
    let node = distfs::unixfs::pb::PbNode::decode(b.data().as_ref()).unwrap();
    node.links
        .iter()
        .flat_map(|l| file_bytes(blocks, &Cid::try_from(l.hash.clone().unwrap()).unwrap()))
        .collect()
}

#[test]
fn rebuilds_dir_with_files_fixture() {
    // path_gateway_unixfs/dir-with-files.car: CIDv1 raw leaves, multiblock.txt chunked at
    // 256 bytes. Extract the file contents, write them to disk, add, compare the root.
    let blocks = fixture("path_gateway_unixfs/dir-with-files.car");
    let multiblock: Cid = "bafybeigcisqd7m5nf3qmuvjdbakl5bdnh4ocrmacaqkpuh77qjvggmt2sa"
        .parse()
        .unwrap();
    let ascii: Cid = "bafkreifkam6ns4aoolg3wedr4uzrs3kvq66p4pecirz6y2vlrngla62mxm"
        .parse()
        .unwrap();
    let hello: Cid = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
        .parse()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("dir-with-files");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("ascii.txt"), file_bytes(&blocks, &ascii)).unwrap();
    std::fs::write(d.join("ascii-copy.txt"), file_bytes(&blocks, &ascii)).unwrap();
    std::fs::write(d.join("hello.txt"), file_bytes(&blocks, &hello)).unwrap();
    let mb = file_bytes(&blocks, &multiblock);
    assert_eq!(mb.len(), 1026);
    std::fs::write(d.join("multiblock.txt"), mb).unwrap();
    let flags = AddFlags {
        cid_version: Some(1),
        chunker: Some(ChunkerSpec::Size(256)),
        ..Default::default()
    };
    let lines = added(&d, flags);
    assert_eq!(
        lines.last().unwrap(),
        "bafybeihchr7vmgjaasntayyatmp5sv6xza57iy2h4xj7g46bpjij6yhrmy dir-with-files"
    );
    assert!(lines.contains(&format!("{multiblock} dir-with-files/multiblock.txt")));
}

#[test]
fn rebuilds_single_layer_hamt_fixture() {
    // trustless_gateway_car/single-layer-hamt-with-multi-block-files.car: a fanout-256
    // HAMT of 1.txt … 1000.txt, every entry the multiblock.txt file (Tsize 245 + 1026).
    let blocks = fixture("trustless_gateway_car/single-layer-hamt-with-multi-block-files.car");
    let multiblock: Cid = "bafybeigcisqd7m5nf3qmuvjdbakl5bdnh4ocrmacaqkpuh77qjvggmt2sa"
        .parse()
        .unwrap();
    assert!(blocks.contains_key(&multiblock));
    let entries: Vec<DirEntry> = (1..=1000)
        .map(|i| DirEntry {
            name: format!("{i}.txt"),
            cid: multiblock,
            tsize: 1271,
        })
        .collect();
    let opts = ImportOptions {
        cid_version: cid::Version::V1,
        ..v0()
    };
    let mut sink = distfs::import::VecSink::default();
    let d =
        distfs::import::hamt::build_hamt(&entries, &Metadata::default(), &opts, &mut sink).unwrap();
    assert_eq!(
        d.cid.to_string(),
        "bafybeidbclfqleg2uojchspzd4bob56dqetqjsj27gy2cq3klkkgxtpn4i"
    );
    // Every shard we wrote is byte-identical to the fixture's.
    for b in &sink.blocks {
        assert_eq!(blocks.get(b.cid()), Some(b));
    }
}

// ---------------------------------------------------------------------------------------
// UnixFS 1.5 mode/mtime, against kubo test/sharness/t0047-add-mode-mtime.sh.

fn touch(path: &Path, secs: i64) {
    // `touch -h` sets a symlink's own mtime, which std cannot do.
    let ok = std::process::Command::new("touch")
        .arg("-h")
        .arg("-m")
        .arg("-d")
        .arg(format!("@{secs}"))
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "touch {}", path.display());
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn cids(path: &Path, mode: bool, mtime: bool) -> Vec<String> {
    let flags = AddFlags {
        preserve_mode: mode,
        preserve_mtime: mtime,
        ..Default::default()
    };
    let mut out: Vec<String> = added(path, flags)
        .into_iter()
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    out.sort();
    out
}

#[test]
fn preserve_mode_and_mtime_single_entries_match_kubo() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("test.txt");
    std::fs::write(&f, b"").unwrap();
    chmod(&f, 0o640);
    touch(&f, 1_604_320_482);
    assert_eq!(
        cids(&f, false, false),
        ["QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"]
    );
    assert_eq!(
        cids(&f, true, false),
        ["QmQLgxypSNGNFTuUPGCecq6dDEjb6hNB5xSyVmP3cEuNtq"]
    );
    assert_eq!(
        cids(&f, false, true),
        ["QmQ6kErEW8kztQFV8vbwNU8E4dmtGsYpRiboiLxUEwibvj"]
    );
    assert_eq!(
        cids(&f, true, true),
        ["QmYkvboLsvLFcSYmqVJRxvBdYRQLroLv9kELf3LRiCqBri"]
    );
    let link = tmp.path().join("linkfile");
    std::os::unix::fs::symlink("nothing", &link).unwrap();
    touch(&link, 1_604_320_482);
    assert_eq!(
        cids(&link, false, true),
        ["QmbJwotgtr84JxcnjpwJ86uZiyMoxbZuNH4YrdJMypkYaB"]
    );
    let dir1 = tmp.path().join("dir1");
    std::fs::create_dir(&dir1).unwrap();
    chmod(&dir1, 0o755);
    touch(&dir1, 1_655_158_632 + 90);
    assert_eq!(
        cids(&dir1, false, false),
        ["QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"]
    );
    assert_eq!(
        cids(&dir1, true, false),
        ["QmRviohgafvCsbkiTgfQFipbuXJ6k1YtoiaQW4quttJPKu"]
    );
    assert_eq!(
        cids(&dir1, false, true),
        ["QmYMy7CZGb498QFSQBF5ZFwv1FYbrAtYZMe4VxhDXxAcvf"]
    );
}

#[test]
fn preserve_mode_and_mtime_tree_matches_kubo() {
    // t0047 `setup_directory`: every file empty; files 0644, directories 0755, the top
    // directory 0700 (mktemp -d); mtimes DIR_TIME + 0..90.
    const T: i64 = 1_655_158_632;
    let tmp = tempfile::tempdir().unwrap();
    let top = tmp.path().join("testXXXXXX");
    for d in ["dir1", "dir2/sub1/sub2", "dir3"] {
        std::fs::create_dir_all(top.join(d)).unwrap();
    }
    for f in ["dir2/sub1/sub2/file3", "dir3/file2", "file1"] {
        std::fs::write(top.join(f), b"").unwrap();
        chmod(&top.join(f), 0o644);
    }
    for d in ["dir1", "dir2", "dir2/sub1", "dir2/sub1/sub2", "dir3"] {
        chmod(&top.join(d), 0o755);
    }
    chmod(&top, 0o700);
    std::os::unix::fs::symlink("../sub2/file3", top.join("dir2/sub1/link1")).unwrap();
    for (p, dt) in [
        ("dir2/sub1/sub2/file3", 10),
        ("dir2/sub1/link1", 20),
        ("dir2/sub1/sub2", 30),
        ("dir2/sub1", 40),
        ("dir2", 50),
        ("dir3/file2", 60),
        ("dir3", 70),
        ("file1", 80),
        ("dir1", 90),
    ] {
        touch(&top.join(p), T + dt);
    }
    touch(&top, T);
    assert_eq!(
        cids(&top, true, true),
        [
            "QmRCG3Pprg4jbhfYBzVzfJVyneFHnBquPGXwvXU3jSuf5j",
            "QmReHCn4BSJJdtd6Le8Hd8Puai6TmgpPCYb13wyM7FD9AD",
            "QmSioyvQuXetxg7uo8FswGn9XKKEsisDq1HTMzGyWbw2R6",
            "QmTMoVgJKhPrz9DfkvT132mxyBXNae5azXQ42WbM9abdSE",
            "QmVzXqpuQGCAgRwEbGuE9xe8Fidi1HEXaPKsQEFEbPJW9j",
            "QmW6Nqy2nziduAp3UGx2a52gtSUsYzhVcZMuPdxBRnwCyP",
            "QmeQwX5qAX18fcPDxDdkfM6ttuFCZetF5hgeUa6ov8D5oc",
            "QmefofUNwC2U3Xp87rB1x8Aws6AdsDuoXR7B9u2RkEZ4dQ",
            "Qmeu24TFarJwLzJgMTDYDJTr4BMGnzafoSnfxov1513abW",
            "Qmf82bbFg2e8HmcqiewutVVw5NoMpiXZD57LpLdC1poBuH",
        ]
    );
}
