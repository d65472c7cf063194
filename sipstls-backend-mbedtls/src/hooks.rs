//! Process-wide set-up of Mbed TLS: its mutexes (`MBEDTLS_THREADING_ALT`), its allocator
//! (`MBEDTLS_PLATFORM_MEMORY`), PSA crypto's random source, and `psa_crypto_init`.
//!
//! Mbed TLS creates its global mutexes when the mutex functions are installed, so they are
//! installed once, before any other Mbed TLS call: by [`init`], which every entry point of
//! the backend calls first. [`install_lock_hooks`] chooses them before that; afterwards it is
//! refused with `Error::HookTooLate`.

use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::{Mutex, OnceLock};

use sipstls_core::hooks::{c_abi, AllocatorHooks, LockHooks, LockId, LockOutcome};
use sipstls_core::{Error, Result};
use sipstls_mbedtls_sys as sys;

use crate::NAME;

/// The lock hooks Mbed TLS's mutexes go to; fixed by [`init`].
static LOCKS: OnceLock<&'static dyn LockHooks> = OnceLock::new();
/// The outcome of the one-time set-up.
static INIT: OnceLock<std::result::Result<(), Error>> = OnceLock::new();

/// Sets up Mbed TLS for this process (mutex functions, PSA crypto and its random source) on
/// the first call; later calls return the first call's outcome.
///
/// Every entry point of the backend calls it; code that calls Mbed TLS directly beside the
/// backend (through `sipstls-mbedtls-sys`) calls it first. Lock hooks are installed before.
pub fn init() -> Result<()> {
    INIT.get_or_init(|| {
        LOCKS.get_or_init(|| &ThreadLocks);
        // SAFETY: the four functions have the C signatures Mbed TLS expects and never
        // unwind; this runs once, before any other Mbed TLS call of this backend (every
        // entry point calls `init` first), as `mbedtls_threading_set_alt` requires.
        unsafe { sys::threading_set_alt(Some(mutex_init), Some(mutex_free), Some(mutex_lock), Some(mutex_unlock)) };
        crate::rng::check()?;
        // SAFETY: PSA's random source is set before `psa_crypto_init` and never changed; the
        // function never unwinds and is safe to call from any thread.
        unsafe { sys::sipstls_mbedtls_set_psa_rng(Some(crate::rng::rng_callback)) };
        // SAFETY: no precondition; thread-safe with MBEDTLS_THREADING_C.
        let status = unsafe { sys::psa_crypto_init() };
        if status != 0 {
            return Err(Error::Backend { library: NAME, message: format!("psa_crypto_init failed ({status})") });
        }
        Ok(())
    })
    .clone()
}

/// Routes every mutex Mbed TLS creates, locks, unlocks and frees in this process to `hooks`
/// (`MBEDTLS_THREADING_ALT`): with process-shared locks (sipstls-shm), state that forked
/// workers share in shared memory is locked across processes.
///
/// Must run before this backend's first use (domain, session or random bytes), because Mbed
/// TLS creates its global mutexes when the functions are installed; afterwards
/// `Error::HookTooLate` is returned. The hooks live for the rest of the process.
pub fn install_lock_hooks(hooks: &'static dyn LockHooks) -> Result<()> {
    if INIT.get().is_some() {
        return Err(Error::HookTooLate { hook: "lock" });
    }
    let current = *LOCKS.get_or_init(|| hooks);
    if ptr::addr_eq(current as *const dyn LockHooks, hooks as *const dyn LockHooks) {
        Ok(())
    } else {
        Err(Error::HookTooLate { hook: "lock (other hooks installed)" })
    }
}

/// Sends Mbed TLS's allocations (`mbedtls_calloc`/`mbedtls_free`) in this process to
/// `hooks` (16-byte aligned, as [`AllocatorHooks`] promises). Must run before this backend's
/// first use (domain, session or random bytes); afterwards `Error::HookTooLate` is returned,
/// because Mbed TLS then already holds long-lived state (PSA crypto, the random generator)
/// in the C heap.
pub fn install_allocator_hooks(hooks: &'static dyn AllocatorHooks) -> Result<()> {
    if INIT.get().is_some() {
        return Err(Error::HookTooLate { hook: "allocator" });
    }
    c_abi::set_process_hooks(hooks).map_err(|_| Error::HookTooLate { hook: "allocator (other hooks installed)" })?;
    // SAFETY: both functions have the C signatures Mbed TLS expects, never unwind and route
    // to `hooks`, which lives for the whole process; `hook_free` hands memory allocated
    // before the hooks back to libc.
    let ret = unsafe { sys::platform_set_calloc_free(Some(hook_calloc), Some(hook_free)) };
    if ret != 0 {
        return Err(crate::errors::backend(ret));
    }
    Ok(())
}

/// `calloc` for Mbed TLS: zeroed memory from the hooks; NULL on overflow or exhaustion.
///
/// # Safety
/// Called by Mbed TLS as its allocator; the result is released with [`hook_free`].
unsafe extern "C" fn hook_calloc(n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else { return ptr::null_mut() };
    // SAFETY: c_abi::malloc has no precondition beyond being used as an allocator.
    let p = catch_unwind(|| unsafe { c_abi::malloc(total, ptr::null(), 0) }).unwrap_or(ptr::null_mut());
    if !p.is_null() {
        // SAFETY: `p` points to at least `total` writable bytes just allocated.
        unsafe { ptr::write_bytes(p.cast::<u8>(), 0, total) };
    }
    p
}

/// `free` for Mbed TLS.
///
/// # Safety
/// `p` is null or a live allocation of Mbed TLS's allocator (ours, or libc's from before
/// the hooks, which c_abi::free hands back to libc).
unsafe extern "C" fn hook_free(p: *mut c_void) {
    // SAFETY: per this function's contract.
    let _ = catch_unwind(|| unsafe { c_abi::free(p, ptr::null(), 0) });
}

fn hooks() -> Option<&'static dyn LockHooks> {
    LOCKS.get().copied()
}

/// `mutex_init`: makes a lock; `is_valid` stays 0 when none could be made (Mbed TLS then
/// fails the operations that need it with `ERR_THREADING_BAD_INPUT_DATA`).
///
/// # Safety
/// `m` is null or points to a mutex object Mbed TLS owns.
unsafe extern "C" fn mutex_init(m: *mut sys::threading_mutex_t) {
    if m.is_null() {
        return;
    }
    let id = catch_unwind(|| hooks().and_then(|h| h.new_lock())).ok().flatten();
    // SAFETY: `m` is a live mutex object, not shared with another thread while it is created.
    let m = unsafe { &mut *m };
    match id {
        Some(LockId(id)) => {
            m.id = id;
            m.is_valid = 1;
        }
        None => m.is_valid = 0,
    }
}

/// `mutex_free`: destroys the lock (a no-op for one never made or already freed).
///
/// # Safety
/// `m` is null or points to a mutex object Mbed TLS owns and nobody holds.
unsafe extern "C" fn mutex_free(m: *mut sys::threading_mutex_t) {
    if m.is_null() {
        return;
    }
    // SAFETY: as in `mutex_init`: no other thread uses the mutex while it is freed.
    let m = unsafe { &mut *m };
    if m.is_valid == 0 {
        return;
    }
    m.is_valid = 0;
    let id = LockId(m.id);
    let _ = catch_unwind(|| {
        if let Some(h) = hooks() {
            h.destroy(id);
        }
    });
}

/// `mutex_lock`: 0 once held. A lock whose previous holder died holding it is taken but
/// reported as `ERR_THREADING_MUTEX_ERROR`: the state it guards may be half-changed, so the
/// operation fails rather than work on it.
///
/// # Safety
/// `m` is null or points to a live mutex object.
unsafe extern "C" fn mutex_lock(m: *mut sys::threading_mutex_t) -> c_int {
    if m.is_null() {
        return sys::ERR_THREADING_BAD_INPUT_DATA;
    }
    // SAFETY: `m` is live; `id` and `is_valid` are only written while it is created or freed.
    let (valid, id) = unsafe { ((*m).is_valid, LockId((*m).id)) };
    if valid == 0 {
        return sys::ERR_THREADING_BAD_INPUT_DATA;
    }
    match catch_unwind(|| hooks().map(|h| h.lock(id))) {
        Ok(Some(LockOutcome::Acquired)) => 0,
        Ok(Some(LockOutcome::OwnerDied)) => {
            // Held now: release it, so that the error does not leave it locked forever.
            let _ = catch_unwind(|| hooks().map(|h| h.unlock(id)));
            sys::ERR_THREADING_MUTEX_ERROR
        }
        _ => sys::ERR_THREADING_MUTEX_ERROR,
    }
}

/// `mutex_unlock`.
///
/// # Safety
/// `m` is null or points to a live mutex object held by this thread.
unsafe extern "C" fn mutex_unlock(m: *mut sys::threading_mutex_t) -> c_int {
    if m.is_null() {
        return sys::ERR_THREADING_BAD_INPUT_DATA;
    }
    // SAFETY: as in `mutex_lock`.
    let (valid, id) = unsafe { ((*m).is_valid, LockId((*m).id)) };
    if valid == 0 {
        return sys::ERR_THREADING_BAD_INPUT_DATA;
    }
    match catch_unwind(AssertUnwindSafe(|| hooks().map(|h| h.unlock(id)))) {
        Ok(Some(())) => 0,
        _ => sys::ERR_THREADING_MUTEX_ERROR,
    }
}

/// The default lock hooks: one heap-allocated mutex per lock, for threads of one process.
struct ThreadLocks;

/// A lock of [`ThreadLocks`]: the `LockId` is the address of its boxed `RawLock`.
struct RawLock {
    held: Mutex<bool>,
    released: std::sync::Condvar,
}

// SAFETY: a lock excludes every other holder of the process (a flag under a std mutex, waited
// on with a condition variable); `unlock` only clears the flag the holder set; nothing unwinds
// into C (the C functions above catch panics); these locks are not shared across processes,
// so no holder can die holding one while others go on.
unsafe impl LockHooks for ThreadLocks {
    fn new_lock(&self) -> Option<LockId> {
        let lock = Box::new(RawLock { held: Mutex::new(false), released: std::sync::Condvar::new() });
        Some(LockId(Box::into_raw(lock) as usize))
    }

    fn lock(&self, id: LockId) -> LockOutcome {
        // SAFETY: `id` came from `new_lock` and is not destroyed while Mbed TLS uses it.
        let lock = unsafe { &*(id.0 as *const RawLock) };
        let mut held = lock.held.lock().unwrap_or_else(|p| p.into_inner());
        while *held {
            held = lock.released.wait(held).unwrap_or_else(|p| p.into_inner());
        }
        *held = true;
        LockOutcome::Acquired
    }

    fn unlock(&self, id: LockId) {
        // SAFETY: as in `lock`.
        let lock = unsafe { &*(id.0 as *const RawLock) };
        *lock.held.lock().unwrap_or_else(|p| p.into_inner()) = false;
        lock.released.notify_one();
    }

    fn destroy(&self, id: LockId) {
        // SAFETY: `id` came from `new_lock` (a leaked box) and is destroyed once, unheld.
        drop(unsafe { Box::from_raw(id.0 as *mut RawLock) });
    }
}
