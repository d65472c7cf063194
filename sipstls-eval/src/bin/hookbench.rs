//! `sipstls-hookbench`: what the allocator hooks cost, per backend, measured side by side.
//!
//! For each backend that claims `ALLOCATOR_HOOK` it runs child processes of itself,
//! alternating hooks off and on:
//! - off: the TLS library and Rust use the system allocator;
//! - on: a 512 MiB [`SharedArena`] is mapped first, the backend's C allocations are routed
//!   to it (`install_allocator_hooks`, before the library's first allocation) and so are
//!   Rust's ([`ArenaGlobalAlloc`]): the whole session lives in shared memory, as the
//!   migrating model needs.
//!
//! Each child times full TLS 1.3 ECDSA handshakes in memory (the server side's calls by the
//! clock, and client + server by the thread's CPU time, which does not count time spent
//! waiting for a core), then holds idle server sessions (handshake + one 1 KiB exchange,
//! client dropped) and reports the arena bytes (hooks on) and heap bytes (`mallinfo2`) they
//! keep. The parent prints medians and the on/off ratios. Hooks are process-wide, hence one
//! process per measurement. A backend that does not claim the hook gets a row with its
//! installer's refusal.
//!
//! `--instructions` also counts instructions per full handshake (client + server) with
//! hooks off and on under valgrind's callgrind (`sipstls_conformance::callgrind`, as
//! `sipstls-eval --instructions`): a figure that does not move with machine load.
//! `--instructions-only` skips the timing; `--backends a,b` limits the backends.
//!
//! ```text
//! cargo run --release -p sipstls-eval --bin sipstls-hookbench [-- --quick] [--instructions]
//! cargo run --release -p sipstls-eval --bin sipstls-hookbench -- --explain openssl
//! ```
//!
//! `--explain openssl` attributes every byte OpenSSL keeps for an idle connection to the
//! source line that allocated it (OpenSSL passes file and line to its allocator hooks).

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipstls::{Backend, ProtocolVersion, Resumption, ServerName, Session};
use sipstls_conformance::checks::{client_cfg, server_cfg};
use sipstls_conformance::pki::{pki, SERVER_NAME};
use sipstls_shm::{ArenaGlobalAlloc, SharedArena};

#[global_allocator]
static GLOBAL: ArenaGlobalAlloc = ArenaGlobalAlloc::new();

const ARENA_BYTES: usize = 512 * 1024 * 1024;

struct ChildResult {
    handshakes_per_s: f64,
    /// Full handshakes (client + server) per second of this thread's CPU time.
    handshakes_per_cpu_s: f64,
    arena_per_conn: Option<f64>,
    heap_per_conn: f64,
}

/// CPU time this thread has used: unlike wall-clock time, it does not grow while the
/// process waits for a core on a loaded machine.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes one timespec.
    #[allow(unsafe_code)]
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts)
    };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn heap_in_use() -> usize {
    // SAFETY: mallinfo2 only reads glibc's allocator statistics.
    #[allow(unsafe_code)]
    let mi = unsafe { libc::mallinfo2() };
    mi.uordblks + mi.hblkhd
}

/// Moves all pending ciphertext from `from` to `to`; the time inside each side's calls is
/// added to its clock.
fn pass(
    from: &mut dyn Session,
    to: &mut dyn Session,
    buf: &mut [u8],
    from_clock: &mut Duration,
    to_clock: &mut Duration,
) {
    loop {
        let t = Instant::now();
        let n = if from.wants_write() { from.take_tls(buf) } else { 0 };
        *from_clock += t.elapsed();
        if n == 0 {
            return;
        }
        let mut off = 0;
        while off < n {
            let t = Instant::now();
            off += to.feed_tls(&buf[off..n]).expect("feed");
            *to_clock += t.elapsed();
        }
    }
}

/// Completes a handshake; server-side time goes to `server`.
fn handshake(c: &mut dyn Session, s: &mut dyn Session, buf: &mut [u8], server: &mut Duration) {
    let mut client = Duration::ZERO;
    for _ in 0..16 {
        pass(c, s, buf, &mut client, server);
        pass(s, c, buf, server, &mut client);
        if !c.is_handshaking() && !s.is_handshaking() && !c.wants_write() && !s.wants_write() {
            return;
        }
    }
    panic!("handshake did not complete");
}

/// The measured scenario's domains: TLS 1.3, ECDSA P-256, no resumption.
fn domains(backend_name: &str) -> (Arc<dyn sipstls::ServerDomain>, Arc<dyn sipstls::ClientDomain>, ServerName) {
    let backend: Arc<dyn Backend> = sipstls::backend(backend_name).expect("backend built");
    let _ = pki();
    let v = ProtocolVersion::Tls13;
    let sd = backend.server_domain(&server_cfg(v).with_resumption(Resumption::DISABLED)).expect("server domain");
    let cd = backend.client_domain(&client_cfg(v).with_resumption(Resumption::DISABLED)).expect("client domain");
    (sd, cd, ServerName::parse(SERVER_NAME).expect("static name"))
}

/// A server session after a handshake and one 1 KiB exchange each way, its client dropped:
/// what an idle SIP connection holds.
fn idle_server(
    sd: &dyn sipstls::ServerDomain,
    cd: &dyn sipstls::ClientDomain,
    name: &ServerName,
    buf: &mut [u8],
) -> Box<dyn Session> {
    let msg = [0x5au8; 1024];
    let mut out = [0u8; 4096];
    let mut s = sd.accept().expect("accept");
    let mut c = cd.connect(Some(name)).expect("connect");
    let (mut a, mut b) = (Duration::ZERO, Duration::ZERO);
    handshake(&mut *c, &mut *s, buf, &mut a);
    c.write(&msg).expect("client write");
    pass(&mut *c, &mut *s, buf, &mut a, &mut b);
    while let Ok(sipstls::ReadStatus::Data(_)) = s.read(&mut out) {}
    s.write(&msg).expect("server write");
    pass(&mut *s, &mut *c, buf, &mut a, &mut b);
    while let Ok(sipstls::ReadStatus::Data(_)) = c.read(&mut out) {}
    s
}

/// Hooks on: maps the arena and routes the backend's C allocations and Rust's to it, before
/// the library's first allocation. Hooks off: nothing (system allocator).
fn setup(backend_name: &str, hooks_on: bool) -> Option<&'static SharedArena> {
    if !hooks_on {
        return None;
    }
    let arena = SharedArena::create(ARENA_BYTES).expect("arena");
    let installed = match backend_name {
        #[cfg(feature = "openssl")]
        "openssl" => sipstls::openssl::install_allocator_hooks(arena),
        #[cfg(feature = "rustls")]
        "rustls" => sipstls::rustls::install_allocator_hooks(arena),
        #[cfg(feature = "mbedtls")]
        "mbedtls" => sipstls::mbedtls::install_allocator_hooks(arena),
        #[cfg(feature = "wolfssl")]
        "wolfssl" => sipstls::wolfssl::install_allocator_hooks(arena),
        other => panic!("no hook installer for {other}"),
    };
    installed.expect("hooks installed before the library's first allocation");
    GLOBAL.route_to(arena);
    Some(arena)
}

/// Why a backend that does not claim `ALLOCATOR_HOOK` refuses it: its installer's error.
/// Only called for such backends, so nothing is installed in this process.
fn refusal(backend_name: &str) -> String {
    #[cfg_attr(not(any(feature = "mbedtls", feature = "boring")), allow(unused_variables))]
    let arena: &'static SharedArena = SharedArena::create(1 << 20).expect("arena");
    let r: Result<(), sipstls::Error> = match backend_name {
        #[cfg(feature = "mbedtls")]
        "mbedtls" => sipstls::mbedtls::install_allocator_hooks(arena),
        #[cfg(feature = "boring")]
        "boring" => sipstls::boring::install_allocator_hooks(arena),
        _ => Err(sipstls::Error::config("backend", "no hook installer in sipstls")),
    };
    match r {
        Ok(()) => "installed although ALLOCATOR_HOOK is not claimed (a bug)".to_owned(),
        Err(e) => e.to_string(),
    }
}

fn child(backend_name: &str, hooks_on: bool, n: usize, idle: usize) -> ChildResult {
    let arena = setup(backend_name, hooks_on);
    let (sd, cd, name) = domains(backend_name);
    let mut buf = vec![0u8; 64 * 1024];

    let mut run = |count: usize| {
        let mut server = Duration::ZERO;
        for _ in 0..count {
            let t = Instant::now();
            let mut s = sd.accept().unwrap();
            server += t.elapsed();
            let mut c = cd.connect(Some(&name)).unwrap();
            handshake(&mut *c, &mut *s, &mut buf, &mut server);
            let t = Instant::now();
            drop(s);
            server += t.elapsed();
        }
        server
    };
    run(50); // warm-up
    let cpu_start = thread_cpu_time();
    let server = run(n);
    let handshakes_per_cpu_s = n as f64 / (thread_cpu_time() - cpu_start).as_secs_f64();
    let handshakes_per_s = n as f64 / server.as_secs_f64();

    // Idle connections.
    let arena_before = arena.map(|a| a.stats().in_use);
    let heap_before = heap_in_use();
    let held: Vec<_> = (0..idle).map(|_| idle_server(&*sd, &*cd, &name, &mut buf)).collect();
    let arena_per_conn = arena.zip(arena_before).map(|(a, b)| (a.stats().in_use as f64 - b as f64) / idle as f64);
    let heap_per_conn = (heap_in_use() as f64 - heap_before as f64) / idle as f64;
    drop(held);
    ChildResult { handshakes_per_s, handshakes_per_cpu_s, arena_per_conn, heap_per_conn }
}

/// Handshakes counted per callgrind child, after [`CALLGRIND_WARMUP`] uncounted ones.
const CALLGRIND_HANDSHAKES: usize = 30;
const CALLGRIND_WARMUP: usize = 10;

/// The child of `--instructions`: `--callgrind-child BACKEND on|off N`, run under
/// callgrind by the parent. Set-up and warm-up happen outside [`hookbench_counted`], the
/// only function callgrind counts.
fn callgrind_child(backend_name: &str, hooks_on: bool, n: usize) {
    let _arena = setup(backend_name, hooks_on);
    let (sd, cd, name) = domains(backend_name);
    let mut buf = vec![0u8; 64 * 1024];
    full_handshakes(&*sd, &*cd, &name, &mut buf, CALLGRIND_WARMUP);
    hookbench_counted(&*sd, &*cd, &name, &mut buf, n);
}

/// `n` full handshakes, both sides (accept, connect, handshake, free both sessions).
fn full_handshakes(
    sd: &dyn sipstls::ServerDomain,
    cd: &dyn sipstls::ClientDomain,
    name: &ServerName,
    buf: &mut [u8],
    n: usize,
) {
    for _ in 0..n {
        let mut s = sd.accept().expect("accept");
        let mut c = cd.connect(Some(name)).expect("connect");
        let mut server_time = Duration::ZERO;
        handshake(&mut *c, &mut *s, buf, &mut server_time);
        drop(s);
        drop(c);
    }
}

/// The only function callgrind counts in the child (`--toggle-collect=*hookbench_counted*`).
#[inline(never)]
fn hookbench_counted(
    sd: &dyn sipstls::ServerDomain,
    cd: &dyn sipstls::ClientDomain,
    name: &ServerName,
    buf: &mut [u8],
    n: usize,
) {
    full_handshakes(sd, cd, name, buf, n);
}

/// Instructions per full handshake (client + server) with hooks off and on.
fn instructions(backend: &str) -> Result<(f64, f64), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let n = CALLGRIND_HANDSHAKES.to_string();
    let count = |hooks: &str| {
        sipstls_conformance::callgrind::instructions_per_op(
            &exe,
            &["--callgrind-child", backend, hooks, &n],
            "*hookbench_counted*",
            CALLGRIND_HANDSHAKES,
            &format!("hookbench-{backend}-{hooks}"),
        )
    };
    Ok((count("off")?, count("on")?))
}

/// `--explain openssl`: where an idle OpenSSL connection's bytes go. OpenSSL passes the
/// source file and line of every allocation to its hooks; a recording hook keeps the live
/// ones, and the allocations made for the idle connections that are still live at the end
/// are grouped by site.
#[cfg(feature = "openssl")]
mod explain {
    use std::collections::HashMap;
    use std::ffi::{c_char, c_int, c_void, CStr};
    use std::sync::Mutex;

    type MallocFn = unsafe extern "C" fn(usize, *const c_char, c_int) -> *mut c_void;
    type ReallocFn = unsafe extern "C" fn(*mut c_void, usize, *const c_char, c_int) -> *mut c_void;
    type FreeFn = unsafe extern "C" fn(*mut c_void, *const c_char, c_int);

    extern "C" {
        fn CRYPTO_set_mem_functions(m: Option<MallocFn>, r: Option<ReallocFn>, f: Option<FreeFn>) -> c_int;
    }

    /// A live allocation: (file pointer, line, size).
    type Site = (usize, c_int, usize);

    /// Live allocations by address.
    static LIVE: Mutex<Option<HashMap<usize, Site>>> = Mutex::new(None);

    fn record(p: *mut c_void, file: *const c_char, line: c_int, size: usize) {
        if let Ok(mut g) = LIVE.lock() {
            g.get_or_insert_with(HashMap::new).insert(p as usize, (file as usize, line, size));
        }
    }

    fn forget(p: *mut c_void) {
        if let Ok(mut g) = LIVE.lock() {
            if let Some(m) = g.as_mut() {
                m.remove(&(p as usize));
            }
        }
    }

    unsafe extern "C" fn rec_malloc(size: usize, file: *const c_char, line: c_int) -> *mut c_void {
        // SAFETY: plain libc allocation.
        let p = unsafe { libc::malloc(size.max(1)) };
        let _ = std::panic::catch_unwind(|| record(p, file, line, size));
        p
    }

    unsafe extern "C" fn rec_realloc(p: *mut c_void, size: usize, file: *const c_char, line: c_int) -> *mut c_void {
        let _ = std::panic::catch_unwind(|| forget(p));
        // SAFETY: `p` is null or a live libc allocation made by these hooks.
        let q = unsafe { libc::realloc(p, size.max(1)) };
        let _ = std::panic::catch_unwind(|| record(q, file, line, size));
        q
    }

    unsafe extern "C" fn rec_free(p: *mut c_void, _file: *const c_char, _line: c_int) {
        let _ = std::panic::catch_unwind(|| forget(p));
        // SAFETY: `p` is null or a live libc allocation made by these hooks.
        unsafe { libc::free(p) };
    }

    /// Installs the recording hooks (first thing in the process).
    pub fn install() -> bool {
        // SAFETY: the functions have OpenSSL's signatures and never unwind.
        unsafe { CRYPTO_set_mem_functions(Some(rec_malloc), Some(rec_realloc), Some(rec_free)) == 1 }
    }

    /// Addresses live now.
    pub fn snapshot() -> std::collections::HashSet<usize> {
        LIVE.lock().ok().and_then(|g| g.as_ref().map(|m| m.keys().copied().collect())).unwrap_or_default()
    }

    /// Live allocations not in `before`, grouped by site: (site, bytes, count), largest first.
    pub fn grouped_since(before: &std::collections::HashSet<usize>) -> Vec<(String, usize, usize)> {
        let mut by_site: HashMap<(usize, c_int), (usize, usize)> = HashMap::new();
        if let Ok(g) = LIVE.lock() {
            for (addr, (file, line, size)) in g.iter().flat_map(|m| m.iter()) {
                if !before.contains(addr) {
                    let e = by_site.entry((*file, *line)).or_default();
                    e.0 += size;
                    e.1 += 1;
                }
            }
        }
        let mut out: Vec<(String, usize, usize)> = by_site
            .into_iter()
            .map(|((file, line), (bytes, n))| {
                let name = if file == 0 {
                    "?".to_owned()
                } else {
                    // SAFETY: OpenSSL passes __FILE__, a static NUL-terminated string.
                    unsafe { CStr::from_ptr(file as *const c_char) }.to_string_lossy().into_owned()
                };
                (format!("{name}:{line}"), bytes, n)
            })
            .collect();
        out.sort_by_key(|g| std::cmp::Reverse(g.1));
        out
    }
}

#[cfg(feature = "openssl")]
fn explain_openssl(idle: usize) {
    assert!(explain::install(), "the recording hooks must be installed before OpenSSL's first allocation");
    let (sd, cd, name) = domains("openssl");
    let mut buf = vec![0u8; 64 * 1024];
    let mut connect = || idle_server(&*sd, &*cd, &name, &mut buf);
    drop(connect()); // warm-up
    let before = explain::snapshot();
    let held: Vec<_> = (0..idle).map(|_| connect()).collect();
    let groups = explain::grouped_since(&before);
    let total: usize = groups.iter().map(|g| g.1).sum();
    println!("# Where an idle OpenSSL TLS 1.3 server connection's bytes go\n");
    println!(
        "{idle} idle server sessions (handshake + one 1 KiB exchange each way, client dropped); OpenSSL's own \
         allocations only (requested sizes, no malloc overhead): {:.0} bytes per connection.\n",
        total as f64 / idle as f64
    );
    println!("| allocation site (OpenSSL source) | bytes per connection | allocations per connection |");
    println!("|---|---:|---:|");
    for (site, bytes, n) in groups.iter().take(20) {
        println!("| {site} | {:.0} | {:.1} |", *bytes as f64 / idle as f64, *n as f64 / idle as f64);
    }
    drop(held);
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn run_child(backend: &str, on: bool, n: usize, idle: usize) -> Result<ChildResult, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .args(["--child", backend, if on { "on" } else { "off" }, &n.to_string(), &idle.to_string()])
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("RESULT ")).ok_or_else(|| {
        format!("child failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or(""))
    })?;
    let field = |k: &str| {
        line.split_whitespace().find_map(|f| f.strip_prefix(k).and_then(|v| v.strip_prefix('='))).map(str::to_owned)
    };
    let num = |k: &str| field(k).and_then(|v| v.parse::<f64>().ok());
    Ok(ChildResult {
        handshakes_per_s: num("hs_per_s").ok_or("no hs_per_s")?,
        handshakes_per_cpu_s: num("hs_per_cpu_s").ok_or("no hs_per_cpu_s")?,
        arena_per_conn: num("arena_per_conn"),
        heap_per_conn: num("heap_per_conn").ok_or("no heap_per_conn")?,
    })
}

/// The command line (`--explain openssl` and the child modes are read before it).
#[derive(Debug, clap::Parser)]
#[command(
    name = "sipstls-hookbench",
    about = "Allocator hooks: their cost per handshake and the arena bytes per idle connection",
    after_help = "sipstls-hookbench --explain openssl: where each arena byte of an idle OpenSSL connection goes."
)]
struct Cli {
    /// Fewer repetitions and handshakes.
    #[arg(long)]
    quick: bool,
    /// Also count instructions per handshake under callgrind (needs valgrind).
    #[arg(long, conflicts_with = "instructions_only")]
    instructions: bool,
    /// Only count instructions (no timing).
    #[arg(long)]
    instructions_only: bool,
    /// Only these backends (default: every backend of the build that claims the hook).
    #[arg(long, value_name = "a,b,...", value_delimiter = ',')]
    backends: Option<Vec<String>>,
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        let [_, backend, hooks, n, idle] = &args[..] else {
            eprintln!("usage: --child BACKEND on|off N IDLE");
            return std::process::ExitCode::from(2);
        };
        let r = child(backend, hooks == "on", n.parse().unwrap_or(500), idle.parse().unwrap_or(200));
        let arena = r.arena_per_conn.map(|a| format!(" arena_per_conn={a:.0}")).unwrap_or_default();
        println!(
            "RESULT hs_per_s={:.1} hs_per_cpu_s={:.1} heap_per_conn={:.0}{arena}",
            r.handshakes_per_s, r.handshakes_per_cpu_s, r.heap_per_conn
        );
        return std::process::ExitCode::SUCCESS;
    }
    if args.first().map(String::as_str) == Some("--callgrind-child") {
        let [_, backend, hooks, n] = &args[..] else {
            eprintln!("usage: --callgrind-child BACKEND on|off N");
            return std::process::ExitCode::from(2);
        };
        callgrind_child(backend, hooks == "on", n.parse().unwrap_or(CALLGRIND_HANDSHAKES));
        return std::process::ExitCode::SUCCESS;
    }
    if args.first().map(String::as_str) == Some("--explain") {
        #[cfg(feature = "openssl")]
        {
            explain_openssl(200);
            return std::process::ExitCode::SUCCESS;
        }
        #[cfg(not(feature = "openssl"))]
        {
            eprintln!("--explain needs the openssl backend");
            return std::process::ExitCode::from(2);
        }
    }
    let cli = <Cli as clap::Parser>::parse_from(std::iter::once("sipstls-hookbench".to_owned()).chain(args));
    let (quick, only) = (cli.quick, cli.backends);
    let count_instructions = cli.instructions || cli.instructions_only;
    let timing = !cli.instructions_only;
    let (reps, n, idle) = if quick { (3, 300, 200) } else { (7, 1000, 1000) };
    if cfg!(debug_assertions) {
        eprintln!("WARNING: built without optimisations; use --release for meaningful figures");
    }
    println!("# Allocator hooks: cost and arena bytes per idle connection\n");
    if timing {
        println!(
            "Timing: full TLS 1.3 ECDSA P-256 handshakes in memory; {reps} repetitions per figure alternating \
             hooks off/on in separate processes ({n} handshakes each). Wall: the server side's calls, by the clock. \
             CPU: client + server, by the thread's CPU time (time spent waiting for a core on a shared machine is \
             not counted, so it moves less with load). Idle: {idle} server sessions after handshake + one 1 KiB \
             exchange each way."
        );
    }
    if count_instructions {
        println!(
            "Instructions: valgrind's callgrind counts {CALLGRIND_HANDSHAKES} full handshakes (client + server, \
             sessions created and freed) after {CALLGRIND_WARMUP} uncounted ones, hooks off and on, one process each; \
             the count does not depend on machine load."
        );
    }
    println!();
    println!(
        "| backend | wall: handshakes/s hooks off | hooks on | on/off | CPU: handshakes/CPU-s hooks off | hooks on \
         | on/off | instructions/handshake hooks off | hooks on | on/off | goal (hooks cost < 10%) \
         | arena bytes per idle conn | goal | glibc heap per idle conn, hooks off |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---:|");
    let mut failed = false;
    for backend in sipstls::backends() {
        let name = backend.info().name;
        if only.as_ref().is_some_and(|o| !o.iter().any(|b| b == name)) {
            continue;
        }
        if !backend.capabilities().contains(sipstls::Capabilities::ALLOCATOR_HOOK) {
            println!("| {name} | hooks refused: {} | | | | | | | | | not applicable | | | |", refusal(name));
            continue;
        }
        let instr = if count_instructions {
            eprint!("{name}: counting instructions under callgrind ... ");
            let r = instructions(name);
            match &r {
                Ok((off, on)) => eprintln!("{:.3}", on / off),
                Err(e) => {
                    eprintln!("error: {e}");
                    failed = true;
                }
            }
            Some(r)
        } else {
            None
        };
        let (instr_off, instr_on, instr_ratio) = match &instr {
            None => ("not counted (--instructions)".to_owned(), String::new(), String::new()),
            Some(Err(_)) => ("failed".to_owned(), String::new(), String::new()),
            Some(Ok((off, on))) => (format!("{off:.0}"), format!("{on:.0}"), format!("{:.3}", on / off)),
        };
        let instr_goal = match &instr {
            Some(Ok((off, on))) => Some(on / off <= 1.10),
            _ => None,
        };
        if !timing {
            let goal = match instr_goal {
                Some(true) => "instructions: met (<= 1.10)",
                Some(false) => "instructions: NOT met (> 1.10)",
                None => "",
            };
            println!(
                "| {name} | not timed | | | | | | {instr_off} | {instr_on} | {instr_ratio} | {goal} | not measured | | |"
            );
            continue;
        }
        let mut off = Vec::new();
        let mut on = Vec::new();
        let mut cpu_off = Vec::new();
        let mut cpu_on = Vec::new();
        let mut arena = Vec::new();
        let mut heap_off = Vec::new();
        for rep in 0..reps {
            for hooks in if rep % 2 == 0 { [false, true] } else { [true, false] } {
                match run_child(name, hooks, n, idle) {
                    Ok(r) if hooks => {
                        on.push(r.handshakes_per_s);
                        cpu_on.push(r.handshakes_per_cpu_s);
                        arena.extend(r.arena_per_conn);
                    }
                    Ok(r) => {
                        off.push(r.handshakes_per_s);
                        cpu_off.push(r.handshakes_per_cpu_s);
                        heap_off.push(r.heap_per_conn);
                    }
                    Err(e) => {
                        eprintln!("{name} hooks {}: {e}", if hooks { "on" } else { "off" });
                        failed = true;
                    }
                }
            }
        }
        if off.is_empty() || on.is_empty() || arena.is_empty() {
            println!("| {name} | failed | | | | | | {instr_off} | {instr_on} | {instr_ratio} | | | | |");
            continue;
        }
        let (off_m, on_m, arena_m, heap_m) =
            (median(&mut off), median(&mut on), median(&mut arena), median(&mut heap_off));
        let (cpu_off_m, cpu_on_m) = (median(&mut cpu_off), median(&mut cpu_on));
        let ratio = on_m / off_m;
        let cpu_ratio = cpu_on_m / cpu_off_m;
        let met = |r: f64| if r >= 0.90 { "met (>= 0.90)" } else { "NOT met (< 0.90)" };
        let mut goal = format!("wall: {}; CPU: {}", met(ratio), met(cpu_ratio));
        match instr_goal {
            Some(true) => goal.push_str("; instructions: met (<= 1.10)"),
            Some(false) => goal.push_str("; instructions: NOT met (> 1.10)"),
            None => {}
        }
        println!(
            "| {name} | {off_m:.0} | {on_m:.0} | {ratio:.3} | {cpu_off_m:.0} | {cpu_on_m:.0} | {cpu_ratio:.3} \
             | {instr_off} | {instr_on} | {instr_ratio} | {goal} | {arena_m:.0} | {} | {heap_m:.0} |",
            if arena_m <= 16384.0 { "met (<= 16 KiB)" } else { "NOT met (> 16 KiB)" },
        );
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
