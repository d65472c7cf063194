//! The suite's checks through the async adapter (`sipstls-tokio`): the same behaviour as
//! the sans-I/O session and the blocking stream, over tokio TCP on loopback (or an
//! in-memory duplex pipe where the check needs a small, known transport buffer). Each
//! check runs on its own current-thread runtime and is bounded in time.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sipstls::{
    Backend, Capabilities, ClientTarget, DomainConfig, DomainTable, Error, Listener, ProtocolVersion, Resumption,
    SniMatch,
};
use sipstls_tokio::{tls_error, TlsAcceptor, TlsConnector, TlsStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::checks::{claimed_versions as versions, client_cfg, server_cfg};
use crate::pki::{pki, ALT_NAME, SERVER_NAME};
use crate::wire::{self, HelloSpec, HANDSHAKE};

/// Time any one step may take (debug builds on a loaded 2-core machine included).
const STEP: Duration = Duration::from_secs(20);

fn run<F: Future<Output = ()>>(f: F) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        tokio::time::timeout(STEP * 3, f).await.expect("the check did not finish in time");
    })
}

fn backend_arc(b: &dyn Backend) -> Arc<dyn Backend> {
    sipstls::backend(b.info().name).expect("the backend is in this build")
}

/// A table with `server` as the default server domain and `client` as the default client
/// domain.
fn table(b: &dyn Backend, server: &DomainConfig, client: &DomainConfig) -> Arc<DomainTable> {
    let mut t = DomainTable::new(backend_arc(b));
    t.add_server(Listener::Any, None, server).unwrap();
    t.add_client_default(client).unwrap();
    Arc::new(t)
}

/// A loopback listener and an accepted/connected TCP pair.
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (a, b) = tokio::join!(l.accept(), TcpStream::connect(addr));
    (b.unwrap(), a.unwrap().0)
}

/// Client and server streams after the handshake over an in-memory pipe that holds 64 KiB
/// each way.
async fn duplex_pair(
    b: &dyn Backend,
    v: ProtocolVersion,
) -> (std::io::Result<TlsStream<tokio::io::DuplexStream>>, std::io::Result<TlsStream<tokio::io::DuplexStream>>) {
    let t = table(b, &server_cfg(v), &client_cfg(v));
    let (acceptor, connector): (TlsAcceptor, TlsConnector) = (t.clone().into(), t.into());
    let (cio, sio) = tokio::io::duplex(64 * 1024);
    let local: SocketAddr = "127.0.0.1:5061".parse().unwrap();
    let target = ClientTarget::name(SERVER_NAME);
    tokio::join!(connector.connect(&target, cio), acceptor.accept_with(sio, local, None))
}

/// Client and server streams after the handshake over loopback TCP (or the two errors).
async fn handshake(
    acceptor: &TlsAcceptor,
    connector: &TlsConnector,
    target: &ClientTarget,
) -> (std::io::Result<TlsStream<TcpStream>>, std::io::Result<TlsStream<TcpStream>>) {
    let (c, s) = tcp_pair().await;
    let (c, s) = tokio::join!(connector.connect(target, c), acceptor.accept(s));
    (c, s)
}

fn ok<T>(r: std::io::Result<T>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e} [{:?}]", tls_error(&e)))
}

/// Handshake and 256 KiB each way, in both TLS versions the backend claims; the
/// negotiated facts are there without asking the session again.
pub fn async_handshake_and_data(b: &dyn Backend) {
    for v in versions(b) {
        run(async {
            let t = table(b, &server_cfg(v), &client_cfg(v));
            let (c, s) = handshake(&t.clone().into(), &t.into(), &ClientTarget::name(SERVER_NAME)).await;
            let (mut c, mut s) = (ok(c, "client"), ok(s, "server"));
            let (ci, si) = (c.info().expect("client info"), s.info().expect("server info"));
            assert_eq!((ci.version, si.version), (v, v));
            assert_eq!(si.sni.as_deref(), Some(SERVER_NAME));
            assert_eq!(ci.peer.as_ref().and_then(|p| p.subject_cn.as_deref()), Some(SERVER_NAME));
            let data: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect();
            let echo = async {
                let mut got = vec![0u8; data.len()];
                s.read_exact(&mut got).await.unwrap();
                s.write_all(&got).await.unwrap();
                s.flush().await.unwrap();
                s
            };
            let client = async {
                c.write_all(&data).await.unwrap();
                c.flush().await.unwrap();
                let mut back = vec![0u8; data.len()];
                c.read_exact(&mut back).await.unwrap();
                assert!(back == data, "{v}: the echo differs");
                c
            };
            let _ = tokio::time::timeout(STEP, async { tokio::join!(echo, client) }).await.expect("echo in time");
        });
    }
}

/// The client's SNI switches the server domain: the alt name gets the alt certificate.
pub fn async_sni_switch(b: &dyn Backend) {
    if !b.capabilities().contains(Capabilities::SNI_SWITCH) {
        return; // the refusal is asserted by checks::sni_switch_applies_domain_policy
    }
    for v in versions(b) {
        run(async {
            let mut t = DomainTable::new(backend_arc(b));
            t.add_server(Listener::Any, None, &server_cfg(v)).unwrap();
            let alt = DomainConfig::server(pki().server_alt.identity()).with_version(v);
            t.add_server(Listener::Any, Some(SniMatch::Exact(ALT_NAME.into())), &alt).unwrap();
            t.add_client_default(&client_cfg(v)).unwrap();
            let t = Arc::new(t);
            let (c, s) = handshake(&t.clone().into(), &t.clone().into(), &ClientTarget::name(ALT_NAME)).await;
            let (c, s) = (ok(c, "client"), ok(s, "server"));
            let cn = c.info().and_then(|i| i.peer.as_ref()).and_then(|p| p.subject_cn.clone());
            assert_eq!(cn.as_deref(), Some(ALT_NAME), "{v}: SNI chose the alt domain");
            assert_eq!(s.info().and_then(|i| i.sni.clone()).as_deref(), Some(ALT_NAME));

            // The blocking stream switches the same way through the table.
            let (c, s) = tcp_pair().await;
            let (c, s) = (c.into_std().unwrap(), s.into_std().unwrap());
            c.set_nonblocking(false).unwrap();
            s.set_nonblocking(false).unwrap();
            let local = s.local_addr().unwrap();
            let cd = t.client_for(&ClientTarget::name(ALT_NAME)).unwrap().0;
            let server = std::thread::spawn({
                let t = t.clone();
                move || sipstls::TlsStream::accept_in(&t, local, None, s).map(|s| s.info())
            });
            let client = sipstls::TlsStream::connect(&*cd, ALT_NAME, c).expect("blocking client");
            let cn = client.info().and_then(|i| i.peer).and_then(|p| p.subject_cn);
            assert_eq!(cn.as_deref(), Some(ALT_NAME), "{v}: the blocking stream switched by SNI");
            let sinfo = server.join().unwrap().expect("blocking server").expect("info");
            assert_eq!(sinfo.sni.as_deref(), Some(ALT_NAME));
        });
    }
}

/// A server that requires a client certificate: with one the handshake completes and the
/// server sees the client's name; without one both sides fail with typed errors.
pub fn async_client_certificate(b: &dyn Backend) {
    for v in versions(b) {
        run(async {
            let strict = server_cfg(v).with_client_auth(sipstls::ClientAuth::Required(pki().roots()));
            let with_cert = client_cfg(v).with_identity(pki().client.identity());
            let t = table(b, &strict, &with_cert);
            let (c, s) = handshake(&t.clone().into(), &t.into(), &ClientTarget::name(SERVER_NAME)).await;
            let (_c, s) = (ok(c, "client"), ok(s, "server"));
            assert!(s.info().and_then(|i| i.peer.as_ref()).is_some(), "{v}: the server sees the client certificate");

            let t = table(b, &strict, &client_cfg(v));
            let (c, s) = tcp_pair().await;
            let acceptor: TlsAcceptor = t.clone().into();
            let connector: TlsConnector = t.into();
            let server = async {
                let e = acceptor.accept(s).await.expect_err("no client certificate");
                assert_eq!(tls_error(&e), Some(&Error::PeerCertificateRequired), "{v}: {e:?}");
            };
            let client = async {
                // TLS 1.3 clients finish before the server's verdict: the refusal arrives
                // on the first read.
                match connector.connect(&ClientTarget::name(SERVER_NAME), c).await {
                    Err(e) => assert!(tls_error(&e).is_some(), "{v}: untyped {e:?}"),
                    Ok(mut tls) => {
                        let mut buf = [0u8; 16];
                        let e = tls.read(&mut buf).await.expect_err("the server refused");
                        assert!(tls_error(&e).is_some(), "{v}: untyped {e:?}");
                    }
                }
            };
            tokio::join!(server, client);
        });
    }
}

/// Resumption through one connector: the second connection resumes the first's session.
pub fn async_resumption(b: &dyn Backend) {
    if !b.capabilities().contains(Capabilities::RESUMPTION_TICKETS) {
        return; // the refusal is asserted by checks::resumption_tickets
    }
    let tickets = Resumption::TICKETS;
    for v in versions(b) {
        run(async {
            let t = table(b, &server_cfg(v).with_resumption(tickets), &client_cfg(v).with_resumption(tickets));
            let (acceptor, connector): (TlsAcceptor, TlsConnector) = (t.clone().into(), t.into());
            let mut resumed = Vec::new();
            for _ in 0..2 {
                let (c, s) = handshake(&acceptor, &connector, &ClientTarget::name(SERVER_NAME)).await;
                let (mut c, mut s) = (ok(c, "client"), ok(s, "server"));
                // One exchange, so that a TLS 1.3 ticket (sent after the handshake) is read.
                let srv = async {
                    let mut b = [0u8; 4];
                    s.read_exact(&mut b).await.unwrap();
                    s.write_all(b"pong").await.unwrap();
                    s.shutdown().await.unwrap();
                };
                let cli = async {
                    c.write_all(b"ping").await.unwrap();
                    let mut b = Vec::new();
                    c.read_to_end(&mut b).await.unwrap();
                    assert_eq!(b, b"pong");
                    resumed.push(c.info().unwrap().resumed);
                };
                tokio::join!(srv, cli);
            }
            assert_eq!(resumed, [false, true], "{v}: the second connection resumes");
        });
    }
}

/// close_notify reads as a clean end (0); a transport that ends without it reads as
/// `UnexpectedEof` (a truncation attack is never a clean end).
pub fn async_close_notify_and_truncation(b: &dyn Backend) {
    for v in versions(b) {
        run(async {
            let t = table(b, &server_cfg(v), &client_cfg(v));
            let (acceptor, connector): (TlsAcceptor, TlsConnector) = (t.clone().into(), t.into());
            let (c, s) = handshake(&acceptor, &connector, &ClientTarget::name(SERVER_NAME)).await;
            let (mut c, mut s) = (ok(c, "client"), ok(s, "server"));
            s.write_all(b"bye").await.unwrap();
            s.shutdown().await.unwrap();
            let mut got = Vec::new();
            c.read_to_end(&mut got).await.expect("close_notify is a clean end");
            assert_eq!(got, b"bye");

            let (c, s) = handshake(&acceptor, &connector, &ClientTarget::name(SERVER_NAME)).await;
            let (mut c, mut s) = (ok(c, "client"), ok(s, "server"));
            s.write_all(b"cut").await.unwrap();
            s.flush().await.unwrap();
            // The transport ends without close_notify.
            s.get_mut().shutdown().await.unwrap();
            let mut got = Vec::new();
            let e = c.read_to_end(&mut got).await.expect_err("a truncated stream must fail");
            assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{v}: {e:?}");
            assert_eq!(tls_error(&e), Some(&Error::UnexpectedEof));
            assert_eq!(got, b"cut", "{v}: data before the cut is delivered");
        });
    }
}

/// Half-close: the client sends its request and close_notify; the server reads the end
/// and still sends its answer, which the half-closed client reads.
pub fn async_half_close(b: &dyn Backend) {
    for v in versions(b) {
        run(async {
            let t = table(b, &server_cfg(v), &client_cfg(v));
            let (c, s) = handshake(&t.clone().into(), &t.into(), &ClientTarget::name(SERVER_NAME)).await;
            let (mut c, mut s) = (ok(c, "client"), ok(s, "server"));
            let req = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 0\r\n\r\n";
            let resp = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n";
            let server = async {
                let mut got = Vec::new();
                s.read_to_end(&mut got).await.expect("the client's close_notify ends the read cleanly");
                assert_eq!(got, req);
                s.write_all(resp).await.expect("writing after the peer's close_notify");
                s.shutdown().await.unwrap();
            };
            let client = async {
                c.write_all(req).await.unwrap();
                c.shutdown().await.unwrap();
                let mut got = Vec::new();
                c.read_to_end(&mut got).await.expect("the answer after our close_notify");
                assert_eq!(got, resp, "{v}");
            };
            tokio::join!(server, client);
        });
    }
}

/// A peer that never reads: writes stop being accepted (the write future stays pending)
/// with a bounded amount queued, over a transport that holds 64 KiB.
pub fn async_never_reading_peer_is_bounded(b: &dyn Backend) {
    for v in versions(b) {
        run(async {
            let (c, s) = duplex_pair(b, v).await;
            let (_c, mut s) = (ok(c, "client"), ok(s, "server"));
            let chunk = vec![b'x'; 16 * 1024];
            let mut written = 0usize;
            loop {
                match tokio::time::timeout(Duration::from_millis(300), s.write(&chunk)).await {
                    Ok(Ok(n)) => written += n,
                    Ok(Err(e)) => panic!("{v}: write failed: {e}"),
                    Err(_) => break, // pending: backpressure
                }
                assert!(written <= 1 << 20, "{v}: 1 MiB accepted for a peer that never reads");
            }
            assert!(written >= 16 * 1024, "{v}: only {written} bytes accepted");
        });
    }
}

/// A peer that floods: the client writes while the server's application reads nothing;
/// the client's writes stop being accepted with a bounded amount in flight (the server
/// reads its transport only when asked to), over a transport that holds 64 KiB.
pub fn async_flooding_peer_is_bounded(b: &dyn Backend) {
    for v in versions(b) {
        run(async {
            let (c, s) = duplex_pair(b, v).await;
            let (mut c, mut s) = (ok(c, "client"), ok(s, "server"));
            let chunk = vec![b'y'; 16 * 1024];
            let mut written = 0usize;
            loop {
                match tokio::time::timeout(Duration::from_millis(300), c.write(&chunk)).await {
                    Ok(Ok(n)) => written += n,
                    Ok(Err(e)) => panic!("{v}: write failed: {e}"),
                    Err(_) => break,
                }
                assert!(written <= 1 << 20, "{v}: 1 MiB taken from a flooding peer nobody reads");
            }
            assert!(written >= 16 * 1024, "{v}: only {written} bytes taken");
            // Once the server reads, everything arrives.
            let mut got = vec![0u8; 16 * 1024];
            s.read_exact(&mut got).await.unwrap();
            assert!(got.iter().all(|&x| x == b'y'), "{v}");
        });
    }
}

/// Hostile input through the adapter: random bytes instead of a ClientHello, and a record
/// that does not decrypt after the handshake. Each ends in a typed error of the peer's
/// fault, with a fatal alert on the wire.
pub fn async_hostile_input(b: &dyn Backend) {
    for v in versions(b) {
        run(async {
            let t = table(b, &server_cfg(v), &client_cfg(v));
            let (acceptor, connector): (TlsAcceptor, TlsConnector) = (t.clone().into(), t.into());
            // Random bytes to the acceptor.
            let (mut raw, s) = tcp_pair().await;
            let server = async { tokio::time::timeout(STEP, acceptor.accept(s)).await.expect("accept ended") };
            let client = async move {
                let _ = raw.write_all(&wire::random(42, 4096)).await;
                let mut got = Vec::new();
                let _ = tokio::time::timeout(STEP, raw.read_to_end(&mut got)).await.expect("the server ended it");
                got
            };
            let (r, got) = tokio::join!(server, client);
            let e = r.expect_err("random bytes are no ClientHello");
            let te = tls_error(&e).unwrap_or_else(|| panic!("{v}: untyped {e:?}"));
            assert!(te.is_peer_fault(), "{v}: {te:?}");
            assert!(wire::ends_with_alert(&got), "{v}: {te:?} without an alert on the wire");

            // A record that does not decrypt, after the handshake.
            let (c, s) = tcp_pair().await;
            let target = ClientTarget::name(SERVER_NAME);
            let (c, s) = tokio::join!(connector.connect(&target, c), acceptor.accept(s));
            let (c, mut s) = (ok(c, "client"), ok(s, "server"));
            let mut raw = c.into_inner();
            let mut rec = vec![0x17, 0x03, 0x03, 0x00, 0xc8];
            rec.extend(wire::random(7, 200));
            raw.write_all(&rec).await.unwrap();
            let mut buf = [0u8; 64];
            let e = s.read(&mut buf).await.expect_err("a record that does not decrypt");
            assert!(
                matches!(tls_error(&e), Some(Error::Protocol { kind: sipstls::ProtocolErrorKind::DecryptFailure, .. })),
                "{v}: {e:?}"
            );
            // The alert went out before the error came back; closing ends the stream.
            drop(s);
            let mut got = Vec::new();
            let _ = tokio::time::timeout(STEP, raw.read_to_end(&mut got)).await;
            assert!(wire::ends_with_alert(&got), "{v}: no alert after the decrypt failure");
        });
    }
}

/// A client that sends the first bytes of a ClientHello and then nothing: an acceptor with
/// a handshake timeout ends it with `TimedOut` at the limit.
pub fn async_handshake_timeout(b: &dyn Backend) {
    let v = versions(b)[0];
    run(async {
        let t = table(b, &server_cfg(v), &client_cfg(v));
        let acceptor = TlsAcceptor::from(t).with_handshake_timeout(Duration::from_millis(300));
        let (mut raw, s) = tcp_pair().await;
        raw.write_all(&[0x16, 0x03, 0x01, 0x00, 0x40, 0x01]).await.unwrap();
        let t0 = std::time::Instant::now();
        let e = acceptor.accept(s).await.expect_err("a silent client must time out");
        let took = t0.elapsed();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e:?}");
        assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(5), "took {took:?}");
        drop(raw);
    });
}

/// A 64 KiB ClientHello (over 64 KiB with its record headers) to the acceptor: a typed
/// error with a fatal alert on the wire, within the step's time (never a hang or a spin).
pub fn async_hostile_large_hello(b: &dyn Backend) {
    for v in versions(b) {
        run(async {
            let t = table(b, &server_cfg(v), &client_cfg(v));
            let acceptor: TlsAcceptor = t.into();
            for (size, record) in [(0xffff, 16 * 1024), (0xffff + 64, 1000), (128 * 1024, 16 * 1024)] {
                let hello = wire::records(HANDSHAKE, &HelloSpec::new(v).with_total_size(size).message(), record);
                let (mut raw, s) = tcp_pair().await;
                let server = async { tokio::time::timeout(STEP, acceptor.accept(s)).await.expect("accept ended") };
                let client = async move {
                    let _ = raw.write_all(&hello).await;
                    // Until the server answers with a ServerHello or ends the connection;
                    // then this client goes away.
                    let mut got = Vec::new();
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        match tokio::time::timeout(STEP, raw.read(&mut buf)).await.expect("the server reacts") {
                            Ok(0) | Err(_) => break,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                        if wire::first_handshake_type(&got) == Some(2) {
                            break;
                        }
                    }
                    got
                };
                let (r, got) = tokio::join!(server, client);
                match r {
                    // A server that answers the hello sends its ServerHello first (and then
                    // fails when this client leaves).
                    _ if wire::first_handshake_type(&got) == Some(2) => {}
                    Ok(_) => panic!("{v} {size}: a handshake completed with a hello alone"),
                    Err(e) => {
                        let te = tls_error(&e).unwrap_or_else(|| panic!("{v} {size}: untyped {e:?}"));
                        assert!(te.is_peer_fault(), "{v} {size}: {te:?}");
                        assert!(wire::ends_with_alert(&got), "{v} {size}: {te:?} without an alert on the wire");
                    }
                }
            }
        });
    }
}
