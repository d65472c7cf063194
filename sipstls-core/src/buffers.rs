//! The buffers a [`Session`] built on a C TLS library keeps around it, and
//! their limits: the in-memory transport the library reads ciphertext from and writes it
//! to ([`Transport`]), the plaintext written before the handshake completed
//! ([`EarlyPlaintext`]) and the plaintext decrypted ahead of
//! [`read`](crate::Session::read) ([`PlaintextIn`]).
//!
//! Every buffer gives its memory back once it is drained (see [`release`]), so an idle
//! session holds no buffer space; every buffer is bounded, and a full one refuses input
//! rather than grows: this is the back-pressure of [`Session::feed_tls`] and
//! [`Session::write`].
//!
//! [`Session::feed_tls`]: crate::Session::feed_tls
//! [`Session::write`]: crate::Session::write

use std::io;
use std::mem::MaybeUninit;

use crate::config::Role;
use crate::error::{Error, Result};
use crate::info::TlsInfo;
use crate::record::RecordWatch;
use crate::session::{ReadStatus, Session, SessionState};

/// Ciphertext buffered from the peer before a session refuses more.
pub const MAX_INPUT: usize = 64 * 1024;
/// Ciphertext waiting for the caller before plaintext writes are refused.
pub const MAX_OUTPUT: usize = 256 * 1024;
/// Plaintext written before the handshake completed, held until it does.
pub const MAX_EARLY_PLAINTEXT: usize = 64 * 1024;
/// Plaintext decrypted ahead of `read` before ciphertext stops being processed.
pub const MAX_PLAINTEXT_IN: usize = 64 * 1024;
/// The largest plaintext of one TLS record (2^14): the most one library read returns.
pub const MAX_RECORD_PLAINTEXT: usize = 16 * 1024;
/// Room offered to one library read at least.
const MIN_READ: usize = 256;
/// A drained buffer keeps its memory up to this size (a small record and its header);
/// a larger one is freed.
const KEEP: usize = 2048;

/// Empties `buf`, and frees its memory when it is larger than a small record: the idea of
/// OpenSSL's `SSL_MODE_RELEASE_BUFFERS`, for every backend.
pub fn release(buf: &mut Vec<u8>) {
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

/// A FIFO of bytes read from the front: `buf[pos..]` is pending.
#[derive(Debug, Default)]
struct Fifo {
    buf: Vec<u8>,
    pos: usize,
}

impl Fifo {
    fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn len(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Drops the first `n` pending bytes; a drained buffer is released.
    fn consume(&mut self, n: usize) {
        self.pos += n.min(self.len());
        if self.pos == self.buf.len() {
            release(&mut self.buf);
            self.pos = 0;
        }
    }

    /// Copies pending bytes into `out`; returns the count.
    fn copy_to(&mut self, out: &mut [u8]) -> usize {
        let n = self.len().min(out.len());
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.consume(n);
        n
    }

    /// Appends as much of `data` as keeps the pending bytes within `limit`.
    fn push_within(&mut self, data: &[u8], limit: usize) -> usize {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.consume(0);
        }
        let n = limit.saturating_sub(self.len()).min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        n
    }

    fn release_memory(&mut self) {
        if self.len() == 0 {
            self.buf.clear();
            self.pos = 0;
            free_if_empty(&mut self.buf);
        }
    }
}

/// The in-memory transport under a C library's session: what the peer sent waits in the
/// input, what the library writes collects in the output. The library's receive callback
/// reads the input ([`Transport::read_input`]; nothing there is "want read"), its send
/// callback appends to the output ([`Transport::write_output`]). The session is driven
/// without any socket.
///
/// As a [`std::io::Read`] + [`std::io::Write`] stream (for libraries that take one), an
/// empty input reads as [`io::ErrorKind::WouldBlock`].
#[derive(Debug, Default)]
pub struct Transport {
    input: Fifo,
    output: Fifo,
    /// The framing of everything written, to know whether an alert is still owed.
    records: RecordWatch,
}

impl Transport {
    /// Appends as much of `data` as fits within [`MAX_INPUT`]; returns the count.
    pub fn push_input(&mut self, data: &[u8]) -> usize {
        self.input.push_within(data, MAX_INPUT)
    }

    /// The input not read by the library yet.
    pub fn unread(&self) -> &[u8] {
        self.input.pending()
    }

    /// How many input bytes the library has not read yet.
    pub fn pending_input(&self) -> usize {
        self.input.len()
    }

    /// The library reads: copies waiting input into `buf`; returns the count (0: nothing
    /// waits, which the library must be told as "want read").
    pub fn read_input(&mut self, buf: &mut [u8]) -> usize {
        self.input.copy_to(buf)
    }

    /// The library writes: appends `data` to the output, whatever its size (the limit is
    /// checked before plaintext is handed to the library: [`Transport::output_full`]).
    pub fn write_output(&mut self, data: &[u8]) {
        self.records.observe(data);
        self.output.buf.extend_from_slice(data);
    }

    /// How many output bytes wait for the caller.
    pub fn pending_output(&self) -> usize {
        self.output.len()
    }

    /// True once [`MAX_OUTPUT`] bytes wait: plaintext writes take nothing until the caller
    /// drains some.
    pub fn output_full(&self) -> bool {
        self.pending_output() >= MAX_OUTPUT
    }

    /// Copies waiting output into `out` ([`Session::take_tls`]).
    pub fn take_output(&mut self, out: &mut [u8]) -> usize {
        self.output.copy_to(out)
    }

    /// A mark of the output written so far, for [`Transport::rewind_output`].
    pub fn output_mark(&self) -> usize {
        self.output.buf.len()
    }

    /// Drops what the library wrote since `mark` (an answer the session refuses to send,
    /// such as a renegotiation). Output the caller has taken already stays taken.
    pub fn rewind_output(&mut self, mark: usize) {
        let keep = mark.max(self.output.pos);
        self.output.buf.truncate(keep);
    }

    /// The framing of what this side wrote.
    pub fn records(&self) -> &RecordWatch {
        &self.records
    }

    /// Queues the alert `e` calls for if the library sent none while records still go out
    /// in the clear (some libraries send none for bytes that are not TLS records at all).
    pub fn queue_missing_alert(&mut self, e: &Error) {
        if let Some(record) = self.records.missing_alert(e) {
            self.output.buf.extend_from_slice(&record);
        }
    }

    /// Frees the memory of empty buffers.
    pub fn release_memory(&mut self) {
        self.input.release_memory();
        self.output.release_memory();
    }
}

impl io::Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.read_input(buf) {
            0 if !buf.is_empty() => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }
}

impl io::Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_output(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Plaintext written before the handshake completed (or behind such plaintext), held and
/// sent in order once it has: at most [`MAX_EARLY_PLAINTEXT`] bytes.
#[derive(Debug, Default)]
pub struct EarlyPlaintext {
    queue: Fifo,
}

impl EarlyPlaintext {
    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.queue.len() == 0
    }

    /// Holds as much of `data` as fits; returns the count.
    pub fn queue(&mut self, data: &[u8]) -> usize {
        self.queue.push_within(data, MAX_EARLY_PLAINTEXT)
    }

    /// Hands the held plaintext to `write` (the session's write of established
    /// application data) until all of it is taken or `write` takes nothing; keeps the
    /// rest. The first error ends it.
    ///
    /// A session holds its queue in a field and `write` needs the session: take the queue
    /// out with [`std::mem::take`] around this call.
    pub fn flush(&mut self, mut write: impl FnMut(&[u8]) -> Result<usize>) -> Result<()> {
        while !self.is_empty() {
            let n = write(self.queue.pending())?;
            if n == 0 {
                break;
            }
            self.queue.consume(n);
        }
        Ok(())
    }

    /// Frees the memory of an empty queue.
    pub fn release_memory(&mut self) {
        self.queue.release_memory();
    }
}

/// Plaintext the library decrypted ahead of [`read`](crate::Session::read), so that
/// alerts, errors and close_notify surface when ciphertext is fed: at most
/// [`MAX_PLAINTEXT_IN`] bytes before the session stops decrypting. Also notes the peer's
/// close_notify.
#[derive(Debug, Default)]
pub struct PlaintextIn {
    buf: Fifo,
    peer_closed: bool,
}

impl PlaintextIn {
    /// True when no plaintext waits to be read.
    pub fn is_empty(&self) -> bool {
        self.buf.len() == 0
    }

    /// How many bytes wait to be read.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True while decrypting more may go on.
    pub fn has_room(&self) -> bool {
        self.buf.len() < MAX_PLAINTEXT_IN
    }

    /// Room left before [`MAX_PLAINTEXT_IN`].
    pub fn room(&self) -> usize {
        MAX_PLAINTEXT_IN.saturating_sub(self.buf.len())
    }

    /// Notes the peer's close_notify: once the plaintext is read, `read` answers
    /// [`ReadStatus::Closed`].
    pub fn set_peer_closed(&mut self) {
        self.peer_closed = true;
    }

    /// True once the peer's close_notify was processed.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Appends decrypted plaintext (for libraries that hand out a borrowed record).
    pub fn extend(&mut self, data: &[u8]) {
        self.buf.push_within(data, usize::MAX);
    }

    /// Spare room for one library read, sized by `hint`: what the library holds decrypted
    /// already or, at most, the ciphertext waiting (a record's plaintext is shorter than
    /// the record), between 256 bytes and one record ([`MAX_RECORD_PLAINTEXT`]). The
    /// library decrypts straight into it: no zeroed scratch record per call, no copy.
    /// Report what it wrote with [`PlaintextIn::filled`].
    pub fn spare(&mut self, hint: usize) -> &mut [MaybeUninit<u8>] {
        if self.is_empty() && self.buf.pos > 0 {
            self.buf.consume(0);
        }
        self.buf.buf.reserve(hint.clamp(MIN_READ, MAX_RECORD_PLAINTEXT));
        let spare = self.buf.buf.spare_capacity_mut();
        let room = spare.len().min(MAX_RECORD_PLAINTEXT);
        &mut spare[..room]
    }

    /// Takes the first `n` bytes of the room [`PlaintextIn::spare`] gave as plaintext.
    ///
    /// # Safety
    /// The first `n` bytes of the slice the last call to `spare` returned must have been
    /// initialised since (by the library's read), and no other call may have come between.
    #[allow(unsafe_code)]
    pub unsafe fn filled(&mut self, n: usize) {
        let len = self.buf.buf.len() + n;
        assert!(len <= self.buf.buf.capacity(), "more plaintext reported than room given");
        // SAFETY: `len` is within the capacity (checked), and the caller guarantees the
        // `n` bytes after the old length were initialised.
        unsafe { self.buf.buf.set_len(len) };
    }

    /// Copies waiting plaintext into `buf`: `Data(n)`, or `Closed` once the peer's
    /// close_notify was processed and nothing waits, or `WouldBlock`. A drained buffer is
    /// released.
    pub fn read(&mut self, buf: &mut [u8]) -> ReadStatus {
        if buf.is_empty() {
            return ReadStatus::WouldBlock;
        }
        match self.buf.copy_to(buf) {
            0 if self.peer_closed => ReadStatus::Closed,
            0 => ReadStatus::WouldBlock,
            n => ReadStatus::Data(n),
        }
    }

    /// Frees the memory of an empty buffer.
    pub fn release_memory(&mut self) {
        self.buf.release_memory();
    }
}

/// What every buffered session keeps beside its library: its side, the sticky error and
/// close state, whether the handshake has completed, and the plaintext buffers.
#[derive(Debug)]
#[non_exhaustive]
pub struct SessionCore {
    /// Which side the session is.
    pub role: Role,
    /// The sticky error and close state.
    pub state: SessionState,
    /// True once the handshake has completed.
    pub established: bool,
    /// Plaintext held until the handshake completes.
    pub early: EarlyPlaintext,
    /// Plaintext decrypted ahead of `read`.
    pub plain: PlaintextIn,
}

impl SessionCore {
    /// A session of `role` before its handshake.
    pub fn new(role: Role) -> Self {
        SessionCore {
            role,
            state: SessionState::default(),
            established: false,
            early: EarlyPlaintext::default(),
            plain: PlaintextIn::default(),
        }
    }
}

/// A [`Session`] over a C library, with the plumbing written once: implement this trait
/// (the library calls and where the buffers are) and the type is a [`Session`]. Every C
/// backend thereby has the same read, write, early-plaintext, close and memory behaviour.
///
/// `feed_tls` is [`push_input`](BufferedSession::push_input), then
/// [`drive`](BufferedSession::drive), then [`decrypt_ahead`](BufferedSession::decrypt_ahead);
/// `read` decrypts first when nothing waits; `write` holds plaintext in
/// [`SessionCore::early`] until the handshake completes (and behind plaintext held so);
/// `close_notify` sends held plaintext, then the alert, and nothing after a fatal error.
pub trait BufferedSession: Send {
    /// The buffers and state beside the library.
    fn core(&self) -> &SessionCore;
    /// The buffers and state beside the library, to change.
    fn core_mut(&mut self) -> &mut SessionCore;
    /// The ciphertext transport.
    fn transport(&self) -> &Transport;
    /// The ciphertext transport, to change.
    fn transport_mut(&mut self) -> &mut Transport;

    /// Takes ciphertext into the transport (with whatever the backend checks first);
    /// returns how much it took.
    fn push_input(&mut self, input: &[u8]) -> Result<usize>;
    /// Advances the handshake as far as the buffered input allows (nothing once
    /// established); sends the early plaintext when it completes.
    fn drive(&mut self) -> Result<()>;
    /// Decrypts buffered records into [`SessionCore::plain`] while it has room, so that
    /// alerts, errors and close_notify surface at once.
    fn decrypt_ahead(&mut self) -> Result<()>;
    /// Encrypts application data (the handshake has completed); returns how much the
    /// library took (0 when the output is full).
    fn write_now(&mut self, data: &[u8]) -> Result<usize>;
    /// Has the library queue its close_notify.
    fn send_close_notify(&mut self);
    /// [`Session::info`] (the handshake has completed and no error happened).
    fn session_info(&self) -> Option<TlsInfo>;

    /// Sends the plaintext held from the handshake, once it has completed.
    fn flush_early_plaintext(&mut self) -> Result<()> {
        if !self.core().established {
            return Ok(());
        }
        let mut early = std::mem::take(&mut self.core_mut().early);
        let r = early.flush(|d| self.write_now(d));
        self.core_mut().early = early;
        r
    }
}

impl<T: BufferedSession> Session for T {
    fn role(&self) -> Role {
        self.core().role
    }

    fn feed_tls(&mut self, input: &[u8]) -> Result<usize> {
        self.core().state.check()?;
        let n = self.push_input(input)?;
        self.drive()?;
        self.decrypt_ahead()?;
        Ok(n)
    }

    fn wants_write(&self) -> bool {
        self.transport().pending_output() > 0
    }

    fn take_tls(&mut self, out: &mut [u8]) -> usize {
        self.transport_mut().take_output(out)
    }

    fn is_handshaking(&self) -> bool {
        !self.core().established
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<ReadStatus> {
        self.core().state.check()?;
        if self.core().plain.is_empty() && !buf.is_empty() {
            // Nothing decrypted ahead: ciphertext may still wait behind a full buffer.
            self.drive()?;
            self.decrypt_ahead()?;
        }
        Ok(self.core_mut().plain.read(buf))
    }

    fn write(&mut self, data: &[u8]) -> Result<usize> {
        self.core().state.check_writable()?;
        let core = self.core_mut();
        if !core.established || !core.early.is_empty() {
            let n = core.early.queue(data);
            self.flush_early_plaintext()?;
            return Ok(n);
        }
        self.write_now(data)
    }

    fn close_notify(&mut self) {
        if self.core().established && self.core().state.error().is_none() {
            let _ = self.flush_early_plaintext();
            self.send_close_notify();
        }
        self.core_mut().state.mark_closed();
    }

    fn info(&self) -> Option<TlsInfo> {
        if !self.core().established || self.core().state.error().is_some() {
            return None;
        }
        self.session_info()
    }

    fn error(&self) -> Option<&Error> {
        self.core().state.error()
    }

    fn release_memory(&mut self) {
        self.transport_mut().release_memory();
        let core = self.core_mut();
        core.early.release_memory();
        core.plain.release_memory();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProtocolErrorKind;
    use std::io::{Read, Write};

    #[test]
    fn input_is_bounded_and_released_when_drained() {
        let mut t = Transport::default();
        let big = vec![7u8; MAX_INPUT + 10];
        assert_eq!(t.push_input(&big), MAX_INPUT);
        assert_eq!(t.push_input(b"x"), 0, "a full input takes nothing");
        let mut out = vec![0u8; MAX_INPUT];
        assert_eq!(t.read_input(&mut out[..100]), 100);
        assert_eq!(t.push_input(b"abc"), 3, "room made by the library's read is offered again");
        assert_eq!(t.read_input(&mut out), MAX_INPUT - 100 + 3);
        assert_eq!(t.pending_input(), 0);
        assert_eq!(t.input.buf.capacity(), 0, "a drained large input is freed");
        assert_eq!(t.read_input(&mut out), 0);
    }

    #[test]
    fn io_read_on_empty_input_would_block() {
        let mut t = Transport::default();
        let mut b = [0u8; 4];
        assert_eq!(t.read(&mut b).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert_eq!(t.read(&mut []).unwrap(), 0);
        t.push_input(b"hi");
        assert_eq!(t.read(&mut b).unwrap(), 2);
        assert_eq!(&b[..2], b"hi");
    }

    #[test]
    fn output_fills_to_its_limit_and_drains_in_order() {
        let mut t = Transport::default();
        assert_eq!(t.write(&vec![1u8; MAX_OUTPUT - 1]).unwrap(), MAX_OUTPUT - 1);
        assert!(!t.output_full());
        t.write_output(b"\x02\x03");
        assert!(t.output_full());
        let mut out = vec![0u8; MAX_OUTPUT + 1];
        assert_eq!(t.take_output(&mut out), MAX_OUTPUT + 1);
        assert_eq!(&out[MAX_OUTPUT - 1..], b"\x02\x03");
        assert_eq!(t.pending_output(), 0);
        assert_eq!(t.output.buf.capacity(), 0);
    }

    #[test]
    fn rewind_drops_only_what_was_written_since_the_mark() {
        let mut t = Transport::default();
        t.write_output(b"abcd");
        let mut two = [0u8; 2];
        t.take_output(&mut two);
        let mark = t.output_mark();
        t.write_output(b"efgh");
        t.rewind_output(mark);
        let mut rest = [0u8; 8];
        assert_eq!(t.take_output(&mut rest), 2);
        assert_eq!(&rest[..2], b"cd");
        // A mark before what the caller took cannot bring taken bytes back.
        t.write_output(b"xy");
        t.take_output(&mut two);
        t.rewind_output(0);
        assert_eq!(t.pending_output(), 0);
    }

    #[test]
    fn a_missing_alert_is_queued_once_and_only_in_the_clear() {
        let e = Error::protocol(ProtocolErrorKind::Malformed, "x");
        let mut t = Transport::default();
        t.queue_missing_alert(&e);
        let mut out = [0u8; 16];
        assert_eq!(t.take_output(&mut out), 7);
        assert_eq!(out[..7], e.alert().unwrap().plaintext_record());
        t.queue_missing_alert(&e);
        assert_eq!(t.pending_output(), 0, "the last record is an alert already");

        let mut enc = Transport::default();
        enc.write_output(&[0x14, 3, 3, 0, 1, 1]); // ChangeCipherSpec: protected from here
        enc.queue_missing_alert(&e);
        assert_eq!(enc.pending_output(), 6);
        assert!(!enc.records().sends_plaintext());
    }

    #[test]
    fn early_plaintext_is_bounded_and_flushed_in_order() {
        let mut q = EarlyPlaintext::default();
        assert_eq!(q.queue(&vec![b'a'; MAX_EARLY_PLAINTEXT - 2]), MAX_EARLY_PLAINTEXT - 2);
        assert_eq!(q.queue(b"bcd"), 2, "the queue takes up to its limit");
        let mut sent = Vec::new();
        // A writer that takes 1000 bytes per call, then nothing after 10 calls.
        let mut calls = 0;
        q.flush(|d| {
            calls += 1;
            let n = if calls > 10 { 0 } else { d.len().min(1000) };
            sent.extend_from_slice(&d[..n]);
            Ok(n)
        })
        .unwrap();
        assert_eq!(sent.len(), 10_000);
        assert!(!q.is_empty());
        q.flush(|d| {
            sent.extend_from_slice(d);
            Ok(d.len())
        })
        .unwrap();
        assert!(q.is_empty());
        assert_eq!(sent.len(), MAX_EARLY_PLAINTEXT);
        assert!(sent.ends_with(b"abc"));
        assert_eq!(q.queue.buf.capacity(), 0, "a drained queue is freed");
    }

    #[test]
    fn early_plaintext_flush_stops_at_the_first_error() {
        let mut q = EarlyPlaintext::default();
        q.queue(b"hello");
        let err = q.flush(|_| Err(Error::Closed)).unwrap_err();
        assert_eq!(err, Error::Closed);
        assert!(!q.is_empty(), "nothing is dropped on error");
    }

    #[test]
    fn plaintext_in_fills_from_spare_room_and_reads_out() {
        let mut p = PlaintextIn::default();
        let spare = p.spare(10);
        assert!(spare.len() >= MIN_READ && spare.len() <= MAX_RECORD_PLAINTEXT);
        for (i, b) in spare.iter_mut().take(5).enumerate() {
            b.write(b'0' + i as u8);
        }
        // SAFETY: the first 5 bytes of the spare room were written just above.
        #[allow(unsafe_code)]
        unsafe {
            p.filled(5)
        };
        assert_eq!(p.len(), 5);
        let mut buf = [0u8; 3];
        assert_eq!(p.read(&mut buf), ReadStatus::Data(3));
        assert_eq!(&buf, b"012");
        assert_eq!(p.read(&mut []), ReadStatus::WouldBlock);
        assert_eq!(p.read(&mut buf), ReadStatus::Data(2));
        assert_eq!(p.read(&mut buf), ReadStatus::WouldBlock);
        p.set_peer_closed();
        assert_eq!(p.read(&mut buf), ReadStatus::Closed);
    }

    #[test]
    fn plaintext_in_room_and_release() {
        let mut p = PlaintextIn::default();
        p.extend(&vec![0u8; MAX_PLAINTEXT_IN]);
        assert!(!p.has_room());
        assert_eq!(p.room(), 0);
        assert_eq!(p.spare(usize::MAX).len(), MAX_RECORD_PLAINTEXT, "one record at most");
        let mut sink = vec![0u8; MAX_PLAINTEXT_IN];
        assert_eq!(p.read(&mut sink), ReadStatus::Data(MAX_PLAINTEXT_IN));
        assert_eq!(p.buf.buf.capacity(), 0, "a drained large buffer is freed");
        p.extend(b"small");
        p.read(&mut sink);
        p.release_memory();
        assert_eq!(p.buf.buf.capacity(), 0);
    }

    #[test]
    #[should_panic(expected = "more plaintext reported")]
    fn plaintext_in_refuses_more_than_its_room() {
        let mut p = PlaintextIn::default();
        let room = p.spare(0).len();
        // SAFETY: the call panics before anything is read; nothing uninitialised is used.
        #[allow(unsafe_code)]
        unsafe {
            p.filled(p.buf.buf.capacity() + room + 1)
        };
    }
}
