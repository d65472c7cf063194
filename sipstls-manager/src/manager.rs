//! The TLS manager: owns every TLS session on a small thread pool, bridges each connection
//! to a worker over a socketpair, opens outbound connections for workers.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use sipstls_core::{ClientTarget, DomainTable, ReloadableTable, Session};
use tokio::io::{unix::AsyncFd, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::bridge::{self, Limits, Traffic};
use crate::control::{self, ToManager, ToWorker, WireTarget};
use crate::error::{CloseReason, ConnectError};
use crate::meta::{ConnMeta, Direction};
use crate::sock::{Sock, Watched};
use crate::upstream::TcpUpstreams;

/// Settings of a [`TlsManager`]. The defaults suit a SIP server.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ManagerConfig {
    /// Threads running handshakes and record crypto (default 2).
    pub threads: usize,
    /// Time allowed for a TLS handshake, inbound or outbound (default 10 s).
    pub handshake_timeout: Duration,
    /// Time allowed for an outbound TCP connect (default 5 s).
    pub connect_timeout: Duration,
    /// A peer must accept queued data within this time, or the connection is closed with
    /// [`CloseReason::SendTimeout`] (default 10 s).
    pub send_timeout: Duration,
    /// Bytes queued per connection towards the peer before it is closed with
    /// [`CloseReason::WriteQueueFull`], and towards the worker before the manager stops
    /// reading from the peer (default 256 KiB).
    pub max_queue: usize,
    /// Connections at once; further ones are closed at accept (default 100,000).
    pub max_connections: usize,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            threads: 2,
            handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            send_timeout: Duration::from_secs(10),
            max_queue: 256 * 1024,
            max_connections: 100_000,
        }
    }
}

impl ManagerConfig {
    /// Sets [`threads`](ManagerConfig::threads).
    pub fn with_threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }

    /// Sets [`handshake_timeout`](ManagerConfig::handshake_timeout).
    pub fn with_handshake_timeout(mut self, t: Duration) -> Self {
        self.handshake_timeout = t;
        self
    }

    /// Sets [`connect_timeout`](ManagerConfig::connect_timeout).
    pub fn with_connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Sets [`send_timeout`](ManagerConfig::send_timeout).
    pub fn with_send_timeout(mut self, t: Duration) -> Self {
        self.send_timeout = t;
        self
    }

    /// Sets [`max_queue`](ManagerConfig::max_queue).
    pub fn with_max_queue(mut self, bytes: usize) -> Self {
        self.max_queue = bytes;
        self
    }

    /// Sets [`max_connections`](ManagerConfig::max_connections).
    pub fn with_max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }
}

/// Where a listener's plaintext goes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Upstream {
    /// To the registered workers, round robin over those alive, each connection on its own
    /// socketpair.
    Workers,
    /// To a TCP server (a SIP server that speaks plain TCP, such as Kamailio with
    /// `tcp_accept_haproxy`) or the first of its standbys that answers, one TCP connection
    /// per TLS connection.
    Tcp(TcpUpstreams),
}

impl Upstream {
    /// One TCP server, without health checks.
    pub fn tcp(addr: SocketAddr) -> Self {
        Upstream::Tcp(TcpUpstreams::single(addr))
    }
}

/// One TLS listener.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ListenerConfig {
    /// A name for logs and statistics (default: the address).
    pub name: String,
    /// Local address to bind.
    pub addr: SocketAddr,
    /// Where the plaintext goes.
    pub upstream: Upstream,
    /// Send a PROXY protocol v2 header (addresses, SNI, TLS facts, client certificate)
    /// first on the plaintext side.
    pub proxy_v2: bool,
}

impl ListenerConfig {
    /// A listener handing connections to the workers, without a PROXY header.
    pub fn workers(addr: SocketAddr) -> Self {
        ListenerConfig { name: addr.to_string(), addr, upstream: Upstream::Workers, proxy_v2: false }
    }

    /// A listener forwarding plaintext to TCP servers, with a PROXY v2 header when
    /// `proxy_v2`.
    pub fn tcp(addr: SocketAddr, upstreams: TcpUpstreams, proxy_v2: bool) -> Self {
        ListenerConfig { name: addr.to_string(), addr, upstream: Upstream::Tcp(upstreams), proxy_v2 }
    }
}

/// Where an outbound listener's connections go (see [`TlsManager::listen_outbound`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Route {
    /// Every connection to this target (its address is required), with the client
    /// domain its id, address or name selects.
    Static(ClientTarget),
    /// Each connection starts with a PROXY v2 header whose destination address is where
    /// to connect and whose AUTHORITY TLV, if any, is the server name; the client domain
    /// is `domain_id`'s or, without one, chosen by address and name.
    ProxyV2 {
        /// An explicit client domain id.
        domain_id: Option<String>,
    },
}

/// A plaintext TCP listener for a SIP server that connects out to TLS peers through the
/// manager: each connection accepted becomes one TLS connection to the route's
/// destination, and bytes flow both ways until either side closes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OutboundConfig {
    /// A name for logs and statistics (default: the address).
    pub name: String,
    /// Local address to bind (a loopback address: the plaintext side is not encrypted).
    pub addr: SocketAddr,
    /// Where connections go.
    pub route: Route,
}

impl OutboundConfig {
    /// An outbound listener on `addr` with `route`.
    pub fn new(addr: SocketAddr, route: Route) -> Self {
        OutboundConfig { name: addr.to_string(), addr, route }
    }
}

/// Which way a listener's connections go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListenerKind {
    /// TLS peers connect in; plaintext goes to workers or TCP servers.
    Tls,
    /// A SIP server connects in with plaintext; the manager connects out with TLS.
    Outbound,
}

/// One listener's counters, as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenerStats {
    /// Its name.
    pub name: String,
    /// The bound address.
    pub addr: SocketAddr,
    /// Which way it works.
    pub kind: ListenerKind,
    /// Connections accepted.
    pub accepted: u64,
    /// Connections open now.
    pub active: u64,
    /// TLS handshakes completed (inbound for a TLS listener, outbound for an outbound one).
    pub handshakes_ok: u64,
    /// TLS handshakes failed, by reason (`bad_certificate`, `handshake_timeout`, ...).
    pub handshakes_failed: BTreeMap<&'static str, u64>,
    /// Connections refused before any handshake because no upstream was up.
    pub refused: u64,
    /// Ciphertext bytes received from TLS peers.
    pub bytes_from_peers: u64,
    /// Ciphertext bytes sent to TLS peers.
    pub bytes_to_peers: u64,
    /// Ended connections by [`CloseReason::kind`].
    pub closed: BTreeMap<&'static str, u64>,
    /// The upstream servers and whether each is up (TLS listeners with TCP upstreams).
    pub upstreams: Vec<(SocketAddr, bool)>,
}

/// A listener's identity and live counters.
pub(crate) struct ListenerEntry {
    pub(crate) name: String,
    pub(crate) addr: SocketAddr,
    pub(crate) kind: ListenerKind,
    pub(crate) upstreams: Option<TcpUpstreams>,
    pub(crate) accepted: AtomicU64,
    pub(crate) active: AtomicU64,
    pub(crate) handshakes_ok: AtomicU64,
    pub(crate) handshakes_failed: Mutex<BTreeMap<&'static str, u64>>,
    pub(crate) refused: AtomicU64,
    pub(crate) traffic: Traffic,
    pub(crate) closed: Mutex<BTreeMap<&'static str, u64>>,
}

impl ListenerEntry {
    fn new(name: String, addr: SocketAddr, kind: ListenerKind, upstreams: Option<TcpUpstreams>) -> Self {
        ListenerEntry {
            name,
            addr,
            kind,
            upstreams,
            accepted: AtomicU64::new(0),
            active: AtomicU64::new(0),
            handshakes_ok: AtomicU64::new(0),
            handshakes_failed: Mutex::new(BTreeMap::new()),
            refused: AtomicU64::new(0),
            traffic: Traffic::default(),
            closed: Mutex::new(BTreeMap::new()),
        }
    }

    fn snapshot(&self) -> ListenerStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ListenerStats {
            name: self.name.clone(),
            addr: self.addr,
            kind: self.kind,
            accepted: get(&self.accepted),
            active: get(&self.active),
            handshakes_ok: get(&self.handshakes_ok),
            handshakes_failed: lock(&self.handshakes_failed).clone(),
            refused: get(&self.refused),
            bytes_from_peers: get(&self.traffic.from_peers),
            bytes_to_peers: get(&self.traffic.to_peers),
            closed: lock(&self.closed).clone(),
            upstreams: self.upstreams.as_ref().map(|u| u.health()).unwrap_or_default(),
        }
    }
}

/// What the manager reports as it runs (see [`TlsManager::events`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ManagerEvent {
    /// A worker's control channel closed (the process died or exited). Its connections
    /// are closed with close_notify; new connections go to the others.
    WorkerLost {
        /// The worker's index.
        worker: usize,
        /// How many connections it held.
        open_connections: usize,
    },
    /// A bridged connection ended.
    Closed {
        /// Connection id.
        conn: u64,
        /// The worker that held it.
        worker: Option<usize>,
        /// Why.
        reason: CloseReason,
    },
}

/// Counters, as plain data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ManagerStats {
    /// TCP connections accepted.
    pub accepted: u64,
    /// Inbound handshakes completed.
    pub handshakes_ok: u64,
    /// Inbound handshakes failed (errors and timeouts).
    pub handshakes_failed: u64,
    /// Outbound connections made.
    pub outbound_ok: u64,
    /// Outbound connections that failed.
    pub outbound_failed: u64,
    /// Outbound requests answered with an open connection.
    pub outbound_reused: u64,
    /// Connections open now (inbound and outbound, including handshakes in progress).
    pub active: u64,
    /// Workers alive.
    pub workers_alive: u64,
    /// Workers lost.
    pub workers_lost: u64,
    /// Ended connections by [`CloseReason::kind`].
    pub closed: BTreeMap<&'static str, u64>,
    /// Every listener's counters, in the order they were started.
    pub listeners: Vec<ListenerStats>,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) accepted: AtomicU64,
    pub(crate) handshakes_ok: AtomicU64,
    pub(crate) handshakes_failed: AtomicU64,
    pub(crate) outbound_ok: AtomicU64,
    pub(crate) outbound_failed: AtomicU64,
    pub(crate) outbound_reused: AtomicU64,
    pub(crate) active: AtomicU64,
    pub(crate) workers_lost: AtomicU64,
}

pub(crate) struct WorkerLink {
    id: usize,
    fd: AsyncFd<OwnedFd>,
    lost: watch::Sender<bool>,
    alive: AtomicBool,
    open: AtomicUsize,
    /// Connections that ended because this worker was lost.
    lost_conns: AtomicUsize,
}

impl WorkerLink {
    /// True when the worker's end of the control channel is closed. A dying process's
    /// descriptors are closed in increasing order, and the control channel (inherited at
    /// fork) has a lower number than any connection it received: so when a connection's
    /// socket reports end of stream because its worker died, this already says so.
    fn hung_up(&self) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let mut fds = [PollFd::new(self.fd.get_ref().as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(_) => fds[0].revents().is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR)),
            Err(_) => false,
        }
    }

    /// Classifies how a bridged connection of this worker ended, and counts the ones lost
    /// with it.
    fn ended(&self, reason: CloseReason) -> CloseReason {
        let reason = match reason {
            CloseReason::WorkerClosed if self.hung_up() => CloseReason::WorkerLost,
            r => r,
        };
        if reason == CloseReason::WorkerLost {
            self.lost_conns.fetch_add(1, Ordering::AcqRel);
        }
        self.open.fetch_sub(1, Ordering::AcqRel);
        reason
    }

    async fn send(&self, msg: &[u8], fd: Option<&std::os::unix::net::UnixStream>) -> std::io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|inner| control::send(inner.get_ref().as_raw_fd(), msg, fd.map(|f| f.as_raw_fd()))) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ReuseKey {
    worker: usize,
    dest: SocketAddr,
    domain: usize,
    name: Option<String>,
}

pub(crate) struct Inner {
    pub(crate) table: ReloadableTable,
    /// One single-threaded runtime per manager thread; connections are spread over them.
    pub(crate) handles: Vec<tokio::runtime::Handle>,
    pub(crate) next_handle: AtomicUsize,
    pub(crate) cfg: ManagerConfig,
    /// The live workers (a lost one is removed once its connections have ended, which
    /// closes the manager's end of its control channel).
    pub(crate) workers: Mutex<Vec<Arc<WorkerLink>>>,
    pub(crate) next_worker: AtomicUsize,
    pub(crate) rr: AtomicUsize,
    pub(crate) next_conn: AtomicU64,
    pub(crate) counters: Counters,
    pub(crate) closed: Mutex<BTreeMap<&'static str, u64>>,
    pub(crate) events: Mutex<Option<mpsc::Sender<ManagerEvent>>>,
    pub(crate) reuse: Mutex<HashMap<ReuseKey, u64>>,
    pub(crate) listeners: Mutex<Vec<Arc<ListenerEntry>>>,
    /// Ciphertext of the workers' outbound connections.
    pub(crate) traffic: Traffic,
    /// True while listeners accept ([`TlsManager::stop_accepting`] sets it false).
    pub(crate) accepting: watch::Sender<bool>,
    /// True once every connection is to be closed ([`TlsManager::close_all`]).
    pub(crate) closing: watch::Sender<bool>,
}

/// Keeps [`Counters::active`] right on every path out of a connection task.
struct Active<'a>(&'a AtomicU64);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the maps stay
/// consistent: every update is a single insert or remove).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    /// The runtime for the next connection (round robin).
    fn pick_handle(&self) -> &tokio::runtime::Handle {
        &self.handles[self.next_handle.fetch_add(1, Ordering::Relaxed) % self.handles.len()]
    }

    pub(crate) fn limits(&self) -> Limits {
        Limits { send_timeout: self.cfg.send_timeout, max_queue: self.cfg.max_queue }
    }

    fn emit(&self, e: ManagerEvent) {
        if let Some(tx) = lock(&self.events).as_ref() {
            let _ = tx.send(e);
        }
    }

    fn pick_worker(&self) -> Option<Arc<WorkerLink>> {
        let workers = lock(&self.workers);
        let n = workers.len();
        let start = self.rr.fetch_add(1, Ordering::Relaxed);
        (0..n).map(|i| &workers[(start + i) % n]).find(|w| w.alive.load(Ordering::Acquire)).cloned()
    }

    pub(crate) async fn ended(
        &self,
        conn: u64,
        worker: Option<&WorkerLink>,
        entry: Option<&ListenerEntry>,
        reason: CloseReason,
    ) {
        *lock(&self.closed).entry(reason.kind()).or_default() += 1;
        if let Some(entry) = entry {
            *lock(&entry.closed).entry(reason.kind()).or_default() += 1;
        }
        if reason.is_failure() && !matches!(reason, CloseReason::PeerEof | CloseReason::WorkerLost) {
            let listener = entry.map_or("-", |e| e.name.as_str());
            tracing::info!(listener, conn, reason = reason.kind(), error = %reason, "connection closed");
        }
        if let Some(w) = worker {
            if w.alive.load(Ordering::Acquire) {
                if let Ok(msg) = control::encode(&ToWorker::Closed { conn, reason: reason.clone() }, &[]) {
                    let _ = w.send(&msg, None).await;
                }
            }
        }
        self.emit(ManagerEvent::Closed { conn, worker: worker.map(|w| w.id), reason });
    }

    /// Marks a worker lost: its connections are closed (close_notify), and once they all
    /// have ended (bounded wait) the loss is reported with their number.
    fn worker_lost(self: &Arc<Self>, w: &Arc<WorkerLink>) {
        if w.alive.swap(false, Ordering::AcqRel) {
            self.counters.workers_lost.fetch_add(1, Ordering::Relaxed);
            let _ = w.lost.send(true);
            let (inner, w) = (self.clone(), w.clone());
            tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
                while w.open.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                let open_connections = w.lost_conns.load(Ordering::Acquire) + w.open.load(Ordering::Acquire);
                // Forget the worker: its control channel closes when the last connection
                // task that still refers to it has ended.
                lock(&inner.workers).retain(|l| !Arc::ptr_eq(l, &w));
                inner.emit(ManagerEvent::WorkerLost { worker: w.id, open_connections });
            });
        }
    }
}

/// The confined process model's TLS process: it accepts and initiates TLS connections,
/// runs handshakes and record crypto on a small thread pool, and bridges each connection
/// to a worker over a socketpair; workers read and write plaintext SIP.
///
/// Build the domain table, create one [`control::channel`] per worker and fork the workers
/// *before* creating the manager (its threads must not exist at `fork()`); then add the
/// workers' control ends with [`add_worker`](TlsManager::add_worker) and start listeners.
/// Dropping the manager stops it.
pub struct TlsManager {
    inner: Arc<Inner>,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl TlsManager {
    /// A manager for the domains of `table`.
    ///
    /// Each of the `cfg.threads` threads runs its own single-threaded event loop (no work
    /// stealing, so a connection's wake-ups never hop between threads); connections are
    /// spread over them round robin.
    pub fn new(table: Arc<DomainTable>, cfg: ManagerConfig) -> std::io::Result<Self> {
        let (mut handles, mut stops, mut threads) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..cfg.threads.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
            handles.push(rt.handle().clone());
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            stops.push(stop);
            threads.push(std::thread::Builder::new().name(format!("sipstls-manager-{i}")).spawn(move || {
                rt.block_on(async {
                    let _ = stopped.await;
                });
                rt.shutdown_timeout(Duration::from_millis(500));
            })?);
        }
        let inner = Arc::new(Inner {
            table: ReloadableTable::from_arc(table),
            handles,
            next_handle: AtomicUsize::new(0),
            cfg,
            workers: Mutex::new(Vec::new()),
            next_worker: AtomicUsize::new(0),
            rr: AtomicUsize::new(0),
            next_conn: AtomicU64::new(1),
            counters: Counters::default(),
            closed: Mutex::new(BTreeMap::new()),
            events: Mutex::new(None),
            reuse: Mutex::new(HashMap::new()),
            listeners: Mutex::new(Vec::new()),
            traffic: Traffic::default(),
            accepting: watch::channel(true).0,
            closing: watch::channel(false).0,
        });
        Ok(TlsManager { inner, stops, threads })
    }

    /// The runtime that owns the control channels and the listeners.
    fn main_handle(&self) -> &tokio::runtime::Handle {
        &self.inner.handles[0]
    }

    /// A channel of [`ManagerEvent`]s (replacing any earlier one).
    pub fn events(&self) -> mpsc::Receiver<ManagerEvent> {
        let (tx, rx) = mpsc::channel();
        *lock(&self.inner.events) = Some(tx);
        rx
    }

    /// Registers a worker by the manager end of its [`control::channel`]; returns its index.
    pub fn add_worker(&self, control: OwnedFd) -> std::io::Result<usize> {
        control::set_nonblocking(&control)?;
        let _enter = self.main_handle().enter();
        // SAFETY: `control` is an `OwnedFd`: its descriptor is open and stays the same until
        // the `AsyncFd` that owns it is dropped.
        let fd = unsafe { AsyncFd::register(control) }.map_err(|e| e.into_parts().1)?;
        let mut workers = lock(&self.inner.workers);
        let link = Arc::new(WorkerLink {
            id: self.inner.next_worker.fetch_add(1, Ordering::Relaxed),
            fd,
            lost: watch::channel(false).0,
            alive: AtomicBool::new(true),
            open: AtomicUsize::new(0),
            lost_conns: AtomicUsize::new(0),
        });
        workers.push(link.clone());
        let id = link.id;
        self.main_handle().spawn(worker_reader(self.inner.clone(), link));
        Ok(id)
    }

    /// Binds a TLS listener and starts accepting; returns the bound address. TCP upstreams
    /// with a health check are probed from now on.
    pub fn listen(&self, cfg: ListenerConfig) -> std::io::Result<SocketAddr> {
        let listener = self.bind(cfg.addr)?;
        let local = listener.local_addr()?;
        let upstreams = match &cfg.upstream {
            Upstream::Tcp(u) => Some(u.clone()),
            Upstream::Workers => None,
        };
        let entry = self.register(ListenerEntry::new(cfg.name.clone(), local, ListenerKind::Tls, upstreams.clone()));
        if let Some((u, every)) = upstreams.and_then(|u| u.check_interval().map(|i| (u, i))) {
            self.main_handle().spawn(health_checks(self.inner.clone(), u, every));
        }
        let cfg = Arc::new(cfg);
        self.main_handle().spawn(accept_loop(self.inner.clone(), listener, entry, move |inner, tcp, peer, entry| {
            inbound(inner, tcp, peer, cfg.clone(), entry)
        }));
        Ok(local)
    }

    /// Binds a plaintext listener for a SIP server's outbound connections (see
    /// [`OutboundConfig`]); returns the bound address.
    pub fn listen_outbound(&self, cfg: OutboundConfig) -> std::io::Result<SocketAddr> {
        if matches!(&cfg.route, Route::Static(t) if t.addr.is_none()) {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "a static route needs an address"));
        }
        let listener = self.bind(cfg.addr)?;
        let local = listener.local_addr()?;
        let entry = self.register(ListenerEntry::new(cfg.name.clone(), local, ListenerKind::Outbound, None));
        let route = Arc::new(cfg.route);
        self.main_handle().spawn(accept_loop(self.inner.clone(), listener, entry, move |inner, tcp, peer, entry| {
            crate::outbound::relay(inner, tcp, peer, route.clone(), entry)
        }));
        Ok(local)
    }

    fn bind(&self, addr: SocketAddr) -> std::io::Result<TcpListener> {
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let _enter = self.main_handle().enter();
        TcpListener::from_std(std_listener)
    }

    fn register(&self, entry: ListenerEntry) -> Arc<ListenerEntry> {
        let entry = Arc::new(entry);
        lock(&self.inner.listeners).push(entry.clone());
        entry
    }

    /// Stops every listener: their sockets close, so new connections are refused by the
    /// kernel; the connections open go on. The first step of a graceful shutdown (drain).
    pub fn stop_accepting(&self) {
        self.inner.accepting.send_replace(false);
    }

    /// Closes every open connection: close_notify to each TLS peer, the plaintext side
    /// ended, [`CloseReason::Shutdown`]. Handshakes in progress fail. The end of a drain.
    pub fn close_all(&self) {
        self.inner.closing.send_replace(true);
    }

    /// Replaces the domain table (a configuration reload): connections open now keep the
    /// domains they were made with, new ones use `table`. Build the new table first; a
    /// configuration that does not build never reaches the manager.
    pub fn reload(&self, table: DomainTable) {
        self.inner.table.reload(table);
    }

    /// The domain table new connections use now, with its per-domain statistics and
    /// session list ([`DomainTable::stats`], [`DomainTable::sessions`]).
    pub fn table(&self) -> Arc<DomainTable> {
        self.inner.table.current()
    }

    /// The counters now.
    pub fn stats(&self) -> ManagerStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let workers = lock(&self.inner.workers);
        ManagerStats {
            accepted: get(&c.accepted),
            handshakes_ok: get(&c.handshakes_ok),
            handshakes_failed: get(&c.handshakes_failed),
            outbound_ok: get(&c.outbound_ok),
            outbound_failed: get(&c.outbound_failed),
            outbound_reused: get(&c.outbound_reused),
            active: get(&c.active),
            workers_alive: workers.iter().filter(|w| w.alive.load(Ordering::Acquire)).count() as u64,
            workers_lost: get(&c.workers_lost),
            closed: lock(&self.inner.closed).clone(),
            listeners: lock(&self.inner.listeners).iter().map(|l| l.snapshot()).collect(),
        }
    }
}

impl Drop for TlsManager {
    fn drop(&mut self) {
        self.stops.clear(); // dropping the senders ends every event loop
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Accepts connections until the manager stops accepting, and runs `serve` for each on
/// the next event loop. `active` (the manager's and the listener's) counts it from here.
pub(crate) async fn accept_loop<F, Fut>(inner: Arc<Inner>, listener: TcpListener, entry: Arc<ListenerEntry>, serve: F)
where
    F: Fn(Arc<Inner>, TcpStream, SocketAddr, Arc<ListenerEntry>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let serve = Arc::new(serve);
    let mut accepting = inner.accepting.subscribe();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = accepting.wait_for(|a| !*a) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors or a connection reset before accept: back off briefly.
                tracing::debug!(listener = %entry.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        inner.counters.accepted.fetch_add(1, Ordering::Relaxed);
        entry.accepted.fetch_add(1, Ordering::Relaxed);
        if inner.counters.active.load(Ordering::Relaxed) >= inner.cfg.max_connections as u64 {
            tracing::warn!(listener = %entry.name, %peer, limit = inner.cfg.max_connections, "connection limit reached: connection closed");
            drop(tcp);
            continue;
        }
        inner.counters.active.fetch_add(1, Ordering::Relaxed);
        entry.active.fetch_add(1, Ordering::Relaxed);
        // Move the socket to the event loop that will own the connection.
        let Ok(std_tcp) = tcp.into_std() else {
            inner.counters.active.fetch_sub(1, Ordering::Relaxed);
            entry.active.fetch_sub(1, Ordering::Relaxed);
            continue;
        };
        let (inner2, entry, serve) = (inner.clone(), entry.clone(), serve.clone());
        inner.pick_handle().spawn(async move {
            let _active = Active(&inner2.counters.active);
            let _listener_active = Active(&entry.active);
            if let Ok(tcp) = TcpStream::from_std(std_tcp) {
                serve(inner2.clone(), tcp, peer, entry.clone()).await;
            }
        });
    }
    tracing::info!(listener = %entry.name, "stopped accepting");
}

/// Probes `upstreams` every `every` until the manager stops accepting.
async fn health_checks(inner: Arc<Inner>, upstreams: TcpUpstreams, every: Duration) {
    let mut accepting = inner.accepting.subscribe();
    loop {
        upstreams.probe(inner.cfg.connect_timeout).await;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = accepting.wait_for(|a| !*a) => break,
        }
    }
}

/// The manager's end (non-blocking) and the worker's end of a new connection's socketpair.
fn socketpair() -> std::io::Result<(std::os::unix::net::UnixStream, std::os::unix::net::UnixStream)> {
    let (mine, theirs) = std::os::unix::net::UnixStream::pair()?;
    mine.set_nonblocking(true)?;
    Ok((mine, theirs))
}

/// The bridge's sockets: the peer's (its halves joined again after the handshake) and the
/// worker's, both watched for readability only (see `sock`).
fn watched<U: Sock>(tcp: TcpStream, up: U) -> std::io::Result<(Watched<std::net::TcpStream>, Watched<U>)> {
    Ok((Watched::new(tcp.into_std()?)?, Watched::new(up)?))
}

/// Why a handshake failed, with the socket back so that the caller counts the failure
/// before the peer sees the connection close.
pub(crate) struct HandshakeFailure {
    pub reason: CloseReason,
    /// Held, not read: dropping it closes the connection, after the failure is counted.
    #[allow(dead_code)]
    pub tcp: TcpStream,
}

/// Runs the TLS handshake of `session` over `tcp` within `limit`, or until the manager
/// closes everything. Returns the socket, the session and the ciphertext that arrived
/// behind the handshake (for the bridge to feed first).
pub(crate) async fn handshake(
    inner: &Inner,
    session: Box<dyn Session>,
    tcp: TcpStream,
    limit: std::time::Duration,
) -> Result<(TcpStream, Box<dyn Session>, Vec<u8>), HandshakeFailure> {
    let mut tls = sipstls_tokio::TlsStream::new(session, tcp);
    let mut closing = inner.closing.subscribe();
    let outcome = tokio::select! {
        r = tokio::time::timeout(limit, tls.handshake()) => r,
        _ = closing.wait_for(|c| *c) => {
            return Err(HandshakeFailure { reason: CloseReason::Shutdown, tcp: tls.into_inner() });
        }
    };
    let reason = match outcome {
        Err(_) => CloseReason::HandshakeTimeout,
        Ok(Err(e)) => match sipstls_tokio::tls_error(&e) {
            // The peer went away before the handshake ended.
            Some(sipstls_core::Error::UnexpectedEof) => CloseReason::PeerEof,
            Some(te) => te.clone().into(),
            None if e.kind() == std::io::ErrorKind::UnexpectedEof => CloseReason::PeerEof,
            None => e.into(),
        },
        Ok(Ok(())) => {
            let mut parts = tls.into_parts();
            if !parts.unsent.is_empty() {
                if let Err(e) = parts.io.write_all(&parts.unsent).await {
                    return Err(HandshakeFailure { reason: e.into(), tcp: parts.io });
                }
            }
            return Ok((parts.io, parts.session, parts.received));
        }
    };
    Err(HandshakeFailure { reason, tcp: tls.into_inner() })
}

/// The SNI of the ClientHello waiting on `tcp`, peeked without consuming it (for the log of
/// a failed handshake); waits for the first bytes at most `limit`.
/// The buffer is on the heap and freed before the handshake: a buffer in the future would
/// be room kept in every connection's task for its whole life.
async fn peek_sni(tcp: &TcpStream, limit: Duration) -> Option<String> {
    let mut buf = vec![0u8; 2048];
    let n = tokio::time::timeout(limit, tcp.peek(&mut buf)).await.ok()?.ok()?;
    sipstls_core::hello::sni_in_prefix(&buf[..n])
}

async fn inbound(
    inner: Arc<Inner>,
    tcp: TcpStream,
    peer: SocketAddr,
    lc: Arc<ListenerConfig>,
    entry: Arc<ListenerEntry>,
) {
    let _ = tcp.set_nodelay(true);
    let local = match tcp.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    if let Upstream::Tcp(up) = &lc.upstream {
        if up.check_interval().is_some() && !up.any_up() {
            entry.refused.fetch_add(1, Ordering::Relaxed);
            *lock(&entry.closed).entry(CloseReason::NoUpstream.kind()).or_default() += 1;
            tracing::warn!(listener = %entry.name, %peer, "connection refused: no upstream is up");
            return;
        }
    }
    // The wait for the first bytes counts against the handshake's time limit.
    let started = tokio::time::Instant::now();
    let sni = peek_sni(&tcp, inner.cfg.handshake_timeout).await;
    let left = inner.cfg.handshake_timeout.saturating_sub(started.elapsed());
    let session = match inner.table.accept(local, Some(peer)) {
        Ok(s) => s,
        Err(e) => return handshake_failed(&inner, &entry, peer, sni.as_deref(), &e.into()),
    };
    let (mut tcp, session, leftover) = match handshake(&inner, session, tcp, left).await {
        Ok(x) => x,
        // Counted before `f.tcp` closes the connection (at the end of this arm).
        Err(f) => return handshake_failed(&inner, &entry, peer, sni.as_deref(), &f.reason),
    };
    drop(sni);
    let Some(tls) = session.info() else {
        let reason = CloseReason::tls(sipstls_core::ErrorKind::Backend, "no session facts after the handshake");
        return handshake_failed(&inner, &entry, peer, None, &reason);
    };
    inner.counters.handshakes_ok.fetch_add(1, Ordering::Relaxed);
    entry.handshakes_ok.fetch_add(1, Ordering::Relaxed);
    let conn = inner.next_conn.fetch_add(1, Ordering::Relaxed);
    // The metadata lives only in this block: a local of the whole function would be stored
    // in the connection's task for its whole life (about 1 KB per idle connection).
    let (preamble, handed) = {
        let meta = ConnMeta { id: conn, direction: Direction::Inbound, peer, local, tls };
        let preamble = if lc.proxy_v2 { meta.proxy_header() } else { Vec::new() };
        let handed = match &lc.upstream {
            Upstream::Workers => Some(hand_over(&inner, &meta).await),
            Upstream::Tcp(_) => None,
        };
        (preamble, handed)
    };
    let closing = inner.closing.subscribe();
    match &lc.upstream {
        Upstream::Workers => {
            let Some((worker, mine)) = handed.flatten() else {
                refuse(session, &mut tcp).await;
                tracing::warn!(listener = %entry.name, %peer, "connection closed: no worker is alive");
                return inner.ended(conn, None, Some(&entry), CloseReason::NoWorker).await;
            };
            let (peer, wk) = match watched(tcp, mine) {
                Ok(w) => w,
                Err(e) => return inner.ended(conn, None, Some(&entry), e.into()).await,
            };
            worker.open.fetch_add(1, Ordering::AcqRel);
            let lost = worker.lost.subscribe();
            let reason =
                bridge::run(session, leftover, preamble, peer, wk, inner.limits(), lost, closing, &entry.traffic).await;
            let reason = worker.ended(reason);
            inner.ended(conn, Some(&worker), Some(&entry), reason).await;
        }
        Upstream::Tcp(upstreams) => {
            let up = match upstreams.connect(inner.cfg.connect_timeout).await {
                Ok((_, s)) => s,
                Err(e) => {
                    refuse(session, &mut tcp).await;
                    let error = e.map(|e| e.to_string()).unwrap_or_else(|| "every upstream is down".into());
                    tracing::warn!(listener = %entry.name, %peer, %error, "connection closed: no upstream answered");
                    return inner.ended(conn, None, Some(&entry), CloseReason::NoUpstream).await;
                }
            };
            let _ = up.set_nodelay(true);
            let (peer, up) = match up.into_std().and_then(|up| watched(tcp, up)) {
                Ok(w) => w,
                Err(e) => return inner.ended(conn, None, Some(&entry), e.into()).await,
            };
            let (_keep, lost) = watch::channel(false);
            let reason =
                bridge::run(session, leftover, preamble, peer, up, inner.limits(), lost, closing, &entry.traffic).await;
            inner.ended(conn, None, Some(&entry), reason).await;
        }
    }
}

/// Counts and logs a failed handshake (inbound or outbound).
pub(crate) fn handshake_failed(
    inner: &Inner,
    entry: &ListenerEntry,
    peer: SocketAddr,
    sni: Option<&str>,
    reason: &CloseReason,
) {
    let label = reason.label();
    inner.counters.handshakes_failed.fetch_add(1, Ordering::Relaxed);
    *lock(&inner.closed).entry(reason.kind()).or_default() += 1;
    *lock(&entry.handshakes_failed).entry(label).or_default() += 1;
    *lock(&entry.closed).entry(reason.kind()).or_default() += 1;
    tracing::warn!(
        listener = %entry.name,
        %peer,
        sni = sni.unwrap_or("-"),
        reason = label,
        error = %reason,
        "TLS handshake failed"
    );
}

/// Sends close_notify to a peer nobody will serve.
async fn refuse(mut session: Box<dyn Session>, wr: &mut TcpStream) {
    session.close_notify();
    let mut out = vec![0u8; 4096];
    while session.wants_write() {
        let n = session.take_tls(&mut out);
        if wr.write_all(&out[..n]).await.is_err() {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

/// Gives a new inbound connection to a live worker; tries the next one if a worker turns
/// out to be gone.
async fn hand_over(inner: &Arc<Inner>, meta: &ConnMeta) -> Option<(Arc<WorkerLink>, std::os::unix::net::UnixStream)> {
    let msg = control::encode(&ToWorker::Inbound { conn: meta.id }, &meta.encode()).ok()?;
    let tries = lock(&inner.workers).len();
    for _ in 0..tries {
        let worker = inner.pick_worker()?;
        let (mine, theirs) = socketpair().ok()?;
        match worker.send(&msg, Some(&theirs)).await {
            Ok(()) => return Some((worker, mine)),
            Err(_) => inner.worker_lost(&worker),
        }
    }
    None
}

async fn worker_reader(inner: Arc<Inner>, link: Arc<WorkerLink>) {
    let mut buf = vec![0u8; control::MAX_MESSAGE];
    loop {
        let got = async {
            loop {
                let mut guard = link.fd.readable().await?;
                match guard.try_io(|inner| control::recv(inner.get_ref().as_raw_fd(), &mut buf)) {
                    Ok(r) => return r,
                    Err(_would_block) => continue,
                }
            }
        }
        .await;
        match got {
            Ok((0, _)) => break,
            Ok((n, _fd)) => match control::decode::<ToManager>(&buf[..n]) {
                Ok((ToManager::Connect { req, target }, _)) => {
                    inner.counters.active.fetch_add(1, Ordering::Relaxed);
                    inner.pick_handle().spawn(outbound(inner.clone(), link.clone(), req, target));
                }
                // A malformed request is dropped; the worker's own timeout reports it.
                Err(_) => continue,
            },
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => continue,
            Err(_) => break,
        }
    }
    inner.worker_lost(&link);
}

async fn outbound(inner: Arc<Inner>, worker: Arc<WorkerLink>, req: u64, target: WireTarget) {
    let _active = Active(&inner.counters.active);
    let fail = |error: ConnectError| {
        let inner = inner.clone();
        let worker = worker.clone();
        async move {
            inner.counters.outbound_failed.fetch_add(1, Ordering::Relaxed);
            if let Ok(msg) = control::encode(&ToWorker::ConnectFailed { req, error }, &[]) {
                let _ = worker.send(&msg, None).await;
            }
        }
    };
    let ct = target.client_target();
    let table = inner.table.current();
    let (domain, name) = match table.client_for(&ct) {
        Ok(x) => x,
        Err(e) => return fail(ConnectError::NoDomain(e.to_string())).await,
    };
    let key = ReuseKey {
        worker: worker.id,
        dest: target.dest,
        domain: Arc::as_ptr(&domain) as *const () as usize,
        name: name.as_ref().map(|n| n.to_string()),
    };
    if target.reuse {
        let open = lock(&inner.reuse).get(&key).copied();
        if let Some(conn) = open {
            inner.counters.outbound_reused.fetch_add(1, Ordering::Relaxed);
            if let Ok(msg) = control::encode(&ToWorker::Connected { req, conn, reused: true }, &[]) {
                let _ = worker.send(&msg, None).await;
            }
            return;
        }
    }
    let tcp = match tokio::time::timeout(inner.cfg.connect_timeout, TcpStream::connect(target.dest)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return fail(ConnectError::Tcp(e.to_string())).await,
        Err(_) => return fail(ConnectError::Timeout).await,
    };
    let _ = tcp.set_nodelay(true);
    let local = tcp.local_addr().unwrap_or(target.dest);
    let session = match inner.table.connect(&ct) {
        Ok(s) => s,
        Err(e) => return fail(ConnectError::Handshake(e.into())).await,
    };
    let (tcp, session, leftover) = match handshake(&inner, session, tcp, inner.cfg.handshake_timeout).await {
        Ok(x) => x,
        Err(HandshakeFailure { reason: CloseReason::HandshakeTimeout, .. }) => {
            return fail(ConnectError::Timeout).await
        }
        Err(f) => return fail(ConnectError::Handshake(f.reason)).await,
    };
    let Some(tls) = session.info() else {
        let reason = CloseReason::tls(sipstls_core::ErrorKind::Backend, "no session facts after the handshake");
        return fail(ConnectError::Handshake(reason)).await;
    };
    let conn = inner.next_conn.fetch_add(1, Ordering::Relaxed);
    let (mine, theirs) = match socketpair() {
        Ok(p) => p,
        Err(e) => return fail(ConnectError::Local(e.to_string())).await,
    };
    // Built in this expression only, so that the task does not keep it (see inbound()).
    let encoded = ConnMeta { id: conn, direction: Direction::Outbound, peer: target.dest, local, tls }.encode();
    let msg = match control::encode(&ToWorker::Connected { req, conn, reused: false }, &encoded) {
        Ok(m) => m,
        Err(e) => return fail(ConnectError::Local(e.to_string())).await,
    };
    drop(encoded);
    // Counted and registered for reuse before the worker hears of it.
    inner.counters.outbound_ok.fetch_add(1, Ordering::Relaxed);
    lock(&inner.reuse).insert(key.clone(), conn);
    if worker.send(&msg, Some(&theirs)).await.is_err() {
        lock(&inner.reuse).remove(&key);
        inner.worker_lost(&worker);
        return;
    }
    drop((theirs, msg));
    let (peer, wk) = match watched(tcp, mine) {
        Ok(w) => w,
        Err(e) => {
            lock(&inner.reuse).remove(&key);
            return inner.ended(conn, None, None, e.into()).await;
        }
    };
    worker.open.fetch_add(1, Ordering::AcqRel);
    let lost = worker.lost.subscribe();
    let closing = inner.closing.subscribe();
    let reason =
        bridge::run(session, leftover, Vec::new(), peer, wk, inner.limits(), lost, closing, &inner.traffic).await;
    let reason = worker.ended(reason);
    {
        let mut reuse = lock(&inner.reuse);
        if reuse.get(&key) == Some(&conn) {
            reuse.remove(&key);
        }
    }
    inner.ended(conn, Some(&worker), None, reason).await;
}
