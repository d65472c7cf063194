//! OpenSSL (or BoringSSL) errors mapped onto sipstls's. The `X509_V_ERR_*` codes used here
//! are the same in both libraries; the `SSL_R_*` reason codes differ, so each library has
//! its table in [`reasons`].

use sipstls_core::{Alert, CertificateError, Error, ProtocolErrorKind};

use crate::ssl_lib::error::ErrorStack;
use crate::ssl_lib::ffi;
use crate::ssl_lib::x509::X509VerifyResult;
use crate::ssl_lib::{verify_code, verify_text};
use crate::NAME;

/// `SSL_AD_REASON_OFFSET`: alert reasons are 1000 + the alert number (both libraries).
const ALERT_OFFSET: i32 = ffi::SSL_AD_REASON_OFFSET;

/// OpenSSL 3's `SSL_R_*` reason codes, by meaning (defined in [`crate::consts::ssl_r`]
/// from `sslerr.h`: openssl-sys has none).
#[cfg(not(feature = "boring"))]
mod reasons {
    use crate::consts::ssl_r::*;
    /// `ERR_LIB_SSL`.
    pub const LIB_SSL: i32 = crate::consts::ERR_LIB_SSL;
    pub const VERIFY_FAILED: &[i32] = &[SSL_R_CERTIFICATE_VERIFY_FAILED];
    pub const NO_PEER_CERT: &[i32] = &[SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE];
    pub const RECORD_OVERFLOW: &[i32] =
        &[SSL_R_DATA_LENGTH_TOO_LONG, SSL_R_ENCRYPTED_LENGTH_TOO_LONG, SSL_R_PACKET_LENGTH_TOO_LONG];
    pub const UNEXPECTED: &[i32] = &[SSL_R_UNEXPECTED_MESSAGE, SSL_R_UNEXPECTED_RECORD];
    pub const HANDSHAKE_FAILURE: &[i32] = &[
        SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM,
        SSL_R_VERSION_TOO_HIGH,
        SSL_R_NO_PROTOCOLS_AVAILABLE,
        SSL_R_NO_SHARED_CIPHER,
        SSL_R_NO_APPLICATION_PROTOCOL,
        SSL_R_UNSUPPORTED_PROTOCOL,
        SSL_R_UNSUPPORTED_SSL_VERSION,
        SSL_R_WRONG_SSL_VERSION,
        SSL_R_VERSION_TOO_LOW,
        SSL_R_NO_SHARED_GROUPS,
    ];
    pub const DECRYPT: &[i32] = &[SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC];
    pub const MALFORMED: &[i32] = &[
        SSL_R_BAD_PACKET_LENGTH,
        SSL_R_HTTP_REQUEST,
        SSL_R_LENGTH_MISMATCH,
        SSL_R_RECORD_LENGTH_MISMATCH,
        SSL_R_BAD_PACKET,
        SSL_R_UNKNOWN_PROTOCOL,
        SSL_R_WRONG_VERSION_NUMBER,
        SSL_R_BAD_LENGTH,
        SSL_R_RECORD_TOO_SMALL,
        SSL_R_BAD_RECORD_TYPE,
    ];
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
        ffi::X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
        | ffi::X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
        | ffi::X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
        | ffi::X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        | ffi::X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE => CertificateError::UnknownIssuer,
        ffi::X509_V_ERR_CERT_NOT_YET_VALID => CertificateError::NotYetValid,
        ffi::X509_V_ERR_CERT_HAS_EXPIRED => CertificateError::Expired,
        ffi::X509_V_ERR_CERT_SIGNATURE_FAILURE | ffi::X509_V_ERR_CRL_SIGNATURE_FAILURE => {
            CertificateError::BadSignature
        }
        ffi::X509_V_ERR_CERT_CHAIN_TOO_LONG => CertificateError::ChainTooLong,
        ffi::X509_V_ERR_CERT_REVOKED => CertificateError::Revoked,
        ffi::X509_V_ERR_INVALID_CA | ffi::X509_V_ERR_INVALID_PURPOSE | ffi::X509_V_ERR_CERT_REJECTED => {
            CertificateError::InvalidPurpose
        }
        ffi::X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE
        | ffi::X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE
        | ffi::X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY
        | ffi::X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD
        | ffi::X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD
        | ffi::X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD
        | ffi::X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD => CertificateError::Malformed,
        ffi::X509_V_ERR_HOSTNAME_MISMATCH | ffi::X509_V_ERR_IP_ADDRESS_MISMATCH => {
            CertificateError::NameMismatch { expected: expected.unwrap_or_default().to_owned() }
        }
        _ => CertificateError::Other(verify_text(&v).to_owned()),
    }
}

/// Maps the error stack of a failed SSL call. `verify` is the session's verification
/// result, consulted when OpenSSL reports a certificate failure.
pub(crate) fn map_stack(stack: Option<&ErrorStack>, verify: X509VerifyResult, expected: Option<&str>) -> Error {
    let Some(stack) = stack else {
        if verify_code(&verify) != ffi::X509_V_OK {
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
