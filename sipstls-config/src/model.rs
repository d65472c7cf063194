//! The parsed form of a configuration: profiles with typed settings, file paths still as
//! written. Both file formats produce it; [`KamailioConfig::load`] turns it into domains.

use std::fmt;
use std::net::SocketAddr;

use sipstls_core::{ProtocolVersion, ServerName, SniMatch};

use crate::cipher::CipherSuites;
use crate::error::{ConfigError, ErrorKind, Origin};

/// Options of the parsers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParseOptions {
    /// Accept the methods below TLS 1.2 (`SSLv2`, `SSLv3`, `TLSv1`, `TLSv1.0`, `TLSv1.1`,
    /// `TLSv1+`, `TLSv1.0+`, `TLSv1.1+`), raising each bound of their version range to
    /// TLS 1.2, sipstls's floor: `TLSv1` becomes exactly TLS 1.2, `TLSv1+` becomes
    /// TLS 1.2 to 1.3. Off by default: such a method is refused, naming its line.
    pub allow_deprecated_methods: bool,
}

impl ParseOptions {
    /// Sets [`allow_deprecated_methods`](ParseOptions::allow_deprecated_methods).
    pub fn with_deprecated_methods(mut self, allow: bool) -> Self {
        self.allow_deprecated_methods = allow;
        self
    }
}

/// A parsed configuration: server and client profiles in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct KamailioConfig {
    /// The profiles, in the order they were written.
    pub profiles: Vec<Profile>,
}

/// Server (`[server:...]`) or client (`[client:...]`) profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::exhaustive_enums)] // closed: tls.cfg profiles are server or client
pub enum ProfileKind {
    /// Used for connections we accept.
    Server,
    /// Used for connections we open.
    Client,
}

impl ProfileKind {
    /// `"server"` or `"client"`.
    pub fn name(self) -> &'static str {
        match self {
            ProfileKind::Server => "server",
            ProfileKind::Client => "client",
        }
    }
}

/// Which connections a profile is for: the part after the colon of a section header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::exhaustive_enums)] // closed: what a tls.cfg profile header can name
pub enum Selector {
    /// `default` (also `def`, `*`): when no other profile matches.
    Default,
    /// `any` (also `all`): every address, chosen by `server_name` (SNI for servers, the
    /// target name for clients). Needs `server_name`.
    Any,
    /// One local (server) or remote (client) address.
    Addr(SocketAddr),
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Default => f.write_str("default"),
            Selector::Any => f.write_str("any"),
            Selector::Addr(a) => write!(f, "{a}"),
        }
    }
}

/// One `[server:...]` or `[client:...]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Profile {
    /// Server or client.
    pub kind: ProfileKind,
    /// Which connections it is for.
    pub selector: Selector,
    /// Where its header was written.
    pub origin: Origin,
    /// Its settings.
    pub settings: Settings,
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}:{}]", self.kind.name(), self.selector)
    }
}

/// A setting's value, the key as it was written and its line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::exhaustive_structs)] // closed: a value and where it was written
pub struct Setting<T> {
    /// The typed value.
    pub value: T,
    /// The key as written (an alias such as `pkey_file` stays `pkey_file`).
    pub key: String,
    /// The 1-based line.
    pub line: usize,
}

impl<T> Setting<T> {
    pub(crate) fn error(&self, file: &str, kind: ErrorKind, message: impl Into<String>) -> ConfigError {
        ConfigError::new(kind, message).at(file, self.line).key(&self.key)
    }
}

/// Kamailio's `method`: the TLS versions a profile allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::exhaustive_enums)] // closed: the method values Kamailio's tls.cfg defines
pub enum Method {
    /// `SSLv2` (deprecated).
    Sslv2,
    /// `SSLv3` (deprecated).
    Sslv3,
    /// `SSLv23`: "negotiate the best version both sides have". Not deprecated: it maps to
    /// TLS 1.2 to 1.3.
    Sslv23,
    /// `TLSv1`, `TLSv1.0` (deprecated).
    Tls10,
    /// `TLSv1+`, `TLSv1.0+` (deprecated).
    Tls10Plus,
    /// `TLSv1.1` (deprecated).
    Tls11,
    /// `TLSv1.1+` (deprecated).
    Tls11Plus,
    /// `TLSv1.2`: exactly TLS 1.2.
    Tls12,
    /// `TLSv1.2+`: TLS 1.2 to 1.3.
    Tls12Plus,
    /// `TLSv1.3`: exactly TLS 1.3.
    Tls13,
    /// `TLSv1.3+`: TLS 1.3 (and later, when there is a later).
    Tls13Plus,
}

impl Method {
    /// Parses a Kamailio method name (case-insensitive, as Kamailio).
    pub fn parse(s: &str) -> Option<Method> {
        Some(match s.to_ascii_lowercase().as_str() {
            "sslv2" => Method::Sslv2,
            "sslv3" => Method::Sslv3,
            "sslv23" => Method::Sslv23,
            "tlsv1" | "tlsv1.0" => Method::Tls10,
            "tlsv1+" | "tlsv1.0+" => Method::Tls10Plus,
            "tlsv1.1" => Method::Tls11,
            "tlsv1.1+" => Method::Tls11Plus,
            "tlsv1.2" => Method::Tls12,
            "tlsv1.2+" => Method::Tls12Plus,
            "tlsv1.3" => Method::Tls13,
            "tlsv1.3+" => Method::Tls13Plus,
            _ => return None,
        })
    }

    /// True for the methods that allow versions below TLS 1.2 and need
    /// [`ParseOptions::allow_deprecated_methods`].
    pub fn is_deprecated(self) -> bool {
        matches!(
            self,
            Method::Sslv2 | Method::Sslv3 | Method::Tls10 | Method::Tls10Plus | Method::Tls11 | Method::Tls11Plus
        )
    }

    /// The sipstls version range: each bound raised to TLS 1.2 (deprecated methods map to
    /// exactly TLS 1.2 or, for the `+` forms, TLS 1.2 to 1.3; `SSLv23` to TLS 1.2 to 1.3).
    pub fn versions(self) -> (ProtocolVersion, ProtocolVersion) {
        use ProtocolVersion::{Tls12, Tls13};
        match self {
            Method::Sslv2 | Method::Sslv3 | Method::Tls10 | Method::Tls11 | Method::Tls12 => (Tls12, Tls12),
            Method::Sslv23 | Method::Tls10Plus | Method::Tls11Plus | Method::Tls12Plus => (Tls12, Tls13),
            Method::Tls13 | Method::Tls13Plus => (Tls13, Tls13),
        }
    }
}

/// Kamailio's `verify_client` (server profiles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::exhaustive_enums)] // closed: the verify_client values Kamailio's tls.cfg defines
pub enum VerifyClient {
    /// No client certificate is requested.
    Off,
    /// A client certificate is required and verified.
    On,
    /// A client certificate is requested and verified if sent.
    Optional,
}

/// A complete set of settings of one profile. `None`: not written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Settings {
    /// `method` / `tls_method`.
    pub method: Option<Setting<Method>>,
    /// `verify_certificate` / `verify_cert`.
    pub verify_certificate: Option<Setting<bool>>,
    /// `verify_depth`.
    pub verify_depth: Option<Setting<u8>>,
    /// `require_certificate` / `require_cert`.
    pub require_certificate: Option<Setting<bool>>,
    /// `verify_client` (server profiles only).
    pub verify_client: Option<Setting<VerifyClient>>,
    /// `private_key` / `pkey_file`: a path.
    pub private_key: Option<Setting<String>>,
    /// `private_key_password` / `pkey_password`.
    pub private_key_password: Option<Setting<String>>,
    /// `certificate` / `cert_file`: a path (chain, leaf first).
    pub certificate: Option<Setting<String>>,
    /// `certificate2` / `cert_file2`: a second chain (say RSA beside ECDSA).
    pub certificate2: Option<Setting<String>>,
    /// `private_key2` / `pkey_file2`.
    pub private_key2: Option<Setting<String>>,
    /// `private_key_password2` / `pkey_password2`.
    pub private_key_password2: Option<Setting<String>>,
    /// `ca_list` / `calist_file`: a PEM file of trusted CA certificates.
    pub ca_list: Option<Setting<String>>,
    /// `ca_path`: a directory of PEM CA certificates.
    pub ca_path: Option<Setting<String>>,
    /// `crl`: a file of certificate revocation lists (PEM or DER).
    pub crl: Option<Setting<String>>,
    /// `cipher_list`, mapped to IANA suite names.
    pub cipher_list: Option<Setting<CipherSuites>>,
    /// `server_name`: servers match it against SNI; clients send and verify it.
    pub server_name: Option<Setting<String>>,
    /// `server_name_mode` (server profiles): how `server_name` matches SNI.
    pub server_name_mode: Option<Setting<ServerNameMode>>,
    /// `server_id` (client profiles): the id a connect call can name the profile by.
    pub server_id: Option<Setting<String>>,
}

/// Kamailio's `server_name_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[allow(clippy::exhaustive_enums)] // closed: the server_name_mode values Kamailio's tls.cfg defines
pub enum ServerNameMode {
    /// 0: only the exact name (the default).
    #[default]
    Exact,
    /// 1: the name and its subdomains.
    DomainAndSubdomains,
    /// 2: subdomains only.
    SubdomainsOnly,
}

impl ServerNameMode {
    /// The [`SniMatch`] for `name`.
    pub fn sni_match(self, name: String) -> SniMatch {
        match self {
            ServerNameMode::Exact => SniMatch::Exact(name),
            ServerNameMode::DomainAndSubdomains => SniMatch::DomainAndSubdomains(name),
            ServerNameMode::SubdomainsOnly => SniMatch::SubdomainsOnly(name),
        }
    }
}

/// A value as a file format delivers it: text for tls.cfg, typed for TOML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawValue {
    Text(String),
    Bool(bool),
    Int(i64),
}

impl RawValue {
    fn text(&self) -> Result<&str, String> {
        match self {
            RawValue::Text(s) => Ok(s),
            _ => Err("expected a string".into()),
        }
    }

    fn bool(&self) -> Result<bool, String> {
        match self {
            RawValue::Bool(b) => Ok(*b),
            RawValue::Int(_) => Err("expected a boolean".into()),
            // Kamailio's boolean words, case-insensitive.
            RawValue::Text(s) => match s.to_ascii_lowercase().as_str() {
                "yes" | "true" | "enable" | "enabled" | "on" | "1" => Ok(true),
                "no" | "false" | "disable" | "disabled" | "off" | "0" => Ok(false),
                _ => Err(format!("{s:?} is not a boolean (yes/no, on/off, true/false, 1/0, enable/disable)")),
            },
        }
    }

    fn int(&self) -> Result<i64, String> {
        match self {
            RawValue::Int(i) => Ok(*i),
            RawValue::Bool(_) => Err("expected an integer".into()),
            RawValue::Text(s) => s.parse().map_err(|_| format!("{s:?} is not an integer")),
        }
    }
}

/// The canonical name of a key or one of its Kamailio aliases (case-insensitive).
pub(crate) fn canonical_key(key: &str) -> Option<&'static str> {
    Some(match key.to_ascii_lowercase().as_str() {
        "method" | "tls_method" => "method",
        "verify_certificate" | "verify_cert" => "verify_certificate",
        "verify_depth" => "verify_depth",
        "require_certificate" | "require_cert" => "require_certificate",
        "verify_client" => "verify_client",
        "private_key" | "pkey_file" => "private_key",
        "private_key_password" | "pkey_password" => "private_key_password",
        "certificate" | "cert_file" => "certificate",
        "certificate2" | "cert_file2" => "certificate2",
        "private_key2" | "pkey_file2" => "private_key2",
        "private_key_password2" | "pkey_password2" => "private_key_password2",
        "ca_list" | "calist_file" => "ca_list",
        "ca_path" => "ca_path",
        "crl" => "crl",
        "cipher_list" => "cipher_list",
        "server_name" => "server_name",
        "server_name_mode" => "server_name_mode",
        "server_id" => "server_id",
        _ => return None,
    })
}

impl Settings {
    /// Sets `key` (as written, possibly an alias) from `value` found at `line` of `file`.
    pub(crate) fn set(
        &mut self,
        key: &str,
        value: RawValue,
        file: &str,
        line: usize,
        options: &ParseOptions,
    ) -> Result<(), ConfigError> {
        let err = |kind: ErrorKind, msg: String| ConfigError::new(kind, msg).at(file, line).key(key);
        let canonical = canonical_key(key).ok_or_else(|| {
            let hint = match key.to_ascii_lowercase().as_str() {
                "ca_file" | "cafile" | "ca" => " (did you mean ca_list?)",
                "cipher" | "ciphers" | "cipher_suites" => " (did you mean cipher_list?)",
                "cert" | "certfile" => " (did you mean certificate?)",
                "key" | "keyfile" | "pkey" => " (did you mean private_key?)",
                "tls_version" | "version" | "protocol" => " (did you mean method?)",
                "verify_peer" | "verify" => " (did you mean verify_certificate?)",
                _ => "",
            };
            err(
                ErrorKind::UnknownKey,
                format!(
                    "unknown key{hint}; Kamailio's tls module knows method, verify_certificate, verify_depth, \
                     require_certificate, verify_client, private_key, private_key_password, certificate, \
                     certificate2, private_key2, private_key_password2, ca_list, ca_path, crl, cipher_list, \
                     server_name, server_name_mode and server_id (and their aliases)"
                ),
            )
        })?;
        let bad = |msg: String| err(ErrorKind::BadValue, msg);
        let text = || value.text().map(str::to_owned).map_err(bad);
        let path = || {
            let t = text()?;
            if t.is_empty() {
                return Err(bad("an empty path".into()));
            }
            Ok(t)
        };

        macro_rules! store {
            ($field:ident, $value:expr) => {{
                if let Some(prev) = &self.$field {
                    return Err(err(
                        ErrorKind::DuplicateKey,
                        format!("{canonical} is already set at line {} (as {:?})", prev.line, prev.key),
                    ));
                }
                let v = $value;
                self.$field = Some(Setting { value: v, key: key.to_owned(), line });
            }};
        }

        match canonical {
            "method" => {
                let t = text()?;
                let m = Method::parse(&t).ok_or_else(|| {
                    bad(format!("unknown method {t:?} (TLSv1.2, TLSv1.2+, TLSv1.3, TLSv1.3+ or SSLv23)"))
                })?;
                if m.is_deprecated() && !options.allow_deprecated_methods {
                    return Err(err(
                        ErrorKind::DeprecatedMethod,
                        format!(
                            "{t} allows versions below TLS 1.2, which sipstls does not implement; use \
                             TLSv1.2+ (or allow deprecated methods to raise it to TLS 1.2)"
                        ),
                    ));
                }
                store!(method, m)
            }
            "verify_certificate" => store!(verify_certificate, value.bool().map_err(bad)?),
            "require_certificate" => store!(require_certificate, value.bool().map_err(bad)?),
            "verify_depth" => {
                let i = value.int().map_err(bad)?;
                let d = u8::try_from(i).map_err(|_| bad(format!("{i} is outside 0 to 255")))?;
                store!(verify_depth, d)
            }
            "verify_client" => {
                let t = text()?;
                let v = match t.to_ascii_lowercase().as_str() {
                    "off" => VerifyClient::Off,
                    "on" => VerifyClient::On,
                    "optional" => VerifyClient::Optional,
                    "optional_no_ca" => {
                        return Err(err(
                            ErrorKind::Unsupported,
                            "optional_no_ca accepts client certificates that fail verification; sipstls \
                             never accepts an unverified certificate (use optional, with ca_list)"
                                .into(),
                        ))
                    }
                    _ => return Err(bad(format!("{t:?} is not off, on or optional"))),
                };
                store!(verify_client, v)
            }
            "private_key" => store!(private_key, path()?),
            "private_key_password" => store!(private_key_password, text()?),
            "certificate" => store!(certificate, path()?),
            "certificate2" => store!(certificate2, path()?),
            "private_key2" => store!(private_key2, path()?),
            "private_key_password2" => store!(private_key_password2, text()?),
            "ca_list" => store!(ca_list, path()?),
            "ca_path" => store!(ca_path, path()?),
            "crl" => store!(crl, path()?),
            "cipher_list" => {
                let t = text()?;
                let suites = CipherSuites::from_openssl(&t).map_err(|(kind, msg)| err(kind, msg))?;
                store!(cipher_list, suites)
            }
            "server_name" => {
                let t = text()?;
                ServerName::parse(&t).map_err(|e| bad(format!("{t:?} is not a host name or address ({e})")))?;
                store!(server_name, t)
            }
            "server_name_mode" => {
                let mode = match value.int().map_err(bad)? {
                    0 => ServerNameMode::Exact,
                    1 => ServerNameMode::DomainAndSubdomains,
                    2 => ServerNameMode::SubdomainsOnly,
                    i => return Err(bad(format!("{i} is not 0 (exact), 1 (domain and subdomains) or 2 (subdomains)"))),
                };
                store!(server_name_mode, mode)
            }
            "server_id" => {
                let t = text()?;
                if t.is_empty() {
                    return Err(bad("an empty server_id".into()));
                }
                store!(server_id, t)
            }
            _ => unreachable!("canonical_key returned an unhandled key"),
        }
        Ok(())
    }
}

impl Profile {
    /// Checks what can be checked without reading files: settings that only apply to the
    /// other kind of profile, incomplete pairs, contradictions.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        let s = &self.settings;
        let file = &self.origin.file;
        let header = |kind: ErrorKind, msg: String| self.origin.error(kind, format!("{self}: {msg}"));
        let server = self.kind == ProfileKind::Server;

        if self.selector == Selector::Any && s.server_name.is_none() {
            return Err(header(
                ErrorKind::Inconsistent,
                "a profile for any address is chosen by name and needs server_name".into(),
            ));
        }
        if let Some(m) = &s.server_name_mode {
            if !server {
                return Err(m.error(file, ErrorKind::Inconsistent, "server_name_mode applies to server profiles"));
            }
            if s.server_name.is_none() {
                return Err(m.error(file, ErrorKind::Inconsistent, "server_name_mode needs server_name"));
            }
        }
        if server {
            if let Some(id) = &s.server_id {
                return Err(id.error(
                    file,
                    ErrorKind::Inconsistent,
                    "server_id names client profiles (for connect calls); a server profile cannot use it",
                ));
            }
            if let Some(n) = &s.server_name {
                if matches!(ServerName::parse(&n.value), Ok(ServerName::Ip(_))) {
                    return Err(n.error(
                        file,
                        ErrorKind::Inconsistent,
                        "a server matches server_name against SNI, which never carries an IP address",
                    ));
                }
            }
            if let (Selector::Default, Some(n)) = (self.selector, &s.server_name) {
                return Err(n.error(
                    file,
                    ErrorKind::Inconsistent,
                    "the default server profile serves connections no other profile matches; \
                     use [server:any] to select by SNI on every listener",
                ));
            }
        } else if let Some(v) = &s.verify_client {
            return Err(v.error(
                file,
                ErrorKind::Inconsistent,
                "verify_client applies to server profiles; use verify_certificate on a client",
            ));
        }

        // Certificate and key come in pairs; passwords need their key.
        for (cert, key, pass) in [
            (&s.certificate, &s.private_key, &s.private_key_password),
            (&s.certificate2, &s.private_key2, &s.private_key_password2),
        ] {
            match (cert, key) {
                (Some(c), None) => {
                    return Err(c.error(file, ErrorKind::Inconsistent, "a certificate needs its private key"))
                }
                (None, Some(k)) => {
                    return Err(k.error(file, ErrorKind::Inconsistent, "a private key needs its certificate"))
                }
                _ => {}
            }
            if let (Some(p), None) = (pass, key) {
                return Err(p.error(file, ErrorKind::Inconsistent, "a password without a private key"));
            }
        }
        if let (Some(c2), None) = (&s.certificate2, &s.certificate) {
            return Err(c2.error(file, ErrorKind::Inconsistent, "certificate2 needs a first certificate"));
        }
        if server && s.certificate.is_none() {
            return Err(header(
                ErrorKind::Inconsistent,
                "a server profile needs certificate and private_key (sipstls has no default certificate file)".into(),
            ));
        }

        // verify_client and the two booleans must agree where both are written.
        if let Some(vc) = &s.verify_client {
            let (verify, require) = match vc.value {
                VerifyClient::Off => (false, false),
                VerifyClient::Optional => (true, false),
                VerifyClient::On => (true, true),
            };
            for (other, implied) in [(&s.verify_certificate, verify), (&s.require_certificate, require)] {
                if let Some(o) = other {
                    if o.value != implied {
                        return Err(o.error(
                            file,
                            ErrorKind::Inconsistent,
                            format!(
                                "{} = {} contradicts {} at line {}",
                                o.key,
                                if o.value { "yes" } else { "no" },
                                vc.key,
                                vc.line
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The key that identifies the profile for duplicate detection.
    fn identity(&self) -> (ProfileKind, Selector, Option<String>) {
        let name = match (self.kind, self.selector) {
            // A client profile for an address is chosen by address alone.
            (ProfileKind::Client, Selector::Addr(_)) | (_, Selector::Default) => None,
            _ => self.settings.server_name.as_ref().map(|n| n.value.to_ascii_lowercase()),
        };
        (self.kind, self.selector, name)
    }
}

impl KamailioConfig {
    /// Checks every profile and refuses duplicates.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        for (i, p) in self.profiles.iter().enumerate() {
            p.check()?;
            if let Some(first) = self.profiles[..i].iter().find(|q| q.identity() == p.identity()) {
                return Err(p.origin.error(
                    ErrorKind::DuplicateProfile,
                    format!("duplicate profile {p}{} (first defined at {})", name_note(p), first.origin),
                ));
            }
            if let Some(id) = &p.settings.server_id {
                let same = |q: &&Profile| {
                    q.settings.server_id.as_ref().is_some_and(|o| o.value.eq_ignore_ascii_case(&id.value))
                };
                if let Some(first) = self.profiles[..i].iter().find(same) {
                    return Err(id.error(
                        &p.origin.file,
                        ErrorKind::DuplicateProfile,
                        format!("server_id {:?} is already used by {first} at {}", id.value, first.origin),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn name_note(p: &Profile) -> String {
    match (&p.settings.server_name, p.selector, p.kind) {
        (Some(n), Selector::Any, _) | (Some(n), Selector::Addr(_), ProfileKind::Server) => {
            format!(" with server_name {:?}", n.value)
        }
        _ => String::new(),
    }
}
