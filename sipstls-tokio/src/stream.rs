//! [`TlsStream`]: a [`Session`] over an async transport.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use sipstls_core::driver::{Driver, MAX_OUTPUT};
use sipstls_core::{Error, ReadStatus, Session, TlsInfo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use sipstls_core::driver::io_error as to_io;
pub use sipstls_core::driver::tls_error;

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

/// A TLS connection over an async transport: `AsyncRead + AsyncWrite` of plaintext.
///
/// Made by [`TlsAcceptor`](crate::TlsAcceptor) and [`TlsConnector`](crate::TlsConnector)
/// with the handshake done, or by [`TlsStream::new`] and [`TlsStream::handshake`].
/// Writes are bounded: past 64 KiB of ciphertext waiting for the transport, `poll_write`
/// waits until the transport takes some. [`AsyncWriteExt::shutdown`](tokio::io::AsyncWriteExt::shutdown)
/// sends close_notify, then shuts the transport's write side.
pub struct TlsStream<IO> {
    io: IO,
    /// The session and its buffers, shared with the blocking adapter.
    d: Driver,
    /// close_notify has been queued.
    shut: bool,
    /// The negotiated facts, kept once the handshake is done.
    info: Option<TlsInfo>,
}

impl<IO> std::fmt::Debug for TlsStream<IO> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("driver", &self.d)
            .field("info", &self.info)
            .field("error", &self.d.session().error())
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
        let (session, received, unsent) = self.d.into_parts();
        TlsParts { io: self.io, session, received, unsent }
    }

    /// The session.
    pub fn session(&self) -> &dyn Session {
        self.d.session()
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
        TlsStream { io, d: Driver::new(session), shut: false, info: None }
    }

    /// Runs the handshake to completion. Wrap it in `tokio::time::timeout` to bound it in
    /// time.
    pub async fn handshake(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_handshake(cx)).await
    }

    /// Writes queued ciphertext until the transport has taken all of it.
    fn poll_write_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let io = &mut self.io;
        let r = self.d.write_tls(|buf| match Pin::new(&mut *io).poll_write(cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        });
        match r {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
            r => Poll::Ready(r),
        }
    }

    /// A fatal error: its alert goes to the transport first (best effort), then the error.
    fn poll_fail<T>(&mut self, cx: &mut Context<'_>, e: Error) -> Poll<io::Result<T>> {
        match self.poll_write_tls(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => Poll::Ready(Err(to_io(e))),
        }
    }

    /// Feeds ciphertext to the session, reading the transport when none is buffered.
    /// `Ok(false)` at the transport's end of file (see [`Driver::feed`]).
    fn poll_read_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if !self.d.has_input() {
            if self.d.is_eof() {
                return Poll::Ready(Ok(false));
            }
            let io = &mut self.io;
            let r = self.d.read_tls(|buf| {
                let mut rb = ReadBuf::new(buf);
                match Pin::new(&mut *io).poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => Ok(rb.filled().len()),
                    Poll::Ready(Err(e)) => Err(e),
                    Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
                }
            });
            match r {
                Ok(0) => return Poll::Ready(Ok(false)),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        match self.d.feed() {
            // Input the session takes only once its output is written: wait for the
            // transport to take that output (never feed the same bytes again in a loop).
            Ok(false) if self.d.has_input() => {
                ready!(self.poll_write_tls(cx))?;
                Poll::Ready(Ok(true))
            }
            Ok(_) => Poll::Ready(Ok(true)),
            Err(e) => self.poll_fail(cx, e),
        }
    }

    /// The end of the transport: the session's error, or a truncation.
    fn eof_error(&self) -> io::Error {
        to_io(self.d.eof_error())
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_write_tls(cx))?;
            if let Some(e) = self.d.session().error() {
                return Poll::Ready(Err(to_io(e.clone())));
            }
            if !self.d.session().is_handshaking() {
                self.info = self.d.session().info();
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
        if this.d.session().is_handshaking() {
            ready!(this.poll_handshake(cx))?;
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            match this.d.session_mut().read(buf.initialize_unfilled()) {
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
        if this.d.session().is_handshaking() {
            ready!(this.poll_handshake(cx))?;
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // Backpressure: no more plaintext while a full queue waits for the transport.
        if this.d.queued_output() >= MAX_OUTPUT {
            ready!(this.poll_write_tls(cx))?;
        }
        for _ in 0..2 {
            let n = match this.d.session_mut().write(data) {
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
            this.d.session_mut().close_notify();
            this.shut = true;
        }
        ready!(this.poll_write_tls(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}
