//! # sipstls-backend-mbedtls
//!
//! The sipstls [`Backend`] on Mbed TLS 2.28 (bundled by `mbedtls-sys-auto`, built with
//! cmake; Apache-2.0), through the `mbedtls` crate for certificates, keys and the
//! configuration, and its raw bindings for sessions.
//!
//! Sessions run over memory buffers: Mbed TLS's I/O callbacks read what `feed_tls`
//! buffered (`WANT_READ` when empty) and queue what it writes for `take_tls`. Server
//! domains switch by SNI in Mbed TLS's SNI callback (`mbedtls_ssl_set_hs_own_cert`,
//! `_ca_chain`, `_authmode`). Client name checks follow RFC 5922 in a per-session verify
//! callback that replaces Mbed TLS's own host name check. One CTR-DRBG per process,
//! reseeded when the process id changes (fork).
//!
//! CRLs (`DomainConfig::crls`) are handed to Mbed TLS with the trust anchors; it checks
//! every certificate of the peer's chain against the CRL of its issuer when one is listed.
//! Mbed TLS accepts a certificate whose issuer has no CRL in the list; as in the other
//! backends, the verify callback refuses a peer leaf whose issuer has none (the leaf's raw
//! issuer name against each CRL's). The key log gets one
//! `CLIENT_RANDOM` line per full handshake from `mbedtls_ssl_conf_export_keys_ext_cb`.
//! Several identities on one server domain: Mbed TLS picks the first whose key type the
//! negotiated suite and the client's signature algorithms allow.
//!
//! ## What this backend refuses (`Error::Unsupported`) and why
//!
//! - **TLS 1.3** (`TLS13`, `CIPHER_SUITES_TLS13`): Mbed TLS 2.28 has none. A domain whose
//!   versions include 1.2 runs TLS 1.2 only; `min_version = TLS 1.3` is refused.
//! - **Allocator hooks** (`ALLOCATOR_HOOK`): the bundled build lacks
//!   `MBEDTLS_PLATFORM_MEMORY` (and `MBEDTLS_PLATFORM_C`), so Mbed TLS calls libc
//!   `calloc`/`free` directly; [`install_allocator_hooks`] always refuses.
//! - **Lock hooks** (`LOCK_HOOK`): the build uses `MBEDTLS_THREADING_PTHREAD`, not the
//!   replaceable `MBEDTLS_THREADING_ALT`.
//! - **Migrating process model**: not measured for this backend.
//! - An SNI switch to a domain whose ALPN list, versions, cipher list or resumption
//!   settings differ from the listener's default domain fails that handshake with
//!   `Error::Unsupported { capability: SNI_SWITCH }`: Mbed TLS can change only the
//!   certificates, trust anchors and client-certificate mode during a handshake.
//! - An SNI switch to a domain with another key log is refused the same way (the export-keys
//!   callback belongs to the configuration).
//! - ALPN protocol names containing a NUL byte are refused as `InvalidConfig` (Mbed TLS
//!   takes C strings).
//!
//! ## Process models
//!
//! Confined and pinned are claimed (measured by `tests/fork_pinned.rs`). In the pinned
//! model forked workers share the domain's ticket keys until Mbed TLS first rotates them
//! (after the 24 h ticket lifetime); each worker then rotates on its own and a ticket from
//! another worker falls back to a full handshake. The server session-ID cache is
//! per process.
#![warn(missing_docs)]

mod errors;
mod io;
mod rng;
mod session;
mod store;

use std::any::Any;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::{Arc, Mutex};

use mbedtls::alloc::List as MbedtlsList;
use mbedtls::pk::Pk;
use mbedtls::ssl::config::{AuthMode, Endpoint, Preset, Renegotiation, Transport, UseSessionTickets, Version};
use mbedtls::ssl::Config;
use mbedtls::x509::Certificate as MbedCert;
use mbedtls::x509::Crl as MbedCrl;
use mbedtls_sys as sys;
use sipstls_core::hooks::AllocatorHooks;
use sipstls_core::{
    Backend, BackendInfo, Capabilities, ClientDomain, DomainConfig, Error, NameVerification, Result, Role,
    ServerDomain, ServerName, Session, SniCandidates,
};

use crate::io::{Shared, VerifyPolicy};
pub use crate::session::MbedtlsSession;
use crate::session::{CacheSlot, NewSession};

/// The backend name.
pub const NAME: &str = "mbedtls";

/// The TLS 1.2 suites used when no list is configured, and the only ones a list may name:
/// forward-secret AEAD only, in sipstls's default order (AES-128-GCM first).
const DEFAULT_TLS12: &[&str] = sipstls_core::DEFAULT_TLS12_SUITES;

/// Key-exchange groups offered, in preference order.
const CURVES: &[sys::ecp_group_id] =
    &[sys::ECP_DP_CURVE25519, sys::ECP_DP_SECP256R1, sys::ECP_DP_SECP384R1, sys::ECP_DP_NONE];

/// The Mbed TLS backend (TLS 1.2 only).
#[derive(Debug, Clone, Copy, Default)]
pub struct MbedtlsBackend;

impl MbedtlsBackend {
    /// The backend.
    pub fn new() -> Self {
        MbedtlsBackend
    }

    const CAPS: Capabilities = Capabilities::TLS12
        .union(Capabilities::CLIENT_CERT)
        .union(Capabilities::SNI_SWITCH)
        .union(Capabilities::ALPN)
        .union(Capabilities::RESUMPTION_TICKETS)
        .union(Capabilities::RESUMPTION_SESSION_ID)
        .union(Capabilities::CIPHER_LIST_TLS12)
        // Each identity is pushed with mbedtls_ssl_conf_own_cert; Mbed TLS picks the first
        // one the suite and the client's signature algorithms allow.
        .union(Capabilities::MULTIPLE_IDENTITIES)
        // CRLs beside the trust anchors (mbedtls_ssl_conf_ca_chain / _set_hs_ca_chain), and
        // the key log from mbedtls_ssl_conf_export_keys_ext_cb (master secret and client
        // random: CLIENT_RANDOM lines). Conformance: crl_revoked_*_refused, key_log_written.
        .union(Capabilities::CRL)
        .union(Capabilities::KEY_LOG)
        // Session cache callbacks over the store, sessions by mbedtls_ssl_session_save/load.
        .union(Capabilities::SESSION_STORE)
        // Ticket write/parse callbacks sealing with the provider's keys (store.rs).
        .union(Capabilities::TICKET_KEYS)
        .union(Capabilities::MODEL_CONFINED)
        .union(Capabilities::MODEL_PINNED);
}

/// Refuses: Mbed TLS as bundled here is built without `MBEDTLS_PLATFORM_MEMORY`, so its
/// allocations cannot be routed (always `Error::Unsupported { capability: ALLOCATOR_HOOK }`).
pub fn install_allocator_hooks(_hooks: &'static dyn AllocatorHooks) -> Result<()> {
    Err(Error::unsupported(
        NAME,
        Capabilities::ALLOCATOR_HOOK,
        "the bundled Mbed TLS 2.28 is built without MBEDTLS_PLATFORM_MEMORY: it calls libc calloc/free directly",
    ))
}

fn cert_list(certs: &[sipstls_core::Certificate], setting: &'static str) -> Result<MbedtlsList<MbedCert>> {
    let mut list = MbedtlsList::new();
    for c in certs {
        let parsed =
            MbedCert::from_der(c.der()).map_err(|e| Error::config(setting, format!("unusable certificate: {e}")))?;
        list.push(parsed);
    }
    Ok(list)
}

/// A NULL-terminated array of C strings for `mbedtls_ssl_conf_alpn_protocols`.
struct AlpnList {
    _names: Vec<CString>,
    _ptrs: Vec<*const c_char>,
}

/// A server-side session cache (`mbedtls_ssl_cache_context`, internally locked).
struct SessionCache(Box<sys::ssl_cache_context>);

impl Drop for SessionCache {
    fn drop(&mut self) {
        // SAFETY: initialised in `compile`; freed once, after the configuration that points
        // to it (field order in `Compiled`).
        unsafe { sys::ssl_cache_free(&mut *self.0) };
    }
}

/// Session-ticket keys (`mbedtls_ssl_ticket_context`, internally locked).
struct TicketKeys(Box<sys::ssl_ticket_context>);

impl Drop for TicketKeys {
    fn drop(&mut self) {
        // SAFETY: initialised in `compile`; freed once, after the configuration.
        unsafe { sys::ssl_ticket_free(&mut *self.0) };
    }
}

/// A compiled domain: the Mbed TLS configuration and everything it points to.
/// Field order matters: `conf` is dropped first.
pub(crate) struct Compiled {
    conf: Config,
    _cache: Option<SessionCache>,
    _store: Option<Box<store::StoreCtx>>,
    _tickets: Option<TicketKeys>,
    _alpn: Option<AlpnList>,
    /// The key log the export-keys callback writes to (its context pointer points here).
    _key_log: Option<Box<sipstls_core::KeyLogSink>>,
    identities: Vec<(Arc<MbedtlsList<MbedCert>>, Arc<Pk>)>,
    trust: Option<Arc<MbedtlsList<MbedCert>>>,
    crl: Option<Arc<MbedCrl>>,
    /// The raw issuer names of `crl` (see `io::Shared::crl_issuers`).
    pub(crate) crl_issuers: Vec<Vec<u8>>,
    authmode: c_int,
    pub(crate) cfg: DomainConfig,
}

// SAFETY: after `compile` nothing modifies the configuration or the objects it points to
// (certificates, CRLs, keys, ALPN strings, the key log sink, which is itself Send + Sync);
// Mbed TLS reads an `ssl_config` from many contexts at
// once by design. The session cache and ticket keys lock internally (MBEDTLS_THREADING_C).
unsafe impl Send for Compiled {}
// SAFETY: see `Send`.
unsafe impl Sync for Compiled {}

impl Compiled {
    pub(crate) fn conf_ptr(&self) -> *const sys::ssl_config {
        (&self.conf).into()
    }
}

fn compile(cfg: &DomainConfig, role: Role) -> Result<Compiled> {
    rng::check()?;
    let endpoint = match role {
        Role::Server => Endpoint::Server,
        Role::Client => Endpoint::Client,
    };
    let mut conf = Config::new(endpoint, Transport::Stream, Preset::Default);
    let be = |e: mbedtls::Error| Error::Backend { library: NAME, message: e.to_string() };
    // TLS 1.2 only (validate() refused configurations without it).
    conf.set_min_version(Version::Tls1_2).map_err(be)?;
    conf.set_max_version(Version::Tls1_2).map_err(be)?;
    conf.set_renegotiation(Renegotiation::Disabled);
    conf.set_curves(Arc::new(CURVES.to_vec()));
    // Cipher suites: IANA names mapped to Mbed TLS's; only forward-secret AEAD suites.
    let names: Vec<&str> = match &cfg.cipher_list_tls12 {
        Some(list) => list.iter().map(String::as_str).collect(),
        None => DEFAULT_TLS12.to_vec(),
    };
    let mut ids: Vec<c_int> = Vec::new();
    for n in names {
        let known = DEFAULT_TLS12.iter().find(|d| d.eq_ignore_ascii_case(n));
        let Some(iana) = known else {
            return Err(Error::config("cipher_list_tls12", format!("{n} is not a TLS 1.2 suite this backend allows")));
        };
        let mbed = CString::new(iana.replace('_', "-")).expect("no NUL in a constant");
        // SAFETY: a valid C string; the function only reads it.
        let id = unsafe { sys::ssl_get_ciphersuite_id(mbed.as_ptr()) };
        if id == 0 {
            return Err(Error::config("cipher_list_tls12", format!("{n} is not built into Mbed TLS")));
        }
        ids.push(id);
    }
    ids.push(0);
    conf.set_ciphersuites(Arc::new(ids));

    // Trust anchors, and the CRLs Mbed TLS checks beside them.
    let crl = if cfg.crls.is_empty() {
        None
    } else {
        let mut crl = MbedCrl::new();
        for c in &cfg.crls {
            crl.push_from_der(c.der()).map_err(|e| Error::config("crls", format!("unusable CRL: {e}")))?;
        }
        // The mbedtls crate's `set_ca_list` takes an `Arc<Crl>`; the CRL is only read after
        // `compile` (see the Send/Sync note on `Compiled`).
        #[allow(clippy::arc_with_non_send_sync)]
        let crl = Arc::new(crl);
        Some(crl)
    };
    let crl_issuers = crl.as_deref().map(crl_issuer_names).unwrap_or_default();
    let trust = if cfg.trust_anchors.is_empty() {
        None
    } else {
        let list = Arc::new(cert_list(&cfg.trust_anchors, "trust_anchors")?);
        conf.set_ca_list(list.clone(), crl.clone());
        Some(list)
    };
    // Our identities: a server presents any (Mbed TLS picks by the client's algorithms);
    // a client presents the first.
    let mut identities = Vec::new();
    for (i, id) in cfg.identities.iter().enumerate() {
        if role == Role::Client && i > 0 {
            break;
        }
        let chain = cert_list(&id.chain, "identities")?;
        let key = Pk::from_private_key(id.key.der(), None)
            .map_err(|e| Error::config("identities", format!("unusable private key: {e}")))?;
        let leaf = chain.iter().next().ok_or_else(|| Error::config("identities", "an identity has an empty chain"))?;
        let leaf_pk: *const sys::pk_context = leaf.public_key().into();
        let key_ptr: *const sys::pk_context = (&key).into();
        // SAFETY: both are parsed key contexts alive for the call; the function only reads.
        if unsafe { sys::pk_check_pair(leaf_pk, key_ptr) } != 0 {
            return Err(Error::config("identities", "the private key does not match the certificate"));
        }
        let (chain, key) = (Arc::new(chain), Arc::new(key));
        conf.push_cert(chain.clone(), key.clone()).map_err(|e| Error::config("identities", e.to_string()))?;
        identities.push((chain, key));
    }

    let authmode = match (role, cfg.verify_peer, cfg.require_peer_certificate) {
        (_, false, _) => sys::SSL_VERIFY_NONE,
        (Role::Client, true, _) | (Role::Server, true, true) => sys::SSL_VERIFY_REQUIRED,
        (Role::Server, true, false) => sys::SSL_VERIFY_OPTIONAL,
    };
    conf.set_authmode(match authmode {
        sys::SSL_VERIFY_NONE => AuthMode::None,
        sys::SSL_VERIFY_OPTIONAL => AuthMode::Optional,
        _ => AuthMode::Required,
    });

    let conf_ptr: *mut sys::ssl_config = (&mut conf).into();
    // SAFETY: `conf_ptr` is the configuration being built, exclusively ours; the RNG
    // callback is a plain function over the global generator (no context pointer).
    unsafe { sys::ssl_conf_rng(conf_ptr, Some(rng::rng_callback), std::ptr::null_mut()) };

    // Key log: the callback's context is a boxed sink kept in `Compiled` (a stable
    // address for as long as the configuration).
    let key_log = cfg.key_log.clone().map(Box::new);
    if let Some(sink) = &key_log {
        let ctx = &**sink as *const sipstls_core::KeyLogSink as *mut std::ffi::c_void;
        // SAFETY: `conf_ptr` is the configuration being built; `ctx` points at the boxed
        // sink, which `Compiled` keeps (and never moves) while the configuration exists.
        unsafe { sys::ssl_conf_export_keys_ext_cb(conf_ptr, Some(export_keys), ctx) };
    }

    // ALPN.
    let alpn = if cfg.alpn.is_empty() {
        None
    } else {
        let names = cfg
            .alpn
            .iter()
            .map(|p| CString::new(p.clone()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| Error::config("alpn", "Mbed TLS cannot carry an ALPN name with a NUL byte"))?;
        let mut ptrs: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        // SAFETY: `ptrs` is a NULL-terminated array of C strings; both vectors are kept in
        // `Compiled` (heap storage does not move) for as long as the configuration.
        let ret = unsafe { sys::ssl_conf_alpn_protocols(conf_ptr, ptrs.as_mut_ptr()) };
        if ret != 0 {
            return Err(Error::config("alpn", errors::describe(ret)));
        }
        Some(AlpnList { _names: names, _ptrs: ptrs })
    };

    let mut cache = None;
    let mut session_store = None;
    let mut tickets = None;
    match role {
        Role::Server => {
            // SAFETY: `conf_ptr` is the configuration being built; the box is kept in
            // `Compiled` beside it.
            session_store = unsafe { store::install(conf_ptr, cfg) };
            if cfg.session_store.is_none() && cfg.resumption.session_ids {
                let mut c = SessionCache(Box::default());
                // SAFETY: init the boxed cache (freed by SessionCache's Drop, after the
                // configuration), then register Mbed TLS's own cache functions with it.
                unsafe {
                    sys::ssl_cache_init(&mut *c.0);
                    sys::ssl_conf_session_cache(
                        conf_ptr,
                        &mut *c.0 as *mut sys::ssl_cache_context as *mut std::ffi::c_void,
                        Some(sys::ssl_cache_get),
                        Some(sys::ssl_cache_set),
                    );
                }
                cache = Some(c);
            }
            if cfg.ticket_keys.is_none() && cfg.resumption.tickets {
                let mut t = TicketKeys(Box::default());
                // SAFETY: init the boxed ticket context (freed by TicketKeys' Drop, after the
                // configuration); keys come from the global generator.
                let ret = unsafe {
                    sys::ssl_ticket_init(&mut *t.0);
                    sys::ssl_ticket_setup(
                        &mut *t.0,
                        Some(rng::rng_callback),
                        std::ptr::null_mut(),
                        sys::CIPHER_AES_256_GCM,
                        86_400,
                    )
                };
                if ret != 0 {
                    return Err(errors::backend(ret));
                }
                // SAFETY: registers Mbed TLS's ticket functions with the live ticket context.
                unsafe {
                    sys::ssl_conf_session_tickets_cb(
                        conf_ptr,
                        Some(sys::ssl_ticket_write),
                        Some(sys::ssl_ticket_parse),
                        &mut *t.0 as *mut sys::ssl_ticket_context as *mut std::ffi::c_void,
                    )
                };
                tickets = Some(t);
            }
            // SAFETY: a plain function that catches panics; no context pointer.
            unsafe { sys::ssl_conf_sni(conf_ptr, Some(io::sni_callback), std::ptr::null_mut()) };
        }
        Role::Client => {
            conf.set_session_tickets(if cfg.resumption.tickets {
                UseSessionTickets::Enabled
            } else {
                UseSessionTickets::Disabled
            });
        }
    }
    Ok(Compiled {
        conf,
        _cache: cache,
        _store: session_store,
        _tickets: tickets,
        _alpn: alpn,
        _key_log: key_log,
        identities,
        trust,
        crl,
        crl_issuers,
        authmode,
        cfg: cfg.clone(),
    })
}

/// The raw issuer names (DER) of every CRL in a parsed list.
fn crl_issuer_names(crl: &MbedCrl) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut p: *const sys::x509_crl = crl.into();
    while !p.is_null() {
        // SAFETY: `p` is the head of the list owned by `crl` or a `next` link of it; Mbed
        // TLS keeps every entry and its `issuer_raw` bytes alive as long as the list.
        let c = unsafe { &*p };
        if c.version != 0 && !c.issuer_raw.p.is_null() {
            // SAFETY: `issuer_raw` describes `len` bytes inside the CRL's DER (see above).
            out.push(unsafe { std::slice::from_raw_parts(c.issuer_raw.p, c.issuer_raw.len) }.to_vec());
        }
        p = c.next;
    }
    out
}

/// Mbed TLS's export-keys callback: the TLS 1.2 master secret (48 bytes) and the client
/// random (32 bytes) become a `CLIENT_RANDOM` key log entry. Always returns 0 (a key log
/// never fails a handshake); a panic in the sink is caught.
///
/// # Safety
///
/// Called by Mbed TLS only: `ctx` is the `KeyLogSink` registered in `compile` (alive with
/// the configuration), `ms` points at the 48-byte master secret and `client_random` at 32
/// bytes, all valid for the call.
unsafe extern "C" fn export_keys(
    ctx: *mut std::ffi::c_void,
    ms: *const u8,
    _kb: *const u8,
    _maclen: usize,
    _keylen: usize,
    _ivlen: usize,
    client_random: *const u8,
    _server_random: *const u8,
    _prf: sys::tls_prf_types,
) -> c_int {
    if ctx.is_null() || ms.is_null() || client_random.is_null() {
        return 0;
    }
    // SAFETY: per this function's contract, `ctx` is the live sink and the two pointers
    // point at 48 and 32 readable bytes for the duration of the call.
    let (sink, ms, cr) = unsafe {
        (
            &*(ctx as *const sipstls_core::KeyLogSink),
            std::slice::from_raw_parts(ms, 48),
            std::slice::from_raw_parts(client_random, 32),
        )
    };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sink.log("CLIENT_RANDOM", cr, ms)));
    0
}

impl Backend for MbedtlsBackend {
    fn info(&self) -> BackendInfo {
        let mut buf = [0u8; 32];
        // SAFETY: the function writes at most 18 bytes ("Mbed TLS x.y.z" and NUL) into the
        // buffer, which is larger.
        unsafe { sys::version_get_string_full(buf.as_mut_ptr() as *mut c_char) };
        let library = CStr::from_bytes_until_nul(&buf).map(|c| c.to_string_lossy().into_owned()).unwrap_or_default();
        BackendInfo { name: NAME, library, license: "Apache-2.0" }
    }

    fn capabilities(&self) -> Capabilities {
        Self::CAPS
    }

    fn fill_random(&self, out: &mut [u8]) -> Result<()> {
        rng::fill(out)
    }

    fn server_domain(&self, cfg: &DomainConfig) -> Result<Arc<dyn ServerDomain>> {
        cfg.validate(Role::Server, NAME, Self::CAPS)?;
        Ok(Arc::new(MbedtlsServerDomain { inner: Arc::new(compile(cfg, Role::Server)?) }))
    }

    fn client_domain(&self, cfg: &DomainConfig) -> Result<Arc<dyn ClientDomain>> {
        cfg.validate(Role::Client, NAME, Self::CAPS)?;
        Ok(Arc::new(MbedtlsClientDomain {
            inner: Arc::new(compile(cfg, Role::Client)?),
            cache: Arc::new(Mutex::new(ClientCache::default())),
        }))
    }
}

/// A compiled server domain.
pub struct MbedtlsServerDomain {
    inner: Arc<Compiled>,
}

impl ServerDomain for MbedtlsServerDomain {
    fn accept(&self, sni: Option<Arc<SniCandidates>>) -> Result<Box<dyn Session>> {
        let cfg = &self.inner.cfg;
        let mut shared = Shared::new(
            VerifyPolicy::Server { optional: self.inner.authmode == sys::SSL_VERIFY_OPTIONAL },
            cfg.verify_depth,
            sni,
        );
        shared.base = Some(self.inner.clone());
        shared.crl_issuers = self.inner.crl_issuers.clone();
        Ok(Box::new(MbedtlsSession::new(NewSession {
            domain: self.inner.clone(),
            role: Role::Server,
            shared,
            hostname: None,
            sent_sni: None,
            expected_name: None,
            cache: None,
        })?))
    }

    fn config(&self) -> &DomainConfig {
        &self.inner.cfg
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The settings Mbed TLS fixes per configuration (not per handshake): an SNI switch to a
/// domain that differs in any of them is refused.
fn switch_compatible(a: &DomainConfig, b: &DomainConfig) -> bool {
    a.alpn == b.alpn
        && a.min_version == b.min_version
        && a.max_version == b.max_version
        && a.cipher_list_tls12 == b.cipher_list_tls12
        && a.resumption == b.resumption
        && a.key_log == b.key_log
}

/// The SNI callback's work: record the name, select a domain, move the handshake onto it.
pub(crate) fn switch_domain(ssl: *mut sys::ssl_context, shared: &mut Shared, name: &[u8]) -> Result<()> {
    let Ok(name) = std::str::from_utf8(name) else { return Ok(()) };
    shared.sni_seen = Some(name.to_ascii_lowercase());
    let Some(cands) = shared.sni.clone() else { return Ok(()) };
    let Some(d) = cands.select(name) else { return Ok(()) };
    let Some(d) = d.as_any().downcast_ref::<MbedtlsServerDomain>() else {
        return Err(Error::unsupported(NAME, Capabilities::SNI_SWITCH, "the SNI domain belongs to another backend"));
    };
    let target = d.inner.clone();
    if let Some(base) = &shared.base {
        if Arc::ptr_eq(base, &target) {
            return Ok(());
        }
        if !switch_compatible(&base.cfg, &target.cfg) {
            return Err(Error::unsupported(
                NAME,
                Capabilities::SNI_SWITCH,
                "Mbed TLS cannot change ALPN, versions, cipher suites or resumption during a handshake: the SNI \
                 domain must match the listener's default domain in these settings",
            ));
        }
    }
    for (chain, key) in &target.identities {
        let crt: *const sys::x509_crt = (&**chain).into();
        let pk: *const sys::pk_context = (&**key).into();
        // SAFETY: the chain and key live in `target`, which `shared.switched` keeps alive
        // for the session's lifetime; Mbed TLS only reads them.
        let ret = unsafe { sys::ssl_set_hs_own_cert(ssl, crt as *mut _, pk as *mut _) };
        if ret != 0 {
            return Err(errors::backend(ret));
        }
    }
    let ca = target.trust.as_ref().map_or(std::ptr::null(), |t| (&**t).into()) as *mut sys::x509_crt;
    let crl = target.crl.as_ref().map_or(std::ptr::null(), |c| (&**c).into()) as *mut sys::x509_crl;
    // SAFETY: as above; a NULL chain keeps the configuration's.
    unsafe {
        if !ca.is_null() {
            sys::ssl_set_hs_ca_chain(ssl, ca, crl);
        }
        sys::ssl_set_hs_authmode(ssl, target.authmode);
    }
    shared.policy = VerifyPolicy::Server { optional: target.authmode == sys::SSL_VERIFY_OPTIONAL };
    shared.verify_depth = target.cfg.verify_depth;
    shared.crl_issuers = target.crl_issuers.clone();
    shared.switched = Some(target);
    Ok(())
}

/// A client session kept for resumption (`mbedtls_ssl_session`, freed on drop).
pub(crate) struct SavedSession(Box<sys::ssl_session>);

// SAFETY: a self-contained C structure (owned buffers), no thread affinity.
unsafe impl Send for SavedSession {}

impl SavedSession {
    pub(crate) fn new() -> Self {
        let mut s = Box::new(sys::ssl_session::default());
        // SAFETY: initialises the boxed session.
        unsafe { sys::ssl_session_init(&mut *s) };
        SavedSession(s)
    }

    pub(crate) fn as_ptr(&self) -> *const sys::ssl_session {
        &*self.0
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut sys::ssl_session {
        &mut *self.0
    }
}

impl Drop for SavedSession {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`; freed once.
        unsafe { sys::ssl_session_free(&mut *self.0) };
    }
}

const CLIENT_CACHE_SIZE: usize = 256;

/// Sessions of a client domain by server name.
#[derive(Default)]
pub(crate) struct ClientCache {
    map: HashMap<String, SavedSession>,
}

impl ClientCache {
    pub(crate) fn get(&self, key: &str) -> Option<&SavedSession> {
        self.map.get(key)
    }

    pub(crate) fn insert(&mut self, key: String, s: SavedSession) {
        if self.map.len() >= CLIENT_CACHE_SIZE && !self.map.contains_key(&key) {
            if let Some(k) = self.map.keys().next().cloned() {
                self.map.remove(&k);
            }
        }
        self.map.insert(key, s);
    }
}

/// A compiled client domain, with its cache of sessions for resumption.
pub struct MbedtlsClientDomain {
    inner: Arc<Compiled>,
    cache: Arc<Mutex<ClientCache>>,
}

impl ClientDomain for MbedtlsClientDomain {
    fn connect(&self, server_name: Option<&ServerName>) -> Result<Box<dyn Session>> {
        let cfg = &self.inner.cfg;
        let name = sipstls_core::resolve_server_name(cfg, server_name)?;
        let sni = match &name {
            Some(ServerName::Dns(n)) if cfg.send_sni => Some(n.clone()),
            _ => None,
        };
        let check = match cfg.name_verification {
            NameVerification::Rfc5922 => name.clone(),
            NameVerification::DangerousDisabled => None,
        };
        let resume = cfg.resumption.tickets || cfg.resumption.session_ids;
        let cache = resume.then(|| CacheSlot {
            cache: self.cache.clone(),
            key: name.as_ref().map(|n| n.to_string()).unwrap_or_default(),
        });
        Ok(Box::new(MbedtlsSession::new(NewSession {
            domain: self.inner.clone(),
            role: Role::Client,
            shared: {
                let mut shared = Shared::new(VerifyPolicy::Client { name: check }, cfg.verify_depth, None);
                shared.crl_issuers = self.inner.crl_issuers.clone();
                shared
            },
            // SNI (and Mbed TLS's own name check, which the verify callback overrides);
            // NULL when no SNI is sent.
            hostname: Some(sni.clone()),
            sent_sni: sni,
            expected_name: name.map(|n| n.to_string()),
            cache,
        })?))
    }

    fn config(&self) -> &DomainConfig {
        &self.inner.cfg
    }
}
