//! The manager as a TLS terminator service: TLS listeners forwarding to TCP upstreams
//! (failover, health checks, refusal when all are down), plaintext outbound listeners with
//! static and PROXY v2 routes, drain (stop accepting, then close everything with
//! close_notify) and the per-listener counters, for every backend of the build.

#[macro_use]
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use sipstls::proxy::{Parsed, ProxyHeader};
use sipstls::{Backend, ClientTarget, DomainConfig, DomainTable, Listener, TlsStream};
use sipstls_conformance::pki::{pki, SERVER_NAME};
use sipstls_manager::{ListenerConfig, ListenerKind, ManagerConfig, OutboundConfig, Route, TcpUpstreams, TlsManager};

const WAIT: Duration = Duration::from_secs(10);

fn table(backend: &Arc<dyn Backend>) -> Arc<DomainTable> {
    let p = pki();
    let mut t = DomainTable::new(backend.clone());
    t.add_server(Listener::Any, None, &DomainConfig::server(p.server_ecdsa.identity())).unwrap();
    t.add_client_default(&DomainConfig::client(p.roots())).unwrap();
    Arc::new(t)
}

fn manager(backend: &Arc<dyn Backend>) -> TlsManager {
    TlsManager::new(table(backend), ManagerConfig::default().with_connect_timeout(Duration::from_secs(2))).unwrap()
}

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A loopback port nothing listens on (bound, then released).
fn dead_port() -> SocketAddr {
    TcpListener::bind(any()).unwrap().local_addr().unwrap()
}

/// A TCP upstream: each connection optionally starts with a PROXY v2 header (its AUTHORITY
/// is reported on `seen`), then every byte is echoed with `tag` in front of each read.
/// Runs until the test process ends (threads blocked in accept are not joined).
fn upstream(listener: TcpListener, tag: &'static str, proxy: bool) -> mpsc::Receiver<Option<String>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(64) {
            let Ok(mut conn) = conn else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                conn.set_read_timeout(Some(WAIT)).unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                if proxy {
                    loop {
                        let Ok(n @ 1..) = conn.read(&mut buf) else { return };
                        got.extend_from_slice(&buf[..n]);
                        match ProxyHeader::parse(&got) {
                            Ok(Parsed::Complete { header, consumed }) => {
                                let _ = tx.send(header.authority);
                                got.drain(..consumed);
                                break;
                            }
                            Ok(Parsed::Incomplete { .. }) => continue,
                            Err(_) => return,
                        }
                    }
                } else {
                    let _ = tx.send(None);
                }
                if !got.is_empty() {
                    let _ = conn.write_all(&[tag.as_bytes(), &got].concat());
                }
                while let Ok(n @ 1..) = conn.read(&mut buf) {
                    if conn.write_all(&[tag.as_bytes(), &buf[..n]].concat()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    rx
}

fn client(backend: &Arc<dyn Backend>, addr: SocketAddr) -> std::io::Result<TlsStream<TcpStream>> {
    let domain = backend.client_domain(&DomainConfig::client(pki().roots())).unwrap();
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let mut tls = TlsStream::connect(&*domain, SERVER_NAME, tcp)?;
    tls.handshake()?;
    Ok(tls)
}

/// Writes `msg` and reads until `want` bytes came back.
fn round_trip<S: Read + Write>(s: &mut S, msg: &[u8], want: usize) -> Vec<u8> {
    s.write_all(msg).unwrap();
    let mut got = vec![0u8; want];
    s.read_exact(&mut got).unwrap();
    got
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn fails_over_to_the_next_upstream(backend: Arc<dyn Backend>) {
    let m = manager(&backend);
    let live = TcpListener::bind(any()).unwrap();
    let live_addr = live.local_addr().unwrap();
    let _seen = upstream(live, "B:", false);
    let ups = TcpUpstreams::new([dead_port(), live_addr]);
    let front = m.listen(ListenerConfig::tcp(any(), ups.clone(), false)).unwrap();
    for _ in 0..3 {
        let mut tls = client(&backend, front).expect("TLS through the listener");
        assert_eq!(round_trip(&mut tls, b"ping", 6), b"B:ping");
    }
    assert_eq!(
        ups.health().iter().map(|(_, up)| *up).collect::<Vec<_>>(),
        [false, true],
        "the dead one is marked down"
    );
    let l = &m.stats().listeners[0];
    assert_eq!(l.kind, ListenerKind::Tls);
    assert_eq!((l.accepted, l.handshakes_ok), (3, 3));
    assert!(l.bytes_from_peers > 0 && l.bytes_to_peers > 0, "{l:?}");
}

fn all_upstreams_down_refuses_then_recovers(backend: Arc<dyn Backend>) {
    let m = manager(&backend);
    let (a, b) = (dead_port(), dead_port());
    let ups = TcpUpstreams::new([a, b]).health_check(Duration::from_millis(50));
    let front = m.listen(ListenerConfig::tcp(any(), ups.clone(), false)).unwrap();
    wait_until("both upstreams marked down", || !ups.any_up());
    // Refused at once, before any handshake: the client's handshake fails, it never hangs.
    let started = Instant::now();
    assert!(client(&backend, front).is_err(), "a connection with every upstream down must fail");
    assert!(started.elapsed() < Duration::from_secs(3), "refusal took {:?}", started.elapsed());
    wait_until("the refusal counted", || m.stats().listeners[0].refused >= 1);
    // An upstream comes back on its port: the health check brings it back into use.
    let back = TcpListener::bind(b).expect("rebind the upstream port");
    let _seen = upstream(back, "B:", false);
    wait_until("the upstream marked up", || ups.health()[1].1);
    let mut tls = client(&backend, front).expect("TLS once an upstream is up");
    assert_eq!(round_trip(&mut tls, b"hello", 7), b"B:hello");
}

fn upstream_refusing_after_the_handshake_gets_close_notify(backend: Arc<dyn Backend>) {
    // No health check: the failure is found after the handshake; the client then sees a
    // clean close (close_notify), not a hang or a reset.
    let m = manager(&backend);
    let front = m.listen(ListenerConfig::tcp(any(), TcpUpstreams::single(dead_port()), false)).unwrap();
    let mut tls = client(&backend, front).expect("the handshake completes");
    let mut rest = Vec::new();
    assert_eq!(tls.read_to_end(&mut rest).expect("close_notify, not an error"), 0);
    wait_until("counted as no_upstream", || m.stats().listeners[0].closed.get("no_upstream") == Some(&1));
}

fn drain_then_close_all(backend: Arc<dyn Backend>) {
    let m = manager(&backend);
    let live = TcpListener::bind(any()).unwrap();
    let up = live.local_addr().unwrap();
    let _seen = upstream(live, "U:", false);
    let front = m.listen(ListenerConfig::tcp(any(), TcpUpstreams::single(up), false)).unwrap();
    let mut tls = client(&backend, front).unwrap();
    assert_eq!(round_trip(&mut tls, b"a", 3), b"U:a");
    m.stop_accepting();
    wait_until("the listener closed", || TcpStream::connect(front).is_err());
    // The open connection goes on.
    assert_eq!(round_trip(&mut tls, b"b", 3), b"U:b");
    m.close_all();
    let mut rest = Vec::new();
    assert_eq!(tls.read_to_end(&mut rest).expect("close_notify"), 0);
    wait_until("closed as shutdown", || m.stats().listeners[0].closed.get("shutdown") == Some(&1));
    wait_until("nothing active", || m.stats().active == 0);
}

/// A TLS server for outbound tests: a second manager terminating TLS in front of an echo
/// upstream that reports the SNI (through the PROXY header's AUTHORITY).
fn far_end(backend: &Arc<dyn Backend>) -> (TlsManager, SocketAddr, mpsc::Receiver<Option<String>>) {
    let far = manager(backend);
    let live = TcpListener::bind(any()).unwrap();
    let up = live.local_addr().unwrap();
    let seen = upstream(live, "F:", true);
    let addr = far.listen(ListenerConfig::tcp(any(), TcpUpstreams::single(up), true)).unwrap();
    (far, addr, seen)
}

fn outbound_static_route(backend: Arc<dyn Backend>) {
    let (_far, far_addr, seen) = far_end(&backend);
    let m = manager(&backend);
    let route = Route::Static(ClientTarget::addr(far_addr).server_name(SERVER_NAME));
    let plain_addr = m.listen_outbound(OutboundConfig::new(any(), route)).unwrap();
    let mut plain = TcpStream::connect(plain_addr).unwrap();
    plain.set_read_timeout(Some(WAIT)).unwrap();
    assert_eq!(round_trip(&mut plain, b"MESSAGE", 9), b"F:MESSAGE");
    assert_eq!(seen.recv_timeout(WAIT).unwrap().as_deref(), Some(SERVER_NAME), "the route's server name is the SNI");
    // The far side's bytes come back on the same connection, both ways, several times.
    assert_eq!(round_trip(&mut plain, b"again", 7), b"F:again");
    let l = &m.stats().listeners[0];
    assert_eq!((l.kind, l.handshakes_ok), (ListenerKind::Outbound, 1));
    // The SIP server closes: the TLS side ends with close_notify, counted as closed.
    drop(plain);
    wait_until("the relay ended", || m.stats().active == 0);
}

fn outbound_proxy_v2_route(backend: Arc<dyn Backend>) {
    let (_far, far_addr, seen) = far_end(&backend);
    let m = manager(&backend);
    let plain_addr = m.listen_outbound(OutboundConfig::new(any(), Route::ProxyV2 { domain_id: None })).unwrap();
    let mut plain = TcpStream::connect(plain_addr).unwrap();
    plain.set_read_timeout(Some(WAIT)).unwrap();
    let mut h = ProxyHeader::proxy(plain.local_addr().unwrap(), far_addr);
    h.authority = Some(SERVER_NAME.into());
    let mut first = h.encode().unwrap();
    first.extend_from_slice(b"OPTIONS");
    assert_eq!(round_trip(&mut plain, &first, 9), b"F:OPTIONS");
    assert_eq!(seen.recv_timeout(WAIT).unwrap().as_deref(), Some(SERVER_NAME));
}

fn outbound_failures_close_the_plain_side(backend: Arc<dyn Backend>) {
    let m = manager(&backend);
    // A header that is not PROXY v2: closed, counted, no hang.
    let dynamic = m.listen_outbound(OutboundConfig::new(any(), Route::ProxyV2 { domain_id: None })).unwrap();
    let mut plain = TcpStream::connect(dynamic).unwrap();
    plain.set_read_timeout(Some(WAIT)).unwrap();
    plain.write_all(b"OPTIONS sip:x SIP/2.0\r\n\r\n").unwrap();
    let mut rest = Vec::new();
    assert_eq!(plain.read_to_end(&mut rest).unwrap_or(0), 0);
    // A destination whose certificate does not carry the route's name: the handshake fails,
    // the failure is counted by reason, the SIP server's connection is closed.
    let (_far, far_addr, _seen) = far_end(&backend);
    let route = Route::Static(ClientTarget::addr(far_addr).server_name("not-the-server.example"));
    let wrong = m.listen_outbound(OutboundConfig::new(any(), route)).unwrap();
    let mut plain = TcpStream::connect(wrong).unwrap();
    plain.set_read_timeout(Some(WAIT)).unwrap();
    assert_eq!(plain.read_to_end(&mut rest).unwrap_or(0), 0);
    wait_until("the failure counted", || m.stats().listeners[1].handshakes_failed.get("bad_certificate") == Some(&1));
}

fn handshake_failures_counted_by_reason(backend: Arc<dyn Backend>) {
    let m = manager(&backend);
    let front = m.listen(ListenerConfig::tcp(any(), TcpUpstreams::single(dead_port()), false)).unwrap();
    // A client that trusts nothing of ours: it refuses the certificate with an alert.
    let other_root = vec![sipstls::Certificate::from_der(pki().other_root_der.clone())];
    let domain = backend.client_domain(&DomainConfig::client(other_root)).unwrap();
    let tcp = TcpStream::connect(front).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let refused = TlsStream::connect(&*domain, SERVER_NAME, tcp).and_then(|mut tls| tls.handshake());
    assert!(refused.is_err(), "a client that does not trust the server must fail");
    // Garbage instead of a ClientHello.
    let mut raw = TcpStream::connect(front).unwrap();
    raw.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    raw.set_read_timeout(Some(WAIT)).unwrap();
    let _ = raw.read_to_end(&mut Vec::new());
    wait_until("both failures counted", || m.stats().listeners[0].handshakes_failed.values().sum::<u64>() == 2);
    let failed = m.stats().listeners[0].handshakes_failed.clone();
    assert_eq!(failed.get("alert_received"), Some(&1), "{failed:?}");
    assert_eq!(failed.get("protocol_error"), Some(&1), "{failed:?}");
}

per_backend!(
    fails_over_to_the_next_upstream,
    all_upstreams_down_refuses_then_recovers,
    upstream_refusing_after_the_handshake_gets_close_notify,
    drain_then_close_all,
    outbound_static_route,
    outbound_proxy_v2_route,
    outbound_failures_close_the_plain_side,
    handshake_failures_counted_by_reason,
);
