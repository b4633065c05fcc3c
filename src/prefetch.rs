//! Software prefetch: asking for a cache line before it is needed.
//!
//! The only module that touches `safe_arch`. A prefetch is a hint with no
//! effect on what the program computes; on targets without one it does
//! nothing.

/// Starts loading the cache line holding `r` into every cache level.
#[inline(always)]
pub fn line<T>(r: &T) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse"))]
    safe_arch::prefetch_t0(r);
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse")))]
    let _ = r;
}
