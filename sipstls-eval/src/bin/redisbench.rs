//! `sipstls-redisbench`: full vs resumed handshakes across two nodes through Redis, and the
//! latency the store lookup adds.
//!
//! Starts its own `redis-server` on a free loopback port (stopped by PID at the end). Two
//! "nodes" are two server domains in this process, each with its *own* Redis connection
//! pool (`RedisSessionStore` / `RedisTicketKeys` objects): a session cached by node A is
//! read back from Redis by node B over loopback TCP, as between two machines (without the
//! network hop). Client and server run in memory on one thread (as `sipstls-eval`), so a
//! figure is the CPU time of both sides plus the Redis round trips.
//!
//! Per backend and TLS version:
//! - full: a client without resumption against node A (the server still stores its
//!   session or issues a ticket, as in production);
//! - resumed: one client alternating A, B, A, ...: every connection resumes the session
//!   the *other* node issued (asserted);
//!
//! for three server set-ups: the Redis session store, an in-process LRU store shared by
//! both nodes (the single-machine baseline), and stateless tickets with Redis ticket keys.
//! The store lookup (`get`/`take`) is timed inside the handshake; "added" is the Redis
//! figure minus the in-process one.
//!
//! `--quick` (fewer handshakes), `--markdown FILE`, `--backends rustls,openssl`.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sipstls::{
    Backend, Capabilities, DomainConfig, LruSessionStore, ProtocolVersion, Resumption, ServerName, SessionStore,
    SessionStoreHandle, TicketKeysHandle,
};
use sipstls_conformance::pki::{pki, SERVER_NAME};
use sipstls_conformance::pump;
use sipstls_redis::testing::RedisServer;
use sipstls_redis::{RedisConfig, RedisSessionStore, RedisTicketKeys};

/// A store that times its lookups.
struct Timed {
    inner: Arc<dyn SessionStore>,
    lookups: Mutex<Vec<Duration>>,
}

impl SessionStore for Timed {
    fn put(&self, key: &[u8], value: &[u8], ttl: Duration) -> bool {
        self.inner.put(key, value, ttl)
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let t = Instant::now();
        let r = self.inner.get(key);
        self.lookups.lock().unwrap().push(t.elapsed());
        r
    }
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        let t = Instant::now();
        let r = self.inner.take(key);
        self.lookups.lock().unwrap().push(t.elapsed());
        r
    }
    fn remove(&self, key: &[u8]) -> bool {
        self.inner.remove(key)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Setup {
    RedisStore,
    LocalStore,
    RedisTickets,
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::RedisStore => "Redis session store",
            Setup::LocalStore => "in-process LRU store (baseline)",
            Setup::RedisTickets => "tickets, Redis ticket keys",
        }
    }
}

struct Row {
    backend: &'static str,
    version: ProtocolVersion,
    setup: Setup,
    full_per_s: f64,
    resumed_per_s: f64,
    resumed_median: Duration,
    resumed_p99: Duration,
    lookup_median: Option<Duration>,
    lookup_p99: Option<Duration>,
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One connection: handshake, a request and a response (delivers TLS 1.3 tickets), close.
/// Returns (client resumed, server resumed).
fn connection(cd: &dyn sipstls::ClientDomain, sd: &dyn sipstls::ServerDomain) -> (bool, bool) {
    let mut c = cd.connect(Some(&ServerName::Dns(SERVER_NAME.into()))).unwrap();
    let mut s = sd.accept().unwrap();
    pump::handshake(&mut *c, &mut *s).expect("handshake");
    pump::send(&mut *c, &mut *s, b"OPTIONS").unwrap();
    pump::send(&mut *s, &mut *c, b"200 OK").unwrap();
    let r = (c.info().unwrap().resumed, s.info().unwrap().resumed);
    c.close_notify();
    pump::transfer(&mut *c, &mut *s).unwrap();
    r
}

fn measure(b: &dyn Backend, v: ProtocolVersion, setup: Setup, redis: &RedisServer, n: usize, secret: [u8; 32]) -> Row {
    let prefix = format!("bench{}:", b.info().name);
    let rcfg = RedisConfig::new(redis.url(), secret).with_prefix(prefix);
    let local: Arc<dyn SessionStore> = Arc::new(LruSessionStore::new(100_000, 256 << 20));
    let mut timers = Vec::new();
    let mut node = || {
        let base = DomainConfig::server(pki().server_ecdsa.identity()).with_version(v);
        let cfg = match setup {
            Setup::RedisStore | Setup::LocalStore => {
                let inner: Arc<dyn SessionStore> = match setup {
                    Setup::RedisStore => Arc::new(RedisSessionStore::new(rcfg.clone()).unwrap()),
                    _ => local.clone(),
                };
                let timed = Arc::new(Timed { inner, lookups: Mutex::default() });
                timers.push(timed.clone());
                base.with_resumption(Resumption::SESSION_IDS).with_session_store(SessionStoreHandle::from_arc(timed))
            }
            Setup::RedisTickets => {
                let keys =
                    RedisTicketKeys::new(rcfg.clone(), Duration::from_secs(3600), Duration::from_secs(5)).unwrap();
                base.with_resumption(Resumption::TICKETS).with_ticket_keys(TicketKeysHandle::new(keys))
            }
        };
        b.server_domain(&cfg).unwrap()
    };
    let (a, bn) = (node(), node());
    let client_cfg = DomainConfig::client(pki().roots()).with_version(v);
    let no_resume = b.client_domain(&client_cfg.clone().with_resumption(Resumption::DISABLED)).unwrap();
    let resume = b.client_domain(&client_cfg).unwrap();
    for t in &timers {
        t.lookups.lock().unwrap().clear();
    }

    // Warm-up (connections, keys, caches), then full handshakes.
    for _ in 0..20 {
        connection(&*no_resume, &*a);
    }
    let t = Instant::now();
    for _ in 0..n {
        assert_eq!(connection(&*no_resume, &*a), (false, false));
    }
    let full_per_s = n as f64 / t.elapsed().as_secs_f64();

    // Resumed: alternate nodes; each connection resumes what the other node issued. A
    // fresh client every CHAIN connections (primed by an untimed full handshake on A):
    // wolfSSL cuts resumption chains after 100 tickets.
    const CHAIN: usize = 50;
    let mut resume = resume;
    let mut lat = Vec::with_capacity(n);
    let mut lookups: Vec<Duration> = Vec::new();
    for i in 0..n {
        if i % CHAIN == 0 {
            if i > 0 {
                resume = b.client_domain(&client_cfg).unwrap();
            }
            assert_eq!(connection(&*resume, &*a), (false, false));
            for t in &timers {
                t.lookups.lock().unwrap().clear(); // the priming handshake's
            }
        }
        let node = if i % 2 == 0 { &bn } else { &a };
        let t1 = Instant::now();
        let r = connection(&*resume, &**node);
        lat.push(t1.elapsed());
        assert_eq!(r, (true, true), "connection {i} did not resume across nodes");
        for t in &timers {
            lookups.extend(t.lookups.lock().unwrap().drain(..));
        }
    }
    let resumed_per_s = n as f64 / lat.iter().sum::<Duration>().as_secs_f64();
    lat.sort();
    lookups.sort();
    let has_lookups = !lookups.is_empty();
    Row {
        backend: b.info().name,
        version: v,
        setup,
        full_per_s,
        resumed_per_s,
        resumed_median: pct(&lat, 0.5),
        resumed_p99: pct(&lat, 0.99),
        lookup_median: has_lookups.then(|| pct(&lookups, 0.5)),
        lookup_p99: has_lookups.then(|| pct(&lookups, 0.99)),
    }
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// The command line.
#[derive(Debug, clap::Parser)]
#[command(name = "sipstls-redisbench", about = "Resumption through Redis against each node's own cache")]
struct Cli {
    /// 200 handshakes per figure instead of 2000.
    #[arg(long)]
    quick: bool,
    /// Also write the report to this file.
    #[arg(long, value_name = "FILE")]
    markdown: Option<String>,
    /// Only these backends (default: every backend of the build).
    #[arg(long, value_name = "a,b,...", value_delimiter = ',')]
    backends: Option<Vec<String>>,
}

fn main() {
    let cli = <Cli as clap::Parser>::parse();
    let (quick, wanted) = (cli.quick, cli.backends);
    let n = if quick { 200 } else { 2000 };
    let redis = RedisServer::start().expect("redis-server (apt: redis-server)");
    let started = Instant::now();
    let mut rows = Vec::new();
    for b in sipstls::backends() {
        let name = b.info().name;
        if wanted.as_ref().is_some_and(|w| !w.iter().any(|x| x == name)) {
            continue;
        }
        let caps = b.capabilities();
        if !caps.contains(Capabilities::SESSION_STORE) && !caps.contains(Capabilities::TICKET_KEYS) {
            println!("{name}: claims neither SESSION_STORE nor TICKET_KEYS (refused), skipped");
            continue;
        }
        let mut secret = [0u8; 32];
        b.fill_random(&mut secret).unwrap();
        for v in [ProtocolVersion::Tls13, ProtocolVersion::Tls12] {
            if !caps.contains(v.capability()) {
                continue;
            }
            for setup in [Setup::RedisStore, Setup::LocalStore, Setup::RedisTickets] {
                let cap =
                    if setup == Setup::RedisTickets { Capabilities::TICKET_KEYS } else { Capabilities::SESSION_STORE };
                if !caps.contains(cap) {
                    continue;
                }
                let row = measure(&*b, v, setup, &redis, n, secret);
                println!(
                    "{name} {v} {}: full {:.0}/s, resumed across nodes {:.0}/s (x{:.2}), resumed median {} p99 {}, lookup {}",
                    setup.name(),
                    row.full_per_s,
                    row.resumed_per_s,
                    row.resumed_per_s / row.full_per_s,
                    us(row.resumed_median),
                    us(row.resumed_p99),
                    row.lookup_median.map_or("-".into(), |m| format!("median {} p99 {}", us(m), us(row.lookup_p99.unwrap())))
                );
                rows.push(row);
            }
        }
    }
    drop(redis);
    let md = markdown(&rows, n, started.elapsed(), quick);
    if let Some(path) = cli.markdown {
        std::fs::write(&path, &md).expect("write markdown");
        println!("wrote {path}");
    } else {
        println!("\n{md}");
    }
}

fn markdown(rows: &[Row], n: usize, took: Duration, quick: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Measured by `sipstls-redisbench{}`: {n} handshakes per figure, {:.0} s in all. Client and server in \
         one thread (both sides' CPU time), the store in a real `redis-server` over loopback TCP.\n",
        if quick { " --quick" } else { "" },
        took.as_secs_f64()
    );
    let _ = writeln!(s, "### Handshakes per second, full vs resumed across two nodes\n");
    let _ = writeln!(s, "| backend | version | server set-up | full/s | resumed on the other node/s | resumed/full |");
    let _ = writeln!(s, "|---|---|---|---:|---:|---:|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.0} | {:.0} | {:.2} |",
            r.backend,
            r.version,
            r.setup.name(),
            r.full_per_s,
            r.resumed_per_s,
            r.resumed_per_s / r.full_per_s
        );
    }
    let _ = writeln!(s, "\n### Store lookup latency (inside the resumed handshake)\n");
    let _ = writeln!(
        s,
        "| backend | version | lookup median: Redis | in-process | added | lookup p99: Redis | in-process | added | resumed connection median: Redis | in-process | added |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows.iter().filter(|r| r.setup == Setup::RedisStore) {
        let Some(l) =
            rows.iter().find(|l| l.setup == Setup::LocalStore && l.backend == r.backend && l.version == r.version)
        else {
            continue;
        };
        let (Some(rm), Some(rp), Some(lm), Some(lp)) = (r.lookup_median, r.lookup_p99, l.lookup_median, l.lookup_p99)
        else {
            continue;
        };
        let diff = |a: Duration, b: Duration| format!("{:+.1} µs", (a.as_secs_f64() - b.as_secs_f64()) * 1e6);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.backend,
            r.version,
            us(rm),
            us(lm),
            diff(rm, lm),
            us(rp),
            us(lp),
            diff(rp, lp),
            us(r.resumed_median),
            us(l.resumed_median),
            diff(r.resumed_median, l.resumed_median)
        );
    }
    s
}
