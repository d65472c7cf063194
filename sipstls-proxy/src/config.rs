//! The service's configuration file (TOML): TLS listeners and their upstreams, outbound
//! routes, limits and the service settings. The TLS domains come from a Kamailio `tls.cfg`
//! (or sipstls's TOML domain format) that the file names. Every error names the file and
//! line; nothing wrong is replaced by a default.
//!
//! ```toml
//! tls = "tls.cfg"                      # Kamailio's TLS profiles: certificates, domains
//!
//! [[listen]]                           # TLS in, plaintext with a PROXY v2 header out
//! address = "0.0.0.0:5061"
//! upstreams = ["127.0.0.1:5060"]       # Kamailio with tcp_accept_haproxy=yes
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sipstls::ClientTarget;
use sipstls::{Backend, DomainTable};
use sipstls_config::{Domains, KamailioConfig, ParseOptions};
use sipstls_manager::{ManagerConfig, Route};
use toml::Spanned;

/// A configuration error: where (file and line, when known) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// The 1-based line, when the error has one.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The file as written (serde model). Durations are seconds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls: Spanned<String>,
    #[serde(default)]
    tls_allow_deprecated_methods: bool,
    backend: Option<Spanned<String>>,
    #[serde(default)]
    listen: Vec<Spanned<ListenFile>>,
    #[serde(default)]
    outbound: Vec<Spanned<OutboundFile>>,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    service: ServiceFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenFile {
    name: Option<String>,
    address: Spanned<SocketAddr>,
    upstreams: Spanned<Vec<SocketAddr>>,
    #[serde(default = "yes")]
    proxy_protocol: bool,
    /// Seconds between upstream probes; 0 turns the checks off.
    #[serde(default = "two")]
    health_check: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutboundFile {
    name: Option<String>,
    address: Spanned<SocketAddr>,
    destination: Option<SocketAddr>,
    server_name: Option<String>,
    client_domain: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    max_connections: Option<usize>,
    handshake_timeout: Option<Spanned<f64>>,
    connect_timeout: Option<Spanned<f64>>,
    send_timeout: Option<Spanned<f64>>,
    max_queue: Option<usize>,
    threads: Option<Spanned<usize>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceFile {
    user: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
    metrics: Option<SocketAddr>,
    drain_timeout: Option<Spanned<f64>>,
    log_format: Option<Spanned<String>>,
    log_level: Option<String>,
}

fn yes() -> bool {
    true
}

fn two() -> f64 {
    2.0
}

/// A TLS listener: TLS peers in, plaintext to the upstreams.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ListenSpec {
    /// For logs and metrics.
    pub name: String,
    /// Where to listen.
    pub address: SocketAddr,
    /// The SIP server and its standbys, tried in turn.
    pub upstreams: Vec<SocketAddr>,
    /// Send a PROXY v2 header first (client address, SNI, TLS facts).
    pub proxy_protocol: bool,
    /// Interval of the upstream probes, if on.
    pub health_check: Option<Duration>,
}

/// An outbound listener: the SIP server connects with plaintext, the proxy with TLS.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct OutboundSpec {
    /// For logs and metrics.
    pub name: String,
    /// Where to listen (plaintext: keep it on loopback).
    pub address: SocketAddr,
    /// Where connections go.
    pub route: Route,
}

/// How the service logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A checked configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProxyConfig {
    /// The configuration file.
    pub path: PathBuf,
    /// The TLS domain file (Kamailio tls.cfg, or `.toml`).
    pub tls: PathBuf,
    /// Whether `tls` may use methods below TLS 1.2 (raised to TLS 1.2).
    pub tls_allow_deprecated_methods: bool,
    /// The backend's name (`rustls`, `openssl`, ...).
    pub backend: String,
    /// TLS listeners.
    pub listen: Vec<ListenSpec>,
    /// Outbound listeners.
    pub outbound: Vec<OutboundSpec>,
    /// The manager's limits and threads.
    pub manager: ManagerConfig,
    /// Drop to this user after binding.
    pub user: Option<String>,
    /// And this group (default: the user's).
    pub group: Option<String>,
    /// The Prometheus endpoint, if any.
    pub metrics: Option<SocketAddr>,
    /// How long a drain waits for connections to end before closing them.
    pub drain_timeout: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter (`info`, `sipstls_manager=debug`, ...), unless `RUST_LOG` is set.
    pub log_level: String,
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

struct Ctx<'a> {
    file: String,
    text: &'a str,
}

impl Ctx<'_> {
    fn at(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError { file: self.file.clone(), line: Some(line_of(self.text, span.start)), message: message.into() }
    }

    fn seconds(&self, v: &Option<Spanned<f64>>, key: &str, default: Duration) -> Result<Duration, ConfigError> {
        match v {
            None => Ok(default),
            Some(s) if s.get_ref().is_finite() && *s.get_ref() > 0.0 && *s.get_ref() <= 86_400.0 => {
                Ok(Duration::from_secs_f64(*s.get_ref()))
            }
            Some(s) => {
                Err(self.at(s.span(), format!("{key}: {} is not a number of seconds in (0, 86400]", s.get_ref())))
            }
        }
    }
}

impl ProxyConfig {
    /// Reads and checks `path` (the TLS file is only named here; [`ProxyConfig::domains`]
    /// reads it).
    pub fn read(path: impl AsRef<Path>) -> Result<ProxyConfig, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// Checks `text`, the contents of `path` (relative paths in it are relative to its
    /// directory).
    pub fn parse(text: &str, path: &Path) -> Result<ProxyConfig, ConfigError> {
        let cx = Ctx { file: path.display().to_string(), text };
        let f: File = toml::from_str(text).map_err(|e| ConfigError {
            file: cx.file.clone(),
            line: e.span().map(|s| line_of(text, s.start)),
            message: e.message().trim().to_string(),
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let tls = dir.join(f.tls.get_ref());
        let backend = match &f.backend {
            None => sipstls::default_backend().info().name.to_string(),
            Some(b) => match sipstls::backend(b.get_ref()) {
                Some(found) => found.info().name.to_string(),
                None => {
                    return Err(cx.at(
                        b.span(),
                        format!(
                            "backend \"{}\" is not compiled in (this build has: {})",
                            b.get_ref(),
                            built().join(", ")
                        ),
                    ))
                }
            },
        };
        if f.listen.is_empty() && f.outbound.is_empty() {
            return Err(ConfigError {
                file: cx.file.clone(),
                line: None,
                message: "nothing to do: no [[listen]] and no [[outbound]] section".into(),
            });
        }
        let mut seen: Vec<(SocketAddr, usize)> = Vec::new();
        let mut bind_once = |addr: &Spanned<SocketAddr>| -> Result<(), ConfigError> {
            let line = line_of(text, addr.span().start);
            if let Some((_, first)) = seen.iter().find(|(a, _)| a == addr.get_ref() && a.port() != 0) {
                return Err(cx.at(addr.span(), format!("address {} is already used on line {first}", addr.get_ref())));
            }
            seen.push((*addr.get_ref(), line));
            Ok(())
        };
        let mut listen = Vec::new();
        for l in &f.listen {
            let span = l.span();
            let l = l.get_ref();
            bind_once(&l.address)?;
            if l.upstreams.get_ref().is_empty() {
                return Err(cx.at(l.upstreams.span(), "upstreams: at least one address"));
            }
            if !(l.health_check.is_finite() && (0.0..=3600.0).contains(&l.health_check)) {
                return Err(cx.at(span, format!("health_check: {} is not 0 (off) to 3600 seconds", l.health_check)));
            }
            listen.push(ListenSpec {
                name: l.name.clone().unwrap_or_else(|| l.address.get_ref().to_string()),
                address: *l.address.get_ref(),
                upstreams: l.upstreams.get_ref().clone(),
                proxy_protocol: l.proxy_protocol,
                health_check: (l.health_check > 0.0).then(|| Duration::from_secs_f64(l.health_check)),
            });
        }
        let mut outbound = Vec::new();
        for o in &f.outbound {
            let span = o.span();
            let o = o.get_ref();
            bind_once(&o.address)?;
            let route = match o.destination {
                Some(dest) => {
                    let mut target = ClientTarget::addr(dest);
                    target.id = o.client_domain.clone();
                    target.server_name = o.server_name.clone();
                    Route::Static(target)
                }
                None if o.server_name.is_some() => {
                    return Err(cx.at(
                        span,
                        "server_name needs a destination (a dynamic route takes the name from the PROXY v2 header)",
                    ))
                }
                None => Route::ProxyV2 { domain_id: o.client_domain.clone() },
            };
            outbound.push(OutboundSpec {
                name: o.name.clone().unwrap_or_else(|| o.address.get_ref().to_string()),
                address: *o.address.get_ref(),
                route,
            });
        }
        let lim = &f.limits;
        let d = ManagerConfig::default();
        let threads = match &lim.threads {
            None => d.threads,
            Some(t) if (1..=256).contains(t.get_ref()) => *t.get_ref(),
            Some(t) => return Err(cx.at(t.span(), "threads: 1 to 256")),
        };
        let manager = ManagerConfig::default()
            .with_threads(threads)
            .with_handshake_timeout(cx.seconds(&lim.handshake_timeout, "handshake_timeout", d.handshake_timeout)?)
            .with_connect_timeout(cx.seconds(&lim.connect_timeout, "connect_timeout", d.connect_timeout)?)
            .with_send_timeout(cx.seconds(&lim.send_timeout, "send_timeout", d.send_timeout)?)
            .with_max_queue(lim.max_queue.unwrap_or(d.max_queue).max(16 * 1024))
            .with_max_connections(lim.max_connections.unwrap_or(d.max_connections));
        let s = &f.service;
        let log_format = match s.log_format.as_ref().map(|v| (v.get_ref().as_str(), v.span())) {
            None | Some(("text", _)) => LogFormat::Text,
            Some(("json", _)) => LogFormat::Json,
            Some((other, span)) => return Err(cx.at(span, format!("log_format: \"{other}\" (use text or json)"))),
        };
        if let Some(g) = &s.group {
            if s.user.is_none() {
                return Err(cx.at(g.span(), "group needs user"));
            }
        }
        Ok(ProxyConfig {
            path: path.to_path_buf(),
            tls,
            tls_allow_deprecated_methods: f.tls_allow_deprecated_methods,
            backend,
            listen,
            outbound,
            manager,
            user: s.user.as_ref().map(|u| u.get_ref().clone()),
            group: s.group.as_ref().map(|g| g.get_ref().clone()),
            metrics: s.metrics,
            drain_timeout: cx.seconds(&s.drain_timeout, "drain_timeout", Duration::from_secs(30))?,
            log_format,
            log_level: s.log_level.clone().unwrap_or_else(|| "info".into()),
        })
    }

    /// The backend this configuration names.
    pub fn backend(&self) -> Arc<dyn Backend> {
        // Checked in parse.
        sipstls::backend(&self.backend).unwrap_or_else(sipstls::default_backend)
    }

    /// Reads the TLS file and its certificates and keys.
    pub fn domains(&self) -> Result<Domains, String> {
        let mut options = ParseOptions::default();
        options.allow_deprecated_methods = self.tls_allow_deprecated_methods;
        let is_toml = self.tls.extension().is_some_and(|e| e == "toml");
        let parsed = if is_toml {
            KamailioConfig::read_toml(&self.tls, &options)
        } else {
            KamailioConfig::read(&self.tls, &options)
        }
        .map_err(|e| e.to_string())?;
        let base = self.tls.parent().unwrap_or(Path::new("."));
        parsed.load(base).map_err(|e| e.to_string())
    }

    /// The domain table: the TLS file read and compiled with the backend.
    pub fn table(&self) -> Result<DomainTable, String> {
        let domains = self.domains()?;
        let table = domains.build_table(self.backend()).map_err(|e| e.to_string())?;
        for l in &self.listen {
            if table.server_for(l.address).is_err() {
                return Err(format!(
                    "{}: no server profile serves listener {} ({}): add [server:default] or [server:{}]",
                    self.tls.display(),
                    l.name,
                    l.address,
                    l.address
                ));
            }
        }
        Ok(table)
    }
}

/// The backends of this build, with their library versions.
pub fn built() -> Vec<String> {
    sipstls::backends().iter().map(|b| format!("{} ({})", b.info().name, b.info().library)).collect()
}
