//! The command line of the example servers, declared with clap: help, unknown options,
//! missing values and conflicts are clap's; [`ServerOptions::check`] adds the rules that
//! span several options.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser};
use sipstls::{
    Backend, Certificate, DomainConfig, DomainTable, Identity, KeyLogFile, KeyLogSink, Listener, ProtocolVersion,
};
use sipstls_config::{KamailioConfig, ParseOptions};

/// What the example servers do on signals (the end of their help).
pub const SIGNALS: &str = "SIGHUP re-reads the certificates or --tls-cfg (a bad new configuration keeps the old \
one); SIGUSR1 prints per-domain statistics and the session list.";

/// A TLS version on the command line: `1.2` or `1.3`.
pub fn parse_version(v: &str) -> Result<ProtocolVersion, String> {
    match v {
        "1.2" => Ok(ProtocolVersion::Tls12),
        "1.3" => Ok(ProtocolVersion::Tls13),
        _ => Err("use 1.2 or 1.3".into()),
    }
}

/// The backend names of this build, for help texts.
fn backends_help() -> String {
    format!("Backend (in this build: {}; default: the build's default)", sipstls::backend_names().join(", "))
}

/// Options common to the example servers.
#[derive(Debug, Clone, Args)]
pub struct ServerOptions {
    /// Backend name, default: the build's default backend.
    #[arg(long, help = backends_help())]
    pub backend: Option<String>,
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:5061")]
    pub listen: SocketAddr,
    /// Certificate chain PEM (leaf first).
    #[arg(long, requires = "key", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Private key PEM.
    #[arg(long, requires = "cert", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// The TLS domains from a Kamailio `tls.cfg` file or directory, or a sipstls TOML file
    /// (name ending in `.toml`). Relative paths in it are relative to its directory.
    /// Re-read on SIGHUP.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["cert", "key", "ca", "tls_min"])]
    pub tls_cfg: Option<PathBuf>,
    /// Append session secrets to this file in the NSS key log format, for Wireshark. Off
    /// by default: whoever reads the file can decrypt the sessions.
    #[arg(long, value_name = "FILE")]
    pub key_log: Option<PathBuf>,
    /// CA PEM for client certificates: clients are asked for a certificate.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Refuse clients without a certificate.
    #[arg(long, requires = "ca")]
    pub require_client_cert: bool,
    /// Lowest TLS version: 1.2 or 1.3.
    #[arg(long, value_parser = parse_version, default_value = "1.2", value_name = "VERSION")]
    pub tls_min: ProtocolVersion,
    /// Stop after this many seconds, for tests and demos.
    #[arg(long, value_name = "N")]
    pub max_seconds: Option<u64>,
}

/// An example server's command line: [`ServerOptions`] alone.
#[derive(Debug, Parser)]
#[command(about = "A TLS server example on any sipstls backend", long_about = None, after_help = SIGNALS)]
struct ServerCli {
    #[command(flatten)]
    opts: ServerOptions,
}

/// Parses `args` (without the program name) as `P`, then checks it with `check`.
pub(crate) fn parse_with<P: Parser>(
    args: impl IntoIterator<Item = String>,
    check: impl FnOnce(P) -> Result<P, String>,
) -> Result<P, String> {
    let p = P::try_parse_from(std::iter::once(String::from("example")).chain(args)).map_err(|e| e.to_string())?;
    check(p)
}

/// Parses the process's own arguments as `P`, named `prog`; on `--help`, `--version` or an
/// error (clap's or `check`'s) prints it and exits (status 2 for errors).
pub(crate) fn from_env<P: Parser>(prog: &'static str, check: impl FnOnce(P) -> Result<P, String>) -> P {
    let mut cmd = P::command().name(prog).bin_name(prog);
    let matches = cmd.clone().get_matches();
    let p = P::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut cmd).exit());
    check(p).unwrap_or_else(|e| cmd.error(clap::error::ErrorKind::ArgumentConflict, e).exit())
}

impl ServerOptions {
    /// Parses `args` (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        parse_with(args, |c: ServerCli| c.opts.check().map(|opts| ServerCli { opts })).map(|c| c.opts)
    }

    /// Parses the process's arguments for the server `prog` (exits on `--help` or an error).
    pub fn from_env(prog: &'static str) -> Self {
        from_env(prog, |c: ServerCli| c.opts.check().map(|opts| ServerCli { opts })).opts
    }

    /// The rules clap does not see: the domains come from `--cert`/`--key` or from
    /// `--tls-cfg`.
    pub fn check(self) -> Result<Self, String> {
        if self.tls_cfg.is_none() && self.cert.is_none() {
            return Err("--cert and --key are required (or --tls-cfg)".into());
        }
        Ok(self)
    }

    /// The chosen backend.
    pub fn backend(&self) -> Result<std::sync::Arc<dyn Backend>, String> {
        match &self.backend {
            None => Ok(sipstls::default_backend()),
            Some(name) => sipstls::backend(name).ok_or_else(|| {
                format!("backend {name:?} is not in this build ({})", sipstls::backend_names().join(", "))
            }),
        }
    }

    /// The server domain configuration `--cert`/`--key`/`--ca` describe.
    pub fn domain_config(&self) -> Result<DomainConfig, String> {
        let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        let (Some(cert), Some(key)) = (&self.cert, &self.key) else {
            return Err("no --cert and --key (the domains come from --tls-cfg)".into());
        };
        let identity = Identity::from_pem(&read(cert)?, &read(key)?).map_err(|e| e.to_string())?;
        let mut cfg = DomainConfig::server(identity).with_versions(self.tls_min, ProtocolVersion::Tls13);
        if let Some(ca) = &self.ca {
            let roots = Certificate::all_from_pem(&read(ca)?).map_err(|e| e.to_string())?;
            cfg = cfg.with_client_auth(if self.require_client_cert {
                sipstls::ClientAuth::Required(roots)
            } else {
                sipstls::ClientAuth::Optional(roots)
            });
        }
        Ok(cfg)
    }

    /// The domain table these options describe, read from the files now: the domains of
    /// `--tls-cfg`, or one server domain from `--cert`/`--key`/`--ca`; every domain writes
    /// to `--key-log` when given. Called again on SIGHUP.
    pub fn table(&self) -> Result<DomainTable, String> {
        let backend = self.backend()?;
        let key_log = match &self.key_log {
            Some(p) => Some(KeyLogSink::new(KeyLogFile::open(p).map_err(|e| e.to_string())?)),
            None => None,
        };
        let with_log = |mut cfg: DomainConfig| {
            cfg.key_log = key_log.clone();
            cfg
        };
        let Some(path) = &self.tls_cfg else {
            let mut table = DomainTable::new(backend);
            table.add_server(Listener::Any, None, &with_log(self.domain_config()?)).map_err(|e| e.to_string())?;
            return Ok(table);
        };
        let options = ParseOptions::default();
        let cfg = if path.extension().is_some_and(|e| e == "toml") {
            KamailioConfig::read_toml(path, &options)
        } else {
            KamailioConfig::read(path, &options)
        }
        .map_err(|e| e.to_string())?;
        let base = if path.is_dir() { path.clone() } else { path.parent().map(PathBuf::from).unwrap_or_default() };
        let mut domains = cfg.load(&base).map_err(|e| e.to_string())?;
        for d in &mut domains.servers {
            d.config = with_log(d.config.clone());
        }
        for d in &mut domains.clients {
            d.config = with_log(d.config.clone());
        }
        domains.build_table(backend).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ServerOptions, String> {
        ServerOptions::parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn parses_all_options() {
        let o = parse("--backend openssl --listen 127.0.0.1:5999 --cert c --key k --ca a --require-client-cert --tls-min 1.3 --max-seconds 5").unwrap();
        assert_eq!(o.backend.as_deref(), Some("openssl"));
        assert_eq!(o.listen.port(), 5999);
        assert!(o.require_client_cert);
        assert_eq!(o.tls_min, ProtocolVersion::Tls13);
        assert_eq!(o.max_seconds, Some(5));
    }

    #[test]
    fn defaults() {
        let o = parse("--tls-cfg tls.cfg").unwrap();
        assert_eq!(o.listen, "127.0.0.1:5061".parse().unwrap());
        assert_eq!(o.tls_min, ProtocolVersion::Tls12);
        assert!(o.backend.is_none() && o.cert.is_none() && !o.require_client_cert);
    }

    #[test]
    fn rejects_bad_input() {
        let err = |s: &str| parse(s).expect_err(s);
        assert!(err("--cert c").contains("--key"));
        assert!(err("--cert c --key k --bogus").contains("--bogus"));
        assert!(err("--cert c --key k --tls-min 1.0").contains("use 1.2 or 1.3"));
        assert!(err("--cert c --key k --require-client-cert").contains("--ca"));
        assert!(err("--cert c --key k --listen nowhere").contains("--listen"));
        assert!(err("--listen 127.0.0.1:5062").contains("--tls-cfg"));
        assert!(err("--tls-cfg t --cert c --key k").contains("cannot be used with"));
        assert!(err("--cert c --key k --max-seconds").contains("--max-seconds"));
    }
}
