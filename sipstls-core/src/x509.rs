//! Certificate facts every backend reports the same way, and RFC 5922 name matching.
//!
//! The DER comes from the TLS library; the parsing is ours, so `TlsInfo` fields and name
//! checks do not depend on which library produced the chain.

use std::net::IpAddr;

use sha2::{Digest, Sha256};
use x509_parser::certificate::X509CertificateParser;
use x509_parser::extensions::{GeneralName, ParsedExtension, SubjectAlternativeName};
use x509_parser::nom::Parser;
use x509_parser::oid_registry::{self, Oid};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::X509Name;

use crate::config::ServerName;
use crate::error::CertificateError;

/// Parsed facts about one certificate, plain data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CertificateInfo {
    /// The subject as an RFC 4514-style string (`CN=..., O=...`).
    pub subject: String,
    /// The subject's first common name.
    pub subject_cn: Option<String>,
    /// The issuer as an RFC 4514-style string.
    pub issuer: String,
    /// The issuer's first common name.
    pub issuer_cn: Option<String>,
    /// The serial number, upper-case hex without separators.
    pub serial_hex: String,
    /// Start of validity, seconds since the Unix epoch.
    pub not_before: i64,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: i64,
    /// True when the certificate carries a subjectAltName extension.
    pub has_san: bool,
    /// SAN dNSName entries.
    pub san_dns: Vec<String>,
    /// SAN URI entries (SIP identities look like `sip:example.com`).
    pub san_uri: Vec<String>,
    /// SAN iPAddress entries.
    pub san_ip: Vec<IpAddr>,
    /// SAN rfc822Name (e-mail) entries.
    pub san_email: Vec<String>,
    /// basicConstraints CA flag.
    pub is_ca: bool,
    /// The subject's attributes one by one (what Kamailio's `$tls_peer_subject_*` give).
    pub subject_fields: NameFields,
    /// The issuer's attributes one by one (`$tls_peer_issuer_*`).
    pub issuer_fields: NameFields,
    /// The X.509 version (3 for every current certificate).
    pub version: u32,
    /// Issued by itself: the subject equals the issuer and, when both key identifiers are
    /// present, the authority key identifier equals the subject key identifier (OpenSSL's
    /// `X509_check_issued(cert, cert)`, behind Kamailio's `$tls_peer_...selfsigned`). The
    /// signature is not checked here; verification is the TLS library's job.
    pub self_signed: bool,
    /// SHA-256 of the DER encoding.
    pub fingerprint_sha256: [u8; 32],
}

/// The attributes of a distinguished name, each in the order it appears. Attributes not
/// listed here are in the full string (`subject`, `issuer`) only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct NameFields {
    /// commonName (CN).
    pub cn: Vec<String>,
    /// organizationName (O).
    pub o: Vec<String>,
    /// organizationalUnitName (OU).
    pub ou: Vec<String>,
    /// countryName (C).
    pub c: Vec<String>,
    /// stateOrProvinceName (ST).
    pub st: Vec<String>,
    /// localityName (L).
    pub l: Vec<String>,
    /// userId (UID, 0.9.2342.19200300.100.1.1).
    pub uid: Vec<String>,
    /// emailAddress (1.2.840.113549.1.9.1), deprecated in favour of SAN e-mail.
    pub email: Vec<String>,
}

impl NameFields {
    fn parse(name: &X509Name<'_>) -> NameFields {
        let mut f = NameFields::default();
        let uid = Oid::from(&[0, 9, 2342, 19200300, 100, 1, 1]).expect("static OID");
        for attr in name.iter_attributes() {
            // Attributes that are not strings (rare, legacy) are left to the full string.
            let Ok(value) = attr.as_str() else { continue };
            let oid = attr.attr_type();
            let slot = if *oid == oid_registry::OID_X509_COMMON_NAME {
                &mut f.cn
            } else if *oid == oid_registry::OID_X509_ORGANIZATION_NAME {
                &mut f.o
            } else if *oid == oid_registry::OID_X509_ORGANIZATIONAL_UNIT {
                &mut f.ou
            } else if *oid == oid_registry::OID_X509_COUNTRY_NAME {
                &mut f.c
            } else if *oid == oid_registry::OID_X509_STATE_OR_PROVINCE_NAME {
                &mut f.st
            } else if *oid == oid_registry::OID_X509_LOCALITY_NAME {
                &mut f.l
            } else if *oid == uid {
                &mut f.uid
            } else if *oid == oid_registry::OID_PKCS9_EMAIL_ADDRESS {
                &mut f.email
            } else {
                continue;
            };
            slot.push(value.to_owned());
        }
        f
    }
}

impl CertificateInfo {
    /// Parses a DER certificate.
    pub fn parse(der: &[u8]) -> Result<CertificateInfo, CertificateError> {
        let (rest, cert) = X509Certificate::from_der(der).map_err(|_| CertificateError::Malformed)?;
        if !rest.is_empty() {
            return Err(CertificateError::Malformed);
        }
        let first_cn = |name: &x509_parser::x509::X509Name<'_>| {
            name.iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_owned)
        };
        let mut info = CertificateInfo {
            subject: cert.subject().to_string(),
            subject_cn: first_cn(cert.subject()),
            issuer: cert.issuer().to_string(),
            issuer_cn: first_cn(cert.issuer()),
            serial_hex: cert.raw_serial().iter().map(|b| format!("{b:02X}")).collect(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            is_ca: cert.is_ca(),
            subject_fields: NameFields::parse(cert.subject()),
            issuer_fields: NameFields::parse(cert.issuer()),
            version: cert.version().0 + 1,
            fingerprint_sha256: Sha256::digest(der).into(),
            ..Default::default()
        };
        let mut ski = None;
        let mut aki = None;
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => ski = Some(k.0),
                ParsedExtension::AuthorityKeyIdentifier(a) => aki = a.key_identifier.as_ref().map(|k| k.0),
                _ => {}
            }
        }
        info.self_signed = cert.subject().as_raw() == cert.issuer().as_raw()
            && match (aki, ski) {
                (Some(a), Some(s)) => a == s,
                _ => true,
            };
        let san = cert.subject_alternative_name().map_err(|_| CertificateError::Malformed)?;
        if let Some(san) = san {
            info.has_san = true;
            for gn in &san.value.general_names {
                match gn {
                    GeneralName::DNSName(d) => info.san_dns.push((*d).to_owned()),
                    GeneralName::URI(u) => info.san_uri.push((*u).to_owned()),
                    GeneralName::RFC822Name(e) => info.san_email.push((*e).to_owned()),
                    GeneralName::IPAddress(bytes) => info.san_ip.extend(ip_of(bytes)),
                    _ => {}
                }
            }
        }
        Ok(info)
    }

    /// The SHA-256 fingerprint as upper-case hex pairs joined by colons (as `openssl x509
    /// -fingerprint -sha256` prints it).
    pub fn fingerprint_hex(&self) -> String {
        self.fingerprint_sha256.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
    }

    /// True when `unix_time` (seconds) is within notBefore..=notAfter.
    pub fn is_valid_at(&self, unix_time: i64) -> bool {
        self.not_before <= unix_time && unix_time <= self.not_after
    }

    /// True when the certificate's validity ended before `unix_time` (seconds).
    pub fn is_expired_at(&self, unix_time: i64) -> bool {
        unix_time > self.not_after
    }

    /// True when the certificate's validity has ended (by the system clock).
    pub fn is_expired(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.is_expired_at(now)
    }

    /// True when this certificate identifies `name` under RFC 5922 section 7.2:
    ///
    /// - a DNS name matches a SAN URI `sip:name` or `sips:name` (no user part; URI
    ///   parameters ignored) or a SAN dNSName equal to it; comparison is
    ///   case-insensitive and ignores one trailing dot; wildcards are never expanded;
    /// - the subject CN is consulted only when the certificate has no SAN extension;
    /// - an IP address matches a SAN iPAddress entry only.
    pub fn matches_sip_identity(&self, name: &ServerName) -> bool {
        identity_matches(name, self.has_san, self.subject_cn.as_deref(), &self.san_dns, &self.san_uri, &self.san_ip)
    }
}

/// Whether the DER certificate `der` identifies `name` under RFC 5922 section 7.2, by the
/// rules of [`CertificateInfo::matches_sip_identity`], as
/// `CertificateInfo::parse(der)?.matches_sip_identity(name)` would answer: the same parser
/// refuses the same certificates (`Malformed`), including a duplicate or undecodable
/// subjectAltName extension. Only what the rules consult is decoded: the subject's common
/// name and the subjectAltName extension. Other extensions are not decoded, no string is
/// formatted and no fingerprint computed; this is the name check of a client's handshake,
/// which runs once per connection.
pub fn sip_identity_matches(der: &[u8], name: &ServerName) -> Result<bool, CertificateError> {
    let (rest, cert) = X509CertificateParser::new()
        .with_deep_parse_extensions(false)
        .parse(der)
        .map_err(|_| CertificateError::Malformed)?;
    if !rest.is_empty() {
        return Err(CertificateError::Malformed);
    }
    let san_ext = cert
        .tbs_certificate
        .get_extension_unique(&oid_registry::OID_X509_EXT_SUBJECT_ALT_NAME)
        .map_err(|_| CertificateError::Malformed)?;
    let (mut dns, mut uri, mut ip) = (Vec::new(), Vec::new(), Vec::new());
    if let Some(ext) = san_ext {
        // As the full parser does: the extension's value must hold a GeneralNames sequence
        // (bytes after it are ignored there, so here too).
        let (_, san) = SubjectAlternativeName::from_der(ext.value).map_err(|_| CertificateError::Malformed)?;
        for gn in &san.general_names {
            match gn {
                GeneralName::DNSName(d) => dns.push(*d),
                GeneralName::URI(u) => uri.push(*u),
                GeneralName::IPAddress(bytes) => ip.extend(ip_of(bytes)),
                _ => {}
            }
        }
    }
    // The common name only counts without a subjectAltName extension.
    let cn =
        if san_ext.is_some() { None } else { cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()) };
    Ok(identity_matches(name, san_ext.is_some(), cn, &dns, &uri, &ip))
}

/// An iPAddress entry of 4 or 16 bytes (other lengths are not addresses: skipped).
fn ip_of(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(a) = <[u8; 4]>::try_from(bytes) {
        Some(IpAddr::from(a))
    } else if let Ok(a) = <[u8; 16]>::try_from(bytes) {
        Some(IpAddr::from(a))
    } else {
        None
    }
}

/// RFC 5922 section 7.2 over the names of one certificate (see
/// [`CertificateInfo::matches_sip_identity`]).
fn identity_matches(
    name: &ServerName,
    has_san: bool,
    cn: Option<&str>,
    san_dns: &[impl AsRef<str>],
    san_uri: &[impl AsRef<str>],
    san_ip: &[IpAddr],
) -> bool {
    match name {
        ServerName::Ip(ip) => san_ip.contains(ip),
        ServerName::Dns(want) => {
            let want = without_root(want);
            if has_san {
                san_uri.iter().filter_map(|u| sip_uri_domain(u.as_ref())).any(|d| same_name(d, want))
                    || san_dns.iter().any(|d| same_name(d.as_ref(), want))
            } else {
                cn.is_some_and(|cn| same_name(cn, want))
            }
        }
    }
}

/// A name without its one trailing dot.
fn without_root(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}

/// Equal ignoring ASCII case and one trailing dot on `name` (`want` has none).
fn same_name(name: &str, want: &str) -> bool {
    without_root(name).eq_ignore_ascii_case(want)
}

/// The domain of a `sip:`/`sips:` URI without a user part, or `None`.
fn sip_uri_domain(uri: &str) -> Option<&str> {
    let (scheme, rest) = uri.split_once(':')?;
    if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
        return None;
    }
    if rest.contains('@') {
        return None; // an address of record, not a domain identity
    }
    let host = rest.split([';', '?']).next()?;
    // A domain identity carries no port; tolerate one by ignoring it.
    let host = match host.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(cn: Option<&str>, dns: &[&str], uri: &[&str], ip: &[IpAddr]) -> CertificateInfo {
        CertificateInfo {
            subject_cn: cn.map(str::to_owned),
            has_san: !(dns.is_empty() && uri.is_empty() && ip.is_empty()),
            san_dns: dns.iter().map(|s| s.to_string()).collect(),
            san_uri: uri.iter().map(|s| s.to_string()).collect(),
            san_ip: ip.to_vec(),
            ..Default::default()
        }
    }

    fn dns(n: &str) -> ServerName {
        ServerName::parse(n).unwrap()
    }

    #[test]
    fn sip_uri_san_matches_domain() {
        let c = info(None, &[], &["sip:Example.COM"], &[]);
        assert!(c.matches_sip_identity(&dns("example.com")));
        assert!(c.matches_sip_identity(&dns("example.com.")));
        assert!(!c.matches_sip_identity(&dns("other.com")));
    }

    #[test]
    fn sip_uri_with_user_part_is_not_a_domain_identity() {
        let c = info(None, &[], &["sip:alice@example.com"], &[]);
        assert!(!c.matches_sip_identity(&dns("example.com")));
    }

    #[test]
    fn sip_uri_params_and_port_are_ignored() {
        let c = info(None, &[], &["sips:example.com:5061;transport=tls"], &[]);
        assert!(c.matches_sip_identity(&dns("example.com")));
    }

    #[test]
    fn dns_san_exact_and_case_insensitive() {
        let c = info(None, &["SIP.example.com"], &[], &[]);
        assert!(c.matches_sip_identity(&dns("sip.EXAMPLE.com")));
        assert!(!c.matches_sip_identity(&dns("example.com")));
    }

    #[test]
    fn wildcards_never_match() {
        let c = info(None, &["*.example.com"], &[], &[]);
        assert!(!c.matches_sip_identity(&dns("sip.example.com")));
    }

    #[test]
    fn cn_only_without_san() {
        let no_san = info(Some("example.com"), &[], &[], &[]);
        assert!(no_san.matches_sip_identity(&dns("example.com")));
        let with_san = info(Some("example.com"), &["other.example"], &[], &[]);
        assert!(!with_san.matches_sip_identity(&dns("example.com")));
    }

    #[test]
    fn ip_matches_san_ip_only() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let c = info(Some("127.0.0.1"), &["127.0.0.1"], &[], &[]);
        assert!(!c.matches_sip_identity(&ServerName::Ip(ip)));
        let c = info(None, &[], &[], &[ip]);
        assert!(c.matches_sip_identity(&ServerName::Ip(ip)));
        assert!(!c.matches_sip_identity(&ServerName::Ip("::1".parse().unwrap())));
    }

    #[test]
    fn server_name_parse() {
        assert_eq!(dns("Sip.Example.com."), ServerName::Dns("sip.example.com".into()));
        assert!(matches!(ServerName::parse("[::1]").unwrap(), ServerName::Ip(_)));
        assert!(ServerName::parse("").is_err());
        assert!(ServerName::parse("bad..name").is_err());
        assert!(ServerName::parse("sp ace.com").is_err());
        assert!(ServerName::parse("-lead.com").is_err());
    }

    #[test]
    fn garbage_der_is_malformed() {
        assert_eq!(CertificateInfo::parse(b"\x30\x03abc"), Err(CertificateError::Malformed));
        assert_eq!(CertificateInfo::parse(&[]), Err(CertificateError::Malformed));
    }
}
