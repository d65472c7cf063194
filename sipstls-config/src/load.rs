//! From parsed profiles to [`DomainConfig`]s: files read, settings mapped, domains checked.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sipstls_core::{
    Backend, Capabilities, Certificate, Crl, DomainConfig, DomainTable, Error, Identity, Listener, PrivateKey,
    ProtocolVersion, Role, SniMatch,
};

use crate::error::{ConfigError, ErrorKind, Origin};
use crate::model::{KamailioConfig, Profile, ProfileKind, Selector, Setting, Settings, VerifyClient};

/// The loaded configuration: one [`DomainConfig`] per profile, with what selects it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Domains {
    /// Server profiles, in file order.
    pub servers: Vec<ServerDomainConfig>,
    /// Client profiles, in file order.
    pub clients: Vec<ClientDomainConfig>,
}

/// A server profile: the listener it serves, the SNI pattern that selects it, its domain.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerDomainConfig {
    /// `[server:default]` and `[server:any]` serve every listener; `[server:IP:PORT]` one.
    pub listener: Listener,
    /// From `server_name` and `server_name_mode`; `None`: the listener's default domain.
    pub sni: Option<SniMatch>,
    /// Also the listener's default domain (used until SNI selects another), although it
    /// has an SNI pattern: set on the last `[server:IP:PORT]` profile with `server_name`
    /// of an address that has no profile without `server_name`, as Kamailio picks such a
    /// profile for connections to its address before SNI is known.
    pub listener_default: bool,
    /// The domain.
    pub config: DomainConfig,
    /// Where the profile was written.
    pub origin: Origin,
}

/// How a client profile is chosen for an outgoing connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[allow(clippy::exhaustive_enums)] // closed: a tls.cfg client profile is the default, an address or a name
pub enum ClientSelector {
    /// `[client:default]`: when nothing else matches.
    Default,
    /// `[client:IP:PORT]`: connections to this address.
    Addr(SocketAddr),
    /// `[client:any]` with `server_name`: connections to this name, on any address.
    Name(String),
}

/// A client profile: what selects it and its domain.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientDomainConfig {
    /// Default, by address or by name.
    pub selector: ClientSelector,
    /// `server_id`: connect calls can also name the profile by this id
    /// ([`ClientTarget::id`](sipstls_core::ClientTarget::id)).
    pub server_id: Option<String>,
    /// The domain.
    pub config: DomainConfig,
    /// Where the profile was written.
    pub origin: Origin,
}

impl KamailioConfig {
    /// Reads the files the profiles name and builds their [`DomainConfig`]s.
    ///
    /// Paths are resolved as Kamailio resolves them: absolute paths and paths starting
    /// with `.` (`./certs/a.pem`, `../a.pem`: relative to the process's working directory)
    /// are used as they are; any other relative path is relative to `base_dir`. Kamailio
    /// uses the directory of its main configuration file (`kamailio.cfg`), not of tls.cfg:
    /// pass that directory for the same result.
    ///
    /// Every domain is checked with [`DomainConfig::validate`] as if the backend could do
    /// everything: what no backend could accept (a client that verifies without any CA,
    /// a server without certificate...) is refused here, naming the profile; what a
    /// particular backend lacks is refused by [`Domains::build_table`].
    pub fn load(&self, base_dir: impl AsRef<Path>) -> Result<Domains, ConfigError> {
        let base_dir = base_dir.as_ref();
        self.check()?;
        let mut out = Domains::default();
        for profile in &self.profiles {
            let config = domain_config(profile, base_dir)?;
            let s = &profile.settings;
            match profile.kind {
                ProfileKind::Server => {
                    let listener = match profile.selector {
                        Selector::Default | Selector::Any => Listener::Any,
                        Selector::Addr(a) => Listener::Addr(a),
                    };
                    let sni = s.server_name.as_ref().map(|n| {
                        let mode = s.server_name_mode.as_ref().map(|m| m.value).unwrap_or_default();
                        mode.sni_match(n.value.clone())
                    });
                    out.servers.push(ServerDomainConfig {
                        listener,
                        sni,
                        listener_default: false,
                        config,
                        origin: profile.origin.clone(),
                    });
                }
                ProfileKind::Client => {
                    let selector = match profile.selector {
                        Selector::Default => ClientSelector::Default,
                        Selector::Addr(a) => ClientSelector::Addr(a),
                        Selector::Any => {
                            ClientSelector::Name(s.server_name.as_ref().map(|n| n.value.clone()).unwrap_or_default())
                        }
                    };
                    out.clients.push(ClientDomainConfig {
                        selector,
                        server_id: s.server_id.as_ref().map(|i| i.value.clone()),
                        config,
                        origin: profile.origin.clone(),
                    });
                }
            }
        }
        // Kamailio looks server profiles up by address before SNI is known, whatever their
        // server_name, and keeps them in reverse file order: an address whose profiles all
        // have a server_name starts with the last of them.
        for i in 0..out.servers.len() {
            let listener = out.servers[i].listener;
            if !matches!(listener, Listener::Addr(_)) {
                continue;
            }
            let same = |s: &ServerDomainConfig| s.listener == listener;
            let has_plain = out.servers.iter().any(|s| same(s) && s.sni.is_none());
            let is_last = !out.servers[i + 1..].iter().any(same);
            out.servers[i].listener_default = !has_plain && is_last;
        }
        Ok(out)
    }
}

impl Domains {
    /// Compiles every domain with `backend` into a [`DomainTable`]: server profiles by
    /// listener and SNI pattern; client profiles as the default, by remote address or by
    /// name, and also by `server_id` when they have one.
    pub fn build_table(&self, backend: Arc<dyn Backend>) -> Result<DomainTable, ConfigError> {
        let mut table = DomainTable::new(backend);
        let refused = |origin: &Origin, e: Error| {
            origin.error(ErrorKind::Backend, format!("the domain is refused: {e}")).with_source(e)
        };
        for s in &self.servers {
            table.add_server(s.listener, s.sni.clone(), &s.config).map_err(|e| refused(&s.origin, e))?;
            if s.listener_default {
                table.add_server(s.listener, None, &s.config).map_err(|e| refused(&s.origin, e))?;
            }
        }
        for c in &self.clients {
            match &c.selector {
                ClientSelector::Default => table.add_client_default(&c.config),
                ClientSelector::Addr(a) => table.add_client_addr(*a, &c.config),
                ClientSelector::Name(n) => table.add_client_name(n, &c.config),
            }
            .map_err(|e| refused(&c.origin, e))?;
            if let Some(id) = &c.server_id {
                table.add_client_id(id, &c.config).map_err(|e| refused(&c.origin, e))?;
            }
        }
        Ok(table)
    }
}

/// The path a setting names, by Kamailio's rule: absolute paths and paths starting with
/// `.` (`./x`, `../x`: relative to the working directory) as they are, others relative to
/// `base_dir`.
fn resolve(base_dir: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() || path.starts_with('.') {
        p.to_path_buf()
    } else {
        base_dir.join(p)
    }
}

/// Reads the file a setting names.
fn read(file: &str, setting: &Setting<String>, base_dir: &Path) -> Result<Vec<u8>, ConfigError> {
    let path = resolve(base_dir, &setting.value);
    fs::read(&path).map_err(|e| {
        setting.error(file, ErrorKind::Io, format!("cannot read {:?} ({}): {e}", setting.value, path.display()))
    })
}

fn pem_error(file: &str, setting: &Setting<String>, e: Error) -> ConfigError {
    let reason = match &e {
        Error::InvalidConfig { reason, .. } => reason.clone(),
        other => other.to_string(),
    };
    setting.error(file, ErrorKind::Pem, format!("{:?}: {reason}", setting.value)).with_source(e)
}

fn identity(
    file: &str,
    base_dir: &Path,
    cert: &Setting<String>,
    key: &Setting<String>,
    password: Option<&Setting<String>>,
) -> Result<Identity, ConfigError> {
    let chain = Certificate::all_from_pem(&read(file, cert, base_dir)?).map_err(|e| pem_error(file, cert, e))?;
    let key_pem = read(file, key, base_dir)?;
    if contains(&key_pem, b"Proc-Type: 4,ENCRYPTED") {
        // Legacy OpenSSL encryption: refused whatever the password, with the conversion.
        return Err(PrivateKey::from_pem(&key_pem).map_or_else(
            |e| pem_error(file, key, e),
            |_| key.error(file, ErrorKind::Pem, "legacy OpenSSL encryption is not supported"),
        ));
    }
    let encrypted = contains(&key_pem, b"-----BEGIN ENCRYPTED PRIVATE KEY-----");
    let key = match password {
        Some(p) if !encrypted => {
            return Err(p.error(
                file,
                ErrorKind::Inconsistent,
                format!("{:?} is not an encrypted PKCS#8 key: remove the password or encrypt the key", key.value),
            ))
        }
        Some(p) => PrivateKey::from_pem_with_password(&key_pem, p.value.as_bytes()).map_err(|e| match e {
            Error::InvalidConfig { setting: "private_key_password", .. } => p
                .error(file, ErrorKind::WrongPassword, format!("{:?} does not decrypt with this password", key.value))
                .with_source(e),
            e => pem_error(file, key, e),
        })?,
        None if encrypted => {
            return Err(key.error(
                file,
                ErrorKind::Pem,
                format!("{:?} is encrypted: set private_key_password", key.value),
            ))
        }
        None => PrivateKey::from_pem(&key_pem).map_err(|e| pem_error(file, key, e))?,
    };
    Ok(Identity::new(chain, key))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every certificate in every regular file of a directory (sorted by name; files without
/// a `CERTIFICATE` block are skipped, duplicates kept once).
fn ca_directory(file: &str, setting: &Setting<String>, base_dir: &Path) -> Result<Vec<Certificate>, ConfigError> {
    let dir = resolve(base_dir, &setting.value);
    let io = |what: &Path, e: std::io::Error| {
        setting.error(file, ErrorKind::Io, format!("cannot read {:?} ({}): {e}", setting.value, what.display()))
    };
    let mut paths = Vec::new();
    for entry in fs::read_dir(&dir).map_err(|e| io(&dir, e))? {
        let path = entry.map_err(|e| io(&dir, e))?.path();
        // fs::metadata follows symbolic links (hash links of c_rehash point at files).
        if fs::metadata(&path).map_err(|e| io(&path, e))?.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    let mut out: Vec<Certificate> = Vec::new();
    for path in paths {
        let pem = fs::read(&path).map_err(|e| io(&path, e))?;
        if !contains(&pem, b"-----BEGIN CERTIFICATE-----") {
            continue;
        }
        let certs = Certificate::all_from_pem(&pem)
            .map_err(|e| setting.error(file, ErrorKind::Pem, format!("{}: {e}", path.display())).with_source(e))?;
        for c in certs {
            if !out.contains(&c) {
                out.push(c);
            }
        }
    }
    if out.is_empty() {
        return Err(setting.error(file, ErrorKind::Pem, format!("no CA certificate in {}", dir.display())));
    }
    Ok(out)
}

/// Revocation lists from a PEM file (every `X509 CRL` block) or a DER file (one CRL).
fn crls(file: &str, setting: &Setting<String>, base_dir: &Path) -> Result<Vec<Crl>, ConfigError> {
    let data = read(file, setting, base_dir)?;
    if !contains(&data, b"-----BEGIN") {
        return Ok(vec![Crl::from_der(data)]);
    }
    let list = Crl::all_from_pem(&data).map_err(|e| pem_error(file, setting, e))?;
    if list.is_empty() {
        return Err(setting.error(file, ErrorKind::Pem, format!("{:?} holds no X509 CRL block", setting.value)));
    }
    Ok(list)
}

/// The domain of one profile.
fn domain_config(profile: &Profile, base_dir: &Path) -> Result<DomainConfig, ConfigError> {
    let s: &Settings = &profile.settings;
    let file = profile.origin.file.as_str();
    let mut config = DomainConfig::default();

    for (cert, key, password) in [
        (&s.certificate, &s.private_key, &s.private_key_password),
        (&s.certificate2, &s.private_key2, &s.private_key_password2),
    ] {
        if let (Some(c), Some(k)) = (cert, key) {
            config.identities.push(identity(file, base_dir, c, k, password.as_ref())?);
        }
    }
    if let Some(ca) = &s.ca_list {
        config.trust_anchors =
            Certificate::all_from_pem(&read(file, ca, base_dir)?).map_err(|e| pem_error(file, ca, e))?;
    }
    if let Some(dir) = &s.ca_path {
        for c in ca_directory(file, dir, base_dir)? {
            if !config.trust_anchors.contains(&c) {
                config.trust_anchors.push(c);
            }
        }
    }
    if let Some(crl) = &s.crl {
        config.crls = crls(file, crl, base_dir)?;
    }

    let flag = |b: &Option<Setting<bool>>| b.as_ref().map(|b| b.value);
    match profile.kind {
        ProfileKind::Server => {
            // As Kamailio's set_verification(): require_certificate or verify_client=on
            // require a verified certificate; verify_certificate or verify_client=optional
            // verify one if sent; otherwise none is requested. (Profile::check refused
            // contradictions between verify_client and the two flags.)
            let vc = s.verify_client.as_ref().map(|v| v.value);
            let require = flag(&s.require_certificate).unwrap_or(false) || vc == Some(VerifyClient::On);
            config.verify_peer =
                require || flag(&s.verify_certificate).unwrap_or(false) || vc == Some(VerifyClient::Optional);
            config.require_peer_certificate = require;
        }
        ProfileKind::Client => {
            // Kamailio's client default is no verification at all; sipstls's is to verify
            // (chain and RFC 5922 name): only an explicit verify_certificate = no turns it
            // off. require_certificate = yes also means verify (a server always sends one).
            config.verify_peer =
                flag(&s.verify_certificate).unwrap_or(true) || flag(&s.require_certificate).unwrap_or(false);
            config.require_peer_certificate = false;
            config.server_name = s.server_name.as_ref().map(|n| n.value.clone());
        }
    }
    if let Some(d) = &s.verify_depth {
        config.verify_depth = d.value;
    }
    let (min, max) =
        s.method.as_ref().map(|m| m.value.versions()).unwrap_or((ProtocolVersion::Tls12, ProtocolVersion::Tls13));
    config.min_version = min;
    config.max_version = max;
    if let Some(c) = &s.cipher_list {
        config.cipher_list_tls12 = c.value.tls12.clone();
        config.cipher_suites_tls13 = c.value.tls13.clone();
    }

    let role = match profile.kind {
        ProfileKind::Server => Role::Server,
        ProfileKind::Client => Role::Client,
    };
    config.validate(role, "sipstls-config", Capabilities::all()).map_err(|e| invalid(profile, e))?;
    Ok(config)
}

/// A refusal of [`DomainConfig::validate`], located at the setting it concerns when the
/// profile has it, else at the profile header.
fn invalid(profile: &Profile, e: Error) -> ConfigError {
    let s = &profile.settings;
    let (reason, setting) = match &e {
        Error::InvalidConfig { setting, reason } => (reason.clone(), *setting),
        other => (other.to_string(), ""),
    };
    let at: Option<&Setting<String>> = match setting {
        "trust_anchors" => s.ca_list.as_ref().or(s.ca_path.as_ref()),
        "identities" => s.certificate.as_ref(),
        "crls" => s.crl.as_ref(),
        _ => None,
    };
    let hint = match setting {
        "trust_anchors" => " (set ca_list or ca_path)",
        _ => "",
    };
    let msg = format!("{profile}: {reason}{hint}");
    let err = match at {
        Some(at) => at.error(&profile.origin.file, ErrorKind::Invalid, msg),
        None => profile.origin.error(ErrorKind::Invalid, msg),
    };
    err.with_source(e)
}
