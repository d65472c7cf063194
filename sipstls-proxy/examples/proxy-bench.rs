//! `proxy-bench`: sipstls-proxy side by side with HAProxy and stunnel, on one PKI, on
//! loopback, in one run:
//!
//! * memory per idle TLS 1.3 connection: the terminator's whole process tree (PSS from
//!   `/proc/PID/smaps_rollup`) before and after N connections opened by a client process;
//! * server CPU per full TLS 1.3 handshake: user + system time of the terminator's process
//!   tree (`/proc/PID/stat`) over M handshakes (each with one 4-byte round trip through the
//!   upstream, then closed), resumption off;
//! * added latency of a 1 KiB request: round trips through the terminator against the same
//!   round trips on a direct TCP connection to the upstream, median and p99.
//!
//! Every terminator sends a PROXY header to the same upstream (an echo in this process):
//! sipstls-proxy and HAProxy (`send-proxy-v2-ssl`) version 2, stunnel (`protocol = proxy`)
//! version 1. The clients run in separate processes (this binary with `--client`).
//!
//! ```text
//! cargo run --release -p sipstls-proxy --example proxy-bench -- [--idle N] [--handshakes M]
//!     [--round-trips K] [--runs R] [--markdown FILE]
//! ```
//! Needs `haproxy` and `stunnel4` (Debian packages) for their rows; a missing one is
//! reported as missing, not measured. Builds `sipstls-proxy` in release with `cargo`.
//! HAProxy's `maxconn` is 9,000: it refuses to start when it cannot raise the open-file
//! limit to what `maxconn` needs, and this machine's hard limit is 20,000 descriptors per
//! process (two per proxied connection), which also bounds N here.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipstls::{Certificate, ClientTarget, DomainConfig, DomainTable, ProtocolVersion, Resumption, TlsStream};
use sipstls_conformance::pki::{pki, SERVER_NAME};

const REQUEST: usize = 1024;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--client") {
        return client_main(&args[1..]);
    }
    let opt = |name: &str, default: usize| -> usize {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map_or(default, |v| v.parse().unwrap())
    };
    let idle = opt("--idle", 5_000);
    let handshakes = opt("--handshakes", 3_000);
    let round_trips = opt("--round-trips", 2_000);
    let runs = opt("--runs", 3).max(1);
    let markdown = args.iter().position(|a| a == "--markdown").and_then(|i| args.get(i + 1)).map(PathBuf::from);
    raise_nofile();
    let dir = std::env::temp_dir().join(format!("proxy-bench-{}", std::process::id()));
    let certs = pki().write_to(&dir.join("certs")).unwrap();
    std::fs::write(
        certs.join("server-full.pem"),
        format!("{}{}", pki().server_ecdsa.cert_pem, pki().server_ecdsa.key_pem),
    )
    .unwrap();
    let upstream = start_upstream();
    let proxy_bin = build_proxy();
    let direct = latency_direct(upstream, round_trips);
    let terminators =
        [Terminator::Sipstls("rustls"), Terminator::Sipstls("openssl"), Terminator::Haproxy, Terminator::Stunnel];
    // Each run measures every terminator in turn; the report gives each figure's median
    // over the runs (this machine is shared and noisy).
    let mut all: Vec<Vec<Row>> = terminators.iter().map(|_| Vec::new()).collect();
    for run in 1..=runs {
        for (t, rows) in terminators.iter().zip(&mut all) {
            eprintln!("== run {run}/{runs}: {}", t.name());
            match t.start(&dir, &certs, upstream, &proxy_bin) {
                Err(why) => {
                    eprintln!("   not measured: {why}");
                    rows.push(Row { name: t.name(), missing: Some(why), ..Row::default() });
                }
                Ok(mut server) => {
                    let row = measure(t, &mut server, &certs, idle, handshakes, round_trips, upstream);
                    server.stop();
                    rows.push(row);
                }
            }
        }
    }
    let rows: Vec<Row> = all.iter().map(|runs| median_row(runs)).collect();
    let report = report(&rows, idle, handshakes, round_trips, runs, &direct);
    println!("{report}");
    if let Some(path) = markdown {
        std::fs::write(&path, &report).unwrap();
        eprintln!("wrote {}", path.display());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// What one terminator measured.
#[derive(Default, Clone)]
struct Row {
    name: String,
    missing: Option<String>,
    /// Bytes of PSS per idle connection.
    idle_bytes: f64,
    idle_ok: usize,
    /// Server CPU µs per full handshake.
    handshake_us: f64,
    handshakes_ok: usize,
    /// Latency added by it: (median, p99) µs through it minus the same on a direct
    /// connection measured just before.
    added: (f64, f64),
}

enum Terminator {
    Sipstls(&'static str),
    Haproxy,
    Stunnel,
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn stop(&mut self) {
        // SAFETY: a signal to our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn which(bin: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"].iter().map(|d| Path::new(d).join(bin)).find(|p| p.exists())
}

impl Terminator {
    fn name(&self) -> String {
        match self {
            Terminator::Sipstls(b) => format!("sipstls-proxy ({b})"),
            Terminator::Haproxy => "HAProxy (send-proxy-v2-ssl)".into(),
            Terminator::Stunnel => "stunnel4 (protocol = proxy)".into(),
        }
    }

    fn start(&self, dir: &Path, certs: &Path, upstream: SocketAddr, proxy_bin: &Path) -> Result<Server, String> {
        let addr = free_addr();
        let log = std::fs::File::create(dir.join(format!("{}.log", self.name().split(' ').next().unwrap()))).unwrap();
        let mut cmd = match self {
            Terminator::Sipstls(backend) => {
                std::fs::write(
                    dir.join("tls.cfg"),
                    format!(
                        "[server:default]\nmethod = TLSv1.2+\ncertificate = {0}/server.pem\nprivate_key = {0}/server.key\n",
                        certs.display()
                    ),
                )
                .unwrap();
                let cfg = dir.join(format!("proxy-{backend}.toml"));
                std::fs::write(
                    &cfg,
                    format!(
                        "tls = \"tls.cfg\"\nbackend = \"{backend}\"\n[[listen]]\naddress = \"{addr}\"\nupstreams = [\"{upstream}\"]\n\
                         health_check = 0\n[limits]\nmax_connections = 60000\n[service]\nlog_level = \"warn\"\n"
                    ),
                )
                .unwrap();
                let mut c = Command::new(proxy_bin);
                c.arg("--config").arg(cfg);
                c
            }
            Terminator::Haproxy => {
                let bin = which("haproxy").ok_or("haproxy is not installed (apt-get install haproxy)")?;
                let cfg = dir.join("haproxy.cfg");
                std::fs::write(
                    &cfg,
                    format!(
                        "global\n  maxconn 9000\n  nbthread 2\n\ndefaults\n  mode tcp\n  timeout connect 5s\n  \
                         timeout client 1h\n  timeout server 1h\n\nfrontend sips\n  bind {addr} ssl crt {}/server-full.pem \
                         ssl-min-ver TLSv1.2\n  default_backend sip\n\nbackend sip\n  server kamailio {upstream} send-proxy-v2-ssl\n",
                        certs.display()
                    ),
                )
                .unwrap();
                let mut c = Command::new(bin);
                c.arg("-db").arg("-f").arg(cfg);
                c
            }
            Terminator::Stunnel => {
                let bin = which("stunnel4")
                    .or_else(|| which("stunnel"))
                    .ok_or("stunnel is not installed (apt-get install stunnel4)")?;
                let cfg = dir.join("stunnel.conf");
                std::fs::write(
                    &cfg,
                    format!(
                        "foreground = yes\npid =\n[sips]\naccept = {addr}\nconnect = {upstream}\ncert = {0}/server.pem\n\
                         key = {0}/server.key\nsslVersionMin = TLSv1.2\nprotocol = proxy\n",
                        certs.display()
                    ),
                )
                .unwrap();
                let mut c = Command::new(bin);
                c.arg(cfg);
                c
            }
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start: {e}"))?;
        let mut server = Server { child, addr };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(s)) = server.child.try_wait() {
                return Err(format!("exited at start ({s})"));
            }
            if Instant::now() > deadline {
                return Err("not listening in 15 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }
}

/// Builds sipstls-proxy in release (default features: rustls and OpenSSL).
fn build_proxy() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--locked", "-q", "-p", "sipstls-proxy", "--bin", "sipstls-proxy"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo build");
    assert!(status.success(), "building sipstls-proxy failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("release/sipstls-proxy")
}

/// The process and its descendants.
fn tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let p = all[i];
        if let Ok(children) = std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")) {
            all.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        }
        i += 1;
    }
    all
}

/// PSS of the tree, bytes.
fn pss(pid: u32) -> u64 {
    tree(pid)
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok())
        .map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        })
        .sum()
}

/// User + system CPU seconds of the tree.
fn cpu(pid: u32) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    tree(pid)
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .map(|s| {
            let rest: Vec<&str> = s.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
            // After the command: state(0) ... utime(11) stime(12).
            let f = |i: usize| rest.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            (f(11) + f(12)) / hz
        })
        .sum()
}

fn client(args: &[String]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .arg("--client")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("client process")
}

fn read_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    line.trim().to_string()
}

fn measure(
    t: &Terminator,
    server: &mut Server,
    certs: &Path,
    idle: usize,
    handshakes: usize,
    round_trips: usize,
    upstream: SocketAddr,
) -> Row {
    let pid = server.child.id();
    let ca = certs.join("ca.pem").display().to_string();
    let addr = server.addr.to_string();
    // Warm-up: the first connections grow pools and caches that every later one shares.
    let mut warm = client(&["handshakes".into(), addr.clone(), "200".into(), ca.clone()]);
    let _ = read_line(&mut warm);
    let _ = warm.wait();
    std::thread::sleep(Duration::from_millis(300));
    // Memory per idle connection.
    let before = pss(pid);
    let mut idle_client = client(&["idle".into(), addr.clone(), idle.to_string(), ca.clone()]);
    let opened = read_line(&mut idle_client);
    std::thread::sleep(Duration::from_millis(500));
    let after = pss(pid);
    let idle_ok: usize = opened.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    let _ = writeln!(idle_client.stdin.as_mut().unwrap(), "close");
    let _ = idle_client.wait();
    std::thread::sleep(Duration::from_millis(500));
    // CPU per full handshake.
    let c0 = cpu(pid);
    let mut hs = client(&["handshakes".into(), addr.clone(), handshakes.to_string(), ca.clone()]);
    let done = read_line(&mut hs);
    let _ = hs.wait();
    let c1 = cpu(pid);
    let handshakes_ok: usize = done.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    // Latency of 1 KiB requests, against a direct connection measured just before.
    let direct = latency_direct(upstream, round_trips);
    let mut lat = client(&["latency".into(), addr, round_trips.to_string(), ca]);
    let line = read_line(&mut lat);
    let _ = lat.wait();
    let mut through: Vec<f64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    through.sort_by(f64::total_cmp);
    let row = Row {
        name: t.name(),
        missing: None,
        idle_bytes: after.saturating_sub(before) as f64 / idle_ok.max(1) as f64,
        idle_ok,
        handshake_us: (c1 - c0) / handshakes_ok.max(1) as f64 * 1e6,
        handshakes_ok,
        added: (
            percentile(&through, 0.5) - percentile(&direct, 0.5),
            percentile(&through, 0.99) - percentile(&direct, 0.99),
        ),
    };
    eprintln!(
        "   idle: {} of {idle} open, {:.1} KB each; handshakes: {} of {handshakes}, {:.0} µs server CPU each; \
         added latency median {:.1} µs, p99 {:.1} µs",
        row.idle_ok,
        row.idle_bytes / 1000.0,
        row.handshakes_ok,
        row.handshake_us,
        row.added.0,
        row.added.1
    );
    row
}

/// Each figure's median over the runs (a terminator missing in any run is missing).
fn median_row(runs: &[Row]) -> Row {
    if let Some(missing) = runs.iter().find(|r| r.missing.is_some()) {
        return missing.clone();
    }
    let med = |f: &dyn Fn(&Row) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        percentile(&v, 0.5)
    };
    Row {
        name: runs[0].name.clone(),
        missing: None,
        idle_bytes: med(&|r| r.idle_bytes),
        idle_ok: runs.iter().map(|r| r.idle_ok).min().unwrap_or(0),
        handshake_us: med(&|r| r.handshake_us),
        handshakes_ok: runs.iter().map(|r| r.handshakes_ok).min().unwrap_or(0),
        added: (med(&|r| r.added.0), med(&|r| r.added.1)),
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn report(rows: &[Row], idle: usize, handshakes: usize, round_trips: usize, runs: usize, direct: &[f64]) -> String {
    let (dm, dp) = (percentile(direct, 0.5), percentile(direct, 0.99));
    let haproxy = rows.iter().find(|r| r.name.starts_with("HAProxy") && r.missing.is_none()).cloned();
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut out = format!(
        "# sipstls-proxy against HAProxy and stunnel\n\n\
         Measured {date} on this machine ({} CPUs, {}), loopback, TLS 1.3 with an ECDSA P-256 \
         certificate, resumption off, every terminator sending a PROXY header to the same echo upstream; \
         clients in separate processes. Each figure is the median of {runs} runs; the open and ok counts are the \
         smallest of the runs.\n\n\
         Command: `cargo run --release -p sipstls-proxy --example proxy-bench -- --idle {idle} --handshakes {handshakes} \
         --round-trips {round_trips} --runs {runs} --markdown docs/proxy-bench.md`\n\n\
         | terminator | memory per idle connection ({idle}, process tree PSS) | server CPU per full handshake ({handshakes}) \
         | added latency, 1 KiB request: median / p99 | vs HAProxy: memory / CPU |\n|---|---:|---:|---:|---:|\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );
    for r in rows {
        if let Some(why) = &r.missing {
            out.push_str(&format!("| {} | not measured: {why} | | | |\n", r.name));
            continue;
        }
        let ratio = haproxy
            .as_ref()
            .map(|h| format!("{:.2}x / {:.2}x", r.idle_bytes / h.idle_bytes, r.handshake_us / h.handshake_us))
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "| {} | {:.1} KB ({} open) | {:.0} µs ({} ok) | +{:.1} / +{:.1} µs | {ratio} |\n",
            r.name,
            r.idle_bytes / 1000.0,
            r.idle_ok,
            r.handshake_us,
            r.handshakes_ok,
            r.added.0,
            r.added.1,
        ));
    }
    out.push_str(&format!(
        "\nAdded latency: {round_trips} round trips of a 1 KiB request through the terminator, minus the same on a \
         direct TCP connection to the upstream measured just before (at the start of the run: median {dm:.1} µs, \
         p99 {dp:.1} µs).\n"
    ));
    out
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
        })
        .unwrap_or_default()
}

fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit on this process with a valid struct.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// The echo upstream: reads a PROXY header (v2 binary or v1 text), then answers each read
/// with `UP:` and the data. A thread per connection.
fn start_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    let _ = conn.set_nodelay(true);
                    let mut got = Vec::new();
                    let mut buf = [0u8; 4096];
                    // The header.
                    loop {
                        let Ok(n @ 1..) = conn.read(&mut buf) else { return };
                        got.extend_from_slice(&buf[..n]);
                        if got.len() >= 16 && got[..12] == *b"\r\n\r\n\0\r\nQUIT\n" {
                            let len = 16 + u16::from_be_bytes([got[14], got[15]]) as usize;
                            if got.len() >= len {
                                got.drain(..len);
                                break;
                            }
                        } else if got.starts_with(b"PROXY ") {
                            if let Some(end) = got.windows(2).position(|w| w == b"\r\n") {
                                got.drain(..end + 2);
                                break;
                            }
                        } else if got.len() >= 16 {
                            return;
                        }
                    }
                    if !got.is_empty() && conn.write_all(&[b"UP:", &got[..]].concat()).is_err() {
                        return;
                    }
                    let mut out = Vec::with_capacity(4096 + 3);
                    while let Ok(n @ 1..) = conn.read(&mut buf) {
                        out.clear();
                        out.extend_from_slice(b"UP:");
                        out.extend_from_slice(&buf[..n]);
                        if conn.write_all(&out).is_err() {
                            return;
                        }
                    }
                })
                .unwrap();
        }
    });
    addr
}

/// Round trips of a 1 KiB request on a direct TCP connection to the upstream (with a
/// PROXY v2 LOCAL header first), µs, sorted.
fn latency_direct(upstream: SocketAddr, n: usize) -> Vec<f64> {
    let mut s = TcpStream::connect(upstream).unwrap();
    s.set_nodelay(true).unwrap();
    let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    s.write_all(&local).unwrap();
    let mut v = round_trips(&mut s, n);
    v.sort_by(f64::total_cmp);
    v
}

/// `n` round trips of a 1 KiB request (after 50 unmeasured), µs each.
fn round_trips<S: Read + Write>(s: &mut S, n: usize) -> Vec<f64> {
    let req = vec![b'x'; REQUEST];
    let mut back = vec![0u8; REQUEST + 3];
    let mut out = Vec::with_capacity(n);
    for i in 0..n + 50 {
        let t = Instant::now();
        s.write_all(&req).unwrap();
        s.read_exact(&mut back).unwrap();
        if i >= 50 {
            out.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    out
}

/// A client process: `--client idle|handshakes|latency ADDR N CA`.
fn client_main(a: &[String]) {
    raise_nofile();
    let (mode, addr, n) = (a[0].as_str(), a[1].parse::<SocketAddr>().unwrap(), a[2].parse::<usize>().unwrap());
    let roots = Certificate::all_from_pem(&std::fs::read(&a[3]).unwrap()).unwrap();
    let cfg = DomainConfig::client(roots).with_version(ProtocolVersion::Tls13).with_resumption(Resumption::DISABLED);
    let mut table = DomainTable::new(sipstls::backend("rustls").unwrap());
    table.add_client_default(&cfg).unwrap();
    let table = Arc::new(table);
    let connect = |table: &DomainTable| -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr)?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
        let session = table.connect(&ClientTarget::addr_name(addr, SERVER_NAME)).map_err(std::io::Error::other)?;
        let mut tls = TlsStream::new(session, tcp);
        tls.handshake()?;
        Ok(tls)
    };
    match mode {
        "idle" => {
            let next = AtomicUsize::new(0);
            let conns = std::sync::Mutex::new(Vec::with_capacity(n));
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        while next.fetch_add(1, Ordering::Relaxed) < n {
                            if let Ok(t) = connect(&table) {
                                conns.lock().unwrap().push(t);
                            }
                        }
                    });
                }
            });
            let conns = conns.into_inner().unwrap();
            println!("opened {}", conns.len());
            std::io::stdout().flush().unwrap();
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            drop(conns);
        }
        "handshakes" => {
            let (next, ok) = (AtomicUsize::new(0), AtomicUsize::new(0));
            std::thread::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|| {
                        while next.fetch_add(1, Ordering::Relaxed) < n {
                            let done = connect(&table).and_then(|mut t| {
                                t.write_all(b"ping")?;
                                let mut back = [0u8; 7];
                                t.read_exact(&mut back)?;
                                Ok(back == *b"UP:ping")
                            });
                            if matches!(done, Ok(true)) {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    });
                }
            });
            println!("ok {}", ok.load(Ordering::Relaxed));
        }
        "latency" => {
            let mut t = connect(&table).expect("connect");
            let v = round_trips(&mut t, n);
            let s: Vec<String> = v.iter().map(|x| format!("{x:.2}")).collect();
            println!("us {}", s.join(" "));
        }
        m => panic!("unknown client mode {m}"),
    }
}
