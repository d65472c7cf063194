//! A [`SessionStore`] in the shared arena, for worker processes forked from one parent
//! (pinned model): a session cached by one worker resumes in another.
//!
//! A fixed table of slots allocated once in the arena, under one robust process-shared
//! lock. A key hashes to a home slot (FNV-1a, the same in every process) and is looked for
//! in the next [`PROBES`] slots; a put takes the slot of the same key, else a free or
//! expired one, else the least recently used of the probed slots. Keys up to
//! [`MAX_KEY`] bytes, values up to the slot size given at creation (larger ones are not
//! stored). Expiry is wall-clock time, the same for every process. If a holder of the lock
//! died mid-update, the table is cleared (it is only a cache).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sipstls_core::hooks::LockOutcome;
use sipstls_core::SessionStore;

use crate::arena::SharedArena;
use crate::lock::RobustMutex;

/// Longest key stored (TLS session ids are 32 bytes; rustls's TLS 1.3 stateful tickets 32).
pub const MAX_KEY: usize = 64;
/// Slots probed from a key's home slot.
pub const PROBES: usize = 8;

#[repr(C)]
struct Header {
    lock: RobustMutex,
    stamp: u64,
}

#[repr(C)]
struct SlotHead {
    used: u32,
    key_len: u32,
    value_len: u32,
    _pad: u32,
    expires_ms: u64,
    stamp: u64,
    key: [u8; MAX_KEY],
}

/// The session store in a [`SharedArena`]. Create it before `fork()`; every worker uses the
/// same table.
pub struct ShmSessionStore {
    header: *mut Header,
    slots: *mut u8,
    count: usize,
    stride: usize,
    max_value: usize,
}

// SAFETY: the pointers are into the arena, which is never unmapped; every access to the
// table goes through the process-shared robust lock in `header`.
unsafe impl Send for ShmSessionStore {}
// SAFETY: as above.
unsafe impl Sync for ShmSessionStore {}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

fn fnv1a(key: &[u8]) -> u64 {
    key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

impl ShmSessionStore {
    /// A table of `slots` entries of values up to `max_value` bytes, allocated in `arena`
    /// (about `slots * (max_value + 112)` bytes). `None` when the arena has no room.
    pub fn new(arena: &'static SharedArena, slots: usize, max_value: usize) -> Option<Self> {
        let count = slots.max(1);
        let stride = (std::mem::size_of::<SlotHead>() + max_value).next_multiple_of(16);
        let table = count.checked_mul(stride)?;
        let header = arena.allocate(std::mem::size_of::<Header>())?.cast::<Header>().as_ptr();
        let slots_ptr = arena.allocate(table)?.as_ptr();
        // SAFETY: both are fresh, 16-aligned allocations of the sizes written; the mutex
        // is initialised at its final address before any use.
        unsafe {
            RobustMutex::init_at(std::ptr::addr_of_mut!((*header).lock)).ok()?;
            std::ptr::addr_of_mut!((*header).stamp).write(1);
            std::ptr::write_bytes(slots_ptr, 0, table);
        }
        Some(ShmSessionStore { header, slots: slots_ptr, count, stride, max_value })
    }

    /// Runs `f` with the table under the lock (cleared first if a holder died).
    fn locked<T>(&self, f: impl FnOnce(&Table<'_>) -> T) -> T {
        // SAFETY: `header` points to the initialised header in the arena.
        let lock = unsafe { &(*self.header).lock };
        lock.with(|outcome| {
            let t = Table { store: self };
            if outcome == LockOutcome::OwnerDied {
                for i in 0..self.count {
                    t.head(i).used = 0;
                }
            }
            f(&t)
        })
    }

    /// Entries in use (expired ones included until reused).
    pub fn len(&self) -> usize {
        self.locked(|t| (0..self.count).filter(|i| t.head(*i).used != 0).count())
    }

    /// True when no entry is in use.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The largest value stored.
    pub fn max_value(&self) -> usize {
        self.max_value
    }
}

/// Access to the slots while the lock is held.
struct Table<'a> {
    store: &'a ShmSessionStore,
}

impl Table<'_> {
    #[allow(clippy::mut_from_ref)] // exclusive by the process-shared lock held for `self`'s life
    fn head(&self, i: usize) -> &mut SlotHead {
        // SAFETY: i < count; slot i starts at slots + i * stride, 16-aligned, inside the
        // table; the lock is held, so no other thread or process touches it.
        unsafe { &mut *(self.store.slots.add(i * self.store.stride).cast::<SlotHead>()) }
    }

    #[allow(clippy::mut_from_ref)] // as `head`
    fn value(&self, i: usize) -> &mut [u8] {
        // SAFETY: the value area follows the head inside slot i (stride covers both).
        unsafe {
            std::slice::from_raw_parts_mut(
                self.store.slots.add(i * self.store.stride + std::mem::size_of::<SlotHead>()),
                self.store.max_value,
            )
        }
    }

    fn next_stamp(&self) -> u64 {
        // SAFETY: the header is initialised; the lock is held.
        unsafe {
            let s = &mut (*self.store.header).stamp;
            *s += 1;
            *s
        }
    }

    fn probe(&self, key: &[u8]) -> impl Iterator<Item = usize> {
        let count = self.store.count;
        let home = (fnv1a(key) % count as u64) as usize;
        (0..PROBES.min(count)).map(move |k| (home + k) % count)
    }

    fn find(&self, key: &[u8]) -> Option<usize> {
        self.probe(key).find(|&i| {
            let h = self.head(i);
            h.used != 0 && h.key_len as usize == key.len() && &h.key[..key.len()] == key
        })
    }

    /// The value of a live entry (an expired one is freed).
    fn read(&self, i: usize) -> Option<Vec<u8>> {
        let h = self.head(i);
        if h.expires_ms <= now_ms() {
            h.used = 0;
            return None;
        }
        let len = (h.value_len as usize).min(self.store.max_value);
        Some(self.value(i)[..len].to_vec())
    }
}

impl SessionStore for ShmSessionStore {
    fn put(&self, key: &[u8], value: &[u8], ttl: Duration) -> bool {
        if key.is_empty() || key.len() > MAX_KEY || value.len() > self.max_value {
            return false;
        }
        let expires = now_ms().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        self.locked(|t| {
            let now = now_ms();
            let slot =
                t.find(key).or_else(|| t.probe(key).find(|&i| t.head(i).used == 0 || t.head(i).expires_ms <= now));
            let slot = slot.or_else(|| t.probe(key).min_by_key(|&i| t.head(i).stamp));
            let Some(i) = slot else { return false };
            let stamp = t.next_stamp();
            let h = t.head(i);
            h.used = 1;
            h.key_len = key.len() as u32;
            h.key[..key.len()].copy_from_slice(key);
            h.value_len = value.len() as u32;
            h.expires_ms = expires;
            h.stamp = stamp;
            t.value(i)[..value.len()].copy_from_slice(value);
            true
        })
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.locked(|t| {
            let i = t.find(key)?;
            let v = t.read(i)?;
            let stamp = t.next_stamp();
            t.head(i).stamp = stamp;
            Some(v)
        })
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.locked(|t| {
            let i = t.find(key)?;
            let v = t.read(i);
            t.head(i).used = 0;
            v
        })
    }
}

impl fmt::Debug for ShmSessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmSessionStore")
            .field("slots", &self.count)
            .field("max_value", &self.max_value)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn arena() -> &'static SharedArena {
        SharedArena::create(8 << 20).expect("arena")
    }

    #[test]
    fn put_get_take_expiry_and_bounds() {
        let s = ShmSessionStore::new(arena(), 64, 1024).unwrap();
        assert!(s.put(b"a", b"1", HOUR));
        assert_eq!(s.get(b"a").as_deref(), Some(&b"1"[..]));
        assert!(s.put(b"a", b"22", HOUR), "replace");
        assert_eq!(s.len(), 1);
        assert_eq!(s.take(b"a").as_deref(), Some(&b"22"[..]));
        assert_eq!(s.get(b"a"), None);
        assert!(!s.put(b"big", &[0; 1025], HOUR), "value above the slot size");
        assert!(!s.put(&[1; MAX_KEY + 1], b"v", HOUR), "key too long");
        assert!(!s.put(b"", b"v", HOUR));
        assert!(s.put(b"short", b"v", Duration::from_millis(30)));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(s.get(b"short"), None, "expired");
        // Bounded: 1000 puts into 64 slots keep at most 64, the newest readable.
        for i in 0..1000u32 {
            assert!(s.put(&i.to_be_bytes(), &i.to_le_bytes(), HOUR));
        }
        assert!(s.len() <= 64);
        assert_eq!(s.get(&999u32.to_be_bytes()).as_deref(), Some(&999u32.to_le_bytes()[..]));
    }

    #[test]
    fn shared_with_a_forked_process() {
        let s = ShmSessionStore::new(arena(), 64, 256).unwrap();
        assert!(s.put(b"from parent", b"p", HOUR));
        // SAFETY: the child only uses the store (no allocation on put/take of this size
        // beyond the returned Vec) and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let ok = s.take(b"from parent").as_deref() == Some(&b"p"[..]) && s.put(b"from child", b"c", HOUR);
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child saw no parent entry");
        assert_eq!(s.get(b"from child").as_deref(), Some(&b"c"[..]));
        assert_eq!(s.get(b"from parent"), None, "the child's take removed it for everyone");
    }
}
