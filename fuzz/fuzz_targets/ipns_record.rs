//! Fuzz target: arbitrary bytes as a serialized IPNS record through protobuf and DAG-CBOR
//! decoding, key extraction and verification (`distfs::name::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    distfs::name::fuzzing::check(data);
});
