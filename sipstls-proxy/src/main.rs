//! `sipstls-proxy`: the SIP-over-TLS terminator service. See `--help` and README.md.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};
use sipstls_config::ClientSelector;
use sipstls_manager::Route;
use sipstls_proxy::config::{self, LogFormat, ProxyConfig};
use tracing_subscriber::EnvFilter;

/// SIP over TLS in front of a plain-TCP SIP server (PROXY v2), and TLS out for it.
#[derive(Debug, Parser)]
#[command(name = "sipstls-proxy", about)]
struct Cli {
    /// The configuration file (TOML).
    #[arg(short, long, default_value = "/etc/sipstls-proxy/sipstls-proxy.toml")]
    config: PathBuf,
    /// Check the configuration and the TLS files it names, print what would run, exit.
    #[arg(long)]
    check_config: bool,
}

fn version() -> String {
    format!("{} (backends: {})", env!("CARGO_PKG_VERSION"), config::built().join(", "))
}

fn check(cfg: &ProxyConfig) -> Result<(), String> {
    let domains = cfg.domains()?;
    cfg.table()?;
    let b = cfg.backend().info();
    println!("configuration ok: {}", cfg.path.display());
    println!("backend: {} ({})", b.name, b.library);
    for l in &cfg.listen {
        let up: Vec<String> = l.upstreams.iter().map(|a| a.to_string()).collect();
        let check = l.health_check.map_or("off".to_string(), |d| format!("every {:?}", d));
        let proxy = if l.proxy_protocol { "PROXY v2" } else { "no PROXY header" };
        println!(
            "listen   {} tls://{} -> tcp://{} ({proxy}, health check {check})",
            l.name,
            l.address,
            up.join(", tcp://")
        );
    }
    for o in &cfg.outbound {
        match &o.route {
            Route::Static(t) => println!(
                "outbound {} tcp://{} -> tls://{} (server name {}, client domain {})",
                o.name,
                o.address,
                t.addr.map_or("-".to_string(), |a| a.to_string()),
                t.server_name.as_deref().unwrap_or("-"),
                t.id.as_deref().unwrap_or("by address")
            ),
            Route::ProxyV2 { domain_id } => println!(
                "outbound {} tcp://{} -> destination from each connection's PROXY v2 header (client domain {})",
                o.name,
                o.address,
                domain_id.as_deref().unwrap_or("by address")
            ),
            other => println!("outbound {} tcp://{} -> {other:?}", o.name, o.address),
        }
    }
    for s in &domains.servers {
        let sni = s.sni.as_ref().map_or("any".to_string(), |m| format!("{m:?}"));
        println!("server domain {}: listener {:?}, SNI {sni}", s.origin, s.listener);
    }
    for c in &domains.clients {
        let sel = match &c.selector {
            ClientSelector::Default => "default".to_string(),
            ClientSelector::Addr(a) => a.to_string(),
            ClientSelector::Name(n) => format!("name {n}"),
        };
        println!(
            "client domain {}: {sel}{}",
            c.origin,
            c.server_id.as_ref().map_or(String::new(), |i| format!(", id {i}"))
        );
    }
    if let Some(m) = cfg.metrics {
        println!("metrics  http://{m}/metrics");
    }
    if let Some(u) = &cfg.user {
        println!("user     {u}{}", cfg.group.as_ref().map_or(String::new(), |g| format!(":{g}")));
    }
    Ok(())
}

fn init_logs(cfg: &ProxyConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.log_level));
    // Colours only on a terminal: a journal or a log file gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    match cfg.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        _ => builder.init(),
    }
}

fn main() -> ExitCode {
    // clap keeps the version for the whole run: a string made once, at start.
    let matches = Cli::command().version(version().leak() as &str).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let cfg = match ProxyConfig::read(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if cli.check_config {
        return match check(&cfg) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    init_logs(&cfg);
    match sipstls_proxy::service::run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
