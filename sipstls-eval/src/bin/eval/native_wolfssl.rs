//! wolfSSL's native twin: the raw wolfSSL API (sipstls-wolfssl-sys's bindings), with
//! in-memory I/O callbacks as sipstls-backend-wolfssl installs them, and the settings that backend uses for the sipstls path
//! (TLS 1.3 method, sipstls's default TLS 1.3 suite order, its key-share groups, session
//! cache and tickets off, the client verifying the chain and, through wolfSSL's own
//! `wolfSSL_check_domain_name`, the name). wolfSSL has no safe Rust API, so this is the
//! code a program using wolfSSL directly would write.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

use super::native::{Runner, Work, RECORD};
use sipstls_conformance::pki::{pki, SERVER_NAME};
use sipstls_wolfssl_sys as w;

/// Ciphertext in from the peer, ciphertext out to it: the context of both callbacks.
#[derive(Default)]
struct Io {
    input: Vec<u8>,
    pos: usize,
    output: Vec<u8>,
}

/// The receive callback: buffered input, or "want read".
///
/// # Safety
/// `ctx` is the `Io` of the WOLFSSL object (set by `Ssl::new`), `buf` writable for `sz`.
unsafe extern "C" fn io_recv(_ssl: *mut w::WOLFSSL, buf: *mut c_char, sz: c_int, ctx: *mut c_void) -> c_int {
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: per the contract, `ctx` is the live Io; no other reference to it exists
        // during the wolfSSL call.
        let Some(io) = (unsafe { ctx.cast::<Io>().as_mut() }) else { return w::IOerrors_WOLFSSL_CBIO_ERR_GENERAL };
        let avail = &io.input[io.pos..];
        if avail.is_empty() {
            return w::IOerrors_WOLFSSL_CBIO_ERR_WANT_READ;
        }
        let n = avail.len().min(usize::try_from(sz).unwrap_or(0));
        // SAFETY: `buf` is writable for `sz` >= n bytes (contract).
        unsafe { std::ptr::copy_nonoverlapping(avail.as_ptr(), buf.cast::<u8>(), n) };
        io.pos += n;
        if io.pos == io.input.len() {
            io.input.clear();
            io.pos = 0;
        }
        n as c_int
    }))
    .unwrap_or(w::IOerrors_WOLFSSL_CBIO_ERR_GENERAL)
}

/// The send callback: appends everything to the output.
///
/// # Safety
/// As `io_recv`, with `buf` readable for `sz` bytes.
unsafe extern "C" fn io_send(_ssl: *mut w::WOLFSSL, buf: *mut c_char, sz: c_int, ctx: *mut c_void) -> c_int {
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: as in `io_recv`.
        let Some(io) = (unsafe { ctx.cast::<Io>().as_mut() }) else { return w::IOerrors_WOLFSSL_CBIO_ERR_GENERAL };
        let n = usize::try_from(sz).unwrap_or(0);
        // SAFETY: `buf` is readable for `sz` bytes (contract).
        io.output.extend_from_slice(unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), n) });
        n as c_int
    }))
    .unwrap_or(w::IOerrors_WOLFSSL_CBIO_ERR_GENERAL)
}

/// An owned WOLFSSL_CTX.
struct Ctx(NonNull<w::WOLFSSL_CTX>);

impl Drop for Ctx {
    fn drop(&mut self) {
        // SAFETY: the context is ours; every Ssl made from it holds its own reference.
        unsafe { w::wolfSSL_CTX_free(self.0.as_ptr()) }
    }
}

/// An owned WOLFSSL with its I/O block (freed after the WOLFSSL, which points to it).
struct Ssl {
    ssl: NonNull<w::WOLFSSL>,
    io: Box<Io>,
}

impl Drop for Ssl {
    fn drop(&mut self) {
        // SAFETY: the object is ours and no call on it is running.
        unsafe { w::wolfSSL_free(self.ssl.as_ptr()) }
    }
}

impl Ssl {
    fn new(ctx: &Ctx) -> Result<Self, String> {
        // SAFETY: `ctx` is a live context.
        let ssl = NonNull::new(unsafe { w::wolfSSL_new(ctx.0.as_ptr()) }).ok_or("wolfSSL_new failed")?;
        let mut s = Ssl { ssl, io: Box::default() };
        let io: *mut Io = &mut *s.io;
        // SAFETY: `ssl` is live; the boxed Io outlives it (dropped after wolfSSL_free).
        unsafe {
            w::wolfSSL_SetIOReadCtx(ssl.as_ptr(), io.cast());
            w::wolfSSL_SetIOWriteCtx(ssl.as_ptr(), io.cast());
        }
        Ok(s)
    }

    /// Runs `f` (connect or accept); Ok(true) when done, Ok(false) when it wants input.
    fn step(&mut self, f: unsafe extern "C" fn(*mut w::WOLFSSL) -> c_int) -> Result<bool, String> {
        // SAFETY: the object is live; the callbacks reach only `self.io`, not borrowed now.
        let r = unsafe { f(self.ssl.as_ptr()) };
        if r == w::WOLFSSL_SUCCESS as c_int {
            return Ok(true);
        }
        // SAFETY: as above.
        let e = unsafe { w::wolfSSL_get_error(self.ssl.as_ptr(), r) };
        if e == w::WOLFSSL_ERROR_WANT_READ as c_int || e == w::WOLFSSL_ERROR_WANT_WRITE as c_int {
            Ok(false)
        } else {
            Err(format!("wolfSSL handshake error {e}"))
        }
    }
}

/// Moves `from`'s output to `to`'s input.
fn pass(from: &mut Ssl, to: &mut Ssl) {
    to.io.input.extend_from_slice(&from.io.output);
    from.io.output.clear();
}

fn ok(r: c_int, what: &str) -> Result<(), String> {
    if r == w::WOLFSSL_SUCCESS as c_int {
        Ok(())
    } else {
        Err(format!("{what} failed ({r})"))
    }
}

/// The groups sipstls-backend-wolfssl sets (its `GROUPS`).
const GROUPS: [u32; 4] =
    [w::WOLFSSL_X25519MLKEM768, w::WOLFSSL_ECC_X25519, w::WOLFSSL_ECC_SECP256R1, w::WOLFSSL_ECC_SECP384R1];
/// sipstls's default TLS 1.3 suites in wolfSSL's names.
const SUITES: &str = "TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:TLS13-CHACHA20-POLY1305-SHA256";

fn ctx(server: bool) -> Result<Ctx, String> {
    // SAFETY: the methods return fresh method objects (or null); wolfSSL_CTX_new takes it.
    let method = unsafe {
        w::wolfSSL_Init();
        if server {
            w::wolfTLSv1_3_server_method()
        } else {
            w::wolfTLSv1_3_client_method()
        }
    };
    // SAFETY: as above.
    let c = Ctx(NonNull::new(unsafe { w::wolfSSL_CTX_new(method) }).ok_or("wolfSSL_CTX_new failed")?);
    let p = c.0.as_ptr();
    let list = CString::new(SUITES).map_err(|e| e.to_string())?;
    let pki = pki();
    // SAFETY: `p` is live and unshared; every buffer is valid for the length passed.
    unsafe {
        w::wolfSSL_CTX_SetIORecv(p, Some(io_recv));
        w::wolfSSL_CTX_SetIOSend(p, Some(io_send));
        ok(w::wolfSSL_CTX_set_cipher_list(p, list.as_ptr()), "cipher list")?;
        let mut groups = GROUPS.map(|g| g as c_int);
        ok(w::wolfSSL_CTX_set_groups(p, groups.as_mut_ptr(), groups.len() as c_int), "groups")?;
        w::wolfSSL_CTX_set_session_cache_mode(p, w::WOLFSSL_SESS_CACHE_OFF as _);
        if server {
            let cert = &pki.server_ecdsa.der;
            let key = pki.server_ecdsa.key_pem.as_bytes();
            ok(
                w::wolfSSL_CTX_use_certificate_buffer(
                    p,
                    cert.as_ptr(),
                    cert.len() as _,
                    w::WOLFSSL_FILETYPE_ASN1 as c_int,
                ),
                "certificate",
            )?;
            ok(
                w::wolfSSL_CTX_use_PrivateKey_buffer(p, key.as_ptr(), key.len() as _, w::WOLFSSL_FILETYPE_PEM as c_int),
                "private key",
            )?;
            ok(w::wolfSSL_CTX_NoTicketTLSv12(p), "no TLS 1.2 tickets")?;
            if w::wolfSSL_CTX_no_ticket_TLSv13(p) != 0 {
                return Err("no TLS 1.3 tickets failed".into());
            }
        } else {
            let root = &pki.root_der;
            ok(
                w::wolfSSL_CTX_load_verify_buffer(p, root.as_ptr(), root.len() as _, w::WOLFSSL_FILETYPE_ASN1 as c_int),
                "trust anchor",
            )?;
            w::wolfSSL_CTX_set_verify(p, w::WOLFSSL_VERIFY_PEER as c_int, None);
        }
    }
    Ok(c)
}

/// The twin.
pub struct WolfsslRunner {
    server: Ctx,
    client: Ctx,
    name: CString,
    work: Work,
    pair: Option<(Ssl, Ssl)>,
    buf: Vec<u8>,
}

impl WolfsslRunner {
    pub fn new(work: Work) -> Result<Self, String> {
        let name = CString::new(SERVER_NAME).map_err(|e| e.to_string())?;
        let mut r =
            WolfsslRunner { server: ctx(true)?, client: ctx(false)?, name, work, pair: None, buf: vec![0; 4096] };
        if work == Work::Record1k {
            r.pair = Some(r.handshake()?);
        }
        Ok(r)
    }

    fn handshake(&mut self) -> Result<(Ssl, Ssl), String> {
        let mut c = Ssl::new(&self.client)?;
        let mut s = Ssl::new(&self.server)?;
        let n = self.name.as_bytes();
        // SAFETY: `c` is live; the name is NUL-terminated / valid for its length.
        unsafe {
            ok(
                w::wolfSSL_UseSNI(c.ssl.as_ptr(), w::WOLFSSL_SNI_HOST_NAME as u8, n.as_ptr().cast(), n.len() as u16),
                "SNI",
            )?;
            ok(w::wolfSSL_check_domain_name(c.ssl.as_ptr(), self.name.as_ptr()), "name check")?;
        }
        let (mut c_done, mut s_done) = (false, false);
        for _ in 0..16 {
            if !c_done {
                c_done = c.step(w::wolfSSL_connect)?;
            }
            pass(&mut c, &mut s);
            if !s_done {
                s_done = s.step(w::wolfSSL_accept)?;
            }
            pass(&mut s, &mut c);
            if c_done && s_done && c.io.output.is_empty() && s.io.output.is_empty() {
                return Ok((c, s));
            }
        }
        Err("wolfSSL handshake did not finish".into())
    }
}

impl Runner for WolfsslRunner {
    fn once(&mut self) -> Result<(), String> {
        match self.work {
            Work::Handshake => self.handshake().map(drop),
            Work::Record1k => {
                let (c, s) = self.pair.as_mut().ok_or("no connection")?;
                // SAFETY: `c` is live; RECORD is valid for its length.
                let n = unsafe { w::wolfSSL_write(c.ssl.as_ptr(), RECORD.as_ptr().cast(), RECORD.len() as c_int) };
                if n != RECORD.len() as c_int {
                    return Err(format!("wolfSSL_write returned {n}"));
                }
                pass(c, s);
                let mut got = 0;
                while got < RECORD.len() {
                    // SAFETY: `s` is live; `buf` is writable for its length.
                    let n = unsafe {
                        w::wolfSSL_read(s.ssl.as_ptr(), self.buf.as_mut_ptr().cast(), self.buf.len() as c_int)
                    };
                    if n <= 0 {
                        return Err(format!("wolfSSL_read returned {n}"));
                    }
                    got += n as usize;
                }
                Ok(())
            }
        }
    }
}
