//! The abstraction's overhead: the same work through each library's own API and through
//! sipstls, in one thread, in memory, side by side.
//!
//! Two scenarios: a full TLS 1.3 ECDSA P-256 handshake (resumption off, the client
//! verifying the chain and the name) and a 1 KiB record from client to server over one
//! established connection. Both paths use plain loops without per-call clocks, so the
//! ratio of their times (and, under `--instructions`, of their instruction counts) is the
//! cost of the sipstls layer: the sans-I/O copies, the boxed session, the RFC 5922 name
//! check, the SNI acceptor.

use std::sync::Arc;

use sipstls::{Backend, ClientDomain, ProtocolVersion, ReadStatus, Resumption, ServerDomain, ServerName, Session};
use sipstls_conformance::checks::{client_cfg, server_cfg};
#[cfg(any(feature = "rustls", feature = "openssl", feature = "boring"))]
use sipstls_conformance::pki::pki;
use sipstls_conformance::pki::SERVER_NAME;

/// The two ways of doing the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Through `sipstls::Backend` and `Session`.
    Sipstls,
    /// Through the library's own Rust API (rustls, the openssl crate).
    Native,
}

/// The two scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// One full TLS 1.3 ECDSA handshake, both sides, sessions dropped.
    Handshake,
    /// One 1 KiB record, client to server, on an established connection.
    Record1k,
}

/// Whether this harness has a native twin for `backend`.
pub fn has_native(backend: &str) -> bool {
    (cfg!(feature = "rustls") && backend == "rustls")
        || (cfg!(feature = "openssl") && backend == "openssl")
        || (cfg!(feature = "boring") && backend == "boring")
        || (cfg!(feature = "wolfssl") && backend == "wolfssl")
        || (cfg!(feature = "mbedtls") && backend == "mbedtls")
}

/// The protocol version both paths use on `backend`: TLS 1.3 on every backend.
pub fn version_of(_backend: &str) -> ProtocolVersion {
    ProtocolVersion::Tls13
}

/// Something that does one unit of `Work`, repeatedly.
pub trait Runner {
    /// Does the work once.
    fn once(&mut self) -> Result<(), String>;
}

/// A runner for `backend` (by name), `api` and `work`.
pub fn runner(backend: &Arc<dyn Backend>, api: Api, work: Work) -> Result<Box<dyn Runner>, String> {
    match api {
        Api::Sipstls => Ok(Box::new(SipstlsRunner::new(backend.as_ref(), work)?)),
        Api::Native => match backend.info().name {
            #[cfg(feature = "rustls")]
            "rustls" => Ok(Box::new(rustls_native::RustlsRunner::new(work)?)),
            #[cfg(feature = "openssl")]
            "openssl" => Ok(Box::new(openssl_native::OpensslRunner::new(work)?)),
            #[cfg(feature = "boring")]
            "boring" => Ok(Box::new(openssl_native::OpensslRunner::new(work)?)),
            #[cfg(feature = "wolfssl")]
            "wolfssl" => Ok(Box::new(super::native_wolfssl::WolfsslRunner::new(work)?)),
            #[cfg(feature = "mbedtls")]
            "mbedtls" => Ok(Box::new(super::native_mbedtls::MbedtlsRunner::new(work)?)),
            other => Err(format!("no native twin for {other}")),
        },
    }
}

/// The 1 KiB record every runner sends.
pub const RECORD: [u8; 1024] = [0x53; 1024];

// ---------------------------------------------------------------------------------------
// sipstls

/// A client and a server session.
type SessionPair = (Box<dyn Session>, Box<dyn Session>);

struct SipstlsRunner {
    server: Arc<dyn ServerDomain>,
    client: Arc<dyn ClientDomain>,
    name: ServerName,
    work: Work,
    pair: Option<SessionPair>,
    buf: Vec<u8>,
}

impl SipstlsRunner {
    fn new(b: &dyn Backend, work: Work) -> Result<Self, String> {
        let v = version_of(b.info().name);
        let off = Resumption::DISABLED;
        let server = b.server_domain(&server_cfg(v).with_resumption(off)).map_err(|e| e.to_string())?;
        let client = b.client_domain(&client_cfg(v).with_resumption(off)).map_err(|e| e.to_string())?;
        let name = ServerName::parse(SERVER_NAME).map_err(|e| e.to_string())?;
        let mut r = SipstlsRunner { server, client, name, work, pair: None, buf: vec![0; 64 * 1024] };
        if work == Work::Record1k {
            r.pair = Some(r.handshake()?);
        }
        Ok(r)
    }

    fn handshake(&mut self) -> Result<SessionPair, String> {
        let mut s = self.server.accept().map_err(|e| e.to_string())?;
        let mut c = self.client.connect(Some(&self.name)).map_err(|e| e.to_string())?;
        for _ in 0..16 {
            if !c.is_handshaking() && !s.is_handshaking() && !c.wants_write() && !s.wants_write() {
                return Ok((c, s));
            }
            move_bytes(&mut *c, &mut *s, &mut self.buf)?;
            move_bytes(&mut *s, &mut *c, &mut self.buf)?;
        }
        Err("sipstls handshake did not finish".into())
    }
}

/// Moves every pending ciphertext byte of `from` into `to`.
fn move_bytes(from: &mut dyn Session, to: &mut dyn Session, buf: &mut [u8]) -> Result<(), String> {
    while from.wants_write() {
        let n = from.take_tls(buf);
        let mut off = 0;
        while off < n {
            let took = to.feed_tls(&buf[off..n]).map_err(|e| e.to_string())?;
            if took == 0 {
                return Err("receiver stalled".into());
            }
            off += took;
        }
    }
    Ok(())
}

impl Runner for SipstlsRunner {
    fn once(&mut self) -> Result<(), String> {
        match self.work {
            Work::Handshake => self.handshake().map(drop),
            Work::Record1k => {
                let (c, s) = self.pair.as_mut().ok_or("no connection")?;
                let mut left = &RECORD[..];
                while !left.is_empty() {
                    let n = c.write(left).map_err(|e| e.to_string())?;
                    left = &left[n..];
                }
                move_bytes(&mut **c, &mut **s, &mut self.buf)?;
                let mut got = 0;
                while got < RECORD.len() {
                    match s.read(&mut self.buf).map_err(|e| e.to_string())? {
                        ReadStatus::Data(n) => got += n,
                        other => return Err(format!("record read: {other:?}")),
                    }
                }
                Ok(())
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// rustls, through its own API, with the same provider, versions and certificates

#[cfg(feature = "rustls")]
mod rustls_native {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName as RustlsName};
    use rustls::server::NoServerSessionStorage;
    use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
    use std::io::{Read, Write};

    pub struct RustlsRunner {
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
        work: Work,
        pair: Option<(ClientConnection, ServerConnection)>,
        buf: Vec<u8>,
    }

    impl RustlsRunner {
        pub fn new(work: Work) -> Result<Self, String> {
            // The TLS 1.3 suites in sipstls's default order (AES-128-GCM-SHA256 first): with
            // the provider's own order (AES-256-GCM-SHA384 first) the twin would hash with
            // SHA-384 and compare a different suite.
            let mut provider = rustls::crypto::aws_lc_rs::default_provider();
            let iana = |s: &rustls::SupportedCipherSuite| format!("{:?}", s.suite()).replacen("TLS13_", "TLS_", 1);
            let mut suites = Vec::new();
            for want in sipstls_core::DEFAULT_TLS13_SUITES {
                suites.extend(provider.cipher_suites.iter().filter(|s| iana(s) == *want).cloned());
            }
            if suites.is_empty() {
                return Err("no TLS 1.3 suite of sipstls's default list in the provider".into());
            }
            provider.cipher_suites = suites;
            let provider = Arc::new(provider);
            let p = pki();
            let chain = vec![CertificateDer::from(p.server_ecdsa.der.clone())];
            let key = pem_key(&p.server_ecdsa.key_pem)?;
            let mut server = ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map_err(|e| e.to_string())?
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .map_err(|e| e.to_string())?;
            server.session_storage = Arc::new(NoServerSessionStorage {});
            server.send_tls13_tickets = 0;
            let mut roots = RootCertStore::empty();
            roots.add(CertificateDer::from(p.root_der.clone())).map_err(|e| e.to_string())?;
            let mut client = ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            client.resumption = rustls::client::Resumption::disabled();
            let mut r = RustlsRunner {
                server: Arc::new(server),
                client: Arc::new(client),
                work,
                pair: None,
                buf: Vec::with_capacity(64 * 1024),
            };
            if work == Work::Record1k {
                r.pair = Some(r.handshake()?);
            }
            Ok(r)
        }

        fn handshake(&mut self) -> Result<(ClientConnection, ServerConnection), String> {
            let name = RustlsName::try_from(SERVER_NAME).map_err(|e| e.to_string())?;
            let mut c = ClientConnection::new(self.client.clone(), name).map_err(|e| e.to_string())?;
            let mut s = ServerConnection::new(self.server.clone()).map_err(|e| e.to_string())?;
            for _ in 0..16 {
                if !c.is_handshaking() && !s.is_handshaking() && !c.wants_write() && !s.wants_write() {
                    return Ok((c, s));
                }
                transfer(&mut c, &mut s, &mut self.buf)?;
                transfer(&mut s, &mut c, &mut self.buf)?;
            }
            Err("rustls handshake did not finish".into())
        }
    }

    #[cfg(test)]
    #[test]
    fn twin_negotiates_sipstls_default_suite() {
        let r = RustlsRunner::new(Work::Record1k).unwrap();
        let (_, s) = r.pair.as_ref().unwrap();
        let suite = s.negotiated_cipher_suite().unwrap().suite();
        assert_eq!(format!("{suite:?}").replacen("TLS13_", "TLS_", 1), sipstls_core::DEFAULT_TLS13_SUITES[0]);
    }

    fn pem_key(pem: &str) -> Result<PrivateKeyDer<'static>, String> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64_decode(&body)?;
        Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)))
    }

    fn transfer<A, B, DA, DB>(from: &mut A, to: &mut B, buf: &mut Vec<u8>) -> Result<(), String>
    where
        A: std::ops::DerefMut<Target = rustls::ConnectionCommon<DA>>,
        B: std::ops::DerefMut<Target = rustls::ConnectionCommon<DB>>,
    {
        while from.wants_write() {
            buf.clear();
            from.write_tls(buf).map_err(|e| e.to_string())?;
            let mut rd = &buf[..];
            while !rd.is_empty() {
                to.read_tls(&mut rd).map_err(|e| e.to_string())?;
                to.process_new_packets().map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    impl Runner for RustlsRunner {
        fn once(&mut self) -> Result<(), String> {
            match self.work {
                Work::Handshake => self.handshake().map(drop),
                Work::Record1k => {
                    let (c, s) = self.pair.as_mut().ok_or("no connection")?;
                    c.writer().write_all(&RECORD).map_err(|e| e.to_string())?;
                    transfer(c, s, &mut self.buf)?;
                    let mut out = [0u8; 2048];
                    let mut got = 0;
                    while got < RECORD.len() {
                        got += s.reader().read(&mut out).map_err(|e| e.to_string())?;
                    }
                    Ok(())
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// OpenSSL, through the openssl crate's SslStream over an in-memory pipe, with the
// settings the sipstls backend uses (TLS 1.3 only, no tickets, no session cache, release
// buffers, the client checking the host name). The same code, through the `boring` crate
// (whose API mirrors the openssl crate's), is BoringSSL's twin.

#[cfg(any(feature = "openssl", feature = "boring"))]
mod openssl_native {
    use super::*;
    #[cfg(feature = "boring")]
    use boring as ssl_lib;
    #[cfg(feature = "openssl")]
    use openssl as ssl_lib;
    use ssl_lib::pkey::PKey;
    use ssl_lib::ssl::{
        HandshakeError, MidHandshakeSslStream, Ssl, SslContext, SslMethod, SslMode, SslOptions, SslSessionCacheMode,
        SslStream, SslVerifyMode, SslVersion,
    };
    use ssl_lib::x509::X509;
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::io::{Read, Write};
    use std::rc::Rc;

    type Pipe = Rc<RefCell<VecDeque<u8>>>;

    /// One direction in, one out; reads of an empty pipe would block.
    pub struct Mem {
        rx: Pipe,
        tx: Pipe,
    }

    impl Read for Mem {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let mut q = self.rx.borrow_mut();
            if q.is_empty() {
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            // VecDeque's own Read: slice copies. (A byte-by-byte drain here cost the twin
            // about 18,000 instructions per 1 KiB record under callgrind, half its total,
            // which hid sipstls's own excess.)
            q.read(buf)
        }
    }

    impl Write for Mem {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.tx.borrow_mut().write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    pub struct OpensslRunner {
        server: SslContext,
        client: SslContext,
        work: Work,
        pair: Option<(SslStream<Mem>, SslStream<Mem>)>,
    }

    enum Side {
        Mid(MidHandshakeSslStream<Mem>),
        Done(SslStream<Mem>),
    }

    fn step(r: Result<SslStream<Mem>, HandshakeError<Mem>>) -> Result<Side, String> {
        match r {
            Ok(s) => Ok(Side::Done(s)),
            Err(HandshakeError::WouldBlock(m)) => Ok(Side::Mid(m)),
            Err(HandshakeError::SetupFailure(e)) => Err(e.to_string()),
            Err(HandshakeError::Failure(m)) => Err(format!("handshake failed: {}", m.error())),
        }
    }

    /// The TLS method (the boring crate renamed both to `tls()`).
    #[cfg(feature = "openssl")]
    fn method(server: bool) -> SslMethod {
        if server {
            SslMethod::tls_server()
        } else {
            SslMethod::tls_client()
        }
    }

    #[cfg(feature = "boring")]
    fn method(_server: bool) -> SslMethod {
        SslMethod::tls()
    }

    impl OpensslRunner {
        pub fn new(work: Work) -> Result<Self, String> {
            let p = pki();
            let e = |e: ssl_lib::error::ErrorStack| e.to_string();
            let mut sb = SslContext::builder(method(true)).map_err(e)?;
            sb.set_min_proto_version(Some(SslVersion::TLS1_3)).map_err(e)?;
            sb.set_max_proto_version(Some(SslVersion::TLS1_3)).map_err(e)?;
            sb.set_options(SslOptions::NO_TICKET | SslOptions::NO_RENEGOTIATION | SslOptions::CIPHER_SERVER_PREFERENCE);
            sb.set_mode(SslMode::RELEASE_BUFFERS);
            sb.set_session_cache_mode(SslSessionCacheMode::OFF);
            // sipstls's TLS 1.3 suite order (OpenSSL's own puts AES-256-GCM-SHA384 first);
            // BoringSSL has no TLS 1.3 suite setting and prefers AES-128-GCM already.
            #[cfg(feature = "openssl")]
            sb.set_ciphersuites(&sipstls_core::DEFAULT_TLS13_SUITES.join(":")).map_err(e)?;
            let cert = X509::from_der(&p.server_ecdsa.der).map_err(e)?;
            let key = PKey::private_key_from_pem(p.server_ecdsa.key_pem.as_bytes()).map_err(e)?;
            sb.set_certificate(&cert).map_err(e)?;
            sb.set_private_key(&key).map_err(e)?;
            let mut cb = SslContext::builder(method(false)).map_err(e)?;
            cb.set_min_proto_version(Some(SslVersion::TLS1_3)).map_err(e)?;
            cb.set_max_proto_version(Some(SslVersion::TLS1_3)).map_err(e)?;
            cb.set_options(SslOptions::NO_TICKET | SslOptions::NO_RENEGOTIATION);
            cb.set_mode(SslMode::RELEASE_BUFFERS);
            cb.set_session_cache_mode(SslSessionCacheMode::OFF);
            cb.cert_store_mut().add_cert(X509::from_der(&p.root_der).map_err(e)?).map_err(e)?;
            cb.set_verify(SslVerifyMode::PEER);
            let mut r = OpensslRunner { server: sb.build(), client: cb.build(), work, pair: None };
            if work == Work::Record1k {
                r.pair = Some(r.handshake()?);
            }
            Ok(r)
        }

        fn handshake(&mut self) -> Result<(SslStream<Mem>, SslStream<Mem>), String> {
            let e = |e: ssl_lib::error::ErrorStack| e.to_string();
            let (c2s, s2c): (Pipe, Pipe) = Default::default();
            let mut cssl = Ssl::new(&self.client).map_err(e)?;
            cssl.set_hostname(SERVER_NAME).map_err(e)?;
            cssl.param_mut().set_host(SERVER_NAME).map_err(e)?;
            let sssl = Ssl::new(&self.server).map_err(e)?;
            let mut c = step(cssl.connect(Mem { rx: s2c.clone(), tx: c2s.clone() }))?;
            let mut s = step(sssl.accept(Mem { rx: c2s, tx: s2c }))?;
            for _ in 0..16 {
                if let (Side::Done(_), Side::Done(_)) = (&c, &s) {
                    let (Side::Done(c), Side::Done(s)) = (c, s) else { unreachable!() };
                    return Ok((c, s));
                }
                s = match s {
                    Side::Mid(m) => step(m.handshake())?,
                    done => done,
                };
                c = match c {
                    Side::Mid(m) => step(m.handshake())?,
                    done => done,
                };
            }
            Err("OpenSSL handshake did not finish".into())
        }
    }

    #[cfg(test)]
    #[test]
    fn twin_negotiates_aes_128_gcm_sha256() {
        let r = OpensslRunner::new(Work::Record1k).unwrap();
        let (_, s) = r.pair.as_ref().unwrap();
        let name = s.ssl().current_cipher().map(|c| c.name()).unwrap_or_default();
        assert!(name == "TLS_AES_128_GCM_SHA256", "{name}");
    }

    impl Runner for OpensslRunner {
        fn once(&mut self) -> Result<(), String> {
            match self.work {
                Work::Handshake => self.handshake().map(drop),
                Work::Record1k => {
                    let (c, s) = self.pair.as_mut().ok_or("no connection")?;
                    c.write_all(&RECORD).map_err(|e| e.to_string())?;
                    let mut out = [0u8; 2048];
                    let mut got = 0;
                    while got < RECORD.len() {
                        got += s.read(&mut out).map_err(|e| e.to_string())?;
                    }
                    Ok(())
                }
            }
        }
    }
}

/// Standard base64 (the PEM body of the test key), without a dependency for ten lines.
#[cfg_attr(not(feature = "rustls"), allow(dead_code))]
fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    let val = |c: u8| -> Result<u32, String> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(format!("bad base64 byte {c}")),
        } as u32)
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=' && !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        let n = chunk.len().saturating_sub(1);
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + n]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_runner_does_its_work() {
        for b in sipstls::backends() {
            if !has_native(b.info().name) {
                continue;
            }
            for api in [Api::Sipstls, Api::Native] {
                for work in [Work::Handshake, Work::Record1k] {
                    let mut r =
                        runner(&b, api, work).unwrap_or_else(|e| panic!("{} {api:?} {work:?}: {e}", b.info().name));
                    for _ in 0..3 {
                        r.once().unwrap_or_else(|e| panic!("{} {api:?} {work:?}: {e}", b.info().name));
                    }
                }
            }
        }
    }

    #[test]
    fn base64_matches_known_vectors() {
        assert_eq!(base64_decode("TWFu").unwrap(), b"Man");
        assert_eq!(base64_decode("TWE=").unwrap(), b"Ma");
        assert_eq!(base64_decode("TQ==").unwrap(), b"M");
        assert!(base64_decode("T*==").is_err());
    }
}
