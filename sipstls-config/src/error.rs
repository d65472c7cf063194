//! The one error type of this crate: where (file, line, key) and what.

use std::fmt;

/// What kind of problem a [`ConfigError`] reports.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The text does not follow the file's syntax (a line that is neither a section, a
    /// `key = value` line nor a comment; a missing `=`; an unterminated quote...).
    Syntax,
    /// A section header names a profile type other than `server` or `client`.
    UnknownSection,
    /// A section header's address is not `default`, `any` or `IP:port`.
    MalformedAddress,
    /// A key Kamailio's tls module does not know.
    UnknownKey,
    /// A key set twice in one profile (also through an alias).
    DuplicateKey,
    /// A value of the wrong type or outside its range.
    BadValue,
    /// A method below TLS 1.2 (`SSLv2`, `SSLv3`, `TLSv1`, `TLSv1.1`, `TLSv1+`, `TLSv1.1+`)
    /// without [`ParseOptions::allow_deprecated_methods`](crate::ParseOptions).
    DeprecatedMethod,
    /// A setting Kamailio accepts but sipstls refuses to honour (`verify_client =
    /// optional_no_ca`, OpenSSL cipher keywords, ...).
    Unsupported,
    /// Settings of one profile that contradict each other or are incomplete
    /// (`certificate` without `private_key`, a server profile without certificate...).
    Inconsistent,
    /// Two profiles for the same kind and address (and server name).
    DuplicateProfile,
    /// A file or directory named by the configuration cannot be read.
    Io,
    /// A certificate, key or CRL file does not hold what it should.
    Pem,
    /// A private key does not decrypt with its `private_key_password`.
    WrongPassword,
    /// The resulting domain is refused by sipstls's own checks
    /// ([`DomainConfig::validate`](sipstls_core::DomainConfig::validate)).
    Invalid,
    /// A backend refused to compile a domain, or the domain table refused it.
    Backend,
}

/// An error in a configuration: what kind, where (file, line, key when there is one) and a
/// message. Displays as `tls.cfg:12: key "method": ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
#[non_exhaustive]
pub struct ConfigError {
    /// What kind of problem.
    pub kind: ErrorKind,
    /// The configuration file, as it was named to the parser.
    pub file: Option<String>,
    /// The 1-based line in `file`.
    pub line: Option<usize>,
    /// The key, as written in the file, when the problem is one setting's.
    pub key: Option<String>,
    /// What is wrong, in words.
    pub message: String,
    /// The sipstls error behind it, if any (boxed: it is large and errors are rare).
    #[source]
    pub source: Option<Box<sipstls_core::Error>>,
}

impl ConfigError {
    /// An error of `kind` with a message and no location yet.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ConfigError { kind, file: None, line: None, key: None, message: message.into(), source: None }
    }

    /// Sets the file and line.
    pub fn at(mut self, file: &str, line: usize) -> Self {
        self.file = Some(file.to_owned());
        self.line = Some(line);
        self
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub(crate) fn with_source(mut self, source: sipstls_core::Error) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    fn render(&self) -> String {
        let mut out = String::new();
        match (&self.file, self.line) {
            (Some(f), Some(l)) => out.push_str(&format!("{f}:{l}: ")),
            (Some(f), None) => out.push_str(&format!("{f}: ")),
            (None, Some(l)) => out.push_str(&format!("line {l}: ")),
            (None, None) => {}
        }
        if let Some(k) = &self.key {
            out.push_str(&format!("key {k:?}: "));
        }
        out.push_str(&self.message);
        out
    }
}

/// Where a profile or a setting was written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Origin {
    /// The file, as it was named to the parser.
    pub file: String,
    /// The 1-based line.
    pub line: usize,
}

impl Origin {
    pub(crate) fn error(&self, kind: ErrorKind, message: impl Into<String>) -> ConfigError {
        ConfigError::new(kind, message).at(&self.file, self.line)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}
