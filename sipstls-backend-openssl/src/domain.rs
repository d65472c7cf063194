//! The compiled server and client domains.

use std::any::Any;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use sipstls_core::x509::sip_identity_matches;
use sipstls_core::{
    ClientDomain, DomainConfig, Error, NameVerification, Result, Role, ServerDomain, ServerName, Session, SniCandidates,
};
use ssl_lib::ssl::{Ssl, SslContext, SslSession, SslVerifyMode};
use ssl_lib::x509::X509StoreContextRef;
use ssl_lib::ForeignType;

use crate::backend::{
    apply_server_verify, backend_err, cache_key_index, sni_index, verify_index, SSL_SESSION_is_resumable, VerifyPeer,
};
use crate::{ssl_lib, OpensslSession};

/// A compiled server domain.
pub struct OpensslServerDomain {
    pub(crate) ctx: SslContext,
    pub(crate) cfg: DomainConfig,
}

impl OpensslServerDomain {
    /// The OpenSSL context (for benchmarks against the native API).
    pub fn ssl_context(&self) -> &SslContext {
        &self.ctx
    }
}

impl ServerDomain for OpensslServerDomain {
    fn accept_with_sni(&self, sni: Option<Arc<SniCandidates>>) -> Result<Box<dyn Session>> {
        let mut ssl = Ssl::new(&self.ctx).map_err(backend_err)?;
        apply_server_verify(&mut ssl, &self.cfg);
        if let Some(c) = sni {
            ssl.set_ex_data(sni_index(), c);
        }
        ssl_lib::set_accept_state(&mut ssl);
        Ok(Box::new(OpensslSession::new(ssl, Role::Server, None)?))
    }

    fn config(&self) -> &DomainConfig {
        &self.cfg
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A compiled client domain, with its cache of sessions for resumption.
pub struct OpensslClientDomain {
    pub(crate) ctx: SslContext,
    pub(crate) cfg: DomainConfig,
    pub(crate) cache: Arc<Mutex<HashMap<String, CachedSession>>>,
}

/// A client session kept for resumption: the object OpenSSL gave us, and its encoding.
///
/// OpenSSL marks a session object "not resumable" in place when a TLS 1.2 ticket is
/// renewed during resumption (and copies that flag into the renewed session). The object
/// is used while it is still resumable (fast); otherwise a copy decoded from the DER,
/// which does not carry the flag, is used (decoding costs a certificate parse).
pub(crate) struct CachedSession {
    pub(crate) live: SslSession,
    pub(crate) der: Vec<u8>,
}

impl CachedSession {
    fn usable(&self) -> Option<SslSession> {
        // SAFETY: `live` is a valid SSL_SESSION for the duration of the call; the function
        // only reads its flags (a C boolean).
        if unsafe { SSL_SESSION_is_resumable(self.live.as_ptr()) } != 0 {
            return Some(self.live.clone());
        }
        SslSession::from_der(&self.der).ok()
    }
}

impl OpensslClientDomain {
    /// The OpenSSL context (for benchmarks against the native API).
    pub fn ssl_context(&self) -> &SslContext {
        &self.ctx
    }
}

/// The client-side verify callback: OpenSSL's chain verdict, then RFC 5922 on the leaf.
pub(crate) fn verify_name(preverify_ok: bool, ctx: &mut X509StoreContextRef, want: &ServerName) -> bool {
    if !preverify_ok {
        return false;
    }
    if ctx.error_depth() != 0 {
        return true;
    }
    let matches = ctx
        .current_cert()
        .and_then(|c| c.to_der().ok())
        .and_then(|der| sip_identity_matches(&der, want).ok())
        .unwrap_or(false);
    if !matches {
        ctx.set_error(ssl_lib::hostname_mismatch());
    }
    matches
}

impl ClientDomain for OpensslClientDomain {
    fn connect(&self, server_name: Option<&ServerName>) -> Result<Box<dyn Session>> {
        let name = sipstls_core::resolve_server_name(&self.cfg, server_name)?;
        let mut ssl = Ssl::new(&self.ctx).map_err(backend_err)?;
        let mut sni = None;
        if let Some(ServerName::Dns(n)) = &name {
            if self.cfg.send_sni {
                ssl.set_hostname(n).map_err(|e| Error::config("server_name", e.to_string()))?;
                sni = Some(n.clone());
            }
        }
        if self.cfg.verify_peer {
            match (self.cfg.name_verification, name.clone()) {
                (NameVerification::Rfc5922, Some(want)) => {
                    ssl.set_verify_callback(SslVerifyMode::PEER, move |ok, ctx| {
                        catch_unwind(AssertUnwindSafe(|| verify_name(ok, ctx, &want))).unwrap_or(false)
                    });
                }
                _ => ssl.set_verify(SslVerifyMode::PEER),
            }
        } else {
            ssl.set_verify(SslVerifyMode::NONE);
        }
        ssl.set_ex_data(verify_index(), VerifyPeer(self.cfg.verify_peer));
        let key = name.as_ref().map(|n| n.to_string()).unwrap_or_default();
        let cached = self.cache.lock().ok().and_then(|m| m.get(&key).and_then(CachedSession::usable));
        if let Some(sess) = cached {
            // SAFETY: `sess` is (a decoded copy of) a session produced by a connection of
            // this same SSL_CTX (the cache belongs to this domain), which is what
            // SSL_set_session requires.
            unsafe { ssl.set_session(&sess) }.map_err(backend_err)?;
        }
        ssl.set_ex_data(cache_key_index(), key);
        ssl_lib::set_connect_state(&mut ssl);
        let expected = name.map(|n| n.to_string());
        Ok(Box::new(OpensslSession::new(ssl, Role::Client, sni.or(None)).map(|s| s.expecting(expected))?))
    }

    fn config(&self) -> &DomainConfig {
        &self.cfg
    }
}
