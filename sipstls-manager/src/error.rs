//! Typed outcomes: why a connection ended, why an outbound connection failed, and what a
//! worker sees when the manager is gone.

use serde::{Deserialize, Serialize};

/// Why a connection owned by the manager ended. Sent to the worker that held it and counted
/// in [`ManagerStats`](crate::ManagerStats).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// The TLS peer sent close_notify.
    #[error("the peer closed the connection (close_notify)")]
    PeerClosed,
    /// The TLS peer closed TCP without close_notify.
    #[error("the peer closed TCP without close_notify")]
    PeerEof,
    /// The worker closed its end; the manager sent close_notify to the peer.
    #[error("the worker closed the connection")]
    WorkerClosed,
    /// The worker process (or thread) holding the connection is gone; the manager sent
    /// close_notify to the peer.
    #[error("the worker holding the connection was lost")]
    WorkerLost,
    /// No worker was alive to take an inbound connection.
    #[error("no worker is alive to take the connection")]
    NoWorker,
    /// No upstream server of the listener answered (every one down or refusing).
    #[error("no upstream server is up")]
    NoUpstream,
    /// The TLS handshake did not finish in time.
    #[error("the TLS handshake timed out")]
    HandshakeTimeout,
    /// The peer did not read what was queued for it within the send timeout.
    #[error("the peer read nothing for the send timeout")]
    SendTimeout,
    /// More than the per-connection limit was queued for a peer that does not read.
    #[error("the write queue to the peer is full ({limit} bytes)")]
    WriteQueueFull {
        /// The limit in bytes.
        limit: usize,
    },
    /// The TLS layer failed: the typed [`sipstls_core::Error`]'s kind and message.
    #[error("TLS: {message}")]
    Tls {
        /// Which error.
        #[serde(with = "kind_by_name")]
        kind: sipstls_core::ErrorKind,
        /// Its message, for logs.
        message: String,
    },
    /// A socket error.
    #[error("I/O: {0}")]
    Io(String),
    /// The manager is shutting down.
    #[error("the manager shut down")]
    Shutdown,
}

impl CloseReason {
    /// A short stable name, for counters and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            CloseReason::PeerClosed => "peer_closed",
            CloseReason::PeerEof => "peer_eof",
            CloseReason::WorkerClosed => "worker_closed",
            CloseReason::WorkerLost => "worker_lost",
            CloseReason::NoWorker => "no_worker",
            CloseReason::NoUpstream => "no_upstream",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::SendTimeout => "send_timeout",
            CloseReason::WriteQueueFull { .. } => "write_queue_full",
            CloseReason::Tls { .. } => "tls_error",
            CloseReason::Io(_) => "io_error",
            CloseReason::Shutdown => "shutdown",
        }
    }

    /// The finest stable name: the TLS error's kind for [`CloseReason::Tls`]
    /// (`bad_certificate`, `alert_received`, ...), else [`kind`](CloseReason::kind).
    pub fn label(&self) -> &'static str {
        match self {
            CloseReason::Tls { kind, .. } => kind.name(),
            other => other.kind(),
        }
    }

    /// A TLS failure of `kind` with `message`.
    pub(crate) fn tls(kind: sipstls_core::ErrorKind, message: impl Into<String>) -> Self {
        CloseReason::Tls { kind, message: message.into() }
    }

    /// True for the endings that are not somebody's orderly close.
    pub fn is_failure(&self) -> bool {
        !matches!(self, CloseReason::PeerClosed | CloseReason::WorkerClosed | CloseReason::Shutdown)
    }
}

/// An [`ErrorKind`](sipstls_core::ErrorKind) as its stable name on the control channel.
mod kind_by_name {
    use serde::{Deserialize, Deserializer, Serializer};
    use sipstls_core::ErrorKind;

    pub fn serialize<S: Serializer>(kind: &ErrorKind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(kind.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ErrorKind, D::Error> {
        let name = String::deserialize(d)?;
        ErrorKind::from_name(&name).ok_or_else(|| serde::de::Error::custom(format!("unknown TLS error kind {name}")))
    }
}

impl From<sipstls_core::Error> for CloseReason {
    fn from(e: sipstls_core::Error) -> Self {
        match e {
            sipstls_core::Error::UnexpectedEof => CloseReason::PeerEof,
            e => CloseReason::Tls { kind: e.kind(), message: e.to_string() },
        }
    }
}

impl From<std::io::Error> for CloseReason {
    fn from(e: std::io::Error) -> Self {
        CloseReason::Io(e.to_string())
    }
}

/// Why the manager could not give a worker an outbound connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// No client domain matches the target (or the id is unknown).
    #[error("no client domain: {0}")]
    NoDomain(String),
    /// The TCP connection failed.
    #[error("TCP connect failed: {0}")]
    Tcp(String),
    /// The TCP connection or the handshake did not finish in time.
    #[error("connect timed out")]
    Timeout,
    /// The handshake failed, and why ([`CloseReason::Tls`] with the TLS error's kind, a
    /// timeout, the peer's EOF, a socket error).
    #[error("TLS handshake failed: {0}")]
    Handshake(CloseReason),
    /// The manager is gone (its control channel closed).
    #[error("the TLS manager is gone")]
    ManagerGone,
    /// The target has no address: the manager connects by address.
    #[error("the target has no address")]
    NoAddress,
    /// A local failure (socketpair, control channel).
    #[error("local failure: {0}")]
    Local(String),
}

/// What a worker sees when it cannot get a connection from the manager.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The manager closed the control channel: no more connections will come.
    #[error("the TLS manager is gone")]
    ManagerGone,
    /// Nothing arrived within the timeout.
    #[error("timed out")]
    Timeout,
    /// An outbound connection failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The control channel failed or carried something malformed.
    #[error("control channel: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipstls_core::{CertificateError, Error, ErrorKind};

    #[test]
    fn typed_reasons_cross_the_control_channel_intact() {
        let reason: CloseReason = Error::Certificate(CertificateError::UnknownIssuer).into();
        assert!(matches!(&reason, CloseReason::Tls { kind: ErrorKind::Certificate, .. }), "{reason:?}");
        assert_eq!(reason.label(), "bad_certificate");
        let err = ConnectError::Handshake(reason);
        let wire = serde_json::to_string(&err).unwrap();
        assert!(wire.contains("\"bad_certificate\""), "{wire}");
        assert_eq!(serde_json::from_str::<ConnectError>(&wire).unwrap(), err);
        let unknown = wire.replace("bad_certificate", "no_such_kind");
        assert!(serde_json::from_str::<ConnectError>(&unknown).is_err());
        assert_eq!(CloseReason::HandshakeTimeout.label(), "handshake_timeout");
    }
}
