//! The Redis connection: a small pool of synchronous connections with timeouts, a
//! circuit breaker, and sealing of every value with the cluster secret.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf::{KeyType, Salt, HKDF_SHA256};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use sipstls_core::{Error, Result};

/// How to reach Redis and how to protect what is stored there.
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://host:port/db` (`redis://127.0.0.1:6379/`).
    pub url: String,
    /// Prefix of every key this crate writes (`sipstls:`), so clusters or services can
    /// share one Redis.
    pub prefix: String,
    /// The cluster secret: seals every value (AES-256-GCM with a key derived from it).
    /// Every node of a cluster must have the same secret. Never printed.
    pub secret: [u8; 32],
    /// Bound on connecting to Redis (default 50 ms).
    pub connect_timeout: Duration,
    /// Bound on each read and write of a command (default 50 ms).
    pub io_timeout: Duration,
    /// After a failed command, Redis is not tried again for this long (default 1 s): a
    /// down Redis costs one timeout per `retry_after`, not one per handshake.
    pub retry_after: Duration,
    /// Values (sealed) above this size are neither stored nor accepted (default 16 KiB).
    pub max_value: usize,
    /// Idle connections kept for reuse (default 16); more are opened under load.
    pub max_idle: usize,
}

impl RedisConfig {
    /// Defaults for `url` with this cluster secret.
    pub fn new(url: impl Into<String>, secret: [u8; 32]) -> Self {
        RedisConfig {
            url: url.into(),
            prefix: "sipstls:".into(),
            secret,
            connect_timeout: Duration::from_millis(50),
            io_timeout: Duration::from_millis(50),
            retry_after: Duration::from_secs(1),
            max_value: 16 * 1024,
            max_idle: 16,
        }
    }

    /// Sets the key prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("io_timeout", &self.io_timeout)
            .field("retry_after", &self.retry_after)
            .field("max_value", &self.max_value)
            .field("max_idle", &self.max_idle)
            .finish_non_exhaustive()
    }
}

/// The URL without a password (`redis://user:pw@host` -> `redis://user:***@host`).
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Counters of one store or key provider (monotonic since creation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStats {
    /// Values found, unsealed and returned.
    pub hits: u64,
    /// Keys not present (or expired).
    pub misses: u64,
    /// Values stored.
    pub stored: u64,
    /// Values present but rejected: corrupted, forged, moved, expired inside, oversized.
    pub rejected: u64,
    /// Commands that failed (connection refused, timeout, protocol error).
    pub errors: u64,
    /// Operations answered without asking Redis because it failed recently.
    pub skipped: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    stored: AtomicU64,
    rejected: AtomicU64,
    errors: AtomicU64,
    skipped: AtomicU64,
}

#[derive(Clone, Copy)]
pub(crate) enum Count {
    Hit,
    Miss,
    Stored,
    Rejected,
}

impl Counters {
    pub(crate) fn add(&self, c: Count) {
        let a = match c {
            Count::Hit => &self.hits,
            Count::Miss => &self.misses,
            Count::Stored => &self.stored,
            Count::Rejected => &self.rejected,
        };
        a.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> RedisStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RedisStats {
            hits: l(&self.hits),
            misses: l(&self.misses),
            stored: l(&self.stored),
            rejected: l(&self.rejected),
            errors: l(&self.errors),
            skipped: l(&self.skipped),
        }
    }
}

struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// Format version of sealed values.
const SEAL_V1: u8 = 1;
const TAG_LEN: usize = 16;

/// A pool of connections to one Redis, with the breaker, the sealing key and counters.
pub(crate) struct Conn {
    pub(crate) cfg: RedisConfig,
    client: redis::Client,
    idle: Mutex<Vec<redis::Connection>>,
    /// Milliseconds since `base` before which Redis is skipped (0: not tripped).
    skip_until_ms: AtomicU64,
    base: Instant,
    seal_key: LessSafeKey,
    rng: SystemRandom,
    pub(crate) counters: Counters,
}

impl Conn {
    pub(crate) fn new(cfg: RedisConfig, purpose: &[u8]) -> Result<Conn> {
        let client = redis::Client::open(cfg.url.as_str())
            .map_err(|e| Error::config("session_store", format!("bad Redis URL ({:?})", e.kind())))?;
        let prk = Salt::new(HKDF_SHA256, b"sipstls redis seal v1").extract(&cfg.secret);
        let info = [purpose];
        let mut material = [0u8; 32];
        prk.expand(&info, Len(32))
            .and_then(|okm| okm.fill(&mut material))
            .map_err(|_| Error::Backend { library: "aws-lc", message: "HKDF failed".into() })?;
        let seal_key = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &material)
                .map_err(|_| Error::Backend { library: "aws-lc", message: "AES key setup failed".into() })?,
        );
        material.fill(0);
        Ok(Conn {
            cfg,
            client,
            idle: Mutex::new(Vec::new()),
            skip_until_ms: AtomicU64::new(0),
            base: Instant::now(),
            seal_key,
            rng: SystemRandom::new(),
            counters: Counters::default(),
        })
    }

    pub(crate) fn key(&self, kind: &str, id: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.cfg.prefix.len() + kind.len() + 2 * id.len());
        k.extend_from_slice(self.cfg.prefix.as_bytes());
        k.extend_from_slice(kind.as_bytes());
        for b in id {
            k.extend_from_slice(format!("{b:02x}").as_bytes());
        }
        k
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Runs `f` on a pooled connection, unless the breaker is open. `None` on any failure
    /// (which opens the breaker).
    pub(crate) fn run<T>(&self, f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>) -> Option<T> {
        let until = self.skip_until_ms.load(Ordering::Relaxed);
        if until != 0 && self.now_ms() < until {
            self.counters.skipped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut con = match pooled {
            Some(c) => c,
            None => match self.connect() {
                Ok(c) => c,
                Err(_) => {
                    self.trip();
                    return None;
                }
            },
        };
        match f(&mut con) {
            Ok(v) => {
                // A success closes the breaker (another thread may have opened it).
                self.skip_until_ms.store(0, Ordering::Relaxed);
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                if idle.len() < self.cfg.max_idle {
                    idle.push(con);
                }
                Some(v)
            }
            Err(_) => {
                // The connection may be mid-reply: drop it, and every idle one (a Redis
                // that failed one command has likely dropped them all).
                self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
                self.trip();
                None
            }
        }
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let con = self.client.get_connection_with_timeout(self.cfg.connect_timeout)?;
        con.set_read_timeout(Some(self.cfg.io_timeout))?;
        con.set_write_timeout(Some(self.cfg.io_timeout))?;
        Ok(con)
    }

    fn trip(&self) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        let ms = u64::try_from(self.cfg.retry_after.as_millis()).unwrap_or(u64::MAX);
        self.skip_until_ms.store(self.now_ms().saturating_add(ms).max(1), Ordering::Relaxed);
    }

    /// `version (1) || nonce (12) || AES-256-GCM(expiry unix ms (8) || value) || tag (16)`,
    /// the Redis key as additional data.
    pub(crate) fn seal(&self, redis_key: &[u8], value: &[u8], ttl: Duration) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let expiry = unix_ms().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let mut body = Vec::with_capacity(8 + value.len() + TAG_LEN);
        body.extend_from_slice(&expiry.to_be_bytes());
        body.extend_from_slice(value);
        self.seal_key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(redis_key), &mut body)
            .ok()?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + body.len());
        out.push(SEAL_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        (out.len() <= self.cfg.max_value).then_some(out)
    }

    /// The value sealed under `redis_key`, if intact and unexpired; counts a rejection
    /// otherwise.
    pub(crate) fn open(&self, redis_key: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let v = self.open_inner(redis_key, sealed);
        self.counters.add(if v.is_some() { Count::Hit } else { Count::Rejected });
        v
    }

    fn open_inner(&self, redis_key: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() > self.cfg.max_value || sealed.len() < 1 + NONCE_LEN + 8 + TAG_LEN || sealed[0] != SEAL_V1 {
            return None;
        }
        let nonce = Nonce::try_assume_unique_for_key(&sealed[1..1 + NONCE_LEN]).ok()?;
        let mut body = sealed[1 + NONCE_LEN..].to_vec();
        let plain = self.seal_key.open_in_place(nonce, Aad::from(redis_key), &mut body).ok()?;
        let (expiry, value) = plain.split_at(8);
        let expiry = u64::from_be_bytes(expiry.try_into().ok()?);
        (expiry > unix_ms()).then(|| value.to_vec())
    }

    pub(crate) fn stats(&self) -> RedisStats {
        self.counters.snapshot()
    }
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_redaction() {
        assert_eq!(redact_url("redis://u:secret@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact_url("redis://:secret@h"), "redis://:***@h");
        assert_eq!(redact_url("redis://h:1/"), "redis://h:1/");
        let dbg = format!("{:?}", RedisConfig::new("redis://:pw@127.0.0.1/", [0x42; 32]));
        assert!(!dbg.contains("pw@") && !dbg.contains("66, 66"), "{dbg}");
    }

    #[test]
    fn sealing_binds_key_secret_and_expiry() {
        let c = Conn::new(RedisConfig::new("redis://127.0.0.1:1/", [1; 32]), b"t").unwrap();
        let s = c.seal(b"k1", b"value", Duration::from_secs(60)).unwrap();
        assert_eq!(c.open(b"k1", &s).as_deref(), Some(&b"value"[..]));
        assert_eq!(c.open(b"k2", &s), None, "moved to another key");
        let mut bad = s.clone();
        bad[20] ^= 1;
        assert_eq!(c.open(b"k1", &bad), None, "corrupted");
        assert_eq!(c.open(b"k1", &s[..10]), None, "truncated");
        assert_eq!(c.open(b"k1", b""), None);
        let other = Conn::new(RedisConfig::new("redis://127.0.0.1:1/", [2; 32]), b"t").unwrap();
        assert_eq!(other.open(b"k1", &s), None, "other secret");
        let purpose = Conn::new(RedisConfig::new("redis://127.0.0.1:1/", [1; 32]), b"u").unwrap();
        assert_eq!(purpose.open(b"k1", &s), None, "other purpose");
        let expired = c.seal(b"k1", b"value", Duration::ZERO).unwrap();
        assert_eq!(c.open(b"k1", &expired), None, "expired inside");
        assert_eq!(c.seal(b"k1", &vec![0u8; 16 * 1024], Duration::from_secs(1)), None, "too large");
        assert_eq!(c.stats().rejected, 5);
        assert_eq!(c.stats().hits, 1);
    }
}
