//! A small SIP registrar whose bindings live in shared memory, so that every worker process
//! of the confined SIP server sees the same registrations (a REGISTER handled by worker 1
//! is found by a query handled by worker 3). Fixed capacity, no allocation after start.

use std::cell::UnsafeCell;
use std::ptr::NonNull;

use sipstls_shm::{RobustMutex, SharedArena};

/// Bindings the registrar holds at most.
pub const CAPACITY: usize = 256;
const AOR_MAX: usize = 128;
const CONTACT_MAX: usize = 256;

#[repr(C)]
#[derive(Clone, Copy)]
struct Binding {
    used: bool,
    expires_at: u64,
    aor_len: u16,
    contact_len: u16,
    aor: [u8; AOR_MAX],
    contact: [u8; CONTACT_MAX],
}

#[repr(C)]
struct Table {
    lock: RobustMutex,
    bindings: UnsafeCell<[Binding; CAPACITY]>,
}

/// Why a REGISTER could not be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrarError {
    /// Every slot is taken.
    #[error("the registrar is full ({CAPACITY} bindings)")]
    Full,
    /// The address of record or the contact is longer than a slot holds.
    #[error("address of record or contact too long")]
    TooLong,
}

/// The shared binding table. Create it before `fork()`; clones share the table.
#[derive(Clone)]
pub struct Registrar {
    table: NonNull<Table>,
}

// SAFETY: the table lives in a shared mapping that is never unmapped; the bindings are only
// touched under the table's robust process-shared mutex.
unsafe impl Send for Registrar {}
// SAFETY: as above.
unsafe impl Sync for Registrar {}

impl Registrar {
    /// Maps a shared arena and sets up an empty table in it.
    pub fn new_shared() -> Result<Registrar, String> {
        let size = std::mem::size_of::<Table>();
        let arena = SharedArena::create(size + 64 * 1024).map_err(|e| e.to_string())?;
        let ptr = arena.allocate(size).ok_or("registrar: arena too small")?.cast::<Table>();
        // SAFETY: `ptr` is a fresh, 16-byte aligned allocation of `size_of::<Table>()` bytes
        // that nothing else references; the mutex is initialised in place and the bindings
        // are zeroed (all slots unused) before the table is shared.
        unsafe {
            RobustMutex::init_at(std::ptr::addr_of_mut!((*ptr.as_ptr()).lock))
                .map_err(|e| format!("registrar: pthread_mutex_init: {e}"))?;
            std::ptr::addr_of_mut!((*ptr.as_ptr()).bindings).write_bytes(0, 1);
        }
        Ok(Registrar { table: ptr })
    }

    fn with<T>(&self, f: impl FnOnce(&mut [Binding; CAPACITY]) -> T) -> T {
        // SAFETY: the table was initialised in `new_shared` and stays mapped.
        let table = unsafe { self.table.as_ref() };
        // A holder that died leaves at worst one binding half-written; lengths are clamped
        // when read, so the table stays usable either way.
        table.lock.with(|_outcome| {
            // SAFETY: we hold the table's mutex, so no other thread or process touches the
            // bindings until `with` returns.
            f(unsafe { &mut *table.bindings.get() })
        })
    }

    /// Adds or refreshes the binding `aor` → `contact` for `expires` seconds from `now`
    /// (seconds since the epoch); `expires == 0` removes it.
    pub fn register(&self, aor: &str, contact: &str, expires: u32, now: u64) -> Result<(), RegistrarError> {
        let (aor, contact) = (aor.as_bytes(), contact.as_bytes());
        if aor.len() > AOR_MAX || contact.len() > CONTACT_MAX {
            return Err(RegistrarError::TooLong);
        }
        self.with(|slots| {
            let same = |b: &Binding| b.used && key(b, true) == aor && key(b, false) == contact;
            if expires == 0 {
                slots.iter_mut().filter(|b| same(b)).for_each(|b| b.used = false);
                return Ok(());
            }
            let i = match slots.iter().position(same) {
                Some(i) => i,
                None => slots.iter().position(|b| !b.used || b.expires_at <= now).ok_or(RegistrarError::Full)?,
            };
            let b = &mut slots[i];
            b.aor[..aor.len()].copy_from_slice(aor);
            b.aor_len = aor.len() as u16;
            b.contact[..contact.len()].copy_from_slice(contact);
            b.contact_len = contact.len() as u16;
            b.expires_at = now + u64::from(expires);
            b.used = true;
            Ok(())
        })
    }

    /// Removes every binding of `aor`.
    pub fn remove_all(&self, aor: &str) {
        self.with(|slots| {
            slots.iter_mut().filter(|b| b.used && key(b, true) == aor.as_bytes()).for_each(|b| b.used = false)
        });
    }

    /// The live bindings of `aor`: contact and seconds left.
    pub fn lookup(&self, aor: &str, now: u64) -> Vec<(String, u64)> {
        self.with(|slots| {
            slots
                .iter()
                .filter(|b| b.used && b.expires_at > now && key(b, true) == aor.as_bytes())
                .map(|b| (String::from_utf8_lossy(key(b, false)).into_owned(), b.expires_at - now))
                .collect()
        })
    }
}

fn key(b: &Binding, aor: bool) -> &[u8] {
    if aor {
        &b.aor[..usize::from(b.aor_len).min(AOR_MAX)]
    } else {
        &b.contact[..usize::from(b.contact_len).min(CONTACT_MAX)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_refresh_expire_and_remove() {
        let r = Registrar::new_shared().unwrap();
        r.register("sip:alice@example.test", "<sip:alice@10.0.0.1:5061;transport=tls>", 60, 1000).unwrap();
        r.register("sip:alice@example.test", "<sip:alice@10.0.0.2:5061;transport=tls>", 30, 1000).unwrap();
        r.register("sip:alice@example.test", "<sip:alice@10.0.0.1:5061;transport=tls>", 120, 1010).unwrap();
        let mut got = r.lookup("sip:alice@example.test", 1020);
        got.sort();
        assert_eq!(
            got,
            vec![
                ("<sip:alice@10.0.0.1:5061;transport=tls>".into(), 110),
                ("<sip:alice@10.0.0.2:5061;transport=tls>".into(), 10)
            ]
        );
        assert_eq!(r.lookup("sip:alice@example.test", 1031).len(), 1, "the 30 s binding expired");
        r.register("sip:alice@example.test", "<sip:alice@10.0.0.1:5061;transport=tls>", 0, 1040).unwrap();
        assert!(r.lookup("sip:alice@example.test", 1040).is_empty());
        r.register("sip:bob@example.test", "<sip:bob@h>", 60, 0).unwrap();
        r.remove_all("sip:bob@example.test");
        assert!(r.lookup("sip:bob@example.test", 1).is_empty());
    }

    #[test]
    fn full_and_too_long_are_errors() {
        let r = Registrar::new_shared().unwrap();
        for i in 0..CAPACITY {
            r.register(&format!("sip:u{i}@x"), "<sip:h>", 60, 0).unwrap();
        }
        assert_eq!(r.register("sip:one-more@x", "<sip:h>", 60, 0), Err(RegistrarError::Full));
        // Expired slots are reused.
        r.register("sip:one-more@x", "<sip:h>", 60, 61).unwrap();
        assert_eq!(r.register(&"a".repeat(200), "<sip:h>", 60, 0), Err(RegistrarError::TooLong));
    }

    #[test]
    fn bindings_are_shared_with_a_forked_process() {
        let r = Registrar::new_shared().unwrap();
        // SAFETY: the test process forks a child that only calls the registrar (no locks of
        // other threads are taken) and exits with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let ok = r.register("sip:carol@example.test", "<sip:carol@h>", 60, 0).is_ok();
            // SAFETY: ending the child without running the parent's atexit handlers.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert_eq!(status, 0);
        assert_eq!(r.lookup("sip:carol@example.test", 1), vec![("<sip:carol@h>".into(), 59)]);
    }
}
