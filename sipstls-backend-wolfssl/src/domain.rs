//! The compiled server and client domains, and the client session cache.

use std::any::Any;
use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use sipstls_core::{ClientDomain, DomainConfig, Result, ServerDomain, ServerName, Session, SniCandidates};
use sipstls_wolfssl_sys as w;

use crate::backend::Ctx;
use crate::{session, tickets, WolfsslSession};

/// What a server session needs from its domain.
pub(crate) struct ServerInner {
    pub(crate) ctx: Ctx,
    pub(crate) cfg: DomainConfig,
    /// The ticket callback's context; dropped after `ctx` (declaration order).
    pub(crate) _tickets: Box<tickets::TicketKeys>,
}

/// A compiled server domain.
pub struct WolfsslServerDomain {
    pub(crate) inner: Arc<ServerInner>,
}

impl ServerDomain for WolfsslServerDomain {
    fn accept_with_sni(&self, sni: Option<Arc<SniCandidates>>) -> Result<Box<dyn Session>> {
        Ok(Box::new(WolfsslSession::server(self.inner.clone(), sni)))
    }

    fn config(&self) -> &DomainConfig {
        &self.inner.cfg
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The domain an SNI candidate stands for, if it is one of ours.
pub(crate) fn server_inner(d: &Arc<dyn ServerDomain>) -> Option<Arc<ServerInner>> {
    d.as_any().downcast_ref::<WolfsslServerDomain>().map(|d| d.inner.clone())
}

/// A session kept for resumption (a private copy of a `WOLFSSL_SESSION`).
pub(crate) struct CachedSession(NonNull<w::WOLFSSL_SESSION>);

// SAFETY: a WOLFSSL_SESSION is reference counted under a mutex in this build and only read
// (copied into a new session) while the cache's lock is held.
unsafe impl Send for CachedSession {}

impl CachedSession {
    pub(crate) fn new(p: *mut w::WOLFSSL_SESSION) -> Option<Self> {
        NonNull::new(p).map(CachedSession)
    }
    pub(crate) fn as_ptr(&self) -> *mut w::WOLFSSL_SESSION {
        self.0.as_ptr()
    }
}

impl Drop for CachedSession {
    fn drop(&mut self) {
        // SAFETY: we own this copy (from wolfSSL_SESSION_dup).
        unsafe { w::wolfSSL_SESSION_free(self.0.as_ptr()) };
    }
}

/// Client sessions by server name, for resumption.
pub(crate) type ClientCache = Mutex<HashMap<String, CachedSession>>;

pub(crate) const CLIENT_CACHE_SIZE: usize = 256;

/// A compiled client domain, with its cache of sessions for resumption.
pub struct WolfsslClientDomain {
    pub(crate) ctx: Ctx,
    pub(crate) cfg: DomainConfig,
    pub(crate) alpn: Vec<u8>,
    pub(crate) cache: Arc<ClientCache>,
}

impl ClientDomain for WolfsslClientDomain {
    fn connect(&self, server_name: Option<&ServerName>) -> Result<Box<dyn Session>> {
        let name = sipstls_core::resolve_server_name(&self.cfg, server_name)?;
        let key = name.as_ref().map(|n| n.to_string()).unwrap_or_default();
        let resume = self.cfg.resumption.tickets || self.cfg.resumption.session_ids;
        let s = WolfsslSession::client(session::ClientSetup {
            ctx: &self.ctx,
            cfg: &self.cfg,
            alpn: &self.alpn,
            name,
            cache: resume.then(|| (self.cache.clone(), key)),
        })?;
        Ok(Box::new(s))
    }

    fn config(&self) -> &DomainConfig {
        &self.cfg
    }
}

/// Stores a client session in the cache, evicting an arbitrary entry when full.
pub(crate) fn cache_put(cache: &ClientCache, key: String, s: CachedSession) {
    if let Ok(mut m) = cache.lock() {
        if m.len() >= CLIENT_CACHE_SIZE && !m.contains_key(&key) {
            if let Some(k) = m.keys().next().cloned() {
                m.remove(&k);
            }
        }
        m.insert(key, s);
    }
}
