//! The native TOML format: the same profiles and keys as tls.cfg, with TOML types.
//!
//! ```toml
//! [[server]]
//! listen = "127.0.0.1:5061"        # or "default", or "any" (with server_name)
//! method = "TLSv1.2+"
//! certificate = "certs/server.crt"
//! private_key = "certs/server.key"
//! server_name = "sip.example.com"  # SNI to match
//! server_name_mode = 1             # 0 exact, 1 with subdomains, 2 subdomains only
//!
//! [[client]]
//! remote = "default"               # or "IP:port", or "any" (with server_name)
//! verify_certificate = true
//! ca_list = "certs/ca.crt"
//! ```
//!
//! Every tls.cfg key is accepted under its canonical name (`private_key`, not `pkey_file`),
//! booleans are TOML booleans and `verify_depth` / `server_name_mode` integers. Values go
//! through the same checks as tls.cfg values; errors name the line.

use serde::Deserialize;
use toml::Spanned;

use crate::cfg::parse_selector;
use crate::error::{ConfigError, ErrorKind, Origin};
use crate::model::{KamailioConfig, ParseOptions, Profile, ProfileKind, RawValue, Settings};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFile {
    #[serde(default)]
    server: Vec<Spanned<TomlProfile>>,
    #[serde(default)]
    client: Vec<Spanned<TomlProfile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlProfile {
    listen: Option<Spanned<String>>,
    remote: Option<Spanned<String>>,
    method: Option<Spanned<String>>,
    verify_certificate: Option<Spanned<bool>>,
    verify_depth: Option<Spanned<i64>>,
    require_certificate: Option<Spanned<bool>>,
    verify_client: Option<Spanned<String>>,
    private_key: Option<Spanned<String>>,
    private_key_password: Option<Spanned<String>>,
    certificate: Option<Spanned<String>>,
    certificate2: Option<Spanned<String>>,
    private_key2: Option<Spanned<String>>,
    private_key_password2: Option<Spanned<String>>,
    ca_list: Option<Spanned<String>>,
    ca_path: Option<Spanned<String>>,
    crl: Option<Spanned<String>>,
    cipher_list: Option<Spanned<String>>,
    server_name: Option<Spanned<String>>,
    server_name_mode: Option<Spanned<i64>>,
    server_id: Option<Spanned<String>>,
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

pub(crate) fn parse(text: &str, file: &str, options: &ParseOptions) -> Result<KamailioConfig, ConfigError> {
    let doc: TomlFile = toml::from_str(text).map_err(|e| {
        let kind = if e.message().contains("unknown field") {
            ErrorKind::UnknownKey
        } else if e.message().contains("invalid type") || e.message().contains("invalid value") {
            ErrorKind::BadValue
        } else {
            ErrorKind::Syntax
        };
        let err = ConfigError::new(kind, e.message().trim().to_owned());
        match e.span() {
            Some(span) => err.at(file, line_of(text, span.start)),
            None => ConfigError { file: Some(file.to_owned()), ..err },
        }
    })?;

    let mut all: Vec<(ProfileKind, Spanned<TomlProfile>)> = Vec::new();
    all.extend(doc.server.into_iter().map(|p| (ProfileKind::Server, p)));
    all.extend(doc.client.into_iter().map(|p| (ProfileKind::Client, p)));
    all.sort_by_key(|(_, p)| p.span().start);

    let mut out = KamailioConfig::default();
    for (kind, spanned) in all {
        let origin = Origin { file: file.to_owned(), line: line_of(text, spanned.span().start) };
        let p = spanned.into_inner();
        let (address_key, address, wrong) = match kind {
            ProfileKind::Server => ("listen", p.listen.as_ref(), p.remote.as_ref().map(|r| ("remote", r))),
            ProfileKind::Client => ("remote", p.remote.as_ref(), p.listen.as_ref().map(|l| ("listen", l))),
        };
        if let Some((key, v)) = wrong {
            return Err(ConfigError::new(
                ErrorKind::UnknownKey,
                format!("a {} profile is selected by {address_key}, not {key}", kind.name()),
            )
            .at(file, line_of(text, v.span().start))
            .key(key));
        }
        let address = address.ok_or_else(|| {
            origin.error(
                ErrorKind::Syntax,
                format!("a {} profile needs {address_key} (\"default\", \"any\" or \"IP:port\")", kind.name()),
            )
        })?;
        let selector = parse_selector(address.get_ref()).map_err(|m| {
            ConfigError::new(ErrorKind::MalformedAddress, m)
                .at(file, line_of(text, address.span().start))
                .key(address_key)
        })?;

        let mut settings = Settings::default();
        let mut put = |key: &str, value: Option<(RawValue, usize)>| -> Result<(), ConfigError> {
            match value {
                Some((v, offset)) => settings.set(key, v, file, line_of(text, offset), options),
                None => Ok(()),
            }
        };
        let text_of =
            |v: &Option<Spanned<String>>| v.as_ref().map(|s| (RawValue::Text(s.get_ref().clone()), s.span().start));
        let bool_of = |v: &Option<Spanned<bool>>| v.as_ref().map(|s| (RawValue::Bool(*s.get_ref()), s.span().start));
        let int_of = |v: &Option<Spanned<i64>>| v.as_ref().map(|s| (RawValue::Int(*s.get_ref()), s.span().start));
        put("method", text_of(&p.method))?;
        put("verify_certificate", bool_of(&p.verify_certificate))?;
        put("verify_depth", int_of(&p.verify_depth))?;
        put("require_certificate", bool_of(&p.require_certificate))?;
        put("verify_client", text_of(&p.verify_client))?;
        put("private_key", text_of(&p.private_key))?;
        put("private_key_password", text_of(&p.private_key_password))?;
        put("certificate", text_of(&p.certificate))?;
        put("certificate2", text_of(&p.certificate2))?;
        put("private_key2", text_of(&p.private_key2))?;
        put("private_key_password2", text_of(&p.private_key_password2))?;
        put("ca_list", text_of(&p.ca_list))?;
        put("ca_path", text_of(&p.ca_path))?;
        put("crl", text_of(&p.crl))?;
        put("cipher_list", text_of(&p.cipher_list))?;
        put("server_name", text_of(&p.server_name))?;
        put("server_name_mode", int_of(&p.server_name_mode))?;
        put("server_id", text_of(&p.server_id))?;
        out.profiles.push(Profile { kind, selector, origin, settings });
    }
    Ok(out)
}
