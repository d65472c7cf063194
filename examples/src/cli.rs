//! A small, strict command-line parser for the examples (unknown flags are errors).

use std::net::SocketAddr;
use std::path::PathBuf;

use sipstls::{
    Backend, Certificate, DomainConfig, DomainTable, Identity, KeyLogFile, KeyLogSink, Listener, ProtocolVersion,
};
use sipstls_config::{KamailioConfig, ParseOptions};

/// Options common to the example servers.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Backend name (`--backend`), default: the build's default backend.
    pub backend: Option<String>,
    /// Listen address (`--listen`), default 127.0.0.1:5061.
    pub listen: SocketAddr,
    /// Certificate chain PEM (`--cert`); not with `--tls-cfg`.
    pub cert: Option<PathBuf>,
    /// Private key PEM (`--key`); not with `--tls-cfg`.
    pub key: Option<PathBuf>,
    /// The TLS domains from a Kamailio `tls.cfg` file or directory, or a sipstls TOML file
    /// (name ending in `.toml`) (`--tls-cfg`). Relative paths in it are relative to its
    /// directory. Re-read on SIGHUP.
    pub tls_cfg: Option<PathBuf>,
    /// Append session secrets to this file in the NSS key log format (`--key-log`), for
    /// Wireshark. Off by default: whoever reads the file can decrypt the sessions.
    pub key_log: Option<PathBuf>,
    /// CA PEM for client certificates (`--ca`): clients are asked for a certificate.
    pub ca: Option<PathBuf>,
    /// Refuse clients without a certificate (`--require-client-cert`, needs `--ca`).
    pub require_client_cert: bool,
    /// Lowest TLS version (`--tls-min 1.2|1.3`).
    pub tls_min: ProtocolVersion,
    /// Stop after this many seconds (`--max-seconds`), for tests and demos.
    pub max_seconds: Option<u64>,
}

/// The usage text.
pub fn usage(prog: &str) -> String {
    format!(
        "usage: {prog} (--cert FILE --key FILE [--ca FILE] [--require-client-cert] [--tls-min 1.2|1.3]\n\
         \x20       | --tls-cfg FILE) [--backend NAME] [--listen ADDR] [--key-log FILE] [--max-seconds N]\n\
         SIGHUP re-reads the certificates or --tls-cfg (a bad new configuration keeps the old one);\n\
         SIGUSR1 prints per-domain statistics and the session list.\n\
         backends in this build: {}",
        sipstls::backend_names().join(", ")
    )
}

impl ServerOptions {
    /// Parses `args` (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut backend = None;
        let mut listen: SocketAddr = "127.0.0.1:5061".parse().expect("static address");
        let (mut cert, mut key, mut ca, mut tls_cfg, mut key_log) = (None, None, None, None, None);
        let mut require_client_cert = false;
        let mut tls_min = ProtocolVersion::Tls12;
        let mut max_seconds = None;
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--backend" => backend = Some(value()?),
                "--listen" => listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?,
                "--cert" => cert = Some(PathBuf::from(value()?)),
                "--key" => key = Some(PathBuf::from(value()?)),
                "--ca" => ca = Some(PathBuf::from(value()?)),
                "--tls-cfg" => tls_cfg = Some(PathBuf::from(value()?)),
                "--key-log" => key_log = Some(PathBuf::from(value()?)),
                "--require-client-cert" => require_client_cert = true,
                "--tls-min" => {
                    tls_min = match value()?.as_str() {
                        "1.2" => ProtocolVersion::Tls12,
                        "1.3" => ProtocolVersion::Tls13,
                        v => return Err(format!("--tls-min: {v} (use 1.2 or 1.3)")),
                    }
                }
                "--max-seconds" => max_seconds = Some(value()?.parse().map_err(|e| format!("--max-seconds: {e}"))?),
                other => return Err(format!("unknown option {other}")),
            }
        }
        if require_client_cert && ca.is_none() {
            return Err("--require-client-cert needs --ca".into());
        }
        if tls_cfg.is_some() {
            if cert.is_some() || key.is_some() || ca.is_some() || tls_min != ProtocolVersion::Tls12 {
                return Err("--tls-cfg holds the certificates and versions: no --cert, --key, --ca, --tls-min".into());
            }
        } else if cert.is_none() || key.is_none() {
            return Err("--cert and --key are required (or --tls-cfg)".into());
        }
        Ok(ServerOptions {
            backend,
            listen,
            cert,
            key,
            tls_cfg,
            key_log,
            ca,
            require_client_cert,
            tls_min,
            max_seconds,
        })
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
    fn rejects_bad_input() {
        assert!(parse("--cert c").unwrap_err().contains("--key"));
        assert!(parse("--cert c --key k --bogus").unwrap_err().contains("unknown option"));
        assert!(parse("--cert c --key k --tls-min 1.0").is_err());
        assert!(parse("--cert c --key k --require-client-cert").is_err());
        assert!(parse("--cert c --key k --listen nowhere").is_err());
    }
}
