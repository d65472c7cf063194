//! The Mbed TLS implementation of [`Session`]: a raw `mbedtls_ssl_context` over the
//! in-memory transport of [`Shared`].

use std::ffi::{c_int, c_void, CStr};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use sipstls_core::buffers::{BufferedSession, SessionCore, Transport};
use sipstls_core::{Certificate, Error, ProtocolVersion, Result, Role, TlsInfo, VerifyResult};
use sipstls_mbedtls_sys as sys;

use crate::domain::{ClientCache, Compiled};
use crate::errors;
use crate::io::{self, Shared};
use crate::x509::{self, SavedSession};

/// Where a client session stores its session for resumption.
pub(crate) struct CacheSlot {
    pub(crate) cache: Arc<Mutex<ClientCache>>,
    pub(crate) key: String,
}

/// An Mbed TLS session (client or server).
pub struct MbedtlsSession {
    /// Boxed `mbedtls_ssl_context`, freed in Drop. Mbed TLS points into `shared` and into
    /// the configuration held by `domain`.
    ssl: NonNull<sys::ssl_context>,
    /// Boxed, freed in Drop after `ssl`. Reached by Mbed TLS's callbacks; Rust code only
    /// touches it between Mbed TLS calls.
    shared: NonNull<Shared>,
    /// Keeps the configuration (and everything it points to) alive.
    _domain: Arc<Compiled>,
    verify_peer: bool,
    resumed: bool,
    group: Option<u16>,
    sent_sni: Option<String>,
    expected_name: Option<String>,
    cache: Option<CacheSlot>,
    core: SessionCore,
}

// SAFETY: the session exclusively owns its `ssl_context` and `Shared` (no other handle to
// them exists outside Mbed TLS calls made through `&mut self`); Mbed TLS contexts have no
// thread affinity. The configuration it points to is immutable and shared read-only.
unsafe impl Send for MbedtlsSession {}

pub(crate) struct NewSession {
    pub(crate) domain: Arc<Compiled>,
    pub(crate) role: Role,
    pub(crate) shared: Shared,
    pub(crate) hostname: Option<Option<String>>,
    pub(crate) sent_sni: Option<String>,
    pub(crate) expected_name: Option<String>,
    pub(crate) cache: Option<CacheSlot>,
}

impl MbedtlsSession {
    pub(crate) fn new(n: NewSession) -> Result<Self> {
        let ssl = NonNull::from(Box::leak(Box::<sys::ssl_context>::default()));
        let shared = NonNull::from(Box::leak(Box::new(n.shared)));
        let verify_peer = n.domain.cfg.verify_peer;
        // From here on Drop frees both boxes (and calls ssl_free, valid after ssl_init).
        let mut s = MbedtlsSession {
            ssl,
            shared,
            _domain: n.domain,
            verify_peer,
            resumed: false,
            group: None,
            sent_sni: n.sent_sni,
            expected_name: n.expected_name,
            cache: n.cache,
            core: SessionCore::new(n.role),
        };
        let conf = s._domain.conf_ptr();
        // SAFETY: `ssl` is a fresh, zeroed context; ssl_init then ssl_setup with a
        // configuration that `_domain` keeps alive (and never modifies) for the session's
        // lifetime.
        let ret = unsafe {
            sys::ssl_init(s.ssl.as_ptr());
            sys::ssl_setup(s.ssl.as_ptr(), conf)
        };
        if ret != 0 {
            return Err(errors::backend(ret));
        }
        let p = s.shared.as_ptr() as *mut c_void;
        // SAFETY: `p` is the boxed `Shared`, freed only after the context in Drop; the
        // callbacks match Mbed TLS's signatures and catch panics.
        unsafe {
            sys::ssl_set_bio(s.ssl.as_ptr(), p, Some(io::send_callback), Some(io::recv_callback), None);
            sys::ssl_set_verify(s.ssl.as_ptr(), Some(io::verify_callback), p);
        }
        if let Some(sink) = s._domain.key_log_ptr() {
            // SAFETY: `sink` points at the domain's boxed key log, which `_domain` keeps alive
            // (and never moves) for the session's lifetime; the callback catches panics.
            unsafe { sys::ssl_set_export_keys_cb(s.ssl.as_ptr(), Some(io::export_keys), sink) };
        }
        if let Some(host) = n.hostname {
            let c = host
                .map(std::ffi::CString::new)
                .transpose()
                .map_err(|_| Error::config("server_name", "a server name contains a NUL byte"))?;
            // SAFETY: the context is set up; the string (or NULL, which only marks "no name
            // check by Mbed TLS, no SNI") is copied by Mbed TLS.
            let ret =
                unsafe { sys::ssl_set_hostname(s.ssl.as_ptr(), c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr())) };
            if ret != 0 {
                return Err(Error::config("server_name", errors::describe(ret)));
            }
        }
        if let Some(slot) = &s.cache {
            if let Ok(map) = slot.cache.lock() {
                if let Some(saved) = map.get(&slot.key) {
                    // SAFETY: `saved` is a session Mbed TLS produced for this client
                    // domain; ssl_set_session copies it into the new context.
                    let _ = unsafe { sys::ssl_set_session(s.ssl.as_ptr(), saved.as_ptr()) };
                }
            }
        }
        if s.core.role == Role::Client {
            // Produce the ClientHello now: `wants_write` is then true.
            s.drive()?;
        }
        Ok(s)
    }

    fn shared(&self) -> &Shared {
        // SAFETY: the box lives as long as `self`; no Mbed TLS call is running (those
        // need `&mut self`), so no callback holds a reference.
        unsafe { self.shared.as_ref() }
    }

    fn shared_mut(&mut self) -> &mut Shared {
        // SAFETY: as in `shared`, with exclusive access through `&mut self`.
        unsafe { self.shared.as_mut() }
    }

    fn ssl(&self) -> *mut sys::ssl_context {
        self.ssl.as_ptr()
    }

    /// Maps a failed call's return code and records it as the sticky error.
    fn fail(&mut self, code: c_int) -> Error {
        let sh = self.shared();
        let err = if let Some(e) = sh.sni_error.clone() {
            e
        } else {
            // SAFETY: the context is alive; `in_msg` points into its input buffer, which
            // holds the alert record when the code says one was received.
            let received_alert = unsafe {
                let ssl = &*self.ssl();
                (code == sys::ERR_SSL_FATAL_ALERT_MESSAGE
                    && !ssl.private_in_msg.is_null()
                    && ssl.private_in_msglen >= 2)
                    .then(|| *ssl.private_in_msg.add(1))
            };
            errors::map(
                code,
                &errors::Context {
                    received_alert,
                    sent_alert: sh.sent_alert,
                    verify_flags: sh.verify_flags,
                    chain_too_long: sh.chain_too_long,
                    expected: self.expected_name.as_deref(),
                },
            )
        };
        let e = self.core.state.fail(err);
        // Mbed TLS leaves some errors without an alert (early ClientHello errors, a
        // handshake message split over records): send the one the error calls for.
        if let (Some(alert), false) = (e.alert(), self.shared().io.records().ended_with_alert()) {
            self.send_alert(alert);
        }
        e
    }

    /// Sends a fatal alert: in the clear as a TLS 1.2 record while nothing this side sent
    /// is protected (before version negotiation Mbed TLS would have no record version to
    /// put in the header), through Mbed TLS, which encrypts it, after that.
    fn send_alert(&mut self, alert: sipstls_core::Alert) {
        let sh = self.shared_mut();
        if sh.io.records().sends_plaintext() {
            sh.io.write_output(&alert.plaintext_record());
            sh.sent_alert = Some(alert.0);
        } else {
            // SAFETY: the context is alive; the call writes one alert record through our bio.
            unsafe { sys::ssl_send_alert_message(self.ssl(), sys::SSL_ALERT_LEVEL_FATAL as u8, alert.0) };
        }
    }

    /// Reads what the handshake learned before Mbed TLS frees its handshake state.
    fn capture(&mut self) {
        let (mut resumed, mut group) = (0, 0u16);
        // SAFETY: the context is alive; the shim only reads its handshake state.
        if unsafe { sys::sipstls_mbedtls_handshake_facts(self.ssl(), &mut resumed, &mut group) } != 0 {
            self.resumed = resumed != 0;
            if group != 0 {
                self.group = Some(group);
            }
        }
    }

    /// Fails on framing errors that Mbed TLS would misreport or accept (see
    /// `Shared::framing_error`), with the alert the RFC names, before Mbed TLS reads the
    /// record.
    fn check_framing(&mut self) -> Result<()> {
        if let Some((kind, detail)) = self.shared().framing_error(self.core.role == Role::Server) {
            let e = Error::protocol(kind, detail);
            // Tell the peer (best effort; the session is failed either way).
            self.send_alert(kind.alert());
            return Err(self.core.state.fail(e));
        }
        Ok(())
    }

    fn on_established(&mut self) {
        self.core.established = true;
        // A TLS 1.3 session is worth keeping only with a ticket, which comes later.
        // SAFETY: the context is alive.
        if unsafe { sys::sipstls_mbedtls_version(self.ssl()) } == sys::SSL_VERSION_TLS1_2 as u16 {
            self.save_session();
        } else {
            self.shared_mut().peer_uses_tls13();
        }
    }

    /// Keeps a copy of the session in the client domain's cache, for resumption.
    fn save_session(&mut self) {
        if let Some(slot) = &self.cache {
            let mut saved = SavedSession::new();
            // SAFETY: the context is alive and its handshake is over; `saved` is an
            // initialised session that ssl_get_session fills with a copy.
            if unsafe { sys::ssl_get_session(self.ssl(), saved.as_mut_ptr()) } == 0 {
                if let Ok(mut map) = slot.cache.lock() {
                    map.insert(slot.key.clone(), saved);
                }
            }
        }
    }

    fn peer_chain(&self) -> Vec<Certificate> {
        let mut out = Vec::new();
        // SAFETY: the context is alive; the peer chain is a linked list of certificates
        // owned by the session, not modified while we read it.
        unsafe {
            let mut crt = sys::ssl_get_peer_cert(self.ssl());
            while !crt.is_null() {
                let der = x509::raw_der(&*crt);
                if !der.is_empty() {
                    out.push(Certificate::from_der(der.to_vec()));
                }
                crt = (*crt).next;
            }
        }
        out
    }
}

impl BufferedSession for MbedtlsSession {
    fn core(&self) -> &SessionCore {
        &self.core
    }

    fn core_mut(&mut self) -> &mut SessionCore {
        &mut self.core
    }

    fn transport(&self) -> &Transport {
        &self.shared().io
    }

    fn transport_mut(&mut self) -> &mut Transport {
        &mut self.shared_mut().io
    }

    fn push_input(&mut self, input: &[u8]) -> Result<usize> {
        let n = self.shared_mut().push_input(input);
        self.check_framing()?;
        Ok(n)
    }

    /// Advances the handshake as far as the buffered input allows.
    fn drive(&mut self) -> Result<()> {
        if self.core.established {
            return Ok(());
        }
        for _ in 0..256 {
            // Not `mbedtls_ssl_is_handshake_over`: a TLS 1.3 server goes on past that point to
            // write its session tickets, and is done at HANDSHAKE_OVER itself.
            // SAFETY: the context is alive.
            if unsafe { (*self.ssl()).private_state } == sys::SSL_HANDSHAKE_OVER as c_int {
                self.on_established();
                return self.flush_early_plaintext();
            }
            // SAFETY: the context is set up; its bio and callbacks point to live state.
            let ret = unsafe { sys::ssl_handshake_step(self.ssl()) };
            self.capture();
            if self.core.role == Role::Server {
                // SAFETY: the context is alive; the shim only switches its outbound keys
                // once the TLS 1.3 application keys exist (see the shim's header).
                unsafe { sys::sipstls_mbedtls_tls13_server_send_keys(self.ssl()) };
            }
            match ret {
                0 => {}
                sys::ERR_SSL_RECEIVED_NEW_SESSION_TICKET => self.save_session(),
                sys::ERR_SSL_WANT_READ | sys::ERR_SSL_WANT_WRITE => return Ok(()),
                // Mbed TLS may fail without telling the peer (a missing client certificate
                // in TLS 1.2, early ClientHello errors): `fail` sends the alert then.
                e => return Err(self.fail(e)),
            }
        }
        Ok(())
    }

    /// Processes buffered records now, so protocol errors, alerts and close_notify surface
    /// at `feed_tls`; plaintext waits in `plain`.
    fn decrypt_ahead(&mut self) -> Result<()> {
        if !self.core.established || self.core.plain.peer_closed() {
            return Ok(());
        }
        let (mut empty_records, mut post_handshake) = (0, 0);
        loop {
            // SAFETY: the context is alive.
            let buffered = unsafe { sys::ssl_check_pending(self.ssl()) } != 0;
            // A TLS 1.3 NewSessionTicket (client) is read in two calls: the first one moves
            // the context into the ticket state and asks for more input, the second one
            // processes the message it kept. Bounded: one ticket per round.
            // SAFETY: the context is alive.
            let in_ticket = unsafe { (*self.ssl()).private_state } != sys::SSL_HANDSHAKE_OVER as c_int;
            if in_ticket {
                post_handshake += 1;
            }
            let pending = buffered || (in_ticket && post_handshake <= 16);
            if (self.shared().io.pending_input() == 0 && !pending) || !self.core.plain.has_room() {
                break;
            }
            // Mbed TLS decrypts straight into the spare room (see `PlaintextIn::spare`). A
            // longer record (part of it received earlier) leaves the rest in Mbed TLS
            // (`buffered`) for the next turn.
            // SAFETY: the context is alive; the call only reads it.
            let held = unsafe { sys::ssl_get_bytes_avail(self.ssl()) };
            let ssl = self.ssl();
            let spare = self.core.plain.spare(held.max(self.shared().io.pending_input()));
            let want = spare.len();
            // SAFETY: `spare` is writable for `want` bytes; the context is alive.
            let ret = unsafe { sys::ssl_read(ssl, spare.as_mut_ptr().cast(), want) };
            match ret {
                n if n > 0 => {
                    // SAFETY: Mbed TLS wrote `n` <= `want` bytes at the start of the spare
                    // room, just now.
                    unsafe { self.core.plain.filled(n as usize) };
                }
                0 => {
                    // An empty record (Mbed TLS itself refuses long runs of them); stop if
                    // nothing more can be processed.
                    empty_records += 1;
                    if self.shared().io.pending_input() == 0 || empty_records > 64 {
                        break;
                    }
                }
                sys::ERR_SSL_PEER_CLOSE_NOTIFY => {
                    self.core.plain.set_peer_closed();
                    break;
                }
                // A TLS 1.3 ticket arrived (client): keep the session, then go on reading.
                sys::ERR_SSL_RECEIVED_NEW_SESSION_TICKET => self.save_session(),
                sys::ERR_SSL_WANT_READ | sys::ERR_SSL_WANT_WRITE => {
                    // SAFETY: the context is alive.
                    let in_ticket = unsafe { (*self.ssl()).private_state } != sys::SSL_HANDSHAKE_OVER as c_int;
                    if !(in_ticket && post_handshake < 16) {
                        break;
                    }
                }
                e => return Err(self.fail(e)),
            }
        }
        Ok(())
    }

    fn write_now(&mut self, data: &[u8]) -> Result<usize> {
        let (mut written, mut tickets) = (0, 0);
        while written < data.len() && !self.shared().io.output_full() {
            let rest = &data[written..];
            // SAFETY: `rest` is a readable buffer of the given length; the context is alive.
            let ret = unsafe { sys::ssl_write(self.ssl(), rest.as_ptr(), rest.len()) };
            match ret {
                n if n > 0 => written += n as usize,
                0 | sys::ERR_SSL_WANT_READ | sys::ERR_SSL_WANT_WRITE => break,
                // A TLS 1.3 ticket processed on the way (client): keep it, write on (bounded:
                // Mbed TLS reports each ticket once).
                sys::ERR_SSL_RECEIVED_NEW_SESSION_TICKET if tickets < 16 => {
                    tickets += 1;
                    self.save_session();
                }
                e => return Err(self.fail(e)),
            }
        }
        Ok(written)
    }

    fn send_close_notify(&mut self) {
        // SAFETY: the context is alive and established; writes an alert through our bio.
        unsafe { sys::ssl_close_notify(self.ssl()) };
    }

    fn session_info(&self) -> Option<TlsInfo> {
        // SAFETY: the context is alive; the returned strings are static or owned by it.
        let (version, cipher, alpn) = unsafe {
            let ssl = self.ssl();
            let cipher = sys::ssl_get_ciphersuite(ssl);
            let cipher =
                if cipher.is_null() { String::new() } else { iana_suite(&CStr::from_ptr(cipher).to_string_lossy()) };
            let alpn = sys::ssl_get_alpn_protocol(ssl);
            let alpn = (!alpn.is_null()).then(|| CStr::from_ptr(alpn).to_bytes().to_vec());
            (sys::sipstls_mbedtls_version(ssl), cipher, alpn)
        };
        let version = match i32::from(version) {
            v if v == sys::SSL_VERSION_TLS1_2 as i32 => ProtocolVersion::Tls12,
            v if v == sys::SSL_VERSION_TLS1_3 as i32 => ProtocolVersion::Tls13,
            _ => return None,
        };
        let peer_chain = self.peer_chain();
        // SAFETY: the context is alive.
        let flags = unsafe { sys::ssl_get_verify_result(self.ssl()) } | self.shared().verify_flags;
        let verify = match (self.verify_peer, peer_chain.is_empty()) {
            (false, _) => VerifyResult::NotRequested,
            (true, true) => VerifyResult::NoCertificate,
            (true, false) if flags == 0 => VerifyResult::Verified,
            (true, false) => VerifyResult::Failed(errors::map_verify_flags(
                flags,
                self.shared().chain_too_long,
                self.expected_name.as_deref(),
            )),
        };
        let sni = match self.core.role {
            Role::Server => self.shared().sni_seen.clone(),
            Role::Client => self.sent_sni.clone(),
        };
        Some(
            TlsInfo::new(version, cipher, peer_chain, verify)
                // A resumed TLS 1.2 session has no key exchange; TLS 1.3 always has one here.
                .with_group(if self.resumed && version == ProtocolVersion::Tls12 {
                    None
                } else {
                    self.group.map(group_name)
                })
                .with_sni(sni)
                .with_alpn(alpn)
                .with_resumed(self.resumed),
        )
    }
}

impl Drop for MbedtlsSession {
    fn drop(&mut self) {
        // SAFETY: both boxes were leaked in `new` and are freed exactly once here, the
        // context first (ssl_free may not call the callbacks, which use `shared`).
        unsafe {
            sys::ssl_free(self.ssl.as_ptr());
            drop(Box::from_raw(self.ssl.as_ptr()));
            drop(Box::from_raw(self.shared.as_ptr()));
        }
    }
}

/// The IANA name of a TLS group id.
fn group_name(id: u16) -> String {
    match id {
        0x1d => "x25519".into(),
        0x1e => "x448".into(),
        0x17 => "secp256r1".into(),
        0x18 => "secp384r1".into(),
        0x19 => "secp521r1".into(),
        other => format!("group-0x{other:04x}"),
    }
}

/// The IANA name of a suite from Mbed TLS's (`TLS-ECDHE-RSA-WITH-AES-128-GCM-SHA256`,
/// `TLS1-3-AES-128-GCM-SHA256`).
fn iana_suite(mbed: &str) -> String {
    match mbed.strip_prefix("TLS1-3-") {
        Some(rest) => format!("TLS_{}", rest.replace('-', "_")),
        None => mbed.replace('-', "_"),
    }
}
