//! Running the service: listeners bound, privileges dropped, then signals: SIGHUP reloads
//! the TLS domains (certificates, keys, profiles) without touching open connections;
//! SIGTERM or SIGINT drains (stop accepting, wait for connections to end up to the drain
//! timeout, then close the rest with close_notify) and exits.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipstls_manager::{ListenerConfig, OutboundConfig, TcpUpstreams, TlsManager};
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{ListenSpec, ProxyConfig};
use crate::metrics::{self, ServiceCounters};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The TLS domain file or its certificates.
    #[error("{0}")]
    Tls(String),
    /// A socket could not be bound or the runtime not built.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// Switching to the configured user or group failed.
    #[error("dropping privileges: {0}")]
    Privileges(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let what = what.into();
    move |source| StartError::Io { what, source }
}

fn tls_listener(l: &ListenSpec) -> ListenerConfig {
    let mut upstreams = TcpUpstreams::new(l.upstreams.iter().copied());
    if let Some(every) = l.health_check {
        upstreams = upstreams.health_check(every);
    }
    let mut lc = ListenerConfig::tcp(l.address, upstreams, l.proxy_protocol);
    lc.name = l.name.clone();
    lc
}

/// Switches to `user` (and `group`, default the user's primary group) with no
/// supplementary groups. Without a user nothing changes; a process that is not root can
/// only "switch" to itself.
pub fn drop_privileges(user: Option<&str>, group: Option<&str>) -> Result<(), StartError> {
    use nix::unistd::{getgid, getuid, setgid, setgroups, setuid, Group, User};
    let Some(name) = user else { return Ok(()) };
    let fail = |m: String| StartError::Privileges(m);
    let u = User::from_name(name)
        .map_err(|e| fail(format!("user {name}: {e}")))?
        .ok_or_else(|| fail(format!("no user {name}")))?;
    let gid = match group {
        None => u.gid,
        Some(g) => {
            Group::from_name(g)
                .map_err(|e| fail(format!("group {g}: {e}")))?
                .ok_or_else(|| fail(format!("no group {g}")))?
                .gid
        }
    };
    if getuid().is_root() {
        setgroups(&[]).map_err(|e| fail(format!("setgroups: {e}")))?;
        setgid(gid).map_err(|e| fail(format!("setgid {gid}: {e}")))?;
        setuid(u.uid).map_err(|e| fail(format!("setuid {}: {e}", u.uid)))?;
        if setuid(nix::unistd::Uid::from_raw(0)).is_ok() {
            return Err(fail("root could be regained after setuid".into()));
        }
    } else if getuid() != u.uid || getgid() != gid {
        return Err(fail(format!("not running as root: cannot become {name}")));
    }
    tracing::info!(user = name, uid = u.uid.as_raw(), gid = gid.as_raw(), "running unprivileged");
    Ok(())
}

/// Re-reads the configuration file and replaces the TLS domains. A file that does not
/// check or domains that do not build leave the running ones in place.
fn reload(cfg: &ProxyConfig, manager: &TlsManager, counters: &ServiceCounters) {
    let started = Instant::now();
    let outcome = ProxyConfig::read(&cfg.path).map_err(|e| e.to_string()).and_then(|new| {
        if new.listen != cfg.listen || new.outbound != cfg.outbound || new.backend != cfg.backend {
            tracing::warn!("listeners, routes and the backend change only on restart; reloading the TLS domains");
        }
        new.table()
    });
    match outcome {
        Ok(table) => {
            manager.reload(table);
            counters.reloads.fetch_add(1, Ordering::Relaxed);
            tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "reloaded the TLS domains");
        }
        Err(error) => {
            counters.reload_failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%error, "reload refused; the running configuration stays");
        }
    }
}

/// Stops accepting, waits up to `timeout` for the connections to end, closes the rest
/// with close_notify and waits (bounded) for them to go.
async fn drain(manager: &TlsManager, timeout: Duration) {
    manager.stop_accepting();
    let open = manager.stats().active;
    tracing::info!(open, timeout_s = timeout.as_secs_f64(), "draining: no new connections");
    let deadline = Instant::now() + timeout;
    while manager.stats().active > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = manager.stats().active;
    if left > 0 {
        tracing::info!(open = left, "drain timeout: closing the remaining connections with close_notify");
        manager.close_all();
        let deadline = Instant::now() + Duration::from_secs(3);
        while manager.stats().active > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tracing::info!(open = manager.stats().active, "stopped");
}

/// Runs the service until SIGTERM or SIGINT.
pub fn run(cfg: ProxyConfig) -> Result<(), StartError> {
    let table = cfg.table().map_err(StartError::Tls)?;
    let backend = table.backend().info();
    let manager = Arc::new(TlsManager::new(Arc::new(table), cfg.manager.clone()).map_err(io("starting the manager"))?);
    for l in &cfg.listen {
        let bound = manager.listen(tls_listener(l)).map_err(io(format!("listen {} ({})", l.address, l.name)))?;
        let upstreams: Vec<String> = l.upstreams.iter().map(|u| u.to_string()).collect();
        tracing::info!(listener = %l.name, address = %bound, kind = "tls", upstreams = %upstreams.join(","), proxy_protocol = l.proxy_protocol, "listening");
    }
    for o in &cfg.outbound {
        let mut oc = OutboundConfig::new(o.address, o.route.clone());
        oc.name = o.name.clone();
        let bound = manager.listen_outbound(oc).map_err(io(format!("listen {} ({})", o.address, o.name)))?;
        tracing::info!(listener = %o.name, address = %bound, kind = "outbound", "listening");
    }
    let metrics_listener = match cfg.metrics {
        Some(addr) => {
            let l = std::net::TcpListener::bind(addr).map_err(io(format!("metrics {addr}")))?;
            l.set_nonblocking(true).map_err(io("metrics socket"))?;
            tracing::info!(address = %l.local_addr().map_err(io("metrics socket"))?, kind = "metrics", "listening");
            Some(l)
        }
        None => None,
    };
    drop_privileges(cfg.user.as_deref(), cfg.group.as_deref())?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build().map_err(io("runtime"))?;
    let counters = Arc::new(ServiceCounters::default());
    rt.block_on(async {
        if let Some(l) = metrics_listener {
            let l = tokio::net::TcpListener::from_std(l).map_err(io("metrics socket"))?;
            let name = backend.name.to_string();
            tokio::spawn(metrics::serve(l, manager.clone(), counters.clone(), name));
        }
        let mut hup = signal(SignalKind::hangup()).map_err(io("SIGHUP handler"))?;
        let mut term = signal(SignalKind::terminate()).map_err(io("SIGTERM handler"))?;
        let mut int = signal(SignalKind::interrupt()).map_err(io("SIGINT handler"))?;
        tracing::info!(backend = backend.name, library = %backend.library, "ready");
        loop {
            tokio::select! {
                _ = hup.recv() => reload(&cfg, &manager, &counters),
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        drain(&manager, cfg.drain_timeout).await;
        Ok::<(), StartError>(())
    })
}
