//! Interop: every backend's client against every backend's server in one process, and the
//! `openssl s_server` / `openssl s_client` command-line tools over loopback.

// The fixed pairs below name rustls and OpenSSL; builds without them use the generated matrix.
#![cfg_attr(not(all(feature = "rustls", feature = "openssl")), allow(unused_macros, dead_code))]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use sipstls::{Backend, DomainConfig, ProtocolVersion, ServerName, TlsStream, VerifyResult};
use sipstls_conformance::checks::{client_cfg, server_cfg};
use sipstls_conformance::peers::{free_port, openssl_cli, ChildGuard, ScratchDir};
use sipstls_conformance::pki::{pki, CLIENT_CN, SERVER_NAME};
use sipstls_conformance::pump;

fn backend(name: &str) -> Arc<dyn Backend> {
    sipstls::backend(name).unwrap_or_else(|| panic!("backend {name} not compiled in"))
}

/// Handshake, data both ways, agreement on version, cipher and group, client certificate
/// seen by the server, and resumption of the second and third connections.
fn cross(client: &str, server: &str, v: ProtocolVersion, mtls: bool) {
    cross_once(client, server, v, mtls, true);
}

macro_rules! matrix {
    ($($name:ident: $c:literal -> $s:literal, $v:ident, $mtls:literal;)*) => {
        $(
            #[test]
            #[cfg(all(feature = $c, feature = $s))]
            fn $name() {
                cross($c, $s, ProtocolVersion::$v, $mtls);
            }
        )*
    };
}

matrix! {
    rustls_to_openssl_tls12: "rustls" -> "openssl", Tls12, false;
    rustls_to_openssl_tls13: "rustls" -> "openssl", Tls13, false;
    rustls_to_openssl_tls12_mtls: "rustls" -> "openssl", Tls12, true;
    rustls_to_openssl_tls13_mtls: "rustls" -> "openssl", Tls13, true;
    openssl_to_rustls_tls12: "openssl" -> "rustls", Tls12, false;
    openssl_to_rustls_tls13: "openssl" -> "rustls", Tls13, false;
    openssl_to_rustls_tls12_mtls: "openssl" -> "rustls", Tls12, true;
    openssl_to_rustls_tls13_mtls: "openssl" -> "rustls", Tls13, true;
}

matrix! {
    rustls_to_rustls_tls13_mtls: "rustls" -> "rustls", Tls13, true;
}

matrix! {
    openssl_to_openssl_tls13_mtls: "openssl" -> "openssl", Tls13, true;
    wolfssl_to_rustls_tls12: "wolfssl" -> "rustls", Tls12, false;
    wolfssl_to_rustls_tls13: "wolfssl" -> "rustls", Tls13, false;
    wolfssl_to_rustls_tls12_mtls: "wolfssl" -> "rustls", Tls12, true;
    wolfssl_to_rustls_tls13_mtls: "wolfssl" -> "rustls", Tls13, true;
    rustls_to_wolfssl_tls12: "rustls" -> "wolfssl", Tls12, false;
    rustls_to_wolfssl_tls13: "rustls" -> "wolfssl", Tls13, false;
    rustls_to_wolfssl_tls12_mtls: "rustls" -> "wolfssl", Tls12, true;
    rustls_to_wolfssl_tls13_mtls: "rustls" -> "wolfssl", Tls13, true;
    wolfssl_to_openssl_tls12: "wolfssl" -> "openssl", Tls12, false;
    wolfssl_to_openssl_tls13: "wolfssl" -> "openssl", Tls13, false;
    wolfssl_to_openssl_tls12_mtls: "wolfssl" -> "openssl", Tls12, true;
    wolfssl_to_openssl_tls13_mtls: "wolfssl" -> "openssl", Tls13, true;
    openssl_to_wolfssl_tls12: "openssl" -> "wolfssl", Tls12, false;
    openssl_to_wolfssl_tls13: "openssl" -> "wolfssl", Tls13, false;
    openssl_to_wolfssl_tls12_mtls: "openssl" -> "wolfssl", Tls12, true;
    openssl_to_wolfssl_tls13_mtls: "openssl" -> "wolfssl", Tls13, true;
    wolfssl_to_wolfssl_tls12_mtls: "wolfssl" -> "wolfssl", Tls12, true;
    wolfssl_to_wolfssl_tls13_mtls: "wolfssl" -> "wolfssl", Tls13, true;
}

matrix! {
    mbedtls_to_mbedtls_tls12_mtls: "mbedtls" -> "mbedtls", Tls12, true;
    mbedtls_to_mbedtls_tls13_mtls: "mbedtls" -> "mbedtls", Tls13, true;
}

matrix! {
    mbedtls_to_rustls_tls12: "mbedtls" -> "rustls", Tls12, false;
    mbedtls_to_rustls_tls13: "mbedtls" -> "rustls", Tls13, false;
    mbedtls_to_rustls_tls12_mtls: "mbedtls" -> "rustls", Tls12, true;
    mbedtls_to_rustls_tls13_mtls: "mbedtls" -> "rustls", Tls13, true;
    rustls_to_mbedtls_tls12: "rustls" -> "mbedtls", Tls12, false;
    rustls_to_mbedtls_tls13: "rustls" -> "mbedtls", Tls13, false;
    rustls_to_mbedtls_tls12_mtls: "rustls" -> "mbedtls", Tls12, true;
    rustls_to_mbedtls_tls13_mtls: "rustls" -> "mbedtls", Tls13, true;
}

matrix! {
    mbedtls_to_openssl_tls12: "mbedtls" -> "openssl", Tls12, false;
    mbedtls_to_openssl_tls13: "mbedtls" -> "openssl", Tls13, false;
    mbedtls_to_openssl_tls12_mtls: "mbedtls" -> "openssl", Tls12, true;
    mbedtls_to_openssl_tls13_mtls: "mbedtls" -> "openssl", Tls13, true;
    openssl_to_mbedtls_tls12: "openssl" -> "mbedtls", Tls12, false;
    openssl_to_mbedtls_tls13: "openssl" -> "mbedtls", Tls13, false;
    openssl_to_mbedtls_tls12_mtls: "openssl" -> "mbedtls", Tls12, true;
    openssl_to_mbedtls_tls13_mtls: "openssl" -> "mbedtls", Tls13, true;
}

matrix! {
    mbedtls_to_wolfssl_tls13: "mbedtls" -> "wolfssl", Tls13, false;
    wolfssl_to_mbedtls_tls13_mtls: "wolfssl" -> "mbedtls", Tls13, true;
}

fn version_flag(v: ProtocolVersion) -> &'static str {
    match v {
        ProtocolVersion::Tls12 => "-tls1_2",
        ProtocolVersion::Tls13 => "-tls1_3",
    }
}

/// Our client against `openssl s_server -rev` (which answers each line reversed).
fn client_vs_s_server(backend_name: &str, v: ProtocolVersion) {
    let dir = ScratchDir::new("s_server");
    pki().write_to(dir.path()).unwrap();
    // A free port can be taken by a test running beside this one before s_server binds it
    // (then s_server exits at once): a few attempts, each on a new port.
    let mut attempts = Vec::new();
    let (addr, _server) = loop {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut server = ChildGuard::spawn(
            Command::new(openssl_cli())
                .args(["s_server", "-accept", &addr.to_string(), "-rev", "-naccept", "1", version_flag(v)])
                .arg("-cert")
                .arg(dir.path().join("server.pem"))
                .arg("-key")
                .arg(dir.path().join("server.key")),
        )
        .unwrap();
        // Not probed by connecting: with -naccept 1 the probe would be its only connection.
        let banner = server.read_stdout_until("ACCEPT", Duration::from_secs(10));
        if banner.contains("ACCEPT") {
            break (addr, server);
        }
        attempts.push(format!("port {port}: {banner:?}"));
        assert!(attempts.len() < 3, "s_server did not start: {attempts:?}");
    };
    let domain = backend(backend_name).client_domain(&client_cfg(v)).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = TlsStream::connect(&*domain, SERVER_NAME, tcp).expect("handshake with s_server");
    assert_eq!(tls.info().unwrap().version, v);
    tls.write_all(b"hello sip\n").unwrap();
    let mut line = String::new();
    BufReader::new(&mut tls).read_line(&mut line).unwrap();
    assert_eq!(line.trim_end(), "pis olleh");
}

/// `openssl s_client` (with a client certificate) against our server, which upper-cases
/// one line and closes.
fn server_vs_s_client(backend_name: &str, v: ProtocolVersion) {
    let dir = ScratchDir::new("s_client");
    pki().write_to(dir.path()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let scfg = server_cfg(v).with_client_auth(sipstls::ClientAuth::Required(pki().roots()));
    let domain = backend(backend_name).server_domain(&scfg).unwrap();
    let server = std::thread::spawn(move || -> Result<String, String> {
        let (tcp, _) = listener.accept().map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
        let mut tls = TlsStream::accept(&*domain, tcp).map_err(|e| format!("accept: {e}"))?;
        let peer = tls.info().and_then(|i| i.peer).and_then(|p| p.subject_cn).unwrap_or_default();
        let mut line = String::new();
        BufReader::new(&mut tls).read_line(&mut line).map_err(|e| e.to_string())?;
        tls.write_all(line.to_uppercase().as_bytes()).map_err(|e| e.to_string())?;
        tls.shutdown().map_err(|e| e.to_string())?;
        Ok(peer)
    });
    let mut client = ChildGuard::spawn(
        Command::new(openssl_cli())
            .args([
                "s_client",
                "-connect",
                &addr.to_string(),
                "-servername",
                SERVER_NAME,
                "-verify_return_error",
                "-quiet",
                version_flag(v),
            ])
            .arg("-CAfile")
            .arg(dir.path().join("ca.pem"))
            .arg("-cert")
            .arg(dir.path().join("client.pem"))
            .arg("-key")
            .arg(dir.path().join("client.key")),
    )
    .unwrap();
    client.0.stdin.as_mut().unwrap().write_all(b"options sip\n").unwrap();
    let out = client.read_stdout_until("OPTIONS SIP", Duration::from_secs(10));
    assert!(out.contains("OPTIONS SIP"), "s_client got {out:?}");
    let peer = server.join().unwrap().expect("server side");
    assert_eq!(peer, CLIENT_CN);
}

macro_rules! cli_peers {
    ($($name:ident: $f:ident, $b:literal, $v:ident;)*) => {
        $(
            #[test]
            #[cfg(feature = $b)]
            fn $name() {
                $f($b, ProtocolVersion::$v);
            }
        )*
    };
}

cli_peers! {
    rustls_client_vs_openssl_s_server_tls12: client_vs_s_server, "rustls", Tls12;
    rustls_client_vs_openssl_s_server_tls13: client_vs_s_server, "rustls", Tls13;
    rustls_server_vs_openssl_s_client_tls12: server_vs_s_client, "rustls", Tls12;
    rustls_server_vs_openssl_s_client_tls13: server_vs_s_client, "rustls", Tls13;
}

cli_peers! {
    openssl_client_vs_openssl_s_server_tls12: client_vs_s_server, "openssl", Tls12;
    openssl_client_vs_openssl_s_server_tls13: client_vs_s_server, "openssl", Tls13;
    openssl_server_vs_openssl_s_client_tls12: server_vs_s_client, "openssl", Tls12;
    openssl_server_vs_openssl_s_client_tls13: server_vs_s_client, "openssl", Tls13;
    wolfssl_client_vs_openssl_s_server_tls12: client_vs_s_server, "wolfssl", Tls12;
    wolfssl_client_vs_openssl_s_server_tls13: client_vs_s_server, "wolfssl", Tls13;
    wolfssl_server_vs_openssl_s_client_tls12: server_vs_s_client, "wolfssl", Tls12;
    wolfssl_server_vs_openssl_s_client_tls13: server_vs_s_client, "wolfssl", Tls13;
}

cli_peers! {
    mbedtls_client_vs_openssl_s_server_tls12: client_vs_s_server, "mbedtls", Tls12;
    mbedtls_server_vs_openssl_s_client_tls12: server_vs_s_client, "mbedtls", Tls12;
    mbedtls_client_vs_openssl_s_server_tls13: client_vs_s_server, "mbedtls", Tls13;
    mbedtls_server_vs_openssl_s_client_tls13: server_vs_s_client, "mbedtls", Tls13;
}

/// A peer that speaks plain TCP to a TLS server gets a typed error on the server, never a
/// hang or panic (the blocking adapter over a real socket).
#[test]
fn plaintext_sip_to_tls_server_is_a_typed_error() {
    for name in sipstls::backend_names() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let domain = backend(name).server_domain(&DomainConfig::server(pki().server_ecdsa.identity())).unwrap();
        let t = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            TlsStream::accept(&*domain, tcp).err().expect("must fail")
        });
        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.write_all(b"OPTIONS sip:example.test SIP/2.0\r\nContent-Length: 0\r\n\r\n").unwrap();
        let e = t.join().unwrap();
        let typed = sipstls::tls_error(&e).unwrap_or_else(|| panic!("{name}: untyped error {e:?}"));
        assert!(matches!(typed, sipstls::Error::Protocol { .. }), "{name}: {typed:?}");
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest);
    }
}

matrix! {
    rustls_to_boring_tls12_mtls: "rustls" -> "boring", Tls12, true;
    rustls_to_boring_tls13_mtls: "rustls" -> "boring", Tls13, true;
    boring_to_rustls_tls12_mtls: "boring" -> "rustls", Tls12, true;
    boring_to_rustls_tls13_mtls: "boring" -> "rustls", Tls13, true;
    boring_to_boring_tls13_mtls: "boring" -> "boring", Tls13, true;
}

cli_peers! {
    boring_client_vs_openssl_s_server_tls12: client_vs_s_server, "boring", Tls12;
    boring_client_vs_openssl_s_server_tls13: client_vs_s_server, "boring", Tls13;
    boring_server_vs_openssl_s_client_tls12: server_vs_s_client, "boring", Tls12;
    boring_server_vs_openssl_s_client_tls13: server_vs_s_client, "boring", Tls13;
}

/// One cell of the generated matrix.
enum Cell {
    Pass { resumed: bool },
    Refused(String),
    Fail(String),
}

/// The whole matrix over the backends of this build: every client x every server x TLS 1.2
/// and 1.3 x with and without a client certificate. A version one side does not claim must
/// be refused with `Error::Unsupported` by that side (asserted); every other cell must
/// pass (handshake, data both ways, agreement, client certificate seen, and resumption of
/// the second connection whenever both sides claim a mechanism for that version). With
/// `SIPSTLS_INTEROP_OUT=path` the table is written as markdown (`docs/interop-matrix.md`).
#[test]
fn generated_matrix_every_backend_pair() {
    use sipstls::Capabilities;
    let names = sipstls::backend_names();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for &client in &names {
        for &server in &names {
            for v in [ProtocolVersion::Tls12, ProtocolVersion::Tls13] {
                for mtls in [false, true] {
                    let (cb, sb) = (backend(client), backend(server));
                    let mut lacking: Vec<&str> = [(client, &cb), (server, &sb)]
                        .iter()
                        .filter(|(_, b)| !b.capabilities().contains(v.capability()))
                        .map(|(n, _)| *n)
                        .collect();
                    lacking.dedup();
                    let cell = if !lacking.is_empty() {
                        // The side without the version refuses it, typed.
                        for (n, b) in [(client, &cb), (server, &sb)] {
                            if lacking.contains(&n) {
                                let r = if n == client {
                                    b.client_domain(&client_cfg(v)).err()
                                } else {
                                    b.server_domain(&server_cfg(v)).err()
                                };
                                assert!(
                                    matches!(r, Some(sipstls::Error::Unsupported { .. })),
                                    "{n} does not claim {v} and must refuse it, got {r:?}"
                                );
                            }
                        }
                        Cell::Refused(format!("{v} not in {}", lacking.join(", ")))
                    } else {
                        let has = |b: &Arc<dyn Backend>, c: Capabilities| b.capabilities().contains(c);
                        let resumable = match v {
                            ProtocolVersion::Tls13 => {
                                has(&cb, Capabilities::RESUMPTION_TICKETS) && has(&sb, Capabilities::RESUMPTION_TICKETS)
                            }
                            ProtocolVersion::Tls12 => {
                                (has(&cb, Capabilities::RESUMPTION_TICKETS)
                                    && has(&sb, Capabilities::RESUMPTION_TICKETS))
                                    || (has(&cb, Capabilities::RESUMPTION_SESSION_ID)
                                        && has(&sb, Capabilities::RESUMPTION_SESSION_ID))
                            }
                        };
                        match std::panic::catch_unwind(|| cross_once(client, server, v, mtls, resumable)) {
                            Ok(()) => Cell::Pass { resumed: resumable },
                            Err(p) => {
                                let msg = p
                                    .downcast_ref::<String>()
                                    .cloned()
                                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                                    .unwrap_or_default();
                                failures.push(format!("{client} -> {server} {v} mtls={mtls}: {msg}"));
                                Cell::Fail(msg)
                            }
                        }
                    };
                    rows.push((client, server, v, mtls, cell));
                }
            }
        }
    }
    if let Some(path) = std::env::var_os("SIPSTLS_INTEROP_OUT") {
        let mut md = String::from(
            "# Interop matrix\n\nGenerated by `SIPSTLS_INTEROP_OUT=$PWD/docs/interop-matrix.md cargo test -p \
             sipstls-conformance --test interop generated_matrix` (add `--features wolfssl,mbedtls` for \
             those backends; BoringSSL cannot link beside OpenSSL, so it runs in its own build). \
             Each cell: 3 connections in memory (handshake, data both ways, version, suite and \
             group agreed, the client certificate verified by the server with mTLS, resumption of the later \
             connections where both sides claim a mechanism for the version).\n\n",
        );
        md.push_str(&format!("Backends in this build: {}.\n\n", names.join(", ")));
        md.push_str("| client | server | version | client cert | result |\n|---|---|---|---|---|\n");
        for (c, s, v, mtls, cell) in &rows {
            let result = match cell {
                Cell::Pass { resumed: true } => "pass (resumed)".to_owned(),
                Cell::Pass { resumed: false } => "pass (no common resumption)".to_owned(),
                Cell::Refused(why) => format!("refused: {why}"),
                Cell::Fail(why) => format!("**FAIL**: {}", why.replace('|', "/").replace('\n', " ")),
            };
            md.push_str(&format!("| {c} | {s} | {v} | {} | {result} |\n", if *mtls { "yes" } else { "no" }));
        }
        std::fs::write(&path, md).expect("write the interop matrix");
    }
    assert!(failures.is_empty(), "{} cells failed:\n{}", failures.len(), failures.join("\n"));
}

/// Three connections from `client` to `server`: handshake, data both ways, version, suite
/// and group agreed, the client certificate verified with mTLS; connections 2 and 3 resume
/// exactly when `resumable`.
fn cross_once(client: &str, server: &str, v: ProtocolVersion, mtls: bool, resumable: bool) {
    let (cb, sb) = (backend(client), backend(server));
    let mut scfg = server_cfg(v);
    let mut ccfg = client_cfg(v);
    if mtls {
        scfg = scfg.with_client_auth(sipstls::ClientAuth::Required(pki().roots()));
        ccfg = ccfg.with_identity(pki().client.identity());
    }
    let sd = sb.server_domain(&scfg).unwrap_or_else(|e| panic!("{client} -> {server} {v}: server domain: {e}"));
    let cd = cb.client_domain(&ccfg).unwrap_or_else(|e| panic!("{client} -> {server} {v}: client domain: {e}"));
    let mut resumed = Vec::new();
    for _ in 0..3 {
        let mut c = cd.connect(Some(&ServerName::parse(SERVER_NAME).unwrap())).unwrap();
        let mut s = sd.accept().unwrap();
        pump::handshake(&mut *c, &mut *s).unwrap_or_else(|f| panic!("{client} -> {server} {v}: {f:?}"));
        assert_eq!(pump::send(&mut *c, &mut *s, b"REGISTER").unwrap(), b"REGISTER");
        assert_eq!(pump::send(&mut *s, &mut *c, b"SIP/2.0 200 OK").unwrap(), b"SIP/2.0 200 OK");
        let (ci, si) = (c.info().unwrap(), s.info().unwrap());
        assert_eq!((ci.version, si.version), (v, v));
        assert_eq!(ci.cipher_suite, si.cipher_suite);
        assert_eq!(ci.group, si.group);
        if mtls && !si.resumed {
            assert_eq!(si.verify, VerifyResult::Verified);
            assert_eq!(si.peer.unwrap().subject_cn.as_deref(), Some(CLIENT_CN));
        }
        resumed.push(ci.resumed);
        c.close_notify();
        pump::transfer(&mut *c, &mut *s).unwrap();
    }
    assert_eq!(resumed, [false, resumable, resumable], "{client} -> {server} {v}: resumption");
}
