//! Moving bytes for one connection: the TLS handshake over TCP, then the bridge between the
//! TLS peer and the worker's plaintext end, with bounded queues and timeouts.

use std::cell::RefCell;
use std::time::Duration;

use sipstls_core::{ReadStatus, Session};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::CloseReason;

/// Read and record buffer size: one maximal TLS record plus overhead.
const BUF: usize = 17 * 1024;

/// Queue capacity a connection keeps once its queue is empty. Above it the queue's memory
/// is given back, so that an idle connection holds its session and little else (a SIP
/// server holds tens of thousands of idle connections; see docs/scale.md).
const KEEP: usize = 0;

thread_local! {
    /// Socket reads land here: an established connection owns no read buffer of its own,
    /// only the bytes actually pending. Each manager thread runs one event loop, so one
    /// buffer per thread serves all its connections; it is borrowed only between awaits.
    static IO_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; BUF].into_boxed_slice());
    /// Output of the session (plaintext read, ciphertext taken), copied into the queues.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; BUF].into_boxed_slice());
}

/// Runs `f` with this thread's socket read buffer.
fn with_io_buf<T>(f: impl FnOnce(&mut [u8]) -> T) -> T {
    IO_BUF.with(|b| f(&mut b.borrow_mut()))
}

/// Runs `f` with this thread's session output buffer.
fn with_scratch<T>(f: impl FnOnce(&mut [u8]) -> T) -> T {
    SCRATCH.with(|b| f(&mut b.borrow_mut()))
}

/// Empties a fully consumed queue, giving its memory back above [`KEEP`].
fn reset_queue(q: &mut Vec<u8>, pos: &mut usize) {
    if *pos == q.len() {
        *pos = 0;
        if q.capacity() > KEEP {
            *q = Vec::new();
        } else {
            q.clear();
        }
    }
}

/// A read half that waits for readiness and then reads without waiting, so that a waiting
/// connection holds no buffer.
pub(crate) trait TryRead {
    /// Resolves when the socket may have data (or EOF, or an error). Cancel-safe.
    fn ready(&self) -> impl std::future::Future<Output = std::io::Result<()>>;
    /// Reads what the socket has now; `WouldBlock` when it has nothing.
    fn try_read_now(&self, buf: &mut [u8]) -> std::io::Result<usize>;
}

impl TryRead for tokio::net::tcp::OwnedReadHalf {
    fn ready(&self) -> impl std::future::Future<Output = std::io::Result<()>> {
        self.readable()
    }
    fn try_read_now(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.try_read(buf)
    }
}

impl TryRead for tokio::net::unix::OwnedReadHalf {
    fn ready(&self) -> impl std::future::Future<Output = std::io::Result<()>> {
        self.readable()
    }
    fn try_read_now(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.try_read(buf)
    }
}

/// What a readiness-then-read gave.
enum Got {
    /// Bytes were read (and handled by the caller's closure).
    Data,
    /// End of stream.
    Eof,
    /// Spurious readiness: nothing to read after all.
    Nothing,
}

/// Reads what `r` has into the thread's buffer and hands the bytes to `f`.
fn read_now<R: TryRead, E>(r: &R, f: impl FnOnce(&[u8]) -> Result<(), E>) -> Result<Result<Got, E>, std::io::Error> {
    with_io_buf(|buf| loop {
        match r.try_read_now(buf) {
            Ok(0) => return Ok(Ok(Got::Eof)),
            Ok(n) => return Ok(f(&buf[..n]).map(|()| Got::Data)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(Ok(Got::Nothing)),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    })
}

/// A write half that can also write without waiting (the fast path of the bridge: most
/// writes complete at once, and skipping the readiness machinery and the send timer for
/// them saves a timer registration and a poll per message).
pub(crate) trait TryWrite {
    /// Writes what the socket takes now; `WouldBlock` when it takes nothing.
    fn try_write_now(&self, buf: &[u8]) -> std::io::Result<usize>;
}

impl TryWrite for tokio::net::tcp::OwnedWriteHalf {
    fn try_write_now(&self, buf: &[u8]) -> std::io::Result<usize> {
        self.try_write(buf)
    }
}

impl TryWrite for tokio::net::unix::OwnedWriteHalf {
    fn try_write_now(&self, buf: &[u8]) -> std::io::Result<usize> {
        self.try_write(buf)
    }
}

/// Writes as much of `buf[*pos..]` as `w` takes now. `Err` only for real errors.
fn write_now<W: TryWrite>(w: &W, buf: &[u8], pos: &mut usize) -> std::io::Result<bool> {
    let mut progress = false;
    while *pos < buf.len() {
        match w.try_write_now(&buf[*pos..]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                *pos += n;
                progress = true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(progress)
}

/// Per-connection limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The peer must accept queued data within this time.
    pub send_timeout: Duration,
    /// Bytes queued for the peer (ciphertext) or for the worker (plaintext) at most.
    pub max_queue: usize,
}

/// Runs the handshake of `session` over `rd`/`wr`. Returns ciphertext that arrived after the
/// handshake and was not yet taken by the session (to be fed first by the bridge).
pub(crate) async fn handshake<R, W>(session: &mut dyn Session, rd: &mut R, wr: &mut W) -> Result<Vec<u8>, CloseReason>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut inbuf = vec![0u8; BUF];
    let mut out = vec![0u8; BUF];
    loop {
        while session.wants_write() {
            let n = session.take_tls(&mut out);
            wr.write_all(&out[..n]).await?;
        }
        if let Some(e) = session.error() {
            return Err(e.clone().into());
        }
        if !session.is_handshaking() {
            return Ok(Vec::new());
        }
        let n = rd.read(&mut inbuf).await?;
        if n == 0 {
            return Err(CloseReason::PeerEof);
        }
        let mut off = 0;
        while off < n {
            let took = match session.feed_tls(&inbuf[off..n]) {
                Ok(t) => t,
                Err(e) => {
                    // Tell the peer with the alert the session queued, best effort.
                    while session.wants_write() {
                        let k = session.take_tls(&mut out);
                        if wr.write_all(&out[..k]).await.is_err() {
                            break;
                        }
                    }
                    return Err(e.into());
                }
            };
            off += took;
            if took == 0 {
                if !session.is_handshaking() {
                    // Application data right behind the handshake: the bridge feeds it.
                    return finish_with_rest(session, wr, &mut out, inbuf[off..n].to_vec()).await;
                }
                while session.wants_write() {
                    let k = session.take_tls(&mut out);
                    wr.write_all(&out[..k]).await?;
                }
            }
        }
    }
}

async fn finish_with_rest<W: AsyncWrite + Unpin>(
    session: &mut dyn Session,
    wr: &mut W,
    out: &mut [u8],
    rest: Vec<u8>,
) -> Result<Vec<u8>, CloseReason> {
    while session.wants_write() {
        let n = session.take_tls(out);
        wr.write_all(&out[..n]).await?;
    }
    Ok(rest)
}

/// The state of one bridged connection.
struct Bridge {
    session: Box<dyn Session>,
    limits: Limits,
    /// Ciphertext received and not yet taken by the session.
    cin: Vec<u8>,
    /// Ciphertext queued for the peer, from `tls_pos`.
    tls_out: Vec<u8>,
    tls_pos: usize,
    /// Plaintext queued for the worker, from `plain_pos`.
    plain_out: Vec<u8>,
    plain_pos: usize,
    /// The peer has sent close_notify (true) or EOF (Some(false)).
    peer_done: Option<bool>,
}

impl Bridge {
    fn tls_pending(&self) -> usize {
        self.tls_out.len() - self.tls_pos
    }

    fn plain_pending(&self) -> usize {
        self.plain_out.len() - self.plain_pos
    }

    /// Moves the session's pending ciphertext into the peer queue.
    fn collect_tls(&mut self) -> Result<(), CloseReason> {
        reset_queue(&mut self.tls_out, &mut self.tls_pos);
        if self.session.wants_write() {
            with_scratch(|scratch| {
                while self.session.wants_write() {
                    let n = self.session.take_tls(scratch);
                    self.tls_out.extend_from_slice(&scratch[..n]);
                }
            });
        }
        if self.tls_pending() > self.limits.max_queue {
            return Err(CloseReason::WriteQueueFull { limit: self.limits.max_queue });
        }
        Ok(())
    }

    /// Feeds buffered ciphertext and moves plaintext into the worker queue, as far as the
    /// worker queue's limit allows.
    fn pump_in(&mut self) -> Result<(), CloseReason> {
        reset_queue(&mut self.plain_out, &mut self.plain_pos);
        loop {
            let mut progress = false;
            if !self.cin.is_empty() {
                let took = self.session.feed_tls(&self.cin)?;
                if took == self.cin.len() {
                    self.cin = Vec::new();
                } else {
                    self.cin.drain(..took);
                }
                progress |= took > 0;
            }
            with_scratch(|scratch| -> Result<(), CloseReason> {
                while self.plain_pending() < self.limits.max_queue {
                    match self.session.read(scratch)? {
                        ReadStatus::Data(n) => {
                            self.plain_out.extend_from_slice(&scratch[..n]);
                            progress = true;
                        }
                        ReadStatus::WouldBlock => break,
                        ReadStatus::Closed => {
                            self.peer_done = Some(true);
                            break;
                        }
                    }
                }
                Ok(())
            })?;
            // Key updates and alerts the session wants to answer.
            self.collect_tls()?;
            if !progress || self.cin.is_empty() || self.peer_done.is_some() {
                return Ok(());
            }
        }
    }

    /// Encrypts plaintext from the worker.
    fn push_out(&mut self, mut data: &[u8]) -> Result<(), CloseReason> {
        while !data.is_empty() {
            let n = self.session.write(data)?;
            data = &data[n..];
            let before = self.tls_pending();
            self.collect_tls()?;
            if n == 0 && self.tls_pending() == before {
                return Err(CloseReason::Tls("the session accepted no plaintext".into()));
            }
        }
        Ok(())
    }
}

/// Bridges an established `session` (peer side `peer_rd`/`peer_wr`) with the worker side
/// (`wk_rd`/`wk_wr`) until one side ends, the limits are broken or `lost` turns true.
/// `leftover` is ciphertext from the handshake; `preamble` goes to the worker first (a
/// PROXY v2 header when configured).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run<PR, PW, WR, WW>(
    session: Box<dyn Session>,
    leftover: Vec<u8>,
    preamble: Vec<u8>,
    peer_rd: PR,
    mut peer_wr: PW,
    wk_rd: WR,
    mut wk_wr: WW,
    limits: Limits,
    mut lost: watch::Receiver<bool>,
) -> CloseReason
where
    PR: TryRead + Unpin,
    PW: AsyncWrite + TryWrite + Unpin,
    WR: TryRead + Unpin,
    WW: AsyncWrite + TryWrite + Unpin,
{
    let mut b = Bridge {
        session,
        limits,
        cin: leftover,
        tls_out: Vec::new(),
        tls_pos: 0,
        plain_out: preamble,
        plain_pos: 0,
        peer_done: None,
    };
    let mut send_deadline = Instant::now() + limits.send_timeout;
    let reason = loop {
        if let Err(r) = b.pump_in() {
            break r;
        }
        // Fast path: write what the sockets take right now.
        match write_now(&peer_wr, &b.tls_out, &mut b.tls_pos) {
            Ok(true) => send_deadline = Instant::now() + limits.send_timeout,
            Ok(false) => {}
            Err(e) => break e.into(),
        }
        if write_now(&wk_wr, &b.plain_out, &mut b.plain_pos).is_err() {
            break CloseReason::WorkerLost;
        }
        // Written queues give their memory back before the connection waits, and so do
        // the session's own buffers.
        reset_queue(&mut b.tls_out, &mut b.tls_pos);
        reset_queue(&mut b.plain_out, &mut b.plain_pos);
        b.session.release_memory();
        if let Some(notified) = b.peer_done {
            if b.plain_pending() == 0 {
                let _ = wk_wr.shutdown().await;
                break if notified { CloseReason::PeerClosed } else { CloseReason::PeerEof };
            }
        }
        let read_peer = b.peer_done.is_none() && b.cin.is_empty() && b.plain_pending() < limits.max_queue;
        let write_peer = b.tls_pending() > 0;
        let write_worker = b.plain_pending() > 0;
        tokio::select! {
            r = peer_rd.ready(), if read_peer => {
                if let Err(e) = r {
                    break e.into();
                }
                match read_now(&peer_rd, |data| -> Result<(), CloseReason> {
                    b.cin.extend_from_slice(data);
                    Ok(())
                }) {
                    // EOF before close_notify (a close_notify sets peer_done in pump_in).
                    Ok(Ok(Got::Eof)) => b.peer_done = Some(false),
                    Ok(Ok(_)) => {}
                    Ok(Err(r)) => break r,
                    Err(e) => break e.into(),
                }
            },
            r = peer_wr.write(&b.tls_out[b.tls_pos..]), if write_peer => match r {
                Ok(0) => break CloseReason::Io("peer write returned 0".into()),
                Ok(n) => {
                    b.tls_pos += n;
                    send_deadline = Instant::now() + limits.send_timeout;
                }
                Err(e) => break e.into(),
            },
            r = wk_wr.write(&b.plain_out[b.plain_pos..]), if write_worker => match r {
                Ok(n) if n > 0 => b.plain_pos += n,
                Ok(_) => break CloseReason::WorkerLost,
                Err(_) => break CloseReason::WorkerLost,
            },
            r = wk_rd.ready() => {
                if r.is_err() {
                    break CloseReason::WorkerClosed;
                }
                if b.tls_pending() == 0 {
                    send_deadline = Instant::now() + limits.send_timeout;
                }
                match read_now(&wk_rd, |data| b.push_out(data)) {
                    Ok(Ok(Got::Eof)) | Err(_) => break CloseReason::WorkerClosed,
                    Ok(Ok(_)) => {}
                    Ok(Err(r)) => break r,
                }
            },
            _ = tokio::time::sleep_until(send_deadline), if write_peer => break CloseReason::SendTimeout,
            _ = lost.wait_for(|l| *l) => break CloseReason::WorkerLost,
        }
    };
    // Close towards the peer: close_notify where the session still can, then flush what is
    // queued within a short bound and end TCP.
    if !matches!(reason, CloseReason::SendTimeout | CloseReason::WriteQueueFull { .. } | CloseReason::Io(_)) {
        b.session.close_notify();
        let _ = b.collect_tls();
        let flush = async {
            while b.tls_pending() > 0 {
                match peer_wr.write(&b.tls_out[b.tls_pos..]).await {
                    Ok(n) if n > 0 => b.tls_pos += n,
                    _ => break,
                }
            }
        };
        let _ = tokio::time::timeout(limits.send_timeout.min(Duration::from_secs(1)), flush).await;
    }
    let _ = peer_wr.shutdown().await;
    reason
}
