//! Fuzz target: a domain and the TXT strings a hostile DNS server answers for it, through
//! the domain check, the `dnslink=` choice and the root parser (`distfs::name::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    distfs::name::fuzzing::check_dnslink(data);
});
