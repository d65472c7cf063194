//! Mbed TLS's native twin: the mbedtls crate's own `Config` and `Context` over an
//! in-memory pipe, with the settings backend-mbedtls compiles for the sipstls path (TLS 1.2
//! only, renegotiation off, its curves and sipstls's default TLS 1.2 suites, no session
//! cache or tickets, the client verifying the chain and, through Mbed TLS's own host name
//! check, the name). Mbed TLS 2.28 has no TLS 1.3, so this twin and the sipstls side of its
//! rows do TLS 1.2.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ffi::{c_int, CString};
use std::io::{Read, Write};
use std::rc::Rc;
use std::sync::Arc;

use mbedtls::alloc::List as MbedtlsList;
use mbedtls::pk::Pk;
use mbedtls::rng::{CtrDrbg, OsEntropy};
use mbedtls::ssl::config::{AuthMode, Endpoint, Preset, Renegotiation, Transport, Version};
use mbedtls::ssl::{Config, Context};
use mbedtls::x509::Certificate;
use mbedtls_sys as sys;

use super::native::{Runner, Work, RECORD};
use sipstls_conformance::pki::{pki, SERVER_NAME};

type Pipe = Rc<RefCell<VecDeque<u8>>>;

/// One direction in, one out; reading an empty pipe would block (Mbed TLS: want read).
struct Mem {
    rx: Pipe,
    tx: Pipe,
}

impl Read for Mem {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut q = self.rx.borrow_mut();
        if q.is_empty() {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
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

/// backend-mbedtls's `CURVES`.
const CURVES: [sys::ecp_group_id; 4] =
    [sys::ECP_DP_CURVE25519, sys::ECP_DP_SECP256R1, sys::ECP_DP_SECP384R1, sys::ECP_DP_NONE];

fn e(e: mbedtls::Error) -> String {
    e.to_string()
}

fn config(server: bool, rng: &Arc<CtrDrbg>) -> Result<Arc<Config>, String> {
    let endpoint = if server { Endpoint::Server } else { Endpoint::Client };
    let mut c = Config::new(endpoint, Transport::Stream, Preset::Default);
    c.set_min_version(Version::Tls1_2).map_err(e)?;
    c.set_max_version(Version::Tls1_2).map_err(e)?;
    c.set_renegotiation(Renegotiation::Disabled);
    c.set_curves(Arc::new(CURVES.to_vec()));
    // sipstls's default TLS 1.2 suites, as backend-mbedtls maps them.
    let mut ids: Vec<c_int> = Vec::new();
    for iana in sipstls_core::DEFAULT_TLS12_SUITES {
        let name = CString::new(iana.replace('_', "-")).map_err(|e| e.to_string())?;
        // SAFETY: a valid C string; the function only reads it.
        let id = unsafe { sys::ssl_get_ciphersuite_id(name.as_ptr()) };
        if id != 0 {
            ids.push(id);
        }
    }
    ids.push(0);
    c.set_ciphersuites(Arc::new(ids));
    c.set_rng(rng.clone());
    let p = pki();
    if server {
        let mut chain = MbedtlsList::new();
        chain.push(Certificate::from_der(&p.server_ecdsa.der).map_err(e)?);
        let mut pem = p.server_ecdsa.key_pem.as_bytes().to_vec();
        pem.push(0); // Mbed TLS parses PEM only with its terminating NUL
        let key = Pk::from_private_key(&pem, None).map_err(e)?;
        c.push_cert(Arc::new(chain), Arc::new(key)).map_err(e)?;
        c.set_authmode(AuthMode::None);
    } else {
        let mut roots = MbedtlsList::new();
        roots.push(Certificate::from_der(&p.root_der).map_err(e)?);
        c.set_ca_list(Arc::new(roots), None);
        c.set_authmode(AuthMode::Required);
    }
    Ok(Arc::new(c))
}

/// Whether a handshake call only wants more input.
fn wants(r: &mbedtls::Result<()>) -> Result<bool, String> {
    match r {
        Ok(()) => Ok(false),
        Err(err)
            if matches!(
                err.high_level(),
                Some(mbedtls::error::codes::SslWantRead | mbedtls::error::codes::SslWantWrite)
            ) =>
        {
            Ok(true)
        }
        Err(err) => Err(format!("Mbed TLS handshake: {err}")),
    }
}

/// The twin.
pub struct MbedtlsRunner {
    server: Arc<Config>,
    client: Arc<Config>,
    work: Work,
    pair: Option<(Context<Mem>, Context<Mem>)>,
}

impl MbedtlsRunner {
    pub fn new(work: Work) -> Result<Self, String> {
        let rng = Arc::new(CtrDrbg::new(Arc::new(OsEntropy::new()), None).map_err(e)?);
        let mut r = MbedtlsRunner { server: config(true, &rng)?, client: config(false, &rng)?, work, pair: None };
        if work == Work::Record1k {
            r.pair = Some(r.handshake()?);
        }
        Ok(r)
    }

    fn handshake(&mut self) -> Result<(Context<Mem>, Context<Mem>), String> {
        let (c2s, s2c): (Pipe, Pipe) = Default::default();
        let mut c = Context::new(self.client.clone());
        let mut s = Context::new(self.server.clone());
        let mut c_busy = wants(&c.establish(Mem { rx: s2c.clone(), tx: c2s.clone() }, Some(SERVER_NAME)))?;
        let mut s_busy = wants(&s.establish(Mem { rx: c2s, tx: s2c }, None))?;
        for _ in 0..16 {
            if !c_busy && !s_busy {
                return Ok((c, s));
            }
            if s_busy {
                s_busy = wants(&s.handshake())?;
            }
            if c_busy {
                c_busy = wants(&c.handshake())?;
            }
        }
        Err("Mbed TLS handshake did not finish".into())
    }
}

impl Runner for MbedtlsRunner {
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
