//! A `#[global_allocator]` that can send Rust allocations to a [`SharedArena`].

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use crate::SharedArena;

/// Allocates from the system until [`route_to`](ArenaGlobalAlloc::route_to) names an
/// arena, then from the arena (for alignments up to 16; larger ones stay with the system).
/// Frees go wherever the address belongs, so memory from before the switch is released
/// correctly. Use as `#[global_allocator] static A: ArenaGlobalAlloc = ArenaGlobalAlloc::new();`
/// in a binary whose Rust-side TLS state must live in shared memory (rustls sessions).
pub struct ArenaGlobalAlloc {
    /// Where new allocations go (null: the system).
    arena: AtomicPtr<SharedArena>,
    /// The arena frees and reallocations are checked against: the last one routed to. It
    /// stays set after `route_to_system`, so memory from the arena still returns to it.
    owner: AtomicPtr<SharedArena>,
    private_while_routed: AtomicUsize,
}

impl ArenaGlobalAlloc {
    /// Routes to the system allocator until told otherwise.
    pub const fn new() -> Self {
        ArenaGlobalAlloc {
            arena: AtomicPtr::new(ptr::null_mut()),
            owner: AtomicPtr::new(ptr::null_mut()),
            private_while_routed: AtomicUsize::new(0),
        }
    }

    /// From now on, new allocations come from `arena`. Route to one arena per process:
    /// frees are matched against the last arena routed to.
    pub fn route_to(&self, arena: &'static SharedArena) {
        let p = ptr::from_ref(arena).cast_mut();
        self.owner.store(p, Ordering::Release);
        self.arena.store(p, Ordering::Release);
    }

    /// From now on, new allocations come from the system again (frees still go by address).
    /// The routing is per process: a forked child keeps what it inherited until it changes it.
    pub fn route_to_system(&self) {
        self.arena.store(ptr::null_mut(), Ordering::Release);
    }

    /// Allocations this process made from the (private) system heap while routed to an
    /// arena, because their alignment exceeded 16. In a migrating set-up, anything
    /// reachable from shared state must not be among them.
    pub fn private_while_routed(&self) -> usize {
        self.private_while_routed.load(Ordering::Relaxed)
    }

    fn arena(&self) -> Option<&'static SharedArena> {
        // SAFETY: the pointer is null or was made from a `&'static SharedArena`.
        unsafe { self.arena.load(Ordering::Acquire).as_ref() }
    }

    fn owner(&self) -> Option<&'static SharedArena> {
        // SAFETY: as for `arena`.
        unsafe { self.owner.load(Ordering::Acquire).as_ref() }
    }
}

impl Default for ArenaGlobalAlloc {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every allocation is either the system's or the arena's (16-byte aligned, never
// used for larger alignments); frees and reallocations go to the allocator that owns the
// address (the arena's address range decides), so each pointer returns to its origin.
unsafe impl GlobalAlloc for ArenaGlobalAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.arena() {
            Some(a) if layout.align() <= 16 => a.allocate(layout.size()).map_or(ptr::null_mut(), NonNull::as_ptr),
            Some(_) => {
                self.private_while_routed.fetch_add(1, Ordering::Relaxed);
                // SAFETY: forwarded GlobalAlloc contract.
                unsafe { System.alloc(layout) }
            }
            // SAFETY: forwarded GlobalAlloc contract.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        match (self.owner(), NonNull::new(p)) {
            // SAFETY: `p` lies in the arena, so the arena allocated it and it is live.
            (Some(a), Some(nn)) if a.contains(p) => unsafe { a.free(nn) },
            // SAFETY: otherwise the system allocated it (forwarded contract).
            _ => unsafe { System.dealloc(p, layout) },
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match (self.owner(), NonNull::new(p)) {
            (Some(a), Some(nn)) if a.contains(p) => {
                // SAFETY: `p` lies in the arena and is live (forwarded contract).
                unsafe { a.reallocate(nn, new_size) }.map_or(ptr::null_mut(), NonNull::as_ptr)
            }
            // SAFETY: a system allocation (forwarded contract).
            _ => unsafe { System.realloc(p, layout, new_size) },
        }
    }
}
