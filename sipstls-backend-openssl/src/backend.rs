//! The OpenSSL backend: how a `DomainConfig` becomes an `SSL_CTX`.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock};

use sipstls_core::{
    Backend, BackendInfo, Capabilities, ClientDomain, DomainConfig, Error, PrivateKeyFormat, ProtocolVersion, Result,
    Role, ServerDomain, SniCandidates,
};
use ssl_lib::ec::EcKey;
use ssl_lib::pkey::{PKey, Private};
use ssl_lib::rsa::Rsa;
use ssl_lib::ssl::{
    AlpnError, NameType, SniError, Ssl, SslContextBuilder, SslMode, SslOptions, SslRef, SslSessionCacheMode,
    SslVerifyMode, SslVersion,
};
use ssl_lib::x509::store::X509StoreBuilder;
use ssl_lib::x509::X509;
use ssl_lib::ForeignType;
#[cfg(not(feature = "boring"))]
use ssl_lib::ForeignTypeRef;

use crate::cvt::{cvt, cvt_p};
use crate::domain::CachedSession;
#[cfg(not(feature = "boring"))]
use crate::store;
use crate::{ssl_lib, OpensslClientDomain, OpensslServerDomain, NAME};

/// The licence reported in [`BackendInfo`](sipstls_core::BackendInfo): the TLS library's. OpenSSL 3 is Apache-2.0.
#[cfg(not(feature = "boring"))]
const LICENSE: &str = "Apache-2.0";
/// BoringSSL's `LICENSE` (the copy bundled in boring-sys 5.4) is the Apache License 2.0,
/// with a note that Go-licensed test code is not compiled into libcrypto/libssl.
#[cfg(feature = "boring")]
const LICENSE: &str = "Apache-2.0";

/// The TLS 1.2 suites used when no list is configured: forward-secret AEAD only (what
/// rustls offers), by IANA name.
pub(crate) const DEFAULT_TLS12: &[&str] = sipstls_core::DEFAULT_TLS12_SUITES;

/// IANA name -> OpenSSL name of the TLS 1.2 suites sipstls accepts in a cipher list.
pub(crate) const TLS12_NAMES: &[(&str, &str)] = &[
    ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384"),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"),
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384"),
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256"),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305"),
    ("TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", "DHE-RSA-AES256-GCM-SHA384"),
    ("TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", "DHE-RSA-AES128-GCM-SHA256"),
];

pub(crate) const TLS13_NAMES: &[&str] =
    &["TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256"];

/// The OpenSSL backend (on BoringSSL with the feature `boring`).
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct OpensslBackend;

/// The backend on BoringSSL: the same type as [`OpensslBackend`], under the name of its
/// library.
#[cfg(feature = "boring")]
pub type BoringBackend = OpensslBackend;

impl OpensslBackend {
    /// The backend.
    pub fn new() -> Self {
        OpensslBackend
    }

    const COMMON_CAPS: Capabilities = Capabilities::TLS12
        .union(Capabilities::TLS13)
        .union(Capabilities::CLIENT_CERT)
        .union(Capabilities::SNI_SWITCH)
        .union(Capabilities::ALPN)
        .union(Capabilities::RESUMPTION_TICKETS)
        .union(Capabilities::RESUMPTION_SESSION_ID)
        .union(Capabilities::CIPHER_LIST_TLS12)
        .union(Capabilities::MODEL_CONFINED)
        .union(Capabilities::MODEL_PINNED)
        // CRLs in the trust store with X509_V_FLAG_CRL_CHECK (leaf only), and the key log
        // through SSL_CTX_set_keylog_callback (crl_revoked_*_refused, key_log_written).
        .union(Capabilities::CRL)
        .union(Capabilities::KEY_LOG);

    /// OpenSSL also sets its TLS 1.3 suites and takes allocator functions.
    #[cfg(not(feature = "boring"))]
    const CAPS: Capabilities = Self::COMMON_CAPS
        .union(Capabilities::CIPHER_SUITES_TLS13)
        .union(Capabilities::ALLOCATOR_HOOK)
        // One certificate slot per key type (RSA, ECDSA); OpenSSL picks by the client's
        // signature algorithms. BoringSSL has a single slot.
        .union(Capabilities::MULTIPLE_IDENTITIES)
        // External session cache callbacks and the EVP ticket key callback (store.rs).
        .union(Capabilities::SESSION_STORE)
        .union(Capabilities::TICKET_KEYS);

    /// BoringSSL's TLS 1.3 suites are fixed (not configurable), and it has no
    /// `CRYPTO_set_mem_functions`.
    #[cfg(feature = "boring")]
    const CAPS: Capabilities = Self::COMMON_CAPS;
}

pub(crate) fn backend_err(e: ssl_lib::error::ErrorStack) -> Error {
    Error::Backend { library: NAME, message: e.to_string() }
}

pub(crate) fn ssl_version(v: ProtocolVersion) -> SslVersion {
    match v {
        ProtocolVersion::Tls12 => SslVersion::TLS1_2,
        ProtocolVersion::Tls13 => SslVersion::TLS1_3,
    }
}

pub(crate) fn load_key(id: &sipstls_core::Identity) -> Result<PKey<Private>> {
    let der = id.key.der();
    let bad = |e: ssl_lib::error::ErrorStack| Error::config("identities", format!("unusable private key: {e}"));
    match id.key.format() {
        PrivateKeyFormat::Pkcs8 => PKey::private_key_from_pkcs8(der).map_err(bad),
        PrivateKeyFormat::Sec1 => EcKey::private_key_from_der(der).and_then(PKey::from_ec_key).map_err(bad),
        PrivateKeyFormat::Pkcs1 => Rsa::private_key_from_der(der).and_then(PKey::from_rsa).map_err(bad),
    }
}

pub(crate) fn x509(c: &sipstls_core::Certificate, setting: &'static str) -> Result<X509> {
    X509::from_der(c.der()).map_err(|e| Error::config(setting, format!("unusable certificate: {e}")))
}

/// Settings shared by server and client contexts.
pub(crate) fn common(b: &mut SslContextBuilder, cfg: &DomainConfig, role: Role) -> Result<()> {
    b.set_min_proto_version(Some(ssl_version(cfg.min_version))).map_err(backend_err)?;
    b.set_max_proto_version(Some(ssl_version(cfg.max_version))).map_err(backend_err)?;
    b.set_options(SslOptions::NO_RENEGOTIATION | SslOptions::NO_COMPRESSION | SslOptions::CIPHER_SERVER_PREFERENCE);
    b.set_mode(SslMode::RELEASE_BUFFERS);
    // TLS 1.2 list: IANA names mapped to OpenSSL's; unknown names are refused.
    let names: Vec<&str> = match &cfg.cipher_list_tls12 {
        Some(list) => list.iter().map(String::as_str).collect(),
        None => DEFAULT_TLS12.to_vec(),
    };
    let mut openssl_names = Vec::new();
    for n in names {
        let Some((_, o)) = TLS12_NAMES.iter().find(|(iana, _)| iana.eq_ignore_ascii_case(n)) else {
            return Err(Error::config("cipher_list_tls12", format!("{n} is not a TLS 1.2 suite sipstls allows")));
        };
        openssl_names.push(*o);
    }
    set_cipher_list(b, &openssl_names.join(":")).map_err(|e| Error::config("cipher_list_tls12", e.to_string()))?;
    set_tls13_suites(b, cfg)?;
    // Trust anchors, and the CRLs beside them (checked for the peer's leaf only).
    if !cfg.trust_anchors.is_empty() {
        let mut store = X509StoreBuilder::new().map_err(backend_err)?;
        for ca in &cfg.trust_anchors {
            store.add_cert(x509(ca, "trust_anchors")?).map_err(|e| Error::config("trust_anchors", e.to_string()))?;
        }
        add_crls(&mut store, cfg)?;
        b.set_cert_store(store.build());
    }
    if let Some(sink) = cfg.key_log.clone() {
        // OpenSSL hands complete NSS lines; a panic in the sink must not unwind into C.
        b.set_keylog_callback(move |_, line| {
            let _ = catch_unwind(AssertUnwindSafe(|| sink.log_nss_line(line)));
        });
    }
    b.set_verify_depth(u32::from(cfg.verify_depth));
    // Our identities (a server's certificates, a client's certificate).
    for (i, id) in cfg.identities.iter().enumerate() {
        if role == Role::Client && i > 0 {
            break; // a client presents its first identity
        }
        let leaf = x509(&id.chain[0], "identities")?;
        b.set_certificate(&leaf).map_err(|e| Error::config("identities", e.to_string()))?;
        let key = load_key(id)?;
        b.set_private_key(&key).map_err(|e| Error::config("identities", e.to_string()))?;
        b.check_private_key()
            .map_err(|_| Error::config("identities", "the private key does not match the certificate"))?;
        for inter in &id.chain[1..] {
            let cert = x509(inter, "identities")?;
            add1_chain_cert(b, &cert)
                .map_err(|_| Error::config("identities", "could not add an intermediate certificate"))?;
        }
    }
    Ok(())
}

#[cfg(not(feature = "boring"))]
extern "C" {
    // Not bound by openssl-sys; exported by libcrypto 3.
    fn X509_STORE_add_crl(store: *mut openssl_sys::X509_STORE, crl: *mut openssl_sys::X509_CRL) -> std::ffi::c_int;
}
#[cfg(feature = "boring")]
use ssl_lib::ffi::X509_STORE_add_crl;

/// Adds the configured CRLs to a trust store and turns on `X509_V_FLAG_CRL_CHECK`: the
/// peer's leaf is checked (not the intermediates: `CRL_CHECK_ALL` is not set), and a leaf
/// whose issuer has no CRL in the store fails with "unable to get certificate CRL".
pub(crate) fn add_crls(store: &mut X509StoreBuilder, cfg: &DomainConfig) -> Result<()> {
    use ssl_lib::x509::verify::X509VerifyFlags;
    if cfg.crls.is_empty() {
        return Ok(());
    }
    for crl in &cfg.crls {
        let der = crl.der();
        let len = std::ffi::c_long::try_from(der.len())
            .map_err(|_| Error::config("crls", "a certificate revocation list is too large"))?;
        let mut p = der.as_ptr();
        // SAFETY: `p` points at `len` readable bytes of `der`, which outlives the call;
        // d2i_X509_CRL reads at most `len` bytes, advances `p` and returns a new CRL object
        // (owned here) or null.
        let parsed = cvt_p(unsafe { ssl_lib::ffi::d2i_X509_CRL(std::ptr::null_mut(), &mut p, len as _) })
            .map_err(|_| Error::config("crls", "a certificate revocation list does not parse"))?;
        // SAFETY: `store.as_ptr()` is the live X509_STORE owned by the builder and `parsed`
        // a valid CRL: X509_STORE_add_crl takes its own reference, so ours is freed after.
        let added = cvt(unsafe { X509_STORE_add_crl(store.as_ptr(), parsed.as_ptr()) });
        // SAFETY: `parsed` is the CRL d2i_X509_CRL returned; the store holds its own reference.
        unsafe { ssl_lib::ffi::X509_CRL_free(parsed.as_ptr()) };
        added.map_err(|e| Error::config("crls", backend_err(e).to_string()))?;
    }
    #[cfg(not(feature = "boring"))]
    store.set_flags(X509VerifyFlags::CRL_CHECK).map_err(backend_err)?;
    #[cfg(feature = "boring")]
    store.set_flags(X509VerifyFlags::CRL_CHECK);
    Ok(())
}

/// The TLS 1.2 cipher list. BoringSSL skips unknown names in `SSL_CTX_set_cipher_list`
/// (it has no DHE suites): the strict variant refuses them instead of ignoring them.
pub(crate) fn set_cipher_list(
    b: &mut SslContextBuilder,
    list: &str,
) -> std::result::Result<(), ssl_lib::error::ErrorStack> {
    #[cfg(feature = "boring")]
    return b.set_strict_cipher_list(list);
    #[cfg(not(feature = "boring"))]
    return b.set_cipher_list(list);
}

/// TLS 1.3 suites (OpenSSL): IANA names, checked, in order.
#[cfg(not(feature = "boring"))]
pub(crate) fn set_tls13_suites(b: &mut SslContextBuilder, cfg: &DomainConfig) -> Result<()> {
    let tls13: Vec<&str> = match &cfg.cipher_suites_tls13 {
        Some(list) => list.iter().map(String::as_str).collect(),
        None => sipstls_core::DEFAULT_TLS13_SUITES.to_vec(),
    };
    for n in &tls13 {
        if !TLS13_NAMES.iter().any(|t| t.eq_ignore_ascii_case(n)) {
            return Err(Error::config("cipher_suites_tls13", format!("{n} is not a TLS 1.3 suite")));
        }
    }
    b.set_ciphersuites(&tls13.join(":")).map_err(|e| Error::config("cipher_suites_tls13", e.to_string()))
}

/// TLS 1.3 suites (BoringSSL): fixed by the library (AES-128-GCM, AES-256-GCM,
/// ChaCha20-Poly1305, all of [`sipstls_core::DEFAULT_TLS13_SUITES`]); an explicit list is
/// refused (`validate` already refuses it: no `CIPHER_SUITES_TLS13` capability).
#[cfg(feature = "boring")]
pub(crate) fn set_tls13_suites(_: &mut SslContextBuilder, cfg: &DomainConfig) -> Result<()> {
    let _ = TLS13_NAMES;
    match cfg.cipher_suites_tls13 {
        None => Ok(()),
        Some(_) => Err(Error::unsupported(NAME, Capabilities::CIPHER_SUITES_TLS13, "an explicit TLS 1.3 cipher list")),
    }
}

/// No TLS 1.3 tickets at all (with neither tickets nor session ids configured).
#[cfg(not(feature = "boring"))]
pub(crate) fn set_no_tickets(b: &mut SslContextBuilder) -> Result<()> {
    b.set_num_tickets(0).map_err(backend_err)
}

/// No TLS 1.3 tickets at all (boring does not wrap `SSL_CTX_set_num_tickets`; BoringSSL
/// has it).
#[cfg(feature = "boring")]
pub(crate) fn set_no_tickets(b: &mut SslContextBuilder) -> Result<()> {
    // SAFETY: `b.as_ptr()` is the live SSL_CTX owned by the builder; the call stores a count.
    cvt(unsafe { ssl_lib::ffi::SSL_CTX_set_num_tickets(b.as_ptr(), 0) }).map_err(backend_err)?;
    Ok(())
}

/// Tickets of a server context. OpenSSL: `SSL_OP_NO_TICKET` without stateless tickets
/// (with session ids on, TLS 1.3 then uses OpenSSL's stateful tickets, keys into its session
/// cache), and no TLS 1.3 tickets at all when both are off.
#[cfg(not(feature = "boring"))]
pub(crate) fn set_tickets(b: &mut SslContextBuilder, cfg: &DomainConfig) -> Result<()> {
    if cfg.resumption.tickets {
        set_ticket_keys(b)
    } else {
        b.set_options(SslOptions::NO_TICKET);
        if !cfg.resumption.session_ids {
            set_no_tickets(b)?;
        }
        Ok(())
    }
}

/// Tickets of a server context. BoringSSL has no stateful tickets and `SSL_OP_NO_TICKET`
/// ends TLS 1.3 resumption: without stateless tickets but with session ids, tickets become
/// keys into [`server_cache`](crate::server_cache), as OpenSSL's stateful tickets are.
#[cfg(feature = "boring")]
pub(crate) fn set_tickets(b: &mut SslContextBuilder, cfg: &DomainConfig) -> Result<()> {
    match (cfg.resumption.tickets, cfg.resumption.session_ids) {
        (true, _) => set_ticket_keys(b),
        (false, true) => {
            crate::server_cache::install(b);
            Ok(())
        }
        (false, false) => {
            b.set_options(SslOptions::NO_TICKET);
            set_no_tickets(b)
        }
    }
}

/// OpenSSL draws a context's ticket keys when the context is made: worker processes forked
/// afterwards share them, so a ticket issued by one worker resumes in another.
#[cfg(not(feature = "boring"))]
pub(crate) fn set_ticket_keys(_: &mut SslContextBuilder) -> Result<()> {
    Ok(())
}

/// BoringSSL draws ticket keys at the first ticket (in each worker after a fork) and
/// rotates them: set random keys now, as OpenSSL does (explicit keys are not rotated).
#[cfg(feature = "boring")]
pub(crate) fn set_ticket_keys(b: &mut SslContextBuilder) -> Result<()> {
    let mut keys = [0u8; 48]; // BoringSSL: name (16), HMAC key (16), AES-128 key (16)
    ssl_lib::rand::rand_bytes(&mut keys).map_err(backend_err)?;
    // SAFETY: `b.as_ptr()` is the live SSL_CTX owned by the builder; the call copies the
    // 48 bytes of `keys`, which outlives it.
    cvt(unsafe { ssl_lib::ffi::SSL_CTX_set_tlsext_ticket_keys(b.as_ptr(), keys.as_ptr().cast(), keys.len()) })
        .map_err(backend_err)?;
    Ok(())
}

/// Adds an intermediate certificate to the chain a context sends.
pub(crate) fn add1_chain_cert(
    b: &mut SslContextBuilder,
    cert: &X509,
) -> std::result::Result<(), ssl_lib::error::ErrorStack> {
    use ssl_lib::ffi;
    // SAFETY: `b.as_ptr()` is a live SSL_CTX owned by the builder; SSL_CTRL_CHAIN_CERT
    // with CHAIN_CERT_ADD1 takes its own reference to `cert`, which stays owned by the
    // caller and is freed when dropped.
    #[cfg(not(feature = "boring"))]
    crate::cvt::cvt_long(unsafe {
        ffi::SSL_CTX_ctrl(b.as_ptr(), ffi::SSL_CTRL_CHAIN_CERT, crate::consts::CHAIN_CERT_ADD1, cert.as_ptr().cast())
    })?;
    // SAFETY: `b.as_ptr()` is a live SSL_CTX owned by the builder; SSL_CTX_add1_chain_cert
    // takes its own reference to `cert`, which stays owned by the caller.
    #[cfg(feature = "boring")]
    cvt(unsafe { ffi::SSL_CTX_add1_chain_cert(b.as_ptr(), cert.as_ptr()) })?;
    Ok(())
}

/// The `verify_peer` flag of the domain a server session ended up with (after SNI).
#[derive(Clone, Copy)]
pub(crate) struct VerifyPeer(pub(crate) bool);

pub(crate) fn sni_index() -> ssl_lib::ex_data::Index<Ssl, Arc<SniCandidates>> {
    static IDX: OnceLock<ssl_lib::ex_data::Index<Ssl, Arc<SniCandidates>>> = OnceLock::new();
    *IDX.get_or_init(|| Ssl::new_ex_index().expect("OpenSSL ex_data index"))
}

pub(crate) fn verify_index() -> ssl_lib::ex_data::Index<Ssl, VerifyPeer> {
    static IDX: OnceLock<ssl_lib::ex_data::Index<Ssl, VerifyPeer>> = OnceLock::new();
    *IDX.get_or_init(|| Ssl::new_ex_index().expect("OpenSSL ex_data index"))
}

pub(crate) fn cache_key_index() -> ssl_lib::ex_data::Index<Ssl, String> {
    static IDX: OnceLock<ssl_lib::ex_data::Index<Ssl, String>> = OnceLock::new();
    *IDX.get_or_init(|| Ssl::new_ex_index().expect("OpenSSL ex_data index"))
}

pub(crate) fn server_verify_mode(cfg: &DomainConfig) -> SslVerifyMode {
    match (cfg.verify_peer, cfg.require_peer_certificate) {
        (false, _) => SslVerifyMode::NONE,
        (true, false) => SslVerifyMode::PEER,
        (true, true) => SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
    }
}

#[cfg(not(feature = "boring"))]
extern "C" {
    // Not bound by openssl-sys; exported by libssl 3.
    fn SSL_set_verify_depth(s: *mut openssl_sys::SSL, depth: std::ffi::c_int);
    pub(crate) fn SSL_SESSION_is_resumable(s: *const openssl_sys::SSL_SESSION) -> std::ffi::c_int;
    fn OPENSSL_thread_stop();
}
#[cfg(feature = "boring")]
pub(crate) use ssl_lib::ffi::SSL_SESSION_is_resumable;

/// Applies a server domain's verification settings to a session (at creation and after an
/// SNI switch, since `SSL_set_SSL_CTX` does not copy them).
pub(crate) fn apply_server_verify(ssl: &mut SslRef, cfg: &DomainConfig) {
    ssl.set_verify(server_verify_mode(cfg));
    #[cfg(feature = "boring")]
    ssl.set_verify_depth(u32::from(cfg.verify_depth));
    // SAFETY: `ssl.as_ptr()` is the live SSL this reference borrows; the call only stores
    // an integer in its verify parameters.
    #[cfg(not(feature = "boring"))]
    unsafe {
        SSL_set_verify_depth(ssl.as_ptr(), i32::from(cfg.verify_depth))
    };
    ssl.set_ex_data(verify_index(), VerifyPeer(cfg.verify_peer));
}

/// The servername callback: picks the domain for the client's SNI and moves the session
/// onto its context. Never panics into OpenSSL: a panic becomes a fatal alert.
pub(crate) fn on_servername(ssl: &mut SslRef) -> std::result::Result<(), SniError> {
    let Some(name) = ssl.servername(NameType::HOST_NAME).map(str::to_owned) else { return Ok(()) };
    let Some(cands) = ssl.ex_data(sni_index()).cloned() else { return Ok(()) };
    let Some(d) = cands.select(&name) else { return Ok(()) };
    let Some(d) = d.as_any().downcast_ref::<OpensslServerDomain>() else {
        return Err(SniError::ALERT_FATAL);
    };
    ssl.set_ssl_context(&d.ctx).map_err(|_| SniError::ALERT_FATAL)?;
    apply_server_verify(ssl, &d.cfg);
    Ok(())
}

impl Backend for OpensslBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo::new(NAME, ssl_lib::version::version(), LICENSE)
    }

    fn capabilities(&self) -> Capabilities {
        Self::CAPS
    }

    fn fill_random(&self, out: &mut [u8]) -> Result<()> {
        ssl_lib::rand::rand_bytes(out).map_err(backend_err)
    }

    fn release_thread_state(&self) {
        // SAFETY: frees only the calling thread's OpenSSL state (error queue, DRBGs);
        // OpenSSL recreates it if the thread calls it again.
        #[cfg(not(feature = "boring"))]
        unsafe {
            OPENSSL_thread_stop()
        };
        // BoringSSL has no OPENSSL_thread_stop: its per-thread state (error queue, RNG) is
        // freed by a thread-exit destructor. Clearing the error queue is what can be done now.
        #[cfg(feature = "boring")]
        drop(ssl_lib::error::ErrorStack::get());
    }

    fn server_domain(&self, cfg: &DomainConfig) -> Result<Arc<dyn ServerDomain>> {
        cfg.validate(Role::Server, NAME, Self::CAPS)?;
        let mut b = SslContextBuilder::new(ssl_lib::server_method()).map_err(backend_err)?;
        common(&mut b, cfg, Role::Server)?;
        if cfg.verify_peer {
            // The CA names sent in the CertificateRequest.
            for ca in &cfg.trust_anchors {
                let ca = x509(ca, "trust_anchors")?;
                b.add_client_ca(&ca).map_err(backend_err)?;
            }
        }
        b.set_verify(server_verify_mode(cfg));
        // Sessions: a distinct id context per domain, so a session from one domain never
        // resumes in another.
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let sid = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        b.set_session_id_context(format!("sipstls-{sid}").as_bytes()).map_err(backend_err)?;
        b.set_session_cache_mode(if cfg.resumption.session_ids {
            SslSessionCacheMode::SERVER
        } else {
            SslSessionCacheMode::OFF
        });
        set_tickets(&mut b, cfg)?;
        #[cfg(not(feature = "boring"))]
        store::install(&mut b, cfg)?;
        if !cfg.alpn.is_empty() {
            let wire = alpn_wire(&cfg.alpn);
            b.set_alpn_select_callback(move |_, client| {
                catch_unwind(|| select_alpn(&wire, client)).unwrap_or(None).ok_or(AlpnError::ALERT_FATAL)
            });
        }
        b.set_servername_callback(|ssl, _alert| {
            catch_unwind(AssertUnwindSafe(|| on_servername(ssl))).unwrap_or(Err(SniError::ALERT_FATAL))
        });
        Ok(Arc::new(OpensslServerDomain { ctx: b.build(), cfg: cfg.clone() }))
    }

    fn client_domain(&self, cfg: &DomainConfig) -> Result<Arc<dyn ClientDomain>> {
        cfg.validate(Role::Client, NAME, Self::CAPS)?;
        let mut b = SslContextBuilder::new(ssl_lib::client_method()).map_err(backend_err)?;
        common(&mut b, cfg, Role::Client)?;
        if !cfg.alpn.is_empty() {
            b.set_alpn_protos(&alpn_wire(&cfg.alpn)).map_err(|e| Error::config("alpn", e.to_string()))?;
        }
        if !cfg.resumption.tickets {
            b.set_options(SslOptions::NO_TICKET);
        }
        // Sessions are kept DER-encoded: OpenSSL marks a session object "not resumable"
        // in place when a TLS 1.2 ticket is renewed during resumption (and copies that
        // flag into the renewed session); an encoded copy does not carry the flag.
        let cache: Arc<Mutex<HashMap<String, CachedSession>>> = Arc::default();
        if cfg.resumption.tickets || cfg.resumption.session_ids {
            b.set_session_cache_mode(SslSessionCacheMode::CLIENT | SslSessionCacheMode::NO_INTERNAL);
            let store = cache.clone();
            b.set_new_session_callback(move |ssl, session| {
                let _ = catch_unwind(AssertUnwindSafe(|| {
                    if let (Some(key), Ok(mut map)) = (ssl.ex_data(cache_key_index()), store.lock()) {
                        if map.len() >= CLIENT_CACHE_SIZE && !map.contains_key(key) {
                            if let Some(k) = map.keys().next().cloned() {
                                map.remove(&k);
                            }
                        }
                        if let Ok(der) = session.to_der() {
                            map.insert(key.clone(), CachedSession { live: session, der });
                        }
                    }
                }));
            });
        } else {
            b.set_session_cache_mode(SslSessionCacheMode::OFF);
        }
        Ok(Arc::new(OpensslClientDomain { ctx: b.build(), cfg: cfg.clone(), cache }))
    }
}

pub(crate) const CLIENT_CACHE_SIZE: usize = 256;

/// The first of our protocols (server preference) that the client offered, as a slice of
/// the client's list; `None` when there is no overlap or the client's list is malformed.
pub(crate) fn select_alpn<'c>(ours: &[u8], client: &'c [u8]) -> Option<&'c [u8]> {
    let parse = |mut wire: &'c [u8]| {
        let mut out = Vec::new();
        while let Some((&len, rest)) = wire.split_first() {
            let len = usize::from(len);
            if len == 0 || rest.len() < len {
                return None;
            }
            out.push(&rest[..len]);
            wire = &rest[len..];
        }
        Some(out)
    };
    let theirs = parse(client)?;
    let mut wire = ours;
    while let Some((&len, rest)) = wire.split_first() {
        let p = &rest[..usize::from(len)];
        if let Some(t) = theirs.iter().find(|t| **t == p) {
            return Some(t);
        }
        wire = &rest[usize::from(len)..];
    }
    None
}

pub(crate) fn alpn_wire(protos: &[Vec<u8>]) -> Vec<u8> {
    let mut wire = Vec::new();
    for p in protos {
        wire.push(p.len() as u8); // validated: 1..=255 bytes
        wire.extend_from_slice(p);
    }
    wire
}
