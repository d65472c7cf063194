//! OpenSSL (or BoringSSL) errors mapped onto sipstls's. The `X509_V_ERR_*` codes used here
//! are the same in both libraries; the `SSL_R_*` reason codes differ, so each library has
//! its table in [`reasons`].

use sipstls_core::{Alert, CertificateError, Error, ProtocolErrorKind};

use crate::ssl_lib::error::ErrorStack;
use crate::ssl_lib::x509::X509VerifyResult;
use crate::ssl_lib::{verify_code, verify_text};
use crate::NAME;

/// `SSL_AD_REASON_OFFSET`: alert reasons are 1000 + the alert number (both libraries).
const ALERT_OFFSET: i32 = 1000;

/// OpenSSL 3's `SSL_R_*` reason codes, by meaning (names in `sslerr.h`).
#[cfg(not(feature = "boring"))]
mod reasons {
    /// `ERR_LIB_SSL`.
    pub const LIB_SSL: i32 = 20;
    /// CERTIFICATE_VERIFY_FAILED.
    pub const VERIFY_FAILED: &[i32] = &[134];
    /// PEER_DID_NOT_RETURN_A_CERTIFICATE.
    pub const NO_PEER_CERT: &[i32] = &[199];
    /// DATA_LENGTH_TOO_LONG, ENCRYPTED_LENGTH_TOO_LONG, PACKET_LENGTH_TOO_LONG.
    pub const RECORD_OVERFLOW: &[i32] = &[146, 150, 198];
    /// UNEXPECTED_MESSAGE, UNEXPECTED_RECORD.
    pub const UNEXPECTED: &[i32] = &[244, 245];
    /// NO_SUITABLE_SIGNATURE_ALGORITHM, VERSION_TOO_HIGH, NO_PROTOCOLS_AVAILABLE, NO_SHARED_CIPHER,
    /// NO_APPLICATION_PROTOCOL, UNSUPPORTED_PROTOCOL, UNSUPPORTED_SSL_VERSION, WRONG_SSL_VERSION,
    /// VERSION_TOO_LOW, NO_SHARED_GROUPS.
    pub const HANDSHAKE_FAILURE: &[i32] = &[118, 166, 191, 193, 235, 258, 259, 266, 396, 410];
    /// DECRYPTION_FAILED_OR_BAD_RECORD_MAC.
    pub const DECRYPT: &[i32] = &[281];
    /// BAD_PACKET_LENGTH, HTTP_REQUEST, LENGTH_MISMATCH, RECORD_LENGTH_MISMATCH, BAD_PACKET,
    /// UNKNOWN_PROTOCOL, WRONG_VERSION_NUMBER, BAD_LENGTH, RECORD_TOO_SMALL, BAD_RECORD_TYPE.
    pub const MALFORMED: &[i32] = &[115, 156, 159, 213, 240, 252, 267, 271, 298, 443];
}

/// BoringSSL's `SSL_R_*` reason codes, by meaning, from boring-sys's bindings.
#[cfg(feature = "boring")]
mod reasons {
    use crate::ssl_lib::ffi as f;
    /// `ERR_LIB_SSL`.
    pub const LIB_SSL: i32 = f::ERR_LIB_SSL.0 as i32;
    pub const VERIFY_FAILED: &[i32] = &[f::SSL_R_CERTIFICATE_VERIFY_FAILED];
    pub const NO_PEER_CERT: &[i32] = &[f::SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE];
    pub const RECORD_OVERFLOW: &[i32] = &[
        f::SSL_R_DATA_LENGTH_TOO_LONG,
        f::SSL_R_ENCRYPTED_LENGTH_TOO_LONG,
        f::SSL_R_RECORD_TOO_LARGE,
        f::SSL_R_EXCESSIVE_MESSAGE_SIZE,
    ];
    pub const UNEXPECTED: &[i32] = &[f::SSL_R_UNEXPECTED_MESSAGE, f::SSL_R_UNEXPECTED_RECORD];
    pub const HANDSHAKE_FAILURE: &[i32] = &[
        f::SSL_R_NO_COMMON_SIGNATURE_ALGORITHMS,
        f::SSL_R_UNSUPPORTED_PROTOCOL,
        f::SSL_R_NO_SUPPORTED_VERSIONS_ENABLED,
        f::SSL_R_NO_SHARED_CIPHER,
        f::SSL_R_NO_APPLICATION_PROTOCOL,
        f::SSL_R_UNKNOWN_SSL_VERSION,
        f::SSL_R_WRONG_SSL_VERSION,
        f::SSL_R_NO_SHARED_GROUP,
        f::SSL_R_MISSING_KEY_SHARE,
    ];
    pub const DECRYPT: &[i32] = &[f::SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC, f::SSL_R_DECRYPTION_FAILED];
    pub const MALFORMED: &[i32] = &[
        f::SSL_R_BAD_PACKET_LENGTH,
        f::SSL_R_HTTP_REQUEST,
        f::SSL_R_HTTPS_PROXY_REQUEST,
        f::SSL_R_LENGTH_MISMATCH,
        f::SSL_R_RECORD_LENGTH_MISMATCH,
        f::SSL_R_UNKNOWN_PROTOCOL,
        f::SSL_R_WRONG_VERSION_NUMBER,
        f::SSL_R_BAD_LENGTH,
        f::SSL_R_DECODE_ERROR,
        f::SSL_R_INVALID_OUTER_RECORD_TYPE,
        f::SSL_R_CLIENTHELLO_PARSE_FAILED,
        f::SSL_R_PARSE_TLSEXT,
    ];
}

/// Maps an X.509 verification result (`X509_V_ERR_*`).
pub(crate) fn map_verify_result(v: X509VerifyResult, expected: Option<&str>) -> CertificateError {
    match verify_code(&v) {
        2 | 18 | 19 | 20 | 21 => CertificateError::UnknownIssuer,
        9 => CertificateError::NotYetValid,
        10 => CertificateError::Expired,
        7 | 8 => CertificateError::BadSignature,
        22 => CertificateError::ChainTooLong,
        23 => CertificateError::Revoked,
        24 | 26 | 28 => CertificateError::InvalidPurpose,
        4 | 5 | 6 | 13 | 14 | 15 | 16 => CertificateError::Malformed,
        62 | 64 => CertificateError::NameMismatch { expected: expected.unwrap_or_default().to_owned() },
        _ => CertificateError::Other(verify_text(&v).to_owned()),
    }
}

/// Maps the error stack of a failed SSL call. `verify` is the session's verification
/// result, consulted when OpenSSL reports a certificate failure.
pub(crate) fn map_stack(stack: Option<&ErrorStack>, verify: X509VerifyResult, expected: Option<&str>) -> Error {
    let Some(stack) = stack else {
        if verify_code(&verify) != 0 {
            return Error::Certificate(map_verify_result(verify, expected));
        }
        return Error::Backend { library: NAME, message: "TLS failure without an error report".into() };
    };
    for e in stack.errors() {
        if e.library_code() != reasons::LIB_SSL {
            continue;
        }
        let reason = e.reason_code();
        let detail = e.reason().unwrap_or("unknown").to_owned();
        let kind = match reason {
            r if (ALERT_OFFSET..ALERT_OFFSET + 256).contains(&r) => {
                return Error::AlertReceived(Alert((r - ALERT_OFFSET) as u8));
            }
            r if reasons::VERIFY_FAILED.contains(&r) => return Error::Certificate(map_verify_result(verify, expected)),
            r if reasons::NO_PEER_CERT.contains(&r) => return Error::PeerCertificateRequired,
            r if reasons::RECORD_OVERFLOW.contains(&r) => ProtocolErrorKind::RecordOverflow,
            r if reasons::UNEXPECTED.contains(&r) => ProtocolErrorKind::UnexpectedMessage,
            r if reasons::HANDSHAKE_FAILURE.contains(&r) => ProtocolErrorKind::HandshakeFailure,
            r if reasons::DECRYPT.contains(&r) => ProtocolErrorKind::DecryptFailure,
            r if reasons::MALFORMED.contains(&r) => ProtocolErrorKind::Malformed,
            _ => ProtocolErrorKind::Other,
        };
        return Error::Protocol { kind, detail };
    }
    Error::Backend { library: NAME, message: stack.to_string() }
}
