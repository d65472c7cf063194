//! Domains: a [`DomainConfig`] compiled into an Mbed TLS configuration and everything it
//! points to, server domains (with the SNI switch) and client domains (with their session
//! cache for resumption).

use std::any::Any;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::{Arc, Mutex};

use sipstls_core::{
    Capabilities, ClientDomain, DomainConfig, Error, NameVerification, ProtocolVersion, Result, Role, ServerDomain,
    ServerName, Session, SniCandidates,
};
use sipstls_mbedtls_sys as sys;

use crate::io::{Shared, VerifyPolicy};
use crate::session::{CacheSlot, MbedtlsSession, NewSession};
use crate::x509::{CertChain, CrlList, PrivateKey, SavedSession, SslConfig, TicketKeys};
use crate::{errors, store, NAME};

/// Key-exchange groups offered, in preference order (TLS ids, zero-terminated).
const GROUPS: &[u16] = &[
    sys::SSL_IANA_TLS_GROUP_X25519 as u16,
    sys::SSL_IANA_TLS_GROUP_SECP256R1 as u16,
    sys::SSL_IANA_TLS_GROUP_SECP384R1 as u16,
    0,
];

/// TLS 1.3 suites: IANA name and Mbed TLS name.
const TLS13_NAMES: &[(&str, &str)] = &[
    ("TLS_AES_128_GCM_SHA256", "TLS1-3-AES-128-GCM-SHA256"),
    ("TLS_AES_256_GCM_SHA384", "TLS1-3-AES-256-GCM-SHA384"),
    ("TLS_CHACHA20_POLY1305_SHA256", "TLS1-3-CHACHA20-POLY1305-SHA256"),
];

/// A NULL-terminated array of C strings for `mbedtls_ssl_conf_alpn_protocols`.
struct AlpnList {
    _names: Vec<CString>,
    _ptrs: Vec<*const c_char>,
}

/// A compiled domain: the Mbed TLS configuration and everything it points to.
/// Field order matters: `conf` is dropped first.
pub(crate) struct Compiled {
    conf: SslConfig,
    _store: Option<Box<store::StoreCtx>>,
    _tickets: Option<TicketKeys>,
    _alpn: Option<AlpnList>,
    _suites: Vec<c_int>,
    /// The key log the export-keys callback writes to (its context pointer points here).
    key_log: Option<Box<sipstls_core::KeyLogSink>>,
    identities: Vec<(CertChain, PrivateKey)>,
    trust: Option<CertChain>,
    crl: Option<CrlList>,
    /// The raw issuer names of `crl` (see `io::Shared::crl_issuers`).
    pub(crate) crl_issuers: Vec<Vec<u8>>,
    pub(crate) authmode: c_int,
    pub(crate) cfg: DomainConfig,
}

// SAFETY: after `compile` nothing modifies the configuration or the objects it points to
// (certificates, CRLs, keys, ALPN strings, suite list, the key log sink, which is itself
// Send + Sync); Mbed TLS reads an `ssl_config` from many contexts at once by design. The
// session cache and ticket keys lock internally (MBEDTLS_THREADING_C).
unsafe impl Send for Compiled {}
// SAFETY: see `Send`.
unsafe impl Sync for Compiled {}

impl Compiled {
    pub(crate) fn conf_ptr(&self) -> *const sys::ssl_config {
        self.conf.as_ptr()
    }

    /// The export-keys callback's context for sessions of this domain, if it logs keys.
    pub(crate) fn key_log_ptr(&self) -> Option<*mut c_void> {
        self.key_log.as_ref().map(|sink| &**sink as *const sipstls_core::KeyLogSink as *mut c_void)
    }
}

/// The zero-terminated Mbed TLS suite ids for the configured TLS 1.3 and TLS 1.2 lists
/// (TLS 1.3 first; each only when its version is enabled).
fn suite_ids(cfg: &DomainConfig) -> Result<Vec<c_int>> {
    let id_of = |mbed: &str, setting: &'static str, n: &str| -> Result<c_int> {
        let c = CString::new(mbed).map_err(|_| Error::config(setting, format!("{n}: a NUL byte")))?;
        // SAFETY: a valid C string; the function only reads it.
        let id = unsafe { sys::ssl_get_ciphersuite_id(c.as_ptr()) };
        if id == 0 {
            return Err(Error::config(setting, format!("{n} is not built into Mbed TLS")));
        }
        Ok(id)
    };
    let mut ids = Vec::new();
    if cfg.max_version >= ProtocolVersion::Tls13 {
        let names: Vec<&str> = match &cfg.cipher_suites_tls13 {
            Some(list) => list.iter().map(String::as_str).collect(),
            None => sipstls_core::DEFAULT_TLS13_SUITES.to_vec(),
        };
        for n in names {
            let Some((_, mbed)) = TLS13_NAMES.iter().find(|(iana, _)| iana.eq_ignore_ascii_case(n)) else {
                return Err(Error::config("cipher_suites_tls13", format!("{n} is not a TLS 1.3 suite")));
            };
            ids.push(id_of(mbed, "cipher_suites_tls13", n)?);
        }
    }
    let names: Vec<&str> = match &cfg.cipher_list_tls12 {
        Some(list) => list.iter().map(String::as_str).collect(),
        None => sipstls_core::DEFAULT_TLS12_SUITES.to_vec(),
    };
    for n in names {
        // Only forward-secret AEAD suites: sipstls's default list is also the allowed one.
        let Some(iana) = sipstls_core::DEFAULT_TLS12_SUITES.iter().find(|d| d.eq_ignore_ascii_case(n)) else {
            return Err(Error::config("cipher_list_tls12", format!("{n} is not a TLS 1.2 suite this backend allows")));
        };
        let id = id_of(&iana.replace('_', "-"), "cipher_list_tls12", n)?;
        if cfg.min_version <= ProtocolVersion::Tls12 {
            ids.push(id);
        }
    }
    ids.push(0);
    Ok(ids)
}

fn version_id(v: ProtocolVersion) -> u16 {
    match v {
        ProtocolVersion::Tls12 => sys::SSL_VERSION_TLS1_2 as u16,
        ProtocolVersion::Tls13 => sys::SSL_VERSION_TLS1_3 as u16,
    }
}

pub(crate) fn compile(cfg: &DomainConfig, role: Role) -> Result<Compiled> {
    crate::hooks::init()?;
    let mut conf = SslConfig::new();
    let c = conf.as_mut_ptr();
    let endpoint = match role {
        Role::Server => sys::SSL_IS_SERVER,
        Role::Client => sys::SSL_IS_CLIENT,
    };
    // SAFETY: `c` is the initialised configuration being built, exclusively ours.
    let ret = unsafe { sys::ssl_config_defaults(c, endpoint, sys::SSL_TRANSPORT_STREAM, sys::SSL_PRESET_DEFAULT) };
    if ret != 0 {
        return Err(errors::backend(ret));
    }
    let suites = suite_ids(cfg)?;
    // SAFETY: `c` as above; the group list is a static, the suite list is kept in `Compiled`
    // (its heap storage never moves) for as long as the configuration.
    unsafe {
        sys::sipstls_mbedtls_conf_versions(c, version_id(cfg.min_version), version_id(cfg.max_version));
        sys::ssl_conf_groups(c, GROUPS.as_ptr());
        sys::ssl_conf_ciphersuites(c, suites.as_ptr());
        // TLS 1.3 resumption keeps forward secrecy: (EC)DHE with or without a ticket, never
        // a ticket alone.
        sys::ssl_conf_tls13_key_exchange_modes(
            c,
            sys::SSL_TLS1_3_KEY_EXCHANGE_MODE_EPHEMERAL | sys::SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK_EPHEMERAL,
        );
        sys::ssl_conf_rng(c, Some(crate::rng::rng_callback), std::ptr::null_mut());
    }

    // Trust anchors, and the CRLs Mbed TLS checks beside them.
    let crl = if cfg.crls.is_empty() { None } else { Some(CrlList::from_der(cfg.crls.iter().map(|c| c.der()))?) };
    let crl_issuers = crl.as_ref().map(CrlList::issuer_names).unwrap_or_default();
    let mut trust = None;
    if !cfg.trust_anchors.is_empty() {
        let mut list = CertChain::from_der(cfg.trust_anchors.iter().map(|c| c.der()), "trust_anchors")?;
        let crl_ptr = crl.as_ref().map_or(std::ptr::null_mut(), |l| l.as_ptr().cast_mut());
        // SAFETY: `c` as above; the chain and CRL list are kept in `Compiled` and only read.
        unsafe { sys::ssl_conf_ca_chain(c, list.as_mut_ptr(), crl_ptr) };
        trust = Some(list);
    }
    // Our identities: a server presents any (Mbed TLS picks by the client's algorithms); a
    // client presents the first.
    let mut identities = Vec::new();
    for (i, id) in cfg.identities.iter().enumerate() {
        if role == Role::Client && i > 0 {
            break;
        }
        if id.chain.is_empty() {
            return Err(Error::config("identities", "an identity has an empty chain"));
        }
        let mut chain = CertChain::from_der(id.chain.iter().map(|c| c.der()), "identities")?;
        let mut key = PrivateKey::from_der(id.key.der())?;
        if !key.matches(chain.leaf_key()) {
            return Err(Error::config("identities", "the private key does not match the certificate"));
        }
        // SAFETY: `c` as above; chain and key are kept in `Compiled` and only read.
        let ret = unsafe { sys::ssl_conf_own_cert(c, chain.as_mut_ptr(), key.as_mut_ptr()) };
        if ret != 0 {
            return Err(Error::config("identities", errors::describe(ret)));
        }
        identities.push((chain, key));
    }

    let authmode = match (role, cfg.verify_peer, cfg.require_peer_certificate) {
        (_, false, _) => sys::SSL_VERIFY_NONE,
        (Role::Client, true, _) | (Role::Server, true, true) => sys::SSL_VERIFY_REQUIRED,
        (Role::Server, true, false) => sys::SSL_VERIFY_OPTIONAL,
    };
    // SAFETY: `c` as above.
    unsafe { sys::ssl_conf_authmode(c, authmode) };

    let key_log = cfg.key_log.clone().map(Box::new);

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
        let ret = unsafe { sys::ssl_conf_alpn_protocols(c, ptrs.as_mut_ptr()) };
        if ret != 0 {
            return Err(Error::config("alpn", errors::describe(ret)));
        }
        Some(AlpnList { _names: names, _ptrs: ptrs })
    };

    let mut session_store = None;
    let mut tickets = None;
    match role {
        Role::Server => {
            // SAFETY: `c` as above; the box is kept in `Compiled` beside it.
            session_store = unsafe { store::install(c, store::Resumption::of(cfg)) };
            if cfg.ticket_keys.is_none() && cfg.resumption.tickets {
                let mut t = TicketKeys::new();
                // SAFETY: sets up the live ticket context; keys come from the process's
                // generator.
                let ret = unsafe {
                    sys::ssl_ticket_setup(
                        t.as_mut_ptr(),
                        Some(crate::rng::rng_callback),
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
                        c,
                        Some(sys::ssl_ticket_write),
                        Some(sys::ssl_ticket_parse),
                        t.as_mut_ptr().cast::<c_void>(),
                    )
                };
                tickets = Some(t);
            }
            // SAFETY: a plain function that catches panics; no context pointer.
            unsafe { sys::ssl_conf_sni(c, Some(crate::io::sni_callback), std::ptr::null_mut()) };
        }
        Role::Client => {
            let on = if cfg.resumption.tickets {
                sys::SSL_SESSION_TICKETS_ENABLED
            } else {
                sys::SSL_SESSION_TICKETS_DISABLED
            };
            // SAFETY: `c` as above. TLS 1.3 tickets arrive after the handshake: `ssl_read`
            // then reports them (ERR_SSL_RECEIVED_NEW_SESSION_TICKET) and the session keeps
            // the newest for resumption.
            unsafe {
                sys::ssl_conf_session_tickets(c, on);
                sys::ssl_conf_tls13_enable_signal_new_session_tickets(
                    c,
                    if cfg.resumption.tickets {
                        sys::SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED
                    } else {
                        sys::SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_DISABLED
                    },
                );
            }
        }
    }
    Ok(Compiled {
        conf,
        _store: session_store,
        _tickets: tickets,
        _alpn: alpn,
        _suites: suites,
        key_log,
        identities,
        trust,
        crl,
        crl_issuers,
        authmode,
        cfg: cfg.clone(),
    })
}

/// A compiled server domain.
pub struct MbedtlsServerDomain {
    pub(crate) inner: Arc<Compiled>,
}

impl ServerDomain for MbedtlsServerDomain {
    fn accept_with_sni(&self, sni: Option<Arc<SniCandidates>>) -> Result<Box<dyn Session>> {
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
        && a.cipher_suites_tls13 == b.cipher_suites_tls13
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
                "Mbed TLS cannot change ALPN, versions, cipher suites, resumption or the key log during a \
                 handshake: the SNI domain must match the listener's default domain in these settings",
            ));
        }
    }
    for (chain, key) in &target.identities {
        // SAFETY: the chain and key live in `target`, which `shared.switched` keeps alive for
        // the session's lifetime; Mbed TLS only reads them.
        let ret = unsafe { sys::ssl_set_hs_own_cert(ssl, chain.as_ptr().cast_mut(), key.as_ptr().cast_mut()) };
        if ret != 0 {
            return Err(errors::backend(ret));
        }
    }
    let ca = target.trust.as_ref().map_or(std::ptr::null_mut(), |t| t.as_ptr().cast_mut());
    let crl = target.crl.as_ref().map_or(std::ptr::null_mut(), |c| c.as_ptr().cast_mut());
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
    pub(crate) inner: Arc<Compiled>,
    pub(crate) cache: Arc<Mutex<ClientCache>>,
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
            // NULL when no SNI is sent, which also tells Mbed TLS that no name is checked
            // by it.
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
