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

    /// True when `ptr` was (or could have been) returned by this allocator. Memory a
    /// library allocated before the hooks were installed is not, and is handed back to the
    /// C library's allocator instead (some libraries accept hooks late).
    fn owns(&self, ptr: NonNull<u8>) -> bool;
}

/// An opaque lock made by [`LockHooks::new_lock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::exhaustive_structs)] // closed: an index
pub struct LockId(pub usize);

/// What happened when a lock was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::exhaustive_enums)] // closed: a lock hook acquires or fails
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

/// C-ABI allocation functions that route to one process-wide [`AllocatorHooks`], for the
/// backends to hand to their library (`CRYPTO_set_mem_functions` in OpenSSL and aws-lc).
///
/// Every function catches panics (none should occur) and never unwinds into C.
pub mod c_abi {
    use core::ffi::{c_char, c_int, c_void};
    use core::ptr::{self, NonNull};
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::OnceLock;

    use super::AllocatorHooks;

    static HOOKS: OnceLock<&'static dyn AllocatorHooks> = OnceLock::new();

    /// Sets the process-wide hooks; `Err` with the ones already set if another set came
    /// first (installing the same object twice is fine).
    pub fn set_process_hooks(h: &'static dyn AllocatorHooks) -> Result<(), &'static dyn AllocatorHooks> {
        let current = *HOOKS.get_or_init(|| h);
        if ptr::addr_eq(current as *const dyn AllocatorHooks, h as *const dyn AllocatorHooks) {
            Ok(())
        } else {
            Err(current)
        }
    }

    fn hooks() -> Option<&'static dyn AllocatorHooks> {
        HOOKS.get().copied()
    }

    /// `malloc` for C libraries.
    ///
    /// # Safety
    /// Called by C code as its allocator; the returned pointer must be released with
    /// [`free`] or resized with [`realloc`].
    pub unsafe extern "C" fn malloc(size: usize, _file: *const c_char, _line: c_int) -> *mut c_void {
        catch_unwind(|| hooks().and_then(|h| h.alloc(size.max(1))))
            .ok()
            .flatten()
            .map_or(ptr::null_mut(), |p| p.as_ptr().cast())
    }

    /// `realloc` for C libraries (C semantics: null pointer allocates, size 0 frees).
    ///
    /// # Safety
    /// `p` must be null or come from [`malloc`]/[`realloc`] and be live.
    pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize, file: *const c_char, line: c_int) -> *mut c_void {
        let Some(old) = NonNull::new(p.cast::<u8>()) else {
            // SAFETY: plain allocation.
            return unsafe { malloc(size, file, line) };
        };
        if !hooks().is_some_and(|h| h.owns(old)) {
            // Allocated by libc before the hooks were installed: it stays with libc.
            // SAFETY: `p` is a live libc allocation per the contract.
            return unsafe { libc_realloc(p, size) };
        }
        if size == 0 {
            // SAFETY: `p` is live per the contract.
            unsafe { free(p, file, line) };
            return ptr::null_mut();
        }
        // SAFETY: `old` came from these hooks and is live per the contract.
        catch_unwind(AssertUnwindSafe(|| hooks().and_then(|h| unsafe { h.realloc(old, size) })))
            .ok()
            .flatten()
            .map_or(ptr::null_mut(), |q| q.as_ptr().cast())
    }

    /// `free` for C libraries (null is ignored).
    ///
    /// # Safety
    /// `p` must be null or come from [`malloc`]/[`realloc`] and be live.
    pub unsafe extern "C" fn free(p: *mut c_void, _file: *const c_char, _line: c_int) {
        let Some(ptr) = NonNull::new(p.cast::<u8>()) else { return };
        match hooks() {
            Some(h) if h.owns(ptr) => {
                // SAFETY: `ptr` came from these hooks and is live per the contract.
                let _ = catch_unwind(AssertUnwindSafe(|| unsafe { h.free(ptr) }));
            }
            // SAFETY: not ours, so a live libc allocation made before the hooks.
            _ => unsafe { libc_free(p) },
        }
    }

    extern "C" {
        #[link_name = "realloc"]
        fn libc_realloc(p: *mut c_void, size: usize) -> *mut c_void;
        #[link_name = "free"]
        fn libc_free(p: *mut c_void);
    }
}
