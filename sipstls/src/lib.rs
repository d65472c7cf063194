//! # sipstls
//!
//! A pluggable TLS layer for SIP servers. Pick the TLS library with a cargo feature
//! (`rustls` by default; `openssl`, `boring`, `wolfssl`, `mbedtls`), drive sessions sans-I/O through
//! [`Session`], or use the blocking [`TlsStream`] adapter:
//!
//! ```no_run
//! use std::io::Write;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let ca_pem = b"";
//! let backend = sipstls::default_backend();
//! let domain = backend.client_domain(&sipstls::DomainConfig::client(sipstls::Certificate::all_from_pem(ca_pem)?))?;
//! let tcp = std::net::TcpStream::connect("sip.example.com:5061")?;
//! let mut tls = sipstls::TlsStream::connect(&*domain, "sip.example.com", tcp)?;
//! tls.write_all(b"OPTIONS sip:sip.example.com SIP/2.0\r\n...")?;
//! # Ok(()) }
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]
// Public types that will grow are #[non_exhaustive]; the closed ones say why.
#![warn(clippy::exhaustive_structs, clippy::exhaustive_enums)]

use std::sync::Arc;

pub use sipstls_core::*;

mod stream;
pub use stream::{tls_error, ReadTimeout, TlsStream};

/// Async TLS for tokio: [`TlsAcceptor`](sipstls_tokio::TlsAcceptor),
/// [`TlsConnector`](sipstls_tokio::TlsConnector), [`TlsStream`](sipstls_tokio::TlsStream).
#[cfg(feature = "tokio")]
pub use sipstls_tokio as tokio;

/// README.md's examples, compiled.
#[cfg(all(doctest, feature = "tokio"))]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

#[cfg(feature = "mbedtls")]
pub use sipstls_backend_mbedtls as mbedtls;
#[cfg(feature = "boring")]
pub use sipstls_backend_openssl as boring;
#[cfg(feature = "openssl")]
pub use sipstls_backend_openssl as openssl;
#[cfg(feature = "rustls")]
pub use sipstls_backend_rustls as rustls;
#[cfg(feature = "wolfssl")]
pub use sipstls_backend_wolfssl as wolfssl;

#[cfg(not(any(
    feature = "rustls",
    feature = "openssl",
    feature = "boring",
    feature = "wolfssl",
    feature = "mbedtls"
)))]
compile_error!("sipstls needs at least one backend feature: `rustls`, `openssl`, `boring`, `wolfssl` or `mbedtls`");

#[cfg(all(feature = "openssl", feature = "boring"))]
compile_error!(
    "sipstls: the features `openssl` and `boring` exclude each other (OpenSSL and BoringSSL export the same C \
     symbols and cannot link into one binary); for BoringSSL build with \
     `--no-default-features --features rustls,boring`"
);

/// Every backend compiled into this build, in order of preference.
#[allow(clippy::vec_init_then_push)] // the pushes depend on features
pub fn backends() -> Vec<Arc<dyn Backend>> {
    #[allow(unused_mut)]
    let mut v: Vec<Arc<dyn Backend>> = Vec::new();
    #[cfg(feature = "rustls")]
    v.push(Arc::new(sipstls_backend_rustls::RustlsBackend::new()));
    #[cfg(feature = "openssl")]
    v.push(Arc::new(sipstls_backend_openssl::OpensslBackend::new()));
    #[cfg(feature = "boring")]
    v.push(Arc::new(sipstls_backend_openssl::BoringBackend::new()));
    #[cfg(feature = "wolfssl")]
    v.push(Arc::new(sipstls_backend_wolfssl::WolfsslBackend::new()));
    #[cfg(feature = "mbedtls")]
    v.push(Arc::new(sipstls_backend_mbedtls::MbedtlsBackend::new()));
    v
}

/// The names of the backends compiled in.
pub fn backend_names() -> Vec<&'static str> {
    backends().iter().map(|b| b.info().name).collect()
}

/// The backend called `name`, if it was compiled in.
pub fn backend(name: &str) -> Option<Arc<dyn Backend>> {
    backends().into_iter().find(|b| b.info().name.eq_ignore_ascii_case(name))
}

/// The preferred backend of this build: rustls when compiled in (memory-safe, fastest
/// handshakes here), else OpenSSL, else BoringSSL.
pub fn default_backend() -> Arc<dyn Backend> {
    cfg_if::cfg_if! {
        if #[cfg(feature = "rustls")] {
            Arc::new(sipstls_backend_rustls::RustlsBackend::new())
        } else if #[cfg(feature = "openssl")] {
            Arc::new(sipstls_backend_openssl::OpensslBackend::new())
        } else if #[cfg(feature = "boring")] {
            Arc::new(sipstls_backend_openssl::BoringBackend::new())
        } else if #[cfg(feature = "wolfssl")] {
            Arc::new(sipstls_backend_wolfssl::WolfsslBackend::new())
        } else {
            Arc::new(sipstls_backend_mbedtls::MbedtlsBackend::new())
        }
    }
}
