//! # sipstls-manager: the confined process model
//!
//! One process owns every TLS session; SIP workers (forked processes or threads) read and
//! write plaintext on a socketpair per connection. This is what Kamailio (with
//! `tcp_main_threads`) and OpenSIPS 4.0 moved to in 2026, it works with every backend, and
//! it is sipstls's recommended default.
//!
//! ```text
//!  TLS peers ──TCP──▶ TlsManager (tokio, N threads) ──socketpair──▶ worker 0 (SIP, plaintext)
//!                     handshakes, record crypto      ──socketpair──▶ worker 1
//!                     outbound connections  ◀──control channel (SCM_RIGHTS)── workers
//! ```
//!
//! * [`control::channel`] makes a control channel per worker, before `fork()`.
//! * [`TlsManager`] (in the parent, after forking) accepts TLS connections, hands each one
//!   to a live worker with its [`ConnMeta`] (the `TlsInfo` snapshot) and, optionally, a
//!   PROXY protocol v2 header written first on the worker's socket; it opens outbound
//!   connections for workers, reusing one only for the same destination, client domain and
//!   server name.
//! * [`Worker`] is the worker side: [`Worker::accept`] and [`Worker::connect`].
//!
//! Queues are bounded ([`ManagerConfig::max_queue`]); a peer that does not read is closed
//! after [`ManagerConfig::send_timeout`]; a slow worker only slows its own connections;
//! a lost worker's connections are closed with close_notify and reported
//! ([`ManagerEvent::WorkerLost`]).
#![warn(missing_docs)]
// Public types that will grow are #[non_exhaustive]; the closed ones say why.
#![warn(clippy::exhaustive_structs, clippy::exhaustive_enums)]

mod bridge;
pub mod control;
mod error;
#[cfg(test)]
mod hello;
mod manager;
mod meta;
mod outbound;
mod sock;
mod upstream;
mod worker;

pub use control::channel;
pub use error::{CloseReason, ConnectError, WorkerError};
pub use manager::{
    ListenerConfig, ListenerKind, ListenerStats, ManagerConfig, ManagerEvent, ManagerStats, OutboundConfig, Route,
    TlsManager, Upstream,
};
pub use meta::{ConnMeta, Direction};
pub use sock::AsyncConnection;
pub use upstream::TcpUpstreams;
pub use worker::{Connection, Worker};
