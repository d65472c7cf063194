//! # sipstls-core
//!
//! The traits and plain data of sipstls, a pluggable TLS layer for SIP servers. This crate
//! has no sockets, no C and no TLS library: backends (`sipstls-backend-rustls`,
//! `sipstls-backend-openssl`, ...) implement [`Backend`], and the `sipstls` facade picks
//! them by cargo feature.
//!
//! - [`DomainConfig`]: what a TLS domain is (certificates, trust, versions, ciphers,
//!   ALPN, resumption), compiled by a [`Backend`] into a [`ServerDomain`] or a
//!   [`ClientDomain`].
//! - [`DomainTable`]: which domain serves which connection (listener and SNI for servers;
//!   id, address or name for clients).
//! - [`Session`]: one TLS connection, sans-I/O: ciphertext in and out, plaintext in and
//!   out, sticky errors.
//! - [`TlsInfo`]: a plain-data snapshot of an established session.
//! - [`Error`]: one typed error for every backend.
//! - [`hooks`]: the allocator and lock hook contracts for shared-memory process models.
//! - [`store`]: session stores and ticket keys shared between processes and nodes.
//! - [`proxy`]: the PROXY protocol v2 header a TLS terminator sends to the SIP worker behind it.
#![deny(unsafe_code)]
#![warn(missing_docs)]
// Public types that will grow are #[non_exhaustive]; the closed ones say why.
#![warn(clippy::exhaustive_structs, clippy::exhaustive_enums)]

mod backend;
pub mod buffers;
mod caps;
mod config;
mod domain;
pub mod driver;
mod error;
pub mod hello;
#[allow(unsafe_code)] // unsafe traits: the contracts of C-facing hooks
pub mod hooks;
mod info;
pub mod keylog;
pub mod proxy;
pub mod record;
mod session;
pub mod stats;
pub mod store;
pub mod x509;

pub use backend::{resolve_server_name, Backend, BackendInfo, ClientDomain, ProcessModel, ServerDomain};
pub use caps::Capabilities;
pub use config::{
    Certificate, ClientAuth, Crl, DomainConfig, Identity, NameVerification, PrivateKey, PrivateKeyFormat,
    ProtocolVersion, Resumption, Role, ServerName, DEFAULT_TLS12_SUITES, DEFAULT_TLS13_SUITES,
};
pub use domain::{ClientTarget, DomainTable, Listener, ReloadableTable, ServerSelection, SniCandidates, SniMatch};
pub use error::{Alert, CertificateError, Error, ErrorKind, ProtocolErrorKind, Result};
pub use info::{TlsInfo, VerifyResult};
pub use keylog::{KeyLog, KeyLogFile, KeyLogSink};
pub use session::{ReadStatus, Session, SessionState};
pub use store::{
    EpochTicketKeys, FileTicketKeys, LruSessionStore, SessionStore, SessionStoreHandle, StaticTicketKeys, TicketKey,
    TicketKeyProvider, TicketKeys, TicketKeysHandle,
};
