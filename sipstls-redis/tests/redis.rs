//! The Redis store and ticket keys against a real `redis-server` (one per test, on a free
//! loopback port, stopped by its PID when the test ends or fails).

use std::time::{Duration, Instant};

use sipstls_core::{SessionStore, TicketKeyProvider};
use sipstls_redis::testing::RedisServer;
use sipstls_redis::{RedisConfig, RedisSessionStore, RedisTicketKeys};

const SECRET: [u8; 32] = [0x11; 32];
const HOUR: Duration = Duration::from_secs(3600);

fn store(r: &RedisServer) -> RedisSessionStore {
    RedisSessionStore::new(RedisConfig::new(r.url(), SECRET)).unwrap()
}

fn redis_keys(r: &RedisServer, pattern: &str) -> Vec<Vec<u8>> {
    r.cmd(redis::cmd("KEYS").arg(pattern)).unwrap()
}

#[test]
fn put_get_take_and_sealed_at_rest() {
    let r = RedisServer::start().unwrap();
    let s = store(&r);
    assert!(s.put(b"id-1", b"session one", HOUR));
    assert_eq!(s.get(b"id-1").as_deref(), Some(&b"session one"[..]));
    // Another node (another store object, same secret) sees it.
    assert_eq!(store(&r).get(b"id-1").as_deref(), Some(&b"session one"[..]));
    assert_eq!(s.take(b"id-1").as_deref(), Some(&b"session one"[..]));
    assert_eq!(s.get(b"id-1"), None, "take removed it");
    assert_eq!(s.get(b"never"), None);
    assert!(s.put(b"id-2", b"x", HOUR) && s.remove(b"id-2") && !s.remove(b"id-2"));
    // At rest: sealed, the plaintext is not in Redis; the TTL is set.
    assert!(s.put(b"id-3", b"plaintext master secret", HOUR));
    let keys = redis_keys(&r, "sipstls:s:*");
    assert_eq!(keys, vec![b"sipstls:s:69642d33".to_vec()]);
    let raw: Vec<u8> = r.cmd(redis::cmd("GET").arg(&keys[0])).unwrap();
    assert!(!raw.windows(9).any(|w| w == b"plaintext"), "value stored in clear");
    let ttl: i64 = r.cmd(redis::cmd("PTTL").arg(&keys[0])).unwrap();
    assert!(ttl > 3_500_000 && ttl <= 3_600_000, "PTTL {ttl}");
    // Another cluster secret cannot read it.
    let other = RedisSessionStore::new(RedisConfig::new(r.url(), [0x22; 32])).unwrap();
    assert_eq!(other.get(b"id-3"), None);
    assert_eq!(other.stats().rejected, 1);
    let st = s.stats();
    assert_eq!((st.stored, st.errors, st.skipped), (3, 0, 0), "{st:?}");
}

#[test]
fn entries_expire() {
    let r = RedisServer::start().unwrap();
    let s = store(&r);
    assert!(s.put(b"short", b"v", Duration::from_millis(200)));
    assert!(s.put(b"long", b"v", HOUR));
    assert!(s.get(b"short").is_some());
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(s.get(b"short"), None);
    assert!(s.get(b"long").is_some());
}

#[test]
fn corrupted_forged_and_moved_entries_rejected() {
    let r = RedisServer::start().unwrap();
    let s = store(&r);
    assert!(s.put(b"a", b"session a", HOUR));
    assert!(s.put(b"b", b"session b", HOUR));
    let (ka, kb) = (b"sipstls:s:61".to_vec(), b"sipstls:s:62".to_vec());
    // One flipped bit.
    let mut raw: Vec<u8> = r.cmd(redis::cmd("GET").arg(&ka)).unwrap();
    let mid = raw.len() / 2;
    raw[mid] ^= 0x04;
    let _: () = r.cmd(redis::cmd("SET").arg(&ka).arg(&raw)).unwrap();
    assert_eq!(s.get(b"a"), None, "corrupted entry trusted");
    // b's (valid) value copied under a's key.
    let raw_b: Vec<u8> = r.cmd(redis::cmd("GET").arg(&kb)).unwrap();
    let _: () = r.cmd(redis::cmd("SET").arg(&ka).arg(&raw_b)).unwrap();
    assert_eq!(s.get(b"a"), None, "moved entry trusted");
    // Forged: garbage, empty, huge.
    for forged in [b"\x01garbage garbage garbage garbage garbage".to_vec(), Vec::new(), vec![1u8; 1 << 20]] {
        let _: () = r.cmd(redis::cmd("SET").arg(&ka).arg(&forged)).unwrap();
        assert_eq!(s.get(b"a"), None, "forged entry of {} bytes trusted", forged.len());
        assert_eq!(s.take(b"a"), None);
    }
    assert_eq!(s.get(b"b").as_deref(), Some(&b"session b"[..]), "intact entry still read");
    let st = s.stats();
    assert_eq!(st.rejected, 8, "{st:?}"); // corrupted, moved, then 3 forged x (get, take)
    assert_eq!(st.errors, 0, "{st:?}");
}

#[test]
fn oversized_values_refused() {
    let r = RedisServer::start().unwrap();
    let s = store(&r);
    assert!(!s.put(b"big", &vec![0u8; 20 * 1024], HOUR));
    assert!(redis_keys(&r, "sipstls:*").is_empty());
}

#[test]
fn down_store_answers_quickly_and_recovers() {
    let mut r = RedisServer::start().unwrap();
    let port = r.port();
    let s = store(&r);
    assert!(s.put(b"k", b"v", HOUR));
    r.stop();
    // The first failure costs at most the timeouts; the next ones skip Redis entirely.
    let t = Instant::now();
    assert_eq!(s.get(b"k"), None);
    assert!(t.elapsed() < Duration::from_millis(500), "first failure took {:?}", t.elapsed());
    let t = Instant::now();
    for _ in 0..1000 {
        assert_eq!(s.get(b"k"), None);
        assert!(!s.put(b"k2", b"v", HOUR));
    }
    assert!(t.elapsed() < Duration::from_millis(200), "2000 skipped calls took {:?}", t.elapsed());
    let st = s.stats();
    assert!(st.skipped >= 2000 && st.errors >= 1, "{st:?}");
    // Redis back (empty): after retry_after the store works again.
    let _r2 = RedisServer::start_on(port).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !s.put(b"k3", b"v3", HOUR) {
        assert!(Instant::now() < deadline, "store did not recover");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(s.get(b"k3").as_deref(), Some(&b"v3"[..]));
}

#[test]
fn stalled_store_bounded_by_timeouts() {
    let r = RedisServer::start().unwrap();
    let s = store(&r);
    assert!(s.put(b"k", b"v", HOUR));
    r.pause(); // accepts TCP (kernel backlog) but answers nothing
    let t = Instant::now();
    assert_eq!(s.get(b"k"), None);
    let first = t.elapsed();
    assert!(first < Duration::from_millis(500), "stalled Redis held a lookup {first:?}");
    let t = Instant::now();
    assert_eq!(s.get(b"k"), None);
    assert!(t.elapsed() < Duration::from_millis(20), "breaker did not skip: {:?}", t.elapsed());
    r.resume();
}

#[test]
fn ticket_keys_agree_across_nodes_and_rotate() {
    let r = RedisServer::start().unwrap();
    let period = Duration::from_secs(2);
    let a = RedisTicketKeys::new(RedisConfig::new(r.url(), SECRET), period, Duration::from_millis(100)).unwrap();
    let b = RedisTicketKeys::new(RedisConfig::new(r.url(), SECRET), period, Duration::from_millis(100)).unwrap();
    let ka = a.keys().expect("keys from Redis");
    let kb = b.keys().expect("keys from Redis");
    if ka.current != kb.current {
        // A period boundary fell between the two calls: both agree on the next call.
        assert_eq!(a.keys().unwrap().current, b.keys().unwrap().current);
    }
    // Rotation: after one period the old current key is the previous one.
    let before = a.keys().unwrap().current;
    // Sleep to just after the next period boundary (not two boundaries).
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let period_ms = period.as_millis() as u64;
    std::thread::sleep(Duration::from_millis(period_ms - now_ms % period_ms + 150));
    let after = a.keys().unwrap();
    assert_ne!(after.current, before, "no rotation");
    assert_eq!(after.previous.as_ref(), Some(&before), "previous key lost");
    assert_eq!(b.keys().unwrap(), after, "nodes disagree after rotation");
    // The keys are sealed in Redis: neither name nor key appears there in clear.
    for k in redis_keys(&r, "sipstls:k:*") {
        let raw: Vec<u8> = r.cmd(redis::cmd("GET").arg(&k)).unwrap();
        assert!(!raw.windows(16).any(|w| w == after.current.name || w == before.name));
    }
    // Debug never shows them.
    let dbg = format!("{a:?} {after:?}");
    assert!(!dbg.contains(&format!("{:?}", after.current.key)), "{dbg}");
}

#[test]
fn ticket_keys_corrupted_in_redis_not_used_and_down_redis_keeps_cache() {
    let mut r = RedisServer::start().unwrap();
    let period = Duration::from_secs(3600);
    let a = RedisTicketKeys::new(RedisConfig::new(r.url(), SECRET), period, Duration::from_millis(50)).unwrap();
    let good = a.keys().unwrap();
    // Overwrite the current key with a forged one: a fresh node refuses it (no keys:
    // full handshakes) instead of sealing tickets with it.
    let keys = redis_keys(&r, "sipstls:k:*");
    assert_eq!(keys.len(), 1);
    let _: () = r.cmd(redis::cmd("SET").arg(&keys[0]).arg(vec![1u8; 90])).unwrap();
    let fresh = RedisTicketKeys::new(RedisConfig::new(r.url(), SECRET), period, Duration::from_millis(50)).unwrap();
    assert_eq!(fresh.keys(), None, "forged ticket key used");
    assert!(fresh.stats().rejected >= 1);
    // Redis down: the node that had keys keeps them (bounded by one more period).
    r.stop();
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    assert_eq!(a.keys().map(|k| k.current), Some(good.current), "cached keys lost while Redis is down");
    assert!(t.elapsed() < Duration::from_millis(500));
    let other_secret = RedisTicketKeys::new(RedisConfig::new(r.url(), [9; 32]), period, HOUR).unwrap();
    assert_eq!(other_secret.keys(), None, "no Redis, no cache: no keys");
}

#[test]
fn stalled_redis_does_not_stall_ticket_key_readers() {
    let r = RedisServer::start().unwrap();
    // Refresh on every call: each call wants Redis.
    let a = std::sync::Arc::new(
        RedisTicketKeys::new(RedisConfig::new(r.url(), SECRET), Duration::from_secs(3600), Duration::ZERO).unwrap(),
    );
    let good = a.keys().unwrap().current;
    r.pause();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let a = a.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|_| {
                        let t = Instant::now();
                        let k = a.keys().map(|k| k.current);
                        (k, t.elapsed())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut times = Vec::new();
    for t in threads {
        for (k, d) in t.join().unwrap() {
            assert_eq!(k.as_ref(), Some(&good), "cached keys lost while Redis stalls");
            times.push(d);
        }
    }
    times.sort();
    let (median, max) = (times[times.len() / 2], times[times.len() - 1]);
    assert!(max < Duration::from_millis(500), "a call took {max:?}");
    assert!(median < Duration::from_millis(5), "median call {median:?}: readers waited for the refresher");
    r.resume();
}
