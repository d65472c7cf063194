//! Shared code of the sipstls examples: command-line options, SIP stream framing and
//! responses, and a threaded TLS listener.

pub mod cli;
pub mod server;
pub mod sip;
