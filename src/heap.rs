//! The allocator's free memory handed back to the OS: a server that runs for months should
//! shrink again after a burst, not keep its high-water mark.
//!
//! The crate's only unsafe code: one call into the C library, which has no preconditions
//! (lib.rs denies `unsafe_code`; `structure::unsafe_code_is_only_in_heap` keeps it here).
#![allow(unsafe_code)]

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
    use super::release_free_memory;

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
}
