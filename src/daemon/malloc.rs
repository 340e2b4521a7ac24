//! The allocator settings of the long-running commands (`mount`, `serve`).
//!
//! glibc gives each thread that allocates under contention an arena of its own, up to eight
//! per core, and keeps what is freed in each arena for reuse there. The daemon allocates
//! its 256 KiB blocks on tokio workers, blocking-pool threads and FUSE threads alike, so
//! freed blocks sat in up to sixteen arenas on two cores and the resident size stayed far
//! above the live data. One arena per core keeps the freed memory where the next block
//! reuses it: 16 parallel cold readers peaked at 90 MiB instead of 103 MiB, at the same
//! speed (`benches/README.md`). Other C libraries are left alone.

/// Caps glibc's malloc arenas at one per core (at least two). Call once, early: arenas
/// already made by running threads stay.
pub fn cap_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arenas = libc::c_int::try_from(cores.max(2)).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt takes no pointers and only sets a malloc tunable; glibc's mallopt
        // is thread-safe (it takes the arena lock), and M_ARENA_MAX accepts any positive
        // value, which `arenas` is.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}
