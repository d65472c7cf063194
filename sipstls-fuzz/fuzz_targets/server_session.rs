//! A server session on every backend of the build fed arbitrary bytes, in chunks whose
//! sizes come from the input: feed, answer, read, in a bounded loop. Every outcome is fine
//! except a panic, a hang or an untyped error.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use sipstls::{DomainConfig, Error, ReadStatus, ServerDomain};
use sipstls_conformance::pki::pki;

fn domains() -> &'static [Arc<dyn ServerDomain>] {
    static D: OnceLock<Vec<Arc<dyn ServerDomain>>> = OnceLock::new();
    D.get_or_init(|| {
        sipstls::backends()
            .iter()
            .map(|b| b.server_domain(&DomainConfig::server(pki().server_ecdsa.identity())).expect("server domain"))
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, input)) = data.split_first() else { return };
    let step = usize::from(step).max(1) * 7;
    for d in domains() {
        let mut s = d.accept().expect("accept");
        let mut out = vec![0u8; 32 * 1024];
        let mut off = 0;
        let mut stalls = 0;
        while off < input.len() && stalls < 4 {
            let end = (off + step).min(input.len());
            match s.feed_tls(&input[off..end]) {
                Ok(0) => stalls += 1,
                Ok(n) => off += n,
                Err(e) => {
                    assert!(
                        matches!(
                            e,
                            Error::Protocol { .. }
                                | Error::AlertReceived(_)
                                | Error::Certificate(_)
                                | Error::PeerCertificateRequired
                                | Error::NoDomain(_)
                        ),
                        "untyped error {e:?}"
                    );
                    break;
                }
            }
            while s.take_tls(&mut out) > 0 {}
            while let Ok(ReadStatus::Data(_)) = s.read(&mut out) {}
        }
        let _ = s.write(b"x");
        s.close_notify();
        while s.take_tls(&mut out) > 0 {}
        let _ = s.info();
    }
});
