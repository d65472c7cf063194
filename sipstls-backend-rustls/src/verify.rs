//! Certificate verification: webpki for chains, sipstls-core for RFC 5922 names, and the
//! verify depth that webpki does not bound by itself.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, ServerName as RustlsName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use sipstls_core::x509::sip_identity_matches;
use sipstls_core::{CertificateError, DomainConfig, Error, NameVerification, Result, ServerName};

/// Wraps one of our certificate errors so it survives the trip through rustls and is
/// mapped back exactly by [`crate::errors::map_error`].
pub(crate) fn rustls_cert_error(e: CertificateError) -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(Arc::new(e))))
}

fn check_depth(intermediates: &[CertificateDer<'_>], depth: u8) -> Result<(), rustls::Error> {
    if intermediates.len() > depth as usize {
        return Err(rustls_cert_error(CertificateError::ChainTooLong));
    }
    Ok(())
}

/// The client-side verifier of a server's certificate.
#[derive(Debug)]
pub(crate) struct SipServerVerifier {
    /// `None` when verification is off (`verify_peer = false`).
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
    names: NameVerification,
    depth: u8,
}

/// The configured CRLs for webpki. Revocation is checked for the peer's leaf only (as the
/// OpenSSL backend does); a leaf whose issuer has no CRL in the list is refused (webpki's
/// default "unknown status" policy, like OpenSSL's `X509_V_FLAG_CRL_CHECK`).
fn crls(cfg: &DomainConfig) -> Vec<CertificateRevocationListDer<'static>> {
    cfg.crls.iter().map(|c| CertificateRevocationListDer::from(c.der().to_vec())).collect()
}

/// A webpki verifier that cannot be built, as the setting at fault.
fn builder_error(e: rustls::client::VerifierBuilderError) -> Error {
    match e {
        rustls::client::VerifierBuilderError::InvalidCrl(c) => Error::config("crls", format!("unusable CRL: {c:?}")),
        other => Error::config("trust_anchors", other.to_string()),
    }
}

pub(crate) fn server_verifier(cfg: &DomainConfig, provider: Arc<CryptoProvider>) -> Result<Arc<SipServerVerifier>> {
    let chain = if cfg.verify_peer {
        let roots = crate::roots(cfg)?;
        let mut b = WebPkiServerVerifier::builder_with_provider(roots, provider.clone());
        if !cfg.crls.is_empty() {
            b = b.with_crls(crls(cfg)).only_check_end_entity_revocation();
        }
        Some(b.build().map_err(builder_error)?)
    } else {
        None
    };
    Ok(Arc::new(SipServerVerifier { chain, provider, names: cfg.name_verification, depth: cfg.verify_depth }))
}

impl ServerCertVerifier for SipServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &RustlsName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        check_depth(intermediates, self.depth)?;
        // webpki checks the chain first and the name last, so a name error means the
        // chain itself is good; the name is then judged by RFC 5922, not webpki.
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Ok(_) => {}
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. },
            )) => {}
            Err(e) => return Err(e),
        }
        if self.names == NameVerification::DangerousDisabled {
            return Ok(ServerCertVerified::assertion());
        }
        let want = match server_name {
            RustlsName::DnsName(d) => ServerName::Dns(d.as_ref().to_ascii_lowercase()),
            RustlsName::IpAddress(ip) => ServerName::Ip(std::net::IpAddr::from(*ip)),
            _ => return Err(rustls_cert_error(CertificateError::Other("unsupported name type".into()))),
        };
        if sip_identity_matches(end_entity, &want).map_err(rustls_cert_error)? {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls_cert_error(CertificateError::NameMismatch { expected: want.to_string() }))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The server-side verifier of client certificates: webpki plus the depth bound.
#[derive(Debug)]
pub(crate) struct DepthBoundClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    depth: u8,
}

pub(crate) fn client_verifier(
    cfg: &DomainConfig,
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>> {
    if !cfg.verify_peer {
        return Ok(WebPkiClientVerifier::no_client_auth());
    }
    let mut b = WebPkiClientVerifier::builder_with_provider(roots, provider);
    if !cfg.require_peer_certificate {
        b = b.allow_unauthenticated();
    }
    if !cfg.crls.is_empty() {
        b = b.with_crls(crls(cfg)).only_check_end_entity_revocation();
    }
    let inner = b.build().map_err(builder_error)?;
    Ok(Arc::new(DepthBoundClientVerifier { inner, depth: cfg.verify_depth }))
}

impl ClientCertVerifier for DepthBoundClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        check_depth(intermediates, self.depth)?;
        self.inner.verify_client_cert(end_entity, intermediates, now)
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
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
