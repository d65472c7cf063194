//! The example binaries, run for real on loopback with every backend of the build and
//! driven by `openssl s_client` and by a sipstls client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use sipstls::{DomainConfig, TlsStream};
use sipstls_conformance::peers::{openssl_cli, ChildGuard, ScratchDir};
use sipstls_conformance::pki::{pki, SERVER_NAME};

/// Starts an example binary with `backend` and the test PKI on a port the kernel picks
/// (read back from its "listening on" line, so that no other test's server can take the
/// port in between); stopped by PID on drop.
fn start(bin: &str, backend: &str, certs: &Path, extra: &[&str]) -> (ChildGuard, SocketAddr) {
    let mut child = ChildGuard(
        Command::new(bin)
            .args(["--backend", backend, "--listen", "127.0.0.1:0", "--max-seconds", "120"])
            .arg("--cert")
            .arg(certs.join("server.pem"))
            .arg("--key")
            .arg(certs.join("server.key"))
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn example"),
    );
    let stderr = child.0.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    // Reads the log on a thread (a silent child cannot hang the test) and keeps draining it.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("listening on ").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().and_then(|a| a.parse::<SocketAddr>().ok()));
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("{bin} did not report its listening address"));
    (child, addr)
}

fn options_request(addr: SocketAddr) -> String {
    format!(
        "OPTIONS sip:{addr};transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK-probe;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=probe\r\nTo: <sip:{addr}>\r\nCall-ID: probe-{}@127.0.0.1\r\n\
         CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        std::process::id()
    )
}

/// `openssl s_client` sends OPTIONS; the responder must answer `SIP/2.0 200`.
fn s_client_options(backend: &str, version_flag: &str) {
    let dir = ScratchDir::new("sip-responder");
    pki().write_to(dir.path()).unwrap();
    let (_server, addr) = start(env!("CARGO_BIN_EXE_sip-responder"), backend, dir.path(), &[]);
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
                version_flag,
            ])
            .arg("-CAfile")
            .arg(dir.path().join("ca.pem")),
    )
    .unwrap();
    client.0.stdin.as_mut().unwrap().write_all(options_request(addr).as_bytes()).unwrap();
    let out = client.read_stdout_until("Content-Length: 0\r\n\r\n", Duration::from_secs(15));
    assert!(out.starts_with("SIP/2.0 200 OK\r\n"), "{backend} {version_flag}: got {out:?}");
    assert!(out.contains("Call-ID: probe-"), "{out:?}");
}

/// `openssl s_client` offering only TLS 1.3 to a backend without it: no SIP answer, the
/// handshake fails.
fn s_client_refused(backend: &str, version_flag: &str) {
    let dir = ScratchDir::new("sip-responder-refused");
    pki().write_to(dir.path()).unwrap();
    let (_server, addr) = start(env!("CARGO_BIN_EXE_sip-responder"), backend, dir.path(), &[]);
    let mut client = ChildGuard::spawn(
        Command::new(openssl_cli())
            .args(["s_client", "-connect", &addr.to_string(), "-servername", SERVER_NAME, "-quiet", version_flag])
            .arg("-CAfile")
            .arg(dir.path().join("ca.pem")),
    )
    .unwrap();
    let _ = client.0.stdin.as_mut().unwrap().write_all(options_request(addr).as_bytes());
    let out = client.read_stdout_until("Content-Length: 0\r\n\r\n", Duration::from_secs(15));
    assert!(!out.contains("SIP/2.0"), "{backend} {version_flag}: answered over a version it does not claim: {out:?}");
}

#[test]
fn sip_responder_answers_openssl_s_client_tls13() {
    for b in sipstls::backend_names() {
        if sipstls::backend(b).unwrap().capabilities().contains(sipstls::Capabilities::TLS13) {
            s_client_options(b, "-tls1_3");
        } else {
            s_client_refused(b, "-tls1_3");
        }
    }
}

#[test]
fn sip_responder_answers_openssl_s_client_tls12() {
    for b in sipstls::backend_names() {
        s_client_options(b, "-tls1_2");
    }
}

fn read_until(tls: &mut impl Read, needle: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(needle.len()).any(|w| w == needle) {
        let n = tls.read(&mut buf).expect("read");
        assert!(n > 0, "closed early; got {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// A sipstls client (every backend against every backend's responder): MESSAGE is echoed,
/// a CRLF CRLF ping gets a CRLF pong, and a client certificate is required when asked.
#[test]
fn sip_responder_with_sipstls_client_message_keepalive_and_mtls() {
    let dir = ScratchDir::new("sip-mtls");
    pki().write_to(dir.path()).unwrap();
    let ca = dir.path().join("ca.pem");
    for server_backend in sipstls::backend_names() {
        let (_server, addr) = start(
            env!("CARGO_BIN_EXE_sip-responder"),
            server_backend,
            dir.path(),
            &["--ca", ca.to_str().unwrap(), "--require-client-cert"],
        );
        for client_backend in sipstls::backend_names() {
            let b = sipstls::backend(client_backend).unwrap();
            let with_cert =
                b.client_domain(&DomainConfig::client(pki().roots()).with_identity(pki().client.identity())).unwrap();
            let tcp = TcpStream::connect(addr).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut tls = TlsStream::connect(&*with_cert, SERVER_NAME, tcp).unwrap();
            let body = "hello over TLS";
            let msg = format!(
                "MESSAGE sip:bob@example.test SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1;branch=z9hG4bK-m\r\nFrom: <sip:alice@example.test>;tag=a\r\n\
                 To: <sip:bob@example.test>\r\nCall-ID: m1\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            tls.write_all(msg.as_bytes()).unwrap();
            let resp = read_until(&mut tls, body.as_bytes());
            assert!(resp.starts_with(b"SIP/2.0 200 OK\r\n"), "{client_backend}->{server_backend}");
            tls.write_all(b"\r\n\r\n").unwrap();
            let mut pong = [0u8; 2];
            tls.read_exact(&mut pong).unwrap();
            assert_eq!(&pong, b"\r\n", "keep-alive pong");

            // Without a client certificate the responder refuses the handshake.
            let no_cert = b.client_domain(&DomainConfig::client(pki().roots())).unwrap();
            let tcp = TcpStream::connect(addr).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let refused = TlsStream::connect(&*no_cert, SERVER_NAME, tcp).and_then(|mut t| {
                // TLS 1.3: the refusal arrives after the client's handshake completes.
                t.write_all(options_request(addr).as_bytes())?;
                let mut b = [0u8; 1];
                t.read(&mut b)
            });
            let e = refused.expect_err("a client without a certificate must be refused");
            let typed = sipstls::tls_error(&e).unwrap_or_else(|| panic!("untyped: {e:?}"));
            assert!(matches!(typed, sipstls::Error::AlertReceived(_)), "{client_backend}->{server_backend}: {typed:?}");
        }
    }
}

/// A transport whose odd-numbered reads (the first, the third, ...) fail with `Interrupted`
/// before reading, as a socket read with a timeout does on Linux when the process is
/// stopped and continued.
struct Interrupting {
    tcp: TcpStream,
    reads: usize,
    interrupted: usize,
}

impl Read for Interrupting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.reads += 1;
        if self.reads % 2 == 1 {
            self.interrupted += 1;
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        self.tcp.read(buf)
    }
}

impl Write for Interrupting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tcp.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush()
    }
}

/// `TlsStream::connect` retries interrupted transport reads instead of failing the
/// handshake; `read` reports them as `Interrupted` (to be retried, as `read_exact` does).
#[test]
fn tls_stream_handshake_survives_interrupted_reads() {
    let dir = ScratchDir::new("eintr");
    pki().write_to(dir.path()).unwrap();
    for backend in sipstls::backend_names() {
        let (_server, addr) = start(env!("CARGO_BIN_EXE_sip-responder"), backend, dir.path(), &[]);
        let d = sipstls::backend(backend).unwrap().client_domain(&DomainConfig::client(pki().roots())).unwrap();
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let io = Interrupting { tcp, reads: 0, interrupted: 0 };
        let mut tls = TlsStream::connect(&*d, SERVER_NAME, io).unwrap_or_else(|e| panic!("{backend}: {e:?}"));
        assert!(tls.get_ref().interrupted > 0, "{backend}: the transport interrupted the handshake");
        tls.write_all(options_request(addr).as_bytes()).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.ends_with(b"Content-Length: 0\r\n\r\n") {
            match tls.read(&mut buf) {
                Ok(0) => panic!("{backend}: closed early: {:?}", String::from_utf8_lossy(&got)),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("{backend}: {e:?}"),
            }
        }
        assert!(got.starts_with(b"SIP/2.0 200 OK\r\n"), "{backend}: {:?}", String::from_utf8_lossy(&got));
    }
}

#[test]
fn echo_server_echoes() {
    let dir = ScratchDir::new("echo");
    pki().write_to(dir.path()).unwrap();
    for server_backend in sipstls::backend_names() {
        let (_server, addr) = start(env!("CARGO_BIN_EXE_echo-server"), server_backend, dir.path(), &[]);
        let d = sipstls::default_backend().client_domain(&DomainConfig::client(pki().roots())).unwrap();
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut tls = TlsStream::connect(&*d, SERVER_NAME, tcp).unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        tls.write_all(&data).unwrap();
        let mut back = vec![0u8; data.len()];
        tls.read_exact(&mut back).unwrap();
        assert!(back == data, "{server_backend}: echo corrupted");
    }
}

#[test]
fn examples_refuse_bad_arguments() {
    for bin in [env!("CARGO_BIN_EXE_sip-responder"), env!("CARGO_BIN_EXE_echo-server")] {
        let out = Command::new(bin).args(["--cert", "x.pem"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bin}");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(err.contains("required arguments were not provided") && err.contains("--key"), "{bin}: {err}");
        let out = Command::new(bin).args(["--listen", "127.0.0.1:5999"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bin}");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(err.contains("--cert and --key are required (or --tls-cfg)"), "{bin}: {err}");
        let out = Command::new(bin).args(["--tls-cfg", "tls.cfg", "--cert", "x.pem"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bin}");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(err.contains("'--tls-cfg <FILE>' cannot be used with"), "{bin}: {err}");
        let out = Command::new(bin).arg("--bogus").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bin}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("unexpected argument '--bogus'"), "{bin}");
        let out = Command::new(bin).arg("--help").output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{bin}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("--tls-cfg <FILE>"), "{bin}");
        let out = Command::new(bin).args(["--tls-cfg", "/nonexistent/tls.cfg"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bin}: a missing tls.cfg is an error, not a panic");
        let out = Command::new(bin).args(["--cert", "/nonexistent.pem", "--key", "/nonexistent.key"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bin}: missing files are an error, not a panic");
        let out = Command::new(bin).args(["--backend", "nosuch", "--cert", "a", "--key", "b"]).output().unwrap();
        assert!(String::from_utf8_lossy(&out.stderr).contains("not in this build"));
    }
}
