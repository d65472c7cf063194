//! # sipstls-mbedtls-sys
//!
//! Mbed TLS 3.6 LTS, built for sipstls, and its raw bindings.
//!
//! The build takes the Mbed TLS source that the `mbedtls-rs-sys` crate ships and compiles it
//! with Mbed TLS's default configuration plus `c/sipstls_user_config.h`:
//!
//! - TLS 1.2 and TLS 1.3, session tickets and the server session cache, SNI, ALPN;
//! - AES-NI, and certificate validity checked against the clock;
//! - `MBEDTLS_THREADING_C` + `MBEDTLS_THREADING_ALT`: every mutex goes through the functions
//!   given to [`threading_set_alt`], which must be called before any other Mbed TLS call;
//! - `MBEDTLS_PLATFORM_MEMORY`: allocations through [`platform_set_calloc_free`];
//! - `MBEDTLS_PSA_CRYPTO_EXTERNAL_RNG`: PSA crypto's random bytes come from the function given
//!   to [`sipstls_mbedtls_set_psa_rng`];
//! - no renegotiation, no key files, no sockets, timers or debug output of Mbed TLS's own.
//!
//! Names are Mbed TLS's without their `mbedtls_`/`MBEDTLS_` prefix (`ssl_init`,
//! `ERR_SSL_WANT_READ`); PSA names keep theirs. The `sipstls_mbedtls_*` functions come from
//! a small C shim (`c/shim.c`): the header-only accessors the backend needs, and two facts of
//! a running handshake (resumed or not, the key exchange group).
//!
//! Building needs a C compiler, libclang (bindgen), and for `mbedtls-rs-sys`'s own build
//! step cmake, clang and ninja (Debian: `gcc libclang-dev cmake clang ninja-build`).
#![no_std]
#![allow(non_upper_case_globals, non_camel_case_types, non_snake_case, missing_docs)]
#![allow(clippy::all, clippy::undocumented_unsafe_blocks)]
#![allow(unsafe_op_in_unsafe_fn)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
