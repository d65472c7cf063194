//! A session-ticket encrypter that every process of a server agrees on.
//!
//! rustls's own ticketer draws fresh keys when a rotation falls due, separately in every
//! process, and refuses tickets longer than the longest one the current process has issued,
//! so a freshly forked worker rejects every ticket until it has issued one itself. Here
//! keys are derived from one secret and the time epoch: all workers that share the secret
//! (created before `fork()`) compute the same current and previous keys, and rotation
//! needs no coordination.
//!
//! Ticket format: `key name (16) || nonce (12) || AES-256-GCM(plaintext) || tag (16)`.
//!
//! The ticketer holds no lock (keys are derived per call, about a microsecond of HKDF):
//! in the migrating model it lives in shared memory, where a process-private lock such as
//! `std::sync::Mutex` would lose wake-ups between processes and deadlock them.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf::{KeyType, Salt, HKDF_SHA256};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;

const NAME_LEN: usize = 16;
const TAG_LEN: usize = 16;
/// Tickets above this size are refused before any work (rustls's are a few hundred bytes;
/// client certificates make them larger).
const MAX_TICKET: usize = 16 * 1024;

struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

struct EpochKey {
    name: [u8; NAME_LEN],
    key: LessSafeKey,
}

/// Tickets with keys derived from a shared secret and the current time epoch; tickets of
/// the previous epoch are still accepted, so a ticket lives between one and two periods.
pub struct EpochTicketer {
    secret: [u8; 32],
    period_secs: u64,
    rng: SystemRandom,
}

impl std::fmt::Debug for EpochTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochTicketer").field("period_secs", &self.period_secs).finish_non_exhaustive()
    }
}

impl EpochTicketer {
    /// A ticketer with a fresh random secret.
    pub fn random(period_secs: u64) -> Option<Self> {
        let mut secret = [0u8; 32];
        SystemRandom::new().fill(&mut secret).ok()?;
        Some(Self::from_secret(secret, period_secs))
    }

    /// A ticketer from a given secret (every process or node with the same secret and a
    /// clock within one period agrees).
    pub fn from_secret(secret: [u8; 32], period_secs: u64) -> Self {
        EpochTicketer { secret, period_secs: period_secs.max(60), rng: SystemRandom::new() }
    }

    fn epoch_now(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) / self.period_secs
    }

    fn derive(&self, epoch: u64) -> Option<EpochKey> {
        let prk = Salt::new(HKDF_SHA256, b"sipstls ticket keys v1").extract(&self.secret);
        let info = epoch.to_be_bytes();
        let info_parts = [&info[..]];
        let okm = prk.expand(&info_parts, Len(32 + NAME_LEN)).ok()?;
        let mut material = [0u8; 32 + NAME_LEN];
        okm.fill(&mut material).ok()?;
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &material[..32]).ok()?);
        let mut name = [0u8; NAME_LEN];
        name.copy_from_slice(&material[32..]);
        Some(EpochKey { name, key })
    }

    /// Runs `f` with the key of `epoch`.
    fn with_key<T>(&self, epoch: u64, f: impl FnOnce(&EpochKey) -> Option<T>) -> Option<T> {
        f(&self.derive(epoch)?)
    }
}

impl ProducesTickets for EpochTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        u32::try_from(self.period_secs).unwrap_or(u32::MAX)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let epoch = self.epoch_now();
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        self.with_key(epoch, |k| {
            let mut out = Vec::with_capacity(NAME_LEN + NONCE_LEN + plain.len() + TAG_LEN);
            out.extend_from_slice(&k.name);
            out.extend_from_slice(&nonce);
            let mut body = plain.to_vec();
            k.key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&k.name), &mut body).ok()?;
            out.extend_from_slice(&body);
            Some(out)
        })
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() < NAME_LEN + NONCE_LEN + TAG_LEN || ticket.len() > MAX_TICKET {
            return None;
        }
        let (name, rest) = ticket.split_at(NAME_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let now = self.epoch_now();
        for epoch in [now, now.saturating_sub(1)] {
            let plain = self.with_key(epoch, |k| {
                if k.name != name {
                    return None;
                }
                let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
                let mut body = sealed.to_vec();
                let len = k.key.open_in_place(nonce, Aad::from(&k.name), &mut body).ok()?.len();
                body.truncate(len);
                Some(body)
            });
            if plain.is_some() {
                return plain;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_shared_secret() {
        let a = EpochTicketer::from_secret([7; 32], 3600);
        let b = EpochTicketer::from_secret([7; 32], 3600);
        let t = a.encrypt(b"session state").unwrap();
        assert_eq!(b.decrypt(&t).as_deref(), Some(&b"session state"[..]), "same secret, other instance");
        let other = EpochTicketer::from_secret([8; 32], 3600);
        assert_eq!(other.decrypt(&t), None, "other secret");
    }

    #[test]
    fn previous_epoch_accepted_older_refused() {
        let t = EpochTicketer::from_secret([1; 32], 3600);
        let now = t.epoch_now();
        let seal = |epoch: u64| {
            t.with_key(epoch, |k| {
                let nonce = [3u8; NONCE_LEN];
                let mut body = b"x".to_vec();
                k.key
                    .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&k.name), &mut body)
                    .ok()?;
                Some([&k.name[..], &nonce[..], &body[..]].concat())
            })
            .unwrap()
        };
        assert!(t.decrypt(&seal(now - 1)).is_some());
        assert!(t.decrypt(&seal(now - 2)).is_none());
    }

    #[test]
    fn tampering_and_bad_sizes_refused() {
        let t = EpochTicketer::from_secret([2; 32], 3600);
        let mut ticket = t.encrypt(b"state").unwrap();
        let last = ticket.len() - 1;
        ticket[last] ^= 1;
        assert_eq!(t.decrypt(&ticket), None);
        assert_eq!(t.decrypt(&[0u8; 10]), None);
        assert_eq!(t.decrypt(&vec![0u8; MAX_TICKET + 1]), None);
    }
}
