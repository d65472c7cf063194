//! One error type for every backend.
//!
//! Backends map their library's errors onto these variants so that a SIP server can react
//! the same way whichever TLS library it was built with: a wrong certificate is always
//! [`Error::Certificate`], a peer that speaks garbage is always [`Error::Protocol`], a
//! setting a backend cannot honour is always [`Error::Unsupported`].

use std::fmt;

use crate::caps::Capabilities;
use crate::proxy::ProxyError;

/// A shorthand for `Result<T, sipstls_core::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in sipstls.
///
/// Errors returned by a [`Session`](crate::Session) are *sticky*: once a session has failed,
/// every later call returns the same error (a pending alert can still be drained with
/// [`Session::take_tls`](crate::Session::take_tls)).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The backend cannot honour a setting or operation; it was refused, not ignored.
    #[error("the {backend} backend does not support {capability:?}: {detail}")]
    Unsupported {
        /// Backend name, as in [`BackendInfo::name`](crate::BackendInfo::name).
        backend: &'static str,
        /// The capability that is missing.
        capability: Capabilities,
        /// Why, in words.
        detail: String,
    },
    /// A configuration value is invalid (a malformed certificate, an empty ALPN entry,
    /// `min_version > max_version`, ...).
    #[error("invalid configuration: {setting}: {reason}")]
    InvalidConfig {
        /// The setting at fault (the field name of [`DomainConfig`](crate::DomainConfig)).
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The peer's certificate was rejected by our verification.
    #[error("peer certificate rejected: {0}")]
    Certificate(CertificateError),
    /// The peer presented no certificate but this side requires one.
    #[error("the peer presented no certificate but one is required")]
    PeerCertificateRequired,
    /// The peer violated the TLS protocol or sent bytes that are not TLS.
    #[error("TLS protocol error ({kind:?}): {detail}")]
    Protocol {
        /// What kind of violation.
        kind: ProtocolErrorKind,
        /// Library-specific detail, for logs.
        detail: String,
    },
    /// The peer aborted the connection with a fatal alert.
    #[error("the peer sent the fatal alert {0}")]
    AlertReceived(Alert),
    /// No TLS domain matches the listener, address, name or id asked for.
    #[error("no TLS domain matches {0}")]
    NoDomain(String),
    /// Shared memory is below a low-memory threshold: new sessions are refused (first
    /// threshold) or operations fail (second threshold) until memory is freed.
    #[error("shared memory low: {free} bytes free, threshold {threshold}")]
    LowMemory {
        /// Free bytes in the arena.
        free: usize,
        /// The threshold that was crossed.
        threshold: usize,
    },
    /// A process-wide hook was installed too late (the library had already allocated or
    /// locked with its defaults).
    #[error("the {hook} hook must be installed before the TLS library's first use")]
    HookTooLate {
        /// Which hook.
        hook: &'static str,
    },
    /// The session was closed (close_notify sent or received) and cannot carry more data.
    #[error("the TLS session is closed")]
    Closed,
    /// The transport ended without a close_notify alert (possible truncation attack).
    #[error("the transport closed without close_notify")]
    UnexpectedEof,
    /// A PROXY protocol v2 header could not be parsed or encoded. Not counted by
    /// [`Error::is_peer_fault`]: the header comes from the proxy in front, not the TLS peer.
    #[error("PROXY protocol: {0}")]
    Proxy(ProxyError),
    /// An error of the TLS library that has no better mapping. The message is for logs;
    /// do not match on it.
    #[error("{library}: {message}")]
    Backend {
        /// The TLS library.
        library: &'static str,
        /// Its own description.
        message: String,
    },
}

/// Which variant of [`Error`] an error is, without its details: plain data to count,
/// log and send between processes (`name` and `from_name` give a stable text form).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// [`Error::Unsupported`].
    Unsupported,
    /// [`Error::InvalidConfig`].
    InvalidConfig,
    /// [`Error::Certificate`].
    Certificate,
    /// [`Error::PeerCertificateRequired`].
    PeerCertificateRequired,
    /// [`Error::Protocol`].
    Protocol,
    /// [`Error::AlertReceived`].
    AlertReceived,
    /// [`Error::NoDomain`].
    NoDomain,
    /// [`Error::LowMemory`].
    LowMemory,
    /// [`Error::HookTooLate`].
    HookTooLate,
    /// [`Error::Closed`].
    Closed,
    /// [`Error::UnexpectedEof`].
    UnexpectedEof,
    /// [`Error::Proxy`].
    Proxy,
    /// [`Error::Backend`].
    Backend,
}

impl ErrorKind {
    const ALL: [ErrorKind; 13] = [
        ErrorKind::Unsupported,
        ErrorKind::InvalidConfig,
        ErrorKind::Certificate,
        ErrorKind::PeerCertificateRequired,
        ErrorKind::Protocol,
        ErrorKind::AlertReceived,
        ErrorKind::NoDomain,
        ErrorKind::LowMemory,
        ErrorKind::HookTooLate,
        ErrorKind::Closed,
        ErrorKind::UnexpectedEof,
        ErrorKind::Proxy,
        ErrorKind::Backend,
    ];

    /// A short stable name (`bad_certificate`, `alert_received`, ...), for counters and logs.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::InvalidConfig => "invalid_config",
            ErrorKind::Certificate => "bad_certificate",
            ErrorKind::PeerCertificateRequired => "no_client_certificate",
            ErrorKind::Protocol => "protocol_error",
            ErrorKind::AlertReceived => "alert_received",
            ErrorKind::NoDomain => "no_domain",
            ErrorKind::LowMemory => "low_memory",
            ErrorKind::HookTooLate => "hook_too_late",
            ErrorKind::Closed => "closed",
            ErrorKind::UnexpectedEof => "peer_eof",
            ErrorKind::Proxy => "proxy_header",
            ErrorKind::Backend => "tls_library",
        }
    }

    /// The kind whose [`name`](ErrorKind::name) is `name`.
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Error {
    /// Which variant this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::InvalidConfig { .. } => ErrorKind::InvalidConfig,
            Error::Certificate(_) => ErrorKind::Certificate,
            Error::PeerCertificateRequired => ErrorKind::PeerCertificateRequired,
            Error::Protocol { .. } => ErrorKind::Protocol,
            Error::AlertReceived(_) => ErrorKind::AlertReceived,
            Error::NoDomain(_) => ErrorKind::NoDomain,
            Error::LowMemory { .. } => ErrorKind::LowMemory,
            Error::HookTooLate { .. } => ErrorKind::HookTooLate,
            Error::Closed => ErrorKind::Closed,
            Error::UnexpectedEof => ErrorKind::UnexpectedEof,
            Error::Proxy(_) => ErrorKind::Proxy,
            Error::Backend { .. } => ErrorKind::Backend,
        }
    }

    /// Shorthand for [`Error::InvalidConfig`].
    pub fn config(setting: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidConfig { setting, reason: reason.into() }
    }

    /// Shorthand for [`Error::Protocol`].
    pub fn protocol(kind: ProtocolErrorKind, detail: impl Into<String>) -> Self {
        Error::Protocol { kind, detail: detail.into() }
    }

    /// Shorthand for [`Error::Unsupported`].
    pub fn unsupported(backend: &'static str, capability: Capabilities, detail: impl Into<String>) -> Self {
        Error::Unsupported { backend, capability, detail: detail.into() }
    }

    /// The fatal alert this side sends the peer for the error, with the description RFC 8446
    /// section 6.2 (and RFC 5246 section 7.2.2) gives for the cause. `None` where no alert
    /// is due: the peer's own alert ended the connection, the transport ended, or the
    /// session was closed normally.
    pub fn alert(&self) -> Option<Alert> {
        Some(match self {
            Error::Protocol { kind, .. } => kind.alert(),
            Error::Certificate(c) => match c {
                CertificateError::UnknownIssuer => Alert::UNKNOWN_CA,
                CertificateError::Expired | CertificateError::NotYetValid => Alert::CERTIFICATE_EXPIRED,
                CertificateError::Revoked => Alert::CERTIFICATE_REVOKED,
                CertificateError::BadSignature => Alert::DECRYPT_ERROR,
                CertificateError::Malformed => Alert::DECODE_ERROR,
                _ => Alert::BAD_CERTIFICATE,
            },
            Error::PeerCertificateRequired => Alert::CERTIFICATE_REQUIRED,
            Error::NoDomain(_) => Alert::UNRECOGNIZED_NAME,
            Error::AlertReceived(_) | Error::UnexpectedEof | Error::Closed => return None,
            Error::Unsupported { .. }
            | Error::InvalidConfig { .. }
            | Error::LowMemory { .. }
            | Error::HookTooLate { .. }
            | Error::Proxy(_)
            | Error::Backend { .. } => Alert::INTERNAL_ERROR,
        })
    }

    /// True when the error came from the peer (its certificate, its bytes, its alert) rather
    /// than from local configuration. Useful for counting handshake failures by cause.
    pub fn is_peer_fault(&self) -> bool {
        matches!(
            self,
            Error::Certificate(_)
                | Error::PeerCertificateRequired
                | Error::Protocol { .. }
                | Error::AlertReceived(_)
                | Error::UnexpectedEof
        )
    }
}

impl From<CertificateError> for Error {
    fn from(e: CertificateError) -> Self {
        Error::Certificate(e)
    }
}

impl From<ProxyError> for Error {
    fn from(e: ProxyError) -> Self {
        Error::Proxy(e)
    }
}

/// Why a peer certificate was rejected.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// The chain does not lead to a trusted CA.
    #[error("issued by an unknown or untrusted CA")]
    UnknownIssuer,
    /// The certificate (or one in its chain) has expired.
    #[error("expired")]
    Expired,
    /// The certificate (or one in its chain) is not valid yet.
    #[error("not valid yet")]
    NotYetValid,
    /// The certificate does not name the host we connected to (RFC 5922 rules).
    #[error("does not name {expected}")]
    NameMismatch {
        /// The name or address we expected.
        expected: String,
    },
    /// The certificate was revoked.
    #[error("revoked")]
    Revoked,
    /// A signature in the chain does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The certificate may not be used for this purpose (key usage / extended key usage).
    #[error("not valid for this purpose")]
    InvalidPurpose,
    /// The chain is longer than the configured verify depth.
    #[error("chain longer than the verify depth")]
    ChainTooLong,
    /// The certificate could not be parsed.
    #[error("malformed certificate")]
    Malformed,
    /// Any other verification failure, as the library words it.
    #[error("{0}")]
    Other(String),
}

/// What kind of protocol violation a [`Error::Protocol`] is.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolErrorKind {
    /// Bytes that do not parse as TLS records or handshake messages.
    Malformed,
    /// A record longer than the protocol allows.
    RecordOverflow,
    /// A message that is valid but not allowed in this state.
    UnexpectedMessage,
    /// No version, cipher suite, group or signature scheme in common, or ALPN mismatch.
    HandshakeFailure,
    /// A record failed to decrypt or authenticate.
    DecryptFailure,
    /// A violation the backend could not classify more precisely.
    Other,
}

impl ProtocolErrorKind {
    /// The fatal alert RFC 8446 section 6.2 names for this kind of violation.
    pub fn alert(self) -> Alert {
        match self {
            ProtocolErrorKind::Malformed => Alert::DECODE_ERROR,
            ProtocolErrorKind::RecordOverflow => Alert::RECORD_OVERFLOW,
            ProtocolErrorKind::UnexpectedMessage => Alert::UNEXPECTED_MESSAGE,
            ProtocolErrorKind::HandshakeFailure => Alert::HANDSHAKE_FAILURE,
            ProtocolErrorKind::DecryptFailure => Alert::BAD_RECORD_MAC,
            ProtocolErrorKind::Other => Alert::ILLEGAL_PARAMETER,
        }
    }
}

/// A TLS alert description (RFC 8446 section 6).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::exhaustive_structs)] // closed: a TLS alert is one byte
pub struct Alert(pub u8);

impl Alert {
    /// `close_notify` (0).
    pub const CLOSE_NOTIFY: Alert = Alert(0);
    /// `unexpected_message` (10).
    pub const UNEXPECTED_MESSAGE: Alert = Alert(10);
    /// `bad_record_mac` (20).
    pub const BAD_RECORD_MAC: Alert = Alert(20);
    /// `record_overflow` (22).
    pub const RECORD_OVERFLOW: Alert = Alert(22);
    /// `handshake_failure` (40).
    pub const HANDSHAKE_FAILURE: Alert = Alert(40);
    /// `bad_certificate` (42).
    pub const BAD_CERTIFICATE: Alert = Alert(42);
    /// `certificate_revoked` (44).
    pub const CERTIFICATE_REVOKED: Alert = Alert(44);
    /// `certificate_expired` (45).
    pub const CERTIFICATE_EXPIRED: Alert = Alert(45);
    /// `certificate_unknown` (46).
    pub const CERTIFICATE_UNKNOWN: Alert = Alert(46);
    /// `unknown_ca` (48).
    pub const UNKNOWN_CA: Alert = Alert(48);
    /// `illegal_parameter` (47).
    pub const ILLEGAL_PARAMETER: Alert = Alert(47);
    /// `access_denied` (49).
    pub const ACCESS_DENIED: Alert = Alert(49);
    /// `decode_error` (50).
    pub const DECODE_ERROR: Alert = Alert(50);
    /// `decrypt_error` (51).
    pub const DECRYPT_ERROR: Alert = Alert(51);
    /// `protocol_version` (70).
    pub const PROTOCOL_VERSION: Alert = Alert(70);
    /// `internal_error` (80).
    pub const INTERNAL_ERROR: Alert = Alert(80);
    /// `unrecognized_name` (112).
    pub const UNRECOGNIZED_NAME: Alert = Alert(112);
    /// `certificate_required` (116).
    pub const CERTIFICATE_REQUIRED: Alert = Alert(116);
    /// `no_application_protocol` (120).
    pub const NO_APPLICATION_PROTOCOL: Alert = Alert(120);

    /// This alert as a fatal, unencrypted alert record, as sent before any keys are in use
    /// (record version TLS 1.2).
    pub fn plaintext_record(self) -> [u8; 7] {
        [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, self.0]
    }

    /// The RFC name of the alert, or `"unknown"`.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "close_notify",
            10 => "unexpected_message",
            20 => "bad_record_mac",
            22 => "record_overflow",
            40 => "handshake_failure",
            42 => "bad_certificate",
            43 => "unsupported_certificate",
            44 => "certificate_revoked",
            45 => "certificate_expired",
            46 => "certificate_unknown",
            47 => "illegal_parameter",
            48 => "unknown_ca",
            49 => "access_denied",
            50 => "decode_error",
            51 => "decrypt_error",
            70 => "protocol_version",
            71 => "insufficient_security",
            80 => "internal_error",
            86 => "inappropriate_fallback",
            90 => "user_canceled",
            109 => "missing_extension",
            110 => "unsupported_extension",
            112 => "unrecognized_name",
            113 => "bad_certificate_status_response",
            115 => "unknown_psk_identity",
            116 => "certificate_required",
            120 => "no_application_protocol",
            _ => "unknown",
        }
    }
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

impl fmt::Debug for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod kind_tests {
    use super::*;

    #[test]
    fn every_kind_has_a_distinct_name_that_reads_back() {
        let mut names: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.name()).collect();
        for k in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_name(k.name()), Some(k));
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorKind::ALL.len());
        assert_eq!(ErrorKind::from_name("nonsense"), None);
        assert_eq!(Error::PeerCertificateRequired.kind(), ErrorKind::PeerCertificateRequired);
        assert_eq!(Error::UnexpectedEof.kind().name(), "peer_eof");
    }
}
