//! The backend and domain traits.

use std::any::Any;
use std::sync::Arc;

use crate::caps::Capabilities;
use crate::config::{DomainConfig, ServerName};
use crate::domain::SniCandidates;
use crate::error::Result;
use crate::session::Session;

/// Facts about a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendInfo {
    /// Short name: `"rustls"`, `"openssl"`, `"boring"`, `"wolfssl"`, `"mbedtls"`.
    pub name: &'static str,
    /// The TLS library and its version as the library reports it at run time.
    pub library: String,
    /// SPDX licence expression of the TLS library as linked.
    pub license: &'static str,
}

impl BackendInfo {
    /// The facts a backend reports.
    pub fn new(name: &'static str, library: impl Into<String>, license: &'static str) -> Self {
        BackendInfo { name, library: library.into(), license }
    }
}

/// A TLS library behind the sipstls API. Object safe: servers hold `Arc<dyn Backend>`.
pub trait Backend: Send + Sync + 'static {
    /// Name, library version, licence.
    fn info(&self) -> BackendInfo;

    /// What this backend can do.
    fn capabilities(&self) -> Capabilities;

    /// Compiles `config` into a server domain. Settings the backend cannot honour are
    /// refused with [`Error::Unsupported`](crate::Error::Unsupported).
    fn server_domain(&self, config: &DomainConfig) -> Result<Arc<dyn ServerDomain>>;

    /// Compiles `config` into a client domain.
    fn client_domain(&self, config: &DomainConfig) -> Result<Arc<dyn ClientDomain>>;

    /// Fills `out` with cryptographically secure random bytes from the generator the
    /// backend's handshakes use (for SIP Call-IDs, tags, branches and nonces). After
    /// `fork()` every process gets its own stream: the fork checks prove it.
    fn fill_random(&self, out: &mut [u8]) -> Result<()>;

    /// Frees the TLS library's per-thread state (random generator, error queue) of the
    /// calling thread. Call it on a thread, or in a worker process, that will make no more
    /// TLS calls before it ends: with the library's memory in a shared arena, that state
    /// would otherwise stay allocated there after the process is gone (the migrating fork
    /// check asserts the arena returns to its baseline).
    fn release_thread_state(&self) {}

    /// Prepares the TLS library for sessions that several forked processes will share
    /// (the migrating model): builds, before `fork()`, the tables the library would
    /// otherwise build lazily and separately in each process. The work runs in a helper
    /// thread, so the calling thread gets no per-thread library state. Call it in the
    /// parent after installing the allocator hooks and before forking.
    fn prepare_for_fork(&self) -> Result<()> {
        Ok(())
    }

    /// Whether this backend can run in `model`; `Err(Unsupported)` says why not. The
    /// answer comes from [`capabilities`](Backend::capabilities), which the fork
    /// conformance checks keep honest.
    fn supports_model(&self, model: ProcessModel) -> Result<()> {
        if self.capabilities().contains(model.capability()) {
            Ok(())
        } else {
            Err(crate::Error::unsupported(
                self.info().name,
                model.capability(),
                format!("the {model:?} process model did not pass this backend's fork conformance checks"),
            ))
        }
    }
}

/// How TLS sessions are spread over the processes of a SIP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::exhaustive_enums)] // closed: a backend must decide on every model it could be run in
pub enum ProcessModel {
    /// One process (with threads) owns every TLS session; workers see plaintext.
    Confined,
    /// Domains are built before `fork()`; each session lives in the worker that accepted
    /// its socket; tickets issued by one worker resume in any other.
    Pinned,
    /// Sessions live in shared memory and any worker may advance any session.
    Migrating,
}

impl ProcessModel {
    /// The capability flag that claims this model.
    pub fn capability(self) -> Capabilities {
        match self {
            ProcessModel::Confined => Capabilities::MODEL_CONFINED,
            ProcessModel::Pinned => Capabilities::MODEL_PINNED,
            ProcessModel::Migrating => Capabilities::MODEL_MIGRATING,
        }
    }
}

/// A compiled server-side TLS domain: certificate, key, verification and protocol settings.
pub trait ServerDomain: Send + Sync + 'static {
    /// Starts a server session with this domain (no switch by SNI). Applications with
    /// several domains use [`DomainTable::accept`](crate::DomainTable::accept), which picks
    /// the domain by listener and SNI.
    fn accept(&self) -> Result<Box<dyn Session>> {
        self.accept_with_sni(None)
    }

    /// For [`DomainTable`](crate::DomainTable) and the backends: starts a server session
    /// with this domain, which the client's SNI may switch, during the handshake, to one of
    /// `sni`'s domains of the same backend ([`SniCandidates::select`]).
    fn accept_with_sni(&self, sni: Option<Arc<SniCandidates>>) -> Result<Box<dyn Session>>;

    /// The configuration this domain was built from.
    fn config(&self) -> &DomainConfig;

    /// For backends to recover their own type from `Arc<dyn ServerDomain>` in SNI switching.
    fn as_any(&self) -> &dyn Any;
}

/// A compiled client-side TLS domain.
pub trait ClientDomain: Send + Sync + 'static {
    /// Starts a client session to `server_name` (or the domain's configured
    /// `server_name` when `None`), which is sent as SNI and verified.
    fn connect(&self, server_name: Option<&ServerName>) -> Result<Box<dyn Session>>;

    /// The configuration this domain was built from.
    fn config(&self) -> &DomainConfig;
}

/// Resolves the server name a client session should use: the one given, else the domain's
/// configured one. Errors when names are verified and there is none.
pub fn resolve_server_name(config: &DomainConfig, given: Option<&ServerName>) -> Result<Option<ServerName>> {
    let name = match given {
        Some(n) => Some(n.clone()),
        None => config.server_name.as_deref().map(ServerName::parse).transpose()?,
    };
    if name.is_none() && config.verify_peer && config.name_verification == crate::config::NameVerification::Rfc5922 {
        return Err(crate::Error::config(
            "server_name",
            "no server name to verify: pass one to connect(), configure server_name, or \
             choose NameVerification::DangerousDisabled",
        ));
    }
    Ok(name)
}
