//! Hand-built TLS bytes for the hostile checks: ClientHellos and ServerHellos of any size,
//! records framed at any size, and a reader for what a session sends back (its first
//! handshake message, its alerts). Independent of every backend, so that a check does not
//! trust the library under test to build its own attack.

use std::time::Duration;

use sipstls::{Alert, Error, ProtocolVersion, Session};

/// TLS record content types.
pub const HANDSHAKE: u8 = 0x16;
/// The alert content type.
pub const ALERT: u8 = 0x15;
/// The application-data content type (also every encrypted TLS 1.3 record).
pub const APPLICATION_DATA: u8 = 0x17;
/// The change_cipher_spec content type.
pub const CHANGE_CIPHER_SPEC: u8 = 0x14;

fn u16be(v: usize) -> [u8; 2] {
    assert!(v <= 0xffff, "{v} does not fit in 16 bits");
    [(v >> 8) as u8, v as u8]
}

fn u24be(v: usize) -> [u8; 3] {
    assert!(v < 1 << 24, "{v} does not fit in 24 bits");
    [(v >> 16) as u8, (v >> 8) as u8, v as u8]
}

/// `len` pseudo-random bytes from `seed` (xorshift; the same seed gives the same bytes).
pub fn random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// One extension: type and body.
fn ext(typ: u16, body: &[u8]) -> Vec<u8> {
    let mut e = typ.to_be_bytes().to_vec();
    e.extend(u16be(body.len()));
    e.extend(body);
    e
}

/// A list with a 16-bit length prefix.
fn vec16(items: &[u8]) -> Vec<u8> {
    let mut v = u16be(items.len()).to_vec();
    v.extend(items);
    v
}

/// A handshake message: type, 24-bit length, body.
pub fn handshake_message(typ: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![typ];
    m.extend(u24be(body.len()));
    m.extend(body);
    m
}

/// What a hand-built ClientHello offers.
#[derive(Debug, Clone)]
pub struct HelloSpec {
    /// The version offered: TLS 1.3 (with 1.2 beside it) or TLS 1.2 alone.
    pub version: ProtocolVersion,
    /// Unassigned cipher suite values placed before the real ones.
    pub filler_suites: usize,
    /// Size of a padding extension (RFC 7685), `None` for none.
    pub padding: Option<usize>,
    /// signature_algorithms offered (TLS SignatureScheme values).
    pub sig_schemes: Vec<u16>,
    /// The SNI host name.
    pub server_name: String,
}

impl HelloSpec {
    /// A ClientHello a real client would send for `v`: SNI, X25519 and P-256, ECDSA,
    /// RSA-PSS and RSA PKCS#1 signatures, AES-GCM and ChaCha20 suites.
    pub fn new(v: ProtocolVersion) -> HelloSpec {
        HelloSpec {
            version: v,
            filler_suites: 0,
            padding: None,
            sig_schemes: vec![0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501],
            server_name: crate::pki::SERVER_NAME.to_owned(),
        }
    }

    /// The ClientHello handshake message.
    pub fn message(&self) -> Vec<u8> {
        let tls13 = self.version == ProtocolVersion::Tls13;
        let mut body = vec![0x03, 0x03];
        body.extend(random(1, 32));
        body.push(32);
        body.extend(random(2, 32));
        let mut suites = Vec::new();
        // Unassigned values from 0x0100 on (no suite is registered there).
        for i in 0..self.filler_suites {
            suites.extend(u16be(0x0100 + i));
        }
        if tls13 {
            suites.extend([0x13, 0x01, 0x13, 0x02, 0x13, 0x03]);
        }
        suites.extend([0xc0, 0x2b, 0xc0, 0x2f, 0xc0, 0x2c, 0xc0, 0x30, 0xcc, 0xa9, 0xcc, 0xa8]);
        body.extend(vec16(&suites));
        body.extend([1, 0]); // null compression
        let mut exts = Vec::new();
        let name = self.server_name.as_bytes();
        let mut sni = vec![0];
        sni.extend(vec16(name));
        exts.extend(ext(0, &vec16(&sni)));
        exts.extend(ext(10, &vec16(&[0x00, 0x1d, 0x00, 0x17]))); // x25519, secp256r1
        exts.extend(ext(11, &[1, 0])); // uncompressed points
        let schemes: Vec<u8> = self.sig_schemes.iter().flat_map(|s| s.to_be_bytes()).collect();
        exts.extend(ext(13, &vec16(&schemes)));
        exts.extend(ext(0xff01, &[0])); // empty renegotiation_info
        exts.extend(ext(23, &[])); // extended master secret
        if tls13 {
            exts.extend(ext(43, &[4, 0x03, 0x04, 0x03, 0x03]));
            exts.extend(ext(45, &[1, 1])); // psk_dhe_ke
            let mut share = vec![0x00, 0x1d, 0x00, 0x20];
            share.extend(random(3, 32));
            exts.extend(ext(51, &vec16(&share)));
        }
        if let Some(n) = self.padding {
            exts.extend(ext(21, &vec![0; n]));
        }
        body.extend(vec16(&exts));
        handshake_message(1, &body)
    }

    /// A ClientHello whose whole handshake message is `total` bytes long (at most about
    /// 128 KiB: the suite list and the extension block each have a 16-bit length). Above
    /// 60,000 bytes unassigned cipher suites make up part of the size, a padding extension
    /// the rest; never shorter than the plain hello.
    pub fn with_total_size(mut self, total: usize) -> HelloSpec {
        self.padding = None;
        self.filler_suites = (total.saturating_sub(60_000) / 2).min(32_758);
        let plain = self.message().len();
        // The extension's own header is 4 bytes.
        self.padding = Some(total.saturating_sub(plain + 4));
        self
    }
}

/// A large handshake message a server can send first: a ServerHello of about `total`
/// bytes (an extension the client never offered makes up the size) while it fits the
/// 16-bit extension block, else a Certificate message of `total` bytes (a list of
/// garbage certificates) sent in its place.
pub fn large_server_message(v: ProtocolVersion, total: usize) -> Vec<u8> {
    if total < 0xff00 {
        return server_hello(v, total);
    }
    let mut list = Vec::new();
    let mut left = total - 4 - 3;
    while left > 0 {
        let n = left.clamp(4, 16_000) - 3;
        list.extend(u24be(n));
        list.extend(random(left as u64, n));
        left = left.saturating_sub(n + 3);
    }
    let mut body = u24be(list.len()).to_vec();
    body.extend(list);
    handshake_message(11, &body)
}

/// A ServerHello of about `total` bytes (an unknown extension makes up the size) for a
/// client that offered TLS 1.3 or 1.2.
pub fn server_hello(v: ProtocolVersion, total: usize) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend(random(4, 32));
    body.push(0);
    match v {
        ProtocolVersion::Tls13 => body.extend([0x13, 0x01]),
        ProtocolVersion::Tls12 => body.extend([0xc0, 0x2b]),
    }
    body.push(0);
    let mut exts = Vec::new();
    if v == ProtocolVersion::Tls13 {
        exts.extend(ext(43, &[0x03, 0x04]));
        let mut share = vec![0x00, 0x1d, 0x00, 0x20];
        share.extend(random(5, 32));
        exts.extend(ext(51, &share));
    }
    let fill = total.saturating_sub(body.len() + exts.len() + 4 + 2 + 4);
    exts.extend(ext(0xfe00, &vec![0x5a; fill]));
    body.extend(vec16(&exts));
    handshake_message(2, &body)
}

/// `payload` framed as records of content type `typ` carrying at most `max` bytes each.
/// The record version is TLS 1.0 for the first record (as clients send their
/// ClientHello) and TLS 1.2 after it.
pub fn records(typ: u8, payload: &[u8], max: usize) -> Vec<u8> {
    assert!(max > 0);
    let mut out = Vec::with_capacity(payload.len() + payload.len() / max * 5 + 5);
    for (i, chunk) in payload.chunks(max).enumerate() {
        out.push(typ);
        out.extend(if i == 0 { [0x03, 0x01] } else { [0x03, 0x03] });
        out.extend(u16be(chunk.len()));
        out.extend(chunk);
    }
    out
}

/// `payload` as one record of `first` bytes, then records of at most `max` bytes
/// (a tiny first fragment, as some clients and fuzzers send).
pub fn records_split_first(typ: u8, payload: &[u8], first: usize, max: usize) -> Vec<u8> {
    let mut out = records(typ, &payload[..first], first.max(1));
    let mut rest = records(typ, &payload[first..], max);
    rest[1..3].copy_from_slice(&[0x03, 0x03]);
    out.extend(rest);
    out
}

/// One record read back from a session's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Content type.
    pub typ: u8,
    /// Body.
    pub body: Vec<u8>,
}

/// Splits `wire` into records; a trailing partial record is dropped.
pub fn parse_records(wire: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    let mut rest = wire;
    while rest.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if rest.len() < 5 + len {
            break;
        }
        out.push(Record { typ: rest[0], body: rest[5..5 + len].to_vec() });
        rest = &rest[5 + len..];
    }
    out
}

/// The plaintext alerts in `wire` (level, description).
pub fn plaintext_alerts(wire: &[u8]) -> Vec<(u8, Alert)> {
    parse_records(wire)
        .into_iter()
        .filter(|r| r.typ == ALERT && r.body.len() == 2)
        .map(|r| (r.body[0], Alert(r.body[1])))
        .collect()
}

/// True if `wire` ends with a fatal alert record (in the clear or encrypted).
pub fn ends_with_alert(wire: &[u8]) -> bool {
    sipstls::record::ends_with_alert(wire)
        && parse_records(wire).last().is_some_and(|r| r.typ != ALERT || r.body.len() != 2 || r.body[0] == 2)
}

/// The handshake type of the first handshake record in `wire` (2 for ServerHello).
pub fn first_handshake_type(wire: &[u8]) -> Option<u8> {
    parse_records(wire).into_iter().find(|r| r.typ == HANDSHAKE).and_then(|r| r.body.first().copied())
}

/// CPU time this thread has used.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is always
    // available on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// How a session reacted to input fed by [`feed_bounded`].
#[derive(Debug)]
pub enum Reaction {
    /// It took every byte and answered (the bytes it sent).
    Answered(Vec<u8>),
    /// It failed (the error and the bytes it sent, the alert among them).
    Failed(Error, Vec<u8>),
    /// It took every byte, sent nothing and reports no error (it waits for more).
    Waiting,
}

/// The cost of one [`feed_bounded`] run.
#[derive(Debug, Clone, Copy)]
pub struct Cost {
    /// `feed_tls` calls made.
    pub feed_calls: usize,
    /// CPU time of the calling thread.
    pub cpu: Duration,
}

/// Feeds `input` to `s` in chunks of at most `chunk` bytes, as a careful caller would:
/// when the session takes less than offered, its output and plaintext are drained and the
/// rest is offered again. Asserts the `feed_tls` contract on the way: after such a drain
/// the session takes at least one byte or fails (a second refusal in a row is a stall that
/// no caller action can end).
pub fn feed_bounded(s: &mut dyn Session, input: &[u8], chunk: usize, what: &str) -> (Reaction, Cost) {
    let t0 = thread_cpu_time();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut calls = 0;
    let mut off = 0;
    let mut drained_stall = false;
    let mut result = None;
    while off < input.len() {
        let end = input.len().min(off.saturating_add(chunk));
        calls += 1;
        match s.feed_tls(&input[off..end]) {
            Ok(0) => {
                assert!(
                    !drained_stall,
                    "{what}: feed_tls took nothing twice in a row with its output and plaintext drained \
                     (offset {off} of {}): a stall no caller can end",
                    input.len()
                );
                drained_stall = true;
                loop {
                    let n = s.take_tls(&mut buf);
                    if n == 0 {
                        break;
                    }
                    out.extend_from_slice(&buf[..n]);
                }
                let _ = crate::pump::drain_plaintext(s);
            }
            Ok(k) => {
                drained_stall = false;
                off += k;
            }
            Err(e) => {
                result = Some(e);
                break;
            }
        }
    }
    loop {
        let n = s.take_tls(&mut buf);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let cost = Cost { feed_calls: calls, cpu: thread_cpu_time().saturating_sub(t0) };
    let reaction = match result.or_else(|| s.error().cloned()) {
        Some(e) => Reaction::Failed(e, out),
        None if out.is_empty() => Reaction::Waiting,
        None => Reaction::Answered(out),
    };
    (reaction, cost)
}
