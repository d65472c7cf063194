//! # sipstls-redis
//!
//! Resumption across a cluster of SIP servers through one Redis:
//!
//! - [`RedisSessionStore`]: a [`SessionStore`](sipstls_core::SessionStore) for
//!   [`DomainConfig::session_store`](sipstls_core::DomainConfig::session_store): a session
//!   cached by node A resumes on node B.
//! - [`RedisTicketKeys`]: a [`TicketKeyProvider`](sipstls_core::TicketKeyProvider) for
//!   [`DomainConfig::ticket_keys`](sipstls_core::DomainConfig::ticket_keys): one key per
//!   rotation period, created by whichever node needs it first (`SET NX`), so every node
//!   seals and opens tickets with the same keys.
//!
//! Every value in Redis is sealed with the cluster secret ([`RedisConfig::secret`],
//! AES-256-GCM, the Redis key as additional data): a corrupted, forged or moved entry is
//! rejected, and whoever reads Redis learns no session secret or ticket key.
//!
//! A Redis that is down or slow never fails or stalls a handshake: every command runs under
//! connect, read and write timeouts ([`RedisConfig::connect_timeout`],
//! [`RedisConfig::io_timeout`]), and after a failure Redis is skipped for
//! [`RedisConfig::retry_after`] (the handshake then is a full one, and adds no timeout).
//! Nothing here panics on what Redis returns, and keys and secrets are never printed.
// Public types that will grow are #[non_exhaustive]; the closed ones say why.
#![warn(clippy::exhaustive_structs, clippy::exhaustive_enums)]

mod conn;
mod keys;
mod session;
#[doc(hidden)]
pub mod testing;

pub use conn::{RedisConfig, RedisStats};
pub use keys::RedisTicketKeys;
pub use session::RedisSessionStore;
