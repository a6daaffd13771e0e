//! The CPU's cache prefetch hint, for loading state a coming event will
//! touch while the current one is applied.

/// Asks the CPU to bring the cache line at `p` in, without waiting for it.
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    // SAFETY: SSE is part of the x86_64 baseline, and a prefetch is a hint
    // that reads nothing and cannot fault, whatever the address.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Prefetches `lines` cache lines from `p` on.
#[inline(always)]
pub(super) fn prefetch_lines<T>(p: *const T, lines: usize) {
    for i in 0..lines {
        prefetch(p.cast::<u8>().wrapping_add(i * 64));
    }
}
