//! Kamailio's `cipher_list` (an OpenSSL cipher string) mapped to IANA suite names.
//!
//! Only explicit suite names are accepted: OpenSSL names of TLS 1.2 suites
//! (`ECDHE-ECDSA-AES128-GCM-SHA256`) or their IANA names
//! (`TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`) go to
//! [`DomainConfig::cipher_list_tls12`](sipstls_core::DomainConfig::cipher_list_tls12), TLS 1.3
//! names (`TLS_AES_128_GCM_SHA256`) to
//! [`DomainConfig::cipher_suites_tls13`](sipstls_core::DomainConfig::cipher_suites_tls13), each
//! in the order written. A list naming suites of one version only leaves the other
//! version's defaults, as OpenSSL does (its cipher list never touches TLS 1.3 suites).
//!
//! OpenSSL's keyword expressions (`HIGH`, `!aNULL`, `DEFAULT`, `ECDHE+AESGCM`, `@STRENGTH`,
//! ...) are refused: what they select depends on the OpenSSL build and version, and other
//! backends have no such language. To get sipstls's defaults, leave `cipher_list` out.

use crate::error::ErrorKind;

/// The cipher suites a `cipher_list` names, by IANA name, in the order written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CipherSuites {
    /// TLS 1.2 suites; `None` when the list names none (the defaults stay).
    pub tls12: Option<Vec<String>>,
    /// TLS 1.3 suites; `None` when the list names none (the defaults stay).
    pub tls13: Option<Vec<String>>,
}

/// OpenSSL names of TLS 1.2 suites and their IANA names.
const TLS12: &[(&str, &str)] = &[
    ("ECDHE-ECDSA-AES128-GCM-SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
    ("ECDHE-ECDSA-AES256-GCM-SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
    ("ECDHE-ECDSA-CHACHA20-POLY1305", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
    ("ECDHE-RSA-AES128-GCM-SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    ("ECDHE-RSA-AES256-GCM-SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
    ("ECDHE-RSA-CHACHA20-POLY1305", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
    ("ECDHE-ECDSA-AES128-CCM", "TLS_ECDHE_ECDSA_WITH_AES_128_CCM"),
    ("ECDHE-ECDSA-AES256-CCM", "TLS_ECDHE_ECDSA_WITH_AES_256_CCM"),
    ("ECDHE-ECDSA-AES128-SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"),
    ("ECDHE-ECDSA-AES256-SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384"),
    ("ECDHE-RSA-AES128-SHA256", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"),
    ("ECDHE-RSA-AES256-SHA384", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384"),
    ("ECDHE-ECDSA-AES128-SHA", "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"),
    ("ECDHE-ECDSA-AES256-SHA", "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"),
    ("ECDHE-RSA-AES128-SHA", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"),
    ("ECDHE-RSA-AES256-SHA", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"),
    ("DHE-RSA-AES128-GCM-SHA256", "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"),
    ("DHE-RSA-AES256-GCM-SHA384", "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384"),
    ("DHE-RSA-CHACHA20-POLY1305", "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
    ("AES128-GCM-SHA256", "TLS_RSA_WITH_AES_128_GCM_SHA256"),
    ("AES256-GCM-SHA384", "TLS_RSA_WITH_AES_256_GCM_SHA384"),
    ("AES128-SHA256", "TLS_RSA_WITH_AES_128_CBC_SHA256"),
    ("AES256-SHA256", "TLS_RSA_WITH_AES_256_CBC_SHA256"),
    ("AES128-SHA", "TLS_RSA_WITH_AES_128_CBC_SHA"),
    ("AES256-SHA", "TLS_RSA_WITH_AES_256_CBC_SHA"),
];

/// TLS 1.3 suites (OpenSSL uses the IANA names).
const TLS13: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_CCM_SHA256",
    "TLS_AES_128_CCM_8_SHA256",
];

/// OpenSSL cipher-string keywords, recognised only to explain why they are refused.
const KEYWORDS: &[&str] = &[
    "DEFAULT",
    "ALL",
    "COMPLEMENTOFDEFAULT",
    "COMPLEMENTOFALL",
    "HIGH",
    "MEDIUM",
    "LOW",
    "EXPORT",
    "NULL",
    "eNULL",
    "aNULL",
    "kRSA",
    "aRSA",
    "RSA",
    "kDHE",
    "kEDH",
    "DH",
    "DHE",
    "EDH",
    "ADH",
    "kEECDH",
    "kECDHE",
    "ECDH",
    "EECDH",
    "ECDHE",
    "AECDH",
    "aECDSA",
    "ECDSA",
    "aDSS",
    "DSS",
    "AES",
    "AES128",
    "AES256",
    "AESGCM",
    "AESCCM",
    "CHACHA20",
    "SHA1",
    "SHA",
    "SHA256",
    "SHA384",
    "MD5",
    "PSK",
    "SUITEB128",
    "SUITEB192",
    "TLSv1.2",
    "TLSv1",
    "SSLv3",
    "SECLEVEL",
];

impl CipherSuites {
    /// Maps an OpenSSL cipher string of explicit suite names (separated by `:`, `,` or
    /// spaces). Errors carry the kind and a message.
    pub(crate) fn from_openssl(list: &str) -> Result<CipherSuites, (ErrorKind, String)> {
        let mut tls12: Vec<String> = Vec::new();
        let mut tls13: Vec<String> = Vec::new();
        for name in list.split([':', ',', ' ']).filter(|n| !n.is_empty()) {
            let (target, iana) = if let Some(s) = TLS13.iter().find(|s| s.eq_ignore_ascii_case(name)) {
                (&mut tls13, *s)
            } else if let Some((_, iana)) =
                TLS12.iter().find(|(o, i)| o.eq_ignore_ascii_case(name) || i.eq_ignore_ascii_case(name))
            {
                (&mut tls12, *iana)
            } else if name.starts_with(['!', '-', '+', '@'])
                || name.contains('+')
                || KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(name) || name.starts_with("SECLEVEL="))
            {
                return Err((
                    ErrorKind::Unsupported,
                    format!(
                        "{name:?} is an OpenSSL cipher expression, which sipstls does not evaluate: list the \
                         suites by name (e.g. \"ECDHE-ECDSA-AES128-GCM-SHA256:TLS_AES_128_GCM_SHA256\"), or \
                         remove cipher_list for sipstls's defaults"
                    ),
                ));
            } else {
                return Err((ErrorKind::BadValue, format!("unknown cipher suite {name:?}")));
            };
            if target.iter().any(|s| s == iana) {
                return Err((ErrorKind::BadValue, format!("cipher suite {name:?} is listed twice")));
            }
            target.push(iana.to_owned());
        }
        if tls12.is_empty() && tls13.is_empty() {
            return Err((ErrorKind::BadValue, "the cipher list names no suite".into()));
        }
        Ok(CipherSuites { tls12: (!tls12.is_empty()).then_some(tls12), tls13: (!tls13.is_empty()).then_some(tls13) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_iana_by_version() {
        let s = CipherSuites::from_openssl(
            "ECDHE-ECDSA-AES128-GCM-SHA256:TLS_AES_256_GCM_SHA384:ECDHE-RSA-CHACHA20-POLY1305,TLS_AES_128_GCM_SHA256",
        )
        .unwrap();
        assert_eq!(
            s.tls12.unwrap(),
            ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"]
        );
        assert_eq!(s.tls13.unwrap(), ["TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256"]);
        let only12 = CipherSuites::from_openssl("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384").unwrap();
        assert_eq!(only12.tls13, None);
    }

    #[test]
    fn keywords_and_unknown_names_are_refused() {
        for expr in ["HIGH:!aNULL", "DEFAULT", "ECDHE+AESGCM", "ECDHE-RSA-AES128-GCM-SHA256:@STRENGTH", "-RC4"] {
            let (kind, msg) = CipherSuites::from_openssl(expr).unwrap_err();
            assert_eq!(kind, ErrorKind::Unsupported, "{expr}");
            assert!(msg.contains("list the suites by name"), "{msg}");
        }
        assert_eq!(CipherSuites::from_openssl("ECDHE-RSA-AES128-GCM-SHA257").unwrap_err().0, ErrorKind::BadValue);
        assert_eq!(CipherSuites::from_openssl("::").unwrap_err().0, ErrorKind::BadValue);
        assert_eq!(
            CipherSuites::from_openssl("AES128-SHA:TLS_RSA_WITH_AES_128_CBC_SHA").unwrap_err().0,
            ErrorKind::BadValue
        );
    }
}
