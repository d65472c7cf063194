//! [`LockHooks`] over robust process-shared mutexes in a [`SharedArena`], and a fixed lock
//! set hashed by session key (the per-session locks of the migrating model).

use std::ptr::NonNull;

use sipstls_core::hooks::{LockHooks, LockId, LockOutcome};

use crate::{RobustMutex, SharedArena};

/// Locks allocated in a shared arena; a [`LockId`] is the lock's address, valid in every
/// process forked after the arena was mapped.
pub struct SharedLocks {
    arena: &'static SharedArena,
}

impl SharedLocks {
    /// Locks that live in `arena`.
    pub fn new(arena: &'static SharedArena) -> Self {
        SharedLocks { arena }
    }

    fn mutex(id: LockId) -> &'static RobustMutex {
        // SAFETY: ids are only made by `new_lock`, from initialised mutexes in the arena,
        // which is never unmapped; `destroy` is the caller's promise not to use it again.
        unsafe { &*(id.0 as *const RobustMutex) }
    }
}

// SAFETY: every lock is a PTHREAD_PROCESS_SHARED robust mutex placed in shared memory, so
// it excludes holders in every process sharing the arena; a dead holder is reported as
// OwnerDied to the next taker; nothing unwinds (lock panics only on an impossible
// programming error of an initialised robust mutex).
unsafe impl LockHooks for SharedLocks {
    fn new_lock(&self) -> Option<LockId> {
        let p = self.arena.allocate(std::mem::size_of::<RobustMutex>())?;
        // SAFETY: a fresh, 16-aligned allocation large enough for the mutex.
        if unsafe { RobustMutex::init_at(p.cast().as_ptr()) }.is_err() {
            // SAFETY: just allocated, never shared.
            unsafe { self.arena.free(p) };
            return None;
        }
        Some(LockId(p.as_ptr() as usize))
    }

    fn lock(&self, id: LockId) -> LockOutcome {
        Self::mutex(id).lock()
    }

    fn unlock(&self, id: LockId) {
        Self::mutex(id).unlock();
    }

    fn destroy(&self, id: LockId) {
        let p = id.0 as *mut RobustMutex;
        // SAFETY: the id came from `new_lock` and is not held (the trait's contract).
        unsafe {
            libc::pthread_mutex_destroy(p.cast());
            if let Some(nn) = NonNull::new(p.cast::<u8>()) {
                self.arena.free(nn);
            }
        }
    }
}

/// A fixed set of robust locks in the arena; a session key (its address, an id) picks one.
/// Few locks serve many sessions; two sessions may share a lock, never a session two locks.
pub struct SessionLocks {
    locks: &'static [RobustMutex],
}

impl SessionLocks {
    /// `n` locks (at least 1) in `arena`.
    pub fn new(arena: &'static SharedArena, n: usize) -> Option<Self> {
        let n = n.max(1);
        let bytes = n.checked_mul(std::mem::size_of::<RobustMutex>())?;
        let base = arena.allocate(bytes)?.cast::<RobustMutex>();
        for i in 0..n {
            // SAFETY: slot i of a fresh allocation sized for n mutexes, 16-aligned; each is
            // initialised at its final address.
            unsafe { RobustMutex::init_at(base.as_ptr().add(i)) }.ok()?;
        }
        // SAFETY: n initialised mutexes at `base`, in the never-unmapped arena.
        Some(SessionLocks { locks: unsafe { std::slice::from_raw_parts(base.as_ptr(), n) } })
    }

    /// The lock for session `key` (a fixed hash: the same in every process).
    pub fn for_key(&self, key: u64) -> &RobustMutex {
        let h = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        &self.locks[(h as usize) % self.locks.len()]
    }

    /// How many locks the set has.
    pub fn len(&self) -> usize {
        self.locks.len()
    }

    /// Never true (at least one lock).
    pub fn is_empty(&self) -> bool {
        self.locks.is_empty()
    }
}
