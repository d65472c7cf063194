//! OpenSSL errors mapped onto sipstls's.

use openssl::error::ErrorStack;
use openssl::x509::X509VerifyResult;
use sipstls_core::{Alert, CertificateError, Error, ProtocolErrorKind};

use crate::NAME;

/// `ERR_LIB_SSL`.
const LIB_SSL: i32 = 20;
/// `SSL_AD_REASON_OFFSET`: alert reasons are 1000 + the alert number.
const ALERT_OFFSET: i32 = 1000;

/// Maps an X.509 verification result (`X509_V_ERR_*`).
pub(crate) fn map_verify_result(v: X509VerifyResult, expected: Option<&str>) -> CertificateError {
    match v.as_raw() {
        2 | 18 | 19 | 20 | 21 => CertificateError::UnknownIssuer,
        9 => CertificateError::NotYetValid,
        10 => CertificateError::Expired,
        7 | 8 => CertificateError::BadSignature,
        22 => CertificateError::ChainTooLong,
        23 => CertificateError::Revoked,
        24 | 26 | 28 => CertificateError::InvalidPurpose,
        4 | 5 | 6 | 13 | 14 | 15 | 16 => CertificateError::Malformed,
        62 | 64 => CertificateError::NameMismatch { expected: expected.unwrap_or_default().to_owned() },
        _ => CertificateError::Other(v.error_string().to_owned()),
    }
}

/// Maps the error stack of a failed SSL call. `verify` is the session's verification
/// result, consulted when OpenSSL reports a certificate failure.
pub(crate) fn map_stack(stack: Option<&ErrorStack>, verify: X509VerifyResult, expected: Option<&str>) -> Error {
    let Some(stack) = stack else {
        if verify != X509VerifyResult::OK {
            return Error::Certificate(map_verify_result(verify, expected));
        }
        return Error::Backend { library: NAME, message: "TLS failure without an error report".into() };
    };
    for e in stack.errors() {
        if e.library_code() != LIB_SSL {
            continue;
        }
        let reason = e.reason_code();
        let detail = e.reason().unwrap_or("unknown").to_owned();
        let kind = match reason {
            r if (ALERT_OFFSET..ALERT_OFFSET + 256).contains(&r) => {
                return Error::AlertReceived(Alert((r - ALERT_OFFSET) as u8));
            }
            134 => return Error::Certificate(map_verify_result(verify, expected)),
            199 => return Error::PeerCertificateRequired,
            146 | 150 | 198 => ProtocolErrorKind::RecordOverflow,
            244 | 245 => ProtocolErrorKind::UnexpectedMessage,
            118 | 166 | 191 | 193 | 235 | 258 | 259 | 266 | 396 | 410 => ProtocolErrorKind::HandshakeFailure,
            281 => ProtocolErrorKind::DecryptFailure,
            115 | 156 | 159 | 213 | 240 | 252 | 267 | 271 | 298 | 443 => ProtocolErrorKind::Malformed,
            _ => ProtocolErrorKind::Other,
        };
        return Error::Protocol { kind, detail };
    }
    Error::Backend { library: NAME, message: stack.to_string() }
}
