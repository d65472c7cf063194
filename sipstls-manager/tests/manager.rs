//! The TLS manager end to end on loopback, with worker threads, for every backend of the
//! build: hand-over with metadata, PROXY v2 preamble, round robin, outbound connections and
//! their reuse rules, typed failures, bounded queues, timeouts and a lost worker.
//! (Worker *processes* are tested with the SIP server example in `sipstls-examples/tests`.)

#[macro_use]
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use sipstls::{Backend, ClientTarget, DomainConfig, DomainTable, Listener, SniMatch, TlsStream};
use sipstls_conformance::pki::{pki, ALT_NAME, CLIENT_CN, SERVER_NAME};
use sipstls_manager::{
    channel, CloseReason, ConnectError, Connection, Direction, ListenerConfig, ManagerConfig, ManagerEvent, TlsManager,
    Worker, WorkerError,
};

const WAIT: Duration = Duration::from_secs(10);

fn table(backend: &Arc<dyn Backend>) -> Arc<DomainTable> {
    let p = pki();
    let mut t = DomainTable::new(backend.clone());
    let server =
        DomainConfig::server(p.server_ecdsa.identity()).with_client_auth(sipstls::ClientAuth::Optional(p.roots()));
    t.add_server(Listener::Any, None, &server).unwrap();
    t.add_server(Listener::Any, Some(SniMatch::Exact(ALT_NAME.into())), &DomainConfig::server(p.server_alt.identity()))
        .unwrap();
    t.add_client_default(&DomainConfig::client(p.roots())).unwrap();
    t.add_client_id("mtls", &DomainConfig::client(p.roots()).with_identity(p.client.identity())).unwrap();
    Arc::new(t)
}

struct Setup {
    manager: TlsManager,
    workers: Vec<Arc<Worker>>,
    addr: SocketAddr,
}

fn setup(backend: &Arc<dyn Backend>, n: usize, cfg: ManagerConfig, proxy_v2: bool) -> Setup {
    let manager = TlsManager::new(table(backend), cfg).unwrap();
    let mut workers = Vec::new();
    for _ in 0..n {
        let (m, w) = channel().unwrap();
        manager.add_worker(m).unwrap();
        workers.push(Arc::new(Worker::new(w).unwrap()));
    }
    let mut lc = ListenerConfig::workers("127.0.0.1:0".parse().unwrap());
    lc.proxy_v2 = proxy_v2;
    let addr = manager.listen(lc).unwrap();
    Setup { manager, workers, addr }
}

fn client(backend: &Arc<dyn Backend>, addr: SocketAddr, cert: bool) -> TlsStream<TcpStream> {
    client_to(backend, addr, cert, SERVER_NAME).unwrap()
}

fn client_to(
    backend: &Arc<dyn Backend>,
    addr: SocketAddr,
    cert: bool,
    name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let p = pki();
    let mut cfg = DomainConfig::client(p.roots());
    if cert {
        cfg = cfg.with_identity(p.client.identity());
    }
    let domain = backend.client_domain(&cfg).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let mut tls = TlsStream::connect(&*domain, name, tcp)?;
    tls.handshake()?;
    Ok(tls)
}

/// Reads from a worker connection until `n` bytes came.
fn read_n(c: &Connection, n: usize) -> Vec<u8> {
    c.stream().set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = vec![0; n];
    (&*c).read_exact(&mut buf).unwrap();
    buf
}

fn echo_once(c: &Connection, n: usize) {
    let got = read_n(c, n);
    (&*c).write_all(&got).unwrap();
}

fn handover_with_metadata(backend: Arc<dyn Backend>) {
    let s = setup(&backend, 1, ManagerConfig::default(), false);
    let mut tls = client(&backend, s.addr, true);
    let conn = s.workers[0].accept_timeout(WAIT).unwrap();
    assert_eq!(conn.meta.direction, Direction::Inbound);
    assert_eq!(conn.meta.peer, tls.get_ref().local_addr().unwrap());
    assert_eq!(conn.meta.local, s.addr);
    let mine = tls.info().unwrap();
    assert_eq!(conn.meta.tls.version, mine.version);
    assert_eq!(conn.meta.tls.cipher_suite, mine.cipher_suite);
    assert_eq!(conn.meta.tls.sni.as_deref(), Some(SERVER_NAME));
    assert_eq!(conn.meta.tls.verify, sipstls::VerifyResult::Verified);
    assert_eq!(conn.meta.tls.peer.as_ref().and_then(|p| p.subject_cn.as_deref()), Some(CLIENT_CN));
    tls.write_all(b"OPTIONS sip:x SIP/2.0\r\n\r\n").unwrap();
    echo_once(&conn, 25);
    let mut back = [0; 25];
    tls.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"OPTIONS sip:x SIP/2.0\r\n\r\n");
    // The worker closes: the client sees close_notify (a clean end of stream).
    drop(conn);
    let mut rest = Vec::new();
    assert_eq!(tls.read_to_end(&mut rest).unwrap(), 0);
    assert_eq!(s.manager.stats().handshakes_ok, 1);
}

fn proxy_v2_header_comes_first(backend: Arc<dyn Backend>) {
    use sipstls::proxy::{Parsed, ProxyHeader};
    let s = setup(&backend, 1, ManagerConfig::default(), true);
    let mut tls = client(&backend, s.addr, true);
    let conn = s.workers[0].accept_timeout(WAIT).unwrap();
    tls.write_all(b"ping").unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    let (header, consumed) = loop {
        assert!(Instant::now() < deadline, "no complete PROXY header");
        let mut buf = [0; 4096];
        conn.stream().set_read_timeout(Some(WAIT)).unwrap();
        let n = (&conn).read(&mut buf).unwrap();
        assert!(n > 0, "EOF before the header");
        got.extend_from_slice(&buf[..n]);
        match ProxyHeader::parse(&got).unwrap() {
            Parsed::Complete { header, consumed } if got.len() >= consumed + 4 => break (header, consumed),
            _ => continue,
        }
    };
    assert_eq!(&got[consumed..], b"ping");
    assert_eq!(header.addresses, Some((tls.get_ref().local_addr().unwrap(), s.addr)));
    assert_eq!(header.authority.as_deref(), Some(SERVER_NAME));
    let ssl = header.ssl.unwrap();
    assert!(ssl.client_cert_verified());
    assert_eq!(ssl.cn.as_deref(), Some(CLIENT_CN));
    assert_eq!(ssl.version.as_deref(), Some(tls.info().unwrap().version.name()));
    assert_eq!(ssl.client_cert.as_deref(), Some(&pki().client.der[..]));
}

fn round_robin_over_workers(backend: Arc<dyn Backend>) {
    let s = setup(&backend, 2, ManagerConfig::default(), false);
    let mut clients = Vec::new();
    let mut served = [0; 2];
    for _ in 0..6 {
        clients.push(client(&backend, s.addr, false));
        let deadline = Instant::now() + WAIT;
        'got: loop {
            assert!(Instant::now() < deadline, "no worker got the connection");
            for (i, w) in s.workers.iter().enumerate() {
                if let Ok(c) = w.accept_timeout(Duration::from_millis(20)) {
                    served[i] += 1;
                    std::mem::forget(c); // keep it open
                    break 'got;
                }
            }
        }
    }
    assert_eq!(served, [3, 3]);
}

fn outbound_reuse_only_for_same_domain_and_name(backend: Arc<dyn Backend>) {
    let s = setup(&backend, 2, ManagerConfig::default(), false);
    let w = &s.workers[0];
    let target = ClientTarget::addr(s.addr).server_name(SERVER_NAME);
    let a = w.connect(&target, WAIT).unwrap();
    assert!(!a.reused);
    assert_eq!(a.meta.direction, Direction::Outbound);
    assert_eq!(a.meta.peer, s.addr);
    assert_eq!(a.meta.tls.sni.as_deref(), Some(SERVER_NAME));
    assert_eq!(a.meta.tls.verify, sipstls::VerifyResult::Verified);
    // The manager's own listener accepted it and gave it to a worker: data flows end to end.
    let inbound = loop {
        if let Ok(c) = s.workers[1].accept_timeout(Duration::from_millis(50)) {
            break c;
        }
        if let Ok(c) = s.workers[0].accept_timeout(Duration::from_millis(50)) {
            break c;
        }
    };
    (&a).write_all(b"hello").unwrap();
    assert_eq!(read_n(&inbound, 5), b"hello");
    let same = w.connect(&target, WAIT).unwrap();
    assert!(same.reused);
    assert_eq!(same.meta.id, a.meta.id);
    let other_name = w.connect(&ClientTarget::addr(s.addr).server_name(ALT_NAME), WAIT).unwrap();
    assert!(!other_name.reused);
    assert_ne!(other_name.meta.id, a.meta.id);
    assert_eq!(other_name.meta.tls.sni.as_deref(), Some(ALT_NAME));
    let other_domain = w.connect(&target.clone().domain_id("mtls"), WAIT).unwrap();
    assert!(!other_domain.reused);
    assert_ne!(other_domain.meta.id, a.meta.id);
    let fresh = w.connect_fresh(&target, WAIT).unwrap();
    assert_ne!(fresh.meta.id, a.meta.id);
    // Another worker never gets this worker's connection.
    let elsewhere = s.workers[1].connect(&target, WAIT).unwrap();
    assert!(!elsewhere.reused);
    let st = s.manager.stats();
    assert_eq!(st.outbound_reused, 1);
    assert_eq!(st.outbound_ok, 5);
}

fn outbound_failures_are_typed(backend: Arc<dyn Backend>) {
    let s = setup(&backend, 1, ManagerConfig::default(), false);
    let w = &s.workers[0];
    let closed_port: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = |t: ClientTarget| match w.connect(&t, WAIT) {
        Err(WorkerError::Connect(e)) => e,
        other => panic!("expected a connect error, got {other:?}"),
    };
    assert!(matches!(err(ClientTarget::addr(closed_port).server_name(SERVER_NAME)), ConnectError::Tcp(_)));
    let wrong = err(ClientTarget::addr(s.addr).server_name("nobody.example.test"));
    assert!(
        matches!(&wrong, ConnectError::Handshake(CloseReason::Tls { kind: sipstls::ErrorKind::Certificate, message })
            if message.contains("nobody.example.test")),
        "{wrong:?}"
    );
    assert!(matches!(err(ClientTarget::addr(s.addr).domain_id("no-such-domain")), ConnectError::NoDomain(_)));
    assert!(matches!(err(ClientTarget::name(SERVER_NAME)), ConnectError::NoAddress), "the manager connects by address");
    assert_eq!(s.manager.stats().outbound_failed, 3);
}

fn handshake_timeout_closes(backend: Arc<dyn Backend>) {
    let cfg = ManagerConfig::default().with_handshake_timeout(Duration::from_millis(1000));
    let s = setup(&backend, 1, cfg, false);
    let mut silent = TcpStream::connect(s.addr).unwrap();
    silent.set_read_timeout(Some(WAIT)).unwrap();
    let t0 = Instant::now();
    let mut buf = [0; 16];
    assert_eq!(silent.read(&mut buf).unwrap(), 0, "the manager closes a silent client");
    // One handshake timeout in all: the wait for the first bytes counts against it.
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_millis(1800), "closed after {took:?}");
    let st = s.manager.stats();
    assert_eq!(st.handshakes_failed, 1);
    assert_eq!(st.closed.get("handshake_timeout"), Some(&1));
    assert!(s.workers[0].accept_timeout(Duration::from_millis(50)).is_err(), "nothing handed over");
}

/// Slowloris: clients that trickle a ClientHello one byte at a time (progress, but never a
/// complete handshake) are closed when the handshake timeout fires, counted as
/// `handshake_timeout`, and meanwhile a normal client is served.
fn slowloris_handshakes_time_out(backend: Arc<dyn Backend>) {
    const SLOW: usize = 20;
    let cfg = ManagerConfig::default().with_handshake_timeout(Duration::from_millis(800));
    let s = setup(&backend, 1, cfg, false);
    // A real ClientHello, to trickle.
    let cd = backend.client_domain(&DomainConfig::client(pki().roots())).unwrap();
    let mut hello_session = cd.connect(Some(&sipstls::ServerName::parse(SERVER_NAME).unwrap())).unwrap();
    let mut hello = vec![0u8; 16 * 1024];
    let n = hello_session.take_tls(&mut hello);
    hello.truncate(n);
    let mut slow: Vec<TcpStream> = (0..SLOW).map(|_| TcpStream::connect(s.addr).unwrap()).collect();
    let t0 = Instant::now();
    let mut closed_at = vec![None; SLOW];
    let mut sent = 0;
    let mut good = None;
    while closed_at.iter().any(Option::is_none) {
        assert!(t0.elapsed() < Duration::from_secs(10), "slowloris connections still open after 10 s: {closed_at:?}");
        for (i, c) in slow.iter_mut().enumerate() {
            if closed_at[i].is_some() {
                continue;
            }
            // One byte (never the whole hello), then look for the close.
            let byte = [hello[sent.min(hello.len() - 2)]];
            if c.write_all(&byte).is_err() {
                closed_at[i] = Some(t0.elapsed());
                continue;
            }
            c.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 64];
            match c.read(&mut buf) {
                Ok(0) => closed_at[i] = Some(t0.elapsed()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Ok(_) => panic!("the manager answered an incomplete ClientHello"),
                Err(_) => closed_at[i] = Some(t0.elapsed()),
            }
            c.set_nonblocking(false).unwrap();
        }
        sent += 1;
        if good.is_none() && t0.elapsed() > Duration::from_millis(200) {
            // A normal client during the attack.
            let mut tls = client(&backend, s.addr, false);
            let conn = s.workers[0].accept_timeout(WAIT).unwrap();
            tls.write_all(b"ping").unwrap();
            echo_once(&conn, 4);
            let mut got = [0u8; 4];
            tls.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"ping");
            good = Some((tls, conn));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(good.is_some(), "the normal client was not served");
    for (i, at) in closed_at.iter().enumerate() {
        let at = at.unwrap();
        assert!(at >= Duration::from_millis(700), "connection {i} closed at {at:?}, before the timeout");
    }
    let st = s.manager.stats();
    assert_eq!(st.closed.get("handshake_timeout"), Some(&(SLOW as u64)), "{st:?}");
    assert_eq!(st.handshakes_failed, SLOW as u64, "{st:?}");
}

fn peer_that_never_reads_hits_the_bounded_queue(backend: Arc<dyn Backend>) {
    let cfg = ManagerConfig::default().with_max_queue(64 * 1024).with_send_timeout(Duration::from_secs(2));
    let s = setup(&backend, 1, cfg, false);
    let events = s.manager.events();
    let _stuck = client(&backend, s.addr, false); // never reads
    let conn = s.workers[0].accept_timeout(WAIT).unwrap();
    let mut ok_client = client(&backend, s.addr, false);
    let other = s.workers[0].accept_timeout(WAIT).unwrap();
    // The worker writes far more than the queue and the socket buffers hold; its writes end
    // in an error instead of blocking forever.
    conn.stream().set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let t0 = Instant::now();
    let mut written = 0usize;
    let write_err = loop {
        match (&conn).write(&chunk) {
            Ok(n) => written += n,
            Err(e) => break e,
        }
        assert!(written < 1 << 30, "1 GiB accepted: the queue is not bounded");
    };
    assert!(t0.elapsed() < Duration::from_secs(15), "{write_err}");
    // Meanwhile another connection of the same worker is served.
    ok_client.write_all(b"still here").unwrap();
    assert_eq!(read_n(&other, 10), b"still here");
    let reason = loop {
        match events.recv_timeout(WAIT).expect("a Closed event") {
            ManagerEvent::Closed { conn: id, reason, .. } if id == conn.meta.id => break reason,
            _ => continue,
        }
    };
    assert!(matches!(reason, CloseReason::WriteQueueFull { limit: 65536 } | CloseReason::SendTimeout), "{reason:?}");
    let deadline = Instant::now() + WAIT;
    let told = loop {
        if let Some((id, r)) = s.workers[0].try_closed() {
            if id == conn.meta.id {
                break r;
            }
        }
        assert!(Instant::now() < deadline, "the worker was not told");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(told, reason);
}

fn lost_worker_connections_close_cleanly(backend: Arc<dyn Backend>) {
    let s = setup(&backend, 2, ManagerConfig::default(), false);
    let events = s.manager.events();
    let mut c0 = client(&backend, s.addr, false);
    let w0 = s.workers[0].accept_timeout(WAIT).unwrap();
    let mut c1 = client(&backend, s.addr, false);
    let w1 = s.workers[1].accept_timeout(WAIT).unwrap();
    // Worker 0 goes away but (as a thread could) keeps the plaintext socket: the manager
    // must close the connection itself.
    let Setup { manager, mut workers, addr } = s;
    let gone = workers.remove(0);
    drop(Arc::try_unwrap(gone).ok().expect("only this handle"));
    let lost = loop {
        match events.recv_timeout(WAIT).expect("a WorkerLost event") {
            ManagerEvent::WorkerLost { worker, open_connections } => break (worker, open_connections),
            _ => continue,
        }
    };
    assert_eq!(lost, (0, 1));
    let mut rest = Vec::new();
    assert_eq!(c0.read_to_end(&mut rest).unwrap(), 0, "clean close_notify to the lost worker's peer");
    drop(w0);
    // The other worker's connection is untouched, and new connections go to it.
    c1.write_all(b"abc").unwrap();
    echo_once(&w1, 3);
    let mut back = [0; 3];
    c1.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"abc");
    let _c2 = client(&backend, addr, false);
    assert!(workers[0].accept_timeout(WAIT).is_ok());
    let st = manager.stats();
    assert_eq!((st.workers_alive, st.workers_lost), (1, 1));
}

/// The inode of the socket that descriptor `fd` of this process refers to, if open.
fn socket_inode(fd: i32) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/self/fd/{fd}")).ok().map(|m| m.ino())
}

fn lost_worker_control_channel_is_closed(backend: Arc<dyn Backend>) {
    use std::os::fd::AsRawFd;
    let manager = TlsManager::new(table(&backend), ManagerConfig::default()).unwrap();
    let events = manager.events();
    let (m, w) = channel().unwrap();
    let (fd, ino) = (m.as_raw_fd(), socket_inode(m.as_raw_fd()).expect("the manager's end is open"));
    manager.add_worker(m).unwrap();
    let addr = manager.listen(ListenerConfig::workers("127.0.0.1:0".parse().unwrap())).unwrap();
    let worker = Worker::new(w).unwrap();
    let mut c = client(&backend, addr, false);
    // The worker goes away but keeps its connection's plaintext socket (as a thread could).
    let kept = worker.accept_timeout(WAIT).unwrap();
    drop(worker);
    loop {
        if let ManagerEvent::WorkerLost { .. } = events.recv_timeout(WAIT).expect("a WorkerLost event") {
            break;
        }
    }
    let mut rest = Vec::new();
    assert_eq!(c.read_to_end(&mut rest).unwrap(), 0, "clean close_notify to the lost worker's peer");
    // The manager let go of the lost worker: its end of the control channel is closed (the
    // descriptor number is free, or reused by another socket).
    let deadline = Instant::now() + WAIT;
    while socket_inode(fd) == Some(ino) {
        assert!(Instant::now() < deadline, "the manager keeps a lost worker's control channel open");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(manager.stats().workers_alive, 0);
    drop(kept);
}

fn no_worker_means_close_notify(backend: Arc<dyn Backend>) {
    let s = setup(&backend, 0, ManagerConfig::default(), false);
    let mut c = client(&backend, s.addr, false);
    let mut rest = Vec::new();
    assert_eq!(c.read_to_end(&mut rest).unwrap(), 0);
    let deadline = Instant::now() + WAIT;
    while s.manager.stats().closed.get("no_worker") != Some(&1) {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn manager_gone_is_reported_to_workers(backend: Arc<dyn Backend>) {
    let s = setup(&backend, 1, ManagerConfig::default(), false);
    let Setup { manager, workers, .. } = s;
    drop(manager);
    assert!(matches!(workers[0].accept_timeout(WAIT), Err(WorkerError::ManagerGone)));
    let (tx, rx) = mpsc::channel();
    let w = workers[0].clone();
    std::thread::spawn(move || {
        let _ = tx.send(w.connect(&ClientTarget::addr("127.0.0.1:9".parse().unwrap()), WAIT).is_err());
    });
    assert!(rx.recv_timeout(WAIT).unwrap());
}

/// A reload while a connection is open: the open one keeps working with its domain, new
/// connections get the new table's certificate, the table's statistics carry over and list
/// every open session with its peer.
fn reload_keeps_open_connections(backend: Arc<dyn Backend>) {
    let s = setup(&backend, 1, ManagerConfig::default(), false);
    let mut first = client(&backend, s.addr, false);
    let conn1 = s.workers[0].accept_timeout(WAIT).unwrap();

    let p = pki();
    let mut t = DomainTable::new(backend.clone());
    t.add_server(Listener::Any, None, &DomainConfig::server(p.server_alt.identity())).unwrap();
    t.add_client_default(&DomainConfig::client(p.roots())).unwrap();
    s.manager.reload(t);

    let refused = client_to(&backend, s.addr, false, SERVER_NAME);
    assert!(refused.is_err(), "the new table presents the alt certificate");
    let mut second = client_to(&backend, s.addr, false, ALT_NAME).expect("a new connection gets the new domain");
    let conn2 = s.workers[0].accept_timeout(WAIT).unwrap();
    assert_eq!(second.info().unwrap().peer.unwrap().subject_cn.as_deref(), Some(ALT_NAME));
    for (tls, conn) in [(&mut first, &conn1), (&mut second, &conn2)] {
        tls.write_all(b"OPTIONS sip:x SIP/2.0\r\n\r\n").unwrap();
        echo_once(conn, 25);
        let mut back = [0; 25];
        tls.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"OPTIONS sip:x SIP/2.0\r\n\r\n");
    }
    assert_eq!(first.info().unwrap().peer.unwrap().subject_cn.as_deref(), Some(SERVER_NAME));

    let table = s.manager.table();
    let srv = table.stats().into_iter().find(|d| d.label == "server any").unwrap();
    assert_eq!(srv.handshakes_ok, 2, "counted across the reload: {srv:?}");
    assert!(srv.failed_total() >= 1, "the refused client is counted: {srv:?}");
    let peers: Vec<_> = table.sessions().into_iter().filter_map(|(_, s)| s.peer).collect();
    assert!(peers.contains(&second.get_ref().local_addr().unwrap()), "{peers:?}");
    assert!(peers.contains(&first.get_ref().local_addr().unwrap()), "{peers:?}");
}

/// A worker on one tokio event loop (`Connection::into_async`) moves 1 MiB each way through
/// the manager while both sides of the hairpin fill up: the worker first leaves the
/// request unread (the manager's writes to it block and wait for writability), then
/// answers with one large write (its own writes block and wait). Every byte arrives in
/// order, and the connection ends cleanly.
fn async_worker_moves_bulk_both_ways(backend: Arc<dyn Backend>) {
    const N: usize = 1 << 20;
    let pattern = |i: usize| (i % 251) as u8;
    let s = setup(&backend, 1, ManagerConfig::default(), false);
    let worker = s.workers[0].clone();
    let served = std::thread::spawn(move || -> std::io::Result<usize> {
        let conn = worker.accept_timeout(WAIT).expect("accept");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async move {
            let conn = conn.into_async()?;
            tokio::time::sleep(Duration::from_millis(300)).await; // the request backs up
            let mut got = vec![0u8; N];
            let mut n = 0;
            while n < N {
                let k = conn.read(&mut got[n..]).await?;
                assert!(k > 0, "end of stream after {n} bytes");
                n += k;
            }
            assert!(got.iter().enumerate().all(|(i, b)| *b == pattern(i)), "request bytes out of order");
            let answer: Vec<u8> = (0..N).map(|i| pattern(i + 7)).collect();
            conn.write_all(&answer).await?;
            // Then the client closes: the worker sees the end of the stream.
            let mut rest = [0u8; 64];
            conn.read(&mut rest).await
        })
    });
    let mut tls = client(&backend, s.addr, false);
    let request: Vec<u8> = (0..N).map(pattern).collect();
    tls.write_all(&request).unwrap();
    let mut answer = vec![0u8; N];
    tls.read_exact(&mut answer).unwrap();
    assert!(answer.iter().enumerate().all(|(i, b)| *b == pattern(i + 7)), "answer bytes out of order");
    tls.shutdown().unwrap();
    assert_eq!(served.join().unwrap().unwrap(), 0, "the worker sees the end of the stream");
    assert_eq!(s.manager.stats().handshakes_ok, 1);
}

/// A worker that runs entirely on one tokio task, no thread blocked: `accept_async` takes
/// an inbound connection, which is read and written through `AsyncRead`/`AsyncWrite`;
/// `connect_async` opens an outbound one (to the manager's own listener, so its far end
/// arrives through `accept_async` too) and a second call reuses it.
fn tokio_worker_accepts_and_connects(backend: Arc<dyn Backend>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = setup(&backend, 1, ManagerConfig::default(), false);
    let worker = s.workers[0].clone();
    let addr = s.addr;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = std::thread::spawn(move || {
        let mut tls = client(&backend, addr, false);
        tls.write_all(b"REGISTER").unwrap();
        let mut got = [0u8; 3];
        tls.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"200");
        tls.shutdown().unwrap();
    });
    rt.block_on(async {
        let inbound = tokio::time::timeout(WAIT, worker.accept_async()).await.expect("in time").expect("accepted");
        let mut conn = inbound.into_async().unwrap();
        let mut got = [0u8; 8];
        conn.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"REGISTER");
        // Through AsyncWrite (the inherent write_all takes &self).
        AsyncWriteExt::write_all(&mut conn, b"200").await.unwrap();
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "the client's close_notify ends the stream");

        let target = ClientTarget::addr(addr).server_name(SERVER_NAME);
        let out = worker.connect_async(&target, WAIT).await.expect("outbound");
        assert!(!out.reused);
        let far = tokio::time::timeout(WAIT, worker.accept_async()).await.expect("in time").expect("far end");
        let (mut out, mut far) = (out.into_async().unwrap(), far.into_async().unwrap());
        AsyncWriteExt::write_all(&mut out, b"OPTIONS").await.unwrap();
        AsyncWriteExt::flush(&mut out).await.unwrap();
        let mut got = [0u8; 7];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"OPTIONS");
        let again = worker.connect_async(&target, WAIT).await.expect("reused");
        assert!(again.reused, "the same destination, domain and name reuse the connection");
    });
    client.join().unwrap();
}

per_backend!(
    handover_with_metadata,
    proxy_v2_header_comes_first,
    round_robin_over_workers,
    outbound_reuse_only_for_same_domain_and_name,
    outbound_failures_are_typed,
    handshake_timeout_closes,
    slowloris_handshakes_time_out,
    peer_that_never_reads_hits_the_bounded_queue,
    async_worker_moves_bulk_both_ways,
    tokio_worker_accepts_and_connects,
    lost_worker_connections_close_cleanly,
    lost_worker_control_channel_is_closed,
    no_worker_means_close_notify,
    manager_gone_is_reported_to_workers,
    reload_keeps_open_connections,
);
