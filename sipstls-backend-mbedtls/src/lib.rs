//! # sipstls-backend-mbedtls
//!
//! The sipstls [`Backend`](sipstls_core::Backend) on Mbed TLS 3.6 LTS (Apache-2.0), built from source by
//! `sipstls-mbedtls-sys` with threading through replaceable mutexes, a replaceable
//! allocator, AES-NI and certificate validity checked against the clock. TLS 1.2 and 1.3.
//!
//! Sessions run over memory buffers: Mbed TLS's I/O callbacks read what `feed_tls`
//! buffered (`WANT_READ` when empty) and queue what it writes for `take_tls`. Server
//! domains switch by SNI in Mbed TLS's SNI callback (`mbedtls_ssl_set_hs_own_cert`,
//! `_ca_chain`, `_authmode`). Client name checks follow RFC 5922 in a per-session verify
//! callback that replaces Mbed TLS's own host name check. One CTR-DRBG per process,
//! reseeded when the process id changes (fork); PSA crypto (TLS 1.3) draws from it too.
//!
//! CRLs (`DomainConfig::crls`) are handed to Mbed TLS with the trust anchors; it checks
//! every certificate of the peer's chain against the CRL of its issuer when one is listed.
//! Mbed TLS accepts a certificate whose issuer has no CRL in the list; as in the other
//! backends, the verify callback refuses a peer leaf whose issuer has none (the leaf's raw
//! issuer name against each CRL's). The key log gets `CLIENT_RANDOM` lines (TLS 1.2) and the
//! four TLS 1.3 traffic secrets from `mbedtls_ssl_set_export_keys_cb`. Several identities on
//! one server domain: Mbed TLS picks the first whose key type the negotiated suite and the
//! client's signature algorithms allow. TLS 1.3 resumption always runs a fresh (EC)DHE
//! exchange (`psk_dhe_ke`).
//!
//! ## Hooks
//!
//! - [`install_lock_hooks`] (`LOCK_HOOK`): every mutex Mbed TLS creates, locks, unlocks and
//!   frees goes to the installed [`LockHooks`](sipstls_core::hooks::LockHooks); before the
//!   first use of the backend only.
//! - [`install_allocator_hooks`] (`ALLOCATOR_HOOK`): `mbedtls_calloc`/`mbedtls_free`.
//!
//! ## What this backend refuses (`Error::Unsupported`) and why
//!
//! - An SNI switch to a domain whose ALPN list, versions, cipher lists, resumption settings
//!   or key log differ from the listener's default domain fails that handshake with
//!   `Error::Unsupported { capability: SNI_SWITCH }`: Mbed TLS can change only the
//!   certificates, trust anchors and client-certificate mode during a handshake.
//! - ALPN protocol names containing a NUL byte are refused as `InvalidConfig` (Mbed TLS
//!   takes C strings).
//! - **Migrating process model**: not claimed.
//!
//! ## Process models
//!
//! Confined and pinned are claimed (measured by `tests/fork_pinned.rs`). In the pinned
//! model forked workers share the domain's ticket keys until Mbed TLS first rotates them
//! (after the 24 h ticket lifetime); each worker then rotates on its own and a ticket from
//! another worker falls back to a full handshake. The server session-ID cache is
//! per process.
#![warn(missing_docs)]
// Public types that will grow are #[non_exhaustive]; the closed ones say why.
#![warn(clippy::exhaustive_structs, clippy::exhaustive_enums)]

mod backend;
mod domain;
mod errors;
mod hooks;
mod io;
mod rng;
mod session;
mod store;
mod x509;

pub use crate::backend::MbedtlsBackend;
pub use crate::domain::{MbedtlsClientDomain, MbedtlsServerDomain};
pub use crate::hooks::{init, install_allocator_hooks, install_lock_hooks};
pub use crate::session::MbedtlsSession;

/// The backend name.
pub const NAME: &str = "mbedtls";
