//! Peer certificate inspection: every field Kamailio scripts route on, from certificates made
//! at test time, with the fingerprint, serial and dates cross-checked against the `openssl`
//! command-line tool's reading of the same certificate.

use std::net::IpAddr;
use std::process::Command;

use rcgen::{CertificateParams, DnType, DnValue, IsCa, KeyPair, SanType};
use sipstls_core::x509::CertificateInfo;

const UID_OID: &[u64] = &[0, 9, 2342, 19200300, 100, 1, 1];
const EMAIL_OID: &[u64] = &[1, 2, 840, 113549, 1, 9, 1];

struct Made {
    ca_der: Vec<u8>,
    leaf_der: Vec<u8>,
}

fn make() -> Made {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.distinguished_name.push(DnType::CommonName, "Inspect Root");
    ca.distinguished_name.push(DnType::OrganizationName, "Root Org");
    ca.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.use_authority_key_identifier_extension = true;
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);

    let mut p = CertificateParams::default();
    let dn = &mut p.distinguished_name;
    dn.push(DnType::CommonName, "phone-17.example.test");
    dn.push(DnType::OrganizationName, "Example Telecom");
    dn.push(DnType::OrganizationalUnitName, "Voice");
    dn.push(DnType::CountryName, "DE");
    dn.push(DnType::StateOrProvinceName, "Berlin");
    dn.push(DnType::LocalityName, "Kreuzberg");
    dn.push(DnType::CustomDnType(UID_OID.to_vec()), DnValue::Utf8String("user17".into()));
    dn.push(DnType::CustomDnType(EMAIL_OID.to_vec()), DnValue::Ia5String("ops@example.test".try_into().unwrap()));
    p.subject_alt_names = vec![
        SanType::DnsName("phone-17.example.test".try_into().unwrap()),
        SanType::URI("sip:17@example.test".try_into().unwrap()),
        SanType::Rfc822Name("phone17@example.test".try_into().unwrap()),
        SanType::IpAddress("192.0.2.17".parse().unwrap()),
        SanType::IpAddress("2001:db8::17".parse().unwrap()),
    ];
    p.serial_number = Some(rcgen::SerialNumber::from(vec![0x01, 0x23, 0x45, 0x67, 0x89]));
    p.not_before = time::macros::datetime!(2020-01-02 03:04:05 UTC);
    p.not_after = time::macros::datetime!(2021-01-02 03:04:05 UTC);
    p.use_authority_key_identifier_extension = true;
    let leaf = p.signed_by(&KeyPair::generate().unwrap(), &issuer).unwrap();
    Made { ca_der: ca_cert.der().to_vec(), leaf_der: leaf.der().to_vec() }
}

/// `openssl x509 -inform DER <args>` on `der`, its standard output.
fn openssl_x509(der: &[u8], args: &[&str]) -> String {
    let path = std::env::temp_dir().join(format!("sipstls-inspect-{}-{}.der", std::process::id(), args.join("")));
    std::fs::write(&path, der).unwrap();
    let out = Command::new("openssl")
        .args(["x509", "-inform", "DER", "-noout", "-in"])
        .arg(&path)
        .args(args)
        .output()
        .expect("the openssl command-line tool (scripts/test.sh installs it)");
    std::fs::remove_file(&path).unwrap();
    assert!(out.status.success(), "openssl x509 {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn subject_issuer_and_san_fields() {
    let m = make();
    let i = CertificateInfo::parse(&m.leaf_der).unwrap();
    let s = &i.subject_fields;
    assert_eq!(s.cn, ["phone-17.example.test"]);
    assert_eq!(s.o, ["Example Telecom"]);
    assert_eq!(s.ou, ["Voice"]); // rcgen keeps one value per attribute type
    assert_eq!(s.c, ["DE"]);
    assert_eq!(s.st, ["Berlin"]);
    assert_eq!(s.l, ["Kreuzberg"]);
    assert_eq!(s.uid, ["user17"]);
    assert_eq!(s.email, ["ops@example.test"]);
    assert_eq!(i.issuer_fields.cn, ["Inspect Root"]);
    assert_eq!(i.issuer_fields.o, ["Root Org"]);
    assert!(i.issuer_fields.ou.is_empty());
    assert_eq!(i.san_dns, ["phone-17.example.test"]);
    assert_eq!(i.san_uri, ["sip:17@example.test"]);
    assert_eq!(i.san_email, ["phone17@example.test"]);
    assert_eq!(i.san_ip, ["192.0.2.17".parse::<IpAddr>().unwrap(), "2001:db8::17".parse().unwrap()]);
    assert_eq!(i.version, 3);
    assert!(!i.is_ca);
}

#[test]
fn serial_dates_and_fingerprint_agree_with_openssl() {
    let m = make();
    let i = CertificateInfo::parse(&m.leaf_der).unwrap();
    assert_eq!(i.serial_hex, "0123456789");
    assert_eq!(openssl_x509(&m.leaf_der, &["-serial"]).trim(), format!("serial={}", i.serial_hex));
    let fp = openssl_x509(&m.leaf_der, &["-fingerprint", "-sha256"]);
    assert_eq!(fp.trim().rsplit('=').next().unwrap(), i.fingerprint_hex());
    assert_eq!(i.fingerprint_hex().len(), 32 * 3 - 1);
    // 2020-01-02T03:04:05Z and 2021-01-02T03:04:05Z.
    assert_eq!((i.not_before, i.not_after), (1_577_934_245, 1_609_556_645));
    let dates = openssl_x509(&m.leaf_der, &["-dates"]);
    assert!(dates.contains("notBefore=Jan  2 03:04:05 2020 GMT"), "{dates}");
    assert!(dates.contains("notAfter=Jan  2 03:04:05 2021 GMT"), "{dates}");
}

#[test]
fn validity_and_self_signed() {
    let m = make();
    let leaf = CertificateInfo::parse(&m.leaf_der).unwrap();
    assert!(leaf.is_expired(), "expired in 2021");
    assert!(leaf.is_valid_at(1_600_000_000));
    assert!(!leaf.is_valid_at(1_577_934_244), "one second before notBefore");
    assert!(!leaf.is_expired_at(1_609_556_645) && leaf.is_expired_at(1_609_556_646));
    assert!(!leaf.self_signed, "issued by the root");
    let root = CertificateInfo::parse(&m.ca_der).unwrap();
    assert!(root.self_signed && root.is_ca);
    assert!(!root.is_expired());
    let text = openssl_x509(&m.ca_der, &["-text"]);
    assert!(
        text.contains("Subject: CN=Inspect Root, O=Root Org")
            || text.contains("Subject: CN = Inspect Root, O = Root Org")
    );
}
