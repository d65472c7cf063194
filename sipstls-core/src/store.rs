//! Server-side resumption state shared beyond one process: a [`SessionStore`] for cached
//! sessions (TLS 1.2 session IDs, TLS 1.3 stateful tickets) and a [`TicketKeyProvider`] for
//! the keys that seal stateless tickets, so a session made on one node resumes on another.
//!
//! Both are called by the TLS library *during* a handshake. Implementations must answer
//! quickly and never fail loudly: a store that is down or slow answers "not found" (or
//! "not stored") within a bounded time, and the handshake becomes a full one. Values are
//! secret (a session carries its master secret) and keys are secret: nothing here ever
//! prints them (`Debug` shows sizes and names only).
//!
//! Implementations here need no crypto and no network: [`LruSessionStore`] (in-process,
//! bounded), [`StaticTicketKeys`] and [`FileTicketKeys`]. The `sipstls-redis` crate adds
//! the Redis store and Redis-fed ticket keys with rotation.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use zeroize::Zeroize;

use crate::error::{Error, Result};

/// Where a server keeps resumable sessions, keyed by session ID (or stateful ticket).
///
/// Shaped like rustls's `StoresServerSessions`, with an expiry per entry. Every method may
/// be called concurrently from many handshakes; none may block for long or panic.
pub trait SessionStore: Send + Sync + 'static {
    /// Stores `value` under `key` for at most `ttl`. Returns `false` when it was not stored
    /// (store full, down, value too large): the session then simply cannot resume.
    fn put(&self, key: &[u8], value: &[u8], ttl: Duration) -> bool;
    /// The value under `key`, if present, unexpired and intact.
    fn get(&self, key: &[u8]) -> Option<Vec<u8>>;
    /// Removes and returns the value under `key` (single-use sessions, as TLS 1.3 stateful
    /// tickets are).
    fn take(&self, key: &[u8]) -> Option<Vec<u8>>;
    /// Removes the value under `key`; `true` if something was removed.
    fn remove(&self, key: &[u8]) -> bool {
        self.take(key).is_some()
    }
}

/// A shared [`SessionStore`] with the lifetime given to the sessions put into it, as a
/// [`DomainConfig`](crate::DomainConfig) holds it. Two handles are equal when they are the
/// same object.
#[derive(Clone)]
pub struct SessionStoreHandle {
    store: Arc<dyn SessionStore>,
    ttl: Duration,
}

impl SessionStoreHandle {
    /// The default session lifetime: one hour.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

    /// Wraps a store; sessions live [`Self::DEFAULT_TTL`].
    pub fn new(store: impl SessionStore) -> Self {
        SessionStoreHandle { store: Arc::new(store), ttl: Self::DEFAULT_TTL }
    }

    /// Wraps a store that is already shared.
    pub fn from_arc(store: Arc<dyn SessionStore>) -> Self {
        SessionStoreHandle { store, ttl: Self::DEFAULT_TTL }
    }

    /// Sets the lifetime of sessions put into the store (at least one second).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// The lifetime of sessions put into the store.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Stores a session for [`Self::ttl`].
    pub fn put(&self, key: &[u8], value: &[u8]) -> bool {
        self.store.put(key, value, self.ttl)
    }

    /// See [`SessionStore::get`].
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.store.get(key)
    }

    /// See [`SessionStore::take`].
    pub fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.store.take(key)
    }

    /// See [`SessionStore::remove`].
    pub fn remove(&self, key: &[u8]) -> bool {
        self.store.remove(key)
    }
}

impl PartialEq for SessionStoreHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.store, &other.store) && self.ttl == other.ttl
    }
}

impl Eq for SessionStoreHandle {}

impl fmt::Debug for SessionStoreHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionStoreHandle(ttl {:?})", self.ttl)
    }
}

/// Length of a ticket key's name (sent in clear at the start of every ticket).
pub const TICKET_KEY_NAME_LEN: usize = 16;
/// Length of a ticket key's secret. Backends derive the keys their ticket format needs
/// (AES-GCM, or AES-CBC and HMAC) from it, each with its own label.
pub const TICKET_KEY_LEN: usize = 32;

/// One ticket key: a public name and a secret. Wiped on drop; `Debug` shows the name only.
#[derive(Clone, PartialEq, Eq)]
#[allow(clippy::exhaustive_structs)] // closed: a ticket key is a name and its secrets
pub struct TicketKey {
    /// Identifies the key in a ticket (not secret).
    pub name: [u8; TICKET_KEY_NAME_LEN],
    /// The secret.
    pub key: [u8; TICKET_KEY_LEN],
}

impl TicketKey {
    /// Parses `name (16) || key (32)` bytes.
    pub fn from_bytes(b: &[u8]) -> Option<TicketKey> {
        if b.len() != TICKET_KEY_NAME_LEN + TICKET_KEY_LEN {
            return None;
        }
        let mut k = TicketKey { name: [0; TICKET_KEY_NAME_LEN], key: [0; TICKET_KEY_LEN] };
        k.name.copy_from_slice(&b[..TICKET_KEY_NAME_LEN]);
        k.key.copy_from_slice(&b[TICKET_KEY_NAME_LEN..]);
        Some(k)
    }

    /// `name || key` (secret: never log it).
    pub fn to_bytes(&self) -> Vec<u8> {
        [&self.name[..], &self.key[..]].concat()
    }
}

impl Drop for TicketKey {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TicketKey(name ")?;
        for b in &self.name[..4] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("..)")
    }
}

/// The keys in force: new tickets are sealed with `current`; tickets sealed with
/// `previous` are still accepted (and replaced by a fresh one where the library can).
#[derive(Clone, PartialEq, Eq, Debug)]
#[allow(clippy::exhaustive_structs)] // closed: a ticket key is a name and its secrets
pub struct TicketKeys {
    /// Seals new tickets and opens tickets naming it.
    pub current: TicketKey,
    /// Opens tickets naming it (the key before the last rotation).
    pub previous: Option<TicketKey>,
}

impl TicketKeys {
    /// The key named `name`, and whether it is the current one.
    pub fn find(&self, name: &[u8]) -> Option<(&TicketKey, bool)> {
        if self.current.name == name {
            return Some((&self.current, true));
        }
        self.previous.as_ref().filter(|p| p.name == name).map(|p| (p, false))
    }
}

/// Where a server gets the keys for stateless tickets: every node fed the same keys
/// accepts every other node's tickets.
///
/// Called during handshakes (each ticket issued or opened): answer from memory, refresh
/// in a bounded time.
pub trait TicketKeyProvider: Send + Sync + 'static {
    /// The keys in force, or `None` when none can be had now: the server then issues no
    /// tickets and resumes none (every handshake is a full one) until keys come back.
    fn keys(&self) -> Option<TicketKeys>;
    /// How long a ticket stays valid (the rotation interval: a ticket survives one
    /// rotation, as `previous`).
    fn lifetime(&self) -> Duration;
}

/// A shared [`TicketKeyProvider`], as a [`DomainConfig`](crate::DomainConfig) holds it. Two
/// handles are equal when they are the same object.
#[derive(Clone)]
pub struct TicketKeysHandle(Arc<dyn TicketKeyProvider>);

impl TicketKeysHandle {
    /// Wraps a provider.
    pub fn new(provider: impl TicketKeyProvider) -> Self {
        TicketKeysHandle(Arc::new(provider))
    }

    /// Wraps a provider that is already shared.
    pub fn from_arc(provider: Arc<dyn TicketKeyProvider>) -> Self {
        TicketKeysHandle(provider)
    }

    /// See [`TicketKeyProvider::keys`].
    pub fn keys(&self) -> Option<TicketKeys> {
        self.0.keys()
    }

    /// See [`TicketKeyProvider::lifetime`].
    pub fn lifetime(&self) -> Duration {
        self.0.lifetime()
    }
}

impl PartialEq for TicketKeysHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for TicketKeysHandle {}

impl fmt::Debug for TicketKeysHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TicketKeysHandle(..)")
    }
}

/// Fixed keys (for tests, or keys rotated by rebuilding the domains).
pub struct StaticTicketKeys {
    keys: TicketKeys,
    lifetime: Duration,
}

impl StaticTicketKeys {
    /// These keys, tickets valid for `lifetime`.
    pub fn new(keys: TicketKeys, lifetime: Duration) -> Self {
        StaticTicketKeys { keys, lifetime }
    }
}

impl TicketKeyProvider for StaticTicketKeys {
    fn keys(&self) -> Option<TicketKeys> {
        Some(self.keys.clone())
    }
    fn lifetime(&self) -> Duration {
        self.lifetime
    }
}

impl fmt::Debug for StaticTicketKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticTicketKeys").field("keys", &self.keys).field("lifetime", &self.lifetime).finish()
    }
}

/// Keys derived from one secret and the clock: the key of rotation period `n` (periods of
/// `period` since the Unix epoch) is HMAC-SHA256(secret, label || n), its name the first
/// 16 bytes of another HMAC. Every process and every machine holding the secret computes
/// the same current and previous keys without talking to the others, so rotation needs no
/// coordination: what pre-forked workers (the pinned model) need, with the secret made
/// before `fork()`, and what a cluster can use with the secret from its configuration
/// management. Clocks must agree to well within a period (a ticket stays valid for one more
/// period after its own).
///
/// Holds no lock and allocates nothing per call. Compromise of the secret exposes every
/// past and future ticket key: protect it as a private key.
pub struct EpochTicketKeys {
    secret: [u8; 32],
    period: Duration,
}

impl EpochTicketKeys {
    /// Keys from `secret`, rotated every `period` (at least one second).
    pub fn new(secret: [u8; 32], period: Duration) -> Result<Self> {
        if period < Duration::from_secs(1) {
            return Err(Error::config("ticket_keys", "the rotation period must be at least one second"));
        }
        Ok(EpochTicketKeys { secret, period })
    }

    /// The keys in force at `unix_time` (seconds since the Unix epoch).
    pub fn keys_at(&self, unix_time: Duration) -> TicketKeys {
        let n = (unix_time.as_nanos() / self.period.as_nanos().max(1)) as u64;
        TicketKeys { current: self.key_of(n), previous: n.checked_sub(1).map(|p| self.key_of(p)) }
    }

    fn key_of(&self, period: u64) -> TicketKey {
        use hmac::{Hmac, Mac};
        let mac = |label: &[u8]| {
            let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.secret).expect("HMAC takes any key length");
            m.update(label);
            m.update(&period.to_be_bytes());
            m.update(&(self.period.as_secs()).to_be_bytes());
            m.finalize().into_bytes()
        };
        let mut k = TicketKey { name: [0; TICKET_KEY_NAME_LEN], key: [0; TICKET_KEY_LEN] };
        k.name.copy_from_slice(&mac(b"sipstls epoch ticket key name")[..TICKET_KEY_NAME_LEN]);
        k.key.copy_from_slice(&mac(b"sipstls epoch ticket key")[..]);
        k
    }
}

impl TicketKeyProvider for EpochTicketKeys {
    fn keys(&self) -> Option<TicketKeys> {
        // A clock before 1970 gives period 0: still keys every process agrees on.
        let now = SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Some(self.keys_at(now))
    }
    fn lifetime(&self) -> Duration {
        self.period
    }
}

impl Drop for EpochTicketKeys {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl fmt::Debug for EpochTicketKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EpochTicketKeys").field("period", &self.period).finish_non_exhaustive()
    }
}

/// Keys from a file that an operator (or a cron job, or configuration management) rotates
/// on every node: one key per line as 96 hex digits (`name (16 bytes) || key (32 bytes)`),
/// the current key first, the previous one second; empty lines and `#` comments ignored.
/// The file is read again when its modification time changes (checked at most once a
/// second). A file that disappears or turns malformed keeps the last good keys; a file
/// that was never good gives no keys (full handshakes only).
///
/// The file holds secrets: make it readable by the server only. Parse errors never quote
/// the line.
pub struct FileTicketKeys {
    path: PathBuf,
    lifetime: Duration,
    state: Mutex<FileState>,
}

struct FileState {
    checked: Option<Instant>,
    mtime: Option<SystemTime>,
    keys: Option<TicketKeys>,
}

impl FileTicketKeys {
    /// Reads `path` now; an unreadable or malformed file is an error here (later, it only
    /// keeps the last good keys). `lifetime` is the rotation interval the operator keeps.
    pub fn open(path: impl AsRef<Path>, lifetime: Duration) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let keys = read_key_file(&path)?;
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        Ok(FileTicketKeys {
            path,
            lifetime,
            state: Mutex::new(FileState { checked: Some(Instant::now()), mtime, keys: Some(keys) }),
        })
    }
}

/// Parses a ticket key file (see [`FileTicketKeys`]).
pub fn parse_ticket_key_file(text: &str) -> Result<TicketKeys> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bytes = from_hex(line).ok_or_else(|| {
            Error::config("ticket_keys", format!("line {} of the key file is not hex (contents not shown)", i + 1))
        })?;
        let key = TicketKey::from_bytes(&bytes).ok_or_else(|| {
            Error::config("ticket_keys", format!("line {} of the key file is not 48 bytes (96 hex digits)", i + 1))
        })?;
        keys.push(key);
        if keys.len() > 2 {
            return Err(Error::config("ticket_keys", "a key file holds at most two keys (current, previous)"));
        }
    }
    let mut it = keys.into_iter();
    let current = it.next().ok_or_else(|| Error::config("ticket_keys", "the key file holds no key"))?;
    Ok(TicketKeys { current, previous: it.next() })
}

fn read_key_file(path: &Path) -> Result<TicketKeys> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::config("ticket_keys", format!("cannot read key file {}: {e}", path.display())))?;
    parse_ticket_key_file(&text)
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

impl TicketKeyProvider for FileTicketKeys {
    fn keys(&self) -> Option<TicketKeys> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let due = st.checked.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if due {
            st.checked = Some(Instant::now());
            let mtime = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
            if mtime.is_some() && mtime != st.mtime {
                if let Ok(k) = read_key_file(&self.path) {
                    st.keys = Some(k);
                    st.mtime = mtime;
                }
            }
        }
        st.keys.clone()
    }

    fn lifetime(&self) -> Duration {
        self.lifetime
    }
}

impl fmt::Debug for FileTicketKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileTicketKeys").field("path", &self.path).field("lifetime", &self.lifetime).finish()
    }
}

/// An in-process [`SessionStore`]: bounded in entries and in bytes, least recently used
/// entries evicted first, each entry expiring after its TTL. One lock per store; every
/// operation is O(log n).
pub struct LruSessionStore {
    max_entries: usize,
    max_bytes: usize,
    inner: Mutex<Lru>,
}

#[derive(Default)]
struct Lru {
    map: HashMap<Vec<u8>, LruEntry>,
    /// Use stamp -> key, oldest first.
    order: BTreeMap<u64, Vec<u8>>,
    next_stamp: u64,
    bytes: usize,
}

struct LruEntry {
    value: Vec<u8>,
    expires: Instant,
    stamp: u64,
}

impl Lru {
    fn cost(key: &[u8], value: &[u8]) -> usize {
        key.len() + value.len()
    }

    fn remove(&mut self, key: &[u8]) -> Option<LruEntry> {
        let e = self.map.remove(key)?;
        self.order.remove(&e.stamp);
        self.bytes -= Self::cost(key, &e.value);
        Some(e)
    }

    fn touch(&mut self, key: &[u8]) {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        if let Some(e) = self.map.get_mut(key) {
            self.order.remove(&e.stamp);
            e.stamp = stamp;
            self.order.insert(stamp, key.to_vec());
        }
    }

    fn evict_oldest(&mut self) -> bool {
        let Some((_, key)) = self.order.pop_first() else { return false };
        if let Some(e) = self.map.remove(&key) {
            self.bytes -= Self::cost(&key, &e.value);
        }
        true
    }
}

impl LruSessionStore {
    /// At most `max_entries` sessions and `max_bytes` bytes of keys and values.
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        LruSessionStore { max_entries: max_entries.max(1), max_bytes: max_bytes.max(1), inner: Mutex::default() }
    }

    /// Number of entries (expired ones included until they are touched or evicted).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// True when the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of keys and values held.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        // A panic while holding the lock leaves consistent data (every update is completed
        // before anything that could panic), so a poisoned lock is used as is.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl SessionStore for LruSessionStore {
    fn put(&self, key: &[u8], value: &[u8], ttl: Duration) -> bool {
        let cost = Lru::cost(key, value);
        if cost > self.max_bytes {
            return false;
        }
        let mut lru = self.lock();
        lru.remove(key);
        while lru.map.len() >= self.max_entries || lru.bytes + cost > self.max_bytes {
            if !lru.evict_oldest() {
                break;
            }
        }
        let stamp = lru.next_stamp;
        lru.next_stamp += 1;
        let expires = Instant::now() + ttl;
        lru.order.insert(stamp, key.to_vec());
        lru.map.insert(key.to_vec(), LruEntry { value: value.to_vec(), expires, stamp });
        lru.bytes += cost;
        true
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let mut lru = self.lock();
        let expired = lru.map.get(key)?.expires <= Instant::now();
        if expired {
            lru.remove(key);
            return None;
        }
        lru.touch(key);
        lru.map.get(key).map(|e| e.value.clone())
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        let e = self.lock().remove(key)?;
        (e.expires > Instant::now()).then_some(e.value)
    }
}

impl fmt::Debug for LruSessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LruSessionStore")
            .field("max_entries", &self.max_entries)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_keys_agree_rotate_and_differ_by_secret() {
        let a = EpochTicketKeys::new([7; 32], Duration::from_secs(60)).unwrap();
        let b = EpochTicketKeys::new([7; 32], Duration::from_secs(60)).unwrap();
        let other = EpochTicketKeys::new([8; 32], Duration::from_secs(60)).unwrap();
        let t = Duration::from_secs(1_800_000_000);
        let k = a.keys_at(t);
        assert_eq!(k, b.keys_at(t), "the same secret gives the same keys everywhere");
        assert_eq!(k, a.keys_at(t + Duration::from_secs(59)), "same period, same keys");
        assert_ne!(k.current, other.keys_at(t).current);
        assert_ne!(k.current.name, other.keys_at(t).current.name);
        let next = a.keys_at(t + Duration::from_secs(60));
        assert_ne!(next.current, k.current, "rotated");
        assert_eq!(next.previous.as_ref(), Some(&k.current), "the last period's key is still accepted");
        assert_eq!(next.find(&k.current.name).map(|(_, current)| current), Some(false));
        assert!(a.keys_at(t + Duration::from_secs(120)).find(&k.current.name).is_none(), "two rotations: gone");
        assert_ne!(k.current.name[..], k.current.key[..16], "name and key are separate derivations");
        let other_period = EpochTicketKeys::new([7; 32], Duration::from_secs(30)).unwrap();
        assert_ne!(other_period.keys_at(t).current, k.current, "the period is part of the derivation");
        assert!(EpochTicketKeys::new([7; 32], Duration::from_millis(999)).is_err());
        assert!(!format!("{a:?}").contains("7, 7"), "Debug never shows the secret");
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn lru_put_get_take() {
        let s = LruSessionStore::new(10, 1 << 20);
        assert!(s.put(b"a", b"1", HOUR));
        assert_eq!(s.get(b"a").as_deref(), Some(&b"1"[..]));
        assert_eq!(s.get(b"a").as_deref(), Some(&b"1"[..]), "get keeps the entry");
        assert_eq!(s.take(b"a").as_deref(), Some(&b"1"[..]));
        assert_eq!(s.take(b"a"), None, "take removes the entry");
        assert_eq!(s.get(b"missing"), None);
        assert!(s.put(b"b", b"2", HOUR));
        assert!(s.put(b"b", b"22", HOUR), "replace");
        assert_eq!(s.len(), 1);
        assert_eq!(s.bytes(), 3);
        assert!(s.remove(b"b"));
        assert!(s.is_empty());
        assert_eq!(s.bytes(), 0);
    }

    #[test]
    fn lru_evicts_least_recently_used_by_count() {
        let s = LruSessionStore::new(3, 1 << 20);
        for k in [b"1", b"2", b"3"] {
            assert!(s.put(k, b"v", HOUR));
        }
        assert!(s.get(b"1").is_some()); // 2 is now the least recently used
        assert!(s.put(b"4", b"v", HOUR));
        assert_eq!(s.len(), 3);
        assert!(s.get(b"2").is_none(), "least recently used evicted");
        for k in [b"1", b"3", b"4"] {
            assert!(s.get(k).is_some());
        }
    }

    #[test]
    fn lru_bounded_by_bytes() {
        let s = LruSessionStore::new(1000, 100);
        for i in 0..50u8 {
            assert!(s.put(&[i], &[0u8; 19], HOUR)); // 20 bytes each
            assert!(s.bytes() <= 100);
        }
        assert_eq!(s.len(), 5);
        assert!(!s.put(b"k", &[0u8; 100], HOUR), "a value above the bound is refused");
        assert_eq!(s.len(), 5, "a refused value evicts nothing");
        assert!(s.get(&[49]).is_some() && s.get(&[45]).is_some() && s.get(&[44]).is_none());
    }

    #[test]
    fn lru_entries_expire() {
        let s = LruSessionStore::new(10, 1 << 20);
        assert!(s.put(b"short", b"v", Duration::from_millis(30)));
        assert!(s.put(b"long", b"v", HOUR));
        assert!(s.get(b"short").is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(s.get(b"short"), None);
        assert!(s.put(b"short2", b"v", Duration::from_millis(30)));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(s.take(b"short2"), None, "take does not return an expired entry");
        assert!(s.get(b"long").is_some());
        assert_eq!(s.len(), 1);
    }

    fn key(n: u8) -> TicketKey {
        TicketKey { name: [n; 16], key: [n.wrapping_add(100); 32] }
    }

    #[test]
    fn ticket_keys_find_and_debug_hides_secrets() {
        let k = TicketKeys { current: key(1), previous: Some(key(2)) };
        assert!(matches!(k.find(&[1; 16]), Some((_, true))));
        assert!(matches!(k.find(&[2; 16]), Some((_, false))));
        assert!(k.find(&[3; 16]).is_none());
        let dbg = format!("{:?}", StaticTicketKeys::new(k, HOUR));
        assert!(!dbg.contains("6565") && !dbg.contains("101, 101"), "secret bytes in Debug: {dbg}");
        assert!(dbg.contains("01010101"), "{dbg}");
    }

    #[test]
    fn key_file_parsing_and_reload() {
        let hex = |k: &TicketKey| k.to_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>();
        let text = format!("# current\n{}\n\n{}\n", hex(&key(1)), hex(&key(2)));
        let keys = parse_ticket_key_file(&text).unwrap();
        assert_eq!(keys, TicketKeys { current: key(1), previous: Some(key(2)) });
        for bad in ["", "# only a comment", "zz", &"00".repeat(47), &format!("{0}\n{0}\n{0}", hex(&key(1)))] {
            let e = parse_ticket_key_file(bad).unwrap_err();
            assert!(!e.to_string().contains("6565"), "error quotes the key: {e}");
        }

        let path = std::env::temp_dir().join(format!("sipstls-ticket-keys-{}", std::process::id()));
        std::fs::write(&path, hex(&key(1))).unwrap();
        let p = FileTicketKeys::open(&path, HOUR).unwrap();
        assert_eq!(p.keys().unwrap().current, key(1));
        // Rotation: the operator writes the new key first and the old one second.
        std::thread::sleep(Duration::from_millis(1100));
        std::fs::write(&path, format!("{}\n{}\n", hex(&key(3)), hex(&key(1)))).unwrap();
        let filetime = SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(filetime).unwrap();
        let k = p.keys().unwrap();
        assert_eq!((k.current, k.previous), (key(3), Some(key(1))));
        // A malformed rewrite keeps the last good keys.
        std::thread::sleep(Duration::from_millis(1100));
        std::fs::write(&path, "garbage").unwrap();
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(filetime + HOUR).unwrap();
        assert_eq!(p.keys().unwrap().current, key(3));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(p.keys().unwrap().current, key(3), "a vanished file keeps the last keys");
        assert!(FileTicketKeys::open(&path, HOUR).is_err());
    }

    #[test]
    fn handles_compare_by_identity() {
        let a = SessionStoreHandle::new(LruSessionStore::new(1, 100));
        assert_eq!(a, a.clone());
        assert_ne!(a, SessionStoreHandle::new(LruSessionStore::new(1, 100)));
        assert_ne!(a, a.clone().with_ttl(Duration::from_secs(5)));
        assert!(a.put(b"k", b"v") && a.get(b"k").is_some());
        let t = TicketKeysHandle::new(StaticTicketKeys::new(TicketKeys { current: key(1), previous: None }, HOUR));
        assert_eq!(t, t.clone());
        assert_eq!(format!("{t:?}"), "TicketKeysHandle(..)");
    }
}
