//! Fuzz target: arbitrary bytes as a dag-pb / raw / dag-cbor block through
//! `Node::decode`, read planning, HAMT listing and lookup (`distfs::unixfs::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    distfs::unixfs::fuzzing::check(data);
});
