//! The OpenSSL implementation of [`Session`], over memory buffers.

use crate::ssl_lib::ssl::{ErrorCode, ShutdownState, Ssl, SslRef, SslStream, SslVersion};
use crate::ssl_lib::{self, ForeignTypeRef};
use sipstls_core::buffers::{BufferedSession, SessionCore, Transport};
use sipstls_core::{Certificate, Error, ProtocolVersion, Result, Role, TlsInfo, VerifyResult};

use crate::backend::{backend_err, verify_index};
use crate::errors::map_stack;

/// An OpenSSL session (client or server), over the in-memory [`Transport`] (an empty
/// input reads as `WouldBlock`, which OpenSSL takes as "want read").
pub struct OpensslSession {
    stream: SslStream<Transport>,
    sent_sni: Option<String>,
    expected_name: Option<String>,
    core: SessionCore,
}

impl OpensslSession {
    pub(crate) fn new(ssl: Ssl, role: Role, sent_sni: Option<String>) -> Result<Self> {
        let mut s = OpensslSession {
            stream: SslStream::new(ssl, Transport::default()).map_err(backend_err)?,
            sent_sni,
            expected_name: None,
            core: SessionCore::new(role),
        };
        if role == Role::Client {
            // Produce the ClientHello now, as rustls does: `wants_write` is then true.
            s.drive()?;
        }
        Ok(s)
    }

    pub(crate) fn expecting(mut self, name: Option<String>) -> Self {
        self.expected_name = name;
        self
    }

    /// The underlying `SSL` (for introspection and benchmarks).
    pub fn ssl(&self) -> &SslRef {
        self.stream.ssl()
    }

    fn map(&self, e: &ssl_lib::ssl::Error) -> Error {
        let verify = self.stream.ssl().verify_result();
        if let Some(io) = e.io_error() {
            return Error::Backend { library: crate::NAME, message: io.to_string() };
        }
        // close_notify before the handshake finished: OpenSSL reports ZERO_RETURN with an
        // empty error stack. The peer ended the handshake with an alert (found by fuzzing:
        // it was an untyped backend error).
        if e.code() == ErrorCode::ZERO_RETURN {
            return Error::AlertReceived(sipstls_core::Alert(0));
        }
        map_stack(e.ssl_error(), verify, self.expected_name.as_deref())
    }

    /// Records `err` as the sticky error, with its alert on the wire.
    fn fail(&mut self, err: Error) -> Error {
        let e = self.core.state.fail(err);
        self.stream.get_mut().queue_missing_alert(&e);
        e
    }

    /// A BoringSSL server over a stream transport holds its TLS 1.3 tickets until it next
    /// writes (so that a client that never reads cannot stall it); OpenSSL sends them at
    /// the end of the handshake. A zero-byte write sends them now, as OpenSSL would: a
    /// client that connects, handshakes and leaves still gets a ticket.
    #[cfg(feature = "boring")]
    fn flush_tickets(&mut self) {
        if self.core.role == Role::Server {
            // SAFETY: the pointer is the live SSL owned by this stream, whose BIO is the
            // stream's Transport; a zero-byte write only flushes pending handshake messages and
            // reads nothing from the (non-null, empty) buffer.
            unsafe { ssl_lib::ffi::SSL_write(self.stream.ssl().as_ptr(), [0u8; 1].as_ptr().cast(), 0) };
            drop(ssl_lib::error::ErrorStack::get());
        }
    }
}

impl BufferedSession for OpensslSession {
    fn core(&self) -> &SessionCore {
        &self.core
    }

    fn core_mut(&mut self) -> &mut SessionCore {
        &mut self.core
    }

    fn transport(&self) -> &Transport {
        self.stream.get_ref()
    }

    fn transport_mut(&mut self) -> &mut Transport {
        self.stream.get_mut()
    }

    fn push_input(&mut self, input: &[u8]) -> Result<usize> {
        Ok(self.stream.get_mut().push_input(input))
    }

    /// Advances the handshake as far as the buffered input allows.
    fn drive(&mut self) -> Result<()> {
        if self.core.established {
            return Ok(());
        }
        match self.stream.do_handshake() {
            Ok(()) => {
                self.core.established = true;
                #[cfg(feature = "boring")]
                self.flush_tickets();
                self.flush_early_plaintext()
            }
            Err(e) if matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE) => Ok(()),
            Err(e) => {
                let err = self.map(&e);
                Err(self.fail(err))
            }
        }
    }

    /// Processes buffered records now (as rustls does), so protocol errors, alerts and
    /// close_notify surface at `feed_tls`; plaintext waits in `plain`.
    fn decrypt_ahead(&mut self) -> Result<()> {
        if !self.core.established || self.core.plain.peer_closed() {
            return Ok(());
        }
        // Only with ciphertext waiting (or plaintext of a record read in part): an SSL_read
        // on empty input makes OpenSSL allocate its read buffer and keep it for the
        // pending read, defeating RELEASE_BUFFERS (measured: 18.4 KB per idle connection
        // instead of 8-13 KB).
        while self.core.plain.has_room() {
            let waiting = self.stream.get_ref().pending_input();
            let held = self.stream.ssl().pending();
            if waiting == 0 && held == 0 {
                break;
            }
            // OpenSSL decrypts straight into the spare room (see `PlaintextIn::spare`). A
            // record partly received earlier can be longer than the room: the rest stays
            // in the library (`held`) and the next turn takes it.
            let spare = self.core.plain.spare(waiting.max(held));
            match self.stream.ssl_read_uninit(spare) {
                Ok(0) => {
                    self.core.plain.set_peer_closed();
                    break;
                }
                Ok(n) => {
                    // SAFETY: `ssl_read_uninit` initialised the first `n` bytes of the spare
                    // room it was given, just now.
                    #[allow(unsafe_code)]
                    unsafe {
                        self.core.plain.filled(n)
                    };
                }
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => {
                    self.core.plain.set_peer_closed();
                    break;
                }
                Err(e) if matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE) => break,
                Err(e) => {
                    let err = self.map(&e);
                    return Err(self.fail(err));
                }
            }
        }
        Ok(())
    }

    fn write_now(&mut self, data: &[u8]) -> Result<usize> {
        if data.is_empty() || self.stream.get_ref().output_full() {
            return Ok(0);
        }
        match self.stream.ssl_write(data) {
            Ok(n) => Ok(n),
            Err(e) if matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE) => Ok(0),
            Err(e) => {
                let err = self.map(&e);
                Err(self.fail(err))
            }
        }
    }

    fn send_close_notify(&mut self) {
        let _ = self.stream.shutdown();
    }

    fn session_info(&self) -> Option<TlsInfo> {
        let ssl = self.stream.ssl();
        let version = match ssl.version2()? {
            v if v == SslVersion::TLS1_3 => ProtocolVersion::Tls13,
            v if v == SslVersion::TLS1_2 => ProtocolVersion::Tls12,
            _ => return None,
        };
        let mut peer_chain = Vec::new();
        if let Some(leaf) = ssl.peer_certificate().and_then(|c| c.to_der().ok()) {
            peer_chain.push(Certificate::from_der(leaf));
        }
        if let Some(chain) = ssl.peer_cert_chain() {
            for c in chain {
                if let Ok(der) = c.to_der() {
                    if peer_chain.first().is_none_or(|l| l.der() != der.as_slice()) {
                        peer_chain.push(Certificate::from_der(der));
                    }
                }
            }
        }
        let verify_peer = ssl.ex_data(verify_index()).is_some_and(|v| v.0);
        let verify = match (verify_peer, peer_chain.is_empty()) {
            (false, _) => VerifyResult::NotRequested,
            (true, true) => VerifyResult::NoCertificate,
            (true, false) if ssl_lib::verify_code(&ssl.verify_result()) == ssl_lib::ffi::X509_V_OK => {
                VerifyResult::Verified
            }
            (true, false) => VerifyResult::Failed(crate::errors::map_verify_result(ssl.verify_result(), None)),
        };
        let sni = match self.core.role {
            Role::Server => ssl.servername(ssl_lib::ssl::NameType::HOST_NAME).map(str::to_owned),
            Role::Client => self.sent_sni.clone(),
        };
        Some(
            TlsInfo::new(
                version,
                ssl.current_cipher().and_then(|c| c.standard_name()).unwrap_or_default(),
                peer_chain,
                verify,
            )
            // A resumed TLS 1.2 session has no key exchange; OpenSSL would report a stale
            // group.
            .with_group(if version == ProtocolVersion::Tls12 && ssl.session_reused() {
                None
            } else {
                negotiated_group(ssl)
            })
            .with_sni(sni)
            .with_alpn(ssl.selected_alpn_protocol().map(<[u8]>::to_vec))
            .with_resumed(ssl.session_reused()),
        )
    }
}

impl Drop for OpensslSession {
    fn drop(&mut self) {
        // Without this, SSL_free marks a healthy session "not resumable" (OpenSSL treats an
        // SSL freed without shutdown as a bad session).
        if self.core.established && self.core.state.error().is_none() {
            self.stream.ssl_mut_shutdown_state();
        }
    }
}

trait ShutdownExt {
    fn ssl_mut_shutdown_state(&mut self);
}

impl ShutdownExt for SslStream<Transport> {
    fn ssl_mut_shutdown_state(&mut self) {
        // SAFETY: the pointer is the live SSL owned by this stream; SSL_set_shutdown only
        // sets flags in it.
        unsafe {
            ssl_lib::ffi::SSL_set_shutdown(self.ssl().as_ptr(), (ShutdownState::SENT | ShutdownState::RECEIVED).bits())
        };
    }
}

/// The negotiated key-exchange group, by name (BoringSSL reports the IANA group id).
#[cfg(feature = "boring")]
fn negotiated_group(ssl: &SslRef) -> Option<String> {
    use crate::consts::SSL_GROUP_X448;
    use ssl_lib::ffi;
    // boring-sys's SSL_GROUP_* are IANA group ids (u16 in the TLS wire format) typed i32.
    const X25519: u16 = ffi::SSL_GROUP_X25519 as u16;
    const SECP256R1: u16 = ffi::SSL_GROUP_SECP256R1 as u16;
    const SECP384R1: u16 = ffi::SSL_GROUP_SECP384R1 as u16;
    const SECP521R1: u16 = ffi::SSL_GROUP_SECP521R1 as u16;
    const X25519_MLKEM768: u16 = ffi::SSL_GROUP_X25519_MLKEM768 as u16;
    Some(
        match ssl.curve()? {
            0 => return None, // `curve()` already answers None for 0 (no group)
            X25519 => "x25519",
            SSL_GROUP_X448 => "x448",
            SECP256R1 => "secp256r1",
            SECP384R1 => "secp384r1",
            SECP521R1 => "secp521r1",
            X25519_MLKEM768 => "X25519MLKEM768",
            other => return Some(format!("group:{other:#06x}")),
        }
        .to_owned(),
    )
}

/// The negotiated key-exchange group, by name (OpenSSL reports a NID).
#[cfg(not(feature = "boring"))]
fn negotiated_group(ssl: &SslRef) -> Option<String> {
    use crate::consts::SSL_CTRL_GET_NEGOTIATED_GROUP;
    use ssl_lib::ffi;
    // SAFETY: `ssl.as_ptr()` is live for the borrow; SSL_CTRL_GET_NEGOTIATED_GROUP reads a
    // value and writes nothing through `parg`, which is null.
    let nid = unsafe { ffi::SSL_ctrl(ssl.as_ptr(), SSL_CTRL_GET_NEGOTIATED_GROUP, 0, std::ptr::null_mut()) };
    let Ok(nid) = std::ffi::c_int::try_from(nid) else { return Some(format!("nid:{nid}")) };
    Some(
        match nid {
            ffi::NID_X25519 => "x25519",
            ffi::NID_X448 => "x448",
            ffi::NID_X9_62_prime256v1 => "secp256r1",
            ffi::NID_secp384r1 => "secp384r1",
            ffi::NID_secp521r1 => "secp521r1",
            // NID_undef: no key exchange (a resumed TLS 1.2 session); -1: the ctrl failed.
            ffi::NID_undef | -1 => return None,
            other => return Some(format!("nid:{other}")),
        }
        .to_owned(),
    )
}
