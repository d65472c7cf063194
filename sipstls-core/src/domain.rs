//! TLS domains chosen by local address and SNI (servers) or by id, remote address and name
//! (clients), as Kamailio's `tls.cfg` profiles and OpenSIPS's `tls_mgm` domains are.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::backend::{Backend, ClientDomain, ServerDomain};
use crate::config::{DomainConfig, ServerName};
use crate::error::{Error, Result};
use crate::session::Session;

/// How a server domain's name is compared with the client's SNI (case-insensitive;
/// Kamailio's `server_name_mode` 0, 1, 2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SniMatch {
    /// Only this exact name.
    Exact(String),
    /// The name and every subdomain of it.
    DomainAndSubdomains(String),
    /// Subdomains of the name, not the name itself.
    SubdomainsOnly(String),
}

impl SniMatch {
    fn base(&self) -> &str {
        match self {
            SniMatch::Exact(n) | SniMatch::DomainAndSubdomains(n) | SniMatch::SubdomainsOnly(n) => n,
        }
    }

    fn normalized(self) -> Result<SniMatch> {
        let norm = match ServerName::parse(self.base())? {
            ServerName::Dns(n) => n,
            ServerName::Ip(_) => return Err(Error::config("server_name", "SNI never carries an IP address")),
        };
        Ok(match self {
            SniMatch::Exact(_) => SniMatch::Exact(norm),
            SniMatch::DomainAndSubdomains(_) => SniMatch::DomainAndSubdomains(norm),
            SniMatch::SubdomainsOnly(_) => SniMatch::SubdomainsOnly(norm),
        })
    }

    /// How specifically this pattern matches the (lower-case) `sni`: `None` for no match;
    /// higher is more specific. An exact name beats any suffix; a longer suffix beats a
    /// shorter one.
    fn score(&self, sni: &str) -> Option<(u8, usize)> {
        let is_sub = |base: &str| {
            sni.len() > base.len() && sni.ends_with(base) && sni.as_bytes()[sni.len() - base.len() - 1] == b'.'
        };
        match self {
            SniMatch::Exact(n) => (sni == n).then_some((2, n.len())),
            SniMatch::DomainAndSubdomains(n) if sni == n => Some((2, n.len())),
            SniMatch::DomainAndSubdomains(n) | SniMatch::SubdomainsOnly(n) => is_sub(n).then_some((1, n.len())),
        }
    }
}

/// Which local listener a server domain serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Listener {
    /// Every listener.
    Any,
    /// One local address. An unspecified IP (`0.0.0.0:5061`, `[::]:5061`) matches every
    /// local address with that port.
    Addr(SocketAddr),
}

impl Listener {
    /// Specificity of a match with `local`: `None` when it does not match.
    fn score(&self, local: SocketAddr) -> Option<u8> {
        match self {
            Listener::Any => Some(0),
            Listener::Addr(a) if *a == local => Some(2),
            Listener::Addr(a) if a.ip().is_unspecified() && a.port() == local.port() => Some(1),
            Listener::Addr(_) => None,
        }
    }
}

struct ServerEntry {
    listener: Listener,
    sni: Option<SniMatch>,
    domain: Arc<dyn ServerDomain>,
    order: usize,
}

/// The server domains a connection on one listener may switch to by SNI. Backends call
/// [`select`](SniCandidates::select) from their SNI callback.
pub struct SniCandidates {
    entries: Vec<(SniMatch, u8, usize, Arc<dyn ServerDomain>)>,
}

impl SniCandidates {
    /// The most specific domain for `sni` (case-insensitive), or `None` to keep the
    /// listener's default domain.
    pub fn select(&self, sni: &str) -> Option<&Arc<dyn ServerDomain>> {
        let sni = sni.strip_suffix('.').unwrap_or(sni).to_ascii_lowercase();
        self.entries
            .iter()
            .filter_map(|(m, listener_score, order, d)| {
                m.score(&sni).map(|s| ((s, *listener_score, std::cmp::Reverse(*order)), d))
            })
            .max_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, d)| d)
    }

    /// True when no domain could be selected by SNI.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl fmt::Debug for SniCandidates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.entries.iter().map(|e| &e.0)).finish()
    }
}

/// The initial server domain for a listener and the domains its SNI may switch to.
pub type ServerSelection = (Arc<dyn ServerDomain>, Option<Arc<SniCandidates>>);

/// Where a client connection goes; the table picks the client domain from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTarget {
    /// An explicit client domain id (Kamailio's `server_id`). When set, it must exist.
    pub id: Option<String>,
    /// The remote address.
    pub addr: Option<SocketAddr>,
    /// The name to send as SNI and verify. Defaults to the domain's `server_name`, then to
    /// the remote address's IP.
    pub server_name: Option<String>,
}

impl ClientTarget {
    /// A target by name only.
    pub fn name(name: impl Into<String>) -> Self {
        ClientTarget { server_name: Some(name.into()), ..Default::default() }
    }

    /// A target by remote address and name.
    pub fn addr_name(addr: SocketAddr, name: impl Into<String>) -> Self {
        ClientTarget { addr: Some(addr), server_name: Some(name.into()), ..Default::default() }
    }
}

/// Server and client domains of one backend, with the rules that pick one per connection.
///
/// Servers: by local listener (exact address, then any address on the port, then any), then
/// by SNI during the handshake (exact name, then the longest matching parent domain; ties go
/// to the domain defined first). Clients: by explicit id, else remote address, else server
/// name (case-insensitive), else the default client domain.
pub struct DomainTable {
    backend: Arc<dyn Backend>,
    servers: Vec<ServerEntry>,
    clients_by_id: HashMap<String, Arc<dyn ClientDomain>>,
    clients_by_addr: HashMap<SocketAddr, Arc<dyn ClientDomain>>,
    clients_by_name: HashMap<String, Arc<dyn ClientDomain>>,
    client_default: Option<Arc<dyn ClientDomain>>,
}

impl DomainTable {
    /// An empty table for `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        DomainTable {
            backend,
            servers: Vec::new(),
            clients_by_id: HashMap::new(),
            clients_by_addr: HashMap::new(),
            clients_by_name: HashMap::new(),
            client_default: None,
        }
    }

    /// The backend the table compiles domains with.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Adds a server domain for `listener`, selected by SNI when `sni` is set, else the
    /// listener's default. A second default for the same listener, or the same SNI pattern
    /// twice on one listener, is refused.
    pub fn add_server(
        &mut self,
        listener: Listener,
        sni: Option<SniMatch>,
        config: &DomainConfig,
    ) -> Result<&mut Self> {
        let sni = sni.map(SniMatch::normalized).transpose()?;
        if self.servers.iter().any(|e| e.listener == listener && e.sni == sni) {
            return Err(Error::config(
                "domain",
                format!("a server domain for {listener:?} with SNI {sni:?} exists already"),
            ));
        }
        let domain = self.backend.server_domain(config)?;
        let order = self.servers.len();
        self.servers.push(ServerEntry { listener, sni, domain, order });
        Ok(self)
    }

    /// Adds the default client domain.
    pub fn add_client_default(&mut self, config: &DomainConfig) -> Result<&mut Self> {
        if self.client_default.is_some() {
            return Err(Error::config("domain", "a default client domain exists already"));
        }
        self.client_default = Some(self.backend.client_domain(config)?);
        Ok(self)
    }

    /// Adds a client domain chosen by explicit id.
    pub fn add_client_id(&mut self, id: &str, config: &DomainConfig) -> Result<&mut Self> {
        let d = self.backend.client_domain(config)?;
        insert_unique(&mut self.clients_by_id, id.to_owned(), d, "client id")?;
        Ok(self)
    }

    /// Adds a client domain chosen by remote address.
    pub fn add_client_addr(&mut self, addr: SocketAddr, config: &DomainConfig) -> Result<&mut Self> {
        let d = self.backend.client_domain(config)?;
        insert_unique(&mut self.clients_by_addr, addr, d, "client address")?;
        Ok(self)
    }

    /// Adds a client domain chosen by server name (case-insensitive).
    pub fn add_client_name(&mut self, name: &str, config: &DomainConfig) -> Result<&mut Self> {
        let key = match ServerName::parse(name)? {
            ServerName::Dns(n) => n,
            ServerName::Ip(ip) => ip.to_string(),
        };
        let d = self.backend.client_domain(config)?;
        insert_unique(&mut self.clients_by_name, key, d, "client name")?;
        Ok(self)
    }

    /// The SNI candidates and the initial domain for a connection accepted on `local`.
    pub fn server_for(&self, local: SocketAddr) -> Result<ServerSelection> {
        let mut initial: Option<(u8, &ServerEntry)> = None;
        let mut entries = Vec::new();
        for e in &self.servers {
            let Some(ls) = e.listener.score(local) else { continue };
            match &e.sni {
                None => {
                    if initial.is_none_or(|(best, _)| ls > best) {
                        initial = Some((ls, e));
                    }
                }
                Some(m) => entries.push((m.clone(), ls, e.order, e.domain.clone())),
            }
        }
        let (_, initial) = initial.ok_or_else(|| Error::NoDomain(format!("listener {local}")))?;
        let candidates = (!entries.is_empty()).then(|| Arc::new(SniCandidates { entries }));
        Ok((initial.domain.clone(), candidates))
    }

    /// Starts a server session for a connection accepted on `local`.
    pub fn accept(&self, local: SocketAddr) -> Result<Box<dyn Session>> {
        let (domain, candidates) = self.server_for(local)?;
        domain.accept(candidates)
    }

    /// The client domain for `target`, and the server name the session will use.
    pub fn client_for(&self, target: &ClientTarget) -> Result<(Arc<dyn ClientDomain>, Option<ServerName>)> {
        let name = target.server_name.as_deref().map(ServerName::parse).transpose()?;
        let domain = if let Some(id) = &target.id {
            self.clients_by_id.get(id).ok_or_else(|| Error::NoDomain(format!("client id {id:?}")))?
        } else if let Some(d) = target.addr.and_then(|a| self.clients_by_addr.get(&a)) {
            d
        } else if let Some(d) = name.as_ref().and_then(|n| self.clients_by_name.get(&n.to_string())) {
            d
        } else {
            self.client_default.as_ref().ok_or_else(|| Error::NoDomain(format!("client target {target:?}")))?
        };
        let name = match name {
            Some(n) => Some(n),
            None if domain.config().server_name.is_some() => None, // the domain's own
            None => target.addr.map(|a| ServerName::Ip(a.ip())),
        };
        Ok((domain.clone(), name))
    }

    /// Starts a client session for `target`.
    pub fn connect(&self, target: &ClientTarget) -> Result<Box<dyn Session>> {
        let (domain, name) = self.client_for(target)?;
        domain.connect(name.as_ref())
    }
}

impl fmt::Debug for DomainTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DomainTable")
            .field("backend", &self.backend.info().name)
            .field("servers", &self.servers.len())
            .field("clients", &(self.clients_by_id.len() + self.clients_by_addr.len() + self.clients_by_name.len()))
            .finish()
    }
}

fn insert_unique<K: std::hash::Hash + Eq + fmt::Debug>(
    map: &mut HashMap<K, Arc<dyn ClientDomain>>,
    key: K,
    d: Arc<dyn ClientDomain>,
    what: &str,
) -> Result<()> {
    if map.contains_key(&key) {
        return Err(Error::config("domain", format!("{what} {key:?} is defined twice")));
    }
    map.insert(key, d);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_scores_prefer_exact_then_longest_suffix() {
        let exact = SniMatch::Exact("a.b.example.com".into());
        let mode1 = SniMatch::DomainAndSubdomains("example.com".into());
        let mode1_long = SniMatch::DomainAndSubdomains("b.example.com".into());
        let mode2 = SniMatch::SubdomainsOnly("example.com".into());
        assert!(exact.score("a.b.example.com") > mode1_long.score("a.b.example.com"));
        assert!(mode1_long.score("a.b.example.com") > mode1.score("a.b.example.com"));
        assert_eq!(mode2.score("example.com"), None);
        assert!(mode2.score("x.example.com").is_some());
        assert!(mode1.score("example.com").is_some());
        assert_eq!(mode1.score("badexample.com"), None, "suffix must end at a label boundary");
        assert_eq!(exact.score("b.example.com"), None);
    }

    #[test]
    fn listener_scores() {
        let local: SocketAddr = "127.0.0.1:5061".parse().unwrap();
        assert_eq!(Listener::Any.score(local), Some(0));
        assert_eq!(Listener::Addr("0.0.0.0:5061".parse().unwrap()).score(local), Some(1));
        assert_eq!(Listener::Addr(local).score(local), Some(2));
        assert_eq!(Listener::Addr("127.0.0.1:5062".parse().unwrap()).score(local), None);
        assert_eq!(Listener::Addr("0.0.0.0:5062".parse().unwrap()).score(local), None);
    }

    #[test]
    fn sni_patterns_are_normalized_and_validated() {
        assert_eq!(
            SniMatch::Exact("SIP.Example.COM.".into()).normalized().unwrap(),
            SniMatch::Exact("sip.example.com".into())
        );
        assert!(SniMatch::Exact("127.0.0.1".into()).normalized().is_err());
        assert!(SniMatch::Exact("bad name".into()).normalized().is_err());
    }
}
