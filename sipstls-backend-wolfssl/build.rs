//! Checks that the bundled wolfSSL was compiled with what this backend needs.
//!
//! wolfssl-sys's configure line leaves out session tickets, the peer certificate after the
//! handshake, the peer chain, the verify callback on success, per-domain session id
//! contexts and CRLs. sipstls-wolfssl-sys builds the same source with them; this script
//! reads the `options.h` of the wolfSSL it built. The name check (RFC 5922) and
//! client-certificate reporting cannot work without them, so a build without them stops
//! here instead of producing a backend that would silently verify less.

use std::env;
use std::fs;
use std::path::PathBuf;

const REQUIRED: &[(&str, &str)] = &[
    ("HAVE_SESSION_TICKET", "session tickets (TLS 1.2 RFC 5077 and TLS 1.3 resumption)"),
    ("KEEP_PEER_CERT", "the peer's certificate after the handshake"),
    ("SESSION_CERTS", "the peer's certificate chain"),
    ("WOLFSSL_ALWAYS_VERIFY_CB", "the verify callback on success (the RFC 5922 name check runs there)"),
    ("WOLFSSL_SESSION_ID_CTX", "per-domain session id contexts (wolfSSL's session cache is process-wide)"),
    ("WOLFSSL_TICKET_NONCE_MALLOC", "TLS 1.3 ticket nonces longer than 8 bytes (rustls servers send 32)"),
    ("HAVE_SECRET_CALLBACK", "the TLS secret callbacks (the key log)"),
    ("HAVE_CRL", "certificate revocation lists (configure --enable-crl)"),
    ("HAVE_ALPN", "ALPN"),
    ("HAVE_SNI", "SNI"),
    ("WOLFSSL_TLS13", "TLS 1.3"),
];

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_SIPSTLS_WOLFSSL_INCLUDE");
    let Some(include) = env::var_os("DEP_SIPSTLS_WOLFSSL_INCLUDE") else {
        panic!("sipstls-wolfssl-sys did not report its include directory (DEP_SIPSTLS_WOLFSSL_INCLUDE)");
    };
    let options = PathBuf::from(include).join("wolfssl").join("options.h");
    println!("cargo:rerun-if-changed={}", options.display());
    let text = fs::read_to_string(&options).unwrap_or_else(|e| panic!("cannot read {}: {e}", options.display()));
    let defined = |name: &str| {
        text.lines().any(|l| {
            let mut w = l.split_whitespace();
            w.next() == Some("#define") && w.next() == Some(name)
        })
    };
    let missing: Vec<String> =
        REQUIRED.iter().filter(|(d, _)| !defined(d)).map(|(d, why)| format!("  {d}: {why}")).collect();
    if !missing.is_empty() {
        panic!(
            "the wolfSSL built by sipstls-wolfssl-sys ({}) lacks compile-time features the sipstls \
             wolfssl backend needs:\n{}\n\
             sipstls-wolfssl-sys's build.rs passes them to wolfSSL's configure (C_EXTRA_FLAGS and \
             --enable-crl): its configure line no longer matches the wolfSSL source wolfssl-sys ships, \
             or the environment (CFLAGS, enable_* variables) overrode it.",
            options.display(),
            missing.join("\n")
        );
    }
}
