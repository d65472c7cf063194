//! The I/O side of a session, once for every adapter: the blocking `TlsStream` of the
//! `sipstls` crate and the async one of `sipstls-tokio` both move bytes through a
//! [`Driver`], so they buffer, feed, flush and refuse a stalled session the same way. An
//! adapter for another event loop needs only its transport's read and write around it.

use crate::error::{Error, Result};
use crate::session::Session;

/// Ciphertext read from the transport at once: one maximal record and its overhead.
pub const READ_CHUNK: usize = 16 * 1024 + 512;
/// Ciphertext waiting for the transport before the driver takes no more from the session
/// (and an adapter's writes wait).
pub const MAX_OUTPUT: usize = 64 * 1024;

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

    fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos >= self.buf.len() {
            *self = Queue::default();
        }
    }
}

/// A [`Session`] with the buffers that connect it to a byte-stream transport.
///
/// The adapter's loop: write [`output`](Driver::output) to the transport and report it
/// with [`written`](Driver::written); when [`feed`](Driver::feed) says there is nothing to
/// feed, read the transport into [`read_buf`](Driver::read_buf) and report it with
/// [`received`](Driver::received) (0 at the end of file).
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

    /// Ciphertext for the transport: what is queued, topped up from the session (up to
    /// [`MAX_OUTPUT`]). Empty when there is nothing to send.
    pub fn output(&mut self) -> &[u8] {
        while self.session.wants_write() && self.output.pending().len() < MAX_OUTPUT {
            let start = self.output.buf.len();
            self.output.buf.resize(start + READ_CHUNK, 0);
            let n = self.session.take_tls(&mut self.output.buf[start..]);
            self.output.buf.truncate(start + n);
            if n == 0 {
                break;
            }
        }
        self.output.pending()
    }

    /// True while ciphertext waits for the transport (in the queue or in the session).
    pub fn has_output(&self) -> bool {
        !self.output.pending().is_empty() || self.session.wants_write()
    }

    /// Bytes queued for the transport (not counting what the session still holds).
    pub fn queued_output(&self) -> usize {
        self.output.pending().len()
    }

    /// The transport took `n` bytes of [`output`](Driver::output).
    pub fn written(&mut self, n: usize) {
        self.output.consume(n);
    }

    /// Room to read the transport into (call only when [`feed`](Driver::feed) returned
    /// `Ok(false)`).
    pub fn read_buf(&mut self) -> &mut [u8] {
        debug_assert!(self.input.pending().is_empty());
        self.input = Queue { buf: vec![0; READ_CHUNK], pos: 0 };
        &mut self.input.buf
    }

    /// `n` bytes were read into [`read_buf`](Driver::read_buf); 0 means the transport
    /// reached its end.
    pub fn received(&mut self, n: usize) {
        self.input.buf.truncate(n);
        if n == 0 {
            self.input = Queue::default();
            self.eof = true;
        }
    }

    /// An adapter's read of the transport failed or would block: [`read_buf`]'s room is
    /// given back.
    ///
    /// [`read_buf`]: Driver::read_buf
    pub fn read_failed(&mut self) {
        self.input = Queue::default();
    }

    /// True while ciphertext read earlier waits to be fed.
    pub fn has_input(&self) -> bool {
        !self.input.pending().is_empty()
    }

    /// True once the transport reached its end of file.
    pub fn is_eof(&self) -> bool {
        self.eof
    }

    /// Feeds ciphertext read earlier to the session. `Ok(true)` when some was taken,
    /// `Ok(false)` when none is waiting (read the transport, unless [`is_eof`]). Call it
    /// with no plaintext waiting in the session: a session that then takes nothing and has
    /// nothing to send would be asked the same thing for ever (`Session::feed_tls`), which
    /// is an error. A session's error is returned as is; its alert is in
    /// [`output`](Driver::output).
    ///
    /// [`is_eof`]: Driver::is_eof
    pub fn feed(&mut self) -> Result<bool> {
        if self.input.pending().is_empty() {
            return Ok(false);
        }
        let n = self.session.feed_tls(self.input.pending())?;
        if n == 0 && !self.session.wants_write() {
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
