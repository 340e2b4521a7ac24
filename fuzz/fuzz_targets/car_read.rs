//! Fuzz target: arbitrary bytes as a CAR response body through the verifying reader, and
//! what it accepts through the writer and back (`distfs::car::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    distfs::car::fuzzing::check(data);
});
