//! Routing aws-lc's C allocations (under rustls) to [`AllocatorHooks`].
//!
//! rustls itself allocates through Rust's global allocator: to put a whole rustls session
//! in shared memory, the binary also sets `sipstls_shm::ArenaGlobalAlloc` as its
//! `#[global_allocator]`. This function covers the C side only.

use std::sync::atomic::{AtomicBool, Ordering};

use sipstls_core::hooks::{c_abi, AllocatorHooks};

/// Set on this backend's first use of aws-lc (domain, random bytes).
static USED: AtomicBool = AtomicBool::new(false);

pub(crate) fn mark_used() {
    USED.store(true, Ordering::SeqCst);
}
use sipstls_core::Error;

/// Sends aws-lc's allocations to `hooks`. Must run before aws-lc's first allocation by
/// anything in the process: after this backend has used aws-lc it returns
/// [`Error::HookTooLate`]; earlier use by other code (rcgen, rustls directly) cannot be
/// detected, and aws-lc accepts the hooks anyway, then later frees those earlier
/// allocations through them. Its default allocator prefixes each block with 8 bytes, so
/// such a pointer is neither the hooks' nor libc's and the process aborts (measured).
/// Call this first thing in `main`.
pub fn install_allocator_hooks(hooks: &'static dyn AllocatorHooks) -> Result<(), Error> {
    // aws-lc, unlike OpenSSL, accepts hooks after its first allocation (see above):
    // refuse once this backend has used aws-lc.
    if USED.load(Ordering::SeqCst) {
        return Err(Error::HookTooLate { hook: "allocator" });
    }
    c_abi::set_process_hooks(hooks).map_err(|_| Error::HookTooLate { hook: "allocator (other hooks installed)" })?;
    // SAFETY: the three functions have the C signatures aws-lc expects, never unwind, and
    // route to `hooks`, which lives for the whole process ('static).
    let ok =
        unsafe { aws_lc_sys::CRYPTO_set_mem_functions(Some(c_abi::malloc), Some(c_abi::realloc), Some(c_abi::free)) };
    if ok == 1 {
        Ok(())
    } else {
        Err(Error::HookTooLate { hook: "allocator" })
    }
}

/// Frees aws-lc's thread-local state of the calling thread (`AWSLC_thread_local_clear`).
pub(crate) fn release_thread_state() {
    // SAFETY: takes no arguments and only frees the calling thread's aws-lc state, which
    // aws-lc recreates if the thread calls it again.
    unsafe { aws_lc_sys::AWSLC_thread_local_clear() };
}
