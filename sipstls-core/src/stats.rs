//! Per-domain statistics and the list of live sessions, as plain data a SIP server can
//! publish (Kamailio's `tls.list`, `tls.info`, OpenSIPS's `tls_mgm` statistics).
//!
//! Every session a [`DomainTable`](crate::DomainTable) starts is counted against the domain
//! that was picked for it (the listener's domain for a server, even when SNI switches the
//! handshake to another domain: the SNI it switched to is in the session list). Counting
//! costs nothing per record after the handshake beyond adding to a few plain integers
//! in the session, published to the shared counters every 64 KiB and when it ends.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config::{ProtocolVersion, Role};
use crate::error::{CertificateError, Error, ProtocolErrorKind, Result};
use crate::info::TlsInfo;
use crate::session::{ReadStatus, Session};

/// Why a handshake failed, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FailureReason {
    /// The peer's chain does not lead to a trusted CA.
    UnknownIssuer,
    /// The peer's certificate has expired or is not yet valid.
    Expired,
    /// The certificate does not name the host the client meant to reach.
    NameMismatch,
    /// The peer's certificate is revoked.
    Revoked,
    /// Any other certificate problem (signature, purpose, chain length, malformed).
    BadCertificate,
    /// A required client certificate was not sent.
    PeerCertificateRequired,
    /// No common version, cipher suite, group or signature algorithm.
    NoCommonParameters,
    /// The peer broke the protocol (malformed, oversized or unexpected records, bad MACs).
    ProtocolViolation,
    /// The peer sent a fatal alert.
    AlertReceived,
    /// The connection ended in the middle of the handshake.
    UnexpectedEof,
    /// The session was dropped before its handshake completed (a handshake timeout, a
    /// closed connection the caller did not feed to the session, a shutdown).
    Abandoned,
    /// Anything else (an error inside the TLS library, low memory).
    Other,
}

impl FailureReason {
    /// Every reason, in counter order.
    pub const ALL: [FailureReason; 12] = [
        FailureReason::UnknownIssuer,
        FailureReason::Expired,
        FailureReason::NameMismatch,
        FailureReason::Revoked,
        FailureReason::BadCertificate,
        FailureReason::PeerCertificateRequired,
        FailureReason::NoCommonParameters,
        FailureReason::ProtocolViolation,
        FailureReason::AlertReceived,
        FailureReason::UnexpectedEof,
        FailureReason::Abandoned,
        FailureReason::Other,
    ];

    /// A stable snake_case name, for metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            FailureReason::UnknownIssuer => "unknown_issuer",
            FailureReason::Expired => "expired",
            FailureReason::NameMismatch => "name_mismatch",
            FailureReason::Revoked => "revoked",
            FailureReason::BadCertificate => "bad_certificate",
            FailureReason::PeerCertificateRequired => "peer_certificate_required",
            FailureReason::NoCommonParameters => "no_common_parameters",
            FailureReason::ProtocolViolation => "protocol_violation",
            FailureReason::AlertReceived => "alert_received",
            FailureReason::UnexpectedEof => "unexpected_eof",
            FailureReason::Abandoned => "abandoned",
            FailureReason::Other => "other",
        }
    }

    /// The reason a session error stands for.
    pub fn of(e: &Error) -> FailureReason {
        match e {
            Error::Certificate(CertificateError::UnknownIssuer) => FailureReason::UnknownIssuer,
            Error::Certificate(CertificateError::Expired | CertificateError::NotYetValid) => FailureReason::Expired,
            Error::Certificate(CertificateError::NameMismatch { .. }) => FailureReason::NameMismatch,
            Error::Certificate(CertificateError::Revoked) => FailureReason::Revoked,
            Error::Certificate(_) => FailureReason::BadCertificate,
            Error::PeerCertificateRequired => FailureReason::PeerCertificateRequired,
            Error::Protocol { kind: ProtocolErrorKind::HandshakeFailure, .. } => FailureReason::NoCommonParameters,
            Error::Protocol { .. } => FailureReason::ProtocolViolation,
            Error::AlertReceived(_) => FailureReason::AlertReceived,
            Error::UnexpectedEof => FailureReason::UnexpectedEof,
            _ => FailureReason::Other,
        }
    }

    fn index(self) -> usize {
        FailureReason::ALL.iter().position(|r| *r == self).unwrap_or(FailureReason::ALL.len() - 1)
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a session stands in the session list.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionSnapshot {
    /// A process-wide unique number.
    pub id: u64,
    /// Server or client.
    pub role: Role,
    /// The peer's address, when the caller gave it.
    pub peer: Option<SocketAddr>,
    /// Time since the session was created.
    pub age: Duration,
    /// The negotiated parameters; `None` while handshaking.
    pub established: Option<EstablishedInfo>,
}

/// What a session negotiated.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EstablishedInfo {
    /// Protocol version.
    pub version: ProtocolVersion,
    /// IANA cipher suite name.
    pub cipher_suite: String,
    /// The SNI the client sent.
    pub sni: Option<String>,
    /// Resumed rather than a full handshake.
    pub resumed: bool,
    /// The peer certificate's subject, when it sent one.
    pub peer_subject: Option<String>,
}

/// A copy of one domain's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DomainStatsSnapshot {
    /// The domain's name in its table, such as `server 127.0.0.1:5061` or `client default`.
    pub label: String,
    /// Handshakes completed.
    pub handshakes_ok: u64,
    /// Of those, resumed ones.
    pub resumed: u64,
    /// Failed handshakes by reason (every reason, zeros included).
    pub failed: Vec<(FailureReason, u64)>,
    /// Sessions alive now (handshaking or established).
    pub active: u64,
    /// Ciphertext bytes received and sent, and plaintext bytes read and written.
    pub bytes: ByteCounts,
}

impl DomainStatsSnapshot {
    /// Handshakes failed for any reason.
    pub fn failed_total(&self) -> u64 {
        self.failed.iter().map(|(_, n)| n).sum()
    }

    /// Handshakes failed for `reason`.
    pub fn failed_for(&self, reason: FailureReason) -> u64 {
        self.failed.iter().find(|(r, _)| *r == reason).map_or(0, |(_, n)| *n)
    }
}

/// Byte counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ByteCounts {
    /// Ciphertext taken from the peer.
    pub tls_in: u64,
    /// Ciphertext produced for the peer.
    pub tls_out: u64,
    /// Plaintext read by the application.
    pub app_in: u64,
    /// Plaintext accepted from the application.
    pub app_out: u64,
}

impl ByteCounts {
    fn total(&self) -> u64 {
        self.tls_in + self.tls_out + self.app_in + self.app_out
    }
}

struct Entry {
    role: Role,
    peer: Option<SocketAddr>,
    started: Instant,
    established: Option<EstablishedInfo>,
}

/// The shared counters of one domain. Cheap to clone through its `Arc`; survives a reload
/// when the new table has a domain with the same label.
pub struct DomainStats {
    label: String,
    ok: AtomicU64,
    resumed: AtomicU64,
    failed: [AtomicU64; FailureReason::ALL.len()],
    active: AtomicU64,
    tls_in: AtomicU64,
    tls_out: AtomicU64,
    app_in: AtomicU64,
    app_out: AtomicU64,
    sessions: Mutex<HashMap<u64, Entry>>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Bytes a session counts locally before publishing them.
const PUBLISH_EVERY: u64 = 64 * 1024;

impl DomainStats {
    pub(crate) fn new(label: String) -> Arc<DomainStats> {
        Arc::new(DomainStats {
            label,
            ok: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
            failed: Default::default(),
            active: AtomicU64::new(0),
            tls_in: AtomicU64::new(0),
            tls_out: AtomicU64::new(0),
            app_in: AtomicU64::new(0),
            app_out: AtomicU64::new(0),
            sessions: Mutex::new(HashMap::new()),
        })
    }

    /// The domain's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> DomainStatsSnapshot {
        DomainStatsSnapshot {
            label: self.label.clone(),
            handshakes_ok: self.ok.load(Relaxed),
            resumed: self.resumed.load(Relaxed),
            failed: FailureReason::ALL.iter().map(|r| (*r, self.failed[r.index()].load(Relaxed))).collect(),
            active: self.active.load(Relaxed),
            bytes: ByteCounts {
                tls_in: self.tls_in.load(Relaxed),
                tls_out: self.tls_out.load(Relaxed),
                app_in: self.app_in.load(Relaxed),
                app_out: self.app_out.load(Relaxed),
            },
        }
    }

    /// The live sessions of this domain, oldest first.
    pub fn sessions(&self) -> Vec<SessionSnapshot> {
        let now = Instant::now();
        let mut out: Vec<SessionSnapshot> = self
            .lock()
            .iter()
            .map(|(id, e)| SessionSnapshot {
                id: *id,
                role: e.role,
                peer: e.peer,
                age: now.saturating_duration_since(e.started),
                established: e.established.clone(),
            })
            .collect();
        out.sort_by(|a, b| b.age.cmp(&a.age).then(a.id.cmp(&b.id)));
        out
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        // A panic elsewhere while holding the lock leaves the map consistent (every
        // critical section is a single insert, update or remove).
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, b: &mut ByteCounts) {
        self.tls_in.fetch_add(b.tls_in, Relaxed);
        self.tls_out.fetch_add(b.tls_out, Relaxed);
        self.app_in.fetch_add(b.app_in, Relaxed);
        self.app_out.fetch_add(b.app_out, Relaxed);
        *b = ByteCounts::default();
    }
}

impl fmt::Debug for DomainStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.snapshot(), f)
    }
}

/// Anything a tracked session keeps alive while it exists (the domain table it came from,
/// so a replaced table is freed with its last session).
pub(crate) type Keep = Arc<dyn std::any::Any + Send + Sync>;

/// A session counted against a domain's statistics. Returned by the table's accept and
/// connect calls; behaves exactly as the backend's session.
pub(crate) struct TrackedSession {
    inner: Box<dyn Session>,
    stats: Arc<DomainStats>,
    id: u64,
    handshaking: bool,
    bytes: ByteCounts,
    _keep: Option<Keep>,
}

impl TrackedSession {
    pub(crate) fn boxed(
        inner: Box<dyn Session>,
        stats: Arc<DomainStats>,
        peer: Option<SocketAddr>,
        keep: Option<Keep>,
    ) -> Box<dyn Session> {
        let id = NEXT_ID.fetch_add(1, Relaxed);
        let role = inner.role();
        stats.active.fetch_add(1, Relaxed);
        stats.lock().insert(id, Entry { role, peer, started: Instant::now(), established: None });
        Box::new(TrackedSession { inner, stats, id, handshaking: true, bytes: ByteCounts::default(), _keep: keep })
    }

    /// Notes the end of the handshake, successful or not, once.
    fn observe(&mut self) {
        if !self.handshaking {
            return;
        }
        if let Some(e) = self.inner.error() {
            self.handshaking = false;
            self.stats.failed[FailureReason::of(e).index()].fetch_add(1, Relaxed);
        } else if !self.inner.is_handshaking() {
            self.handshaking = false;
            let info = self.inner.info();
            self.stats.ok.fetch_add(1, Relaxed);
            if info.as_ref().is_some_and(|i| i.resumed) {
                self.stats.resumed.fetch_add(1, Relaxed);
            }
            if let Some(i) = info {
                let established = EstablishedInfo {
                    version: i.version,
                    cipher_suite: i.cipher_suite,
                    sni: i.sni,
                    resumed: i.resumed,
                    peer_subject: i.peer.map(|p| p.subject),
                };
                if let Some(e) = self.stats.lock().get_mut(&self.id) {
                    e.established = Some(established);
                }
            }
        }
    }

    fn count(&mut self) {
        if self.bytes.total() >= PUBLISH_EVERY {
            self.stats.publish(&mut self.bytes);
        }
    }
}

impl Drop for TrackedSession {
    fn drop(&mut self) {
        self.observe();
        if self.handshaking {
            self.stats.failed[FailureReason::Abandoned.index()].fetch_add(1, Relaxed);
        }
        self.stats.publish(&mut self.bytes);
        self.stats.active.fetch_sub(1, Relaxed);
        self.stats.lock().remove(&self.id);
    }
}

impl Session for TrackedSession {
    fn role(&self) -> Role {
        self.inner.role()
    }

    fn feed_tls(&mut self, input: &[u8]) -> Result<usize> {
        let r = self.inner.feed_tls(input);
        if let Ok(n) = r {
            self.bytes.tls_in += n as u64;
            self.count();
        }
        self.observe();
        r
    }

    fn wants_write(&self) -> bool {
        self.inner.wants_write()
    }

    fn take_tls(&mut self, out: &mut [u8]) -> usize {
        let n = self.inner.take_tls(out);
        self.bytes.tls_out += n as u64;
        self.count();
        self.observe();
        n
    }

    fn is_handshaking(&self) -> bool {
        self.inner.is_handshaking()
    }

    fn release_memory(&mut self) {
        self.inner.release_memory();
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<ReadStatus> {
        let r = self.inner.read(buf);
        if let Ok(ReadStatus::Data(n)) = r {
            self.bytes.app_in += n as u64;
            self.count();
        }
        self.observe();
        r
    }

    fn write(&mut self, data: &[u8]) -> Result<usize> {
        let r = self.inner.write(data);
        if let Ok(n) = r {
            self.bytes.app_out += n as u64;
            self.count();
        }
        self.observe();
        r
    }

    fn close_notify(&mut self) {
        self.inner.close_notify()
    }

    fn info(&self) -> Option<TlsInfo> {
        self.inner.info()
    }

    fn error(&self) -> Option<&Error> {
        self.inner.error()
    }
}
