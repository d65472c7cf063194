//! The sockets of a bridged connection, watched for readability only.
//!
//! tokio registers a `TcpStream` or `UnixStream` for both kinds of readiness, edge
//! triggered, and the kernel signals "writable" each time the other end reads. On a bridged
//! connection that is every message: strace of the confined benchmark showed an
//! `epoll_wait` returning `EPOLLOUT` after each message on both ends of the hairpin, a
//! wake-up of the event loop (often of an idle vCPU) for nothing. A bridged connection
//! almost never waits to write, so [`Watched`] registers its socket for readability only,
//! and a write that would block registers a second descriptor of the same socket for
//! writability, only while it waits ([`Watched::writable`]).

use std::future::Future;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::pin::Pin;

use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::io::Interest;

/// A non-blocking stream socket (TCP or Unix).
pub(crate) trait Sock: AsFd + AsRawFd + Sized {
    /// One `recv`.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// One `send` (std sends with `MSG_NOSIGNAL`: no SIGPIPE in a host that keeps it).
    fn send(&self, buf: &[u8]) -> io::Result<usize>;
    /// Ends the sending direction (FIN, or EOF for a Unix socket's reader).
    fn shutdown_write(&self) -> io::Result<()>;
}

/// `Sock` for std's streams: `recv`/`send` through `&T`'s `Read`/`Write`.
macro_rules! sock_via_std {
    ($($t:ty),*) => {$(
        impl Sock for $t {
            fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
                (&*self).read(buf)
            }
            fn send(&self, buf: &[u8]) -> io::Result<usize> {
                (&*self).write(buf)
            }
            fn shutdown_write(&self) -> io::Result<()> {
                self.shutdown(std::net::Shutdown::Write)
            }
        }
    )*};
}

sock_via_std!(std::net::TcpStream, std::os::unix::net::UnixStream);

/// A shared handle to a socket (a worker's `Connection` keeps its stream in an `Arc`).
impl<T: Sock> Sock for std::sync::Arc<T> {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        (**self).recv(buf)
    }
    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        (**self).send(buf)
    }
    fn shutdown_write(&self) -> io::Result<()> {
        (**self).shutdown_write()
    }
}

/// A socket registered with the current tokio runtime for readability only.
pub(crate) struct Watched<S: Sock> {
    fd: AsyncFd<S>,
}

/// What one read of a readable socket gave.
pub(crate) enum Got {
    /// `n` bytes, at the start of the buffer.
    Data(usize),
    /// End of stream.
    Eof,
    /// Nothing after all (spurious readiness, now cleared).
    Nothing,
}

impl<S: Sock> Watched<S> {
    /// Registers `sock`, which must be in non-blocking mode, with the current runtime.
    pub(crate) fn new(sock: S) -> io::Result<Self> {
        // SAFETY: the `AsyncFd` owns `sock`, which owns its descriptor: the descriptor stays
        // open and refers to the same socket until the `AsyncFd` is dropped, and
        // `as_raw_fd` always returns it (std's streams never swap their descriptor).
        let fd = unsafe { AsyncFd::register_with_interest(sock, Interest::READABLE) }?;
        Ok(Watched { fd })
    }

    /// The socket.
    pub(crate) fn get(&self) -> &S {
        self.fd.get_ref()
    }

    /// Resolves when the socket may have data, EOF or an error. Cancel-safe.
    pub(crate) async fn readable(&self) -> io::Result<AsyncFdReadyGuard<'_, S>> {
        self.fd.readable().await
    }

    /// Reads once into `buf` after [`readable`](Self::readable). A short read clears the
    /// readiness as well as `WouldBlock` does: the receive queue was empty then, and the
    /// next arrival signals again (edge-triggered epoll reports every arrival), which
    /// saves the `recv` that would only return `EAGAIN`.
    pub(crate) fn read(guard: &mut AsyncFdReadyGuard<'_, S>, buf: &mut [u8]) -> io::Result<Got> {
        loop {
            match guard.get_inner().recv(buf) {
                Ok(0) => return Ok(Got::Eof),
                Ok(n) => {
                    if n < buf.len() {
                        guard.clear_ready();
                    }
                    return Ok(Got::Data(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    guard.clear_ready();
                    return Ok(Got::Nothing);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes as much of `buf[*pos..]` as the socket takes now; true if it took any.
    /// `Err` only for real errors.
    pub(crate) fn write_now(&self, buf: &[u8], pos: &mut usize) -> io::Result<bool> {
        let mut progress = false;
        while *pos < buf.len() {
            match self.get().send(&buf[*pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    *pos += n;
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(progress)
    }

    /// Resolves when the socket may take more bytes. Registers a duplicate descriptor for
    /// writability for as long as the future lives (the kernel reports the current state
    /// at registration, so no wake-up is lost); cancel-safe.
    ///
    /// The future is two words until first polled: `select!` creates every branch's
    /// future, disabled ones too, and keeps room for all of them in the connection's task,
    /// so the registration is made (and boxed) only when a write really waits, and an idle
    /// connection's task does not carry room for it (docs/scale.md has the measurement).
    pub(crate) fn writable(&self) -> Writable<'_, S> {
        Writable { sock: self, wait: None }
    }
}

/// The future of [`Watched::writable`].
pub(crate) struct Writable<'a, S: Sock> {
    sock: &'a Watched<S>,
    wait: Option<Pin<Box<dyn Future<Output = io::Result<()>> + Send + 'a>>>,
}

impl<S: Sock + Sync> Future for Writable<'_, S> {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let this = self.get_mut();
        let sock = this.sock;
        let wait = this.wait.get_or_insert_with(|| {
            Box::pin(async move {
                let dup = WriteWatch(sock.get().as_fd().try_clone_to_owned()?);
                // SAFETY: as in `new`: the `AsyncFd` owns `dup`, an `OwnedFd` that stays
                // open and unchanged until the `AsyncFd` is dropped with this future.
                let w = unsafe { AsyncFd::register_with_interest(dup, Interest::WRITABLE) }?;
                let _ready = w.writable().await?;
                Ok(())
            })
        });
        wait.as_mut().poll(cx)
    }
}

/// A duplicate descriptor watched for writability only.
struct WriteWatch(OwnedFd);

impl AsRawFd for WriteWatch {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// A worker's plaintext connection in a tokio event loop, for workers that serve many
/// connections from one loop (made by [`Connection::into_async`](crate::Connection::into_async)).
///
/// The socket is registered for readability only, and a write that cannot complete at
/// once waits on a second registration made for that wait alone. tokio's own
/// `UnixStream` would also wake the loop each time the manager reads what the worker
/// wrote, that is after every message (see `docs/confined-bench.md`).
///
/// It is `AsyncRead + AsyncWrite`, so a SIP stack on tokio reads and writes it as it would
/// a `TcpStream`; its inherent `read` and `write_all` do the same with `&self`.
pub struct AsyncConnection {
    /// The connection's id, addresses and TLS facts.
    pub meta: std::sync::Arc<crate::ConnMeta>,
    io: Watched<std::sync::Arc<std::os::unix::net::UnixStream>>,
    /// While a `poll_write` waits: a duplicate descriptor watched for writability.
    write_wait: Option<AsyncFd<WriteWatch>>,
}

impl std::fmt::Debug for AsyncConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncConnection").field("meta", &self.meta).finish_non_exhaustive()
    }
}

impl AsyncConnection {
    pub(crate) fn new(
        meta: std::sync::Arc<crate::ConnMeta>,
        stream: std::sync::Arc<std::os::unix::net::UnixStream>,
    ) -> io::Result<AsyncConnection> {
        stream.set_nonblocking(true)?;
        Ok(AsyncConnection { meta, io: Watched::new(stream)?, write_wait: None })
    }

    /// Reads what has arrived, waiting until something has; `Ok(0)` at the end of the
    /// stream (the peer or the manager closed the connection).
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let mut ready = self.io.readable().await?;
            match Watched::read(&mut ready, buf)? {
                Got::Data(n) => return Ok(n),
                Got::Eof => return Ok(0),
                Got::Nothing => {}
            }
        }
    }

    /// Writes all of `buf`, waiting while the manager's side is full.
    pub async fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        let mut pos = 0;
        loop {
            self.io.write_now(buf, &mut pos)?;
            if pos == buf.len() {
                return Ok(());
            }
            self.io.writable().await?;
        }
    }

    /// Ends the worker's sending direction (the manager then sends close_notify).
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.io.get().shutdown_write()
    }
}

impl tokio::io::AsyncRead for AsyncConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return std::task::Poll::Ready(Ok(()));
        }
        loop {
            let mut ready = std::task::ready!(self.io.fd.poll_read_ready(cx))?;
            match Watched::read(&mut ready, buf.initialize_unfilled())? {
                Got::Data(n) => {
                    buf.advance(n);
                    return std::task::Poll::Ready(Ok(()));
                }
                Got::Eof => return std::task::Poll::Ready(Ok(())),
                // Readiness cleared: the next poll registers the waker.
                Got::Nothing => {}
            }
        }
    }
}

impl tokio::io::AsyncWrite for AsyncConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            match this.io.get().send(data) {
                Ok(n) => {
                    // Not waiting any more: no writability wake-ups while idle.
                    this.write_wait = None;
                    return std::task::Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => return std::task::Poll::Ready(Err(e)),
                Err(_) => {}
            }
            if this.write_wait.is_none() {
                let dup = WriteWatch(this.io.get().as_fd().try_clone_to_owned()?);
                // SAFETY: as in `Watched::new`: the `AsyncFd` owns `dup`, an `OwnedFd` that
                // stays open and unchanged until the `AsyncFd` is dropped.
                this.write_wait = Some(unsafe { AsyncFd::register_with_interest(dup, Interest::WRITABLE) }?);
            }
            let wait = this.write_wait.as_ref().expect("registered above");
            let mut ready = std::task::ready!(wait.poll_write_ready(cx))?;
            // Writable was reported; the send above saw a full queue: forget that state.
            ready.clear_ready();
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(self.io.get().shutdown_write())
    }
}
