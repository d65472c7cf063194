//! The I/O side of a session, once for every adapter: the blocking `TlsStream` of the
//! `sipstls` crate and the async one of `sipstls-tokio` both move bytes through a
//! [`Driver`], so they buffer, feed, flush and refuse a stalled session the same way. An
//! adapter for another event loop needs only its transport's read and write around it.

use std::cell::RefCell;
use std::io;

use crate::error::{Error, Result};
use crate::session::Session;

/// Ciphertext read from the transport at once: one maximal record and its overhead.
pub const READ_CHUNK: usize = 16 * 1024 + 512;
/// Ciphertext waiting for the transport before the driver takes no more from the session
/// (and an adapter's writes wait).
pub const MAX_OUTPUT: usize = 64 * 1024;

/// The typed sipstls error inside an `io::Error` from an adapter (the blocking
/// `TlsStream`, the tokio one), if there is one.
pub fn tls_error(e: &io::Error) -> Option<&Error> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<Error>())
}

/// `e` as an `io::Error` that carries it ([`tls_error`] gets it back), with the kind an
/// I/O caller expects: `UnexpectedEof` for a truncation, `BrokenPipe` after close,
/// `InvalidInput` for a configuration fault, `InvalidData` for the rest.
pub fn io_error(e: Error) -> io::Error {
    let kind = match &e {
        Error::UnexpectedEof => io::ErrorKind::UnexpectedEof,
        Error::Closed => io::ErrorKind::BrokenPipe,
        Error::InvalidConfig { .. } | Error::Unsupported { .. } | Error::NoDomain(_) => io::ErrorKind::InvalidInput,
        _ => io::ErrorKind::InvalidData,
    };
    io::Error::new(kind, e)
}

thread_local! {
    /// Scratch space of one call, zeroed once per thread: ciphertext read from the
    /// transport before the session takes it, and ciphertext taken from the session before
    /// the transport takes it. Only what is left over is copied into a connection's queues,
    /// so the common case allocates and zeroes nothing per record, and an idle connection
    /// holds no buffer.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

/// Runs `f` with a zeroed-once buffer of [`READ_CHUNK`] bytes: the thread's scratch, or a
/// new buffer while the thread's is in use (a stream over a stream) or gone (thread exit).
fn with_scratch<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    let mut f = Some(f);
    let r = SCRATCH.try_with(|s| s.try_borrow_mut().ok().map(|mut buf| (f.take().expect("called once"))(&mut buf)));
    match r {
        Ok(Some(r)) => r,
        _ => (f.take().expect("not called yet"))(&mut vec![0; READ_CHUNK]),
    }
}

/// A byte queue: `buf[pos..]` is pending. Its memory is given back once it is empty, so
/// that an idle connection holds its session and little else.
#[derive(Default)]
struct Queue {
    buf: Vec<u8>,
    pos: usize,
}

impl Queue {
    fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos >= self.buf.len() {
            *self = Queue::default();
        }
    }
}

/// A [`Session`] with the buffers that connect it to a byte-stream transport.
///
/// The adapter's loop: [`write_tls`](Driver::write_tls) with the transport's write; when
/// [`feed`](Driver::feed) says nothing waits, [`read_tls`](Driver::read_tls) with the
/// transport's read (an async adapter turns "not ready" into `io::ErrorKind::WouldBlock`
/// and back).
pub struct Driver {
    session: Box<dyn Session>,
    input: Queue,
    output: Queue,
    eof: bool,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("role", &self.session.role())
            .field("handshaking", &self.session.is_handshaking())
            .field("received", &self.input.pending().len())
            .field("unsent", &self.output.pending().len())
            .field("eof", &self.eof)
            .finish()
    }
}

impl Driver {
    /// A driver for `session`.
    pub fn new(session: Box<dyn Session>) -> Self {
        Driver { session, input: Queue::default(), output: Queue::default(), eof: false }
    }

    /// The session.
    pub fn session(&self) -> &dyn Session {
        &*self.session
    }

    /// The session, mutably (plaintext goes in and out through it).
    pub fn session_mut(&mut self) -> &mut dyn Session {
        &mut *self.session
    }

    /// True while ciphertext waits for the transport (in the queue or in the session).
    pub fn has_output(&self) -> bool {
        !self.output.pending().is_empty() || self.session.wants_write()
    }

    /// Bytes queued for the transport (not counting what the session still holds).
    pub fn queued_output(&self) -> usize {
        self.output.pending().len()
    }

    /// Moves the session's ciphertext into the queue, up to [`MAX_OUTPUT`].
    fn queue_output(&mut self) {
        let (session, output) = (&mut self.session, &mut self.output);
        with_scratch(|scratch| {
            while session.wants_write() && output.pending().len() < MAX_OUTPUT {
                let n = session.take_tls(scratch);
                if n == 0 {
                    break;
                }
                output.push(&scratch[..n]);
            }
        })
    }

    /// Writes ciphertext with `write` (the transport's write) until none is left: what is
    /// queued first, then the session's, straight from a scratch buffer. When `write` fails
    /// (`WouldBlock` for a transport that is not ready) the error is returned, and up to
    /// [`MAX_OUTPUT`] of the session's ciphertext waits in the queue, in order.
    pub fn write_tls(&mut self, mut write: impl FnMut(&[u8]) -> io::Result<usize>) -> io::Result<()> {
        loop {
            while !self.output.pending().is_empty() {
                match write(self.output.pending()) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => self.output.consume(n),
                    Err(e) => {
                        self.queue_output();
                        return Err(e);
                    }
                }
            }
            if !self.session.wants_write() {
                return Ok(());
            }
            let (session, output) = (&mut self.session, &mut self.output);
            let r = with_scratch(|scratch| {
                let n = session.take_tls(scratch);
                if n == 0 {
                    return Ok(false);
                }
                let r = write(&scratch[..n]);
                let written = match &r {
                    Ok(w) => (*w).min(n),
                    Err(_) => 0,
                };
                output.push(&scratch[written..n]);
                match r {
                    Ok(0) => Err(io::ErrorKind::WriteZero.into()),
                    Ok(_) => Ok(true),
                    Err(e) => Err(e),
                }
            });
            match r {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) => {
                    self.queue_output();
                    return Err(e);
                }
            }
        }
    }

    /// Reads the transport once with `read` into a scratch buffer and feeds the session
    /// from it; what the session does not take waits for [`feed`](Driver::feed) (which
    /// also reports a session error or a stall). Returns the bytes read; 0 at the end of
    /// file ([`is_eof`](Driver::is_eof) from then on). Call it only when
    /// [`has_input`](Driver::has_input) is false.
    pub fn read_tls(&mut self, read: impl FnOnce(&mut [u8]) -> io::Result<usize>) -> io::Result<usize> {
        debug_assert!(self.input.pending().is_empty());
        let (session, input) = (&mut self.session, &mut self.input);
        let n = with_scratch(|scratch| -> io::Result<usize> {
            let n = read(scratch)?.min(scratch.len());
            if n == 0 {
                return Ok(0);
            }
            let taken = match session.feed_tls(&scratch[..n]) {
                Ok(k) if k > 0 || session.wants_write() => k,
                // An error or a stall: kept whole, so that `feed` reports it.
                _ => 0,
            };
            input.push(&scratch[taken..n]);
            Ok(n)
        })?;
        if n == 0 {
            self.eof = true;
        }
        Ok(n)
    }

    /// True while ciphertext read earlier waits to be fed.
    pub fn has_input(&self) -> bool {
        !self.input.pending().is_empty()
    }

    /// True once the transport reached its end of file.
    pub fn is_eof(&self) -> bool {
        self.eof
    }

    /// Feeds ciphertext read earlier to the session. `Ok(true)` when some was taken;
    /// `Ok(false)` when none is waiting (read the transport, unless [`is_eof`]), or when
    /// the session takes none until its output is written ([`has_input`] stays true: write,
    /// then feed again). Call it with no plaintext waiting in the session: a session that
    /// then takes nothing and has nothing to send would be asked the same thing for ever
    /// (`Session::feed_tls`), which is an error. A session's error is returned as is; its
    /// alert is written by the next [`write_tls`](Driver::write_tls).
    ///
    /// [`is_eof`]: Driver::is_eof
    /// [`has_input`]: Driver::has_input
    pub fn feed(&mut self) -> Result<bool> {
        if self.input.pending().is_empty() {
            return Ok(false);
        }
        let n = self.session.feed_tls(self.input.pending())?;
        if n == 0 {
            if self.session.wants_write() {
                return Ok(false);
            }
            return Err(Error::Backend {
                library: "sipstls",
                message: "the session took no input with its buffers drained".into(),
            });
        }
        self.input.consume(n);
        Ok(true)
    }

    /// The error to report at the transport's end: the session's, or a truncation.
    pub fn eof_error(&self) -> Error {
        self.session.error().cloned().unwrap_or(Error::UnexpectedEof)
    }

    /// The driver taken apart: the session, ciphertext read and not yet fed, and
    /// ciphertext taken from the session and not yet written.
    pub fn into_parts(self) -> (Box<dyn Session>, Vec<u8>, Vec<u8>) {
        (self.session, self.input.pending().to_vec(), self.output.pending().to_vec())
    }
}
