//! Routing OpenSSL's allocations to [`AllocatorHooks`] (`CRYPTO_set_mem_functions`,
//! which openssl-sys does not bind). BoringSSL has no such call: with the feature `boring`
//! installation is refused with [`Error::Unsupported`] (no `ALLOCATOR_HOOK` capability).

#[cfg(not(feature = "boring"))]
use std::ffi::{c_char, c_int, c_void};

#[cfg(not(feature = "boring"))]
use sipstls_core::hooks::c_abi;
use sipstls_core::hooks::AllocatorHooks;
use sipstls_core::Error;

#[cfg(not(feature = "boring"))]
mod ffi {

    use super::*;
    pub type MallocFn = unsafe extern "C" fn(usize, *const c_char, c_int) -> *mut c_void;
    pub type ReallocFn = unsafe extern "C" fn(*mut c_void, usize, *const c_char, c_int) -> *mut c_void;
    pub type FreeFn = unsafe extern "C" fn(*mut c_void, *const c_char, c_int);

    extern "C" {
        pub fn CRYPTO_set_mem_functions(m: Option<MallocFn>, r: Option<ReallocFn>, f: Option<FreeFn>) -> c_int;
    }
}

/// Sends every OpenSSL allocation of this process to `hooks`. Must run before OpenSSL's
/// first allocation (before any other sipstls or `openssl` call); afterwards OpenSSL
/// refuses and [`Error::HookTooLate`] is returned.
#[cfg(not(feature = "boring"))]
pub fn install_allocator_hooks(hooks: &'static dyn AllocatorHooks) -> Result<(), Error> {
    c_abi::set_process_hooks(hooks).map_err(|_| Error::HookTooLate { hook: "allocator (other hooks installed)" })?;
    // SAFETY: the three functions have the C signatures OpenSSL expects, never unwind, and
    // route to `hooks`, which lives for the whole process ('static).
    let installed =
        unsafe { ffi::CRYPTO_set_mem_functions(Some(c_abi::malloc), Some(c_abi::realloc), Some(c_abi::free)) };
    // A C boolean: 0 once OpenSSL has allocated. No error queue entry (so no `cvt`, which
    // would take the queue and initialise OpenSSL on the way).
    if installed != 0 {
        Ok(())
    } else {
        Err(Error::HookTooLate { hook: "allocator" })
    }
}

/// BoringSSL takes no allocator functions at run time (it offers only link-time
/// `OPENSSL_memory_*` symbols): always [`Error::Unsupported`].
#[cfg(feature = "boring")]
pub fn install_allocator_hooks(hooks: &'static dyn AllocatorHooks) -> Result<(), Error> {
    let _ = hooks;
    Err(Error::unsupported(
        crate::NAME,
        sipstls_core::Capabilities::ALLOCATOR_HOOK,
        "allocator hooks (BoringSSL has no CRYPTO_set_mem_functions)",
    ))
}
