//! Per-session state that Mbed TLS's callbacks reach through their `void *` argument: the
//! in-memory transport (what the peer sent waits in `input`, what Mbed TLS writes collects
//! in `output`; an empty input is `WANT_READ`, so sessions run without sockets), the
//! verification policy and its outcome, and the SNI switch.
//!
//! Every `extern "C"` function here catches panics: none may unwind into C.

use std::ffi::{c_int, c_uchar, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use sipstls_core::buffers::Transport;
use sipstls_core::x509::sip_identity_matches;
use sipstls_core::{Error, ServerName, SniCandidates};
use sipstls_mbedtls_sys as sys;

use crate::domain::Compiled;

/// How the verify callback treats the peer's chain.
pub(crate) enum VerifyPolicy {
    /// A client: Mbed TLS checks the chain; the name is checked here by RFC 5922 (when
    /// `name` is set), replacing Mbed TLS's own host name check.
    Client { name: Option<ServerName> },
    /// A server asking for a client certificate. With `optional`, Mbed TLS would accept a
    /// certificate that fails verification; the callback makes such a failure fatal.
    Server { optional: bool },
}

/// State shared between a session and Mbed TLS's callbacks. Lives in a `Box` whose address
/// is given to Mbed TLS (`p_bio`, `p_vrfy`); the session frees it after the `ssl_context`.
pub(crate) struct Shared {
    /// The ciphertext both ways.
    pub(crate) io: Transport,
    /// The framing of what the peer sends, so that a record announcing more than TLS
    /// allows (2^14 bytes in the clear, 2^14 + 2048 protected) is reported as a record
    /// overflow: Mbed TLS calls it a malformed record or a bad ClientHello.
    peer_records: sipstls_core::record::RecordWatch,
    /// The last fatal alert this side wrote in the clear.
    pub(crate) sent_alert: Option<u8>,
    pub(crate) policy: VerifyPolicy,
    pub(crate) verify_depth: u8,
    /// `X509_BADCERT_*` flags of the peer's chain as the callback saw (and adjusted) them.
    pub(crate) verify_flags: u32,
    pub(crate) chain_too_long: bool,
    /// Server: the domains the client's SNI may select.
    pub(crate) sni: Option<Arc<SniCandidates>>,
    /// Server: the SNI the client sent.
    pub(crate) sni_seen: Option<String>,
    /// Server: the listener's default domain (the session's configuration).
    pub(crate) base: Option<Arc<Compiled>>,
    /// Server: the domain selected by SNI (kept alive: Mbed TLS points into it).
    pub(crate) switched: Option<Arc<Compiled>>,
    /// Server: why the SNI switch failed.
    pub(crate) sni_error: Option<Error>,
    /// The raw issuer names of the domain's CRLs. When not empty, a peer leaf whose issuer
    /// is none of them is refused (Mbed TLS itself would accept it unchecked).
    pub(crate) crl_issuers: Vec<Vec<u8>>,
}

impl Shared {
    pub(crate) fn new(policy: VerifyPolicy, verify_depth: u8, sni: Option<Arc<SniCandidates>>) -> Self {
        Shared {
            io: Transport::default(),
            peer_records: Default::default(),
            sent_alert: None,
            policy,
            verify_depth,
            verify_flags: 0,
            chain_too_long: false,
            sni,
            sni_seen: None,
            base: None,
            switched: None,
            sni_error: None,
            crl_issuers: Vec::new(),
        }
    }

    /// Appends as much of `data` as fits; returns the count.
    pub(crate) fn push_input(&mut self, data: &[u8]) -> usize {
        let n = self.io.push_input(data);
        self.peer_records.observe(&data[..n]);
        n
    }

    /// The peer's records are TLS 1.3 from now on (tighter limit on protected records).
    pub(crate) fn peer_uses_tls13(&mut self) {
        self.peer_records.tls13();
    }

    /// What is wrong with the peer's record framing, if anything: a record longer than TLS
    /// allows, a content type TLS does not define, or (server) a ChangeCipherSpec before
    /// the ClientHello (RFC 8446 section 5). Mbed TLS reports the first two as malformed
    /// records and takes the third.
    pub(crate) fn framing_error(&self, server: bool) -> Option<(sipstls_core::ProtocolErrorKind, &'static str)> {
        use sipstls_core::ProtocolErrorKind::{RecordOverflow, UnexpectedMessage};
        let w = &self.peer_records;
        if w.oversized() {
            Some((RecordOverflow, "a record longer than TLS allows"))
        } else if w.unknown_type() {
            Some((UnexpectedMessage, "a record of a content type TLS does not define"))
        } else if server && w.first_type() == Some(0x14) {
            Some((UnexpectedMessage, "a ChangeCipherSpec record before the ClientHello"))
        } else {
            None
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> c_int {
        let len = buf.len().min(c_int::MAX as usize);
        match self.io.read_input(&mut buf[..len]) {
            0 => sys::ERR_SSL_WANT_READ,
            n => n as c_int,
        }
    }

    fn send(&mut self, buf: &[u8]) -> c_int {
        // A plaintext alert record (during the handshake): remember what we told the peer.
        if let [0x15, 0x03, _, 0x00, 0x02, 2, desc] = buf {
            self.sent_alert = Some(*desc);
        }
        let n = buf.len().min(c_int::MAX as usize);
        self.io.write_output(&buf[..n]);
        n as c_int
    }

    /// The verify callback's work for one certificate of the chain.
    fn verify(&mut self, crt: &sys::x509_crt, depth: c_int, flags: &mut u32) -> c_int {
        if depth > c_int::from(self.verify_depth) + 1 {
            self.chain_too_long = true;
            *flags |= sys::X509_BADCERT_OTHER as u32;
        }
        if depth == 0 && !self.crl_issuers.is_empty() {
            let issuer: &[u8] = if crt.issuer_raw.p.is_null() {
                &[]
            } else {
                // SAFETY: `issuer_raw` describes `len` bytes of the certificate's DER, owned
                // by `crt` for the duration of the callback.
                unsafe { std::slice::from_raw_parts(crt.issuer_raw.p, crt.issuer_raw.len) }
            };
            if !self.crl_issuers.iter().any(|i| i == issuer) {
                // No CRL for the leaf's issuer: its revocation status is unknown.
                *flags |= sys::X509_BADCRL_NOT_TRUSTED as u32;
            }
        }
        let cn_mismatch = sys::X509_BADCERT_CN_MISMATCH as u32;
        let mut ret = 0;
        match &self.policy {
            VerifyPolicy::Client { name } => {
                if depth == 0 {
                    // Names are decided by RFC 5922 here, not by Mbed TLS's host name check.
                    *flags &= !cn_mismatch;
                    if let Some(want) = name {
                        // SAFETY: `raw` describes the certificate's DER, owned by `crt`.
                        let der = unsafe { crate::x509::raw_der(crt) };
                        let ok = sip_identity_matches(der, want).unwrap_or(false);
                        if !ok {
                            *flags |= cn_mismatch;
                        }
                    }
                }
            }
            VerifyPolicy::Server { optional } => {
                if *optional && *flags != 0 {
                    // A fatal error even in optional mode (Mbed TLS forgives only
                    // ERR_X509_CERT_VERIFY_FAILED there).
                    ret = sys::ERR_X509_FATAL_ERROR;
                }
            }
        }
        self.verify_flags |= *flags;
        ret
    }
}

/// `f_send`: everything Mbed TLS writes is queued for `take_tls`.
///
/// # Safety
/// `p` must be the session's `Shared` and `buf` valid for `len` bytes.
pub(crate) unsafe extern "C" fn send_callback(p: *mut c_void, buf: *const c_uchar, len: usize) -> c_int {
    catch_unwind(AssertUnwindSafe(|| {
        if p.is_null() || (buf.is_null() && len > 0) {
            return sys::ERR_SSL_BAD_INPUT_DATA;
        }
        // SAFETY: `p` is the live `Shared` of the session that is inside an Mbed TLS call
        // (no Rust reference to it is held meanwhile); `buf` has `len` readable bytes.
        let (shared, data) = unsafe { (&mut *(p as *mut Shared), std::slice::from_raw_parts(buf, len)) };
        shared.send(data)
    }))
    .unwrap_or(sys::ERR_SSL_INTERNAL_ERROR)
}

/// `f_recv`: reads from what `feed_tls` buffered; `WANT_READ` when empty.
///
/// # Safety
/// `p` must be the session's `Shared` and `buf` valid for writes of `len` bytes.
pub(crate) unsafe extern "C" fn recv_callback(p: *mut c_void, buf: *mut c_uchar, len: usize) -> c_int {
    catch_unwind(AssertUnwindSafe(|| {
        if p.is_null() || (buf.is_null() && len > 0) {
            return sys::ERR_SSL_BAD_INPUT_DATA;
        }
        // SAFETY: as in `send_callback`; `buf` has `len` writable bytes.
        let (shared, data) = unsafe { (&mut *(p as *mut Shared), std::slice::from_raw_parts_mut(buf, len)) };
        shared.recv(data)
    }))
    .unwrap_or(sys::ERR_SSL_INTERNAL_ERROR)
}

/// `f_vrfy` (per context): RFC 5922 names on clients, strict optional client auth on
/// servers, verify depth, and a record of the flags for error mapping.
///
/// # Safety
/// `p` must be the session's `Shared`; `crt` and `flags` valid (Mbed TLS guarantees it).
pub(crate) unsafe extern "C" fn verify_callback(
    p: *mut c_void,
    crt: *mut sys::x509_crt,
    depth: c_int,
    flags: *mut u32,
) -> c_int {
    catch_unwind(AssertUnwindSafe(|| {
        if p.is_null() || crt.is_null() || flags.is_null() {
            return sys::ERR_X509_BAD_INPUT_DATA;
        }
        // SAFETY: `p` is the live `Shared` (see `send_callback`); `crt` and `flags` point to
        // the certificate being verified and its flags, valid during the call.
        let (shared, crt, flags) = unsafe { (&mut *(p as *mut Shared), &*crt, &mut *flags) };
        shared.verify(crt, depth, flags)
    }))
    .unwrap_or(sys::ERR_X509_FATAL_ERROR)
}

/// `f_sni` (per server configuration): records the name and, when the listener has SNI
/// domains, moves the handshake onto the selected domain's certificates, trust anchors and
/// client-certificate policy.
///
/// # Safety
/// `ssl` must be a context whose `p_bio` is its session's `Shared`; `name` valid for `len`.
pub(crate) unsafe extern "C" fn sni_callback(
    _p: *mut c_void,
    ssl: *mut sys::ssl_context,
    name: *const c_uchar,
    len: usize,
) -> c_int {
    catch_unwind(AssertUnwindSafe(|| {
        if ssl.is_null() || (name.is_null() && len > 0) {
            return -1;
        }
        // SAFETY: `ssl` is the live context in a handshake call; its `p_bio` is the
        // session's `Shared` (set at creation, never changed); `name` has `len` bytes.
        let (shared, name) = unsafe {
            let p = (*ssl).private_p_bio;
            if p.is_null() {
                return -1;
            }
            (&mut *(p as *mut Shared), std::slice::from_raw_parts(name, len))
        };
        match crate::domain::switch_domain(ssl, shared, name) {
            Ok(()) => 0,
            Err(e) => {
                shared.sni_error = Some(e);
                -1
            }
        }
    }))
    .unwrap_or(-1)
}

/// Mbed TLS's export-keys callback: the TLS 1.2 master secret becomes a `CLIENT_RANDOM`
/// key log line, the TLS 1.3 traffic secrets their `*_TRAFFIC_SECRET*` lines (the labels
/// of the NSS key log format). A panic in the sink is caught; a key log never fails a
/// handshake.
///
/// # Safety
/// Called by Mbed TLS only: `ctx` is the domain's `KeyLogSink` (alive with the session),
/// `secret` points at `len` bytes and `client_random` at 32, all valid for the call.
pub(crate) unsafe extern "C" fn export_keys(
    ctx: *mut c_void,
    kind: sys::ssl_key_export_type,
    secret: *const c_uchar,
    len: usize,
    client_random: *const c_uchar,
    _server_random: *const c_uchar,
    _prf: sys::tls_prf_types,
) {
    let label = match kind {
        sys::SSL_KEY_EXPORT_TLS12_MASTER_SECRET => "CLIENT_RANDOM",
        sys::SSL_KEY_EXPORT_TLS1_3_CLIENT_HANDSHAKE_TRAFFIC_SECRET => "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        sys::SSL_KEY_EXPORT_TLS1_3_SERVER_HANDSHAKE_TRAFFIC_SECRET => "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        sys::SSL_KEY_EXPORT_TLS1_3_CLIENT_APPLICATION_TRAFFIC_SECRET => "CLIENT_TRAFFIC_SECRET_0",
        sys::SSL_KEY_EXPORT_TLS1_3_SERVER_APPLICATION_TRAFFIC_SECRET => "SERVER_TRAFFIC_SECRET_0",
        _ => return,
    };
    if ctx.is_null() || secret.is_null() || client_random.is_null() || len == 0 || len > 64 {
        return;
    }
    // SAFETY: per this function's contract, `ctx` is the live sink and the two pointers
    // point at `len` and 32 readable bytes for the duration of the call.
    let (sink, secret, cr) = unsafe {
        (
            &*(ctx as *const sipstls_core::KeyLogSink),
            std::slice::from_raw_parts(secret, len),
            std::slice::from_raw_parts(client_random, 32),
        )
    };
    let _ = catch_unwind(AssertUnwindSafe(|| sink.log(label, cr, secret)));
}
