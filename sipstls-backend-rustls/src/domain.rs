//! The compiled server and client domains.

use std::any::Any;
use std::sync::Arc;

use rustls::server::Acceptor;
use rustls::{ClientConfig, ServerConfig};
use sipstls_core::{ClientDomain, DomainConfig, Error, Result, ServerDomain, ServerName, SniCandidates};

use crate::{errors, session, RustlsSession};

/// A compiled server domain.
pub struct RustlsServerDomain {
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) cfg: DomainConfig,
}

impl RustlsServerDomain {
    /// The rustls configuration (for benchmarks against the native API).
    pub fn rustls_config(&self) -> &Arc<ServerConfig> {
        &self.config
    }
}

impl ServerDomain for RustlsServerDomain {
    fn accept_with_sni(&self, sni: Option<Arc<SniCandidates>>) -> Result<Box<dyn sipstls_core::Session>> {
        Ok(Box::new(RustlsSession::server(
            Acceptor::default(),
            session::Selected { config: self.config.clone(), verify_peer: self.cfg.verify_peer },
            sni,
        )))
    }

    fn config(&self) -> &DomainConfig {
        &self.cfg
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A compiled client domain.
pub struct RustlsClientDomain {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) config_nosni: Arc<ClientConfig>,
    pub(crate) cfg: DomainConfig,
}

impl RustlsClientDomain {
    /// The rustls configuration (for benchmarks against the native API).
    pub fn rustls_config(&self) -> &Arc<ClientConfig> {
        &self.config
    }
}

impl ClientDomain for RustlsClientDomain {
    fn connect(&self, server_name: Option<&ServerName>) -> Result<Box<dyn sipstls_core::Session>> {
        let name = sipstls_core::resolve_server_name(&self.cfg, server_name)?;
        let (config, rustls_name, sni) = match &name {
            Some(ServerName::Dns(n)) => (
                &self.config,
                rustls_pki_types::ServerName::try_from(n.clone())
                    .map_err(|e| Error::config("server_name", e.to_string()))?,
                self.cfg.send_sni.then(|| n.clone()),
            ),
            Some(ServerName::Ip(ip)) => (&self.config, rustls_pki_types::ServerName::IpAddress((*ip).into()), None),
            // No name and name checks explicitly disabled: a placeholder that is never sent.
            None => (
                &self.config_nosni,
                rustls_pki_types::ServerName::try_from("unnamed.invalid").expect("static name"),
                None,
            ),
        };
        let conn =
            rustls::client::UnbufferedClientConnection::new(config.clone(), rustls_name).map_err(errors::map_error)?;
        Ok(Box::new(RustlsSession::client(conn, sni, self.cfg.verify_peer)?))
    }

    fn config(&self) -> &DomainConfig {
        &self.cfg
    }
}
