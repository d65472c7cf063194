//! The conformance checks. Each takes a backend (and a protocol version for the versioned
//! ones) and panics with a message when the backend does not behave as sipstls promises.
//! A check whose capability the backend lacks asserts the documented refusal instead.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use sipstls::{
    Backend, Capabilities, CertificateError, ClientTarget, DomainConfig, DomainTable, Error, Listener,
    NameVerification, ProtocolErrorKind, ProtocolVersion, Resumption, ServerName, Session, SniMatch, TlsStream,
    VerifyResult,
};

use crate::pki::{pki, ALT_NAME, CLIENT_CN, ROOT_CN, SERVER_NAME, SIP_DOMAIN, WRONG_NAME};
use crate::pump::{self, Failure, Side};

/// The protocol versions the backend claims, newest first.
pub fn claimed_versions(b: &dyn Backend) -> Vec<ProtocolVersion> {
    [ProtocolVersion::Tls13, ProtocolVersion::Tls12]
        .into_iter()
        .filter(|v| b.capabilities().contains(v.capability()))
        .collect()
}

/// A server config for the main certificate, only version `v`.
pub fn server_cfg(v: ProtocolVersion) -> DomainConfig {
    DomainConfig::server(pki().server_ecdsa.identity()).with_version(v)
}

/// A client config trusting the test root, only version `v`.
pub fn client_cfg(v: ProtocolVersion) -> DomainConfig {
    DomainConfig::client(pki().roots()).with_version(v)
}

fn dns(n: &str) -> ServerName {
    ServerName::parse(n).expect("valid name")
}

/// New client and server sessions from two configs of one backend.
pub fn sessions(
    b: &dyn Backend,
    scfg: &DomainConfig,
    ccfg: &DomainConfig,
    name: &str,
) -> (Box<dyn Session>, Box<dyn Session>) {
    let s = b.server_domain(scfg).expect("server domain").accept().expect("accept");
    let c = b.client_domain(ccfg).expect("client domain").connect(Some(&dns(name))).expect("connect");
    (c, s)
}

/// Handshakes; panics on failure.
pub fn connected(
    b: &dyn Backend,
    scfg: &DomainConfig,
    ccfg: &DomainConfig,
    name: &str,
) -> (Box<dyn Session>, Box<dyn Session>) {
    let (mut c, mut s) = sessions(b, scfg, ccfg, name);
    if let Err(f) = pump::handshake(&mut *c, &mut *s) {
        panic!("handshake failed: {f:?}");
    }
    (c, s)
}

fn expect_failure(c: &mut dyn Session, s: &mut dyn Session) -> Failure {
    match pump::handshake(c, s) {
        Ok(()) => panic!("the handshake succeeded but must fail"),
        Err(f) => f,
    }
}

/// For a version the backend does not claim: building a domain for it must be refused
/// with `Unsupported(version)`. Returns true when the version is supported.
pub fn version_supported(b: &dyn Backend, v: ProtocolVersion) -> bool {
    if b.capabilities().contains(v.capability()) {
        return true;
    }
    match b.server_domain(&server_cfg(v)) {
        Err(Error::Unsupported { capability, .. }) => assert_eq!(capability, v.capability()),
        Err(e) => panic!("{v} is not claimed, so it must be refused as Unsupported, got {e:?}"),
        Ok(_) => panic!("{v} is not claimed but a domain for it was built"),
    }
    false
}

macro_rules! require_version {
    ($b:expr, $v:expr) => {
        if !version_supported($b, $v) {
            return;
        }
    };
}

use crate::wire::random as pseudo_random;

// ---------------------------------------------------------------------------------------
// Versioned checks.

/// Handshake, then data both ways; the negotiated version is the one configured.
pub fn handshake_and_data(b: &dyn Backend, v: ProtocolVersion) {
    require_version!(b, v);
    let (mut c, mut s) = connected(b, &server_cfg(v), &client_cfg(v), SERVER_NAME);
    assert_eq!(c.info().expect("client info").version, v);
    assert_eq!(s.info().expect("server info").version, v);
    let req = b"OPTIONS sip:example.test SIP/2.0\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(pump::send(&mut *c, &mut *s, req).unwrap(), req);
    let resp = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(pump::send(&mut *s, &mut *c, resp).unwrap(), resp);
}

/// With default settings on both sides the server's preference wins and it is sipstls's
/// default order (`DEFAULT_TLS13_SUITES` / `DEFAULT_TLS12_SUITES`): AES-128-GCM first,
/// the same on every backend. (For TLS 1.2 the ECDSA test certificate makes it the ECDSA
/// suite.)
pub fn default_suite_order(b: &dyn Backend, v: ProtocolVersion) {
    require_version!(b, v);
    let (c, s) = connected(b, &server_cfg(v), &client_cfg(v), SERVER_NAME);
    let want = match v {
        ProtocolVersion::Tls13 => sipstls::DEFAULT_TLS13_SUITES[0],
        ProtocolVersion::Tls12 => sipstls::DEFAULT_TLS12_SUITES[0],
    };
    assert_eq!(s.info().expect("server info").cipher_suite, want);
    assert_eq!(c.info().expect("client info").cipher_suite, want);
}

/// Plaintext written before the handshake completes is delivered after it.
pub fn write_before_handshake(b: &dyn Backend, v: ProtocolVersion) {
    require_version!(b, v);
    let (mut c, mut s) = sessions(b, &server_cfg(v), &client_cfg(v), SERVER_NAME);
    assert_eq!(c.write(b"early").unwrap(), 5);
    pump::handshake(&mut *c, &mut *s).expect("handshake");
    pump::transfer(&mut *c, &mut *s).unwrap();
    let (got, _) = pump::drain_plaintext(&mut *s).unwrap();
    assert_eq!(got, b"early");
}

/// One MiB in one write, and a thousand one-byte writes, arrive intact.
pub fn large_and_tiny_writes(b: &dyn Backend, v: ProtocolVersion) {
    require_version!(b, v);
    let (mut c, mut s) = connected(b, &server_cfg(v), &client_cfg(v), SERVER_NAME);
    let big = pseudo_random(7, 1 << 20);
    assert!(pump::send(&mut *c, &mut *s, &big).unwrap() == big, "1 MiB payload corrupted");
    let mut got = Vec::new();
    for i in 0..1000u32 {
        let byte = [(i % 251) as u8];
        got.extend(pump::send(&mut *s, &mut *c, &byte).unwrap());
    }
    let want: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(got, want);
}

/// close_notify is seen as a clean close by the peer; writing after closing is refused.
pub fn close_notify(b: &dyn Backend, v: ProtocolVersion) {
    require_version!(b, v);
    let (mut c, mut s) = connected(b, &server_cfg(v), &client_cfg(v), SERVER_NAME);
    pump::send(&mut *c, &mut *s, b"bye").unwrap();
    c.close_notify();
    pump::transfer(&mut *c, &mut *s).unwrap();
    let (data, closed) = pump::drain_plaintext(&mut *s).unwrap();
    assert!(data.is_empty());
    assert!(closed, "server did not see close_notify");
    assert_eq!(c.write(b"more"), Err(Error::Closed));
}

/// A required client certificate that is presented is verified and reported.
pub fn client_cert_required_present(b: &dyn Backend, v: ProtocolVersion) {
    require_version!(b, v);
    let scfg = server_cfg(v).with_client_auth(sipstls::ClientAuth::Required(pki().roots()));
    let ccfg = client_cfg(v).with_identity(pki().client.identity());
    let (mut c, mut s) = connected(b, &scfg, &ccfg, SERVER_NAME);
    pump::send(&mut *c, &mut *s, b"hi").unwrap();
    let info = s.info().expect("server info");
    assert_eq!(info.verify, VerifyResult::Verified);
    let peer = info.peer.expect("client certificate parsed");
    assert_eq!(peer.subject_cn.as_deref(), Some(CLIENT_CN));
    assert!(peer.san_uri.iter().any(|u| u == "sip:alice@example.test"));
}

/// A required client certificate that is absent fails the handshake on the server with
/// `PeerCertificateRequired`.
pub fn client_cert_required_absent(b: &dyn Backend, v: ProtocolVersion) {
    require_version!(b, v);
    let scfg = server_cfg(v).with_client_auth(sipstls::ClientAuth::Required(pki().roots()));
    let (mut c, mut s) = sessions(b, &scfg, &client_cfg(v), SERVER_NAME);
    let f = expect_failure(&mut *c, &mut *s);
    assert_eq!((f.side, f.error), (Side::Server, Error::PeerCertificateRequired));
}

/// An optional client certificate may be absent; the server reports `NoCertificate`.
pub fn client_cert_optional_absent(b: &dyn Backend, v: ProtocolVersion) {
    require_version!(b, v);
    let scfg = server_cfg(v).with_client_auth(sipstls::ClientAuth::Optional(pki().roots()));
    let (mut c, mut s) = connected(b, &scfg, &client_cfg(v), SERVER_NAME);
    pump::send(&mut *c, &mut *s, b"hi").unwrap();
    let info = s.info().expect("server info");
    assert_eq!(info.verify, VerifyResult::NoCertificate);
    assert!(info.peer_chain.is_empty());
}

/// An optional client certificate that is presented is verified.
pub fn client_cert_optional_present(b: &dyn Backend, v: ProtocolVersion) {
    require_version!(b, v);
    let scfg = server_cfg(v).with_client_auth(sipstls::ClientAuth::Optional(pki().roots()));
    let ccfg = client_cfg(v).with_identity(pki().client.identity());
    let (mut c, mut s) = connected(b, &scfg, &ccfg, SERVER_NAME);
    pump::send(&mut *c, &mut *s, b"hi").unwrap();
    assert_eq!(s.info().unwrap().verify, VerifyResult::Verified);
}

/// A client certificate from an untrusted CA is refused by the server.
pub fn client_cert_untrusted_refused(b: &dyn Backend, v: ProtocolVersion) {
    require_version!(b, v);
    let scfg = server_cfg(v).with_client_auth(sipstls::ClientAuth::Optional(pki().roots()));
    let ccfg = client_cfg(v).with_identity(pki().client_untrusted.identity());
    let (mut c, mut s) = sessions(b, &scfg, &ccfg, SERVER_NAME);
    let f = expect_failure(&mut *c, &mut *s);
    assert_eq!((f.side, f.error), (Side::Server, Error::Certificate(CertificateError::UnknownIssuer)));
}

fn client_refuses(b: &dyn Backend, v: ProtocolVersion, scfg: DomainConfig, ccfg: DomainConfig, name: &str) -> Error {
    let (mut c, mut s) = sessions(b, &scfg, &ccfg, name);
    let f = expect_failure(&mut *c, &mut *s);
    assert_eq!(f.side, Side::Client, "the client must be the side that refuses: {f:?}");
    assert!(s.info().is_none(), "{v}: the server must not consider the session established");
    f.error
}

/// A server certificate from an unknown CA is refused by the client.
pub fn unknown_ca_refused(b: &dyn Backend, v: ProtocolVersion) {
    require_version!(b, v);
    let scfg = DomainConfig::server(pki().server_untrusted.identity()).with_version(v);
    let e = client_refuses(b, v, scfg, client_cfg(v), SERVER_NAME);
    assert_eq!(e, Error::Certificate(CertificateError::UnknownIssuer));
}

/// A server certificate that does not name the host is refused (RFC 5922).
pub fn wrong_name_refused(b: &dyn Backend, v: ProtocolVersion) {
    require_version!(b, v);
    let e = client_refuses(b, v, server_cfg(v), client_cfg(v), WRONG_NAME);
    assert!(matches!(e, Error::Certificate(CertificateError::NameMismatch { .. })), "got {e:?}");
}

/// An expired server certificate is refused.
pub fn expired_refused(b: &dyn Backend, v: ProtocolVersion) {
    require_version!(b, v);
    let scfg = DomainConfig::server(pki().server_expired.identity()).with_version(v);
    let e = client_refuses(b, v, scfg, client_cfg(v), SERVER_NAME);
    assert_eq!(e, Error::Certificate(CertificateError::Expired));
}

/// The SIP domain in a SAN URI `sip:example.test` identifies the server (RFC 5922), though
/// no DNS SAN names it.
pub fn sip_uri_identity_accepted(b: &dyn Backend, v: ProtocolVersion) {
    require_version!(b, v);
    let (c, _s) = connected(b, &server_cfg(v), &client_cfg(v), SIP_DOMAIN);
    assert_eq!(c.info().unwrap().sni.as_deref(), Some(SIP_DOMAIN));
}

/// Connecting by IP address verifies against SAN IP entries and sends no SNI.
pub fn ip_address_identity(b: &dyn Backend, v: ProtocolVersion) {
    require_version!(b, v);
    let cd = b.client_domain(&client_cfg(v)).unwrap();
    let sd = b.server_domain(&server_cfg(v)).unwrap();
    let ok: IpAddr = "127.0.0.1".parse().unwrap();
    let (mut c, mut s) = (cd.connect(Some(&ServerName::Ip(ok))).unwrap(), sd.accept().unwrap());
    pump::handshake(&mut *c, &mut *s).expect("IP in SAN must verify");
    assert_eq!(s.info().unwrap().sni, None, "an IP address is never sent as SNI");
    let bad: IpAddr = "192.0.2.7".parse().unwrap();
    let (mut c, mut s) = (cd.connect(Some(&ServerName::Ip(bad))).unwrap(), sd.accept().unwrap());
    let f = expect_failure(&mut *c, &mut *s);
    assert!(matches!(f.error, Error::Certificate(CertificateError::NameMismatch { .. })), "got {f:?}");
}

/// With name checks explicitly disabled, a wrong name is accepted (the chain is still
/// verified: an untrusted server is still refused).
pub fn name_check_disabled(b: &dyn Backend, v: ProtocolVersion) {
    require_version!(b, v);
    let mut ccfg = client_cfg(v);
    ccfg.name_verification = NameVerification::DangerousDisabled;
    connected(b, &server_cfg(v), &ccfg, WRONG_NAME);
    let scfg = DomainConfig::server(pki().server_untrusted.identity()).with_version(v);
    let e = client_refuses(b, v, scfg, ccfg, WRONG_NAME);
    assert_eq!(e, Error::Certificate(CertificateError::UnknownIssuer));
}

fn table_connect(
    b: &dyn Backend,
    table: &DomainTable,
    ccfg: &DomainConfig,
    name: &str,
) -> (Box<dyn Session>, Box<dyn Session>, Result<(), Failure>) {
    let mut s = table.accept("127.0.0.1:5061".parse().unwrap(), None).expect("accept");
    let mut c = b.client_domain(ccfg).unwrap().connect(Some(&dns(name))).unwrap();
    let r = pump::handshake(&mut *c, &mut *s);
    (c, s, r)
}

/// SNI selects the domain: exact name beats a parent-domain pattern, matching ignores
/// case, and an unknown name falls back to the listener's default domain.
pub fn sni_selects_domain(b: &dyn Backend, v: ProtocolVersion) {
    require_version!(b, v);
    if !b.capabilities().contains(Capabilities::SNI_SWITCH) {
        return sni_switch_refused(b);
    }
    let backend: Arc<dyn Backend> = sipstls::backend(b.info().name).expect("backend compiled in");
    let mut t = DomainTable::new(backend);
    t.add_server(Listener::Any, None, &DomainConfig::server(pki().server_expired.identity()).with_version(v)).unwrap();
    t.add_server(Listener::Any, Some(SniMatch::SubdomainsOnly(SIP_DOMAIN.into())), &server_cfg(v)).unwrap();
    t.add_server(
        Listener::Any,
        Some(SniMatch::Exact(ALT_NAME.into())),
        &DomainConfig::server(pki().server_alt.identity()).with_version(v),
    )
    .unwrap();
    let ccfg = client_cfg(v);

    let (c, s, r) = table_connect(b, &t, &ccfg, "ALT.Example.TEST");
    r.expect("exact SNI match, any case");
    assert_eq!(c.info().unwrap().peer.unwrap().subject_cn.as_deref(), Some(ALT_NAME));
    assert!(s.info().unwrap().sni.unwrap().eq_ignore_ascii_case(ALT_NAME));

    let (c, _s, r) = table_connect(b, &t, &ccfg, SERVER_NAME);
    r.expect("subdomain pattern");
    assert_eq!(c.info().unwrap().peer.unwrap().subject_cn.as_deref(), Some(SERVER_NAME));

    let (_c, _s, r) = table_connect(b, &t, &ccfg, "localhost");
    let f = r.expect_err("no SNI match: the default domain (expired certificate) serves");
    assert_eq!(f.error, Error::Certificate(CertificateError::Expired));
}

/// The SNI switch moves the whole domain: the selected domain's client-certificate policy
/// applies, not the default's.
pub fn sni_switch_applies_domain_policy(b: &dyn Backend, v: ProtocolVersion) {
    require_version!(b, v);
    if !b.capabilities().contains(Capabilities::SNI_SWITCH) {
        return sni_switch_refused(b);
    }
    let backend: Arc<dyn Backend> = sipstls::backend(b.info().name).unwrap();
    let mut t = DomainTable::new(backend);
    t.add_server(Listener::Any, None, &server_cfg(v)).unwrap();
    let strict = DomainConfig::server(pki().server_alt.identity())
        .with_version(v)
        .with_client_auth(sipstls::ClientAuth::Required(pki().roots()));
    t.add_server(Listener::Any, Some(SniMatch::Exact(ALT_NAME.into())), &strict).unwrap();
    let (_c, _s, r) = table_connect(b, &t, &client_cfg(v), SERVER_NAME);
    r.expect("default domain needs no client certificate");
    let (_c, _s, r) = table_connect(b, &t, &client_cfg(v), ALT_NAME);
    let f = r.expect_err("alt domain requires a client certificate");
    assert_eq!((f.side, f.error), (Side::Server, Error::PeerCertificateRequired));
    let with_cert = client_cfg(v).with_identity(pki().client.identity());
    let (_c, s, r) = table_connect(b, &t, &with_cert, ALT_NAME);
    r.expect("alt domain with a client certificate");
    let _ = s;
}

fn sni_switch_refused(b: &dyn Backend) {
    let backend: Arc<dyn Backend> = sipstls::backend(b.info().name).unwrap();
    let mut t = DomainTable::new(backend);
    let r = t.add_server(Listener::Any, Some(SniMatch::Exact(ALT_NAME.into())), &server_cfg(ProtocolVersion::Tls12));
    assert!(matches!(r, Err(Error::Unsupported { .. })), "SNI domains must be refused without SNI_SWITCH");
}

/// ALPN negotiates the server's preferred common protocol; no overlap fails the handshake
/// with a typed error; a client without ALPN gets none.
pub fn alpn(b: &dyn Backend, v: ProtocolVersion) {
    require_version!(b, v);
    if !b.capabilities().contains(Capabilities::ALPN) {
        let r = b.server_domain(&server_cfg(v).with_alpn(["sip"]));
        assert!(matches!(r, Err(Error::Unsupported { capability: Capabilities::ALPN, .. })));
        return;
    }
    let scfg = server_cfg(v).with_alpn(["x-other", "sip/2.0"]);
    let (c, s) = connected(b, &scfg, &client_cfg(v).with_alpn(["sip/2.0", "x-other"]), SERVER_NAME);
    assert_eq!(s.info().unwrap().alpn.as_deref(), Some(&b"x-other"[..]), "server preference wins");
    assert_eq!(c.info().unwrap().alpn.as_deref(), Some(&b"x-other"[..]));
    let (c, _s) = connected(b, &scfg, &client_cfg(v), SERVER_NAME);
    assert_eq!(c.info().unwrap().alpn, None);
    let (mut c, mut s) = sessions(b, &scfg, &client_cfg(v).with_alpn(["h2"]), SERVER_NAME);
    let f = expect_failure(&mut *c, &mut *s);
    assert_eq!(f.side, Side::Server);
    assert!(matches!(f.error, Error::Protocol { kind: ProtocolErrorKind::HandshakeFailure, .. }), "got {f:?}");
    assert_eq!(f.other, Some(Error::AlertReceived(sipstls::Alert::NO_APPLICATION_PROTOCOL)));
}

/// Runs `n` connections between one client domain and one server domain (data both ways,
/// clean close); returns whether each was resumed (client view), checking the server agrees.
fn resumption_series(b: &dyn Backend, scfg: &DomainConfig, ccfg: &DomainConfig, n: usize) -> Vec<bool> {
    let sd = b.server_domain(scfg).unwrap();
    let cd = b.client_domain(ccfg).unwrap();
    (0..n)
        .map(|_| {
            let mut c = cd.connect(Some(&dns(SERVER_NAME))).unwrap();
            let mut s = sd.accept().unwrap();
            pump::handshake(&mut *c, &mut *s).expect("handshake");
            pump::send(&mut *c, &mut *s, b"ping").unwrap();
            pump::send(&mut *s, &mut *c, b"pong").unwrap();
            let (cr, sr) = (c.info().unwrap().resumed, s.info().unwrap().resumed);
            assert_eq!(cr, sr, "client and server disagree on resumption");
            c.close_notify();
            pump::transfer(&mut *c, &mut *s).unwrap();
            s.close_notify();
            pump::transfer(&mut *s, &mut *c).unwrap();
            cr
        })
        .collect()
}

/// Session tickets: the second connection resumes, and the resumed session still knows
/// the peer; with resumption disabled nothing resumes.
pub fn resumption_tickets(b: &dyn Backend, v: ProtocolVersion) {
    require_version!(b, v);
    let tickets = Resumption::TICKETS;
    if !b.capabilities().contains(Capabilities::RESUMPTION_TICKETS) {
        let r = b.server_domain(&server_cfg(v).with_resumption(tickets));
        assert!(matches!(r, Err(Error::Unsupported { .. })));
        return;
    }
    let r = resumption_series(b, &server_cfg(v).with_resumption(tickets), &client_cfg(v).with_resumption(tickets), 3);
    assert_eq!(r, [false, true, true]);
    let off = Resumption::DISABLED;
    let r = resumption_series(b, &server_cfg(v).with_resumption(off), &client_cfg(v), 3);
    assert_eq!(r, [false, false, false], "a server with resumption disabled resumed");
}

/// Server-side session cache (TLS 1.2 session IDs; TLS 1.3 stateful tickets).
pub fn resumption_server_cache(b: &dyn Backend, v: ProtocolVersion) {
    require_version!(b, v);
    let ids = Resumption::SESSION_IDS;
    if !b.capabilities().contains(Capabilities::RESUMPTION_SESSION_ID) {
        let r = b.server_domain(&server_cfg(v).with_resumption(ids));
        assert!(matches!(r, Err(Error::Unsupported { .. })));
        return;
    }
    let r = resumption_series(b, &server_cfg(v).with_resumption(ids), &client_cfg(v), 3);
    assert_eq!(r, [false, true, true]);
}

/// Every `TlsInfo` field is filled in and correct on both sides.
pub fn tls_info_fields(b: &dyn Backend, v: ProtocolVersion) {
    require_version!(b, v);
    let scfg = server_cfg(v).with_client_auth(sipstls::ClientAuth::Required(pki().roots())).with_alpn(["sip/2.0"]);
    let ccfg = client_cfg(v).with_identity(pki().client.identity()).with_alpn(["sip/2.0"]);
    let (mut c, mut s) = connected(b, &scfg, &ccfg, SERVER_NAME);
    pump::send(&mut *c, &mut *s, b"x").unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    for (who, info) in [("client", c.info().unwrap()), ("server", s.info().unwrap())] {
        assert_eq!(info.version, v, "{who}");
        assert!(info.cipher_suite.starts_with("TLS_"), "{who}: IANA cipher name, got {}", info.cipher_suite);
        match v {
            ProtocolVersion::Tls13 => assert!(!info.cipher_suite.contains("_WITH_"), "{who}: {}", info.cipher_suite),
            ProtocolVersion::Tls12 => {
                assert!(info.cipher_suite.starts_with("TLS_ECDHE_ECDSA_WITH_"), "{who}: {}", info.cipher_suite)
            }
        }
        assert!(info.group.is_some(), "{who}: group");
        assert_eq!(info.sni.as_deref(), Some(SERVER_NAME), "{who}: sni");
        assert_eq!(info.alpn.as_deref(), Some(&b"sip/2.0"[..]), "{who}: alpn");
        assert!(!info.resumed, "{who}");
        assert_eq!(info.verify, VerifyResult::Verified, "{who}");
        assert!(!info.peer_chain.is_empty(), "{who}: peer chain");
        let p = info.peer.expect("peer certificate parsed");
        assert_eq!(p.issuer_cn.as_deref(), Some(ROOT_CN), "{who}: issuer");
        assert!(!p.serial_hex.is_empty(), "{who}: serial");
        assert!(p.not_before < now && now < p.not_after, "{who}: validity");
    }
    // The client sees the server's certificate, and vice versa.
    let sp = c.info().unwrap().peer.unwrap();
    assert_eq!(sp.subject_cn.as_deref(), Some(SERVER_NAME));
    assert!(sp.san_dns.iter().any(|d| d == SERVER_NAME));
    assert!(sp.san_uri.iter().any(|u| u == "sip:example.test"));
    assert!(sp.san_ip.contains(&"127.0.0.1".parse::<IpAddr>().unwrap()));
    assert_eq!(c.info().unwrap().peer_chain[0].der(), pki().server_ecdsa.der.as_slice());
    let cp = s.info().unwrap().peer.unwrap();
    assert_eq!(cp.subject_cn.as_deref(), Some(CLIENT_CN));
    assert_eq!(s.info().unwrap().peer_chain[0].der(), pki().client.der.as_slice());
}

/// Configured cipher suites are the ones negotiated.
pub fn cipher_suite_selection(b: &dyn Backend, v: ProtocolVersion) {
    require_version!(b, v);
    let (setting_cap, name) = match v {
        ProtocolVersion::Tls13 => (Capabilities::CIPHER_SUITES_TLS13, "TLS_CHACHA20_POLY1305_SHA256"),
        ProtocolVersion::Tls12 => (Capabilities::CIPHER_LIST_TLS12, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
    };
    let set = |mut cfg: DomainConfig| {
        match v {
            ProtocolVersion::Tls13 => cfg.cipher_suites_tls13 = Some(vec![name.into()]),
            ProtocolVersion::Tls12 => cfg.cipher_list_tls12 = Some(vec![name.into()]),
        }
        cfg
    };
    if !b.capabilities().contains(setting_cap) {
        assert!(matches!(b.server_domain(&set(server_cfg(v))), Err(Error::Unsupported { .. })));
        return;
    }
    let (c, s) = connected(b, &set(server_cfg(v)), &set(client_cfg(v)), SERVER_NAME);
    assert_eq!(c.info().unwrap().cipher_suite, name);
    assert_eq!(s.info().unwrap().cipher_suite, name);
}

/// An RSA-2048 identity works as well as ECDSA.
pub fn rsa_identity(b: &dyn Backend, v: ProtocolVersion) {
    require_version!(b, v);
    let scfg = DomainConfig::server(pki().server_rsa.identity()).with_version(v);
    let (mut c, mut s) = connected(b, &scfg, &client_cfg(v), SERVER_NAME);
    assert_eq!(pump::send(&mut *c, &mut *s, b"rsa").unwrap(), b"rsa");
}

/// A record longer than TLS allows, after the handshake, is a typed protocol error.
pub fn oversize_record_after_handshake(b: &dyn Backend, v: ProtocolVersion) {
    require_version!(b, v);
    let (_c, mut s) = connected(b, &server_cfg(v), &client_cfg(v), SERVER_NAME);
    let mut rec = vec![0x17, 0x03, 0x03, 0xFF, 0xFF];
    rec.extend(pseudo_random(3, 1024));
    let e = s.feed_tls(&rec).expect_err("a 65535-byte record length must be refused");
    assert!(matches!(e, Error::Protocol { kind: ProtocolErrorKind::RecordOverflow, .. }), "got {e:?}");
}

/// Asserts that `cfg` is refused as `Unsupported(cap)` on the side `role` (for a
/// capability the backend does not claim).
fn assert_refused(b: &dyn Backend, cap: Capabilities, server: bool, cfg: &DomainConfig) {
    let r = if server { b.server_domain(cfg).map(|_| ()) } else { b.client_domain(cfg).map(|_| ()) };
    match r {
        Err(Error::Unsupported { capability, .. }) => assert_eq!(capability, cap),
        other => panic!("{cap:?} is not claimed: expected Unsupported({cap:?}), got {other:?}"),
    }
}

/// A server requiring client certificates with the root's CRL refuses the revoked client
/// certificate (`Certificate(Revoked)`, on the server) and accepts a client certificate the
/// CRL does not list. Without `CRL`: the CRL is refused as `Unsupported(CRL)`.
pub fn crl_revoked_client_refused(b: &dyn Backend, v: ProtocolVersion) {
    require_version!(b, v);
    let scfg = server_cfg(v).with_client_auth(sipstls::ClientAuth::Required(pki().roots())).with_crls(pki().crls());
    if !b.capabilities().contains(Capabilities::CRL) {
        return assert_refused(b, Capabilities::CRL, true, &scfg);
    }
    let revoked = client_cfg(v).with_identity(pki().client_revoked.identity());
    let (mut c, mut s) = sessions(b, &scfg, &revoked, SERVER_NAME);
    let f = expect_failure(&mut *c, &mut *s);
    assert_eq!((f.side, &f.error), (Side::Server, &Error::Certificate(CertificateError::Revoked)), "{f:?}");
    assert!(s.info().is_none(), "the server must not consider the session established");

    let good = client_cfg(v).with_identity(pki().client.identity());
    let (mut c, mut s) = connected(b, &scfg, &good, SERVER_NAME);
    assert_eq!(pump::send(&mut *c, &mut *s, b"not revoked").unwrap(), b"not revoked");
    let info = s.info().expect("server info");
    assert_eq!(info.verify, VerifyResult::Verified);
    assert_eq!(info.peer_chain[0].der(), pki().client.der.as_slice());
}

/// A client with the root's CRL refuses the revoked server certificate
/// (`Certificate(Revoked)`, on the client) and accepts the server certificate the CRL does
/// not list. Without `CRL`: the CRL is refused as `Unsupported(CRL)`.
pub fn crl_revoked_server_refused(b: &dyn Backend, v: ProtocolVersion) {
    require_version!(b, v);
    let ccfg = client_cfg(v).with_crls(pki().crls());
    if !b.capabilities().contains(Capabilities::CRL) {
        return assert_refused(b, Capabilities::CRL, false, &ccfg);
    }
    let revoked = DomainConfig::server(pki().server_revoked.identity()).with_version(v);
    let e = client_refuses(b, v, revoked, ccfg.clone(), SERVER_NAME);
    assert_eq!(e, Error::Certificate(CertificateError::Revoked));
    let (mut c, mut s) = connected(b, &server_cfg(v), &ccfg, SERVER_NAME);
    assert_eq!(pump::send(&mut *s, &mut *c, b"not revoked").unwrap(), b"not revoked");
    assert_eq!(c.info().unwrap().peer_chain[0].der(), pki().server_ecdsa.der.as_slice());
}

/// One key log entry: label, client random, secret.
pub type KeyLogEntry = (String, Vec<u8>, Vec<u8>);

/// CRLs that do not cover the peer's issuer leave the peer's revocation status unknown,
/// and every backend refuses it (a certificate error, on the verifying side): a client
/// trusting both roots with only the untrusted root's CRL refuses the server, and a server
/// configured the same way refuses the client's certificate. Without `CRL`: refused as
/// `Unsupported(CRL)`.
pub fn crl_unknown_status_refused(b: &dyn Backend, v: ProtocolVersion) {
    require_version!(b, v);
    let p = pki();
    let both_roots = vec![
        sipstls::Certificate::from_der(p.root_der.clone()),
        sipstls::Certificate::from_der(p.other_root_der.clone()),
    ];
    let other_crl = vec![sipstls::Crl::from_der(p.other_crl_der.clone())];
    let ccfg = DomainConfig::client(both_roots.clone()).with_version(v).with_crls(other_crl.clone());
    if !b.capabilities().contains(Capabilities::CRL) {
        return assert_refused(b, Capabilities::CRL, false, &ccfg);
    }
    let e = client_refuses(b, v, server_cfg(v), ccfg, SERVER_NAME);
    assert!(matches!(e, Error::Certificate(_)), "{v}: a server of unknown revocation status: got {e:?}");

    let scfg = server_cfg(v).with_client_auth(sipstls::ClientAuth::Required(both_roots)).with_crls(other_crl);
    let (mut c, mut s) = sessions(b, &scfg, &client_cfg(v).with_identity(p.client.identity()), SERVER_NAME);
    let f = expect_failure(&mut *c, &mut *s);
    assert_eq!(f.side, Side::Server, "{v}: {f:?}");
    assert!(matches!(f.error, Error::Certificate(_)), "{v}: a client of unknown revocation status: got {f:?}");
}

/// A key log collecting every (label, client random, secret) it is given; clones share
/// the entries.
#[derive(Default, Clone)]
pub struct CollectKeyLog(pub Arc<std::sync::Mutex<Vec<KeyLogEntry>>>);

impl CollectKeyLog {
    /// The entries so far.
    pub fn entries(&self) -> Vec<KeyLogEntry> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl sipstls::KeyLog for CollectKeyLog {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push((
            label.to_owned(),
            client_random.to_vec(),
            secret.to_vec(),
        ));
    }
}

/// The labels a key log of one full handshake must carry for version `v` (what Wireshark
/// needs to decrypt both directions).
pub fn required_key_log_labels(v: ProtocolVersion) -> &'static [&'static str] {
    match v {
        ProtocolVersion::Tls12 => &["CLIENT_RANDOM"],
        ProtocolVersion::Tls13 => &[
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
            "SERVER_HANDSHAKE_TRAFFIC_SECRET",
            "CLIENT_TRAFFIC_SECRET_0",
            "SERVER_TRAFFIC_SECRET_0",
        ],
    }
}

/// Client and server each with their own key log: after a handshake and data both logs
/// hold the labels of the version (TLS 1.2 `CLIENT_RANDOM`; TLS 1.3 the handshake and
/// application traffic secrets, `EXPORTER_SECRET` optional, nothing else), one 32-byte
/// client random that is the same on both sides, and for every label the same secret on
/// both sides (each side derived it independently, so the secrets are the real ones).
/// Without `KEY_LOG`: a key log is refused as `Unsupported(KEY_LOG)` on both sides.
pub fn key_log_written(b: &dyn Backend, v: ProtocolVersion) {
    require_version!(b, v);
    let (clog, slog) = (CollectKeyLog::default(), CollectKeyLog::default());
    let scfg = server_cfg(v).with_key_log(sipstls::KeyLogSink::new(slog.clone()));
    let ccfg = client_cfg(v).with_key_log(sipstls::KeyLogSink::new(clog.clone()));
    if !b.capabilities().contains(Capabilities::KEY_LOG) {
        assert_refused(b, Capabilities::KEY_LOG, true, &scfg);
        return assert_refused(b, Capabilities::KEY_LOG, false, &ccfg);
    }
    let (mut c, mut s) = connected(b, &scfg, &ccfg, SERVER_NAME);
    assert_eq!(pump::send(&mut *c, &mut *s, b"ping").unwrap(), b"ping");
    assert_eq!(pump::send(&mut *s, &mut *c, b"pong").unwrap(), b"pong");
    let required = required_key_log_labels(v);
    let allowed: &[&str] = match v {
        ProtocolVersion::Tls12 => &["CLIENT_RANDOM"],
        ProtocolVersion::Tls13 => &[
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
            "SERVER_HANDSHAKE_TRAFFIC_SECRET",
            "CLIENT_TRAFFIC_SECRET_0",
            "SERVER_TRAFFIC_SECRET_0",
            "EXPORTER_SECRET",
        ],
    };
    let (centries, sentries) = (clog.entries(), slog.entries());
    let mut randoms = Vec::new();
    for (who, entries) in [("client", &centries), ("server", &sentries)] {
        assert!(!entries.is_empty(), "{v}: the {who} key log is empty");
        for (label, cr, secret) in entries.iter() {
            assert!(allowed.contains(&label.as_str()), "{v}: {who} logged an unexpected label {label}");
            assert_eq!(cr.len(), 32, "{v}: {who} {label}: the client random is 32 bytes");
            let want_len: &[usize] = if v == ProtocolVersion::Tls12 { &[48] } else { &[32, 48] };
            assert!(want_len.contains(&secret.len()), "{v}: {who} {label}: secret of {} bytes", secret.len());
            assert!(secret.iter().any(|&x| x != 0), "{v}: {who} {label}: an all-zero secret");
            randoms.push(cr.clone());
        }
        for want in required {
            let n = entries.iter().filter(|(l, _, _)| l == want).count();
            assert_eq!(n, 1, "{v}: the {who} key log has {n} {want} lines (want one): {entries:?}");
        }
    }
    randoms.dedup();
    assert_eq!(randoms.len(), 1, "{v}: one session, so one client random on both sides");
    for (label, _, secret) in &centries {
        let theirs = sentries.iter().find(|(l, _, _)| l == label);
        if let Some((_, _, theirs)) = theirs {
            assert_eq!(secret, theirs, "{v}: {label} differs between client and server");
        } else {
            assert!(!required.contains(&label.as_str()), "{v}: the server did not log {label}");
        }
    }
}

/// One server domain with an ECDSA and an RSA identity (in both orders): a client that
/// can only verify RSA signatures gets the RSA leaf, one restricted to ECDSA the ECDSA
/// leaf. TLS 1.2 restricts through sipstls's `cipher_list_tls12` (ECDHE_RSA vs
/// ECDHE_ECDSA suites) on this backend's own client; TLS 1.3 has no sipstls setting for
/// the client's signature algorithms, so a rustls client offering only RSA-PSS/PKCS#1 or
/// only ECDSA schemes is used (feature `rustls` of this crate). Without
/// `MULTIPLE_IDENTITIES`: the second identity is refused.
pub fn multiple_identities_selects(b: &dyn Backend, v: ProtocolVersion) {
    require_version!(b, v);
    let p = pki();
    let ecdsa_first = server_cfg(v).with_identity(p.server_rsa.identity());
    if !b.capabilities().contains(Capabilities::MULTIPLE_IDENTITIES) {
        return assert_refused(b, Capabilities::MULTIPLE_IDENTITIES, true, &ecdsa_first);
    }
    let rsa_first =
        DomainConfig::server(p.server_rsa.identity()).with_version(v).with_identity(p.server_ecdsa.identity());
    for (order, scfg) in [("ECDSA, RSA", &ecdsa_first), ("RSA, ECDSA", &rsa_first)] {
        for (kind, want) in [("RSA", &p.server_rsa), ("ECDSA", &p.server_ecdsa)] {
            let got = match v {
                ProtocolVersion::Tls12 => {
                    let suite = format!("TLS_ECDHE_{kind}_WITH_AES_128_GCM_SHA256");
                    let ccfg = client_cfg(v).with_cipher_list_tls12([suite.clone()]);
                    let (mut c, mut s) = sessions(b, scfg, &ccfg, SERVER_NAME);
                    if let Err(f) = pump::handshake(&mut *c, &mut *s) {
                        panic!("identities {order}, client offering only {suite}: handshake failed: {f:?}");
                    }
                    assert_eq!(pump::send(&mut *c, &mut *s, b"x").unwrap(), b"x");
                    assert_eq!(c.info().unwrap().cipher_suite, suite, "{order}");
                    c.info().unwrap().peer_chain[0].der().to_vec()
                }
                ProtocolVersion::Tls13 => crate::peers_rustls::tls13_leaf_for_schemes(b, scfg, kind == "RSA"),
            };
            assert!(got == want.der, "identities {order}: a client restricted to {kind} got the other leaf");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Version-independent checks.

/// A client offering only TLS 1.3 and a server offering only TLS 1.2 fail with a typed
/// error, not a crash or a downgrade.
pub fn version_mismatch_refused(b: &dyn Backend) {
    if !(version_supported(b, ProtocolVersion::Tls12) && version_supported(b, ProtocolVersion::Tls13)) {
        return;
    }
    let (mut c, mut s) =
        sessions(b, &server_cfg(ProtocolVersion::Tls12), &client_cfg(ProtocolVersion::Tls13), SERVER_NAME);
    let f = expect_failure(&mut *c, &mut *s);
    assert!(
        matches!(f.error, Error::Protocol { kind: ProtocolErrorKind::HandshakeFailure, .. } | Error::AlertReceived(_)),
        "got {f:?}"
    );
}

/// Random bytes to a server session give a typed protocol error (never a panic), and the
/// error is sticky.
pub fn garbage_input_typed_error(b: &dyn Backend) {
    let sd = b.server_domain(&DomainConfig::server(pki().server_ecdsa.identity())).unwrap();
    for seed in 1..=32u64 {
        let mut s = sd.accept().unwrap();
        let mut fed = 0usize;
        let err = loop {
            assert!(fed < (1 << 20), "seed {seed}: 1 MiB of random bytes accepted without an error");
            let chunk = pseudo_random(seed * 1000 + fed as u64, 4096);
            match s.feed_tls(&chunk) {
                Ok(n) => fed += n.max(1),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, Error::Protocol { .. } | Error::AlertReceived(_)), "seed {seed}: untyped error {err:?}");
        assert_eq!(s.feed_tls(b"more"), Err(err.clone()), "seed {seed}: errors must be sticky");
        assert_eq!(s.write(b"data"), Err(err.clone()));
        let mut out = [0u8; 1024];
        let _ = s.take_tls(&mut out); // the alert, if any; must not panic
        assert!(s.info().is_none());
    }
}

/// A record header announcing 65535 bytes is refused as a record overflow.
pub fn oversize_record_length(b: &dyn Backend) {
    let mut s = b.server_domain(&DomainConfig::server(pki().server_ecdsa.identity())).unwrap().accept().unwrap();
    let mut rec = vec![0x16, 0x03, 0x01, 0xFF, 0xFF];
    rec.extend(std::iter::repeat_n(0u8, 64));
    let e = s.feed_tls(&rec).expect_err("must be refused");
    assert!(matches!(e, Error::Protocol { kind: ProtocolErrorKind::RecordOverflow, .. }), "got {e:?}");
}

/// A transport that delivers `data` then EOF.
struct Truncated {
    data: Vec<u8>,
    pos: usize,
}

impl Read for Truncated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (self.data.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for Truncated {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Half a ClientHello then EOF: the session waits (no error, no output) while bytes are
/// missing, and the blocking adapter reports `UnexpectedEof` when the transport ends.
pub fn truncated_record(b: &dyn Backend) {
    let v =
        if b.capabilities().contains(Capabilities::TLS13) { ProtocolVersion::Tls13 } else { ProtocolVersion::Tls12 };
    let mut c = b.client_domain(&client_cfg(v)).unwrap().connect(Some(&dns(SERVER_NAME))).unwrap();
    let mut hello = vec![0u8; 64 * 1024];
    let n = c.take_tls(&mut hello);
    assert!(n > 50, "client must produce a ClientHello");
    hello.truncate(n / 2);
    let sd = b.server_domain(&server_cfg(v)).unwrap();
    let mut s = sd.accept().unwrap();
    assert_eq!(s.feed_tls(&hello), Ok(hello.len()));
    assert!(s.is_handshaking() && !s.wants_write() && s.error().is_none());
    let r = TlsStream::accept(&*sd, Truncated { data: hello, pos: 0 });
    let e = r.err().expect("truncated handshake must fail");
    assert_eq!(sipstls::tls_error(&e), Some(&Error::UnexpectedEof), "got {e:?}");
}

/// A key log that drops everything.
struct NoKeyLog;
impl sipstls::KeyLog for NoKeyLog {
    fn log(&self, _: &str, _: &[u8], _: &[u8]) {}
}

/// Settings the backend cannot honour are refused with `Unsupported`, the others accepted.
pub fn unsupported_settings_refused(b: &dyn Backend) {
    let caps = b.capabilities();
    let base = || DomainConfig::server(pki().server_ecdsa.identity());
    let cases: Vec<(Capabilities, DomainConfig)> = vec![
        (Capabilities::TLS12, base().with_version(ProtocolVersion::Tls12)),
        (Capabilities::TLS13, base().with_version(ProtocolVersion::Tls13)),
        (Capabilities::ALPN, base().with_alpn(["sip"])),
        (Capabilities::CLIENT_CERT, base().with_client_auth(sipstls::ClientAuth::Required(pki().roots()))),
        (Capabilities::CIPHER_LIST_TLS12, base().with_cipher_list_tls12(["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"])),
        (Capabilities::CIPHER_SUITES_TLS13, base().with_cipher_suites_tls13(["TLS_AES_128_GCM_SHA256"])),
        (Capabilities::RESUMPTION_TICKETS, base().with_resumption(Resumption::TICKETS)),
        (Capabilities::RESUMPTION_SESSION_ID, base().with_resumption(Resumption::SESSION_IDS)),
        (Capabilities::KEY_LOG, base().with_key_log(sipstls::KeyLogSink::new(NoKeyLog))),
        (
            Capabilities::CRL,
            base().with_client_auth(sipstls::ClientAuth::Required(pki().roots())).with_crls(pki().crls()),
        ),
        (Capabilities::MULTIPLE_IDENTITIES, base().with_identity(pki().server_rsa.identity())),
    ];
    let mut cases = cases;
    if caps.contains(Capabilities::RESUMPTION_SESSION_ID) {
        let store = sipstls::SessionStoreHandle::new(sipstls::LruSessionStore::new(16, 1 << 16));
        let r = Resumption::SESSION_IDS;
        cases.push((Capabilities::SESSION_STORE, base().with_resumption(r).with_session_store(store)));
    }
    if caps.contains(Capabilities::RESUMPTION_TICKETS) {
        let key = sipstls::TicketKey { name: [1; 16], key: [2; 32] };
        let keys = sipstls::TicketKeys { current: key, previous: None };
        let provider = sipstls::StaticTicketKeys::new(keys, std::time::Duration::from_secs(600));
        let r = Resumption::TICKETS;
        cases.push((
            Capabilities::TICKET_KEYS,
            base().with_resumption(r).with_ticket_keys(sipstls::TicketKeysHandle::new(provider)),
        ));
    }
    for (cap, cfg) in cases {
        match (caps.contains(cap), b.server_domain(&cfg)) {
            (true, Ok(_)) => {}
            (false, Err(Error::Unsupported { capability, .. })) => assert_eq!(capability, cap),
            (true, Err(e)) => panic!("{cap:?} is claimed but refused: {e:?}"),
            (false, Ok(_)) => panic!("{cap:?} is not claimed but was accepted (silently ignored?)"),
            (false, Err(e)) => panic!("{cap:?}: expected Unsupported, got {e:?}"),
        }
    }
}

/// Invalid configurations give `InvalidConfig` naming the setting.
pub fn invalid_config_refused(b: &dyn Backend) {
    let p = pki();
    let setting_of = |r: Result<(), Error>| match r {
        Err(Error::InvalidConfig { setting, .. }) => setting,
        other => panic!("expected InvalidConfig, got {other:?}"),
    };
    let srv = |cfg: DomainConfig| b.server_domain(&cfg).map(|_| ());
    let cli = |cfg: DomainConfig| b.client_domain(&cfg).map(|_| ());
    let mut inverted = DomainConfig::server(p.server_ecdsa.identity());
    inverted.min_version = ProtocolVersion::Tls13;
    inverted.max_version = ProtocolVersion::Tls12;
    assert_eq!(setting_of(srv(inverted)), "min_version");
    let mut no_identity = DomainConfig::default();
    no_identity.verify_peer = false;
    assert_eq!(setting_of(srv(no_identity)), "identities");
    let mut mismatched = p.server_ecdsa.identity();
    mismatched.key = p.server_alt.identity().key;
    assert_eq!(setting_of(srv(DomainConfig::server(mismatched))), "identities");
    let mut garbage = p.server_ecdsa.identity();
    garbage.chain = vec![sipstls::Certificate::from_der(vec![0x30, 0x03, 1, 2, 3])];
    assert_eq!(setting_of(srv(DomainConfig::server(garbage))), "identities");
    let unknown_cipher =
        DomainConfig::server(p.server_ecdsa.identity()).with_cipher_list_tls12(["TLS_RSA_WITH_RC4_128_MD5"]);
    if b.capabilities().contains(Capabilities::CIPHER_LIST_TLS12) {
        assert_eq!(setting_of(srv(unknown_cipher)), "cipher_list_tls12");
    }
    assert_eq!(setting_of(cli(DomainConfig::client(vec![]))), "trust_anchors");
    assert_eq!(setting_of(srv(DomainConfig::server(p.server_ecdsa.identity()).with_alpn([""]))), "alpn");
    // Session stores and ticket keys are server-side, and need their resumption mechanism.
    let store = || sipstls::SessionStoreHandle::new(sipstls::LruSessionStore::new(16, 1 << 16));
    let keys = || {
        let keys = sipstls::TicketKeys { current: sipstls::TicketKey { name: [1; 16], key: [2; 32] }, previous: None };
        sipstls::TicketKeysHandle::new(sipstls::StaticTicketKeys::new(keys, std::time::Duration::from_secs(600)))
    };
    assert_eq!(setting_of(cli(DomainConfig::client(p.roots()).with_session_store(store()))), "session_store");
    assert_eq!(setting_of(cli(DomainConfig::client(p.roots()).with_ticket_keys(keys()))), "ticket_keys");
    let srv_cfg = || DomainConfig::server(p.server_ecdsa.identity());
    let no_ids = srv_cfg().with_resumption(Resumption::TICKETS);
    assert_eq!(setting_of(srv(no_ids.with_session_store(store()))), "session_store");
    let no_tickets = srv_cfg().with_resumption(Resumption::SESSION_IDS);
    assert_eq!(setting_of(srv(no_tickets.with_ticket_keys(keys()))), "ticket_keys");
    // A client with name checks on and no name to check.
    let cd = b.client_domain(&client_cfg(ProtocolVersion::Tls12)).unwrap();
    assert_eq!(setting_of(cd.connect(None).map(|_| ())), "server_name");
}

/// The table picks server domains by listener address: exact address, then any address
/// on the port, then the catch-all; clients by id, address, name, default.
pub fn domain_table_selection(b: &dyn Backend) {
    let v =
        if b.capabilities().contains(Capabilities::TLS13) { ProtocolVersion::Tls13 } else { ProtocolVersion::Tls12 };
    let backend: Arc<dyn Backend> = sipstls::backend(b.info().name).unwrap();
    let p = pki();
    let mut t = DomainTable::new(backend);
    let exact: SocketAddr = "127.0.0.1:5061".parse().unwrap();
    t.add_server(Listener::Any, None, &DomainConfig::server(p.server_ecdsa.identity()).with_version(v)).unwrap();
    t.add_server(Listener::Addr(exact), None, &DomainConfig::server(p.server_alt.identity()).with_version(v)).unwrap();
    t.add_server(
        Listener::Addr("0.0.0.0:5062".parse().unwrap()),
        None,
        &DomainConfig::server(p.server_expired.identity()).with_version(v),
    )
    .unwrap();
    assert!(t.add_server(Listener::Any, None, &server_cfg(v)).is_err(), "two defaults for one listener");
    let ccfg = {
        let mut c = client_cfg(v);
        c.name_verification = NameVerification::DangerousDisabled;
        c
    };
    let peer_cn = |local: &str| {
        let mut s = t.accept(local.parse().unwrap(), None).unwrap();
        let mut c = b.client_domain(&ccfg).unwrap().connect(None).unwrap();
        match pump::handshake(&mut *c, &mut *s) {
            Ok(()) => c.info().unwrap().peer.unwrap().subject_cn.unwrap(),
            Err(f) => format!("{:?}", f.error),
        }
    };
    assert_eq!(peer_cn("127.0.0.1:5061"), ALT_NAME);
    assert_eq!(peer_cn("127.0.0.1:5060"), SERVER_NAME);
    assert_eq!(peer_cn("127.0.0.2:5062"), format!("{:?}", Error::Certificate(CertificateError::Expired)));

    // Clients.
    let mut t = DomainTable::new(sipstls::backend(b.info().name).unwrap());
    t.add_client_default(&client_cfg(v)).unwrap();
    t.add_client_id("tls-peer", &client_cfg(v).with_identity(p.client.identity())).unwrap();
    let by_name = client_cfg(v).with_alpn(["by-name"]);
    if b.capabilities().contains(Capabilities::ALPN) {
        t.add_client_name("ALT.example.test", &by_name).unwrap();
    }
    assert!(matches!(t.connect(&ClientTarget::default().domain_id("nope")), Err(Error::NoDomain(_))));
    let (d, _) = t.client_for(&ClientTarget::name(SERVER_NAME).domain_id("tls-peer")).unwrap();
    assert_eq!(d.config().identities.len(), 1, "explicit id wins");
    if b.capabilities().contains(Capabilities::ALPN) {
        let (d, _) = t.client_for(&ClientTarget::name("alt.EXAMPLE.test")).unwrap();
        assert_eq!(d.config().alpn, vec![b"by-name".to_vec()], "name lookup is case-insensitive");
    }
    let (d, name) = t.client_for(&ClientTarget::addr(exact)).unwrap();
    assert!(d.config().identities.is_empty() && d.config().alpn.is_empty(), "default");
    assert_eq!(name, Some(ServerName::Ip(exact.ip())), "the address is the name when none is given");
}

/// A domain for a process model is built when the backend claims the model (with settings
/// safe in every model: tickets only, no client cache) and refused with
/// `Unsupported(model)` otherwise.
pub fn process_model_settings(b: &dyn Backend) {
    for model in [sipstls::ProcessModel::Confined, sipstls::ProcessModel::Pinned, sipstls::ProcessModel::Migrating] {
        let safe = Resumption::TICKETS;
        let scfg = DomainConfig::server(pki().server_ecdsa.identity()).with_resumption(safe).with_process_model(model);
        let ccfg = DomainConfig::client(pki().roots()).with_resumption(Resumption::DISABLED).with_process_model(model);
        let claimed = b.supports_model(model).is_ok();
        for (what, r) in
            [("server", b.server_domain(&scfg).map(|_| ())), ("client", b.client_domain(&ccfg).map(|_| ()))]
        {
            match (claimed, r) {
                (true, Ok(())) => {}
                (false, Err(Error::Unsupported { capability, .. })) => assert_eq!(capability, model.capability()),
                (c, r) => panic!("{model:?} {what}: claimed={c}, got {r:?}"),
            }
        }
    }
}
