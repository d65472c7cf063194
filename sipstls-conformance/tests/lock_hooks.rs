//! Lock hooks (`Capabilities::LOCK_HOOK`), per backend that claims them (a `harness = false`
//! binary: hooks are process-wide and go in before the library's first use, so each
//! backend gets a child process of its own):
//! - counting hooks installed first see every lock the library makes, takes, releases and
//!   destroys while handshakes run on several threads: locks were made and taken, every
//!   take was released, no lock was ever held twice at once, and none is held at the end;
//! - process-shared robust locks in a shared arena (sipstls-shm) serve as the hooks:
//!   handshakes run with every library lock in shared memory;
//! - installing after the library's first use is refused with `Error::HookTooLate`.
//!
//! A backend that does not claim `LOCK_HOOK` has no installer: the check asserts that no
//! backend claims the capability without one here.

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use sipstls::{Capabilities, Error, ProtocolVersion, Resumption, ServerName};
use sipstls_conformance::checks::{client_cfg, server_cfg};
use sipstls_conformance::fork::{hard_timeout, Tally};
use sipstls_conformance::pki::{pki, SERVER_NAME};
use sipstls_conformance::pump;
use sipstls_core::hooks::{LockHooks, LockId, LockOutcome};

/// The installer of each backend with lock hooks.
#[cfg_attr(not(feature = "mbedtls"), allow(unused_variables))]
fn install(backend: &str, hooks: &'static dyn LockHooks) -> Option<Result<(), Error>> {
    match backend {
        #[cfg(feature = "mbedtls")]
        "mbedtls" => Some(sipstls::mbedtls::install_lock_hooks(hooks)),
        _ => None,
    }
}

/// One lock of [`Counting`]: a flag under a mutex, waited on with a condition variable.
#[derive(Default)]
struct Slot {
    held: Mutex<bool>,
    freed: Condvar,
}

/// Lock hooks that count what the library does and check that the locks exclude.
#[derive(Default)]
struct Counting {
    locks: Mutex<HashMap<usize, &'static Slot>>,
    next: AtomicU64,
    made: AtomicU64,
    taken: AtomicU64,
    released: AtomicU64,
    destroyed: AtomicU64,
    /// Releases of a lock nobody held, and uses of unknown or destroyed locks.
    misuse: AtomicU64,
}

impl Counting {
    fn slot(&self, id: LockId) -> Option<&'static Slot> {
        let s = self.locks.lock().unwrap().get(&id.0).copied();
        if s.is_none() {
            self.misuse.fetch_add(1, Ordering::SeqCst);
        }
        s
    }

    fn held_now(&self) -> usize {
        self.locks.lock().unwrap().values().filter(|s| *s.held.lock().unwrap()).count()
    }
}

// SAFETY: each lock is a flag under a std mutex: a taker waits until it is clear, so it
// excludes every other holder (in this process: these locks are not shared across
// processes, so no holder can die holding one while others go on); nothing panics while
// the library calls in (plain map and mutex operations), and the backend catches panics.
unsafe impl LockHooks for Counting {
    fn new_lock(&self) -> Option<LockId> {
        let id = self.next.fetch_add(1, Ordering::SeqCst) as usize + 1;
        self.locks.lock().unwrap().insert(id, Box::leak(Box::default()));
        self.made.fetch_add(1, Ordering::SeqCst);
        Some(LockId(id))
    }

    fn lock(&self, id: LockId) -> LockOutcome {
        if let Some(s) = self.slot(id) {
            let mut held = s.held.lock().unwrap();
            while *held {
                held = s.freed.wait(held).unwrap();
            }
            *held = true;
            self.taken.fetch_add(1, Ordering::SeqCst);
        }
        LockOutcome::Acquired
    }

    fn unlock(&self, id: LockId) {
        if let Some(s) = self.slot(id) {
            let mut held = s.held.lock().unwrap();
            if !*held {
                self.misuse.fetch_add(1, Ordering::SeqCst);
            }
            *held = false;
            self.released.fetch_add(1, Ordering::SeqCst);
            s.freed.notify_one();
        }
    }

    fn destroy(&self, id: LockId) {
        if self.locks.lock().unwrap().remove(&id.0).is_none() {
            self.misuse.fetch_add(1, Ordering::SeqCst);
        }
        self.destroyed.fetch_add(1, Ordering::SeqCst);
    }
}

const THREADS: usize = 4;
const PER_THREAD: usize = 25;

/// Handshakes (TLS 1.2 and 1.3, full and resumed) and data on several threads over one
/// server and one client domain.
fn run_handshakes(backend: &str) {
    let b = sipstls::backend(backend).expect("backend");
    for v in [ProtocolVersion::Tls12, ProtocolVersion::Tls13] {
        let sd = b.server_domain(&server_cfg(v).with_resumption(Resumption::default())).unwrap();
        let cd = b.client_domain(&client_cfg(v).with_resumption(Resumption::default())).unwrap();
        std::thread::scope(|scope| {
            for _ in 0..THREADS {
                scope.spawn(|| {
                    for _ in 0..PER_THREAD {
                        let mut c = cd.connect(Some(&ServerName::parse(SERVER_NAME).unwrap())).unwrap();
                        let mut s = sd.accept().unwrap();
                        pump::handshake(&mut *c, &mut *s).expect("handshake");
                        assert_eq!(pump::send(&mut *c, &mut *s, b"locked").unwrap(), b"locked");
                        assert_eq!(pump::send(&mut *s, &mut *c, b"and back").unwrap(), b"and back");
                    }
                });
            }
        });
    }
}

/// Child: counting hooks, handshakes on threads, then the balance.
fn counting(backend: &str) -> i32 {
    let hooks: &'static Counting = Box::leak(Box::default());
    if let Some(Err(e)) = install(backend, hooks) {
        eprintln!("{backend}: installing the counting hooks failed: {e}");
        return 1;
    }
    let _ = pki();
    run_handshakes(backend);
    let (made, taken, released, destroyed, misuse) = (
        hooks.made.load(Ordering::SeqCst),
        hooks.taken.load(Ordering::SeqCst),
        hooks.released.load(Ordering::SeqCst),
        hooks.destroyed.load(Ordering::SeqCst),
        hooks.misuse.load(Ordering::SeqCst),
    );
    let held = hooks.held_now();
    println!(
        "    {backend}: {made} locks made, {taken} taken, {released} released, {destroyed} destroyed over {} \
         handshakes on {THREADS} threads",
        2 * THREADS * PER_THREAD
    );
    let mut ok = true;
    let mut check = |cond: bool, what: &str| {
        if !cond {
            eprintln!("{backend}: {what}");
            ok = false;
        }
    };
    check(made > 0, "no lock was made through the hooks");
    check(taken >= (2 * THREADS * PER_THREAD) as u64, "fewer locks taken than handshakes run");
    check(taken == released, "locks taken and released do not balance");
    check(misuse == 0, "a lock was released unheld, or an unknown lock was used");
    check(held == 0, "a lock is still held");
    check(destroyed > 0, "no lock was destroyed (sessions and domains free theirs)");
    i32::from(!ok)
}

/// Child: robust process-shared locks in a shared arena as the hooks.
fn shared(backend: &str) -> i32 {
    let arena = sipstls_shm::SharedArena::create(16 << 20).expect("arena");
    let locks: &'static sipstls_shm::SharedLocks = Box::leak(Box::new(sipstls_shm::SharedLocks::new(arena)));
    if let Some(Err(e)) = install(backend, locks) {
        eprintln!("{backend}: installing the shared locks failed: {e}");
        return 1;
    }
    let _ = pki();
    let before = arena.stats();
    run_handshakes(backend);
    let after = arena.stats();
    if after.allocations <= before.allocations {
        eprintln!("{backend}: no lock was made in the shared arena ({before:?} -> {after:?})");
        return 1;
    }
    println!("    {backend}: handshakes on {THREADS} threads with every lock in shared memory");
    0
}

/// Child: use the library first, then install: must be refused.
fn late(backend: &str) -> i32 {
    let b = sipstls::backend(backend).expect("backend");
    let _ = b.server_domain(&server_cfg(ProtocolVersion::Tls13)).expect("domain");
    let hooks: &'static Counting = Box::leak(Box::default());
    match install(backend, hooks) {
        Some(Err(Error::HookTooLate { .. })) => 0,
        other => {
            eprintln!("{backend}: expected HookTooLate, got {other:?}");
            1
        }
    }
}

fn child(mode: &str, backend: &str) {
    let exe = std::env::current_exe().unwrap();
    let status = Command::new(exe).args([mode, backend]).status().expect("child");
    assert!(status.success(), "{backend}: the {mode} check failed ({status})");
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [mode, backend] = &args[..] {
        std::process::exit(match mode.as_str() {
            "--counting" => counting(backend),
            "--shared" => shared(backend),
            "--late" => late(backend),
            _ => 2,
        });
    }
    hard_timeout(Duration::from_secs(300));
    let mut t = Tally::default();
    for name in sipstls::backend_names() {
        let claims = sipstls::backend(name).is_some_and(|b| b.capabilities().contains(Capabilities::LOCK_HOOK));
        let has_installer = install_exists(name);
        if !claims {
            t.run(&format!("lock_hooks::{name}::not_claimed"), || {
                assert!(!has_installer, "{name} has a lock-hook installer but does not claim LOCK_HOOK")
            });
            continue;
        }
        t.run(&format!("lock_hooks::{name}::installer_exists"), || {
            assert!(has_installer, "{name} claims LOCK_HOOK but this check knows no installer for it")
        });
        t.run(&format!("lock_hooks::{name}::every_lock_through_the_hooks"), || child("--counting", name));
        t.run(&format!("lock_hooks::{name}::shared_robust_locks"), || child("--shared", name));
        t.run(&format!("lock_hooks::{name}::installing_late_is_refused"), || child("--late", name));
    }
    t.finish()
}

/// Whether [`install`] knows `backend` (asked with hooks that are never used by a library
/// in this process: the parent never touches a backend).
fn install_exists(backend: &str) -> bool {
    matches!(backend, "mbedtls") && cfg!(feature = "mbedtls")
}
