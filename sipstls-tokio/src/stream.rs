//! [`TlsStream`]: a [`Session`] over an async transport.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use sipstls_core::{Error, ReadStatus, Session, TlsInfo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Ciphertext read from the transport at once: one maximal record and its overhead.
const READ_CHUNK: usize = 16 * 1024 + 512;
/// Ciphertext waiting for the transport before `poll_write` takes no more plaintext.
const MAX_OUTPUT: usize = 64 * 1024;
/// Capacity a buffer keeps once empty; larger ones are freed, so that an idle connection
/// holds its session and little else.
const KEEP: usize = 0;

/// The typed sipstls error inside an `io::Error` from a [`TlsStream`], if there is one.
pub fn tls_error(e: &io::Error) -> Option<&Error> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<Error>())
}

pub(crate) fn to_io(e: Error) -> io::Error {
    let kind = match &e {
        Error::UnexpectedEof => io::ErrorKind::UnexpectedEof,
        Error::Closed => io::ErrorKind::BrokenPipe,
        Error::InvalidConfig { .. } | Error::Unsupported { .. } | Error::NoDomain(_) => io::ErrorKind::InvalidInput,
        _ => io::ErrorKind::InvalidData,
    };
    io::Error::new(kind, e)
}

/// What [`TlsStream::into_parts`] gives back.
#[non_exhaustive]
pub struct TlsParts<IO> {
    /// The transport.
    pub io: IO,
    /// The session.
    pub session: Box<dyn Session>,
    /// Ciphertext read from the transport that the session has not taken yet: feed it
    /// before anything read later.
    pub received: Vec<u8>,
    /// Ciphertext taken from the session that the transport has not taken yet: write it
    /// before anything the session produces later (empty after a completed handshake).
    pub unsent: Vec<u8>,
}

/// A byte queue: `buf[pos..]` is pending.
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
        if self.pos == self.buf.len() {
            self.pos = 0;
            self.buf.clear();
            if self.buf.capacity() > KEEP {
                self.buf = Vec::new();
            }
        }
    }
}

/// A TLS connection over an async transport: `AsyncRead + AsyncWrite` of plaintext.
///
/// Made by [`TlsAcceptor`](crate::TlsAcceptor) and [`TlsConnector`](crate::TlsConnector)
/// with the handshake done, or by [`TlsStream::new`] and [`TlsStream::handshake`].
/// Writes are bounded: past 64 KiB of ciphertext waiting for the transport, `poll_write`
/// waits until the transport takes some. [`AsyncWriteExt::shutdown`](tokio::io::AsyncWriteExt::shutdown)
/// sends close_notify, then shuts the transport's write side.
pub struct TlsStream<IO> {
    io: IO,
    session: Box<dyn Session>,
    /// Ciphertext read from the transport that the session has not taken yet.
    input: Queue,
    /// Ciphertext from the session that the transport has not taken yet.
    output: Queue,
    /// The transport reached end of file.
    eof: bool,
    /// close_notify has been queued.
    shut: bool,
    /// The negotiated facts, kept once the handshake is done.
    info: Option<TlsInfo>,
}

impl<IO> std::fmt::Debug for TlsStream<IO> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("role", &self.session.role())
            .field("handshaking", &self.session.is_handshaking())
            .field("info", &self.info)
            .field("error", &self.session.error())
            .finish_non_exhaustive()
    }
}

impl<IO> TlsStream<IO> {
    /// The transport.
    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    /// The transport, mutably (reading or writing it directly breaks the TLS stream).
    pub fn get_mut(&mut self) -> &mut IO {
        &mut self.io
    }

    /// The transport; ciphertext buffered in the stream is dropped.
    pub fn into_inner(self) -> IO {
        self.io
    }

    /// The stream taken apart, for a caller that drives the session itself from here on
    /// (a proxy that bridges it to plaintext): nothing buffered is lost.
    pub fn into_parts(self) -> TlsParts<IO> {
        TlsParts {
            io: self.io,
            session: self.session,
            received: self.input.pending().to_vec(),
            unsent: self.output.pending().to_vec(),
        }
    }

    /// The session.
    pub fn session(&self) -> &dyn Session {
        &*self.session
    }

    /// The negotiated version, cipher suite, SNI, ALPN, resumption, peer chain and verify
    /// result (after the handshake), read once when the handshake completed.
    pub fn info(&self) -> Option<&TlsInfo> {
        self.info.as_ref()
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> TlsStream<IO> {
    /// Wraps a session and its transport; the handshake runs on first use or with
    /// [`handshake`](TlsStream::handshake).
    pub fn new(session: Box<dyn Session>, io: IO) -> Self {
        TlsStream {
            io,
            session,
            input: Queue::default(),
            output: Queue::default(),
            eof: false,
            shut: false,
            info: None,
        }
    }

    /// Runs the handshake to completion. Wrap it in `tokio::time::timeout` to bound it in
    /// time.
    pub async fn handshake(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_handshake(cx)).await
    }

    /// Moves the session's ciphertext into the output queue (up to [`MAX_OUTPUT`]).
    fn collect_output(&mut self) {
        while self.session.wants_write() && self.output.pending().len() < MAX_OUTPUT {
            let start = self.output.buf.len();
            self.output.buf.resize(start + READ_CHUNK, 0);
            let n = self.session.take_tls(&mut self.output.buf[start..]);
            self.output.buf.truncate(start + n);
            if n == 0 {
                break;
            }
        }
    }

    /// Writes queued ciphertext until the transport has taken all of it.
    fn poll_write_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.collect_output();
        while !self.output.pending().is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, self.output.pending()))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.output.consume(n);
            self.collect_output();
        }
        Poll::Ready(Ok(()))
    }

    /// A fatal error: its alert goes to the transport first (best effort), then the error.
    fn poll_fail<T>(&mut self, cx: &mut Context<'_>, e: Error) -> Poll<io::Result<T>> {
        match self.poll_write_tls(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => Poll::Ready(Err(to_io(e))),
        }
    }

    /// Feeds ciphertext to the session, reading the transport when none is buffered.
    /// `Ok(false)` at the transport's end of file. Called only with no plaintext waiting:
    /// a session that then takes nothing and has nothing to send would be asked the same
    /// thing for ever (`Session::feed_tls`), which is an error.
    fn poll_read_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if self.input.pending().is_empty() {
            if self.eof {
                return Poll::Ready(Ok(false));
            }
            self.input.buf.resize(READ_CHUNK, 0);
            let mut rb = ReadBuf::new(&mut self.input.buf);
            let r = Pin::new(&mut self.io).poll_read(cx, &mut rb);
            let n = rb.filled().len();
            self.input.buf.truncate(n);
            if n == 0 {
                self.input.consume(0);
            }
            ready!(r)?;
            if n == 0 {
                self.eof = true;
                return Poll::Ready(Ok(false));
            }
        }
        match self.session.feed_tls(self.input.pending()) {
            Ok(0) if !self.session.wants_write() => {
                let e = Error::Backend {
                    library: "sipstls",
                    message: "the session took no input with its buffers drained".into(),
                };
                self.poll_fail(cx, e)
            }
            Ok(n) => {
                self.input.consume(n);
                Poll::Ready(Ok(true))
            }
            Err(e) => self.poll_fail(cx, e),
        }
    }

    /// The end of the transport: the session's error, or a truncation.
    fn eof_error(&self) -> io::Error {
        to_io(self.session.error().cloned().unwrap_or(Error::UnexpectedEof))
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_write_tls(cx))?;
            if let Some(e) = self.session.error() {
                return Poll::Ready(Err(to_io(e.clone())));
            }
            if !self.session.is_handshaking() {
                self.info = self.session.info();
                return Poll::Ready(Ok(()));
            }
            if !ready!(self.poll_read_tls(cx))? {
                return Poll::Ready(Err(self.eof_error()));
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.session.is_handshaking() {
            ready!(this.poll_handshake(cx))?;
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            match this.session.read(buf.initialize_unfilled()) {
                Ok(ReadStatus::Data(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(ReadStatus::Closed) => return Poll::Ready(Ok(())),
                Ok(ReadStatus::WouldBlock) => {}
                Err(e) => return this.poll_fail(cx, e),
            }
            // What the session has to send (key updates, alerts) goes out as the transport
            // takes it; a peer that does not read does not stop this side reading.
            if let Poll::Ready(Err(e)) = this.poll_write_tls(cx) {
                return Poll::Ready(Err(e));
            }
            if !ready!(this.poll_read_tls(cx))? {
                return Poll::Ready(Err(this.eof_error()));
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.session.is_handshaking() {
            ready!(this.poll_handshake(cx))?;
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // Backpressure: no more plaintext while a full queue waits for the transport.
        if this.output.pending().len() >= MAX_OUTPUT {
            ready!(this.poll_write_tls(cx))?;
        }
        for _ in 0..2 {
            let n = match this.session.write(data) {
                Ok(n) => n,
                Err(e) => return this.poll_fail(cx, e),
            };
            // Out as far as the transport takes it now; the rest waits for the next write,
            // a flush or a read.
            if let Poll::Ready(Err(e)) = this.poll_write_tls(cx) {
                return Poll::Ready(Err(e));
            }
            if n > 0 {
                return Poll::Ready(Ok(n));
            }
            // The session's own queue is full: wait until the transport takes it.
            ready!(this.poll_write_tls(cx))?;
        }
        Poll::Ready(Err(io::Error::new(io::ErrorKind::WriteZero, "the TLS session accepted no plaintext")))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_tls(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.shut {
            this.session.close_notify();
            this.shut = true;
        }
        ready!(this.poll_write_tls(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}
