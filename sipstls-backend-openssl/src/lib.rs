//! # sipstls-backend-openssl
//!
//! The sipstls [`Backend`](sipstls_core::Backend) on the system's OpenSSL 3 (libssl) through rust-openssl
//! (feature `openssl`, the default), or on BoringSSL through the `boring` crate (feature
//! `boring`, backend name `"boring"`): one code base, compiled against either crate
//! through the `ssl_lib` module, with `#[cfg(feature = "boring")]` where the APIs differ.
//! The two features exclude each other: OpenSSL and BoringSSL export the same C symbols
//! and cannot be linked into one binary.
//!
//! Sessions run over memory buffers (no socket): ciphertext fed in is what OpenSSL reads,
//! what it writes is taken out. Server domains switch by SNI in OpenSSL's servername
//! callback (`SSL_set_SSL_CTX`, then the new domain's verification settings). Client name
//! checks follow RFC 5922 in the verify callback, so a wrong name fails the handshake with
//! `X509_V_ERR_HOSTNAME_MISMATCH`. Idle connections release their record buffers
//! (`SSL_MODE_RELEASE_BUFFERS`).
//!
//! CRLs (`DomainConfig::crls`) go into the context's trust store with
//! `X509_V_FLAG_CRL_CHECK`: the peer's leaf is checked, intermediates are not
//! (`CRL_CHECK_ALL` is off), and a leaf whose issuer has no CRL in the store is refused.
//! The key log (`DomainConfig::key_log`) is OpenSSL's keylog callback, whose NSS lines go
//! to `KeyLogSink::log_nss_line`. Several identities on one server domain (OpenSSL only):
//! one certificate slot per key type, chosen by the client's signature algorithms and
//! suites; BoringSSL has one slot, so it refuses a second identity.
#![warn(missing_docs)]
// Public types that will grow are #[non_exhaustive]; the closed ones say why.
#![warn(clippy::exhaustive_structs, clippy::exhaustive_enums)]

#[cfg(all(feature = "openssl", feature = "boring"))]
compile_error!(
    "sipstls-backend-openssl: the features `openssl` and `boring` exclude each other (OpenSSL and BoringSSL \
     export the same C symbols and cannot link into one binary); for BoringSSL build with \
     `--no-default-features --features boring`"
);
#[cfg(not(any(feature = "openssl", feature = "boring")))]
compile_error!("sipstls-backend-openssl needs one of the features `openssl` (default) or `boring`");

mod backend;
mod consts;
mod cvt;
mod domain;
mod errors;
mod hooks;
#[cfg(feature = "boring")]
mod server_cache;
mod session;
mod ssl_lib;
#[cfg(not(feature = "boring"))]
mod store;

#[cfg(feature = "boring")]
pub use backend::BoringBackend;
pub use backend::OpensslBackend;
pub use domain::{OpensslClientDomain, OpensslServerDomain};
pub use hooks::install_allocator_hooks;
pub use session::OpensslSession;

/// The backend name.
#[cfg(not(feature = "boring"))]
pub const NAME: &str = "openssl";
/// The backend name.
#[cfg(feature = "boring")]
pub const NAME: &str = "boring";
