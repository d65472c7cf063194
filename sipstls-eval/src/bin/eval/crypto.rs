//! The crypto limit of this machine for each backend: how many server-side handshakes per
//! second the public-key operations alone would allow, measured with each backend's own
//! crypto library (aws-lc through aws-lc-rs for rustls, libcrypto through the openssl
//! crate for OpenSSL) in the same run as the handshakes.
//!
//! A TLS 1.3 full handshake costs the server one X25519 key generation, one X25519
//! agreement and one signature (ECDSA P-256 with SHA-256, or RSA-2048 PSS with SHA-256);
//! a TLS 1.2 ECDHE handshake the same; a TLS 1.3 resumption (psk_dhe_ke) only the X25519
//! pair; a TLS 1.2 session-ID resumption no public-key operation (no limit is given). The
//! limit leaves out hashing, the key schedule and record protection, so a stack reaches
//! it only if everything else is free: the fraction says how close it comes.

// Without rustls and OpenSSL no crypto library here is known: the timers go unused.
#![cfg_attr(
    not(any(feature = "rustls", feature = "openssl", feature = "boring", feature = "mbedtls")),
    allow(dead_code, unused_variables)
)]

use std::time::Instant;

use super::bench::{Key, Kind, Plan};
use super::stats::Sample;
use sipstls::ProtocolVersion;

/// Per-operation times (µs, medians) of one backend's crypto library.
#[derive(Debug, Clone)]
pub struct CryptoTimes {
    /// Backend name.
    pub backend: String,
    /// X25519 key generation + agreement.
    pub x25519_us: f64,
    /// ECDSA P-256 SHA-256 signature.
    pub ecdsa_sign_us: f64,
    /// RSA-2048 PSS SHA-256 signature.
    pub rsa_sign_us: f64,
}

impl CryptoTimes {
    /// Server handshakes per second the public-key operations of `kind` allow, if any.
    pub fn limit(&self, kind: Kind) -> Option<f64> {
        let us = match kind {
            Kind::Full { key: Key::Ecdsa, .. } => self.x25519_us + self.ecdsa_sign_us,
            Kind::Full { key: Key::Rsa, .. } => self.x25519_us + self.rsa_sign_us,
            Kind::Resumed { version: ProtocolVersion::Tls13, .. } => self.x25519_us,
            _ => return None,
        };
        Some(1e6 / us)
    }
}

/// Measures the backends that this harness knows the crypto library of.
pub fn measure(names: &[String], plan: &Plan) -> Vec<Result<CryptoTimes, String>> {
    names
        .iter()
        .filter_map(|name| {
            let r: Result<CryptoTimes, String> = match name.as_str() {
                #[cfg(feature = "rustls")]
                "rustls" => Some(aws_lc::times(plan)),
                #[cfg(feature = "openssl")]
                "openssl" => Some(libcrypto::times(plan)),
                #[cfg(feature = "boring")]
                "boring" => Some(libcrypto::times(plan)),
                #[cfg(feature = "mbedtls")]
                "mbedtls" => Some(mbed::times(plan)),
                _ => None,
            }?;
            Some(r.map_err(|e| format!("{name}: {e}")))
        })
        .collect()
}

/// Why a backend of the run has no crypto limit (shown in the report), if it has none.
pub fn no_limit_reason(backend: &str) -> Option<&'static str> {
    match backend {
        "wolfssl" => Some(
            "not timed: wolfssl-sys binds wolfCrypt's ECDSA and RSA calls but not its Curve25519 ones, and \
             wolfSSL's TLS 1.3 key share in this build is the X25519MLKEM768 hybrid (an ML-KEM-768 \
             encapsulation beside X25519), so the limit would need ML-KEM timed too; not written yet",
        ),
        _ => None,
    }
}

/// Per backend and operation, the faster of two passes (errors are kept).
pub fn fastest(
    a: Vec<Result<CryptoTimes, String>>,
    b: Vec<Result<CryptoTimes, String>>,
) -> Vec<Result<CryptoTimes, String>> {
    a.into_iter()
        .zip(b)
        .map(|(a, b)| {
            let (a, b) = (a?, b?);
            Ok(CryptoTimes {
                backend: a.backend,
                x25519_us: a.x25519_us.min(b.x25519_us),
                ecdsa_sign_us: a.ecdsa_sign_us.min(b.ecdsa_sign_us),
                rsa_sign_us: a.rsa_sign_us.min(b.rsa_sign_us),
            })
        })
        .collect()
}

/// Median µs per call of `f` over `plan.reps` rounds of `n` calls.
fn median_us(plan: &Plan, n: usize, mut f: impl FnMut() -> Result<(), String>) -> Result<f64, String> {
    for _ in 0..n / 10 + 1 {
        f()?;
    }
    let mut v = Vec::new();
    for _ in 0..plan.reps {
        let start = Instant::now();
        for _ in 0..n {
            f()?;
        }
        v.push(start.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
    Ok(Sample::new(v).ok_or("no timing")?.median())
}

fn counts(plan: &Plan) -> (usize, usize) {
    if plan.quick {
        (300, 100)
    } else {
        (2_000, 300)
    }
}

#[cfg(feature = "rustls")]
mod aws_lc {
    use super::*;
    use aws_lc_rs::agreement::{agree_ephemeral, EphemeralPrivateKey, UnparsedPublicKey, X25519};
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, RSA_PSS_SHA256};
    use sipstls_conformance::pki::pki;

    fn pkcs8(pem: &str) -> Result<Vec<u8>, String> {
        let k = sipstls::PrivateKey::from_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
        match k.format() {
            sipstls::PrivateKeyFormat::Pkcs8 => Ok(k.der().to_vec()),
            other => Err(format!("the test key is {other:?}, not PKCS#8")),
        }
    }

    pub fn times(plan: &Plan) -> Result<CryptoTimes, String> {
        let (n, n_rsa) = counts(plan);
        let rng = SystemRandom::new();
        let peer = EphemeralPrivateKey::generate(&X25519, &rng).map_err(|e| e.to_string())?;
        let peer_pub = peer.compute_public_key().map_err(|e| e.to_string())?.as_ref().to_vec();
        let x25519_us = median_us(plan, n, || {
            let k = EphemeralPrivateKey::generate(&X25519, &rng).map_err(|e| e.to_string())?;
            let _public = k.compute_public_key().map_err(|e| e.to_string())?;
            agree_ephemeral(k, UnparsedPublicKey::new(&X25519, &peer_pub), "agree", |s| Ok::<_, &str>(s.len()))
                .map(drop)
                .map_err(|e| e.to_string())
        })?;
        let ecdsa = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8(&pki().server_ecdsa.key_pem)?)
            .map_err(|e| e.to_string())?;
        let msg = [0x5a_u8; 130]; // a TLS 1.3 CertificateVerify input is 64 + 34 + 32 bytes
        let ecdsa_sign_us = median_us(plan, n, || ecdsa.sign(&rng, &msg).map(drop).map_err(|e| e.to_string()))?;
        let rsa = RsaKeyPair::from_pkcs8(&pkcs8(&pki().server_rsa.key_pem)?).map_err(|e| e.to_string())?;
        let mut sig = vec![0u8; rsa.public_modulus_len()];
        let rsa_sign_us =
            median_us(plan, n_rsa, || rsa.sign(&RSA_PSS_SHA256, &rng, &msg, &mut sig).map_err(|e| e.to_string()))?;
        let _ = ecdsa.public_key();
        Ok(CryptoTimes { backend: "rustls".into(), x25519_us, ecdsa_sign_us, rsa_sign_us })
    }
}

/// libcrypto through the openssl crate, or BoringSSL's through the boring crate (the same
/// API but for X25519 key generation and raw public keys).
#[cfg(any(feature = "openssl", feature = "boring"))]
mod libcrypto {
    use super::*;
    #[cfg(feature = "boring")]
    use boring as ssl_lib;
    #[cfg(feature = "openssl")]
    use openssl as ssl_lib;
    use sipstls_conformance::pki::pki;
    use ssl_lib::derive::Deriver;
    use ssl_lib::hash::MessageDigest;
    use ssl_lib::pkey::{PKey, Private};
    use ssl_lib::rsa::Padding;
    use ssl_lib::sign::{RsaPssSaltlen, Signer};

    type E = ssl_lib::error::ErrorStack;

    #[cfg(feature = "openssl")]
    fn x25519() -> Result<PKey<Private>, E> {
        PKey::generate_x25519()
    }

    #[cfg(feature = "boring")]
    fn x25519() -> Result<PKey<Private>, E> {
        PKey::generate(ssl_lib::pkey::Id::X25519)
    }

    /// The public half as the peer's key share would arrive: 32 raw bytes, parsed.
    #[cfg(feature = "openssl")]
    fn public_of(k: &PKey<Private>) -> Result<PKey<ssl_lib::pkey::Public>, E> {
        PKey::public_key_from_raw_bytes(&k.raw_public_key()?, ssl_lib::pkey::Id::X25519)
    }

    /// The boring crate has no raw public-key import: the peer's key is used as generated
    /// (parsing 32 bytes is negligible beside the scalar multiplications).
    #[cfg(feature = "boring")]
    fn public_of(k: &PKey<Private>) -> Result<PKey<Private>, E> {
        Ok(k.clone())
    }

    #[cfg(feature = "openssl")]
    fn raw_public(k: &PKey<Private>) -> Result<Vec<u8>, E> {
        k.raw_public_key()
    }

    #[cfg(feature = "boring")]
    fn raw_public(k: &PKey<Private>) -> Result<Vec<u8>, E> {
        let mut out = [0u8; 32];
        k.raw_public_key(&mut out).map(<[u8]>::to_vec)
    }

    pub fn times(plan: &Plan) -> Result<CryptoTimes, String> {
        let e = |e: E| e.to_string();
        let (n, n_rsa) = counts(plan);
        let peer_pub = public_of(&x25519().map_err(e)?).map_err(e)?;
        let x25519_us = median_us(plan, n, || {
            let k = x25519().map_err(e)?;
            let _public = raw_public(&k).map_err(e)?;
            let mut d = Deriver::new(&k).map_err(e)?;
            d.set_peer(&peer_pub).map_err(e)?;
            d.derive_to_vec().map(drop).map_err(e)
        })?;
        let msg = [0x5a_u8; 130];
        let ec = PKey::private_key_from_pem(pki().server_ecdsa.key_pem.as_bytes()).map_err(e)?;
        let ecdsa_sign_us = median_us(plan, n, || {
            let mut s = Signer::new(MessageDigest::sha256(), &ec).map_err(e)?;
            s.sign_oneshot_to_vec(&msg).map(drop).map_err(e)
        })?;
        let rsa = PKey::private_key_from_pem(pki().server_rsa.key_pem.as_bytes()).map_err(e)?;
        let rsa_sign_us = median_us(plan, n_rsa, || {
            let mut s = Signer::new(MessageDigest::sha256(), &rsa).map_err(e)?;
            s.set_rsa_padding(Padding::PKCS1_PSS).map_err(e)?;
            s.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH).map_err(e)?;
            s.sign_oneshot_to_vec(&msg).map(drop).map_err(e)
        })?;
        let backend = if cfg!(feature = "boring") { "boring" } else { "openssl" };
        Ok(CryptoTimes { backend: backend.into(), x25519_us, ecdsa_sign_us, rsa_sign_us })
    }
}

/// Mbed TLS 3.6 through `sipstls-mbedtls-sys` (the build sipstls-backend-mbedtls links): X25519 as
/// ECDH on Curve25519 (`mbedtls_ecdh_gen_public` + `_compute_shared`), ECDSA P-256 and
/// RSA-2048 PSS through `mbedtls_pk_sign_ext` over a SHA-256 hash, with the OS as random
/// source.
#[cfg(feature = "mbedtls")]
#[allow(unsafe_code)]
mod mbed {
    use super::super::native_mbedtls::os_random;
    use super::*;
    use sipstls_conformance::pki::pki;
    use sipstls_mbedtls_sys as sys;
    use std::ffi::c_int;
    use std::ptr;

    fn ok(what: &str, ret: c_int) -> Result<(), String> {
        if ret == 0 {
            Ok(())
        } else {
            Err(format!("Mbed TLS {what}: -0x{:04X}", ret.unsigned_abs()))
        }
    }

    /// A parsed private key, freed on drop.
    struct Key(Box<sys::pk_context>);

    impl Key {
        fn parse(pem: &str) -> Result<Key, String> {
            let mut z = pem.as_bytes().to_vec();
            z.push(0); // Mbed TLS parses PEM only with its terminating NUL
            let mut k = Key(Box::default());
            // SAFETY: initialise, then parse into the boxed context (freed by Drop).
            let ret = unsafe {
                sys::pk_init(&mut *k.0);
                sys::pk_parse_key(&mut *k.0, z.as_ptr(), z.len(), ptr::null(), 0, Some(os_random), ptr::null_mut())
            };
            ok("key", ret).map(|()| k)
        }

        fn sign(&mut self, kind: sys::pk_type_t, hash: &[u8; 32], sig: &mut [u8]) -> Result<(), String> {
            let mut len = 0;
            // SAFETY: the key is parsed; `hash` and `sig` are valid for their lengths.
            let ret = unsafe {
                sys::pk_sign_ext(
                    kind,
                    &mut *self.0,
                    sys::MD_SHA256,
                    hash.as_ptr(),
                    hash.len(),
                    sig.as_mut_ptr(),
                    sig.len(),
                    &mut len,
                    Some(os_random),
                    ptr::null_mut(),
                )
            };
            ok("sign", ret)
        }
    }

    impl Drop for Key {
        fn drop(&mut self) {
            // SAFETY: initialised in `parse`; freed once.
            unsafe { sys::pk_free(&mut *self.0) };
        }
    }

    /// One X25519 key generation and agreement with a fixed peer.
    fn x25519(grp: &mut sys::ecp_group, peer: &sys::ecp_point) -> Result<(), String> {
        let (mut d, mut q, mut z) = (sys::mpi::default(), sys::ecp_point::default(), sys::mpi::default());
        // SAFETY: every object is initialised before use and freed after; the group is loaded.
        unsafe {
            sys::mpi_init(&mut d);
            sys::ecp_point_init(&mut q);
            sys::mpi_init(&mut z);
            let mut ret = sys::ecdh_gen_public(grp, &mut d, &mut q, Some(os_random), ptr::null_mut());
            if ret == 0 {
                ret = sys::ecdh_compute_shared(grp, &mut z, peer, &d, Some(os_random), ptr::null_mut());
            }
            sys::mpi_free(&mut d);
            sys::ecp_point_free(&mut q);
            sys::mpi_free(&mut z);
            ok("X25519", ret)
        }
    }

    pub fn times(plan: &Plan) -> Result<CryptoTimes, String> {
        // The library's mutexes and PSA crypto are set up by the backend.
        sipstls::mbedtls::init().map_err(|e| e.to_string())?;
        let (n, n_rsa) = counts(plan);
        let (mut grp, mut peer_d, mut peer) =
            (sys::ecp_group::default(), sys::mpi::default(), sys::ecp_point::default());
        // SAFETY: initialise and load the group, then make the peer's key pair.
        let ret = unsafe {
            sys::ecp_group_init(&mut grp);
            sys::mpi_init(&mut peer_d);
            sys::ecp_point_init(&mut peer);
            let r = sys::ecp_group_load(&mut grp, sys::ECP_DP_CURVE25519);
            if r == 0 {
                sys::ecdh_gen_public(&mut grp, &mut peer_d, &mut peer, Some(os_random), ptr::null_mut())
            } else {
                r
            }
        };
        let x25519_us = ok("X25519 group", ret).and_then(|()| median_us(plan, n, || x25519(&mut grp, &peer)));
        // SAFETY: initialised above; freed once.
        unsafe {
            sys::ecp_group_free(&mut grp);
            sys::mpi_free(&mut peer_d);
            sys::ecp_point_free(&mut peer);
        }
        let x25519_us = x25519_us?;
        let msg = [0x5a_u8; 130];
        let mut hash = [0u8; 32];
        // SAFETY: `msg` and `hash` are valid for their lengths (SHA-256 writes 32 bytes).
        ok("SHA-256", unsafe { sys::sha256(msg.as_ptr(), msg.len(), hash.as_mut_ptr(), 0) })?;
        let mut sig = vec![0u8; 1024];
        let mut ec = Key::parse(&pki().server_ecdsa.key_pem)?;
        let ecdsa_sign_us = median_us(plan, n, || ec.sign(sys::PK_ECDSA, &hash, &mut sig))?;
        let mut rsa = Key::parse(&pki().server_rsa.key_pem)?;
        let rsa_sign_us = median_us(plan, n_rsa, || rsa.sign(sys::PK_RSASSA_PSS, &hash, &mut sig))?;
        Ok(CryptoTimes { backend: "mbedtls".into(), x25519_us, ecdsa_sign_us, rsa_sign_us })
    }
}
