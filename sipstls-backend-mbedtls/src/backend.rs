//! The Mbed TLS backend: its capabilities, and the domains it compiles.

use std::ffi::{c_char, CStr};
use std::sync::{Arc, Mutex};

use sipstls_core::{Backend, BackendInfo, Capabilities, ClientDomain, DomainConfig, Result, Role, ServerDomain};
use sipstls_mbedtls_sys as sys;

use crate::{domain, hooks, rng, MbedtlsClientDomain, MbedtlsServerDomain, NAME};

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
