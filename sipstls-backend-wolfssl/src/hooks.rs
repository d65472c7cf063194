//! Routing wolfSSL's allocations to [`AllocatorHooks`] (`wolfSSL_SetAllocators`).

use std::ffi::c_void;
use std::panic::catch_unwind;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

use sipstls_core::hooks::{c_abi, AllocatorHooks};
use sipstls_core::Error;
use sipstls_wolfssl_sys as w;

use crate::cvt::Context;

/// Set when this backend first calls into wolfSSL; hooks installed later are refused.
static LIBRARY_USED: AtomicBool = AtomicBool::new(false);

/// Marks the library as used (called before every first use: init, domains, random).
pub(crate) fn mark_used() {
    LIBRARY_USED.store(true, Ordering::SeqCst);
}

/// `malloc` for wolfSSL.
///
/// # Safety
/// Called by wolfSSL as its allocator; the result is released with [`hook_free`] or
/// resized with [`hook_realloc`].
unsafe extern "C" fn hook_malloc(size: usize) -> *mut c_void {
    // SAFETY: c_abi::malloc has no precondition beyond being used as an allocator.
    catch_unwind(|| unsafe { c_abi::malloc(size, ptr::null(), 0) }).unwrap_or(ptr::null_mut())
}

/// `free` for wolfSSL.
///
/// # Safety
/// `p` is null or a live allocation of wolfSSL's allocator.
unsafe extern "C" fn hook_free(p: *mut c_void) {
    // SAFETY: wolfSSL only frees pointers its allocator returned (ours, or libc's for
    // allocations made before the hooks, which c_abi::free hands back to libc).
    let _ = catch_unwind(|| unsafe { c_abi::free(p, ptr::null(), 0) });
}

/// `realloc` for wolfSSL.
///
/// # Safety
/// As for [`hook_free`]: `p` is null or a live allocation of wolfSSL's allocator.
unsafe extern "C" fn hook_realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: per this function's contract.
    catch_unwind(|| unsafe { c_abi::realloc(p, size, ptr::null(), 0) }).unwrap_or(ptr::null_mut())
}

/// Sends every wolfSSL allocation of this process to `hooks` (16-byte aligned, as the
/// contract of [`AllocatorHooks`] requires: OpenSIPS saw wolfSSL crash on 8-byte
/// alignment). Must run before this backend's first use (domain, session or random
/// bytes); afterwards [`Error::HookTooLate`] is returned, because wolfSSL would accept the
/// hooks but already holds state from the C allocator.
pub fn install_allocator_hooks(hooks: &'static dyn AllocatorHooks) -> Result<(), Error> {
    if LIBRARY_USED.load(Ordering::SeqCst) {
        return Err(Error::HookTooLate { hook: "allocator" });
    }
    c_abi::set_process_hooks(hooks).map_err(|_| Error::HookTooLate { hook: "allocator (other hooks installed)" })?;
    // SAFETY: the three functions have the C signatures wolfSSL expects, never unwind
    // (c_abi catches panics) and route to `hooks`, which lives for the whole process.
    crate::cvt::wc_ok(unsafe { w::wolfSSL_SetAllocators(Some(hook_malloc), Some(hook_free), Some(hook_realloc)) })
        .failed("wolfSSL_SetAllocators")
}
