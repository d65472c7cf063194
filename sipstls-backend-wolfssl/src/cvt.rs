//! wolfSSL's and wolfCrypt's return conventions as `Result`s (the idea of rust-openssl's
//! `cvt`), and its status codes typed as the `c_int` the calls return, so a call site
//! reads as one line with `?` and compares with no number.
//!
//! - [`ok`]: most wolfSSL calls, `WOLFSSL_SUCCESS` (1) or an error code;
//! - [`wc_ok`]: wolfCrypt calls (and the few wolfSSL calls that follow them), `WC_SUCCESS`
//!   (0) or a negative error code;
//! - [`ptr`]: constructors, a new object or null.
//!
//! The failed code is a [`Code`]; [`Context`] turns it into the sipstls error each call
//! site reported before.

use std::ffi::c_int;
use std::ptr::NonNull;

use sipstls_core::{Error, Result};
use sipstls_wolfssl_sys as w;

use crate::{errors, NAME};

/// `WOLFSSL_SUCCESS`: most wolfSSL calls' success.
pub(crate) const SUCCESS: c_int = w::WOLFSSL_SUCCESS as c_int;
/// `WC_SUCCESS` (wolfCrypt's `error-crypt.h`): wolfCrypt's success.
pub(crate) const WC_SUCCESS: c_int = w::wolfCrypt_ErrorCodes_WC_SUCCESS;
/// `WOLFSSL_ERROR_WANT_READ` (from `wolfSSL_get_error`): more input needed.
pub(crate) const ERROR_WANT_READ: c_int = w::WOLFSSL_ERROR_WANT_READ as c_int;
/// `WOLFSSL_ERROR_WANT_WRITE` (from `wolfSSL_get_error`): output could not be written.
pub(crate) const ERROR_WANT_WRITE: c_int = w::WOLFSSL_ERROR_WANT_WRITE as c_int;
/// `WOLFSSL_ERROR_ZERO_RETURN` (from `wolfSSL_get_error`): the peer sent close_notify.
pub(crate) const ERROR_ZERO_RETURN: c_int = w::WOLFSSL_ERROR_ZERO_RETURN as c_int;
/// `alert_fatal`: the level of a fatal alert in a `WOLFSSL_ALERT`.
pub(crate) const ALERT_FATAL: c_int = w::AlertLevel_alert_fatal as c_int;

/// The return value of a failed wolfSSL or wolfCrypt call: an error code.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Code(pub(crate) c_int);

/// wolfSSL's convention: `WOLFSSL_SUCCESS`, or an error code.
pub(crate) fn ok(r: c_int) -> std::result::Result<(), Code> {
    if r == SUCCESS {
        Ok(())
    } else {
        Err(Code(r))
    }
}

/// wolfCrypt's convention (also `wolfSSL_CTX_no_ticket_TLSv13`, `wolfSSL_SetAllocators`):
/// `WC_SUCCESS`, or an error code.
pub(crate) fn wc_ok(r: c_int) -> std::result::Result<(), Code> {
    if r == WC_SUCCESS {
        Ok(())
    } else {
        Err(Code(r))
    }
}

/// A new object from a constructor, or [`Error::Backend`] "`call` failed" for null.
pub(crate) fn ptr<T>(p: *mut T, call: &str) -> Result<NonNull<T>> {
    NonNull::new(p).ok_or_else(|| Error::Backend { library: NAME, message: format!("{call} failed") })
}

/// The sipstls errors a failed code becomes.
pub(crate) trait Context<T> {
    /// [`Error::InvalidConfig`] of `setting`: "`what`: wolfSSL's description of the code".
    fn config(self, setting: &'static str, what: &str) -> Result<T>;
    /// [`Error::Backend`]: wolfSSL's description of the code.
    fn backend(self) -> Result<T>;
    /// [`Error::Backend`]: "`call` failed (code)".
    fn failed(self, call: &str) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, Code> {
    fn config(self, setting: &'static str, what: &str) -> Result<T> {
        self.map_err(|Code(r)| Error::config(setting, format!("{what}: {}", errors::describe(r))))
    }

    fn backend(self) -> Result<T> {
        self.map_err(|Code(r)| Error::Backend { library: NAME, message: errors::describe(r) })
    }

    fn failed(self, call: &str) -> Result<T> {
        self.map_err(|Code(r)| Error::Backend { library: NAME, message: format!("{call} failed ({r})") })
    }
}
