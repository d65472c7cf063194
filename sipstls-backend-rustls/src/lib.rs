//! # sipstls-backend-rustls
//!
//! The sipstls [`Backend`](sipstls_core::Backend) on rustls with the aws-lc-rs crypto provider.
//!
//! - Sessions run on rustls's unbuffered API: the session owns its buffers, keeps them
//!   (up to 4 KiB each) between records while busy and gives them all back in
//!   `Session::release_memory`, so an idle session holds none (a buffered rustls
//!   connection keeps a 4 KiB read buffer for life).
//! - Server sessions start with rustls's [`Acceptor`](rustls::server::Acceptor): the ClientHello is read first, the
//!   SNI picks the domain (its whole `ServerConfig`: certificate, client verification,
//!   ALPN, versions), then a connection with that configuration reads the ClientHello
//!   again and the handshake continues.
//! - Clients verify the chain with webpki and the name with sipstls's RFC 5922 rules (SIP
//!   URI SAN, DNS SAN without wildcards, CN only without SAN).
//! - CRLs (`DomainConfig::crls`) are checked by webpki for the peer's leaf only; a leaf
//!   whose issuer has no CRL in the list is refused (unknown revocation status).
//! - A key log (`DomainConfig::key_log`) receives rustls's NSS key log secrets.
//! - Several identities on one server domain: the first whose key can sign with a scheme
//!   the client offers serves.
#![deny(unsafe_code)]
#![warn(missing_docs)]
// Public types that will grow are #[non_exhaustive]; the closed ones say why.
#![warn(clippy::exhaustive_structs, clippy::exhaustive_enums)]

mod backend;
mod domain;
mod errors;
#[allow(unsafe_code)] // the C allocator hook: one FFI call
mod hooks;
#[allow(unsafe_code)] // getters of aws-lc's static tables
mod prefork;
mod session;
mod store;
pub mod tickets;
mod verify;

pub use backend::RustlsBackend;
pub(crate) use backend::{iana_suite_name, roots};
pub use domain::{RustlsClientDomain, RustlsServerDomain};
pub use hooks::install_allocator_hooks;
pub use session::RustlsSession;

/// The backend name.
pub const NAME: &str = "rustls";

/// Session-ticket keys rotate this often; tickets of the previous period still resume.
pub const TICKET_KEY_PERIOD_SECS: u64 = 6 * 60 * 60;
