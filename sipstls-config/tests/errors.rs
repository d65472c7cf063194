//! Every kind of mistake in a tls.cfg (and the TOML format) is refused with its line and key.

use sipstls_config::{ErrorKind, KamailioConfig, ParseOptions};

const SERVER: &str = "certificate = c.pem\nprivate_key = k.pem\n";

struct Case {
    what: &'static str,
    text: String,
    kind: ErrorKind,
    line: usize,
    key: Option<&'static str>,
    says: &'static str,
}

fn case(
    what: &'static str,
    text: &str,
    kind: ErrorKind,
    line: usize,
    key: Option<&'static str>,
    says: &'static str,
) -> Case {
    Case { what, text: text.to_owned(), kind, line, key, says }
}

fn server(extra: &str) -> String {
    format!("[server:127.0.0.1:5061]\n{SERVER}{extra}")
}

#[test]
fn malformed_tls_cfg_files_name_line_and_key() {
    use ErrorKind::*;
    let cases = [
        case("unknown section type", "# x\n[proxy:default]\n", UnknownSection, 2, None, "unknown profile type \"proxy\""),
        case("host name address", "[server:sip.example.com:5061]\n", MalformedAddress, 1, None, "host names"),
        case("address without port", "[client:127.0.0.1]\n", MalformedAddress, 1, None, "IPv4:port"),
        case("IPv6 without brackets", "[client:::1:5061]\n", MalformedAddress, 1, None, "[IPv6]:port"),
        case("port out of range", "[client:127.0.0.1:65536]\n", MalformedAddress, 1, None, "IPv4:port"),
        case("header without ]", "[server:default\n", Syntax, 1, None, "closing ']'"),
        case("header without colon", "[server]\n", Syntax, 1, None, "[server:ADDRESS]"),
        case("junk after header", "[client:default] x\n", Syntax, 1, None, "after the section header"),
        case("key before any section", "\nmethod = TLSv1.2+\n", Syntax, 2, None, "outside a profile"),
        case("unknown key", "[client:default]\nverify_peer = yes\n", UnknownKey, 2, Some("verify_peer"), "unknown key"),
        case("ca_file is not a Kamailio key", "[client:default]\nca_file = ca.pem\n", UnknownKey, 2, Some("ca_file"), "did you mean ca_list?"),
        case("not an assignment", "[client:default]\nhello\n", Syntax, 2, None, "'=' expected"),
        case("missing =", "[client:default]\nmethod TLSv1.2\n", Syntax, 2, None, "'=' expected"),
        case("missing value", "[client:default]\nmethod =   # none\n", Syntax, 2, None, "value missing"),
        case("unterminated quote", "[client:default]\nca_list = \"ca.pem\n", Syntax, 2, None, "closing quote"),
        case("two words", "[client:default]\nca_list = my ca.pem\n", Syntax, 2, None, "quote values"),
        case("invalid character", "[client:default]\nca_list = ~/ca.pem\n", Syntax, 2, None, "double quotes"),
        case("bad boolean", "[client:default]\nverify_certificate = maybe\n", BadValue, 2, Some("verify_certificate"), "not a boolean"),
        case("unknown method", "[client:default]\nmethod = TLSv2\n", BadValue, 2, Some("method"), "unknown method"),
        case("SSLv3", "[client:default]\n\ntls_method = SSLv3\n", DeprecatedMethod, 3, Some("tls_method"), "below TLS 1.2"),
        case("TLSv1.1+", "[client:default]\nmethod = tlsv1.1+\n", DeprecatedMethod, 2, Some("method"), "below TLS 1.2"),
        case("verify_depth too big", "[client:default]\nverify_depth = 300\n", BadValue, 2, Some("verify_depth"), "outside 0 to 255"),
        case("verify_depth negative", "[client:default]\nverify_depth = -1\n", BadValue, 2, Some("verify_depth"), "outside 0 to 255"),
        case("verify_depth not a number", "[client:default]\nverify_depth = deep\n", BadValue, 2, Some("verify_depth"), "not an integer"),
        case("server_name_mode 3", &server("server_name = a.example\nserver_name_mode = 3\n"), BadValue, 5, Some("server_name_mode"), "is not 0"),
        case("optional_no_ca", &server("verify_client = optional_no_ca\n"), Unsupported, 4, Some("verify_client"), "never accepts an unverified"),
        case("verify_client value", &server("verify_client = sometimes\n"), BadValue, 4, Some("verify_client"), "off, on or optional"),
        case("cipher keywords", &server("cipher_list = HIGH:!aNULL\n"), Unsupported, 4, Some("cipher_list"), "list the suites by name"),
        case("cipher DEFAULT", &server("cipher_list = DEFAULT\n"), Unsupported, 4, Some("cipher_list"), "OpenSSL cipher expression"),
        case("unknown cipher", &server("cipher_list = ECDHE-ECDSA-AES128-GCM-SHA999\n"), BadValue, 4, Some("cipher_list"), "unknown cipher suite"),
        case("bad server_name", "[client:any]\nserver_name = \"not a name\"\n", BadValue, 2, Some("server_name"), "not a host name"),
        case("duplicate key via alias", "[client:default]\nca_list = a.pem\ncalist_file = b.pem\n", DuplicateKey, 3, Some("calist_file"), "already set at line 2"),
        case("duplicate key", "[client:default]\nmethod = TLSv1.2\nmethod = TLSv1.3\n", DuplicateKey, 3, Some("method"), "already set at line 2"),
        case(
            "duplicate profile",
            &format!("[server:default]\n{SERVER}\n[server:*]\n{SERVER}"),
            DuplicateProfile,
            5,
            None,
            "first defined at t.cfg:1",
        ),
        case(
            "duplicate address",
            "[client:127.0.0.1:5061]\n[client:127.0.0.1:5061]\nserver_name = x.example\n",
            DuplicateProfile,
            2,
            None,
            "duplicate profile [client:127.0.0.1:5061]",
        ),
        case(
            "duplicate SNI on a listener",
            &format!("{}{}", server("server_name = A.example\n"), server("server_name = a.example\n")),
            DuplicateProfile,
            5,
            None,
            "with server_name \"a.example\"",
        ),
        case(
            "duplicate server_id",
            "[client:any]\nserver_name = a.example\nserver_id = gw\n[client:any]\nserver_name = b.example\nserver_id = GW\n",
            DuplicateProfile,
            6,
            Some("server_id"),
            "already used by [client:any] at t.cfg:1",
        ),
        case("certificate without key", "[client:default]\ncertificate = c.pem\n", Inconsistent, 2, Some("certificate"), "needs its private key"),
        case("key without certificate", "[client:default]\npkey_file = k.pem\n", Inconsistent, 2, Some("pkey_file"), "needs its certificate"),
        case(
            "password without key",
            "[client:default]\nprivate_key_password = x\n",
            Inconsistent,
            2,
            Some("private_key_password"),
            "without a private key",
        ),
        case(
            "certificate2 alone",
            "[client:default]\ncertificate2 = c.pem\nprivate_key2 = k.pem\n",
            Inconsistent,
            2,
            Some("certificate2"),
            "needs a first certificate",
        ),
        case("server without certificate", "# c\n[server:default]\nmethod = TLSv1.2\n", Inconsistent, 2, None, "needs certificate and private_key"),
        case("any without server_name", &format!("[server:any]\n{SERVER}"), Inconsistent, 1, None, "needs server_name"),
        case("mode without name", &server("server_name_mode = 1\n"), Inconsistent, 4, Some("server_name_mode"), "needs server_name"),
        case("mode on a client", "[client:any]\nserver_name = a.example\nserver_name_mode = 1\n", Inconsistent, 3, Some("server_name_mode"), "server profiles"),
        case("IP as SNI", &server("server_name = 192.0.2.1\n"), Inconsistent, 4, Some("server_name"), "never carries an IP"),
        case("server_id on a server", &server("server_id = x\n"), Inconsistent, 4, Some("server_id"), "client profiles"),
        case("SNI on the default server", &format!("[server:default]\n{SERVER}server_name = a.example\n"), Inconsistent, 4, Some("server_name"), "[server:any]"),
        case("verify_client on a client", "[client:default]\nverify_client = on\n", Inconsistent, 2, Some("verify_client"), "server profiles"),
        case(
            "verify_client contradicts verify_certificate",
            &server("verify_client = off\nverify_certificate = yes\n"),
            Inconsistent,
            5,
            Some("verify_certificate"),
            "contradicts verify_client at line 4",
        ),
        case(
            "verify_client optional contradicts require",
            &server("require_cert = on\nverify_client = optional\n"),
            Inconsistent,
            4,
            Some("require_cert"),
            "contradicts verify_client at line 5",
        ),
    ];
    let total = cases.len();
    let mut checked = 0;
    for c in cases {
        let err = match KamailioConfig::parse(&c.text, "t.cfg", &ParseOptions::default()) {
            Ok(cfg) => panic!("{}: accepted: {cfg:?}", c.what),
            Err(e) => e,
        };
        assert_eq!(err.kind, c.kind, "{}: {err}", c.what);
        assert_eq!(err.file.as_deref(), Some("t.cfg"), "{}", c.what);
        assert_eq!(err.line, Some(c.line), "{}: {err}", c.what);
        assert_eq!(err.key.as_deref(), c.key, "{}: {err}", c.what);
        assert!(err.message.contains(c.says), "{}: {err:?} should say {:?}", c.what, c.says);
        let shown = err.to_string();
        let prefix = match c.key {
            Some(k) => format!("t.cfg:{}: key \"{k}\": ", c.line),
            None => format!("t.cfg:{}: ", c.line),
        };
        assert!(shown.starts_with(&prefix), "{}: {shown:?} should start with {prefix:?}", c.what);
        checked += 1;
    }
    assert_eq!(checked, total);
    assert!(total >= 50);
}

#[test]
fn the_same_settings_are_accepted_when_well_formed() {
    // The counterpart of the table: what it refuses is refused for the mistake, not for
    // the shape. Aliases, case, quoting, escapes, comments and spacing as Kamailio reads them.
    let text = "\
# comment
  [ SRV : 127.0.0.1:5061 ]   # trailing comment
METHOD=tlsv1.2
cert_file = \"dir with space/c.pem\"
pkey_file = dir\\ with\\ space/k.pem # comment
pkey_password = \"p#ss\\\"word\"
verify_cert = Enabled
require_cert = 0
verify_depth = 3
cipher_list = \"ECDHE-ECDSA-AES128-GCM-SHA256:TLS_AES_128_GCM_SHA256\"
server_name = sip.example.com
server_name_mode = 2

[c:ALL]
server_name = gw.example.net
server_id = gw1
[cli:*]
verify_certificate = off
\r
[s:[::1]:5061]
certificate = c.pem
private_key = k.pem
verify_client = optional
";
    let cfg = KamailioConfig::parse(text, "ok.cfg", &ParseOptions::default()).unwrap();
    assert_eq!(cfg.profiles.len(), 4);
    let s = &cfg.profiles[0].settings;
    assert_eq!(s.certificate.as_ref().unwrap().value, "dir with space/c.pem");
    assert_eq!(s.private_key.as_ref().unwrap().value, "dir with space/k.pem");
    assert_eq!(s.private_key_password.as_ref().unwrap().value, "p#ss\"word");
    assert!(s.verify_certificate.as_ref().unwrap().value);
    assert!(!s.require_certificate.as_ref().unwrap().value);
    let ciphers = &s.cipher_list.as_ref().unwrap().value;
    assert_eq!(ciphers.tls12.as_deref(), Some(&["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".to_owned()][..]));
    assert_eq!(ciphers.tls13.as_deref(), Some(&["TLS_AES_128_GCM_SHA256".to_owned()][..]));
    assert_eq!(cfg.profiles[3].settings.verify_client.as_ref().unwrap().line, 23);
}

#[test]
fn directory_of_files_reads_every_regular_file_in_name_order() {
    let dir = std::env::temp_dir().join(format!("sipstls-config-dir-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sub.cfg")).unwrap();
    std::fs::write(dir.join("b.cfg"), "[client:127.0.0.1:5062]\nverify_certificate = no\n").unwrap();
    std::fs::write(dir.join("a.conf"), "[client:default]\nverify_certificate = no\n").unwrap();
    let cfg = KamailioConfig::read(&dir, &ParseOptions::default()).unwrap();
    let files: Vec<_> =
        cfg.profiles.iter().map(|p| (p.origin.file.rsplit('/').next().unwrap().to_owned(), p.origin.line)).collect();
    assert_eq!(files, [("a.conf".to_owned(), 1), ("b.cfg".to_owned(), 1)]);

    // A mistake names its own file; duplicates are found across files.
    std::fs::write(dir.join("c.cfg"), "# c\n[client:default]\n").unwrap();
    let err = KamailioConfig::read(&dir, &ParseOptions::default()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::DuplicateProfile);
    assert!(err.file.as_deref().unwrap().ends_with("c.cfg") && err.line == Some(2), "{err}");
    assert!(err.message.contains("a.conf:1"), "{err}");
    std::fs::write(dir.join("c.cfg"), "verify_depth = 2\n").unwrap();
    let err = KamailioConfig::read(&dir, &ParseOptions::default()).unwrap_err();
    assert!(err.file.as_deref().unwrap().ends_with("c.cfg") && err.message.contains("outside a profile"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();

    let err = KamailioConfig::read(dir.join("missing.cfg"), &ParseOptions::default()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Io);
}

#[test]
fn malformed_toml_names_line_and_key() {
    use ErrorKind::*;
    type TomlCase = (&'static str, &'static str, ErrorKind, usize, Option<&'static str>, &'static str);
    let cases: [TomlCase; 8] = [
        ("syntax", "[[server]\n", Syntax, 1, None, ""),
        ("unknown key", "[[client]]\nremote = \"default\"\npkey_file = \"k.pem\"\n", UnknownKey, 3, None, "unknown field"),
        ("wrong type", "[[client]]\nremote = \"default\"\nverify_certificate = \"yes\"\n", BadValue, 3, None, "invalid type"),
        ("no address", "\n[[server]]\ncertificate = \"c\"\nprivate_key = \"k\"\n", Syntax, 2, None, "needs listen"),
        ("wrong address key", "[[server]]\nremote = \"default\"\n", UnknownKey, 2, Some("remote"), "selected by listen"),
        ("bad address", "[[client]]\n\nremote = \"gw.example:5061\"\n", MalformedAddress, 3, Some("remote"), "host names"),
        ("deprecated method", "[[client]]\nremote = \"default\"\nmethod = \"TLSv1\"\n", DeprecatedMethod, 3, Some("method"), "below TLS 1.2"),
        (
            "duplicate profile",
            "[[client]]\nremote = \"default\"\nverify_certificate = false\n[[client]]\nremote = \"*\"\nverify_certificate = false\n",
            DuplicateProfile,
            4,
            None,
            "first defined at t.toml:1",
        ),
    ];
    for (what, text, kind, line, key, says) in cases {
        let err = KamailioConfig::parse_toml(text, "t.toml", &ParseOptions::default()).unwrap_err();
        assert_eq!(err.kind, kind, "{what}: {err}");
        assert_eq!(err.line, Some(line), "{what}: {err}");
        assert_eq!(err.key.as_deref(), key, "{what}: {err}");
        assert!(err.message.contains(says), "{what}: {err}");
        assert!(err.to_string().starts_with(&format!("t.toml:{line}: ")), "{what}: {err}");
    }
}
