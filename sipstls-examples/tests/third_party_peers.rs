//! Independent TLS stacks as peers of every backend of the build (Debian's `gnutls-bin` and
//! `android-boringssl`, which `scripts/test.sh` installs):
//! - `gnutls-cli` and `bssl-tool client` send SIP OPTIONS to our `sip-responder`;
//! - our `sip-client` completes handshakes with `gnutls-serv` and `bssl-tool server`
//!   (chain and name verified, version as asked). Those two bind every address, so each runs
//!   with our client inside a network namespace of its own (`unshare -n`, loopback only).
//!
//! TLS 1.2 and 1.3 each; a version a backend does not claim is asserted to be refused.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use sipstls::{DomainConfig, ProtocolVersion};
use sipstls_conformance::peers::{free_port, wait_for_port, ChildGuard, ScratchDir};
use sipstls_conformance::pki::{pki, SERVER_NAME};

const WAIT: Duration = Duration::from_secs(20);
const INSTALL: &str = "apt-get install gnutls-bin android-boringssl (scripts/test.sh does)";

/// Panics (never skips) when a peer tool is missing.
fn require(tool: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "`{tool}` is not installed: {INSTALL}");
}

fn claims(backend: &str, v: ProtocolVersion) -> bool {
    sipstls::backend(backend).unwrap().capabilities().contains(v.capability())
}

/// A backend without `v` refuses it on both sides, typed.
fn assert_refused(backend: &str, v: ProtocolVersion) {
    let b = sipstls::backend(backend).unwrap();
    let s = b.server_domain(&DomainConfig::server(pki().server_ecdsa.identity()).with_version(v)).err();
    let c = b.client_domain(&DomainConfig::client(pki().roots()).with_version(v)).err();
    assert!(matches!(s, Some(sipstls::Error::Unsupported { .. })), "{backend} server {v}: {s:?}");
    assert!(matches!(c, Some(sipstls::Error::Unsupported { .. })), "{backend} client {v}: {c:?}");
}

fn options(addr: SocketAddr) -> String {
    format!(
        "OPTIONS sip:{addr};transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK-peer\r\n\
         Max-Forwards: 70\r\nFrom: <sip:peer@127.0.0.1>;tag=p\r\nTo: <sip:{addr}>\r\nCall-ID: peer-{}@127.0.0.1\r\n\
         CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        std::process::id()
    )
}

/// Our SIP responder with `backend`, only version `v`.
fn responder(backend: &str, dir: &Path, v: ProtocolVersion) -> (ChildGuard, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let tls_min = if v == ProtocolVersion::Tls13 { "1.3" } else { "1.2" };
    let child = ChildGuard::spawn_logged(
        Command::new(env!("CARGO_BIN_EXE_sip-responder"))
            .args(["--backend", backend, "--listen", &addr.to_string(), "--max-seconds", "60", "--tls-min", tls_min])
            .arg("--cert")
            .arg(dir.join("server.pem"))
            .arg("--key")
            .arg(dir.join("server.key")),
        &dir.join("responder.log"),
    )
    .unwrap();
    assert!(wait_for_port(addr, WAIT), "{backend} responder did not listen");
    (child, addr)
}

/// A peer client (`client` makes its command for the responder's address) fed OPTIONS on
/// stdin must print the 200 of our responder with `backend`, version `v` only. The client's
/// stderr goes to `dir/client.log`; it and the responder's log are shown when it fails.
///
/// A client that exits before reading its input gets one more try, against a new responder
/// on a new port: a port from `free_port` can be taken by another socket before the
/// responder binds it (seen under full-suite load, with gnutls-cli and bssl-tool alike). A
/// server that refuses the client fails both tries.
fn peer_client_gets_200(
    what: &str,
    backend: &str,
    v: ProtocolVersion,
    dir: &Path,
    client: impl Fn(SocketAddr) -> Command,
) {
    let log = dir.join("client.log");
    let said = || {
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        format!("{:?}; the responder logged: {:?}", read("client.log"), read("responder.log"))
    };
    for attempt in 1..=2 {
        let (mut server, addr) = responder(backend, dir, v);
        let mut c = ChildGuard::spawn_logged(&mut client(addr), &log).unwrap();
        if let Err(e) = c.0.stdin.as_mut().unwrap().write_all(options(addr).as_bytes()) {
            let alive = server.0.try_wait().is_ok_and(|s| s.is_none());
            assert!(
                attempt == 1 && e.kind() == std::io::ErrorKind::BrokenPipe,
                "{what}: writing to the client: {e}; the responder is {}; the client said: {}",
                if alive { "running" } else { "gone" },
                said()
            );
            eprintln!(
                "{what}: the client exited before reading its input ({e}; the responder is {}; the client said: {}); \
                 once more on a new port",
                if alive { "running" } else { "gone" },
                said()
            );
            continue;
        }
        let out = c.read_stdout_until("Content-Length: 0\r\n\r\n", WAIT);
        assert!(out.contains("SIP/2.0 200 OK\r\n"), "{what}: no 200 in {out:?}; the client said: {}", said());
        return;
    }
}

fn gnutls_priority(v: ProtocolVersion) -> &'static str {
    match v {
        ProtocolVersion::Tls12 => "NORMAL:-VERS-ALL:+VERS-TLS1.2",
        ProtocolVersion::Tls13 => "NORMAL:-VERS-ALL:+VERS-TLS1.3",
    }
}

fn bssl_version(v: ProtocolVersion) -> &'static str {
    match v {
        ProtocolVersion::Tls12 => "tls1.2",
        ProtocolVersion::Tls13 => "tls1.3",
    }
}

fn gnutls_cli_to_our_server(v: ProtocolVersion) {
    require("gnutls-cli");
    let dir = ScratchDir::new("gnutls-cli");
    pki().write_to(dir.path()).unwrap();
    for b in sipstls::backend_names() {
        if !claims(b, v) {
            assert_refused(b, v);
            continue;
        }
        peer_client_gets_200(&format!("gnutls-cli -> {b} {v}"), b, v, dir.path(), |addr| {
            let mut cmd = Command::new("gnutls-cli");
            cmd.args(["-p", &addr.port().to_string(), "127.0.0.1", "--priority", gnutls_priority(v)])
                .arg(format!("--sni-hostname={SERVER_NAME}"))
                .arg(format!("--verify-hostname={SERVER_NAME}"))
                .arg(format!("--x509cafile={}", dir.path().join("ca.pem").display()));
            cmd
        });
    }
}

fn bssl_client_to_our_server(v: ProtocolVersion) {
    require("bssl-tool");
    let dir = ScratchDir::new("bssl-client");
    pki().write_to(dir.path()).unwrap();
    for b in sipstls::backend_names() {
        if !claims(b, v) {
            assert_refused(b, v);
            continue;
        }
        peer_client_gets_200(&format!("bssl-tool client -> {b} {v}"), b, v, dir.path(), |addr| {
            let mut cmd = Command::new("bssl-tool");
            cmd.args(["client", "-connect", &addr.to_string(), "-server-name", SERVER_NAME])
                .args(["-min-version", bssl_version(v), "-max-version", bssl_version(v)])
                .arg("-root-certs")
                .arg(dir.path().join("ca.pem"));
            cmd
        });
    }
}

/// Runs `server` (a shell command line binding port 4433) and then our `sip-client` with
/// `client_args` inside a fresh network namespace; returns the client's exit status and
/// stderr, and the server's log.
fn in_namespace(dir: &Path, server: &str, client_args: &str) -> (bool, String) {
    require("unshare");
    let client = env!("CARGO_BIN_EXE_sip-client");
    let script = format!(
        "ip link set lo up || exit 90\n\
         {server} > {log} 2>&1 &\n\
         S=$!\n\
         for i in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/4433) 2>/dev/null && break; sleep 0.05; done\n\
         timeout 20 {client} --connect 127.0.0.1:4433 --name {SERVER_NAME} --ca {ca} --timeout 10 {client_args}\n\
         rc=$?\n\
         kill $S; wait $S 2>/dev/null\n\
         exit $rc\n",
        log = dir.join("server.log").display(),
        ca = dir.join("ca.pem").display(),
    );
    let out = Command::new("timeout")
        .args(["60", "unshare", "-n", "bash", "-c", &script])
        .stdin(Stdio::null())
        .output()
        .expect("unshare");
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    (out.status.success(), format!("{}\n--- server log ---\n{log}", String::from_utf8_lossy(&out.stderr)))
}

/// Our client, on every backend that claims `v`, completes a handshake with the peer server
/// that `server` starts on port 4433 (chain and name verified, version as asked).
fn our_client_to_peer_server(v: ProtocolVersion, tool: &str, server: impl Fn(&Path) -> String) {
    require(tool);
    let dir = ScratchDir::new(tool);
    pki().write_to(dir.path()).unwrap();
    let server = server(dir.path());
    for b in sipstls::backend_names() {
        if !claims(b, v) {
            assert_refused(b, v);
            continue;
        }
        let tls = if v == ProtocolVersion::Tls13 { "1.3" } else { "1.2" };
        let (ok, out) = in_namespace(dir.path(), &server, &format!("--backend {b} --tls {tls} --handshake-only"));
        assert!(ok, "{b} client -> {tool} {v}: {out}");
        assert!(out.contains(&format!("sip-client: {v} ")), "{b}: negotiated {v}? {out}");
    }
}

fn our_client_to_gnutls_serv(v: ProtocolVersion) {
    our_client_to_peer_server(v, "gnutls-serv", |d| {
        format!(
            "gnutls-serv -p 4433 --priority {} --x509certfile {} --x509keyfile {}",
            gnutls_priority(v),
            d.join("server.pem").display(),
            d.join("server.key").display()
        )
    });
}

fn our_client_to_bssl_server(v: ProtocolVersion) {
    our_client_to_peer_server(v, "bssl-tool", |d| {
        format!(
            "bssl-tool server -loop -accept 4433 -min-version {v} -max-version {v} -cert {} -key {}",
            d.join("server.pem").display(),
            d.join("server.key").display(),
            v = bssl_version(v)
        )
    });
}

#[test]
fn gnutls_cli_to_our_server_tls12() {
    gnutls_cli_to_our_server(ProtocolVersion::Tls12);
}

#[test]
fn gnutls_cli_to_our_server_tls13() {
    gnutls_cli_to_our_server(ProtocolVersion::Tls13);
}

#[test]
fn bssl_client_to_our_server_tls12() {
    bssl_client_to_our_server(ProtocolVersion::Tls12);
}

#[test]
fn bssl_client_to_our_server_tls13() {
    bssl_client_to_our_server(ProtocolVersion::Tls13);
}

#[test]
fn our_client_to_gnutls_serv_tls12() {
    our_client_to_gnutls_serv(ProtocolVersion::Tls12);
}

#[test]
fn our_client_to_gnutls_serv_tls13() {
    our_client_to_gnutls_serv(ProtocolVersion::Tls13);
}

#[test]
fn our_client_to_bssl_server_tls12() {
    our_client_to_bssl_server(ProtocolVersion::Tls12);
}

#[test]
fn our_client_to_bssl_server_tls13() {
    our_client_to_bssl_server(ProtocolVersion::Tls13);
}
