//! # sipstls-backend-mbedtls
//!
//! The sipstls [`Backend`] on Mbed TLS 3.6 LTS (Apache-2.0), built from source by
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

mod domain;
mod errors;
mod hooks;
mod io;
mod rng;
mod session;
mod store;
mod x509;

use std::ffi::{c_char, CStr};
use std::sync::{Arc, Mutex};

use sipstls_core::{Backend, BackendInfo, Capabilities, ClientDomain, DomainConfig, Result, Role, ServerDomain};
use sipstls_mbedtls_sys as sys;

pub use crate::domain::{MbedtlsClientDomain, MbedtlsServerDomain};
pub use crate::hooks::{init, install_allocator_hooks, install_lock_hooks};
pub use crate::session::MbedtlsSession;

/// The backend name.
pub const NAME: &str = "mbedtls";

/// The Mbed TLS backend.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct MbedtlsBackend;

impl MbedtlsBackend {
    /// The backend.
    pub fn new() -> Self {
        MbedtlsBackend
    }

    const CAPS: Capabilities = Capabilities::TLS12
        .union(Capabilities::TLS13)
        .union(Capabilities::CLIENT_CERT)
        .union(Capabilities::SNI_SWITCH)
        .union(Capabilities::ALPN)
        .union(Capabilities::RESUMPTION_TICKETS)
        .union(Capabilities::RESUMPTION_SESSION_ID)
        .union(Capabilities::CIPHER_LIST_TLS12)
        .union(Capabilities::CIPHER_SUITES_TLS13)
        // Each identity is pushed with mbedtls_ssl_conf_own_cert; Mbed TLS picks the first
        // one the suite and the client's signature algorithms allow.
        .union(Capabilities::MULTIPLE_IDENTITIES)
        // CRLs beside the trust anchors (mbedtls_ssl_conf_ca_chain / _set_hs_ca_chain), and
        // the key log from mbedtls_ssl_set_export_keys_cb. Conformance:
        // crl_revoked_*_refused, key_log_written.
        .union(Capabilities::CRL)
        .union(Capabilities::KEY_LOG)
        // Session cache callbacks over the store, sessions by mbedtls_ssl_session_save/load.
        .union(Capabilities::SESSION_STORE)
        // Ticket write/parse callbacks sealing with the provider's keys (store.rs).
        .union(Capabilities::TICKET_KEYS)
        // MBEDTLS_PLATFORM_MEMORY and MBEDTLS_THREADING_ALT (hooks.rs).
        .union(Capabilities::ALLOCATOR_HOOK)
        .union(Capabilities::LOCK_HOOK)
        .union(Capabilities::MODEL_CONFINED)
        .union(Capabilities::MODEL_PINNED);
}

impl Backend for MbedtlsBackend {
    fn info(&self) -> BackendInfo {
        let mut buf = [0u8; 32];
        // SAFETY: the function writes at most 18 bytes ("Mbed TLS x.y.z" and NUL) into the
        // buffer, which is larger.
        unsafe { sys::version_get_string_full(buf.as_mut_ptr() as *mut c_char) };
        let library = CStr::from_bytes_until_nul(&buf).map(|c| c.to_string_lossy().into_owned()).unwrap_or_default();
        BackendInfo::new(NAME, library, "Apache-2.0")
    }

    fn capabilities(&self) -> Capabilities {
        Self::CAPS
    }

    fn fill_random(&self, out: &mut [u8]) -> Result<()> {
        hooks::init()?;
        rng::fill(out)
    }

    fn server_domain(&self, cfg: &DomainConfig) -> Result<Arc<dyn ServerDomain>> {
        cfg.validate(Role::Server, NAME, Self::CAPS)?;
        Ok(Arc::new(MbedtlsServerDomain { inner: Arc::new(domain::compile(cfg, Role::Server)?) }))
    }

    fn client_domain(&self, cfg: &DomainConfig) -> Result<Arc<dyn ClientDomain>> {
        cfg.validate(Role::Client, NAME, Self::CAPS)?;
        Ok(Arc::new(MbedtlsClientDomain {
            inner: Arc::new(domain::compile(cfg, Role::Client)?),
            cache: Arc::new(Mutex::new(domain::ClientCache::default())),
        }))
    }
}
