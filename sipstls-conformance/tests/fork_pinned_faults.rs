//! Faults in the **pinned** process model, for every backend of the build that claims it:
//! worker processes SIGKILLed at random points while a client drives 10,000 TLS
//! connections (`SIPSTLS_FAULT_CONNS`; 4,000 for Mbed TLS, see `connections`) over loopback, each killed worker replaced by a new
//! fork of the parent (as a pre-forking SIP server's supervisor does).
//!
//! Set-up: the server domain is built before `fork()`, with a [`ShmSessionStore`] in a
//! shared arena when the backend claims `SESSION_STORE` (session IDs and TLS 1.3 stateful
//! tickets of every worker in one bounded table); 4 workers accept on one shared
//! listener, each connection lives in the worker that accepted it, one at a time. The
//! client is a forked process with 4 threads (the parent stays single-threaded, so it can
//! fork replacements safely); each connection does a handshake, one request, one answer.
//! The parent kills a random worker 5 times at random connection counts plus a random
//! delay of up to 3 ms (so the victim may be idle, mid-handshake, mid-answer, or holding
//! the session store's lock), reaps it by PID and forks a replacement.
//!
//! Asserted:
//! - every connection ends (no hang); a connection fails only if a killed worker held it
//!   when it died (each victim is stopped first and the connections it holds are read from
//!   its descriptors and the kernel's socket table: at most one, as a worker serves one
//!   connection at a time); every other connection completes with its answer;
//! - the surviving workers are all alive and the replacements serve;
//! - nothing leaks: each surviving worker's descriptors are back to their count before its
//!   first connection and its heap (`mallinfo2`) grew by less than `HEAP_BOUND` between
//!   its `WARM`-th and last connection; the parent's descriptors are unchanged; the session
//!   store holds at most its slots and the arena is at its baseline (the store never
//!   allocates after creation, even after a holder of its lock was killed);
//! - the parent still completes a handshake (in process, and over TCP with a surviving
//!   worker) at the end, and no child process is left unreaped.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipstls::{Backend, Capabilities, ClientDomain, ProcessModel, ServerDomain, TlsStream};
use sipstls_conformance::checks::{client_cfg, server_cfg};
use sipstls_conformance::fork::{
    accepted_peer_ports, hard_timeout, heap_in_use, no_children_left, open_fds, shared_zeroed, Rng, Tally, Workers,
};
use sipstls_conformance::pki::{pki, SERVER_NAME};
use sipstls_conformance::pump;
use sipstls_shm::{SharedArena, ShmSessionStore};

const WORKERS: usize = 4;
const CLIENT_THREADS: usize = 4;
const KILLS: usize = 5;
const DEFAULT_CONNECTIONS: usize = 10_000;
const MBEDTLS_CONNECTIONS: usize = 4_000;
const MAX_CONNECTIONS: usize = 100_000;
const MAX_SLOTS: usize = WORKERS + KILLS;
const STORE_SLOTS: usize = 256;
/// A worker's heap is compared between its `WARM`-th connection and its last.
const WARM: u32 = 200;
/// Largest heap growth allowed after warm-up (caches filling up to their bounds, malloc's
/// own per-size caches); a leak of one session per connection is far above it.
const HEAP_BOUND: usize = 512 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest time one backend's run may take before the check fails.
const RUN_LIMIT: Duration = Duration::from_secs(240);

/// What one worker reports, in shared memory.
#[repr(C)]
struct Slot {
    pid: AtomicU32,
    served: AtomicU32,
    fds_start: AtomicU32,
    fds_now: AtomicU32,
    heap_warm: AtomicU64,
    heap_now: AtomicU64,
}

/// State shared by the parent, the workers and the client process (all zero at first).
#[repr(C)]
struct Board {
    /// Local port of a client connection -> PID of the worker that accepted it.
    accepted_by: [AtomicU32; 65536],
    issued: AtomicU32,
    completed: AtomicU32,
    /// Per connection: state (bits 0-1: 1 answered, 2 failed, 3 inconsistent), bit 2
    /// resumed, bits 16-31 the client's local port, bits 32-63 the PID that answered (or,
    /// for a failure, that accepted it as far as it had recorded).
    results: [AtomicU64; MAX_CONNECTIONS],
    slots: [Slot; MAX_SLOTS],
}

const ANSWERED: u64 = 1;
const FAILED: u64 = 2;
const INCONSISTENT: u64 = 3;

// ---------------------------------------------------------------------------------------
// Worker side.

fn worker(listener: &TcpListener, domain: &dyn ServerDomain, board: &Board, slot: usize) -> i32 {
    let me = &board.slots[slot];
    let pid = std::process::id();
    me.fds_start.store(open_fds(pid as i32) as u32, Ordering::SeqCst);
    me.pid.store(pid, Ordering::SeqCst);
    loop {
        let Ok((tcp, peer)) = listener.accept() else { return 3 };
        board.accepted_by[usize::from(peer.port())].store(pid, Ordering::SeqCst);
        let _ = serve_one(tcp, domain); // a failed connection is the peer's problem
        let n = me.served.fetch_add(1, Ordering::SeqCst) + 1;
        let heap = heap_in_use() as u64;
        if n == WARM {
            me.heap_warm.store(heap, Ordering::SeqCst);
        }
        me.heap_now.store(heap, Ordering::SeqCst);
        me.fds_now.store(open_fds(pid as i32) as u32, Ordering::SeqCst);
    }
}

fn serve_one(tcp: TcpStream, domain: &dyn ServerDomain) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut tls = TlsStream::accept(domain, tcp)?;
    let resumed = tls.info().is_some_and(|i| i.resumed);
    let mut line = String::new();
    BufReader::new(&mut tls).read_line(&mut line)?;
    writeln!(tls, "pid={} resumed={}", std::process::id(), u8::from(resumed))?;
    tls.shutdown()
}

// ---------------------------------------------------------------------------------------
// Client side (a forked process with threads).

/// One connection: (answering PID, resumed) or an error; `port` is set once connected.
fn hello(cd: &dyn ClientDomain, addr: SocketAddr, port: &mut u16) -> Result<(u32, bool), String> {
    let tcp = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    *port = tcp.local_addr().map_err(|e| e.to_string())?.port();
    tcp.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
    let mut tls = TlsStream::connect(cd, SERVER_NAME, tcp).map_err(|e| format!("handshake: {e}"))?;
    tls.write_all(b"hello\n").map_err(|e| format!("request: {e}"))?;
    let mut line = String::new();
    BufReader::new(&mut tls).read_line(&mut line).map_err(|e| format!("answer: {e}"))?;
    let mut pid = None;
    let mut resumed = None;
    for part in line.split_whitespace() {
        match part.split_once('=') {
            Some(("pid", v)) => pid = v.parse().ok(),
            Some(("resumed", v)) => resumed = Some(v == "1"),
            _ => {}
        }
    }
    pid.zip(resumed).ok_or_else(|| format!("bad answer {line:?}"))
}

fn client(board: &Board, cd: &dyn ClientDomain, addr: SocketAddr, total: usize) -> i32 {
    let printed = AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..CLIENT_THREADS {
            s.spawn(|| loop {
                let i = board.issued.fetch_add(1, Ordering::SeqCst) as usize;
                if i >= total {
                    return;
                }
                let mut port = 0u16;
                let r = hello(cd, addr, &mut port);
                // Taken back, so a later connection from the same port starts clean.
                let acceptor =
                    if port == 0 { 0 } else { board.accepted_by[usize::from(port)].swap(0, Ordering::SeqCst) };
                let word = u64::from(port) << 16
                    | match r {
                        Ok((pid, resumed)) if pid == acceptor => {
                            ANSWERED | u64::from(resumed) << 2 | u64::from(pid) << 32
                        }
                        Ok((pid, _)) => {
                            println!("    connection {i}: answered by {pid} but accepted by {acceptor}");
                            INCONSISTENT | u64::from(pid) << 32
                        }
                        Err(e) => {
                            if printed.fetch_add(1, Ordering::SeqCst) < 20 {
                                println!("    connection {i} (port {port}, accepted by worker {acceptor}) failed: {e}");
                            }
                            FAILED | u64::from(acceptor) << 32
                        }
                    };
                board.results[i].store(word, Ordering::SeqCst);
                board.completed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    0
}

// ---------------------------------------------------------------------------------------
// The check.

/// Connections per backend: `SIPSTLS_FAULT_CONNS`, else 10,000, except Mbed TLS, whose
/// debug build is far slower (its C library is built without optimisation too): it runs
/// `MBEDTLS_CONNECTIONS` to stay within about a minute (docs/robustness.md).
fn connections(backend: &str) -> usize {
    let default = if backend == "mbedtls" { MBEDTLS_CONNECTIONS } else { DEFAULT_CONNECTIONS };
    std::env::var("SIPSTLS_FAULT_CONNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
        .clamp(100, MAX_CONNECTIONS)
}

fn workers_killed_under_load(backend: &Arc<dyn Backend>) {
    let name = backend.info().name;
    let total = connections(name);
    let mut rng = Rng::from_env_or_clock();
    let seed = rng.state();
    // SAFETY: `Board` is atomics only: all-zero is valid, and it holds no pointers.
    let board: &'static Board = unsafe { shared_zeroed() };

    // The domains, the store and the arena, before any fork.
    let mut scfg = server_cfg(sipstls::ProtocolVersion::Tls13).with_process_model(ProcessModel::Pinned);
    scfg.min_version = sipstls::ProtocolVersion::Tls12;
    let mut store: Option<(&'static SharedArena, Arc<ShmSessionStore>, usize)> = None;
    if backend.capabilities().contains(Capabilities::SESSION_STORE) {
        let arena = SharedArena::create(16 << 20).expect("arena");
        let s = Arc::new(ShmSessionStore::new(arena, STORE_SLOTS, 8192).expect("store in the arena"));
        let baseline = arena.stats().in_use;
        scfg = scfg
            .with_resumption(sipstls::Resumption::SESSION_IDS)
            .with_session_store(sipstls::SessionStoreHandle::from_arc(s.clone()));
        store = Some((arena, s, baseline));
    }
    let server = backend.server_domain(&scfg).expect("server domain");
    let mut ccfg = client_cfg(sipstls::ProtocolVersion::Tls13);
    ccfg.min_version = sipstls::ProtocolVersion::Tls12;
    let client_domain = backend.client_domain(&ccfg).expect("client domain");
    backend.prepare_for_fork().expect("prepare_for_fork");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().unwrap();
    let parent_fds = open_fds(std::process::id() as i32);

    let body = |slot: usize| worker(&listener, &*server, board, slot);
    let mut workers = Workers::spawn(WORKERS, RUN_LIMIT + Duration::from_secs(30), body);
    let mut slot_of: Vec<libc::pid_t> = workers.pids().to_vec();
    let start = Instant::now();
    // Every worker ready (idle in accept, descriptors counted) before the load starts.
    while (0..WORKERS).any(|i| board.slots[i].pid.load(Ordering::SeqCst) == 0) {
        assert!(start.elapsed() < Duration::from_secs(10), "workers did not start");
        std::thread::sleep(Duration::from_millis(2));
    }
    let cd = client_domain.clone();
    let mut client_proc = Workers::spawn(1, RUN_LIMIT + Duration::from_secs(20), |_| client(board, &*cd, addr, total));
    let client_pid = client_proc.pids()[0];

    // Kill points: random connection counts between 5% and 90% of the run.
    let mut points: Vec<u32> =
        (0..KILLS).map(|_| (total / 20 + rng.below((total * 85 / 100) as u64) as usize) as u32).collect();
    points.sort_unstable();
    let mut killed: Vec<libc::pid_t> = Vec::new();
    // Client port -> the killed worker that held that connection when it died.
    let mut owned: Vec<(u16, libc::pid_t)> = Vec::new();
    let mut client_exit = None;
    while client_exit.is_none() {
        assert!(start.elapsed() < RUN_LIMIT, "{name}: the run took longer than {RUN_LIMIT:?} (seed {seed})");
        let done = board.completed.load(Ordering::SeqCst);
        if killed.len() < points.len() && done >= points[killed.len()] {
            std::thread::sleep(Duration::from_micros(rng.below(3000)));
            let alive: Vec<libc::pid_t> = slot_of.iter().copied().filter(|p| !killed.contains(p)).collect();
            let victim = alive[rng.below(alive.len() as u64) as usize];
            // Stopped first: the connections it owns at its death are read from its
            // descriptors (the kernel's view, not the worker's own bookkeeping).
            assert!(workers.stop(victim, Duration::from_secs(5)), "{name}: worker {victim} did not stop");
            let ports = accepted_peer_ports(victim, addr.port());
            assert!(
                ports.len() <= 1,
                "{name}: worker {victim} holds {} client connections (first: {:?})",
                ports.len(),
                &ports[..ports.len().min(5)]
            );
            owned.extend(ports.iter().map(|p| (*p, victim)));
            workers.kill(victim);
            assert_eq!(
                workers.wait(victim, Duration::from_secs(10)),
                Some(-libc::SIGKILL),
                "{name}: worker {victim} was not killed by SIGKILL"
            );
            killed.push(victim);
            println!(
                "    kill {} after {done} connections ({:.2} s): worker {victim}, holding {ports:?}",
                killed.len(),
                start.elapsed().as_secs_f64()
            );
            let pid = workers.spawn_one(slot_of.len(), RUN_LIMIT + Duration::from_secs(30), body);
            slot_of.push(pid);
        }
        client_exit = client_proc.wait(client_pid, Duration::ZERO);
        std::thread::sleep(Duration::from_micros(500));
    }
    let elapsed = start.elapsed();
    assert_eq!(client_exit, Some(0), "{name}: the client process failed (seed {seed})");
    assert_eq!(killed.len(), KILLS, "{name}: only {} kills happened", killed.len());

    // Every connection ended; failures only on killed workers, at most one each.
    let mut answered = 0usize;
    let mut resumed = 0usize;
    let mut failures: Vec<(usize, u16, libc::pid_t)> = Vec::new();
    let mut served_by = std::collections::HashMap::<libc::pid_t, usize>::new();
    for (i, r) in board.results[..total].iter().enumerate() {
        let w = r.load(Ordering::SeqCst);
        let pid = (w >> 32) as libc::pid_t;
        let port = (w >> 16) as u16;
        match w & 3 {
            ANSWERED => {
                answered += 1;
                resumed += usize::from(w & 4 != 0);
                *served_by.entry(pid).or_default() += 1;
                assert!(slot_of.contains(&pid), "{name}: connection {i} answered by unknown PID {pid}");
            }
            FAILED => failures.push((i, port, pid)),
            INCONSISTENT => panic!("{name}: connection {i} answered by a worker that had not accepted it"),
            _ => panic!("{name}: connection {i} never ended (seed {seed})"),
        }
    }
    for &(i, port, pid) in &failures {
        let holder = owned.iter().find(|(p, _)| *p == port).map(|(_, v)| *v);
        assert!(
            holder.is_some(),
            "{name}: connection {i} (port {port}, recorded by worker {pid}) failed but no killed worker held it \
             (held at death: {owned:?}, seed {seed})"
        );
        assert!(pid == 0 || Some(pid) == holder, "{name}: connection {i} recorded by {pid}, held by {holder:?}");
        let same = failures.iter().filter(|(_, p, _)| *p == port).count();
        assert_eq!(same, 1, "{name}: {same} failed connections from port {port}");
    }
    assert_eq!(answered + failures.len(), total);
    let replacements_served: usize = slot_of[WORKERS..].iter().map(|p| served_by.get(p).copied().unwrap_or(0)).sum();
    assert!(replacements_served > 0, "{name}: the replacement workers served nothing");
    if store.is_some() || backend.capabilities().contains(Capabilities::RESUMPTION_TICKETS) {
        assert!(resumed * 2 >= answered, "{name}: only {resumed} of {answered} connections resumed");
    }

    // The survivors: alive, descriptors back to their start, heap within its bound.
    let mut growth = Vec::new();
    for (slot, &pid) in slot_of.iter().enumerate() {
        if killed.contains(&pid) {
            continue;
        }
        assert!(workers.alive(pid), "{name}: surviving worker {pid} died");
        let s = &board.slots[slot];
        let served = s.served.load(Ordering::SeqCst);
        assert_eq!(
            s.fds_now.load(Ordering::SeqCst),
            s.fds_start.load(Ordering::SeqCst),
            "{name}: worker {pid} holds more descriptors after {served} connections than before its first"
        );
        if served > WARM {
            let g = s.heap_now.load(Ordering::SeqCst).saturating_sub(s.heap_warm.load(Ordering::SeqCst)) as usize;
            growth.push((pid, served, g));
            assert!(
                g <= HEAP_BOUND,
                "{name}: worker {pid}'s heap grew by {g} bytes from its connection {WARM} to its last ({served}): a leak?"
            );
        }
    }
    assert!(!growth.is_empty(), "{name}: no surviving worker served more than {WARM} connections");
    if let Some((arena, s, baseline)) = &store {
        let n = s.len();
        assert!(n <= STORE_SLOTS, "{name}: the session store holds {n} entries in {STORE_SLOTS} slots");
        assert_eq!(arena.stats().in_use, *baseline, "{name}: the arena is not at its baseline (the store allocated)");
    }

    // The parent still works: over TCP with a survivor, and in process.
    let mut port = 0;
    let (pid, _) = hello(&*client_domain, addr, &mut port).expect("the parent's connection after the kills");
    assert!(!killed.contains(&(pid as libc::pid_t)), "{name}: a killed worker answered");
    let sn = sipstls::ServerName::parse(SERVER_NAME).unwrap();
    let mut c = client_domain.connect(Some(&sn)).unwrap();
    let mut s = server.accept().unwrap();
    pump::handshake(&mut *c, &mut *s).expect("in-process handshake in the parent");
    assert_eq!(pump::send(&mut *c, &mut *s, b"still fine").unwrap(), b"still fine");
    drop((c, s));

    drop(workers); // kills and reaps the rest by PID
    drop(client_proc);
    assert!(no_children_left(), "{name}: a child process is left");
    assert_eq!(open_fds(std::process::id() as i32), parent_fds, "{name}: the parent's descriptors changed");
    println!(
        "    {name}: {total} connections in {:.1} s, {answered} answered ({resumed} resumed), {} failed {:?}, \
         kills at {points:?} (seed {seed}), replacements served {replacements_served}; \
         survivors (pid, served, heap growth after warm-up): {growth:?}{}",
        elapsed.as_secs_f64(),
        failures.len(),
        failures,
        store.as_ref().map(|(_, s, _)| format!("; store {} of {STORE_SLOTS} slots", s.len())).unwrap_or_default()
    );
}

fn main() -> std::process::ExitCode {
    hard_timeout(Duration::from_secs(1200));
    let _ = pki(); // generated before any fork
    let mut tally = Tally::default();
    for backend in sipstls::backends() {
        let name = backend.info().name;
        if backend.supports_model(ProcessModel::Pinned).is_err() {
            println!("{name} does not claim the pinned model: not run");
            continue;
        }
        tally
            .run(&format!("faults::pinned::{name}::workers_killed_under_load"), || workers_killed_under_load(&backend));
    }
    tally.finish()
}
