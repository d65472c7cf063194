//! Operations checks: statistics and the session list of a domain table, and reloading a
//! table while sessions run. They use the highest TLS version the backend has.

use std::net::SocketAddr;
use std::sync::Arc;

use sipstls::stats::FailureReason;
use sipstls::{
    Backend, Capabilities, ClientTarget, DomainConfig, DomainTable, Error, Listener, ProtocolVersion, ReloadableTable,
    Role, Session,
};

use crate::checks::{client_cfg, server_cfg};
use crate::pki::{pki, ALT_NAME, CLIENT_CN, ROOT_CN, SERVER_NAME};
use crate::pump;

const LOCAL: &str = "127.0.0.1:5061";

fn local() -> SocketAddr {
    LOCAL.parse().unwrap()
}

/// TLS 1.3 when the backend has it, else TLS 1.2.
pub fn best_version(b: &dyn Backend) -> ProtocolVersion {
    if b.capabilities().contains(Capabilities::TLS13) {
        ProtocolVersion::Tls13
    } else {
        ProtocolVersion::Tls12
    }
}

fn shared(b: &dyn Backend) -> Arc<dyn Backend> {
    sipstls::backend(b.info().name).expect("backend compiled in")
}

fn only<T: Clone>(items: &[(String, T)], label: &str) -> Vec<T> {
    items.iter().filter(|(l, _)| l == label).map(|(_, t)| t.clone()).collect()
}

/// A table counts completed, resumed, failed (by reason) and abandoned handshakes, live
/// sessions and bytes per domain, and lists live sessions with peer, SNI, version and
/// cipher; finished sessions leave the list.
pub fn table_statistics(b: &dyn Backend) {
    let v = best_version(b);
    let mut t = DomainTable::new(shared(b));
    t.add_server(Listener::Any, None, &server_cfg(v)).unwrap();
    t.add_client_default(&client_cfg(v)).unwrap();
    let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();

    // One good session, 3000 bytes each way.
    let mut s = t.accept(local(), Some(peer)).unwrap();
    let mut c = t.connect(&ClientTarget::name(SERVER_NAME)).unwrap();
    let sessions = t.sessions();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert!(sessions.iter().all(|(_, s)| s.established.is_none()), "handshaking sessions: {sessions:?}");
    pump::handshake(&mut *c, &mut *s).expect("handshake");
    let data = vec![7u8; 3000];
    assert_eq!(pump::send(&mut *c, &mut *s, &data).unwrap().len(), 3000);
    assert_eq!(pump::send(&mut *s, &mut *c, &data).unwrap().len(), 3000);

    let sessions = t.sessions();
    let server_list = only(&sessions, "server any");
    assert_eq!(server_list.len(), 1, "{sessions:?}");
    let entry = &server_list[0];
    assert_eq!(entry.role, Role::Server);
    assert_eq!(entry.peer, Some(peer));
    let est = entry.established.as_ref().expect("established");
    assert_eq!(est.version, v);
    assert_eq!(est.cipher_suite, s.info().unwrap().cipher_suite);
    assert!(est.sni.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(SERVER_NAME)), "{est:?}");
    assert!(!est.resumed);
    let client_list = only(&sessions, "client default");
    assert_eq!(client_list.len(), 1, "{sessions:?}");
    assert_eq!(client_list[0].role, Role::Client);
    assert!(client_list[0].established.as_ref().unwrap().peer_subject.as_deref().unwrap().contains(SERVER_NAME));

    let stats = |label: &str| t.stats().into_iter().find(|d| d.label == label).expect(label);
    let srv = stats("server any");
    assert_eq!((srv.handshakes_ok, srv.failed_total(), srv.active), (1, 0, 1), "{srv:?}");
    drop(s);
    drop(c);
    let srv = stats("server any");
    assert_eq!(srv.active, 0, "{srv:?}");
    assert_eq!((srv.bytes.app_in, srv.bytes.app_out), (3000, 3000), "{srv:?}");
    assert!(srv.bytes.tls_in > 3000 && srv.bytes.tls_out > 3000, "ciphertext counted: {srv:?}");
    let cli = stats("client default");
    assert_eq!((cli.handshakes_ok, cli.active, cli.bytes.app_in, cli.bytes.app_out), (1, 0, 3000, 3000), "{cli:?}");
    assert!(t.sessions().is_empty(), "finished sessions are listed: {:?}", t.sessions());

    // A client that sends garbage: a protocol violation on the server side.
    let mut s = t.accept(local(), None).unwrap();
    let e = s.feed_tls(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5, 6, 7, 8]).and_then(|_| {
        s.feed_tls(&[0u8; 64])?;
        Ok(())
    });
    assert!(e.is_err() || s.error().is_some(), "garbage accepted");
    drop(s);
    // A server the client does not trust: the client domain counts UnknownIssuer.
    let untrusted = b.server_domain(&DomainConfig::server(pki().server_untrusted.identity()).with_version(v)).unwrap();
    let mut s = untrusted.accept().unwrap();
    let mut c = t.connect(&ClientTarget::name(SERVER_NAME)).unwrap();
    assert!(pump::handshake(&mut *c, &mut *s).is_err());
    drop(c);
    // A session dropped half-way: abandoned.
    let mut s = t.accept(local(), None).unwrap();
    let mut c = t.connect(&ClientTarget::name(SERVER_NAME)).unwrap();
    pump::transfer(&mut *c, &mut *s).unwrap();
    drop(s);
    drop(c);

    let srv = stats("server any");
    assert_eq!(srv.handshakes_ok, 1, "{srv:?}");
    assert_eq!(srv.failed_for(FailureReason::ProtocolViolation), 1, "{srv:?}");
    assert_eq!(srv.failed_for(FailureReason::Abandoned), 1, "{srv:?}");
    assert_eq!(srv.failed_total(), 2, "{srv:?}");
    let cli = stats("client default");
    assert_eq!(cli.failed_for(FailureReason::UnknownIssuer), 1, "{cli:?}");
    assert_eq!(cli.failed_for(FailureReason::Abandoned), 1, "{cli:?}");
    assert_eq!((cli.failed_total(), cli.active), (2, 0), "{cli:?}");
}

fn handshake_peer_cn(rt: &ReloadableTable, mut s: Box<dyn Session>, v: ProtocolVersion, name: &str) -> String {
    let cd = rt.current().backend().client_domain(&client_cfg(v)).unwrap();
    let mut c = cd.connect(Some(&sipstls::ServerName::parse(name).unwrap())).unwrap();
    pump::handshake(&mut *c, &mut *s).expect("handshake");
    c.info().unwrap().peer.unwrap().subject_cn.unwrap()
}

fn table_with(b: &Arc<dyn Backend>, cfg: &DomainConfig) -> Result<DomainTable, Error> {
    let mut t = DomainTable::new(b.clone());
    t.add_server(Listener::Any, None, cfg)?;
    Ok(t)
}

/// A reload swaps the table for new sessions only: a session started before it finishes
/// with the old domain's certificate, one started after gets the new one; the old table
/// lives exactly as long as its last session; a table that fails to build is not installed;
/// counters carry over to the domain with the same label.
pub fn reload_swaps_domains(b: &dyn Backend) {
    let v = best_version(b);
    let backend = shared(b);
    let rt = ReloadableTable::new(table_with(&backend, &server_cfg(v)).unwrap());
    let before = rt.accept(local(), None).unwrap();
    let old = Arc::downgrade(&rt.current());

    let alt = DomainConfig::server(pki().server_alt.identity()).with_version(v);
    rt.try_reload(|b| table_with(b, &alt)).expect("reload");
    assert_eq!(rt.reloads(), 1);
    assert!(old.upgrade().is_some(), "the old table must live while its session does");
    let after = rt.accept(local(), None).unwrap();
    assert_eq!(handshake_peer_cn(&rt, after, v, ALT_NAME), ALT_NAME, "a new session gets the new domain");
    assert_eq!(handshake_peer_cn(&rt, before, v, SERVER_NAME), SERVER_NAME, "an old session keeps its domain");
    assert!(old.upgrade().is_none(), "the old table must be freed with its last session");

    // A configuration that does not build leaves the current table in place.
    let current = rt.current();
    let mut broken = DomainConfig::default();
    broken.verify_peer = false;
    let e = rt.try_reload(|b| table_with(b, &broken)).expect_err("a server domain without identity");
    assert!(matches!(e, Error::InvalidConfig { .. }), "{e:?}");
    assert!(Arc::ptr_eq(&current, &rt.current()), "a failed reload replaced the table");
    assert_eq!(rt.reloads(), 1);
    drop(current);

    let stats = rt.current().stats();
    let srv = stats.iter().find(|d| d.label == "server any").unwrap();
    assert_eq!((srv.handshakes_ok, srv.active), (2, 0), "counters carry over a reload: {srv:?}");
}

/// Peer certificate inspection through a real handshake: the server sees the client's
/// certificate and the client the server's, byte for byte (same fingerprint as the DER the
/// test made), with subject and issuer fields, the chain, and validity.
pub fn peer_certificate_inspection(b: &dyn Backend) {
    let v = best_version(b);
    let p = pki();
    let scfg = server_cfg(v).with_client_auth(sipstls::ClientAuth::Required(p.roots()));
    let ccfg = client_cfg(v).with_identity(p.client.identity());
    let (c, s) = crate::checks::connected(b, &scfg, &ccfg, SERVER_NAME);

    let seen_by_server = s.info().unwrap();
    assert_eq!(seen_by_server.verify, sipstls::VerifyResult::Verified);
    let client = seen_by_server.peer.clone().expect("client certificate");
    let made = sipstls::x509::CertificateInfo::parse(&p.client.der).unwrap();
    assert_eq!(client.fingerprint_sha256, made.fingerprint_sha256, "the client's DER, unchanged");
    assert_eq!(client.subject_fields.cn, [CLIENT_CN]);
    assert_eq!(client.issuer_fields.cn, [ROOT_CN]);
    assert_eq!(client.san_uri, ["sip:alice@example.test"]);
    assert!(!client.self_signed && !client.is_ca && !client.is_expired());
    assert_eq!(seen_by_server.peer_chain_info().first(), Some(&client));

    let seen_by_client = c.info().unwrap();
    assert_eq!(seen_by_client.verify, sipstls::VerifyResult::Verified);
    let server = seen_by_client.peer.clone().expect("server certificate");
    let made = sipstls::x509::CertificateInfo::parse(&p.server_ecdsa.der).unwrap();
    assert_eq!(server, made, "every field as parsed from the DER the test made");
    assert_eq!(server.subject_fields.cn, [SERVER_NAME]);
    assert!(server.is_valid_at(made.not_before) && !server.is_expired());
}
