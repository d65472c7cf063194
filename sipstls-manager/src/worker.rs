//! The worker side: blocking calls for SIP worker processes or threads that receive
//! plaintext connections from the manager and ask it for outbound ones.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::control::{self, ConnectTarget, ToManager, ToWorker};
use crate::error::{CloseReason, ConnectError, WorkerError};
use crate::meta::ConnMeta;
use crate::sock::AsyncConnection;

/// A plaintext connection handed over by the manager. Read and write SIP on it; dropping
/// every handle to it closes it (the manager then sends close_notify to the peer).
#[derive(Debug, Clone)]
pub struct Connection {
    /// The connection's id, addresses and TLS facts (shared with the worker's record of
    /// the connections it holds, for reuse: one copy per connection).
    pub meta: Arc<ConnMeta>,
    /// True when [`Worker::connect`] reused a connection this worker already held.
    pub reused: bool,
    stream: Arc<UnixStream>,
}

impl Connection {
    /// The plaintext socket (for timeouts, non-blocking mode or polling).
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// This connection for a tokio event loop (call it inside the runtime). Sets the socket
    /// non-blocking, for every clone of this connection. See [`AsyncConnection`].
    pub fn into_async(self) -> std::io::Result<AsyncConnection> {
        AsyncConnection::new(self.meta, self.stream)
    }
}

impl Read for &Connection {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        (&*self.stream).read(buf)
    }
}

impl Write for &Connection {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        (&*self.stream).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        (&*self.stream).read(buf)
    }
}

impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        (&*self.stream).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Reply {
    New(Box<Connection>),
    Reused(u64),
}

type Pending = Arc<Mutex<HashMap<u64, mpsc::SyncSender<Result<Reply, ConnectError>>>>>;
type Held = Arc<Mutex<HashMap<u64, (Weak<UnixStream>, Arc<ConnMeta>)>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The worker end of a [`control::channel`]. One reader thread dispatches what the manager
/// sends; any number of threads may call [`accept`](Worker::accept) and
/// [`connect`](Worker::connect).
pub struct Worker {
    fd: Arc<OwnedFd>,
    inbound: Mutex<mpsc::Receiver<Connection>>,
    closed: Mutex<mpsc::Receiver<(u64, CloseReason)>>,
    pending: Pending,
    held: Held,
    next_req: AtomicU64,
    reader: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts serving the worker end of a control channel (in the worker process, after
    /// `fork()`).
    pub fn new(control: OwnedFd) -> std::io::Result<Worker> {
        let fd = Arc::new(control);
        let (in_tx, in_rx) = mpsc::channel();
        let (closed_tx, closed_rx) = mpsc::sync_channel(1024);
        let pending: Pending = Arc::default();
        let held: Held = Arc::default();
        let reader = {
            let (fd, pending, held) = (fd.clone(), pending.clone(), held.clone());
            std::thread::Builder::new()
                .name("sipstls-worker-control".into())
                .spawn(move || read_loop(&fd, &in_tx, &closed_tx, &pending, &held))?
        };
        Ok(Worker {
            fd,
            inbound: Mutex::new(in_rx),
            closed: Mutex::new(closed_rx),
            pending,
            held,
            next_req: AtomicU64::new(1),
            reader: Some(reader),
        })
    }

    /// Waits for the next inbound connection. [`WorkerError::ManagerGone`] when the manager
    /// has closed the channel.
    pub fn accept(&self) -> Result<Connection, WorkerError> {
        lock(&self.inbound).recv().map_err(|_| WorkerError::ManagerGone)
    }

    /// Waits at most `timeout` for the next inbound connection.
    pub fn accept_timeout(&self, timeout: Duration) -> Result<Connection, WorkerError> {
        lock(&self.inbound).recv_timeout(timeout).map_err(|e| match e {
            mpsc::RecvTimeoutError::Timeout => WorkerError::Timeout,
            mpsc::RecvTimeoutError::Disconnected => WorkerError::ManagerGone,
        })
    }

    /// Connections of this worker that ended, with the reason (for logs and statistics; the
    /// last 1,024 are kept when nobody reads them).
    pub fn try_closed(&self) -> Option<(u64, CloseReason)> {
        lock(&self.closed).try_recv().ok()
    }

    /// Asks the manager for an outbound TLS connection to `target` and waits at most
    /// `timeout` for it. An open connection of this worker with the same destination,
    /// client domain and server name is reused when `target.reuse` allows it.
    pub fn connect(&self, target: &ConnectTarget, timeout: Duration) -> Result<Connection, WorkerError> {
        match self.request(target, timeout)? {
            Reply::New(c) => Ok(*c),
            Reply::Reused(conn) => {
                let open = lock(&self.held).get(&conn).and_then(|(w, meta)| Some((w.upgrade()?, meta.clone())));
                match open {
                    Some((stream, meta)) => Ok(Connection { meta, reused: true, stream }),
                    // This worker dropped it a moment ago: ask for a fresh one.
                    None => match self.request(&target.clone().fresh(), timeout)? {
                        Reply::New(c) => Ok(*c),
                        Reply::Reused(_) => Err(ConnectError::Local("reuse answered a fresh request".into()).into()),
                    },
                }
            }
        }
    }

    fn request(&self, target: &ConnectTarget, timeout: Duration) -> Result<Reply, WorkerError> {
        let req = self.next_req.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::sync_channel(1);
        lock(&self.pending).insert(req, tx);
        let msg = control::encode(&ToManager::Connect { req, target: target.clone() }, &[])?;
        if let Err(e) = control::send(self.fd.as_raw_fd(), &msg, None) {
            lock(&self.pending).remove(&req);
            return Err(e.into());
        }
        let got = rx.recv_timeout(timeout);
        lock(&self.pending).remove(&req);
        match got {
            Ok(r) => Ok(r?),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(WorkerError::Timeout),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(WorkerError::ManagerGone),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Wake the reader thread: shutting the socket down makes its recvmsg return 0.
        let _ = nix::sys::socket::shutdown(self.fd.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

fn read_loop(
    fd: &OwnedFd,
    inbound: &mpsc::Sender<Connection>,
    closed: &mpsc::SyncSender<(u64, CloseReason)>,
    pending: &Pending,
    held: &Held,
) {
    let mut buf = vec![0u8; control::MAX_MESSAGE];
    loop {
        let (n, passed) = match control::recv(fd.as_raw_fd(), &mut buf) {
            Ok((0, _)) => break,
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => continue,
            Err(_) => break,
        };
        let Ok((head, meta)) = control::decode::<ToWorker>(&buf[..n]) else { continue };
        let connection = |passed: Option<OwnedFd>, reused| -> Option<Connection> {
            let meta = ConnMeta::decode(meta).ok()?;
            Some(Connection { meta: Arc::new(meta), reused, stream: Arc::new(UnixStream::from(passed?)) })
        };
        match head {
            ToWorker::Inbound { .. } => {
                if let Some(c) = connection(passed, false) {
                    lock(held).insert(c.meta.id, (Arc::downgrade(&c.stream), c.meta.clone()));
                    let _ = inbound.send(c);
                }
            }
            ToWorker::Connected { req, conn, reused } => {
                let reply = if reused {
                    Ok(Reply::Reused(conn))
                } else {
                    match connection(passed, false) {
                        Some(c) => {
                            lock(held).insert(conn, (Arc::downgrade(&c.stream), c.meta.clone()));
                            Ok(Reply::New(Box::new(c)))
                        }
                        None => Err(ConnectError::Local("malformed connection hand-over".into())),
                    }
                };
                if let Some(tx) = lock(pending).remove(&req) {
                    let _ = tx.try_send(reply);
                }
            }
            ToWorker::ConnectFailed { req, error } => {
                if let Some(tx) = lock(pending).remove(&req) {
                    let _ = tx.try_send(Err(error));
                }
            }
            ToWorker::Closed { conn, reason } => {
                lock(held).remove(&conn);
                let _ = closed.try_send((conn, reason));
            }
        }
    }
    // The manager is gone: waiting connects fail, accept() reports it.
    lock(pending).clear();
}
