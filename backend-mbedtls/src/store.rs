//! [`DomainConfig::session_store`](sipstls_core::DomainConfig::session_store) on Mbed TLS:
//! the server's session cache callbacks (`mbedtls_ssl_conf_session_cache`) with sessions
//! serialized by `mbedtls_ssl_session_save` and restored by `mbedtls_ssl_session_load`
//! (which checks the format and this build's configuration, and refuses malformed data).
//!
//! Mbed TLS has no session id context: sessions are keyed by id only, so give each
//! domain its own store (or key prefix) when several share one Redis.
//!
//! [`DomainConfig::ticket_keys`](sipstls_core::DomainConfig::ticket_keys): the ticket
//! write/parse callbacks (`mbedtls_ssl_conf_session_tickets_cb`) seal the saved session with
//! AES-256-GCM (Mbed TLS's GCM) under a key derived from the provider's key (HMAC-SHA256
//! with a label of this backend): `name (16) || nonce (12) || ciphertext || tag (16)`, the
//! name as additional data. No provider keys: no ticket is issued (Mbed TLS then sends an
//! empty one) and none is opened; a ticket older than two provider lifetimes is refused.

use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use mbedtls_sys as sys;
use sipstls_core::{DomainConfig, SessionStoreHandle, TicketKey, TicketKeysHandle};

/// The store and ticket keys a configuration's callbacks use; its address is Mbed TLS's
/// `p_cache` and `p_ticket`.
pub(crate) struct StoreCtx {
    store: Option<SessionStoreHandle>,
    keys: Option<TicketKeysHandle>,
}

/// Registers the callbacks for the domain's store and ticket keys (if any) on `conf`; the
/// returned box must outlive `conf`.
///
/// # Safety
/// `conf` is a live configuration being built, exclusively the caller's.
pub(crate) unsafe fn install(conf: *mut sys::ssl_config, cfg: &DomainConfig) -> Option<Box<StoreCtx>> {
    if cfg.session_store.is_none() && cfg.ticket_keys.is_none() {
        return None;
    }
    let ctx = Box::new(StoreCtx { store: cfg.session_store.clone(), keys: cfg.ticket_keys.clone() });
    let p = &*ctx as *const StoreCtx as *mut c_void;
    // SAFETY: `conf` per the contract; `ctx` is boxed (stable address) and kept by the
    // caller for the configuration's life; every callback catches panics.
    unsafe {
        if ctx.store.is_some() {
            sys::ssl_conf_session_cache(conf, p, Some(get_cache), Some(set_cache));
        }
        if ctx.keys.is_some() {
            sys::ssl_conf_session_tickets_cb(conf, Some(ticket_write), Some(ticket_parse), p);
        }
    }
    Some(ctx)
}

/// The saved form of a session (`mbedtls_ssl_session_save`), at most 64 KiB.
///
/// # Safety
/// `session` is a live session.
unsafe fn save(session: *const sys::ssl_session) -> Option<Vec<u8>> {
    let mut len = 0usize;
    // SAFETY: a size query: no buffer, `len` receives the size needed.
    unsafe { sys::ssl_session_save(session, std::ptr::null_mut(), 0, &mut len) };
    if len == 0 || len > 64 * 1024 {
        return None;
    }
    let mut buf = vec![0u8; len];
    // SAFETY: `buf` is writable for `len` bytes.
    let ret = unsafe { sys::ssl_session_save(session, buf.as_mut_ptr(), buf.len(), &mut len) };
    if ret != 0 || len > buf.len() {
        return None;
    }
    buf.truncate(len);
    Some(buf)
}

const NAME: usize = sipstls_core::store::TICKET_KEY_NAME_LEN;
const NONCE: usize = 12;
const TAG: usize = 16;

/// The AES-256 key for a provider key: HMAC-SHA256(key, label || name).
fn aes_key(k: &TicketKey) -> Option<[u8; 32]> {
    let mut input = b"sipstls mbedtls ticket aes v1".to_vec();
    input.extend_from_slice(&k.name);
    let mut out = [0u8; 32];
    // SAFETY: the md info is a static of the library; key, input and output are valid for
    // the lengths given (SHA-256 writes 32 bytes).
    let ret = unsafe {
        let md = sys::md_info_from_type(sys::MD_SHA256);
        if md.is_null() {
            return None;
        }
        sys::md_hmac(md, k.key.as_ptr(), k.key.len(), input.as_ptr(), input.len(), out.as_mut_ptr())
    };
    (ret == 0).then_some(out)
}

/// AES-256-GCM in place: encrypts (`tag` written) or decrypts (`tag` checked).
fn gcm(key: &[u8; 32], nonce: &[u8], aad: &[u8], data: &mut [u8], tag: &mut [u8; TAG], encrypt: bool) -> bool {
    // SAFETY: the context is initialised before use and freed after; every buffer is
    // valid for the length given; GCM works in place (input == output is allowed).
    unsafe {
        let mut ctx = std::mem::MaybeUninit::<sys::gcm_context>::zeroed();
        sys::gcm_init(ctx.as_mut_ptr());
        let mut ret = sys::gcm_setkey(ctx.as_mut_ptr(), sys::CIPHER_ID_AES, key.as_ptr(), 256);
        if ret == 0 {
            let p = data.as_mut_ptr();
            ret = if encrypt {
                sys::gcm_crypt_and_tag(
                    ctx.as_mut_ptr(),
                    sys::GCM_ENCRYPT,
                    data.len(),
                    nonce.as_ptr(),
                    nonce.len(),
                    aad.as_ptr(),
                    aad.len(),
                    p,
                    p,
                    TAG,
                    tag.as_mut_ptr(),
                )
            } else {
                sys::gcm_auth_decrypt(
                    ctx.as_mut_ptr(),
                    data.len(),
                    nonce.as_ptr(),
                    nonce.len(),
                    aad.as_ptr(),
                    aad.len(),
                    tag.as_ptr(),
                    TAG,
                    p,
                    p,
                )
            };
        }
        sys::gcm_free(ctx.as_mut_ptr());
        ret == 0
    }
}

/// Writes a ticket for `session` into `start..end`; 0 on success.
///
/// # Safety
/// Called by Mbed TLS with `p` the `StoreCtx`, a live `session`, `start..end` writable,
/// `tlen` and `lifetime` writable.
unsafe extern "C" fn ticket_write(
    p: *mut c_void,
    session: *const sys::ssl_session,
    start: *mut u8,
    end: *const u8,
    tlen: *mut usize,
    lifetime: *mut u32,
) -> c_int {
    const FAIL: c_int = sys::ERR_SSL_INTERNAL_ERROR;
    if p.is_null() || session.is_null() || start.is_null() || end.is_null() || tlen.is_null() || lifetime.is_null() {
        return FAIL;
    }
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: per the contract.
        let ctx = unsafe { &*(p as *const StoreCtx) };
        let Some(provider) = &ctx.keys else { return FAIL };
        let Some(keys) = provider.keys() else { return FAIL };
        let Some(key) = aes_key(&keys.current) else { return FAIL };
        // SAFETY: `session` is live.
        let Some(mut body) = (unsafe { save(session) }) else { return FAIL };
        let room = (end as usize).saturating_sub(start as usize);
        let total = NAME + NONCE + body.len() + TAG;
        if total > room {
            return FAIL;
        }
        let mut nonce = [0u8; NONCE];
        if crate::rng::fill(&mut nonce).is_err() {
            return FAIL;
        }
        let mut tag = [0u8; TAG];
        if !gcm(&key, &nonce, &keys.current.name, &mut body, &mut tag, true) {
            return FAIL;
        }
        // SAFETY: `start` is writable for `room` >= total bytes.
        let out = unsafe { std::slice::from_raw_parts_mut(start, total) };
        out[..NAME].copy_from_slice(&keys.current.name);
        out[NAME..NAME + NONCE].copy_from_slice(&nonce);
        out[NAME + NONCE..total - TAG].copy_from_slice(&body);
        out[total - TAG..].copy_from_slice(&tag);
        // SAFETY: writable out-parameters (contract).
        unsafe {
            *tlen = total;
            *lifetime = u32::try_from(provider.lifetime().as_secs()).unwrap_or(u32::MAX);
        }
        0
    }))
    .unwrap_or(FAIL)
}

/// Opens a ticket into `session`; 0 on success (any error: a full handshake follows).
///
/// # Safety
/// Called by Mbed TLS with `p` the `StoreCtx`, a freshly initialised `session`, and `buf`
/// writable for `len` bytes.
unsafe extern "C" fn ticket_parse(p: *mut c_void, session: *mut sys::ssl_session, buf: *mut u8, len: usize) -> c_int {
    const BAD: c_int = sys::ERR_SSL_INVALID_MAC;
    if p.is_null() || session.is_null() || buf.is_null() || !(NAME + NONCE + TAG..=64 * 1024).contains(&len) {
        return BAD;
    }
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: per the contract.
        let (ctx, data) = unsafe { (&*(p as *const StoreCtx), std::slice::from_raw_parts_mut(buf, len)) };
        let Some(provider) = &ctx.keys else { return BAD };
        let Some(keys) = provider.keys() else { return BAD };
        let (name, rest) = data.split_at_mut(NAME);
        let Some((k, _current)) = keys.find(name) else { return BAD };
        let Some(key) = aes_key(k) else { return BAD };
        let (nonce, rest) = rest.split_at_mut(NONCE);
        let split = rest.len() - TAG;
        let (body, tag) = rest.split_at_mut(split);
        let mut tag_arr = [0u8; TAG];
        tag_arr.copy_from_slice(tag);
        if !gcm(&key, nonce, name, body, &mut tag_arr, false) {
            return BAD;
        }
        // SAFETY: `session` is fresh; `body` holds the decrypted saved session.
        if unsafe { sys::ssl_session_load(session, body.as_ptr(), body.len()) } != 0 {
            return BAD;
        }
        // Bounded age: a ticket lives at most two provider lifetimes (current, previous).
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        // SAFETY: `session` was just loaded.
        let started = u64::try_from(unsafe { (*session).start }).unwrap_or(u64::MAX);
        if now < started || now - started > 2 * provider.lifetime().as_secs() {
            return sys::ERR_SSL_SESSION_TICKET_EXPIRED;
        }
        0
    }))
    .unwrap_or(BAD)
}

/// Looks the session's id up and restores the session; 0 when found.
///
/// # Safety
/// Called by Mbed TLS with `data` the `StoreCtx` registered above and `session` a freshly
/// initialised session holding only the id.
unsafe extern "C" fn get_cache(data: *mut c_void, session: *mut sys::ssl_session) -> c_int {
    if data.is_null() || session.is_null() {
        return 1;
    }
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: per the contract.
        let (ctx, s) = unsafe { (&*(data as *const StoreCtx), &mut *session) };
        let id = &s.id[..s.id_len.min(s.id.len())];
        if id.is_empty() {
            return 1;
        }
        let Some(value) = ctx.store.as_ref().and_then(|st| st.get(id)) else { return 1 };
        // SAFETY: `session` is fresh (only its id set, no allocation to leak); `value` is
        // readable for its length; on failure Mbed TLS frees what load allocated.
        let ret = unsafe { sys::ssl_session_load(session, value.as_ptr(), value.len()) };
        if ret != 0 {
            return 1;
        }
        // The stored session must be the one asked for.
        // SAFETY: `session` is still valid.
        let s = unsafe { &*session };
        if &s.id[..s.id_len.min(s.id.len())] == id {
            0
        } else {
            1
        }
    }))
    .unwrap_or(1)
}

/// Serializes the session and stores it under its id; 0 when stored.
///
/// # Safety
/// Called by Mbed TLS with `data` the `StoreCtx` and `session` the live session.
unsafe extern "C" fn set_cache(data: *mut c_void, session: *const sys::ssl_session) -> c_int {
    if data.is_null() || session.is_null() {
        return 1;
    }
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: per the contract.
        let (ctx, s) = unsafe { (&*(data as *const StoreCtx), &*session) };
        let id = &s.id[..s.id_len.min(s.id.len())];
        if id.is_empty() {
            return 1;
        }
        // SAFETY: `session` is live.
        let Some(buf) = (unsafe { save(session) }) else { return 1 };
        if ctx.store.as_ref().is_some_and(|st| st.put(id, &buf)) {
            0
        } else {
            1
        }
    }))
    .unwrap_or(1)
}
