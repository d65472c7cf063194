//! Owned Mbed TLS objects: certificate chains, CRLs, private keys and configurations, each
//! boxed (Mbed TLS keeps pointers to them, so their address never changes) and freed on drop.

use std::ffi::c_int;

use sipstls_core::{Error, Result};
use sipstls_mbedtls_sys as sys;

use crate::errors;

/// Declares an owned, boxed Mbed TLS object with its init and free functions.
macro_rules! owned {
    ($(#[$doc:meta])* $name:ident, $ty:ty, $init:path, $free:path) => {
        $(#[$doc])*
        pub(crate) struct $name(Box<$ty>);

        impl $name {
            pub(crate) fn new() -> Self {
                let mut b = Box::<$ty>::default();
                // SAFETY: initialises the zeroed, boxed object before any other use.
                unsafe { $init(&mut *b) };
                $name(b)
            }

            #[allow(dead_code)]
            pub(crate) fn as_ptr(&self) -> *const $ty {
                &*self.0
            }

            pub(crate) fn as_mut_ptr(&mut self) -> *mut $ty {
                &mut *self.0
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                // SAFETY: initialised in `new`, freed exactly once here; whatever pointed to
                // it (a configuration) is dropped first by its owner.
                unsafe { $free(&mut *self.0) };
            }
        }
    };
}

owned!(
    /// A parsed certificate chain (`mbedtls_x509_crt`, a linked list).
    CertChain, sys::x509_crt, sys::x509_crt_init, sys::x509_crt_free
);
owned!(
    /// Parsed CRLs (`mbedtls_x509_crl`, a linked list).
    CrlList, sys::x509_crl, sys::x509_crl_init, sys::x509_crl_free
);
owned!(
    /// A private key (`mbedtls_pk_context`).
    PrivateKey, sys::pk_context, sys::pk_init, sys::pk_free
);
owned!(
    /// A TLS configuration (`mbedtls_ssl_config`).
    SslConfig, sys::ssl_config, sys::ssl_config_init, sys::ssl_config_free
);
owned!(
    /// A session kept for resumption (`mbedtls_ssl_session`).
    SavedSession, sys::ssl_session, sys::ssl_session_init, sys::ssl_session_free
);
owned!(
    /// Mbed TLS's session-ticket keys (internally locked).
    TicketKeys, sys::ssl_ticket_context, sys::ssl_ticket_init, sys::ssl_ticket_free
);

// SAFETY: these are self-contained C structures (owned buffers, internal locks where they are
// shared), with no thread affinity. Shared access only reads them (see `Compiled`).
unsafe impl Send for CertChain {}
// SAFETY: see above.
unsafe impl Sync for CertChain {}
// SAFETY: see above.
unsafe impl Send for CrlList {}
// SAFETY: see above.
unsafe impl Sync for CrlList {}
// SAFETY: see above; Mbed TLS only reads a key while signing (the PK layer's contexts are
// not modified by a signature).
unsafe impl Send for PrivateKey {}
// SAFETY: see above.
unsafe impl Sync for PrivateKey {}
// SAFETY: see above.
unsafe impl Send for SavedSession {}

impl CertChain {
    /// Parses DER certificates into one chain, in order.
    pub(crate) fn from_der<'a>(certs: impl IntoIterator<Item = &'a [u8]>, setting: &'static str) -> Result<Self> {
        let mut chain = CertChain::new();
        for der in certs {
            // SAFETY: the chain is initialised; `der` is readable for its length (copied).
            let ret = unsafe { sys::x509_crt_parse_der(chain.as_mut_ptr(), der.as_ptr(), der.len()) };
            if ret != 0 {
                return Err(Error::config(setting, format!("unusable certificate: {}", errors::describe(ret))));
            }
        }
        Ok(chain)
    }

    /// The first certificate's public key.
    pub(crate) fn leaf_key(&self) -> *const sys::pk_context {
        // SAFETY: the chain is initialised; `pk` is a field of its first entry.
        unsafe { &(*self.as_ptr()).pk }
    }
}

impl CrlList {
    /// Parses DER CRLs into one list.
    pub(crate) fn from_der<'a>(crls: impl IntoIterator<Item = &'a [u8]>) -> Result<Self> {
        let mut list = CrlList::new();
        for der in crls {
            // SAFETY: the list is initialised; `der` is readable for its length (copied).
            let ret = unsafe { sys::x509_crl_parse_der(list.as_mut_ptr(), der.as_ptr(), der.len()) };
            if ret != 0 {
                return Err(Error::config("crls", format!("unusable CRL: {}", errors::describe(ret))));
            }
        }
        Ok(list)
    }

    /// The raw issuer names (DER) of every CRL in the list.
    pub(crate) fn issuer_names(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut p = self.as_ptr();
        while !p.is_null() {
            // SAFETY: `p` is the head of the list or a `next` link of it; Mbed TLS keeps every
            // entry and its `issuer_raw` bytes alive as long as the list.
            let c = unsafe { &*p };
            if c.version != 0 && !c.issuer_raw.p.is_null() {
                // SAFETY: `issuer_raw` describes `len` bytes inside the CRL's DER (see above).
                out.push(unsafe { std::slice::from_raw_parts(c.issuer_raw.p, c.issuer_raw.len) }.to_vec());
            }
            p = c.next;
        }
        out
    }
}

impl PrivateKey {
    /// Parses a DER private key (PKCS#8, SEC1 or PKCS#1).
    pub(crate) fn from_der(der: &[u8]) -> Result<Self> {
        let mut key = PrivateKey::new();
        // SAFETY: the context is initialised; `der` is readable for its length; the random
        // callback (blinding) is a plain function over the process's generator.
        let ret = unsafe {
            sys::pk_parse_key(
                key.as_mut_ptr(),
                der.as_ptr(),
                der.len(),
                std::ptr::null(),
                0,
                Some(crate::rng::rng_callback),
                std::ptr::null_mut(),
            )
        };
        if ret != 0 {
            return Err(Error::config("identities", format!("unusable private key: {}", errors::describe(ret))));
        }
        Ok(key)
    }

    /// True when `public` (a certificate's key) is this key's public half.
    pub(crate) fn matches(&self, public: *const sys::pk_context) -> bool {
        // SAFETY: both contexts are parsed and alive for the call; the function only reads
        // them (the random callback serves blinding).
        let ret: c_int =
            unsafe { sys::pk_check_pair(public, self.as_ptr(), Some(crate::rng::rng_callback), std::ptr::null_mut()) };
        ret == 0
    }
}

/// The DER bytes of a parsed certificate.
///
/// # Safety
/// `crt` must be a certificate parsed by Mbed TLS, alive for the returned borrow.
pub(crate) unsafe fn raw_der(crt: &sys::x509_crt) -> &[u8] {
    if crt.raw.p.is_null() || crt.raw.len == 0 {
        return &[];
    }
    // SAFETY: Mbed TLS keeps `raw.len` bytes at `raw.p` for the certificate's lifetime.
    unsafe { std::slice::from_raw_parts(crt.raw.p, crt.raw.len) }
}
