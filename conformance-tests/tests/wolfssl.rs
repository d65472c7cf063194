//! The conformance suite for the wolfssl backend (built with `--features wolfssl`).
#![cfg(feature = "wolfssl")]
sipstls_conformance::conformance_suite!(sipstls::wolfssl::WolfsslBackend::new());
