//! The wolfSSL implementation of [`Session`], over memory buffers.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::Arc;

use sipstls_core::buffers::{BufferedSession, SessionCore, Transport, MAX_INPUT};
use sipstls_core::hello::{self, Hello, Peek};
use sipstls_core::x509::sip_identity_matches;
use sipstls_core::{
    Certificate, CertificateError, DomainConfig, Error, NameVerification, ProtocolErrorKind, ProtocolVersion, Result,
    Role, ServerName, SniCandidates, TlsInfo, VerifyResult,
};
use sipstls_wolfssl_sys as w;

use crate::backend::Ctx;
use crate::cvt::{self, Context};
use crate::domain::{CachedSession, ClientCache, ServerInner};
use crate::errors::{map_cert_error, map_error};
use crate::NAME;

/// Largest plaintext handed to one `wolfSSL_write`.
const MAX_WRITE: usize = 64 * 1024;

/// What the I/O and verify callbacks reach through their context pointer. It lives in its
/// own heap allocation (made with `Box::into_raw`), so its address is stable while the
/// session moves; only the callbacks (during a wolfSSL call) and the session (between
/// wolfSSL calls) touch it, never both at once.
pub(crate) struct Shared {
    /// Server: the resumption chain depth of the ticket this connection resumed from
    /// (see `tickets.rs`).
    pub(crate) ticket_depth: u32,
    /// The ciphertext both ways.
    io: Transport,
    /// Client: the name to check (RFC 5922) when `check_name`.
    expected: Option<ServerName>,
    check_name: bool,
    /// Why our verify callback rejected the peer's certificate.
    cert_error: Option<CertificateError>,
    /// Where the secret callbacks write (the domain's key log), if anywhere.
    key_log: Option<sipstls_core::KeyLogSink>,
}

/// The Shared block of a session, from inside one of wolfSSL's callbacks.
///
/// # Safety
/// `ssl` must be null or a live session created by `new_ssl` that is running the callback
/// (so no other reference to its Shared is alive).
pub(crate) unsafe fn shared_of<'a>(ssl: *mut w::WOLFSSL) -> Option<&'a mut Shared> {
    if ssl.is_null() {
        return None;
    }
    // SAFETY: per the contract, the read context of `ssl` is its Shared block.
    unsafe { (w::wolfSSL_GetIOReadCtx(ssl) as *mut Shared).as_mut() }
}

/// wolfSSL's receive callback: copies buffered ciphertext, or "want read" when none.
///
/// # Safety
/// `ctx` must be the `Shared` of the session that owns `_ssl` (set by `new_ssl`), and `buf`
/// writable for `sz` bytes.
pub(crate) unsafe extern "C" fn io_recv(_ssl: *mut w::WOLFSSL, buf: *mut c_char, sz: c_int, ctx: *mut c_void) -> c_int {
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: per this function's contract, `ctx` is the live Shared of this session and
        // no Rust reference to it exists during the wolfSSL call.
        let Some(sh) = (unsafe { (ctx as *mut Shared).as_mut() }) else {
            return w::IOerrors_WOLFSSL_CBIO_ERR_GENERAL;
        };
        let len = usize::try_from(sz).unwrap_or(0);
        if buf.is_null() || len == 0 {
            return w::IOerrors_WOLFSSL_CBIO_ERR_GENERAL;
        }
        // SAFETY: `buf` is non-null and writable for `sz` bytes (contract), and wolfSSL
        // holds no other reference to it during the callback.
        let out = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), len) };
        match sh.io.read_input(out) {
            0 => w::IOerrors_WOLFSSL_CBIO_ERR_WANT_READ,
            n => n as c_int,
        }
    }))
    .unwrap_or(w::IOerrors_WOLFSSL_CBIO_ERR_GENERAL)
}

/// wolfSSL's send callback: appends to the output buffer (always all of it).
///
/// # Safety
/// `ctx` must be the `Shared` of the session that owns `_ssl`, and `buf` readable for `sz`
/// bytes.
pub(crate) unsafe extern "C" fn io_send(_ssl: *mut w::WOLFSSL, buf: *mut c_char, sz: c_int, ctx: *mut c_void) -> c_int {
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: as in `io_recv`.
        let Some(sh) = (unsafe { (ctx as *mut Shared).as_mut() }) else {
            return w::IOerrors_WOLFSSL_CBIO_ERR_GENERAL;
        };
        let n = usize::try_from(sz).unwrap_or(0);
        if n > 0 {
            // SAFETY: `buf` is readable for `sz` bytes (contract).
            let bytes = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), n) };
            sh.io.write_output(bytes);
        }
        n as c_int
    }))
    .unwrap_or(w::IOerrors_WOLFSSL_CBIO_ERR_GENERAL)
}

/// The verify callback: records why wolfSSL rejected a certificate, and checks the leaf's
/// name (RFC 5922) on clients. Returns 1 to accept, 0 to reject.
///
/// # Safety
/// Called by wolfSSL with a valid store whose `userCtx` is the session's `Shared` (set with
/// `wolfSSL_SetCertCbCtx`), or null.
pub(crate) unsafe extern "C" fn verify_cb(preverify: c_int, store: *mut w::WOLFSSL_X509_STORE_CTX) -> c_int {
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: wolfSSL passes a valid store for the duration of the call.
        let Some(store) = (unsafe { store.as_ref() }) else { return 0 };
        // SAFETY: `userCtx` is our Shared (or null); no Rust reference to it is live during
        // the wolfSSL call that runs this callback.
        let Some(sh) = (unsafe { (store.userCtx as *mut Shared).as_mut() }) else { return 0 };
        // The expected name as text, for error reports only (not built on success).
        let expected = |sh: &Shared| sh.expected.as_ref().map(|n| n.to_string());
        if preverify == 0 {
            if sh.cert_error.is_none() {
                sh.cert_error = Some(map_cert_error(store.error, expected(sh).as_deref()));
            }
            return 0;
        }
        if store.error_depth == 0 && sh.check_name {
            let leaf: &[u8] = if store.totalCerts > 0 && !store.certs.is_null() {
                // SAFETY: `certs` holds `totalCerts` buffers, the first being the peer's leaf
                // as received, valid during the callback.
                let b = unsafe { &*store.certs };
                if b.buffer.is_null() {
                    &[]
                } else {
                    // SAFETY: `buffer` is valid for `length` bytes during the callback.
                    unsafe { std::slice::from_raw_parts(b.buffer, b.length as usize) }
                }
            } else {
                &[]
            };
            let matches = match &sh.expected {
                Some(want) => sip_identity_matches(leaf, want).unwrap_or(false),
                None => false,
            };
            if !matches {
                sh.cert_error = Some(CertificateError::NameMismatch { expected: expected(sh).unwrap_or_default() });
                return 0;
            }
        }
        1
    }))
    .unwrap_or(0)
}

/// The session's client random (32 bytes), or `None` when wolfSSL no longer has it.
///
/// # Safety
/// `ssl` must be a live session.
unsafe fn client_random(ssl: *mut w::WOLFSSL) -> Option<[u8; 32]> {
    let mut cr = [0u8; 32];
    // SAFETY: `ssl` is live (contract); `cr` is writable for the 32 bytes passed.
    let n = unsafe { w::wolfSSL_get_client_random(ssl, cr.as_mut_ptr(), cr.len()) };
    (n == cr.len()).then_some(cr)
}

/// The key log of a session, from a secret callback's context.
///
/// # Safety
/// `ctx` must be null or the live `Shared` of the session running the callback; the
/// returned reference must not outlive the callback.
unsafe fn key_log_of<'a>(ctx: *mut c_void) -> Option<&'a sipstls_core::KeyLogSink> {
    // SAFETY: per the contract; only read, while no `&mut` to the block is alive (the
    // session holds none during a wolfSSL call, and the I/O callbacks are not running).
    unsafe { (ctx as *const Shared).as_ref() }.and_then(|sh| sh.key_log.as_ref())
}

/// wolfSSL's TLS 1.2 secret callback: the master secret (48 bytes) right after it is
/// derived in a full handshake, logged as `CLIENT_RANDOM`. (A resumed TLS 1.2 session
/// reuses the master secret without calling it: resumptions are not logged.) Returns 0: a
/// key log never fails the handshake.
///
/// # Safety
/// Called by wolfSSL with the live session `ssl`, `secret` readable for `secret_sz` bytes,
/// and `ctx` the session's Shared (set by `new_ssl`).
unsafe extern "C" fn tls12_secret_cb(
    ssl: *mut w::WOLFSSL,
    secret: *mut c_void,
    secret_sz: c_int,
    ctx: *mut c_void,
) -> c_int {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `ctx` is the session's Shared, during the callback (contract).
        let Some(log) = (unsafe { key_log_of(ctx) }) else { return };
        let Ok(len) = usize::try_from(secret_sz) else { return };
        if secret.is_null() || ssl.is_null() || len == 0 {
            return;
        }
        // SAFETY: `ssl` is the live session running the callback.
        let Some(cr) = (unsafe { client_random(ssl) }) else { return };
        // SAFETY: `secret` is readable for `secret_sz` bytes during the callback (contract).
        let secret = unsafe { std::slice::from_raw_parts(secret as *const u8, len) };
        log.log("CLIENT_RANDOM", &cr, secret);
    }));
    0
}

/// wolfSSL's TLS 1.3 secret callback: each traffic secret as it is derived, under its NSS
/// key log label. Other ids (ECH) are not logged. Returns 0: a key log never fails the
/// handshake.
///
/// # Safety
/// As [`tls12_secret_cb`].
unsafe extern "C" fn tls13_secret_cb(
    ssl: *mut w::WOLFSSL,
    id: c_int,
    secret: *const u8,
    secret_sz: c_int,
    ctx: *mut c_void,
) -> c_int {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let label = match u32::try_from(id) {
            Ok(w::Tls13Secret_CLIENT_EARLY_TRAFFIC_SECRET) => "CLIENT_EARLY_TRAFFIC_SECRET",
            Ok(w::Tls13Secret_CLIENT_HANDSHAKE_TRAFFIC_SECRET) => "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
            Ok(w::Tls13Secret_SERVER_HANDSHAKE_TRAFFIC_SECRET) => "SERVER_HANDSHAKE_TRAFFIC_SECRET",
            Ok(w::Tls13Secret_CLIENT_TRAFFIC_SECRET) => "CLIENT_TRAFFIC_SECRET_0",
            Ok(w::Tls13Secret_SERVER_TRAFFIC_SECRET) => "SERVER_TRAFFIC_SECRET_0",
            Ok(w::Tls13Secret_EXPORTER_SECRET) => "EXPORTER_SECRET",
            _ => return,
        };
        // SAFETY: `ctx` is the session's Shared, during the callback (contract).
        let Some(log) = (unsafe { key_log_of(ctx) }) else { return };
        let Ok(len) = usize::try_from(secret_sz) else { return };
        if secret.is_null() || ssl.is_null() || len == 0 {
            return;
        }
        // SAFETY: `ssl` is the live session running the callback.
        let Some(cr) = (unsafe { client_random(ssl) }) else { return };
        // SAFETY: `secret` is readable for `secret_sz` bytes during the callback (contract).
        let secret = unsafe { std::slice::from_raw_parts(secret, len) };
        log.log(label, &cr, secret);
    }));
    0
}

/// A server session before the ClientHello: the listener's domain and the SNI candidates.
struct Pending {
    default: Arc<ServerInner>,
    cands: Option<Arc<SniCandidates>>,
}

/// What a client session is made from.
pub(crate) struct ClientSetup<'a> {
    pub(crate) ctx: &'a Ctx,
    pub(crate) cfg: &'a DomainConfig,
    pub(crate) alpn: &'a [u8],
    pub(crate) name: Option<ServerName>,
    pub(crate) cache: Option<(Arc<ClientCache>, String)>,
}

/// A wolfSSL session (client or server).
pub struct WolfsslSession {
    ssl: Option<NonNull<w::WOLFSSL>>,
    shared: NonNull<Shared>,
    pending: Option<Pending>,
    /// The server domain the session was created from (keeps its context alive).
    domain: Option<Arc<ServerInner>>,
    verify_peer: bool,
    sni: Option<String>,
    cache: Option<(Arc<ClientCache>, String)>,
    /// Client, TLS 1.3: the ticket in the session at the end of the handshake or at the
    /// last save (a new one means a NewSessionTicket arrived). TLS 1.2: `Some` once saved.
    saved_ticket: Option<Vec<u8>>,
    core: SessionCore,
}

// SAFETY: the WOLFSSL object and the Shared block are owned exclusively by this session and
// only used through `&mut self` (or `&self` for read-only queries); wolfSSL objects are not
// tied to the thread that created them.
unsafe impl Send for WolfsslSession {}

impl WolfsslSession {
    fn empty(role: Role) -> Self {
        let shared = Box::new(Shared {
            ticket_depth: 0,
            io: Transport::default(),
            expected: None,
            check_name: false,
            cert_error: None,
            key_log: None,
        });
        WolfsslSession {
            ssl: None,
            // SAFETY: Box::into_raw never returns null.
            shared: unsafe { NonNull::new_unchecked(Box::into_raw(shared)) },
            pending: None,
            domain: None,
            verify_peer: false,
            sni: None,
            cache: None,
            saved_ticket: None,
            core: SessionCore::new(role),
        }
    }

    pub(crate) fn server(domain: Arc<ServerInner>, cands: Option<Arc<SniCandidates>>) -> Self {
        let mut s = Self::empty(Role::Server);
        s.pending = Some(Pending { default: domain, cands });
        s
    }

    pub(crate) fn client(setup: ClientSetup<'_>) -> Result<Self> {
        let mut s = Self::empty(Role::Client);
        let ssl = s.new_ssl(setup.ctx, setup.cfg.key_log.as_ref())?;
        let cfg = setup.cfg;
        s.verify_peer = cfg.verify_peer;
        {
            let sh = s.sh();
            sh.check_name = cfg.verify_peer && cfg.name_verification == NameVerification::Rfc5922;
            sh.expected = setup.name.clone();
        }
        // SAFETY: all calls below: `ssl` is the live session just created and owned by `s`;
        // the buffers passed are valid for the lengths given and copied by wolfSSL.
        unsafe {
            if let (Some(ServerName::Dns(n)), true) = (&setup.name, cfg.send_sni) {
                let r = w::wolfSSL_UseSNI(ssl, w::WOLFSSL_SNI_HOST_NAME as u8, n.as_ptr().cast(), n.len() as u16);
                cvt::ok(r).config("server_name", "SNI")?;
                s.sni = Some(n.clone());
            }
            if !setup.alpn.is_empty() {
                let mut list = setup.alpn.to_vec();
                let r = w::wolfSSL_UseALPN(
                    ssl,
                    list.as_mut_ptr().cast(),
                    list.len() as _,
                    w::WOLFSSL_ALPN_FAILED_ON_MISMATCH as u8,
                );
                cvt::ok(r).config("alpn", "ALPN")?;
            }
            if cfg.resumption.tickets {
                cvt::ok(w::wolfSSL_UseSessionTicket(ssl)).config("resumption", "session tickets")?;
            }
            if let Some((cache, key)) = &setup.cache {
                if let Ok(m) = cache.lock() {
                    if let Some(sess) = m.get(key) {
                        // A session that no longer fits (expired, other version) just gives
                        // a full handshake.
                        let _ = w::wolfSSL_set_session(ssl, sess.as_ptr());
                    }
                }
            }
        }
        s.cache = setup.cache;
        // Produce the ClientHello now: `wants_write` is then true.
        s.drive()?;
        Ok(s)
    }

    /// The Shared block. Never held across a wolfSSL call.
    fn sh(&mut self) -> &mut Shared {
        // SAFETY: we own the allocation; callbacks only run inside wolfSSL calls, during
        // which no reference returned here is alive (each use ends before the next call).
        unsafe { self.shared.as_mut() }
    }

    fn sh_ref(&self) -> &Shared {
        // SAFETY: as in `sh`, read-only.
        unsafe { self.shared.as_ref() }
    }

    /// Creates the WOLFSSL object from `ctx`, wired to our buffers and verify callback (and
    /// to the secret callbacks when the domain has a key log).
    fn new_ssl(&mut self, ctx: &Ctx, key_log: Option<&sipstls_core::KeyLogSink>) -> Result<*mut w::WOLFSSL> {
        // SAFETY: `ctx` is a live context; wolfSSL_new takes its own reference to it.
        let ssl = cvt::ptr(unsafe { w::wolfSSL_new(ctx.as_ptr()) }, "wolfSSL_new")?;
        let p = ssl.as_ptr();
        let sh = self.shared.as_ptr().cast::<c_void>();
        // SAFETY: `p` is live; `sh` outlives it (freed in Drop after wolfSSL_free).
        unsafe {
            w::wolfSSL_SetIOReadCtx(p, sh);
            w::wolfSSL_SetIOWriteCtx(p, sh);
            w::wolfSSL_SetCertCbCtx(p, sh);
        }
        self.ssl = Some(ssl);
        if let Some(log) = key_log {
            self.sh().key_log = Some(log.clone());
            // SAFETY: `p` is live; `sh` (the Shared block, which outlives `p`) is the context
            // both callbacks read their key log from.
            let (r12, r13) = unsafe {
                (
                    w::wolfSSL_set_secret_cb(p, Some(tls12_secret_cb), sh),
                    w::wolfSSL_set_tls13_secret_cb(p, Some(tls13_secret_cb), sh),
                )
            };
            cvt::ok(r12)
                .and(cvt::ok(r13))
                .map_err(|_| Error::Backend { library: NAME, message: "cannot set the key log callbacks".into() })?;
        }
        Ok(p)
    }

    /// Server: the ClientHello is in (or cannot be read): choose the domain and the ALPN
    /// protocol, and create the wolfSSL session.
    fn activate(&mut self, hello: Option<Hello>) -> Result<()> {
        let Some(pending) = self.pending.take() else { return Ok(()) };
        let mut inner = pending.default;
        let sni = hello.as_ref().and_then(|h| h.sni.clone());
        if let (Some(name), Some(cands)) = (&sni, &pending.cands) {
            if let Some(d) = cands.select(name) {
                inner = crate::domain::server_inner(d).ok_or_else(|| Error::Backend {
                    library: NAME,
                    message: "an SNI candidate domain belongs to another backend".into(),
                })?;
            }
        }
        let ssl = self.new_ssl(&inner.ctx, inner.cfg.key_log.as_ref())?;
        if !inner.cfg.alpn.is_empty() {
            // Server preference: the first of ours the client offered. Without overlap the
            // whole list, so wolfSSL fails with no_application_protocol.
            let offered = hello.as_ref().and_then(|h| h.alpn.as_ref());
            let choice = offered.and_then(|o| inner.cfg.alpn.iter().find(|p| o.contains(p)));
            let mut list = match choice {
                Some(p) => p.clone(),
                None => crate::backend::alpn_list(&inner.cfg.alpn)?,
            };
            // SAFETY: `ssl` is live; the list is copied by wolfSSL.
            let r = unsafe {
                w::wolfSSL_UseALPN(
                    ssl,
                    list.as_mut_ptr().cast(),
                    list.len() as _,
                    w::WOLFSSL_ALPN_FAILED_ON_MISMATCH as u8,
                )
            };
            cvt::ok(r).config("alpn", "ALPN")?;
        }
        self.verify_peer = inner.cfg.verify_peer;
        self.sni = sni;
        self.domain = Some(inner);
        Ok(())
    }

    fn fail_code(&mut self, code: c_int) -> Error {
        let alert = self.ssl.and_then(|ssl| {
            // -1: "no alert", as wolfSSL initialises its own history (no named constant).
            let mut h = w::WOLFSSL_ALERT_HISTORY {
                last_rx: w::WOLFSSL_ALERT { code: -1, level: -1 },
                last_tx: w::WOLFSSL_ALERT { code: -1, level: -1 },
            };
            // SAFETY: `ssl` is live and `h` is a valid out-parameter.
            unsafe { w::wolfSSL_get_alert_history(ssl.as_ptr(), &mut h) };
            (h.last_rx.level == cvt::ALERT_FATAL).then(|| u8::try_from(h.last_rx.code).ok()).flatten()
        });
        let e = map_error(code, self.sh_ref().cert_error.as_ref(), alert);
        self.fail_with(e)
    }

    /// Records `e` as the sticky error. wolfSSL leaves some errors without an alert; while
    /// records go out in the clear the session writes the one the error calls for.
    fn fail_with(&mut self, e: Error) -> Error {
        let e = self.core.state.fail(e);
        self.sh().io.queue_missing_alert(&e);
        e
    }

    /// The error code of the last failed call on `ssl`.
    fn error_code(ssl: NonNull<w::WOLFSSL>, ret: c_int) -> c_int {
        // SAFETY: `ssl` is live.
        unsafe { w::wolfSSL_get_error(ssl.as_ptr(), ret) }
    }

    fn is_want(code: c_int) -> bool {
        code == cvt::ERROR_WANT_READ || code == cvt::ERROR_WANT_WRITE
    }

    /// The ticket in the session's state (empty without one).
    fn current_ticket(ssl: NonNull<w::WOLFSSL>) -> Vec<u8> {
        let mut len: w::word32 = 0;
        // SAFETY: `ssl` is live; a null buffer with size 0 asks for the length only.
        unsafe { w::wolfSSL_get_SessionTicket(ssl.as_ptr(), std::ptr::null_mut(), &mut len) };
        let mut buf = vec![0u8; len as usize];
        if len > 0 {
            // SAFETY: `buf` is writable for `len` bytes, which is passed.
            if cvt::ok(unsafe { w::wolfSSL_get_SessionTicket(ssl.as_ptr(), buf.as_mut_ptr(), &mut len) }).is_err() {
                return Vec::new();
            }
            buf.truncate(len as usize);
        }
        buf
    }

    /// Client: keeps the session for resumption once it is consistent. A TLS 1.2 session
    /// is complete at the end of the handshake. A TLS 1.3 session is only complete when a
    /// NewSessionTicket of this connection has arrived: before that, a resumed
    /// connection's session holds the old ticket with the new connection's secrets, and
    /// resuming it fails with decrypt_error (measured under load with the pinned fork
    /// checks).
    fn save_session(&mut self) {
        let (Some(ssl), Some((cache, key))) = (self.ssl, &self.cache) else { return };
        if self.core.role != Role::Client || !self.core.established || self.core.state.error().is_some() {
            return;
        }
        // SAFETY: `ssl` is live.
        if unsafe { w::wolfSSL_version(ssl.as_ptr()) } as u32 == w::TLS1_3_VERSION {
            let ticket = Self::current_ticket(ssl);
            if ticket.is_empty() || self.saved_ticket.as_deref() == Some(ticket.as_slice()) {
                return;
            }
            self.saved_ticket = Some(ticket);
        } else if self.saved_ticket.is_some() {
            return; // TLS 1.2: saved once, at the end of the handshake
        } else {
            self.saved_ticket = Some(Vec::new());
        }
        // A private copy: the live connection keeps updating its own session object in
        // place, and other connections copy the cached one concurrently.
        // SAFETY: `ssl` is live; wolfSSL_get_session borrows its session, which
        // wolfSSL_SESSION_dup deep-copies into a new object owned by the cache.
        let copy = unsafe {
            let cur = w::wolfSSL_get_session(ssl.as_ptr());
            if cur.is_null() {
                return;
            }
            w::wolfSSL_SESSION_dup(cur)
        };
        if let Some(s) = CachedSession::new(copy) {
            crate::domain::cache_put(cache, key.clone(), s);
        }
    }

    fn peer_chain(&self, ssl: NonNull<w::WOLFSSL>) -> Vec<Certificate> {
        let mut out = Vec::new();
        // SAFETY: `ssl` is live; the chain belongs to its session and is only read here.
        unsafe {
            let chain = w::wolfSSL_get_peer_chain(ssl.as_ptr());
            if chain.is_null() {
                return out;
            }
            for i in 0..w::wolfSSL_get_chain_count(chain) {
                let len = w::wolfSSL_get_chain_length(chain, i);
                let der = w::wolfSSL_get_chain_cert(chain, i);
                if !der.is_null() && len > 0 {
                    out.push(Certificate::from_der(std::slice::from_raw_parts(der, len as usize).to_vec()));
                }
            }
        }
        out
    }
}

fn cstr(p: *const c_char) -> Option<String> {
    // SAFETY: callers pass null or a NUL-terminated string owned by wolfSSL, valid for
    // the duration of the call.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

fn group_name(wolf: &str) -> String {
    match wolf {
        "SECP256R1" => "secp256r1".into(),
        "SECP384R1" => "secp384r1".into(),
        "SECP521R1" => "secp521r1".into(),
        "X25519" => "x25519".into(),
        "X448" => "x448".into(),
        other => other.to_owned(),
    }
}

impl BufferedSession for WolfsslSession {
    fn core(&self) -> &SessionCore {
        &self.core
    }

    fn core_mut(&mut self) -> &mut SessionCore {
        &mut self.core
    }

    fn transport(&self) -> &Transport {
        &self.sh_ref().io
    }

    fn transport_mut(&mut self) -> &mut Transport {
        &mut self.sh().io
    }

    fn push_input(&mut self, input: &[u8]) -> Result<usize> {
        let n = self.sh().io.push_input(input);
        if self.pending.is_some() {
            let unread_len = self.sh_ref().io.pending_input();
            match hello::peek(self.sh_ref().io.unread()) {
                Peek::NeedMore if unread_len < MAX_INPUT => return Ok(n),
                Peek::NeedMore | Peek::Invalid => self.activate(None),
                Peek::Hello(h) => self.activate(Some(h)),
            }
            .map_err(|e| self.fail_with(e))?;
        }
        Ok(n)
    }

    /// Advances the handshake as far as the buffered input allows.
    fn drive(&mut self) -> Result<()> {
        if self.core.established {
            return Ok(());
        }
        let Some(ssl) = self.ssl else { return Ok(()) };
        // SAFETY: `ssl` is live; the callbacks reach only our Shared block.
        let r = unsafe {
            match self.core.role {
                Role::Server => w::wolfSSL_accept(ssl.as_ptr()),
                Role::Client => w::wolfSSL_connect(ssl.as_ptr()),
            }
        };
        if cvt::ok(r).is_ok() {
            self.core.established = true;
            // SAFETY: `ssl` is live.
            if self.core.role == Role::Client && unsafe { w::wolfSSL_version(ssl.as_ptr()) } as u32 == w::TLS1_3_VERSION
            {
                self.saved_ticket = Some(Self::current_ticket(ssl)); // the resumed (old) ticket, or none
            }
            self.save_session();
            return self.flush_early_plaintext();
        }
        let code = Self::error_code(ssl, r);
        if Self::is_want(code) {
            return Ok(());
        }
        Err(self.fail_code(code))
    }

    /// Processes buffered records now, so errors, alerts and close_notify surface at
    /// `feed_tls`; plaintext waits in `plain`.
    fn decrypt_ahead(&mut self) -> Result<()> {
        if !self.core.established || self.core.plain.peer_closed() {
            return Ok(());
        }
        let Some(ssl) = self.ssl else { return Ok(()) };
        let out_before = self.sh_ref().io.output_mark();
        while self.core.plain.has_room() {
            // wolfSSL decrypts straight into the spare room (see `PlaintextIn::spare`). A
            // record partly read by an earlier call can be longer than the room; wolfSSL
            // then keeps the rest pending and the next turn of the loop takes it.
            // SAFETY: `ssl` is live; wolfSSL_pending only reads it.
            let pending = usize::try_from(unsafe { w::wolfSSL_pending(ssl.as_ptr()) }).unwrap_or(0);
            let spare = self.core.plain.spare(pending.max(self.sh_ref().io.pending_input()));
            let want = spare.len() as c_int;
            // SAFETY: `ssl` is live; `spare` is writable for `want` bytes; the callbacks
            // wolfSSL_read makes reach only the Shared block, never `plain`.
            let n = unsafe { w::wolfSSL_read(ssl.as_ptr(), spare.as_mut_ptr().cast(), want) };
            if n > 0 {
                // SAFETY: wolfSSL wrote `n` <= `want` bytes at the start of the spare room,
                // just now.
                unsafe { self.core.plain.filled(n as usize) };
            }
            // SAFETY: `ssl` is live; the call only reads its handshake state.
            if unsafe { w::wolfSSL_is_init_finished(ssl.as_ptr()) } == 0 {
                // wolfSSL started a new handshake on an established session: a TLS 1.2
                // renegotiation (wolfssl-sys builds wolfSSL with secure renegotiation, and
                // its server answers a client's renegotiation ClientHello; measured with
                // `openssl s_client` and `R`). sipstls refuses renegotiation on every
                // backend: drop the answer wolfSSL queued and fail.
                self.sh().io.rewind_output(out_before);
                let e = Error::protocol(ProtocolErrorKind::HandshakeFailure, "renegotiation refused");
                return Err(self.fail_with(e));
            }
            if n > 0 {
                // Every byte fed was consumed and wolfSSL holds no plaintext: another read
                // would only answer WANT_READ (wolfSSL reads no further ahead than the
                // record it works on, so it buffers no whole record of its own).
                // SAFETY: `ssl` is live; wolfSSL_pending only reads it.
                if self.sh_ref().io.pending_input() == 0 && unsafe { w::wolfSSL_pending(ssl.as_ptr()) } == 0 {
                    break;
                }
                continue;
            }
            let code = Self::error_code(ssl, n);
            if code == cvt::ERROR_ZERO_RETURN {
                self.core.plain.set_peer_closed();
                break;
            }
            if Self::is_want(code) {
                break;
            }
            return Err(self.fail_code(code));
        }
        self.save_session();
        Ok(())
    }

    fn write_now(&mut self, data: &[u8]) -> Result<usize> {
        let Some(ssl) = self.ssl else { return Ok(0) };
        if data.is_empty() || self.sh_ref().io.output_full() {
            return Ok(0);
        }
        let len = data.len().min(MAX_WRITE);
        // SAFETY: `ssl` is live; `data` is readable for `len` bytes.
        let r = unsafe { w::wolfSSL_write(ssl.as_ptr(), data.as_ptr().cast(), len as c_int) };
        if r > 0 {
            return Ok(r as usize);
        }
        let code = Self::error_code(ssl, r);
        if Self::is_want(code) {
            return Ok(0);
        }
        Err(self.fail_code(code))
    }

    fn send_close_notify(&mut self) {
        if let Some(ssl) = self.ssl {
            // SAFETY: `ssl` is live; this queues close_notify in our output buffer.
            unsafe { w::wolfSSL_shutdown(ssl.as_ptr()) };
        }
    }

    fn session_info(&self) -> Option<TlsInfo> {
        let ssl = self.ssl?;
        let p = ssl.as_ptr();
        // SAFETY: all calls below: `p` is the live session; the strings returned point into
        // wolfSSL's static tables or the session, and are copied at once.
        let (version, cipher, curve, alpn, resumed) = unsafe {
            let version = match w::wolfSSL_version(p) as u32 {
                w::TLS1_3_VERSION => ProtocolVersion::Tls13,
                w::TLS1_2_VERSION => ProtocolVersion::Tls12,
                _ => return None,
            };
            let cipher = cstr(w::wolfSSL_CIPHER_get_name(w::wolfSSL_get_current_cipher(p))).unwrap_or_default();
            let curve = cstr(w::wolfSSL_get_curve_name(p));
            let mut name: *mut c_char = std::ptr::null_mut();
            let mut len: u16 = 0;
            let alpn =
                (cvt::ok(w::wolfSSL_ALPN_GetProtocol(p, &mut name, &mut len)).is_ok() && !name.is_null() && len > 0)
                    .then(|| std::slice::from_raw_parts(name.cast::<u8>(), usize::from(len)).to_vec());
            (version, cipher, curve, alpn, w::wolfSSL_session_reused(p) != 0)
        };
        let peer_chain = self.peer_chain(ssl);
        let verify = match (self.verify_peer, peer_chain.is_empty()) {
            (false, _) => VerifyResult::NotRequested,
            (true, true) => VerifyResult::NoCertificate,
            (true, false) => VerifyResult::Verified,
        };
        Some(
            TlsInfo::new(version, cipher, peer_chain, verify)
                // A resumed TLS 1.2 session has no key exchange.
                .with_group(if version == ProtocolVersion::Tls12 && resumed {
                    None
                } else {
                    curve.map(|c| group_name(&c))
                })
                .with_sni(self.sni.clone())
                .with_alpn(alpn)
                .with_resumed(resumed),
        )
    }
}

impl Drop for WolfsslSession {
    fn drop(&mut self) {
        self.save_session();
        if let Some(ssl) = self.ssl.take() {
            // SAFETY: we own the session; nothing uses it afterwards.
            unsafe { w::wolfSSL_free(ssl.as_ptr()) };
        }
        // SAFETY: the Shared block came from Box::into_raw in `empty` and the only other
        // user, the WOLFSSL object, is gone.
        drop(unsafe { Box::from_raw(self.shared.as_ptr()) });
    }
}
