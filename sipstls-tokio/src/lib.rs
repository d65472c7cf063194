//! # sipstls-tokio
//!
//! Async TLS for SIP servers on tokio, over whichever sipstls backend the build has:
//! [`TlsAcceptor`] and [`TlsConnector`] pick the TLS domain from a
//! [`DomainTable`] (by listener address, the client's SNI, or the
//! client target's id, address or name) and yield a [`TlsStream`], which is
//! `AsyncRead + AsyncWrite` over any `AsyncRead + AsyncWrite + Unpin` transport.
//!
//! ```no_run
//! # async fn run(table: std::sync::Arc<sipstls_core::DomainTable>) -> std::io::Result<()> {
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! let acceptor = sipstls_tokio::TlsAcceptor::from(table);
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:5061").await?;
//! loop {
//!     let (tcp, _) = listener.accept().await?;
//!     let acceptor = acceptor.clone();
//!     tokio::spawn(async move {
//!         let mut tls = acceptor.accept(tcp).await?; // domain by listener and SNI
//!         let mut buf = vec![0u8; 16 * 1024];
//!         let n = tls.read(&mut buf).await?;
//!         tls.write_all(&buf[..n]).await?; // a SIP stack parses and answers here
//!         tls.shutdown().await // close_notify
//!     });
//! }
//! # }
//! ```
//!
//! Errors are `io::Error`s carrying the typed [`sipstls_core::Error`]: get it with
//! [`tls_error`]. A fatal error's alert is on the wire before the error is returned; a
//! transport that ends without close_notify reads as `io::ErrorKind::UnexpectedEof`.
#![deny(unsafe_code)]
#![warn(missing_docs)]
// Public types that will grow are #[non_exhaustive]; the closed ones say why.
#![warn(clippy::exhaustive_structs, clippy::exhaustive_enums)]

mod stream;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sipstls_core::{ClientTarget, DomainTable, ReloadableTable};
use tokio::io::{AsyncRead, AsyncWrite};

pub use stream::{tls_error, TlsParts, TlsStream};

/// Accepts TLS connections for the server domains of a table. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TlsAcceptor {
    table: Arc<ReloadableTable>,
    limit: Option<Duration>,
}

impl From<Arc<DomainTable>> for TlsAcceptor {
    fn from(table: Arc<DomainTable>) -> Self {
        TlsAcceptor { table: Arc::new(ReloadableTable::from_arc(table)), limit: None }
    }
}

impl From<Arc<ReloadableTable>> for TlsAcceptor {
    /// Connections accepted after a reload use the new table; open ones keep theirs.
    fn from(table: Arc<ReloadableTable>) -> Self {
        TlsAcceptor { table, limit: None }
    }
}

/// Runs `tls`'s handshake, within `limit` of wall time when one is set
/// (`io::ErrorKind::TimedOut` when it runs out; needs a runtime with timers).
async fn handshake<IO: AsyncRead + AsyncWrite + Unpin>(
    tls: &mut TlsStream<IO>,
    limit: Option<Duration>,
) -> io::Result<()> {
    match limit {
        None => tls.handshake().await,
        Some(d) => tokio::time::timeout(d, tls.handshake())
            .await
            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))),
    }
}

impl TlsAcceptor {
    /// Bounds every handshake in wall time (a peer that trickles bytes cannot hold a task
    /// longer); the handshake fails with `io::ErrorKind::TimedOut`. Needs a tokio runtime
    /// with timers enabled.
    pub fn with_handshake_timeout(mut self, limit: Duration) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Runs the server handshake on an accepted TCP connection: the domain is chosen by the
    /// socket's local address (the listener), then by the client's SNI.
    pub async fn accept(&self, tcp: tokio::net::TcpStream) -> io::Result<TlsStream<tokio::net::TcpStream>> {
        let local = tcp.local_addr()?;
        let peer = tcp.peer_addr().ok();
        self.accept_with(tcp, local, peer).await
    }

    /// Runs the server handshake over any transport, for a connection that arrived on
    /// `local` from `peer` (the addresses choose the domain and name the session in the
    /// table's statistics).
    pub async fn accept_with<IO>(
        &self,
        io: IO,
        local: SocketAddr,
        peer: Option<SocketAddr>,
    ) -> io::Result<TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let session = self.table.accept(local, peer).map_err(sipstls_core::driver::io_error)?;
        let mut tls = TlsStream::new(session, io);
        handshake(&mut tls, self.limit).await?;
        Ok(tls)
    }
}

/// Opens TLS connections with the client domains of a table. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TlsConnector {
    table: Arc<ReloadableTable>,
    limit: Option<Duration>,
}

impl From<Arc<DomainTable>> for TlsConnector {
    fn from(table: Arc<DomainTable>) -> Self {
        TlsConnector { table: Arc::new(ReloadableTable::from_arc(table)), limit: None }
    }
}

impl From<Arc<ReloadableTable>> for TlsConnector {
    fn from(table: Arc<ReloadableTable>) -> Self {
        TlsConnector { table, limit: None }
    }
}

impl TlsConnector {
    /// Bounds every handshake in wall time, as [`TlsAcceptor::with_handshake_timeout`].
    pub fn with_handshake_timeout(mut self, limit: Duration) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Runs the client handshake over `io` to `target`: the client domain is chosen by the
    /// target's id, address or name; the name is sent as SNI and the peer's certificate is
    /// checked against it (RFC 5922) unless the domain turns the check off.
    pub async fn connect<IO>(&self, target: &ClientTarget, io: IO) -> io::Result<TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let session = self.table.connect(target).map_err(sipstls_core::driver::io_error)?;
        let mut tls = TlsStream::new(session, io);
        handshake(&mut tls, self.limit).await?;
        Ok(tls)
    }
}
