//! The conformance suite for the rustls backend.
#![cfg(feature = "rustls")]
sipstls_conformance::conformance_suite!(sipstls::rustls::RustlsBackend::new());

/// rustls-specific: in the migrating model the settings whose caches use process-private
/// locks (which deadlock across processes, measured) are refused with a typed error.
#[test]
fn migrating_refuses_rustls_session_caches() {
    use sipstls::{Backend, Capabilities, DomainConfig, Error, ProcessModel, Resumption};
    use sipstls_conformance::pki::pki;
    let b = sipstls::rustls::RustlsBackend::new();
    let m = ProcessModel::Migrating;
    let server = DomainConfig::server(pki().server_ecdsa.identity()).with_process_model(m);
    match b.server_domain(&server) {
        Err(Error::Unsupported { capability, .. }) => assert_eq!(capability, Capabilities::RESUMPTION_SESSION_ID),
        other => panic!("default resumption (session IDs on) must be refused when migrating: {:?}", other.err()),
    }
    let client = DomainConfig::client(pki().roots()).with_process_model(m);
    match b.client_domain(&client) {
        Err(Error::Unsupported { capability, .. }) => assert_eq!(capability, Capabilities::RESUMPTION_TICKETS),
        other => panic!("client resumption must be refused when migrating: {:?}", other.err()),
    }
    assert!(b.client_domain(&client.with_resumption(Resumption::DISABLED)).is_ok());
    // The same settings are fine in the pinned model (each session stays in one process).
    let pinned = DomainConfig::server(pki().server_ecdsa.identity()).with_process_model(ProcessModel::Pinned);
    assert!(b.server_domain(&pinned).is_ok());
}
