//! rustls errors mapped onto sipstls's.

use sipstls_core::{Alert, CertificateError, Error, ProtocolErrorKind};

use crate::NAME;

pub(crate) fn map_cert_error(e: &rustls::CertificateError) -> CertificateError {
    use rustls::CertificateError as R;
    match e {
        R::UnknownIssuer => CertificateError::UnknownIssuer,
        R::Expired | R::ExpiredContext { .. } => CertificateError::Expired,
        R::NotValidYet | R::NotValidYetContext { .. } => CertificateError::NotYetValid,
        R::NotValidForName => CertificateError::NameMismatch { expected: String::new() },
        R::NotValidForNameContext { expected, .. } => {
            CertificateError::NameMismatch { expected: format!("{expected:?}") }
        }
        R::Revoked => CertificateError::Revoked,
        R::BadSignature => CertificateError::BadSignature,
        R::InvalidPurpose | R::InvalidPurposeContext { .. } => CertificateError::InvalidPurpose,
        R::BadEncoding => CertificateError::Malformed,
        R::Other(o) => match o.0.downcast_ref::<CertificateError>() {
            Some(ours) => ours.clone(),
            None => CertificateError::Other(o.to_string()),
        },
        other => CertificateError::Other(format!("{other:?}")),
    }
}

pub(crate) fn map_error(e: rustls::Error) -> Error {
    use rustls::Error as R;
    match e {
        R::InvalidCertificate(c) => Error::Certificate(map_cert_error(&c)),
        R::NoCertificatesPresented => Error::PeerCertificateRequired,
        R::AlertReceived(a) => Error::AlertReceived(Alert(u8::from(a))),
        R::PeerSentOversizedRecord => Error::protocol(ProtocolErrorKind::RecordOverflow, e.to_string()),
        R::InvalidMessage(rustls::InvalidMessage::MessageTooLarge) => {
            Error::protocol(ProtocolErrorKind::RecordOverflow, e.to_string())
        }
        R::InvalidMessage(_) => Error::protocol(ProtocolErrorKind::Malformed, e.to_string()),
        R::InappropriateMessage { .. } | R::InappropriateHandshakeMessage { .. } => {
            Error::protocol(ProtocolErrorKind::UnexpectedMessage, e.to_string())
        }
        R::PeerIncompatible(_) | R::NoApplicationProtocol => {
            Error::protocol(ProtocolErrorKind::HandshakeFailure, e.to_string())
        }
        R::DecryptError => Error::protocol(ProtocolErrorKind::DecryptFailure, e.to_string()),
        R::PeerMisbehaved(
            rustls::PeerMisbehaved::MessageInterleavedWithHandshakeMessage
            | rustls::PeerMisbehaved::TooManyEmptyFragments
            | rustls::PeerMisbehaved::RejectedEarlyDataInterleavedWithHandshakeMessage,
        ) => Error::protocol(ProtocolErrorKind::UnexpectedMessage, e.to_string()),
        R::PeerMisbehaved(_) => Error::protocol(ProtocolErrorKind::Other, e.to_string()),
        // A TLS 1.2 ClientHello with a suite in common but no signature scheme the key
        // can make: rustls says so only in words (and sends no alert).
        R::General(ref m) if m == "incompatible signing key" => {
            Error::protocol(ProtocolErrorKind::HandshakeFailure, e.to_string())
        }
        // The server's certificate resolver found no certificate for what the ClientHello
        // offers (say, no signature scheme the key can make): the peer's offer, not our
        // fault. rustls reports it only as a `General` string. Found by fuzzing.
        R::General(ref m) if m == "no server certificate chain resolved" => {
            Error::protocol(ProtocolErrorKind::HandshakeFailure, e.to_string())
        }
        other => Error::Backend { library: NAME, message: other.to_string() },
    }
}
