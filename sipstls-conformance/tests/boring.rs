//! The conformance suite for the BoringSSL build of the OpenSSL backend (built with
//! `--no-default-features --features rustls,boring`).
#![cfg(feature = "boring")]
sipstls_conformance::conformance_suite!(sipstls::boring::BoringBackend::new());
