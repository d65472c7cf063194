//! The conformance suite for the OpenSSL backend.
sipstls_conformance::conformance_suite!(sipstls::openssl::OpensslBackend::new());
