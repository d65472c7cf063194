//! Constants of the C headers that the -sys crates do not bind, each defined once with the
//! header it comes from. Everything else is named from `ssl_lib::ffi` (openssl-sys or
//! boring-sys) at the call site.

#[cfg(not(feature = "boring"))]
use std::ffi::{c_int, c_long};

/// `SSL_CTRL_GET_NEGOTIATED_GROUP` (OpenSSL 3 `<openssl/ssl.h>`: 134), the command behind
/// the `SSL_get_negotiated_group` macro; openssl-sys binds neither.
#[cfg(not(feature = "boring"))]
pub(crate) const SSL_CTRL_GET_NEGOTIATED_GROUP: c_int = 134;

/// The `larg` of `SSL_CTRL_CHAIN_CERT` that takes a new reference to the certificate
/// (OpenSSL 3 `<openssl/ssl.h>`: `SSL_CTX_add1_chain_cert` passes 1, `add0` passes 0);
/// openssl-sys binds the command (`SSL_CTRL_CHAIN_CERT`) but not the macro.
#[cfg(not(feature = "boring"))]
pub(crate) const CHAIN_CERT_ADD1: c_long = 1;

/// `ERR_LIB_SSL` (OpenSSL 3 `<openssl/err.h>`: 20); openssl-sys binds only a few `ERR_LIB_*`.
#[cfg(not(feature = "boring"))]
pub(crate) const ERR_LIB_SSL: c_int = 20;

/// x448's TLS group id (IANA TLS Supported Groups, RFC 8446 section 4.2.7: 0x001E = 30).
/// BoringSSL does not implement x448, so boring-sys has no `SSL_GROUP_X448`.
#[cfg(feature = "boring")]
pub(crate) const SSL_GROUP_X448: u16 = 30;

/// OpenSSL 3's `SSL_R_*` reason codes that [`crate::errors`] maps (`<openssl/sslerr.h>`,
/// values there); openssl-sys binds none of them.
#[cfg(not(feature = "boring"))]
pub(crate) mod ssl_r {
    use std::ffi::c_int;

    pub const SSL_R_BAD_PACKET_LENGTH: c_int = 115;
    pub const SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM: c_int = 118;
    pub const SSL_R_CERTIFICATE_VERIFY_FAILED: c_int = 134;
    pub const SSL_R_DATA_LENGTH_TOO_LONG: c_int = 146;
    pub const SSL_R_ENCRYPTED_LENGTH_TOO_LONG: c_int = 150;
    pub const SSL_R_HTTP_REQUEST: c_int = 156;
    pub const SSL_R_LENGTH_MISMATCH: c_int = 159;
    pub const SSL_R_VERSION_TOO_HIGH: c_int = 166;
    pub const SSL_R_NO_PROTOCOLS_AVAILABLE: c_int = 191;
    pub const SSL_R_NO_SHARED_CIPHER: c_int = 193;
    pub const SSL_R_PACKET_LENGTH_TOO_LONG: c_int = 198;
    pub const SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE: c_int = 199;
    pub const SSL_R_RECORD_LENGTH_MISMATCH: c_int = 213;
    pub const SSL_R_NO_APPLICATION_PROTOCOL: c_int = 235;
    pub const SSL_R_BAD_PACKET: c_int = 240;
    pub const SSL_R_UNEXPECTED_MESSAGE: c_int = 244;
    pub const SSL_R_UNEXPECTED_RECORD: c_int = 245;
    pub const SSL_R_UNKNOWN_PROTOCOL: c_int = 252;
    pub const SSL_R_UNSUPPORTED_PROTOCOL: c_int = 258;
    pub const SSL_R_UNSUPPORTED_SSL_VERSION: c_int = 259;
    pub const SSL_R_WRONG_SSL_VERSION: c_int = 266;
    pub const SSL_R_WRONG_VERSION_NUMBER: c_int = 267;
    pub const SSL_R_BAD_LENGTH: c_int = 271;
    pub const SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC: c_int = 281;
    pub const SSL_R_RECORD_TOO_SMALL: c_int = 298;
    pub const SSL_R_VERSION_TOO_LOW: c_int = 396;
    pub const SSL_R_NO_SHARED_GROUPS: c_int = 410;
    pub const SSL_R_BAD_RECORD_TYPE: c_int = 443;
}
