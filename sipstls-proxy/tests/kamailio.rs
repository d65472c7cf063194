//! Kamailio 5.6 (Debian, plain TCP with `tcp_accept_haproxy`) behind `sipstls-proxy`:
//! OPTIONS answered through the proxy, a MESSAGE relayed out through the proxy's outbound
//! route to a TLS SIP peer and its answer back, and 5,000 concurrent TLS clients (the load
//! that breaks Kamailio's own tls module on this machine) with no failure and every Kamailio
//! process alive afterwards.

#[path = "../../sipstls-examples/tests/support/kamailio.rs"]
mod kamailio;
mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kamailio::Kamailio;
use sipstls::{DomainConfig, DomainTable, Listener, TlsStream};
use sipstls_conformance::peers::{free_port, ScratchDir};
use sipstls_conformance::pki::{pki, SERVER_NAME};
use support::*;

const KAMAILIO_CFG: &str = include_str!("fixtures/kamailio.cfg.in");

/// The tests run one at a time: the 5,000-client load takes both cores, and the relay
/// test measures the relay, not how long a starved process takes to answer.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A TLS SIP peer (the next hop of relayed MESSAGEs): the examples' responder behind a
/// sipstls server domain, one thread per connection, at most `max` connections.
fn tls_sip_peer(max: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let domain = rustls().server_domain(&DomainConfig::server(pki().server_ecdsa.identity())).unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming().take(max) {
            let Ok(tcp) = tcp else { continue };
            let domain = domain.clone();
            std::thread::spawn(move || {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
                if let Ok(mut tls) = TlsStream::accept(&*domain, tcp) {
                    let _ = sipstls_examples::server::sip_responder(&mut tls);
                }
            });
        }
    });
    addr
}

/// Kamailio on `port` (chosen before the proxy starts, so that the proxy can name it as
/// its upstream) relaying MESSAGE to the proxy's outbound listener on `outbound`.
fn start_kamailio(tag: &str, port: u16, outbound: SocketAddr, shm_mb: u32) -> Kamailio {
    let dir = ScratchDir::new(&format!("kamailio-{tag}"));
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let cfg =
        KAMAILIO_CFG.replace("@TCP_PORT@", &port.to_string()).replace("@OUTBOUND_PORT@", &outbound.port().to_string());
    std::fs::write(dir.path().join("kamailio.cfg"), cfg).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    Kamailio::spawn_with_memory(dir, run, addr, addr, shm_mb)
}

/// The proxy in front of Kamailio's `kport`, with an outbound route to `next_hop`. The
/// configuration is the README's, plus the outbound route and test settings.
fn start_proxy(tag: &str, kport: u16, next_hop: SocketAddr) -> Proxy {
    let config = format!(
        "tls = \"tls.cfg\"\n\
         [[listen]]\nname = \"sips\"\naddress = \"127.0.0.1:0\"\nupstreams = [\"127.0.0.1:{kport}\"]\nhealth_check = 0.2\n\
         [[outbound]]\nname = \"next-hop\"\naddress = \"127.0.0.1:0\"\ndestination = \"{next_hop}\"\nserver_name = \"{SERVER_NAME}\"\n\
         [service]\nmetrics = \"127.0.0.1:0\"\n"
    );
    Proxy::start(files(tag), &config)
}

fn wait_upstream_up(p: &Proxy, kport: u16) {
    let series = format!("sipstls_upstream_up{{listener=\"sips\",upstream=\"127.0.0.1:{kport}\"}}");
    let deadline = Instant::now() + WAIT;
    while p.metric(&series) != Some(1) {
        assert!(Instant::now() < deadline, "Kamailio never seen up by the proxy:\n{}", p.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn request(method: &str, local: SocketAddr, n: usize, body: &str) -> String {
    format!(
        "{method} sip:bob@{SERVER_NAME} SIP/2.0\r\n\
         Via: SIP/2.0/TLS {local};branch=z9hG4bK-proxy-{n};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@{SERVER_NAME}>;tag=a{n}\r\n\
         To: <sip:bob@{SERVER_NAME}>\r\n\
         Call-ID: proxy-{n}@{local}\r\n\
         CSeq: 1 {method}\r\n\
         Content-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Reads one SIP response (headers and Content-Length body) within the stream's timeout.
fn read_response<S: Read>(s: &mut S) -> std::io::Result<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_string();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length:").or(l.strip_prefix("l:")))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return Ok(String::from_utf8_lossy(&got[..end + 4 + len]).to_string());
            }
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got.extend_from_slice(&buf[..n]);
    }
}

/// Whether Kamailio's `X-Source` names `me`. Kamailio 5.6 reads the PROXY v2 port fields
/// with their bytes swapped (kamailio issue #3683, fixed after 5.6): the header carries the
/// specification's big-endian port, so the port seen may be `me`'s with its bytes swapped.
fn source_is(head: &str, me: SocketAddr) -> bool {
    let swapped = SocketAddr::new(me.ip(), me.port().swap_bytes());
    [me, swapped].iter().any(|a| head.contains(&format!("X-Source: {a}\r\n")))
}

/// Kamailio's processes: its process group (it is started as a group leader).
fn kamailio_processes(k: &Kamailio) -> BTreeSet<u32> {
    let pgid = k.child.id();
    let mut pids = BTreeSet::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // Fields after the command (which may hold spaces) start after the last ')'.
        let rest: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
        // state ppid pgrp ...
        if rest.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid) && rest.first() != Some(&"Z") {
            pids.insert(pid);
        }
    }
    pids
}

#[test]
fn kamailio_behind_the_proxy_answers_options_and_relays_message_out_over_tls() {
    let _alone = one_at_a_time();
    let next_hop = tls_sip_peer(8);
    let kport = free_port();
    let p = start_proxy("kamailio", kport, next_hop);
    let k = start_kamailio("behind-proxy", kport, p.addr("next-hop"), 64);
    wait_upstream_up(&p, kport);
    let mut tls = client(p.addr("sips")).expect("TLS to the proxy");
    let me = tls.get_ref().local_addr().unwrap();
    // OPTIONS: Kamailio saw the TLS client's address (from the PROXY v2 header).
    tls.write_all(request("OPTIONS", me, 1, "").as_bytes()).unwrap();
    let resp = read_response(&mut tls).expect("OPTIONS answered");
    assert!(resp.starts_with("SIP/2.0 200 OK"), "{resp}");
    assert!(source_is(&resp, me), "the source is the TLS client: {resp}");
    // MESSAGE: Kamailio relays it to the outbound listener, the proxy carries it over TLS to
    // the next hop, whose 200 (echoing the body) comes back the same way.
    tls.write_all(request("MESSAGE", me, 2, "hello over TLS, twice").as_bytes()).unwrap();
    let resp = read_response(&mut tls).expect("MESSAGE answered by the next hop");
    assert!(resp.starts_with("SIP/2.0 200 OK"), "{resp}\n--- kamailio ---\n{}", k.log());
    assert!(resp.ends_with("hello over TLS, twice"), "the next hop's answer: {resp}");
    assert!(k.wait_log("RELAY MESSAGE"), "{}", k.log());
    assert_eq!(p.metric("sipstls_handshakes_total{listener=\"next-hop\"}"), Some(1), "one outbound TLS connection");
    // A second MESSAGE reuses Kamailio's TCP connection, hence the same TLS connection.
    tls.write_all(request("MESSAGE", me, 3, "again").as_bytes()).unwrap();
    let resp = read_response(&mut tls).unwrap();
    assert!(resp.starts_with("SIP/2.0 200 OK") && resp.ends_with("again"), "{resp}");
    assert_eq!(p.metric("sipstls_handshakes_total{listener=\"next-hop\"}"), Some(1));
}

/// 5,000 TLS clients at once, each sending OPTIONS through the proxy to Kamailio and
/// keeping its connection until all have their answer.
#[test]
fn five_thousand_concurrent_tls_clients_through_the_proxy_to_kamailio() {
    let _alone = one_at_a_time();
    const CLIENTS: usize = 5_000;
    let next_hop = tls_sip_peer(1);
    let kport = free_port();
    let p = start_proxy("load", kport, next_hop);
    let k = start_kamailio("load", kport, p.addr("next-hop"), 256);
    wait_upstream_up(&p, kport);
    let before = kamailio_processes(&k);
    assert!(before.len() >= 7, "Kamailio's processes: {before:?}");
    let addr = p.addr("sips");
    let mut table = DomainTable::new(rustls());
    table.add_client_default(&DomainConfig::client(pki().roots())).unwrap();
    let _ = Listener::Any;
    let connector = sipstls::tokio::TlsConnector::from(Arc::new(table));
    let answered = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let started = Instant::now();
    let failures: Vec<String> = rt.block_on(async {
        let (release_tx, release) = tokio::sync::watch::channel(false);
        let gate = Arc::new(tokio::sync::Semaphore::new(200));
        let mut tasks = Vec::with_capacity(CLIENTS);
        for n in 0..CLIENTS {
            let (connector, gate, answered, failed, mut release) =
                (connector.clone(), gate.clone(), answered.clone(), failed.clone(), release.clone());
            tasks.push(tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let permit = gate.acquire_owned().await.unwrap();
                let work = async {
                    let tcp = tokio::net::TcpStream::connect(addr).await?;
                    let me = tcp.local_addr()?;
                    let target = sipstls::ClientTarget::addr_name(addr, SERVER_NAME);
                    let mut tls = connector.connect(&target, tcp).await?;
                    tls.write_all(request("OPTIONS", me, n, "").as_bytes()).await?;
                    let mut got = Vec::new();
                    let mut buf = [0u8; 2048];
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        let r = tls.read(&mut buf).await?;
                        if r == 0 {
                            return Err(std::io::Error::other("closed before the answer"));
                        }
                        got.extend_from_slice(&buf[..r]);
                    }
                    let head = String::from_utf8_lossy(&got).to_string();
                    if !head.starts_with("SIP/2.0 200 OK") || !source_is(&head, me) {
                        return Err(std::io::Error::other(format!("unexpected answer: {head}")));
                    }
                    Ok::<_, std::io::Error>(tls)
                };
                let result = tokio::time::timeout(Duration::from_secs(120), work).await;
                drop(permit);
                match result {
                    Ok(Ok(tls)) => {
                        answered.fetch_add(1, Ordering::Relaxed);
                        // Hold the connection until every client has its answer.
                        let _ = tokio::time::timeout(Duration::from_secs(240), release.wait_for(|r| *r)).await;
                        drop(tls);
                        Ok(())
                    }
                    Ok(Err(e)) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        Err(format!("client {n}: {e}"))
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        Err(format!("client {n}: no answer in 120 s"))
                    }
                }
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(240);
        while answered.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < CLIENTS && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        release_tx.send_replace(true);
        let mut failures = Vec::new();
        for t in tasks {
            if let Err(e) = t.await.unwrap() {
                failures.push(e);
            }
        }
        failures
    });
    let elapsed = started.elapsed();
    eprintln!(
        "{CLIENTS} clients: {} answered, {} failed in {elapsed:?}",
        answered.load(Ordering::Relaxed),
        failures.len()
    );
    assert!(failures.is_empty(), "{} failures, first: {:?}", failures.len(), &failures[..failures.len().min(5)]);
    assert_eq!(answered.load(Ordering::Relaxed), CLIENTS);
    assert!(!k.exited(), "Kamailio's main process died:\n{}", k.log());
    let after = kamailio_processes(&k);
    assert_eq!(before, after, "every Kamailio process alive, none replaced");
    let log = k.log();
    assert!(!log.contains("BUG") && !log.contains("SIGSEGV") && !log.contains("freeing already freed"), "{log}");
    assert_eq!(p.metric("sipstls_handshakes_total{listener=\"sips\"}"), Some(CLIENTS as u64));
    assert_eq!(p.metric("sipstls_handshake_failures_total{listener=\"sips\",reason=\"handshake_timeout\"}"), None);
}
