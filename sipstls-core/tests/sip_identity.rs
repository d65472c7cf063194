//! `sip_identity_matches` (the names-only parse a client's handshake uses) answers exactly
//! as `CertificateInfo::parse` followed by `matches_sip_identity` (the full parse), on
//! certificates made at test time with every kind of name, with malformed and duplicate
//! subjectAltName extensions, and on damaged DER.

use rcgen::{CertificateParams, CustomExtension, DnType, KeyPair, SanType};
use sipstls_core::x509::{sip_identity_matches, CertificateInfo};
use sipstls_core::{CertificateError, ServerName};

/// The subjectAltName OID, 2.5.29.17.
const SAN_OID: &[u64] = &[2, 5, 29, 17];

fn cert(cn: Option<&str>, sans: Vec<SanType>, extra: Vec<CustomExtension>) -> Vec<u8> {
    let mut p = CertificateParams::default();
    if let Some(cn) = cn {
        p.distinguished_name.push(DnType::CommonName, cn);
    }
    p.subject_alt_names = sans;
    p.custom_extensions = extra;
    p.self_signed(&KeyPair::generate().unwrap()).unwrap().der().to_vec()
}

fn dns(s: &str) -> SanType {
    SanType::DnsName(s.try_into().unwrap())
}

fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().unwrap())
}

/// Every name the certificates below could (or should not) match.
fn names() -> Vec<ServerName> {
    [
        "sip.example.test",
        "SIP.Example.Test.",
        "example.test",
        "other.example.test",
        "a.example.test",
        "192.0.2.7",
        "2001:db8::7",
        "192.0.2.8",
    ]
    .iter()
    .map(|n| ServerName::parse(n).unwrap())
    .collect()
}

fn full(der: &[u8], name: &ServerName) -> Result<bool, CertificateError> {
    CertificateInfo::parse(der).map(|i| i.matches_sip_identity(name))
}

fn assert_same(what: &str, der: &[u8]) {
    for name in names() {
        assert_eq!(sip_identity_matches(der, &name), full(der, &name), "{what}, name {name}");
    }
}

#[test]
fn agrees_with_the_full_parse() {
    let certs = [
        ("CN only", cert(Some("sip.example.test"), vec![], vec![])),
        ("CN with a trailing dot", cert(Some("SIP.example.test."), vec![], vec![])),
        ("no names", cert(None, vec![], vec![])),
        ("dNSName, CN ignored", cert(Some("example.test"), vec![dns("sip.example.test")], vec![])),
        ("wildcard dNSName", cert(None, vec![dns("*.example.test")], vec![])),
        ("sip URI", cert(None, vec![uri("sip:Example.Test")], vec![])),
        ("sips URI with port and params", cert(None, vec![uri("sips:sip.example.test:5061;transport=tls")], vec![])),
        ("sip URI with a user part", cert(None, vec![uri("sip:alice@example.test")], vec![])),
        ("other scheme", cert(None, vec![uri("https://example.test")], vec![])),
        (
            "IP addresses",
            cert(
                Some("192.0.2.7"),
                vec![
                    SanType::IpAddress("192.0.2.7".parse().unwrap()),
                    SanType::IpAddress("2001:db8::7".parse().unwrap()),
                ],
                vec![],
            ),
        ),
        (
            "e-mail only",
            cert(Some("example.test"), vec![SanType::Rfc822Name("a@example.test".try_into().unwrap())], vec![]),
        ),
        (
            "an unrelated extension",
            cert(
                None,
                vec![dns("example.test")],
                vec![CustomExtension::from_oid_content(&[1, 2, 3, 4], vec![0x05, 0x00])],
            ),
        ),
    ];
    let mut matched = 0;
    for (what, der) in &certs {
        assert_same(what, der);
        matched += names().iter().filter(|n| sip_identity_matches(der, n) == Ok(true)).count();
    }
    assert!(matched >= 8, "the table should exercise matches too ({matched})");
}

#[test]
fn refuses_what_the_full_parse_refuses() {
    // A second subjectAltName extension (RFC 5280 forbids duplicates).
    let mut second = CustomExtension::from_oid_content(SAN_OID, vec![0x30, 0x03, 0x82, 0x01, b'x']);
    second.set_criticality(false);
    let dup = cert(None, vec![dns("sip.example.test")], vec![second]);
    // A subjectAltName whose value is not a GeneralNames sequence.
    let garbage = cert(None, vec![], vec![CustomExtension::from_oid_content(SAN_OID, vec![0x04, 0x01, 0x00])]);
    for (what, der) in [("duplicate SAN", &dup), ("undecodable SAN", &garbage)] {
        assert_eq!(full(der, &names()[0]), Err(CertificateError::Malformed), "{what}: premise");
        assert_same(what, der);
    }
    // Damaged DER: truncated at every length, trailing bytes, a flipped length byte.
    let good = cert(Some("sip.example.test"), vec![dns("sip.example.test")], vec![]);
    for len in 0..good.len() {
        assert_same(&format!("truncated to {len}"), &good[..len]);
    }
    let mut trailing = good.clone();
    trailing.push(0);
    assert_same("trailing byte", &trailing);
    for i in 0..good.len().min(64) {
        let mut bad = good.clone();
        bad[i] ^= 0x80;
        assert_same(&format!("byte {i} flipped"), &bad);
    }
}
