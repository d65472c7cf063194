//! Building aws-lc's lazily initialised tables before `fork()`.
//!
//! aws-lc fills its method tables (`EVP_AEAD`, `EVP_MD`, `EVP_CIPHER`, curve groups, key
//! methods) on first use, in static memory, once per process. When sessions are shared
//! between forked processes (migrating model), a key made in one process points at that
//! process's table; at the same address another process still has zeroes if it never used
//! the algorithm, and calls a null pointer (measured: SIGSEGV in `EVP_AEAD_CTX_seal`).
//! Running every algorithm rustls can negotiate once before fork makes every worker
//! inherit initialised tables.

use aws_lc_rs::{aead, agreement, digest, hkdf, hmac, kem, signature};
use signature::KeyPair;

/// Calls the table getters and one operation per algorithm family. Runs on the calling
/// thread: callers use a helper thread and clear its thread state afterwards.
pub(crate) fn exercise_algorithms() -> Result<(), &'static str> {
    // SAFETY: these getters take no arguments and return pointers to static tables,
    // initialising them on first call.
    unsafe {
        use aws_lc_sys::*;
        let _ = (EVP_aead_aes_128_gcm_tls12(), EVP_aead_aes_256_gcm_tls12());
        let _ = (EVP_aead_aes_128_gcm_tls13(), EVP_aead_aes_256_gcm_tls13());
        let _ = (EVP_aead_aes_128_gcm(), EVP_aead_aes_256_gcm(), EVP_aead_chacha20_poly1305());
        let _ = (EVP_sha1(), EVP_sha224(), EVP_sha256(), EVP_sha384(), EVP_sha512());
        let _ = (EC_group_p256(), EC_group_p384(), EC_group_p521());
        let _ = (EVP_aes_128_gcm(), EVP_aes_256_gcm(), EVP_aes_128_ctr(), EVP_aes_256_ctr());
        let _ = (EVP_aes_128_ecb(), EVP_aes_256_ecb(), EVP_aes_128_cbc(), EVP_aes_256_cbc());
    }
    let rng = aws_lc_rs::rand::SystemRandom::new();
    // AEADs, generic and TLS record variants.
    for alg in [&aead::AES_128_GCM, &aead::AES_256_GCM, &aead::CHACHA20_POLY1305] {
        let key_bytes = vec![7u8; alg.key_len()];
        let key = aead::LessSafeKey::new(aead::UnboundKey::new(alg, &key_bytes).map_err(|_| "aead key")?);
        let mut data = b"warm".to_vec();
        let nonce = || aead::Nonce::assume_unique_for_key([1u8; aead::NONCE_LEN]);
        key.seal_in_place_append_tag(nonce(), aead::Aad::empty(), &mut data).map_err(|_| "aead seal")?;
        key.open_in_place(nonce(), aead::Aad::empty(), &mut data).map_err(|_| "aead open")?;
    }
    for alg in [&aead::AES_128_GCM, &aead::AES_256_GCM] {
        let key_bytes = vec![9u8; alg.key_len()];
        for proto in [aead::TlsProtocolId::TLS12, aead::TlsProtocolId::TLS13] {
            let mut sealing = aead::TlsRecordSealingKey::new(alg, proto, &key_bytes).map_err(|_| "tls key")?;
            let opening = aead::TlsRecordOpeningKey::new(alg, proto, &key_bytes).map_err(|_| "tls key")?;
            let mut data = b"warm".to_vec();
            let nonce = [2u8; aead::NONCE_LEN];
            sealing
                .seal_in_place_append_tag(aead::Nonce::from(&nonce), aead::Aad::empty(), &mut data)
                .map_err(|_| "tls seal")?;
            opening.open_in_place(aead::Nonce::from(&nonce), aead::Aad::empty(), &mut data).map_err(|_| "tls open")?;
        }
    }
    // Digests, HMAC, HKDF.
    for alg in [&digest::SHA1_FOR_LEGACY_USE_ONLY, &digest::SHA256, &digest::SHA384, &digest::SHA512] {
        let _ = digest::digest(alg, b"warm");
    }
    for alg in [hmac::HMAC_SHA256, hmac::HMAC_SHA384, hmac::HMAC_SHA512] {
        let _ = hmac::sign(&hmac::Key::new(alg, b"key"), b"warm");
    }
    for alg in [hkdf::HKDF_SHA256, hkdf::HKDF_SHA384] {
        let prk = hkdf::Salt::new(alg, b"salt").extract(b"secret");
        let info = [&b"warm"[..]];
        let okm = prk.expand(&info, alg).map_err(|_| "hkdf")?;
        let _ = hkdf::Prk::from(okm);
    }
    // Key exchange and KEM.
    for alg in [&agreement::X25519, &agreement::ECDH_P256, &agreement::ECDH_P384, &agreement::ECDH_P521] {
        let a = agreement::EphemeralPrivateKey::generate(alg, &rng).map_err(|_| "kx keygen")?;
        let b = agreement::EphemeralPrivateKey::generate(alg, &rng).map_err(|_| "kx keygen")?;
        let b_pub = b.compute_public_key().map_err(|_| "kx public")?;
        agreement::agree_ephemeral(a, agreement::UnparsedPublicKey::new(alg, b_pub.as_ref()), (), |_| Ok(()))
            .map_err(|_| "kx agree")?;
    }
    let dk = kem::DecapsulationKey::generate(&kem::ML_KEM_768).map_err(|_| "kem keygen")?;
    let ek = dk.encapsulation_key().map_err(|_| "kem public")?;
    let (ct, _) = ek.encapsulate().map_err(|_| "kem encapsulate")?;
    dk.decapsulate(ct).map_err(|_| "kem decapsulate")?;
    // Signatures (ECDSA and Ed25519; RSA keys build their tables per key, see notes).
    for (sign_alg, verify_alg) in [
        (&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &signature::ECDSA_P256_SHA256_ASN1),
        (&signature::ECDSA_P384_SHA384_ASN1_SIGNING, &signature::ECDSA_P384_SHA384_ASN1),
    ] {
        let pair = signature::EcdsaKeyPair::generate(sign_alg).map_err(|_| "ecdsa keygen")?;
        let sig = pair.sign(&rng, b"warm").map_err(|_| "ecdsa sign")?;
        signature::UnparsedPublicKey::new(verify_alg, pair.public_key().as_ref())
            .verify(b"warm", sig.as_ref())
            .map_err(|_| "ecdsa verify")?;
    }
    let ed = signature::Ed25519KeyPair::generate().map_err(|_| "ed25519 keygen")?;
    let sig = ed.sign(b"warm");
    signature::UnparsedPublicKey::new(&signature::ED25519, ed.public_key().as_ref())
        .verify(b"warm", sig.as_ref())
        .map_err(|_| "ed25519 verify")?;
    Ok(())
}
