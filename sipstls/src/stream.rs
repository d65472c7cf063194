//! A blocking adapter: a [`Session`] over any `Read + Write` transport (a `TcpStream`).

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use sipstls_core::driver::Driver;
use sipstls_core::{ClientDomain, Error, ReadStatus, ServerDomain, ServerName, Session, TlsInfo};

/// A TLS connection over a blocking transport. Reads and writes plaintext; the handshake
/// runs on first use or explicitly with [`handshake`](TlsStream::handshake).
///
/// TLS failures come back as `io::Error`s whose inner error is the typed
/// [`sipstls::Error`](Error); get it with [`tls_error`].
pub struct TlsStream<S> {
    io: S,
    /// The session and its buffers, shared with the async adapter (`sipstls-tokio`).
    d: Driver,
}

/// A transport whose reads can time out ([`TlsStream::handshake_within`]).
pub trait ReadTimeout {
    /// The current read timeout.
    fn read_timeout(&self) -> io::Result<Option<Duration>>;
    /// Sets the read timeout (`None`: block).
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()>;
}

macro_rules! read_timeout_via_std {
    ($($t:ty),*) => {$(
        impl ReadTimeout for $t {
            fn read_timeout(&self) -> io::Result<Option<Duration>> {
                <$t>::read_timeout(self)
            }
            fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
                <$t>::set_read_timeout(self, t)
            }
        }
    )*};
}

read_timeout_via_std!(std::net::TcpStream, std::os::unix::net::UnixStream);

use sipstls_core::driver::io_error as to_io;
pub use sipstls_core::driver::tls_error;

impl<S: Read + Write> TlsStream<S> {
    /// Wraps a session and its transport.
    pub fn new(session: Box<dyn Session>, io: S) -> Self {
        TlsStream { io, d: Driver::new(session) }
    }

    /// Connects as a client to `name` over `io` and completes the handshake.
    pub fn connect(domain: &dyn ClientDomain, name: &str, io: S) -> io::Result<Self> {
        let name = ServerName::parse(name).map_err(to_io)?;
        let mut s = TlsStream::new(domain.connect(Some(&name)).map_err(to_io)?, io);
        s.handshake()?;
        Ok(s)
    }

    /// Accepts a client over `io` for the server domains of `table` and completes the
    /// handshake: the domain is chosen by `local` (the listener's address), then by the
    /// client's SNI, as [`DomainTable::accept`](sipstls_core::DomainTable::accept)
    /// does; `peer` names the session in the table's statistics.
    pub fn accept_in(
        table: &sipstls_core::DomainTable,
        local: std::net::SocketAddr,
        peer: Option<std::net::SocketAddr>,
        io: S,
    ) -> io::Result<Self> {
        let mut s = TlsStream::new(table.accept(local, peer).map_err(to_io)?, io);
        s.handshake()?;
        Ok(s)
    }

    /// Accepts a client over `io` with the one `domain` and completes the handshake (no
    /// SNI switching: a single domain has nothing to switch to; use
    /// [`accept_in`](TlsStream::accept_in) with a table for several domains).
    pub fn accept(domain: &dyn ServerDomain, io: S) -> io::Result<Self> {
        let mut s = TlsStream::new(domain.accept().map_err(to_io)?, io);
        s.handshake()?;
        Ok(s)
    }

    /// Runs the handshake to completion. A transport read interrupted by a signal is
    /// retried (`ErrorKind::Interrupted`: on Linux a socket read with a timeout fails so
    /// even without a signal handler, when the process is stopped and continued).
    ///
    /// Bounded by the transport: each turn reads from it, writes to it or fails. For a
    /// limit on the whole handshake (a peer that trickles a byte at a time defeats a
    /// per-read timeout), use [`handshake_within`](TlsStream::handshake_within).
    pub fn handshake(&mut self) -> io::Result<()> {
        self.handshake_inner(|_| Ok(()))
    }

    /// Runs the handshake to completion within `limit` of wall time, whatever the peer
    /// sends: before each transport read the socket's read timeout is set to the time
    /// left (and put back afterwards). Fails with `ErrorKind::TimedOut` once the time is up.
    pub fn handshake_within(&mut self, limit: Duration) -> io::Result<()>
    where
        S: ReadTimeout,
    {
        let deadline = Instant::now() + limit;
        let before = self.io.read_timeout()?;
        let r = self.handshake_inner(|io| {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"));
            }
            io.set_read_timeout(Some(left))
        });
        self.io.set_read_timeout(before)?;
        match r {
            // A read that ran into the deadline.
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock) && Instant::now() >= deadline => {
                Err(io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))
            }
            r => r,
        }
    }

    fn handshake_inner(&mut self, mut before_read: impl FnMut(&S) -> io::Result<()>) -> io::Result<()> {
        loop {
            self.flush_tls()?;
            if !self.d.session().is_handshaking() {
                return Ok(());
            }
            before_read(&self.io)?;
            match self.receive() {
                Ok(true) => {}
                Ok(false) => return Err(to_io(self.d.session().error().cloned().unwrap_or(Error::UnexpectedEof))),
                // Nothing was read or fed: try again.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The session.
    pub fn session(&self) -> &dyn Session {
        self.d.session()
    }

    /// The negotiated parameters (after the handshake).
    pub fn info(&self) -> Option<TlsInfo> {
        self.d.session().info()
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Sends close_notify and flushes it.
    pub fn shutdown(&mut self) -> io::Result<()> {
        self.d.session_mut().close_notify();
        self.flush_tls()
    }

    /// Writes every pending ciphertext byte to the transport.
    fn flush_tls(&mut self) -> io::Result<()> {
        let io = &mut self.io;
        self.d.write_tls(|b| io.write(b))?;
        self.io.flush()
    }

    /// Moves ciphertext from the transport into the session. `Ok(false)` at transport EOF.
    fn receive(&mut self) -> io::Result<bool> {
        if !self.d.has_input() {
            if self.d.is_eof() {
                return Ok(false);
            }
            let io = &mut self.io;
            if self.d.read_tls(|b| io.read(b))? == 0 {
                return Ok(false);
            }
        }
        let fed = self.d.feed();
        // Send any alert the session queued, even on failure.
        let flushed = self.flush_tls();
        fed.map_err(to_io)?;
        flushed?;
        Ok(true)
    }
}

impl<S: Read + Write> Read for TlsStream<S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            match self.d.session_mut().read(out).map_err(to_io)? {
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
        if self.d.session().is_handshaking() {
            self.handshake()?;
        }
        // A full outgoing buffer empties when flushed, so the second try takes data;
        // a session that still takes nothing would otherwise spin here.
        for _ in 0..2 {
            let n = self.d.session_mut().write(data).map_err(to_io)?;
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

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};

    use sipstls_core::{Error, ReadStatus, Result, Role, Session, TlsInfo};

    use super::*;

    /// A server session stuck in its handshake: `Stalled` never takes input and never has
    /// output (the stall a driver must turn into an error instead of asking again
    /// forever); `Endless` takes every byte and never completes (only a deadline ends it).
    #[derive(Clone, Copy, PartialEq)]
    enum Stuck {
        Stalled,
        Endless,
    }

    impl Session for Stuck {
        fn role(&self) -> Role {
            Role::Server
        }
        fn feed_tls(&mut self, input: &[u8]) -> Result<usize> {
            Ok(if *self == Stuck::Endless { input.len() } else { 0 })
        }
        fn wants_write(&self) -> bool {
            false
        }
        fn take_tls(&mut self, _: &mut [u8]) -> usize {
            0
        }
        fn is_handshaking(&self) -> bool {
            true
        }
        fn read(&mut self, _: &mut [u8]) -> Result<ReadStatus> {
            Ok(ReadStatus::WouldBlock)
        }
        fn write(&mut self, _: &[u8]) -> Result<usize> {
            Ok(0)
        }
        fn close_notify(&mut self) {}
        fn info(&self) -> Option<TlsInfo> {
            None
        }
        fn error(&self) -> Option<&Error> {
            None
        }
    }

    #[test]
    fn a_session_that_takes_nothing_fails_the_handshake_instead_of_spinning() {
        let (a, mut z) = UnixStream::pair().unwrap();
        z.write_all(b"\x16\x03\x01\x00\x05hello").unwrap();
        a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let t0 = Instant::now();
        let e = TlsStream::new(Box::new(Stuck::Stalled), a).handshake().expect_err("a stalled session must fail");
        assert!(t0.elapsed() < Duration::from_secs(2), "took {:?}", t0.elapsed());
        assert!(matches!(tls_error(&e), Some(Error::Backend { .. })), "{e:?}");
    }

    #[test]
    fn handshake_within_ends_a_trickling_peer_at_the_deadline() {
        let (a, mut z) = UnixStream::pair().unwrap();
        // A byte every 50 ms: each read succeeds well within any per-read timeout.
        let trickle = std::thread::spawn(move || {
            for _ in 0..100 {
                if z.write_all(b"x").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        a.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut tls = TlsStream::new(Box::new(Stuck::Endless), a);
        let t0 = Instant::now();
        let e = tls.handshake_within(Duration::from_millis(400)).expect_err("the deadline must end the handshake");
        let took = t0.elapsed();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e:?}");
        assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(2), "took {took:?}");
        assert_eq!(tls.get_ref().read_timeout().unwrap(), Some(Duration::from_secs(30)), "timeout put back");
        drop(tls);
        trickle.join().unwrap();
    }
}
