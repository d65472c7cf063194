//! The conformance suite for the rustls backend.
sipstls_conformance::conformance_suite!(sipstls::rustls::RustlsBackend::new());
