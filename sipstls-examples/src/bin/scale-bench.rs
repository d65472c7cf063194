//! `scale-bench`: the confined model (`TlsManager` with worker threads) at SIP scale, on
//! loopback, with the TLS clients in separate processes (this binary again, `--client`):
//!
//! * `idle N`: N TLS connections opened and left idle; reports the server processes'
//!   resident memory and heap (glibc `mallinfo2`) per connection, the kernel's TCP buffer
//!   pages, and checks that about 100 of them still answer at the end;
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
//! Every server listens on 127.0.0.1..127.0.0.8 (one port each) so that the clients'
//! ephemeral ports (about 28,000 per destination) suffice. Each idle connection takes three
//! descriptors in its server process (TCP socket and both socketpair ends) and one in its
//! client process; the open-file limit is raised to the hard limit, and where that is too
//! low for N (this sandbox: 20,000, without the capability to raise it), the idle run
//! spreads the connections over several server processes (`--shards`, each a complete
//! `TlsManager` with its own workers, as a server would run one per listener or per
//! `SO_REUSEPORT` group) and client processes (`--clients`); the figures are the sums.
//! Options: `--backend NAME` (default rustls), `--client-threads N` (default 2),
//! `--workers N` (default 2), `--shards N`, `--clients N` (default: as few as the limit
//! allows).

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

/// What one server process runs: a `TlsManager` listening on 127.0.0.1..=127.0.0.8 (one
/// port), with worker threads that echo (storms, and the first connections of an idle run)
/// or hold the plaintext connections.
struct Server {
    manager: TlsManager,
    held: Arc<Mutex<Vec<sipstls_manager::Connection>>>,
    echoed: Arc<AtomicU64>,
    port: u16,
}

fn start_server(
    backend: &Arc<dyn sipstls::Backend>,
    id: Identity,
    v: ProtocolVersion,
    capacity: usize,
    workers: usize,
    idle: bool,
) -> Server {
    let mut table = DomainTable::new(backend.clone());
    table.add_server(Listener::Any, None, &DomainConfig::server(id).with_version(v)).expect("server domain");
    let cfg = ManagerConfig::default()
        .with_max_connections(capacity + 10_000)
        .with_handshake_timeout(Duration::from_secs(30));
    let manager = TlsManager::new(Arc::new(table), cfg).expect("manager");
    let held = Arc::new(Mutex::new(Vec::new()));
    let echoed = Arc::new(AtomicU64::new(0));
    for _ in 0..workers {
        let (m, w) = sipstls_manager::channel().expect("channel");
        manager.add_worker(m).expect("add worker");
        let w = Worker::new(w).expect("worker");
        let (held, echoed) = (held.clone(), echoed.clone());
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
    Server { manager, held, echoed, port }
}

impl Server {
    /// Waits (bounded) until the manager has no connection left, then drops the held ones.
    fn wind_down(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.manager.stats().active > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        self.held.lock().unwrap().clear();
        let st = self.manager.stats();
        format!("{} active, closed by reason {:?}", st.active, st.closed)
    }
}

fn protocol_version(backend: &Arc<dyn sipstls::Backend>) -> ProtocolVersion {
    if backend.capabilities().contains(Capabilities::TLS13) {
        ProtocolVersion::Tls13
    } else {
        ProtocolVersion::Tls12
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--client") => return client_main(&args[1..]),
        Some("--shard") => return shard_main(&args[1..]),
        _ => {}
    }
    let usage = "usage: scale-bench idle|storm|storm-resume N [--backend NAME] [--client-threads N] [--workers N] \
                 [--shards N] [--clients N]";
    let mode = args.first().cloned().unwrap_or_else(|| panic!("{usage}"));
    let n: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{usage}"));
    let opt = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let num = |name: &str| opt(name).map(|v| v.parse::<usize>().unwrap_or_else(|_| panic!("{name}: {usage}")));
    let backend_name = opt("--backend").unwrap_or_else(|| "rustls".into());
    let client_threads = num("--client-threads").unwrap_or(2);
    let workers = num("--workers").unwrap_or(2);
    assert!(matches!(mode.as_str(), "idle" | "storm" | "storm-resume"), "{usage}");
    let nofile = raise_nofile();
    let backend = sipstls::backend(&backend_name).unwrap_or_else(|| panic!("backend {backend_name} not in this build"));
    let v = protocol_version(&backend);

    // Server identity (ECDSA P-256), made at run time; the client processes trust it.
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec![NAME.into()]).expect("params").self_signed(&key).expect("cert");
    let dir = std::env::temp_dir().join(format!("scale-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, cert.pem()).unwrap();
    let key_path = dir.join("key.pem");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&key_path).unwrap();
        f.write_all(key.serialize_pem().as_bytes()).unwrap();
    }
    let header = |servers: &str| {
        format!(
            "scale-bench {mode} {n}: backend {backend_name} ({}), {v}, ECDSA P-256, confined model ({servers}, \
             {workers} worker threads and {} manager threads each), {client_threads} client threads per client \
             process, nofile limit {nofile} per process",
            backend.info().library,
            ManagerConfig::default().threads
        )
    };
    if mode == "idle" {
        // Each connection takes 3 descriptors in its server process (TCP socket, both
        // socketpair ends) and 1 in its client process: split the work so that every
        // process stays under its descriptor limit.
        let per_shard = ((nofile as usize).saturating_sub(200) / 3).max(1);
        let shards = num("--shards").unwrap_or(n.div_ceil(per_shard)).max(1);
        let per_client = (nofile as usize).saturating_sub(200).max(1);
        let clients = num("--clients").unwrap_or(n.div_ceil(per_client)).max(1);
        println!("{}", header(&format!("{shards} server process(es), {clients} client process(es)")));
        idle_run(n, &backend_name, v, workers, shards, clients, client_threads, &dir);
    } else {
        let id = Identity::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).expect("identity");
        let server = start_server(&backend, id, v, n, workers, false);
        println!("{}", header("1 server process"));
        storm_run(&server, &mode, n, v, client_threads, &ca_path);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A child process of this binary that speaks in lines on stdin/stdout.
struct Child {
    proc: std::process::Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    what: String,
}

impl Child {
    fn spawn(what: String, args: &[String]) -> Child {
        let mut proc = Command::new(std::env::current_exe().unwrap())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let lines = BufReader::new(proc.stdout.take().unwrap()).lines();
        Child { proc, lines, what }
    }

    fn say(&mut self, line: &str) {
        let stdin = self.proc.stdin.as_mut().unwrap();
        let _ = writeln!(stdin, "{line}").and_then(|()| stdin.flush());
    }

    /// The next line, which must start with `tag`; its words after the tag.
    fn expect(&mut self, tag: &str) -> Vec<String> {
        let line = self.lines.next().and_then(Result::ok).unwrap_or_default();
        let mut words = line.split_whitespace().map(String::from);
        assert_eq!(words.next().as_deref(), Some(tag), "{}: expected '{tag} ...', got '{line}'", self.what);
        words.collect()
    }

    /// Closes stdin (the child's cue to finish) and reaps the process.
    fn finish(mut self) {
        drop(self.proc.stdin.take());
        let _ = self.proc.wait();
    }
}

#[allow(clippy::too_many_arguments)]
fn idle_run(
    n: usize,
    backend: &str,
    v: ProtocolVersion,
    workers: usize,
    shards: usize,
    clients: usize,
    client_threads: usize,
    dir: &std::path::Path,
) {
    let share = |total: usize, parts: usize, i: usize| total / parts + usize::from(i < total % parts);
    let tcp0 = tcp_mem_pages();
    let mut servers: Vec<Child> = (0..shards)
        .map(|i| {
            let args = [
                "--shard".to_string(),
                backend.to_string(),
                workers.to_string(),
                share(n, shards, i).to_string(),
                dir.join("ca.pem").display().to_string(),
                dir.join("key.pem").display().to_string(),
                v.to_string(),
            ];
            Child::spawn(format!("server process {i}"), &args)
        })
        .collect();
    // ready PORT RSS_KB HEAP FDS
    let ready: Vec<Vec<u64>> =
        servers.iter_mut().map(|s| s.expect("ready").iter().map(|w| w.parse().unwrap()).collect()).collect();
    let ports = ready.iter().map(|r| r[0].to_string()).collect::<Vec<_>>().join(",");
    let live_each = (LIVE / clients).max(1);
    let mut cls: Vec<Child> = (0..clients)
        .map(|i| {
            let args = [
                "--client".to_string(),
                "idle".into(),
                share(n, clients, i).to_string(),
                ports.clone(),
                client_threads.to_string(),
                v.to_string(),
                dir.join("ca.pem").display().to_string(),
                live_each.min(share(n, clients, i)).to_string(),
                i.to_string(),
            ];
            Child::spawn(format!("client process {i}"), &args)
        })
        .collect();
    // The live connections first (the workers echo on the first ones they get), then the
    // idle ones, all clients at once.
    for c in cls.iter_mut() {
        c.expect("live");
    }
    let t0 = Instant::now();
    for c in cls.iter_mut() {
        c.say("go");
    }
    let (mut failures, mut opened) = (0u64, 0u64);
    for c in cls.iter_mut() {
        // opened N failures F secs S rss_kb R first ...
        let w = c.expect("opened");
        opened += w[0].parse::<u64>().unwrap();
        failures += w[2].parse::<u64>().unwrap();
        println!("{}: {}", c.what, w.join(" "));
    }
    let secs = t0.elapsed().as_secs_f64();
    let tcp1 = tcp_mem_pages();
    let (mut open, mut held, mut rss0, mut rss1, mut heap_d, mut fds_d, mut ok, mut failed) = (0, 0, 0, 0, 0, 0, 0, 0);
    for (s, r) in servers.iter_mut().zip(&ready) {
        s.say("measure");
        // measured ACTIVE HELD RSS_KB HEAP FDS OK FAILED
        let m: Vec<u64> = s.expect("measured").iter().map(|w| w.parse().unwrap()).collect();
        open += m[0];
        held += m[1];
        rss0 += r[1];
        rss1 += m[2];
        heap_d += m[3].saturating_sub(r[2]);
        fds_d += m[4].saturating_sub(r[3]);
        ok += m[5];
        failed += m[6];
    }
    println!(
        "idle: {open} connections open in {shards} manager(s), {held} held by workers; handshakes ok {ok}, failed \
         {failed} in the servers, {failures} failed in the clients ({opened} opened)"
    );
    let per = |d: u64| d as f64 / open.max(1) as f64;
    println!(
        "server processes: RSS {:.1} MB -> {:.1} MB = +{:.0} MB for {open} connections = {:.2} KB per connection \
         (total {:.2} GB with the processes' own {:.1} MB)",
        // RSS is read in KiB; every figure printed is decimal (MB = 10^6 bytes).
        rss0 as f64 * 1024.0 / 1e6,
        rss1 as f64 * 1024.0 / 1e6,
        (rss1 - rss0) as f64 * 1024.0 / 1e6,
        per((rss1 - rss0) * 1024) / 1000.0,
        rss1 as f64 * 1024.0 / 1e9,
        rss0 as f64 * 1024.0 / 1e6,
    );
    println!(
        "server heap (mallinfo2): +{:.0} MB = {:.2} KB per connection; descriptors +{fds_d} ({:.1} per connection)",
        heap_d as f64 / 1e6,
        per(heap_d) / 1000.0,
        fds_d as f64 / open.max(1) as f64
    );
    println!(
        "kernel TCP buffers (all sockets, both ends): {tcp0} -> {tcp1} pages ({:.1} MB)",
        (tcp1.saturating_sub(tcp0) * 4096) as f64 / 1e6
    );
    println!("time to open them: {secs:.1} s ({:.0} handshakes/s)", opened as f64 / secs);
    let (mut answered, mut live) = (0u64, 0u64);
    for c in cls.iter_mut() {
        c.say("check");
        // checked OK OF
        let w = c.expect("checked");
        answered += w[0].parse::<u64>().unwrap();
        live += w[1].parse::<u64>().unwrap();
    }
    println!("live check: {answered} of {live} live connections answered after the idle period");
    for c in cls {
        c.finish();
    }
    for mut s in servers {
        s.say("finish");
        let w = s.expect("finished");
        println!("{} after the clients left: {}", s.what, w.join(" "));
        s.finish();
    }
}

/// A server process of an idle run: `--shard BACKEND WORKERS CAPACITY CA KEY VERSION`.
fn shard_main(a: &[String]) {
    let nofile = raise_nofile();
    let backend = sipstls::backend(&a[0]).unwrap_or_else(|| panic!("backend {} not in this build", a[0]));
    let workers: usize = a[1].parse().unwrap();
    let capacity: usize = a[2].parse().unwrap();
    assert!(capacity * 3 + 100 <= nofile as usize, "{capacity} connections need more than {nofile} descriptors");
    let id = Identity::from_pem(&std::fs::read(&a[3]).unwrap(), &std::fs::read(&a[4]).unwrap()).expect("identity");
    let v = if a[5] == ProtocolVersion::Tls13.to_string() { ProtocolVersion::Tls13 } else { ProtocolVersion::Tls12 };
    let server = start_server(&backend, id, v, capacity, workers, true);
    println!("ready {} {} {} {}", server.port, status_kb("VmRSS:"), heap(), open_fds());
    std::io::stdout().flush().unwrap();
    for line in std::io::stdin().lines() {
        match line.unwrap_or_default().trim() {
            "measure" => {
                let st = server.manager.stats();
                println!(
                    "measured {} {} {} {} {} {} {}",
                    st.active,
                    server.held.lock().unwrap().len(),
                    status_kb("VmRSS:"),
                    heap(),
                    open_fds(),
                    st.handshakes_ok,
                    st.handshakes_failed
                );
            }
            "finish" => {
                println!("finished {}", server.wind_down());
                std::io::stdout().flush().unwrap();
                return;
            }
            _ => {}
        }
        std::io::stdout().flush().unwrap();
    }
}

fn storm_run(server: &Server, mode: &str, n: usize, v: ProtocolVersion, client_threads: usize, ca: &std::path::Path) {
    let args = [
        "--client".to_string(),
        mode.to_string(),
        n.to_string(),
        server.port.to_string(),
        client_threads.to_string(),
        v.to_string(),
        ca.display().to_string(),
        "0".into(),
        "0".into(),
    ];
    let cpu0 = cpu_seconds(libc::RUSAGE_SELF);
    let mut child = Child::spawn("client process".into(), &args);
    let t0 = Instant::now();
    let w = child.expect("opened");
    let secs = t0.elapsed().as_secs_f64();
    let server_cpu = cpu_seconds(libc::RUSAGE_SELF) - cpu0;
    let st = server.manager.stats();
    println!("clients: {}", w.join(" "));
    println!(
        "{mode}: {} handshakes ok, {} failed in the server; {:.2} s; {:.0} handshakes/s; {} echoes",
        st.handshakes_ok,
        st.handshakes_failed,
        secs,
        st.handshakes_ok as f64 / secs,
        server.echoed.load(Ordering::Relaxed)
    );
    child.finish();
    let client_cpu = cpu_seconds(libc::RUSAGE_CHILDREN);
    // The clients share the 2 cores with the server: what each side spent per connection
    // says what the server alone would sustain on 2 cores (not a measured rate).
    let hs = st.handshakes_ok.max(1) as f64;
    println!(
        "CPU time: server process {server_cpu:.1} s ({:.0} µs per connection: at most {:.0} connections/s on 2 cores \
         for the server alone), client process {client_cpu:.1} s ({:.0} µs per connection)",
        server_cpu / hs * 1e6,
        2.0 * hs / server_cpu,
        client_cpu / hs * 1e6
    );
    println!("after the clients left: {}", server.wind_down());
}

/// User + system CPU seconds of this process (`RUSAGE_SELF`) or of its reaped children.
fn cpu_seconds(who: libc::c_int) -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut ru);
        ru
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// A client process: `--client MODE N PORTS THREADS VERSION CA LIVE INDEX`. PORTS is a
/// comma-separated list (one per server process); connection i goes to port
/// `PORTS[(i + INDEX) % len]` on 127.0.0.(1 + (i / len) % 8). An idle run opens LIVE
/// connections first, says `live`, waits for `go`, opens the rest (kept open), says
/// `opened ...`, and on `check` exchanges 4 bytes on each live connection.
fn client_main(a: &[String]) {
    raise_nofile();
    let (mode, n, threads) = (a[0].clone(), a[1].parse::<usize>().unwrap(), a[3].parse::<usize>().unwrap());
    let ports: Arc<Vec<u16>> = Arc::new(a[2].split(',').map(|p| p.parse().unwrap()).collect());
    let v = if a[4] == ProtocolVersion::Tls13.to_string() { ProtocolVersion::Tls13 } else { ProtocolVersion::Tls12 };
    let ca = sipstls::Certificate::all_from_pem(&std::fs::read(&a[5]).unwrap()).unwrap();
    let live_n: usize = a[6].parse().unwrap();
    let index: usize = a[7].parse().unwrap();
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
    let addr = {
        let ports = ports.clone();
        move |i: usize| -> SocketAddr {
            let p = ports[(i + index) % ports.len()];
            format!("127.0.0.{}:{p}", 1 + (i / ports.len()) % ADDRS).parse().unwrap()
        }
    };
    let mut stdin = std::io::stdin().lines();
    let mut live = Vec::new();
    if mode == "idle" {
        // The live connections first, one at a time, so the workers see them first.
        let d = backend.client_domain(&ccfg).unwrap();
        for i in 0..live_n.min(n) {
            let tcp = TcpStream::connect(addr(i)).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            live.push(TlsStream::connect(&*d, NAME, tcp).expect("live connection"));
        }
        next.store(live_n.min(n), Ordering::Relaxed);
        println!("live {}", live.len());
        std::io::stdout().flush().unwrap();
        let go = stdin.next().and_then(Result::ok).unwrap_or_default();
        assert_eq!(go.trim(), "go", "client {index}: expected 'go'");
    }
    let t0 = Instant::now();
    let idle_socks = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (next, failures, resumed, first_error, idle_socks, backend, ccfg, mode, addr) = (
                next.clone(),
                failures.clone(),
                resumed.clone(),
                first_error.clone(),
                idle_socks.clone(),
                backend.clone(),
                ccfg.clone(),
                mode.clone(),
                addr.clone(),
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
    let opened = n - live.len();
    println!(
        "opened {opened} failures {} in {secs:.2} s ({:.0}/s), {} resumed, client process RSS {} MB{}",
        failures.load(Ordering::Relaxed),
        opened as f64 / secs,
        resumed.load(Ordering::Relaxed),
        status_kb("VmRSS:") * 1024 / 1_000_000,
        first_error.lock().unwrap().as_ref().map(|e| format!(", first error: {e}")).unwrap_or_default(),
    );
    std::io::stdout().flush().unwrap();
    if let Some(Ok(line)) = stdin.next() {
        if line.trim() == "check" {
            let mut ok = 0;
            for t in live.iter_mut() {
                let mut b = [0u8; 4];
                if t.write_all(b"live").is_ok() && t.read_exact(&mut b).is_ok() && &b == b"live" {
                    ok += 1;
                }
            }
            println!("checked {ok} {}", live.len());
            std::io::stdout().flush().unwrap();
            // Stay until told to go (stdin closed), holding the connections.
            let _ = stdin.next();
        }
    }
}
