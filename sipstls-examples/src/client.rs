//! The SIP client example: sends OPTIONS, MESSAGE or REGISTER over TLS and returns the
//! responses; optionally a CRLF keep-alive ping first (RFC 5626), which must be answered
//! with a pong.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sipstls::{Certificate, DomainConfig, Identity, ProtocolVersion, TlsInfo, TlsStream};

use crate::sip::{self, Frame, Message};

/// Options of `sip-client`.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `--backend NAME`.
    pub backend: Option<String>,
    /// `--connect ADDR` (required).
    pub connect: SocketAddr,
    /// `--name NAME`: SNI and the name the server's certificate must carry (default: the IP).
    pub name: Option<String>,
    /// `--ca FILE` (required): trust anchors.
    pub ca: PathBuf,
    /// `--cert FILE --key FILE`: a client certificate.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// `--tls 1.2|1.3`: only this version (default: 1.2 or 1.3).
    pub tls: Option<ProtocolVersion>,
    /// `--method OPTIONS|MESSAGE|REGISTER` (default OPTIONS).
    pub method: String,
    /// `--ruri URI` (default `sip:ADDR;transport=tls`).
    pub ruri: Option<String>,
    /// `--to URI` (default: the request URI).
    pub to: Option<String>,
    /// `--body TEXT` for MESSAGE.
    pub body: String,
    /// `--contact URI` for REGISTER.
    pub contact: Option<String>,
    /// `--count N`: requests on the one connection (default 1).
    pub count: usize,
    /// `--ping`: send a CRLF keep-alive first and require the pong.
    pub ping: bool,
    /// `--timeout SECS`: for the handshake and each response (default 5).
    pub timeout: Duration,
    /// `--handshake-only`: connect, complete the handshake, close (for non-SIP peers).
    pub handshake_only: bool,
    /// `--echo-peer`: the peer echoes (a test server such as `gnutls-serv --echo`): the
    /// request coming back counts as the answer.
    pub echo_peer: bool,
}

/// The command line of `sip-client`, as clap reads it.
#[derive(Debug, clap::Parser)]
#[command(about = "Sends SIP requests over TLS and prints the responses")]
struct ClientArgs {
    /// Backend name (default: the build's default backend).
    #[arg(long)]
    backend: Option<String>,
    /// The server's address.
    #[arg(long, value_name = "ADDR")]
    connect: SocketAddr,
    /// SNI and the name the server's certificate must carry (default: the IP).
    #[arg(long)]
    name: Option<String>,
    /// Trust anchors (PEM).
    #[arg(long, value_name = "FILE")]
    ca: PathBuf,
    /// A client certificate chain (PEM).
    #[arg(long, requires = "key", value_name = "FILE")]
    cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, requires = "cert", value_name = "FILE")]
    key: Option<PathBuf>,
    /// Only this TLS version: 1.2 or 1.3 (default: either).
    #[arg(long, value_parser = crate::cli::parse_version, value_name = "VERSION")]
    tls: Option<ProtocolVersion>,
    /// OPTIONS, MESSAGE or REGISTER.
    #[arg(long, default_value = "OPTIONS")]
    method: String,
    /// The request URI (default: sip:ADDR;transport=tls).
    #[arg(long, value_name = "URI")]
    ruri: Option<String>,
    /// The To URI (default: the request URI).
    #[arg(long, value_name = "URI")]
    to: Option<String>,
    /// The body of a MESSAGE.
    #[arg(long, default_value = "")]
    body: String,
    /// The Contact of a REGISTER.
    #[arg(long, value_name = "URI")]
    contact: Option<String>,
    /// Requests on the one connection, 1 to 10000.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    count: u16,
    /// Send a CRLF keep-alive first and require the pong.
    #[arg(long)]
    ping: bool,
    /// Seconds for the handshake and for each response.
    #[arg(long, default_value_t = 5, value_name = "SECS")]
    timeout: u64,
    /// Connect, complete the handshake, close (for peers that are not SIP servers).
    #[arg(long)]
    handshake_only: bool,
    /// The peer echoes (a test server such as `gnutls-serv --echo`): the request coming
    /// back counts as the answer.
    #[arg(long)]
    echo_peer: bool,
}

impl From<ClientArgs> for ClientOptions {
    fn from(a: ClientArgs) -> Self {
        ClientOptions {
            backend: a.backend,
            connect: a.connect,
            name: a.name,
            ca: a.ca,
            identity: a.cert.zip(a.key),
            tls: a.tls,
            method: a.method.to_ascii_uppercase(),
            ruri: a.ruri,
            to: a.to,
            body: a.body,
            contact: a.contact,
            count: usize::from(a.count),
            ping: a.ping,
            timeout: Duration::from_secs(a.timeout),
            handshake_only: a.handshake_only,
            echo_peer: a.echo_peer,
        }
    }
}

impl ClientOptions {
    /// Parses `args` (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        crate::cli::parse_with(args, Ok).map(|a: ClientArgs| a.into())
    }

    /// Parses the process's arguments for the client `prog` (exits on `--help` or an error).
    pub fn from_env(prog: &'static str) -> Self {
        crate::cli::from_env(prog, Ok::<ClientArgs, String>).into()
    }

    fn request(&self, seq: usize) -> Vec<u8> {
        let ruri = self.ruri.clone().unwrap_or_else(|| format!("sip:{};transport=tls", self.connect));
        let to = self.to.clone().unwrap_or_else(|| ruri.clone());
        let pid = std::process::id();
        let mut head = format!(
            "{m} {ruri} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK-cli{pid}x{seq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:client@example.test>;tag=c{pid}\r\nTo: <{to}>\r\n\
             Call-ID: cli-{pid}-{seq}@127.0.0.1\r\nCSeq: {n} {m}\r\n",
            m = self.method,
            n = seq + 1,
        );
        if let Some(c) = &self.contact {
            head.push_str(&format!("Contact: <{c}>\r\n"));
        }
        let body = if self.method == "MESSAGE" { self.body.as_bytes() } else { b"" };
        if !body.is_empty() {
            head.push_str("Content-Type: text/plain\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        out
    }
}

/// What one run of the client saw.
#[derive(Debug)]
pub struct ClientRun {
    /// The TLS session's facts.
    pub info: Option<TlsInfo>,
    /// The responses, in order.
    pub responses: Vec<Message>,
    /// The raw bytes of the responses, for printing.
    pub raw: Vec<u8>,
}

/// Connects, sends the requests and collects the responses.
pub fn run(o: &ClientOptions) -> Result<ClientRun, String> {
    let backend = match &o.backend {
        None => sipstls::default_backend(),
        Some(n) => sipstls::backend(n).ok_or_else(|| format!("backend {n:?} is not in this build"))?,
    };
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut cfg = DomainConfig::client(Certificate::all_from_pem(&read(&o.ca)?).map_err(|e| e.to_string())?);
    if let Some((c, k)) = &o.identity {
        cfg = cfg.with_identity(Identity::from_pem(&read(c)?, &read(k)?).map_err(|e| e.to_string())?);
    }
    if let Some(v) = o.tls {
        cfg = cfg.with_version(v);
    }
    let domain = backend.client_domain(&cfg).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect_timeout(&o.connect, o.timeout).map_err(|e| format!("{}: {e}", o.connect))?;
    tcp.set_read_timeout(Some(o.timeout)).map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(o.timeout)).map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let name = o.name.clone().unwrap_or_else(|| o.connect.ip().to_string());
    let tls_err = |e: std::io::Error| match sipstls::tls_error(&e) {
        Some(t) => format!("TLS: {t}"),
        None => e.to_string(),
    };
    let mut tls = TlsStream::connect(&*domain, &name, tcp).map_err(tls_err)?;
    tls.handshake().map_err(tls_err)?;
    let mut run = ClientRun { info: tls.info(), responses: Vec::new(), raw: Vec::new() };
    if o.handshake_only {
        let _ = tls.shutdown();
        return Ok(run);
    }
    let mut pending = Vec::new();
    if o.ping {
        tls.write_all(b"\r\n\r\n").map_err(tls_err)?;
        match next_frame(&mut tls, &mut pending, o.timeout)? {
            Frame::Pong(_) => {}
            other => return Err(format!("keep-alive ping answered with {other:?}, not a pong")),
        }
    }
    for seq in 0..o.count {
        tls.write_all(&o.request(seq)).map_err(tls_err)?;
        loop {
            match next_frame(&mut tls, &mut pending, o.timeout)? {
                Frame::Message(m, _) => {
                    let code = m.start_line.split(' ').nth(1).and_then(|c| c.parse::<u16>().ok()).unwrap_or(0);
                    run.raw.extend_from_slice(&render(&m));
                    let echoed = o.echo_peer && m.method().is_some();
                    run.responses.push(m);
                    if code >= 200 || echoed {
                        break;
                    }
                }
                _ => continue,
            }
        }
    }
    let _ = tls.shutdown();
    Ok(run)
}

fn render(m: &Message) -> Vec<u8> {
    let mut s = format!("{}\r\n", m.start_line);
    for (n, v) in &m.headers {
        s.push_str(&format!("{n}: {v}\r\n"));
    }
    s.push_str("\r\n");
    let mut b = s.into_bytes();
    b.extend_from_slice(&m.body);
    b
}

fn next_frame<S: Read>(s: &mut S, pending: &mut Vec<u8>, timeout: Duration) -> Result<Frame, String> {
    let deadline = Instant::now() + timeout;
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match sip::parse(pending).map_err(|e| e.to_string())? {
            Frame::Incomplete => {}
            f @ (Frame::Message(_, used) | Frame::Ping(used) | Frame::Pong(used)) => {
                pending.drain(..used);
                return Ok(f);
            }
        }
        if Instant::now() > deadline {
            return Err("timed out waiting for a response".into());
        }
        let n = s.read(&mut chunk).map_err(|e| match sipstls::tls_error(&e) {
            Some(t) => format!("TLS: {t}"),
            None => e.to_string(),
        })?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        pending.extend_from_slice(&chunk[..n]);
    }
}
