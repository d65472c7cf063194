//! The hostile-input battery: what a peer can send (or not send) to hurt a SIP server or
//! client, in both roles, on every backend. Each check asserts a typed error or the
//! documented behaviour; none may panic. The in-memory checks are listed in [`IN_MEMORY`]
//! so that `tests/hostile_memory.rs` can run them many times and check that the heap
//! returns to its baseline.
//!
//! Already in the main suite (not repeated here): random bytes to a server
//! (`garbage_input_typed_error`), a 65535-byte record length before and after the
//! handshake (`oversize_record_length`, `oversize_record_after_handshake`), half a
//! ClientHello then EOF (`truncated_record`). The manager's handshake timeout, slowloris
//! and bounded write queue are in `sipstls-manager/tests/manager.rs`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sipstls::{
    Alert, Backend, Capabilities, DomainConfig, Error, ProtocolErrorKind, ProtocolVersion, ReadStatus, Session,
    TlsStream,
};

use crate::checks::{claimed_versions as versions, client_cfg, connected, server_cfg, sessions};
use crate::pki::{pki, SERVER_NAME};
use crate::pump;
use crate::wire::{self, random};

/// One check of the battery.
pub type Check = fn(&dyn Backend);

/// The in-memory checks, by name (used by the memory-baseline test).
pub const IN_MEMORY: &[(&str, Check)] = &[
    ("random_bytes_to_client", random_bytes_to_client),
    ("random_records_after_handshake", random_records_after_handshake),
    ("record_length_over_limit", record_length_over_limit),
    ("truncated_records_wait", truncated_records_wait),
    ("sslv2_client_hello_refused", sslv2_client_hello_refused),
    ("data_before_handshake_ends", data_before_handshake_ends),
    ("early_close_without_close_notify", early_close_without_close_notify),
    ("half_closed_connection", half_closed_connection),
    ("never_reading_peer_is_bounded", never_reading_peer_is_bounded),
    ("no_usable_signature_scheme", no_usable_signature_scheme),
    ("close_notify_during_handshake", close_notify_during_handshake),
    ("flooding_peer_is_bounded", flooding_peer_is_bounded),
];

/// A peer fault: a typed protocol error or an alert, never a config or backend error.
fn assert_peer_fault(e: &Error, what: &str) {
    assert!(
        matches!(e, Error::Protocol { .. } | Error::AlertReceived(_)),
        "{what}: expected a typed protocol error, got {e:?}"
    );
    assert!(e.is_peer_fault(), "{what}: {e:?} is not classified as the peer's fault");
}

/// Feeds `input` until the session fails (the whole input must be consumed or refused);
/// returns the error, asserts it is sticky, that the session still behaves, and that the
/// session's last word on the wire is a fatal alert whenever the error calls for one
/// ([`Error::alert`]).
fn feed_until_error(b: &dyn Backend, s: &mut dyn Session, input: &[u8], what: &str) -> Error {
    feed_until_error_wire(b, s, input, what).0
}

/// [`feed_until_error`], also returning every byte the session sent.
fn feed_until_error_wire(b: &dyn Backend, s: &mut dyn Session, input: &[u8], what: &str) -> (Error, Vec<u8>) {
    let mut off = 0;
    let mut stalls = 0;
    let mut wire = Vec::new();
    let mut out = vec![0u8; 64 * 1024];
    let mut drain = |s: &mut dyn Session, wire: &mut Vec<u8>| loop {
        let n = s.take_tls(&mut out);
        if n == 0 {
            break;
        }
        wire.extend_from_slice(&out[..n]);
    };
    let err = loop {
        assert!(off < input.len(), "{what}: all {} bytes were accepted without an error", input.len());
        match s.feed_tls(&input[off..]) {
            Ok(0) => {
                // Buffers full: drain what the session has for us, then go on.
                stalls += 1;
                assert!(stalls < 100, "{what}: the session takes no more input and reports no error");
                drain(s, &mut wire);
                let _ = pump::drain_plaintext(s);
            }
            Ok(n) => off += n,
            Err(e) => break e,
        }
    };
    drain(s, &mut wire);
    assert_eq!(s.feed_tls(b"more").as_ref(), Err(&err), "{what}: errors must be sticky");
    assert_eq!(s.write(b"data").as_ref(), Err(&err), "{what}: write after a fatal error");
    let mut buf = [0u8; 64];
    assert_eq!(s.read(&mut buf).as_ref(), Err(&err), "{what}: read after a fatal error");
    assert!(s.info().is_none() || !s.is_handshaking(), "{what}");
    drain(s, &mut wire);
    let mut sent = sipstls::record::RecordWatch::default();
    sent.observe(&wire);
    let encrypted = !s.is_handshaking() || !sent.sends_plaintext();
    let exempt = encrypted && SILENT_WHEN_ENCRYPTED.iter().any(|(name, _)| *name == b.info().name);
    if err.alert().is_some() && !exempt {
        assert!(
            wire::ends_with_alert(&wire),
            "{what}: failed with {err:?} but sent no fatal alert (records sent: {:?})",
            wire::parse_records(&wire).iter().map(|r| (r.typ, r.body.len())).collect::<Vec<_>>()
        );
    }
    (err, wire)
}

/// Backends whose library sends no alert for some errors once records are encrypted and
/// offers no call to send one (an alert written by the session would have to be encrypted
/// with the library's keys): the documented exceptions to "every fatal error sends its
/// alert". Before encryption the sessions of these backends write the alert themselves.
pub const SILENT_WHEN_ENCRYPTED: &[(&str, &str)] = &[
    (
        "rustls",
        "rustls reports a handshake message over 64 KiB, records interleaved with a fragmented \
         handshake message and too many empty records without queuing an alert",
    ),
    (
        "wolfssl",
        "wolfSSL reports a record with a wrong version after the handshake (VERSION_ERROR) \
         without an alert, and exports no function that sends one",
    ),
];

/// The description of the last plaintext alert in `wire`, if it is one.
fn last_plaintext_alert(wire: &[u8]) -> Option<Alert> {
    wire::plaintext_alerts(wire).last().map(|&(_, a)| a)
}

fn client_hello(b: &dyn Backend, v: ProtocolVersion) -> (Box<dyn Session>, Vec<u8>) {
    let mut c = b
        .client_domain(&client_cfg(v))
        .unwrap()
        .connect(Some(&sipstls::ServerName::parse(SERVER_NAME).unwrap()))
        .unwrap();
    let mut hello = vec![0u8; 64 * 1024];
    let n = c.take_tls(&mut hello);
    assert!(n > 50, "the client must produce a ClientHello");
    hello.truncate(n);
    (c, hello)
}

/// Random bytes as the server's answer to a ClientHello: a typed, sticky error for the
/// client, for 32 seeds and each version.
pub fn random_bytes_to_client(b: &dyn Backend) {
    for v in versions(b) {
        for seed in 1..=32u64 {
            let (mut c, _hello) = client_hello(b, v);
            let e = feed_until_error(b, &mut *c, &random(seed, 1 << 20), &format!("{v} seed {seed}"));
            assert_peer_fault(&e, &format!("{v} seed {seed}"));
        }
    }
}

/// After the handshake, in both roles: an application-data record with a random body (the
/// right header, a body that does not decrypt) is a decrypt failure; a stream of random
/// bytes is a typed error.
pub fn random_records_after_handshake(b: &dyn Backend) {
    for v in versions(b) {
        for seed in 1..=8u64 {
            let (mut c, mut s) = connected(b, &server_cfg(v), &client_cfg(v), SERVER_NAME);
            for (role, sess) in [("server", &mut s), ("client", &mut c)] {
                let what = format!("{v} {role} seed {seed}");
                let body = random(seed, 200);
                let mut rec = vec![0x17, 0x03, 0x03, 0x00, body.len() as u8];
                rec.extend(&body);
                let e = feed_until_error(b, &mut **sess, &rec, &what);
                assert!(
                    matches!(e, Error::Protocol { kind: ProtocolErrorKind::DecryptFailure, .. }),
                    "{what}: a record that does not decrypt must be DecryptFailure, got {e:?}"
                );
            }
            let (mut c, mut s) = connected(b, &server_cfg(v), &client_cfg(v), SERVER_NAME);
            for (role, sess) in [("server", &mut s), ("client", &mut c)] {
                let what = format!("{v} {role} random stream seed {seed}");
                let e = feed_until_error(b, &mut **sess, &random(seed + 100, 1 << 20), &what);
                assert_peer_fault(&e, &what);
            }
        }
    }
}

/// A record header announcing more than 2^14+256 bytes (plaintext handshake records may
/// carry at most 2^14), before the handshake in both roles, and after it past the
/// version's ciphertext limit (TLS 1.3: 2^14+256; TLS 1.2: 2^14+2048), with the whole
/// announced body delivered: a typed error, never a wait for more or an allocation of
/// the announced size.
pub fn record_length_over_limit(b: &dyn Backend) {
    let over = (1usize << 14) + 256 + 1;
    let record = |typ: u8, len: usize| {
        let mut r = vec![typ, 0x03, 0x03, (len >> 8) as u8, len as u8];
        r.extend(random(len as u64, len));
        r
    };
    for v in versions(b) {
        // Server, first record; client, the server's first record: in the clear, with
        // the alert RFC 8446 section 5.1 names.
        let mut s = b.server_domain(&server_cfg(v)).unwrap().accept().unwrap();
        let (e, sent) = feed_until_error_wire(b, &mut *s, &record(0x16, over), &format!("{v} server, first record"));
        assert_peer_fault(&e, "server, first record");
        assert_eq!(last_plaintext_alert(&sent), Some(Alert::RECORD_OVERFLOW), "{v} server, first record: {e:?}");
        let (mut c, _) = client_hello(b, v);
        let (e, sent) = feed_until_error_wire(b, &mut *c, &record(0x16, over), &format!("{v} client, first record"));
        assert_peer_fault(&e, "client, first record");
        assert_eq!(last_plaintext_alert(&sent), Some(Alert::RECORD_OVERFLOW), "{v} client, first record: {e:?}");
        // After the handshake.
        let limit = match v {
            ProtocolVersion::Tls13 => (1 << 14) + 256,
            ProtocolVersion::Tls12 => (1 << 14) + 2048,
        };
        // rustls (0.23) and BoringSSL bound every record by the TLS 1.2 ciphertext limit,
        // also in TLS 1.3: a TLS 1.3 record of 2^14+257..2^14+2048 bytes is read and fails
        // to decrypt (DecryptFailure, alert bad_record_mac) instead of record_overflow.
        // Still a typed refusal of at most one record's worth of memory; documented.
        let lenient = v == ProtocolVersion::Tls13 && matches!(b.info().name, "rustls" | "boring");
        for len in [limit + 1, (1 << 14) + 2048 + 1] {
            let (mut c, mut s) = connected(b, &server_cfg(v), &client_cfg(v), SERVER_NAME);
            for (role, sess) in [("server", &mut s), ("client", &mut c)] {
                let what = format!("{v} {role} after the handshake, length {len}");
                let e = feed_until_error(b, &mut **sess, &record(0x17, len), &what);
                let overflow = matches!(e, Error::Protocol { kind: ProtocolErrorKind::RecordOverflow, .. });
                let tolerated = lenient
                    && len <= (1 << 14) + 2048
                    && matches!(e, Error::Protocol { kind: ProtocolErrorKind::DecryptFailure, .. });
                assert!(overflow || tolerated, "{what}: must be RecordOverflow, got {e:?}");
            }
        }
    }
}

/// Records split at every awkward place, in both roles: the session waits without error
/// or output while bytes are missing and delivers the data once they arrive.
pub fn truncated_records_wait(b: &dyn Backend) {
    for v in versions(b) {
        // Handshake flights delivered one byte at a time.
        let (mut c, mut s) = sessions(b, &server_cfg(v), &client_cfg(v), SERVER_NAME);
        let mut buf = vec![0u8; 64 * 1024];
        for _ in 0..32 {
            for dir in 0..2 {
                let (from, to): (&mut dyn Session, &mut dyn Session) =
                    if dir == 0 { (&mut *c, &mut *s) } else { (&mut *s, &mut *c) };
                loop {
                    let n = from.take_tls(&mut buf);
                    if n == 0 {
                        break;
                    }
                    for byte in &buf[..n] {
                        assert_eq!(to.feed_tls(std::slice::from_ref(byte)), Ok(1), "{v}: one byte at a time");
                    }
                }
            }
            if !c.is_handshaking() && !s.is_handshaking() && !c.wants_write() && !s.wants_write() {
                break;
            }
        }
        assert!(!c.is_handshaking() && !s.is_handshaking(), "{v}: the handshake must complete byte by byte");
        // An application-data record cut in two, both directions.
        for role in ["to server", "to client"] {
            let (from, to): (&mut dyn Session, &mut dyn Session) =
                if role == "to server" { (&mut *c, &mut *s) } else { (&mut *s, &mut *c) };
            assert_eq!(from.write(b"INVITE sip:bob@example.test SIP/2.0\r\n").unwrap(), 37);
            let n = from.take_tls(&mut buf);
            let rec = buf[..n].to_vec();
            let cut = n / 2;
            assert_eq!(to.feed_tls(&rec[..cut]), Ok(cut), "{v} {role}");
            let mut out = [0u8; 256];
            assert_eq!(to.read(&mut out), Ok(ReadStatus::WouldBlock), "{v} {role}: half a record is not data");
            assert!(to.error().is_none(), "{v} {role}");
            assert_eq!(to.feed_tls(&rec[cut..]), Ok(n - cut), "{v} {role}");
            let (got, closed) = pump::drain_plaintext(to).unwrap();
            assert!(!closed);
            assert_eq!(got, b"INVITE sip:bob@example.test SIP/2.0\r\n", "{v} {role}");
        }
        // A large record whose last 100 bytes come later: the second feed brings far less
        // ciphertext than the record's plaintext (backends size their decrypt buffer by
        // the ciphertext waiting; the rest must still come out).
        let msg: Vec<u8> = (0..8000u32).map(|i| (i % 251) as u8).collect();
        let mut left = &msg[..];
        while !left.is_empty() {
            let n = c.write(left).unwrap();
            assert!(n > 0, "{v}: a large write must go through");
            left = &left[n..];
        }
        let n = c.take_tls(&mut buf);
        assert!(n > 8000, "{v}: {n} bytes of ciphertext for 8000 of plaintext");
        let rec = buf[..n].to_vec();
        let cut = n - 100;
        assert_eq!(s.feed_tls(&rec[..cut]), Ok(cut), "{v} large record");
        assert_eq!(s.feed_tls(&rec[cut..]), Ok(n - cut), "{v} large record");
        let (got, closed) = pump::drain_plaintext(&mut *s).unwrap();
        assert!(!closed);
        assert!(got == msg, "{v}: the large record's plaintext came out as {} bytes", got.len());
    }
}

/// SSLv2 ClientHellos: the SSLv2 protocol itself (version 0x0002) and the SSLv2-format
/// "compatible" hello announcing TLS 1.0. sipstls has nothing below TLS 1.2, so both are
/// refused with a typed error and no SSLv2 answer.
pub fn sslv2_client_hello_refused(b: &dyn Backend) {
    // msg_type 1, version, cipher_spec_length 3, session_id_length 0, challenge 16.
    let hello = |version: [u8; 2], spec: [u8; 3]| {
        let mut body = vec![0x01, version[0], version[1], 0x00, 0x03, 0x00, 0x00, 0x00, 0x10];
        body.extend(spec);
        body.extend(random(9, 16));
        let mut r = vec![0x80 | (body.len() >> 8) as u8, body.len() as u8];
        r.extend(body);
        r
    };
    for (what, h) in [
        ("SSLv2 ClientHello", hello([0x00, 0x02], [0x01, 0x00, 0x80])), // SSL_CK_RC4_128_WITH_MD5
        ("SSLv2-format hello for TLS 1.0", hello([0x03, 0x01], [0x00, 0xC0, 0x2B])),
    ] {
        let mut s = b.server_domain(&DomainConfig::server(pki().server_ecdsa.identity())).unwrap().accept().unwrap();
        let e = feed_until_error(b, &mut *s, &h, what);
        assert_peer_fault(&e, what);
        let mut out = vec![0u8; 4096];
        let n = s.take_tls(&mut out);
        if n > 0 {
            // Only a TLS alert record may come back, never an SSLv2 message.
            assert_eq!(out[0], 0x15, "{what}: the answer must be a TLS alert, got {:02x?}", &out[..n.min(16)]);
        }
    }
}

/// Application data before the handshake has finished, in both roles: the server gets a
/// ClientHello followed by an application-data record; the client gets an
/// application-data record instead of a ServerHello. A typed error; the data is never
/// delivered.
pub fn data_before_handshake_ends(b: &dyn Backend) {
    let mut appdata = vec![0x17, 0x03, 0x03, 0x00, 0x40];
    appdata.extend(random(5, 0x40));
    for v in versions(b) {
        let (_c, hello) = client_hello(b, v);
        let mut s = b.server_domain(&server_cfg(v)).unwrap().accept().unwrap();
        assert_eq!(s.feed_tls(&hello), Ok(hello.len()));
        let e = feed_until_error(b, &mut *s, &appdata, &format!("{v} server"));
        assert_peer_fault(&e, &format!("{v} server"));
        let (mut c, _) = client_hello(b, v);
        let e = feed_until_error(b, &mut *c, &appdata, &format!("{v} client"));
        assert_peer_fault(&e, &format!("{v} client"));
    }
}

/// One side's transport ends without close_notify (a phone that loses its network, a
/// killed process), in both roles: the other side's read fails with `UnexpectedEof`,
/// never a clean end of stream (that would hide a truncation attack).
pub fn early_close_without_close_notify(b: &dyn Backend) {
    for v in versions(b) {
        for closer in ["client", "server"] {
            let (a, z) = UnixStream::pair().unwrap();
            a.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            z.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let sd = b.server_domain(&server_cfg(v)).unwrap();
            let cd = b.client_domain(&client_cfg(v)).unwrap();
            let (mut client, mut server) = std::thread::scope(|sc| {
                let t = sc.spawn(|| TlsStream::accept(&*sd, z).expect("accept"));
                let c = TlsStream::connect(&*cd, SERVER_NAME, a).expect("connect");
                (c, t.join().unwrap())
            });
            // Some data first, then the closer's socket goes away.
            client.write_all(b"REGISTER").unwrap();
            let mut got = [0u8; 8];
            server.read_exact(&mut got).unwrap();
            // The closer's transport ends (FIN) without close_notify; the closer is kept
            // alive so that the survivor sees EOF, not a reset for unread bytes.
            let (closing, survivor): (&UnixStream, &mut dyn Read) =
                if closer == "client" { (client.get_ref(), &mut server) } else { (server.get_ref(), &mut client) };
            closing.shutdown(std::net::Shutdown::Write).unwrap();
            let mut buf = [0u8; 64];
            let e = survivor.read(&mut buf).expect_err("a read after the peer vanished must fail");
            assert_eq!(sipstls::tls_error(&e), Some(&Error::UnexpectedEof), "{v}, {closer} closed: got {e:?}");
            assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        }
    }
}

/// A half-closed connection (documented behaviour): after a peer's close_notify the
/// receiver reads `Closed`, and may still send its answer, which the peer (that only
/// closed its sending direction) reads; in both roles. SIP clients send a request and
/// close; the response still arrives.
pub fn half_closed_connection(b: &dyn Backend) {
    for v in versions(b) {
        for closer_is_client in [true, false] {
            let (mut c2, mut s2) = connected(b, &server_cfg(v), &client_cfg(v), SERVER_NAME);
            let (closer, other): (&mut dyn Session, &mut dyn Session) =
                if closer_is_client { (&mut *c2, &mut *s2) } else { (&mut *s2, &mut *c2) };
            let what = format!("{v}, {} sent close_notify", if closer_is_client { "client" } else { "server" });
            let req = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 0\r\n\r\n";
            assert_eq!(pump::send(closer, other, req).unwrap(), req, "{what}");
            closer.close_notify();
            pump::transfer(closer, other).unwrap();
            let (data, closed) = pump::drain_plaintext(other).unwrap();
            assert!(data.is_empty() && closed, "{what}: the receiver must read Closed");
            // The receiver's answer still goes out and is read by the half-closed peer.
            let resp = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n";
            assert_eq!(other.write(resp), Ok(resp.len()), "{what}: writing after receiving close_notify");
            let mut sink = Vec::new();
            pump::transfer_into(other, closer, &mut sink).unwrap();
            let (data, _) = pump::drain_plaintext(closer).unwrap();
            sink.extend(data);
            assert_eq!(sink, resp, "{what}: the half-closed peer must still read the answer");
            assert_eq!(closer.write(b"x"), Err(Error::Closed), "{what}: the closer may not write");
        }
    }
}

/// A peer that never reads: the session's outgoing buffer is bounded. Writing without
/// anyone taking the ciphertext stops being accepted (write returns 0) before 1 MiB, in
/// both roles; once drained, writing resumes.
pub fn never_reading_peer_is_bounded(b: &dyn Backend) {
    for v in versions(b) {
        let (mut c, mut s) = connected(b, &server_cfg(v), &client_cfg(v), SERVER_NAME);
        for (role, sess) in [("server", &mut s), ("client", &mut c)] {
            let chunk = vec![b'x'; 4096];
            let mut queued = 0usize;
            loop {
                let n = sess.write(&chunk).unwrap();
                if n == 0 {
                    break;
                }
                queued += n;
                assert!(queued <= 1 << 20, "{v} {role}: 1 MiB queued for a peer that never reads: unbounded");
            }
            assert!(queued >= 16 * 1024, "{v} {role}: only {queued} bytes accepted");
            let mut out = vec![0u8; 64 * 1024];
            while sess.take_tls(&mut out) > 0 {}
            assert!(sess.write(&chunk).unwrap() > 0, "{v} {role}: writing resumes after the drain");
        }
    }
}

/// A peer that floods data while the application reads nothing: `feed_tls` stops taking
/// ciphertext (returns 0) before 1 MiB of plaintext is buffered, in both roles.
pub fn flooding_peer_is_bounded(b: &dyn Backend) {
    for v in versions(b) {
        let (mut c, mut s) = connected(b, &server_cfg(v), &client_cfg(v), SERVER_NAME);
        for role in ["server", "client"] {
            let (from, to): (&mut dyn Session, &mut dyn Session) =
                if role == "server" { (&mut *c, &mut *s) } else { (&mut *s, &mut *c) };
            let chunk = vec![b'y'; 16 * 1024];
            let mut buf = vec![0u8; 64 * 1024];
            let mut fed = 0usize;
            let mut pending: Vec<u8> = Vec::new();
            'outer: for _ in 0..512 {
                while pending.len() < 64 * 1024 {
                    let w = from.write(&chunk).unwrap();
                    assert!(w > 0, "{v} {role}: the sender's buffer is full although drained");
                    loop {
                        let n = from.take_tls(&mut buf);
                        if n == 0 {
                            break;
                        }
                        pending.extend_from_slice(&buf[..n]);
                    }
                }
                while !pending.is_empty() {
                    let k = to.feed_tls(&pending).unwrap();
                    if k == 0 {
                        break 'outer;
                    }
                    pending.drain(..k);
                    fed += k;
                }
                assert!(fed <= 2 << 20, "{v} {role}: 2 MiB fed without reading: unbounded");
            }
            assert!(fed >= 16 * 1024, "{v} {role}: only {fed} bytes accepted");
            let (got, _) = pump::drain_plaintext(to).unwrap();
            assert!(got.iter().all(|&x| x == b'y') && !got.is_empty(), "{v} {role}");
            assert!(to.feed_tls(&pending).unwrap() > 0, "{v} {role}: feeding resumes after reading");
        }
    }
}

/// A TLS 1.2 ClientHello (from `openssl s_client`) whose signature_algorithms lost
/// ecdsa_secp256r1_sha256 (0x0403 became 0x046b), found by the `server_session` fuzz
/// target: rustls reported it as an untyped backend error.
const HELLO_WITHOUT_ECDSA_P256_SCHEME: &[u8] = &[
    0x16, 0x03, 0x01, 0x00, 0xd0, 0x01, 0x00, 0x00, 0xcc, 0x03, 0x03, 0x2b, 0x6b, 0x3c, 0x24, 0x36, 0x43, 0xcb, 0x63,
    0x1c, 0x3c, 0x7f, 0x3e, 0xa8, 0x88, 0x41, 0x60, 0xb0, 0x4d, 0xbb, 0x6b, 0x65, 0x79, 0xed, 0xd4, 0x69, 0x19, 0x99,
    0x1a, 0xfd, 0xda, 0xa5, 0xfe, 0x00, 0x00, 0x38, 0xc0, 0x2c, 0xc0, 0x30, 0x00, 0x9f, 0xcc, 0xa9, 0xcc, 0xa8, 0xcc,
    0xaa, 0xc0, 0x2b, 0xc0, 0x2f, 0x00, 0x9e, 0xc0, 0x24, 0xc0, 0x28, 0x00, 0x6b, 0xc0, 0x23, 0xc0, 0x27, 0x00, 0x67,
    0xc0, 0x0a, 0xc0, 0x14, 0x00, 0x39, 0xc0, 0x09, 0xc0, 0x13, 0x00, 0x33, 0x00, 0x9d, 0x00, 0x9c, 0x00, 0x3d, 0x00,
    0x3c, 0x00, 0x35, 0x00, 0x2f, 0x00, 0xff, 0x01, 0x00, 0x00, 0x6b, 0x00, 0x00, 0x00, 0x15, 0x00, 0x13, 0x00, 0x00,
    0x10, 0x73, 0x69, 0x70, 0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x2e, 0x74, 0x65, 0x73, 0x74, 0x00, 0x0b,
    0x00, 0x04, 0x03, 0x00, 0x01, 0x02, 0x00, 0x0a, 0x00, 0x0c, 0x00, 0x0a, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x1e, 0x00,
    0x19, 0x00, 0x18, 0x00, 0x23, 0x00, 0x00, 0x00, 0x16, 0x00, 0x00, 0x00, 0x17, 0x00, 0x00, 0x00, 0x0d, 0x00, 0x2a,
    0x00, 0x28, 0x04, 0x6b, 0x65, 0x79, 0x06, 0x03, 0x08, 0x07, 0x08, 0x08, 0x08, 0x09, 0x08, 0x0a, 0x08, 0x0b, 0x08,
    0x04, 0x08, 0x05, 0x08, 0x06, 0x04, 0x01, 0x05, 0x01, 0x06, 0x01, 0x03, 0x03, 0x03, 0x01, 0x03, 0x02, 0x04, 0x02,
    0x05, 0x02, 0x06, 0x02,
];

/// A ClientHello that offers no signature scheme the server's ECDSA P-256 key can make:
/// a typed handshake failure (the peer's fault), on every backend.
pub fn no_usable_signature_scheme(b: &dyn Backend) {
    if !b.capabilities().contains(Capabilities::TLS12) {
        return;
    }
    let mut s = b.server_domain(&DomainConfig::server(pki().server_ecdsa.identity())).unwrap().accept().unwrap();
    let mut input = HELLO_WITHOUT_ECDSA_P256_SCHEME.to_vec();
    // Then something that is not the rest of a handshake, in case the server answers.
    input.extend(random(77, 4096));
    let e = feed_until_error(b, &mut *s, &input, "no usable signature scheme");
    assert_peer_fault(&e, "no usable signature scheme");
}

/// A close_notify alert (plaintext, before any keys exist) instead of the peer's first
/// flight, in both roles: a typed error (found by the `client_session` fuzz target: the
/// OpenSSL backend reported an untyped backend error for the client).
pub fn close_notify_during_handshake(b: &dyn Backend) {
    let alert = [0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00];
    for v in versions(b) {
        let mut input = alert.to_vec();
        input.extend(random(11, 64));
        let (mut c, _) = client_hello(b, v);
        let e = feed_until_error(b, &mut *c, &input, &format!("{v} client"));
        assert_peer_fault(&e, &format!("{v} client: close_notify instead of the ServerHello"));
        let mut s = b.server_domain(&server_cfg(v)).unwrap().accept().unwrap();
        let e = feed_until_error(b, &mut *s, &input, &format!("{v} server"));
        assert_peer_fault(&e, &format!("{v} server: close_notify instead of the ClientHello"));
    }
}

// ---------------------------------------------------------------------------------------
// Renegotiation, with the OpenSSL command-line tools as the peer (TLS 1.2: TLS 1.3 has no
// renegotiation).

const PEER_WAIT: Duration = Duration::from_secs(15);

/// A TLS 1.2 client (`openssl s_client`, its `R` command) asks to renegotiate after some
/// data. The server must not renegotiate: the client's later data never arrives over a
/// renegotiated session; the server's connection ends with a typed error (the refusal,
/// or the client's alert after the server's no_renegotiation warning).
pub fn client_renegotiation_refused(b: &dyn Backend) {
    if !b.capabilities().contains(Capabilities::TLS12) {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sd = b.server_domain(&server_cfg(ProtocolVersion::Tls12)).unwrap();
    let mut child = crate::peers::ChildGuard(
        Command::new(crate::peers::openssl_cli())
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-tls1_2", "-servername", SERVER_NAME])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("openssl s_client"),
    );
    let mut out_pipe = child.0.stdout.take().unwrap();
    let mut err_pipe = child.0.stderr.take().unwrap();
    let (tcp, _) = listener.accept().unwrap();
    tcp.set_read_timeout(Some(PEER_WAIT)).unwrap();
    let mut server = TlsStream::accept(&*sd, tcp).expect("TLS 1.2 handshake with s_client");
    let mut stdin = child.0.stdin.take().unwrap();
    stdin.write_all(b"before\n").unwrap();
    let mut line = [0u8; 7];
    server.read_exact(&mut line).unwrap();
    assert_eq!(&line, b"before\n");
    stdin.write_all(b"R\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _ = stdin.write_all(b"after\n");
    drop(stdin);
    let t0 = Instant::now();
    let mut rest = Vec::new();
    let end = loop {
        let mut buf = [0u8; 256];
        match server.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => rest.extend_from_slice(&buf[..n]),
            Err(e) => break Some(e),
        }
        assert!(t0.elapsed() < PEER_WAIT, "no end");
    };
    drop(child); // killed and reaped
    let (mut stdout, mut stderr) = (String::new(), String::new());
    let _ = out_pipe.read_to_string(&mut stdout);
    let _ = err_pipe.read_to_string(&mut stderr);
    assert!(stdout.contains("RENEGOTIATING") || stderr.contains("RENEGOTIATING"), "s_client did not try: {stderr}");
    assert!(
        rest.is_empty(),
        "{}: data after a renegotiation request arrived: {:?} (renegotiation was accepted)\n\
         s_client stdout:\n{stdout}\ns_client stderr:\n{stderr}",
        b.info().name,
        String::from_utf8_lossy(&rest)
    );
    let e = end.expect("the connection must end with an error, not a clean close");
    let te = sipstls::tls_error(&e).unwrap_or_else(|| panic!("{}: untyped error {e:?}", b.info().name));
    assert!(
        matches!(te, Error::Protocol { .. } | Error::AlertReceived(_) | Error::UnexpectedEof),
        "{}: renegotiation must end in a typed refusal, got {te:?}",
        b.info().name
    );
}

/// A TLS 1.2 server (`openssl s_server`, its `r` command) sends HelloRequest. The client
/// does not renegotiate: the server's data written after the request still arrives on the
/// original session (the request is refused with a no_renegotiation warning or ignored),
/// or the connection ends with a typed error; s_server never reports a second handshake.
pub fn server_renegotiation_refused(b: &dyn Backend) {
    if !b.capabilities().contains(Capabilities::TLS12) {
        return;
    }
    let dir = crate::peers::ScratchDir::new("reneg");
    pki().write_to(dir.path()).unwrap();
    let cert = dir.path().join("server.pem");
    let key = dir.path().join("server.key");
    let port = crate::peers::free_port();
    let mut child = crate::peers::ChildGuard(
        Command::new(crate::peers::openssl_cli())
            .args(["s_server", "-accept", &format!("127.0.0.1:{port}"), "-tls1_2", "-cert"])
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server"),
    );
    assert!(crate::peers::wait_for_port(([127, 0, 0, 1], port).into(), PEER_WAIT), "s_server did not start");
    let cd = b.client_domain(&client_cfg(ProtocolVersion::Tls12)).unwrap();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(PEER_WAIT)).unwrap();
    let mut client = TlsStream::connect(&*cd, SERVER_NAME, tcp).expect("handshake with s_server");
    let mut stdin = child.0.stdin.take().unwrap();
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines() {
            match l {
                Ok(l) => {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    });
    client.write_all(b"hello\n").unwrap();
    let deadline = Instant::now() + PEER_WAIT;
    let mut log = Vec::new();
    while !log.iter().any(|l: &String| l.contains("hello")) {
        assert!(Instant::now() < deadline, "s_server never printed our data: {log:?}");
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            log.push(l);
        }
    }
    stdin.write_all(b"r\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stdin.write_all(b"after\n").unwrap();
    let mut got = Vec::new();
    let mut end = None;
    let t0 = Instant::now();
    while !got.ends_with(b"after\n") && t0.elapsed() < PEER_WAIT {
        let mut buf = [0u8; 256];
        match client.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => {
                end = Some(e);
                break;
            }
        }
    }
    drop(stdin);
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(300)) {
        log.push(l);
    }
    let log = log.join("\n");
    assert!(log.contains("SSL_renegotiate") || log.contains("enegotiat"), "s_server did not request: {log}");
    match end {
        None => assert!(got.ends_with(b"after\n"), "{}: data after HelloRequest: {:?}", b.info().name, got),
        Some(e) => {
            let te = sipstls::tls_error(&e).unwrap_or_else(|| panic!("{}: untyped error {e:?}", b.info().name));
            assert!(matches!(te, Error::Protocol { .. } | Error::AlertReceived(_)), "{}: got {te:?}", b.info().name);
        }
    }
    // A completed renegotiation would have made s_server print the new session's details
    // a second time.
    assert!(
        log.matches("Shared ciphers").count() <= 1 && log.matches("CIPHER is").count() <= 1,
        "{}: {log}",
        b.info().name
    );
}
