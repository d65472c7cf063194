//! A small, strict command-line parser for the examples (unknown flags are errors).

use std::net::SocketAddr;
use std::path::PathBuf;

use sipstls::{Backend, Certificate, DomainConfig, Identity, ProtocolVersion};

/// Options common to the example servers.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Backend name (`--backend`), default: the build's default backend.
    pub backend: Option<String>,
    /// Listen address (`--listen`), default 127.0.0.1:5061.
    pub listen: SocketAddr,
    /// Certificate chain PEM (`--cert`).
    pub cert: PathBuf,
    /// Private key PEM (`--key`).
    pub key: PathBuf,
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
        "usage: {prog} --cert FILE --key FILE [--backend NAME] [--listen ADDR] [--ca FILE]\n\
         \x20      [--require-client-cert] [--tls-min 1.2|1.3] [--max-seconds N]\n\
         backends in this build: {}",
        sipstls::backend_names().join(", ")
    )
}

impl ServerOptions {
    /// Parses `args` (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut backend = None;
        let mut listen: SocketAddr = "127.0.0.1:5061".parse().expect("static address");
        let (mut cert, mut key, mut ca) = (None, None, None);
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
        Ok(ServerOptions {
            backend,
            listen,
            cert: cert.ok_or("--cert is required")?,
            key: key.ok_or("--key is required")?,
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

    /// The server domain configuration these options describe.
    pub fn domain_config(&self) -> Result<DomainConfig, String> {
        let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        let identity = Identity::from_pem(&read(&self.cert)?, &read(&self.key)?).map_err(|e| e.to_string())?;
        let mut cfg = DomainConfig::server(identity).with_versions(self.tls_min, ProtocolVersion::Tls13);
        if let Some(ca) = &self.ca {
            let roots = Certificate::all_from_pem(&read(ca)?).map_err(|e| e.to_string())?;
            cfg = cfg.with_client_auth(roots, self.require_client_cert);
        }
        Ok(cfg)
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
