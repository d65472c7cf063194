//! Server-side resumption state on Mbed TLS.
//!
//! **Session cache** (TLS 1.2 session IDs): the cache callbacks
//! (`mbedtls_ssl_conf_session_cache`) over a [`SessionStoreHandle`]: the domain's
//! [`DomainConfig::session_store`](sipstls_core::DomainConfig::session_store), or an in-process
//! LRU store when session IDs are on without one. Sessions are serialized by
//! `mbedtls_ssl_session_save` and restored by `mbedtls_ssl_session_load` (which checks the
//! format and this build's configuration, and refuses malformed data). Mbed TLS has no session
//! id context: sessions are keyed by id only, so give each domain its own store (or key
//! prefix) when several share one Redis.
//!
//! **Stateful tickets** (session IDs on, tickets off: the TLS 1.3 form of a server cache, and
//! what a TLS 1.2 client that offers tickets gets, Mbed TLS preferring tickets to IDs): the
//! ticket is a random 32-byte key into the same store.
//!
//! **Sealed tickets**
//! ([`DomainConfig::ticket_keys`](sipstls_core::DomainConfig::ticket_keys)): the ticket
//! write/parse callbacks (`mbedtls_ssl_conf_session_tickets_cb`) seal the saved session with
//! AES-256-GCM (Mbed TLS's GCM) under a key derived from the provider's key (HMAC-SHA256
//! with a label of this backend): `name (16) || nonce (12) || ciphertext || tag (16)`, the
//! name as additional data. No provider keys: no ticket is issued (Mbed TLS then sends an
//! empty one) and none is opened; a ticket older than two provider lifetimes is refused.

use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use sipstls_core::{SessionStoreHandle, TicketKey, TicketKeysHandle};
use sipstls_mbedtls_sys as sys;

/// Sessions the in-process store holds at most (when session IDs are on without a store).
const LOCAL_SESSIONS: usize = 20_480;
/// Bytes of saved sessions the in-process store holds at most.
const LOCAL_BYTES: usize = 32 << 20;
/// Length of a stateful ticket's store key.
const STATEFUL_KEY: usize = 32;
/// Length of the digest of the stored session that a stateful ticket carries: a session
/// changed in the store (corrupted, or written by something else) is not resumed.
const STATEFUL_DIGEST: usize = 16;
/// Length of a stateful ticket: the store key, then the digest.
const STATEFUL_TICKET: usize = STATEFUL_KEY + STATEFUL_DIGEST;

/// The first bytes of SHA-256(`body`); `None` if hashing fails.
fn digest(body: &[u8]) -> Option<[u8; STATEFUL_DIGEST]> {
    let mut out = [0u8; 32];
    // SAFETY: `body` is readable for its length; SHA-256 writes 32 bytes.
    let ret = unsafe { sys::sha256(body.as_ptr(), body.len(), out.as_mut_ptr(), 0) };
    let mut d = [0u8; STATEFUL_DIGEST];
    d.copy_from_slice(&out[..STATEFUL_DIGEST]);
    (ret == 0).then_some(d)
}

/// The store and ticket keys a configuration's callbacks use; its address is Mbed TLS's
/// `p_cache` and `p_ticket`.
pub(crate) struct StoreCtx {
    store: Option<SessionStoreHandle>,
    keys: Option<TicketKeysHandle>,
}

/// What a server domain resumes with, besides Mbed TLS's own stateless tickets.
pub(crate) struct Resumption {
    /// The session store (the domain's, or an in-process one).
    pub(crate) store: Option<SessionStoreHandle>,
    /// Sealed tickets under the provider's keys.
    pub(crate) keys: Option<TicketKeysHandle>,
    /// Stateful tickets (keys into `store`).
    pub(crate) stateful_tickets: bool,
}

impl Resumption {
    /// The resumption state of a server domain's configuration.
    pub(crate) fn of(cfg: &sipstls_core::DomainConfig) -> Resumption {
        let store = cfg.session_store.clone().or_else(|| {
            cfg.resumption.session_ids.then(|| {
                SessionStoreHandle::new(sipstls_core::store::LruSessionStore::new(LOCAL_SESSIONS, LOCAL_BYTES))
            })
        });
        let stateful_tickets = cfg.resumption.session_ids && !cfg.resumption.tickets && cfg.ticket_keys.is_none();
        Resumption { store, keys: cfg.ticket_keys.clone(), stateful_tickets }
    }
}

/// Registers the callbacks for `r` on `conf`; the returned box must outlive `conf`.
///
/// # Safety
/// `conf` is a live configuration being built, exclusively the caller's.
pub(crate) unsafe fn install(conf: *mut sys::ssl_config, r: Resumption) -> Option<Box<StoreCtx>> {
    if r.store.is_none() && r.keys.is_none() {
        return None;
    }
    let stateful = r.stateful_tickets && r.store.is_some();
    let ctx = Box::new(StoreCtx { store: r.store, keys: r.keys });
    let p = &*ctx as *const StoreCtx as *mut c_void;
    // SAFETY: `conf` per the contract; `ctx` is boxed (stable address) and kept by the
    // caller for the configuration's life; every callback catches panics.
    unsafe {
        if ctx.store.is_some() {
            sys::ssl_conf_session_cache(conf, p, Some(get_cache), Some(set_cache));
        }
        if ctx.keys.is_some() {
            sys::ssl_conf_session_tickets_cb(conf, Some(ticket_write), Some(ticket_parse), p);
        } else if stateful {
            sys::ssl_conf_session_tickets_cb(conf, Some(stateful_write), Some(stateful_parse), p);
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

/// Writes a sealed ticket for `session` into `start..end`.
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
    let make = |ctx: &StoreCtx, session: *const sys::ssl_session| {
        let provider = ctx.keys.as_ref()?;
        let keys = provider.keys()?;
        let key = aes_key(&keys.current)?;
        // SAFETY: `session` is live (contract of `write_with`).
        let mut body = unsafe { save(session) }?;
        let mut nonce = [0u8; NONCE];
        crate::rng::fill(&mut nonce).ok()?;
        let mut tag = [0u8; TAG];
        if !gcm(&key, &nonce, &keys.current.name, &mut body, &mut tag, true) {
            return None;
        }
        let mut out = Vec::with_capacity(NAME + NONCE + body.len() + TAG);
        out.extend_from_slice(&keys.current.name);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        out.extend_from_slice(&tag);
        // Opened for two provider lifetimes (the current key, then as the previous one): a
        // TLS 1.3 client drops a ticket past the lifetime it was given.
        Some((out, u32::try_from(provider.lifetime().as_secs().saturating_mul(2)).unwrap_or(u32::MAX)))
    };
    // SAFETY: per this function's contract.
    unsafe { write_with(p, session, start, end, tlen, lifetime, make) }
}

/// Length of the ticket written when no real one can be made.
const DUD: usize = 48;

/// The ticket callbacks' frame: `make` builds the ticket and its lifetime from the context
/// and the session. When it cannot (keys or store unreachable, as with Redis down), a ticket
/// of random bytes that no server opens is sent instead, with lifetime 0 (discard): a
/// failing ticket callback would fail the whole TLS 1.3 handshake in Mbed TLS, and the
/// client's next connection is then a full handshake, as it should be.
///
/// # Safety
/// As for [`ticket_write`].
unsafe fn write_with(
    p: *mut c_void,
    session: *const sys::ssl_session,
    start: *mut u8,
    end: *const u8,
    tlen: *mut usize,
    lifetime: *mut u32,
    make: impl FnOnce(&StoreCtx, *const sys::ssl_session) -> Option<(Vec<u8>, u32)>,
) -> c_int {
    const FAIL: c_int = sys::ERR_SSL_INTERNAL_ERROR;
    if p.is_null() || session.is_null() || start.is_null() || end.is_null() || tlen.is_null() || lifetime.is_null() {
        return FAIL;
    }
    let room = (end as usize).saturating_sub(start as usize);
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: per the contract.
        let ctx = unsafe { &*(p as *const StoreCtx) };
        let (ticket, life) = match make(ctx, session).filter(|(t, _)| t.len() <= room) {
            Some(made) => made,
            None => {
                let mut dud = vec![0u8; DUD];
                if crate::rng::fill(&mut dud).is_err() || dud.len() > room {
                    return FAIL;
                }
                (dud, 0)
            }
        };
        // SAFETY: `start` is writable for `room` >= ticket.len() bytes; the out-parameters
        // are writable (contract).
        unsafe {
            std::ptr::copy_nonoverlapping(ticket.as_ptr(), start, ticket.len());
            *tlen = ticket.len();
            *lifetime = life;
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
        // SAFETY: `session` was just loaded. A TLS 1.3 session records when its ticket was
        // made on Mbed TLS's millisecond clock; a TLS 1.2 one when the session started
        // (seconds since the epoch).
        let (now, started) = unsafe {
            let s = &*session;
            if s.private_tls_version == sys::SSL_VERSION_TLS1_3 {
                (sys::ms_time() / 1000, s.private_ticket_creation_time / 1000)
            } else {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                (i64::try_from(now).unwrap_or(i64::MAX), s.private_start)
            }
        };
        let (now, started) = (u64::try_from(now).unwrap_or(0), u64::try_from(started).unwrap_or(u64::MAX));
        if now < started || now - started > 2 * provider.lifetime().as_secs() {
            return sys::ERR_SSL_SESSION_TICKET_EXPIRED;
        }
        0
    }))
    .unwrap_or(BAD)
}

/// Looks the session id up and restores the session; 0 when found.
///
/// # Safety
/// Called by Mbed TLS with `data` the `StoreCtx` registered above, `id` readable for
/// `id_len` bytes and `session` a freshly initialised session.
unsafe extern "C" fn get_cache(
    data: *mut c_void,
    id: *const u8,
    id_len: usize,
    session: *mut sys::ssl_session,
) -> c_int {
    if data.is_null() || session.is_null() || id.is_null() || id_len == 0 || id_len > 32 {
        return 1;
    }
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: per the contract.
        let (ctx, id) = unsafe { (&*(data as *const StoreCtx), std::slice::from_raw_parts(id, id_len)) };
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
        if s.private_id.get(..s.private_id_len) == Some(id) {
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
/// Called by Mbed TLS with `data` the `StoreCtx`, `id` readable for `id_len` bytes and
/// `session` the live session.
unsafe extern "C" fn set_cache(
    data: *mut c_void,
    id: *const u8,
    id_len: usize,
    session: *const sys::ssl_session,
) -> c_int {
    if data.is_null() || session.is_null() || id.is_null() || id_len == 0 || id_len > 32 {
        return 1;
    }
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: per the contract.
        let (ctx, id) = unsafe { (&*(data as *const StoreCtx), std::slice::from_raw_parts(id, id_len)) };
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

/// Writes a stateful ticket: a random key under which the session goes into the store, and
/// the session's digest. (A TLS 1.2 client offering tickets gets one too: Mbed TLS issues a
/// ticket instead of a session ID whenever it can.)
///
/// # Safety
/// As for [`ticket_write`].
unsafe extern "C" fn stateful_write(
    p: *mut c_void,
    session: *const sys::ssl_session,
    start: *mut u8,
    end: *const u8,
    tlen: *mut usize,
    lifetime: *mut u32,
) -> c_int {
    let make = |ctx: &StoreCtx, session: *const sys::ssl_session| {
        let store = ctx.store.as_ref()?;
        let mut ticket = vec![0u8; STATEFUL_TICKET];
        let (key, sum) = ticket.split_at_mut(STATEFUL_KEY);
        crate::rng::fill(key).ok()?;
        // SAFETY: `session` is live (contract of `write_with`).
        let body = unsafe { save(session) }?;
        sum.copy_from_slice(&digest(&body)?);
        if !store.put(key, &body) {
            return None;
        }
        Some((ticket, u32::try_from(store.ttl().as_secs()).unwrap_or(u32::MAX)))
    };
    // SAFETY: per this function's contract.
    unsafe { write_with(p, session, start, end, tlen, lifetime, make) }
}

/// Opens a stateful ticket: the session stored under it; 0 on success.
///
/// # Safety
/// As for [`ticket_parse`].
unsafe extern "C" fn stateful_parse(p: *mut c_void, session: *mut sys::ssl_session, buf: *mut u8, len: usize) -> c_int {
    const BAD: c_int = sys::ERR_SSL_INVALID_MAC;
    if p.is_null() || session.is_null() || buf.is_null() || len != STATEFUL_TICKET {
        return BAD;
    }
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: per the contract.
        let (ctx, ticket) = unsafe { (&*(p as *const StoreCtx), std::slice::from_raw_parts(buf, len)) };
        let (key, sum) = ticket.split_at(STATEFUL_KEY);
        let Some(body) = ctx.store.as_ref().and_then(|st| st.get(key)) else { return BAD };
        if digest(&body).as_ref().map(|d| &d[..]) != Some(sum) {
            return BAD;
        }
        // SAFETY: `session` is fresh; `body` holds a saved session.
        if unsafe { sys::ssl_session_load(session, body.as_ptr(), body.len()) } != 0 {
            return BAD;
        }
        0
    }))
    .unwrap_or(BAD)
}
