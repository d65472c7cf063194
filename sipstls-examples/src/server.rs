//! A threaded TLS listener for the examples: one thread per connection, bounded.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sipstls::{DomainTable, ReloadableTable, TlsInfo, TlsStream};

use crate::cli::ServerOptions;
use crate::sip::{self, Frame};

/// Connections served at once before new ones are refused.
pub const MAX_CONNECTIONS: usize = 1024;
/// Time allowed for a TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle time after which a connection is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// What a server does with an established connection.
pub type Handler = Arc<dyn Fn(&mut TlsStream<TcpStream>) -> io::Result<()> + Send + Sync>;

/// One line describing an established session, for logs.
pub fn describe(info: &TlsInfo) -> String {
    format!(
        "{} {} group={} sni={} alpn={} resumed={} peer={}",
        info.version,
        info.cipher_suite,
        info.group.as_deref().unwrap_or("-"),
        info.sni.as_deref().unwrap_or("-"),
        info.alpn.as_deref().map(String::from_utf8_lossy).unwrap_or_default(),
        info.resumed,
        info.peer.as_ref().and_then(|p| p.subject_cn.as_deref()).unwrap_or("-"),
    )
}

/// Per-domain statistics and the live sessions of `table`, as text (what SIGUSR1 prints).
pub fn stats_report(table: &DomainTable) -> String {
    let mut out = format!("statistics ({}):\n", table.backend().info().name);
    for d in table.stats() {
        let failed: Vec<String> = d.failed.iter().filter(|(_, n)| *n > 0).map(|(r, n)| format!("{r}={n}")).collect();
        out += &format!(
            "  {}: handshakes ok={} resumed={} failed={} [{}] active={} tls bytes in={} out={}\n",
            d.label,
            d.handshakes_ok,
            d.resumed,
            d.failed_total(),
            failed.join(" "),
            d.active,
            d.bytes.tls_in,
            d.bytes.tls_out
        );
    }
    for (label, s) in table.sessions() {
        let (version, cipher, sni) = match &s.established {
            Some(e) => (e.version.name(), e.cipher_suite.as_str(), e.sni.as_deref().unwrap_or("-")),
            None => ("handshaking", "-", "-"),
        };
        let peer = s.peer.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        out += &format!(
            "  session {} [{label}] peer={peer} sni={sni} {version} {cipher} age={:.1}s\n",
            s.id,
            s.age.as_secs_f64()
        );
    }
    out
}

/// Builds the domain table from the configuration files, at start and on SIGHUP.
pub type TableBuilder = Arc<dyn Fn() -> Result<DomainTable, String> + Send + Sync>;

/// Flags set by SIGHUP (reload) and SIGUSR1 (statistics).
#[derive(Clone)]
pub struct Signals {
    /// SIGHUP arrived.
    pub reload: Arc<AtomicBool>,
    /// SIGUSR1 arrived.
    pub report: Arc<AtomicBool>,
}

impl Signals {
    /// Registers the flags.
    pub fn register() -> Result<Signals, String> {
        let s = Signals { reload: Arc::new(AtomicBool::new(false)), report: Arc::new(AtomicBool::new(false)) };
        signal_hook::flag::register(signal_hook::consts::SIGHUP, s.reload.clone())
            .and_then(|_| signal_hook::flag::register(signal_hook::consts::SIGUSR1, s.report.clone()))
            .map_err(|e| format!("signal handler: {e}"))?;
        Ok(s)
    }

    /// Acts on the signals that arrived since the last call: on SIGHUP builds a new table
    /// with `build` and hands it to `install` (a table that fails to build is reported and
    /// the current one stays); on SIGUSR1 prints `current()`'s statistics.
    pub fn poll(
        &self,
        prog: &str,
        build: &TableBuilder,
        install: impl FnOnce(DomainTable),
        current: impl FnOnce() -> Arc<DomainTable>,
    ) {
        if self.reload.swap(false, Ordering::Relaxed) {
            match build() {
                Ok(t) => {
                    install(t);
                    eprintln!("{prog}: reloaded the TLS configuration");
                }
                Err(e) => eprintln!("{prog}: reload failed, keeping the current TLS configuration: {e}"),
            }
        }
        if self.report.swap(false, Ordering::Relaxed) {
            eprint!("{}", stats_report(&current()));
        }
    }
}

/// Runs the server described by `opts` until killed (or `--max-seconds`).
pub fn serve(prog: &str, opts: &ServerOptions, handler: Handler) -> Result<(), String> {
    let o = opts.clone();
    serve_table(prog, opts, Arc::new(move || o.table()), handler)
}

/// Runs a server for the domains `build` makes on `opts.listen` until killed (or
/// `--max-seconds`). SIGHUP calls `build` again and swaps the table (connections open
/// keep their domains); SIGUSR1 prints statistics.
pub fn serve_table(prog: &str, opts: &ServerOptions, build: TableBuilder, handler: Handler) -> Result<(), String> {
    let table = Arc::new(ReloadableTable::new(build()?));
    let backend = table.current().backend().clone();
    let listener = TcpListener::bind(opts.listen).map_err(|e| format!("{}: {e}", opts.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    eprintln!("{prog}: listening on {local} with {} ({})", backend.info().name, backend.info().library);
    if let Some(secs) = opts.max_seconds {
        let prog = prog.to_owned();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(secs));
            eprintln!("{prog}: --max-seconds reached, exiting");
            std::process::exit(0);
        });
    }
    let signals = Signals::register()?;
    {
        let (table, prog) = (table.clone(), prog.to_owned());
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(100));
            signals.poll(&prog, &build, |t| drop(table.reload(t)), || table.current());
        });
    }
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let tcp = match conn {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{prog}: accept: {e}");
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            eprintln!("{prog}: too many connections, refusing one");
            continue;
        }
        let (table, active, prog, handler) = (table.clone(), active.clone(), prog.to_owned(), handler.clone());
        std::thread::spawn(move || {
            let peer = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            if let Err(e) = connection(&table, tcp, &handler) {
                let typed = sipstls::tls_error(&e).map(|t| format!(" [{t:?}]")).unwrap_or_default();
                eprintln!("{prog}: {peer}: {e}{typed}");
            }
            active.fetch_sub(1, Ordering::SeqCst);
        });
    }
    Ok(())
}

fn connection(table: &ReloadableTable, tcp: TcpStream, handler: &Handler) -> io::Result<()> {
    let local = tcp.local_addr()?;
    let peer = tcp.peer_addr().ok();
    tcp.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    tcp.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    tcp.set_nodelay(true)?;
    let session = table.accept(local, peer).map_err(io::Error::other)?;
    let mut tls = TlsStream::new(session, tcp);
    // Wall time for the whole handshake: a peer trickling bytes cannot stretch it.
    tls.handshake_within(HANDSHAKE_TIMEOUT)?;
    if let Some(info) = tls.info() {
        eprintln!("established: {}", describe(&info));
    }
    tls.get_ref().set_read_timeout(Some(IDLE_TIMEOUT))?;
    handler(&mut tls)
}

/// Echoes every byte back until the peer closes.
pub fn echo(tls: &mut TlsStream<TcpStream>) -> io::Result<()> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match tls.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => r?,
        };
        if n == 0 {
            return tls.shutdown();
        }
        tls.write_all(&buf[..n])?;
    }
}

/// Answers SIP requests (OPTIONS, MESSAGE; 501 otherwise) and CRLF keep-alives.
pub fn sip_responder(tls: &mut TlsStream<TcpStream>) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match sip::parse(&buf) {
            Ok(Frame::Message(msg, used)) => {
                buf.drain(..used);
                eprintln!("request: {}", msg.start_line);
                if let Some(resp) = sip::answer(&msg) {
                    tls.write_all(&resp)?;
                }
            }
            Ok(Frame::Ping(used)) => {
                buf.drain(..used);
                tls.write_all(b"\r\n")?;
            }
            Ok(Frame::Pong(used)) => {
                buf.drain(..used);
            }
            Ok(Frame::Incomplete) => {
                let n = match tls.read(&mut chunk) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => r?,
                };
                if n == 0 {
                    return tls.shutdown();
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) => {
                let _ = tls.shutdown();
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }
}
