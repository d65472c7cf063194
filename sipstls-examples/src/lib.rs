//! Shared code of the sipstls examples: command-line options, SIP stream framing and
//! responses, and a threaded TLS listener.

pub mod cli;
pub mod client;
pub mod registrar;
pub mod server;
pub mod sip;
pub mod sipserver;
