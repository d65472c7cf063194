//! The rustls backend: how a `DomainConfig` becomes rustls configurations.

use std::sync::Arc;

use rustls::client::Resumption as ClientResumption;
use rustls::crypto::CryptoProvider;
use rustls::server::{NoServerSessionStorage, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedCipherSuite};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
use sipstls_core::{
    Backend, BackendInfo, Capabilities, ClientDomain, DomainConfig, Error, Identity, PrivateKeyFormat, ProcessModel,
    ProtocolVersion, Result, Resumption, Role, ServerDomain,
};

use crate::{
    hooks, prefork, store, tickets, verify, RustlsClientDomain, RustlsServerDomain, NAME, TICKET_KEY_PERIOD_SECS,
};

/// The rustls backend. Cheap to clone; holds the crypto provider.
#[derive(Debug, Clone)]
pub struct RustlsBackend {
    provider: Arc<CryptoProvider>,
}

impl Default for RustlsBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl RustlsBackend {
    /// A backend using the aws-lc-rs provider.
    pub fn new() -> Self {
        RustlsBackend { provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()) }
    }

    const CAPS: Capabilities = Capabilities::TLS12
        .union(Capabilities::TLS13)
        .union(Capabilities::CLIENT_CERT)
        .union(Capabilities::SNI_SWITCH)
        .union(Capabilities::ALPN)
        .union(Capabilities::RESUMPTION_TICKETS)
        .union(Capabilities::RESUMPTION_SESSION_ID)
        .union(Capabilities::CIPHER_LIST_TLS12)
        .union(Capabilities::CIPHER_SUITES_TLS13)
        // IdentityResolver picks the first identity the client's signature schemes allow
        // (conformance check multiple_identities_selects, TLS 1.2 and 1.3).
        .union(Capabilities::MULTIPLE_IDENTITIES)
        // webpki's CRL support on both verifiers, leaf only (crl_revoked_*_refused).
        .union(Capabilities::CRL)
        // rustls's KeyLog through `SinkKeyLog` (key_log_written).
        .union(Capabilities::KEY_LOG)
        // rustls's StoresServerSessions over the store; a ticketer on the provider's keys
        // (store.rs).
        .union(Capabilities::SESSION_STORE)
        .union(Capabilities::TICKET_KEYS)
        // aws-lc's allocations through `install_allocator_hooks` (sipstls-conformance/tests/
        // hooks_install.rs: a session's C allocations land in the arena and all return).
        .union(Capabilities::ALLOCATOR_HOOK)
        .union(Capabilities::MODEL_CONFINED)
        .union(Capabilities::MODEL_PINNED)
        // Proven by sipstls-conformance/tests/fork_migrating.rs under the set-up it documents
        // (hooks, prepare_for_fork, helper-thread init, no rustls session caches); 70 of 70
        // stress runs clean (700,000 migrated sessions) after prepare_for_fork fixed a rare
        // SIGSEGV (aws-lc's lazily built method tables).
        .union(Capabilities::MODEL_MIGRATING);

    /// A provider restricted to the configured cipher suites, in the configured order
    /// (sipstls's default order where none is configured).
    fn provider_for(&self, cfg: &DomainConfig) -> Result<Arc<CryptoProvider>> {
        let all = &self.provider.cipher_suites;
        let pick =
            |names: &Option<Vec<String>>, tls13: bool, setting: &'static str| -> Result<Vec<SupportedCipherSuite>> {
                let of_version = all.iter().filter(|s| matches!(s, SupportedCipherSuite::Tls13(_)) == tls13);
                match names {
                    // The default order; suites rustls does not offer are left out.
                    None => {
                        let defaults =
                            if tls13 { sipstls_core::DEFAULT_TLS13_SUITES } else { sipstls_core::DEFAULT_TLS12_SUITES };
                        Ok(defaults
                            .iter()
                            .filter_map(|d| of_version.clone().find(|s| iana_suite_name(s).eq_ignore_ascii_case(d)))
                            .copied()
                            .collect())
                    }
                    Some(names) => names
                        .iter()
                        .map(|n| {
                            of_version.clone().find(|s| iana_suite_name(s).eq_ignore_ascii_case(n)).copied().ok_or_else(
                                || {
                                    Error::config(
                                        setting,
                                        format!("{n} is not a cipher suite rustls offers for this version"),
                                    )
                                },
                            )
                        })
                        .collect(),
                }
            };
        let mut suites = pick(&cfg.cipher_suites_tls13, true, "cipher_suites_tls13")?;
        suites.extend(pick(&cfg.cipher_list_tls12, false, "cipher_list_tls12")?);
        Ok(Arc::new(CryptoProvider { cipher_suites: suites, ..(*self.provider).clone() }))
    }

    fn certified_key(&self, id: &Identity) -> Result<Arc<CertifiedKey>> {
        let chain: Vec<CertificateDer<'static>> =
            id.chain.iter().map(|c| CertificateDer::from(c.der().to_vec())).collect();
        let key = private_key_der(id);
        let signer = self
            .provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| Error::config("identities", format!("unusable private key: {e}")))?;
        let ck = CertifiedKey::new(chain, signer);
        ck.keys_match()
            .map_err(|e| Error::config("identities", format!("the private key does not match the certificate: {e}")))?;
        Ok(Arc::new(ck))
    }
}

/// The IANA name of a rustls suite (`TLS13_AES_128_GCM_SHA256` -> `TLS_AES_128_GCM_SHA256`).
pub(crate) fn iana_suite_name(s: &SupportedCipherSuite) -> String {
    let name = s.suite().as_str().map(str::to_owned).unwrap_or_else(|| format!("{:?}", s.suite()));
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name,
    }
}

pub(crate) fn private_key_der(id: &Identity) -> PrivateKeyDer<'static> {
    let der = id.key.der().to_vec();
    match id.key.format() {
        PrivateKeyFormat::Pkcs8 => PrivatePkcs8KeyDer::from(der).into(),
        PrivateKeyFormat::Sec1 => PrivateSec1KeyDer::from(der).into(),
        PrivateKeyFormat::Pkcs1 => PrivatePkcs1KeyDer::from(der).into(),
        // PrivateKeyFormat is exhaustive today; new formats must be mapped here.
    }
}

pub(crate) fn versions(cfg: &DomainConfig) -> Vec<&'static rustls::SupportedProtocolVersion> {
    let mut v = Vec::new();
    if cfg.min_version <= ProtocolVersion::Tls13 && cfg.max_version >= ProtocolVersion::Tls13 {
        v.push(&rustls::version::TLS13);
    }
    if cfg.min_version <= ProtocolVersion::Tls12 && cfg.max_version >= ProtocolVersion::Tls12 {
        v.push(&rustls::version::TLS12);
    }
    v
}

pub(crate) fn roots(cfg: &DomainConfig) -> Result<Arc<RootCertStore>> {
    let mut store = RootCertStore::empty();
    for ca in &cfg.trust_anchors {
        store
            .add(CertificateDer::from(ca.der().to_vec()))
            .map_err(|e| Error::config("trust_anchors", format!("unusable CA certificate: {e}")))?;
    }
    Ok(Arc::new(store))
}

/// rustls's key log, forwarding to the domain's [`KeyLogSink`](sipstls_core::KeyLogSink).
#[derive(Debug)]
pub(crate) struct SinkKeyLog(sipstls_core::KeyLogSink);

impl rustls::KeyLog for SinkKeyLog {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        self.0.log(label, client_random, secret)
    }
}

/// Picks the first identity whose key can sign with a scheme the client offers and that a
/// cipher suite in common can use (so an ECDSA and an RSA pair on one domain serve both
/// kinds of client). rustls narrows the offered schemes by the suites in common, but counts
/// TLS 1.3 suites even when TLS 1.2 is negotiated (a TLS 1.2-only rustls client still lists
/// them), so for TLS 1.2 the resolver itself checks for a TLS 1.2 suite of the key's kind.
#[derive(Debug)]
pub(crate) struct IdentityResolver {
    keys: Vec<Arc<CertifiedKey>>,
    /// The domain's TLS 1.2 suites (empty when TLS 1.2 is off).
    tls12_suites: Vec<SupportedCipherSuite>,
    /// TLS 1.3 suites the domain offers, if TLS 1.3 is on.
    tls13_suites: Vec<SupportedCipherSuite>,
}

impl ResolvesServerCert for IdentityResolver {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let schemes = hello.signature_schemes();
        let offered = hello.cipher_suites();
        let tls13 = self.tls13_suites.iter().any(|s| offered.contains(&s.suite()));
        let suite_fits = |k: &CertifiedKey| {
            tls13
                || self
                    .tls12_suites
                    .iter()
                    .any(|s| offered.contains(&s.suite()) && s.usable_for_signature_algorithm(k.key.algorithm()))
        };
        let signable = || self.keys.iter().filter(|k| k.key.choose_scheme(schemes).is_some());
        // No identity fits (no suite in common, or no signature scheme the key can make):
        // still the first identity, so that rustls refuses the hello by its own rules, with
        // the alert RFC 8446 names (handshake_failure, protocol_version). Returning none
        // makes rustls send access_denied ("no server certificate chain resolved"), which
        // is meant for a server that refuses a client's identity.
        signable().find(|k| suite_fits(k)).or_else(|| signable().next()).or_else(|| self.keys.first()).cloned()
    }
}

impl Backend for RustlsBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo::new(
            NAME,
            format!("rustls {RUSTLS_VERSION} (aws-lc-rs {AWS_LC_RS_VERSION} provider)"),
            // rustls, and the aws-lc code linked through aws-lc-rs/aws-lc-sys.
            "(Apache-2.0 OR ISC OR MIT) AND ISC AND (Apache-2.0 OR ISC) AND Apache-2.0 AND MIT AND BSD-3-Clause",
        )
    }

    fn capabilities(&self) -> Capabilities {
        Self::CAPS
    }

    fn fill_random(&self, out: &mut [u8]) -> Result<()> {
        hooks::mark_used();
        self.provider
            .secure_random
            .fill(out)
            .map_err(|e| Error::Backend { library: NAME, message: format!("random generator failed: {e:?}") })
    }

    fn release_thread_state(&self) {
        hooks::release_thread_state();
    }

    fn prepare_for_fork(&self) -> Result<()> {
        hooks::mark_used();
        std::thread::spawn(|| {
            let r = prefork::exercise_algorithms();
            hooks::release_thread_state();
            r
        })
        .join()
        .map_err(|_| Error::Backend { library: NAME, message: "prepare_for_fork panicked".into() })?
        .map_err(|what| Error::Backend { library: NAME, message: format!("prepare_for_fork: {what} failed") })
    }

    fn server_domain(&self, cfg: &DomainConfig) -> Result<Arc<dyn ServerDomain>> {
        hooks::mark_used();
        cfg.validate(Role::Server, NAME, Self::CAPS)?;
        if cfg.process_model == ProcessModel::Migrating && cfg.resumption.session_ids {
            return Err(Error::unsupported(
                NAME,
                Capabilities::RESUMPTION_SESSION_ID,
                "rustls's session-ID cache is guarded by a process-private lock, which deadlocks when \
                 sessions migrate between processes; use tickets only",
            ));
        }
        let provider = self.provider_for(cfg)?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions(cfg))
            .map_err(|e| Error::config("cipher_suites", format!("no usable suite for the versions: {e}")))?;
        let verifier = verify::client_verifier(cfg, roots(cfg)?, provider.clone())?;
        let keys = cfg.identities.iter().map(|id| self.certified_key(id)).collect::<Result<Vec<_>>>()?;
        if cfg.process_model == ProcessModel::Migrating
            && keys.iter().any(|k| k.key.algorithm() == rustls::SignatureAlgorithm::RSA)
        {
            return Err(Error::unsupported(
                NAME,
                Capabilities::MODEL_MIGRATING,
                "aws-lc takes the RSA key's own lock (a process-private rwlock) on every RSA signature \
                 to manage its blinding values, so workers sharing the key lose wake-ups; use an ECDSA \
                 key when sessions migrate between processes (measured: the RSA key's caches also \
                 grow in the arena from the first worker that signs)",
            ));
        }
        let of_version = |tls13: bool| -> Vec<SupportedCipherSuite> {
            let pv = if tls13 { ProtocolVersion::Tls13 } else { ProtocolVersion::Tls12 };
            let on = cfg.min_version <= pv && pv <= cfg.max_version;
            provider
                .cipher_suites
                .iter()
                .filter(|s| on && matches!(s, SupportedCipherSuite::Tls13(_)) == tls13)
                .copied()
                .collect()
        };
        let resolver = IdentityResolver { keys, tls12_suites: of_version(false), tls13_suites: of_version(true) };
        let mut config = builder.with_client_cert_verifier(verifier).with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = cfg.alpn.clone();
        if let Some(sink) = &cfg.key_log {
            config.key_log = Arc::new(SinkKeyLog(sink.clone()));
        }
        config.session_storage = if let Some(s) = &cfg.session_store {
            Arc::new(store::StoreAdapter(s.clone()))
        } else if cfg.resumption.session_ids {
            ServerSessionMemoryCache::new(4096)
        } else {
            Arc::new(NoServerSessionStorage {})
        };
        if let Some(keys) = &cfg.ticket_keys {
            config.ticketer = Arc::new(store::ProviderTicketer::new(keys.clone()));
        } else if cfg.resumption.tickets {
            // Keys derived from a secret made now (before any fork) and the time epoch:
            // every worker process accepts every worker's tickets (see `tickets`).
            let ticketer = tickets::EpochTicketer::random(TICKET_KEY_PERIOD_SECS)
                .ok_or_else(|| Error::Backend { library: NAME, message: "random generator failed".into() })?;
            config.ticketer = Arc::new(ticketer);
        }
        if !cfg.resumption.tickets && !cfg.resumption.session_ids {
            config.send_tls13_tickets = 0;
        }
        Ok(Arc::new(RustlsServerDomain { config: Arc::new(config), cfg: cfg.clone() }))
    }

    fn client_domain(&self, cfg: &DomainConfig) -> Result<Arc<dyn ClientDomain>> {
        hooks::mark_used();
        cfg.validate(Role::Client, NAME, Self::CAPS)?;
        if cfg.process_model == ProcessModel::Migrating && cfg.resumption != Resumption::DISABLED {
            return Err(Error::unsupported(
                NAME,
                Capabilities::RESUMPTION_TICKETS,
                "rustls's client session cache is guarded by a process-private lock, which deadlocks when \
                 sessions migrate between processes; disable client resumption",
            ));
        }
        let provider = self.provider_for(cfg)?;
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions(cfg))
            .map_err(|e| Error::config("cipher_suites", format!("no usable suite for the versions: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verify::server_verifier(cfg, provider.clone())?);
        let mut config = match cfg.identities.first() {
            Some(id) => {
                let chain = id.chain.iter().map(|c| CertificateDer::from(c.der().to_vec())).collect();
                builder
                    .with_client_auth_cert(chain, private_key_der(id))
                    .map_err(|e| Error::config("identities", e.to_string()))?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = cfg.alpn.clone();
        config.enable_sni = cfg.send_sni;
        if let Some(sink) = &cfg.key_log {
            config.key_log = Arc::new(SinkKeyLog(sink.clone()));
        }
        config.resumption = match (cfg.resumption.tickets, cfg.resumption.session_ids) {
            (false, false) => ClientResumption::disabled(),
            (true, _) => ClientResumption::in_memory_sessions(256),
            (false, true) => ClientResumption::in_memory_sessions(256)
                .tls12_resumption(rustls::client::Tls12Resumption::SessionIdOnly),
        };
        let config = Arc::new(config);
        let mut nosni = (*config).clone();
        nosni.enable_sni = false;
        Ok(Arc::new(RustlsClientDomain { config, config_nosni: Arc::new(nosni), cfg: cfg.clone() }))
    }
}

/// The rustls version this crate was built against (from Cargo.lock, by build.rs).
pub(crate) const RUSTLS_VERSION: &str = env!("SIPSTLS_RUSTLS_VERSION");
/// The aws-lc-rs version this crate was built against.
pub(crate) const AWS_LC_RS_VERSION: &str = env!("SIPSTLS_AWS_LC_RS_VERSION");
