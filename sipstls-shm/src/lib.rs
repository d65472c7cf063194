//! # sipstls-shm
//!
//! Shared memory for the pinned and migrating process models: a [`SharedArena`] mapped
//! before `fork()` (allocator control block, lock and accounting inside the mapping,
//! 16-byte alignment, low-memory thresholds); [`RobustMutex`], a process-shared mutex
//! that reports a dead holder instead of wedging the others, and [`PidLock`], a cheaper
//! lock with the same report for the arena's hot path; [`ShmSessionStore`], a
//! session store in the arena, so forked workers resume each other's sessions.
// Public types that will grow are #[non_exhaustive]; the closed ones say why.
#![warn(clippy::exhaustive_structs, clippy::exhaustive_enums)]

mod arena;
mod global;
mod lock;
mod locks;
mod pidlock;
mod store;

pub use arena::{ArenaStats, SharedArena, Thresholds};
pub use global::ArenaGlobalAlloc;
pub use lock::RobustMutex;
pub use locks::{SessionLocks, SharedLocks};
pub use pidlock::PidLock;
pub use store::ShmSessionStore;
