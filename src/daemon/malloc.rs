//! The allocator settings of the long-running commands (`mount`, `serve`).
//!
//! glibc gives each thread that allocates under contention an arena of its own, up to eight
//! per core, and keeps what is freed in each arena for reuse there. The daemon allocates
//! its 256 KiB blocks on tokio workers, blocking-pool threads and FUSE threads alike, so
//! freed blocks sat in up to sixteen arenas on two cores and the resident size stayed far
//! above the live data. Fewer arenas keep the freed memory where the next block reuses it:
//! 16 parallel cold readers peaked at 103 MiB with the default 8 per core, 90 MiB at two
//! arenas and 80–93 MiB at one, at the same speed (`benches/README.md`); `mount` uses one,
//! `serve` one per core.
//!
//! A periodic `malloc_trim` (returning free holes between live allocations) measured
//! 82–87 MiB against 80–93 MiB for the one arena alone, but doubled the page faults of the
//! 16 readers and was not shown to cost no speed, so it is not done.

/// How many malloc arenas a long-running command gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arenas {
    /// One for the whole process (`mount`: its peak memory has a target).
    One,
    /// One per core, at least two (`serve`).
    PerCore,
}

/// Caps glibc's malloc arenas. Call once, early: arenas already made by running threads
/// stay.
pub fn cap_arenas(arenas: Arenas) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let n = match arenas {
            Arenas::One => 1,
            Arenas::PerCore => std::thread::available_parallelism().map_or(2, |n| n.get().max(2)),
        };
        let n = libc::c_int::try_from(n).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt takes no pointers and only sets a malloc tunable; glibc's mallopt
        // is thread-safe (it takes the arena lock), and M_ARENA_MAX accepts any positive
        // value, which `n` is.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, n);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = arenas;
}
