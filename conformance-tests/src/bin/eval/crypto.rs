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
#![cfg_attr(not(any(feature = "rustls", feature = "openssl")), allow(dead_code, unused_variables))]

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
                _ => None,
            }?;
            Some(r.map_err(|e| format!("{name}: {e}")))
        })
        .collect()
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

#[cfg(feature = "openssl")]
mod libcrypto {
    use super::*;
    use openssl::derive::Deriver;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Padding;
    use openssl::sign::{RsaPssSaltlen, Signer};
    use sipstls_conformance::pki::pki;

    pub fn times(plan: &Plan) -> Result<CryptoTimes, String> {
        let e = |e: openssl::error::ErrorStack| e.to_string();
        let (n, n_rsa) = counts(plan);
        let peer = PKey::generate_x25519().map_err(e)?;
        let peer_pub = PKey::public_key_from_raw_bytes(&peer.raw_public_key().map_err(e)?, openssl::pkey::Id::X25519)
            .map_err(e)?;
        let x25519_us = median_us(plan, n, || {
            let k = PKey::generate_x25519().map_err(e)?;
            let _public = k.raw_public_key().map_err(e)?;
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
        Ok(CryptoTimes { backend: "openssl".into(), x25519_us, ecdsa_sign_us, rsa_sign_us })
    }
}
