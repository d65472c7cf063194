//! BoringSSL only: a server-side session cache for TLS 1.3 (and TLS 1.2 clients offering
//! tickets) when stateless tickets are off and session ids on.
//!
//! OpenSSL resumes TLS 1.3 with "stateful tickets" in that configuration: the ticket is
//! only a key into the server's session cache. BoringSSL has no such mode (TLS 1.3
//! resumption there is stateless tickets only, and `SSL_OP_NO_TICKET` turns it off), but
//! it lets the application seal and open tickets (`SSL_CTX_set_ticket_aead_method`):
//! sealing stores the encoded session here under a random 16-byte id and sends the id,
//! padded with zeros to the session's length (BoringSSL opens a ticket into a buffer of the
//! ticket's size); opening looks the id up. The session never leaves the server, as with
//! OpenSSL.
//! The cache is per process (like OpenSSL's) and bounded; BoringSSL still checks that a
//! session belongs to the domain's session id context before resuming it.

use std::collections::{HashMap, VecDeque};
use std::panic::catch_unwind;
use std::sync::Mutex;

use crate::ssl_lib::ffi;
use crate::ssl_lib::ssl::SslContextBuilder;

/// Length of the id of a cached session (the start of its ticket).
const ID_LEN: usize = 16;
/// Sessions kept (OpenSSL's default session cache size); the oldest go first.
const CAPACITY: usize = 20 * 1024;

#[derive(Default)]
struct Cache {
    sessions: HashMap<[u8; ID_LEN], Vec<u8>>,
    order: VecDeque<[u8; ID_LEN]>,
}

static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

static METHOD: ffi::SSL_TICKET_AEAD_METHOD =
    ffi::SSL_TICKET_AEAD_METHOD { max_overhead: Some(max_overhead), seal: Some(seal), open: Some(open) };

/// Makes the context's tickets keys into this process's session cache.
pub(crate) fn install(b: &mut SslContextBuilder) {
    // SAFETY: `b.as_ptr()` is the live SSL_CTX owned by the builder; METHOD is a static,
    // so it outlives every context that points to it.
    unsafe { ffi::SSL_CTX_set_ticket_aead_method(b.as_ptr(), &METHOD) };
}

/// # Safety
/// Called by BoringSSL only; the argument is not used.
unsafe extern "C" fn max_overhead(_ssl: *mut ffi::SSL) -> usize {
    ID_LEN // a ticket is max(session length, ID_LEN) bytes
}

/// Stores the session, writes its id, zero-padded to the session's length, as the ticket.
/// 1 on success, 0 on failure.
///
/// # Safety
/// BoringSSL passes `out` writable for `max_out_len` bytes, `out_len` writable, and `in_`
/// readable for `in_len` bytes.
unsafe extern "C" fn seal(
    _ssl: *mut ffi::SSL,
    out: *mut u8,
    out_len: *mut usize,
    max_out_len: usize,
    in_: *const u8,
    in_len: usize,
) -> std::ffi::c_int {
    let ticket_len = in_len.max(ID_LEN);
    if max_out_len < ticket_len || out.is_null() || out_len.is_null() || in_.is_null() {
        return 0;
    }
    // SAFETY: `in_` is readable for `in_len` bytes (BoringSSL's contract, checked non-null).
    let session = unsafe { std::slice::from_raw_parts(in_, in_len) }.to_vec();
    let stored = catch_unwind(move || {
        let mut id = [0u8; ID_LEN];
        crate::ssl_lib::rand::rand_bytes(&mut id).ok()?;
        let mut guard = CACHE.lock().ok()?;
        let cache = guard.get_or_insert_with(Cache::default);
        while cache.order.len() >= CAPACITY {
            if let Some(old) = cache.order.pop_front() {
                cache.sessions.remove(&old);
            }
        }
        cache.sessions.insert(id, session);
        cache.order.push_back(id);
        Some(id)
    });
    match stored {
        Ok(Some(id)) => {
            // SAFETY: `out` is writable for `max_out_len` >= ticket_len >= ID_LEN bytes and
            // `out_len` is writable (BoringSSL's contract, checked above).
            unsafe {
                std::ptr::copy_nonoverlapping(id.as_ptr(), out, ID_LEN);
                std::ptr::write_bytes(out.add(ID_LEN), 0, ticket_len - ID_LEN);
                *out_len = ticket_len;
            }
            1
        }
        _ => 0,
    }
}

/// Looks the ticket's id up; an unknown id is ignored (a full handshake follows).
///
/// # Safety
/// As [`seal`].
unsafe extern "C" fn open(
    _ssl: *mut ffi::SSL,
    out: *mut u8,
    out_len: *mut usize,
    max_out_len: usize,
    in_: *const u8,
    in_len: usize,
) -> ffi::ssl_ticket_aead_result_t {
    let ignore = ffi::ssl_ticket_aead_result_t::ssl_ticket_aead_ignore_ticket;
    if in_len < ID_LEN || out.is_null() || out_len.is_null() || in_.is_null() {
        return ignore;
    }
    let mut id = [0u8; ID_LEN];
    // SAFETY: `in_` is readable for `in_len` >= ID_LEN bytes (checked above).
    unsafe { std::ptr::copy_nonoverlapping(in_, id.as_mut_ptr(), ID_LEN) };
    let found = catch_unwind(|| CACHE.lock().ok()?.as_ref()?.sessions.get(&id).cloned()).ok().flatten();
    match found {
        Some(session) if session.len() <= max_out_len => {
            // SAFETY: `out` is writable for `max_out_len` >= session.len() bytes and
            // `out_len` is writable (BoringSSL's contract, checked above).
            unsafe {
                std::ptr::copy_nonoverlapping(session.as_ptr(), out, session.len());
                *out_len = session.len();
            }
            ffi::ssl_ticket_aead_result_t::ssl_ticket_aead_success
        }
        _ => ignore,
    }
}
