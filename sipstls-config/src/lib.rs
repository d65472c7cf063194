//! # sipstls-config
//!
//! Reads Kamailio's TLS profile file (`tls.cfg`, the tls module's `config` parameter) and
//! a native TOML equivalent into sipstls's plain-data [`DomainConfig`]s, and builds a
//! [`DomainTable`](sipstls_core::DomainTable) from them for any
//! [`Backend`](sipstls_core::Backend).
//!
//! Two stages:
//!
//! 1. **Parse** ([`KamailioConfig::parse`], [`KamailioConfig::read`],
//!    [`KamailioConfig::parse_toml`]): text to [`Profile`]s with typed [`Settings`]; no file
//!    other than the configuration is touched. Syntax, unknown keys, bad values, methods
//!    below TLS 1.2, contradictions and duplicate profiles are refused here.
//! 2. **Load** ([`KamailioConfig::load`]): certificates, keys, CA lists and directories,
//!    CRLs are read (relative paths resolved as Kamailio does, against a base directory you
//!    give), every profile
//!    becomes a [`DomainConfig`] checked by [`DomainConfig::validate`];
//!    [`Domains::build_table`] compiles them with a backend.
//!
//! Nothing wrong is ever replaced by a default: every refusal is a [`ConfigError`] naming
//! the file, line and key, displayed as `tls.cfg:12: key "method": ...`.
//!
//! ```
//! use sipstls_config::{KamailioConfig, ParseOptions, ProfileKind, Selector};
//!
//! let text = "\
//! [server:127.0.0.1:5061]
//! method = TLSv1.2+
//! certificate = certs/server.crt
//! private_key = certs/server.key
//! ";
//! let cfg = KamailioConfig::parse(text, "tls.cfg", &ParseOptions::default())?;
//! assert_eq!(cfg.profiles[0].kind, ProfileKind::Server);
//! assert_eq!(cfg.profiles[0].selector, Selector::Addr("127.0.0.1:5061".parse().unwrap()));
//!
//! // Methods below TLS 1.2 are refused unless allowed (then raised to TLS 1.2).
//! let err = KamailioConfig::parse("[client:default]\nmethod = TLSv1\n", "tls.cfg", &ParseOptions::default())
//!     .unwrap_err();
//! assert!(err.to_string().starts_with("tls.cfg:2: key \"method\": "));
//!
//! // Reading the files: relative paths against Kamailio's configuration directory.
//! # fn load(cfg: &KamailioConfig) -> Result<(), sipstls_config::ConfigError> {
//! let domains = cfg.load("/etc/kamailio")?;
//! // let table = domains.build_table(backend)?;
//! # Ok(()) }
//! # Ok::<(), sipstls_config::ConfigError>(())
//! ```
//!
//! ## Mapping decisions
//!
//! - **`method`**: `TLSv1.2` is exactly TLS 1.2, `TLSv1.2+` TLS 1.2 to 1.3, `TLSv1.3` and
//!   `TLSv1.3+` TLS 1.3. `SSLv23` (OpenSSL's "negotiate the best version") is TLS 1.2
//!   to 1.3 and is accepted as it is. `SSLv2`, `SSLv3`, `TLSv1`/`TLSv1.0`, `TLSv1.1`,
//!   `TLSv1+`/`TLSv1.0+` and `TLSv1.1+` are refused unless
//!   [`ParseOptions::allow_deprecated_methods`] is set; then each bound of their range is
//!   raised to TLS 1.2 (`TLSv1` becomes exactly TLS 1.2, `TLSv1+` TLS 1.2 to 1.3). No
//!   `method`: TLS 1.2 to 1.3 (Kamailio's default `TLSv1+`, raised).
//! - **Server verification** (as Kamailio's OpenSSL modes): `require_certificate = yes`
//!   or `verify_client = on` require and verify a client certificate;
//!   `verify_certificate = yes` or `verify_client = optional` request one and verify it if
//!   sent; otherwise none is requested. `verify_client = optional_no_ca` is refused:
//!   sipstls never accepts a certificate that fails verification. Where `verify_client`
//!   and the two booleans are both written they must agree.
//! - **Client verification**: on unless `verify_certificate = no` (Kamailio's own default
//!   is off; sipstls keeps its secure default). `verify_certificate = no` disables all
//!   checks of the server's certificate: anyone can impersonate the server. When verifying,
//!   the server's name is checked as RFC 5922 says ([`NameVerification::Rfc5922`]);
//!   `server_name` is the name sent as SNI and verified when a connect call gives none.
//! - **`cipher_list`**: explicit suite names only, mapped to IANA names (see [`cipher`]);
//!   OpenSSL keyword expressions (`HIGH`, `!aNULL`, `DEFAULT`...) are refused.
//! - **Paths**: as Kamailio: absolute paths and paths starting with `.` (relative to the
//!   working directory) are used as they are; other relative paths are resolved against
//!   the base directory given to [`KamailioConfig::load`], where Kamailio uses the
//!   directory of `kamailio.cfg`.
//! - **Profiles**: `[server:default]` and `[server:any]` serve every listener
//!   ([`Listener::Any`](sipstls_core::Listener::Any)), `[server:any]` only by SNI (it needs
//!   `server_name`); `server_name` on `[server:IP:PORT]` selects it by SNI on that
//!   listener, and when every profile of that address has a `server_name`, the last of
//!   them is also the listener's domain until SNI says otherwise (as in Kamailio, which
//!   finds profiles by address before SNI is known). Unlike Kamailio, a profile without
//!   `server_name` may share its address with profiles that have one (it is the
//!   listener's domain, they are SNI choices). `[client:any]` is chosen by `server_name`,
//!   `[client:IP:PORT]` by remote address alone (Kamailio also compares its
//!   `server_name` with the target's name when both are set); `server_id` adds a lookup
//!   by id. Settings a profile leaves out are sipstls's defaults, not the default
//!   profile's (as in Kamailio, where they come from module parameters); settings tls.cfg
//!   has no key for (ALPN, resumption, key log, process model) keep sipstls's defaults.
//!   A server profile needs `certificate` and `private_key` (Kamailio would fall back to
//!   a `cert.pem` next to its configuration).
//! - **Stricter than Kamailio**: a key set twice in one profile (Kamailio keeps the last),
//!   a key before the first section of a file, line continuations, a password for an
//!   unencrypted key, `verify_client` or `server_name_mode` on a client profile,
//!   `server_id` on a server profile and `server_name` on `[server:default]` (which
//!   Kamailio ignores) are errors.
//!
//! [`DomainConfig`]: sipstls_core::DomainConfig
//! [`DomainConfig::validate`]: sipstls_core::DomainConfig::validate
//! [`NameVerification::Rfc5922`]: sipstls_core::NameVerification::Rfc5922
#![deny(unsafe_code)]
#![warn(missing_docs)]
// Public types that will grow are #[non_exhaustive]; the closed ones say why.
#![warn(clippy::exhaustive_structs, clippy::exhaustive_enums)]

mod cfg;
pub mod cipher;
mod error;
mod load;
mod model;
mod toml_format;

use std::fs;
use std::path::Path;

pub use error::{ConfigError, ErrorKind, Origin};
pub use load::{ClientDomainConfig, ClientSelector, Domains, ServerDomainConfig};
pub use model::{
    KamailioConfig, Method, ParseOptions, Profile, ProfileKind, Selector, ServerNameMode, Setting, Settings,
    VerifyClient,
};

impl KamailioConfig {
    /// Parses tls.cfg text; `file` names it in errors.
    pub fn parse(text: &str, file: &str, options: &ParseOptions) -> Result<KamailioConfig, ConfigError> {
        let mut out = KamailioConfig::default();
        cfg::parse(text, file, options, &mut out)?;
        out.check()?;
        Ok(out)
    }

    /// Parses the native TOML format; `file` names it in errors.
    ///
    /// `[[server]]` tables select their listener with `listen`, `[[client]]` tables their
    /// remote side with `remote` (`"default"`, `"any"` or `"IP:port"`, as a tls.cfg
    /// section header). Every other key is a tls.cfg key under its canonical name
    /// (`private_key`, not `pkey_file`), with TOML types: booleans for
    /// `verify_certificate` and `require_certificate`, integers for `verify_depth` and
    /// `server_name_mode`, strings for the rest. Values go through the same checks as
    /// tls.cfg values, so the same profile in either format gives the same
    /// [`DomainConfig`](sipstls_core::DomainConfig); errors name the line (unknown keys and
    /// type errors are toml's own messages).
    ///
    /// ```toml
    /// [[server]]
    /// listen = "127.0.0.1:5061"
    /// method = "TLSv1.2+"
    /// certificate = "certs/server.crt"
    /// private_key = "certs/server.key"
    /// server_name = "sip.example.com"   # SNI to match
    /// server_name_mode = 1              # 0 exact, 1 with subdomains, 2 subdomains only
    ///
    /// [[client]]
    /// remote = "default"
    /// ca_list = "certs/ca.crt"
    /// ```
    ///
    /// ```
    /// # use sipstls_config::{KamailioConfig, ParseOptions, Selector};
    /// let cfg = KamailioConfig::parse_toml(
    ///     "[[client]]\nremote = \"default\"\nverify_certificate = true\nca_list = \"ca.crt\"\n",
    ///     "tls.toml",
    ///     &ParseOptions::default(),
    /// )?;
    /// assert_eq!(cfg.profiles[0].selector, Selector::Default);
    /// # Ok::<(), sipstls_config::ConfigError>(())
    /// ```
    pub fn parse_toml(text: &str, file: &str, options: &ParseOptions) -> Result<KamailioConfig, ConfigError> {
        let out = toml_format::parse(text, file, options)?;
        out.check()?;
        Ok(out)
    }

    /// Reads a tls.cfg file, or a directory of them as Kamailio does: every regular file
    /// in it (whatever its name), here in name order (Kamailio takes the order the
    /// directory lists). Unlike Kamailio, which parses the concatenation, each file must
    /// start its own profiles: a key before the first section of a file is an error.
    pub fn read(path: impl AsRef<Path>, options: &ParseOptions) -> Result<KamailioConfig, ConfigError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let io = |what: &Path, e: std::io::Error| ConfigError {
            file: Some(what.display().to_string()),
            ..ConfigError::new(ErrorKind::Io, e.to_string())
        };
        let meta = fs::metadata(path).map_err(|e| io(path, e))?;
        let mut out = KamailioConfig::default();
        if meta.is_dir() {
            let mut files = Vec::new();
            for entry in fs::read_dir(path).map_err(|e| io(path, e))? {
                let p = entry.map_err(|e| io(path, e))?.path();
                if fs::metadata(&p).map_err(|e| io(&p, e))?.is_file() {
                    files.push(p);
                }
            }
            files.sort();
            for f in files {
                let text = read_text(&f).map_err(|e| io(&f, e))?;
                cfg::parse(&text, &f.display().to_string(), options, &mut out)?;
            }
        } else {
            let text = read_text(path).map_err(|e| io(path, e))?;
            cfg::parse(&text, &name, options, &mut out)?;
        }
        out.check()?;
        Ok(out)
    }

    /// Reads a file of the native TOML format.
    pub fn read_toml(path: impl AsRef<Path>, options: &ParseOptions) -> Result<KamailioConfig, ConfigError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let text = read_text(path)
            .map_err(|e| ConfigError { file: Some(name.clone()), ..ConfigError::new(ErrorKind::Io, e.to_string()) })?;
        KamailioConfig::parse_toml(&text, &name, options)
    }
}

fn read_text(path: &Path) -> std::io::Result<String> {
    let bytes = fs::read(path)?;
    String::from_utf8(bytes).map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}
