//! Interop with Kamailio, a production SIP proxy, on loopback, for every backend of the
//! build:
//! - our client -> Kamailio as TLS server: OPTIONS over TLS 1.3 and TLS 1.2, and on a
//!   listener that requires a client certificate, with and without one;
//! - Kamailio as TLS client -> our server: our client sends requests through Kamailio to the
//!   `sip-responder` example, which requires a client certificate; Kamailio relays them with
//!   its own and the answers come back through it.
//!
//! Every test starts its own Kamailio from the templates in `tests/fixtures/` with free
//! ports and the run-time test PKI in a scratch directory, and stops it by PID. Kamailio
//! must be installed (`scripts/test.sh` installs it): without it these tests fail.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sipstls::{Alert, DomainConfig, ProtocolVersion, TlsInfo, TlsStream, VerifyResult};
use sipstls_conformance::peers::{free_port, wait_for_port, ChildGuard};
use sipstls_conformance::pki::{pki, CLIENT_CN, SERVER_NAME};
use sipstls_examples::sip::{self, Frame, Message};

#[path = "support/kamailio.rs"]
mod harness;

use harness::Kamailio;

/// Bound on every read of a SIP response (Kamailio answers 408 after its 5 s fr_timer).
const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// Our client configuration: trusts the test CA, versions `min..=max`, and presents
/// the client certificate (CN alice) when `with_cert`.
fn client_config(min: ProtocolVersion, max: ProtocolVersion, with_cert: bool) -> DomainConfig {
    let cfg = DomainConfig::client(pki().roots()).with_versions(min, max);
    if with_cert {
        cfg.with_identity(pki().client.identity())
    } else {
        cfg
    }
}

/// Connects with `backend` to `addr` (verifying the name in Kamailio's certificate).
fn connect(backend: &str, cfg: &DomainConfig, addr: SocketAddr) -> std::io::Result<TlsStream<TcpStream>> {
    let b = sipstls::backend(backend).unwrap_or_else(|| panic!("backend {backend} not in this build"));
    let domain = b.client_domain(cfg).expect("client domain");
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    tcp.set_read_timeout(Some(READ_TIMEOUT))?;
    tcp.set_write_timeout(Some(READ_TIMEOUT))?;
    TlsStream::connect(&*domain, SERVER_NAME, tcp)
}

/// A SIP request from our client, with the body (if any) as text/plain.
fn request(method: &str, ruri: &str, local: SocketAddr, body: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let id = format!("{}-{n}", std::process::id());
    let ctype = if body.is_empty() { String::new() } else { "Content-Type: text/plain\r\n".into() };
    format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bK-sipstls-{id};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=a{id}\r\nTo: <{ruri}>\r\n\
         Call-ID: kam-{id}@127.0.0.1\r\nCSeq: 1 {method}\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Sends `req` and reads the final response (provisional ones are skipped), bounded by the
/// socket's read timeout.
fn transact(tls: &mut TlsStream<TcpStream>, req: &str) -> std::io::Result<Message> {
    tls.write_all(req.as_bytes())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match sip::parse(&buf).map_err(std::io::Error::other)? {
            Frame::Message(msg, used) => {
                buf.drain(..used);
                if !msg.start_line.starts_with("SIP/2.0 1") {
                    return Ok(msg);
                }
            }
            Frame::Ping(used) | Frame::Pong(used) => {
                buf.drain(..used);
            }
            Frame::Incomplete => {
                let n = match tls.read(&mut chunk) {
                    // A signal, or a stop and continue of this process: read again.
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    r => r?,
                };
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

fn show(m: &Message) -> String {
    let mut s = m.start_line.clone();
    for (n, v) in &m.headers {
        s.push_str(&format!("\n{n}: {v}"));
    }
    s
}

/// For a version `backend` does not claim: a client domain for exactly that version must be
/// refused as unsupported. Returns whether it is claimed.
fn version_claimed(backend: &str, version: ProtocolVersion) -> bool {
    let b = sipstls::backend(backend).unwrap();
    if b.capabilities().contains(version.capability()) {
        return true;
    }
    match b.client_domain(&client_config(version, version, false)) {
        Err(sipstls::Error::Unsupported { capability, .. }) => assert_eq!(capability, version.capability()),
        other => panic!("{backend}: {version} is not claimed and must be refused, got {:?}", other.err()),
    }
    false
}

/// Our client sends OPTIONS to Kamailio's plain TLS listener with exactly `version`.
fn client_options(backend: &str, version: ProtocolVersion) {
    if !version_claimed(backend, version) {
        return;
    }
    let kam = Kamailio::start(&format!("{backend}-options"));
    let cfg = client_config(version, version, false);
    let mut tls = connect(backend, &cfg, kam.tls)
        .unwrap_or_else(|e| panic!("{backend} {version}: handshake with kamailio: {e}\n{}", kam.log()));
    let info: TlsInfo = tls.info().expect("info after handshake");
    assert_eq!(info.version, version, "{backend}: negotiated version");
    assert_eq!(info.verify, VerifyResult::Verified, "{backend}: Kamailio's certificate verified");
    let local = tls.get_ref().local_addr().unwrap();
    let resp = transact(&mut tls, &request("OPTIONS", &format!("sip:{};transport=tls", kam.tls), local, ""))
        .unwrap_or_else(|e| panic!("{backend} {version}: OPTIONS: {e}\n{}", kam.log()));
    assert!(resp.start_line.starts_with("SIP/2.0 200"), "{backend} {version}: {}", show(&resp));
    // Kamailio's side of the same session agrees on the version.
    assert_eq!(resp.header("X-TLS-Version"), Some(version.name()), "{backend}: {}", show(&resp));
    let _ = tls.shutdown();
}

/// Our client, with its certificate, on Kamailio's mTLS listener: 200, and Kamailio saw
/// and verified the certificate.
fn client_mtls_with_cert(backend: &str) {
    let kam = Kamailio::start(&format!("{backend}-mtls"));
    let cfg = client_config(ProtocolVersion::Tls12, ProtocolVersion::Tls13, true);
    let mut tls = connect(backend, &cfg, kam.mtls)
        .unwrap_or_else(|e| panic!("{backend}: mTLS handshake with kamailio: {e}\n{}", kam.log()));
    let local = tls.get_ref().local_addr().unwrap();
    let resp = transact(&mut tls, &request("OPTIONS", &format!("sip:{};transport=tls", kam.mtls), local, ""))
        .unwrap_or_else(|e| panic!("{backend}: OPTIONS over mTLS: {e}\n{}", kam.log()));
    assert!(resp.start_line.starts_with("SIP/2.0 200"), "{backend}: {}", show(&resp));
    let seen = format!("CN={CLIENT_CN} verified=1");
    assert_eq!(resp.header("X-TLS-Peer"), Some(seen.as_str()), "{backend}: {}", show(&resp));
    assert!(
        kam.wait_log(&format!("mTLS client cert {seen}")),
        "{backend}: Kamailio did not log the client certificate:\n{}",
        kam.log()
    );
    let _ = tls.shutdown();
}

/// Our client without a certificate on Kamailio's mTLS listener, over TLS 1.3 and 1.2:
/// refused with a typed error, the fatal alert Kamailio sent (in TLS 1.3 the refusal
/// arrives after the client's side of the handshake, so the request is sent and the answer
/// is the alert).
fn client_mtls_without_cert(backend: &str) {
    let kam = Kamailio::start(&format!("{backend}-nocert"));
    for version in [ProtocolVersion::Tls13, ProtocolVersion::Tls12] {
        if !version_claimed(backend, version) {
            continue;
        }
        let cfg = client_config(version, version, false);
        let result = connect(backend, &cfg, kam.mtls).and_then(|mut tls| {
            let local = tls.get_ref().local_addr()?;
            transact(&mut tls, &request("OPTIONS", &format!("sip:{};transport=tls", kam.mtls), local, ""))
        });
        let e = match result {
            Ok(resp) => panic!("{backend} {version}: answered without a client certificate: {}", show(&resp)),
            Err(e) => e,
        };
        let typed = sipstls::tls_error(&e).unwrap_or_else(|| panic!("{backend} {version}: untyped error: {e:?}"));
        // Kamailio's OpenSSL: certificate_required in TLS 1.3, handshake_failure in 1.2.
        let alert = match version {
            ProtocolVersion::Tls13 => Alert::CERTIFICATE_REQUIRED,
            ProtocolVersion::Tls12 => Alert::HANDSHAKE_FAILURE,
        };
        assert!(
            matches!(typed, sipstls::Error::AlertReceived(a) if *a == alert),
            "{backend} {version}: expected the fatal alert {alert:?} from Kamailio, got {typed:?}"
        );
    }
}

/// Kamailio relays our client's MESSAGE and OPTIONS over TLS, with its client certificate,
/// to the `sip-responder` example on `backend` (which requires one); the 200s come back
/// through Kamailio.
fn kamailio_client_to_our_server(backend: &str) {
    let kam = Kamailio::start(&format!("{backend}-relay"));
    let certs = kam.dir.path().join("certs");
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let log = kam.dir.path().join("sip-responder.log");
    let out = File::create(&log).unwrap();
    let _responder = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_sip-responder"))
            .args(["--backend", backend, "--listen", &addr.to_string(), "--max-seconds", "120"])
            .arg("--cert")
            .arg(certs.join("server.pem"))
            .arg("--key")
            .arg(certs.join("server.key"))
            .arg("--ca")
            .arg(certs.join("ca.pem"))
            .arg("--require-client-cert")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("spawn sip-responder"),
    );
    assert!(wait_for_port(addr, Duration::from_secs(20)), "sip-responder did not listen on {addr}");
    let responder_log = || std::fs::read_to_string(&log).unwrap_or_default();

    let cfg = client_config(ProtocolVersion::Tls12, ProtocolVersion::Tls13, false);
    let mut tls = connect(backend, &cfg, kam.tls).expect("handshake with kamailio");
    let local = tls.get_ref().local_addr().unwrap();
    let ruri = format!("sip:bob@{addr};transport=tls");
    let body = format!("hello {backend} via kamailio");
    let resp = transact(&mut tls, &request("MESSAGE", &ruri, local, &body)).unwrap_or_else(|e| {
        panic!("{backend}: MESSAGE via kamailio: {e}\n{}\n--- responder ---\n{}", kam.log(), responder_log())
    });
    assert!(
        resp.start_line.starts_with("SIP/2.0 200"),
        "{backend}: {}\n--- kamailio ---\n{}\n--- responder ---\n{}",
        show(&resp),
        kam.log(),
        responder_log()
    );
    assert_eq!(resp.header("Server"), Some("sipstls-example"), "{backend}: answered by our server: {}", show(&resp));
    assert_eq!(resp.body, body.as_bytes(), "{backend}: our server echoed the body");
    let resp = transact(&mut tls, &request("OPTIONS", &ruri, local, "")).expect("OPTIONS via kamailio");
    assert!(resp.start_line.starts_with("SIP/2.0 200"), "{backend}: {}", show(&resp));
    assert_eq!(resp.header("Allow"), Some("OPTIONS, MESSAGE"), "{backend}: {}", show(&resp));
    let _ = tls.shutdown();

    // Our server saw Kamailio's client certificate (CN alice) and the SNI set in kamailio.cfg.
    let logged = responder_log();
    let session = logged
        .lines()
        .find(|l| l.starts_with("established: "))
        .unwrap_or_else(|| panic!("{backend}: no session logged:\n{logged}"));
    assert!(session.contains(&format!("peer={CLIENT_CN}")), "{backend}: {session}");
    assert!(session.contains(&format!("sni={SERVER_NAME} ")), "{backend}: {session}");
    assert!(logged.contains(&format!("request: MESSAGE {ruri}")), "{backend}:\n{logged}");
    assert!(logged.contains(&format!("request: OPTIONS {ruri}")), "{backend}:\n{logged}");
}

/// Kamailio as a plain-TCP worker behind our TLS manager (the confined model with an
/// external worker): the manager terminates TLS and sends a PROXY v2 header first, and
/// Kamailio (`tcp_accept_haproxy`) sees the TLS client's address as the source.
fn kamailio_behind_manager_proxy_v2(backend: &str) {
    use sipstls_manager::{ListenerConfig, ManagerConfig, TcpUpstreams, TlsManager};
    let k = Kamailio::start_proxy_worker(&format!("proxy-{backend}"));
    let b = sipstls::backend(backend).unwrap();
    let mut table = sipstls::DomainTable::new(b);
    table.add_server(sipstls::Listener::Any, None, &DomainConfig::server(pki().server_ecdsa.identity())).unwrap();
    let manager = TlsManager::new(std::sync::Arc::new(table), ManagerConfig::default()).unwrap();
    let front =
        manager.listen(ListenerConfig::tcp("127.0.0.1:0".parse().unwrap(), TcpUpstreams::single(k.tls), true)).unwrap();
    let mut tls = connect(backend, &client_config(ProtocolVersion::Tls12, ProtocolVersion::Tls13, false), front)
        .expect("TLS to the manager");
    let me = tls.get_ref().local_addr().unwrap();
    for _ in 0..3 {
        let resp = transact(&mut tls, &request("OPTIONS", &format!("sip:{}", k.tls), me, "")).unwrap();
        assert!(resp.start_line.starts_with("SIP/2.0 200"), "{}\n{}", show(&resp), k.log());
        // Kamailio 5.6 reads the PROXY v2 port fields with their bytes swapped (kamailio
        // issue #3683, fixed after 5.6); our header is the specification's big-endian, which
        // our own parser reads back (sipstls-manager tests). Either way the source is the TLS
        // client, not the manager's upstream socket.
        let swapped = SocketAddr::new(me.ip(), me.port().swap_bytes());
        let seen = resp.header("x-source").unwrap_or_default();
        assert!(seen == me.to_string() || seen == swapped.to_string(), "{seen} is not {me}: {}", show(&resp));
        assert_eq!(resp.header("x-proto"), Some("tcp"));
    }
    assert!(k.wait_log(&format!("PROXIED OPTIONS from tcp:{}:", me.ip())), "{}", k.log());
    assert_eq!(manager.stats().handshakes_ok, 1);
}

macro_rules! kamailio_tests {
    ($feature:literal, $backend:ident) => {
        #[cfg(feature = $feature)]
        mod $backend {
            use super::*;

            #[test]
            fn client_to_kamailio_tls13() {
                client_options(stringify!($backend), ProtocolVersion::Tls13);
            }

            #[test]
            fn client_to_kamailio_tls12() {
                client_options(stringify!($backend), ProtocolVersion::Tls12);
            }

            #[test]
            fn client_cert_to_kamailio_mtls() {
                client_mtls_with_cert(stringify!($backend));
            }

            #[test]
            fn client_without_cert_refused_by_kamailio_mtls() {
                client_mtls_without_cert(stringify!($backend));
            }

            #[test]
            fn kamailio_client_to_server_mtls_relay() {
                kamailio_client_to_our_server(stringify!($backend));
            }

            #[test]
            fn kamailio_behind_manager_proxy_v2() {
                super::kamailio_behind_manager_proxy_v2(stringify!($backend));
            }
        }
    };
}

kamailio_tests!("rustls", rustls);
kamailio_tests!("openssl", openssl);
kamailio_tests!("mbedtls", mbedtls);
kamailio_tests!("wolfssl", wolfssl);
kamailio_tests!("boring", boring);

/// Every backend of the build has the tests above.
#[test]
fn every_built_backend_is_covered() {
    for name in sipstls::backend_names() {
        assert!(
            ["rustls", "openssl", "mbedtls", "wolfssl", "boring"].contains(&name),
            "no Kamailio tests for backend {name}: add it above"
        );
    }
}
