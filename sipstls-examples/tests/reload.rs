//! The SIP server configured by a Kamailio `tls.cfg` (`--tls-cfg`), reloaded by SIGHUP in
//! both process models and for every backend of the build: a connection opened before the
//! reload keeps working with the old certificate, new connections get the new one, a broken
//! configuration is refused (the log names its line) and the server keeps serving, and
//! SIGUSR1 prints the per-domain statistics.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sipstls::{DomainConfig, TlsStream};
use sipstls_conformance::peers::{free_port, wait_for_port, ChildGuard, ScratchDir};
use sipstls_conformance::pki::{pki, ALT_NAME, SERVER_NAME};
use sipstls_examples::sip::{self, Frame};

const WAIT: Duration = Duration::from_secs(15);

struct Server {
    child: ChildGuard,
    log: PathBuf,
}

impl Server {
    fn pid(&self) -> i32 {
        self.child.0.id() as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: signalling the server process this test started.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }

    /// Waits until the log contains `needle` `times` times; returns the log.
    fn wait_log(&self, needle: &str, times: usize) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if log.matches(needle).count() >= times {
                return log;
            }
            assert!(Instant::now() < deadline, "no {needle:?} (x{times}) in the log:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // An orderly stop (the confined server reaps its workers), then the guard's SIGKILL.
        // SAFETY: signalling the server process this test started.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn write_cfg(dir: &Path, body: &str) {
    // Written aside and renamed, so the server never reads half a file.
    std::fs::write(dir.join("tls.cfg.new"), body).unwrap();
    std::fs::rename(dir.join("tls.cfg.new"), dir.join("tls.cfg")).unwrap();
}

fn profile(cert: &str) -> String {
    format!("# sip-server reload test\n[server:default]\nmethod = TLSv1.2+\ncertificate = {cert}.pem\nprivate_key = {cert}.key\n")
}

fn connect(backend: &str, addr: SocketAddr, name: &str) -> std::io::Result<TlsStream<TcpStream>> {
    let domain = sipstls::backend(backend).unwrap().client_domain(&DomainConfig::client(pki().roots())).unwrap();
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(WAIT))?;
    let mut tls = TlsStream::connect(&*domain, name, tcp)?;
    tls.handshake()?;
    Ok(tls)
}

/// OPTIONS on `tls`; the response's status code.
fn options(tls: &mut TlsStream<TcpStream>, seq: usize) -> u16 {
    let req = format!(
        "OPTIONS sip:{SERVER_NAME} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1;branch=z9hG4bK-r{seq}\r\nFrom: <sip:t@example.test>;tag=t\r\n\
         To: <sip:{SERVER_NAME}>\r\nCall-ID: reload-{seq}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    tls.write_all(req.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..1000 {
        if let Ok(Frame::Message(m, _)) = sip::parse(&got) {
            return m.start_line.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        }
        let n = tls.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the response");
        got.extend_from_slice(&buf[..n]);
    }
    panic!("no complete response");
}

fn peer_cn(tls: &TlsStream<TcpStream>) -> String {
    tls.info().unwrap().peer.unwrap().subject_cn.unwrap()
}

fn reload_by_sighup(backend: &str, model: &str) {
    let dir = ScratchDir::new("reload");
    pki().write_to(dir.path()).unwrap();
    write_cfg(dir.path(), &profile("server"));
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = dir.path().join("server.log");
    let child = Command::new(env!("CARGO_BIN_EXE_sip-server"))
        .args(["--listen", &addr.to_string(), "--max-seconds", "120", "--backend", backend])
        .args(["--model", model, "--workers", "2", "--tls-cfg"])
        .arg(dir.path().join("tls.cfg"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .expect("spawn sip-server");
    let server = Server { child: ChildGuard(child), log };
    assert!(wait_for_port(addr, WAIT), "sip-server did not listen on {addr}");

    let mut before = connect(backend, addr, SERVER_NAME).expect("the first configuration");
    assert_eq!(peer_cn(&before), SERVER_NAME);
    assert_eq!(options(&mut before, 1), 200);

    write_cfg(dir.path(), &profile("alt"));
    server.signal(libc::SIGHUP);
    server.wait_log("reloaded the TLS configuration", 1);
    let mut after = connect(backend, addr, ALT_NAME).expect("the new configuration");
    assert_eq!(peer_cn(&after), ALT_NAME);
    assert_eq!(options(&mut after, 2), 200);
    assert!(connect(backend, addr, SERVER_NAME).is_err(), "the old certificate is gone for new connections");
    assert_eq!(options(&mut before, 3), 200, "a connection from before the reload still works");

    // A configuration that does not load: refused with its line, the server keeps going.
    write_cfg(dir.path(), "[server:default]\nmethod = TLSv1\ncertificate = alt.pem\nprivate_key = alt.key\n");
    server.signal(libc::SIGHUP);
    let log = server.wait_log("reload failed", 1);
    assert!(log.contains("tls.cfg:2: key \"method\""), "the error names file, line and key:\n{log}");
    let mut still = connect(backend, addr, ALT_NAME).expect("the last good configuration stays");
    assert_eq!(options(&mut still, 4), 200);
    assert_eq!(options(&mut before, 5), 200);

    server.signal(libc::SIGUSR1);
    let log = server.wait_log("statistics (", 1);
    let line = log.lines().find(|l| l.trim_start().starts_with("server any:")).expect("the server domain's line");
    let ok: u64 = line.split("handshakes ok=").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    // before, after, still: 3 completed; the refused client may count as failed.
    assert!(ok >= 3, "counters carried over the reloads: {line}");
    let sessions = log.lines().filter(|l| l.trim_start().starts_with("session ")).count();
    assert!(sessions >= 3, "open sessions listed:\n{log}");
}

#[test]
fn reload_single_process() {
    for b in sipstls::backend_names() {
        reload_by_sighup(b, "single");
    }
}

#[test]
fn reload_confined() {
    for b in sipstls::backend_names() {
        reload_by_sighup(b, "confined");
    }
}
