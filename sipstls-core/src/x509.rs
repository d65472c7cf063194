//! Certificate facts every backend reports the same way, and RFC 5922 name matching.
//!
//! The DER comes from the TLS library; the parsing is ours, so `TlsInfo` fields and name
//! checks do not depend on which library produced the chain.

use std::net::IpAddr;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::ServerName;
use crate::error::CertificateError;

/// Parsed facts about one certificate, plain data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
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
            ..Default::default()
        };
        let san = cert.subject_alternative_name().map_err(|_| CertificateError::Malformed)?;
        if let Some(san) = san {
            info.has_san = true;
            for gn in &san.value.general_names {
                match gn {
                    GeneralName::DNSName(d) => info.san_dns.push((*d).to_owned()),
                    GeneralName::URI(u) => info.san_uri.push((*u).to_owned()),
                    GeneralName::RFC822Name(e) => info.san_email.push((*e).to_owned()),
                    GeneralName::IPAddress(bytes) => {
                        if let Ok(a) = <[u8; 4]>::try_from(*bytes) {
                            info.san_ip.push(IpAddr::from(a));
                        } else if let Ok(a) = <[u8; 16]>::try_from(*bytes) {
                            info.san_ip.push(IpAddr::from(a));
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(info)
    }

    /// True when this certificate identifies `name` under RFC 5922 section 7.2:
    ///
    /// - a DNS name matches a SAN URI `sip:name` or `sips:name` (no user part; URI
    ///   parameters ignored) or a SAN dNSName equal to it; comparison is
    ///   case-insensitive and ignores one trailing dot; wildcards are never expanded;
    /// - the subject CN is consulted only when the certificate has no SAN extension;
    /// - an IP address matches a SAN iPAddress entry only.
    pub fn matches_sip_identity(&self, name: &ServerName) -> bool {
        match name {
            ServerName::Ip(ip) => self.san_ip.contains(ip),
            ServerName::Dns(want) => {
                let want = normalize(want);
                if self.has_san {
                    self.san_uri.iter().filter_map(|u| sip_uri_domain(u)).any(|d| normalize(d) == want)
                        || self.san_dns.iter().any(|d| normalize(d) == want)
                } else {
                    self.subject_cn.as_deref().is_some_and(|cn| normalize(cn) == want)
                }
            }
        }
    }
}

fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
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
