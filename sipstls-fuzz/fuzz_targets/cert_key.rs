//! Certificate and key loading: PEM parsing of chains, keys (plain and encrypted) and CRLs,
//! certificate inspection, and building server and client domains from arbitrary DER on
//! every backend of the build: a typed error, never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sipstls::x509::CertificateInfo;
use sipstls::{Backend, Certificate, Crl, DomainConfig, Identity, PrivateKey, PrivateKeyFormat};
use sipstls_conformance::pki::pki;

fn backends() -> &'static [std::sync::Arc<dyn Backend>] {
    static B: OnceLock<Vec<std::sync::Arc<dyn Backend>>> = OnceLock::new();
    B.get_or_init(sipstls::backends)
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    // Text formats.
    let _ = Certificate::all_from_pem(rest);
    let _ = PrivateKey::from_pem(rest);
    let _ = Crl::all_from_pem(rest);
    if sel & 0x80 != 0 {
        let _ = PrivateKey::from_pem_with_password(rest, b"password");
    }
    let _ = CertificateInfo::parse(rest);
    let _ = Identity::from_pem(rest, rest);
    // DER into the backends: the fuzzed bytes as the certificate (with the real key), as
    // the key (with the real certificate), or as a trusted CA.
    let real = &pki().server_ecdsa;
    let format = match sel % 3 {
        0 => PrivateKeyFormat::Pkcs8,
        1 => PrivateKeyFormat::Sec1,
        _ => PrivateKeyFormat::Pkcs1,
    };
    for b in backends() {
        let fuzzed_cert = Identity::new(vec![Certificate::from_der(rest.to_vec())], real.identity().key);
        let _ = b.server_domain(&DomainConfig::server(fuzzed_cert));
        let fuzzed_key = Identity::new(real.identity().chain, PrivateKey::from_der(format, rest.to_vec()));
        let _ = b.server_domain(&DomainConfig::server(fuzzed_key));
        let _ = b.client_domain(&DomainConfig::client(vec![Certificate::from_der(rest.to_vec())]));
    }
});
