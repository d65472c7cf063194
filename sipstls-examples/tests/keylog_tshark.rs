//! The key log, proven with Wireshark's own decoder: for every backend of the build that
//! claims `KEY_LOG` and every version it supports, a SIP OPTIONS request goes over TLS on
//! 127.0.0.1 while `dumpcap` captures the port. Two connections per capture: the first
//! with the server's key log (a `KeyLogFile`), the second with the client's. Then
//! `tshark` reads the capture
//!
//! - with the server's key log: the first request's Call-ID is decrypted, the second's not;
//! - with the client's key log: the second's, not the first's;
//! - without a key log: no SIP at all (the capture holds the TLS records, encrypted).
//!
//! tshark is a hard requirement: a missing tshark fails the test, unless the environment
//! variable `SIPSTLS_TSHARK_UNAVAILABLE` carries the reason it could not be installed
//! (`scripts/test.sh` sets it when installing the package fails); the test then prints and
//! asserts that reason instead. Capturing on `lo` needs root (or dumpcap's capabilities).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sipstls::{Capabilities, DomainConfig, KeyLogFile, KeyLogSink, ProtocolVersion, TlsStream};
use sipstls_conformance::peers::{free_port, ChildGuard, ScratchDir};
use sipstls_conformance::pki::{pki, SERVER_NAME};

const UNAVAILABLE: &str = "SIPSTLS_TSHARK_UNAVAILABLE";

/// The size of a pcap file header (a file of no packets).
const PCAP_HEADER: u64 = 24;

/// `None` when tshark and dumpcap can run; otherwise the documented reason they cannot
/// (from the environment). A missing tool without a reason panics.
fn tools_unavailable() -> Option<String> {
    if let Ok(reason) = std::env::var(UNAVAILABLE) {
        return Some(reason);
    }
    for tool in ["tshark", "dumpcap"] {
        let out = Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
        match out {
            Ok(s) if s.success() => {}
            other => panic!(
                "{tool} is required for this test (package `tshark`) and could not run ({other:?}); set \
                 {UNAVAILABLE} to the reason when it cannot be installed"
            ),
        }
    }
    None
}

/// A running dumpcap, stopped (SIGINT, then reaped) by its PID.
struct Capture {
    child: ChildGuard,
    file: PathBuf,
}

impl Capture {
    /// Starts capturing `tcp port <port>` on `lo` into `file`; returns once a probe
    /// datagram has reached the file (bounded wait). dumpcap's "Capturing on" comes before
    /// the kernel filter is in place, and libpcap drops what arrived until then.
    fn start(port: u16, file: &Path) -> Capture {
        let probe_port = free_port();
        let mut child = ChildGuard(
            Command::new("dumpcap")
                .args(["-i", "lo", "-f", &format!("tcp port {port} or udp port {probe_port}"), "-P", "-w"])
                .arg(file)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn dumpcap"),
        );
        let stderr = child.0.stderr.take().expect("stderr piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("Capturing on") => break,
                Ok(line) => seen.push(line),
                Err(_) => panic!("dumpcap did not start capturing on lo: {seen:?}"),
            }
        }
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("probe socket");
        let size = || std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        while size() <= PCAP_HEADER {
            assert!(Instant::now() < deadline, "dumpcap captured no probe datagram on lo in 20 s");
            let _ = udp.send_to(b"sipstls capture probe", ("127.0.0.1", probe_port));
            std::thread::sleep(Duration::from_millis(100));
        }
        Capture { child, file: file.to_path_buf() }
    }

    /// Stops dumpcap by its PID (SIGINT: it finishes the file) and waits for it (bounded).
    fn stop(mut self) -> PathBuf {
        // libpcap hands packets over in blocks (after a timeout), and dumpcap may exit on
        // SIGINT without the pending block: wait until the file holds packets and has not
        // grown for a second (bounded), then stop it.
        let size = || std::fs::metadata(&self.file).map(|m| m.len()).unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut last, mut stable_since) = (size(), Instant::now());
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            let now = size();
            if now != last {
                (last, stable_since) = (now, Instant::now());
            } else if now > PCAP_HEADER && stable_since.elapsed() >= Duration::from_secs(1) {
                break;
            }
        }
        assert!(last > PCAP_HEADER, "dumpcap wrote no packets to {} in 20 s", self.file.display());
        let pid = self.child.0.id() as libc::pid_t;
        // SAFETY: kill(2) on the PID of our own child, which has not been reaped yet (the
        // guard reaps it), so the PID cannot belong to another process.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.child.0.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                other => panic!("dumpcap did not stop after SIGINT: {other:?}"),
            }
        }
        self.file.clone()
    }
}

/// What tshark decodes as SIP in `pcap` when told that `port` carries TLS and TLS on it
/// carries SIP: one line per SIP message, `<Call-ID>\t<request line or status line>`.
fn tshark_sip(pcap: &Path, port: u16, keylog: Option<&Path>) -> String {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(pcap);
    cmd.args(["-d", &format!("tcp.port=={port},tls"), "-d", &format!("tls.port=={port},sip")]);
    // An explicit empty key log file name where none is wanted, so a user preference
    // cannot slip one in.
    let kl = keylog.map(|p| p.display().to_string()).unwrap_or_default();
    cmd.args(["-o", &format!("tls.keylog_file:{kl}")]);
    cmd.args(["-Y", "sip", "-T", "fields", "-e", "sip.Call-ID", "-e", "sip.Request-Line", "-e", "sip.Status-Line"]);
    let out = cmd.output().expect("run tshark");
    assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The number of ClientHello messages tshark finds in `pcap` (no key log needed).
fn client_hellos(pcap: &Path, port: u16) -> usize {
    let out = Command::new("tshark")
        .arg("-n")
        .arg("-r")
        .arg(pcap)
        .args(["-d", &format!("tcp.port=={port},tls"), "-Y", "tls.handshake.type == 1", "-T", "fields"])
        .args(["-e", "frame.number"])
        .output()
        .expect("run tshark");
    assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()).count()
}

/// One SIP OPTIONS request with Call-ID `call_id` from a client of `backend` to a server
/// of `backend` on `port`, version `v`; `server_log`/`client_log` get the key logs.
fn sip_exchange(
    backend: &str,
    v: ProtocolVersion,
    listener: &TcpListener,
    call_id: &str,
    server_log: Option<KeyLogSink>,
    client_log: Option<KeyLogSink>,
) {
    let b = sipstls::backend(backend).expect("backend in the build");
    let mut scfg = DomainConfig::server(pki().server_ecdsa.identity()).with_version(v);
    scfg.key_log = server_log;
    let mut ccfg = DomainConfig::client(pki().roots()).with_version(v);
    ccfg.key_log = client_log;
    let sd = b.server_domain(&scfg).expect("server domain");
    let cd = b.client_domain(&ccfg).expect("client domain");
    let addr = listener.local_addr().unwrap();
    let request = format!(
        "OPTIONS sip:{SERVER_NAME} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=kl\r\nTo: <sip:{SERVER_NAME}>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    std::thread::scope(|scope| {
        let server = scope.spawn(|| {
            let (tcp, _) = listener.accept().expect("accept");
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut tls = TlsStream::accept(&*sd, tcp).expect("server handshake");
            let got = read_until(&mut tls, b"\r\n\r\n");
            let text = String::from_utf8_lossy(&got).into_owned();
            let cid = text.lines().find_map(|l| l.strip_prefix("Call-ID: ")).unwrap_or_default().to_owned();
            let resp = format!(
                "SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK-{cid}\r\nFrom: <sip:probe@127.0.0.1>;tag=kl\r\n\
                 To: <sip:{SERVER_NAME}>;tag=srv\r\nCall-ID: {cid}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            );
            tls.write_all(resp.as_bytes()).expect("server write");
            let _ = tls.flush();
            text
        });
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut tls = TlsStream::connect(&*cd, SERVER_NAME, tcp).expect("client handshake");
        tls.write_all(request.as_bytes()).expect("client write");
        let resp = read_until(&mut tls, b"\r\n\r\n");
        assert!(resp.starts_with(b"SIP/2.0 200 OK\r\n"), "{backend} {v}: {:?}", String::from_utf8_lossy(&resp));
        let seen = server.join().expect("server thread");
        assert!(seen.starts_with("OPTIONS sip:"), "{backend} {v}: server got {seen:?}");
    });
}

fn read_until(tls: &mut impl Read, needle: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(needle.len()).any(|w| w == needle) {
        assert!(got.len() < 1 << 16, "no end of message in 64 KiB");
        let n = tls.read(&mut buf).expect("read");
        assert!(n > 0, "closed early; got {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    got
}

fn decrypts(backend: &str, v: ProtocolVersion, dir: &Path) {
    let port = free_port();
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).expect("bind");
    let tag = format!("{backend}-{}", if v == ProtocolVersion::Tls13 { "13" } else { "12" });
    let (server_kl, client_kl) = (dir.join(format!("{tag}-server.keys")), dir.join(format!("{tag}-client.keys")));
    let capture = Capture::start(port, &dir.join(format!("{tag}.pcap")));
    let (cid_server, cid_client) =
        (format!("kl-{tag}-server-{}", std::process::id()), format!("kl-{tag}-client-{}", std::process::id()));
    let sink = |p: &Path| KeyLogSink::new(KeyLogFile::open(p).expect("key log file"));
    sip_exchange(backend, v, &listener, &cid_server, Some(sink(&server_kl)), None);
    sip_exchange(backend, v, &listener, &cid_client, None, Some(sink(&client_kl)));
    let pcap = capture.stop();
    // Both sessions are in the capture from their first message on (else the checks
    // below would prove nothing).
    assert_eq!(client_hellos(&pcap, port), 2, "{tag}: the capture must hold both handshakes");

    for (kl, theirs, other) in [(&server_kl, &cid_server, &cid_client), (&client_kl, &cid_client, &cid_server)] {
        let text = std::fs::read_to_string(kl).expect("key log written");
        assert!(!text.is_empty(), "{tag}: {} is empty", kl.display());
        let out = tshark_sip(&pcap, port, Some(kl));
        let req = out.lines().find(|l| l.starts_with(theirs.as_str()) && l.contains("OPTIONS sip:"));
        assert!(req.is_some(), "{tag}: tshark with {} did not decrypt the request {theirs}:\n{out}", kl.display());
        let resp = out.lines().find(|l| l.starts_with(theirs.as_str()) && l.contains("SIP/2.0 200 OK"));
        assert!(resp.is_some(), "{tag}: tshark with {} did not decrypt the response {theirs}:\n{out}", kl.display());
        assert!(!out.contains(other.as_str()), "{tag}: {} decrypted the other session too:\n{out}", kl.display());
    }
    let plain = tshark_sip(&pcap, port, None);
    assert!(plain.trim().is_empty(), "{tag}: without a key log tshark still found SIP:\n{plain}");
    let raw = std::fs::read(&pcap).expect("capture file");
    for cid in [&cid_server, &cid_client] {
        assert!(
            !raw.windows(cid.len()).any(|w| w == cid.as_bytes()),
            "{tag}: the Call-ID {cid} is on the wire in clear"
        );
    }
    eprintln!("{tag}: tshark decrypted each session with its own key log only");
}

#[test]
fn tshark_decrypts_sip_with_the_key_log() {
    if let Some(reason) = tools_unavailable() {
        eprintln!("tshark unavailable, test not run: {reason}");
        assert!(!reason.trim().is_empty(), "{UNAVAILABLE} is set but gives no reason");
        return;
    }
    let dir = ScratchDir::new("keylog-tshark");
    let mut covered = 0;
    for backend in sipstls::backend_names() {
        let b = sipstls::backend(backend).unwrap();
        let caps = b.capabilities();
        if !caps.contains(Capabilities::KEY_LOG) {
            // Not claimed: the key log must be refused (the conformance suite checks the
            // same); nothing to decrypt.
            let cfg = DomainConfig::server(pki().server_ecdsa.identity())
                .with_key_log(KeyLogSink::new(KeyLogFile::open(dir.path().join("unused.keys")).unwrap()));
            assert!(
                matches!(
                    b.server_domain(&cfg),
                    Err(sipstls::Error::Unsupported { capability: Capabilities::KEY_LOG, .. })
                ),
                "{backend}: KEY_LOG not claimed but not refused"
            );
            continue;
        }
        for v in [ProtocolVersion::Tls12, ProtocolVersion::Tls13] {
            if caps.contains(v.capability()) {
                decrypts(backend, v, dir.path());
                covered += 1;
            }
        }
    }
    assert!(covered > 0, "no backend of this build claims KEY_LOG: nothing was proven");
}
