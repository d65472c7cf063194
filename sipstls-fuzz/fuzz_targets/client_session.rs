//! A client session on every backend of the build, after its ClientHello, fed arbitrary
//! bytes as the server's answer: never a panic, a hang or an untyped error.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use sipstls::{ClientDomain, DomainConfig, Error, ReadStatus, ServerName};
use sipstls_conformance::pki::{pki, SERVER_NAME};

fn domains() -> &'static [Arc<dyn ClientDomain>] {
    static D: OnceLock<Vec<Arc<dyn ClientDomain>>> = OnceLock::new();
    D.get_or_init(|| {
        sipstls::backends()
            .iter()
            .map(|b| b.client_domain(&DomainConfig::client(pki().roots())).expect("client domain"))
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, input)) = data.split_first() else { return };
    let step = usize::from(step).max(1) * 7;
    let name = ServerName::parse(SERVER_NAME).unwrap();
    for d in domains() {
        let mut c = d.connect(Some(&name)).expect("connect");
        let mut out = vec![0u8; 32 * 1024];
        while c.take_tls(&mut out) > 0 {}
        let mut off = 0;
        let mut stalls = 0;
        while off < input.len() && stalls < 4 {
            let end = (off + step).min(input.len());
            match c.feed_tls(&input[off..end]) {
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
                        ),
                        "untyped error {e:?}"
                    );
                    break;
                }
            }
            while c.take_tls(&mut out) > 0 {}
            while let Ok(ReadStatus::Data(_)) = c.read(&mut out) {}
        }
        let _ = c.info();
    }
});
