//! wolfSSL error codes mapped onto sipstls's errors.

use std::ffi::{c_char, c_ulong, CStr};

use sipstls_core::{CertificateError, Error, ProtocolErrorKind};
use sipstls_wolfssl_sys as w;

use crate::NAME;

/// The library's description of an error code, for logs.
pub(crate) fn describe(code: i32) -> String {
    let mut buf = [0 as c_char; 128];
    // SAFETY: `buf` is writable for its whole length, which is passed; wolfSSL writes a
    // NUL-terminated string of at most that length.
    unsafe { w::wolfSSL_ERR_error_string_n(code as c_ulong, buf.as_mut_ptr(), buf.len() as c_ulong) };
    // SAFETY: the buffer was zeroed and wolfSSL NUL-terminates within it.
    let s = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned();
    format!("{s} ({code})")
}

/// Maps a certificate verification error (the `error` of the verify callback's store).
pub(crate) fn map_cert_error(code: i32, expected: Option<&str>) -> CertificateError {
    match code {
        w::wolfCrypt_ErrorCodes_ASN_NO_SIGNER_E => CertificateError::UnknownIssuer,
        w::wolfCrypt_ErrorCodes_ASN_AFTER_DATE_E => CertificateError::Expired,
        w::wolfCrypt_ErrorCodes_ASN_BEFORE_DATE_E => CertificateError::NotYetValid,
        w::wolfCrypt_ErrorCodes_ASN_SIG_CONFIRM_E
        | w::wolfCrypt_ErrorCodes_ASN_SIG_HASH_E
        | w::wolfCrypt_ErrorCodes_ASN_SIG_KEY_E => CertificateError::BadSignature,
        w::wolfSSL_ErrorCodes_MAX_CHAIN_ERROR => CertificateError::ChainTooLong,
        w::wolfSSL_ErrorCodes_CRL_CERT_REVOKED | w::wolfSSL_ErrorCodes_OCSP_CERT_REVOKED => CertificateError::Revoked,
        w::wolfSSL_ErrorCodes_KEYUSE_SIGNATURE_E
        | w::wolfSSL_ErrorCodes_KEYUSE_ENCIPHER_E
        | w::wolfSSL_ErrorCodes_EXTKEYUSE_AUTH_E
        | w::wolfSSL_ErrorCodes_NOT_CA_ERROR => CertificateError::InvalidPurpose,
        w::wolfSSL_ErrorCodes_DOMAIN_NAME_MISMATCH | w::wolfSSL_ErrorCodes_IPADDR_MISMATCH => {
            CertificateError::NameMismatch { expected: expected.unwrap_or_default().to_owned() }
        }
        c if (-299..=-100).contains(&c) => CertificateError::Malformed,
        c => CertificateError::Other(describe(c)),
    }
}

/// Maps the error of a failed wolfSSL call. `cert` is what our verify callback recorded,
/// `alert_rx` the fatal alert received from the peer, if any.
pub(crate) fn map_error(code: i32, cert: Option<&CertificateError>, alert_rx: Option<u8>) -> Error {
    if let Some(c) = cert {
        return Error::Certificate(c.clone());
    }
    let kind = match code {
        w::wolfSSL_ErrorCodes_FATAL_ERROR => {
            if let Some(a) = alert_rx {
                return Error::AlertReceived(sipstls_core::Alert(a));
            }
            ProtocolErrorKind::Other
        }
        w::wolfSSL_ErrorCodes_NO_PEER_CERT => return Error::PeerCertificateRequired,
        w::wolfSSL_ErrorCodes_MEMORY_ERROR | w::wolfCrypt_ErrorCodes_MEMORY_E => {
            return Error::Backend { library: NAME, message: describe(code) }
        }
        w::wolfCrypt_ErrorCodes_ASN_NO_SIGNER_E
        | w::wolfCrypt_ErrorCodes_ASN_AFTER_DATE_E
        | w::wolfCrypt_ErrorCodes_ASN_BEFORE_DATE_E
        | w::wolfCrypt_ErrorCodes_ASN_SIG_CONFIRM_E
        | w::wolfSSL_ErrorCodes_DOMAIN_NAME_MISMATCH
        | w::wolfSSL_ErrorCodes_IPADDR_MISMATCH
        | w::wolfSSL_ErrorCodes_MAX_CHAIN_ERROR => return Error::Certificate(map_cert_error(code, None)),
        w::wolfSSL_ErrorCodes_LENGTH_ERROR
        | w::wolfSSL_ErrorCodes_RECV_OVERFLOW_E
        | w::wolfSSL_ErrorCodes_HANDSHAKE_SIZE_ERROR => ProtocolErrorKind::RecordOverflow,
        w::wolfSSL_ErrorCodes_OUT_OF_ORDER_E
        | w::wolfSSL_ErrorCodes_SANITY_MSG_E
        | w::wolfSSL_ErrorCodes_DUPLICATE_MSG_E
        | w::wolfSSL_ErrorCodes_NO_CHANGE_CIPHER_E
        | w::wolfSSL_ErrorCodes_UNKNOWN_HANDSHAKE_TYPE => ProtocolErrorKind::UnexpectedMessage,
        w::wolfSSL_ErrorCodes_VERSION_ERROR
        | w::wolfSSL_ErrorCodes_MATCH_SUITE_ERROR
        | w::wolfSSL_ErrorCodes_UNSUPPORTED_SUITE
        | w::wolfSSL_ErrorCodes_UNKNOWN_ALPN_PROTOCOL_NAME_E
        | w::wolfSSL_ErrorCodes_UNSUPPORTED_PROTO_VERSION
        | w::wolfSSL_ErrorCodes_KEY_SHARE_ERROR
        | w::wolfSSL_ErrorCodes_BAD_KEY_SHARE_DATA
        | w::wolfSSL_ErrorCodes_EXT_MISSING
        | w::wolfSSL_ErrorCodes_ECC_PEERKEY_ERROR
        | w::wolfSSL_ErrorCodes_EXT_MASTER_SECRET_NEEDED_E => ProtocolErrorKind::HandshakeFailure,
        w::wolfSSL_ErrorCodes_VERIFY_MAC_ERROR
        | w::wolfSSL_ErrorCodes_DECRYPT_ERROR
        | w::wolfSSL_ErrorCodes_VERIFY_FINISHED_ERROR
        | w::wolfCrypt_ErrorCodes_AES_GCM_AUTH_E
        | w::wolfCrypt_ErrorCodes_MAC_CMP_FAILED_E => ProtocolErrorKind::DecryptFailure,
        w::wolfSSL_ErrorCodes_PARSE_ERROR
        | w::wolfSSL_ErrorCodes_UNKNOWN_RECORD_TYPE
        | w::wolfSSL_ErrorCodes_BUFFER_ERROR
        | w::wolfSSL_ErrorCodes_INCOMPLETE_DATA
        | w::wolfSSL_ErrorCodes_DECODE_E
        | w::wolfSSL_ErrorCodes_BAD_HELLO
        | w::wolfSSL_ErrorCodes_DUPLICATE_TLS_EXT_E
        | w::wolfSSL_ErrorCodes_EXT_NOT_ALLOWED => ProtocolErrorKind::Malformed,
        _ => ProtocolErrorKind::Other,
    };
    Error::Protocol { kind, detail: describe(code) }
}
