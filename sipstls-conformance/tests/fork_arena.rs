//! Fork checks of the shared-memory arena and robust locks (`sipstls-shm`), the ground
//! the pinned and migrating models stand on. A `harness = false` binary: it forks, so it
//! must run single-threaded, with hard timeouts everywhere.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sipstls_conformance::fork::{hard_timeout, Tally, Workers};
use sipstls_core::hooks::LockOutcome;
use sipstls_core::Error;
use sipstls_shm::{PidLock, RobustMutex, SharedArena, Thresholds};

const MIB: usize = 1024 * 1024;
const PER_WORKER: u64 = 500_000;

/// The two process-shared locks with a dead-holder report: [`RobustMutex`] (sessions,
/// `SharedLocks`) and [`PidLock`] (the arena's own lock, taken on every allocation).
trait SharedLock: Sync + 'static {
    const NAME: &'static str;
    /// Initialises a lock in place.
    ///
    /// # Safety
    /// `slot` must be valid for writes and suitably aligned.
    unsafe fn init_at(slot: *mut Self);
    fn take(&self) -> LockOutcome;
    fn release(&self);
}

impl SharedLock for RobustMutex {
    const NAME: &'static str = "RobustMutex";
    unsafe fn init_at(slot: *mut Self) {
        // SAFETY: forwarded contract.
        unsafe { RobustMutex::init_at(slot) }.expect("mutex init");
    }
    fn take(&self) -> LockOutcome {
        self.lock()
    }
    fn release(&self) {
        self.unlock()
    }
}

impl SharedLock for PidLock {
    const NAME: &'static str = "PidLock";
    unsafe fn init_at(slot: *mut Self) {
        // SAFETY: forwarded contract.
        unsafe { slot.write(PidLock::new()) };
    }
    fn take(&self) -> LockOutcome {
        self.lock()
    }
    fn release(&self) {
        self.unlock()
    }
}

/// xorshift64: per-worker deterministic sizes and patterns.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Fills `len` bytes at `p` with a pattern derived from `tag`.
///
/// # Safety
/// `p` must be valid for `len` bytes of writes.
unsafe fn fill(p: NonNull<u8>, len: usize, tag: u8) {
    // SAFETY: forwarded contract.
    unsafe { std::ptr::write_bytes(p.as_ptr(), tag, len) };
}

/// # Safety
/// `p` must be valid for `len` bytes of reads.
unsafe fn check(p: NonNull<u8>, len: usize, tag: u8) -> bool {
    // SAFETY: forwarded contract.
    unsafe { std::slice::from_raw_parts(p.as_ptr(), len) }.iter().all(|b| *b == tag)
}

/// 4 processes allocate, verify, reallocate and free concurrently in one arena; every
/// pointer is 16-byte aligned, no allocation is corrupted by another process, and the
/// arena returns to its baseline.
fn concurrent_processes_share_one_heap() {
    let arena = SharedArena::create(64 * MIB).expect("arena");
    let baseline = arena.stats();
    let mut workers = Workers::spawn(4, Duration::from_secs(60), |w| {
        let mut rng = Rng(0x9E37_79B9 + w as u64);
        let mut live: Vec<(NonNull<u8>, usize, u8)> = Vec::new();
        for op in 0..50_000u32 {
            let r = rng.next();
            if live.len() < 200 && (r % 3 != 0 || live.is_empty()) {
                let size = if r % 50 == 0 { 1 + (r >> 8) as usize % 65_536 } else { 1 + (r >> 8) as usize % 4096 };
                let Some(p) = arena.allocate(size) else { return 10 };
                if p.as_ptr() as usize % 16 != 0 {
                    return 11;
                }
                let tag = (op % 251) as u8;
                // SAFETY: `p` is a fresh allocation of `size` bytes.
                unsafe { fill(p, size, tag) };
                live.push((p, size, tag));
            } else {
                let i = (r >> 16) as usize % live.len();
                let (p, size, tag) = live.swap_remove(i);
                // SAFETY: `p` is live with `size` bytes written with `tag`.
                if !unsafe { check(p, size, tag) } {
                    return 12; // another process wrote into our allocation
                }
                if r % 7 == 0 {
                    let new = 1 + (r >> 24) as usize % 8192;
                    // SAFETY: `p` is live and from this arena.
                    let Some(q) = (unsafe { arena.reallocate(p, new) }) else { return 13 };
                    // SAFETY: the first min(size, new) bytes were kept.
                    if !unsafe { check(q, size.min(new), tag) } {
                        return 14;
                    }
                    // SAFETY: `q` has `new` bytes.
                    unsafe { fill(q, new, tag) };
                    live.push((q, new, tag));
                } else {
                    // SAFETY: `p` is live and from this arena.
                    unsafe { arena.free(p) };
                }
            }
        }
        for (p, size, tag) in live {
            // SAFETY: as above.
            if !unsafe { check(p, size, tag) } {
                return 12;
            }
            // SAFETY: as above.
            unsafe { arena.free(p) };
        }
        0
    });
    let pids = workers.pids().to_vec();
    for pid in pids {
        assert_eq!(
            workers.wait(pid, Duration::from_secs(90)),
            Some(0),
            "worker {pid} (10 alloc failed, 11 misaligned, 12-14 corrupted)"
        );
    }
    let end = arena.stats();
    assert_eq!((end.in_use, end.live_allocations), (baseline.in_use, 0), "arena not back at baseline: {end:?}");
    assert!(end.allocations >= 4 * 20_000, "too few allocations counted: {end:?}"); // about half the operations allocate
    println!(
        "    {} allocations by 4 processes, high water {} bytes, back to {} bytes in use",
        end.allocations, end.high_water, end.in_use
    );
}

/// 4 processes increment one counter 500,000 times each under a process-shared lock: the
/// total is exact and nothing deadlocks (a deadlock is caught by the timeout).
fn contended_lock_across_processes<L: SharedLock>() {
    let arena = SharedArena::create(MIB).unwrap();
    let slot = arena.allocate(std::mem::size_of::<L>() + 16 + 16).unwrap();
    let lock = slot.cast::<L>().as_ptr();
    // SAFETY: `slot` is a fresh, 16-aligned allocation large enough for the lock, a
    // counter and a start flag placed 16-aligned after it.
    let (counter, go) = unsafe {
        L::init_at(lock);
        let c = slot.as_ptr().add(std::mem::size_of::<L>().next_multiple_of(16)).cast::<AtomicU64>();
        c.write(AtomicU64::new(0));
        c.add(1).write(AtomicU64::new(0));
        (&*c, &*c.add(1))
    };
    // SAFETY: initialised above; lives in the never-unmapped arena.
    let lock = unsafe { &*lock };
    let mut workers = Workers::spawn(4, Duration::from_secs(60), |_| {
        while go.load(Ordering::SeqCst) == 0 {
            std::hint::spin_loop(); // all four start together: real contention
        }
        for _ in 0..PER_WORKER {
            assert_eq!(lock.take(), LockOutcome::Acquired, "no holder died");
            // A plain read-modify-write: only mutual exclusion makes it exact.
            let v = counter.load(Ordering::Relaxed);
            counter.store(v + 1, Ordering::Relaxed);
            lock.release();
        }
        0
    });
    let start = Instant::now();
    go.store(1, Ordering::SeqCst);
    let pids = workers.pids().to_vec();
    for pid in pids {
        assert_eq!(workers.wait(pid, Duration::from_secs(90)), Some(0), "worker {pid} (deadlock or crash)");
    }
    assert_eq!(
        counter.load(Ordering::SeqCst),
        4 * PER_WORKER,
        "lost updates: the lock did not exclude across processes"
    );
    println!(
        "    {}: {} contended locked increments by 4 processes in {:.2} s",
        L::NAME,
        4 * PER_WORKER,
        start.elapsed().as_secs_f64()
    );
}

/// A process killed (SIGKILL) while holding the lock: the next taker is told the owner
/// died, and the lock keeps working. With `waiting`, a process is already blocked on the
/// lock when the holder dies (it must be the one told), and the holder is not reaped
/// before that (a zombie holds nothing).
fn lock_owner_killed_is_reported<L: SharedLock>(waiting: bool) {
    let arena = SharedArena::create(MIB).unwrap();
    let slot = arena.allocate(std::mem::size_of::<L>() + 16).unwrap();
    let lock_ptr = slot.cast::<L>().as_ptr();
    // SAFETY: as in `contended_lock_across_processes`.
    let (lock, flag) = unsafe {
        L::init_at(lock_ptr);
        let f = slot.as_ptr().add(std::mem::size_of::<L>().next_multiple_of(16)).cast::<AtomicU64>();
        f.write(AtomicU64::new(0));
        (&*lock_ptr, &*f)
    };
    let mut holder = Workers::spawn(1, Duration::from_secs(30), |_| {
        assert_eq!(lock.take(), LockOutcome::Acquired);
        flag.store(1, Ordering::SeqCst);
        loop {
            std::thread::sleep(Duration::from_secs(1)); // holds the lock until killed
        }
    });
    let pid = holder.pids()[0];
    let deadline = Instant::now() + Duration::from_secs(10);
    while flag.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the holder never took the lock");
        std::thread::sleep(Duration::from_millis(5));
    }
    if waiting {
        // Exit codes: 0 told OwnerDied, 1 told Acquired.
        let mut waiter = Workers::spawn(1, Duration::from_secs(30), |_| {
            let outcome = lock.take();
            lock.release();
            i32::from(outcome != LockOutcome::OwnerDied)
        });
        let wpid = waiter.pids()[0];
        std::thread::sleep(Duration::from_millis(100)); // the waiter is blocked by now
        assert!(waiter.alive(wpid), "the waiter must still be waiting");
        holder.kill(pid); // not reaped yet: a zombie until `wait` below
        assert_eq!(waiter.wait(wpid, Duration::from_secs(10)), Some(0), "the blocked waiter must be told");
        assert_eq!(holder.wait(pid, Duration::from_secs(10)), Some(-libc::SIGKILL));
    } else {
        holder.kill(pid);
        assert_eq!(holder.wait(pid, Duration::from_secs(10)), Some(-libc::SIGKILL));
        assert_eq!(lock.take(), LockOutcome::OwnerDied, "a dead holder must be reported");
        lock.release();
    }
    assert_eq!(lock.take(), LockOutcome::Acquired, "the lock must stay usable");
    lock.release();
}

/// A nearly full arena: below the first threshold new sessions are refused with
/// `LowMemory`; below the second allocations fail (no crash); service recovers when
/// memory is freed. Thresholds set by the parent hold in a forked child.
fn low_memory_thresholds() {
    let arena = SharedArena::create(8 * MIB).unwrap();
    arena.set_thresholds(Thresholds { refuse_new_sessions_below: 2 * MIB, fail_allocations_below: 512 * 1024 });
    assert_eq!(arena.admit_new_session(), Ok(()));
    let mut held = Vec::new();
    while let Some(p) = arena.allocate(64 * 1024) {
        held.push(p);
        assert!(held.len() < 1000, "the arena never filled");
    }
    let s = arena.stats();
    assert!(s.free() >= 512 * 1024, "allocation went below the second threshold: {s:?}");
    assert!(s.failed_allocations >= 1);
    match arena.admit_new_session() {
        Err(Error::LowMemory { threshold, .. }) => assert_eq!(threshold, 2 * MIB),
        other => panic!("expected LowMemory, got {other:?}"),
    }
    let mut child = Workers::spawn(1, Duration::from_secs(30), |_| {
        let refused = matches!(arena.admit_new_session(), Err(Error::LowMemory { .. }));
        let small_fails = arena.allocate(600 * 1024).is_none();
        i32::from(!refused) + 2 * i32::from(!small_fails)
    });
    let pid = child.pids()[0];
    assert_eq!(child.wait(pid, Duration::from_secs(30)), Some(0), "the child must see the same thresholds");
    for p in held.drain(..held.len() / 2) {
        // SAFETY: live allocations of this arena.
        unsafe { arena.free(p) };
    }
    assert_eq!(arena.admit_new_session(), Ok(()), "service recovers when memory frees");
    let p = arena.allocate(64 * 1024).expect("allocations work again");
    // SAFETY: as above.
    unsafe { arena.free(p) };
    for p in held {
        // SAFETY: as above.
        unsafe { arena.free(p) };
    }
    assert_eq!(arena.stats().in_use, 0);
}

/// `LockHooks` over the arena and a session lock set: locks made by the parent exclude
/// across 4 processes (exact counters), a dead holder is reported through the trait, and
/// destroyed locks return their memory.
fn lock_hooks_and_session_locks_across_processes() {
    use sipstls_core::hooks::LockHooks;
    let arena = SharedArena::create(4 * MIB).unwrap();
    let hooks = sipstls_shm::SharedLocks::new(arena);
    let baseline = arena.stats().in_use;
    let ids: Vec<_> = (0..4).map(|_| hooks.new_lock().expect("lock")).collect();
    let set = sipstls_shm::SessionLocks::new(arena, 8).expect("session locks");
    // Counters 0..4 for the hook locks, 4..68 one per session key.
    const N: usize = 4 + 64;
    let counters = arena.allocate(N * 8).unwrap().cast::<AtomicU64>();
    for i in 0..N {
        // SAFETY: N counters in a fresh allocation.
        unsafe { counters.as_ptr().add(i).write(AtomicU64::new(0)) };
    }
    // SAFETY: initialised above; the arena is never unmapped.
    let counters = unsafe { std::slice::from_raw_parts(counters.as_ptr(), N) };
    let mut workers = Workers::spawn(4, Duration::from_secs(60), |w| {
        for i in 0..50_000u64 {
            let id = ids[(i as usize + w) % ids.len()];
            hooks.lock(id);
            let c = &counters[(i as usize + w) % ids.len()];
            c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            hooks.unlock(id);
            let key = i % 64; // a session key always maps to the same lock
            set.for_key(key).with(|_| {
                let c = &counters[4 + key as usize];
                c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            });
        }
        0
    });
    let pids = workers.pids().to_vec();
    for pid in pids {
        assert_eq!(workers.wait(pid, Duration::from_secs(90)), Some(0), "worker {pid}");
    }
    let hook_total: u64 = counters[..4].iter().map(|c| c.load(Ordering::SeqCst)).sum();
    assert_eq!(hook_total, 200_000, "LockHooks locks lost updates across processes");
    for (key, c) in counters[4..].iter().enumerate() {
        let per_worker = 50_000 / 64 + u64::from((key as u64) < 50_000 % 64);
        assert_eq!(c.load(Ordering::SeqCst), 4 * per_worker, "session key {key}: lost updates");
    }
    // Owner death through the trait.
    let id = ids[0];
    let mut victim = Workers::spawn(1, Duration::from_secs(30), |_| {
        hooks.lock(id);
        // SAFETY: the process ends right here while holding the lock.
        unsafe { libc::_exit(0) }
    });
    let vpid = victim.pids()[0];
    assert_eq!(victim.wait(vpid, Duration::from_secs(10)), Some(0));
    assert_eq!(hooks.lock(id), LockOutcome::OwnerDied);
    hooks.unlock(id);
    for id in ids {
        hooks.destroy(id);
    }
    let after = arena.stats().in_use;
    let set_and_counters = 8 * std::mem::size_of::<RobustMutex>() + N * 8;
    assert_eq!(after, baseline + set_and_counters, "destroyed locks must return their memory");
}

fn main() -> std::process::ExitCode {
    hard_timeout(Duration::from_secs(300));
    let mut t = Tally::default();
    t.run("fork::arena::concurrent_processes_share_one_heap", concurrent_processes_share_one_heap);
    t.run("fork::arena::contended_lock_across_processes", contended_lock_across_processes::<RobustMutex>);
    t.run("fork::arena::lock_owner_killed_is_reported", || lock_owner_killed_is_reported::<RobustMutex>(false));
    t.run("fork::arena::lock_owner_killed_waiter_told", || lock_owner_killed_is_reported::<RobustMutex>(true));
    t.run("fork::arena::pidlock_contended_across_processes", contended_lock_across_processes::<PidLock>);
    t.run("fork::arena::pidlock_owner_killed_is_reported", || lock_owner_killed_is_reported::<PidLock>(false));
    t.run("fork::arena::pidlock_owner_killed_waiter_told", || lock_owner_killed_is_reported::<PidLock>(true));
    t.run("fork::arena::low_memory_thresholds", low_memory_thresholds);
    t.run("fork::arena::lock_hooks_and_session_locks_across_processes", lock_hooks_and_session_locks_across_processes);
    t.finish()
}
