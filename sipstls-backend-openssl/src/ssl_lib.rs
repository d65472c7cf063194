//! The library under the backend: rust-openssl on the system OpenSSL (feature `openssl`)
//! or boring on BoringSSL (feature `boring`). Both crates have the same module names
//! (`ssl`, `x509`, `pkey`, ...), so the rest of the crate names `crate::ssl_lib::ssl`
//! and compiles against either; `#[cfg(feature = "boring")]` marks where the APIs differ.

#[cfg(feature = "boring")]
pub(crate) use boring::*;
#[cfg(feature = "boring")]
pub(crate) use boring_sys as ffi;
#[cfg(feature = "boring")]
pub(crate) use foreign_types_shared_03::{ForeignType, ForeignTypeRef};

#[cfg(not(feature = "boring"))]
pub(crate) use foreign_types_shared::{ForeignType, ForeignTypeRef};
#[cfg(not(feature = "boring"))]
pub(crate) use openssl::*;
#[cfg(not(feature = "boring"))]
pub(crate) use openssl_sys as ffi;

use x509::X509VerifyResult;

/// The raw `X509_V_*` code of a verification result (`X509_V_OK`: OK). rust-openssl has a struct
/// with `OK`; boring a `Result<(), X509VerifyError>`.
pub(crate) fn verify_code(v: &X509VerifyResult) -> i32 {
    #[cfg(feature = "boring")]
    return v.as_ref().err().map_or(ffi::X509_V_OK, |e| e.as_raw());
    #[cfg(not(feature = "boring"))]
    return v.as_raw();
}

/// The library's text for a verification result.
pub(crate) fn verify_text(v: &X509VerifyResult) -> &'static str {
    #[cfg(feature = "boring")]
    return v.as_ref().err().map_or("ok", |e| e.error_string());
    #[cfg(not(feature = "boring"))]
    return v.error_string();
}

/// `X509_V_ERR_HOSTNAME_MISMATCH` (62 in both libraries).
pub(crate) fn hostname_mismatch() -> X509VerifyResult {
    // SAFETY: X509_V_ERR_HOSTNAME_MISMATCH is a valid verification result code in OpenSSL
    // and BoringSSL.
    #[cfg(feature = "boring")]
    return unsafe { x509::X509VerifyError::from_raw(ffi::X509_V_ERR_HOSTNAME_MISMATCH) };
    // SAFETY: as above.
    #[cfg(not(feature = "boring"))]
    return unsafe { X509VerifyResult::from_raw(ffi::X509_V_ERR_HOSTNAME_MISMATCH) };
}

/// The method of a server context.
pub(crate) fn server_method() -> ssl::SslMethod {
    #[cfg(feature = "boring")]
    return ssl::SslMethod::tls();
    #[cfg(not(feature = "boring"))]
    return ssl::SslMethod::tls_server();
}

/// The method of a client context.
pub(crate) fn client_method() -> ssl::SslMethod {
    #[cfg(feature = "boring")]
    return ssl::SslMethod::tls();
    #[cfg(not(feature = "boring"))]
    return ssl::SslMethod::tls_client();
}

/// `SSL_set_accept_state` (boring wraps it only on `SslStreamBuilder`).
pub(crate) fn set_accept_state(ssl: &mut ssl::SslRef) {
    // SAFETY: `ssl.as_ptr()` is the live SSL this reference borrows; the call sets its role.
    #[cfg(feature = "boring")]
    unsafe {
        ffi::SSL_set_accept_state(ssl.as_ptr())
    };
    #[cfg(not(feature = "boring"))]
    ssl.set_accept_state();
}

/// `SSL_set_connect_state` (boring wraps it only on `SslStreamBuilder`).
pub(crate) fn set_connect_state(ssl: &mut ssl::SslRef) {
    // SAFETY: `ssl.as_ptr()` is the live SSL this reference borrows; the call sets its role.
    #[cfg(feature = "boring")]
    unsafe {
        ffi::SSL_set_connect_state(ssl.as_ptr())
    };
    #[cfg(not(feature = "boring"))]
    ssl.set_connect_state();
}
