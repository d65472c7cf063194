//! Raw bindings to wolfSSL, built with the compile-time options sipstls's wolfSSL backend
//! needs.
//!
//! build.rs compiles the wolfSSL source that the registry crate wolfssl-sys ships, with
//! wolfssl-sys's configure line plus session tickets, the peer certificate and chain after
//! the handshake, the verify callback on success, per-domain session id contexts, long
//! TLS 1.3 ticket nonces, the secret callbacks (key log), CRLs and a small bitsliced AES
//! key schedule. A crate depending on sipstls gets them with the cargo feature alone: no
//! environment variables or `.cargo/config.toml` of its own.
//!
//! The items are bindgen's output for wolfSSL's headers (`wolfssl/ssl.h` and the
//! wolfCrypt headers it pulls in), the same set wolfssl-sys binds. wolfSSL is GPLv3: so is
//! every binary linking this crate.

/// bindgen's output (build.rs writes it into `OUT_DIR`).
#[allow(
    missing_docs,
    dead_code,
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    improper_ctypes,
    unsafe_op_in_unsafe_fn,
    unknown_lints,
    unnecessary_transmutes,
    clippy::all,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]
mod bindings {
    include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
}

pub use bindings::*;
