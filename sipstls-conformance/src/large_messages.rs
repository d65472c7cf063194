//! Handshake messages from 16 KiB to 128 KiB, in both roles, whole and fragmented over many
//! records: each ends in a normal answer or in a typed error with a fatal alert on the
//! wire, using bounded CPU and a bounded number of calls. Independent test suites found
//! servers that spun on such hellos; these checks make the suite find that kind of defect
//! by itself.

use std::time::Duration;

use sipstls::{Backend, Error, Session};

use crate::checks::{claimed_versions as versions, client_cfg, server_cfg};
use crate::pki::SERVER_NAME;
use crate::wire::{self, HelloSpec, Reaction, HANDSHAKE};

/// Handshake message sizes tried: around a record, around rustls's and OpenSSL's joining
/// limits (64 KiB), and twice that.
const SIZES: &[usize] = &[16 * 1024, 32 * 1024, 0xffff - 64, 0xffff, 0xffff + 64, 96 * 1024, 128 * 1024];

/// CPU one hostile message may cost a session (debug builds included): far above what a
/// real handshake costs, far below a spin.
const CPU_LIMIT: Duration = Duration::from_millis(1500);

/// Ways to put a handshake message on the wire: (name, records).
fn framings(message: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("16 KiB records", wire::records(HANDSHAKE, message, 16 * 1024)),
        ("1000-byte records", wire::records(HANDSHAKE, message, 1000)),
        ("2-byte first record", wire::records_split_first(HANDSHAKE, message, 2, 16 * 1024)),
    ]
}

/// Feeds `input` whole and in 4 KiB chunks to fresh sessions from `new`, and checks each
/// reaction with `check`.
fn each_delivery(input: &[u8], what: &str, mut new: impl FnMut() -> Box<dyn Session>, check: impl Fn(Reaction, &str)) {
    for chunk in [usize::MAX, 4096] {
        let what = format!("{what}, fed in chunks of {}", if chunk == usize::MAX { input.len() } else { chunk });
        let mut s = new();
        let (reaction, cost) = wire::feed_bounded(&mut *s, input, chunk, &what);
        assert!(cost.cpu < CPU_LIMIT, "{what}: {:?} of CPU for one message (limit {CPU_LIMIT:?})", cost.cpu);
        let expected_calls = input.len().div_ceil(chunk.min(input.len())) * 2 + 8;
        assert!(cost.feed_calls <= expected_calls, "{what}: {} feed_tls calls", cost.feed_calls);
        check(reaction, &what);
    }
}

/// A fatal error caused by the peer, with a fatal alert as the last thing on the wire.
fn assert_refused_with_alert(e: &Error, out: &[u8], what: &str) {
    assert!(e.is_peer_fault(), "{what}: {e:?} must be a typed peer fault");
    assert!(
        wire::ends_with_alert(out),
        "{what}: failed with {e:?} but sent no fatal alert (records sent: {:?})",
        wire::parse_records(out).iter().map(|r| (r.typ, r.body.len())).collect::<Vec<_>>()
    );
}

/// A server given a ClientHello of 16 to 128 KiB (a padding extension), whole and
/// fragmented: it answers with a ServerHello, or refuses with a typed error and a fatal
/// alert; never waits for more or spins.
pub fn large_client_hello(b: &dyn Backend) {
    for v in versions(b) {
        let sd = b.server_domain(&server_cfg(v)).unwrap();
        for &size in SIZES {
            let hello = HelloSpec::new(v).with_total_size(size).message();
            assert_eq!(hello.len(), size);
            for (framing, input) in framings(&hello) {
                let what = format!("{v} ClientHello of {size} bytes in {framing}");
                each_delivery(&input, &what, || sd.accept().unwrap(), check_server_reaction);
            }
        }
    }
}

/// A server given a ClientHello offering 10,000 and 30,000 cipher suites before the real
/// ones: the same outcome as [`large_client_hello`].
pub fn many_cipher_suites(b: &dyn Backend) {
    for v in versions(b) {
        let sd = b.server_domain(&server_cfg(v)).unwrap();
        for filler in [10_000, 30_000] {
            let hello = HelloSpec { filler_suites: filler, ..HelloSpec::new(v) }.message();
            for (framing, input) in framings(&hello) {
                let what = format!("{v} ClientHello with {filler} cipher suites ({} bytes) in {framing}", hello.len());
                each_delivery(&input, &what, || sd.accept().unwrap(), check_server_reaction);
            }
        }
    }
}

fn check_server_reaction(r: Reaction, what: &str) {
    match r {
        Reaction::Answered(out) => {
            assert_eq!(wire::first_handshake_type(&out), Some(2), "{what}: the answer must start with a ServerHello")
        }
        Reaction::Failed(e, out) => {
            assert_refused_with_alert(&e, &out, what);
            assert!(
                !wire::plaintext_alerts(&out).is_empty(),
                "{what}: an error before the ServerHello must send a plaintext alert"
            );
        }
        Reaction::Waiting => {
            panic!("{what}: the whole ClientHello was taken and the server neither answered nor failed")
        }
    }
}

/// A client given a ServerHello of 16 to 64 KiB (an extension it never offered makes up
/// the size) or a Certificate message of up to 128 KiB in its place, whole and
/// fragmented: a typed error and a fatal alert.
pub fn large_server_hello(b: &dyn Backend) {
    for v in versions(b) {
        let cd = b.client_domain(&client_cfg(v)).unwrap();
        let name = sipstls::ServerName::parse(SERVER_NAME).unwrap();
        for &size in SIZES {
            let hello = wire::large_server_message(v, size);
            for (framing, input) in framings(&hello) {
                let kind = if hello[0] == 2 { "ServerHello" } else { "Certificate instead of a ServerHello" };
                let what = format!("{v} {kind} of {} bytes in {framing}", hello.len());
                let new = || {
                    let mut c = cd.connect(Some(&name)).unwrap();
                    let mut sink = vec![0u8; 64 * 1024];
                    while c.take_tls(&mut sink) > 0 {}
                    c
                };
                each_delivery(&input, &what, new, |r, what| match r {
                    Reaction::Failed(e, out) => assert_refused_with_alert(&e, &out, what),
                    Reaction::Answered(out) => panic!("{what}: the client answered an invalid ServerHello: {out:02x?}"),
                    // A client that takes the ServerHello and waits for the next message
                    // is in a normal handshake: the unsolicited extension should have
                    // been refused (RFC 5246 7.4.1.4, RFC 8446 4.2), Mbed TLS 2.28 ignores
                    // it. A Certificate in the ServerHello's place never is.
                    Reaction::Waiting if hello[0] == 2 && b.info().name == "mbedtls" => {}
                    Reaction::Waiting => {
                        panic!("{what}: the whole message was taken and the client neither failed nor answered")
                    }
                });
            }
        }
    }
}
