//! `async-bench`: the sipstls tokio adapter (`sipstls::tokio`) against the native tokio
//! adapters of the same libraries, side by side in one run: tokio-rustls for the rustls
//! backend, tokio-openssl for the OpenSSL backend. The native servers run on the very
//! configuration the sipstls backend built (`rustls_config()`, `ssl_context()`), so both
//! sides negotiate the same version, cipher suite, key exchange group and tickets.
//!
//! Figures are **server CPU time per operation**: the server is a process of its own
//! (this binary with `--server MODE`) that reads its own `getrusage(RUSAGE_SELF)` (user +
//! system) around the measured phase; the load comes from another process (this binary
//! with `--client WORKLOAD`), so client work never counts. Workloads:
//!
//! * `handshake`: full TLS 1.3 handshakes (ECDSA P-256, no resumption by the client),
//!   16 client tasks connecting, handshaking, sending close_notify and waiting for the
//!   server to close;
//! * `rr1`: 1 KiB request / 1 KiB response round trips, one connection;
//! * `rr1000`: the same on 1,000 concurrent connections, each sending back to back.
//!
//! Each server is a tokio current-thread runtime (one core, as a SIP server's worker).
//! Rounds alternate the four server modes (the starting mode rotates every round) and the
//! report gives medians of the rounds.
//!
//! ```text
//! cargo run --release -p sipstls-examples --features async-bench --bin async-bench -- \
//!     [--quick] [--rounds N] [--secs S] [--workloads handshake,rr1,rr1000] [--markdown FILE]
//! ```

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

use sipstls::{DomainConfig, DomainTable, Identity, Listener};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Server modes, in the order of the report.
const MODES: [&str; 4] = ["native-rustls", "sipstls-rustls", "native-openssl", "sipstls-openssl"];
/// Request and response size.
const MSG: usize = 1024;
/// Client tasks making handshakes at once.
const HANDSHAKE_TASKS: usize = 16;
/// Connections of the `rr1000` workload.
const MANY: usize = 1000;
/// Connections opened at once while the client sets up `rr1000`.
const CONNECT_WAVE: usize = 50;
/// The client's warm-up before it reports ready.
const WARMUP: Duration = Duration::from_millis(500);
/// No helper process lives longer than this, whatever happens to the bench.
const MAX_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Any one client operation (connect, handshake, round trip) is bounded by this.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// Waiting for a line from a helper process.
const LINE_TIMEOUT: Duration = Duration::from_secs(60);
const SERVER_NAME: &str = "sip.example.test";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Workload {
    Handshake,
    Rr1,
    Rr1000,
}

impl Workload {
    const ALL: [Workload; 3] = [Workload::Handshake, Workload::Rr1, Workload::Rr1000];

    fn name(self) -> &'static str {
        match self {
            Workload::Handshake => "handshake",
            Workload::Rr1 => "rr1",
            Workload::Rr1000 => "rr1000",
        }
    }

    fn parse(s: &str) -> Workload {
        Workload::ALL.into_iter().find(|w| w.name() == s).unwrap_or_else(|| usage(&format!("unknown workload {s}")))
    }

    fn title(self) -> &'static str {
        match self {
            Workload::Handshake => "(a) full TLS 1.3 handshakes",
            Workload::Rr1 => "(b) 1 KiB round trips, 1 connection",
            Workload::Rr1000 => "(c) 1 KiB round trips, 1,000 connections",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Workload::Handshake => "handshakes",
            _ => "round trips",
        }
    }
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "{msg}\nusage: async-bench [--quick] [--rounds N] [--secs S] [--workloads handshake,rr1,rr1000] [--markdown FILE]\n\
         (internal: --server MODE --workload W --pki DIR | --client W --port P --pki DIR [--count N] | --make-pki DIR;\n\
         --count makes a client stop after N operations in all, for profiling a server under callgrind)"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    let mut quick = false;
    let (mut rounds, mut secs) = (None, None);
    let mut workloads = Workload::ALL.to_vec();
    let mut markdown = None;
    let (mut server, mut client, mut workload, mut pki, mut port) = (None, None, None, None, None);
    let mut count = None;
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_else(|| usage(&format!("{a} needs a value")));
        match a.as_str() {
            "--quick" => quick = true,
            "--rounds" => rounds = Some(val().parse::<usize>().unwrap_or_else(|_| usage("--rounds N"))),
            "--secs" => secs = Some(val().parse::<f64>().unwrap_or_else(|_| usage("--secs S"))),
            "--workloads" => workloads = val().split(',').map(Workload::parse).collect(),
            "--markdown" => markdown = Some(val()),
            "--server" => server = Some(val()),
            "--client" => client = Some(Workload::parse(&val())),
            "--workload" => workload = Some(Workload::parse(&val())),
            "--pki" => pki = Some(PathBuf::from(val())),
            "--port" => port = Some(val().parse::<u16>().unwrap_or_else(|_| usage("--port P"))),
            "--count" => count = Some(val().parse::<u64>().unwrap_or_else(|_| usage("--count N"))),
            "--make-pki" => {
                make_pki(Path::new(&val()));
                return;
            }
            other => usage(&format!("unknown option {other}")),
        }
    }
    if let Some(mode) = server {
        let (Some(w), Some(pki)) = (workload, pki) else { usage("--server needs --workload and --pki") };
        if !MODES.contains(&mode.as_str()) {
            usage(&format!("unknown server mode {mode}"));
        }
        return server_main(&mode, w, &pki);
    }
    if let Some(w) = client {
        let (Some(port), Some(pki)) = (port, pki) else { usage("--client needs --port and --pki") };
        return client_main(w, port, &pki, count);
    }
    let plan = Plan {
        rounds: rounds.unwrap_or(if quick { 3 } else { 7 }),
        secs: secs.unwrap_or(if quick { 1.0 } else { 3.0 }),
    };
    orchestrate(&plan, &workloads, &args, markdown);
}

// ---------------------------------------------------------------------------------------
// Helpers shared by the processes.

/// Dies with the parent (the bench), so that no helper outlives it.
fn die_with_parent() {
    // SAFETY: only sets this process's parent-death signal.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    // SAFETY: reads this process's parent id.
    if unsafe { libc::getppid() } == 1 {
        std::process::exit(1); // the parent died before the signal was armed
    }
    std::thread::spawn(|| {
        std::thread::sleep(MAX_LIFETIME);
        eprintln!("async-bench helper: lifetime limit reached, exiting");
        std::process::exit(3);
    });
}

/// This process's CPU time so far (user, system), in seconds.
fn cpu_times() -> (f64, f64) {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF and a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let s = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 * 1e-6;
    (s(ru.ru_utime), s(ru.ru_stime))
}

/// The test PKI, made at run time: a CA and a server leaf for `sip.example.test`, both
/// ECDSA P-256 (rcgen's default key type).
fn make_pki(dir: &Path) {
    std::fs::create_dir_all(dir).expect("pki dir");
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "async-bench CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("server key");
    let cert = rcgen::CertificateParams::new(vec![SERVER_NAME.into()])
        .expect("server params")
        .signed_by(&key, &issuer)
        .expect("server certificate");
    std::fs::write(dir.join("ca.der"), ca_cert.der()).expect("write CA");
    std::fs::write(dir.join("server.pem"), cert.pem()).expect("write certificate");
    std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("write key");
}

// ---------------------------------------------------------------------------------------
// Server process.

/// How a server mode terminates TLS.
enum Acceptor {
    Sipstls(sipstls::tokio::TlsAcceptor),
    Rustls(tokio_rustls::TlsAcceptor),
    Openssl(openssl::ssl::SslContext),
}

fn server_main(mode: &str, workload: Workload, pki: &Path) {
    die_with_parent();
    let read = |f: &str| std::fs::read(pki.join(f)).expect("read the test PKI");
    let identity = Identity::from_pem(&read("server.pem"), &read("server.key")).expect("identity");
    let backend_name = if mode.ends_with("rustls") { "rustls" } else { "openssl" };
    let backend = sipstls::backend(backend_name).expect("backend in this build");
    let cfg = DomainConfig::server(identity);
    let acceptor = match mode {
        "sipstls-rustls" | "sipstls-openssl" => {
            let mut table = DomainTable::new(backend);
            table.add_server(Listener::Any, None, &cfg).expect("server domain");
            Acceptor::Sipstls(sipstls::tokio::TlsAcceptor::from(Arc::new(table)))
        }
        // The native adapters over the configuration the backend compiles from the same
        // settings: same suites in the same order, groups, tickets, session cache.
        "native-rustls" => {
            let d = backend.server_domain(&cfg).expect("server domain");
            let d = d.as_any().downcast_ref::<sipstls::rustls::RustlsServerDomain>().expect("rustls domain");
            Acceptor::Rustls(tokio_rustls::TlsAcceptor::from(d.rustls_config().clone()))
        }
        "native-openssl" => {
            let d = backend.server_domain(&cfg).expect("server domain");
            let d = d.as_any().downcast_ref::<sipstls::openssl::OpensslServerDomain>().expect("openssl domain");
            Acceptor::Openssl(d.ssl_context().clone())
        }
        _ => unreachable!(),
    };
    let acceptor = Arc::new(acceptor);
    let ops = Arc::new(AtomicU64::new(0));
    let info: Arc<OnceLock<String>> = Arc::default();
    {
        // The control channel: START and STOP bracket the measured phase; QUIT (or the
        // bench closing stdin) ends the process.
        let (ops, info) = (ops.clone(), info.clone());
        std::thread::spawn(move || {
            let mut start = (0u64, 0.0, 0.0, Instant::now());
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                match line.trim() {
                    "START" => {
                        let (u, s) = cpu_times();
                        start = (ops.load(Ordering::Relaxed), u, s, Instant::now());
                    }
                    "STOP" => {
                        let (u, s) = cpu_times();
                        let n = ops.load(Ordering::Relaxed) - start.0;
                        let wall = start.3.elapsed().as_secs_f64();
                        let info = info.get().map_or("-", String::as_str);
                        println!("RESULT {n} {:.6} {:.6} {wall:.6} {info}", u - start.1, s - start.2);
                        let _ = std::io::stdout().flush();
                    }
                    _ => break,
                }
            }
            std::process::exit(0);
        });
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().expect("runtime");
    rt.block_on(async move {
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        sock.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
        let listener = sock.listen(2048).expect("listen");
        println!("PORT {}", listener.local_addr().expect("addr").port());
        let _ = std::io::stdout().flush();
        let mut errors = 0;
        loop {
            let tcp = match listener.accept().await {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    errors += 1;
                    if errors > 1000 {
                        eprintln!("async-bench server: accept keeps failing: {e}");
                        std::process::exit(1);
                    }
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, ops, info) = (acceptor.clone(), ops.clone(), info.clone());
            tokio::spawn(async move { connection(&acceptor, tcp, workload, &ops, &info).await });
        }
    });
}

fn rustls_names(c: &rustls::CommonState) -> String {
    let suite = c.negotiated_cipher_suite().and_then(|s| s.suite().as_str()).unwrap_or("?");
    let suite = suite.strip_prefix("TLS13_").map_or(suite.to_owned(), |s| format!("TLS_{s}"));
    let group = c.negotiated_key_exchange_group().map_or("?".to_owned(), |g| format!("{:?}", g.name()).to_lowercase());
    format!("{:?}/{suite}/{group}", c.protocol_version().unwrap_or(rustls::ProtocolVersion::Unknown(0)))
}

async fn connection(
    acceptor: &Acceptor,
    tcp: tokio::net::TcpStream,
    workload: Workload,
    ops: &AtomicU64,
    info: &OnceLock<String>,
) {
    match acceptor {
        Acceptor::Sipstls(a) => {
            let Ok(s) = a.accept(tcp).await else { return };
            info.get_or_init(|| {
                s.info().map_or("?".into(), |i| {
                    format!("{:?}/{}/{}", i.version, i.cipher_suite, i.group.as_deref().unwrap_or("?"))
                })
            });
            serve(s, workload, ops).await
        }
        Acceptor::Rustls(a) => {
            let Ok(s) = a.accept(tcp).await else { return };
            info.get_or_init(|| rustls_names(s.get_ref().1));
            serve(s, workload, ops).await
        }
        Acceptor::Openssl(ctx) => {
            let Ok(ssl) = openssl::ssl::Ssl::new(ctx) else { return };
            let Ok(mut s) = tokio_openssl::SslStream::new(ssl, tcp) else { return };
            if Pin::new(&mut s).accept().await.is_err() {
                return;
            }
            info.get_or_init(|| {
                let suite = s.ssl().current_cipher().and_then(|c| c.standard_name()).unwrap_or("?");
                format!("{}/{suite}/-", s.ssl().version_str())
            });
            serve(s, workload, ops).await
        }
    }
}

/// The server's work on an established connection, the same for every mode: answer each
/// 1 KiB request with 1 KiB, until the client closes.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, workload: Workload, ops: &AtomicU64) {
    if workload == Workload::Handshake {
        ops.fetch_add(1, Ordering::Relaxed);
    }
    let mut buf = [0u8; MSG];
    loop {
        if s.read_exact(&mut buf).await.is_err() || s.write_all(&buf).await.is_err() {
            return;
        }
        if workload != Workload::Handshake {
            ops.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Client process: tokio-rustls on one current-thread runtime for every server mode, with
// sipstls's default TLS 1.3 suite order and no resumption (every handshake is full).

fn client_config(pki: &Path) -> Arc<rustls::ClientConfig> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    let order = sipstls::DEFAULT_TLS13_SUITES;
    provider.cipher_suites.retain(|s| matches!(s, rustls::SupportedCipherSuite::Tls13(_)));
    provider.cipher_suites.sort_by_key(|s| {
        let name = s.suite().as_str().unwrap_or("").replace("TLS13_", "TLS_");
        order.iter().position(|o| *o == name).unwrap_or(usize::MAX)
    });
    let mut roots = rustls::RootCertStore::empty();
    roots.add(std::fs::read(pki.join("ca.der")).expect("read CA").into()).expect("CA");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

type ClientStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn connect(connector: &tokio_rustls::TlsConnector, port: u16) -> std::io::Result<ClientStream> {
    let name = rustls::pki_types::ServerName::try_from(SERVER_NAME).expect("name");
    let tcp = tokio::time::timeout(OP_TIMEOUT, tokio::net::TcpStream::connect(("127.0.0.1", port))).await??;
    tcp.set_nodelay(true)?;
    tokio::time::timeout(OP_TIMEOUT, connector.connect(name, tcp)).await?
}

fn client_main(workload: Workload, port: u16, pki: &Path, count: Option<u64>) {
    die_with_parent();
    let connector = tokio_rustls::TlsConnector::from(client_config(pki));
    let stop = Arc::new(AtomicBool::new(false));
    let limit = count.unwrap_or(u64::MAX);
    if count.is_none() {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // STOP, or the bench closing stdin, ends the load.
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            stop.store(true, Ordering::Relaxed);
        });
    }
    let ops = Arc::new(AtomicU64::new(0));
    let info: Arc<OnceLock<String>> = Arc::default();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let deadline = Instant::now() + MAX_LIFETIME;
        let running =
            || !stop.load(Ordering::Relaxed) && Instant::now() < deadline && ops.load(Ordering::Relaxed) < limit;
        match workload {
            Workload::Handshake => {
                for _ in 0..HANDSHAKE_TASKS {
                    let (connector, ops, info, stop) = (connector.clone(), ops.clone(), info.clone(), stop.clone());
                    tokio::spawn(async move {
                        while !stop.load(Ordering::Relaxed)
                            && Instant::now() < deadline
                            && ops.load(Ordering::Relaxed) < limit
                        {
                            match handshake_once(&connector, port, &info).await {
                                Ok(()) => ops.fetch_add(1, Ordering::Relaxed),
                                Err(e) => fail(&format!("handshake: {e}")),
                            };
                        }
                    });
                }
            }
            Workload::Rr1 | Workload::Rr1000 => {
                let n = if workload == Workload::Rr1 { 1 } else { MANY };
                let mut conns = Vec::with_capacity(n);
                while conns.len() < n {
                    let wave = CONNECT_WAVE.min(n - conns.len());
                    let mut set = tokio::task::JoinSet::new();
                    for _ in 0..wave {
                        let connector = connector.clone();
                        set.spawn(async move { connect(&connector, port).await });
                    }
                    while let Some(r) = set.join_next().await {
                        match r.expect("connect task") {
                            Ok(s) => conns.push(s),
                            Err(e) => fail(&format!("connect: {e}")),
                        }
                    }
                }
                info.get_or_init(|| rustls_names(conns[0].get_ref().1));
                for mut s in conns {
                    let (ops, stop) = (ops.clone(), stop.clone());
                    tokio::spawn(async move {
                        let req = [0x5a_u8; MSG];
                        let mut resp = [0u8; MSG];
                        while !stop.load(Ordering::Relaxed)
                            && Instant::now() < deadline
                            && ops.load(Ordering::Relaxed) < limit
                        {
                            let rt = async {
                                s.write_all(&req).await?;
                                s.read_exact(&mut resp).await
                            };
                            match tokio::time::timeout(OP_TIMEOUT, rt).await {
                                Ok(Ok(_)) if resp == req => ops.fetch_add(1, Ordering::Relaxed),
                                Ok(Ok(_)) => fail("response differs from the request"),
                                Ok(Err(e)) => fail(&format!("round trip: {e}")),
                                Err(_) => fail("round trip timed out"),
                            };
                        }
                    });
                }
            }
        }
        tokio::time::sleep(WARMUP).await;
        let (u, s) = cpu_times();
        println!("READY {:.6}", u + s);
        let _ = std::io::stdout().flush();
        while running() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (u, s) = cpu_times();
        println!("DONE {} {} {:.6}", ops.load(Ordering::Relaxed), info.get().map_or("-", String::as_str), u + s);
        let _ = std::io::stdout().flush();
    });
    std::process::exit(0);
}

/// A failure on the client side ends the client (the bench then reports it).
fn fail(what: &str) -> ! {
    eprintln!("async-bench client: {what}");
    std::process::exit(1)
}

/// One full handshake: connect, handshake, close_notify, then read until the server closes.
async fn handshake_once(
    connector: &tokio_rustls::TlsConnector,
    port: u16,
    info: &OnceLock<String>,
) -> std::io::Result<()> {
    let mut s = connect(connector, port).await?;
    info.get_or_init(|| rustls_names(s.get_ref().1));
    tokio::time::timeout(OP_TIMEOUT, async {
        s.shutdown().await?;
        let mut sink = [0u8; 1024];
        // The server's tickets, then its end of the connection (without close_notify: an
        // UnexpectedEof, which is expected here).
        for _ in 0..64 {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await?
}

// ---------------------------------------------------------------------------------------
// The bench: starts a server and a client process per measurement.

struct Plan {
    rounds: usize,
    secs: f64,
}

/// A helper process: its stdin for commands, its stdout lines through a channel.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    what: String,
}

impl Proc {
    fn spawn(args: &[&str], what: String) -> Proc {
        let exe = std::env::current_exe().expect("current exe");
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn helper");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc { child, stdin, lines, what }
    }

    fn send(&mut self, cmd: &str) {
        if let Some(s) = self.stdin.as_mut() {
            let _ = writeln!(s, "{cmd}");
            let _ = s.flush();
        }
    }

    /// The next line starting with `prefix` (its rest), or a panic naming the helper.
    fn expect(&mut self, prefix: &str) -> String {
        let until = Instant::now() + LINE_TIMEOUT;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    if let Some(rest) = l.strip_prefix(prefix) {
                        return rest.trim().to_owned();
                    }
                }
                Err(_) => panic!("{}: no {prefix} line (it exited or timed out)", self.what),
            }
        }
    }

    /// Ends the process: QUIT and stdin closed, then SIGKILL to its pid if it has not
    /// exited within 5 s.
    fn stop(&mut self) {
        self.send("QUIT");
        self.stdin = None;
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!("{}: did not exit, killing pid {}", self.what, self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill(); // by its pid
            let _ = self.child.wait();
        }
    }
}

#[derive(Clone, Debug)]
struct Sample {
    ops: u64,
    user: f64,
    sys: f64,
    wall: f64,
    server_info: String,
    client_info: String,
    /// The client's CPU time over the wall time of the measured phase (approximate).
    client_busy: f64,
}

impl Sample {
    fn cpu(&self) -> f64 {
        self.user + self.sys
    }

    fn ops_per_cpu_sec(&self) -> f64 {
        self.ops as f64 / self.cpu()
    }
}

fn measure(mode: &str, w: Workload, pki: &Path, secs: f64) -> Sample {
    let pki_s = pki.to_str().expect("utf-8 path");
    let mut server = Proc::spawn(
        &["--server", mode, "--workload", w.name(), "--pki", pki_s],
        format!("server {mode} ({})", w.name()),
    );
    let port = server.expect("PORT");
    let mut client = Proc::spawn(&["--client", w.name(), "--port", &port, "--pki", pki_s], format!("client ({mode})"));
    let ready_cpu: f64 = client.expect("READY").parse().expect("client cpu");
    let ready_at = Instant::now();
    server.send("START");
    std::thread::sleep(Duration::from_secs_f64(secs));
    server.send("STOP");
    let r = server.expect("RESULT");
    client.send("STOP");
    let done = client.expect("DONE");
    let client_wall = ready_at.elapsed().as_secs_f64();
    client.stop();
    server.stop();
    let f: Vec<&str> = r.split_whitespace().collect();
    let d: Vec<&str> = done.split_whitespace().collect();
    let client_info = d.get(1).copied().unwrap_or("-").to_owned();
    Sample {
        ops: f[0].parse().expect("ops"),
        user: f[1].parse().expect("user"),
        sys: f[2].parse().expect("sys"),
        wall: f[3].parse().expect("wall"),
        server_info: f.get(4).copied().unwrap_or("-").to_owned(),
        client_info,
        client_busy: (d.get(2).and_then(|c| c.parse::<f64>().ok()).unwrap_or(0.0) - ready_cpu) / client_wall,
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
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

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn orchestrate(plan: &Plan, workloads: &[Workload], args: &[String], markdown: Option<String>) {
    let pki = std::env::temp_dir().join(format!("async-bench-{}", std::process::id()));
    make_pki(&pki);
    // samples[w][mode][round]
    let mut samples: Vec<Vec<Vec<Sample>>> = vec![vec![Vec::new(); MODES.len()]; workloads.len()];
    for (wi, &w) in workloads.iter().enumerate() {
        eprintln!("async-bench: {}: {} rounds of {} s per mode", w.name(), plan.rounds, plan.secs);
        for round in 0..plan.rounds {
            let mut line = format!("  round {}:", round + 1);
            for k in 0..MODES.len() {
                let mi = (k + round) % MODES.len();
                let s = measure(MODES[mi], w, &pki, plan.secs);
                line.push_str(&format!(
                    " {} {:.0}/cpu-s (server {:.0}%, client {:.0}% busy);",
                    MODES[mi],
                    s.ops_per_cpu_sec(),
                    100.0 * s.cpu() / s.wall,
                    100.0 * s.client_busy
                ));
                samples[wi][mi].push(s);
            }
            eprintln!("{line}");
        }
    }
    let _ = std::fs::remove_dir_all(&pki);

    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut report = format!(
        "# sipstls tokio adapter vs the native tokio adapters\n\n\
         Generated {} (UTC) by `cargo run --release -p sipstls-examples --features async-bench --bin async-bench -- {}`.\n\n\
         Machine: {cpus} vCPUs ({}), server and client in separate processes on loopback. \
         Figures are operations per **server CPU-second** (user + system time of the server process from \
         `getrusage(RUSAGE_SELF)` over the measured phase), medians of {} rounds of {} s per mode; the modes \
         alternate within each round and the first mode rotates every round. Ratio: server CPU per operation of \
         sipstls over that of the native adapter on the same library (goal: at most 1.03); \"paired\" is the \
         median of the per-round ratios.\n\n",
        utc_date(),
        args.join(" "),
        cpu_model(),
        plan.rounds,
        plan.secs,
    );
    let mut negotiated = Vec::new();
    for (wi, &w) in workloads.iter().enumerate() {
        report.push_str(&format!("## {}\n\n", w.title()));
        report.push_str(&format!(
            "| server mode | {} per server CPU-second (median) | µs server CPU per op | min – max | server busy | client busy | {} per wall-second | CPU/op ratio sipstls/native | paired | goal ≤ 1.03 |\n\
             |---|---|---|---|---|---|---|---|---|---|\n",
            w.unit(),
            w.unit()
        ));
        let med = |mi: usize| median(&samples[wi][mi].iter().map(Sample::ops_per_cpu_sec).collect::<Vec<_>>());
        for (mi, mode) in MODES.iter().enumerate() {
            let s = &samples[wi][mi];
            let rates: Vec<f64> = s.iter().map(Sample::ops_per_cpu_sec).collect();
            let m = med(mi);
            let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
            let max = rates.iter().copied().fold(0.0, f64::max);
            let busy = median(&s.iter().map(|x| x.cpu() / x.wall).collect::<Vec<_>>());
            let client_busy = median(&s.iter().map(|x| x.client_busy).collect::<Vec<_>>());
            let per_wall = median(&s.iter().map(|x| x.ops as f64 / x.wall).collect::<Vec<_>>());
            let (ratio, paired, goal) = if mode.starts_with("sipstls") {
                let native = mi - 1;
                let ratio = med(native) / m;
                let paired = median(
                    &s.iter()
                        .zip(&samples[wi][native])
                        .map(|(a, b)| b.ops_per_cpu_sec() / a.ops_per_cpu_sec())
                        .collect::<Vec<_>>(),
                );
                (
                    format!("{ratio:.3}"),
                    format!("{paired:.3}"),
                    if ratio <= 1.03 { "met" } else { "**missed**" }.to_owned(),
                )
            } else {
                ("".into(), "".into(), "".into())
            };
            report.push_str(&format!(
                "| {mode} | {m:.0} | {:.2} | {min:.0} – {max:.0} | {:.0}% | {:.0}% | {per_wall:.0} | {ratio} | {paired} | {goal} |\n",
                1e6 / m,
                100.0 * busy,
                100.0 * client_busy
            ));
            if let Some(first) = s.first() {
                negotiated.push(format!("| {} | {mode} | {} | {} |", w.name(), first.server_info, first.client_info));
            }
        }
        report.push('\n');
    }
    report.push_str(
        "## What was negotiated\n\nAs each server saw it (sipstls: `TlsStream::info()`; tokio-rustls: the \
         connection's negotiated suite and group; tokio-openssl: the current cipher) and as the client saw it \
         (tokio-rustls), for the first connection of the first round:\n\n\
         | workload | server mode | server: version/suite/group | client: version/suite/group |\n|---|---|---|---|\n",
    );
    for n in &negotiated {
        report.push_str(n);
        report.push('\n');
    }
    report.push_str(&format!(
        "\nWorkloads: (a) {HANDSHAKE_TASKS} client tasks each connecting, making a full TLS 1.3 handshake (ECDSA \
         P-256 server certificate from a run-time CA, no resumption by the client; the server issues its default \
         tickets), sending close_notify and reading until the server closes; the server counts completed \
         handshakes. (b) one connection, 1 KiB request and 1 KiB response back to back. (c) {MANY} connections, \
         each sending 1 KiB requests back to back. Each server is one tokio current-thread runtime serving every \
         mode with the same code (`read_exact` 1 KiB, `write_all` 1 KiB, TCP_NODELAY); the client is \
         tokio-rustls on one current-thread runtime for every mode, offering sipstls's default TLS 1.3 suite \
         order. The native servers run on the configuration the sipstls backend built (`RustlsServerDomain::\
         rustls_config()`, `OpensslServerDomain::ssl_context()`).\n"
    ));
    println!("{report}");
    if let Some(f) = markdown {
        std::fs::write(&f, &report).expect("write the markdown report");
    }
}
