//! Drives a client and a server session against each other in memory.

use sipstls::{Error, ReadStatus, Session};

/// Which side failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client session.
    Client,
    /// The server session.
    Server,
}

/// A failure of one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Who failed first.
    pub side: Side,
    /// With what.
    pub error: Error,
    /// The other side's error, if it failed too (after the alert arrived).
    pub other: Option<Error>,
}

/// Moves all pending ciphertext from `from` to `to`. Returns bytes moved. When `to`
/// refuses ciphertext because its plaintext buffer is full, its plaintext is read into
/// `sink` to make room (so ordering is kept).
pub fn transfer_into(from: &mut dyn Session, to: &mut dyn Session, sink: &mut Vec<u8>) -> Result<usize, Error> {
    let mut buf = vec![0u8; 32 * 1024];
    let mut moved = 0;
    let mut rounds = 0;
    while from.wants_write() {
        rounds += 1;
        assert!(rounds < 100_000, "transfer did not converge");
        let n = from.take_tls(&mut buf);
        if n == 0 {
            break;
        }
        let mut off = 0;
        let mut stalls = 0;
        while off < n {
            let k = to.feed_tls(&buf[off..n])?;
            off += k;
            if k == 0 {
                stalls += 1;
                assert!(stalls < 100, "receiver refuses ciphertext even after its plaintext was read");
                let (plain, _) = drain_plaintext(to)?;
                sink.extend_from_slice(&plain);
            }
        }
        moved += n;
    }
    Ok(moved)
}

/// [`transfer_into`] for handshakes: plaintext read to make room is an error (none is
/// expected during a handshake).
pub fn transfer(from: &mut dyn Session, to: &mut dyn Session) -> Result<usize, Error> {
    let mut sink = Vec::new();
    let n = transfer_into(from, to, &mut sink)?;
    assert!(sink.is_empty(), "unexpected plaintext during transfer");
    Ok(n)
}

/// Runs the handshake to completion (bounded rounds). On failure, the alert of the failing
/// side is delivered to the other side, whose error (if any) is reported too.
pub fn handshake(client: &mut dyn Session, server: &mut dyn Session) -> Result<(), Failure> {
    for _ in 0..64 {
        if let Err(e) = transfer(client, server) {
            let other = transfer(server, client).err().or_else(|| client.error().cloned());
            return Err(Failure { side: Side::Server, error: e, other });
        }
        if let Err(e) = transfer(server, client) {
            let other = transfer(client, server).err().or_else(|| server.error().cloned());
            return Err(Failure { side: Side::Client, error: e, other });
        }
        if !client.is_handshaking() && !server.is_handshaking() && !client.wants_write() && !server.wants_write() {
            return Ok(());
        }
    }
    panic!("handshake did not finish in 64 rounds");
}

/// Writes `data` on `from` and reads it all on `to`, moving ciphertext in between. Returns
/// what `to` read.
pub fn send(from: &mut dyn Session, to: &mut dyn Session, data: &[u8]) -> Result<Vec<u8>, Error> {
    let mut written = 0;
    let mut got = Vec::with_capacity(data.len());
    let mut buf = vec![0u8; 64 * 1024];
    let mut rounds = 0;
    while written < data.len() || from.wants_write() {
        rounds += 1;
        assert!(rounds < 1_000_000, "send did not converge");
        if written < data.len() {
            written += from.write(&data[written..])?;
        }
        transfer_into(from, to, &mut got)?;
        while let ReadStatus::Data(n) = to.read(&mut buf)? {
            got.extend_from_slice(&buf[..n]);
        }
    }
    // Handshake-level messages the receiver produced (tickets, key updates) go back.
    transfer(to, from)?;
    Ok(got)
}

/// Reads everything currently available on `s`.
pub fn drain_plaintext(s: &mut dyn Session) -> Result<(Vec<u8>, bool), Error> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut got = Vec::new();
    loop {
        match s.read(&mut buf)? {
            ReadStatus::Data(n) => got.extend_from_slice(&buf[..n]),
            ReadStatus::WouldBlock => return Ok((got, false)),
            ReadStatus::Closed => return Ok((got, true)),
        }
    }
}
