//! Plain-data configuration of a TLS domain.

use std::fmt;
use std::net::IpAddr;

use crate::backend::ProcessModel;
use crate::caps::Capabilities;
use crate::error::{Error, Result};
use crate::keylog::KeyLogSink;
use crate::store::{SessionStoreHandle, TicketKeysHandle};

/// The TLS 1.3 suites every backend offers by default, in server preference order.
///
/// AES-128-GCM comes first: its SHA-256 transcript hash and key schedule run on the SHA
/// instructions of current x86 and ARM CPUs, while SHA-384 runs in software on most of
/// them (figures in `docs/choosing-a-backend.md`). Both are strong; AES-128-GCM is
/// TLS 1.3's mandatory suite.
pub const DEFAULT_TLS13_SUITES: &[&str] =
    &["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"];

/// The TLS 1.2 suites offered by default, in server preference order: forward-secret
/// ECDHE with AEAD only, AES-128-GCM first (as [`DEFAULT_TLS13_SUITES`]).
pub const DEFAULT_TLS12_SUITES: &[&str] = &[
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
];

/// A TLS protocol version. Versions below TLS 1.2 do not exist in sipstls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[allow(clippy::exhaustive_enums)] // closed: the versions sipstls negotiates; a new one is a new major release
pub enum ProtocolVersion {
    /// TLS 1.2 (RFC 5246).
    Tls12,
    /// TLS 1.3 (RFC 8446).
    Tls13,
}

impl ProtocolVersion {
    /// The conventional name, `"TLSv1.2"` or `"TLSv1.3"`.
    pub fn name(self) -> &'static str {
        match self {
            ProtocolVersion::Tls12 => "TLSv1.2",
            ProtocolVersion::Tls13 => "TLSv1.3",
        }
    }

    /// The capability flag for this version.
    pub fn capability(self) -> Capabilities {
        match self {
            ProtocolVersion::Tls12 => Capabilities::TLS12,
            ProtocolVersion::Tls13 => Capabilities::TLS13,
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which side of the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::exhaustive_enums)] // closed: client or server
pub enum Role {
    /// Accepts connections.
    Server,
    /// Initiates connections.
    Client,
}

/// A DER-encoded X.509 certificate.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Certificate(Vec<u8>);

impl Certificate {
    /// Wraps DER bytes. They are parsed (and rejected if malformed) when a domain is built.
    pub fn from_der(der: impl Into<Vec<u8>>) -> Self {
        Certificate(der.into())
    }

    /// Every `CERTIFICATE` block of a PEM buffer, in order. Other blocks are ignored.
    pub fn all_from_pem(pem: &[u8]) -> Result<Vec<Certificate>> {
        let mut out = Vec::new();
        for block in pem_blocks(pem, "certificate")? {
            if block.0 == "CERTIFICATE" {
                out.push(Certificate(block.1));
            }
        }
        if out.is_empty() {
            return Err(Error::config("certificate", "no CERTIFICATE block in the PEM data"));
        }
        Ok(out)
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Certificate({} bytes DER)", self.0.len())
    }
}

/// The encoding of a private key's DER.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::exhaustive_enums)] // closed: every backend maps every format; a new one must break them
pub enum PrivateKeyFormat {
    /// PKCS#8 `PrivateKeyInfo` (`-----BEGIN PRIVATE KEY-----`), any algorithm.
    Pkcs8,
    /// SEC1 `ECPrivateKey` (`-----BEGIN EC PRIVATE KEY-----`).
    Sec1,
    /// PKCS#1 `RSAPrivateKey` (`-----BEGIN RSA PRIVATE KEY-----`).
    Pkcs1,
}

/// A DER-encoded X.509 certificate revocation list.
#[derive(Clone, PartialEq, Eq)]
pub struct Crl(Vec<u8>);

impl Crl {
    /// Wraps DER bytes. They are parsed (and rejected if malformed) when a domain is built.
    pub fn from_der(der: impl Into<Vec<u8>>) -> Self {
        Crl(der.into())
    }

    /// Every `X509 CRL` block of a PEM buffer, in order. Other blocks are ignored.
    pub fn all_from_pem(pem: &[u8]) -> Result<Vec<Crl>> {
        Ok(pem_blocks(pem, "crls")?.into_iter().filter(|(l, _)| l == "X509 CRL").map(|(_, d)| Crl(d)).collect())
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Crl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Crl({} bytes)", self.0.len())
    }
}

/// A private key. Its bytes are wiped when it is dropped and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKey {
    format: PrivateKeyFormat,
    der: Vec<u8>,
}

impl PrivateKey {
    /// Wraps DER bytes of the given format.
    pub fn from_der(format: PrivateKeyFormat, der: impl Into<Vec<u8>>) -> Self {
        PrivateKey { format, der: der.into() }
    }

    /// The first private key block of a PEM buffer: PKCS#8, SEC1 or PKCS#1, unencrypted.
    ///
    /// Encrypted keys are refused with [`Error::InvalidConfig`]: use
    /// [`from_pem_with_password`](PrivateKey::from_pem_with_password) for those.
    pub fn from_pem(pem: &[u8]) -> Result<PrivateKey> {
        refuse_legacy_encryption(pem)?;
        for (label, der) in pem_blocks(pem, "private_key")? {
            if label == "ENCRYPTED PRIVATE KEY" {
                return Err(Error::config(
                    "private_key",
                    "the private key is encrypted: use PrivateKey::from_pem_with_password with its password",
                ));
            }
            if let Some(format) = unencrypted_format(&label) {
                return Ok(PrivateKey { format, der });
            }
        }
        Err(Error::config("private_key", "no private key block in the PEM data"))
    }

    /// The first private key block of a PEM buffer, decrypting an encrypted PKCS#8 key
    /// (`-----BEGIN ENCRYPTED PRIVATE KEY-----`, PBES2 with PBKDF2 or scrypt and AES-CBC, as
    /// `openssl pkcs8 -topk8 -v2 aes-256-cbc` writes) with `password`. The result is the
    /// decrypted PKCS#8 key.
    ///
    /// An unencrypted key is returned as [`from_pem`](PrivateKey::from_pem) returns it (the
    /// password is not needed). A wrong password, or an encrypted key that is damaged,
    /// gives [`Error::InvalidConfig`] with the setting `"private_key_password"`. Keys in
    /// the legacy OpenSSL format (`Proc-Type: 4,ENCRYPTED` headers) are refused with
    /// instructions to convert them.
    pub fn from_pem_with_password(pem: &[u8], password: &[u8]) -> Result<PrivateKey> {
        refuse_legacy_encryption(pem)?;
        for (label, der) in pem_blocks(pem, "private_key")? {
            if label == "ENCRYPTED PRIVATE KEY" {
                return decrypt_pkcs8(&der, password);
            }
            if let Some(format) = unencrypted_format(&label) {
                return Ok(PrivateKey { format, der });
            }
        }
        Err(Error::config("private_key", "no private key block in the PEM data"))
    }

    /// The DER encoding.
    pub fn format(&self) -> PrivateKeyFormat {
        self.format
    }

    /// The DER bytes. Handle with care.
    pub fn der(&self) -> &[u8] {
        &self.der
    }
}

impl Drop for PrivateKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.der);
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({:?}, <redacted>)", self.format)
    }
}

/// A certificate chain (leaf first) and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Identity {
    /// Leaf first, then intermediates. The root is optional.
    pub chain: Vec<Certificate>,
    /// The leaf's private key.
    pub key: PrivateKey,
}

impl Identity {
    /// An identity from a chain (leaf first) and the leaf's key.
    pub fn new(chain: Vec<Certificate>, key: PrivateKey) -> Identity {
        Identity { chain, key }
    }

    /// Builds an identity from PEM: `chain` holds one or more certificates (leaf first),
    /// `key` a private key (PKCS#8, SEC1 or PKCS#1).
    pub fn from_pem(chain: &[u8], key: &[u8]) -> Result<Identity> {
        Ok(Identity { chain: Certificate::all_from_pem(chain)?, key: PrivateKey::from_pem(key)? })
    }
}

/// How a client checks that the server's certificate names the host it meant to reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[allow(clippy::exhaustive_enums)] // closed: every backend must implement every way of checking names
pub enum NameVerification {
    /// RFC 5922 section 7.2: SAN URIs `sip:domain`, then SAN DNS names (exact,
    /// case-insensitive, no wildcards); the subject CN only when the certificate has no
    /// SAN. An IP address target matches SAN IP entries. The default.
    #[default]
    Rfc5922,
    /// No name check at all: any certificate that chains to a trusted CA is accepted for
    /// any host. This is what Kamailio and OpenSIPS do, and it lets anyone with a
    /// certificate from your CA impersonate any peer. Named loudly on purpose.
    DangerousDisabled,
}

/// A host name or address a client connects to: what it sends as SNI and verifies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[allow(clippy::exhaustive_enums)] // closed: a name is a DNS name or an IP address
pub enum ServerName {
    /// A DNS name (SIP domain). Sent as SNI.
    Dns(String),
    /// An IP address. Never sent as SNI (RFC 6066); matched against SAN IP entries.
    Ip(IpAddr),
}

impl ServerName {
    /// Parses an IP literal or a DNS name; rejects empty or malformed names.
    pub fn parse(name: &str) -> Result<ServerName> {
        let trimmed = name.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = trimmed.parse::<IpAddr>() {
            return Ok(ServerName::Ip(ip));
        }
        let name = name.strip_suffix('.').unwrap_or(name);
        let valid_label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
            return Err(Error::config("server_name", format!("{name:?} is not a valid DNS name")));
        }
        Ok(ServerName::Dns(name.to_ascii_lowercase()))
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerName::Dns(n) => f.write_str(n),
            ServerName::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Which resumption mechanisms are enabled: one of the constants below, or `ENABLED`
/// with a field changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Resumption {
    /// Session tickets (TLS 1.2 RFC 5077 and TLS 1.3 PSK tickets).
    pub tickets: bool,
    /// TLS 1.2 session IDs with a server-side cache.
    pub session_ids: bool,
}

impl Resumption {
    /// Both mechanisms on (the default).
    pub const ENABLED: Resumption = Resumption { tickets: true, session_ids: true };
    /// No resumption at all.
    pub const DISABLED: Resumption = Resumption { tickets: false, session_ids: false };
    /// Session tickets only.
    pub const TICKETS: Resumption = Resumption { tickets: true, session_ids: false };
    /// TLS 1.2 session IDs only.
    pub const SESSION_IDS: Resumption = Resumption { tickets: false, session_ids: true };
}

impl Default for Resumption {
    fn default() -> Self {
        Resumption::ENABLED
    }
}

/// How a server asks for client certificates ([`DomainConfig::with_client_auth`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuth {
    /// Ask for a certificate and verify it against these trust anchors when one comes;
    /// clients without one are let in (their [`TlsInfo`](crate::TlsInfo) says so).
    Optional(Vec<Certificate>),
    /// Require a certificate that verifies against these trust anchors.
    Required(Vec<Certificate>),
}

/// Settings of one TLS domain: plain data, compiled by a [`Backend`](crate::Backend) into a
/// server or client domain.
///
/// Defaults are secure: TLS 1.2 and 1.3 only, clients verify the server's chain and name
/// (RFC 5922), the library's own cipher preferences, resumption on.
///
/// Start from [`DomainConfig::server`], [`DomainConfig::client`] or `default()`, then
/// change fields or call the `with_*` methods (new settings come as new fields).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DomainConfig {
    /// Our certificate chains and keys. A server needs at least one; a client presents the
    /// first one as its client certificate when asked. (A second pair, say RSA beside
    /// ECDSA, is for backends that can choose by the peer's signature algorithms.)
    pub identities: Vec<Identity>,
    /// Trusted CA certificates for verifying the peer.
    pub trust_anchors: Vec<Certificate>,
    /// Client: verify the server (default `true`). Server: request a client certificate
    /// and verify it if one is sent (default `false`).
    pub verify_peer: bool,
    /// Server: fail the handshake when the client sends no certificate. Needs `verify_peer`.
    pub require_peer_certificate: bool,
    /// Maximum number of intermediate certificates between the leaf and a trust anchor
    /// (Kamailio's `verify_depth`, default 9).
    pub verify_depth: u8,
    /// Lowest version offered or accepted (default TLS 1.2).
    pub min_version: ProtocolVersion,
    /// Highest version offered or accepted (default TLS 1.3).
    pub max_version: ProtocolVersion,
    /// TLS 1.2 cipher suites by IANA name (`TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`), in
    /// preference order. `None`: [`DEFAULT_TLS12_SUITES`] (those the backend offers).
    pub cipher_list_tls12: Option<Vec<String>>,
    /// TLS 1.3 cipher suites by IANA name (`TLS_AES_128_GCM_SHA256`), in preference order.
    /// `None`: [`DEFAULT_TLS13_SUITES`].
    pub cipher_suites_tls13: Option<Vec<String>>,
    /// ALPN protocols in preference order; empty disables ALPN.
    pub alpn: Vec<Vec<u8>>,
    /// Client: the name to send as SNI and verify when a connect call names none.
    pub server_name: Option<String>,
    /// Client: how the server's name is checked.
    pub name_verification: NameVerification,
    /// Client: send SNI for DNS names (default `true`).
    pub send_sni: bool,
    /// Resumption mechanisms.
    pub resumption: Resumption,
    /// The process model the domain will be used in (default: confined). A backend that
    /// does not support the model, or settings that are unsafe in it, are refused.
    pub process_model: ProcessModel,
    /// Revocation lists checked when verifying the peer's chain (Kamailio's `crl`): a
    /// revoked peer certificate fails the handshake. Needs [`Capabilities::CRL`]. Every
    /// listed CRL must be signed by one of `trust_anchors` or the chain.
    pub crls: Vec<Crl>,
    /// Where session secrets go, in the NSS key log format (default: nowhere). Anyone who
    /// reads them can decrypt the sessions: for debugging only. Needs
    /// [`Capabilities::KEY_LOG`].
    pub key_log: Option<KeyLogSink>,
    /// Server: where TLS 1.2 session-ID sessions (and TLS 1.3 stateful tickets) are cached
    /// instead of the library's per-process cache, so another process or node sharing the
    /// store resumes them (default: the library's own cache). Needs
    /// `resumption.session_ids` and [`Capabilities::SESSION_STORE`].
    pub session_store: Option<SessionStoreHandle>,
    /// Server: where the keys sealing stateless tickets come from, so every node fed the
    /// same keys accepts every node's tickets (default: keys made by the backend, shared by
    /// fork only). Needs `resumption.tickets` and [`Capabilities::TICKET_KEYS`].
    pub ticket_keys: Option<TicketKeysHandle>,
}

impl Default for DomainConfig {
    fn default() -> Self {
        DomainConfig {
            identities: Vec::new(),
            trust_anchors: Vec::new(),
            verify_peer: true,
            require_peer_certificate: false,
            verify_depth: 9,
            min_version: ProtocolVersion::Tls12,
            max_version: ProtocolVersion::Tls13,
            cipher_list_tls12: None,
            cipher_suites_tls13: None,
            alpn: Vec::new(),
            server_name: None,
            name_verification: NameVerification::Rfc5922,
            send_sni: true,
            resumption: Resumption::ENABLED,
            process_model: ProcessModel::Confined,
            crls: Vec::new(),
            key_log: None,
            session_store: None,
            ticket_keys: None,
        }
    }
}

impl DomainConfig {
    /// A server domain presenting `identity`, not asking for client certificates.
    pub fn server(identity: Identity) -> Self {
        DomainConfig { identities: vec![identity], verify_peer: false, ..Default::default() }
    }

    /// A client domain trusting `trust_anchors` and verifying names (RFC 5922).
    pub fn client(trust_anchors: Vec<Certificate>) -> Self {
        DomainConfig { trust_anchors, ..Default::default() }
    }

    /// Restricts the protocol versions.
    pub fn with_versions(mut self, min: ProtocolVersion, max: ProtocolVersion) -> Self {
        self.min_version = min;
        self.max_version = max;
        self
    }

    /// Only this one version.
    pub fn with_version(self, v: ProtocolVersion) -> Self {
        self.with_versions(v, v)
    }

    /// Server: request client certificates and verify them (see [`ClientAuth`]).
    pub fn with_client_auth(mut self, auth: ClientAuth) -> Self {
        let (anchors, required) = match auth {
            ClientAuth::Optional(a) => (a, false),
            ClientAuth::Required(a) => (a, true),
        };
        self.trust_anchors = anchors;
        self.verify_peer = true;
        self.require_peer_certificate = required;
        self
    }

    /// Client: present this certificate when the server asks.
    pub fn with_identity(mut self, identity: Identity) -> Self {
        self.identities.push(identity);
        self
    }

    /// Sets the ALPN protocols.
    pub fn with_alpn<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<Vec<u8>>,
    {
        self.alpn = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Client: the default server name to send and verify.
    pub fn with_server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Sets the process model the domain will be used in.
    pub fn with_process_model(mut self, model: ProcessModel) -> Self {
        self.process_model = model;
        self
    }

    /// Adds certificate revocation lists (checked against the peer's chain).
    pub fn with_crls(mut self, crls: impl IntoIterator<Item = Crl>) -> Self {
        self.crls.extend(crls);
        self
    }

    /// Writes session secrets to `log` (NSS key log format).
    pub fn with_key_log(mut self, log: KeyLogSink) -> Self {
        self.key_log = Some(log);
        self
    }

    /// Server: caches sessions in `store` (see [`DomainConfig::session_store`]).
    pub fn with_session_store(mut self, store: SessionStoreHandle) -> Self {
        self.session_store = Some(store);
        self
    }

    /// Server: seals tickets with keys from `keys` (see [`DomainConfig::ticket_keys`]).
    pub fn with_ticket_keys(mut self, keys: TicketKeysHandle) -> Self {
        self.ticket_keys = Some(keys);
        self
    }

    /// Sets the resumption mechanisms.
    pub fn with_resumption(mut self, r: Resumption) -> Self {
        self.resumption = r;
        self
    }

    /// Offers or accepts only these TLS 1.2 suites, in this order (IANA names; see
    /// [`DomainConfig::cipher_list_tls12`]).
    pub fn with_cipher_list_tls12<I, S>(mut self, suites: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.cipher_list_tls12 = Some(suites.into_iter().map(Into::into).collect());
        self
    }

    /// Offers or accepts only these TLS 1.3 suites, in this order (IANA names; see
    /// [`DomainConfig::cipher_suites_tls13`]).
    pub fn with_cipher_suites_tls13<I, S>(mut self, suites: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.cipher_suites_tls13 = Some(suites.into_iter().map(Into::into).collect());
        self
    }

    /// Checks the settings for `role` independently of any backend, then checks that the
    /// backend with capabilities `caps` (named `backend`) can honour all of them. Every
    /// backend calls this first, so refusals are the same everywhere.
    pub fn validate(&self, role: Role, backend: &'static str, caps: Capabilities) -> Result<()> {
        if self.min_version > self.max_version {
            return Err(Error::config("min_version", "min_version is above max_version"));
        }
        if role == Role::Server && self.identities.is_empty() {
            return Err(Error::config("identities", "a server domain needs a certificate and key"));
        }
        for id in &self.identities {
            if id.chain.is_empty() {
                return Err(Error::config("identities", "an identity has an empty chain"));
            }
            for c in &id.chain {
                crate::x509::CertificateInfo::parse(c.der())
                    .map_err(|_| Error::config("identities", "a certificate does not parse"))?;
            }
        }
        for c in &self.trust_anchors {
            crate::x509::CertificateInfo::parse(c.der())
                .map_err(|_| Error::config("trust_anchors", "a CA certificate does not parse"))?;
        }
        for c in &self.crls {
            match x509_parser::parse_x509_crl(c.der()) {
                Ok(([], _)) => {}
                _ => return Err(Error::config("crls", "a certificate revocation list does not parse")),
            }
        }
        if !self.crls.is_empty() && !self.verify_peer {
            return Err(Error::config("crls", "revocation lists need verify_peer: nothing would check them"));
        }
        if self.verify_peer && self.trust_anchors.is_empty() {
            return Err(Error::config(
                "trust_anchors",
                "verify_peer is on but no CA is configured: nothing could ever verify",
            ));
        }
        if self.require_peer_certificate && !self.verify_peer {
            return Err(Error::config("require_peer_certificate", "requiring a peer certificate needs verify_peer"));
        }
        if role == Role::Client && self.require_peer_certificate {
            return Err(Error::config(
                "require_peer_certificate",
                "a server always presents a certificate; use verify_peer on a client",
            ));
        }
        for p in &self.alpn {
            if p.is_empty() || p.len() > 255 {
                return Err(Error::config("alpn", "ALPN protocol names are 1 to 255 bytes"));
            }
        }
        if let Some(name) = &self.server_name {
            ServerName::parse(name)?;
        }
        for (setting, list) in
            [("cipher_list_tls12", &self.cipher_list_tls12), ("cipher_suites_tls13", &self.cipher_suites_tls13)]
        {
            if list.as_ref().is_some_and(|l| l.is_empty()) {
                return Err(Error::config(setting, "an empty cipher list allows no cipher"));
            }
        }

        if self.session_store.is_some() {
            if role == Role::Client {
                return Err(Error::config("session_store", "a session store is for server domains"));
            }
            if !self.resumption.session_ids {
                return Err(Error::config("session_store", "a session store needs resumption.session_ids"));
            }
        }
        if self.ticket_keys.is_some() {
            if role == Role::Client {
                return Err(Error::config("ticket_keys", "ticket keys are for server domains"));
            }
            if !self.resumption.tickets {
                return Err(Error::config("ticket_keys", "ticket keys need resumption.tickets"));
            }
        }

        // Capability checks: refuse, never ignore.
        let need = |cap: Capabilities, what: &str| -> Result<()> {
            if caps.contains(cap) {
                Ok(())
            } else {
                Err(Error::unsupported(backend, cap, what))
            }
        };
        let mut any_version = false;
        for v in [ProtocolVersion::Tls12, ProtocolVersion::Tls13] {
            if v >= self.min_version && v <= self.max_version && caps.contains(v.capability()) {
                any_version = true;
            }
        }
        if !any_version {
            need(self.max_version.capability(), "none of the configured versions is available")?;
        }
        if self.min_version == self.max_version {
            need(self.min_version.capability(), "the only configured version is not available")?;
        }
        if self.verify_peer && role == Role::Server {
            need(Capabilities::CLIENT_CERT, "client certificate verification")?;
        }
        if role == Role::Client && !self.identities.is_empty() {
            need(Capabilities::CLIENT_CERT, "presenting a client certificate")?;
        }
        if !self.alpn.is_empty() {
            need(Capabilities::ALPN, "ALPN")?;
        }
        if self.cipher_list_tls12.is_some() {
            need(Capabilities::CIPHER_LIST_TLS12, "an explicit TLS 1.2 cipher list")?;
        }
        if self.cipher_suites_tls13.is_some() {
            need(Capabilities::CIPHER_SUITES_TLS13, "an explicit TLS 1.3 cipher list")?;
        }
        if self.resumption.tickets {
            need(Capabilities::RESUMPTION_TICKETS, "session tickets (disable them in `resumption`)")?;
        }
        if self.resumption.session_ids {
            need(Capabilities::RESUMPTION_SESSION_ID, "session-ID resumption (disable it in `resumption`)")?;
        }
        if !self.crls.is_empty() {
            need(Capabilities::CRL, "certificate revocation lists")?;
        }
        if self.key_log.is_some() {
            need(Capabilities::KEY_LOG, "a key log")?;
        }
        if role == Role::Server && self.identities.len() > 1 {
            need(Capabilities::MULTIPLE_IDENTITIES, "several identities on one server domain")?;
        }
        if self.session_store.is_some() {
            need(Capabilities::SESSION_STORE, "an external session store")?;
        }
        if self.ticket_keys.is_some() {
            need(Capabilities::TICKET_KEYS, "ticket keys from a provider")?;
        }
        if self.process_model == ProcessModel::Migrating && (self.session_store.is_some() || self.ticket_keys.is_some())
        {
            // Stores and providers use process-private locks (std::sync::Mutex), which lose
            // wake-ups when sessions migrate between processes.
            let cap =
                if self.session_store.is_some() { Capabilities::SESSION_STORE } else { Capabilities::TICKET_KEYS };
            return Err(Error::unsupported(
                backend,
                cap,
                "session stores and ticket key providers take process-private locks: not in the migrating model",
            ));
        }
        need(self.process_model.capability(), "this process model (see Backend::supports_model)")?;
        Ok(())
    }
}

/// Splits PEM data into (label, DER) blocks.
fn pem_blocks(pem: &[u8], setting: &'static str) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        match block {
            Ok(p) => out.push((p.label, p.contents)),
            Err(e) => return Err(Error::config(setting, format!("malformed PEM: {e}"))),
        }
    }
    Ok(out)
}

/// The format of an unencrypted private key PEM label.
fn unencrypted_format(label: &str) -> Option<PrivateKeyFormat> {
    match label {
        "PRIVATE KEY" => Some(PrivateKeyFormat::Pkcs8),
        "EC PRIVATE KEY" => Some(PrivateKeyFormat::Sec1),
        "RSA PRIVATE KEY" => Some(PrivateKeyFormat::Pkcs1),
        _ => None,
    }
}

/// Refuses keys encrypted in the legacy OpenSSL PEM format (RFC 1421 headers), which
/// use MD5 as a key derivation: they must be converted to encrypted PKCS#8.
fn refuse_legacy_encryption(pem: &[u8]) -> Result<()> {
    let text = String::from_utf8_lossy(pem);
    if text.lines().any(|l| l.trim_start().starts_with("Proc-Type:") && l.contains("ENCRYPTED")) {
        return Err(Error::config(
            "private_key",
            "the key is encrypted in the legacy OpenSSL format (Proc-Type: 4,ENCRYPTED), which is \
             not supported; convert it to encrypted PKCS#8 with \
             `openssl pkcs8 -topk8 -v2 aes-256-cbc -in old.key -out new.key`",
        ));
    }
    Ok(())
}

/// Decrypts an `EncryptedPrivateKeyInfo` (RFC 5958) into PKCS#8 DER.
fn decrypt_pkcs8(der: &[u8], password: &[u8]) -> Result<PrivateKey> {
    let info = pkcs8::EncryptedPrivateKeyInfo::try_from(der)
        .map_err(|e| Error::config("private_key", format!("malformed encrypted private key: {e}")))?;
    let wrong =
        || Error::config("private_key_password", "the private key does not decrypt: wrong password or damaged key");
    let plain = match info.decrypt(password) {
        Ok(doc) => doc,
        // pkcs5 0.7 reports a bad CBC padding (the usual sign of a wrong password) as
        // EncryptFailed, even when decrypting.
        Err(pkcs8::Error::EncryptedPrivateKey(
            pkcs8::pkcs5::Error::DecryptFailed | pkcs8::pkcs5::Error::EncryptFailed,
        )) => return Err(wrong()),
        Err(e) => {
            return Err(Error::config("private_key", format!("cannot decrypt the private key: {e}")));
        }
    };
    // A wrong password passes the CBC padding check about once in 256 tries: the result
    // must also be a well-formed PrivateKeyInfo.
    if pkcs8::PrivateKeyInfo::try_from(plain.as_bytes()).is_err() {
        return Err(wrong());
    }
    Ok(PrivateKey { format: PrivateKeyFormat::Pkcs8, der: plain.as_bytes().to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pkcs8::pkcs5::{pbes2, scrypt};
    use pkcs8::{der::pem::LineEnding, PrivateKeyInfo};

    /// An Ed25519 PKCS#8 key (RFC 8410 layout) with a fixed seed.
    fn ed25519_pkcs8() -> Vec<u8> {
        let mut der =
            vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
        der.extend((0u8..32).map(|i| i.wrapping_mul(7).wrapping_add(3)));
        der
    }

    fn encrypted_pem(params: pbes2::Parameters<'_>, password: &[u8]) -> String {
        let der = ed25519_pkcs8();
        let info = PrivateKeyInfo::try_from(der.as_slice()).unwrap();
        let doc = info.encrypt_with_params(params, password).unwrap();
        doc.to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF).unwrap().to_string()
    }

    #[test]
    fn encrypted_pkcs8_pbkdf2_aes256() {
        let params = pbes2::Parameters::pbkdf2_sha256_aes256cbc(2048, &[7; 16], &[9; 16]).unwrap();
        let pem = encrypted_pem(params, b"s3cret");
        let key = PrivateKey::from_pem_with_password(pem.as_bytes(), b"s3cret").unwrap();
        assert_eq!(key.format(), PrivateKeyFormat::Pkcs8);
        assert_eq!(key.der(), ed25519_pkcs8().as_slice());

        let err = PrivateKey::from_pem_with_password(pem.as_bytes(), b"wrong").unwrap_err();
        assert!(
            matches!(err, Error::InvalidConfig { setting: "private_key_password", .. }),
            "wrong password must be a typed error: {err:?}"
        );
        let err = PrivateKey::from_pem(pem.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("from_pem_with_password"), "{err}");
    }

    #[test]
    fn encrypted_pkcs8_scrypt_aes256() {
        let params =
            pbes2::Parameters::scrypt_aes256cbc(scrypt::Params::new(10, 8, 1, 32).unwrap(), &[1; 16], &[2; 16])
                .unwrap();
        let pem = encrypted_pem(params, b"pw");
        let key = PrivateKey::from_pem_with_password(pem.as_bytes(), b"pw").unwrap();
        assert_eq!(key.der(), ed25519_pkcs8().as_slice());
        let err = PrivateKey::from_pem_with_password(pem.as_bytes(), b"pW").unwrap_err();
        assert!(matches!(err, Error::InvalidConfig { setting: "private_key_password", .. }), "{err:?}");
    }

    #[test]
    fn unencrypted_key_with_password_and_legacy_encryption() {
        let der = ed25519_pkcs8();
        let pem = pkcs8::der::pem::encode_string("PRIVATE KEY", LineEnding::LF, &der).unwrap();
        let key = PrivateKey::from_pem_with_password(pem.as_bytes(), b"unused").unwrap();
        assert_eq!(key, PrivateKey::from_pem(pem.as_bytes()).unwrap());

        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00112233445566778899AABBCCDDEEFF\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        for err in [
            PrivateKey::from_pem(legacy.as_bytes()).unwrap_err(),
            PrivateKey::from_pem_with_password(legacy.as_bytes(), b"pw").unwrap_err(),
        ] {
            assert!(err.to_string().contains("openssl pkcs8 -topk8"), "{err}");
        }
    }

    #[test]
    fn garbage_in_encrypted_block_is_an_error() {
        let pem = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAMCAQA=\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let err = PrivateKey::from_pem_with_password(pem.as_bytes(), b"pw").unwrap_err();
        assert!(matches!(err, Error::InvalidConfig { setting: "private_key", .. }), "{err:?}");
    }
}
