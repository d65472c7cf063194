//! The Prometheus endpoint: `GET /metrics` in the text exposition format (version 0.0.4),
//! rendered from the manager's counters at each scrape, on its own local address.
//!
//! The format is a few lines of text and the endpoint one path, so both are written here
//! rather than pulling in an HTTP server and a metrics registry for them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sipstls::stats::DomainStatsSnapshot;
use sipstls_manager::{ListenerKind, ListenerStats, TlsManager};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Counters of the service itself.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ServiceCounters {
    /// Successful reloads.
    pub reloads: AtomicU64,
    /// Reloads refused (the old configuration stayed).
    pub reload_failures: AtomicU64,
}

/// Escapes a label value.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn line(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", esc(v))).collect();
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
        } else {
            let _ = writeln!(self.0, "{name}{{{}}} {value}", labels.join(","));
        }
    }
}

/// The metrics text for `manager` now.
pub fn render(manager: &TlsManager, service: &ServiceCounters, backend: &str) -> String {
    let stats = manager.stats();
    let mut o = Out(String::with_capacity(4096));
    o.head("sipstls_proxy_info", "gauge", "The build: version and TLS backend in use.");
    o.line("sipstls_proxy_info", &[("version", env!("CARGO_PKG_VERSION")), ("backend", backend)], 1);
    // One series per listener.
    type PerListener = (&'static str, &'static str, &'static str, fn(&ListenerStats) -> u64);
    const PER_LISTENER: [PerListener; 6] = [
        ("sipstls_connections_active", "gauge", "Connections open now, by listener.", |l| l.active),
        ("sipstls_connections_accepted_total", "counter", "Connections accepted, by listener.", |l| l.accepted),
        ("sipstls_connections_refused_total", "counter", "Connections refused at accept: no upstream was up.", |l| {
            l.refused
        }),
        (
            "sipstls_handshakes_total",
            "counter",
            "TLS handshakes completed, by listener (inbound on TLS listeners, outbound on outbound ones).",
            |l| l.handshakes_ok,
        ),
        (
            "sipstls_tls_bytes_received_total",
            "counter",
            "Ciphertext bytes received from TLS peers, by listener.",
            |l| l.bytes_from_peers,
        ),
        ("sipstls_tls_bytes_sent_total", "counter", "Ciphertext bytes sent to TLS peers, by listener.", |l| {
            l.bytes_to_peers
        }),
    ];
    for (name, kind, help, value) in PER_LISTENER {
        o.head(name, kind, help);
        for l in &stats.listeners {
            o.line(name, &[("listener", &l.name)], value(l));
        }
    }
    o.head("sipstls_handshake_failures_total", "counter", "TLS handshakes failed, by listener and reason.");
    for l in &stats.listeners {
        for (reason, n) in &l.handshakes_failed {
            o.line("sipstls_handshake_failures_total", &[("listener", &l.name), ("reason", reason)], *n);
        }
    }
    o.head(
        "sipstls_connections_closed_total",
        "counter",
        "Connections ended, by listener and reason (send_timeout, write_queue_full, handshake_timeout, ...).",
    );
    for l in &stats.listeners {
        for (reason, n) in &l.closed {
            o.line("sipstls_connections_closed_total", &[("listener", &l.name), ("reason", reason)], *n);
        }
    }
    o.head("sipstls_upstream_up", "gauge", "1 while an upstream server is up, by listener and upstream.");
    for l in stats.listeners.iter().filter(|l| l.kind == ListenerKind::Tls) {
        for (addr, up) in &l.upstreams {
            o.line("sipstls_upstream_up", &[("listener", &l.name), ("upstream", &addr.to_string())], u64::from(*up));
        }
    }
    // One series per TLS domain of the table in use.
    type PerDomain = (&'static str, &'static str, &'static str, fn(&DomainStatsSnapshot) -> u64);
    const PER_DOMAIN: [PerDomain; 3] = [
        ("sipstls_domain_sessions_active", "gauge", "TLS sessions open now, by domain.", |d| d.active),
        ("sipstls_domain_handshakes_total", "counter", "TLS handshakes completed, by domain.", |d| d.handshakes_ok),
        ("sipstls_domain_handshake_failures_total", "counter", "TLS handshakes failed, by domain.", |d| {
            d.failed_total()
        }),
    ];
    let domains = manager.table().stats();
    for (name, kind, help, value) in PER_DOMAIN {
        o.head(name, kind, help);
        for d in &domains {
            o.line(name, &[("domain", &d.label)], value(d));
        }
    }
    o.head("sipstls_reloads_total", "counter", "Configuration reloads, by result.");
    o.line("sipstls_reloads_total", &[("result", "ok")], service.reloads.load(Ordering::Relaxed));
    o.line("sipstls_reloads_total", &[("result", "failed")], service.reload_failures.load(Ordering::Relaxed));
    o.0
}

/// Serves `GET /metrics` on `listener` (anything else: 404) until the task is dropped.
/// Each request is answered and the connection closed; a client gets 5 s to send its
/// request line.
pub async fn serve(listener: TcpListener, manager: Arc<TlsManager>, service: Arc<ServiceCounters>, backend: String) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let (manager, service, backend) = (manager.clone(), service.clone(), backend.clone());
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            let read = async {
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            };
            if tokio::time::timeout(Duration::from_secs(5), read).await.is_err() {
                return;
            }
            let request = String::from_utf8_lossy(&buf);
            let first = request.lines().next().unwrap_or("");
            let (status, body) = match first.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["GET", "/metrics", ..] => ("200 OK", render(&manager, &service, &backend)),
                _ => ("404 Not Found", "not found: GET /metrics\n".to_string()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}
