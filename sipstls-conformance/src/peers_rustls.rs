//! A rustls client driven directly (not through sipstls), for checks that need a client
//! setting sipstls does not have: the TLS 1.3 signature algorithms a client offers.

use sipstls::{Backend, DomainConfig};

/// Handshakes a TLS 1.3 rustls client that offers only RSA signature schemes (`rsa`) or
/// only ECDSA ones against a server session of `scfg` on `b`, sends one byte each way,
/// and returns the DER of the leaf the server presented. Panics if the handshake fails.
#[cfg(feature = "rustls")]
pub(crate) fn tls13_leaf_for_schemes(b: &dyn Backend, scfg: &DomainConfig, rsa: bool) -> Vec<u8> {
    use std::io::{Read, Write};
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::client::WebPkiServerVerifier;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

    use crate::pki::{pki, SERVER_NAME};

    /// webpki's verifier, advertising only one family of signature schemes.
    #[derive(Debug)]
    struct Restricted {
        inner: Arc<WebPkiServerVerifier>,
        rsa: bool,
    }

    impl ServerCertVerifier for Restricted {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            if !self.supported_verify_schemes().contains(&dss.scheme) {
                return Err(rustls::Error::General(format!("scheme {:?} was not offered", dss.scheme)));
            }
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            let is_rsa = |s: &SignatureScheme| {
                matches!(
                    s,
                    SignatureScheme::RSA_PSS_SHA256
                        | SignatureScheme::RSA_PSS_SHA384
                        | SignatureScheme::RSA_PSS_SHA512
                        | SignatureScheme::RSA_PKCS1_SHA256
                        | SignatureScheme::RSA_PKCS1_SHA384
                        | SignatureScheme::RSA_PKCS1_SHA512
                )
            };
            let is_ecdsa = |s: &SignatureScheme| {
                matches!(
                    s,
                    SignatureScheme::ECDSA_NISTP256_SHA256
                        | SignatureScheme::ECDSA_NISTP384_SHA384
                        | SignatureScheme::ECDSA_NISTP521_SHA512
                )
            };
            self.inner
                .supported_verify_schemes()
                .into_iter()
                .filter(|s| if self.rsa { is_rsa(s) } else { is_ecdsa(s) })
                .collect()
        }
    }

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(pki().root_der.clone())).expect("test root");
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .expect("webpki verifier");
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Restricted { inner, rsa }))
        .with_no_client_auth();
    let name = ServerName::try_from(SERVER_NAME).expect("name");
    let mut c = rustls::ClientConnection::new(Arc::new(config), name).expect("rustls client");
    let mut s = b.server_domain(scfg).expect("server domain").accept().expect("accept");

    let mut buf = vec![0u8; 64 * 1024];
    c.writer().write_all(b"x").expect("buffer early data");
    for _ in 0..64 {
        let mut out = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut out).expect("rustls write_tls");
        }
        let mut off = 0;
        while off < out.len() {
            let n = s.feed_tls(&out[off..]).unwrap_or_else(|e| panic!("server failed: {e:?}"));
            assert!(n > 0, "server refuses ciphertext");
            off += n;
        }
        let mut moved = out.len();
        while s.wants_write() {
            let n = s.take_tls(&mut buf);
            if n == 0 {
                break;
            }
            moved += n;
            let mut rd = &buf[..n];
            while !rd.is_empty() {
                c.read_tls(&mut rd).expect("rustls read_tls");
                c.process_new_packets().unwrap_or_else(|e| panic!("rustls client refused the server: {e}"));
            }
        }
        let mut got = [0u8; 8];
        if !c.is_handshaking() && !s.is_handshaking() && s.read(&mut got) == Ok(sipstls::ReadStatus::Data(1)) {
            let leaf = c.peer_certificates().expect("server certificate")[0].to_vec();
            let _ = c.reader().read(&mut got);
            return leaf;
        }
        assert!(moved > 0 || c.is_handshaking() || s.is_handshaking(), "no progress");
    }
    panic!("the rustls client's TLS 1.3 handshake did not complete in 64 rounds");
}

/// Without this crate's `rustls` feature there is no client that can restrict its TLS 1.3
/// signature algorithms (sipstls has no setting for them): fail loudly rather than pass.
#[cfg(not(feature = "rustls"))]
pub(crate) fn tls13_leaf_for_schemes(b: &dyn Backend, _scfg: &DomainConfig, _rsa: bool) -> Vec<u8> {
    panic!(
        "{} claims MULTIPLE_IDENTITIES and TLS 1.3: proving TLS 1.3 identity selection needs a client \
         restricted to RSA or ECDSA signature schemes, which only the rustls crate (feature `rustls` \
         of sipstls-conformance) provides here; build the suite with that feature",
        b.info().name
    )
}
