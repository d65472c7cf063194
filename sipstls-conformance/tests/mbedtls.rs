//! The conformance suite for the mbedtls backend (built with `--features mbedtls`).
#![cfg(feature = "mbedtls")]
sipstls_conformance::conformance_suite!(sipstls::mbedtls::MbedtlsBackend::new());
