//! A blocking adapter: a [`Session`] over any `Read + Write` transport (a `TcpStream`).

use std::io::{self, Read, Write};

use sipstls_core::{ClientDomain, Error, ReadStatus, ServerDomain, ServerName, Session, TlsInfo};

const READ_CHUNK: usize = 16 * 1024 + 512;

/// A TLS connection over a blocking transport. Reads and writes plaintext; the handshake
/// runs on first use or explicitly with [`handshake`](TlsStream::handshake).
///
/// TLS failures come back as `io::Error`s whose inner error is the typed
/// [`sipstls::Error`](Error); get it with [`tls_error`].
pub struct TlsStream<S> {
    io: S,
    session: Box<dyn Session>,
    /// Ciphertext read from the transport that the session has not taken yet.
    pending: Vec<u8>,
    buf: Vec<u8>,
    eof: bool,
}

/// The typed sipstls error inside an `io::Error` from a [`TlsStream`], if there is one.
pub fn tls_error(e: &io::Error) -> Option<&Error> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<Error>())
}

fn to_io(e: Error) -> io::Error {
    let kind = match &e {
        Error::UnexpectedEof => io::ErrorKind::UnexpectedEof,
        Error::Closed => io::ErrorKind::BrokenPipe,
        Error::InvalidConfig { .. } | Error::Unsupported { .. } | Error::NoDomain(_) => io::ErrorKind::InvalidInput,
        _ => io::ErrorKind::InvalidData,
    };
    io::Error::new(kind, e)
}

impl<S: Read + Write> TlsStream<S> {
    /// Wraps a session and its transport.
    pub fn new(session: Box<dyn Session>, io: S) -> Self {
        TlsStream { io, session, pending: Vec::new(), buf: vec![0; READ_CHUNK], eof: false }
    }

    /// Connects as a client to `name` over `io` and completes the handshake.
    pub fn connect(domain: &dyn ClientDomain, name: &str, io: S) -> io::Result<Self> {
        let name = ServerName::parse(name).map_err(to_io)?;
        let mut s = TlsStream::new(domain.connect(Some(&name)).map_err(to_io)?, io);
        s.handshake()?;
        Ok(s)
    }

    /// Accepts a client over `io` with `domain` and completes the handshake.
    pub fn accept(domain: &dyn ServerDomain, io: S) -> io::Result<Self> {
        let mut s = TlsStream::new(domain.accept(None).map_err(to_io)?, io);
        s.handshake()?;
        Ok(s)
    }

    /// Runs the handshake to completion. A transport read interrupted by a signal is
    /// retried (`ErrorKind::Interrupted`: on Linux a socket read with a timeout fails so
    /// even without a signal handler, when the process is stopped and continued).
    pub fn handshake(&mut self) -> io::Result<()> {
        loop {
            self.flush_tls()?;
            if !self.session.is_handshaking() {
                return Ok(());
            }
            match self.receive() {
                Ok(true) => {}
                Ok(false) => return Err(to_io(self.session.error().cloned().unwrap_or(Error::UnexpectedEof))),
                // Nothing was read or fed: try again.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The session.
    pub fn session(&self) -> &dyn Session {
        &*self.session
    }

    /// The negotiated parameters (after the handshake).
    pub fn info(&self) -> Option<TlsInfo> {
        self.session.info()
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Sends close_notify and flushes it.
    pub fn shutdown(&mut self) -> io::Result<()> {
        self.session.close_notify();
        self.flush_tls()
    }

    /// Writes every pending ciphertext byte to the transport.
    fn flush_tls(&mut self) -> io::Result<()> {
        while self.session.wants_write() {
            let n = self.session.take_tls(&mut self.buf);
            if n == 0 {
                break;
            }
            self.io.write_all(&self.buf[..n])?;
        }
        self.io.flush()
    }

    /// Moves ciphertext from the transport into the session. `Ok(false)` at transport EOF.
    fn receive(&mut self) -> io::Result<bool> {
        if self.pending.is_empty() {
            if self.eof {
                return Ok(false);
            }
            let n = self.io.read(&mut self.buf)?;
            if n == 0 {
                self.eof = true;
                return Ok(false);
            }
            self.pending.extend_from_slice(&self.buf[..n]);
        }
        let fed = self.session.feed_tls(&self.pending);
        // Send any alert the session queued, even on failure.
        let flushed = self.flush_tls();
        let taken = fed.map_err(to_io)?;
        flushed?;
        self.pending.drain(..taken);
        Ok(true)
    }
}

impl<S: Read + Write> Read for TlsStream<S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            match self.session.read(out).map_err(to_io)? {
                ReadStatus::Data(n) => return Ok(n),
                ReadStatus::Closed => return Ok(0),
                ReadStatus::WouldBlock => {
                    self.flush_tls()?;
                    if !self.receive()? {
                        return Err(to_io(Error::UnexpectedEof));
                    }
                }
            }
        }
    }
}

impl<S: Read + Write> Write for TlsStream<S> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.session.is_handshaking() {
            self.handshake()?;
        }
        // A full outgoing buffer empties when flushed, so the second try takes data;
        // a session that still takes nothing would otherwise spin here.
        for _ in 0..2 {
            let n = self.session.write(data).map_err(to_io)?;
            self.flush_tls()?;
            if n > 0 || data.is_empty() {
                return Ok(n);
            }
        }
        Err(io::Error::new(io::ErrorKind::WriteZero, "the TLS session accepted no plaintext"))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_tls()
    }
}
