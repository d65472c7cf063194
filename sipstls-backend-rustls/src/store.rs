//! Resumption state from outside the process: rustls's session storage over a
//! [`SessionStoreHandle`], and a ticketer whose keys come from a [`TicketKeysHandle`].
//!
//! Ticket format (as [`crate::tickets`]): `key name (16) || nonce (12) || AES-256-GCM(plaintext)
//! || tag (16)`, the AES key derived from the provider's key with HKDF-SHA256 and a label of
//! this backend, the name as additional data.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf::{KeyType, Salt, HKDF_SHA256};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use rustls::server::{ProducesTickets, StoresServerSessions};
use sipstls_core::store::{TicketKey, TICKET_KEY_NAME_LEN};
use sipstls_core::{SessionStoreHandle, TicketKeysHandle};

const TAG_LEN: usize = 16;
/// Tickets above this size are refused before any work.
const MAX_TICKET: usize = 16 * 1024;

/// rustls's server session storage backed by a sipstls [`SessionStoreHandle`].
pub(crate) struct StoreAdapter(pub(crate) SessionStoreHandle);

impl fmt::Debug for StoreAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreAdapter({:?})", self.0)
    }
}

impl StoresServerSessions for StoreAdapter {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        catch_unwind(AssertUnwindSafe(|| self.0.put(&key, &value))).unwrap_or(false)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        catch_unwind(AssertUnwindSafe(|| self.0.get(key))).ok().flatten()
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        catch_unwind(AssertUnwindSafe(|| self.0.take(key))).ok().flatten()
    }

    fn can_cache(&self) -> bool {
        true
    }
}

struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// The AES-256-GCM key this backend uses for a provider key.
fn aead_key(k: &TicketKey) -> Option<LessSafeKey> {
    let prk = Salt::new(HKDF_SHA256, b"sipstls rustls ticket aead v1").extract(&k.key);
    let info = [&k.name[..]];
    let okm = prk.expand(&info, Len(32)).ok()?;
    let mut material = [0u8; 32];
    okm.fill(&mut material).ok()?;
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &material).ok()?);
    material.fill(0);
    Some(key)
}

/// Tickets sealed with the provider's current key; tickets naming the previous key are
/// still opened. No keys from the provider: no tickets issued, none opened (full
/// handshakes).
pub(crate) struct ProviderTicketer {
    keys: TicketKeysHandle,
    rng: SystemRandom,
}

impl ProviderTicketer {
    pub(crate) fn new(keys: TicketKeysHandle) -> Self {
        ProviderTicketer { keys, rng: SystemRandom::new() }
    }
}

impl fmt::Debug for ProviderTicketer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProviderTicketer(..)")
    }
}

impl ProducesTickets for ProviderTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        u32::try_from(self.keys.lifetime().as_secs()).unwrap_or(u32::MAX)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        catch_unwind(AssertUnwindSafe(|| {
            let keys = self.keys.keys()?;
            let k = &keys.current;
            let key = aead_key(k)?;
            let mut nonce = [0u8; NONCE_LEN];
            self.rng.fill(&mut nonce).ok()?;
            let mut out = Vec::with_capacity(TICKET_KEY_NAME_LEN + NONCE_LEN + plain.len() + TAG_LEN);
            out.extend_from_slice(&k.name);
            out.extend_from_slice(&nonce);
            let mut body = plain.to_vec();
            key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&k.name), &mut body).ok()?;
            out.extend_from_slice(&body);
            Some(out)
        }))
        .ok()
        .flatten()
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() < TICKET_KEY_NAME_LEN + NONCE_LEN + TAG_LEN || ticket.len() > MAX_TICKET {
            return None;
        }
        catch_unwind(AssertUnwindSafe(|| {
            let (name, rest) = ticket.split_at(TICKET_KEY_NAME_LEN);
            let (nonce, sealed) = rest.split_at(NONCE_LEN);
            let keys = self.keys.keys()?;
            let (k, _current) = keys.find(name)?;
            let key = aead_key(k)?;
            let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
            let mut body = sealed.to_vec();
            let len = key.open_in_place(nonce, Aad::from(&k.name), &mut body).ok()?.len();
            body.truncate(len);
            Some(body)
        }))
        .ok()
        .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipstls_core::{StaticTicketKeys, TicketKeys};
    use std::time::Duration;

    fn key(n: u8) -> TicketKey {
        TicketKey { name: [n; 16], key: [n ^ 0x5a; 32] }
    }

    fn ticketer(current: u8, previous: Option<u8>) -> ProviderTicketer {
        let keys = TicketKeys { current: key(current), previous: previous.map(key) };
        ProviderTicketer::new(TicketKeysHandle::new(StaticTicketKeys::new(keys, Duration::from_secs(600))))
    }

    #[test]
    fn shared_keys_rotation_and_tampering() {
        let a = ticketer(1, None);
        let t = a.encrypt(b"session").unwrap();
        assert_eq!(ticketer(1, None).decrypt(&t).as_deref(), Some(&b"session"[..]), "other node, same key");
        assert_eq!(ticketer(2, Some(1)).decrypt(&t).as_deref(), Some(&b"session"[..]), "after one rotation");
        assert_eq!(ticketer(3, Some(2)).decrypt(&t), None, "after two rotations");
        let mut bad = t.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(a.decrypt(&bad), None);
        assert_eq!(a.decrypt(&t[..20]), None);
        assert_eq!(a.lifetime(), 600);
    }
}
