//! The random generator every handshake, ticket key and `fill_random` call uses: one
//! CTR-DRBG over Mbed TLS's entropy collector (the OS source), per process.
//!
//! PSA crypto (TLS 1.3) draws from it too (`MBEDTLS_PSA_CRYPTO_EXTERNAL_RNG`).
//!
//! Mbed TLS has no fork detection: after `fork()` parent and child would hold the
//! same DRBG state and produce the same bytes (server randoms, ECDHE keys). Every call
//! therefore compares the process id with the one the DRBG was last seeded in and reseeds
//! from the OS (with the new pid as additional input) when it changed. The fork checks
//! (`tests/fork_pinned.rs`) measure it.

use std::ffi::{c_int, c_uchar, c_void};
use std::panic::catch_unwind;
use std::sync::{Mutex, OnceLock};

use sipstls_core::{Error, Result};
use sipstls_mbedtls_sys as mbedtls_sys;
use sipstls_mbedtls_sys::{ctr_drbg_context, entropy_context};

use crate::NAME;

struct Drbg {
    pid: u32,
    /// Boxed: the DRBG keeps a pointer to the entropy context.
    entropy: Box<entropy_context>,
    drbg: Box<ctr_drbg_context>,
}

// SAFETY: the contexts are plain C data owned by this struct; they have no thread
// affinity and are only touched under the `Mutex` below.
unsafe impl Send for Drbg {}

impl Drop for Drbg {
    fn drop(&mut self) {
        // SAFETY: both contexts were initialised in `Drbg::new` and are freed once here.
        unsafe {
            mbedtls_sys::ctr_drbg_free(&mut *self.drbg);
            mbedtls_sys::entropy_free(&mut *self.entropy);
        }
    }
}

impl Drbg {
    fn new() -> Result<Drbg> {
        let mut entropy = Box::new(entropy_context::default());
        let mut drbg = Box::new(ctr_drbg_context::default());
        let pid = std::process::id();
        let pers = format!("sipstls-mbedtls-{pid}");
        // SAFETY: init before use; `entropy` is boxed and outlives `drbg` (both owned by the
        // returned struct, freed in Drop, DRBG first). On error Drop frees both.
        let ret = unsafe {
            mbedtls_sys::entropy_init(&mut *entropy);
            mbedtls_sys::ctr_drbg_init(&mut *drbg);
            mbedtls_sys::ctr_drbg_seed(
                &mut *drbg,
                Some(mbedtls_sys::entropy_func),
                &mut *entropy as *mut entropy_context as *mut c_void,
                pers.as_ptr(),
                pers.len(),
            )
        };
        let d = Drbg { pid, entropy, drbg };
        if ret != 0 {
            return Err(crate::errors::backend(ret));
        }
        Ok(d)
    }

    fn fill(&mut self, out: &mut [u8]) -> c_int {
        let pid = std::process::id();
        if pid != self.pid {
            let add = pid.to_be_bytes();
            // SAFETY: the DRBG is initialised; `add` is a valid buffer of the given length.
            let ret = unsafe { mbedtls_sys::ctr_drbg_reseed(&mut *self.drbg, add.as_ptr(), add.len()) };
            if ret != 0 {
                return ret;
            }
            self.pid = pid;
        }
        for chunk in out.chunks_mut(mbedtls_sys::CTR_DRBG_MAX_REQUEST as usize) {
            // SAFETY: `chunk` is a valid writable buffer no longer than the DRBG's maximum
            // request; the DRBG is initialised.
            let ret = unsafe {
                mbedtls_sys::ctr_drbg_random(
                    &mut *self.drbg as *mut ctr_drbg_context as *mut c_void,
                    chunk.as_mut_ptr(),
                    chunk.len(),
                )
            };
            if ret != 0 {
                return ret;
            }
        }
        0
    }
}

fn global() -> Result<&'static Mutex<Drbg>> {
    static RNG: OnceLock<std::result::Result<Mutex<Drbg>, Error>> = OnceLock::new();
    RNG.get_or_init(|| Drbg::new().map(Mutex::new)).as_ref().map_err(Clone::clone)
}

/// Fills `out` from the process's DRBG.
pub(crate) fn fill(out: &mut [u8]) -> Result<()> {
    let rng = global()?;
    let mut g = rng.lock().unwrap_or_else(|p| p.into_inner());
    match g.fill(out) {
        0 => Ok(()),
        e => {
            Err(Error::Backend { library: NAME, message: format!("random generator: {}", crate::errors::describe(e)) })
        }
    }
}

/// Makes sure the generator can be seeded (called when a domain is built, so a broken
/// entropy source fails the configuration rather than a handshake).
pub(crate) fn check() -> Result<()> {
    global().map(|_| ())
}

/// The `f_rng` callback given to Mbed TLS (`p_rng` is unused: the generator is global).
///
/// # Safety
/// `out` must be valid for writes of `len` bytes (Mbed TLS guarantees it).
pub(crate) unsafe extern "C" fn rng_callback(_p: *mut c_void, out: *mut c_uchar, len: usize) -> c_int {
    catch_unwind(|| {
        if len == 0 {
            return 0;
        }
        if out.is_null() {
            return mbedtls_sys::ERR_CTR_DRBG_REQUEST_TOO_BIG;
        }
        // SAFETY: the caller passes a writable buffer of `len` bytes.
        let buf = unsafe { std::slice::from_raw_parts_mut(out, len) };
        match global() {
            Ok(rng) => rng.lock().unwrap_or_else(|p| p.into_inner()).fill(buf),
            Err(_) => mbedtls_sys::ERR_CTR_DRBG_ENTROPY_SOURCE_FAILED,
        }
    })
    .unwrap_or(mbedtls_sys::ERR_CTR_DRBG_ENTROPY_SOURCE_FAILED)
}
