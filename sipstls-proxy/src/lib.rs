//! # sipstls-proxy
//!
//! A SIP-over-TLS terminator as a service, for SIP servers whose code you do not change
//! (Kamailio, OpenSIPS, Asterisk, FreeSWITCH): TLS peers connect to the proxy, which sends
//! their plaintext to the SIP server over TCP with a PROXY v2 header first (client address,
//! SNI, TLS facts); the SIP server reaches TLS peers through the proxy's outbound
//! listeners. One process holds every TLS session ([`sipstls_manager::TlsManager`]) with
//! the backend chosen at build time.
//!
//! The binary is the product (`sipstls-proxy --help`); this library holds its parts:
//! [`config`] (the TOML file and the Kamailio `tls.cfg` it includes), [`service`] (start,
//! reload on SIGHUP, drain on SIGTERM, privileges) and [`metrics`] (Prometheus text).
// Public types that will grow are #[non_exhaustive]; the closed ones say why.
#![warn(clippy::exhaustive_structs, clippy::exhaustive_enums)]

pub mod config;
pub mod metrics;
pub mod service;
