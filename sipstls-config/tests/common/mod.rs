//! Test helpers: the tls.cfg fixtures, temporary directories, a PKI made at test time.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber,
};
use sipstls_core::{Error, Session};
use time::{Duration, OffsetDateTime};

/// `tests/fixtures`: the Kamailio tls.cfg samples the tests read.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "sipstls-config-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, rel: &str, data: impl AsRef<[u8]>) -> PathBuf {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A certificate and its key.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    pub serial: u64,
}

/// A CA that can issue leaves and CRLs.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pub pem: String,
    pub der: Vec<u8>,
}

impl Ca {
    pub fn new(cn: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Ca { pem: cert.pem(), der: cert.der().to_vec(), params, key }
    }

    /// A leaf for `dns` names (and loopback IPs), serial `serial`.
    pub fn leaf(&self, cn: &str, dns: &[&str], serial: u64) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params.subject_alt_names.push(SanType::IpAddress("::1".parse().unwrap()));
        params.distinguished_name.push(DnType::CommonName, cn);
        params.serial_number = Some(SerialNumber::from(serial));
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(30);
        let cert = params.signed_by(&key, &Issuer::from_params(&self.params, &self.key)).unwrap();
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().to_vec(), serial }
    }

    /// A CRL revoking `serials`: (PEM, DER).
    pub fn crl(&self, serials: &[u64]) -> (String, Vec<u8>) {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::hours(1),
            next_update: now + Duration::days(7),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: now - Duration::hours(1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&Issuer::from_params(&self.params, &self.key)).unwrap();
        (crl.pem().unwrap(), crl.der().to_vec())
    }
}

/// The certificates `tests/fixtures/tls.cfg` names: a CA, a server leaf and a client leaf.
pub struct PeerPki {
    pub ca: Ca,
    pub server: Leaf,
    pub client: Leaf,
}

impl PeerPki {
    pub fn new() -> PeerPki {
        let ca = Ca::new("Test SIP CA");
        let server = ca.leaf("localhost", &["localhost", "sip.test"], 10);
        let client = ca.leaf("sip-client", &["client.sip.test"], 11);
        PeerPki { ca, server, client }
    }

    /// Writes `CERTS/{ca.crt,server.crt,server.key,client.crt,client.key}` into `dir`.
    pub fn write_certs(&self, dir: &TempDir) {
        dir.write("CERTS/ca.crt", &self.ca.pem);
        dir.write("CERTS/server.crt", &self.server.cert_pem);
        dir.write("CERTS/server.key", &self.server.key_pem);
        dir.write("CERTS/client.crt", &self.client.cert_pem);
        dir.write("CERTS/client.key", &self.client.key_pem);
    }
}

/// Runs a handshake between two sessions in memory; the first error either side reports.
pub fn handshake(client: &mut dyn Session, server: &mut dyn Session) -> Result<(), Error> {
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..100 {
        move_tls(client, server, &mut buf)?;
        move_tls(server, client, &mut buf)?;
        if !client.is_handshaking() && !server.is_handshaking() && !client.wants_write() && !server.wants_write() {
            return Ok(());
        }
    }
    panic!("the handshake did not finish in 100 rounds");
}

fn move_tls(from: &mut dyn Session, to: &mut dyn Session, buf: &mut [u8]) -> Result<(), Error> {
    if let Some(e) = from.error() {
        return Err(e.clone());
    }
    while from.wants_write() {
        let n = from.take_tls(buf);
        if n == 0 {
            break;
        }
        let mut off = 0;
        while off < n {
            let k = to.feed_tls(&buf[off..n])?;
            assert!(k > 0, "the receiver refused ciphertext during a handshake");
            off += k;
        }
    }
    if let Some(e) = from.error() {
        return Err(e.clone());
    }
    Ok(())
}
