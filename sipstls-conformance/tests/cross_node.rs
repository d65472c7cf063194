//! Resumption across two server nodes through one Redis (`harness = false`).
//!
//! For every backend of the build: two server processes (this binary re-executed as a
//! node, each on its own loopback port) share a `redis-server` started here. A client makes
//! a full handshake with node A, then resumes on node B, with
//! - session IDs / TLS 1.3 stateful tickets in [`RedisSessionStore`] (`SESSION_STORE`), and
//! - stateless tickets sealed with [`RedisTicketKeys`] (`TICKET_KEYS`),
//!
//! over TLS 1.2 and TLS 1.3. Then: a corrupted entry in Redis is not trusted (full
//! handshake); Redis stopped mid-run: handshakes continue as full handshakes within a
//! bound. A backend that does not claim a capability must refuse it with
//! `Error::Unsupported`.
//!
//! Every server (Redis, nodes) is stopped by its PID when its guard drops, also when a
//! check fails; every wait is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipstls::{
    Backend, Capabilities, ClientDomain, DomainConfig, Error, Identity, ProtocolVersion, Resumption,
    SessionStoreHandle, TicketKeysHandle, TlsStream,
};
use sipstls_conformance::pki::{pki, SERVER_NAME};
use sipstls_redis::testing::RedisServer;
use sipstls_redis::{RedisConfig, RedisSessionStore, RedisTicketKeys};

const NODE_ENV: &str = "SIPSTLS_REDIS_NODE";
/// A handshake (full or resumed, Redis up or down) must finish within this.
const HANDSHAKE_BOUND: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    /// Session IDs (TLS 1.2) and stateful tickets (TLS 1.3) in the Redis session store.
    Store,
    /// Stateless tickets with keys from Redis.
    Tickets,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Store => "store",
            Mode::Tickets => "tickets",
        }
    }

    fn capability(self) -> Capabilities {
        match self {
            Mode::Store => Capabilities::SESSION_STORE,
            Mode::Tickets => Capabilities::TICKET_KEYS,
        }
    }
}

fn backend(name: &str) -> Option<Arc<dyn Backend>> {
    sipstls::backends().into_iter().find(|b| b.info().name == name)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// The server domain of a node.
fn server_config(identity: Identity, mode: Mode, redis: &RedisConfig) -> Result<DomainConfig, Error> {
    let cfg = DomainConfig::server(identity);
    Ok(match mode {
        Mode::Store => cfg
            .with_resumption(Resumption::SESSION_IDS)
            .with_session_store(SessionStoreHandle::new(RedisSessionStore::new(redis.clone())?)),
        Mode::Tickets => cfg.with_resumption(Resumption::TICKETS).with_ticket_keys(TicketKeysHandle::new(
            RedisTicketKeys::new(redis.clone(), Duration::from_secs(3600), Duration::from_secs(5))?,
        )),
    })
}

// ---------------------------------------------------------------------------------------
// The node: a TLS server answering each connection with `resumed=0|1`.

fn node_main() -> ! {
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let code = match node(
        &env("NODE_BACKEND"),
        &env("NODE_MODE"),
        &env("NODE_REDIS"),
        &env("NODE_SECRET"),
        &env("NODE_PKI"),
    ) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("node: {e}");
            1
        }
    };
    std::process::exit(code)
}

fn node(backend_name: &str, mode: &str, url: &str, secret: &str, pki_dir: &str) -> Result<(), String> {
    let b = backend(backend_name).ok_or("unknown backend")?;
    let mode = if mode == "store" { Mode::Store } else { Mode::Tickets };
    let secret: [u8; 32] = unhex(secret).and_then(|v| v.try_into().ok()).ok_or("bad secret")?;
    let dir = std::path::Path::new(pki_dir);
    let read = |f: &str| std::fs::read(dir.join(f)).map_err(|e| format!("{f}: {e}"));
    let identity = Identity::from_pem(&read("server.pem")?, &read("server.key")?).map_err(|e| e.to_string())?;
    let cfg = server_config(identity, mode, &RedisConfig::new(url, secret)).map_err(|e| e.to_string())?;
    let domain = b.server_domain(&cfg).map_err(|e| e.to_string())?;
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    println!("PORT {}", listener.local_addr().map_err(|e| e.to_string())?.port());
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    // The parent closing our stdin (or dying) ends the node.
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        std::process::exit(0);
    });
    for tcp in listener.incoming() {
        let Ok(tcp) = tcp else { continue };
        let domain = domain.clone();
        std::thread::spawn(move || {
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = tcp.set_write_timeout(Some(Duration::from_secs(5)));
            let Ok(mut tls) = TlsStream::accept(&*domain, tcp) else { return };
            if tls.handshake().is_err() {
                return;
            }
            let resumed = tls.info().is_some_and(|i| i.resumed);
            let _ = tls.write_all(format!("resumed={}\n", u8::from(resumed)).as_bytes());
            let _ = tls.flush();
            let mut buf = [0u8; 64];
            let _ = tls.read(&mut buf); // until the client closes
        });
    }
    Ok(())
}

/// A node process, killed by its PID when dropped.
struct Node {
    child: Child,
    port: u16,
}

impl Node {
    fn start(backend: &str, mode: Mode, redis_url: &str, secret: &[u8; 32], pki_dir: &str) -> Result<Node, String> {
        let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
            .env(NODE_ENV, "1")
            .env("NODE_BACKEND", backend)
            .env("NODE_MODE", mode.name())
            .env("NODE_REDIS", redis_url)
            .env("NODE_SECRET", hex(secret))
            .env("NODE_PKI", pki_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        // Read the port in a thread, so a node that never prints cannot hang us.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut node = Node { child, port: 0 };
        let line = rx.recv_timeout(Duration::from_secs(20)).map_err(|_| "node did not report its port in 20 s")?;
        node.port =
            line.trim().strip_prefix("PORT ").and_then(|p| p.parse().ok()).ok_or(format!("node said {line:?}"))?;
        Ok(node)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One connection: (client sees resumed, server says resumed, time).
fn connect(domain: &dyn ClientDomain, port: u16) -> Result<(bool, bool, Duration), String> {
    let t = Instant::now();
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    let mut tls = TlsStream::connect(domain, SERVER_NAME, tcp).map_err(|e| format!("connect: {e}"))?;
    tls.handshake().map_err(|e| format!("handshake: {e}"))?;
    let client_resumed = tls.info().ok_or("no info")?.resumed;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") && line.len() < 64 {
        match tls.read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            Ok(_) => break,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let elapsed = t.elapsed();
    let server_resumed = match &line[..] {
        b"resumed=1\n" => true,
        b"resumed=0\n" => false,
        other => return Err(format!("server said {:?}", String::from_utf8_lossy(other))),
    };
    let _ = tls.shutdown();
    Ok((client_resumed, server_resumed, elapsed))
}

fn client(b: &dyn Backend, v: ProtocolVersion) -> Result<Arc<dyn ClientDomain>, String> {
    b.client_domain(&DomainConfig::client(pki().roots()).with_version(v)).map_err(|e| e.to_string())
}

fn expect(what: &str, got: (bool, bool, Duration), resumed: bool) -> Result<(), String> {
    if got.0 != resumed || got.1 != resumed {
        return Err(format!("{what}: client resumed={} server resumed={}, expected {resumed}", got.0, got.1));
    }
    if got.2 > HANDSHAKE_BOUND {
        return Err(format!("{what}: took {:?}", got.2));
    }
    Ok(())
}

struct Env {
    pki_dir: String,
}

/// A client resumes on B with what A gave it; a corrupted entry is not trusted (store
/// mode); with Redis stopped, handshakes go on as full ones within the bound.
fn cross_node(env: &Env, b: &Arc<dyn Backend>, mode: Mode, v: ProtocolVersion) -> Result<(), String> {
    let name = b.info().name;
    let mut redis = RedisServer::start().map_err(|e| e.to_string())?;
    let mut secret = [0u8; 32];
    b.fill_random(&mut secret).map_err(|e| e.to_string())?;
    let a = Node::start(name, mode, &redis.url(), &secret, &env.pki_dir)?;
    let bnode = Node::start(name, mode, &redis.url(), &secret, &env.pki_dir)?;

    let c = client(&**b, v)?;
    expect("first handshake on A", connect(&*c, a.port)?, false)?;
    expect("resumption on B with A's session", connect(&*c, bnode.port)?, true)?;
    expect("resumption back on A", connect(&*c, a.port)?, true)?;
    // A client that never met the cluster: full handshake on B.
    expect("new client on B", connect(&*client(&**b, v)?, bnode.port)?, false)?;

    if mode == Mode::Store {
        // Corrupt every stored session: B must not trust them.
        let c2 = client(&**b, v)?;
        expect("first handshake on A (before corruption)", connect(&*c2, a.port)?, false)?;
        let keys: Vec<Vec<u8>> = redis.cmd(redis::cmd("KEYS").arg("sipstls:s:*")).map_err(|e| e.to_string())?;
        if keys.is_empty() {
            return Err("no session in Redis".into());
        }
        for k in &keys {
            let mut v: Vec<u8> = redis.cmd(redis::cmd("GET").arg(k)).map_err(|e| e.to_string())?;
            let i = v.len() / 2;
            v[i] ^= 0x10;
            let _: () = redis.cmd(redis::cmd("SET").arg(k).arg(v)).map_err(|e| e.to_string())?;
        }
        expect("corrupted entry on B", connect(&*c2, bnode.port)?, false)?;
    }

    // Redis stopped mid-run.
    let c3 = client(&**b, v)?;
    expect("handshake on A before Redis stops", connect(&*c3, a.port)?, false)?;
    redis.stop();
    match mode {
        Mode::Store => {
            // Sessions are gone with Redis: full handshakes, within the bound, repeatedly
            // (the first one pays the connection timeout, the next skip Redis).
            for i in 0..5 {
                expect(&format!("B with Redis down, #{i}"), connect(&*c3, bnode.port)?, false)?;
            }
            expect("new client on A with Redis down", connect(&*client(&**b, v)?, a.port)?, false)?;
        }
        Mode::Tickets => {
            // Nodes keep the keys they have: tickets still resume across nodes.
            expect("ticket on B with Redis down (cached keys)", connect(&*c3, bnode.port)?, true)?;
            // A node started while Redis is down has no shared keys: the cluster's ticket
            // gets a full handshake there, and no handshake fails. (rustls and OpenSSL then
            // issue no tickets; wolfSSL, which fails a handshake whose ticket it cannot
            // make, seals with the node's own keys, so later connections may resume on
            // that node.)
            let fresh = Node::start(name, mode, &redis.url(), &secret, &env.pki_dir)?;
            expect("cluster ticket on a fresh node with Redis down", connect(&*c3, fresh.port)?, false)?;
            for i in 1..3 {
                let r = connect(&*c3, fresh.port)?;
                expect(&format!("fresh node with Redis down, #{i}"), r, r.0 && name == "wolfssl")?;
            }
        }
    }
    Ok(())
}

/// A forked worker process, killed by its PID when dropped.
struct Worker(libc::pid_t);

impl Drop for Worker {
    fn drop(&mut self) {
        // SAFETY: signals and reaps our own child.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            libc::waitpid(self.0, std::ptr::null_mut(), 0);
        }
    }
}

/// The child side of [`shm_workers`]: serves connections one at a time, for at most 60 s.
fn worker_loop(listener: TcpListener, domain: &dyn sipstls::ServerDomain) -> ! {
    // SAFETY: alarm only arms a timer; its default action ends this process.
    unsafe { libc::alarm(60) };
    for tcp in listener.incoming() {
        let Ok(tcp) = tcp else { continue };
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = tcp.set_write_timeout(Some(Duration::from_secs(5)));
        let Ok(mut tls) = TlsStream::accept(domain, tcp) else { continue };
        if tls.handshake().is_err() {
            continue;
        }
        let resumed = tls.info().is_some_and(|i| i.resumed);
        let _ = tls.write_all(format!("resumed={}\n", u8::from(resumed)).as_bytes());
        let _ = tls.flush();
        let mut buf = [0u8; 64];
        let _ = tls.read(&mut buf);
    }
    // SAFETY: ends the child without the parent's destructors.
    unsafe { libc::_exit(0) }
}

/// Pinned model on one machine: two worker processes forked from one parent share a
/// [`ShmSessionStore`] in the arena; a session ID (TLS 1.2) or stateful ticket (TLS 1.3)
/// cached by worker A resumes in worker B. Runs before any thread of this process exists.
fn shm_workers(b: &Arc<dyn Backend>, v: ProtocolVersion) -> Result<(), String> {
    let arena = sipstls_shm::SharedArena::create(16 << 20).map_err(|e| e.to_string())?;
    let store = sipstls_shm::ShmSessionStore::new(arena, 1024, 8192).ok_or("arena too small")?;
    let cfg = DomainConfig::server(pki().server_ecdsa.identity())
        .with_process_model(sipstls::ProcessModel::Pinned)
        .with_resumption(Resumption::SESSION_IDS)
        .with_session_store(SessionStoreHandle::new(store));
    let domain = b.server_domain(&cfg).map_err(|e| e.to_string())?;
    b.prepare_for_fork().map_err(|e| e.to_string())?;
    let mut workers = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..2 {
        let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        ports.push(l.local_addr().map_err(|e| e.to_string())?.port());
        // SAFETY: this process has one thread here (shm cases run first); the child
        // serves connections and leaves with _exit.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err("fork failed".into());
        }
        if pid == 0 {
            worker_loop(l, &*domain);
        }
        workers.push(Worker(pid));
    }
    let c = client(&**b, v)?;
    expect("first handshake on worker A", connect(&*c, ports[0])?, false)?;
    expect("worker B resumes A's session", connect(&*c, ports[1])?, true)?;
    expect("worker A resumes B's session", connect(&*c, ports[0])?, true)?;
    expect("new client on B", connect(&*client(&**b, v)?, ports[1])?, false)?;
    drop(workers);
    Ok(())
}

/// A backend without the capability refuses the setting with `Error::Unsupported`.
fn refused(b: &Arc<dyn Backend>, mode: Mode) -> Result<(), String> {
    let redis = RedisConfig::new("redis://127.0.0.1:1/", [0; 32]);
    let cfg = server_config(pki().server_ecdsa.identity(), mode, &redis).map_err(|e| e.to_string())?;
    match b.server_domain(&cfg) {
        Err(Error::Unsupported { capability, .. }) if capability == mode.capability() => Ok(()),
        Err(e) => Err(format!("refused with the wrong error: {e}")),
        Ok(_) => Err("accepted a setting it does not claim".into()),
    }
}

fn main() {
    if std::env::var_os(NODE_ENV).is_some() {
        node_main();
    }
    let dir = std::env::temp_dir().join(format!("sipstls-cross-node-{}", std::process::id()));
    let pki_dir = pki().write_to(&dir).expect("write PKI").to_string_lossy().into_owned();
    let env = Env { pki_dir };
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let (mut passed, mut failed) = (0, 0);
    let mut report = |name: String, t: Instant, r: Result<(), String>| match r {
        Ok(()) => {
            passed += 1;
            println!("test {name} ... ok ({:.1} s)", t.elapsed().as_secs_f64());
        }
        Err(e) => {
            failed += 1;
            println!("test {name} ... FAILED: {e}");
        }
    };
    // Forking cases first, while this process has a single thread.
    for b in sipstls::backends() {
        let caps = b.capabilities();
        if !caps.contains(Capabilities::SESSION_STORE) || !caps.contains(Capabilities::MODEL_PINNED) {
            continue;
        }
        for v in [ProtocolVersion::Tls12, ProtocolVersion::Tls13] {
            let name = format!("{}::shm_workers::{}", b.info().name, v.name());
            if !caps.contains(v.capability()) || filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
                continue;
            }
            report(name, Instant::now(), shm_workers(&b, v));
        }
    }
    for b in sipstls::backends() {
        for mode in [Mode::Store, Mode::Tickets] {
            let claims = b.capabilities().contains(mode.capability());
            let cases: Vec<(String, Option<ProtocolVersion>)> = if claims {
                [ProtocolVersion::Tls12, ProtocolVersion::Tls13]
                    .into_iter()
                    .filter(|v| b.capabilities().contains(v.capability()))
                    .map(|v| (format!("{}::{}::{}", b.info().name, mode.name(), v.name()), Some(v)))
                    .collect()
            } else {
                vec![(format!("{}::{}::refused", b.info().name, mode.name()), None)]
            };
            for (name, v) in cases {
                if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
                    continue;
                }
                let t = Instant::now();
                let r = match v {
                    Some(v) => cross_node(&env, &b, mode, v),
                    None => refused(&b, mode),
                };
                report(name, t, r);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("\ncross_node: {passed} passed, {failed} failed");
    std::process::exit(if failed == 0 && passed > 0 { 0 } else { 1 });
}
