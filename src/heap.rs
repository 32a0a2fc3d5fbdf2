//! The allocator's free memory handed back to the OS: a server that runs for months should
//! shrink again after a burst, not keep its high-water mark.
//!
//! The crate's only unsafe code: two calls into the C library, which have no preconditions
//! (lib.rs denies `unsafe_code`; `structure::unsafe_code_is_only_in_heap` keeps it here).
#![allow(unsafe_code)]

/// Allocations of this size or more get a mapping of their own (see
/// [`map_large_allocations_apart`]). Far above any request's buffers; below argon2id's working
/// memory at any parameters worth using (7 MiB at the smallest that OWASP lists).
const OWN_MAPPING_FROM: usize = 1024 * 1024;

/// Makes every allocation of 1 MiB (`OWN_MAPPING_FROM`) or more a mapping of its own, unmapped
/// (given back to the OS) when freed. glibc does that from 128 KiB at first, but raises the
/// limit to the size of each such block freed: after the first hashing thread gave its 19 MiB
/// back, the next 19 MiB came from a thread's arena, and freed it joined that arena's top, which
/// neither a free nor `malloc_trim` returns (glibc trims only the main arena's top, and a thread
/// arena's only past a limit also raised to twice the block). A fixed limit turns that
/// adjustment off. A no-op with other C libraries.
pub fn map_large_allocations_apart() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes the allocator's own lock and has no precondition; the value fits.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, OWN_MAPPING_FROM as libc::c_int);
    }
}

/// Returns the free memory glibc holds to the OS (`malloc_trim`): whole free pages in the
/// middle of every arena as well as at their tops. On its own glibc gives back only a heap's
/// top, so what a burst's connections held stayed resident for the process's life. A no-op
/// with other C libraries.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes the allocator's own locks and has no precondition.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::{map_large_allocations_apart, release_free_memory};

    /// Both tests read the process's resident memory: one at a time.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// The process's anonymous resident memory, in KiB.
    fn anon_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn freed_memory_goes_back_to_the_os() {
        let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        // 96 MiB in 4 KiB pieces, below glibc's mmap threshold so that they come from an
        // arena; the last one stays, so the freed pieces are not at the heap's top, which
        // glibc would give back by itself.
        let mut pieces: Vec<Vec<u8>> = (0..24_576).map(|_| vec![1u8; 4096]).collect();
        let kept = pieces.pop();
        drop(pieces);
        let before = anon_kib();
        release_free_memory();
        let after = anon_kib();
        drop(kept);
        // Other tests run beside this one and allocate too: half is margin enough.
        assert!(
            before.saturating_sub(after) >= 48 * 1024,
            "anonymous memory {before} KiB before, {after} KiB after"
        );
    }

    #[test]
    fn a_large_block_goes_back_to_the_os_each_time_it_is_freed() {
        let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        map_large_allocations_apart();
        // On a thread of its own, as a hashing thread holds its working memory: without the
        // fixed limit the second block comes from that thread's arena and stays resident.
        let rounds = std::thread::spawn(|| {
            (0..3)
                .map(|_| {
                    let before = anon_kib();
                    let block = std::hint::black_box(vec![1u8; 16 << 20]);
                    let held = anon_kib();
                    drop(block);
                    (before, held, anon_kib())
                })
                .collect::<Vec<_>>()
        })
        .join()
        .unwrap_or_default();
        assert_eq!(rounds.len(), 3);
        for (round, (before, held, after)) in rounds.into_iter().enumerate() {
            // Others allocate beside this test: half the block is margin enough.
            assert!(
                held >= before + 8 * 1024 && after + 8 * 1024 <= held,
                "round {round}: {before} KiB before the block, {held} KiB with it, {after} KiB after"
            );
        }
    }
}
