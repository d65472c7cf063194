//! Mbed TLS error codes mapped onto sipstls's errors.

use std::ffi::c_int;

use sipstls_core::{Alert, CertificateError, Error, ProtocolErrorKind};
use sipstls_mbedtls_sys as sys;

use crate::NAME;

/// The library's description of an error code, with the code.
pub(crate) fn describe(code: c_int) -> String {
    let mut buf = [0u8; 160];
    // SAFETY: the function writes a NUL-terminated string of at most `buf.len()` bytes.
    unsafe { sys::strerror(code, buf.as_mut_ptr().cast(), buf.len()) };
    let text = std::ffi::CStr::from_bytes_until_nul(&buf).map(|c| c.to_string_lossy().into_owned()).unwrap_or_default();
    format!("{text} (-0x{:04X})", code.unsigned_abs())
}

/// An error without a better mapping.
pub(crate) fn backend(code: c_int) -> Error {
    Error::Backend { library: NAME, message: describe(code) }
}

/// `X509_BADCERT_*` flags of a failed verification, most telling first.
pub(crate) fn map_verify_flags(flags: u32, chain_too_long: bool, expected: Option<&str>) -> CertificateError {
    let has = |f: c_int| flags & (f as u32) != 0;
    if chain_too_long {
        CertificateError::ChainTooLong
    } else if has(sys::X509_BADCERT_NOT_TRUSTED) || has(sys::X509_BADCERT_MISSING) {
        CertificateError::UnknownIssuer
    } else if has(sys::X509_BADCERT_EXPIRED) {
        CertificateError::Expired
    } else if has(sys::X509_BADCERT_FUTURE) {
        CertificateError::NotYetValid
    } else if has(sys::X509_BADCERT_REVOKED) {
        CertificateError::Revoked
    } else if has(sys::X509_BADCERT_CN_MISMATCH) {
        CertificateError::NameMismatch { expected: expected.unwrap_or_default().to_owned() }
    } else if has(sys::X509_BADCERT_KEY_USAGE)
        || has(sys::X509_BADCERT_EXT_KEY_USAGE)
        || has(sys::X509_BADCERT_NS_CERT_TYPE)
    {
        CertificateError::InvalidPurpose
    } else if has(sys::X509_BADCRL_NOT_TRUSTED) {
        CertificateError::Other("no CRL for the certificate's issuer (revocation status unknown)".into())
    } else {
        CertificateError::Other(format!("Mbed TLS verification flags 0x{flags:08X}"))
    }
}

/// What the session knows when a call fails, for a precise mapping.
pub(crate) struct Context<'a> {
    /// The alert in the last record received (for `ERR_SSL_FATAL_ALERT_MESSAGE`).
    pub(crate) received_alert: Option<u8>,
    /// A fatal alert this side sent in the clear (during the handshake), if any.
    pub(crate) sent_alert: Option<u8>,
    /// Verification flags collected by the verify callback.
    pub(crate) verify_flags: u32,
    pub(crate) chain_too_long: bool,
    pub(crate) expected: Option<&'a str>,
}

fn kind_from_sent_alert(alert: Option<u8>) -> ProtocolErrorKind {
    match alert {
        Some(40 | 70 | 71 | 86 | 109 | 110 | 112 | 120) => ProtocolErrorKind::HandshakeFailure,
        Some(10) => ProtocolErrorKind::UnexpectedMessage,
        Some(20) => ProtocolErrorKind::DecryptFailure,
        Some(22) => ProtocolErrorKind::RecordOverflow,
        _ => ProtocolErrorKind::Malformed,
    }
}

/// Maps the return code of a failed handshake, read or write call.
pub(crate) fn map(code: c_int, cx: &Context<'_>) -> Error {
    let detail = describe(code);
    let kind = match code {
        sys::ERR_SSL_FATAL_ALERT_MESSAGE => {
            return match cx.received_alert {
                Some(a) => Error::AlertReceived(Alert(a)),
                None => Error::protocol(ProtocolErrorKind::Other, detail),
            }
        }
        sys::ERR_X509_CERT_VERIFY_FAILED | sys::ERR_X509_FATAL_ERROR | sys::ERR_SSL_BAD_CERTIFICATE
            if cx.verify_flags != 0 || cx.chain_too_long =>
        {
            return Error::Certificate(map_verify_flags(cx.verify_flags, cx.chain_too_long, cx.expected));
        }
        sys::ERR_SSL_NO_CLIENT_CERTIFICATE => return Error::PeerCertificateRequired,
        sys::ERR_SSL_INVALID_MAC => ProtocolErrorKind::DecryptFailure,
        sys::ERR_SSL_UNEXPECTED_MESSAGE | sys::ERR_SSL_UNEXPECTED_RECORD | sys::ERR_SSL_NON_FATAL => {
            ProtocolErrorKind::UnexpectedMessage
        }
        sys::ERR_SSL_BAD_PROTOCOL_VERSION | sys::ERR_SSL_HANDSHAKE_FAILURE | sys::ERR_SSL_NO_APPLICATION_PROTOCOL => {
            ProtocolErrorKind::HandshakeFailure
        }
        sys::ERR_SSL_INVALID_RECORD => kind_from_sent_alert(cx.sent_alert),
        sys::ERR_SSL_DECODE_ERROR => ProtocolErrorKind::Malformed,
        sys::ERR_SSL_ILLEGAL_PARAMETER => ProtocolErrorKind::Other,
        sys::ERR_SSL_UNSUPPORTED_EXTENSION => ProtocolErrorKind::UnexpectedMessage,
        sys::ERR_SSL_BAD_CERTIFICATE => return Error::Certificate(CertificateError::Other(detail)),
        // Other SSL-module codes (-0x6000 .. -0x7FFF): a protocol violation we cannot
        // classify more precisely.
        c if (-0x7FFF..=-0x6000).contains(&c) => ProtocolErrorKind::Other,
        c => return backend(c),
    };
    Error::Protocol { kind, detail }
}
