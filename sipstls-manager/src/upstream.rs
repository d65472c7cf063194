//! Plain TCP upstreams of a TLS listener: a set of servers (a SIP server and its standbys)
//! with their health, chosen round robin among those up, with failover on a failed
//! connect.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

/// The TCP servers a listener forwards plaintext to, with their health.
///
/// A server is *up* until a connect to it fails, and *down* from then until a connect
/// succeeds again. With a [health check](TcpUpstreams::health_check) the manager probes
/// every server at that interval (a TCP connect, closed at once), so a server that comes
/// back is used again; without one, every server is tried on each connection, those up
/// first. Clones share the same state.
#[derive(Clone)]
pub struct TcpUpstreams {
    inner: Arc<Pool>,
}

struct Pool {
    addrs: Vec<SocketAddr>,
    up: Vec<AtomicBool>,
    next: AtomicUsize,
    check: Option<Duration>,
}

impl TcpUpstreams {
    /// Servers tried in turn, all considered up at first.
    ///
    /// # Panics
    /// If `addrs` is empty (a listener needs somewhere to send its plaintext).
    pub fn new(addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        let addrs: Vec<SocketAddr> = addrs.into_iter().collect();
        assert!(!addrs.is_empty(), "TcpUpstreams needs at least one address");
        let up = addrs.iter().map(|_| AtomicBool::new(true)).collect();
        TcpUpstreams { inner: Arc::new(Pool { addrs, up, next: AtomicUsize::new(0), check: None }) }
    }

    /// One server.
    pub fn single(addr: SocketAddr) -> Self {
        Self::new([addr])
    }

    /// Probes every server each `interval` (a TCP connect within the manager's connect
    /// timeout). Call before handing the upstreams to a listener.
    pub fn health_check(self, interval: Duration) -> Self {
        let pool = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| Pool {
            addrs: shared.addrs.clone(),
            up: shared.addrs.iter().map(|_| AtomicBool::new(true)).collect(),
            next: AtomicUsize::new(0),
            check: None,
        });
        TcpUpstreams { inner: Arc::new(Pool { check: Some(interval), ..pool }) }
    }

    /// The servers, in configuration order.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.inner.addrs
    }

    /// Each server with whether it is up now.
    pub fn health(&self) -> Vec<(SocketAddr, bool)> {
        let p = &self.inner;
        p.addrs.iter().zip(&p.up).map(|(a, u)| (*a, u.load(Ordering::Relaxed))).collect()
    }

    /// True while at least one server is up.
    pub fn any_up(&self) -> bool {
        self.inner.up.iter().any(|u| u.load(Ordering::Relaxed))
    }

    pub(crate) fn check_interval(&self) -> Option<Duration> {
        self.inner.check
    }

    /// Marks server `i` up or down; logs a change.
    fn set(&self, i: usize, up: bool) {
        let was = self.inner.up[i].swap(up, Ordering::Relaxed);
        if was != up {
            let addr = self.inner.addrs[i];
            if up {
                tracing::info!(upstream = %addr, "upstream is up");
            } else {
                tracing::warn!(upstream = %addr, "upstream is down");
            }
        }
    }

    /// Connects to the next server up (round robin), failing over to the others; without
    /// health checks the servers marked down are tried last. Returns the last error when
    /// none answers, or `None` when health checks have every server down (then nothing is
    /// tried: the caller refuses the connection at once).
    pub(crate) async fn connect(&self, timeout: Duration) -> Result<(SocketAddr, TcpStream), Option<std::io::Error>> {
        let p = &self.inner;
        let n = p.addrs.len();
        let start = p.next.fetch_add(1, Ordering::Relaxed);
        let order = (0..n).map(|k| (start + k) % n);
        let up: Vec<usize> = order.clone().filter(|&i| p.up[i].load(Ordering::Relaxed)).collect();
        let mut candidates = up.clone();
        if p.check.is_none() {
            candidates.extend(order.filter(|i| !up.contains(i)));
        }
        let mut last = None;
        for i in candidates {
            match tokio::time::timeout(timeout, TcpStream::connect(p.addrs[i])).await {
                Ok(Ok(s)) => {
                    self.set(i, true);
                    return Ok((p.addrs[i], s));
                }
                Ok(Err(e)) => last = Some(e),
                Err(_) => last = Some(std::io::ErrorKind::TimedOut.into()),
            }
            self.set(i, false);
        }
        Err(last)
    }

    /// Probes every server once.
    pub(crate) async fn probe(&self, timeout: Duration) {
        for (i, addr) in self.inner.addrs.iter().enumerate() {
            let ok = matches!(tokio::time::timeout(timeout, TcpStream::connect(addr)).await, Ok(Ok(_)));
            self.set(i, ok);
        }
    }
}

impl fmt::Debug for TcpUpstreams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpUpstreams").field("health", &self.health()).field("check", &self.inner.check).finish()
    }
}

/// Equal when the same servers are configured with the same check interval.
impl PartialEq for TcpUpstreams {
    fn eq(&self, other: &Self) -> bool {
        self.inner.addrs == other.inner.addrs && self.inner.check == other.inner.check
    }
}

impl Eq for TcpUpstreams {}
