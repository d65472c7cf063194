//! The rustls implementation of [`Session`], on rustls's unbuffered API.
//!
//! rustls's buffered connections keep a 4 KiB read buffer for their whole life (their
//! deframer never shrinks below one read), which was a third of an idle confined
//! connection's memory. With the unbuffered API the session owns every buffer: while it
//! is busy it keeps each (up to [`KEEP`] bytes) between records, as rustls would, and
//! [`Session::release_memory`] gives them all back, so an idle session holds none.

use std::sync::Arc;

use rustls::server::{Acceptor, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use rustls::{CommonState, HandshakeKind, ServerConfig};
use sipstls_core::{
    Certificate, Error, ProtocolErrorKind, ProtocolVersion, ReadStatus, Result, Role, ServerDomain, Session,
    SessionState, SniCandidates, TlsInfo, VerifyResult,
};

use crate::errors::map_error;
use crate::{RustlsServerDomain, NAME};

/// Plaintext written before the handshake finished, held until it does (64 KiB at most).
const MAX_EARLY_PLAINTEXT: usize = 64 * 1024;
/// Decrypted plaintext held for `read`; input is taken only while there is room.
const MAX_PLAINTEXT_IN: usize = 64 * 1024;
/// Ciphertext waiting for `take_tls`; `write` accepts plaintext only below this.
const MAX_OUTPUT: usize = 64 * 1024;
/// Unprocessed ciphertext a session may hold: one handshake message of rustls's largest
/// (64 KiB) being joined, plus one whole record behind it. More, with no progress, is an
/// error rather than a stall.
const MAX_INCOMING: usize = 0xffff + 4 + 16 * 1024 + 256 + 5;
/// Capacity a buffer keeps between records once empty (larger ones are freed at once):
/// allocating per record cost more instructions than the record layer itself adds.
const KEEP: usize = 4096;
/// Room reserved per record when encrypting, above the plaintext: header (5), content
/// type (1), tag (16), explicit nonce (8 in TLS 1.2), with room to spare. Too little only
/// costs a second pass with the exact size.
const RECORD_OVERHEAD: usize = 64;
/// Plaintext per record (2^14).
const MAX_FRAGMENT: usize = 16 * 1024;
/// Steps of the state machine in one call; each step consumes input or produces output,
/// so this bounds a call without ever being reached by a real peer.
const MAX_STEPS: usize = 10_000;

/// The server configuration a session runs with (chosen by SNI for servers).
#[derive(Clone)]
pub(crate) struct Selected {
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) verify_peer: bool,
}

/// rustls's unbuffered client and server connections, driven by one state machine.
trait Unbuffered {
    type Data;
    fn common(&self) -> &CommonState;
    fn process<'c, 'i>(&'c mut self, incoming: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data>;
}

impl Unbuffered for UnbufferedServerConnection {
    type Data = rustls::server::ServerConnectionData;
    fn common(&self) -> &CommonState {
        self
    }
    fn process<'c, 'i>(&'c mut self, incoming: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
}

impl Unbuffered for rustls::client::UnbufferedClientConnection {
    type Data = rustls::client::ClientConnectionData;
    fn common(&self) -> &CommonState {
        self
    }
    fn process<'c, 'i>(&'c mut self, incoming: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
}

// The session is boxed as a whole (`Box<dyn Session>`) and the state moves only once,
// from Accepting to a connection; boxing the connection too would add an allocation.
#[allow(clippy::large_enum_variant)]
enum State {
    /// Server: waiting for the whole ClientHello. `hello` keeps every byte given to the
    /// acceptor: the connection made for the chosen configuration reads them again.
    Accepting {
        acceptor: Box<Acceptor>,
        hello: Vec<u8>,
        default: Selected,
        sni: Option<Arc<SniCandidates>>,
    },
    Server(UnbufferedServerConnection),
    Client(rustls::client::UnbufferedClientConnection),
    /// Failed before a connection existed.
    Dead,
}

/// What one run of the state machine is asked to do besides processing input.
#[derive(Default)]
struct Request<'a> {
    /// Plaintext to encrypt once application data may be sent.
    send: &'a [u8],
    /// How much of `send` was encrypted.
    sent: usize,
    /// Queue close_notify (after `send`).
    close: bool,
}

/// The buffers a session owns, apart from its connection.
#[derive(Default)]
struct Buffers {
    /// Ciphertext for the peer.
    out: OutBuf,
    /// Decrypted plaintext not read yet, from `plain_pos` on.
    plain_in: Vec<u8>,
    plain_pos: usize,
    /// The peer's close_notify has been processed.
    peer_closed: bool,
    /// Application data may be sent (the handshake has completed).
    writable: bool,
}

impl Buffers {
    fn pending_out(&self) -> usize {
        self.out.pending()
    }

    fn pending_plain(&self) -> usize {
        self.plain_in.len() - self.plain_pos
    }
}

/// Empties `buf`; frees its memory if it is larger than [`KEEP`].
fn release(buf: &mut Vec<u8>) {
    buf.clear();
    if buf.capacity() > KEEP {
        *buf = Vec::new();
    }
}

/// Frees `buf`'s memory if it holds nothing.
fn free_if_empty(buf: &mut Vec<u8>) {
    if buf.is_empty() && buf.capacity() > 0 {
        *buf = Vec::new();
    }
}

/// Ciphertext waiting for the peer: `buf[pos..end]`. The whole of `buf` stays
/// initialised, so records are encrypted straight into it without zeroing room first.
#[derive(Default)]
struct OutBuf {
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

impl OutBuf {
    fn pending(&self) -> usize {
        self.end - self.pos
    }

    fn pending_bytes(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    /// `n` bytes of room after the pending bytes (zeroed only where the buffer grows).
    fn room(&mut self, n: usize) -> &mut [u8] {
        if self.buf.len() < self.end + n {
            self.buf.resize(self.end + n, 0);
        }
        &mut self.buf[self.end..self.end + n]
    }

    fn commit(&mut self, n: usize) {
        self.end += n;
    }

    fn push(&mut self, data: &[u8]) {
        self.room(data.len()).copy_from_slice(data);
        self.commit(data.len());
    }

    /// Copies pending bytes into `out`; once all are taken the buffer is reused from its
    /// start (or freed, if larger than [`KEEP`]).
    fn take(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.pending());
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
            if self.buf.len() > KEEP {
                self.buf = Vec::new();
            }
        }
        n
    }

    fn free_if_empty(&mut self) {
        if self.pending() == 0 {
            *self = OutBuf::default();
        }
    }
}

/// Appends what `f` writes to `out`: `f` is first asked with no room, which makes rustls
/// report the exact size it needs.
fn append_with<E>(out: &mut OutBuf, mut f: impl FnMut(&mut [u8]) -> std::result::Result<usize, E>) -> Option<E>
where
    E: RequiredSize,
{
    let need = match f(&mut []) {
        Ok(_) => return None,
        Err(e) => match e.required_size() {
            Some(n) => n,
            None => return Some(e),
        },
    };
    match f(out.room(need)) {
        Ok(n) => {
            out.commit(n);
            None
        }
        Err(e) => Some(e),
    }
}

trait RequiredSize {
    fn required_size(&self) -> Option<usize>;
}

impl RequiredSize for EncodeError {
    fn required_size(&self) -> Option<usize> {
        match self {
            EncodeError::InsufficientSize(s) => Some(s.required_size),
            _ => None,
        }
    }
}

impl RequiredSize for EncryptError {
    fn required_size(&self) -> Option<usize> {
        match self {
            EncryptError::InsufficientSize(s) => Some(s.required_size),
            _ => None,
        }
    }
}

/// Encrypts `data` into `out` in one pass, with room for the records' overhead reserved
/// (a second pass with the exact size if that was not enough).
fn encrypt_into<D>(
    w: &mut rustls::unbuffered::WriteTraffic<'_, D>,
    data: &[u8],
    out: &mut OutBuf,
) -> Option<EncryptError> {
    let room = data.len() + data.len().div_ceil(MAX_FRAGMENT).max(1) * RECORD_OVERHEAD;
    match w.encrypt(data, out.room(room)) {
        Ok(n) => {
            out.commit(n);
            None
        }
        Err(EncryptError::InsufficientSize(_)) => append_with(out, |b| w.encrypt(data, b)),
        Err(e) => Some(e),
    }
}

/// Runs the connection's state machine over `incoming` until it needs more input or has
/// nothing left to do. Returns how many bytes of `incoming` were consumed; on error, the
/// alert rustls queued for the peer is in `bufs.out`.
fn pump<C: Unbuffered>(
    conn: &mut C,
    incoming: &mut [u8],
    bufs: &mut Buffers,
    req: &mut Request<'_>,
) -> std::result::Result<usize, Error> {
    let mut off = 0;
    for _ in 0..MAX_STEPS {
        let UnbufferedStatus { mut discard, state } = conn.process(&mut incoming[off..]);
        let state = match state {
            Ok(s) => s,
            Err(e) => {
                // The alert is queued inside rustls; fetch it for the peer.
                drain_alert(conn, &mut incoming[off + discard..], bufs);
                return Err(map_error(e));
            }
        };
        let mut done = false;
        let mut failed = None;
        match state {
            ConnectionState::ReadTraffic(mut r) => {
                while let Some(rec) = r.next_record() {
                    match rec {
                        Ok(rec) => {
                            discard += rec.discard;
                            bufs.plain_in.extend_from_slice(rec.payload);
                        }
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
            }
            // The server never enables 0-RTT, so early data cannot come.
            ConnectionState::ReadEarlyData(_) => {
                let e = Error::protocol(ProtocolErrorKind::UnexpectedMessage, "early data was not enabled");
                return Err(e);
            }
            ConnectionState::EncodeTlsData(mut e) => {
                if let Some(err) = append_with(&mut bufs.out, |b| e.encode(b)) {
                    return Err(Error::Backend { library: NAME, message: err.to_string() });
                }
            }
            // Everything encoded is in `bufs.out` already, which `take_tls` hands out.
            ConnectionState::TransmitTlsData(t) => t.done(),
            ConnectionState::WriteTraffic(mut w) => {
                bufs.writable = true;
                let rest = &req.send[req.sent..];
                if !rest.is_empty() {
                    if let Some(err) = encrypt_into(&mut w, rest, &mut bufs.out) {
                        return Err(Error::Backend { library: NAME, message: err.to_string() });
                    }
                    req.sent = req.send.len();
                }
                if req.close {
                    req.close = false;
                    if let Some(err) = append_with(&mut bufs.out, |b| w.queue_close_notify(b)) {
                        return Err(Error::Backend { library: NAME, message: err.to_string() });
                    }
                    // Another turn: what the close leaves to do (state Closed) ends it.
                } else {
                    done = true;
                }
            }
            ConnectionState::PeerClosed => bufs.peer_closed = true,
            ConnectionState::BlockedHandshake | ConnectionState::Closed => done = true,
            _ => done = true,
        }
        if let Some(e) = failed {
            drain_alert(conn, &mut incoming[off + discard..], bufs);
            return Err(map_error(e));
        }
        off += discard;
        if done {
            return Ok(off);
        }
    }
    Err(Error::Backend { library: NAME, message: "the TLS state machine made no progress".into() })
}

/// After an error: moves the alert rustls queued into `bufs.out`.
///
/// Only while rustls has messages queued: with none, `process` would deframe the input
/// again and meet the same error (and queue a second fatal alert).
fn drain_alert<C: Unbuffered>(conn: &mut C, incoming: &mut [u8], bufs: &mut Buffers) {
    for _ in 0..8 {
        if !conn.common().wants_write() {
            return;
        }
        let UnbufferedStatus { state, .. } = conn.process(incoming);
        match state {
            Ok(ConnectionState::EncodeTlsData(mut e)) => {
                if append_with(&mut bufs.out, |b| e.encode(b)).is_some() {
                    return;
                }
            }
            // Application data that came before the error is the peer's all the same.
            Ok(ConnectionState::ReadTraffic(mut r)) => {
                while let Some(Ok(rec)) = r.next_record() {
                    bufs.plain_in.extend_from_slice(rec.payload);
                }
            }
            _ => return,
        }
    }
}

/// A rustls session (client or server).
pub struct RustlsSession {
    state: State,
    role: Role,
    verify_peer: bool,
    /// The name sent (client) or received (server) in SNI.
    sni: Option<String>,
    /// Ciphertext not processed yet: a partial record (or handshake message).
    incoming: Vec<u8>,
    bufs: Buffers,
    /// Plaintext written before the handshake finished.
    plain_early: Vec<u8>,
    st: SessionState,
    /// Client: the ClientHello went out; then its second flight (which, in TLS 1.2,
    /// carries its ChangeCipherSpec: records after it are encrypted).
    sent_first_flight: bool,
    sent_second_flight: bool,
    /// The framing of what the peer sends while it sends in the clear.
    peer_records: sipstls_core::record::RecordWatch,
}

impl RustlsSession {
    fn new(state: State, role: Role, verify_peer: bool, sni: Option<String>) -> Self {
        RustlsSession {
            state,
            role,
            verify_peer,
            sni,
            incoming: Vec::new(),
            bufs: Buffers::default(),
            plain_early: Vec::new(),
            st: SessionState::default(),
            sent_first_flight: false,
            sent_second_flight: false,
            peer_records: Default::default(),
        }
    }

    pub(crate) fn server(acceptor: Acceptor, default: Selected, sni: Option<Arc<SniCandidates>>) -> Self {
        let verify_peer = default.verify_peer;
        let state = State::Accepting { acceptor: Box::new(acceptor), hello: Vec::new(), default, sni };
        Self::new(state, Role::Server, verify_peer, None)
    }

    pub(crate) fn client(
        conn: rustls::client::UnbufferedClientConnection,
        sni: Option<String>,
        verify_peer: bool,
    ) -> Result<Self> {
        let mut s = Self::new(State::Client(conn), Role::Client, verify_peer, sni);
        // The ClientHello, now: `wants_write` is true from the start.
        s.run(&mut Request::default())?;
        Ok(s)
    }

    /// rustls's view of the connection (negotiated parameters, peer certificates), once
    /// the ClientHello has been accepted.
    pub fn rustls_state(&self) -> Option<&CommonState> {
        match &self.state {
            State::Server(c) => Some(c),
            State::Client(c) => Some(c),
            _ => None,
        }
    }

    fn fail(&mut self, e: Error) -> Error {
        self.st.fail(e)
    }

    /// Runs the state machine over the held input (`self.incoming`).
    fn run(&mut self, req: &mut Request<'_>) -> Result<()> {
        let mut incoming = std::mem::take(&mut self.incoming);
        let r = self.run_on(&mut incoming, req).and_then(|()| self.send_early(&mut incoming));
        self.incoming = incoming;
        if self.incoming.is_empty() {
            release(&mut self.incoming);
        }
        r
    }

    /// Runs the state machine over `buf` (the held input) and removes what it consumed from its front.
    fn run_on(&mut self, buf: &mut Vec<u8>, req: &mut Request<'_>) -> Result<()> {
        let out_before = self.bufs.pending_out();
        let r = match &mut self.state {
            State::Server(c) => pump(c, buf, &mut self.bufs, req),
            State::Client(c) => pump(c, buf, &mut self.bufs, req),
            _ => return Ok(()),
        };
        match r {
            Ok(used) => {
                buf.drain(..used);
                if self.role == Role::Client && self.bufs.pending_out() > out_before && self.st.error().is_none() {
                    self.sent_second_flight = self.sent_first_flight;
                    self.sent_first_flight = true;
                }
                if buf.len() >= MAX_INCOMING {
                    let e = Error::protocol(ProtocolErrorKind::Malformed, "handshake message over 64 KiB");
                    return Err(self.fail_with_alert(e, out_before));
                }
                Ok(())
            }
            Err(e) => {
                buf.clear();
                Err(self.fail_with_alert(e, out_before))
            }
        }
    }

    /// Records `e` as the sticky error, with its alert. rustls reports some fatal errors
    /// without queuing an alert (a handshake message over 64 KiB, records interleaved with
    /// a fragmented handshake message, too many empty records, a TLS 1.2 key that cannot
    /// sign any scheme offered). While records still go out in the clear, the alert for the
    /// error is written here when nothing rustls queued since `out_before` (the pending
    /// output's length before the failing call) is one; once encrypted, only rustls can
    /// write it, and it does not.
    fn fail_with_alert(&mut self, e: Error, out_before: usize) -> Error {
        let e = self.fail(e);
        let new = &self.bufs.out.pending_bytes()[out_before.min(self.bufs.pending_out())..];
        if !sipstls_core::record::ends_with_alert(new) && self.sends_plaintext() {
            if let Some(alert) = e.alert() {
                self.bufs.out.push(&alert.plaintext_record());
            }
        }
        e
    }

    /// Encrypts plaintext written during the handshake, once application data may be
    /// sent. `buf` is the input being processed (the same buffer as in `run_on`: rustls
    /// may hold a handshake message in part of it).
    fn send_early(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        if self.plain_early.is_empty() || !self.bufs.writable || self.st.error().is_some() {
            return Ok(());
        }
        let mut data = std::mem::take(&mut self.plain_early);
        let n = data.len().min(MAX_OUTPUT.saturating_sub(self.bufs.pending_out()));
        let mut req = Request { send: &data[..n], ..Request::default() };
        let r = self.run_on(buf, &mut req);
        let sent = req.sent;
        data.drain(..sent);
        self.plain_early = data;
        r
    }

    /// Processes `input` after what the session held. The input buffer is the session's
    /// own and is freed once everything in it is processed, which is what an idle session
    /// comes to. (A per-thread buffer would save the allocation per call, but memory that
    /// outlives the call breaks the migrating model, where sessions allocate in the
    /// shared arena and must give back all they took.)
    fn feed_conn(&mut self, input: &[u8]) -> Result<()> {
        self.incoming.extend_from_slice(input);
        self.run(&mut Request::default())
    }

    /// Server: feeds the acceptor until the ClientHello is in, then makes the connection
    /// for the domain its SNI selects and runs it over every byte received so far. Takes
    /// all of `input` or fails: rustls's acceptor reads at most 4 KiB at a time and joins a
    /// ClientHello of at most 64 KiB of records; a larger one can never be accepted, so it
    /// is refused (with an alert) rather than left waiting for a drain that cannot come.
    fn feed_acceptor(&mut self, input: &[u8]) -> Result<usize> {
        let mut off = 0;
        // Each turn takes at least one byte (rustls reads into room it has just made) or
        // returns, so the loop ends within `input.len()` turns.
        while off < input.len() {
            let State::Accepting { acceptor, hello, .. } = &mut self.state else { unreachable!() };
            let mut rd = &input[off..];
            let n = match acceptor.read_tls(&mut rd) {
                Ok(n) if n > 0 => n,
                _ => {
                    let e = Error::protocol(
                        ProtocolErrorKind::Malformed,
                        "ClientHello larger than the 64 KiB of records rustls joins",
                    );
                    return Err(self.fail_before_keys(e));
                }
            };
            hello.extend_from_slice(&input[off..off + n]);
            off += n;
            let accepted = match acceptor.accept() {
                Ok(None) => continue,
                Ok(Some(a)) => a,
                Err((e, mut alert)) => {
                    let mut bytes = Vec::new();
                    let _ = alert.write(&mut bytes);
                    self.bufs.out.push(&bytes);
                    return Err(self.fail_before_keys(map_error(e)));
                }
            };
            return self.start_server(accepted, &input[off..]).map(|()| input.len());
        }
        Ok(off)
    }

    /// Server: the ClientHello is in; makes the connection for the domain its SNI selects
    /// and runs it over the hello and `rest` (what came after it).
    fn start_server(&mut self, accepted: rustls::server::Accepted, rest: &[u8]) -> Result<()> {
        let State::Accepting { default, sni, .. } = &mut self.state else { unreachable!() };
        let mut chosen = default.clone();
        let name = accepted.client_hello().server_name().map(str::to_owned);
        if let (Some(cands), Some(name)) = (sni.as_ref(), name.as_deref()) {
            if let Some(d) = cands.select(name) {
                let Some(d) = d.as_any().downcast_ref::<RustlsServerDomain>() else {
                    let e = Error::config("domain", "SNI selected a domain of another backend");
                    return Err(self.fail_before_keys(e));
                };
                chosen = Selected { config: d.config.clone(), verify_peer: d.config().verify_peer };
            }
        }
        // No key of the domain can sign with a scheme the client offers: refuse now, in
        // the clear, with handshake_failure (RFC 8446 section 4.4.3), as OpenSSL does.
        // rustls would send its ServerHello first and refuse only at CertificateVerify.
        let schemes = accepted.client_hello().signature_schemes().to_vec();
        if !schemes.is_empty() {
            let key = chosen.config.cert_resolver.resolve(accepted.client_hello());
            if key.is_some_and(|k| k.key.choose_scheme(&schemes).is_none()) {
                let e = Error::protocol(
                    ProtocolErrorKind::HandshakeFailure,
                    "no signature scheme the client offers can be made with the domain's keys",
                );
                return Err(self.fail_before_keys(e));
            }
        }
        let State::Accepting { hello, .. } = &mut self.state else { unreachable!() };
        let hello = std::mem::take(hello);
        match UnbufferedServerConnection::new(chosen.config) {
            Ok(conn) => {
                self.verify_peer = chosen.verify_peer;
                self.sni = name;
                self.state = State::Server(conn);
                self.incoming = hello;
                self.incoming.extend_from_slice(rest);
                self.run(&mut Request::default())
            }
            Err(e) => Err(self.fail_before_keys(map_error(e))),
        }
    }

    /// Holds the peer's records to the 2^14-byte limit of plaintext records (RFC 8446
    /// section 5.1) while they are in the clear: a ClientHello, a ServerHello. rustls
    /// allows any record up to the TLS 1.2 ciphertext limit (2^14 + 2048) and would
    /// report such a record as something else.
    fn check_plaintext_records(&mut self, input: &[u8]) -> Result<()> {
        let peer_in_clear = match &self.state {
            State::Accepting { .. } => true,
            State::Client(c) => c.protocol_version().is_none(),
            State::Server(_) | State::Dead => false,
        };
        if !peer_in_clear {
            return Ok(());
        }
        self.peer_records.observe(input);
        if !self.peer_records.oversized() {
            return Ok(());
        }
        let e = Error::protocol(ProtocolErrorKind::RecordOverflow, "a plaintext record longer than 2^14 bytes");
        if self.role == Role::Server {
            return Err(self.fail_before_keys(e));
        }
        Err(self.fail_with_alert(e, self.bufs.pending_out()))
    }

    /// Fails a server session that has no connection yet, with the alert for `e` unless
    /// rustls queued one (before the ServerHello nothing is encrypted).
    fn fail_before_keys(&mut self, e: Error) -> Error {
        self.state = State::Dead;
        self.fail_with_alert(e, 0)
    }

    /// True while this side sends records in the clear: an alert can then be written
    /// without rustls (which sends none for some of the errors it reports).
    fn sends_plaintext(&self) -> bool {
        let c: &CommonState = match &self.state {
            State::Server(c) => c,
            State::Client(c) => c,
            State::Accepting { .. } | State::Dead => return true,
        };
        if !c.is_handshaking() {
            return false;
        }
        match (c.protocol_version(), self.role) {
            // TLS 1.3: the server encrypts from its ServerHello on, the client once it has
            // read the ServerHello.
            (Some(rustls::ProtocolVersion::TLSv1_3), _) => false,
            // TLS 1.2: the server's ChangeCipherSpec comes first only when resuming.
            (_, Role::Server) => c.handshake_kind() != Some(HandshakeKind::Resumed),
            // A TLS 1.2 client sends its ChangeCipherSpec with its second flight.
            (_, Role::Client) => !self.sent_second_flight,
        }
    }

    /// Sends plaintext held from the handshake, if the handshake has completed.
    fn flush_early_plaintext(&mut self) {
        if !self.plain_early.is_empty() && self.bufs.writable {
            let _ = self.run(&mut Request::default());
        }
    }
}

impl Session for RustlsSession {
    fn role(&self) -> Role {
        self.role
    }

    fn feed_tls(&mut self, input: &[u8]) -> Result<usize> {
        self.st.check()?;
        self.check_plaintext_records(input)?;
        match self.state {
            State::Accepting { .. } => self.feed_acceptor(input),
            State::Server(_) | State::Client(_) => {
                // Plaintext comes out no longer than the ciphertext that carried it: take
                // only what the plaintext buffer has room for.
                let room = MAX_PLAINTEXT_IN.saturating_sub(self.bufs.pending_plain());
                let take = input.len().min(room);
                if take == 0 && !input.is_empty() {
                    return Ok(0);
                }
                self.feed_conn(&input[..take])?;
                Ok(take)
            }
            State::Dead => Err(self.fail(Error::Closed)),
        }
    }

    fn wants_write(&self) -> bool {
        self.bufs.pending_out() > 0
    }

    fn take_tls(&mut self, out: &mut [u8]) -> usize {
        self.bufs.out.take(out)
    }

    fn is_handshaking(&self) -> bool {
        match &self.state {
            State::Server(c) => c.is_handshaking(),
            State::Client(c) => c.is_handshaking(),
            _ => true,
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<ReadStatus> {
        let b = &mut self.bufs;
        if b.pending_plain() > 0 {
            if buf.is_empty() {
                return Ok(ReadStatus::WouldBlock);
            }
            let n = buf.len().min(b.pending_plain());
            buf[..n].copy_from_slice(&b.plain_in[b.plain_pos..b.plain_pos + n]);
            b.plain_pos += n;
            if b.plain_pos == b.plain_in.len() {
                release(&mut b.plain_in);
                b.plain_pos = 0;
            }
            return Ok(ReadStatus::Data(n));
        }
        self.st.check()?;
        Ok(if self.bufs.peer_closed && !buf.is_empty() { ReadStatus::Closed } else { ReadStatus::WouldBlock })
    }

    fn write(&mut self, data: &[u8]) -> Result<usize> {
        self.st.check_writable()?;
        if self.is_handshaking() || !self.plain_early.is_empty() || !self.bufs.writable {
            let n = data.len().min(MAX_EARLY_PLAINTEXT.saturating_sub(self.plain_early.len()));
            self.plain_early.extend_from_slice(&data[..n]);
            self.flush_early_plaintext();
            return Ok(n);
        }
        let n = data.len().min(MAX_OUTPUT.saturating_sub(self.bufs.pending_out()));
        if n == 0 {
            return Ok(0);
        }
        let mut req = Request { send: &data[..n], ..Request::default() };
        self.run(&mut req)?;
        Ok(req.sent)
    }

    fn close_notify(&mut self) {
        if self.st.check_writable().is_ok() {
            // Plaintext still held from the handshake goes out first, if it can.
            self.flush_early_plaintext();
            if self.bufs.writable {
                let _ = self.run(&mut Request { close: true, ..Request::default() });
            }
        }
        self.st.mark_closed();
    }

    fn info(&self) -> Option<TlsInfo> {
        let c = self.rustls_state()?;
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
        Some(
            TlsInfo::new(
                version,
                c.negotiated_cipher_suite().map(|s| crate::iana_suite_name(&s)).unwrap_or_default(),
                peer_chain,
                verify,
            )
            .with_group(c.negotiated_key_exchange_group().map(|g| iana_group_name(g.name())))
            .with_sni(self.sni.clone())
            .with_alpn(c.alpn_protocol().map(<[u8]>::to_vec))
            .with_resumed(c.handshake_kind() == Some(HandshakeKind::Resumed)),
        )
    }

    fn error(&self) -> Option<&Error> {
        self.st.error()
    }

    fn release_memory(&mut self) {
        free_if_empty(&mut self.incoming);
        self.bufs.out.free_if_empty();
        free_if_empty(&mut self.bufs.plain_in);
        free_if_empty(&mut self.plain_early);
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
