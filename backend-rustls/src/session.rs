//! The rustls implementation of [`Session`].

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::server::Acceptor;
use rustls::{Connection, HandshakeKind, ServerConfig};
use sipstls_core::{
    Certificate, Error, ProtocolVersion, ReadStatus, Result, Role, ServerDomain, Session, SessionState, SniCandidates,
    TlsInfo, VerifyResult,
};

use crate::errors::map_error;
use crate::{RustlsServerDomain, NAME};

/// Plaintext written before the handshake finished, held until it does (64 KiB at most).
const MAX_EARLY_PLAINTEXT: usize = 64 * 1024;

/// The server configuration a session runs with (chosen by SNI for servers).
#[derive(Clone)]
pub(crate) struct Selected {
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) verify_peer: bool,
}

// The session is boxed as a whole (`Box<dyn Session>`) and the state moves only once,
// from Accepting to Conn; boxing the connection too would add an allocation per session.
#[allow(clippy::large_enum_variant)]
enum State {
    /// Server: waiting for the whole ClientHello.
    Accepting { acceptor: Box<Acceptor>, default: Selected, sni: Option<Arc<SniCandidates>> },
    /// Handshaking or established.
    Conn(Connection),
    /// Failed before a connection existed.
    Dead,
}

/// A rustls session (client or server).
pub struct RustlsSession {
    state: State,
    role: Role,
    verify_peer: bool,
    sent_sni: Option<String>,
    /// Alert bytes produced before a connection existed, and plaintext held for later.
    out_early: Vec<u8>,
    plain_early: Vec<u8>,
    st: SessionState,
}

impl RustlsSession {
    pub(crate) fn server(acceptor: Acceptor, default: Selected, sni: Option<Arc<SniCandidates>>) -> Self {
        RustlsSession {
            verify_peer: default.verify_peer,
            state: State::Accepting { acceptor: Box::new(acceptor), default, sni },
            role: Role::Server,
            sent_sni: None,
            out_early: Vec::new(),
            plain_early: Vec::new(),
            st: SessionState::default(),
        }
    }

    pub(crate) fn client(conn: rustls::ClientConnection, sni: Option<String>, verify_peer: bool) -> Self {
        RustlsSession {
            state: State::Conn(conn.into()),
            role: Role::Client,
            verify_peer,
            sent_sni: sni,
            out_early: Vec::new(),
            plain_early: Vec::new(),
            st: SessionState::default(),
        }
    }

    /// The rustls connection, once the ClientHello has been accepted.
    pub fn rustls_connection(&self) -> Option<&Connection> {
        match &self.state {
            State::Conn(c) => Some(c),
            _ => None,
        }
    }

    fn fail(&mut self, e: Error) -> Error {
        self.st.fail(e)
    }

    /// Server: feeds the acceptor; switches to a connection once the ClientHello is in.
    fn feed_acceptor(&mut self, input: &[u8]) -> Result<usize> {
        let State::Accepting { acceptor, default, sni } = &mut self.state else { unreachable!() };
        let mut rd = input;
        let n = match acceptor.read_tls(&mut rd) {
            Ok(n) => n,
            Err(_) => return Ok(0), // buffer full: the caller retries after draining
        };
        let accepted = match acceptor.accept() {
            Ok(None) => return Ok(n),
            Ok(Some(a)) => a,
            Err((e, mut alert)) => {
                let _ = alert.write(&mut self.out_early);
                self.state = State::Dead;
                return Err(self.fail(map_error(e)));
            }
        };
        let mut chosen = default.clone();
        if let (Some(cands), Some(name)) = (sni.as_ref(), accepted.client_hello().server_name()) {
            if let Some(d) = cands.select(name) {
                let Some(d) = d.as_any().downcast_ref::<RustlsServerDomain>() else {
                    self.state = State::Dead;
                    return Err(self.fail(Error::config("domain", "SNI selected a domain of another backend")));
                };
                chosen = Selected { config: d.config.clone(), verify_peer: d.config().verify_peer };
            }
        }
        match accepted.into_connection(chosen.config) {
            Ok(conn) => {
                self.verify_peer = chosen.verify_peer;
                self.state = State::Conn(conn.into());
                // The acceptor consumed n bytes; the rest is for the connection.
                let rest = self.feed_conn(&input[n..])?;
                Ok(n + rest)
            }
            Err((e, mut alert)) => {
                let _ = alert.write(&mut self.out_early);
                self.state = State::Dead;
                Err(self.fail(map_error(e)))
            }
        }
    }

    fn feed_conn(&mut self, input: &[u8]) -> Result<usize> {
        let State::Conn(conn) = &mut self.state else { unreachable!() };
        let mut taken = 0;
        while taken < input.len() {
            let mut rd = &input[taken..];
            let n = match conn.read_tls(&mut rd) {
                Ok(0) => break, // close_notify seen or no room
                Ok(n) => n,
                Err(_) => break, // buffers full: read plaintext first
            };
            taken += n;
            if let Err(e) = conn.process_new_packets() {
                return Err(self.fail(map_error(e)));
            }
        }
        if taken == 0 && input.is_empty() {
            if let Err(e) = conn.process_new_packets() {
                return Err(self.fail(map_error(e)));
            }
        }
        self.flush_early_plaintext();
        Ok(taken)
    }

    fn flush_early_plaintext(&mut self) {
        if self.plain_early.is_empty() {
            return;
        }
        if let State::Conn(conn) = &mut self.state {
            if !conn.is_handshaking() {
                if let Ok(n) = conn.writer().write(&self.plain_early) {
                    self.plain_early.drain(..n);
                }
            }
        }
    }
}

impl Session for RustlsSession {
    fn role(&self) -> Role {
        self.role
    }

    fn feed_tls(&mut self, input: &[u8]) -> Result<usize> {
        self.st.check()?;
        match self.state {
            State::Accepting { .. } => self.feed_acceptor(input),
            State::Conn(_) => self.feed_conn(input),
            State::Dead => Err(self.fail(Error::Closed)),
        }
    }

    fn wants_write(&self) -> bool {
        !self.out_early.is_empty() || matches!(&self.state, State::Conn(c) if c.wants_write())
    }

    fn take_tls(&mut self, out: &mut [u8]) -> usize {
        if !self.out_early.is_empty() {
            let n = out.len().min(self.out_early.len());
            out[..n].copy_from_slice(&self.out_early[..n]);
            self.out_early.drain(..n);
            return n;
        }
        match &mut self.state {
            State::Conn(c) => {
                let mut w: &mut [u8] = out;
                let mut total = 0;
                while c.wants_write() && !w.is_empty() {
                    match c.write_tls(&mut w) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => total += n,
                    }
                }
                total
            }
            _ => 0,
        }
    }

    fn is_handshaking(&self) -> bool {
        match &self.state {
            State::Conn(c) => c.is_handshaking(),
            _ => true,
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<ReadStatus> {
        let State::Conn(conn) = &mut self.state else {
            self.st.check()?;
            return Ok(ReadStatus::WouldBlock);
        };
        let r = conn.reader().read(buf);
        match r {
            Ok(0) if buf.is_empty() => Ok(ReadStatus::WouldBlock),
            Ok(0) => Ok(ReadStatus::Closed),
            Ok(n) => Ok(ReadStatus::Data(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.st.check()?;
                Ok(ReadStatus::WouldBlock)
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(self.fail(Error::UnexpectedEof)),
            Err(e) => Err(self.fail(Error::Backend { library: NAME, message: e.to_string() })),
        }
    }

    fn write(&mut self, data: &[u8]) -> Result<usize> {
        self.st.check_writable()?;
        let handshaking = self.is_handshaking();
        match &mut self.state {
            State::Conn(conn) if !handshaking && self.plain_early.is_empty() => {
                conn.writer().write(data).map_err(|e| Error::Backend { library: NAME, message: e.to_string() })
            }
            _ => {
                let n = data.len().min(MAX_EARLY_PLAINTEXT.saturating_sub(self.plain_early.len()));
                self.plain_early.extend_from_slice(&data[..n]);
                self.flush_early_plaintext();
                Ok(n)
            }
        }
    }

    fn close_notify(&mut self) {
        // Plaintext still held from the handshake goes out first, if it can.
        self.flush_early_plaintext();
        if let State::Conn(c) = &mut self.state {
            c.send_close_notify();
        }
        self.st.mark_closed();
    }

    fn info(&self) -> Option<TlsInfo> {
        let State::Conn(c) = &self.state else { return None };
        if c.is_handshaking() || self.st.error().is_some() {
            return None;
        }
        let version = match c.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_3 => ProtocolVersion::Tls13,
            rustls::ProtocolVersion::TLSv1_2 => ProtocolVersion::Tls12,
            _ => return None,
        };
        let peer_chain: Vec<Certificate> = c
            .peer_certificates()
            .map(|certs| certs.iter().map(|d| Certificate::from_der(d.as_ref().to_vec())).collect())
            .unwrap_or_default();
        let verify = match (self.verify_peer, peer_chain.is_empty()) {
            (false, _) => VerifyResult::NotRequested,
            (true, true) if self.role == Role::Server => VerifyResult::NoCertificate,
            (true, _) => VerifyResult::Verified,
        };
        let sni = match c {
            Connection::Server(s) => s.server_name().map(str::to_owned),
            Connection::Client(_) => self.sent_sni.clone(),
        };
        Some(
            TlsInfo {
                version,
                cipher_suite: c.negotiated_cipher_suite().map(|s| crate::iana_suite_name(&s)).unwrap_or_default(),
                group: c.negotiated_key_exchange_group().map(|g| iana_group_name(g.name())),
                sni,
                alpn: c.alpn_protocol().map(<[u8]>::to_vec),
                resumed: c.handshake_kind() == Some(HandshakeKind::Resumed),
                peer_chain,
                verify,
                peer: None,
            }
            .with_parsed_peer(),
        )
    }

    fn error(&self) -> Option<&Error> {
        self.st.error()
    }
}

/// IANA TLS Supported Groups names.
pub(crate) fn iana_group_name(g: rustls::NamedGroup) -> String {
    match g {
        rustls::NamedGroup::X25519 => "x25519".into(),
        rustls::NamedGroup::X448 => "x448".into(),
        rustls::NamedGroup::secp256r1 => "secp256r1".into(),
        rustls::NamedGroup::secp384r1 => "secp384r1".into(),
        rustls::NamedGroup::secp521r1 => "secp521r1".into(),
        other => format!("{other:?}"),
    }
}
