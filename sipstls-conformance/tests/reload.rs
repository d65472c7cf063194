//! Hot reload under load, for every backend of the build: a thread keeps doing handshakes
//! (and a little data) through a `ReloadableTable` while the main thread installs 1,000
//! new tables, alternating two certificates. Every handshake must succeed and present one of
//! the two certificates, sessions keep working across swaps, and once the load stops the
//! process's heap (glibc `mallinfo2`: every byte malloc has handed out and not taken back,
//! C libraries included) is within 1% of what it was before the reloads.
//!
//! One test in its own binary, so no other test allocates while the heap is measured.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipstls::{Backend, DomainConfig, DomainTable, Listener, NameVerification, ReloadableTable, ServerName};
use sipstls_conformance::checks::client_cfg;
use sipstls_conformance::ops::best_version;
use sipstls_conformance::pki::{pki, ALT_NAME, SERVER_NAME};
use sipstls_conformance::pump;

/// Reloads measured (`SIPSTLS_RELOADS` overrides, for investigating growth).
fn reload_count() -> usize {
    std::env::var("SIPSTLS_RELOADS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000)
}
/// Reloads (under load) before the baseline is taken.
const WARM_UP_RELOADS: usize = 100;
/// Handshakes (on another thread, without reloads) before the baseline is taken.
const WARM_UP_HANDSHAKES: u64 = 500;
/// Upper bounds for the load thread, whatever happens to the main thread.
const MAX_HANDSHAKES: u64 = 1_000_000;
const MAX_TIME: Duration = Duration::from_secs(240);
/// Reloads per handshake at most: the reload loop waits for the load thread beyond it.
const RELOADS_PER: u64 = 8;

/// Bytes malloc has handed out and not taken back (all arenas, mmapped chunks included).
fn heap_in_use() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's statistics; it has no preconditions.
    let mi = unsafe { libc::mallinfo2() };
    mi.uordblks + mi.hblkhd
}

fn trim() {
    // SAFETY: malloc_trim only returns free memory to the system; no preconditions.
    unsafe { libc::malloc_trim(0) };
}

fn table(backend: &Arc<dyn Backend>, generation: usize) -> DomainTable {
    let p = pki();
    let leaf = if generation % 2 == 0 { &p.server_ecdsa } else { &p.server_alt };
    let v = best_version(&**backend);
    let mut t = DomainTable::new(backend.clone());
    t.add_server(Listener::Any, None, &DomainConfig::server(leaf.identity()).with_version(v)).expect("server domain");
    t
}

/// Runs handshakes until `stop`; returns how many, panicking on the first failure.
fn load(rt: &ReloadableTable, backend: &Arc<dyn Backend>, stop: &AtomicBool, limit: u64, done: &AtomicU64) -> u64 {
    let v = best_version(&**backend);
    let mut ccfg = client_cfg(v);
    // Both certificates chain to the test root; the client takes either name.
    ccfg.name_verification = NameVerification::DangerousDisabled;
    let cd = backend.client_domain(&ccfg).unwrap();
    let name = ServerName::parse(SERVER_NAME).unwrap();
    let local: SocketAddr = "127.0.0.1:5061".parse().unwrap();
    let started = Instant::now();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) && n < limit && started.elapsed() < MAX_TIME {
        let mut s = rt.accept(local, None).expect("accept");
        let mut c = cd.connect(Some(&name)).unwrap();
        pump::handshake(&mut *c, &mut *s).unwrap_or_else(|f| panic!("handshake {n} failed during reloads: {f:?}"));
        let cn = c.info().unwrap().peer.unwrap().subject_cn.unwrap();
        assert!(cn == SERVER_NAME || cn == ALT_NAME, "unexpected certificate {cn}");
        assert_eq!(pump::send(&mut *c, &mut *s, b"OPTIONS sip:x SIP/2.0\r\n\r\n").unwrap().len(), 25);
        n += 1;
        done.store(n, Ordering::Relaxed);
    }
    n
}

/// Runs the load thread while the main thread installs `reloads` tables; returns the
/// handshakes done and the time the reloads took.
fn reloads_under_load(rt: &Arc<ReloadableTable>, backend: &Arc<dyn Backend>, reloads: usize) -> (u64, Duration) {
    let name = backend.info().name;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let worker = {
        let (rt, backend, stop, done) = (rt.clone(), backend.clone(), stop.clone(), done.clone());
        std::thread::spawn(move || load(&rt, &backend, &stop, MAX_HANDSHAKES, &done))
    };
    let started = Instant::now();
    let reloads_before = rt.reloads();
    for g in 1..=reloads {
        // An even number of reloads: the table at the end presents the starting certificate.
        rt.try_reload(|b| Ok(table(b, g))).expect("reload");
        // Keep the handshakes interleaved with the reloads (at least one per RELOADS_PER
        // reloads) however the two threads are scheduled: where table builds are much
        // cheaper than handshakes (a debug build on a busy machine), the reloads would
        // otherwise all be over before a few handshakes ran.
        while done.load(Ordering::Relaxed) * RELOADS_PER < g as u64
            && !worker.is_finished()
            && started.elapsed() < MAX_TIME
        {
            std::thread::sleep(Duration::from_micros(200));
        }
        if worker.is_finished() {
            break;
        }
    }
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let handshakes = worker.join().unwrap_or_else(|_| panic!("{name}: the load thread failed (see above)"));
    assert_eq!(rt.reloads() - reloads_before, reloads as u64, "{name}: the load thread stopped early");
    (handshakes, took)
}

fn reload_under_load(backend: Arc<dyn Backend>) {
    let name = backend.info().name;
    let rt = Arc::new(ReloadableTable::new(table(&backend, 0)));
    // Warm-up: the same work on a smaller scale, so lazily built library state (per-thread
    // state, malloc arenas of the second thread, algorithm caches) exists before the
    // baseline.
    let (mut warm_handshakes, _) = reloads_under_load(&rt, &backend, WARM_UP_RELOADS);
    let never = AtomicBool::new(false);
    warm_handshakes += std::thread::scope(|s| {
        s.spawn(|| load(&rt, &backend, &never, WARM_UP_HANDSHAKES, &AtomicU64::new(0))).join().unwrap()
    });
    trim();
    let before = heap_in_use();

    let reloads = reload_count();
    let (handshakes, took) = reloads_under_load(&rt, &backend, reloads);
    assert!(handshakes >= 100, "{name}: only {handshakes} handshakes ran during {reloads} reloads");
    trim();
    let after = heap_in_use();
    let stats = rt.current().stats();
    let srv = stats.iter().find(|d| d.label == "server any").unwrap();
    let change = after as f64 / before as f64 - 1.0;
    println!(
        "{name}: {reloads} reloads in {:.2} s beside {handshakes} handshakes; heap {before} -> {after} bytes \
         ({:+.3}%); server domain: {} ok, {} failed, {} active",
        took.as_secs_f64(),
        change * 100.0,
        srv.handshakes_ok,
        srv.failed_total(),
        srv.active,
    );
    assert_eq!(srv.failed_total(), 0, "{name}: failed handshakes: {srv:?}");
    assert_eq!(srv.active, 0, "{name}: sessions still counted as active: {srv:?}");
    assert_eq!(srv.handshakes_ok, handshakes + warm_handshakes, "{name}: counters lost across reloads");
    assert!(change.abs() <= 0.01, "{name}: heap changed by {:+.3}% over {reloads} reloads", change * 100.0);
}

/// glibc keeps freed chunks in per-thread caches (tcache) that `mallinfo2` still counts as
/// in use: up to 7 chunks per size class, tens of KB that come and go with the allocation
/// pattern. The measurement runs in a child process with the cache off, so the figure is
/// what the program holds.
const NO_TCACHE: &str = "glibc.malloc.tcache_count=0";

#[test]
fn reload_under_load_every_backend() {
    if !std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains(NO_TCACHE)) {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["reload_under_load_every_backend", "--exact", "--nocapture", "--test-threads=1"])
            .env("GLIBC_TUNABLES", NO_TCACHE)
            .status()
            .expect("re-run the test binary");
        assert!(status.success(), "the measurement without tcache failed: {status}");
        return;
    }
    let backends = sipstls::backends();
    assert!(!backends.is_empty());
    for b in backends {
        reload_under_load(b);
    }
}
