//! The scenarios and how one repetition of each is measured on one backend.

use std::sync::Arc;

use sipstls::{
    Backend, ClientDomain, DomainConfig, ProtocolVersion, Resumption, ServerDomain, ServerName, Session, TlsInfo,
};
use sipstls_conformance::checks::{client_cfg, server_cfg};
use sipstls_conformance::pki::{pki, SERVER_NAME};

use super::drive::{self, timed, Clocks, Scratch};
use super::memory;

/// Iteration counts and repetitions of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// True for `--quick`.
    pub quick: bool,
    /// Repetitions of every figure (the median is reported).
    pub reps: usize,
    /// Full ECDSA handshakes per repetition.
    pub handshakes: usize,
    /// Full RSA-2048 handshakes per repetition.
    pub rsa_handshakes: usize,
    /// Resumed handshakes per repetition.
    pub resumed: usize,
    /// 1 KiB records per repetition.
    pub records_1k: usize,
    /// 16 KiB records per repetition.
    pub records_16k: usize,
    /// Idle server connections held per repetition.
    pub idle_connections: usize,
    /// Unmeasured handshakes before the first repetition (caches, lazy initialisation).
    pub warmup: usize,
}

impl Plan {
    /// `--quick`: a few seconds per backend.
    pub const QUICK: Plan = Plan {
        quick: true,
        reps: 3,
        handshakes: 300,
        rsa_handshakes: 150,
        resumed: 600,
        records_1k: 20_000,
        records_16k: 2_000,
        idle_connections: 200,
        warmup: 20,
    };

    /// The default: 7 repetitions of larger counts.
    pub const FULL: Plan = Plan {
        quick: false,
        reps: 7,
        handshakes: 2_000,
        rsa_handshakes: 1_000,
        resumed: 4_000,
        records_1k: 200_000,
        records_16k: 20_000,
        idle_connections: 1_000,
        warmup: 100,
    };
}

/// The certificate a server presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// ECDSA P-256 (`pki().server_ecdsa`).
    Ecdsa,
    /// RSA-2048 (`pki().server_rsa`).
    Rsa,
}

/// What a scenario measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Full handshakes, resumption off on both sides (so no tickets are issued).
    Full {
        /// The only version configured.
        version: ProtocolVersion,
        /// The server's certificate.
        key: Key,
    },
    /// Resumed handshakes between one client domain and one server domain; every measured
    /// connection must report `resumed` on both sides.
    Resumed {
        /// The only version configured.
        version: ProtocolVersion,
        /// The mechanism, on both sides.
        resumption: Resumption,
    },
    /// Records from client to server over one established TLS 1.3 ECDSA connection.
    Records {
        /// Plaintext bytes per write (one record each).
        size: usize,
        /// Records encrypted before the receiver is given them.
        batch: usize,
    },
    /// Heap bytes per idle server connection, after a handshake in `version`.
    IdleMemory {
        /// The protocol version.
        version: ProtocolVersion,
    },
}

/// Which table a scenario belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Handshakes per second.
    Handshake,
    /// Record throughput.
    Records,
    /// Memory per connection.
    Memory,
}

/// One scenario, run identically on every backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    /// Stable identifier (JSON key).
    pub id: &'static str,
    /// Human-readable name.
    pub label: &'static str,
    /// What is measured.
    pub kind: Kind,
    /// Iterations (handshakes, records, connections) per repetition.
    pub iterations: usize,
}

impl Scenario {
    /// The table this scenario belongs to.
    pub fn group(&self) -> Group {
        match self.kind {
            Kind::Full { .. } | Kind::Resumed { .. } => Group::Handshake,
            Kind::Records { .. } => Group::Records,
            Kind::IdleMemory { .. } => Group::Memory,
        }
    }

    /// Units of the server-side and client-side figures.
    pub fn units(&self) -> (&'static str, Option<&'static str>) {
        match self.group() {
            Group::Handshake => ("handshakes/s", Some("handshakes/s")),
            Group::Records => ("MB/s", Some("MB/s")),
            Group::Memory => ("bytes", None),
        }
    }

    /// Plaintext bytes per record, for record scenarios.
    pub fn record_size(&self) -> Option<usize> {
        match self.kind {
            Kind::Records { size, .. } => Some(size),
            _ => None,
        }
    }
}

/// Resumption with tickets only (TLS 1.3 PSK tickets).
pub const TICKETS: Resumption = Resumption::TICKETS;
/// Resumption with a server-side session cache only (TLS 1.2 session IDs).
pub const SESSION_IDS: Resumption = Resumption::SESSION_IDS;

/// Identifier of the TLS 1.3 ECDSA full handshake scenario (charted).
pub const FULL_TLS13_ECDSA: &str = "full_tls13_ecdsa";
/// Identifier of the memory scenario (charted).
pub const IDLE_MEMORY: &str = "idle_memory";

/// Every scenario of a run, in report order.
pub fn scenarios(plan: &Plan) -> Vec<Scenario> {
    use ProtocolVersion::{Tls12, Tls13};
    let sc = |id, label, kind, iterations| Scenario { id, label, kind, iterations };
    vec![
        sc(
            FULL_TLS13_ECDSA,
            "Full handshake, TLS 1.3, ECDSA P-256",
            Kind::Full { version: Tls13, key: Key::Ecdsa },
            plan.handshakes,
        ),
        sc(
            "full_tls12_ecdsa",
            "Full handshake, TLS 1.2, ECDSA P-256",
            Kind::Full { version: Tls12, key: Key::Ecdsa },
            plan.handshakes,
        ),
        sc(
            "full_tls13_rsa2048",
            "Full handshake, TLS 1.3, RSA-2048",
            Kind::Full { version: Tls13, key: Key::Rsa },
            plan.rsa_handshakes,
        ),
        sc(
            "resumed_tls13_ticket",
            "Resumed, TLS 1.3, session ticket",
            Kind::Resumed { version: Tls13, resumption: TICKETS },
            plan.resumed,
        ),
        sc(
            "resumed_tls12_session_id",
            "Resumed, TLS 1.2, session ID",
            Kind::Resumed { version: Tls12, resumption: SESSION_IDS },
            plan.resumed,
        ),
        sc("records_1k", "1 KiB records, TLS 1.3", Kind::Records { size: 1024, batch: 16 }, plan.records_1k),
        sc(
            "records_16k",
            "16 KiB records (bulk), TLS 1.3",
            Kind::Records { size: 16 * 1024, batch: 4 },
            plan.records_16k,
        ),
        sc(
            IDLE_MEMORY,
            "Heap per idle server connection, TLS 1.3 ECDSA",
            Kind::IdleMemory { version: Tls13 },
            plan.idle_connections,
        ),
        // TLS 1.2 as well: a like-for-like figure for deployments that still speak it.
        sc(
            "idle_memory_tls12",
            "Heap per idle server connection, TLS 1.2 ECDSA",
            Kind::IdleMemory { version: Tls12 },
            plan.idle_connections,
        ),
    ]
}

/// The server and client configurations of a scenario.
fn configs(kind: Kind) -> (DomainConfig, DomainConfig) {
    let off = Resumption::DISABLED;
    match kind {
        Kind::Full { version, key: Key::Ecdsa } => {
            (server_cfg(version).with_resumption(off), client_cfg(version).with_resumption(off))
        }
        Kind::Full { version, key: Key::Rsa } => (
            DomainConfig::server(pki().server_rsa.identity()).with_version(version).with_resumption(off),
            client_cfg(version).with_resumption(off),
        ),
        Kind::Resumed { version, resumption } => {
            (server_cfg(version).with_resumption(resumption), client_cfg(version).with_resumption(resumption))
        }
        Kind::Records { .. } => {
            let v = ProtocolVersion::Tls13;
            (server_cfg(v).with_resumption(off), client_cfg(v).with_resumption(off))
        }
        Kind::IdleMemory { version } => {
            (server_cfg(version).with_resumption(off), client_cfg(version).with_resumption(off))
        }
    }
}

/// What one repetition measured: the server-side figure and, if the scenario has one,
/// the client-side figure, in the scenario's units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rep {
    /// Server side.
    pub server: f64,
    /// Client side.
    pub client: Option<f64>,
}

/// An established connection kept across repetitions.
struct Pair {
    client: Box<dyn Session>,
    server: Box<dyn Session>,
}

/// One backend's state for one scenario: its domains (and, for record scenarios, a
/// connection), kept across repetitions.
pub struct Fixture {
    scenario: Scenario,
    server: Arc<dyn ServerDomain>,
    client: Arc<dyn ClientDomain>,
    name: ServerName,
    pair: Option<Pair>,
    scratch: Scratch,
    /// What the server negotiated (version, suite, group), for the report.
    pub negotiated: String,
    /// Resumed scenarios: the most connections of one repetition that did a full
    /// handshake instead (see [`MAX_FULL_PER_RESUMED`]), and that repetition's count.
    pub full_instead: Option<(usize, usize)>,
}

/// In a resumed scenario, at most one connection in this many may do a full handshake
/// instead; it is left out of the figure and the report says how many there were. A
/// server may decline a ticket on purpose: sipstls-backend-wolfssl refuses tickets more than 100
/// resumptions down a chain (wolfSSL 5.9's ticket nonce overflows at 255), so a client
/// that always resumes from the last ticket gets one full handshake every 101
/// connections. More than this many means resumption does not work: the figure fails.
pub const MAX_FULL_PER_RESUMED: usize = 50;

impl Fixture {
    /// Builds the domains of `scenario` on `backend` and warms up (caches primed, lazy
    /// initialisation done) without measuring.
    pub fn new(backend: &dyn Backend, scenario: &Scenario, plan: &Plan) -> Result<Fixture, String> {
        let (scfg, ccfg) = configs(scenario.kind);
        Fixture::with_configs(backend, scenario, plan, &scfg, &ccfg)
    }

    /// [`Fixture::new`] with explicit server and client configurations.
    fn with_configs(
        backend: &dyn Backend,
        scenario: &Scenario,
        plan: &Plan,
        scfg: &DomainConfig,
        ccfg: &DomainConfig,
    ) -> Result<Fixture, String> {
        let server = backend.server_domain(scfg).map_err(|e| format!("building the server domain: {e}"))?;
        let client = backend.client_domain(ccfg).map_err(|e| format!("building the client domain: {e}"))?;
        let name = ServerName::parse(SERVER_NAME).map_err(|e| e.to_string())?;
        let batch_bytes = match scenario.kind {
            Kind::Records { size, batch } => size * batch,
            _ => 4096,
        };
        let mut fx = Fixture {
            scenario: scenario.clone(),
            server,
            client,
            name,
            pair: None,
            scratch: Scratch::new(batch_bytes),
            negotiated: String::new(),
            full_instead: None,
        };
        fx.warm_up(plan)?;
        Ok(fx)
    }

    /// Unmeasured work before the first repetition.
    fn warm_up(&mut self, plan: &Plan) -> Result<(), String> {
        match self.scenario.kind {
            Kind::Full { .. } | Kind::Resumed { .. } => {
                for _ in 0..plan.warmup {
                    self.connect_once(&mut Clocks::default(), false)?;
                }
                Ok(())
            }
            Kind::Records { size, batch } => {
                let pair = self.connect_pair()?;
                self.pair = Some(pair);
                self.records(size, batch, 100 * batch).map(drop)
            }
            Kind::IdleMemory { .. } => self.idle_connection(&mut Clocks::default()).map(drop),
        }
    }

    /// Measures one repetition.
    pub fn run_rep(&mut self) -> Result<Rep, String> {
        let n = self.scenario.iterations;
        match self.scenario.kind {
            Kind::Full { version, .. } => self.handshakes(n, version, false),
            Kind::Resumed { version, .. } => self.handshakes(n, version, true),
            Kind::Records { size, batch } => self.records(size, batch, n),
            Kind::IdleMemory { .. } => self.idle_memory(n),
        }
    }

    /// `n` handshakes; each must negotiate `version` and be resumed exactly when
    /// `resumed` is asked for. Rates are handshakes per second of each side's time.
    fn handshakes(&mut self, n: usize, version: ProtocolVersion, resumed: bool) -> Result<Rep, String> {
        let mut clocks = Clocks::default();
        let allowed_full = if resumed { n / MAX_FULL_PER_RESUMED } else { 0 };
        let mut full = 0;
        for i in 0..n {
            let before = clocks;
            let (info, client_resumed) = self.connect_once(&mut clocks, resumed)?;
            if info.version != version {
                return Err(format!("connection {i}: negotiated {} instead of {version}", info.version));
            }
            if info.resumed != resumed || client_resumed.is_some_and(|c| c != resumed) {
                // A full handshake where resumption was asked for, agreed by both sides:
                // tolerated now and then (see MAX_FULL_PER_RESUMED), its time left out.
                if resumed && !info.resumed && client_resumed == Some(false) && full < allowed_full {
                    full += 1;
                    clocks = before;
                    continue;
                }
                let what = if resumed { "was not resumed" } else { "was resumed" };
                return Err(format!(
                    "connection {} of {n} {what} (server resumed={}, client resumed={:?}; {full} full handshakes \
                     before it, {allowed_full} tolerated); figure dropped",
                    i + 1,
                    info.resumed,
                    client_resumed
                ));
            }
            if self.negotiated.is_empty() || i == 0 {
                self.negotiated = describe(&info);
            }
        }
        if full > 0 && self.full_instead.is_none_or(|(most, _)| full > most) {
            self.full_instead = Some((full, n));
        }
        let done = (n - full) as f64;
        Ok(Rep { server: rate(done, clocks.server), client: Some(rate(done, clocks.client)) })
    }

    /// One connection: accept and connect, handshake, drop both sessions (all timed per
    /// side). Returns the server's `TlsInfo` and, if `check_client`, whether the client
    /// saw a resumption (read untimed: the client's `info()` parses the certificate).
    fn connect_once(&mut self, clocks: &mut Clocks, check_client: bool) -> Result<(TlsInfo, Option<bool>), String> {
        let mut server = timed(&mut clocks.server, || self.server.accept()).map_err(|e| format!("accept: {e}"))?;
        let mut client =
            timed(&mut clocks.client, || self.client.connect(Some(&self.name))).map_err(|e| format!("connect: {e}"))?;
        drive::handshake(&mut *client, &mut *server, clocks, &mut self.scratch.wire)?;
        let info = server.info().ok_or("the server reports no TlsInfo after a completed handshake")?;
        let client_resumed = if check_client {
            Some(client.info().ok_or("the client reports no TlsInfo after a completed handshake")?.resumed)
        } else {
            None
        };
        timed(&mut clocks.server, || drop(server));
        timed(&mut clocks.client, || drop(client));
        Ok((info, client_resumed))
    }

    /// An established pair (unmeasured).
    fn connect_pair(&mut self) -> Result<Pair, String> {
        let mut server = self.server.accept().map_err(|e| format!("accept: {e}"))?;
        let mut client = self.client.connect(Some(&self.name)).map_err(|e| format!("connect: {e}"))?;
        drive::handshake(&mut *client, &mut *server, &mut Clocks::default(), &mut self.scratch.wire)?;
        let info = server.info().ok_or("the server reports no TlsInfo after a completed handshake")?;
        self.negotiated = describe(&info);
        Ok(Pair { client, server })
    }

    /// `n` records of `size` bytes from client to server, `batch` at a time. Rates are
    /// MB/s (10^6 bytes) of plaintext per second of each side's time: the client's is
    /// encryption, the server's decryption.
    fn records(&mut self, size: usize, batch: usize, n: usize) -> Result<Rep, String> {
        let Some(pair) = self.pair.as_mut() else {
            return Err("no established connection (warm-up failed)".into());
        };
        let msg = vec![0x53u8; size];
        let mut clocks = Clocks::default();
        let mut left = n;
        while left > 0 {
            let count = batch.min(left);
            drive::send_records(
                &mut *pair.client,
                &mut clocks.client,
                &mut *pair.server,
                &mut clocks.server,
                &msg,
                count,
                &mut self.scratch,
            )?;
            left -= count;
        }
        let megabytes = (n * size) as f64 / 1e6;
        Ok(Rep { server: rate(megabytes, clocks.server), client: Some(rate(megabytes, clocks.client)) })
    }

    /// Heap bytes per idle server connection: heap in use before and after `n` server
    /// sessions that each completed a handshake and one 1 KiB exchange each way, their
    /// clients dropped. Everything else (the holder vector, scratch buffers) is allocated
    /// before the first reading.
    fn idle_memory(&mut self, n: usize) -> Result<Rep, String> {
        let mut held: Vec<Box<dyn Session>> = Vec::with_capacity(n);
        let mut clocks = Clocks::default();
        let before = memory::heap_in_use().ok_or(memory::UNAVAILABLE)?;
        for _ in 0..n {
            held.push(self.idle_connection(&mut clocks)?);
        }
        let after = memory::heap_in_use().ok_or(memory::UNAVAILABLE)?;
        drop(held);
        Ok(Rep { server: (after as f64 - before as f64) / n as f64, client: None })
    }

    /// A server session after a handshake and a 1 KiB request and response, told it is
    /// idle (`release_memory`, as the confined manager does before a connection waits);
    /// the client session is dropped.
    fn idle_connection(&mut self, clocks: &mut Clocks) -> Result<Box<dyn Session>, String> {
        const MSG: [u8; 1024] = [0x53; 1024];
        let mut server = self.server.accept().map_err(|e| format!("accept: {e}"))?;
        let mut client = self.client.connect(Some(&self.name)).map_err(|e| format!("connect: {e}"))?;
        drive::handshake(&mut *client, &mut *server, clocks, &mut self.scratch.wire)?;
        let (c, s) = (&mut clocks.client, &mut clocks.server);
        drive::send_records(&mut *client, c, &mut *server, s, &MSG, 1, &mut self.scratch)?;
        drive::send_records(&mut *server, s, &mut *client, c, &MSG, 1, &mut self.scratch)?;
        if self.negotiated.is_empty() {
            self.negotiated = server.info().map(|i| describe(&i)).unwrap_or_default();
        }
        drop(client);
        server.release_memory();
        Ok(server)
    }
}

/// `amount` per second of `time` (infinite time is impossible: an empty duration gives
/// infinity, which the sample refuses).
fn rate(amount: f64, time: std::time::Duration) -> f64 {
    amount / time.as_secs_f64()
}

/// `TLSv1.3 TLS_AES_256_GCM_SHA384 x25519` (the group is absent on TLS 1.2 resumption).
fn describe(info: &TlsInfo) -> String {
    let group = info.group.as_deref().unwrap_or("no key exchange");
    format!("{} {} {}", info.version, info.cipher_suite, group)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: Plan = Plan {
        quick: true,
        reps: 1,
        handshakes: 3,
        rsa_handshakes: 2,
        resumed: 3,
        records_1k: 40,
        records_16k: 8,
        idle_connections: 4,
        warmup: 2,
    };

    /// The protocol version a scenario's configurations use.
    fn version_of(kind: Kind) -> ProtocolVersion {
        match kind {
            Kind::Full { version, .. } | Kind::Resumed { version, .. } => version,
            Kind::Records { .. } => ProtocolVersion::Tls13,
            Kind::IdleMemory { version } => version,
        }
    }

    /// Every scenario runs on every compiled-in backend (tiny counts: this checks the
    /// plumbing, not the speed); a scenario whose version the backend does not claim must be
    /// refused as unsupported, and the report says so.
    #[test]
    fn every_scenario_runs() {
        for backend in sipstls::backends() {
            for sc in scenarios(&TINY) {
                let v = version_of(sc.kind);
                if !backend.capabilities().contains(v.capability()) {
                    let err = Fixture::new(&*backend, &sc, &TINY).err().expect("an unclaimed version must be refused");
                    assert!(err.contains("does not support"), "{}: {err}", sc.id);
                    continue;
                }
                let mut fx = Fixture::new(&*backend, &sc, &TINY).unwrap_or_else(|e| panic!("{}: {e}", sc.id));
                let rep = fx.run_rep().unwrap_or_else(|e| panic!("{} on {}: {e}", sc.id, backend.info().name));
                assert!(rep.server.is_finite(), "{}", sc.id);
                assert!(!fx.negotiated.is_empty(), "{}", sc.id);
            }
        }
    }

    /// wolfSSL declines a ticket 101 resumptions down a chain (sipstls-backend-wolfssl's
    /// `MAX_CHAIN`): a long resumed run has a full handshake every 101 connections, which
    /// the figure leaves out and reports instead of failing (the full run failed with
    /// "connection 2 of 4000 was not resumed": 100 warm-up connections, then the chain's
    /// end).
    #[cfg(feature = "wolfssl")]
    #[test]
    fn declined_tickets_are_left_out_and_reported() {
        let backend = sipstls::backend("wolfssl").expect("wolfssl is built");
        let sc = scenarios(&TINY).into_iter().find(|s| s.id == "resumed_tls13_ticket").expect("scenario");
        let sc = Scenario { iterations: 250, ..sc };
        let mut fx = Fixture::new(&*backend, &sc, &TINY).expect("fixture");
        let rep = fx.run_rep().expect("a declined ticket now and then is tolerated");
        assert!(rep.server.is_finite());
        let (full, n) = fx.full_instead.expect("the chain ends within 250 connections");
        assert_eq!(n, 250);
        assert!((2..=3).contains(&full), "{full} full handshakes in 250 connections");
    }

    /// A "resumed" figure whose connections do not resume is refused with an error.
    #[test]
    fn resumption_is_verified() {
        for backend in sipstls::backends() {
            // TLS 1.3 tickets where the backend has TLS 1.3, else TLS 1.2 session IDs.
            let (id, v, client_resumption) = if backend.capabilities().contains(sipstls::Capabilities::TLS13) {
                ("resumed_tls13_ticket", ProtocolVersion::Tls13, TICKETS)
            } else {
                ("resumed_tls12_session_id", ProtocolVersion::Tls12, Resumption::ENABLED)
            };
            let sc = scenarios(&TINY).into_iter().find(|s| s.id == id).expect("scenario");
            let scfg = server_cfg(v).with_resumption(Resumption::DISABLED);
            let ccfg = client_cfg(v).with_resumption(client_resumption);
            let mut fx = Fixture::with_configs(&*backend, &sc, &TINY, &scfg, &ccfg).expect("fixture");
            let err = fx.run_rep().expect_err("connections that do not resume must fail the figure");
            assert!(err.contains("was not resumed"), "{err}");
        }
    }
}
