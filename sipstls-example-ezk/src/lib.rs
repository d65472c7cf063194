//! # sipstls under ezk-sip-core
//!
//! [ezk-sip-core](https://docs.rs/ezk-sip-core/0.8.2) (a tokio SIP stack: endpoint, transactions,
//! transports) takes its connection-oriented transports through four public traits; this crate
//! implements them with `sipstls-tokio`, so that an ezk endpoint speaks SIP over TLS with any
//! sipstls backend and a [`DomainTable`] (server domains by listener and SNI, client domains by
//! peer address or name) instead of ezk's own tokio-rustls or native-tls:
//!
//! | ezk-sip-core 0.8 trait | here | sipstls-tokio |
//! |---|---|---|
//! | `StreamingFactory` (outgoing connections) | [`TlsConnectorFactory`] | `TlsConnector::connect(&ClientTarget, TcpStream)` |
//! | `StreamingListenerBuilder` (bind a listener) | [`TlsListenerBuilder`] | `TlsAcceptor` |
//! | `StreamingListener` (yield accepted connections) | [`TlsAcceptStream`] | `TlsAcceptor::accept(TcpStream)`, one task per handshake |
//! | `StreamingTransport` (the byte stream ezk frames SIP on) | [`SipsTlsTransport`] | `TlsStream<TcpStream>` |
//!
//! ezk-sip-core 0.9 made these traits crate-private (its TLS is tokio-rustls or native-tls
//! only), hence the pin to 0.8.2.
//!
//! [`Responder`] is a small ezk layer that answers OPTIONS and MESSAGE with 200 and records
//! what it answered; [`send_request`] sends one out-of-dialog request through an ezk client
//! transaction. The `ezk-ua` binary and `tests/ezk_tls.rs` put them together.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use ezk_sip_core::transport::streaming::{
    StreamingFactory, StreamingListener, StreamingListenerBuilder, StreamingTransport,
};
use ezk_sip_core::transport::{TargetTransportInfo, TpHandle};
use ezk_sip_core::{Endpoint, EndpointBuilder, IncomingRequest, Layer, MayTake, Request};
use sip_types::host::Host;
use sip_types::print::AppendCtx;
use sip_types::uri::SipUri;
use sip_types::{Method, Name, StatusCode};
use sipstls::tokio::{TlsAcceptor, TlsConnector, TlsStream};
use sipstls::{Certificate, ClientTarget, DomainConfig, DomainTable, Identity, Listener, TlsInfo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::mpsc;

/// Bound on a TCP connect and on a TLS handshake, each.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Accepted connections whose handshake is done but that ezk has not taken yet.
const ACCEPT_BACKLOG: usize = 64;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Which side of a handshake this endpoint was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// This endpoint connected (ezk's `StreamingFactory`).
    Client,
    /// This endpoint accepted (ezk's `StreamingListener`).
    Server,
}

/// One TLS handshake of this endpoint: who, and what was negotiated or why it failed.
#[derive(Clone, Debug)]
pub struct Handshake {
    /// Client or server side.
    pub side: Side,
    /// The peer's address.
    pub peer: SocketAddr,
    /// The negotiated facts, or the error.
    pub result: Result<TlsInfo, String>,
}

/// The handshakes of an endpoint's TLS transports, in order (shared by its factory and
/// listeners).
#[derive(Clone, Debug, Default)]
pub struct HandshakeLog(Arc<Mutex<Vec<Handshake>>>);

impl HandshakeLog {
    fn push(&self, side: Side, peer: SocketAddr, result: &io::Result<TlsStream<TcpStream>>) {
        let result = match result {
            Ok(tls) => tls.info().cloned().ok_or_else(|| "no TlsInfo after the handshake".to_string()),
            Err(e) => Err(e.to_string()),
        };
        lock(&self.0).push(Handshake { side, peer, result });
    }

    /// Every handshake so far.
    pub fn all(&self) -> Vec<Handshake> {
        lock(&self.0).clone()
    }
}

/// A sipstls TLS connection as ezk's `StreamingTransport`.
///
/// ezk requires `Sync` of a transport (it keeps it behind an `Arc`), and a sipstls session is
/// only `Send`: the stream sits in a `Mutex` that I/O never locks (`Mutex::get_mut` through
/// the `Pin<&mut Self>` that tokio's `split` hands out), so it costs nothing per read or write.
pub struct SipsTlsTransport {
    stream: Mutex<TlsStream<TcpStream>>,
    local: SocketAddr,
    peer: SocketAddr,
}

impl SipsTlsTransport {
    fn new(stream: TlsStream<TcpStream>, local: SocketAddr, peer: SocketAddr) -> Self {
        SipsTlsTransport { stream: Mutex::new(stream), local, peer }
    }

    fn stream(self: Pin<&mut Self>) -> Pin<&mut TlsStream<TcpStream>> {
        Pin::new(self.get_mut().stream.get_mut().unwrap_or_else(PoisonError::into_inner))
    }

    /// What the handshake negotiated.
    pub fn info(&self) -> Option<TlsInfo> {
        lock(&self.stream).info().cloned()
    }
}

impl AsyncRead for SipsTlsTransport {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_read(cx, buf)
    }
}

impl AsyncWrite for SipsTlsTransport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.stream().poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_shutdown(cx)
    }
}

impl StreamingTransport for SipsTlsTransport {
    const NAME: &'static str = "TLS";
    const SECURE: bool = true;

    /// `transport=tls` only: unlike ezk's own TLS transports, a `transport=tcp` URI does not
    /// select TLS.
    fn matches_transport_param(name: &str) -> bool {
        name.eq_ignore_ascii_case("tls")
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer)
    }
}

async fn bounded<T>(what: &str, fut: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, fut)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out")))?
}

/// ezk's `StreamingFactory` (outgoing TLS connections) over a sipstls [`TlsConnector`].
///
/// The client domain is the table's for the resolved address, else for the URI's host name,
/// else its default; the URI's host name (none for an IP URI: then the domain's
/// `server_name`, else the IP) is sent as SNI and checked against the peer's certificate.
/// Register with `EndpointBuilder::add_transport_factory(Arc::new(factory))`.
pub struct TlsConnectorFactory {
    connector: TlsConnector,
    log: HandshakeLog,
}

impl TlsConnectorFactory {
    /// A factory with the client domains of `table`, recording its handshakes in `log`.
    pub fn new(table: Arc<DomainTable>, log: HandshakeLog) -> Self {
        TlsConnectorFactory { connector: TlsConnector::from(table), log }
    }
}

#[async_trait::async_trait]
impl StreamingFactory for TlsConnectorFactory {
    type Transport = SipsTlsTransport;

    async fn connect<A: ToSocketAddrs + Send>(&self, uri: &SipUri, addr: SocketAddr) -> io::Result<SipsTlsTransport> {
        let target = match &uri.host_port.host {
            Host::Name(name) => ClientTarget::addr(addr).server_name(name.to_string()),
            Host::IP4(_) | Host::IP6(_) => ClientTarget::addr(addr),
        };
        let tcp = bounded("TCP connect", TcpStream::connect(addr)).await?;
        let (local, peer) = (tcp.local_addr()?, tcp.peer_addr()?);
        let result = bounded("TLS handshake", self.connector.connect(&target, tcp)).await;
        self.log.push(Side::Client, peer, &result);
        Ok(SipsTlsTransport::new(result?, local, peer))
    }
}

/// ezk's `StreamingListenerBuilder` over a sipstls [`TlsAcceptor`]: the server domain is the
/// table's for the listener's address, then by the client's SNI.
///
/// Start it with `StreamingListenerBuilder::spawn(builder, &mut endpoint_builder, addr)`;
/// ezk does not return the bound address, so [`bound`](TlsListenerBuilder::bound) keeps it (for
/// port 0).
pub struct TlsListenerBuilder {
    acceptor: TlsAcceptor,
    log: HandshakeLog,
    bound: Arc<OnceLock<SocketAddr>>,
}

impl TlsListenerBuilder {
    /// A listener with the server domains of `table`, recording its handshakes in `log`.
    pub fn new(table: Arc<DomainTable>, log: HandshakeLog) -> Self {
        TlsListenerBuilder { acceptor: TlsAcceptor::from(table), log, bound: Arc::default() }
    }

    /// The bound address, set once ezk has bound the listener.
    pub fn bound(&self) -> Arc<OnceLock<SocketAddr>> {
        self.bound.clone()
    }
}

#[async_trait::async_trait]
impl StreamingListenerBuilder for TlsListenerBuilder {
    type Transport = SipsTlsTransport;
    type StreamingListener = TlsAcceptStream;

    async fn bind<A: ToSocketAddrs + Send>(self, addr: A) -> io::Result<(TlsAcceptStream, SocketAddr)> {
        let listener = TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        let _ = self.bound.set(bound);
        let (tx, rx) = mpsc::channel(ACCEPT_BACKLOG);
        let task = tokio::spawn(accept_loop(listener, self.acceptor, self.log, tx));
        Ok((TlsAcceptStream { rx, task }, bound))
    }
}

/// Accepts TCP connections and runs each handshake in its own task (bounded in time), so that
/// a slow or silent client does not hold up the others (ezk's own TLS listeners handshake
/// inline in their accept loop).
async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    log: HandshakeLog,
    tx: mpsc::Sender<io::Result<(SipsTlsTransport, SocketAddr)>>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                if tx.send(Err(e)).await.is_err() {
                    return;
                }
                // EMFILE and the like: do not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (acceptor, log, tx) = (acceptor.clone(), log.clone(), tx.clone());
        tokio::spawn(async move {
            let local = match tcp.local_addr() {
                Ok(local) => local,
                Err(e) => return drop(tx.send(Err(e)).await),
            };
            let result = bounded("TLS handshake", acceptor.accept(tcp)).await;
            log.push(Side::Server, peer, &result);
            let _ = tx.send(result.map(|tls| (SipsTlsTransport::new(tls, local, peer), peer))).await;
        });
    }
}

/// ezk's `StreamingListener`: TLS connections whose handshake is done. A failed handshake is
/// an `Err` (ezk logs it and accepts on). Dropping it stops its accept loop.
pub struct TlsAcceptStream {
    rx: mpsc::Receiver<io::Result<(SipsTlsTransport, SocketAddr)>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsAcceptStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[async_trait::async_trait]
impl StreamingListener for TlsAcceptStream {
    type Transport = SipsTlsTransport;

    async fn accept(&mut self) -> io::Result<(SipsTlsTransport, SocketAddr)> {
        match self.rx.recv().await {
            Some(accepted) => accepted,
            // The accept loop is gone (it never ends on its own): wait for ever rather than
            // have ezk's accept loop spin on errors.
            None => std::future::pending().await,
        }
    }
}

/// The backends this example offers (`--backend`, or `SIPSTLS_BACKEND`).
pub const BACKENDS: [&str; 2] = ["rustls", "openssl"];

/// A domain table on `backend` (`rustls` or `openssl`): a client domain trusting `ca_pem`
/// that sends `server_name` as SNI and checks it (else the URI's host), and with
/// `server = (cert_pem, key_pem)` a server domain for every listener.
pub fn build_table(
    backend: &str,
    ca_pem: &[u8],
    server: Option<(&[u8], &[u8])>,
    server_name: Option<&str>,
) -> Result<DomainTable, Box<dyn std::error::Error + Send + Sync>> {
    if !BACKENDS.contains(&backend) {
        return Err(format!("unknown backend {backend:?}: one of {BACKENDS:?}").into());
    }
    let b = sipstls::backend(backend).ok_or_else(|| format!("backend {backend} is not in this build"))?;
    let mut table = DomainTable::new(b);
    let mut client = DomainConfig::client(Certificate::all_from_pem(ca_pem)?);
    if let Some(name) = server_name {
        client = client.with_server_name(name);
    }
    table.add_client_default(&client)?;
    if let Some((cert, key)) = server {
        table.add_server(Listener::Any, None, &DomainConfig::server(Identity::from_pem(cert, key)?))?;
    }
    Ok(table)
}

/// Adds sipstls TLS to an ezk endpoint under construction: outgoing connections with the
/// client domains of `table`, and (with `listen`) a listener with its server domains.
/// Returns the listener's bound address (once bound) and the handshake log.
pub async fn add_tls(
    builder: &mut EndpointBuilder,
    table: Arc<DomainTable>,
    listen: Option<SocketAddr>,
) -> io::Result<(Option<SocketAddr>, HandshakeLog)> {
    let log = HandshakeLog::default();
    builder.add_transport_factory(Arc::new(TlsConnectorFactory::new(table.clone(), log.clone())));
    let mut bound = None;
    if let Some(addr) = listen {
        let listener = TlsListenerBuilder::new(table, log.clone());
        let slot = listener.bound();
        listener.spawn(builder, addr).await?;
        bound = slot.get().copied();
    }
    Ok((bound, log))
}

/// A request the [`Responder`] answered.
#[derive(Clone, Debug)]
pub struct Answered {
    /// The method.
    pub method: String,
    /// The request URI.
    pub uri: String,
    /// The transport it came on (`TLS` for sipstls).
    pub transport: &'static str,
    /// Where it came from.
    pub source: SocketAddr,
    /// The body, as text.
    pub body: String,
}

/// Connections the [`Responder`] keeps a handle to (the most recent ones).
const HELD_CONNECTIONS: usize = 64;

/// An ezk layer that answers OPTIONS and MESSAGE outside a dialog with 200 (`Server:
/// sipstls-ezk`) and records them. Other requests fall through to ezk (481).
///
/// It holds a handle to each of the last 64 connections it answered on. ezk-sip-core 0.8.2
/// drops a connection's last handle when a transaction ends and lets the connection's reader
/// task mark it idle; a request that reaches the reader first makes it panic ("set_used failed
/// to retrieve TpHandle") and the connection is lost. A held handle keeps the connection in use,
/// so a peer that sends several requests over one connection (Kamailio does) is answered.
#[derive(Clone, Debug, Default)]
pub struct Responder {
    answered: Arc<Mutex<Vec<Answered>>>,
    held: Arc<Mutex<VecDeque<TpHandle>>>,
}

impl Responder {
    /// The requests answered so far (each noted as its 200 is sent).
    pub fn answered(&self) -> Vec<Answered> {
        lock(&self.answered).clone()
    }

    /// A handle that sees the same record (the layer itself moves into the endpoint).
    pub fn handle(&self) -> Responder {
        self.clone()
    }
}

#[async_trait::async_trait]
impl Layer for Responder {
    fn name(&self) -> &'static str {
        "sipstls-responder"
    }

    async fn receive(&self, endpoint: &Endpoint, request: MayTake<'_, IncomingRequest>) {
        if !matches!(request.line.method, Method::OPTIONS | Method::MESSAGE) {
            return;
        }
        let mut request = request.take();
        {
            let tp = &request.tp_info.transport;
            let mut held = lock(&self.held);
            if !held.iter().any(|h| h.key() == tp.key()) {
                if held.len() == HELD_CONNECTIONS {
                    held.pop_front();
                }
                held.push_back(tp.clone());
            }
        }
        let seen = Answered {
            method: request.line.method.to_string(),
            uri: request.line.uri.default_print_ctx().to_string(),
            transport: request.tp_info.transport.name(),
            source: request.tp_info.source,
            body: String::from_utf8_lossy(&request.body).into_owned(),
        };
        let tsx = endpoint.create_server_tsx(&mut request);
        let mut response = endpoint.create_response(&request, StatusCode::OK, None);
        response.msg.headers.insert(Name::SERVER, "sipstls-ezk");
        if request.line.method == Method::OPTIONS {
            response.msg.headers.insert(Name::ALLOW, "OPTIONS, MESSAGE");
        }
        // Noted before the answer leaves: whoever gets the 200 then finds the request here.
        let method = seen.method.clone();
        lock(&self.answered).push(seen);
        if let Err(e) = tsx.respond(response).await {
            eprintln!("ezk-ua: answering {method} failed: {e}");
        }
    }
}

/// The final response to a request sent with [`send_request`].
#[derive(Clone, Debug)]
pub struct FinalResponse {
    /// The status code.
    pub code: u16,
    /// The headers, as name and value.
    pub headers: Vec<(String, String)>,
    /// The transport it came on.
    pub transport: &'static str,
}

impl FinalResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Sends one out-of-dialog request (OPTIONS, MESSAGE with a text/plain `body`) to `uri`
/// through an ezk client transaction and waits for its final response (ezk gives up after
/// 64·T1 = 32 s). With `next_hop`, the request goes over a transport to that URI (an
/// outbound proxy) instead of one to `uri`.
pub async fn send_request(
    endpoint: &Endpoint,
    method: Method,
    uri: &SipUri,
    next_hop: Option<&SipUri>,
    body: &str,
) -> ezk_sip_core::Result<FinalResponse> {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let id = format!("{}-{n}", std::process::id());
    let mut request = Request::new(method.clone(), uri.clone());
    let to = uri.default_print_ctx().to_string();
    request.headers.insert(Name::FROM, format!("<sip:ezk@example.test>;tag=ezk{id}"));
    request.headers.insert(Name::TO, format!("<{to}>"));
    request.headers.insert(Name::CALL_ID, format!("ezk-{id}@127.0.0.1"));
    request.headers.insert(Name::CSEQ, format!("1 {method}"));
    request.headers.insert(Name::MAX_FORWARDS, "70");
    if !body.is_empty() {
        request.headers.insert(Name::CONTENT_TYPE, "text/plain");
        request.body = body.to_string().into_bytes().into();
    }
    let mut target = TargetTransportInfo::default();
    if let Some(hop) = next_hop {
        target.transport = Some(endpoint.select_transport(hop).await?);
    }
    let mut tsx = endpoint.send_request(request, &mut target).await?;
    let response = tsx.receive_final().await?;
    Ok(FinalResponse {
        code: response.line.code.into_u16(),
        headers: response.headers.iter().map(|(n, v)| (n.as_print_str().to_string(), v.to_string())).collect(),
        transport: response.tp_info.transport.name(),
    })
}
