//! Configures and compiles wolfSSL with the compile-time options sipstls's wolfSSL backend
//! needs, then generates the bindings from the installed headers.
//!
//! The source is the one wolfssl-sys ships: its build script copies it into its `OUT_DIR`
//! (`wolfssl-src`), applies its patches and runs `autoreconf`, then builds it out of tree
//! and reports that directory as its `root` metadata (`DEP_WOLFSSL_ROOT`). This script
//! runs wolfSSL's `configure` on that source from a build directory of its own, with
//! wolfssl-sys's configure line (as of wolfssl-sys 5.3.0, for the features
//! sipstls-backend-wolfssl used: default `postquantum` and `alpn`) plus [`SIPSTLS_DEFINES`] and
//! `--enable-crl`. Nothing is downloaded, and the options come from this crate alone, so a
//! crate outside the sipstls workspace gets the same wolfSSL.
//!
//! The archive is installed under the name `libsipstls_wolfssl.a`: wolfssl-sys's own
//! `libwolfssl.a` (built without these options) is on the same link search path, and must
//! never be the one picked.

use std::collections::HashSet;
use std::env;
use std::fs;
use std::path::{Path, PathBuf};

/// What wolfssl-sys's configure line leaves out and sipstls needs, passed to wolfSSL's
/// `configure` as `C_EXTRA_FLAGS` (appended to `CFLAGS` and recorded in `options.h`).
const SIPSTLS_DEFINES: &[&str] = &[
    // Session tickets (TLS 1.2 RFC 5077, TLS 1.3 resumption).
    "-DHAVE_SESSION_TICKET",
    // The peer's certificate after the handshake.
    "-DKEEP_PEER_CERT",
    // The peer's chain as sent.
    "-DSESSION_CERTS",
    // The verify callback also on success (the RFC 5922 name check runs there).
    "-DWOLFSSL_ALWAYS_VERIFY_CB",
    // Per-domain session id contexts (wolfSSL's session cache is process-wide).
    "-DWOLFSSL_SESSION_ID_CTX",
    // TLS 1.3 ticket nonces longer than 8 bytes (rustls servers send 32).
    "-DWOLFSSL_TICKET_NONCE_MALLOC",
    // The TLS 1.2 master secret / TLS 1.3 traffic secret callbacks (the key log).
    "-DHAVE_SECRET_CALLBACK",
    // Memory, not features: `--enable-aes-bitsliced` embeds a key schedule of
    // 15*16*BS_WORD_SIZE words in every Aes object (64-bit words by default: 122,880
    // bytes, two per TLS connection), although AES-NI does the work wherever the CPU has
    // it. 8-bit words (a size aes.h supports) make it 1,920 bytes; see
    // docs/wolfssl-idle-memory.md.
    "-DWC_AES_BS_WORD_SIZE=8",
];

/// Macros bindgen would emit twice (wolfSSL defines them in more than one header), as
/// wolfssl-sys skips them.
const IGNORED_MACROS: &[&str] = &[
    "IPPORT_RESERVED",
    "EVP_PKEY_DH",
    "BIO_CLOSE",
    "BIO_NOCLOSE",
    "CRYPTO_LOCK",
    "ASN1_STRFLGS_ESC_MSB",
    "SSL_MODE_RELEASE_BUFFERS",
    "GEN_IPADD",
    "EVP_PKEY_RSA",
];

#[derive(Debug)]
struct IgnoreMacros(HashSet<&'static str>);

impl bindgen::callbacks::ParseCallbacks for IgnoreMacros {
    fn will_parse_macro(&self, name: &str) -> bindgen::callbacks::MacroParsingBehavior {
        if self.0.contains(name) {
            bindgen::callbacks::MacroParsingBehavior::Ignore
        } else {
            bindgen::callbacks::MacroParsingBehavior::Default
        }
    }
}

fn main() {
    let var = |name: &str| env::var(name).unwrap_or_default();
    if var("CARGO_CFG_TARGET_FAMILY").split(',').all(|f| f != "unix") {
        panic!(
            "sipstls-wolfssl-sys builds wolfSSL with its autotools configure script, on Unix \
             targets only (target family: {})",
            var("CARGO_CFG_TARGET_FAMILY")
        );
    }

    println!("cargo:rerun-if-env-changed=DEP_WOLFSSL_ROOT");
    let Some(root) = env::var_os("DEP_WOLFSSL_ROOT") else {
        panic!("wolfssl-sys did not report where it built wolfSSL (DEP_WOLFSSL_ROOT)");
    };
    let src = PathBuf::from(root).join("wolfssl-src");
    if !src.join("configure").is_file() || !src.join("wolfssl").join("version.h").is_file() {
        panic!("no configured wolfSSL source at {} (wolfssl-sys copies it there before building it)", src.display());
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    let install = configure_and_build(&src, &out_dir, &var("CARGO_CFG_TARGET_ARCH"));
    let include = install.join("include");

    // The same archive, renamed: see the module documentation.
    let link_dir = out_dir.join("link");
    fs::create_dir_all(&link_dir).expect("create the link directory");
    let archive = install.join("lib").join("libwolfssl.a");
    fs::copy(&archive, link_dir.join("libsipstls_wolfssl.a"))
        .unwrap_or_else(|e| panic!("cannot copy {}: {e}", archive.display()));
    println!("cargo:rustc-link-search=native={}", link_dir.display());
    println!("cargo:rustc-link-lib=static=sipstls_wolfssl");

    // Read by dependents' build scripts as DEP_SIPSTLS_WOLFSSL_ROOT and
    // DEP_SIPSTLS_WOLFSSL_INCLUDE (sipstls-backend-wolfssl checks options.h there).
    println!("cargo:root={}", install.display());
    println!("cargo:include={}", include.display());

    generate_bindings(&include, &out_dir);
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=build.rs");
}

/// wolfssl-sys 5.3.0's configure line (for its `postquantum` and `alpn` features, none of
/// its optional configure features) plus sipstls's options. Returns the install prefix.
fn configure_and_build(src: &Path, out_dir: &Path, arch: &str) -> PathBuf {
    let mut conf = autotools::Config::new(src);
    conf.out_dir(out_dir)
        .disable("benchmark", None)
        .disable("examples", None)
        .disable("oldtls", None)
        .disable_shared()
        .enable_static()
        .disable("sys-ca-certs", None)
        .disable("dilithium", None)
        .enable("aes-bitsliced", None)
        .enable("curve25519", None)
        .enable("dtls", None)
        .enable("dtls13", None)
        .enable("dtls-frag-ch", None)
        .enable("dtls-mtu", None)
        .enable("secure-renegotiation", None)
        .enable("sni", None)
        .enable("sp", Some("yes,4096"))
        .enable("sp-asm", None)
        .enable("supportedcurves", None)
        .enable("tls13", None)
        .enable("experimental", None)
        // wolfssl-sys's `postquantum` (default) feature: ML-KEM with the SHA-3 it needs.
        .enable("mlkem", Some("yes,all"))
        .enable("sha3", None)
        .enable("extra-pqc-hybrids", None);
    // wolfssl-sys's optional configure features, all off as sipstls-backend-wolfssl used them.
    for feature in ["aesccm", "dh", "opensslall", "opensslextra", "psk", "singlethreaded"] {
        conf.disable(feature, None);
    }
    for flag in [
        "-g",
        "-fPIC",
        "-DWOLFSSL_DTLS_ALLOW_FUTURE",
        "-DDTLS13_MIN_RTX_INTERVAL=100",
        "-DWOLFSSL_MIN_RSA_BITS=2048",
        "-DWOLFSSL_MIN_ECC_BITS=256",
        "-DUSE_CERT_BUFFERS_4096",
        "-DUSE_CERT_BUFFERS_256",
        "-DWOLFSSL_NO_SPHINCS",
        "-DWOLFSSL_DTLS13_ECHO_LEGACY_SESSION_ID",
        "-DWOLFSSL_TLS13_MIDDLEBOX_COMPAT",
        "-DWOLFSSL_ALLOW_SINGLE_LABEL_HOSTNAME",
        // wolfssl-sys's `alpn` feature.
        "-DHAVE_ALPN",
        // Its `postquantum` feature.
        "-DWOLFSSL_ML_KEM_USE_OLD_IDS",
    ] {
        conf.cflag(flag);
    }
    match arch {
        "aarch64" | "arm" => {
            conf.enable("armasm", None);
        }
        "x86" => {
            conf.disable("sp-asm", None);
        }
        "x86_64" => {
            conf.enable("intelasm", None).enable("aesni", None);
        }
        "riscv64" => {
            conf.enable("riscv-asm", None).disable("sp-asm", None).cflag("-fomit-frame-pointer");
        }
        _ => {}
    }
    // sipstls's additions. C_EXTRA_FLAGS as set here replaces any in the environment.
    conf.env("C_EXTRA_FLAGS", SIPSTLS_DEFINES.join(" ")).enable("crl", None);
    println!("cargo:rerun-if-env-changed=CFLAGS");
    conf.build()
}

/// Bindings for wrapper.h's headers, as wolfssl-sys generates them (without the C
/// comments, which are no rustdoc).
fn generate_bindings(include: &Path, out_dir: &Path) {
    let include_str = include.to_str().expect("OUT_DIR is UTF-8");
    let mut builder = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_arg(format!("-I{include_str}/"))
        .parse_callbacks(Box::new(IgnoreMacros(IGNORED_MACROS.iter().copied().collect())))
        .generate_comments(false)
        .blocklist_function("wolfSSL_BIO_vprintf");
    for header in ["wolfssl/.*\\.h", "wolfssl/wolfcrypt/.*\\.h", "wolfssl/openssl/compat_types\\.h"] {
        builder = builder.allowlist_file(format!("{}/{header}", regex_escape(include_str)));
    }
    builder
        .generate()
        .expect("generate the wolfSSL bindings")
        .write_to_file(out_dir.join("bindings.rs"))
        .expect("write bindings.rs");
}

/// `path` as a regular expression matching itself (bindgen's allowlists are regexes).
fn regex_escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
