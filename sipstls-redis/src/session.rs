//! The session store.

use std::fmt;
use std::time::Duration;

use sipstls_core::{Result, SessionStore};

use crate::conn::{Conn, Count, RedisConfig, RedisStats};

/// Sessions in Redis: `SET key sealed PX ttl`, `GET`, `GETDEL` (Redis 6.2+), under
/// `<prefix>s:<hex session id>`. Every failure answers "not stored" / "not found" within the
/// configured timeouts, and opens the circuit breaker.
pub struct RedisSessionStore {
    conn: Conn,
}

impl RedisSessionStore {
    /// A store on `cfg.url`. Does not connect yet (the first handshake does), so a node
    /// starts while Redis is down.
    pub fn new(cfg: RedisConfig) -> Result<Self> {
        Ok(RedisSessionStore { conn: Conn::new(cfg, b"sessions")? })
    }

    /// Counters since creation.
    pub fn stats(&self) -> RedisStats {
        self.conn.stats()
    }

    fn fetch(&self, key: &[u8], command: &str) -> Option<Vec<u8>> {
        let rkey = self.conn.key("s:", key);
        let got: Option<Vec<u8>> = self.conn.run(|c| redis::cmd(command).arg(&rkey).query(c))?;
        match got {
            None => {
                self.conn.counters.add(Count::Miss);
                None
            }
            Some(sealed) => self.conn.open(&rkey, &sealed),
        }
    }
}

impl SessionStore for RedisSessionStore {
    fn put(&self, key: &[u8], value: &[u8], ttl: Duration) -> bool {
        let rkey = self.conn.key("s:", key);
        let Some(sealed) = self.conn.seal(&rkey, value, ttl) else { return false };
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let ok = self
            .conn
            .run(|c| redis::cmd("SET").arg(&rkey).arg(sealed).arg("PX").arg(ms).query::<Option<String>>(c))
            .flatten()
            .is_some();
        if ok {
            self.conn.counters.add(Count::Stored);
        }
        ok
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.fetch(key, "GET")
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.fetch(key, "GETDEL")
    }

    fn remove(&self, key: &[u8]) -> bool {
        let rkey = self.conn.key("s:", key);
        self.conn.run(|c| redis::cmd("DEL").arg(&rkey).query::<u64>(c)).unwrap_or(0) > 0
    }
}

impl fmt::Debug for RedisSessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSessionStore").field("cfg", &self.conn.cfg).finish_non_exhaustive()
    }
}
