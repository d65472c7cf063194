//! What a backend can do, as bitflags.

use bitflags::bitflags;

bitflags! {
    /// Capabilities of a backend, reported by [`Backend::capabilities`](crate::Backend::capabilities).
    ///
    /// A configuration that needs a capability the backend lacks is refused with
    /// [`Error::Unsupported`](crate::Error::Unsupported) naming the missing flag. The
    /// conformance suite checks every claimed flag, and checks that every flag not claimed
    /// is refused.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct Capabilities: u64 {
        /// TLS 1.2.
        const TLS12 = 1 << 0;
        /// TLS 1.3.
        const TLS13 = 1 << 1;
        /// Client certificates: a server can request, require and verify them; a client can
        /// present one.
        const CLIENT_CERT = 1 << 2;
        /// Server-side SNI selects a different TLS domain during the handshake.
        const SNI_SWITCH = 1 << 3;
        /// Application-Layer Protocol Negotiation.
        const ALPN = 1 << 4;
        /// Stateless resumption with session tickets.
        const RESUMPTION_TICKETS = 1 << 5;
        /// TLS 1.2 stateful resumption with session IDs.
        const RESUMPTION_SESSION_ID = 1 << 6;
        /// An explicit TLS 1.2 cipher suite list.
        const CIPHER_LIST_TLS12 = 1 << 7;
        /// An explicit TLS 1.3 cipher suite list.
        const CIPHER_SUITES_TLS13 = 1 << 8;
        /// Certificate revocation lists in [`DomainConfig::crls`](crate::DomainConfig::crls)
        /// are enforced when verifying the peer's chain.
        const CRL = 1 << 9;
        /// Session secrets are written to [`DomainConfig::key_log`](crate::DomainConfig::key_log)
        /// in the NSS key log format.
        const KEY_LOG = 1 << 10;
        /// A server domain holds several identities (say RSA and ECDSA) and the handshake
        /// picks the one the client's signature algorithms allow.
        const MULTIPLE_IDENTITIES = 1 << 11;
        /// Server sessions are cached in an external [`SessionStore`](crate::store::SessionStore)
        /// ([`DomainConfig::session_store`](crate::DomainConfig::session_store)), so a
        /// session made by one process or node resumes on another.
        const SESSION_STORE = 1 << 12;
        /// Stateless tickets are sealed with keys from a
        /// [`TicketKeyProvider`](crate::store::TicketKeyProvider)
        /// ([`DomainConfig::ticket_keys`](crate::DomainConfig::ticket_keys)), so a ticket
        /// issued by one node is accepted by another.
        const TICKET_KEYS = 1 << 13;
        /// Allocations of the library can be routed to [`AllocatorHooks`](crate::hooks::AllocatorHooks).
        const ALLOCATOR_HOOK = 1 << 16;
        /// The library's internal locks can be replaced through [`LockHooks`](crate::hooks::LockHooks).
        const LOCK_HOOK = 1 << 17;
        /// Process model: confined (one process owns every session).
        const MODEL_CONFINED = 1 << 24;
        /// Process model: pinned (sessions stay in the worker that created them, domains
        /// are shared by fork).
        const MODEL_PINNED = 1 << 25;
        /// Process model: migrating (any worker advances any session in shared memory).
        const MODEL_MIGRATING = 1 << 26;
    }
}
