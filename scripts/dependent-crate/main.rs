//! A crate outside the sipstls workspace, depending on the facade with one backend feature
//! (scripts/dependent-crate.sh writes its manifest): one TLS handshake in memory between a
//! server and a client domain of that backend, then a message each way.
//!
//! Usage: `sipstls-dependent-check PKI_DIR` (ca.pem, leaf.pem and leaf.key, the leaf for
//! `sip.example.test`). Prints the backend, the negotiated version and suite; exits 1 on
//! any failure.

use std::error::Error;
use std::path::PathBuf;

use sipstls::{Certificate, DomainConfig, Identity, ReadStatus, ServerName, Session};

const SERVER_NAME: &str = "sip.example.test";

/// Moves the pending ciphertext of `from` into `to`.
fn transfer(from: &mut dyn Session, to: &mut dyn Session) -> Result<usize, Box<dyn Error>> {
    let mut buf = vec![0u8; 32 * 1024];
    let mut moved = 0;
    while from.wants_write() {
        let n = from.take_tls(&mut buf);
        if n == 0 {
            break;
        }
        let mut off = 0;
        while off < n {
            let k = to.feed_tls(&buf[off..n])?;
            if k == 0 {
                return Err("the receiving session refused ciphertext".into());
            }
            off += k;
        }
        moved += n;
    }
    Ok(moved)
}

/// Everything `s` has decrypted so far.
fn read_all(s: &mut dyn Session) -> Result<Vec<u8>, Box<dyn Error>> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut got = Vec::new();
    while let ReadStatus::Data(n) = s.read(&mut buf)? {
        got.extend_from_slice(&buf[..n]);
    }
    Ok(got)
}

/// Sends `msg` from `from` to `to` and checks it arrives whole.
fn exchange(from: &mut dyn Session, to: &mut dyn Session, msg: &[u8]) -> Result<(), Box<dyn Error>> {
    let mut written = 0;
    let mut got = Vec::new();
    for _ in 0..64 {
        if written < msg.len() {
            written += from.write(&msg[written..])?;
        }
        transfer(from, to)?;
        got.extend(read_all(to)?);
        // Post-handshake messages of the receiver (TLS 1.3 tickets) go back.
        transfer(to, from)?;
        if got.len() >= msg.len() {
            break;
        }
    }
    if got != msg {
        return Err(format!("sent {} bytes, received {:?}", msg.len(), String::from_utf8_lossy(&got)).into());
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = PathBuf::from(std::env::args_os().nth(1).ok_or("usage: sipstls-dependent-check PKI_DIR")?);
    let backends = sipstls::backends();
    let [backend] = backends.as_slice() else {
        return Err(format!("expected exactly one backend in this build, found {:?}", sipstls::backend_names()).into());
    };
    let name = backend.info().name;

    let identity = Identity::from_pem(&std::fs::read(dir.join("leaf.pem"))?, &std::fs::read(dir.join("leaf.key"))?)?;
    let roots = Certificate::all_from_pem(&std::fs::read(dir.join("ca.pem"))?)?;
    let server = backend.server_domain(&DomainConfig::server(identity))?;
    let client = backend.client_domain(&DomainConfig::client(roots))?;
    let mut s = server.accept()?;
    let mut c = client.connect(Some(&ServerName::parse(SERVER_NAME)?))?;

    let mut rounds = 0;
    while c.is_handshaking() || s.is_handshaking() || c.wants_write() || s.wants_write() {
        rounds += 1;
        if rounds > 64 {
            return Err(format!("{name}: the handshake did not finish in 64 rounds").into());
        }
        if let Err(e) = transfer(&mut *c, &mut *s) {
            return Err(format!("{name}: server failed the handshake: {e} (client: {:?})", c.error()).into());
        }
        if let Err(e) = transfer(&mut *s, &mut *c) {
            return Err(format!("{name}: client failed the handshake: {e} (server: {:?})", s.error()).into());
        }
    }
    exchange(&mut *c, &mut *s, b"OPTIONS sip:sip.example.test SIP/2.0\r\n\r\n")?;
    exchange(&mut *s, &mut *c, b"SIP/2.0 200 OK\r\n\r\n")?;

    let ci = c.info().ok_or("the client reports no TLS parameters after the handshake")?;
    let si = s.info().ok_or("the server reports no TLS parameters after the handshake")?;
    if ci.version != si.version || ci.cipher_suite != si.cipher_suite {
        return Err(format!("client and server disagree: {ci:?} / {si:?}").into());
    }
    println!("{name} ({}): handshake complete, {} {}", backend.info().library, ci.version.name(), ci.cipher_suite);
    Ok(())
}
