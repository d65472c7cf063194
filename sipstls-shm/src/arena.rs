//! One shared mapping, made before `fork()`, with the allocator's control block inside it.

use std::alloc::Layout;
use std::cell::UnsafeCell;
use std::ptr::NonNull;

use rlsf::Tlsf;
use sipstls_core::hooks::{AllocatorHooks, LockOutcome};
use sipstls_core::Error;

use crate::pidlock::PidLock;

/// Every allocation is preceded by this many bytes holding its requested size; it keeps
/// payloads 16-byte aligned (an 8-byte-aligned custom allocator crashed wolfSSL in
/// OpenSIPS) and gives `free` from C the size it does not pass.
const HDR: usize = 16;
const ALIGN: usize = 16;
/// Per-block overhead TLSF adds on 64-bit targets (its used-block header).
const TLSF_OVERHEAD: usize = 16;
const GRANULARITY: usize = 32;
const MAGIC: u64 = u64::from_be_bytes(*b"SIPSTLSA");

type Allocator = Tlsf<'static, u32, u16, 28, 16>;

/// Low-memory thresholds, like Kamailio's `low_mem_threshold1/2`, in free bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[allow(clippy::exhaustive_structs)] // closed: Kamailio's two thresholds
pub struct Thresholds {
    /// Below this, [`SharedArena::admit_new_session`] refuses new sessions.
    pub refuse_new_sessions_below: usize,
    /// Below this, allocations fail (operations on existing sessions fail cleanly).
    pub fail_allocations_below: usize,
}

/// Accounting of the arena, as one consistent snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ArenaStats {
    /// Bytes the allocator manages.
    pub pool_bytes: usize,
    /// Bytes requested by live allocations.
    pub in_use: usize,
    /// Bytes the live allocations occupy, with headers and rounding.
    pub in_use_gross: usize,
    /// Highest `in_use` seen.
    pub high_water: usize,
    /// Live allocations.
    pub live_allocations: u64,
    /// Allocations made (ever).
    pub allocations: u64,
    /// Allocations refused (exhaustion or the second threshold).
    pub failed_allocations: u64,
    /// Times the arena lock was found held by a dead process.
    pub owner_deaths: u64,
}

impl ArenaStats {
    /// Free bytes (pool minus gross use).
    pub fn free(&self) -> usize {
        self.pool_bytes.saturating_sub(self.in_use_gross)
    }
}

#[repr(C)]
struct Control {
    magic: u64,
    /// Taken on every allocation and free: a [`PidLock`] (one CAS to take, one swap to
    /// release) rather than a robust pthread mutex, whose general lock path cost more than
    /// the allocator itself (see `pidlock.rs`). A dead holder is still reported.
    lock: PidLock,
    tlsf: UnsafeCell<Allocator>,
    stats: UnsafeCell<ArenaStats>,
    thresholds: UnsafeCell<Thresholds>,
}

/// A shared-memory arena: an anonymous `MAP_SHARED` mapping whose allocator state, lock
/// and accounting all live inside the mapping, so every process forked after
/// [`create`](SharedArena::create) allocates and frees in the same heap.
pub struct SharedArena {
    ctl: NonNull<Control>,
    base: usize,
    len: usize,
}

// SAFETY: all mutable state lives in the mapping and is only touched under `ctl.lock`, a
// process-shared mutex; the handle itself is immutable.
unsafe impl Send for SharedArena {}
// SAFETY: as above.
unsafe impl Sync for SharedArena {}

fn gross(size: usize) -> usize {
    (size + HDR + TLSF_OVERHEAD).div_ceil(GRANULARITY) * GRANULARITY
}

impl SharedArena {
    /// Maps `bytes` of shared anonymous memory and sets up the allocator inside it. The
    /// arena lives as long as the process (and its forked children).
    pub fn create(bytes: usize) -> Result<&'static SharedArena, Error> {
        let ctl_size = std::mem::size_of::<Control>().next_multiple_of(64);
        if bytes < ctl_size + 4096 {
            return Err(Error::config("arena_size", format!("at least {} bytes", ctl_size + 4096)));
        }
        // SAFETY: an anonymous shared mapping with no address hint; the result is checked.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(Error::config("arena_size", format!("mmap failed: {}", std::io::Error::last_os_error())));
        }
        let ctl = base.cast::<Control>();
        let pool_start = base as usize + ctl_size;
        let pool_len = bytes - ctl_size;
        // SAFETY: `ctl` points at the start of a fresh, page-aligned, writable mapping large
        // enough for `Control`; each field is written once before any use, and the pool
        // handed to TLSF is the rest of the mapping, which nothing else uses.
        unsafe {
            std::ptr::addr_of_mut!((*ctl).magic).write(MAGIC);
            std::ptr::addr_of_mut!((*ctl).lock).write(PidLock::new());
            std::ptr::addr_of_mut!((*ctl).tlsf).write(UnsafeCell::new(Allocator::new()));
            std::ptr::addr_of_mut!((*ctl).thresholds).write(UnsafeCell::new(Thresholds::default()));
            let pool = NonNull::slice_from_raw_parts(NonNull::new_unchecked(pool_start as *mut u8), pool_len);
            let managed = (*(*ctl).tlsf.get()).insert_free_block_ptr(pool).map_or(0, |n| n.get());
            std::ptr::addr_of_mut!((*ctl).stats)
                .write(UnsafeCell::new(ArenaStats { pool_bytes: managed, ..ArenaStats::default() }));
        }
        let arena =
            SharedArena { ctl: NonNull::new(ctl).expect("mmap returned non-null"), base: base as usize, len: bytes };
        Ok(Box::leak(Box::new(arena)))
    }

    fn ctl(&self) -> &Control {
        // SAFETY: `ctl` points into the mapping, which is never unmapped.
        unsafe { self.ctl.as_ref() }
    }

    /// Runs `f` on the allocator state under the arena lock.
    fn locked<T>(&self, f: impl FnOnce(&mut Allocator, &mut ArenaStats, &Thresholds) -> T) -> T {
        let c = self.ctl();
        debug_assert_eq!(c.magic, MAGIC);
        c.lock.with(|outcome| {
            // SAFETY: the lock is held, so no other thread or process touches these cells.
            let (tlsf, stats, th) = unsafe { (&mut *c.tlsf.get(), &mut *c.stats.get(), &*c.thresholds.get()) };
            if outcome == LockOutcome::OwnerDied {
                stats.owner_deaths += 1;
            }
            f(tlsf, stats, th)
        })
    }

    /// True when `ptr` lies inside this arena's mapping.
    pub fn contains(&self, ptr: *const u8) -> bool {
        (self.base..self.base + self.len).contains(&(ptr as usize))
    }

    /// The process holding the arena's lock right now (inside an allocation, a free or a
    /// statistics read), if any; see [`PidLock::holder`](crate::PidLock::holder). A process that dies holding
    /// it may leave the allocator's lists half-updated (counted in
    /// [`ArenaStats::owner_deaths`]).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    pub fn lock_holder(&self) -> Option<libc::pid_t> {
        self.ctl().lock.holder()
    }

    /// A snapshot of the accounting.
    pub fn stats(&self) -> ArenaStats {
        self.locked(|_, s, _| *s)
    }

    /// Sets the low-memory thresholds (for every process sharing the arena).
    pub fn set_thresholds(&self, t: Thresholds) {
        // SAFETY: written under the arena lock, like every other access.
        self.locked(|_, _, _| unsafe { *self.ctl().thresholds.get() = t });
    }

    /// `Ok` when a new session may start; [`Error::LowMemory`] below the first threshold.
    pub fn admit_new_session(&self) -> Result<(), Error> {
        self.locked(|_, s, t| {
            let free = s.free();
            if free < t.refuse_new_sessions_below {
                Err(Error::LowMemory { free, threshold: t.refuse_new_sessions_below })
            } else {
                Ok(())
            }
        })
    }

    /// Allocates `size` bytes, 16-byte aligned; `None` when exhausted or below the second
    /// threshold.
    pub fn allocate(&self, size: usize) -> Option<NonNull<u8>> {
        let layout = Layout::from_size_align(size.checked_add(HDR)?, ALIGN).ok()?;
        self.locked(|tlsf, s, t| {
            if s.free().saturating_sub(gross(size)) < t.fail_allocations_below {
                s.failed_allocations += 1;
                return None;
            }
            let Some(block) = tlsf.allocate(layout) else {
                s.failed_allocations += 1;
                return None;
            };
            // SAFETY: `block` is a fresh allocation of at least HDR + size bytes, 16-aligned.
            unsafe { block.cast::<usize>().as_ptr().write(size) };
            s.in_use += size;
            s.in_use_gross += gross(size);
            s.high_water = s.high_water.max(s.in_use);
            s.live_allocations += 1;
            s.allocations += 1;
            // SAFETY: HDR < HDR + size, so the payload pointer stays in the block.
            Some(unsafe { block.add(HDR) })
        })
    }

    /// The requested size of a live allocation.
    ///
    /// # Safety
    /// `ptr` must have come from this arena and be live.
    pub unsafe fn size_of(&self, ptr: NonNull<u8>) -> usize {
        // SAFETY: per the contract, the header precedes `ptr` inside the same block.
        unsafe { ptr.sub(HDR).cast::<usize>().as_ptr().read() }
    }

    /// Frees an allocation.
    ///
    /// # Safety
    /// `ptr` must have come from this arena and be live; it is dead afterwards.
    pub unsafe fn free(&self, ptr: NonNull<u8>) {
        self.locked(|tlsf, s, _| {
            // SAFETY: per the contract, `ptr - HDR` is the block TLSF returned, allocated
            // with ALIGN, and its header holds the requested size.
            unsafe {
                let block = ptr.sub(HDR);
                let size = block.cast::<usize>().as_ptr().read();
                tlsf.deallocate(block, ALIGN);
                s.in_use -= size;
                s.in_use_gross -= gross(size);
            }
            s.live_allocations -= 1;
        })
    }

    /// Resizes an allocation (contents kept up to the smaller size); `None` leaves the old
    /// allocation valid.
    ///
    /// # Safety
    /// `ptr` must have come from this arena and be live.
    pub unsafe fn reallocate(&self, ptr: NonNull<u8>, new_size: usize) -> Option<NonNull<u8>> {
        let layout = Layout::from_size_align(new_size.checked_add(HDR)?, ALIGN).ok()?;
        self.locked(|tlsf, s, t| {
            // SAFETY: as in `free`: `ptr - HDR` is a live TLSF block allocated with ALIGN.
            unsafe {
                let block = ptr.sub(HDR);
                let old = block.cast::<usize>().as_ptr().read();
                let growth = gross(new_size).saturating_sub(gross(old));
                if s.free().saturating_sub(growth) < t.fail_allocations_below {
                    s.failed_allocations += 1;
                    return None;
                }
                let Some(new_block) = tlsf.reallocate(block, layout) else {
                    s.failed_allocations += 1;
                    return None;
                };
                new_block.cast::<usize>().as_ptr().write(new_size);
                s.in_use = s.in_use - old + new_size;
                s.in_use_gross = s.in_use_gross - gross(old) + gross(new_size);
                s.high_water = s.high_water.max(s.in_use);
                Some(new_block.add(HDR))
            }
        })
    }
}

// SAFETY: allocations are 16-byte aligned and disjoint (TLSF), every method accepts every
// live pointer from any thread or process sharing the mapping (all state is inside it,
// under a process-shared lock), nothing unwinds (the arena's `PidLock` never panics), and
// nothing calls into a TLS library.
unsafe impl AllocatorHooks for SharedArena {
    fn alloc(&self, size: usize) -> Option<NonNull<u8>> {
        self.allocate(size)
    }

    unsafe fn realloc(&self, ptr: NonNull<u8>, new_size: usize) -> Option<NonNull<u8>> {
        // SAFETY: forwarded contract.
        unsafe { self.reallocate(ptr, new_size) }
    }

    unsafe fn free(&self, ptr: NonNull<u8>) {
        // SAFETY: forwarded contract.
        unsafe { SharedArena::free(self, ptr) }
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.contains(ptr.as_ptr())
    }
}
