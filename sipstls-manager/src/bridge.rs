//! Moving bytes for one established connection: the bridge between the TLS peer and the
//! worker's plaintext end, with bounded queues and timeouts (the handshake before it runs
//! through `sipstls-tokio`).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sipstls_core::{ReadStatus, Session};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::CloseReason;
use crate::sock::{Got, Sock, Watched};

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

/// Bytes moved to and from TLS peers (ciphertext, as on the wire), counted as they pass.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    /// Received from TLS peers.
    pub from_peers: AtomicU64,
    /// Sent to TLS peers.
    pub to_peers: AtomicU64,
}

/// Per-connection limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The peer must accept queued data within this time.
    pub send_timeout: Duration,
    /// Bytes queued for the peer (ciphertext) or for the worker (plaintext) at most.
    pub max_queue: usize,
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
                return Err(CloseReason::tls(sipstls_core::ErrorKind::Backend, "the session accepted no plaintext"));
            }
        }
        Ok(())
    }
}

/// Bridges an established `session` (peer socket `peer`) with the worker's socket `wk`
/// until one side ends, the limits are broken, `lost` turns true (the worker is gone) or
/// `closing` does (the manager shuts down). `leftover` is ciphertext from the handshake;
/// `preamble` goes to the worker first (a PROXY v2 header when configured). Ciphertext is
/// counted in `traffic`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run<P: Sock + Sync, W: Sock + Sync>(
    session: Box<dyn Session>,
    leftover: Vec<u8>,
    preamble: Vec<u8>,
    peer: Watched<P>,
    wk: Watched<W>,
    limits: Limits,
    mut lost: watch::Receiver<bool>,
    mut closing: watch::Receiver<bool>,
    traffic: &Traffic,
) -> CloseReason {
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
        // Write what the sockets take right now (nearly always all of it).
        let before = b.tls_pos;
        let wrote = peer.write_now(&b.tls_out, &mut b.tls_pos);
        traffic.to_peers.fetch_add((b.tls_pos - before) as u64, Ordering::Relaxed);
        match wrote {
            Ok(true) => send_deadline = Instant::now() + limits.send_timeout,
            Ok(false) => {}
            Err(e) => break e.into(),
        }
        if wk.write_now(&b.plain_out, &mut b.plain_pos).is_err() {
            break CloseReason::WorkerLost;
        }
        // Written queues give their memory back before the connection waits, and so do
        // the session's own buffers.
        reset_queue(&mut b.tls_out, &mut b.tls_pos);
        reset_queue(&mut b.plain_out, &mut b.plain_pos);
        b.session.release_memory();
        if let Some(notified) = b.peer_done {
            if b.plain_pending() == 0 {
                let _ = wk.get().shutdown_write();
                break if notified { CloseReason::PeerClosed } else { CloseReason::PeerEof };
            }
        }
        let read_peer = b.peer_done.is_none() && b.cin.is_empty() && b.plain_pending() < limits.max_queue;
        let write_peer = b.tls_pending() > 0;
        let write_worker = b.plain_pending() > 0;
        tokio::select! {
            r = peer.readable(), if read_peer => {
                let mut ready = match r {
                    Ok(g) => g,
                    Err(e) => break e.into(),
                };
                let got = with_io_buf(|buf| {
                    let got = Watched::read(&mut ready, buf);
                    if let Ok(Got::Data(n)) = got {
                        traffic.from_peers.fetch_add(n as u64, Ordering::Relaxed);
                        b.cin.extend_from_slice(&buf[..n]);
                    }
                    got
                });
                match got {
                    // EOF before close_notify (a close_notify sets peer_done in pump_in).
                    Ok(Got::Eof) => b.peer_done = Some(false),
                    Ok(_) => {}
                    Err(e) => break e.into(),
                }
            },
            // The queues are written at the top of the loop once the sockets take more.
            r = peer.writable(), if write_peer => {
                if let Err(e) = r {
                    break e.into();
                }
            },
            r = wk.writable(), if write_worker => {
                if r.is_err() {
                    break CloseReason::WorkerLost;
                }
            },
            r = wk.readable() => {
                let Ok(mut ready) = r else { break CloseReason::WorkerClosed };
                if b.tls_pending() == 0 {
                    send_deadline = Instant::now() + limits.send_timeout;
                }
                let got = with_io_buf(|buf| match Watched::read(&mut ready, buf) {
                    Ok(Got::Data(n)) => Ok(b.push_out(&buf[..n]).map(|()| Got::Data(n))),
                    other => other.map(Ok),
                });
                match got {
                    Ok(Ok(Got::Eof)) | Err(_) => break CloseReason::WorkerClosed,
                    Ok(Ok(_)) => {}
                    Ok(Err(r)) => break r,
                }
            },
            _ = tokio::time::sleep_until(send_deadline), if write_peer => break CloseReason::SendTimeout,
            _ = lost.wait_for(|l| *l) => break CloseReason::WorkerLost,
            _ = closing.wait_for(|c| *c) => break CloseReason::Shutdown,
        }
    };
    // Close towards the peer: close_notify where the session still can, then flush what is
    // queued within a short bound and end TCP.
    if !matches!(reason, CloseReason::SendTimeout | CloseReason::WriteQueueFull { .. } | CloseReason::Io(_)) {
        b.session.close_notify();
        let _ = b.collect_tls();
        let flush = async {
            while b.tls_pending() > 0 {
                let before = b.tls_pos;
                let wrote = peer.write_now(&b.tls_out, &mut b.tls_pos);
                traffic.to_peers.fetch_add((b.tls_pos - before) as u64, Ordering::Relaxed);
                if wrote.is_err() {
                    break;
                }
                if b.tls_pending() > 0 && peer.writable().await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(limits.send_timeout.min(Duration::from_secs(1)), flush).await;
    }
    let _ = peer.get().shutdown_write();
    reason
}
