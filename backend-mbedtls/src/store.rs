//! [`DomainConfig::session_store`](sipstls_core::DomainConfig::session_store) on Mbed TLS:
//! the server's session cache callbacks (`mbedtls_ssl_conf_session_cache`) with sessions
//! serialized by `mbedtls_ssl_session_save` and restored by `mbedtls_ssl_session_load`
//! (which checks the format and this build's configuration, and refuses malformed data).
//!
//! Mbed TLS has no session id context: sessions are keyed by id only, so give each
//! domain its own store (or key prefix) when several share one Redis.

use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use mbedtls_sys as sys;
use sipstls_core::SessionStoreHandle;

/// The store a configuration's callbacks use; its address is Mbed TLS's `p_cache`.
pub(crate) struct StoreCtx(SessionStoreHandle);

/// Registers the callbacks for `store` on `conf`; the returned box must outlive `conf`.
///
/// # Safety
/// `conf` is a live configuration being built, exclusively the caller's.
pub(crate) unsafe fn install(conf: *mut sys::ssl_config, store: &SessionStoreHandle) -> Box<StoreCtx> {
    let ctx = Box::new(StoreCtx(store.clone()));
    // SAFETY: `conf` per the contract; `ctx` is boxed (stable address) and kept by the
    // caller for the configuration's life; both callbacks catch panics.
    unsafe {
        sys::ssl_conf_session_cache(conf, &*ctx as *const StoreCtx as *mut c_void, Some(get_cache), Some(set_cache))
    };
    ctx
}

/// Looks the session's id up and restores the session; 0 when found.
///
/// # Safety
/// Called by Mbed TLS with `data` the `StoreCtx` registered above and `session` a freshly
/// initialised session holding only the id.
unsafe extern "C" fn get_cache(data: *mut c_void, session: *mut sys::ssl_session) -> c_int {
    if data.is_null() || session.is_null() {
        return 1;
    }
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: per the contract.
        let (ctx, s) = unsafe { (&*(data as *const StoreCtx), &mut *session) };
        let id = &s.id[..s.id_len.min(s.id.len())];
        if id.is_empty() {
            return 1;
        }
        let Some(value) = ctx.0.get(id) else { return 1 };
        // SAFETY: `session` is fresh (only its id set, no allocation to leak); `value` is
        // readable for its length; on failure Mbed TLS frees what load allocated.
        let ret = unsafe { sys::ssl_session_load(session, value.as_ptr(), value.len()) };
        if ret != 0 {
            return 1;
        }
        // The stored session must be the one asked for.
        // SAFETY: `session` is still valid.
        let s = unsafe { &*session };
        if &s.id[..s.id_len.min(s.id.len())] == id {
            0
        } else {
            1
        }
    }))
    .unwrap_or(1)
}

/// Serializes the session and stores it under its id; 0 when stored.
///
/// # Safety
/// Called by Mbed TLS with `data` the `StoreCtx` and `session` the live session.
unsafe extern "C" fn set_cache(data: *mut c_void, session: *const sys::ssl_session) -> c_int {
    if data.is_null() || session.is_null() {
        return 1;
    }
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: per the contract.
        let (ctx, s) = unsafe { (&*(data as *const StoreCtx), &*session) };
        let id = &s.id[..s.id_len.min(s.id.len())];
        if id.is_empty() {
            return 1;
        }
        let mut len = 0usize;
        // SAFETY: a size query: no buffer, `len` receives the size needed.
        unsafe { sys::ssl_session_save(session, std::ptr::null_mut(), 0, &mut len) };
        if len == 0 || len > 64 * 1024 {
            return 1;
        }
        let mut buf = vec![0u8; len];
        // SAFETY: `buf` is writable for `len` bytes.
        let ret = unsafe { sys::ssl_session_save(session, buf.as_mut_ptr(), buf.len(), &mut len) };
        if ret != 0 || len > buf.len() {
            return 1;
        }
        if ctx.0.put(id, &buf[..len]) {
            0
        } else {
            1
        }
    }))
    .unwrap_or(1)
}
