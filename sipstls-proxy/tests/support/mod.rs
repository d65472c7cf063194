//! The harness of the service tests: the `sipstls-proxy` binary started on a configuration
//! in a scratch directory (test PKI written at run time, loopback ports chosen by the
//! kernel and read back from its JSON logs), stopped by PID; a PROXY-v2-aware TCP upstream;
//! TLS clients.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use sipstls::proxy::{Parsed, ProxyHeader};
use sipstls::{Backend, Certificate, DomainConfig, TlsStream};
use sipstls_conformance::peers::ScratchDir;
use sipstls_conformance::pki::{pki, SERVER_NAME};

pub const WAIT: Duration = Duration::from_secs(10);

/// The domains of most tests: one server domain, the test root for clients.
pub const TLS_CFG: &str = "\
# the test's domains
[server:default]
method = TLSv1.2+
certificate = certs/server.pem
private_key = certs/server.key

[client:default]
method = TLSv1.2+
verify_certificate = yes
require_certificate = yes
ca_list = certs/ca.pem
";

/// A scratch directory with the test PKI in `certs/` and `tls.cfg`.
pub fn files(tag: &str) -> ScratchDir {
    let dir = ScratchDir::new(&format!("proxy-{tag}"));
    pki().write_to(&dir.path().join("certs")).expect("write the test PKI");
    std::fs::write(dir.path().join("tls.cfg"), TLS_CFG).unwrap();
    dir
}

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sipstls-proxy"))
}

/// `sipstls-proxy --check-config` on `config` written into `dir`: (success, stdout, stderr).
pub fn check_config(dir: &ScratchDir, config: &str) -> (bool, String, String) {
    let path = dir.path().join("proxy.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(bin()).arg("--check-config").arg("--config").arg(&path).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// A running `sipstls-proxy`.
pub struct Proxy {
    pub child: Child,
    pub dir: ScratchDir,
    pub log: PathBuf,
    /// Bound addresses by listener name (the metrics endpoint as "metrics").
    pub addrs: HashMap<String, SocketAddr>,
}

impl Proxy {
    /// Writes `config` (JSON logs are added) into `dir` and starts the proxy on it; waits
    /// (bounded) until it logs "ready", or panics with its log.
    pub fn start(dir: ScratchDir, config: &str) -> Proxy {
        let config = format!("{config}\n");
        assert!(!config.contains("log_format"), "the harness sets the log format");
        let config = if config.contains("[service]") {
            config.replace("[service]", "[service]\nlog_format = \"json\"")
        } else {
            format!("{config}\n[service]\nlog_format = \"json\"\n")
        };
        let path = dir.path().join("proxy.toml");
        std::fs::write(&path, config).unwrap();
        let log = dir.path().join("proxy.log");
        let child = Command::new(bin())
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("start sipstls-proxy");
        let mut p = Proxy { child, dir, log, addrs: HashMap::new() };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let events = p.events();
            if events.iter().any(|e| e["message"] == "ready") {
                for e in events.iter().filter(|e| e["message"] == "listening") {
                    let addr = e["address"].as_str().unwrap().parse().unwrap();
                    let name = e["listener"].as_str().or(e["kind"].as_str()).unwrap();
                    p.addrs.insert(name.to_string(), addr);
                }
                return p;
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("sipstls-proxy exited ({status}) before it was ready:\n{}", p.log());
            }
            assert!(Instant::now() < deadline, "sipstls-proxy not ready in 20 s:\n{}", p.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn addr(&self, name: &str) -> SocketAddr {
        *self.addrs.get(name).unwrap_or_else(|| panic!("no listener {name}: {:?}", self.addrs))
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The JSON log lines so far.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.log().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// Waits (bounded) for a log event that `pred` accepts.
    pub fn wait_event(&self, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            assert!(Instant::now() < deadline, "no log event {what}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: a signal to our own child, not yet reaped (its PID cannot be reused).
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET /metrics` from the metrics endpoint.
    pub fn metrics(&self) -> String {
        let mut s = TcpStream::connect(self.addr("metrics")).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        out
    }

    /// The value of one metric line (`name{labels}`), if present.
    pub fn metric(&self, series: &str) -> Option<u64> {
        self.metrics().lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal(libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// What a PROXY-v2 upstream saw of one connection.
#[derive(Debug, Clone)]
pub struct Seen {
    pub source: Option<SocketAddr>,
    pub authority: Option<String>,
}

/// A TCP upstream that reads a PROXY v2 header first (reported on the channel), then
/// echoes every read with `UP:` in front. At most `max` connections; a thread each.
pub fn upstream(max: usize) -> (SocketAddr, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(max) {
            let Ok(mut conn) = conn else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                conn.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n @ 1..) = conn.read(&mut buf) else { return };
                    got.extend_from_slice(&buf[..n]);
                    match ProxyHeader::parse(&got) {
                        Ok(Parsed::Complete { header, consumed }) => {
                            let source = header.addresses.map(|(s, _)| s);
                            let _ = tx.send(Seen { source, authority: header.authority });
                            got.drain(..consumed);
                            break;
                        }
                        Ok(Parsed::Incomplete { .. }) => continue,
                        Err(_) => return,
                    }
                }
                if !got.is_empty() && conn.write_all(&[b"UP:", &got[..]].concat()).is_err() {
                    return;
                }
                while let Ok(n @ 1..) = conn.read(&mut buf) {
                    if conn.write_all(&[b"UP:", &buf[..n]].concat()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}

pub fn rustls() -> Arc<dyn Backend> {
    sipstls::backend("rustls").unwrap()
}

/// A TLS client trusting `roots`, to `addr` with SNI `name`.
pub fn client_with(roots: Vec<Certificate>, addr: SocketAddr, name: &str) -> std::io::Result<TlsStream<TcpStream>> {
    let domain = rustls().client_domain(&DomainConfig::client(roots)).unwrap();
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(WAIT))?;
    let mut tls = TlsStream::connect(&*domain, name, tcp)?;
    tls.handshake()?;
    Ok(tls)
}

/// A TLS client of the test PKI.
pub fn client(addr: SocketAddr) -> std::io::Result<TlsStream<TcpStream>> {
    client_with(pki().roots(), addr, SERVER_NAME)
}

/// Writes `msg`, reads `want` bytes back.
pub fn round_trip<S: Read + Write>(s: &mut S, msg: &[u8], want: usize) -> std::io::Result<Vec<u8>> {
    s.write_all(msg)?;
    let mut got = vec![0u8; want];
    s.read_exact(&mut got)?;
    Ok(got)
}
