//! The arena's lock: a process-shared futex lock whose word holds the holder's process ID,
//! so a holder that died is detected by the next taker, like a robust mutex, at a fraction
//! of a robust pthread mutex's cost per lock/unlock.
//!
//! Why not a [`RobustMutex`](crate::RobustMutex) here: the arena takes its lock on every
//! allocation and free, and glibc's robust mutexes take the general path
//! (`__pthread_mutex_lock_full`/`__pthread_mutex_unlock_full`: the robust-list
//! bookkeeping) on each of them. This lock's uncontended path is one compare-and-swap to
//! take it and one swap to release it. What each lock costs per handshake, measured:
//! `docs/process-models.md`.
//!
//! How a dead holder is found: a waiter sleeps on the futex at most [`POLL`] at a time;
//! after each timeout it checks whether the process in the word still exists (`kill(pid,
//! 0)`, and `/proc/PID/stat` for a zombie not yet reaped). If not, it takes the lock over
//! with one compare-and-swap from the exact word it saw (one waiter wins) and reports
//! [`LockOutcome::OwnerDied`]. Limits, compared with a robust pthread mutex:
//! - only the death of a *process* is detected (all threads of a process share one ID);
//!   a thread cannot die inside the arena's short critical sections without its process;
//! - detection takes up to [`POLL`] instead of happening at the holder's exit;
//! - if the dead holder's PID were reused by a new process before anyone waited for the
//!   lock, the lock would stay taken until that process exits (PIDs are reused only
//!   after the kernel's PID counter wraps, `pid_max`; the arena lock is taken by other
//!   processes within milliseconds on a live server);
//! - the PID is cached per process and forgotten in a child by a `pthread_atfork` handler,
//!   so a child made without glibc's `fork` (a raw `clone` system call) that used the lock
//!   would take it under its parent's PID, and its death while holding it would go unseen.
//!
//! Mutual exclusion itself never depends on the PID (any non-zero word means "taken").

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;
use std::time::Duration;

use sipstls_core::hooks::LockOutcome;

/// Set in the lock word while a waiter may be asleep on the futex.
const WAITERS: u32 = 1 << 31;
/// How long a waiter sleeps before it checks whether the holder still exists.
pub const POLL: Duration = Duration::from_millis(10);
/// Busy-wait rounds before sleeping (critical sections are a few hundred instructions).
const SPINS: u32 = 100;

/// This process's ID, cached (glibc's `getpid` is a system call); reset in a forked child
/// by a `pthread_atfork` handler.
static PID: AtomicU32 = AtomicU32::new(0);
static ATFORK: Once = Once::new();

extern "C" fn forget_pid_in_child() {
    PID.store(0, Ordering::Relaxed);
}

fn my_pid() -> u32 {
    let p = PID.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    ATFORK.call_once(|| {
        // SAFETY: registers a handler that only stores to an atomic.
        unsafe { libc::pthread_atfork(None, None, Some(forget_pid_in_child)) };
    });
    // SAFETY: getpid has no preconditions.
    let p = unsafe { libc::getpid() } as u32;
    debug_assert!(p != 0 && p & WAITERS == 0, "PIDs are below 2^22 on Linux");
    PID.store(p, Ordering::Relaxed);
    p
}

/// True unless process `pid` is known to be gone (no such process, or a zombie). It
/// allocates nothing: it runs while the arena's lock is wanted, so an allocation routed to
/// the arena would wait for the very lock being checked.
fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks whether the process exists.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    if r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        return false;
    }
    // A killed process stays a zombie until its parent reaps it: it can hold nothing.
    // "/proc/<pid>/stat" is "<pid> (<comm>) <state> ...", comm possibly containing ')'.
    let mut path = [0u8; 32];
    let mut w = std::io::Cursor::new(&mut path[..]);
    if std::io::Write::write_fmt(&mut w, format_args!("/proc/{pid}/stat\0")).is_err() {
        return true;
    }
    let mut buf = [0u8; 512];
    // SAFETY: `path` is NUL-terminated; the descriptor is read into `buf` and closed.
    let n = unsafe {
        let fd = libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOENT);
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    let Ok(n) = usize::try_from(n) else { return true };
    let stat = &buf[..n];
    match stat.iter().rposition(|b| *b == b')') {
        Some(i) => !matches!(stat.get(i + 2), Some(b'Z' | b'X')),
        None => true,
    }
}

/// A process-shared lock for shared memory that reports a dead holder (see the module
/// documentation). All zero bytes is a valid unlocked lock.
#[repr(C)]
pub struct PidLock {
    word: AtomicU32,
}

impl PidLock {
    /// An unlocked lock (place it in shared memory before `fork()`).
    pub const fn new() -> Self {
        PidLock { word: AtomicU32::new(0) }
    }

    /// Takes the lock. If its previous holder's process died holding it, the lock is
    /// taken over and `OwnerDied` is returned: what it guarded may be half-updated.
    #[inline]
    pub fn lock(&self) -> LockOutcome {
        let me = my_pid();
        if self.word.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            return LockOutcome::Acquired;
        }
        self.lock_contended(me)
    }

    #[cold]
    fn lock_contended(&self, me: u32) -> LockOutcome {
        let mut spins = 0;
        loop {
            let v = self.word.load(Ordering::Relaxed);
            if v == 0 {
                // Others may sleep: keep the flag so our unlock wakes one.
                if self.word.compare_exchange(0, me | WAITERS, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                    return LockOutcome::Acquired;
                }
                continue;
            }
            if spins < SPINS {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            if v & WAITERS == 0
                && self.word.compare_exchange(v, v | WAITERS, Ordering::Relaxed, Ordering::Relaxed).is_err()
            {
                continue;
            }
            let seen = v | WAITERS;
            if !futex_wait(&self.word, seen, POLL) {
                // Timed out with the word unchanged: is the holder still there?
                let holder = seen & !WAITERS;
                if !alive(holder)
                    && self.word.compare_exchange(seen, me | WAITERS, Ordering::Acquire, Ordering::Relaxed).is_ok()
                {
                    return LockOutcome::OwnerDied;
                }
            }
        }
    }

    /// The process holding the lock now, if any: a snapshot (it may change at once), for
    /// diagnostics and tests.
    pub fn holder(&self) -> Option<libc::pid_t> {
        match self.word.load(Ordering::Relaxed) & !WAITERS {
            0 => None,
            pid => Some(pid as libc::pid_t),
        }
    }

    /// Releases the lock; only the holder may call it.
    #[inline]
    pub fn unlock(&self) {
        if self.word.swap(0, Ordering::Release) & WAITERS != 0 {
            futex_wake(&self.word);
        }
    }

    /// Runs `f` under the lock; `f` learns whether the previous holder died.
    #[inline]
    pub fn with<T>(&self, f: impl FnOnce(LockOutcome) -> T) -> T {
        let outcome = self.lock();
        struct Unlock<'a>(&'a PidLock);
        impl Drop for Unlock<'_> {
            fn drop(&mut self) {
                self.0.unlock();
            }
        }
        let _guard = Unlock(self);
        f(outcome)
    }
}

impl Default for PidLock {
    fn default() -> Self {
        Self::new()
    }
}

/// Sleeps while `*word == expected`, at most `timeout`; false when it timed out. A shared
/// (not `FUTEX_PRIVATE`) futex: waiters and wakers are in different processes.
fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) -> bool {
    let ts = libc::timespec { tv_sec: timeout.as_secs() as libc::time_t, tv_nsec: timeout.subsec_nanos() as _ };
    // SAFETY: FUTEX_WAIT reads the aligned u32 at `word` and sleeps; `ts` outlives the call.
    let r = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, expected, &ts as *const _) };
    !(r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT))
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only wakes sleepers on the address.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1) };
}
