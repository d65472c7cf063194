//! Fork conformance checks for the **pinned** process model, per backend: server domains
//! are built before `fork()`, worker processes accept on a shared listener and each
//! connection lives in the worker that accepted it (as in pre-forking SIP servers).
//!
//! Checked for every backend of the build (a `harness = false` binary with hard timeouts):
//! - a ticket issued by worker A resumes in worker B;
//! - ticket keys rotate in step in every worker (`EpochTicketKeys` made before fork): a
//!   ticket resumes anywhere one rotation later and gives a full handshake two later;
//! - under load over 4 workers: no failure, resumption across workers, and the server
//!   randoms of all handshakes are unique (no two processes share a DRBG state);
//! - 8 workers x 200,000 16-byte outputs of `fill_random` plus the parent's: no duplicate,
//!   although the parent used its generator before forking;
//! - a peer's garbage fails only its own connection; every worker keeps serving;
//! - a worker that exits normally (atexit handlers run) takes nothing from the others or
//!   from the parent, whose domain still completes handshakes;
//! - `capabilities()` agrees: backends that pass claim `MODEL_PINNED`, and the migrating
//!   model, which has no passing checks yet, is refused.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::time::Duration;

use sipstls::{Backend, Capabilities, ClientDomain, Error, ProcessModel, ServerDomain, TlsStream};
use sipstls_conformance::checks::{client_cfg, server_cfg};
use sipstls_conformance::fork::{hard_timeout, Tally, Workers};
use sipstls_conformance::pki::{pki, SERVER_NAME};
use sipstls_conformance::pump;

const WORKERS: usize = 4;
const LOAD_CONNECTIONS: usize = 10_000;
const CLIENT_THREADS: usize = 4;
const RANDOM_WORKERS: usize = 8;
const RANDOM_OUTPUTS: usize = 200_000;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Worker side.

fn serve_forever(listener: &TcpListener, domain: &dyn ServerDomain) -> i32 {
    loop {
        match listener.accept() {
            Ok((tcp, _)) => {
                let _ = serve_one(tcp, domain); // a failed connection is the peer's problem
            }
            Err(_) => return 3,
        }
    }
}

fn serve_one(tcp: TcpStream, domain: &dyn ServerDomain) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut tls = TlsStream::accept(domain, tcp)?;
    let resumed = tls.info().is_some_and(|i| i.resumed);
    let mut line = String::new();
    BufReader::new(&mut tls).read_line(&mut line)?;
    let pid = std::process::id();
    match line.trim() {
        "hello" => writeln!(tls, "pid={pid} resumed={}", u8::from(resumed))?,
        "exit" => {
            writeln!(tls, "bye pid={pid}")?;
            tls.shutdown()?;
            std::process::exit(0); // a normal exit: atexit handlers of the TLS library run
        }
        _ => writeln!(tls, "unknown")?,
    }
    tls.shutdown()
}

// ---------------------------------------------------------------------------------------
// Client side (the parent).

/// A transport that keeps the first bytes it reads, to find the ServerHello random.
struct Recording {
    inner: TcpStream,
    first: Vec<u8>,
}

impl Read for Recording {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let keep = n.min(64usize.saturating_sub(self.first.len()));
        self.first.extend_from_slice(&buf[..keep]);
        Ok(n)
    }
}

impl Write for Recording {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[derive(Debug, Clone)]
struct Served {
    pid: u32,
    resumed: bool,
    server_random: [u8; 32],
}

/// The 32-byte random of the ServerHello at the start of what the server sent.
fn server_random(first: &[u8]) -> Option<[u8; 32]> {
    // record header (5) + handshake type 2 (ServerHello) + length (3) + version (2)
    if first.len() < 43 || first[0] != 0x16 || first[5] != 0x02 {
        return None;
    }
    first[11..43].try_into().ok()
}

fn hello(cd: &dyn ClientDomain, addr: SocketAddr) -> Result<Served, String> {
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
    let rec = Recording { inner: tcp, first: Vec::new() };
    let mut tls = TlsStream::connect(cd, SERVER_NAME, rec).map_err(|e| format!("handshake: {e}"))?;
    let client_resumed = tls.info().is_some_and(|i| i.resumed);
    tls.write_all(b"hello\n").map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(&mut tls).read_line(&mut line).map_err(|e| format!("reply: {e}"))?;
    let mut pid = None;
    let mut resumed = None;
    for part in line.split_whitespace() {
        match part.split_once('=') {
            Some(("pid", v)) => pid = v.parse().ok(),
            Some(("resumed", v)) => resumed = Some(v == "1"),
            _ => {}
        }
    }
    let (pid, resumed) = pid.zip(resumed).ok_or_else(|| format!("bad reply {line:?}"))?;
    if resumed != client_resumed {
        return Err(format!("client and worker disagree on resumption ({client_resumed} vs {resumed})"));
    }
    let server_random = server_random(&tls.get_ref().first).ok_or("no ServerHello in the first bytes")?;
    Ok(Served { pid, resumed, server_random })
}

fn send_line(cd: &dyn ClientDomain, addr: SocketAddr, line: &str) -> Result<String, String> {
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
    let mut tls = TlsStream::connect(cd, SERVER_NAME, tcp).map_err(|e| e.to_string())?;
    tls.write_all(line.as_bytes()).map_err(|e| e.to_string())?;
    let mut reply = String::new();
    BufReader::new(&mut tls).read_line(&mut reply).map_err(|e| e.to_string())?;
    Ok(reply)
}

// ---------------------------------------------------------------------------------------
// The checks.

struct Pool {
    server: Arc<dyn ServerDomain>,
    client: Arc<dyn ClientDomain>,
    addr: SocketAddr,
    workers: Workers,
    randoms: HashSet<[u8; 32]>,
}

fn start_pool(backend: Arc<dyn Backend>) -> Pool {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().unwrap();
    let server = backend.server_domain(&server_cfg_any()).expect("server domain");
    let s = server.clone();
    let workers = Workers::spawn(WORKERS, Duration::from_secs(240), move |_| serve_forever(&listener, &*s));
    let client = backend.client_domain(&client_cfg_any()).expect("client domain");
    Pool { server, client, addr, workers, randoms: HashSet::new() }
}

fn server_cfg_any() -> sipstls::DomainConfig {
    let mut c = server_cfg(sipstls::ProtocolVersion::Tls13);
    c.min_version = sipstls::ProtocolVersion::Tls12;
    c
}

fn client_cfg_any() -> sipstls::DomainConfig {
    let mut c = client_cfg(sipstls::ProtocolVersion::Tls13);
    c.min_version = sipstls::ProtocolVersion::Tls12;
    c
}

fn record(pool: &mut Pool, s: &Served) {
    assert!(pool.randoms.insert(s.server_random), "duplicate ServerHello random {:02x?}", s.server_random);
}

/// A ticket issued by one worker resumes in another.
fn ticket_from_worker_a_resumes_in_b(pool: &mut Pool) {
    let first = hello(&*pool.client, pool.addr).expect("first connection");
    assert!(!first.resumed, "nothing to resume yet");
    record(pool, &first);
    let mut seen = vec![(first.pid, first.resumed)];
    for _ in 0..200 {
        let s = hello(&*pool.client, pool.addr).expect("connection");
        record(pool, &s);
        seen.push((s.pid, s.resumed));
        assert!(
            s.resumed,
            "worker {} did not resume a ticket of worker {}: (pid, resumed) so far {seen:?}",
            s.pid, first.pid
        );
        if s.pid != first.pid {
            return; // the ticket came from `first.pid`'s connections, resumed in `s.pid`
        }
    }
    panic!("200 connections all went to worker {}; the kernel never picked another", first.pid);
}

/// Seconds per ticket key period in the rotation check.
const KEY_PERIOD: u64 = 2;

/// Sleeps until `frac` (0..1) of the way into the next ticket key period.
fn sleep_into_next_period(frac: f64) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let period = Duration::from_secs(KEY_PERIOD);
    let into = Duration::from_nanos((now.as_nanos() % period.as_nanos()) as u64);
    std::thread::sleep(period - into + period.mul_f64(frac));
}

/// Ticket keys rotated in step by every worker (`EpochTicketKeys` from a secret made
/// before fork, 2-second periods): a ticket from period n resumes in any worker during
/// period n+1 (previous key), and a ticket two rotations old gives a full handshake, not a
/// failure. A backend without `TICKET_KEYS` refuses the setting.
fn ticket_keys_rotate_in_step(backend: &Arc<dyn Backend>) {
    let keys = sipstls::EpochTicketKeys::new([0x5a; 32], Duration::from_secs(KEY_PERIOD)).unwrap();
    let mut cfg = server_cfg_any();
    cfg.resumption = sipstls::Resumption::TICKETS;
    cfg.ticket_keys = Some(sipstls::TicketKeysHandle::new(keys));
    if !backend.capabilities().contains(sipstls::Capabilities::TICKET_KEYS) {
        match backend.server_domain(&cfg) {
            Err(Error::Unsupported { capability, .. }) => assert_eq!(capability, sipstls::Capabilities::TICKET_KEYS),
            other => panic!("TICKET_KEYS is not claimed: expected Unsupported, got {:?}", other.err()),
        }
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().unwrap();
    let server = backend.server_domain(&cfg).expect("server domain with epoch ticket keys");
    let s = server.clone();
    let _workers = Workers::spawn(WORKERS, Duration::from_secs(60), move |_| serve_forever(&listener, &*s));

    // Period n: a full handshake leaves a ticket sealed with key n.
    sleep_into_next_period(0.1);
    let client = backend.client_domain(&client_cfg_any()).expect("client domain");
    let first = hello(&*client, addr).expect("first connection");
    assert!(!first.resumed);
    // Period n+1: every worker opens it with the previous key.
    sleep_into_next_period(0.1);
    let mut pids = HashSet::from([first.pid]);
    let fresh = backend.client_domain(&client_cfg_any()).expect("client domain");
    let old_ticket_holder = hello(&*fresh, addr).expect("full handshake in period n+1");
    assert!(!old_ticket_holder.resumed);
    for i in 0..40 {
        let s = hello(&*client, addr).expect("connection after one rotation");
        assert!(s.resumed, "connection {i} (worker {}) did not resume across one rotation", s.pid);
        pids.insert(s.pid);
        if pids.len() >= 3 {
            break;
        }
    }
    assert!(pids.len() >= 2, "all resumptions in worker(s) {pids:?}");
    // Period n+3: `fresh`'s ticket (key n+1) is two rotations old: a full handshake.
    sleep_into_next_period(0.1);
    sleep_into_next_period(0.1);
    let s = hello(&*fresh, addr).expect("a stale ticket must not fail the connection");
    assert!(!s.resumed, "a ticket two rotations old was accepted (worker {})", s.pid);
    println!("    resumed across one rotation in workers {pids:?}; two rotations later: full handshake");
}

/// Many connections from 4 client threads over 4 workers: no failure, every worker
/// serves, resumption across workers, unique server randoms.
fn load_over_workers(pool: &mut Pool) {
    let per_thread = LOAD_CONNECTIONS / CLIENT_THREADS;
    let (client, addr) = (pool.client.clone(), pool.addr);
    let results: Vec<Result<Served, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENT_THREADS)
            .map(|_| {
                let client = client.clone();
                s.spawn(move || (0..per_thread).map(|_| hello(&*client, addr)).collect::<Vec<_>>())
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("client thread")).collect()
    });
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} connections failed, first: {:?}",
        failures.len(),
        results.len(),
        failures.first()
    );
    let served: Vec<Served> = results.into_iter().map(Result::unwrap).collect();
    let pids: HashSet<u32> = served.iter().map(|s| s.pid).collect();
    assert!(pids.len() >= 2, "only worker(s) {pids:?} served {} connections", served.len());
    let resumed = served.iter().filter(|s| s.resumed).count();
    assert!(resumed * 100 >= served.len() * 95, "only {resumed} of {} connections resumed", served.len());
    for s in &served {
        record(pool, s);
    }
    println!(
        "    {} connections over workers {:?}: {} resumed, {} unique server randoms so far",
        served.len(),
        pids,
        resumed,
        pool.randoms.len()
    );
}

/// Garbage from a peer fails that connection only; every worker keeps serving.
fn garbage_fails_only_its_connection(pool: &mut Pool) {
    for _ in 0..8 {
        let mut tcp = TcpStream::connect(pool.addr).unwrap();
        tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        tcp.write_all(b"OPTIONS sip:example.test SIP/2.0\r\nContent-Length: 0\r\n\r\n").unwrap();
        let mut sink = Vec::new();
        let _ = tcp.read_to_end(&mut sink); // the worker answers with an alert or closes
        assert!(sink.len() < 64, "a TLS server must not answer plaintext with data");
    }
    for _ in 0..20 {
        let s = hello(&*pool.client, pool.addr).expect("a connection after the garbage");
        record(pool, &s);
    }
    for &pid in pool.workers.pids() {
        assert!(pool.workers.alive(pid), "worker {pid} died after a peer sent garbage");
    }
}

/// A worker that exits normally does not disturb the others or the parent.
fn worker_exit_leaves_others_working(pool: &mut Pool) {
    let reply = send_line(&*pool.client, pool.addr, "exit\n").expect("exit request");
    let pid: i32 =
        reply.trim().strip_prefix("bye pid=").and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("reply {reply:?}"));
    assert_eq!(pool.workers.wait(pid, Duration::from_secs(10)), Some(0), "worker {pid} did not exit cleanly");
    for _ in 0..20 {
        let s = hello(&*pool.client, pool.addr).expect("a connection after a worker exited");
        assert_ne!(s.pid as i32, pid);
        record(pool, &s);
    }
    // The parent's copy of the domain still works.
    let mut c = pool.client.connect(Some(&sipstls::ServerName::parse(SERVER_NAME).unwrap())).unwrap();
    let mut s = pool.server.accept().unwrap();
    pump::handshake(&mut *c, &mut *s).expect("in-process handshake in the parent");
    assert_eq!(pump::send(&mut *c, &mut *s, b"still fine").unwrap(), b"still fine");
}

/// No two processes produce the same random bytes, though the parent used its generator
/// before forking (so every child inherited its state).
fn random_outputs_unique_across_processes(backend: &Arc<dyn Backend>) {
    let mut parent_out = vec![0u8; 16 * RANDOM_OUTPUTS];
    backend.fill_random(&mut parent_out[..16]).expect("random before fork");
    let mut fds = Vec::new();
    let mut read_ends = Vec::new();
    for _ in 0..RANDOM_WORKERS {
        let mut p = [0; 2];
        // SAFETY: `p` has room for the two descriptors pipe() writes.
        assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
        fds.push(p);
    }
    let b = backend.clone();
    let fds_for_children = fds.clone();
    let mut workers = Workers::spawn(RANDOM_WORKERS, Duration::from_secs(120), move |i| {
        // Keep only our own write end: an inherited write end of another pipe would keep
        // the parent from ever seeing that pipe's EOF.
        for (j, p) in fds_for_children.iter().enumerate() {
            // SAFETY: closing inherited descriptors this child does not use.
            unsafe { libc::close(p[0]) };
            if j != i {
                // SAFETY: as above.
                unsafe { libc::close(p[1]) };
            }
        }
        // SAFETY: the write end of pipe i belongs to this child from here on.
        let mut out = unsafe { std::fs::File::from_raw_fd(fds_for_children[i][1]) };
        let mut buf = vec![0u8; 16 * 4096];
        for _ in 0..RANDOM_OUTPUTS / 4096 + 1 {
            if b.fill_random(&mut buf).is_err() || out.write_all(&buf).is_err() {
                return 4;
            }
        }
        0
    });
    for p in &fds {
        // SAFETY: the parent closes its copy of each write end (the children hold theirs)
        // and takes ownership of each read end.
        unsafe { libc::close(p[1]) };
        // SAFETY: as above: the read end is ours alone from here on.
        read_ends.push(unsafe { std::fs::File::from_raw_fd(p[0]) });
    }
    backend.fill_random(&mut parent_out).expect("parent random after fork");
    let mut seen: HashSet<u128> = HashSet::with_capacity((RANDOM_WORKERS + 1) * RANDOM_OUTPUTS);
    for chunk in parent_out.chunks_exact(16) {
        assert!(seen.insert(u128::from_le_bytes(chunk.try_into().unwrap())), "parent repeated itself");
    }
    for (i, mut r) in read_ends.into_iter().enumerate() {
        let mut all = Vec::with_capacity(16 * RANDOM_OUTPUTS);
        r.read_to_end(&mut all).expect("read worker randoms");
        let outputs = all.len() / 16;
        assert!(outputs >= RANDOM_OUTPUTS, "worker {i} produced only {outputs} outputs");
        for chunk in all.chunks_exact(16).take(RANDOM_OUTPUTS) {
            let v = u128::from_le_bytes(chunk.try_into().unwrap());
            assert!(seen.insert(v), "worker {i} produced a 16-byte value seen in another process: {v:032x}");
        }
    }
    let pids: Vec<i32> = workers.pids().to_vec();
    for pid in pids {
        assert_eq!(workers.wait(pid, Duration::from_secs(30)), Some(0), "random worker {pid}");
    }
    println!("    {} unique 16-byte outputs from {} processes", seen.len(), RANDOM_WORKERS + 1);
}

/// `capabilities()` agrees with the checks of this binary.
fn capabilities_agree(backend: &Arc<dyn Backend>, pinned_passed: bool) {
    assert_eq!(
        backend.supports_model(ProcessModel::Pinned).is_ok(),
        pinned_passed,
        "MODEL_PINNED claim vs fork checks"
    );
    // The migrating model is proven by `fork_migrating`; here only: a refusal is typed.
    match backend.supports_model(ProcessModel::Migrating) {
        Ok(()) | Err(Error::Unsupported { .. }) => {}
        Err(other) => panic!("a refused model must be Error::Unsupported, got {other:?}"),
    }
}

/// One row of the capability matrix: what the backend claims and what was measured here.
struct MatrixRow {
    backend: &'static str,
    library: String,
    pinned_measured: bool,
    claims: [bool; 3],
    caps: Capabilities,
}

/// A capability column: "yes" (claimed, with the check that proves it) or "refused".
fn cap(caps: Capabilities, c: Capabilities, check: &str) -> String {
    if caps.contains(c) {
        format!("yes ({check})")
    } else {
        "refused".into()
    }
}

fn cell(claimed: bool, measured: Option<bool>, refusal: &str, proof: &str) -> String {
    match (claimed, measured) {
        (true, Some(true)) => "pass (fork checks)".into(),
        (true, None) => format!("pass ({proof})"),
        (false, _) => format!("refused: {refusal}"),
        (true, Some(false)) => "CLAIMED BUT FAILED".into(),
    }
}

/// The matrix as markdown; written to `$SIPSTLS_MATRIX_OUT` when set.
fn matrix_markdown(rows: &[MatrixRow]) -> String {
    let mut md = String::from(
        "# Process models by backend (measured)\n\n\
         Generated from the workspace root by `SIPSTLS_MATRIX_OUT=$PWD/docs/capability-matrix.md cargo test -p sipstls-conformance --features wolfssl,mbedtls --test fork_pinned` (BoringSSL, which cannot link beside OpenSSL: `docs/capability-matrix-boring.md`, from a `--no-default-features --features rustls,boring` build).\n\
         A model is claimed in `capabilities()` only when its checks pass; the fork binary fails when a claim and \
         a measurement disagree. TLS 1.3 and the hooks are the backend's claims, each proven (or its refusal \
         asserted) by the check named.\n\n| backend | library | TLS 1.3 | allocator hook | lock hook | confined | pinned | migrating |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.backend,
            r.library,
            cap(r.caps, Capabilities::TLS13, "conformance suite"),
            cap(r.caps, Capabilities::ALLOCATOR_HOOK, "tests/hooks_install.rs"),
            cap(r.caps, Capabilities::LOCK_HOOK, "tests/lock_hooks.rs"),
            cell(r.claims[0], None, "not claimed", "in-process conformance suite: one process owns every session"),
            cell(r.claims[1], Some(r.pinned_measured), "a pinned fork check failed", ""),
            cell(
                r.claims[2],
                None,
                match r.backend {
                    "openssl" => {
                        "OpenSSL 3 keeps per-thread state and process-private locks; sipstls does not interpose \
                         pthread_rwlock_init or have migrating fork checks for it"
                    }
                    "mbedtls" => {
                        "measured with its allocations and every lock in the arena (SIPSTLS_MIGRATING_HOOKED \
                         tests/fork_migrating.rs): TLS 1.2 migrated 10 x 1000 sessions, but 836 of 1000 TLS 1.3 \
                         sessions failed, PSA's key store index being a per-process static that a migrated key share \
                         id cannot be found in; see docs/process-models.md"
                    }
                    "boring" => {
                        "BoringSSL takes no allocator hook here and keeps per-thread state and process-private locks \
                         like OpenSSL; no migrating fork checks for it"
                    }
                    "wolfssl" => {
                        "measured with its allocations in the arena (SIPSTLS_MIGRATING_HOOKED \
                         tests/fork_migrating.rs): a worker hung (TLS 1.3 in the first 1000 sessions, TLS 1.2 after \
                         8000): wolfSSL's pthread mutexes are process-private and it takes no lock hook (its \
                         WOLFSSL_USER_MUTEX build drops WC_RNG_AUTOFORK); see docs/process-models.md"
                    }
                    _ => "no migrating fork checks pass for this backend",
                },
                "tests/fork_migrating.rs: 10 x 1000 sessions, a random worker per step, a killed lock holder; arena \
                 and hooks before first use, prepare_for_fork, pre-fork work in a helper thread, no rustls session \
                 caches (process-private locks)"
            ),
        ));
    }
    md
}

fn main() -> std::process::ExitCode {
    hard_timeout(Duration::from_secs(600));
    let _ = pki(); // generated before any fork
    let mut tally = Tally::default();
    let mut rows = Vec::new();
    for backend in sipstls::backends() {
        let name = backend.info().name;
        let mut pool = start_pool(backend.clone());
        let before = tally_failures(&tally);
        tally.run(&format!("fork::pinned::{name}::ticket_from_worker_a_resumes_in_b"), || {
            ticket_from_worker_a_resumes_in_b(&mut pool)
        });
        tally.run(&format!("fork::pinned::{name}::load_over_workers"), || load_over_workers(&mut pool));
        tally.run(&format!("fork::pinned::{name}::garbage_fails_only_its_connection"), || {
            garbage_fails_only_its_connection(&mut pool)
        });
        tally.run(&format!("fork::pinned::{name}::worker_exit_leaves_others_working"), || {
            worker_exit_leaves_others_working(&mut pool)
        });
        drop(pool); // kills and reaps the workers by PID
        tally
            .run(&format!("fork::pinned::{name}::ticket_keys_rotate_in_step"), || ticket_keys_rotate_in_step(&backend));
        tally.run(&format!("fork::pinned::{name}::random_outputs_unique_across_processes"), || {
            random_outputs_unique_across_processes(&backend)
        });
        let pinned_passed = tally_failures(&tally) == before;
        tally.run(&format!("fork::pinned::{name}::capabilities_agree"), || capabilities_agree(&backend, pinned_passed));
        rows.push(MatrixRow {
            backend: name,
            library: backend.info().library,
            pinned_measured: pinned_passed,
            claims: [ProcessModel::Confined, ProcessModel::Pinned, ProcessModel::Migrating]
                .map(|m| backend.supports_model(m).is_ok()),
            caps: backend.capabilities(),
        });
    }
    let md = matrix_markdown(&rows);
    print!("{md}");
    if let Ok(path) = std::env::var("SIPSTLS_MATRIX_OUT") {
        if let Err(e) = std::fs::write(&path, &md) {
            println!("could not write {path}: {e}");
        }
    }
    tally.finish()
}

fn tally_failures(t: &Tally) -> usize {
    t.failures()
}
