//! Return-value helpers for the calls this backend makes through the -sys crate directly
//! (the ones rust-openssl and boring do not wrap), after rust-openssl's own `cvt`,
//! `cvt_long` and `cvt_p`: each turns a C return convention into a `Result` whose error is
//! the thread's OpenSSL error queue, so a call site reads as one line with `?`. Callers
//! map the [`ErrorStack`] to the sipstls error they already produced.
//!
//! Taking the queue on failure also leaves no stale entry behind for a later
//! `SSL_get_error` to mistake for a failure of its own call.

use std::ffi::c_int;
#[cfg(not(feature = "boring"))]
use std::ffi::c_long;
use std::ptr::NonNull;

use crate::ssl_lib::error::ErrorStack;

/// Most libssl and libcrypto calls: 1 (or another positive value) on success, 0 or a
/// negative value on failure with the reasons on the error queue.
pub(crate) fn cvt(r: c_int) -> Result<c_int, ErrorStack> {
    if r <= 0 {
        Err(ErrorStack::get())
    } else {
        Ok(r)
    }
}

/// `SSL_ctrl` / `SSL_CTX_ctrl` commands that report success as [`cvt`] does, in a `long`.
#[cfg(not(feature = "boring"))]
pub(crate) fn cvt_long(r: c_long) -> Result<c_long, ErrorStack> {
    if r <= 0 {
        Err(ErrorStack::get())
    } else {
        Ok(r)
    }
}

/// Constructors and decoders (`d2i_*`, `*_new`): a new object, or null with the reasons
/// on the error queue.
pub(crate) fn cvt_p<T>(p: *mut T) -> Result<NonNull<T>, ErrorStack> {
    NonNull::new(p).ok_or_else(ErrorStack::get)
}
