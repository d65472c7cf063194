//! The wolfSSL backend: how a `DomainConfig` becomes a `WOLFSSL_CTX`.

use std::ffi::{c_int, c_uint, CStr};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use sipstls_core::{
    Backend, BackendInfo, Capabilities, ClientDomain, DomainConfig, Error, ProtocolVersion, Result, Role, ServerDomain,
};
use sipstls_wolfssl_sys as w;

use crate::cvt::{self, Context};
use crate::domain::{ServerInner, WolfsslClientDomain, WolfsslServerDomain};
use crate::{errors, hooks, session, tickets, NAME};

/// IANA name -> wolfSSL name of the TLS 1.2 suites sipstls accepts (forward-secret AEAD).
pub(crate) const TLS12_NAMES: &[(&str, &str)] = &[
    ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384"),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"),
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384"),
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256"),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305"),
];

/// IANA name -> wolfSSL name of the TLS 1.3 suites.
pub(crate) const TLS13_NAMES: &[(&str, &str)] = &[
    ("TLS_AES_256_GCM_SHA384", "TLS13-AES256-GCM-SHA384"),
    ("TLS_AES_128_GCM_SHA256", "TLS13-AES128-GCM-SHA256"),
    ("TLS_CHACHA20_POLY1305_SHA256", "TLS13-CHACHA20-POLY1305-SHA256"),
];

/// Key-exchange groups, in preference order.
pub(crate) const GROUPS: [u32; 4] =
    [w::WOLFSSL_X25519MLKEM768, w::WOLFSSL_ECC_X25519, w::WOLFSSL_ECC_SECP256R1, w::WOLFSSL_ECC_SECP384R1];

/// Initializes wolfSSL once per process and marks it used (for the allocator hook).
pub(crate) fn init() -> Result<()> {
    static INIT: OnceLock<c_int> = OnceLock::new();
    hooks::mark_used();
    // SAFETY: wolfSSL_Init has no preconditions; OnceLock runs it once.
    cvt::ok(*INIT.get_or_init(|| unsafe { w::wolfSSL_Init() })).failed("wolfSSL_Init")
}

/// Random bytes from one process-wide wolfCrypt hash DRBG (which, built with
/// `WC_RNG_AUTOFORK`, reseeds itself in a child process after `fork()`).
pub(crate) fn random_bytes(out: &mut [u8]) -> Result<()> {
    init()?;
    struct Rng(NonNull<w::WC_RNG>);
    // SAFETY: the generator is only used under the mutex below.
    unsafe impl Send for Rng {}
    static RNG: OnceLock<Option<Mutex<Rng>>> = OnceLock::new();
    let rng = RNG.get_or_init(|| {
        // SAFETY: no nonce, default heap: wolfSSL allocates and seeds a hash DRBG.
        NonNull::new(unsafe { w::wc_rng_new(std::ptr::null_mut(), 0, std::ptr::null_mut()) })
            .map(|p| Mutex::new(Rng(p)))
    });
    let Some(rng) = rng else {
        return Err(Error::Backend { library: NAME, message: "wc_rng_new failed".into() });
    };
    let guard = rng.lock().unwrap_or_else(|e| e.into_inner());
    for chunk in out.chunks_mut(0x8000) {
        // SAFETY: the generator is live and exclusively ours under the lock; `chunk` is
        // writable for its length.
        cvt::wc_ok(unsafe { w::wc_RNG_GenerateBlock(guard.0.as_ptr(), chunk.as_mut_ptr(), chunk.len() as c_uint) })
            .backend()?;
    }
    Ok(())
}

/// The wolfSSL backend.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct WolfsslBackend;

impl WolfsslBackend {
    /// The backend. Does not touch wolfSSL yet (so allocator hooks can still be installed).
    pub fn new() -> Self {
        WolfsslBackend
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
        .union(Capabilities::ALLOCATOR_HOOK)
        // wolfSSL_CTX_EnableCRL + LoadCRLBuffer (needs HAVE_CRL: configure --enable-crl),
        // and the TLS 1.2 / 1.3 secret callbacks (HAVE_SECRET_CALLBACK) for the key log;
        // build.rs checks both defines. Conformance: crl_revoked_*_refused, key_log_written.
        .union(Capabilities::CRL)
        .union(Capabilities::KEY_LOG)
        // The ticket callback seals with the provider's keys (tickets.rs).
        .union(Capabilities::TICKET_KEYS)
        .union(Capabilities::MODEL_CONFINED)
        .union(Capabilities::MODEL_PINNED);
}

/// An owned `WOLFSSL_CTX`.
pub(crate) struct Ctx(NonNull<w::WOLFSSL_CTX>);

// SAFETY: a WOLFSSL_CTX is only read after it is built (sessions are created from it under
// wolfSSL's own locks: its reference count and session cache are mutex-protected in this
// multi-threaded build), so it can be shared and sent between threads.
unsafe impl Send for Ctx {}
// SAFETY: see `Send`.
unsafe impl Sync for Ctx {}

impl Ctx {
    pub(crate) fn as_ptr(&self) -> *mut w::WOLFSSL_CTX {
        self.0.as_ptr()
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // SAFETY: we own this context; sessions made from it hold their own reference.
        unsafe { w::wolfSSL_CTX_free(self.0.as_ptr()) };
    }
}

/// PEM text of DER certificates (wolfSSL loads a chain from PEM).
pub(crate) fn pem_chain(chain: &[sipstls_core::Certificate]) -> Vec<u8> {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    for c in chain {
        out.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        let mut line = 0;
        for chunk in c.der().chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(B64[((n >> (18 - 6 * i)) & 63) as usize]);
                } else {
                    out.push(b'=');
                }
            }
            line += 4;
            if line == 64 {
                out.push(b'\n');
                line = 0;
            }
        }
        if line != 0 {
            out.push(b'\n');
        }
        out.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    out
}

pub(crate) fn cipher_list(cfg: &DomainConfig) -> Result<String> {
    let mut names = Vec::new();
    if cfg.max_version >= ProtocolVersion::Tls13 {
        match &cfg.cipher_suites_tls13 {
            Some(list) => {
                for n in list {
                    let Some((_, wn)) = TLS13_NAMES.iter().find(|(iana, _)| iana.eq_ignore_ascii_case(n)) else {
                        return Err(Error::config("cipher_suites_tls13", format!("{n} is not a TLS 1.3 suite")));
                    };
                    names.push(*wn);
                }
            }
            // sipstls's default order (AES-128-GCM first).
            None => {
                names.extend(sipstls_core::DEFAULT_TLS13_SUITES.iter().filter_map(|d| {
                    TLS13_NAMES.iter().find(|(iana, _)| iana.eq_ignore_ascii_case(d)).map(|(_, wn)| *wn)
                }))
            }
        }
    }
    let tls12: Vec<&str> = match &cfg.cipher_list_tls12 {
        Some(list) => list.iter().map(String::as_str).collect(),
        None => sipstls_core::DEFAULT_TLS12_SUITES.to_vec(),
    };
    for n in tls12 {
        let Some((_, wn)) = TLS12_NAMES.iter().find(|(iana, _)| iana.eq_ignore_ascii_case(n)) else {
            return Err(Error::config("cipher_list_tls12", format!("{n} is not a TLS 1.2 suite sipstls allows")));
        };
        if cfg.min_version <= ProtocolVersion::Tls12 {
            names.push(*wn);
        }
    }
    Ok(names.join(":"))
}

/// The comma-separated ALPN list wolfSSL takes.
pub(crate) fn alpn_list(protos: &[Vec<u8>]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for p in protos {
        if p.contains(&b',') {
            return Err(Error::config("alpn", "wolfSSL cannot offer an ALPN protocol name containing ','"));
        }
        if !out.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(p);
    }
    Ok(out)
}

/// Builds a context with the settings common to servers and clients.
pub(crate) fn build_ctx(cfg: &DomainConfig, role: Role) -> Result<Ctx> {
    init()?;
    // SAFETY: the method constructors only return pointers to static tables (or fresh
    // allocations that wolfSSL_CTX_new takes over and frees).
    let method = unsafe {
        match (role, cfg.min_version, cfg.max_version) {
            (Role::Server, ProtocolVersion::Tls12, ProtocolVersion::Tls12) => w::wolfTLSv1_2_server_method(),
            (Role::Server, ProtocolVersion::Tls13, _) => w::wolfTLSv1_3_server_method(),
            (Role::Server, _, _) => w::wolfTLS_server_method(),
            (Role::Client, ProtocolVersion::Tls12, ProtocolVersion::Tls12) => w::wolfTLSv1_2_client_method(),
            (Role::Client, ProtocolVersion::Tls13, _) => w::wolfTLSv1_3_client_method(),
            (Role::Client, _, _) => w::wolfTLS_client_method(),
        }
    };
    if method.is_null() {
        return Err(Error::Backend { library: NAME, message: "no TLS method".into() });
    }
    // SAFETY: `method` is a valid method; wolfSSL_CTX_new takes ownership of it.
    let ctx = Ctx(cvt::ptr(unsafe { w::wolfSSL_CTX_new(method) }, "wolfSSL_CTX_new")?);
    let p = ctx.as_ptr();
    // SAFETY: for every call on `p` below: `p` is the live context owned by `ctx`, not yet
    // shared with any other thread; buffers passed are valid for the lengths given.
    unsafe {
        if cfg.min_version == ProtocolVersion::Tls12 {
            cvt::ok(w::wolfSSL_CTX_SetMinVersion(p, w::WOLFSSL_TLSV1_2 as c_int))
                .config("min_version", "minimum version")?;
        }
        w::wolfSSL_CTX_SetIORecv(p, Some(session::io_recv));
        w::wolfSSL_CTX_SetIOSend(p, Some(session::io_send));
        let list = std::ffi::CString::new(cipher_list(cfg)?).map_err(|_| Error::config("cipher_list_tls12", "NUL"))?;
        let setting = if cfg.cipher_suites_tls13.is_some() { "cipher_suites_tls13" } else { "cipher_list_tls12" };
        cvt::ok(w::wolfSSL_CTX_set_cipher_list(p, list.as_ptr())).config(setting, "cipher list")?;
        for ca in &cfg.trust_anchors {
            let r = w::wolfSSL_CTX_load_verify_buffer(
                p,
                ca.der().as_ptr(),
                ca.der().len() as _,
                w::WOLFSSL_FILETYPE_ASN1 as c_int,
            );
            cvt::ok(r).config("trust_anchors", "unusable CA certificate")?;
        }
        w::wolfSSL_CTX_set_verify_depth(p, c_int::from(cfg.verify_depth));
        if !cfg.crls.is_empty() {
            // The peer's leaf is checked (WOLFSSL_CRL_CHECK, not CHECKALL); a leaf whose
            // issuer has no CRL loaded fails (CRL_MISSING).
            cvt::ok(w::wolfSSL_CTX_EnableCRL(p, w::WOLFSSL_CRL_CHECK as c_int))
                .config("crls", "enabling CRL checks")?;
            for crl in &cfg.crls {
                let r = w::wolfSSL_CTX_LoadCRLBuffer(
                    p,
                    crl.der().as_ptr(),
                    crl.der().len() as _,
                    w::WOLFSSL_FILETYPE_ASN1 as c_int,
                );
                cvt::ok(r).config("crls", "unusable certificate revocation list")?;
            }
        }
        if cfg.max_version == ProtocolVersion::Tls13 {
            let mut groups = GROUPS.map(|g| g as c_int);
            cvt::ok(w::wolfSSL_CTX_set_groups(p, groups.as_mut_ptr(), groups.len() as c_int))
                .config("max_version", "groups")?;
        }
        if let Some(id) = cfg.identities.first() {
            let pem = pem_chain(&id.chain);
            let r = w::wolfSSL_CTX_use_certificate_chain_buffer_format(
                p,
                pem.as_ptr(),
                pem.len() as _,
                w::WOLFSSL_FILETYPE_PEM as c_int,
            );
            cvt::ok(r).config("identities", "unusable certificate chain")?;
            let key = id.key.der();
            let r = w::wolfSSL_CTX_use_PrivateKey_buffer(
                p,
                key.as_ptr(),
                key.len() as _,
                w::WOLFSSL_FILETYPE_ASN1 as c_int,
            );
            cvt::ok(r).config("identities", "unusable private key")?;
            cvt::ok(w::wolfSSL_CTX_check_private_key(p))
                .map_err(|_| Error::config("identities", "the private key does not match the certificate"))?;
        }
        // Our callback runs for every certificate with an error and, with
        // WOLFSSL_ALWAYS_VERIFY_CB, for the peer's leaf: it records the reason and does the
        // name check.
        let mode = match (role, cfg.verify_peer, cfg.require_peer_certificate) {
            (_, false, _) => w::WOLFSSL_VERIFY_NONE,
            (Role::Server, true, true) => w::WOLFSSL_VERIFY_PEER | w::WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT,
            (_, true, _) => w::WOLFSSL_VERIFY_PEER,
        };
        w::wolfSSL_CTX_set_verify(p, mode as c_int, Some(session::verify_cb));
    }
    Ok(ctx)
}

impl Backend for WolfsslBackend {
    fn info(&self) -> BackendInfo {
        // SAFETY: wolfSSL_lib_version returns a pointer to a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(w::wolfSSL_lib_version()) }.to_string_lossy().into_owned();
        BackendInfo::new(NAME, format!("wolfSSL {v}"), "GPL-3.0-or-later")
    }

    fn capabilities(&self) -> Capabilities {
        Self::CAPS
    }

    fn fill_random(&self, out: &mut [u8]) -> Result<()> {
        random_bytes(out)
    }

    fn server_domain(&self, cfg: &DomainConfig) -> Result<Arc<dyn ServerDomain>> {
        cfg.validate(Role::Server, NAME, Self::CAPS)?;
        alpn_list(&cfg.alpn)?;
        let ctx = build_ctx(cfg, Role::Server)?;
        let p = ctx.as_ptr();
        // Sessions: a distinct id context per domain, so a session ID from one domain never
        // resumes in another (wolfSSL's session cache is process-wide).
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let sid = match &cfg.ticket_keys {
            // Shared tickets must pass every node's context check.
            Some(_) => tickets::stable_id_context(cfg),
            None => format!("sipstls-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed)),
        };
        // Ticket keys made now, before any fork, so every worker shares them.
        let ticket_keys = tickets::TicketKeys::new(&mut |b| random_bytes(b).is_ok())
            .ok_or(Error::Backend { library: NAME, message: "no random bytes for ticket keys".into() })?
            .with_provider(cfg.ticket_keys.clone());
        // SAFETY: `p` is the live, unshared context; the id buffer is valid for its length.
        unsafe {
            cvt::ok(w::wolfSSL_CTX_set_session_id_context(p, sid.as_ptr(), sid.len() as c_uint))
                .config("resumption", "session id context")?;
            cvt::ok(w::wolfSSL_CTX_set_TicketEncCb(p, Some(tickets::ticket_cb)))
                .config("resumption", "ticket callback")?;
            let keys = (&*ticket_keys as *const tickets::TicketKeys).cast_mut().cast();
            cvt::ok(w::wolfSSL_CTX_set_TicketEncCtx(p, keys)).config("resumption", "ticket keys")?;
            if !cfg.resumption.session_ids {
                w::wolfSSL_CTX_set_session_cache_mode(p, w::WOLFSSL_SESS_CACHE_OFF as _);
            }
            if !cfg.resumption.tickets {
                cvt::ok(w::wolfSSL_CTX_NoTicketTLSv12(p)).config("resumption", "disabling TLS 1.2 tickets")?;
                if !cfg.resumption.session_ids && cfg.max_version == ProtocolVersion::Tls13 {
                    // (Refused on a TLS 1.2-only context.) Returns 0 on success (wolfCrypt's
                    // WC_SUCCESS, not WOLFSSL_SUCCESS).
                    cvt::wc_ok(w::wolfSSL_CTX_no_ticket_TLSv13(p))
                        .map_err(|cvt::Code(r)| Error::config("resumption", errors::describe(r)))?;
                }
            }
        }
        Ok(Arc::new(WolfsslServerDomain {
            inner: Arc::new(ServerInner { ctx, cfg: cfg.clone(), _tickets: ticket_keys }),
        }))
    }

    fn client_domain(&self, cfg: &DomainConfig) -> Result<Arc<dyn ClientDomain>> {
        cfg.validate(Role::Client, NAME, Self::CAPS)?;
        let alpn = alpn_list(&cfg.alpn)?;
        let ctx = build_ctx(cfg, Role::Client)?;
        if !(cfg.resumption.tickets || cfg.resumption.session_ids) {
            // SAFETY: `ctx` is the live, unshared context.
            unsafe { w::wolfSSL_CTX_set_session_cache_mode(ctx.as_ptr(), w::WOLFSSL_SESS_CACHE_OFF as _) };
        }
        Ok(Arc::new(WolfsslClientDomain { ctx, cfg: cfg.clone(), alpn, cache: Arc::default() }))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn domains_are_send_and_sync() {
        fn is<T: Send + Sync>() {}
        is::<crate::WolfsslServerDomain>();
        is::<crate::WolfsslClientDomain>();
    }

    #[test]
    fn pem_chain_round_trips() {
        for len in [1usize, 2, 3, 47, 48, 49, 201] {
            let chain: Vec<_> = (0..2u8)
                .map(|k| sipstls_core::Certificate::from_der((0..len).map(|i| (i as u8) ^ k).collect::<Vec<u8>>()))
                .collect();
            let pem = super::pem_chain(&chain);
            assert!(String::from_utf8(pem.clone()).unwrap().lines().all(|l| l.len() <= 64), "{len}");
            assert_eq!(sipstls_core::Certificate::all_from_pem(&pem).unwrap(), chain, "{len}");
        }
    }
}
