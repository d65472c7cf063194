//! Allocator and lock hooks: how a backend's TLS library can be pointed at memory and locks
//! that several processes share.
//!
//! These are the contracts only. Implementations (a shared-memory arena, robust
//! process-shared mutexes) and per-backend installation come with the process-model work;
//! a backend that cannot route a hook says so through
//! [`Capabilities::ALLOCATOR_HOOK`](crate::Capabilities::ALLOCATOR_HOOK) and
//! [`Capabilities::LOCK_HOOK`](crate::Capabilities::LOCK_HOOK).

use core::ptr::NonNull;

/// Memory for a TLS library, installed once per process before the library's first
/// allocation (OpenSSL and aws-lc `CRYPTO_set_mem_functions`, BoringSSL's weak
/// `OPENSSL_memory_*`, wolfSSL `wolfSSL_SetAllocators`, Mbed TLS
/// `mbedtls_platform_set_calloc_free`).
///
/// # Safety
///
/// Implementors promise, for the whole life of the process:
/// - `alloc` returns null or a pointer to at least `size` bytes aligned to 16 bytes (some
///   libraries store 16-byte-aligned types in their allocations; 8 bytes crashed wolfSSL in
///   OpenSIPS), not overlapping any other live allocation;
/// - `realloc` and `free` accept every pointer `alloc`/`realloc` returned and not yet freed,
///   from any thread, and from any process that shares the memory when the hooks are meant
///   for shared memory;
/// - no method unwinds (they are called from C);
/// - the hooks never call back into the TLS library.
pub unsafe trait AllocatorHooks: Send + Sync + 'static {
    /// Allocates `size` bytes (16-byte aligned); `None` on exhaustion.
    fn alloc(&self, size: usize) -> Option<NonNull<u8>>;

    /// Resizes an allocation, keeping its contents up to the smaller size; `None` on
    /// exhaustion (the old allocation is then still valid).
    ///
    /// # Safety
    /// `ptr` must come from this allocator and be live.
    unsafe fn realloc(&self, ptr: NonNull<u8>, new_size: usize) -> Option<NonNull<u8>>;

    /// Frees an allocation.
    ///
    /// # Safety
    /// `ptr` must come from this allocator and be live; it is dead afterwards.
    unsafe fn free(&self, ptr: NonNull<u8>);
}

/// An opaque lock made by [`LockHooks::new_lock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LockId(pub usize);

/// What happened when a lock was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockOutcome {
    /// Taken normally.
    Acquired,
    /// Taken, but its previous owner died holding it (a robust mutex's `EOWNERDEAD`): the
    /// state it guarded may be inconsistent and must be treated as broken.
    OwnerDied,
}

/// Locks for a TLS library's internal state, usable across processes when the state lives
/// in shared memory (robust, process-shared mutexes).
///
/// # Safety
///
/// Implementors promise that a lock excludes every other holder in every process that
/// shares it, that `unlock` is only effective for the holder, that no method unwinds, and
/// that a holder's death is reported as [`LockOutcome::OwnerDied`] to the next taker
/// rather than blocking it forever.
pub unsafe trait LockHooks: Send + Sync + 'static {
    /// Creates a lock; `None` when no more can be made.
    fn new_lock(&self) -> Option<LockId>;
    /// Takes the lock, blocking.
    fn lock(&self, id: LockId) -> LockOutcome;
    /// Releases the lock.
    fn unlock(&self, id: LockId);
    /// Destroys the lock; it must not be held.
    fn destroy(&self, id: LockId);
}
