//! A test PKI generated at run time (never committed keys): [`pki`] is the suite's own (a
//! trusted root, an untrusted root, the leaf certificates every check needs, and a CRL of
//! the trusted root revoking two dedicated leaves, one server, one client); [`Ca`] makes
//! others, for tests that need their own authorities, leaves and CRLs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams, SanType, SerialNumber,
    SignatureAlgorithm, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256,
};
use sipstls::{Certificate, Crl, Identity, PrivateKey};
use time::{Duration, OffsetDateTime};

/// The SIP domain the main server certificate is for (SAN URI `sip:example.test`).
pub const SIP_DOMAIN: &str = "example.test";
/// The host name of the main server certificate (SAN DNS).
pub const SERVER_NAME: &str = "sip.example.test";
/// The second server domain, selected by SNI.
pub const ALT_NAME: &str = "alt.example.test";
/// A name no server certificate carries.
pub const WRONG_NAME: &str = "nobody.example.test";
/// Subject CN of the trusted root.
pub const ROOT_CN: &str = "sipstls Test Root CA";
/// Subject CN of the client certificate.
pub const CLIENT_CN: &str = "alice";

/// A certificate with its key, as PEM and as sipstls types.
#[derive(Clone)]
pub struct Leaf {
    /// Certificate PEM.
    pub cert_pem: String,
    /// Private key PEM (PKCS#8).
    pub key_pem: String,
    /// DER of the certificate.
    pub der: Vec<u8>,
    /// The serial number, when one was asked for (else rcgen's random one).
    pub serial: Option<u64>,
}

impl Leaf {
    /// As a sipstls identity.
    pub fn identity(&self) -> Identity {
        Identity::new(
            vec![Certificate::from_der(self.der.clone())],
            PrivateKey::from_pem(self.key_pem.as_bytes()).expect("generated key parses"),
        )
    }
}

/// Every certificate the suite uses.
pub struct Pki {
    /// The trusted root (PEM).
    pub root_pem: String,
    /// The trusted root (DER).
    pub root_der: Vec<u8>,
    /// A root nobody trusts.
    pub other_root_der: Vec<u8>,
    /// ECDSA P-256 server leaf: CN and SAN DNS `sip.example.test`, SAN DNS `localhost`,
    /// SAN URI `sip:example.test`, SAN IP 127.0.0.1 and ::1.
    pub server_ecdsa: Leaf,
    /// RSA-2048 leaf with the same names.
    pub server_rsa: Leaf,
    /// ECDSA leaf for `alt.example.test`.
    pub server_alt: Leaf,
    /// A server leaf that expired a day ago.
    pub server_expired: Leaf,
    /// A server leaf for `sip.example.test` issued by the untrusted root.
    pub server_untrusted: Leaf,
    /// A client leaf, CN `alice`, SAN URI `sip:alice@example.test`.
    pub client: Leaf,
    /// A client leaf issued by the untrusted root.
    pub client_untrusted: Leaf,
    /// A server leaf like `server_ecdsa` (same names, trusted root) whose serial the CRL
    /// lists as revoked.
    pub server_revoked: Leaf,
    /// A client leaf like `client` (CN `alice`) whose serial the CRL lists as revoked.
    pub client_revoked: Leaf,
    /// The trusted root's CRL (PEM), revoking `server_revoked` and `client_revoked` only.
    pub crl_pem: String,
    /// The same CRL (DER).
    pub crl_der: Vec<u8>,
    /// A CRL of the untrusted root (revoking nothing): it covers none of the trusted
    /// root's leaves, whose revocation status is then unknown.
    pub other_crl_der: Vec<u8>,
}

impl Pki {
    /// The trusted root as a sipstls trust-anchor list.
    pub fn roots(&self) -> Vec<Certificate> {
        vec![Certificate::from_der(self.root_der.clone())]
    }

    /// The trusted root's CRL as a sipstls CRL list.
    pub fn crls(&self) -> Vec<Crl> {
        vec![Crl::from_der(self.crl_der.clone())]
    }

    /// Writes every PEM into `dir` (for command-line peers and example binaries) and
    /// returns the directory.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("ca.pem"), &self.root_pem)?;
        std::fs::write(dir.join("crl.pem"), &self.crl_pem)?;
        for (name, leaf) in [
            ("server", &self.server_ecdsa),
            ("server-rsa", &self.server_rsa),
            ("alt", &self.server_alt),
            ("client", &self.client),
        ] {
            std::fs::write(dir.join(format!("{name}.pem")), &leaf.cert_pem)?;
            std::fs::write(dir.join(format!("{name}.key")), &leaf.key_pem)?;
        }
        Ok(dir.to_path_buf())
    }
}

/// A root certificate authority (ECDSA P-256) that issues leaves and CRLs.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    /// The root certificate (PEM).
    pub pem: String,
    /// The root certificate (DER).
    pub der: Vec<u8>,
}

impl Ca {
    /// A self-signed root named `cn`.
    pub fn new(cn: &str) -> Ca {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("keygen");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("self-signed CA");
        Ca { pem: cert.pem(), der: cert.der().to_vec(), params, key }
    }

    /// The root as a sipstls trust-anchor list.
    pub fn roots(&self) -> Vec<Certificate> {
        vec![Certificate::from_der(self.der.clone())]
    }

    /// A leaf as `spec` describes.
    pub fn issue(&self, spec: LeafSpec<'_>) -> Leaf {
        leaf(self, spec)
    }

    /// A leaf named `cn` for the DNS names `dns` and the loopback addresses, ECDSA P-256,
    /// valid from a day ago for thirty days, for servers and clients alike, with serial
    /// `serial`.
    pub fn leaf(&self, cn: &str, dns: &[&str], serial: u64) -> Leaf {
        self.issue(LeafSpec { key_use: KeyUse::Any, serial: Some(serial), ..LeafSpec::new(cn, dns) })
    }

    /// A CRL revoking `serials`, valid from a day ago for thirty days: (PEM, DER).
    pub fn crl(&self, serials: &[u64]) -> (String, Vec<u8>) {
        crl(self, serials)
    }
}

/// What a leaf may be used for (its extended key usage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    /// TLS servers only.
    Server,
    /// TLS clients only.
    Client,
    /// No extended key usage: any.
    Any,
}

/// A leaf to issue with [`Ca::issue`].
#[derive(Debug, Clone)]
pub struct LeafSpec<'a> {
    /// Subject CN.
    pub cn: &'a str,
    /// SAN DNS names.
    pub dns: &'a [&'a str],
    /// SAN URIs.
    pub uris: &'a [&'a str],
    /// SAN IP addresses.
    pub ips: &'a [IpAddr],
    /// The key's algorithm.
    pub alg: &'static SignatureAlgorithm,
    /// The extended key usage.
    pub key_use: KeyUse,
    /// Expired a day ago.
    pub expired: bool,
    /// An explicit serial (for a CRL); `None`: rcgen's random one.
    pub serial: Option<u64>,
}

impl<'a> LeafSpec<'a> {
    /// A server leaf named `cn` for `dns` and the loopback addresses, ECDSA P-256, valid.
    pub fn new(cn: &'a str, dns: &'a [&'a str]) -> Self {
        LeafSpec {
            cn,
            dns,
            uris: &[],
            ips: &LOOPBACK,
            alg: &PKCS_ECDSA_P256_SHA256,
            key_use: KeyUse::Server,
            expired: false,
            serial: None,
        }
    }
}

fn leaf(issuer: &Ca, spec: LeafSpec<'_>) -> Leaf {
    let key = KeyPair::generate_for(spec.alg).expect("keygen");
    let mut params =
        CertificateParams::new(spec.dns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
    for u in spec.uris {
        params.subject_alt_names.push(SanType::URI((*u).try_into().expect("ia5")));
    }
    for ip in spec.ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    params.distinguished_name.push(DnType::CommonName, spec.cn);
    params.distinguished_name.push(DnType::OrganizationName, "sipstls tests");
    params.is_ca = IsCa::ExplicitNoCa;
    // RFC 5280 4.2.1.1: required in certificates not self-signed; strict verifiers (Python
    // cryptography's, in sslyze) refuse a leaf without it.
    params.use_authority_key_identifier_extension = true;
    params.serial_number = spec.serial.map(SerialNumber::from);
    params.extended_key_usages = match spec.key_use {
        KeyUse::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
        KeyUse::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        KeyUse::Any => Vec::new(),
    };
    let now = OffsetDateTime::now_utc();
    if spec.expired {
        params.not_before = now - Duration::days(30);
        params.not_after = now - Duration::days(1);
    } else {
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(30);
    }
    let iss = Issuer::from_params(&issuer.params, &issuer.key);
    let cert = params.signed_by(&key, &iss).expect("sign leaf");
    Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().to_vec(), serial: spec.serial }
}

/// The serials of the revoked leaves (other leaves get rcgen's random serials).
const SERVER_REVOKED_SERIAL: u64 = 0x5e_0001;
const CLIENT_REVOKED_SERIAL: u64 = 0xc1_0001;

/// A CRL of `issuer` revoking `serials`, valid from a day ago for thirty days.
fn crl(issuer: &Ca, serials: &[u64]) -> (String, Vec<u8>) {
    let now = OffsetDateTime::now_utc();
    let params = CertificateRevocationListParams {
        this_update: now - Duration::days(1),
        next_update: now + Duration::days(30),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from(*s),
                revocation_time: now - Duration::hours(1),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(&Issuer::from_params(&issuer.params, &issuer.key)).expect("sign CRL");
    (crl.pem().expect("CRL PEM"), crl.der().to_vec())
}

const LOOPBACK: [IpAddr; 2] = [IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)];

/// The suite's PKI, generated once per process.
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let root = Ca::new(ROOT_CN);
        let other = Ca::new("Untrusted Test Root CA");
        let server_spec = |alg, expired| LeafSpec {
            cn: SERVER_NAME,
            dns: &[SERVER_NAME, "localhost"],
            uris: &["sip:example.test"],
            ips: &LOOPBACK,
            alg,
            key_use: KeyUse::Server,
            expired,
            serial: None,
        };
        let client_spec = |serial| LeafSpec {
            cn: CLIENT_CN,
            dns: &["client.example.test"],
            uris: &["sip:alice@example.test"],
            ips: &[],
            alg: &PKCS_ECDSA_P256_SHA256,
            key_use: KeyUse::Client,
            expired: false,
            serial,
        };
        let (crl_pem, crl_der) = crl(&root, &[SERVER_REVOKED_SERIAL, CLIENT_REVOKED_SERIAL]);
        let (_, other_crl_der) = crl(&other, &[]);
        Pki {
            server_ecdsa: leaf(&root, server_spec(&PKCS_ECDSA_P256_SHA256, false)),
            server_rsa: leaf(&root, server_spec(&PKCS_RSA_SHA256, false)),
            server_expired: leaf(&root, server_spec(&PKCS_ECDSA_P256_SHA256, true)),
            server_untrusted: leaf(&other, server_spec(&PKCS_ECDSA_P256_SHA256, false)),
            server_alt: leaf(
                &root,
                LeafSpec {
                    cn: ALT_NAME,
                    dns: &[ALT_NAME],
                    uris: &[],
                    ips: &[],
                    alg: &PKCS_ECDSA_P256_SHA256,
                    key_use: KeyUse::Server,
                    expired: false,
                    serial: None,
                },
            ),
            client: leaf(&root, client_spec(None)),
            client_revoked: leaf(&root, client_spec(Some(CLIENT_REVOKED_SERIAL))),
            server_revoked: leaf(
                &root,
                LeafSpec { serial: Some(SERVER_REVOKED_SERIAL), ..server_spec(&PKCS_ECDSA_P256_SHA256, false) },
            ),
            crl_pem,
            crl_der,
            other_crl_der,
            client_untrusted: leaf(
                &other,
                LeafSpec {
                    cn: "mallory",
                    dns: &["mallory.example.test"],
                    uris: &[],
                    ips: &[],
                    alg: &PKCS_ECDSA_P256_SHA256,
                    key_use: KeyUse::Client,
                    expired: false,
                    serial: None,
                },
            ),
            root_pem: root.pem.clone(),
            root_der: root.der.clone(),
            other_root_der: other.der.clone(),
        }
    })
}
