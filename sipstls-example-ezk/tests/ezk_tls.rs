//! An ezk-sip-core user agent doing SIP over TLS through sipstls, on loopback, with the rustls
//! and the OpenSSL backend:
//! - against the project's `sip-server` (same backend): the UA's OPTIONS gets 200, in process
//!   and from the `ezk-ua` binary;
//! - against Kamailio: the UA's OPTIONS to Kamailio gets 200, and a MESSAGE the UA sends
//!   through Kamailio to its own TLS listener comes back from Kamailio over a TLS connection
//!   Kamailio opens (its TLS client, SNI `sip.example.test`), and the UA's 200 returns through
//!   Kamailio.
//!
//! `sip-server` comes from the `examples` crate, built first with
//! `cargo build -p sipstls-examples --bin sip-server` into the same target directory (or named
//! by `SIPSTLS_SIP_SERVER`). Kamailio must be installed (`scripts/test.sh` installs it). Every
//! server is stopped by PID; every wait is bounded.

use std::fs::File;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sip_types::uri::SipUri;
use sip_types::Method;
use sipstls::{DomainTable, VerifyResult};
use sipstls_conformance::peers::{free_port, wait_for_port, ChildGuard, ScratchDir};
use sipstls_conformance::pki::{pki, SERVER_NAME};
use sipstls_example_ezk::{add_tls, build_table, send_request, FinalResponse, Handshake, Responder, Side};

#[path = "../../sipstls-examples/tests/support/kamailio.rs"]
mod harness;

use harness::Kamailio;

/// Bound on a whole scenario on the UA's side (ezk's own transaction timeout is 32 s).
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on one request's final response.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on a server's start and on the `ezk-ua` binary's run.
const WAIT: Duration = Duration::from_secs(20);

/// The `sip-server` binary of the `examples` crate: `$SIPSTLS_SIP_SERVER`, else beside this
/// test's own directory in the target directory (`<target>/debug/sip-server`).
fn sip_server_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("SIPSTLS_SIP_SERVER") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("test executable path");
    // <target>/debug/deps/ezk_tls-HASH -> <target>/debug/sip-server
    let bin = exe.parent().and_then(Path::parent).expect("target directory").join("sip-server");
    assert!(
        bin.is_file(),
        "{} is missing: build it first with `cargo build -p sipstls-examples --bin sip-server` \
         (same CARGO_TARGET_DIR), or set SIPSTLS_SIP_SERVER",
        bin.display()
    );
    bin
}

/// Runs `scenario` on its own multi-threaded runtime, bounded in time; the runtime (and
/// with it ezk's tasks and connections) is shut down before returning.
fn run<F: Future>(scenario: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let out = rt.block_on(async { tokio::time::timeout(SCENARIO_TIMEOUT, scenario).await });
    rt.shutdown_timeout(Duration::from_secs(2));
    out.expect("scenario timed out")
}

/// An ezk endpoint with sipstls TLS on `backend` from the PKI files in `certs`; with
/// `listen`, a TLS listener with the server certificate, answering OPTIONS and MESSAGE.
async fn endpoint(
    backend: &str,
    certs: &Path,
    listen: bool,
) -> (ezk_sip_core::Endpoint, Arc<DomainTable>, Option<SocketAddr>, sipstls_example_ezk::HandshakeLog, Responder) {
    let read = |name: &str| std::fs::read(certs.join(name)).unwrap();
    let identity = listen.then(|| (read("server.pem"), read("server.key")));
    let server = identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice()));
    // The client checks the name sip.example.test (and sends it as SNI), though the URIs
    // name 127.0.0.1.
    let table = Arc::new(build_table(backend, &read("ca.pem"), server, Some(SERVER_NAME)).unwrap());
    let mut builder = ezk_sip_core::Endpoint::builder();
    builder.user_agent("sipstls-ezk-test");
    let responder = Responder::default();
    builder.add_layer(responder.handle());
    let listen = listen.then(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let (bound, log) = add_tls(&mut builder, table.clone(), listen).await.expect("TLS transport");
    assert_eq!(bound.is_some(), listen.is_some(), "listener bound");
    (builder.build(), table, bound, log, responder)
}

async fn request(
    ep: &ezk_sip_core::Endpoint,
    method: Method,
    uri: &str,
    via: Option<&str>,
    body: &str,
) -> Result<FinalResponse, String> {
    let uri: SipUri = uri.parse().unwrap();
    let via: Option<SipUri> = via.map(|v| v.parse().unwrap());
    match tokio::time::timeout(REQUEST_TIMEOUT, send_request(ep, method, &uri, via.as_ref(), body)).await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => Err(format!("ezk: {e:?}")),
        Err(_) => Err(format!("no final response within {REQUEST_TIMEOUT:?}")),
    }
}

/// The one successful handshake of `side` with `peer` (any port when `peer` has port 0),
/// which verified the peer's certificate for sip.example.test when this side is the client.
fn handshake_ok(log: &[Handshake], side: Side, peer: SocketAddr) -> sipstls::TlsInfo {
    let found: Vec<_> = log
        .iter()
        .filter(|h| h.side == side && h.peer.ip() == peer.ip() && (peer.port() == 0 || h.peer.port() == peer.port()))
        .collect();
    assert_eq!(found.len(), 1, "one {side:?} handshake with {peer}: {log:#?}");
    let info = found[0].result.clone().unwrap_or_else(|e| panic!("{side:?} handshake with {peer} failed: {e}"));
    if side == Side::Client {
        assert_eq!(info.verify, VerifyResult::Verified, "{info:?}");
    }
    assert_eq!(info.sni.as_deref(), Some(SERVER_NAME), "SNI: {info:?}");
    info
}

/// Handshakes completed by the table's domain labelled `label`.
fn handshakes(table: &DomainTable, label: &str) -> u64 {
    table.stats().iter().find(|s| s.label == label).map_or(0, |s| s.handshakes_ok)
}

/// The ezk UA's OPTIONS to the project's `sip-server` (on the same backend) gets 200, in
/// process and from the `ezk-ua` binary.
fn ezk_to_sip_server(backend: &str) {
    let dir = ScratchDir::new(&format!("ezk-sip-server-{backend}"));
    let certs = pki().write_to(dir.path()).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let log_path = dir.path().join("sip-server.log");
    let _server = ChildGuard(
        Command::new(sip_server_bin())
            .args(["--listen", &addr.to_string(), "--backend", backend, "--max-seconds", "120"])
            .arg("--cert")
            .arg(certs.join("server.pem"))
            .arg("--key")
            .arg(certs.join("server.key"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log_path).unwrap())
            .spawn()
            .expect("spawn sip-server"),
    );
    assert!(wait_for_port(addr, WAIT), "sip-server did not listen on {addr}");
    let server_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let uri = format!("sip:{addr};transport=tls");

    run(async {
        let (ep, table, _, log, _) = endpoint(backend, &certs, false).await;
        // Holding a handle keeps ezk's connection in use, so both requests go over it (ezk
        // drops an unheld connection's handle when a transaction ends and, until its reader
        // task marks it idle, opens a new one for the next request).
        let (_held, _) = ep.select_transport(&uri.parse().unwrap()).await.expect("TLS connection to sip-server");
        let resp = request(&ep, Method::OPTIONS, &uri, None, "")
            .await
            .unwrap_or_else(|e| panic!("{backend}: OPTIONS to sip-server: {e}\n{}", server_log()));
        assert_eq!(resp.code, 200, "{backend}: {resp:?}");
        assert_eq!(resp.transport, "TLS", "{backend}: {resp:?}");
        assert_eq!(resp.header("Allow"), Some("OPTIONS, REGISTER, MESSAGE"), "{backend}: sip-server's 200: {resp:?}");
        // A second request reuses ezk's connection: still one handshake.
        let resp = request(&ep, Method::OPTIONS, &uri, None, "").await.unwrap();
        assert_eq!(resp.code, 200, "{backend}: {resp:?}");
        handshake_ok(&log.all(), Side::Client, addr);
        assert_eq!(handshakes(&table, "client default"), 1, "{backend}: {:?}", table.stats());
    });

    // The binary, backend by flag.
    let mut ua = Command::new(env!("CARGO_BIN_EXE_ezk-ua"))
        .args(["--backend", backend, "--name", SERVER_NAME, "--options", &uri])
        .arg("--ca")
        .arg(certs.join("ca.pem"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ezk-ua");
    let deadline = Instant::now() + WAIT;
    while ua.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = ua.kill();
            let _ = ua.wait();
            panic!("{backend}: ezk-ua did not finish within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = ua.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{backend}: ezk-ua: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("OPTIONS -> 200 over TLS"), "{backend}: {stdout}");
    assert!(stdout.contains(&format!("handshake Client {addr}: TLS")), "{backend}: {stdout}");
}

/// The ezk UA and Kamailio, both ways over TLS: the UA's OPTIONS to Kamailio gets 200; the
/// UA's MESSAGE to its own listener, sent through Kamailio, reaches the UA over a TLS
/// connection Kamailio opened and the UA's 200 comes back through Kamailio.
fn ezk_and_kamailio(backend: &str) {
    let kam = Kamailio::start(&format!("ezk-{backend}"));
    let certs = kam.dir.path().join("certs");
    let kam_uri = format!("sip:{};transport=tls", kam.tls);

    run(async {
        let (ep, table, bound, log, responder) = endpoint(backend, &certs, true).await;
        let me = bound.unwrap();
        // One connection to Kamailio for both requests (see ezk_to_sip_server).
        let (_held, _) = ep.select_transport(&kam_uri.parse().unwrap()).await.expect("TLS connection to kamailio");

        // UA -> Kamailio.
        let resp = request(&ep, Method::OPTIONS, &kam_uri, None, "")
            .await
            .unwrap_or_else(|e| panic!("{backend}: OPTIONS to kamailio: {e}\n{}", kam.log()));
        assert_eq!(resp.code, 200, "{backend}: {resp:?}\n{}", kam.log());
        assert!(resp.header("X-TLS-Version").is_some_and(|v| v.starts_with("TLSv1.")), "{backend}: {resp:?}");
        handshake_ok(&log.all(), Side::Client, kam.tls);

        // Kamailio -> UA: a MESSAGE for the UA's listener, sent through Kamailio.
        let body = format!("hello ezk via kamailio ({backend})");
        let ruri = format!("sip:ezk@{me};transport=tls");
        let resp = request(&ep, Method::MESSAGE, &ruri, Some(&kam_uri), &body)
            .await
            .unwrap_or_else(|e| panic!("{backend}: MESSAGE via kamailio: {e}\n{}", kam.log()));
        assert_eq!(resp.code, 200, "{backend}: {resp:?}\n{}", kam.log());
        assert_eq!(resp.header("Server"), Some("sipstls-ezk"), "{backend}: answered by the ezk UA: {resp:?}");

        // And an OPTIONS for the UA the same way: Kamailio sends it over the same connection.
        let resp = request(&ep, Method::OPTIONS, &ruri, Some(&kam_uri), "")
            .await
            .unwrap_or_else(|e| panic!("{backend}: OPTIONS via kamailio: {e}\n{}", kam.log()));
        assert_eq!(resp.code, 200, "{backend}: {resp:?}\n{}", kam.log());
        assert_eq!(resp.header("Allow"), Some("OPTIONS, MESSAGE"), "{backend}: answered by the ezk UA: {resp:?}");

        let answered = responder.answered();
        assert_eq!(answered.len(), 2, "{backend}: {answered:?}");
        let (msg, options) = (&answered[0], &answered[1]);
        assert_eq!((msg.method.as_str(), options.method.as_str()), ("MESSAGE", "OPTIONS"), "{answered:?}");
        assert_eq!((msg.transport, options.transport), ("TLS", "TLS"), "{backend}: {answered:?}");
        assert_eq!(msg.body, body, "{backend}: {msg:?}");
        assert_eq!(msg.source, options.source, "{backend}: one connection from Kamailio: {answered:?}");
        assert_eq!(msg.source.ip(), kam.tls.ip(), "{backend}: {msg:?}");
        assert_ne!(msg.source, kam.tls, "{backend}: from Kamailio's own connection, not the UA's: {msg:?}");
        // The UA's listener accepted Kamailio's TLS client, which sent SNI sip.example.test.
        let server_side = handshake_ok(&log.all(), Side::Server, msg.source);
        assert!(server_side.peer.is_none(), "{backend}: no client certificate asked: {server_side:?}");
        assert!(kam.wait_log(&format!("REPLY 200 OK for MESSAGE from 127.0.0.1:{}", me.port())), "{}", kam.log());
        assert_eq!(handshakes(&table, "client default"), 1, "{backend}: {:?}", table.stats());
        assert_eq!(handshakes(&table, "server any"), 1, "{backend}: {:?}", table.stats());
    });
}

macro_rules! ezk_tests {
    ($backend:ident) => {
        mod $backend {
            #[test]
            fn ezk_options_to_sip_server() {
                super::ezk_to_sip_server(stringify!($backend));
            }

            #[test]
            fn ezk_and_kamailio_both_ways() {
                super::ezk_and_kamailio(stringify!($backend));
            }
        }
    };
}

ezk_tests!(rustls);
ezk_tests!(openssl);
