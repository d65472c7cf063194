//! Mbed TLS's native twin: Mbed TLS has no maintained Rust API, so this makes the raw calls
//! of `sipstls-mbedtls-sys` (the build sipstls-backend-mbedtls links) over in-memory I/O callbacks,
//! with the settings sipstls-backend-mbedtls compiles for the sipstls path (TLS 1.3, its groups and
//! sipstls's default suites, no session cache or tickets, the client verifying the chain and,
//! through Mbed TLS's own host name check, the name). Backend-mbedtls sets up the library
//! for the process (mutexes, PSA crypto) first.
#![allow(unsafe_code)]

use std::ffi::{c_int, c_uchar, c_void, CString};
use std::ptr;

use sipstls_mbedtls_sys as sys;

use super::native::{Runner, Work, RECORD};
use sipstls_conformance::pki::{pki, SERVER_NAME};

/// sipstls-backend-mbedtls's groups (TLS ids, zero-terminated).
static GROUPS: [u16; 4] = [
    sys::SSL_IANA_TLS_GROUP_X25519 as u16,
    sys::SSL_IANA_TLS_GROUP_SECP256R1 as u16,
    sys::SSL_IANA_TLS_GROUP_SECP384R1 as u16,
    0,
];

/// One direction in, one out; reading an empty pipe is `WANT_READ`. Bytes are copied in
/// and out in blocks, as sipstls-backend-mbedtls's own transport does.
#[derive(Default)]
struct Pipes {
    rx: Vec<u8>,
    rx_pos: usize,
    tx: Vec<u8>,
}

/// `f_send`: append to the pipe.
///
/// # Safety
/// `p` is the side's `Pipes` (boxed, alive while its context is) and `buf` has `len` bytes.
unsafe extern "C" fn send(p: *mut c_void, buf: *const c_uchar, len: usize) -> c_int {
    // SAFETY: per the contract.
    let (pipes, data) = unsafe { (&mut *(p as *mut Pipes), std::slice::from_raw_parts(buf, len)) };
    pipes.tx.extend_from_slice(data);
    len as c_int
}

/// `f_recv`: take from the pipe, `WANT_READ` when empty.
///
/// # Safety
/// As for [`send`], with `buf` writable for `len` bytes.
unsafe extern "C" fn recv(p: *mut c_void, buf: *mut c_uchar, len: usize) -> c_int {
    // SAFETY: per the contract.
    let (pipes, out) = unsafe { (&mut *(p as *mut Pipes), std::slice::from_raw_parts_mut(buf, len)) };
    let avail = &pipes.rx[pipes.rx_pos..];
    if avail.is_empty() {
        return sys::ERR_SSL_WANT_READ;
    }
    let n = out.len().min(avail.len());
    out[..n].copy_from_slice(&avail[..n]);
    pipes.rx_pos += n;
    if pipes.rx_pos == pipes.rx.len() {
        pipes.rx.clear();
        pipes.rx_pos = 0;
    }
    n as c_int
}

/// A random source for the twin's configurations and the crypto timings: the OS.
///
/// # Safety
/// `out` is writable for `len` bytes.
pub(crate) unsafe extern "C" fn os_random(_p: *mut c_void, out: *mut c_uchar, len: usize) -> c_int {
    // SAFETY: per the contract.
    let buf = unsafe { std::slice::from_raw_parts_mut(out, len) };
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled rest of `buf`.
        let n = unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n <= 0 {
            return sys::ERR_CTR_DRBG_ENTROPY_SOURCE_FAILED;
        }
        filled += n as usize;
    }
    0
}

/// The twin's configurations and the objects they point to (boxed: stable addresses).
struct Side {
    conf: Box<sys::ssl_config>,
    crt: Box<sys::x509_crt>,
    key: Box<sys::pk_context>,
    _suites: Vec<c_int>,
}

impl Drop for Side {
    fn drop(&mut self) {
        // SAFETY: initialised in `side`, freed once, the configuration first.
        unsafe {
            sys::ssl_config_free(&mut *self.conf);
            sys::x509_crt_free(&mut *self.crt);
            sys::pk_free(&mut *self.key);
        }
    }
}

fn check(what: &str, ret: c_int) -> Result<(), String> {
    if ret == 0 {
        Ok(())
    } else {
        Err(format!("Mbed TLS {what}: -0x{:04X}", ret.unsigned_abs()))
    }
}

fn side(server: bool) -> Result<Side, String> {
    let mut s = Side { conf: Box::default(), crt: Box::default(), key: Box::default(), _suites: Vec::new() };
    // SAFETY: initialises the boxed objects before any other use (Drop frees them).
    unsafe {
        sys::ssl_config_init(&mut *s.conf);
        sys::x509_crt_init(&mut *s.crt);
        sys::pk_init(&mut *s.key);
    }
    let endpoint = if server { sys::SSL_IS_SERVER } else { sys::SSL_IS_CLIENT };
    let c: *mut sys::ssl_config = &mut *s.conf;
    // SAFETY: `c` is initialised and ours.
    check("config", unsafe {
        sys::ssl_config_defaults(c, endpoint, sys::SSL_TRANSPORT_STREAM, sys::SSL_PRESET_DEFAULT)
    })?;
    for iana in sipstls_core::DEFAULT_TLS13_SUITES {
        let mbed = CString::new(format!("TLS1-3-{}", iana.trim_start_matches("TLS_").replace('_', "-")))
            .map_err(|e| e.to_string())?;
        // SAFETY: a valid C string; the function only reads it.
        let id = unsafe { sys::ssl_get_ciphersuite_id(mbed.as_ptr()) };
        if id != 0 {
            s._suites.push(id);
        }
    }
    s._suites.push(0);
    let p = pki();
    // SAFETY: `c` as above; the suite list, certificate and key are kept in `Side` (heap
    // storage never moves) as long as the configuration.
    unsafe {
        sys::sipstls_mbedtls_conf_versions(c, sys::SSL_VERSION_TLS1_3 as u16, sys::SSL_VERSION_TLS1_3 as u16);
        sys::ssl_conf_groups(c, GROUPS.as_ptr());
        sys::ssl_conf_ciphersuites(c, s._suites.as_ptr());
        sys::ssl_conf_rng(c, Some(os_random), ptr::null_mut());
        sys::ssl_conf_new_session_tickets(c, 0);
        sys::ssl_conf_session_tickets(c, sys::SSL_SESSION_TICKETS_DISABLED);
        if server {
            check(
                "certificate",
                sys::x509_crt_parse_der(&mut *s.crt, p.server_ecdsa.der.as_ptr(), p.server_ecdsa.der.len()),
            )?;
            let mut pem = p.server_ecdsa.key_pem.as_bytes().to_vec();
            pem.push(0); // Mbed TLS parses PEM only with its terminating NUL
            check(
                "key",
                sys::pk_parse_key(
                    &mut *s.key,
                    pem.as_ptr(),
                    pem.len(),
                    ptr::null(),
                    0,
                    Some(os_random),
                    ptr::null_mut(),
                ),
            )?;
            check("own certificate", sys::ssl_conf_own_cert(c, &mut *s.crt, &mut *s.key))?;
            sys::ssl_conf_authmode(c, sys::SSL_VERIFY_NONE);
        } else {
            check("root", sys::x509_crt_parse_der(&mut *s.crt, p.root_der.as_ptr(), p.root_der.len()))?;
            sys::ssl_conf_ca_chain(c, &mut *s.crt, ptr::null_mut());
            sys::ssl_conf_authmode(c, sys::SSL_VERIFY_REQUIRED);
        }
    }
    Ok(s)
}

/// One connection end: the context and its pipes (both boxed: Mbed TLS points to them).
struct End {
    ssl: Box<sys::ssl_context>,
    _pipes: Box<Pipes>,
}

impl Drop for End {
    fn drop(&mut self) {
        // SAFETY: initialised in `Pair::new`; freed once.
        unsafe { sys::ssl_free(&mut *self.ssl) };
    }
}

/// A client and a server connected by two in-memory pipes.
struct Pair {
    client: End,
    server: End,
}

impl Pair {
    fn new(client: &Side, server: &Side) -> Result<Pair, String> {
        let mut ends = Vec::new();
        for (side, hostname) in [(client, Some(SERVER_NAME)), (server, None)] {
            let mut e = End { ssl: Box::default(), _pipes: Box::default() };
            let ssl: *mut sys::ssl_context = &mut *e.ssl;
            let pipes: *mut Pipes = &mut *e._pipes;
            // SAFETY: the context is initialised, then set up with a configuration that the
            // runner keeps alive longer than every pair; the bio points at the boxed pipes.
            unsafe {
                sys::ssl_init(ssl);
                check("setup", sys::ssl_setup(ssl, &*side.conf))?;
                sys::ssl_set_bio(ssl, pipes.cast(), Some(send), Some(recv), None);
                if let Some(h) = hostname {
                    let h = CString::new(h).map_err(|e| e.to_string())?;
                    check("hostname", sys::ssl_set_hostname(ssl, h.as_ptr()))?;
                }
            }
            ends.push(e);
        }
        let server = ends.pop().ok_or("no server end")?;
        let client = ends.pop().ok_or("no client end")?;
        Ok(Pair { client, server })
    }

    /// Moves what each side wrote to the other.
    fn shuttle(&mut self) {
        let (c, s) = (&mut *self.client._pipes, &mut *self.server._pipes);
        s.rx.extend_from_slice(&c.tx);
        c.tx.clear();
        c.rx.extend_from_slice(&s.tx);
        s.tx.clear();
    }

    fn handshake(&mut self) -> Result<(), String> {
        for _ in 0..16 {
            let mut done = 0;
            for end in [&mut self.client, &mut self.server] {
                // SAFETY: the context is set up and its bio points at live pipes.
                match unsafe { sys::ssl_handshake(&mut *end.ssl) } {
                    0 => done += 1,
                    sys::ERR_SSL_WANT_READ | sys::ERR_SSL_WANT_WRITE => {}
                    e => return check("handshake", e),
                }
            }
            self.shuttle();
            if done == 2 {
                return Ok(());
            }
        }
        Err("Mbed TLS handshake did not finish".into())
    }
}

/// The twin.
pub struct MbedtlsRunner {
    client: Side,
    server: Side,
    work: Work,
    pair: Option<Pair>,
}

impl MbedtlsRunner {
    pub fn new(work: Work) -> Result<Self, String> {
        // The library's mutexes and PSA crypto are set up by the backend.
        sipstls::mbedtls::init().map_err(|e| e.to_string())?;
        let mut r = MbedtlsRunner { client: side(false)?, server: side(true)?, work, pair: None };
        if work == Work::Record1k {
            let mut pair = Pair::new(&r.client, &r.server)?;
            pair.handshake()?;
            r.pair = Some(pair);
        }
        Ok(r)
    }
}

impl Runner for MbedtlsRunner {
    fn once(&mut self) -> Result<(), String> {
        match self.work {
            Work::Handshake => Pair::new(&self.client, &self.server)?.handshake(),
            Work::Record1k => {
                let pair = self.pair.as_mut().ok_or("no connection")?;
                let mut sent = 0;
                while sent < RECORD.len() {
                    // SAFETY: the context is established; `RECORD[sent..]` is readable.
                    let n =
                        unsafe { sys::ssl_write(&mut *pair.client.ssl, RECORD[sent..].as_ptr(), RECORD.len() - sent) };
                    if n <= 0 {
                        return check("write", n);
                    }
                    sent += n as usize;
                }
                pair.shuttle();
                let mut out = [0u8; 2048];
                let mut got = 0;
                while got < RECORD.len() {
                    // SAFETY: as above; `out` is writable for its length.
                    let n = unsafe { sys::ssl_read(&mut *pair.server.ssl, out.as_mut_ptr(), out.len()) };
                    if n <= 0 {
                        return check("read", n);
                    }
                    got += n as usize;
                }
                Ok(())
            }
        }
    }
}
