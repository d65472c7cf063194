//! Moves bytes between an in-memory client and server session, charging the time of every
//! session call to the side that made it.
//!
//! This is a tighter loop than `sipstls_conformance::pump`: buffers are allocated once
//! (pump allocates 32-64 KiB per call, which would land in the measurements) and the
//! time inside each side's calls is accumulated separately.

use std::time::{Duration, Instant};

use sipstls::{ReadStatus, Session};

/// A receiver that takes no ciphertext this many times in a row is stuck.
const MAX_STALLS: usize = 8;
/// A handshake needs 2-4 round trips; more than this means it is stuck.
const MAX_ROUNDS: usize = 32;
/// Free space kept in a batch buffer before each `take_tls`.
const MIN_ROOM: usize = 32 * 1024;

/// Time spent inside each side's session calls.
#[derive(Debug, Default, Clone, Copy)]
pub struct Clocks {
    /// Inside server-session calls (including creating and dropping the session).
    pub server: Duration,
    /// Inside client-session calls.
    pub client: Duration,
}

/// Runs `f` and adds its duration to `acc`.
pub fn timed<T>(acc: &mut Duration, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    *acc += start.elapsed();
    out
}

/// Ciphertext collected from a sender before the receiver is given it.
#[derive(Debug)]
pub struct Batch {
    buf: Vec<u8>,
    len: usize,
}

impl Batch {
    /// A batch buffer with room for `capacity` bytes (it grows if it must).
    pub fn with_capacity(capacity: usize) -> Batch {
        Batch { buf: vec![0; capacity.max(2 * MIN_ROOM)], len: 0 }
    }

    /// The ciphertext collected so far.
    pub fn filled(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Takes every pending ciphertext byte of `from`.
    fn collect(&mut self, from: &mut dyn Session) {
        while from.wants_write() {
            if self.buf.len() - self.len < MIN_ROOM {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let n = from.take_tls(&mut self.buf[self.len..]);
            if n == 0 {
                break;
            }
            self.len += n;
        }
    }
}

/// Buffers reused by every transfer, so no allocation of the harness is timed.
#[derive(Debug)]
pub struct Scratch {
    /// One flight of ciphertext.
    pub wire: Vec<u8>,
    /// Plaintext read by the receiver (discarded).
    pub plain: Vec<u8>,
    /// A batch of records.
    pub batch: Batch,
}

impl Scratch {
    /// Scratch buffers for batches of up to `batch_bytes` of plaintext.
    pub fn new(batch_bytes: usize) -> Scratch {
        Scratch {
            wire: vec![0; 64 * 1024],
            plain: vec![0; 64 * 1024],
            // Record overhead is well under 64 bytes per 1 KiB record.
            batch: Batch::with_capacity(batch_bytes + batch_bytes / 16 + 4096),
        }
    }
}

/// Runs a handshake to completion, including post-handshake messages (TLS 1.3 tickets),
/// so both sides are idle at the end.
pub fn handshake(
    client: &mut dyn Session,
    server: &mut dyn Session,
    clocks: &mut Clocks,
    wire: &mut [u8],
) -> Result<(), String> {
    for _ in 0..MAX_ROUNDS {
        flight(client, &mut clocks.client, server, &mut clocks.server, wire)
            .map_err(|e| format!("server failed: {e}"))?;
        flight(server, &mut clocks.server, client, &mut clocks.client, wire)
            .map_err(|e| format!("client failed: {e}"))?;
        let idle = !client.wants_write() && !server.wants_write();
        if idle && !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
    }
    Err(format!("the handshake did not finish in {MAX_ROUNDS} rounds"))
}

/// Moves every pending ciphertext byte from `from` to `to`: `take_tls` is charged to
/// `from_clock`, `feed_tls` to `to_clock`. Fails with the receiver's error.
pub fn flight(
    from: &mut dyn Session,
    from_clock: &mut Duration,
    to: &mut dyn Session,
    to_clock: &mut Duration,
    wire: &mut [u8],
) -> Result<(), String> {
    loop {
        let n = timed(from_clock, || if from.wants_write() { from.take_tls(wire) } else { 0 });
        if n == 0 {
            return Ok(());
        }
        feed_all(to, to_clock, &wire[..n])?;
    }
}

/// Feeds all of `data` to `to` (the handshake produces no plaintext to make room for).
fn feed_all(to: &mut dyn Session, clock: &mut Duration, data: &[u8]) -> Result<(), String> {
    let mut off = 0;
    let mut stalls = 0;
    while off < data.len() {
        let k = timed(clock, || to.feed_tls(&data[off..])).map_err(|e| e.to_string())?;
        off += k;
        stalls = if k == 0 { stalls + 1 } else { 0 };
        if stalls > MAX_STALLS {
            return Err("the receiver refuses ciphertext".into());
        }
    }
    Ok(())
}

/// Writes `msg` `count` times on `from` (one record per write) and reads everything on
/// `to`. The sender's writes and `take_tls` calls are timed as one interval
/// (encryption, charged to `from_clock`), the receiver's `feed_tls` and reads as another
/// (decryption, `to_clock`): two clock reads per batch instead of several per record.
/// Returns the number of plaintext bytes `to` read, which must be `msg.len() * count`.
pub fn send_records(
    from: &mut dyn Session,
    from_clock: &mut Duration,
    to: &mut dyn Session,
    to_clock: &mut Duration,
    msg: &[u8],
    count: usize,
    scratch: &mut Scratch,
) -> Result<usize, String> {
    timed(from_clock, || encrypt(from, msg, count, &mut scratch.batch))?;
    let got = timed(to_clock, || decrypt(to, scratch.batch.filled(), &mut scratch.plain))?;
    // Whatever the receiver sends back (key updates, alerts) goes to the sender.
    flight(to, to_clock, from, from_clock, &mut scratch.wire)?;
    let want = msg.len() * count;
    if got != want {
        return Err(format!("the receiver read {got} bytes of plaintext, {want} were sent"));
    }
    Ok(got)
}

/// The sender's half of [`send_records`]: all records of the batch into `batch`.
fn encrypt(from: &mut dyn Session, msg: &[u8], count: usize, batch: &mut Batch) -> Result<(), String> {
    batch.len = 0;
    for _ in 0..count {
        let mut off = 0;
        let mut stalls = 0;
        while off < msg.len() {
            let n = from.write(&msg[off..]).map_err(|e| format!("write failed: {e}"))?;
            off += n;
            if n == 0 {
                // The outgoing buffer is full: make room.
                batch.collect(from);
                stalls += 1;
                if stalls > MAX_STALLS {
                    return Err("the sender accepts no plaintext".into());
                }
            }
        }
    }
    batch.collect(from);
    Ok(())
}

/// The receiver's half of [`send_records`]: feeds `wire`, reading plaintext as it comes
/// (which also makes room when the receiver takes only part of the ciphertext).
fn decrypt(to: &mut dyn Session, wire: &[u8], plain: &mut [u8]) -> Result<usize, String> {
    let mut off = 0;
    let mut got = 0;
    let mut stalls = 0;
    while off < wire.len() {
        let k = to.feed_tls(&wire[off..]).map_err(|e| format!("receiving failed: {e}"))?;
        off += k;
        let read = read_all(to, plain)?;
        got += read;
        stalls = if k == 0 && read == 0 { stalls + 1 } else { 0 };
        if stalls > MAX_STALLS {
            return Err("the receiver refuses ciphertext even after its plaintext was read".into());
        }
    }
    Ok(got + read_all(to, plain)?)
}

/// Reads (and discards) all plaintext available on `s`; returns the byte count.
fn read_all(s: &mut dyn Session, plain: &mut [u8]) -> Result<usize, String> {
    let mut got = 0;
    loop {
        match s.read(plain).map_err(|e| format!("read failed: {e}"))? {
            ReadStatus::Data(n) => got += n,
            ReadStatus::WouldBlock => return Ok(got),
            ReadStatus::Closed => return Err("the peer closed the session".into()),
        }
    }
}
