//! The conformance suite for the OpenSSL backend.
#![cfg(feature = "openssl")]
sipstls_conformance::conformance_suite!(sipstls::openssl::OpensslBackend::new());
