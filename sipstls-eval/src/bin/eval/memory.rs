//! The process heap in use, from glibc's allocator statistics.

/// Bytes of heap in use now: glibc `mallinfo2()` `uordblks` (in-use bytes in malloc
/// arenas) plus `hblkhd` (bytes in mmap-ed blocks). This is the whole process heap: Rust
/// allocations (through the system allocator) and C allocations (OpenSSL, aws-lc) alike.
/// Freed memory that malloc keeps for reuse is not counted. `None` without glibc.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn heap_in_use() -> Option<usize> {
    // SAFETY: mallinfo2 takes no arguments and has no preconditions: it reads glibc's
    // allocator statistics (under the arenas' own locks) and returns a plain struct of
    // integers by value. glibc has it since 2.33; the libc crate declares it for gnu
    // targets only, which the cfg above restricts this function to.
    let info = unsafe { libc::mallinfo2() };
    Some(info.uordblks.saturating_add(info.hblkhd))
}

/// Bytes of heap in use now; `None` on this platform (no glibc `mallinfo2`).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn heap_in_use() -> Option<usize> {
    None
}

/// Why [`heap_in_use`] has no answer.
pub const UNAVAILABLE: &str = "heap statistics need glibc's mallinfo2 (Linux, glibc 2.33 or later)";
