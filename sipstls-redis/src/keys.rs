//! Ticket keys in Redis, one per rotation period.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use sipstls_core::store::{TICKET_KEY_LEN, TICKET_KEY_NAME_LEN};
use sipstls_core::{Result, TicketKey, TicketKeyProvider, TicketKeys};

use crate::conn::{unix_ms, Conn, Count, RedisConfig, RedisStats};

/// Ticket keys shared through Redis, rotated every `period`.
///
/// The key of period `n` (`unix time / period`) lives under `<prefix>k:<n>`, sealed with the
/// cluster secret. The first node that needs it creates a random one with `SET NX` and
/// every node reads back the winner, so all nodes agree without further coordination.
/// Tickets of period `n - 1` are still accepted (a ticket lives one to two periods); clocks
/// of the nodes must agree to well within a period.
///
/// Keys are cached in memory and read again when the period changes, or every `refresh`
/// (to pick up a key another node created while this one could not reach Redis). While
/// Redis is unreachable the cached keys stay in use for up to one more period; a node
/// that never reached Redis has no keys, and issues and accepts no tickets (full
/// handshakes), rather than keys the others do not know.
pub struct RedisTicketKeys {
    conn: Conn,
    period: Duration,
    refresh: Duration,
    state: Mutex<State>,
    /// Held by the one thread that asks Redis.
    refreshing: Mutex<()>,
    rng: SystemRandom,
}

#[derive(Default)]
struct State {
    /// Period of `keys.current`.
    period_no: u64,
    keys: Option<TicketKeys>,
    fetched: Option<Instant>,
}

impl State {
    /// The cached keys, if still usable in period `n` (at most one period old).
    fn usable(&self, n: u64) -> Option<TicketKeys> {
        self.keys.clone().filter(|_| self.period_no + 1 >= n)
    }

    /// Whether Redis should be asked again in period `n`. Without keys (a rejected
    /// entry, or Redis never reached) ask again within a second, not every handshake;
    /// failures are also rate-limited by the connection's circuit breaker.
    fn stale(&self, n: u64, refresh: Duration) -> bool {
        let every = if self.keys.is_some() { refresh } else { refresh.min(Duration::from_secs(1)) };
        self.period_no != n || self.fetched.is_none_or(|t| t.elapsed() >= every)
    }
}

impl RedisTicketKeys {
    /// Keys rotated every `period` (at least 2 seconds), re-read at least every `refresh`.
    pub fn new(cfg: RedisConfig, period: Duration, refresh: Duration) -> Result<Self> {
        Ok(RedisTicketKeys {
            conn: Conn::new(cfg, b"ticket keys")?,
            period: period.max(Duration::from_secs(2)),
            refresh,
            state: Mutex::default(),
            refreshing: Mutex::new(()),
            rng: SystemRandom::new(),
        })
    }

    /// Counters since creation.
    pub fn stats(&self) -> RedisStats {
        self.conn.stats()
    }

    fn period_no(&self) -> u64 {
        unix_ms() / u64::try_from(self.period.as_millis()).unwrap_or(u64::MAX).max(1)
    }

    /// Reads the key of period `n`; creates it first when `create` and it is missing.
    /// `Err(())`: Redis failed; `Ok(None)`: missing (or rejected).
    fn load(&self, n: u64, create: bool) -> std::result::Result<Option<TicketKey>, ()> {
        let rkey = self.conn.key("k:", &n.to_be_bytes());
        let read = |conn: &Conn| -> std::result::Result<Option<Vec<u8>>, ()> {
            conn.run(|c| redis::cmd("GET").arg(&rkey).query::<Option<Vec<u8>>>(c)).ok_or(())
        };
        let mut got = read(&self.conn)?;
        if got.is_none() && create {
            let mut fresh = [0u8; TICKET_KEY_NAME_LEN + TICKET_KEY_LEN];
            self.rng.fill(&mut fresh).map_err(|_| ())?;
            // Lives three periods: current, then previous, then a margin for clock skew.
            let ttl = self.period * 3;
            let sealed = self.conn.seal(&rkey, &fresh, ttl);
            fresh.fill(0);
            let sealed = sealed.ok_or(())?;
            let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
            let set = self.conn.run(|c| {
                redis::cmd("SET").arg(&rkey).arg(sealed).arg("NX").arg("PX").arg(ms).query::<Option<String>>(c)
            });
            if set.is_none() {
                return Err(());
            }
            if set.flatten().is_some() {
                self.conn.counters.add(Count::Stored);
            }
            got = read(&self.conn)?; // ours, or the one another node set first
        }
        match got {
            None => {
                self.conn.counters.add(Count::Miss);
                Ok(None)
            }
            Some(sealed) => Ok(self.conn.open(&rkey, &sealed).and_then(|b| TicketKey::from_bytes(&b))),
        }
    }

    fn fetch(&self, n: u64) -> std::result::Result<Option<TicketKeys>, ()> {
        let Some(current) = self.load(n, true)? else { return Ok(None) };
        let previous = self.load(n.saturating_sub(1), false)?;
        Ok(Some(TicketKeys { current, previous }))
    }
}

impl TicketKeyProvider for RedisTicketKeys {
    fn keys(&self) -> Option<TicketKeys> {
        let n = self.period_no();
        let (cached, stale) = {
            let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            (st.usable(n), st.stale(n, self.refresh))
        };
        if !stale {
            return cached;
        }
        // One thread asks Redis (the state lock is not held meanwhile); the others use
        // what is cached, and wait only when nothing is (the first handshakes of a node).
        let _refreshing = match self.refreshing.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                if cached.is_some() {
                    return cached;
                }
                let _wait = self.refreshing.lock().unwrap_or_else(|p| p.into_inner());
                return self.state.lock().unwrap_or_else(|p| p.into_inner()).usable(n);
            }
        };
        // Another thread may have refreshed while this one took the refresh lock.
        if !self.state.lock().unwrap_or_else(|p| p.into_inner()).stale(n, self.refresh) {
            return self.state.lock().unwrap_or_else(|p| p.into_inner()).usable(n);
        }
        let fetched = self.fetch(n);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match fetched {
            Ok(Some(k)) => {
                st.keys = Some(k);
                st.period_no = n;
                st.fetched = Some(Instant::now());
            }
            // A rejected or missing key: keep nothing that the others may not share.
            Ok(None) => {
                st.keys = None;
                st.period_no = n;
                st.fetched = Some(Instant::now());
            }
            // Redis failed: keep the cached keys (within one more period).
            Err(()) => {}
        }
        st.usable(n)
    }

    fn lifetime(&self) -> Duration {
        self.period
    }
}

impl fmt::Debug for RedisTicketKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTicketKeys")
            .field("cfg", &self.conn.cfg)
            .field("period", &self.period)
            .field("refresh", &self.refresh)
            .finish_non_exhaustive()
    }
}
