//! The two Kamailio tls.cfg fixtures of `tests/fixtures`: `tls.cfg` (parsed, loaded,
//! compiled, used for handshakes) and `kamailio-doc-sample.cfg`, shaped like the example of
//! Kamailio's tls module manual (parsed only: the files it names do not exist).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::{fixtures_dir, handshake, PeerPki, TempDir};
use sipstls_backend_rustls::RustlsBackend;
use sipstls_config::{
    ClientSelector, ErrorKind, KamailioConfig, Method, ParseOptions, ProfileKind, Selector, ServerNameMode,
    VerifyClient,
};
use sipstls_core::{
    Backend, ClientTarget, DomainConfig, Listener, NameVerification, ProtocolVersion, ServerName, SniMatch,
};

const TLS12: ProtocolVersion = ProtocolVersion::Tls12;
const TLS13: ProtocolVersion = ProtocolVersion::Tls13;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The tls.cfg fixture copied unchanged into a temporary directory beside a CERTS/
/// directory made at test time.
fn fixture_tls_cfg() -> (TempDir, PeerPki) {
    let original = std::fs::read(fixtures_dir().join("tls.cfg")).unwrap();
    let dir = TempDir::new("fixture");
    dir.write("tls.cfg", &original);
    let pki = PeerPki::new();
    pki.write_certs(&dir);
    (dir, pki)
}

fn assert_common(c: &DomainConfig) {
    assert_eq!((c.min_version, c.max_version), (TLS12, TLS13), "TLSv1.2+");
    assert_eq!(c.verify_depth, 9);
    assert_eq!(c.cipher_list_tls12, None);
    assert_eq!(c.cipher_suites_tls13, None);
    assert!(c.crls.is_empty());
    assert!(c.alpn.is_empty());
    assert_eq!(c.name_verification, NameVerification::Rfc5922);
}

#[test]
fn fixture_tls_cfg_parses_with_every_setting() {
    let cfg = KamailioConfig::read(fixtures_dir().join("tls.cfg"), &ParseOptions::default()).unwrap();
    let p = &cfg.profiles;
    assert_eq!(p.len(), 3);
    assert_eq!((p[0].kind, p[0].selector, p[0].origin.line), (ProfileKind::Server, Selector::Default, 5));
    assert_eq!((p[1].kind, p[1].selector, p[1].origin.line), (ProfileKind::Client, Selector::Default, 13));
    assert_eq!(
        (p[2].kind, p[2].selector, p[2].origin.line),
        (ProfileKind::Server, Selector::Addr(addr("127.0.0.1:5062")), 24)
    );
    for profile in p {
        assert_eq!(profile.settings.method.as_ref().unwrap().value, Method::Tls12Plus);
        assert_eq!(profile.settings.ca_list.as_ref().unwrap().value, "CERTS/ca.crt");
    }
    let s0 = &p[0].settings;
    assert_eq!(s0.verify_certificate.as_ref().map(|s| (s.value, s.line)), Some((false, 10)));
    assert_eq!(s0.require_certificate.as_ref().map(|s| s.value), Some(false));
    assert_eq!(s0.private_key.as_ref().map(|s| (s.value.as_str(), s.line)), Some(("CERTS/server.key", 8)));
    assert_eq!(s0.certificate.as_ref().unwrap().value, "CERTS/server.crt");
    let s1 = &p[1].settings;
    assert!(s1.verify_certificate.as_ref().unwrap().value);
    assert!(s1.require_certificate.as_ref().unwrap().value);
    assert_eq!(s1.certificate.as_ref().map(|s| (s.value.as_str(), s.line)), Some(("CERTS/client.crt", 19)));
    assert_eq!(s1.private_key.as_ref().unwrap().value, "CERTS/client.key");
    assert_eq!(
        s1.server_name.as_ref().map(|s| (s.value.as_str(), s.line)),
        Some(("localhost", 21)),
        "a trailing comment is not part of the value"
    );
    let s2 = &p[2].settings;
    assert!(s2.verify_certificate.as_ref().unwrap().value);
    assert!(s2.require_certificate.as_ref().unwrap().value);
    assert!(s2.server_name.is_none() && s2.server_id.is_none() && s2.crl.is_none() && s2.cipher_list.is_none());
}

#[test]
fn fixture_tls_cfg_loads_into_the_expected_domains() {
    let (dir, pki) = fixture_tls_cfg();
    let cfg = KamailioConfig::read(dir.path().join("tls.cfg"), &ParseOptions::default()).unwrap();
    let domains = cfg.load(dir.path()).unwrap();
    assert_eq!(domains.servers.len(), 2);
    assert_eq!(domains.clients.len(), 1);

    let default = &domains.servers[0];
    assert_eq!(default.listener, Listener::Any);
    assert_eq!(default.sni, None);
    assert!(!default.listener_default, "only named profiles need the flag");
    assert_eq!(default.origin.line, 5);
    let c = &default.config;
    assert_common(c);
    assert!(!c.verify_peer, "verify_certificate = no");
    assert!(!c.require_peer_certificate);
    assert_eq!(c.identities.len(), 1);
    assert_eq!(c.identities[0].chain.len(), 1);
    assert_eq!(c.identities[0].chain[0].der(), pki.server.der.as_slice());
    assert_eq!(c.trust_anchors.len(), 1);
    assert_eq!(c.trust_anchors[0].der(), pki.ca.der.as_slice());
    assert_eq!(c.server_name, None);

    let mtls = &domains.servers[1];
    assert_eq!(mtls.listener, Listener::Addr(addr("127.0.0.1:5062")));
    assert_eq!(mtls.sni, None);
    assert!(!mtls.listener_default);
    let c = &mtls.config;
    assert_common(c);
    assert!(c.verify_peer && c.require_peer_certificate, "verify and require = yes");
    assert_eq!(c.identities.len(), 1);
    assert_eq!(c.identities[0].chain[0].der(), pki.server.der.as_slice());
    assert_eq!(c.trust_anchors.len(), 1);

    let client = &domains.clients[0];
    assert_eq!(client.selector, ClientSelector::Default);
    assert_eq!(client.server_id, None);
    let c = &client.config;
    assert_common(c);
    assert!(c.verify_peer, "verify_certificate = yes");
    assert!(!c.require_peer_certificate, "a client never 'requires' a certificate: the server always sends one");
    assert_eq!(c.identities.len(), 1);
    assert_eq!(c.identities[0].chain[0].der(), pki.client.der.as_slice());
    assert_eq!(c.trust_anchors.len(), 1);
    assert_eq!(c.server_name.as_deref(), Some("localhost"));
    assert!(c.send_sni);
}

#[test]
fn fixture_tls_cfg_builds_a_table_that_picks_the_right_domains() {
    let (dir, pki) = fixture_tls_cfg();
    let domains =
        KamailioConfig::read(dir.path().join("tls.cfg"), &ParseOptions::default()).unwrap().load(dir.path()).unwrap();
    let backend: Arc<dyn Backend> = Arc::new(RustlsBackend::new());
    let table = domains.build_table(backend).unwrap();

    // 127.0.0.1:5062 has its own profile (mTLS); every other listener gets the default.
    let sel = table.server_for(addr("127.0.0.1:5062")).unwrap();
    assert_eq!(sel.initial.config(), &domains.servers[1].config);
    assert!(sel.by_sni.is_none());
    for other in ["127.0.0.1:5061", "[::1]:5061", "127.0.0.1:5063"] {
        let sel = table.server_for(addr(other)).unwrap();
        assert_eq!(sel.initial.config(), &domains.servers[0].config, "{other}");
    }

    // One client profile, the default: its server_name is the name used.
    let (c, name) = table.client_for(&ClientTarget::default()).unwrap();
    assert_eq!(c.config(), &domains.clients[0].config);
    assert_eq!(name, None, "the domain's own server_name (localhost) applies");
    let (c, name) = table.client_for(&ClientTarget::addr_name(addr("127.0.0.1:5061"), "sip.test")).unwrap();
    assert_eq!(c.config(), &domains.clients[0].config);
    assert_eq!(name, Some(ServerName::Dns("sip.test".into())));
    assert!(table.client_for(&ClientTarget::default().domain_id("nope")).is_err());

    // The domains work: our client (with its certificate) against the mTLS listener, and
    // a client without certificate is refused there but not on the default listener.
    let mut server = table.accept(addr("127.0.0.1:5062"), None).unwrap();
    let mut client = table.connect(&ClientTarget::default()).unwrap();
    handshake(client.as_mut(), server.as_mut()).expect("mTLS handshake with the client profile");
    let info = server.info().unwrap();
    assert_eq!(info.peer_chain.first().map(|c| c.der()), Some(pki.client.der.as_slice()), "the client certificate");
    assert_eq!(info.verify, sipstls_core::VerifyResult::Verified);

    let mut bare = domains.clients[0].config.clone();
    bare.identities.clear();
    let bare = RustlsBackend::new().client_domain(&bare).unwrap();
    let mut server = table.accept(addr("127.0.0.1:5062"), None).unwrap();
    let mut client = bare.connect(None).unwrap();
    assert!(handshake(client.as_mut(), server.as_mut()).is_err(), "5062 requires a client certificate");
    let mut server = table.accept(addr("127.0.0.1:5061"), None).unwrap();
    let mut client = bare.connect(None).unwrap();
    handshake(client.as_mut(), server.as_mut()).expect("the default server profile asks for no certificate");
}

fn sample_text() -> String {
    String::from_utf8(std::fs::read(fixtures_dir().join("kamailio-doc-sample.cfg")).unwrap()).unwrap()
}

#[test]
fn kamailio_sample_refuses_tlsv1_by_default_naming_its_line() {
    let err =
        KamailioConfig::read(fixtures_dir().join("kamailio-doc-sample.cfg"), &ParseOptions::default()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::DeprecatedMethod);
    assert_eq!(err.line, Some(5), "method = TLSv1 is on line 5");
    assert_eq!(err.key.as_deref(), Some("method"));
    assert!(err.file.as_deref().unwrap().ends_with("kamailio-doc-sample.cfg"));
    let shown = err.to_string();
    assert!(
        shown.contains("kamailio-doc-sample.cfg:5: key \"method\": TLSv1 allows versions below TLS 1.2"),
        "{shown}"
    );
}

#[test]
fn kamailio_sample_parses_with_deprecated_methods_allowed() {
    let options = ParseOptions::default().with_deprecated_methods(true);
    let cfg = KamailioConfig::parse(&sample_text(), "kamailio-doc-sample.cfg", &options).unwrap();
    let p = &cfg.profiles;
    assert_eq!(p.len(), 5);
    let heads: Vec<_> = p.iter().map(|p| (p.kind, p.selector, p.origin.line)).collect();
    assert_eq!(
        heads,
        [
            (ProfileKind::Server, Selector::Default, 4),
            (ProfileKind::Client, Selector::Default, 12),
            (ProfileKind::Server, Selector::Addr(addr("127.0.0.1:5061")), 17),
            (ProfileKind::Server, Selector::Addr(addr("[::1]:5061")), 26),
            (ProfileKind::Client, Selector::Any, 33),
        ]
    );

    // [server:default]: TLSv1, raised to exactly TLS 1.2.
    let s = &p[0].settings;
    let m = s.method.as_ref().unwrap();
    assert_eq!((m.value, m.line), (Method::Tls10, 5));
    assert_eq!(m.value.versions(), (TLS12, TLS12));
    assert!(!s.verify_certificate.as_ref().unwrap().value);
    assert!(!s.require_certificate.as_ref().unwrap().value);
    assert_eq!(s.private_key.as_ref().unwrap().value, "fallback.key");
    assert_eq!(s.certificate.as_ref().unwrap().value, "fallback-chain.pem");
    assert_eq!(s.ca_list.as_ref().unwrap().value, "fallback-roots.pem");

    // [client:default]: no method, verify and require.
    let s = &p[1].settings;
    assert!(s.method.is_none() && s.certificate.is_none() && s.ca_list.is_none());
    assert_eq!(s.verify_certificate.as_ref().map(|v| (v.value, v.line)), Some((true, 13)));
    assert_eq!(s.require_certificate.as_ref().map(|v| (v.value, v.line)), Some((true, 14)));

    // [server:127.0.0.1:5061]: SSLv23 is "any version": TLS 1.2 to 1.3.
    let s = &p[2].settings;
    assert_eq!(s.method.as_ref().unwrap().value, Method::Sslv23);
    assert_eq!(Method::Sslv23.versions(), (TLS12, TLS13));
    assert!(!Method::Sslv23.is_deprecated());
    assert!(s.verify_certificate.as_ref().unwrap().value);
    assert!(!s.require_certificate.as_ref().unwrap().value);
    assert_eq!(s.verify_depth.as_ref().map(|d| (d.value, d.line)), Some((4, 21)));
    assert_eq!(s.private_key.as_ref().unwrap().value, "loopback.key");
    assert_eq!(s.certificate.as_ref().unwrap().value, "loopback-chain.pem");
    assert_eq!(s.ca_list.as_ref().unwrap().value, "loopback-roots.pem");
    assert!(s.verify_client.is_none());

    // [server:[::1]:5061]: SNI sip.example.org with subdomains.
    let s = &p[3].settings;
    assert_eq!(s.method.as_ref().unwrap().value, Method::Tls12Plus);
    assert_eq!(s.server_name.as_ref().unwrap().value, "sip.example.org");
    let mode = s.server_name_mode.as_ref().unwrap().value;
    assert_eq!(mode, ServerNameMode::DomainAndSubdomains);
    assert_eq!(mode.sni_match("sip.example.org".into()), SniMatch::DomainAndSubdomains("sip.example.org".into()));
    assert_eq!(s.certificate.as_ref().unwrap().value, "example-org-chain.pem");
    assert_eq!(s.private_key.as_ref().unwrap().value, "example-org.key");

    // [client:any]: by name trunk.example.net or id trunk7, TLS 1.3 only.
    let s = &p[4].settings;
    assert_eq!(s.server_name.as_ref().unwrap().value, "trunk.example.net");
    assert_eq!(s.server_id.as_ref().map(|i| (i.value.as_str(), i.line)), Some(("trunk7", 34)));
    assert_eq!(s.method.as_ref().unwrap().value.versions(), (TLS13, TLS13));
    assert!(s.verify_certificate.as_ref().unwrap().value);
    assert_eq!(s.ca_list.as_ref().unwrap().value, "trunk-roots.pem");
    assert!(p.iter().all(|p| p.settings.verify_client.is_none()));
    let _ = VerifyClient::Optional;
}

#[test]
fn kamailio_sample_load_names_the_missing_file() {
    let options = ParseOptions::default().with_deprecated_methods(true);
    let cfg = KamailioConfig::parse(&sample_text(), "kamailio-doc-sample.cfg", &options).unwrap();
    let dir = TempDir::new("sample");
    let err = cfg.load(dir.path()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Io);
    assert_eq!((err.line, err.key.as_deref()), (Some(8), Some("certificate")));
    assert!(err.message.contains("fallback-chain.pem"), "{err}");
}
