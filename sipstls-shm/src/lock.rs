//! Robust, process-shared mutexes that can live in shared memory.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;

use sipstls_core::hooks::LockOutcome;

/// A pthread mutex with `PTHREAD_PROCESS_SHARED` and `PTHREAD_MUTEX_ROBUST`: it works
/// across processes when placed in shared memory, and when its holder dies the next
/// taker is told ([`LockOutcome::OwnerDied`]) instead of blocking forever.
#[repr(C)]
pub struct RobustMutex {
    raw: UnsafeCell<libc::pthread_mutex_t>,
}

// SAFETY: the pthread mutex is designed to be shared between threads and, with
// PTHREAD_PROCESS_SHARED, between processes; all access goes through pthread calls.
unsafe impl Sync for RobustMutex {}
// SAFETY: as above; the mutex has no thread affinity when unlocked.
unsafe impl Send for RobustMutex {}

impl RobustMutex {
    /// Initialises a mutex in place at `slot`.
    ///
    /// # Safety
    /// `slot` must be valid for writes, suitably aligned, and not hold a live mutex.
    pub unsafe fn init_at(slot: *mut RobustMutex) -> Result<(), i32> {
        let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: `attr` is initialised by pthread_mutexattr_init before any other use,
        // and destroyed after the mutex is initialised; `slot` is valid per the contract.
        unsafe {
            let r = libc::pthread_mutexattr_init(attr.as_mut_ptr());
            if r != 0 {
                return Err(r);
            }
            let a = attr.as_mut_ptr();
            let mut r = libc::pthread_mutexattr_setpshared(a, libc::PTHREAD_PROCESS_SHARED);
            if r == 0 {
                r = libc::pthread_mutexattr_setrobust(a, libc::PTHREAD_MUTEX_ROBUST);
            }
            if r == 0 {
                r = libc::pthread_mutex_init((*slot).raw.get(), a);
            }
            libc::pthread_mutexattr_destroy(a);
            if r == 0 {
                Ok(())
            } else {
                Err(r)
            }
        }
    }

    /// Takes the mutex. If its previous holder died holding it, the mutex is made
    /// consistent and `OwnerDied` is returned: what it guarded may be half-updated.
    pub fn lock(&self) -> LockOutcome {
        // SAFETY: `raw` is an initialised robust mutex (constructors guarantee it).
        let r = unsafe { libc::pthread_mutex_lock(self.raw.get()) };
        match r {
            0 => LockOutcome::Acquired,
            libc::EOWNERDEAD => {
                // SAFETY: we hold the mutex (EOWNERDEAD grants it); marking it consistent
                // keeps it usable after we unlock.
                unsafe { libc::pthread_mutex_consistent(self.raw.get()) };
                LockOutcome::OwnerDied
            }
            // ENOTRECOVERABLE or EDEADLK would be programming errors on our side; a lock
            // that cannot be taken must not be treated as taken.
            other => panic!("pthread_mutex_lock failed: {other}"),
        }
    }

    /// Releases the mutex; only the holder may call it.
    pub fn unlock(&self) {
        // SAFETY: `raw` is initialised; the caller holds it (API contract of lock/unlock).
        unsafe { libc::pthread_mutex_unlock(self.raw.get()) };
    }

    /// The thread ID of the current holder (the PID, for a single-threaded process), or
    /// `None` when the mutex is free. A snapshot, meant for diagnostics and for tests that
    /// stop a process before killing it: the answer can change at once unless the holder
    /// is stopped. Reads the futex word, which for a robust mutex holds the owner's TID by
    /// the kernel's robust-futex ABI (glibc keeps it first in `pthread_mutex_t`).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    pub fn holder(&self) -> Option<libc::pid_t> {
        const FUTEX_TID_MASK: i32 = 0x3fff_ffff;
        // SAFETY: `raw` is an initialised mutex whose first field is the 32-bit futex word
        // (glibc's `__lock`), aligned for an atomic; reading it atomically races with
        // nothing the pthread calls do (they update it atomically too).
        let word = unsafe {
            (*self.raw.get().cast::<std::sync::atomic::AtomicI32>()).load(std::sync::atomic::Ordering::SeqCst)
        };
        let tid = word & FUTEX_TID_MASK;
        (tid != 0).then_some(tid)
    }

    /// Runs `f` under the lock; `f` learns whether the previous holder died.
    pub fn with<T>(&self, f: impl FnOnce(LockOutcome) -> T) -> T {
        let outcome = self.lock();
        struct Unlock<'a>(&'a RobustMutex);
        impl Drop for Unlock<'_> {
            fn drop(&mut self) {
                self.0.unlock();
            }
        }
        let _guard = Unlock(self);
        f(outcome)
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    #[test]
    fn holder_is_the_locking_thread() {
        let mut slot = Box::new(MaybeUninit::<RobustMutex>::uninit());
        // SAFETY: a fresh, aligned slot.
        unsafe { RobustMutex::init_at(slot.as_mut_ptr()) }.unwrap();
        // SAFETY: initialised above.
        let m = unsafe { slot.assume_init_ref() };
        assert_eq!(m.holder(), None);
        m.lock();
        // SAFETY: gettid has no preconditions.
        assert_eq!(m.holder(), Some(unsafe { libc::gettid() }));
        m.unlock();
        assert_eq!(m.holder(), None);
    }
}
