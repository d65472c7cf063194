//! Session ticket keys that every forked worker shares.
//!
//! wolfSSL's default ticket callback creates its keys lazily, on the first ticket a
//! process issues, so after `fork()` each worker had its own keys and refused the others'
//! tickets (measured with the pinned fork checks). This callback uses keys made when the
//! domain is built, before any fork: ChaCha20-Poly1305 (wolfCrypt) under a per-epoch key
//! derived from a random per-domain secret. The epoch is 6 hours; tickets of the previous
//! epoch are still accepted (and renewed), so rotation needs no coordination between
//! processes.
//!
//! Resumption chains are bounded: wolfSSL 5.9.4 carries a TLS 1.3 ticket's nonce into the
//! session resumed from it and increments it for the next ticket, and fails the handshake
//! with `SESSION_TICKET_NONCE_OVERFLOW` once it reaches 255, so a client that always
//! resumes from the previous connection's ticket (OpenSSL, rustls and our own clients do)
//! was refused after 255 connections (measured). The callback counts the chain depth in
//! the last 4 bytes of its IV (authenticated as AAD) and declines tickets deeper than
//! [`MAX_CHAIN`]: that connection does a full handshake and the nonce starts again at 0.

use std::ffi::{c_int, c_uchar, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{SystemTime, UNIX_EPOCH};

use sipstls_wolfssl_sys as w;

use crate::cvt;

const EPOCH_SECS: u64 = 6 * 3600;
const KEY: usize = w::CHACHA20_POLY1305_AEAD_KEYSIZE as usize;
const NONCE: usize = w::CHACHA20_POLY1305_AEAD_IV_SIZE as usize;
const TAG: usize = w::CHACHA20_POLY1305_AEAD_AUTHTAG_SIZE as usize;
const NAME: usize = w::WOLFSSL_TICKET_NAME_SZ as usize;
const IV: usize = w::WOLFSSL_TICKET_IV_SZ as usize;
/// Longest resumption chain accepted (wolfSSL's nonce overflows at 255 tickets).
pub(crate) const MAX_CHAIN: u32 = 100;

/// A domain's ticket secret; its address is handed to wolfSSL as the callback context.
pub(crate) struct TicketKeys {
    /// Identifies the domain in the ticket's key name (first 8 bytes).
    id: [u8; 8],
    secret: [u8; KEY],
    /// Keys shared with other nodes ([`DomainConfig::ticket_keys`](sipstls_core::DomainConfig::ticket_keys)):
    /// new tickets are sealed with the provider's current key, named by its name; while
    /// the provider has no keys, with the domain's own epoch keys (wolfSSL fails the
    /// handshake when a ticket cannot be made, so a ticket this node alone opens is the
    /// fallback).
    provider: Option<sipstls_core::TicketKeysHandle>,
}

/// ChaCha20 keystream of `secret` at `nonce`: a PRF.
fn prf(secret: &[u8; KEY], nonce: &[u8; NONCE]) -> Option<[u8; KEY]> {
    let zeros = [0u8; KEY];
    let mut key = [0u8; KEY];
    let mut tag = [0u8; TAG];
    // SAFETY: every buffer is valid for the length wolfCrypt reads or writes (key 32,
    // nonce 12, 32 bytes in and out, tag 16); no AAD.
    let r = unsafe {
        w::wc_ChaCha20Poly1305_Encrypt(
            secret.as_ptr(),
            nonce.as_ptr(),
            std::ptr::null(),
            0,
            zeros.as_ptr(),
            KEY as u32,
            key.as_mut_ptr(),
            tag.as_mut_ptr(),
        )
    };
    cvt::wc_ok(r).is_ok().then_some(key)
}

/// The ChaCha20-Poly1305 key this backend uses for a provider key.
fn provider_key(k: &sipstls_core::TicketKey) -> Option<[u8; KEY]> {
    prf(&k.key, b"sipstls-wolf")
}

impl TicketKeys {
    pub(crate) fn new(random: &mut dyn FnMut(&mut [u8]) -> bool) -> Option<Box<TicketKeys>> {
        let mut k = Box::new(TicketKeys { id: [0; 8], secret: [0; KEY], provider: None });
        (random(&mut k.id) && random(&mut k.secret)).then_some(k)
    }

    /// Uses the provider's keys (see [`TicketKeys::provider`]).
    pub(crate) fn with_provider(mut self: Box<Self>, provider: Option<sipstls_core::TicketKeysHandle>) -> Box<Self> {
        self.provider = provider;
        self
    }

    /// The key of `epoch`: the ChaCha20 keystream of the secret at nonce `epoch` (a PRF).
    fn epoch_key(&self, epoch: u64) -> Option<[u8; KEY]> {
        let mut nonce = [0u8; NONCE];
        nonce[4..].copy_from_slice(&epoch.to_be_bytes());
        prf(&self.secret, &nonce)
    }
}

impl Drop for TicketKeys {
    fn drop(&mut self) {
        // Best effort: the secret does not outlive the domain in this allocation.
        for b in self.secret.iter_mut() {
            // SAFETY: `b` is a valid, aligned byte of our own array.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

/// A session id context that every node computes alike for the same domain (its
/// certificates, trust anchors and client verification settings; FNV-1a, not secret), so a
/// ticket sealed with shared keys passes the context check on another node.
pub(crate) fn stable_id_context(cfg: &sipstls_core::DomainConfig) -> String {
    let mut h = [0xcbf2_9ce4_8422_2325u64, 0x8422_2325_cbf2_9ce4u64];
    let mut eat = |bytes: &[u8]| {
        for (i, hv) in h.iter_mut().enumerate() {
            for b in bytes {
                *hv = (*hv ^ u64::from(*b) ^ i as u64).wrapping_mul(0x0100_0000_01b3);
            }
        }
    };
    for id in &cfg.identities {
        for c in &id.chain {
            eat(&(c.der().len() as u64).to_be_bytes());
            eat(c.der());
        }
    }
    eat(b"|ca");
    for c in &cfg.trust_anchors {
        eat(&(c.der().len() as u64).to_be_bytes());
        eat(c.der());
    }
    eat(&[u8::from(cfg.verify_peer), u8::from(cfg.require_peer_certificate), cfg.verify_depth]);
    format!("sipstls-{:016x}{:08x}", h[0], h[1] as u32) // 32 bytes, the most a context holds
}

fn current_epoch() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / EPOCH_SECS)
}

/// wolfSSL's ticket encryption callback (`SessionTicketEncCb`).
///
/// # Safety
/// Called by wolfSSL with `key_name` (16 bytes), `iv` (16), `mac` (32) and `ticket`
/// (`in_len` bytes, encrypted or decrypted in place) valid for the call, and `ctx` the
/// domain's `TicketKeys` (set with `wolfSSL_CTX_set_TicketEncCtx`), alive as long as the
/// context.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe extern "C" fn ticket_cb(
    ssl: *mut w::WOLFSSL,
    key_name: *mut c_uchar,
    iv: *mut c_uchar,
    mac: *mut c_uchar,
    enc: c_int,
    ticket: *mut c_uchar,
    in_len: c_int,
    out_len: *mut c_int,
    ctx: *mut c_void,
) -> c_int {
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: per the contract, `ctx` is a live TicketKeys.
        let Some(keys) = (unsafe { (ctx as *const TicketKeys).as_ref() }) else {
            return w::TicketEncRet_WOLFSSL_TICKET_RET_FATAL;
        };
        if key_name.is_null() || iv.is_null() || mac.is_null() || ticket.is_null() || out_len.is_null() || in_len < 0 {
            return w::TicketEncRet_WOLFSSL_TICKET_RET_FATAL;
        }
        // SAFETY: sizes per the callback's contract (WOLFSSL_TICKET_NAME_SZ, _IV_SZ, _MAC_SZ).
        let (name, iv, mac) = unsafe {
            (
                std::slice::from_raw_parts_mut(key_name, NAME),
                std::slice::from_raw_parts_mut(iv, IV),
                std::slice::from_raw_parts_mut(mac, w::WOLFSSL_TICKET_MAC_SZ as usize),
            )
        };
        let len = in_len as usize;
        let now = current_epoch();
        // The session whose ticket this is (server sessions' I/O context is their Shared).
        // SAFETY: `ssl` is the live session that is running this callback.
        let sh = unsafe { crate::session::shared_of(ssl) };
        if enc != 0 {
            let shared = keys.provider.as_ref().and_then(|p| p.keys()).and_then(|k| {
                let key = provider_key(&k.current)?;
                Some((k.current.name, key))
            });
            let key = match shared {
                Some((shared_name, key)) => {
                    name.copy_from_slice(&shared_name);
                    key
                }
                None => {
                    name[..8].copy_from_slice(&keys.id);
                    name[8..].copy_from_slice(&now.to_be_bytes());
                    let Some(key) = keys.epoch_key(now) else { return w::TicketEncRet_WOLFSSL_TICKET_RET_FATAL };
                    key
                }
            };
            if crate::backend::random_bytes(&mut iv[..NONCE]).is_err() {
                return w::TicketEncRet_WOLFSSL_TICKET_RET_FATAL;
            }
            let depth = sh.map_or(0, |s| s.ticket_depth).saturating_add(1);
            iv[NONCE..].copy_from_slice(&depth.to_be_bytes());
            let mut aad = [0u8; NAME + IV];
            aad[..NAME].copy_from_slice(name);
            aad[NAME..].copy_from_slice(iv);
            mac.fill(0);
            // SAFETY: `ticket` holds `len` bytes, encrypted in place (ChaCha20 is a stream
            // cipher; wolfSSL's own ticket callback does the same); the tag goes to `mac`.
            let r = unsafe {
                w::wc_ChaCha20Poly1305_Encrypt(
                    key.as_ptr(),
                    iv.as_ptr(),
                    aad.as_ptr(),
                    aad.len() as u32,
                    ticket,
                    len as u32,
                    ticket,
                    mac.as_mut_ptr(),
                )
            };
            if cvt::wc_ok(r).is_err() {
                return w::TicketEncRet_WOLFSSL_TICKET_RET_FATAL;
            }
            // SAFETY: `out_len` is a valid out-parameter.
            unsafe { *out_len = in_len };
            return w::TicketEncRet_WOLFSSL_TICKET_RET_OK;
        }
        // Decrypt: a provider key by name (current or previous), or our domain's key of
        // this epoch or the previous one; then the tag must verify.
        let shared = keys.provider.as_ref().and_then(|p| p.keys()).and_then(|k| {
            let (key, current) = k.find(name)?;
            Some((provider_key(key)?, current))
        });
        let (key, renew) = match shared {
            Some((key, current)) => (key, !current),
            None => {
                if name[..8] != keys.id {
                    return w::TicketEncRet_WOLFSSL_TICKET_RET_REJECT;
                }
                let mut e = [0u8; 8];
                e.copy_from_slice(&name[8..]);
                let epoch = u64::from_be_bytes(e);
                if epoch != now && epoch.wrapping_add(1) != now {
                    return w::TicketEncRet_WOLFSSL_TICKET_RET_REJECT;
                }
                let Some(key) = keys.epoch_key(epoch) else { return w::TicketEncRet_WOLFSSL_TICKET_RET_FATAL };
                (key, epoch != now)
            }
        };
        let mut d = [0u8; 4];
        d.copy_from_slice(&iv[NONCE..]);
        let depth = u32::from_be_bytes(d);
        if depth > MAX_CHAIN {
            return w::TicketEncRet_WOLFSSL_TICKET_RET_REJECT;
        }
        let mut aad = [0u8; NAME + IV];
        aad[..NAME].copy_from_slice(name);
        aad[NAME..].copy_from_slice(iv);
        // SAFETY: as for encryption; wolfCrypt checks the tag before it reports success.
        let r = unsafe {
            w::wc_ChaCha20Poly1305_Decrypt(
                key.as_ptr(),
                iv.as_ptr(),
                aad.as_ptr(),
                aad.len() as u32,
                ticket,
                len as u32,
                mac.as_ptr(),
                ticket,
            )
        };
        if cvt::wc_ok(r).is_err() {
            return w::TicketEncRet_WOLFSSL_TICKET_RET_REJECT;
        }
        // SAFETY: `out_len` is a valid out-parameter.
        unsafe { *out_len = in_len };
        if let Some(sh) = sh {
            sh.ticket_depth = depth;
        }
        // Renewing (RET_CREATE: resume and send a fresh ticket) is TLS 1.2's way; wolfSSL's
        // TLS 1.3 PSK path takes only RET_OK (measured: a TLS 1.3 ticket under the previous
        // key was refused with RET_CREATE), and TLS 1.3 sends fresh tickets after every
        // handshake anyway.
        // SAFETY: `ssl` is the live session running this callback.
        let tls13 = unsafe { w::wolfSSL_version(ssl) } as u32 == w::TLS1_3_VERSION;
        if renew && !tls13 {
            w::TicketEncRet_WOLFSSL_TICKET_RET_CREATE
        } else {
            w::TicketEncRet_WOLFSSL_TICKET_RET_OK
        }
    }))
    .unwrap_or(w::TicketEncRet_WOLFSSL_TICKET_RET_FATAL)
}
