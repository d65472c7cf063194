//! The SIP server example in the confined model (a TLS manager and 4 worker processes) and
//! in the single-process model, for every backend of the build: OPTIONS, REGISTER shared
//! across workers, MESSAGE relayed over TLS to a next hop, keep-alive, and a worker killed
//! while its connection is open.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sipstls::{DomainConfig, TlsStream};
use sipstls_conformance::peers::{free_port, wait_for_port, ChildGuard, ScratchDir};
use sipstls_conformance::pki::{pki, SERVER_NAME};
use sipstls_examples::client::{self, ClientOptions};
use sipstls_examples::sip::{self, Frame, Message};

const WAIT: Duration = Duration::from_secs(15);

struct Server {
    _child: ChildGuard,
    addr: SocketAddr,
    log: PathBuf,
}

impl Drop for Server {
    /// An orderly stop first (SIGTERM: the server stops and reaps its workers), then the
    /// guard's SIGKILL as a backstop.
    fn drop(&mut self) {
        let pid = self._child.0.id() as i32;
        // SAFETY: signalling the server process this test started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self._child.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the server's log contains `needle`.
    fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let log = self.log();
            if log.contains(needle) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn worker_pids(&self) -> Vec<i32> {
        let log = self.wait_log("pids [");
        let list = log.split("pids [").nth(1).and_then(|s| s.split(']').next()).expect("pids in the log");
        list.split(',').map(|p| p.trim().parse().expect("pid")).collect()
    }
}

fn start(bin: &str, dir: &Path, tag: &str, args: &[&str]) -> Server {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = dir.join(format!("{tag}.log"));
    let child = Command::new(bin)
        .args(["--listen", &addr.to_string(), "--max-seconds", "120"])
        .arg("--cert")
        .arg(dir.join("server.pem"))
        .arg("--key")
        .arg(dir.join("server.key"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .expect("spawn");
    let child = ChildGuard(child);
    assert!(wait_for_port(addr, WAIT), "{bin} did not listen on {addr}");
    Server { _child: child, addr, log }
}

fn client_opts(dir: &Path, addr: SocketAddr, backend: &str) -> ClientOptions {
    let mut o = ClientOptions::parse(
        ["--connect", &addr.to_string(), "--name", SERVER_NAME, "--backend", backend, "--timeout", "10"]
            .iter()
            .map(|s| s.to_string())
            .chain(["--ca".into(), dir.join("ca.pem").to_string_lossy().into_owned()]),
    )
    .unwrap();
    o.count = 1;
    o
}

fn status(m: &Message) -> u16 {
    m.start_line.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

fn worker_of(m: &Message) -> String {
    m.header("x-worker").expect("X-Worker header").to_owned()
}

/// OPTIONS on fresh connections reach every worker; REGISTER made through one worker is
/// seen through another; MESSAGE is relayed over TLS to the next hop and its answer comes
/// back with our Via removed; a keep-alive ping gets its pong.
fn confined_sip_server(backend: &str) {
    let dir = ScratchDir::new("confined");
    pki().write_to(dir.path()).unwrap();
    let ca = dir.path().join("ca.pem");
    let next_hop = start(env!("CARGO_BIN_EXE_sip-responder"), dir.path(), "next-hop", &["--backend", backend]);
    let server = start(
        env!("CARGO_BIN_EXE_sip-server"),
        dir.path(),
        "server",
        &[
            "--backend",
            backend,
            "--model",
            "confined",
            "--workers",
            "4",
            "--ca",
            ca.to_str().unwrap(),
            "--next-hop",
            &next_hop.addr.to_string(),
            "--next-hop-name",
            SERVER_NAME,
        ],
    );
    assert_eq!(server.worker_pids().len(), 4);

    let mut workers = std::collections::BTreeSet::new();
    for _ in 0..8 {
        let mut o = client_opts(dir.path(), server.addr, backend);
        o.ping = true;
        let run = client::run(&o).unwrap();
        assert_eq!(status(&run.responses[0]), 200);
        workers.insert(worker_of(&run.responses[0]));
    }
    assert_eq!(workers.len(), 4, "round robin over 4 worker processes: {workers:?}");

    // REGISTER through one worker, then query through the others.
    let mut reg = client_opts(dir.path(), server.addr, backend);
    reg.method = "REGISTER".into();
    reg.to = Some("sip:alice@example.test".into());
    reg.ruri = Some("sip:example.test".into());
    reg.contact = Some("sip:alice@192.0.2.10:5061;transport=tls".into());
    let done = client::run(&reg).unwrap();
    assert_eq!(status(&done.responses[0]), 200);
    let registered_by = worker_of(&done.responses[0]);
    let mut seen_elsewhere = false;
    for _ in 0..4 {
        let mut query = reg.clone();
        query.contact = None;
        let r = client::run(&query).unwrap();
        let contact = r.responses[0].header("contact").unwrap_or_default().to_owned();
        assert!(contact.contains("sip:alice@192.0.2.10:5061"), "binding visible: {contact:?}");
        seen_elsewhere |= worker_of(&r.responses[0]) != registered_by;
    }
    assert!(seen_elsewhere, "a query answered by another worker process found the binding");

    // MESSAGE relayed to the next hop (which echoes the body) over TLS; 3 on one connection.
    let mut msg = client_opts(dir.path(), server.addr, backend);
    msg.method = "MESSAGE".into();
    msg.ruri = Some("sip:bob@example.test".into());
    msg.body = "relayed through the TLS manager".into();
    msg.count = 3;
    let r = client::run(&msg).unwrap();
    assert_eq!(r.responses.len(), 3);
    for resp in &r.responses {
        assert_eq!(status(resp), 200, "{resp:?}");
        assert_eq!(resp.body, b"relayed through the TLS manager");
        assert_eq!(resp.header_all("via").count(), 1, "our Via was removed: {resp:?}");
        assert!(resp.header("x-worker").is_none(), "answered by the next hop, not locally");
    }
    assert!(next_hop.log().contains("request: MESSAGE sip:bob@example.test"), "the next hop got it");
}

/// A worker process killed with SIGKILL: its connection ends with close_notify, the other
/// connections keep working, new ones go to the survivors, and the manager reports it.
fn killed_worker(backend: &str) {
    let dir = ScratchDir::new("confined-kill");
    pki().write_to(dir.path()).unwrap();
    let server = start(
        env!("CARGO_BIN_EXE_sip-server"),
        dir.path(),
        "server",
        &["--backend", backend, "--model", "confined", "--workers", "4"],
    );
    let pids = server.worker_pids();
    let b = sipstls::backend(backend).unwrap();
    let domain = b.client_domain(&DomainConfig::client(pki().roots())).unwrap();
    let mut conns = Vec::new();
    for i in 0..4 {
        let tcp = TcpStream::connect(server.addr).unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        let mut tls = TlsStream::connect(&*domain, SERVER_NAME, tcp).unwrap();
        let who = options(&mut tls, i);
        conns.push((tls, who));
    }
    let victim_tag = conns[0].1.clone();
    let victim_pid: i32 = victim_tag.split("pid=").nth(1).unwrap().parse().unwrap();
    assert!(pids.contains(&victim_pid));
    // SAFETY: signalling a worker process of the server this test started.
    assert_eq!(unsafe { libc::kill(victim_pid, libc::SIGKILL) }, 0);
    // Its connection: a clean close_notify, not a reset or a hang.
    let mut rest = Vec::new();
    let (victim, _) = &mut conns[0];
    assert_eq!(victim.read_to_end(&mut rest).expect("close_notify, not an error"), 0);
    // Every other connection still answers (the ones on the same worker, if any, excepted).
    for (i, (tls, who)) in conns.iter_mut().enumerate().skip(1) {
        if *who != victim_tag {
            assert_eq!(&options(tls, 10 + i), who);
        }
    }
    let log = server.wait_log(&format!("(pid {victim_pid}) lost"));
    assert!(log.contains(&format!("(pid {victim_pid}) lost; its 1 connection(s) closed")), "{log}");
    for i in 0..6 {
        let tcp = TcpStream::connect(server.addr).unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        let mut tls = TlsStream::connect(&*domain, SERVER_NAME, tcp).unwrap();
        assert_ne!(options(&mut tls, 20 + i), victim_tag, "no connection goes to the dead worker");
    }
}

/// Workers killed at random points under load: 4 worker processes, 4 client threads
/// making `SIPSTLS_FAULT_CONNS` (default 2,000) fresh TLS connections with one OPTIONS
/// each, and 3 workers SIGKILLed at random connection counts. Asserted: only connections
/// in flight on a killed worker fail (at most one per client thread per kill), and they end
/// cleanly (close_notify or EOF before the answer, never a handshake failure); every other
/// connection gets its 200; the survivor serves new connections; the server's descriptors
/// do not grow; the manager reports each lost worker.
fn workers_killed_under_load(backend: &str) {
    let conns: usize = std::env::var("SIPSTLS_FAULT_CONNS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    const THREADS: usize = 4;
    let dir = ScratchDir::new("confined-faults");
    pki().write_to(dir.path()).unwrap();
    let server = start(
        env!("CARGO_BIN_EXE_sip-server"),
        dir.path(),
        "server",
        &["--backend", backend, "--model", "confined", "--workers", "4"],
    );
    let pids = server.worker_pids();
    assert_eq!(pids.len(), 4);
    let server_pid = server._child.0.id();
    let fds = || std::fs::read_dir(format!("/proc/{server_pid}/fd")).map(|d| d.count()).unwrap_or(0);
    let fds_before = fd_targets(server_pid);
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    let mut x = seed;
    let mut kill_at: Vec<usize> = (0..3)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            conns / 20 + (x as usize) % (conns * 9 / 10)
        })
        .collect();
    kill_at.sort();
    println!("{backend}: {conns} connections, kills at {kill_at:?} (seed {seed})");
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let b = sipstls::backend(backend).unwrap();
    let domain = b.client_domain(&DomainConfig::client(pki().roots())).unwrap();
    let addr = server.addr;
    let results: Vec<(usize, Vec<String>)> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (next, domain) = (next.clone(), domain.clone());
                sc.spawn(move || {
                    let mut ok = 0;
                    let mut failed = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= conns {
                            return (ok, failed);
                        }
                        let tcp = TcpStream::connect(addr).expect("the manager must keep accepting");
                        tcp.set_read_timeout(Some(WAIT)).unwrap();
                        let mut tls = TlsStream::connect(&*domain, SERVER_NAME, tcp)
                            .unwrap_or_else(|e| panic!("connection {i}: handshake failed: {e}"));
                        let req = format!(
                            "OPTIONS sip:{SERVER_NAME} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1;branch=z9hG4bK-f{i}\r\n\
                             From: <sip:t@example.test>;tag=t\r\nTo: <sip:{SERVER_NAME}>\r\nCall-ID: fault-{i}\r\n\
                             CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                        );
                        let mut got = Vec::new();
                        let mut buf = [0u8; 4096];
                        let outcome = (|| {
                            tls.write_all(req.as_bytes()).map_err(|e| format!("write: {e}"))?;
                            loop {
                                if let Ok(Frame::Message(m, _)) = sip::parse(&got) {
                                    return if status(&m) == 200 {
                                        Ok(())
                                    } else {
                                        Err(format!("status {}", status(&m)))
                                    };
                                }
                                match tls.read(&mut buf) {
                                    Ok(0) => return Err("close_notify before the answer".to_string()),
                                    Ok(n) => got.extend_from_slice(&buf[..n]),
                                    Err(e) => return Err(format!("read: {e}")),
                                }
                            }
                        })();
                        match outcome {
                            Ok(()) => ok += 1,
                            Err(e) => failed.push(format!("connection {i}: {e}")),
                        }
                    }
                })
            })
            .collect();
        let mut killed = 0;
        while killed < kill_at.len() {
            if next.load(std::sync::atomic::Ordering::Relaxed) >= kill_at[killed] {
                // SAFETY: signalling a worker process of the server this test started.
                assert_eq!(unsafe { libc::kill(pids[killed], libc::SIGKILL) }, 0);
                killed += 1;
            } else if handles.iter().all(|h| h.is_finished()) {
                break;
            } else {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        assert_eq!(killed, 3, "the kills did not all happen during the load");
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok: usize = results.iter().map(|r| r.0).sum();
    let failed: Vec<&String> = results.iter().flat_map(|r| r.1.iter()).collect();
    println!("{backend}: {ok} answered, {} failed: {failed:?}", failed.len());
    assert_eq!(ok + failed.len(), conns);
    assert!(failed.len() <= 3 * THREADS, "more failures than connections in flight on the killed workers: {failed:?}");
    for f in &failed {
        assert!(f.contains("close_notify before the answer") || f.contains("read:") || f.contains("write:"), "{f}");
    }
    for pid in &pids[..3] {
        server.wait_log(&format!("(pid {pid}) lost"));
    }
    let log = server.log();
    for pid in &pids[..3] {
        assert!(log.contains(&format!("(pid {pid}) lost")), "worker {pid} not reported lost: {log}");
    }
    // The survivor serves.
    let survivor = format!("pid={}", pids[3]);
    for i in 0..10 {
        let tcp = TcpStream::connect(server.addr).unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        let mut tls = TlsStream::connect(&*domain, SERVER_NAME, tcp).unwrap();
        let who = options(&mut tls, 100 + i);
        assert!(who.contains(&survivor), "{who} is not the surviving worker {survivor}");
    }
    // Descriptors: 2,000 connections and 3 lost workers leave none behind (a leak of one
    // per connection or per failure would show as hundreds).
    let deadline = Instant::now() + WAIT;
    let mut now = fds();
    while now > fds_before.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        now = fds();
    }
    let after = fd_targets(server_pid);
    println!("{backend}: server descriptors before {fds_before:?}\nafter {after:?}");
    assert!(now <= fds_before.len(), "server descriptors grew: before {fds_before:?}, after {after:?}");
}

fn fd_targets(pid: u32) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| std::fs::read_link(e.path()).map(|p| p.display().to_string()).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn options(tls: &mut TlsStream<TcpStream>, seq: usize) -> String {
    let req = format!(
        "OPTIONS sip:{SERVER_NAME} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1;branch=z9hG4bK-k{seq}\r\nFrom: <sip:t@example.test>;tag=t\r\n\
         To: <sip:{SERVER_NAME}>\r\nCall-ID: kill-{seq}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    tls.write_all(req.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Ok(Frame::Message(m, _)) = sip::parse(&got) {
            assert_eq!(status(&m), 200);
            return worker_of(&m);
        }
        let n = tls.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the response");
        got.extend_from_slice(&buf[..n]);
    }
}

/// The same server in one process (TLS terminated per thread): OPTIONS, REGISTER, MESSAGE.
fn single_sip_server(backend: &str) {
    let dir = ScratchDir::new("single");
    pki().write_to(dir.path()).unwrap();
    let ca = dir.path().join("ca.pem");
    let next_hop = start(env!("CARGO_BIN_EXE_sip-responder"), dir.path(), "next-hop", &["--backend", backend]);
    let server = start(
        env!("CARGO_BIN_EXE_sip-server"),
        dir.path(),
        "server",
        &[
            "--backend",
            backend,
            "--model",
            "single",
            "--ca",
            ca.to_str().unwrap(),
            "--next-hop",
            &next_hop.addr.to_string(),
            "--next-hop-name",
            SERVER_NAME,
        ],
    );
    let r = client::run(&client_opts(dir.path(), server.addr, backend)).unwrap();
    assert!(worker_of(&r.responses[0]).starts_with("single"));
    let mut msg = client_opts(dir.path(), server.addr, backend);
    msg.method = "MESSAGE".into();
    msg.body = "direct".into();
    let r = client::run(&msg).unwrap();
    assert_eq!((status(&r.responses[0]), &r.responses[0].body[..]), (200, &b"direct"[..]));
}

/// The client binary prints the response and exits 0; a wrong name fails with a TLS error.
#[test]
fn sip_client_binary_against_the_confined_server() {
    let dir = ScratchDir::new("client-bin");
    pki().write_to(dir.path()).unwrap();
    let server = start(env!("CARGO_BIN_EXE_sip-server"), dir.path(), "server", &["--workers", "2"]);
    let run = |name: &str| {
        Command::new(env!("CARGO_BIN_EXE_sip-client"))
            .args(["--connect", &server.addr.to_string(), "--name", name, "--ping"])
            .arg("--ca")
            .arg(dir.path().join("ca.pem"))
            .output()
            .unwrap()
    };
    let ok = run(SERVER_NAME);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("SIP/2.0 200 OK\r\n"));
    let bad = run("nobody.example.test");
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("TLS:"), "{}", String::from_utf8_lossy(&bad.stderr));
}

/// CPU time (user + system) a process has used so far, from /proc.
fn process_cpu(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name: state is field 3; utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest.split_whitespace().skip(11).take(2).filter_map(|x| x.parse().ok()).collect();
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(f.iter().sum::<u64>() * 1000 / hz)
}

/// 200 hostile connections against the confined server (ClientHellos of about 64 KiB and over,
/// whole and fragmented into 1,000-byte records, 30,000 cipher suites, a record header and
/// nothing more, random bytes), then all closed: within 2 s the manager and its workers
/// use no more CPU (none spins on a connection that is gone), a normal client is still
/// served, and SIGTERM ends the server within its drain deadline.
fn hostile_load_leaves_server_idle(backend: &str) {
    use sipstls::ProtocolVersion;
    use sipstls_conformance::wire::{self, HelloSpec, HANDSHAKE};

    let dir = ScratchDir::new("hostile-load");
    pki().write_to(dir.path()).unwrap();
    let server = start(
        env!("CARGO_BIN_EXE_sip-server"),
        dir.path(),
        "server",
        &["--backend", backend, "--model", "confined", "--workers", "2"],
    );
    let manager = server._child.0.id() as i32;
    let pids: Vec<i32> = std::iter::once(manager).chain(server.worker_pids()).collect();
    let cpu = || pids.iter().map(|&p| process_cpu(p)).sum::<Duration>();

    let v = if backend == "mbedtls" { ProtocolVersion::Tls12 } else { ProtocolVersion::Tls13 };
    let sized = |n: usize| HelloSpec::new(v).with_total_size(n).message();
    let hostile: Vec<Vec<u8>> = vec![
        wire::records(HANDSHAKE, &sized(0xffff + 64), 1000),
        // Just under 64 KiB of message, over 64 KiB with its record headers: more than
        // rustls's acceptor buffers, less than its message limit.
        wire::records(HANDSHAKE, &sized(0xffff), 16 * 1024),
        wire::records(HANDSHAKE, &sized(65_520), 16 * 1024),
        wire::records(HANDSHAKE, &HelloSpec { filler_suites: 30_000, ..HelloSpec::new(v) }.message(), 16 * 1024),
        wire::records(HANDSHAKE, &sized(128 * 1024), 16 * 1024),
        vec![0x16, 0x03, 0x01, 0x40], // slowloris: a record header, never finished
        wire::random(9, 4096),
    ];
    let mut conns = Vec::new();
    for i in 0..200 {
        let mut s = TcpStream::connect_timeout(&server.addr, Duration::from_secs(5)).unwrap_or_else(|e| {
            panic!("{backend}: connection {i} not accepted ({e}): is the manager spinning?\n{}", server.log())
        });
        s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        // The server may refuse and close before everything is written.
        let _ = s.write_all(&hostile[i % hostile.len()]);
        conns.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    drop(conns);

    // Within 2 s of the last close the CPU time stops growing: over the following second
    // the whole process tree uses less than 100 ms.
    std::thread::sleep(Duration::from_secs(2));
    let before = cpu();
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu().saturating_sub(before);
    assert!(
        used < Duration::from_millis(100),
        "{backend}: the server used {used:?} of CPU in the second after every hostile client had gone (busy loop?)\n{}",
        server.log()
    );

    // A normal client is still served.
    let run = client::run(&client_opts(dir.path(), server.addr, backend)).expect("a normal client after the attack");
    assert_eq!(status(&run.responses[0]), 200);

    // SIGTERM: the manager closes, the workers are reaped, the process ends well within its
    // drain deadline (event loops 0.5 s, workers 2 s).
    // SAFETY: signalling the server process this test started.
    unsafe { libc::kill(manager, libc::SIGTERM) };
    let t0 = Instant::now();
    let mut child = server;
    let status = loop {
        if let Some(st) = child._child.0.try_wait().unwrap() {
            break Some(st);
        }
        if t0.elapsed() > Duration::from_secs(5) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = child.log();
    assert!(status.is_some(), "{backend}: SIGTERM did not end the server within 5 s\n{log}");
    assert!(log.contains("signalled, stopping"), "{backend}: {log}");
}

macro_rules! per_backend {
    ($($check:ident),*) => {
        #[cfg(feature = "rustls")]
        mod rustls { $( #[test] fn $check() { super::$check("rustls") } )* }
        #[cfg(feature = "openssl")]
        mod openssl { $( #[test] fn $check() { super::$check("openssl") } )* }
        #[cfg(feature = "mbedtls")]
        mod mbedtls { $( #[test] fn $check() { super::$check("mbedtls") } )* }
        #[cfg(feature = "wolfssl")]
        mod wolfssl { $( #[test] fn $check() { super::$check("wolfssl") } )* }
        #[cfg(feature = "boring")]
        mod boring { $( #[test] fn $check() { super::$check("boring") } )* }
    };
}

per_backend!(
    confined_sip_server,
    killed_worker,
    workers_killed_under_load,
    single_sip_server,
    hostile_load_leaves_server_idle
);
