//! The worker side: blocking calls for SIP worker processes or threads that receive
//! plaintext connections from the manager and ask it for outbound ones.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use sipstls_core::ClientTarget;

use crate::control::{self, ToManager, ToWorker, WireTarget};
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

/// Where the reader thread puts the manager's answer to one connect request, for a
/// blocking waiter (the condition variable) or an async one (the notification).
#[derive(Default)]
struct Slot {
    value: Mutex<Option<Result<Reply, WorkerError>>>,
    filled: Condvar,
    notify: tokio::sync::Notify,
}

impl Slot {
    fn fill(&self, r: Result<Reply, WorkerError>) {
        *lock(&self.value) = Some(r);
        self.filled.notify_all();
        // Stores a permit when nobody waits yet: the answer is never missed.
        self.notify.notify_one();
    }

    fn take(&self) -> Option<Result<Reply, WorkerError>> {
        lock(&self.value).take()
    }
}

type Pending = Arc<Mutex<HashMap<u64, Arc<Slot>>>>;
type Held = Arc<Mutex<HashMap<u64, (Weak<UnixStream>, Arc<ConnMeta>)>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The worker end of a [`control::channel`]. One reader thread dispatches what the manager
/// sends; any number of threads may call [`accept`](Worker::accept) and
/// [`connect`](Worker::connect), and tasks of a tokio runtime
/// [`accept_async`](Worker::accept_async) and [`connect_async`](Worker::connect_async).
pub struct Worker {
    fd: Arc<OwnedFd>,
    inbound: Mutex<mpsc::Receiver<Connection>>,
    /// Signalled when a connection arrives or the manager goes.
    arrived: Arc<tokio::sync::Notify>,
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
        let arrived = Arc::new(tokio::sync::Notify::new());
        let reader = {
            let (fd, pending, held, arrived) = (fd.clone(), pending.clone(), held.clone(), arrived.clone());
            std::thread::Builder::new().name("sipstls-worker-control".into()).spawn(move || {
                read_loop(&fd, &in_tx, &arrived, &closed_tx, &pending, &held);
                // The channel closes first, so that an async accept woken now sees it.
                drop(in_tx);
                arrived.notify_waiters();
            })?
        };
        Ok(Worker {
            fd,
            inbound: Mutex::new(in_rx),
            arrived,
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

    /// Waits for the next inbound connection, on a tokio runtime (no thread blocks).
    /// [`WorkerError::ManagerGone`] when the manager has closed the channel. Cancel-safe.
    pub async fn accept_async(&self) -> Result<Connection, WorkerError> {
        loop {
            // Registered before looking, so that an arrival in between is not missed.
            let notified = self.arrived.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            match lock(&self.inbound).try_recv() {
                Ok(c) => return Ok(c),
                Err(mpsc::TryRecvError::Disconnected) => return Err(WorkerError::ManagerGone),
                Err(mpsc::TryRecvError::Empty) => {}
            }
            notified.await;
        }
    }

    /// Connections of this worker that ended, with the reason (for logs and statistics; the
    /// last 1,024 are kept when nobody reads them).
    pub fn try_closed(&self) -> Option<(u64, CloseReason)> {
        lock(&self.closed).try_recv().ok()
    }

    /// Asks the manager for an outbound TLS connection to `target` (its address is
    /// required; the client domain is chosen by id, address or name as in
    /// [`DomainTable`](sipstls_core::DomainTable)) and waits at most `timeout` for it. An
    /// open connection of this worker with the same destination, client domain and server
    /// name is reused.
    pub fn connect(&self, target: &ClientTarget, timeout: Duration) -> Result<Connection, WorkerError> {
        let wire = Self::wire(target, true)?;
        let reply = Self::wait(&self.request(&wire)?, timeout)?;
        match self.resolve(reply) {
            Some(c) => Ok(c),
            // This worker dropped the reused connection a moment ago: ask for a fresh one.
            None => self.fresh(Self::wait(&self.request(&WireTarget { reuse: false, ..wire })?, timeout)?),
        }
    }

    /// As [`connect`](Worker::connect), never reusing an open connection.
    pub fn connect_fresh(&self, target: &ClientTarget, timeout: Duration) -> Result<Connection, WorkerError> {
        self.fresh(Self::wait(&self.request(&Self::wire(target, false)?)?, timeout)?)
    }

    /// [`connect`](Worker::connect) on a tokio runtime (no thread blocks).
    pub async fn connect_async(&self, target: &ClientTarget, timeout: Duration) -> Result<Connection, WorkerError> {
        let wire = Self::wire(target, true)?;
        let reply = Self::wait_async(self.request(&wire)?, timeout).await?;
        match self.resolve(reply) {
            Some(c) => Ok(c),
            None => self.fresh(Self::wait_async(self.request(&WireTarget { reuse: false, ..wire })?, timeout).await?),
        }
    }

    fn wire(target: &ClientTarget, reuse: bool) -> Result<WireTarget, WorkerError> {
        WireTarget::new(target, reuse).ok_or(WorkerError::Connect(ConnectError::NoAddress))
    }

    /// The connection a reply names; `None` when it reuses one this worker no longer holds.
    fn resolve(&self, reply: Reply) -> Option<Connection> {
        match reply {
            Reply::New(c) => Some(*c),
            Reply::Reused(conn) => {
                let (stream, meta) =
                    lock(&self.held).get(&conn).and_then(|(w, meta)| Some((w.upgrade()?, meta.clone())))?;
                Some(Connection { meta, reused: true, stream })
            }
        }
    }

    /// The answer to a request for a fresh connection.
    fn fresh(&self, reply: Reply) -> Result<Connection, WorkerError> {
        match reply {
            Reply::New(c) => Ok(*c),
            Reply::Reused(_) => Err(ConnectError::Local("reuse answered a fresh request".into()).into()),
        }
    }

    /// Sends a connect request; the answer will be in the returned slot.
    fn request(&self, target: &WireTarget) -> Result<Pending1, WorkerError> {
        let req = self.next_req.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot::default());
        lock(&self.pending).insert(req, slot.clone());
        let msg = control::encode(&ToManager::Connect { req, target: target.clone() }, &[])?;
        if let Err(e) = control::send(self.fd.as_raw_fd(), &msg, None) {
            lock(&self.pending).remove(&req);
            return Err(e.into());
        }
        Ok(Pending1 { req, slot, pending: self.pending.clone() })
    }

    fn wait(p: &Pending1, timeout: Duration) -> Result<Reply, WorkerError> {
        let value = lock(&p.slot.value);
        let (mut value, _) =
            p.slot.filled.wait_timeout_while(value, timeout, |v| v.is_none()).unwrap_or_else(|e| e.into_inner());
        value.take().unwrap_or(Err(WorkerError::Timeout))
    }

    async fn wait_async(p: Pending1, timeout: Duration) -> Result<Reply, WorkerError> {
        let answer = async {
            loop {
                if let Some(r) = p.slot.take() {
                    return r;
                }
                p.slot.notify.notified().await;
            }
        };
        tokio::time::timeout(timeout, answer).await.unwrap_or(Err(WorkerError::Timeout))
    }
}

/// A connect request waiting for its answer; forgotten by the worker when dropped
/// (answered, timed out or cancelled).
struct Pending1 {
    req: u64,
    slot: Arc<Slot>,
    pending: Pending,
}

impl Drop for Pending1 {
    fn drop(&mut self) {
        lock(&self.pending).remove(&self.req);
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
    arrived: &tokio::sync::Notify,
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
                    arrived.notify_waiters();
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
                if let Some(slot) = lock(pending).remove(&req) {
                    slot.fill(reply.map_err(WorkerError::from));
                }
            }
            ToWorker::ConnectFailed { req, error } => {
                if let Some(slot) = lock(pending).remove(&req) {
                    slot.fill(Err(error.into()));
                }
            }
            ToWorker::Closed { conn, reason } => {
                lock(held).remove(&conn);
                let _ = closed.try_send((conn, reason));
            }
        }
    }
    // The manager is gone: waiting connects fail, accept() reports it.
    for (_, slot) in lock(pending).drain() {
        slot.fill(Err(WorkerError::ManagerGone));
    }
}
