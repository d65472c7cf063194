//! TLS domains chosen by local address and SNI (servers) or by id, remote address and name
//! (clients), as Kamailio's `tls.cfg` profiles and OpenSIPS's `tls_mgm` domains are.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::backend::{Backend, ClientDomain, ServerDomain};
use crate::config::{DomainConfig, ServerName};
use crate::error::{Error, Result};
use crate::session::Session;
use crate::stats::{DomainStats, DomainStatsSnapshot, Keep, SessionSnapshot, TrackedSession};

/// How a server domain's name is compared with the client's SNI (case-insensitive;
/// Kamailio's `server_name_mode` 0, 1, 2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
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
#[non_exhaustive]
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

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listener::Any => f.write_str("any"),
            Listener::Addr(a) => write!(f, "{a}"),
        }
    }
}

impl fmt::Display for SniMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SniMatch::Exact(n) => f.write_str(n),
            SniMatch::DomainAndSubdomains(n) => write!(f, "{n} and *.{n}"),
            SniMatch::SubdomainsOnly(n) => write!(f, "*.{n}"),
        }
    }
}

struct ServerEntry {
    listener: Listener,
    sni: Option<SniMatch>,
    domain: Arc<dyn ServerDomain>,
    order: usize,
    stats: Arc<DomainStats>,
}

#[derive(Clone)]
struct ClientEntry {
    domain: Arc<dyn ClientDomain>,
    stats: Arc<DomainStats>,
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

/// What a listener serves: the domain a connection starts with and the domains the
/// client's SNI may switch it to ([`DomainTable::server_for`]).
#[derive(Clone)]
#[non_exhaustive]
pub struct ServerSelection {
    /// The domain used until SNI selects another (the listener's default domain).
    pub initial: Arc<dyn ServerDomain>,
    /// The domains SNI may select; `None` when no domain of this listener has an SNI
    /// pattern.
    pub by_sni: Option<Arc<SniCandidates>>,
}

impl ServerSelection {
    /// The domain a ClientHello with `sni` ends up with.
    pub fn for_sni(&self, sni: &str) -> &Arc<dyn ServerDomain> {
        self.by_sni.as_ref().and_then(|c| c.select(sni)).unwrap_or(&self.initial)
    }
}

impl fmt::Debug for ServerSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSelection").field("by_sni", &self.by_sni).finish_non_exhaustive()
    }
}

/// Where a client connection goes; the table picks the client domain from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
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

    /// A target by remote address (the name: the domain's `server_name`, else the IP).
    pub fn addr(addr: SocketAddr) -> Self {
        ClientTarget { addr: Some(addr), ..Default::default() }
    }

    /// Sets the name to send as SNI and verify.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Chooses the client domain by id (Kamailio's `server_id`).
    pub fn domain_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
}

/// Server and client domains of one backend, with the rules that pick one per connection.
///
/// Servers: by local listener (exact address, then any address on the port, then any), then
/// by SNI during the handshake (exact name, then the longest matching parent domain; ties go
/// to the domain defined first). Clients: by explicit id, else remote address, else server
/// name (case-insensitive), else the default client domain.
///
/// Every session the table starts is counted in its domain's [`DomainStats`]
/// ([`stats`](DomainTable::stats), [`sessions`](DomainTable::sessions)). To replace the
/// table while sessions run, hold it in a [`ReloadableTable`].
pub struct DomainTable {
    backend: Arc<dyn Backend>,
    servers: Vec<ServerEntry>,
    clients_by_id: HashMap<String, ClientEntry>,
    clients_by_addr: HashMap<SocketAddr, ClientEntry>,
    clients_by_name: HashMap<String, ClientEntry>,
    client_default: Option<ClientEntry>,
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
    ///
    /// Every listener needs a default (a domain with `sni: None` on it, on its port or on
    /// [`Listener::Any`]), even when every client sends SNI: a session starts with the
    /// default domain before the ClientHello is read, and clients without SNI or with a
    /// name that matches no pattern stay on it. Without one, [`accept`](Self::accept)
    /// fails with [`Error::NoDomain`] for that listener (check it at start-up with
    /// [`server_for`](Self::server_for)).
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
        let label = match &sni {
            None => format!("server {listener}"),
            Some(m) => format!("server {listener} sni {m}"),
        };
        self.servers.push(ServerEntry { listener, sni, domain, order, stats: DomainStats::new(label) });
        Ok(self)
    }

    fn client_entry(&self, config: &DomainConfig, label: String) -> Result<ClientEntry> {
        Ok(ClientEntry { domain: self.backend.client_domain(config)?, stats: DomainStats::new(label) })
    }

    /// Adds the default client domain.
    pub fn add_client_default(&mut self, config: &DomainConfig) -> Result<&mut Self> {
        if self.client_default.is_some() {
            return Err(Error::config("domain", "a default client domain exists already"));
        }
        self.client_default = Some(self.client_entry(config, "client default".into())?);
        Ok(self)
    }

    /// Adds a client domain chosen by explicit id.
    pub fn add_client_id(&mut self, id: &str, config: &DomainConfig) -> Result<&mut Self> {
        let d = self.client_entry(config, format!("client id {id}"))?;
        insert_unique(&mut self.clients_by_id, id.to_owned(), d, "client id")?;
        Ok(self)
    }

    /// Adds a client domain chosen by remote address.
    pub fn add_client_addr(&mut self, addr: SocketAddr, config: &DomainConfig) -> Result<&mut Self> {
        let d = self.client_entry(config, format!("client addr {addr}"))?;
        insert_unique(&mut self.clients_by_addr, addr, d, "client address")?;
        Ok(self)
    }

    /// Adds a client domain chosen by server name (case-insensitive).
    pub fn add_client_name(&mut self, name: &str, config: &DomainConfig) -> Result<&mut Self> {
        let key = match ServerName::parse(name)? {
            ServerName::Dns(n) => n,
            ServerName::Ip(ip) => ip.to_string(),
        };
        let d = self.client_entry(config, format!("client name {key}"))?;
        insert_unique(&mut self.clients_by_name, key, d, "client name")?;
        Ok(self)
    }

    /// The SNI candidates and the initial domain for a connection accepted on `local`.
    pub fn server_for(&self, local: SocketAddr) -> Result<ServerSelection> {
        self.server_entry_for(local).map(|(e, by_sni)| ServerSelection { initial: e.domain.clone(), by_sni })
    }

    fn server_entry_for(&self, local: SocketAddr) -> Result<(&ServerEntry, Option<Arc<SniCandidates>>)> {
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
        Ok((initial, candidates))
    }

    /// Starts a server session for a connection accepted on `local` (the listener's
    /// address: it picks the domain until SNI picks another) from `peer` (shown in the
    /// session list; `None` when unknown).
    pub fn accept(&self, local: SocketAddr, peer: Option<SocketAddr>) -> Result<Box<dyn Session>> {
        self.accept_keeping(local, peer, None)
    }

    fn accept_keeping(
        &self,
        local: SocketAddr,
        peer: Option<SocketAddr>,
        keep: Option<Keep>,
    ) -> Result<Box<dyn Session>> {
        let (entry, candidates) = self.server_entry_for(local)?;
        let session = entry.domain.accept_with_sni(candidates)?;
        Ok(TrackedSession::boxed(session, entry.stats.clone(), peer, keep))
    }

    /// The client domain for `target`, and the server name the session will use.
    pub fn client_for(&self, target: &ClientTarget) -> Result<(Arc<dyn ClientDomain>, Option<ServerName>)> {
        self.client_entry_for(target).map(|(e, n)| (e.domain.clone(), n))
    }

    fn client_entry_for(&self, target: &ClientTarget) -> Result<(&ClientEntry, Option<ServerName>)> {
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
            None if domain.domain.config().server_name.is_some() => None, // the domain's own
            None => target.addr.map(|a| ServerName::Ip(a.ip())),
        };
        Ok((domain, name))
    }

    /// Starts a client session for `target`.
    pub fn connect(&self, target: &ClientTarget) -> Result<Box<dyn Session>> {
        self.connect_keeping(target, None)
    }

    fn connect_keeping(&self, target: &ClientTarget, keep: Option<Keep>) -> Result<Box<dyn Session>> {
        let (entry, name) = self.client_entry_for(target)?;
        let session = entry.domain.connect(name.as_ref())?;
        Ok(TrackedSession::boxed(session, entry.stats.clone(), target.addr, keep))
    }

    /// As [`accept`](DomainTable::accept), and the session keeps this table alive (what a
    /// [`ReloadableTable`] hands out).
    pub(crate) fn accept_arc(
        self: &Arc<Self>,
        local: SocketAddr,
        peer: Option<SocketAddr>,
    ) -> Result<Box<dyn Session>> {
        self.accept_keeping(local, peer, Some(self.clone() as Keep))
    }

    /// As [`connect`](DomainTable::connect), and the session keeps this table alive.
    pub(crate) fn connect_arc(self: &Arc<Self>, target: &ClientTarget) -> Result<Box<dyn Session>> {
        self.connect_keeping(target, Some(self.clone() as Keep))
    }

    /// Every domain's counters, servers first in the order they were added, then clients
    /// (default, by id, by address, by name; each group sorted by label).
    pub fn domain_stats(&self) -> Vec<Arc<DomainStats>> {
        let mut out: Vec<Arc<DomainStats>> = self.servers.iter().map(|e| e.stats.clone()).collect();
        out.extend(self.client_default.iter().map(|e| e.stats.clone()));
        for map in [
            self.clients_by_id.values().collect::<Vec<_>>(),
            self.clients_by_addr.values().collect(),
            self.clients_by_name.values().collect(),
        ] {
            let mut group: Vec<_> = map.into_iter().map(|e| e.stats.clone()).collect();
            group.sort_by(|a, b| a.label().cmp(b.label()));
            out.extend(group);
        }
        out
    }

    /// A copy of every domain's counters (see [`domain_stats`](DomainTable::domain_stats)).
    pub fn stats(&self) -> Vec<DomainStatsSnapshot> {
        self.domain_stats().iter().map(|d| d.snapshot()).collect()
    }

    /// The live sessions of every domain, with the domain's label.
    pub fn sessions(&self) -> Vec<(String, SessionSnapshot)> {
        self.domain_stats().iter().flat_map(|d| d.sessions().into_iter().map(|s| (d.label().to_owned(), s))).collect()
    }

    /// Takes over the counters of `old`'s domains that have the same labels, so statistics
    /// continue across a reload.
    fn adopt_stats(&mut self, old: &DomainTable) {
        let by_label: HashMap<&str, &Arc<DomainStats>> = old.domain_stats_refs().map(|s| (s.label(), s)).collect();
        for slot in self.domain_stats_slots() {
            if let Some(s) = by_label.get(slot.label()) {
                *slot = Arc::clone(s);
            }
        }
    }

    fn domain_stats_refs(&self) -> impl Iterator<Item = &Arc<DomainStats>> {
        self.servers.iter().map(|e| &e.stats).chain(
            self.client_default
                .iter()
                .chain(self.clients_by_id.values())
                .chain(self.clients_by_addr.values())
                .chain(self.clients_by_name.values())
                .map(|e| &e.stats),
        )
    }

    fn domain_stats_slots(&mut self) -> impl Iterator<Item = &mut Arc<DomainStats>> {
        self.servers.iter_mut().map(|e| &mut e.stats).chain(
            self.client_default
                .iter_mut()
                .chain(self.clients_by_id.values_mut())
                .chain(self.clients_by_addr.values_mut())
                .chain(self.clients_by_name.values_mut())
                .map(|e| &mut e.stats),
        )
    }
}

/// A [`DomainTable`] that can be replaced while sessions run (a configuration reload).
///
/// [`reload`](ReloadableTable::reload) swaps the whole table at once: sessions started
/// before keep the domain they were started with (each session holds its table), new
/// sessions get the new table, and the old table is freed when its last session ends. A
/// new table that fails to build is never installed: build it first, then swap, as
/// [`try_reload`](ReloadableTable::try_reload) does. Statistics of domains with the same
/// label carry over.
pub struct ReloadableTable {
    current: RwLock<Arc<DomainTable>>,
    reloads: AtomicU64,
}

impl ReloadableTable {
    /// Starts with `table`.
    pub fn new(table: DomainTable) -> Self {
        Self::from_arc(Arc::new(table))
    }

    /// Starts with a table that is shared already.
    pub fn from_arc(table: Arc<DomainTable>) -> Self {
        ReloadableTable { current: RwLock::new(table), reloads: AtomicU64::new(0) }
    }

    /// The table new sessions use now.
    pub fn current(&self) -> Arc<DomainTable> {
        // Only a swap writes, and it cannot panic while holding the lock.
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Installs `table` for new sessions and returns the one it replaces.
    pub fn reload(&self, mut table: DomainTable) -> Arc<DomainTable> {
        let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
        table.adopt_stats(&cur);
        let old = std::mem::replace(&mut *cur, Arc::new(table));
        self.reloads.fetch_add(1, Ordering::Relaxed);
        old
    }

    /// Builds a new table with `build` (given the current table's backend) and installs
    /// it; when `build` fails, its error is returned and the current table stays.
    pub fn try_reload<F>(&self, build: F) -> Result<()>
    where
        F: FnOnce(&Arc<dyn Backend>) -> Result<DomainTable>,
    {
        let backend = self.current().backend().clone();
        let table = build(&backend)?;
        self.reload(table);
        Ok(())
    }

    /// How many reloads have been installed.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// Starts a server session with the current table (see [`DomainTable::accept`]).
    pub fn accept(&self, local: SocketAddr, peer: Option<SocketAddr>) -> Result<Box<dyn Session>> {
        self.current().accept_arc(local, peer)
    }

    /// Starts a client session with the current table (see [`DomainTable::connect`]).
    pub fn connect(&self, target: &ClientTarget) -> Result<Box<dyn Session>> {
        self.current().connect_arc(target)
    }
}

impl fmt::Debug for ReloadableTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadableTable").field("current", &self.current()).field("reloads", &self.reloads()).finish()
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
    map: &mut HashMap<K, ClientEntry>,
    key: K,
    d: ClientEntry,
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
