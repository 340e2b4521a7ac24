//! The allocator settings of the long-running commands (`mount`, `serve`).
//!
//! glibc gives each thread that allocates under contention an arena of its own, up to eight
//! per core, and keeps what is freed in each arena for reuse there. The daemon allocates
//! its 256 KiB blocks on tokio workers, blocking-pool threads and FUSE threads alike, so
//! freed blocks sat in up to sixteen arenas on two cores and the resident size stayed far
//! above the live data. Fewer arenas keep the freed memory where the next block reuses it:
//! 16 parallel cold readers peaked at 103 MiB with the default 8 per core, 90 MiB at two
//! arenas and 80 MiB at one, at the same speed (`benches/README.md`); `mount` uses one,
//! `serve` one per core.
//!
//! Even so glibc hands back only the free memory at the top of an arena. Blocks and HTTP
//! read buffers (up to 400 KiB a connection) come and go between longer lived
//! allocations, and the free holes they leave stayed resident: after 16 parallel cold
//! readers the two arenas held 124–147 MiB for 41–78 MiB in use (`malloc_stats`), and the
//! peak passed the 100 MiB target. `mount` therefore runs in one arena and [`spawn_trimmer`]
//! returns free pages to the kernel a few times a second while there are any
//! (`malloc_trim`, which drops whole free pages anywhere in the arenas); a page used again
//! costs a page fault, which measured no slower (`benches/README.md`, "Memory with 16
//! parallel readers"). Other C libraries are left alone.

use std::time::Duration;

/// How often the trimmer runs while trimming gives memory back.
pub const TRIM_EVERY: Duration = Duration::from_millis(200);
/// The longest the trimmer sleeps when trims give nothing back (an idle daemon wakes this
/// often, and a burst of reading waits at most this long for its first trim).
pub const TRIM_IDLE_EVERY: Duration = Duration::from_secs(2);

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

/// Gives the free pages of every malloc arena back to the kernel; whether any were.
/// Always `false` outside glibc.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointers; it locks each arena while it walks it.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// The pause before the next trim: [`TRIM_EVERY`] after a trim that gave memory back,
/// otherwise twice the last pause, up to [`TRIM_IDLE_EVERY`].
pub fn next_pause(last: Duration, released: bool) -> Duration {
    if released {
        TRIM_EVERY
    } else {
        (last * 2).min(TRIM_IDLE_EVERY)
    }
}

/// Starts a detached thread that calls [`trim`] every [`TRIM_EVERY`] while trims give memory
/// back, backing off to [`TRIM_IDLE_EVERY`] when they do not. It holds nothing and ends
/// with the process. Does nothing outside glibc.
pub fn spawn_trimmer() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("malloc-trim".into())
        .spawn(|| {
            let mut pause = TRIM_EVERY;
            loop {
                std::thread::sleep(pause);
                pause = next_pause(pause, trim());
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("could not start the malloc trimmer (freed memory stays resident): {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trimmer_backs_off_while_nothing_is_given_back() {
        let mut pause = TRIM_EVERY;
        let mut seen = vec![];
        for _ in 0..6 {
            pause = next_pause(pause, false);
            seen.push(pause);
        }
        assert_eq!(seen[0], TRIM_EVERY * 2);
        assert_eq!(*seen.last().unwrap(), TRIM_IDLE_EVERY, "{seen:?}");
        assert!(seen.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(next_pause(TRIM_IDLE_EVERY, true), TRIM_EVERY);
    }

    /// Free holes below live data are what glibc kept resident; a trim hands them back.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_trim_gives_back_holes_below_live_data() {
        // 100 KiB chunks stay below glibc's initial mmap threshold (128 KiB), so they come
        // from an arena; a small allocation after each keeps the top of the heap in use.
        let mut big = Vec::new();
        let mut small = Vec::new();
        for i in 0..200u8 {
            let mut b = vec![i; 100 * 1024];
            b[0] = i.wrapping_add(1);
            big.push(b);
            small.push(vec![i; 64]);
        }
        drop(big);
        assert!(trim(), "20 MiB of holes and nothing given back");
        assert_eq!(small.len(), 200);
    }
}
