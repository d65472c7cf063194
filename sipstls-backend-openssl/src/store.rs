//! OpenSSL only: resumption state from outside the process.
//!
//! - [`DomainConfig::session_store`]: OpenSSL's external session cache callbacks
//!   (`SSL_CTX_sess_set_new_cb/get_cb/remove_cb`) with DER-encoded sessions
//!   (`i2d_SSL_SESSION`/`d2i_SSL_SESSION`), the internal cache off
//!   (`SSL_SESS_CACHE_NO_INTERNAL`), so every lookup goes to the store. TLS 1.3 stateful
//!   tickets are taken (single use), TLS 1.2 session IDs read.
//! - [`DomainConfig::ticket_keys`]: `SSL_CTX_set_tlsext_ticket_key_evp_cb` with AES-256-CBC
//!   and HMAC-SHA256 keys derived from the provider's key (HMAC-SHA256 with labels of this
//!   backend); tickets under the previous key are accepted and renewed.
//! - Either: a session id context derived from the domain's certificates and
//!   verification settings instead of a per-process counter, so a session from node A
//!   passes node B's context check (OpenSSL refuses sessions of another context).
//!
//! A store that answers nothing makes a full handshake; every callback catches panics.

use std::ffi::{c_char, c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use sipstls_core::store::TicketKey;
use sipstls_core::{DomainConfig, Result, TicketKeysHandle};

use crate::backend::backend_err;
use crate::cvt::cvt;
use crate::ssl_lib::error::ErrorStack;
use crate::ssl_lib::ffi;
use crate::ssl_lib::hash::MessageDigest;
use crate::ssl_lib::pkey::PKey;
use crate::ssl_lib::sign::Signer;
use crate::ssl_lib::ssl::{SslContext, SslContextBuilder, SslRef, SslSession, SslSessionCacheMode, SslVersion};
use crate::ssl_lib::ForeignTypeRef;

type TicketKeyEvpCb = unsafe extern "C" fn(
    *mut ffi::SSL,
    *mut u8,
    *mut u8,
    *mut ffi::EVP_CIPHER_CTX,
    *mut ffi::EVP_MAC_CTX,
    c_int,
) -> c_int;

extern "C" {
    // libssl 3; not bound by openssl-sys.
    fn SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx: *mut ffi::SSL_CTX, cb: Option<TicketKeyEvpCb>) -> c_int;
    // libssl 3; not bound by openssl-sys.
    fn SSL_CTX_set_timeout(ctx: *mut ffi::SSL_CTX, t: std::ffi::c_long) -> std::ffi::c_long;
    // libcrypto 3; not bound by openssl-sys.
    fn OSSL_PARAM_construct_utf8_string(key: *const c_char, buf: *mut c_char, bsize: usize) -> ffi::OSSL_PARAM;
}

fn ticket_keys_index() -> Option<crate::ssl_lib::ex_data::Index<SslContext, TicketKeysHandle>> {
    static IDX: OnceLock<Option<crate::ssl_lib::ex_data::Index<SslContext, TicketKeysHandle>>> = OnceLock::new();
    *IDX.get_or_init(|| SslContext::new_ex_index().ok())
}

/// Applies the domain's session store and ticket key provider (if any) to a server context.
/// Called after the context's own resumption settings, which it overrides.
pub(crate) fn install(b: &mut SslContextBuilder, cfg: &DomainConfig) -> Result<()> {
    if cfg.session_store.is_none() && cfg.ticket_keys.is_none() {
        return Ok(());
    }
    b.set_session_id_context(&stable_id_context(cfg)).map_err(backend_err)?;
    // Sessions (and tickets) live as long as the store keeps them or the provider's keys
    // open them (current + previous), not OpenSSL's default 300 s.
    let store_ttl = cfg.session_store.as_ref().map_or(0, |s| s.ttl().as_secs());
    let keys_ttl = cfg.ticket_keys.as_ref().map_or(0, |k| k.lifetime().as_secs().saturating_mul(2));
    // At most 7 days: the TLS 1.3 ticket lifetime limit (RFC 8446 4.6.1), which OpenSSL
    // takes from this timeout.
    let timeout = std::ffi::c_long::try_from(store_ttl.max(keys_ttl).min(604_800)).unwrap_or(604_800);
    // SAFETY: `b.as_ptr()` is the live SSL_CTX owned by the builder; the call stores a number.
    unsafe { SSL_CTX_set_timeout(b.as_ptr(), timeout) };
    if let Some(store) = &cfg.session_store {
        b.set_session_cache_mode(SslSessionCacheMode::SERVER | SslSessionCacheMode::NO_INTERNAL);
        let s = store.clone();
        b.set_new_session_callback(move |_ssl, session| {
            let _ = catch_unwind(AssertUnwindSafe(|| {
                if let Ok(der) = session.to_der() {
                    s.put(session.id(), &der);
                }
            }));
        });
        let s = store.clone();
        b.set_remove_session_callback(move |_ctx, session| {
            let _ = catch_unwind(AssertUnwindSafe(|| s.remove(session.id())));
        });
        let s = store.clone();
        let get = move |ssl: &mut SslRef, id: &[u8]| -> Option<SslSession> {
            catch_unwind(AssertUnwindSafe(|| {
                // TLS 1.3 stateful tickets are single use (RFC 8446 8.1); OpenSSL's remove
                // callback does not fire without its internal cache, so take here.
                let der = if ssl.version2() == Some(SslVersion::TLS1_3) { s.take(id) } else { s.get(id) }?;
                SslSession::from_der(&der).ok()
            }))
            .ok()
            .flatten()
        };
        // SAFETY: the sessions returned are decoded from DER, so associated with no
        // context; OpenSSL then checks their session id context against this domain's.
        unsafe { b.set_get_session_callback(get) };
    }
    if let Some(keys) = &cfg.ticket_keys {
        let idx = ticket_keys_index().ok_or_else(|| backend_err(crate::ssl_lib::error::ErrorStack::get()))?;
        b.set_ex_data(idx, keys.clone());
        // SAFETY: `b.as_ptr()` is the live SSL_CTX owned by the builder; `ticket_key_cb`
        // has the signature libssl 3 expects and catches panics.
        cvt(unsafe { SSL_CTX_set_tlsext_ticket_key_evp_cb(b.as_ptr(), Some(ticket_key_cb)) }).map_err(backend_err)?;
    }
    Ok(())
}

/// 32 bytes naming what a session may resume into: the domain's certificates, trust
/// anchors and client verification settings (SHA-256).
fn stable_id_context(cfg: &DomainConfig) -> Vec<u8> {
    let mut h = crate::ssl_lib::sha::Sha256::new();
    h.update(b"sipstls session id context v1");
    for id in &cfg.identities {
        for c in &id.chain {
            h.update(&(c.der().len() as u64).to_be_bytes());
            h.update(c.der());
        }
    }
    h.update(b"|ca");
    for c in &cfg.trust_anchors {
        h.update(&(c.der().len() as u64).to_be_bytes());
        h.update(c.der());
    }
    h.update(&[u8::from(cfg.verify_peer), u8::from(cfg.require_peer_certificate), cfg.verify_depth]);
    h.finish().to_vec()
}

/// AES-256-CBC key and HMAC-SHA256 key for a provider key.
fn derive(k: &TicketKey) -> Option<([u8; 32], [u8; 32])> {
    let pkey = PKey::hmac(&k.key).ok()?;
    let mut out = ([0u8; 32], [0u8; 32]);
    for (label, dst) in
        [(&b"sipstls openssl ticket aes v1"[..], &mut out.0), (b"sipstls openssl ticket hmac v1", &mut out.1)]
    {
        let mut s = Signer::new(MessageDigest::sha256(), &pkey).ok()?;
        s.update(label).ok()?;
        s.update(&k.name).ok()?;
        let mac = s.sign_to_vec().ok()?;
        dst.copy_from_slice(mac.get(..32)?);
    }
    Some(out)
}

/// Sets the MAC (HMAC-SHA256 with `key`) and cipher (AES-256-CBC with `aes`, `iv`); on
/// failure, the error queue.
///
/// # Safety
/// `cctx` and `hctx` are the live contexts OpenSSL passed to the ticket callback; `iv` is
/// readable for 16 bytes.
unsafe fn set_ctx(
    cctx: *mut ffi::EVP_CIPHER_CTX,
    hctx: *mut ffi::EVP_MAC_CTX,
    aes: &[u8; 32],
    hmac: &mut [u8; 32],
    iv: *const u8,
    enc: bool,
) -> Result<(), ErrorStack> {
    let mut digest = *b"SHA256\0";
    // SAFETY: the names are NUL-terminated statics; `hmac` and `digest` outlive the
    // EVP_MAC_CTX_set_params call, which copies the key (OpenSSL's HMAC set_ctx_params).
    let params = unsafe {
        [
            ffi::OSSL_PARAM_construct_octet_string(c"key".as_ptr(), hmac.as_mut_ptr().cast::<c_void>(), hmac.len()),
            OSSL_PARAM_construct_utf8_string(c"digest".as_ptr(), digest.as_mut_ptr().cast::<c_char>(), 0),
            ffi::OSSL_PARAM_construct_end(),
        ]
    };
    // SAFETY: `hctx` is live (caller's contract); `params` is an END-terminated array.
    cvt(unsafe { ffi::EVP_MAC_CTX_set_params(hctx, params.as_ptr()) })?;
    // SAFETY: `cctx` is live; `aes` is 32 bytes (AES-256) and `iv` 16 readable bytes (the
    // cipher's IV length), both copied by the init call.
    cvt(unsafe {
        if enc {
            ffi::EVP_EncryptInit_ex(cctx, ffi::EVP_aes_256_cbc(), std::ptr::null_mut(), aes.as_ptr(), iv)
        } else {
            ffi::EVP_DecryptInit_ex(cctx, ffi::EVP_aes_256_cbc(), std::ptr::null_mut(), aes.as_ptr(), iv)
        }
    })?;
    Ok(())
}

/// The ticket key callback: 1 keys set (current key), 2 keys set and the ticket should be
/// renewed (previous key), 0 no ticket issued / ticket not ours (full handshake), -1 error.
///
/// # Safety
/// Called by libssl 3 with a live `ssl`, `key_name` writable (enc) or readable (dec) for
/// 16 bytes, `iv` writable or readable for 16 bytes (EVP_MAX_IV_LENGTH), and live contexts.
unsafe extern "C" fn ticket_key_cb(
    ssl: *mut ffi::SSL,
    key_name: *mut u8,
    iv: *mut u8,
    cctx: *mut ffi::EVP_CIPHER_CTX,
    hctx: *mut ffi::EVP_MAC_CTX,
    enc: c_int,
) -> c_int {
    if ssl.is_null() || key_name.is_null() || iv.is_null() || cctx.is_null() || hctx.is_null() {
        return -1;
    }
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `ssl` is the live SSL of the handshake (libssl's contract, non-null).
        let ssl = unsafe { SslRef::from_ptr(ssl) };
        let Some(provider) = ticket_keys_index().and_then(|i| ssl.ssl_context().ex_data(i)) else { return 0 };
        let Some(keys) = provider.keys() else { return 0 };
        if enc == 1 {
            let Some((aes, mut hmac)) = derive(&keys.current) else { return 0 };
            let mut fresh_iv = [0u8; 16];
            if crate::ssl_lib::rand::rand_bytes(&mut fresh_iv).is_err() {
                return -1;
            }
            // SAFETY: `key_name` and `iv` are writable for 16 bytes (libssl's contract).
            unsafe {
                std::ptr::copy_nonoverlapping(keys.current.name.as_ptr(), key_name, 16);
                std::ptr::copy_nonoverlapping(fresh_iv.as_ptr(), iv, 16);
            }
            // SAFETY: live contexts (contract); `iv` now holds 16 bytes.
            let ok = unsafe { set_ctx(cctx, hctx, &aes, &mut hmac, iv, true) }.is_ok();
            hmac.fill(0);
            if ok {
                1
            } else {
                -1
            }
        } else {
            let mut name = [0u8; 16];
            // SAFETY: `key_name` is readable for 16 bytes (libssl's contract).
            unsafe { std::ptr::copy_nonoverlapping(key_name, name.as_mut_ptr(), 16) };
            let Some((k, current)) = keys.find(&name) else { return 0 };
            let Some((aes, mut hmac)) = derive(k) else { return 0 };
            // SAFETY: live contexts, `iv` readable for 16 bytes (contract).
            let ok = unsafe { set_ctx(cctx, hctx, &aes, &mut hmac, iv, false) }.is_ok();
            hmac.fill(0);
            match (ok, current) {
                (true, true) => 1,
                (true, false) => 2,
                (false, _) => 0,
            }
        }
    }))
    .unwrap_or(-1)
}
