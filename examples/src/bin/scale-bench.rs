//! `scale-bench`: the confined model (`TlsManager` with worker threads) at SIP scale, on
//! loopback, with the TLS clients in a separate process (this binary again, `--client`):
//!
//! * `idle N`: N TLS connections opened and left idle; reports the server process's
//!   resident memory and heap (glibc `mallinfo2`) per connection, the kernel's TCP buffer
//!   pages, and checks that 100 of them still answer at the end;
//! * `storm N`: N fresh full handshakes, as fast as the server accepts them (each with one
//!   4-byte echo through a worker, then closed); handshakes per second and failures;
//! * `storm-resume N`: the same with resumption (TLS 1.3 tickets; TLS 1.2 for a backend
//!   without TLS 1.3).
//!
//! ```text
//! cargo run --release -p sipstls-examples --bin scale-bench -- idle 100000 --backend rustls
//! cargo run --release -p sipstls-examples --bin scale-bench -- storm 100000 --backend rustls
//! cargo run --release -p sipstls-examples --bin scale-bench -- storm-resume 100000 --backend rustls
//! ```
//!
//! The server listens on 127.0.0.1..127.0.0.8 (one port) so that the clients' ephemeral
//! ports (about 28,000 per destination) suffice; the open-file limit is raised to the hard
//! limit (run as root, or raise it first, for 100k: each connection takes three descriptors
//! in the server process: TCP socket and both socketpair ends). Options: `--backend NAME`
//! (default rustls), `--client-threads N` (default 2), `--workers N` (default 2).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sipstls::{Capabilities, DomainConfig, DomainTable, Identity, Listener, ProtocolVersion, Resumption, TlsStream};
use sipstls_manager::{ListenerConfig, ManagerConfig, TlsManager, Worker};

const ADDRS: usize = 8;
const LIVE: usize = 100;
const NAME: &str = "sip.example.test";

fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit on a local struct; no other preconditions.
    unsafe {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        let want = 1_048_576u64;
        let mut n = libc::rlimit { rlim_cur: want, rlim_max: want.max(r.rlim_max) };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &n) != 0 {
            n = libc::rlimit { rlim_cur: r.rlim_max, rlim_max: r.rlim_max };
            libc::setrlimit(libc::RLIMIT_NOFILE, &n);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur
    }
}

fn status_kb(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn heap() -> u64 {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    let mi = unsafe { libc::mallinfo2() };
    (mi.uordblks + mi.hblkhd) as u64
}

/// TCP buffer pages the kernel holds (all sockets), from /proc/net/sockstat.
fn tcp_mem_pages() -> u64 {
    let s = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| l.split_whitespace().skip_while(|w| *w != "mem").nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--client") {
        return client_main(&args[1..]);
    }
    let usage = "usage: scale-bench idle|storm|storm-resume N [--backend NAME] [--client-threads N] [--workers N]";
    let mode = args.first().cloned().unwrap_or_else(|| panic!("{usage}"));
    let n: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{usage}"));
    let opt = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let backend_name = opt("--backend").unwrap_or_else(|| "rustls".into());
    let client_threads: usize = opt("--client-threads").and_then(|v| v.parse().ok()).unwrap_or(2);
    let workers: usize = opt("--workers").and_then(|v| v.parse().ok()).unwrap_or(2);
    assert!(matches!(mode.as_str(), "idle" | "storm" | "storm-resume"), "{usage}");
    let nofile = raise_nofile();
    let backend = sipstls::backend(&backend_name).unwrap_or_else(|| panic!("backend {backend_name} not in this build"));
    let v = if backend.capabilities().contains(Capabilities::TLS13) {
        ProtocolVersion::Tls13
    } else {
        ProtocolVersion::Tls12
    };

    // Server identity (ECDSA P-256), made at run time; the client process trusts it.
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec![NAME.into()]).expect("params").self_signed(&key).expect("cert");
    let dir = std::env::temp_dir().join(format!("scale-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, cert.pem()).unwrap();
    let id = Identity::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).expect("identity");
    let mut table = DomainTable::new(backend.clone());
    table.add_server(Listener::Any, None, &DomainConfig::server(id).with_version(v)).expect("server domain");

    let cfg =
        ManagerConfig { max_connections: n + 10_000, handshake_timeout: Duration::from_secs(30), ..Default::default() };
    let manager = TlsManager::new(Arc::new(table), cfg).expect("manager");
    let held = Arc::new(Mutex::new(Vec::new()));
    let echoed = Arc::new(AtomicU64::new(0));
    for _ in 0..workers {
        let (m, w) = sipstls_manager::channel().expect("channel");
        manager.add_worker(m).expect("add worker");
        let w = Worker::new(w).expect("worker");
        let (held, echoed, idle) = (held.clone(), echoed.clone(), mode == "idle");
        std::thread::spawn(move || {
            let mut count = 0usize;
            while let Ok(conn) = w.accept() {
                count += 1;
                if idle && count > LIVE {
                    held.lock().unwrap().push(conn);
                    continue;
                }
                // Echo 4 bytes (the live connections of the idle run: until EOF).
                let echoed = echoed.clone();
                let once = !idle;
                let job = move || {
                    conn.stream().set_read_timeout(Some(Duration::from_secs(if once { 10 } else { 3600 }))).ok();
                    loop {
                        let mut b = [0u8; 4];
                        if (&conn).read_exact(&mut b).is_err() || (&conn).write_all(&b).is_err() {
                            break;
                        }
                        echoed.fetch_add(1, Ordering::Relaxed);
                        if once {
                            break;
                        }
                    }
                };
                if once {
                    job();
                } else {
                    std::thread::spawn(job);
                }
            }
        });
    }
    let mut port = 0;
    for i in 1..=ADDRS {
        let mut addr: SocketAddr = format!("127.0.0.{i}:{port}").parse().unwrap();
        addr = manager.listen(ListenerConfig::workers(addr)).expect("listen");
        port = addr.port();
    }
    std::thread::sleep(Duration::from_millis(200));
    let (rss0, heap0, tcp0, fds0) = (status_kb("VmRSS:"), heap(), tcp_mem_pages(), open_fds());
    println!(
        "scale-bench {mode} {n}: backend {backend_name} ({}), {v}, ECDSA P-256, confined model ({workers} worker threads, \
         {} manager threads), {client_threads} client threads in another process, nofile limit {nofile}",
        backend.info().library,
        ManagerConfig::default().threads
    );
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--client", &mode, &n.to_string(), &port.to_string(), &client_threads.to_string(), &v.to_string()])
        .arg(&ca_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("client process");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let t0 = Instant::now();
    let report = lines.next().and_then(Result::ok).unwrap_or_default();
    let secs = t0.elapsed().as_secs_f64();
    let st = manager.stats();
    println!("clients: {report}");
    if mode == "idle" {
        let (rss1, heap1, tcp1, fds1) = (status_kb("VmRSS:"), heap(), tcp_mem_pages(), open_fds());
        let open = st.active;
        println!(
            "idle: {open} connections open in the manager, {} held by workers (+{LIVE} live); handshakes ok {}, failed {}",
            held.lock().unwrap().len(),
            st.handshakes_ok,
            st.handshakes_failed
        );
        let per = |d: u64| d as f64 / open.max(1) as f64;
        println!(
            "server process: RSS {:.1} MB -> {:.1} MB = {:.0} MB for {open} connections = {:.2} KB per connection",
            rss0 as f64 / 1024.0,
            rss1 as f64 / 1024.0,
            (rss1 - rss0) as f64 / 1024.0,
            per((rss1 - rss0) * 1024) / 1000.0
        );
        println!(
            "server heap (mallinfo2): +{:.0} MB = {:.2} KB per connection; descriptors +{} ({:.1} per connection)",
            (heap1 - heap0) as f64 / 1e6,
            per(heap1 - heap0) / 1000.0,
            fds1 - fds0,
            (fds1 - fds0) as f64 / open.max(1) as f64
        );
        println!(
            "kernel TCP buffers (all sockets, both ends): {} -> {} pages ({:.1} MB)",
            tcp0,
            tcp1,
            (tcp1.saturating_sub(tcp0) * 4096) as f64 / 1e6
        );
        println!("time to open them: {secs:.1} s ({:.0} handshakes/s)", open as f64 / secs);
        // The client checks the live connections, then exits.
        let _ = child.stdin.take().unwrap().write_all(b"check\n");
        let check = lines.next().and_then(Result::ok).unwrap_or_default();
        println!("clients: {check}");
    } else {
        println!(
            "{mode}: {} handshakes ok, {} failed in the server; {:.2} s; {:.0} handshakes/s; {} echoes",
            st.handshakes_ok,
            st.handshakes_failed,
            secs,
            st.handshakes_ok as f64 / secs,
            echoed.load(Ordering::Relaxed)
        );
        drop(child.stdin.take());
    }
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(60);
    while manager.stats().active > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    held.lock().unwrap().clear();
    let st = manager.stats();
    println!("after the clients left: {} active, closed by reason {:?}", st.active, st.closed);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The client process: `--client MODE N PORT THREADS VERSION CA`.
fn client_main(a: &[String]) {
    raise_nofile();
    let (mode, n, port, threads) =
        (a[0].clone(), a[1].parse::<usize>().unwrap(), a[2].parse::<u16>().unwrap(), a[3].parse::<usize>().unwrap());
    let v = if a[4] == ProtocolVersion::Tls13.to_string() { ProtocolVersion::Tls13 } else { ProtocolVersion::Tls12 };
    let ca = sipstls::Certificate::all_from_pem(&std::fs::read(&a[5]).unwrap()).unwrap();
    let backend = sipstls::default_backend();
    let resume = mode == "storm-resume";
    let ccfg = DomainConfig::client(ca).with_version(v).with_resumption(if resume {
        Resumption::default()
    } else {
        Resumption::DISABLED
    });
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let resumed = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let addr = move |i: usize| -> SocketAddr { format!("127.0.0.{}:{port}", 1 + i % ADDRS).parse().unwrap() };
    let t0 = Instant::now();
    let mut live = Vec::new();
    if mode == "idle" {
        // The live connections first, one at a time, so the workers see them first.
        let d = backend.client_domain(&ccfg).unwrap();
        for i in 0..LIVE.min(n) {
            let tcp = TcpStream::connect(addr(i)).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            live.push(TlsStream::connect(&*d, NAME, tcp).expect("live connection"));
        }
        next.store(LIVE.min(n), Ordering::Relaxed);
    }
    let idle_socks = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (next, failures, resumed, first_error, idle_socks, backend, ccfg, mode) = (
                next.clone(),
                failures.clone(),
                resumed.clone(),
                first_error.clone(),
                idle_socks.clone(),
                backend.clone(),
                ccfg.clone(),
                mode.clone(),
            );
            std::thread::spawn(move || {
                let d = backend.client_domain(&ccfg).unwrap();
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let r = (|| -> std::io::Result<Option<TcpStream>> {
                        let tcp = TcpStream::connect(addr(i))?;
                        tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
                        let keep = tcp.try_clone()?;
                        let mut tls = TlsStream::connect(&*d, NAME, tcp)?;
                        if mode == "idle" {
                            // Keep the TCP socket; the TLS session stays in the server.
                            return Ok(Some(keep));
                        }
                        tls.write_all(b"ping")?;
                        let mut b = [0u8; 4];
                        tls.read_exact(&mut b)?;
                        if tls.info().is_some_and(|i| i.resumed) {
                            resumed.fetch_add(1, Ordering::Relaxed);
                        }
                        let _ = tls.shutdown();
                        // Reset instead of TIME_WAIT: 100k closes in seconds would use up
                        // the ports.
                        let l = libc::linger { l_onoff: 1, l_linger: 0 };
                        use std::os::fd::AsRawFd;
                        // SAFETY: setsockopt on an open socket with a valid linger struct.
                        unsafe {
                            libc::setsockopt(
                                keep.as_raw_fd(),
                                libc::SOL_SOCKET,
                                libc::SO_LINGER,
                                &l as *const libc::linger as *const libc::c_void,
                                std::mem::size_of::<libc::linger>() as libc::socklen_t,
                            )
                        };
                        Ok(None)
                    })();
                    match r {
                        Ok(Some(s)) => mine.push(s),
                        Ok(None) => {}
                        Err(e) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            first_error.lock().unwrap().get_or_insert_with(|| format!("connection {i}: {e}"));
                        }
                    }
                }
                idle_socks.lock().unwrap().extend(mine);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{n} connections in {secs:.2} s ({:.0}/s), {} failures{}, {} resumed (client process RSS {} MB)",
        n as f64 / secs,
        failures.load(Ordering::Relaxed),
        first_error.lock().unwrap().as_ref().map(|e| format!(" (first: {e})")).unwrap_or_default(),
        resumed.load(Ordering::Relaxed),
        status_kb("VmRSS:") / 1024
    );
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    if line.trim() == "check" {
        let mut ok = 0;
        for t in live.iter_mut() {
            let mut b = [0u8; 4];
            if t.write_all(b"live").is_ok() && t.read_exact(&mut b).is_ok() && &b == b"live" {
                ok += 1;
            }
        }
        println!("{ok} of {} live connections answered after the idle period", live.len());
        std::io::stdout().flush().unwrap();
    }
}
