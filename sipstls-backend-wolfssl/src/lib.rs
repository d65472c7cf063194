//! # sipstls-backend-wolfssl
//!
//! The sipstls [`Backend`](sipstls_core::Backend) on wolfSSL 5.9 (the copy bundled and built by `wolfssl-sys`),
//! used directly through its C API.
//!
//! - **I/O**: custom I/O callbacks (`wolfSSL_CTX_SetIORecv`/`SetIOSend`) read from and
//!   write to buffers owned by the session; an empty input is `WOLFSSL_CBIO_ERR_WANT_READ`.
//!   Records are decrypted ahead into a plaintext buffer, so errors, alerts and
//!   close_notify surface at `feed_tls`.
//! - **SNI and ALPN on servers**: wolfSSL cannot move a session to another context without
//!   its OpenSSL compatibility layer, and it picks ALPN by the client's preference. A server
//!   session therefore reads the ClientHello first (see `hello.rs`), chooses the domain by
//!   SNI and the protocol by the server's order, and only then creates the wolfSSL session
//!   from that domain's context: the whole domain applies (certificate, client-certificate
//!   policy, versions, ciphers, tickets).
//! - **Names**: clients check the server's leaf per RFC 5922 with `sipstls_core::x509` in
//!   the verify callback (wolfSSL's own domain check is not RFC 5922), before the
//!   handshake completes.
//! - **Resumption**: tickets (TLS 1.2 RFC 5077 and TLS 1.3) with wolfSSL's per-context
//!   ticket keys; TLS 1.2 session IDs in wolfSSL's process-wide session cache, separated
//!   per domain by a session id context. TLS 1.3 has no session IDs: with
//!   `Resumption::SESSION_IDS` a TLS 1.3 server still issues
//!   (wolfSSL's stateless) tickets, which is how wolfSSL resumes TLS 1.3 at all.
//! - **CRLs**: `wolfSSL_CTX_EnableCRL(WOLFSSL_CRL_CHECK)` and `wolfSSL_CTX_LoadCRLBuffer`:
//!   the peer's leaf is checked; a leaf whose issuer has no CRL loaded fails.
//! - **Key log**: the per-session secret callbacks (`wolfSSL_set_secret_cb` for the TLS 1.2
//!   master secret, `wolfSSL_set_tls13_secret_cb` for the TLS 1.3 traffic secrets) with the
//!   client random from `wolfSSL_get_client_random`. A resumed TLS 1.2 session derives no
//!   new master secret, so it is not logged (its full handshake was).
//!
//! ## Build requirements
//!
//! `wolfssl-sys` configures wolfSSL without session tickets, the kept peer certificate and
//! chain, the verify callback on success, session id contexts, the secret callbacks and
//! CRLs. `sipstls-wolfssl-sys` builds the wolfSSL source that `wolfssl-sys` ships with them
//! (extra defines and `--enable-crl` on its own configure line), so any crate depending on
//! this one gets them without settings of its own; `build.rs` checks them in the built
//! `options.h` and stops the build when they are missing.
//!
//! ## Refused (`Error::Unsupported` or `InvalidConfig`)
//!
//! - several identities on one server domain (`MULTIPLE_IDENTITIES`): a `WOLFSSL_CTX`
//!   holds one certificate and key, and without the OpenSSL compatibility layer there is
//!   no per-key-type slot or certificate callback to choose by the client's algorithms;
//! - the migrating process model (not claimed: sessions live in wolfSSL's heap objects and
//!   its session cache is guarded by process-private locks);
//! - lock hooks (`LOCK_HOOK`): wolfSSL's `WOLFSSL_USER_MUTEX` would route its mutexes, but
//!   its configure then drops `WC_RNG_AUTOFORK` and the fork handlers the pinned model
//!   relies on for fresh random output after `fork()`; this build keeps pthread mutexes;
//! - TLS 1.2 suites outside the forward-secret AEAD ECDHE list (no DHE: wolfSSL is built
//!   with `NO_DH`); ALPN protocol names containing `,` (wolfSSL takes a comma-separated
//!   list).
//!
//! ## Licence
//!
//! The bundled wolfSSL 5.9 is GPLv3: a binary linking this crate is covered by the
//! GPL-3.0-or-later (commercial licences come from wolfSSL Inc.).
#![warn(missing_docs)]
// Public types that will grow are #[non_exhaustive]; the closed ones say why.
#![warn(clippy::exhaustive_structs, clippy::exhaustive_enums)]

mod backend;
mod cvt;
mod domain;
mod errors;
mod hooks;
mod session;
mod tickets;

pub use backend::WolfsslBackend;
pub use domain::{WolfsslClientDomain, WolfsslServerDomain};
pub use hooks::install_allocator_hooks;
pub use session::WolfsslSession;

/// The backend name.
pub const NAME: &str = "wolfssl";
