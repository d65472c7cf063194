//! The conformance suite for the wolfssl backend (built with `--features wolfssl`).
#![cfg(feature = "wolfssl")]
sipstls_conformance::conformance_suite!(sipstls::wolfssl::WolfsslBackend::new());

/// wolfSSL-specific regression: 300 TLS 1.3 connections, each resuming the previous one's
/// ticket. wolfSSL 5.9.4 carries the ticket nonce along such a chain and failed the 256th
/// handshake with `SESSION_TICKET_NONCE_OVERFLOW`; the backend's ticket callback bounds the
/// chain (a full handshake every 101 connections).
#[test]
fn chained_resumptions_beyond_255() {
    use sipstls::{Backend, ProtocolVersion, ServerName};
    use sipstls_conformance::checks::{client_cfg, server_cfg};
    use sipstls_conformance::pki::SERVER_NAME;
    use sipstls_conformance::pump;
    let b = sipstls::wolfssl::WolfsslBackend::new();
    let sd = b.server_domain(&server_cfg(ProtocolVersion::Tls13)).unwrap();
    let cd = b.client_domain(&client_cfg(ProtocolVersion::Tls13)).unwrap();
    let mut resumed = 0;
    for i in 0..300 {
        let mut c = cd.connect(Some(&ServerName::parse(SERVER_NAME).unwrap())).unwrap();
        let mut s = sd.accept().unwrap();
        pump::handshake(&mut *c, &mut *s).unwrap_or_else(|f| panic!("connection {i}: {f:?}"));
        assert_eq!(pump::send(&mut *s, &mut *c, b"x").unwrap(), b"x"); // delivers the ticket
        resumed += usize::from(c.info().unwrap().resumed);
    }
    assert!(resumed >= 290, "only {resumed} of 300 connections resumed");
}
