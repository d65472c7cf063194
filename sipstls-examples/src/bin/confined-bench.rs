//! `confined-bench`: the confined model (TLS manager + worker processes on socketpairs)
//! against one process terminating TLS itself, side by side in one run, per backend:
//!
//! * latency of a 1 KiB SIP MESSAGE answered by a 200 carrying the same 1 KiB body, one
//!   connection, sequential (median and p99, and the confined model's added latency);
//! * requests per second with several client connections sending back to back.
//!
//! Both servers run the same SIP code (`sipserver::serve_sip`); the clients are threads of
//! this process. Rounds alternate between the two models so that machine noise hits both.
//!
//! ```text
//! cargo run --release -p sipstls-examples --bin confined-bench -- [--quick] [--backends rustls,openssl] [--markdown FILE]
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipstls::{Backend, DomainConfig, DomainTable, Identity, Listener, TlsStream};
use sipstls_examples::registrar::Registrar;
use sipstls_examples::sip::{self, Frame};
use sipstls_examples::sipserver::{serve_sip, SipContext};
use sipstls_manager::{AsyncConnection, ListenerConfig, ManagerConfig, TlsManager, Worker};

const WORKERS: usize = 2;
const CLIENTS: usize = 32;

struct Plan {
    rounds: usize,
    latency_samples: usize,
    throughput_secs: f64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// One process, a thread per connection terminating TLS.
    Single,
    /// The TLS manager with worker threads in its own process.
    ConfinedThreads,
    /// The TLS manager with forked worker processes.
    ConfinedProcesses,
}

const MODES: [Mode; 3] = [Mode::Single, Mode::ConfinedThreads, Mode::ConfinedProcesses];

/// The command line.
#[derive(Debug, clap::Parser)]
#[command(about = "The confined model against one process terminating TLS, side by side, per backend")]
struct Cli {
    /// Fewer rounds, samples and seconds.
    #[arg(long)]
    quick: bool,
    /// Only these backends (default: every backend of the build).
    #[arg(long, value_name = "a,b,...", value_delimiter = ',')]
    backends: Option<Vec<String>>,
    /// Also write the report to this file.
    #[arg(long, value_name = "FILE")]
    markdown: Option<String>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cli =
        <Cli as clap::Parser>::parse_from(std::iter::once("confined-bench".to_owned()).chain(args.iter().cloned()));
    let quick = cli.quick;
    let names: Vec<String> =
        cli.backends.unwrap_or_else(|| sipstls::backend_names().iter().map(|s| s.to_string()).collect());
    let markdown = cli.markdown;
    let plan = if quick {
        Plan { rounds: 3, latency_samples: 500, throughput_secs: 0.5 }
    } else {
        Plan { rounds: 9, latency_samples: 2000, throughput_secs: 1.5 }
    };
    // Worker processes first, while this process has no thread: one set per backend, and
    // an echo process for the floor of any hairpin (a plain socketpair round trip).
    let (echo, echo_child) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    // SAFETY: no thread has been started yet; the child only echoes and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        drop(echo);
        // SAFETY: only sets this process's parent-death signal.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        let mut s = echo_child;
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        // SAFETY: leaving the child without the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    drop(echo_child);
    let floor = socketpair_floor(&echo, plan.latency_samples * plan.rounds);
    let mut channels = Vec::new();
    for _ in &names {
        let mut ends = Vec::new();
        for i in 0..WORKERS {
            let (m, w) = sipstls_manager::channel().expect("socketpair");
            // SAFETY: no thread has been started yet; the child only runs the worker loop.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                drop(ends);
                drop(m);
                // SAFETY: only sets this process's parent-death signal.
                unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
                worker_process(i, w);
                // SAFETY: leaving the child without the parent's exit handlers.
                unsafe { libc::_exit(0) };
            }
            drop(w);
            ends.push(m);
        }
        channels.push(ends);
    }

    let mut rows = Vec::new();
    for (name, ends) in names.iter().zip(channels) {
        let Some(backend) = sipstls::backend(name) else {
            rows.push(format!("| {name} | not in this build | | | | | | | |"));
            continue;
        };
        eprintln!("confined-bench: {name}: {} rounds", plan.rounds);
        rows.push(bench_backend(name, backend, ends, &plan));
    }
    let mut report = format!(
        "# Confined model vs a single process\n\nGenerated {} (UTC) by `cargo run --release -p sipstls-examples \
         --bin confined-bench -- {}`.\n\n",
        utc_date(),
        args.join(" ")
    );
    // Honours `taskset`: the one-CPU figures come from `taskset -c 0 confined-bench ...`.
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    report.push_str(&format!("CPUs this run could use: {cpus}.\n\n"));
    report.push_str(
        "| backend | confined workers | single: median / p99 µs | confined: median / p99 µs | added median µs | added p99 µs | single req/s | confined req/s | confined/single |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &rows {
        report.push_str(r);
        report.push('\n');
    }
    report.push_str(&format!(
        "\nThe floor of any hairpin on this machine, measured in the same run: a 1 KiB round trip over a \
         socketpair between two processes takes {:.1} µs (median; p99 {:.1} µs). The confined model adds one such \
         round trip (manager ↔ worker) to every request.\n",
        floor.0, floor.1
    ));
    report.push_str(&format!(
        "\n1 KiB MESSAGE → 200 with the same 1 KiB body over TLS 1.3 on loopback. Latency: one connection per model, \
         {} sequential requests on each per round, interleaved request by request; throughput: {CLIENTS} connections sending back to back for \
         {} s per model and round; {} alternating rounds, medians of the rounds' figures. Confined: a TLS manager \
         with 2 threads and {WORKERS} workers, as threads of the manager's process or as forked processes (each \
         worker one event loop); single: a thread per connection terminating TLS itself. \
         Goals: added median latency < 20 µs, confined throughput ≥ 70% of single.\n",
        plan.latency_samples, plan.throughput_secs, plan.rounds
    ));
    println!("{report}");
    if let Some(f) = markdown {
        std::fs::write(&f, &report).expect("write the markdown report");
    }
}

/// A worker (process or thread): one event loop (as a SIP server's worker would run) answering SIP on
/// every connection the manager hands over.
fn worker_process(index: usize, control: OwnedFd) {
    let Ok(worker) = Worker::new(control) else { return };
    let ctx = Arc::new(SipContext {
        registrar: Registrar::new_shared().expect("registrar"),
        relay: None,
        worker_tag: index.to_string(),
        via_host: "127.0.0.1".into(),
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().expect("runtime");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        while let Ok(conn) = worker.accept() {
            if tx.send(conn).is_err() {
                return;
            }
        }
    });
    rt.block_on(async move {
        while let Some(conn) = rx.recv().await {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let Ok(s) = conn.into_async() else { return };
                let _ = serve_sip_async(&s, &ctx).await;
            });
        }
    });
}

async fn serve_sip_async(s: &AsyncConnection, ctx: &SipContext) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        match sip::parse(&buf) {
            Ok(Frame::Message(msg, used)) => {
                buf.drain(..used);
                if let Some(resp) = ctx.handle(&msg) {
                    s.write_all(&resp).await?;
                }
            }
            Ok(Frame::Ping(used)) => {
                buf.drain(..used);
                s.write_all(b"\r\n").await?;
            }
            Ok(Frame::Pong(used)) => {
                buf.drain(..used);
            }
            Ok(Frame::Incomplete) => {
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        }
    }
}

fn domains(backend: &Arc<dyn Backend>) -> (Arc<DomainTable>, Arc<dyn sipstls::ClientDomain>) {
    let ca = rcgen_pki();
    let mut table = DomainTable::new(backend.clone());
    table.add_server(Listener::Any, None, &DomainConfig::server(ca.0)).expect("server domain");
    let client = backend.client_domain(&DomainConfig::client(vec![ca.1])).expect("client domain");
    (Arc::new(table), client)
}

/// A self-signed ECDSA P-256 certificate for `sip.example.test`, made at run time.
fn rcgen_pki() -> (Identity, sipstls::Certificate) {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["sip.example.test".into()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let der = cert.der().to_vec();
    let id = Identity::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).expect("identity");
    (id, sipstls::Certificate::from_der(der))
}

fn single_server(table: Arc<DomainTable>, stop: Arc<AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let ctx = Arc::new(SipContext {
        registrar: Registrar::new_shared().expect("registrar"),
        relay: None,
        worker_tag: "single".into(),
        via_host: "127.0.0.1".into(),
    });
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let Ok(tcp) = tcp else { continue };
            let (table, ctx) = (table.clone(), ctx.clone());
            std::thread::spawn(move || {
                let _ = tcp.set_nodelay(true);
                let Ok(local) = tcp.local_addr() else { return };
                let Ok(session) = table.accept(local, None) else { return };
                let mut tls = TlsStream::new(session, tcp);
                let _ = serve_sip(&mut tls, &ctx);
            });
        }
    });
    addr
}

fn request(seq: u64) -> Vec<u8> {
    let body = "x".repeat(700);
    format!(
        "MESSAGE sip:bob@example.test SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK-b{seq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=a\r\nTo: <sip:bob@example.test>\r\n\
         Call-ID: bench-{seq}@127.0.0.1\r\nCSeq: {seq} MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

struct Client {
    tls: TlsStream<TcpStream>,
    pending: Vec<u8>,
    seq: u64,
}

impl Client {
    fn connect(domain: &dyn sipstls::ClientDomain, addr: SocketAddr) -> Client {
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        tcp.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut tls = TlsStream::connect(domain, "sip.example.test", tcp).expect("tls");
        tls.handshake().expect("handshake");
        Client { tls, pending: Vec::new(), seq: 0 }
    }

    /// One request and its response; panics on anything but a 200 with the body.
    fn round_trip(&mut self) {
        self.seq += 1;
        self.tls.write_all(&request(self.seq)).expect("write");
        let mut chunk = [0u8; 8192];
        loop {
            if let Ok(Frame::Message(m, used)) = sip::parse(&self.pending) {
                self.pending.drain(..used);
                assert!(m.start_line.starts_with("SIP/2.0 200"), "{}", m.start_line);
                assert_eq!(m.body.len(), 700);
                return;
            }
            let n = self.tls.read(&mut chunk).expect("read");
            assert!(n > 0, "server closed");
            self.pending.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Today's date, `YYYY-MM-DD` (UTC), from the system clock (days to civil date, the
/// proleptic Gregorian calendar).
fn utc_date() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Median and p99 of a 1 KiB round trip through the echo process, in µs.
fn socketpair_floor(echo: &std::os::unix::net::UnixStream, n: usize) -> (f64, f64) {
    let msg = [b'x'; 1024];
    let mut back = [0u8; 1024];
    let mut s = echo;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + 100 {
        let t = Instant::now();
        s.write_all(&msg).expect("echo write");
        s.read_exact(&mut back).expect("echo read");
        if i >= 100 {
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    percentile(v, 0.5)
}

fn throughput(domain: &Arc<dyn sipstls::ClientDomain>, addr: SocketAddr, secs: f64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (domain, done) = (domain.clone(), done.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(&*domain, addr);
                while Instant::now() < until {
                    c.round_trip();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn bench_backend(name: &str, backend: Arc<dyn Backend>, ends: Vec<OwnedFd>, plan: &Plan) -> String {
    let (table, client) = domains(&backend);
    let stop = Arc::new(AtomicBool::new(false));
    let single = single_server(table.clone(), stop.clone());
    let cfg = ManagerConfig::default();
    let with_processes = TlsManager::new(table.clone(), cfg.clone()).expect("manager");
    for e in ends {
        with_processes.add_worker(e).expect("worker");
    }
    let with_threads = TlsManager::new(table, cfg).expect("manager");
    for i in 0..WORKERS {
        let (m, w) = sipstls_manager::channel().expect("socketpair");
        with_threads.add_worker(m).expect("worker");
        std::thread::spawn(move || worker_process(i, w));
    }
    let any = || ListenerConfig::workers("127.0.0.1:0".parse().unwrap());
    let addrs = [single, with_threads.listen(any()).expect("listen"), with_processes.listen(any()).expect("listen")];

    let mut lat: [Vec<f64>; 3] = Default::default();
    let mut rps: [Vec<f64>; 3] = Default::default();
    for round in 0..plan.rounds {
        // Latency: one connection to each server, requests interleaved one by one, so that
        // every model sees the same moments of the machine.
        let mut conns = addrs.map(|a| Client::connect(&*client, a));
        for c in &mut conns {
            for _ in 0..50 {
                c.round_trip(); // warm up
            }
        }
        for k in 0..plan.latency_samples {
            for j in 0..3 {
                let i = (j + k) % 3;
                let t = Instant::now();
                conns[i].round_trip();
                lat[i].push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        drop(conns);
        // Throughput: the models take turns, starting with a different one each round.
        for j in 0..3 {
            let mode = MODES[(j + round) % 3];
            rps[mode as usize].push(throughput(&client, addrs[mode as usize], plan.throughput_secs));
        }
        eprintln!(
            "  round {}: single {:.0} req/s, confined (threads) {:.0} req/s, confined (processes) {:.0} req/s",
            round + 1,
            rps[0].last().unwrap(),
            rps[1].last().unwrap(),
            rps[2].last().unwrap()
        );
    }
    stop.store(true, Ordering::Relaxed);
    let _ = TcpStream::connect(single); // wake the accept loop so it ends
    for l in &mut lat {
        l.sort_by(|a, b| a.total_cmp(b));
    }
    let p = |i: usize| (percentile(&lat[i], 0.5), percentile(&lat[i], 0.99));
    let (s50, s99) = p(0);
    let sr = median(&mut rps[0]);
    let mut rows = String::new();
    for (i, label) in [(1, "worker threads"), (2, "worker processes")] {
        let (c50, c99) = p(i);
        let cr = median(&mut rps[i]);
        rows.push_str(&format!(
            "| {name} | {label} | {s50:.1} / {s99:.1} | {c50:.1} / {c99:.1} | {:+.1} | {:+.1} | {sr:.0} | {cr:.0} | {:.2} |\n",
            c50 - s50,
            c99 - s99,
            cr / sr
        ));
    }
    rows.trim_end().to_owned()
}
