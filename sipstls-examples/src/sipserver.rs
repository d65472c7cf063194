//! The SIP server example: OPTIONS, REGISTER (a registrar in shared memory) and MESSAGE
//! relayed to a next hop over TLS, in one of two process models:
//!
//! * `--model confined --workers N` (the default): one [`TlsManager`] process owns every TLS
//!   session, N forked worker processes speak plaintext SIP on socketpairs and ask the
//!   manager for the outbound TLS connection to the next hop;
//! * `--model single`: one process terminates TLS itself, a thread per connection.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sipstls::{Certificate, ClientDomain, DomainConfig, DomainTable, TlsStream};
use sipstls_manager::{Connection, ListenerConfig, ManagerConfig, ManagerEvent, TlsManager, Worker};

use crate::cli::ServerOptions;
use crate::registrar::Registrar;
use crate::server::{self, MAX_CONNECTIONS};
use crate::sip::{self, Frame, Message};

/// Time a relayed request may wait for its final response.
pub const RELAY_TIMEOUT: Duration = Duration::from_secs(5);

/// How the server spreads TLS over processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Model {
    /// One TLS manager process, N plaintext worker processes.
    Confined,
    /// One process, a thread per connection, TLS terminated in each thread.
    Single,
}

/// Options of `sip-server`: those of [`ServerOptions`] plus the model and the next hop.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    about = "A SIP-over-TLS server: OPTIONS, REGISTER, and MESSAGE relayed over TLS to a next hop",
    long_about = None,
    after_help = crate::cli::SIGNALS
)]
pub struct SipServerOptions {
    /// Listener, certificates, backend.
    #[command(flatten)]
    pub base: ServerOptions,
    /// How TLS is spread over processes.
    #[arg(long, value_enum, default_value_t = Model::Confined)]
    pub model: Model,
    /// Worker processes of the confined model, 1 to 64.
    #[arg(long, default_value_t = 4, value_parser = workers, value_name = "N")]
    pub workers: usize,
    /// Where MESSAGE requests are relayed over TLS.
    #[arg(long, requires = "next_hop_name", value_name = "ADDR")]
    pub next_hop: Option<SocketAddr>,
    /// The name the next hop's certificate must carry (sent as SNI too).
    #[arg(long, requires = "next_hop", value_name = "NAME")]
    pub next_hop_name: Option<String>,
    /// Trust anchors for the next hop (default: --ca).
    #[arg(long, requires = "next_hop", value_name = "FILE")]
    pub next_hop_ca: Option<std::path::PathBuf>,
}

fn workers(v: &str) -> Result<usize, String> {
    match v.parse() {
        Ok(n) if (1..=64).contains(&n) => Ok(n),
        _ => Err("1 to 64".into()),
    }
}

impl SipServerOptions {
    /// Parses `args` (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        crate::cli::parse_with(args, Self::check)
    }

    /// Parses the process's arguments for the server `prog` (exits on `--help` or an error).
    pub fn from_env(prog: &'static str) -> Self {
        crate::cli::from_env(prog, Self::check)
    }

    /// The rules that span options: those of [`ServerOptions::check`], and trust anchors
    /// for the next hop.
    pub fn check(mut self) -> Result<Self, String> {
        self.base = self.base.check()?;
        let b = &self.base;
        if self.next_hop.is_some() && self.next_hop_ca.is_none() && b.ca.is_none() && b.tls_cfg.is_none() {
            return Err("--next-hop needs --next-hop-ca or --ca (trust anchors for the next hop)".into());
        }
        Ok(self)
    }

    /// The domain table: the server domain and, with a next hop, the client domain.
    pub fn table(&self) -> Result<DomainTable, String> {
        let mut table = self.base.table()?;
        if self.next_hop.is_some() && (self.next_hop_ca.is_some() || self.base.tls_cfg.is_none()) {
            let ca = self.next_hop_ca.as_ref().or(self.base.ca.as_ref()).ok_or("no trust anchors for the next hop")?;
            let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
            let roots = Certificate::all_from_pem(&pem).map_err(|e| e.to_string())?;
            table.add_client_default(&DomainConfig::client(roots)).map_err(|e| e.to_string())?;
        }
        Ok(table)
    }
}

/// Sends a request to the next hop and returns its final response.
pub trait Relay: Send + Sync {
    /// Forwards `request` (already carrying our Via with `branch`).
    fn relay(&self, request: &[u8], branch: &str) -> io::Result<Message>;
}

/// What the SIP logic needs: the registrar, the relay, and a tag naming this worker.
pub struct SipContext {
    /// Shared bindings.
    pub registrar: Registrar,
    /// The next hop, if configured.
    pub relay: Option<Box<dyn Relay>>,
    /// Added to responses as `X-Worker`, so tests can see who answered.
    pub worker_tag: String,
    /// Our address, for the Via we add when relaying.
    pub via_host: String,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The URI inside a name-addr (`"Bob" <sip:bob@h>;tag=1` → `sip:bob@h`).
fn uri_of(v: &str) -> &str {
    match (v.find('<'), v.find('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v.split(';').next().unwrap_or(v).trim(),
    }
}

fn serialize(start_line: &str, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{start_line}\r\n");
    for (n, v) in headers.iter().filter(|(n, _)| !n.eq_ignore_ascii_case("content-length") && n != "l") {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

impl SipContext {
    fn ok(&self, req: &Message, extra: &[(&str, &str)]) -> Vec<u8> {
        let mut headers = vec![("X-Worker", self.worker_tag.as_str())];
        headers.extend_from_slice(extra);
        sip::response(req, 200, "OK", &headers, None)
    }

    /// The response to one request (`None` for ACK and responses).
    pub fn handle(&self, req: &Message) -> Option<Vec<u8>> {
        let method = req.method()?;
        Some(match method {
            "OPTIONS" => self.ok(req, &[("Allow", "OPTIONS, REGISTER, MESSAGE")]),
            "REGISTER" => self.register(req),
            "MESSAGE" => self.message(req),
            "ACK" => return None,
            _ => sip::response(req, 501, "Not Implemented", &[("X-Worker", &self.worker_tag)], None),
        })
    }

    fn register(&self, req: &Message) -> Vec<u8> {
        let Some(aor) = req.header("to").map(uri_of) else {
            return sip::response(req, 400, "Missing To", &[], None);
        };
        let default_expires = req.header("expires").and_then(|e| e.trim().parse::<u32>().ok()).unwrap_or(3600);
        let t = now();
        for contact in req.header_all("contact").flat_map(|c| c.split(',')).map(str::trim) {
            if contact == "*" {
                self.registrar.remove_all(aor);
                continue;
            }
            let expires = contact
                .split(';')
                .find_map(|p| p.trim().strip_prefix("expires="))
                .and_then(|e| e.parse().ok())
                .unwrap_or(default_expires)
                .min(86_400);
            let uri = format!("<{}>", uri_of(contact));
            if let Err(e) = self.registrar.register(aor, &uri, expires, t) {
                return sip::response(req, 503, &e.to_string(), &[("X-Worker", &self.worker_tag)], None);
            }
        }
        let bindings: Vec<String> =
            self.registrar.lookup(aor, t).into_iter().map(|(c, left)| format!("{c};expires={left}")).collect();
        let contacts = bindings.join(", ");
        if contacts.is_empty() {
            self.ok(req, &[])
        } else {
            self.ok(req, &[("Contact", &contacts)])
        }
    }

    fn message(&self, req: &Message) -> Vec<u8> {
        let Some(relay) = &self.relay else {
            let body = (req.header("content-type").unwrap_or("text/plain"), &req.body[..]);
            return sip::response(req, 200, "OK", &[("X-Worker", &self.worker_tag)], Some(body));
        };
        let hops: u32 = req.header("max-forwards").and_then(|m| m.trim().parse().ok()).unwrap_or(70);
        if hops == 0 {
            return sip::response(req, 483, "Too Many Hops", &[], None);
        }
        let mut rnd = [0u8; 8];
        let branch = match sipstls::default_backend().fill_random(&mut rnd) {
            Ok(()) => format!("z9hG4bK-sipstls-{}", u64::from_be_bytes(rnd)),
            Err(_) => return sip::response(req, 500, "No Randomness", &[], None),
        };
        let mut headers = vec![("Via".to_owned(), format!("SIP/2.0/TLS {};branch={branch}", self.via_host))];
        for (n, v) in &req.headers {
            if n.eq_ignore_ascii_case("max-forwards") {
                headers.push((n.clone(), (hops - 1).to_string()));
            } else {
                headers.push((n.clone(), v.clone()));
            }
        }
        let forwarded = serialize(&req.start_line, &headers, &req.body);
        match relay.relay(&forwarded, &branch) {
            Ok(resp) => {
                // Drop our Via (the first) and pass the response back.
                let mut first_via = true;
                let kept: Vec<(String, String)> = resp
                    .headers
                    .iter()
                    .filter(|(n, _)| {
                        let via = n.eq_ignore_ascii_case("via") || n == "v";
                        !(via && std::mem::replace(&mut first_via, false))
                    })
                    .cloned()
                    .collect();
                serialize(&resp.start_line, &kept, &resp.body)
            }
            Err(e) => sip::response(req, 502, &format!("Next Hop Failed ({})", e.kind()), &[], None),
        }
    }
}

/// Serves SIP on one plaintext (or TLS) stream until the peer closes: requests, CRLF
/// keep-alive pings (answered with a pong, RFC 5626) and pongs.
pub fn serve_sip<S: Read + Write>(stream: &mut S, ctx: &SipContext) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match sip::parse(&buf) {
            Ok(Frame::Message(msg, used)) => {
                buf.drain(..used);
                if let Some(resp) = ctx.handle(&msg) {
                    stream.write_all(&resp)?;
                }
            }
            Ok(Frame::Ping(used)) => {
                buf.drain(..used);
                stream.write_all(b"\r\n")?;
            }
            Ok(Frame::Pong(used)) => {
                buf.drain(..used);
            }
            Ok(Frame::Incomplete) => {
                let n = stream.read(&mut chunk)?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    }
}

/// Writes `request` and reads until the final response carrying `branch` in its top Via.
fn exchange<S: Read + Write>(s: &mut S, pending: &mut Vec<u8>, request: &[u8], branch: &str) -> io::Result<Message> {
    s.write_all(request)?;
    let deadline = Instant::now() + RELAY_TIMEOUT;
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match sip::parse(pending) {
            Ok(Frame::Message(m, used)) => {
                pending.drain(..used);
                let ours = m.header("via").is_some_and(|v| v.contains(branch));
                let final_response = m.start_line.split(' ').nth(1).and_then(|c| c.parse::<u16>().ok()) >= Some(200);
                if m.method().is_none() && ours && final_response {
                    return Ok(m);
                }
            }
            Ok(Frame::Ping(used) | Frame::Pong(used)) => {
                pending.drain(..used);
            }
            Ok(Frame::Incomplete) => {
                if Instant::now() > deadline {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "no final response"));
                }
                let n = s.read(&mut chunk)?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "next hop closed"));
                }
                pending.extend_from_slice(&chunk[..n]);
            }
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    }
}

/// The confined model's relay: the manager makes (or reuses) the TLS connection.
struct ManagerRelay {
    worker: Arc<Worker>,
    target: sipstls::ClientTarget,
    /// Serialises relays of this worker on the shared connection; keeps unread bytes.
    state: Mutex<(u64, Vec<u8>)>,
}

impl Relay for ManagerRelay {
    fn relay(&self, request: &[u8], branch: &str) -> io::Result<Message> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let conn = self.worker.connect(&self.target, RELAY_TIMEOUT).map_err(io::Error::other)?;
        if conn.meta.id != state.0 {
            *state = (conn.meta.id, Vec::new());
        }
        conn.stream().set_read_timeout(Some(RELAY_TIMEOUT))?;
        let mut c: &Connection = &conn;
        exchange(&mut c, &mut state.1, request, branch)
    }
}

/// The single-process model's relay: its own TLS connection, reconnected when it breaks.
struct DirectRelay {
    domain: Arc<dyn ClientDomain>,
    addr: SocketAddr,
    name: String,
    conn: Mutex<Option<(TlsStream<TcpStream>, Vec<u8>)>>,
}

impl Relay for DirectRelay {
    fn relay(&self, request: &[u8], branch: &str) -> io::Result<Message> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            let tcp = TcpStream::connect_timeout(&self.addr, RELAY_TIMEOUT)?;
            tcp.set_read_timeout(Some(RELAY_TIMEOUT))?;
            tcp.set_write_timeout(Some(RELAY_TIMEOUT))?;
            let mut tls = TlsStream::connect(&*self.domain, &self.name, tcp)?;
            tls.handshake()?;
            *guard = Some((tls, Vec::new()));
        }
        let (tls, pending) = guard.as_mut().expect("connected above");
        let r = exchange(tls, pending, request, branch);
        if r.is_err() {
            *guard = None;
        }
        r
    }
}

/// Runs the SIP server until killed or `--max-seconds`.
pub fn run(prog: &str, opts: &SipServerOptions) -> Result<(), String> {
    match opts.model {
        Model::Confined => run_confined(prog, opts),
        Model::Single => run_single(prog, opts),
    }
}

fn run_single(prog: &str, opts: &SipServerOptions) -> Result<(), String> {
    // The relay keeps the next hop's client domain of the first table (its connection is
    // reused); reloads change the server domains.
    let table = opts.table()?;
    let relay: Option<Box<dyn Relay>> = match (opts.next_hop, &opts.next_hop_name) {
        (Some(addr), Some(name)) => {
            let (domain, _) =
                table.client_for(&sipstls::ClientTarget::addr_name(addr, name)).map_err(|e| e.to_string())?;
            Some(Box::new(DirectRelay { domain, addr, name: name.clone(), conn: Mutex::new(None) }))
        }
        _ => None,
    };
    let ctx = Arc::new(SipContext {
        registrar: Registrar::new_shared()?,
        relay,
        worker_tag: format!("single pid={}", std::process::id()),
        via_host: opts.base.listen.to_string(),
    });
    let handler: server::Handler = Arc::new(move |tls: &mut TlsStream<TcpStream>| {
        serve_sip(tls, &ctx)?;
        tls.shutdown()
    });
    let o = opts.clone();
    server::serve_table(prog, &opts.base, Arc::new(move || o.table()), handler)
}

fn run_confined(prog: &str, opts: &SipServerOptions) -> Result<(), String> {
    // Everything the workers share is made before fork: the registrar and the control
    // channels. The TLS library is not touched until the workers exist, so no TLS state
    // (and no thread) is ever forked.
    let registrar = Registrar::new_shared()?;
    let mut manager_ends: Vec<OwnedFd> = Vec::new();
    let mut pids = Vec::new();
    for index in 0..opts.workers {
        let (m, w) = sipstls_manager::channel().map_err(|e| format!("socketpair: {e}"))?;
        // SAFETY: the process is single-threaded here (no runtime, no TLS library, no
        // helper thread has been started yet), so the child starts from a consistent state.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("fork: {}", io::Error::last_os_error()));
        }
        if pid == 0 {
            drop(manager_ends);
            drop(m);
            // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag of this process: if the
            // manager dies, the kernel kills this worker too.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            let code = worker_main(index, w, registrar.clone(), opts);
            // SAFETY: ending the worker without the parent's exit handlers.
            unsafe { libc::_exit(code) };
        }
        drop(w);
        manager_ends.push(m);
        pids.push(pid);
    }
    let table = opts.table()?;
    let backend = table.backend().info();
    let manager = TlsManager::new(Arc::new(table), ManagerConfig::default()).map_err(|e| e.to_string())?;
    let events = manager.events();
    for m in manager_ends {
        manager.add_worker(m).map_err(|e| e.to_string())?;
    }
    let local =
        manager.listen(ListenerConfig::workers(opts.base.listen)).map_err(|e| format!("{}: {e}", opts.base.listen))?;
    eprintln!(
        "{prog}: listening on {local} with {} ({}), model confined, {} worker processes: pids {pids:?}",
        backend.name, backend.library, opts.workers
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| format!("signal handler: {e}"))?;
    }
    let signals = server::Signals::register()?;
    let o = opts.clone();
    let build: server::TableBuilder = Arc::new(move || o.table());
    let started = Instant::now();
    loop {
        match events.recv_timeout(Duration::from_millis(200)) {
            Ok(ManagerEvent::WorkerLost { worker, open_connections }) => eprintln!(
                "{prog}: worker {worker} (pid {}) lost; its {open_connections} connection(s) closed with close_notify",
                pids[worker]
            ),
            Ok(ManagerEvent::Closed { conn, worker, reason }) if reason.is_failure() => {
                eprintln!("{prog}: connection {conn} (worker {worker:?}) ended: {reason}")
            }
            _ => {}
        }
        signals.poll(prog, &build, |t| manager.reload(t), || manager.table());
        // Reap workers that ended.
        // SAFETY: non-blocking wait for any of our children.
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
        let expired = opts.base.max_seconds.is_some_and(|s| started.elapsed() >= Duration::from_secs(s));
        if expired || stop.load(Ordering::Relaxed) {
            eprintln!("{prog}: {}, stopping", if expired { "--max-seconds reached" } else { "signalled" });
            drop(manager); // closes the control channels: workers see the manager gone
            for &pid in &pids {
                // SAFETY: signalling and then reaping our own children; a bounded wait.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let deadline = Instant::now() + Duration::from_secs(2);
            let mut left = pids.len();
            while left > 0 && Instant::now() < deadline {
                // SAFETY: non-blocking wait for any of our children.
                match unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } {
                    p if p > 0 => left -= 1,
                    0 => std::thread::sleep(Duration::from_millis(10)),
                    _ => break, // no children left
                }
            }
            return Ok(());
        }
    }
}

/// A worker process: takes connections from the manager, a thread each.
fn worker_main(index: usize, control: OwnedFd, registrar: Registrar, opts: &SipServerOptions) -> i32 {
    let worker = match Worker::new(control) {
        Ok(w) => Arc::new(w),
        Err(e) => {
            eprintln!("worker {index}: {e}");
            return 1;
        }
    };
    let relay: Option<Box<dyn Relay>> = opts.next_hop.map(|dest| {
        let mut target = sipstls::ClientTarget::addr(dest);
        target.server_name = opts.next_hop_name.clone();
        Box::new(ManagerRelay { worker: worker.clone(), target, state: Mutex::new((0, Vec::new())) }) as Box<dyn Relay>
    });
    let ctx = Arc::new(SipContext {
        registrar,
        relay,
        worker_tag: format!("{index} pid={}", std::process::id()),
        via_host: opts.base.listen.to_string(),
    });
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let conn = match worker.accept() {
            Ok(c) => c,
            Err(_) => return 0, // the manager is gone
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            continue; // dropping it closes it
        }
        let (ctx, active) = (ctx.clone(), active.clone());
        std::thread::spawn(move || {
            let _ = conn.stream().set_read_timeout(Some(server::IDLE_TIMEOUT));
            let mut c: &Connection = &conn;
            if let Err(e) = serve_sip(&mut c, &ctx) {
                eprintln!("worker {index}: connection {}: {e}", conn.meta.id);
            }
            active.fetch_sub(1, Ordering::SeqCst);
        });
    }
}
