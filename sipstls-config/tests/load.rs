//! Loading: TOML and tls.cfg give equal domains; encrypted keys; CA directories; CRLs;
//! method mapping; client verification; errors of the load stage.

mod common;

use std::sync::Arc;

use common::{handshake, Ca, TempDir};
use pkcs8::der::pem::LineEnding;
use pkcs8::pkcs5::pbes2;
use pkcs8::PrivateKeyInfo;
use sipstls_backend_rustls::RustlsBackend;
use sipstls_config::{ClientSelector, Domains, ErrorKind, KamailioConfig, ParseOptions};
use sipstls_core::{Backend, ClientTarget, DomainConfig, Error, Listener, ProtocolVersion, SniMatch};

const TLS12: ProtocolVersion = ProtocolVersion::Tls12;
const TLS13: ProtocolVersion = ProtocolVersion::Tls13;

fn encrypt_key(key_pem: &str, password: &str) -> String {
    let der = pkcs8::der::pem::decode_vec(key_pem.as_bytes()).unwrap().1;
    let info = PrivateKeyInfo::try_from(der.as_slice()).unwrap();
    let params = pbes2::Parameters::pbkdf2_sha256_aes256cbc(2048, &[3; 16], &[5; 16]).unwrap();
    let doc = info.encrypt_with_params(params, password).unwrap();
    doc.to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF).unwrap().to_string()
}

fn key_der(key_pem: &str) -> Vec<u8> {
    pkcs8::der::pem::decode_vec(key_pem.as_bytes()).unwrap().1
}

/// A directory with everything the rich configurations below name.
struct Files {
    dir: TempDir,
    ca: Ca,
    other_ca: Ca,
    server_der: Vec<u8>,
    second_der: Vec<u8>,
    server_key_der: Vec<u8>,
    good_client: common::Leaf,
}

fn files() -> Files {
    let dir = TempDir::new("load");
    let ca = Ca::new("Main CA");
    let other_ca = Ca::new("Directory CA");
    let server = ca.leaf("sip.example.com", &["sip.example.com", "localhost"], 100);
    let second = ca.leaf("sip.example.com", &["sip.example.com"], 101);
    let good_client = ca.leaf("good", &["good.example.com"], 102);
    dir.write("certs/ca.crt", &ca.pem);
    dir.write("certs/server.crt", &server.cert_pem);
    dir.write("certs/server.key", &server.key_pem);
    dir.write("certs/second.crt", &second.cert_pem);
    dir.write("certs/second.key", &second.key_pem);
    dir.write("certs/enc.key", encrypt_key(&server.key_pem, "pass word"));
    dir.write("certs/ca.crl", ca.crl(&[666]).0);
    dir.write("cadir/other.pem", &other_ca.pem);
    Files {
        server_der: server.der.clone(),
        second_der: second.der.clone(),
        server_key_der: key_der(&server.key_pem),
        dir,
        ca,
        other_ca,
        good_client,
    }
}

const RICH_CFG: &str = r#"
[server:default]
method = TLSv1.2+
certificate = certs/server.crt
private_key = certs/server.key

[server:127.0.0.1:5061]
method = TLSv1.3
verify_client = on
certificate = certs/server.crt
private_key = certs/server.key
certificate2 = certs/second.crt
private_key2 = certs/second.key
ca_list = certs/ca.crt
ca_path = cadir
crl = certs/ca.crl
verify_depth = 4
cipher_list = ECDHE-ECDSA-AES128-GCM-SHA256:TLS_AES_256_GCM_SHA384

[server:any]
server_name = sip.example.com
server_name_mode = 1
certificate = certs/server.crt
private_key = certs/enc.key
private_key_password = "pass word"

[client:default]
ca_list = certs/ca.crt
server_name = localhost

[client:any]
server_name = gw.example.net
server_id = gw1
method = TLSv1.2
verify_certificate = no
"#;

const RICH_TOML: &str = r#"
[[server]]
listen = "default"
method = "TLSv1.2+"
certificate = "certs/server.crt"
private_key = "certs/server.key"

[[server]]
listen = "127.0.0.1:5061"
method = "TLSv1.3"
verify_client = "on"
certificate = "certs/server.crt"
private_key = "certs/server.key"
certificate2 = "certs/second.crt"
private_key2 = "certs/second.key"
ca_list = "certs/ca.crt"
ca_path = "cadir"
crl = "certs/ca.crl"
verify_depth = 4
cipher_list = "ECDHE-ECDSA-AES128-GCM-SHA256:TLS_AES_256_GCM_SHA384"

[[server]]
listen = "any"
server_name = "sip.example.com"
server_name_mode = 1
certificate = "certs/server.crt"
private_key = "certs/enc.key"
private_key_password = "pass word"

[[client]]
remote = "default"
ca_list = "certs/ca.crt"
server_name = "localhost"

[[client]]
remote = "any"
server_name = "gw.example.net"
server_id = "gw1"
method = "TLSv1.2"
verify_certificate = false
"#;

fn load_cfg(f: &Files, text: &str) -> Result<Domains, sipstls_config::ConfigError> {
    KamailioConfig::parse(text, "t.cfg", &ParseOptions::default())?.load(f.dir.path())
}

#[test]
fn toml_and_tls_cfg_give_equal_domains() {
    let f = files();
    let from_cfg = load_cfg(&f, RICH_CFG).unwrap();
    let path = f.dir.write("tls.toml", RICH_TOML);
    let from_toml = KamailioConfig::read_toml(&path, &ParseOptions::default()).unwrap().load(f.dir.path()).unwrap();

    let servers =
        |d: &Domains| d.servers.iter().map(|s| (s.listener, s.sni.clone(), s.config.clone())).collect::<Vec<_>>();
    let clients = |d: &Domains| {
        d.clients.iter().map(|c| (c.selector.clone(), c.server_id.clone(), c.config.clone())).collect::<Vec<_>>()
    };
    assert_eq!(servers(&from_toml), servers(&from_cfg));
    assert_eq!(clients(&from_toml), clients(&from_cfg));
    // Same profiles, lines of each file.
    let lines = |d: &Domains| d.servers.iter().map(|s| s.origin.line).collect::<Vec<_>>();
    assert_eq!(lines(&from_cfg), [2, 7, 20]);
    assert_eq!(lines(&from_toml), [2, 8, 22], "the [[server]] header lines");

    // The equality is about something: every mapped setting is there.
    let d = &from_cfg;
    assert_eq!(d.servers[0].listener, Listener::Any);
    assert_eq!(d.servers[0].sni, None);
    let mtls = &d.servers[1];
    assert_eq!(mtls.listener, Listener::Addr("127.0.0.1:5061".parse().unwrap()));
    let c = &mtls.config;
    assert_eq!((c.min_version, c.max_version), (TLS13, TLS13));
    assert!(c.verify_peer && c.require_peer_certificate, "verify_client = on");
    assert_eq!(c.identities.len(), 2, "certificate2/private_key2");
    assert_eq!(c.identities[0].chain[0].der(), f.server_der.as_slice(), "first pair first");
    assert_eq!(c.identities[1].chain[0].der(), f.second_der.as_slice());
    let anchors: Vec<&[u8]> = c.trust_anchors.iter().map(|a| a.der()).collect();
    assert_eq!(anchors, [f.ca.der.as_slice(), f.other_ca.der.as_slice()], "ca_list, then ca_path");
    assert_eq!(c.crls.len(), 1);
    assert_eq!(c.verify_depth, 4);
    assert_eq!(c.cipher_list_tls12, Some(vec!["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".to_owned()]));
    assert_eq!(c.cipher_suites_tls13, Some(vec!["TLS_AES_256_GCM_SHA384".to_owned()]));
    let sni = &d.servers[2];
    assert_eq!(sni.listener, Listener::Any);
    assert_eq!(sni.sni, Some(SniMatch::DomainAndSubdomains("sip.example.com".into())));
    assert_eq!(sni.config.identities[0].key.der(), f.server_key_der.as_slice(), "decrypted key");
    assert!(!sni.config.verify_peer);

    let client = &d.clients[0];
    assert_eq!(client.selector, ClientSelector::Default);
    assert!(client.config.verify_peer, "clients verify unless told not to");
    assert_eq!(client.config.server_name.as_deref(), Some("localhost"));
    let gw = &d.clients[1];
    assert_eq!(gw.selector, ClientSelector::Name("gw.example.net".into()));
    assert_eq!(gw.server_id.as_deref(), Some("gw1"));
    assert!(!gw.config.verify_peer, "verify_certificate = no");
    assert_eq!((gw.config.min_version, gw.config.max_version), (TLS12, TLS12));
    assert_eq!(gw.config.server_name.as_deref(), Some("gw.example.net"));
}

#[test]
fn rich_config_builds_a_table() {
    let f = files();
    let backend: Arc<dyn Backend> = Arc::new(RustlsBackend::new());

    // The profile on 127.0.0.1:5061 has a CRL and a second identity: the rustls backend
    // enforces CRLs and chooses between identities, so the whole file compiles.
    let domains = load_cfg(&f, RICH_CFG).unwrap();
    assert_eq!(domains.servers[1].config.crls.len(), 1);
    let table = domains.build_table(backend.clone()).unwrap();

    // Servers: the listener's own profile, SNI candidates from [server:any].
    let sel = table.server_for("127.0.0.1:5061".parse().unwrap()).unwrap();
    assert_eq!(sel.initial.config(), &domains.servers[1].config);
    let sni = sel.by_sni.as_ref().expect("[server:any] is an SNI candidate on every listener");
    assert_eq!(sni.select("a.sip.example.com").unwrap().config(), &domains.servers[2].config);
    assert!(sni.select("example.com").is_none());
    assert_eq!(sel.for_sni("example.com").config(), &domains.servers[1].config, "no match: the initial domain");
    let sel = table.server_for("10.0.0.1:5061".parse().unwrap()).unwrap();
    assert_eq!(sel.initial.config(), &domains.servers[0].config);

    // Clients: by id, by name, else the default.
    let by_id = table.client_for(&ClientTarget::default().domain_id("gw1")).unwrap().0;
    assert_eq!(by_id.config(), &domains.clients[1].config);
    let by_name = table.client_for(&ClientTarget::name("GW.example.net")).unwrap().0;
    assert_eq!(by_name.config(), &domains.clients[1].config);
    let other = table.client_for(&ClientTarget::name("other.example.net")).unwrap().0;
    assert_eq!(other.config(), &domains.clients[0].config);

    // The mTLS profile (verify_client = on, TLS 1.3 only) with a real client.
    let client_for = |leaf: &common::Leaf| {
        let mut c = DomainConfig::client(vec![sipstls_core::Certificate::from_der(f.ca.der.clone())]);
        c.identities.push(sipstls_core::Identity::from_pem(leaf.cert_pem.as_bytes(), leaf.key_pem.as_bytes()).unwrap());
        c.server_name = Some("localhost".into());
        backend.client_domain(&c).unwrap()
    };
    let mut server = table.accept("127.0.0.1:5061".parse().unwrap(), None).unwrap();
    let mut client = client_for(&f.good_client).connect(None).unwrap();
    handshake(client.as_mut(), server.as_mut()).expect("a valid client certificate");
    assert_eq!(server.info().unwrap().version, TLS13);
    let mut server = table.accept("127.0.0.1:5061".parse().unwrap(), None).unwrap();
    let mut client = DomainConfig::client(vec![sipstls_core::Certificate::from_der(f.ca.der.clone())]);
    client.server_name = Some("localhost".into());
    let mut client = backend.client_domain(&client).unwrap().connect(None).unwrap();
    let err = handshake(client.as_mut(), server.as_mut()).unwrap_err();
    assert!(
        matches!(err, Error::PeerCertificateRequired) || server.error() == Some(&Error::PeerCertificateRequired),
        "verify_client = on: {err:?} / {:?}",
        server.error()
    );
}

#[test]
fn encrypted_private_keys() {
    let f = files();
    let profile = |key: &str, password: Option<&str>| {
        let pw = password.map(|p| format!("private_key_password = \"{p}\"\n")).unwrap_or_default();
        format!("[server:default]\ncertificate = certs/server.crt\nprivate_key = {key}\n{pw}")
    };
    let d = load_cfg(&f, &profile("certs/enc.key", Some("pass word"))).unwrap();
    assert_eq!(d.servers[0].config.identities[0].key.der(), f.server_key_der.as_slice());

    let err = load_cfg(&f, &profile("certs/enc.key", Some("wrong"))).unwrap_err();
    assert_eq!(err.kind, ErrorKind::WrongPassword);
    assert_eq!((err.line, err.key.as_deref()), (Some(4), Some("private_key_password")));
    assert!(matches!(err.source.as_deref(), Some(Error::InvalidConfig { setting: "private_key_password", .. })));

    let err = load_cfg(&f, &profile("certs/enc.key", None)).unwrap_err();
    assert_eq!((err.kind, err.line, err.key.as_deref()), (ErrorKind::Pem, Some(3), Some("private_key")));
    assert!(err.message.contains("set private_key_password"), "{err}");

    let err = load_cfg(&f, &profile("certs/server.key", Some("pw"))).unwrap_err();
    assert_eq!((err.kind, err.line), (ErrorKind::Inconsistent, Some(4)));

    // Legacy OpenSSL encryption: refused with the conversion command.
    f.dir.write(
        "certs/legacy.key",
        "-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00112233445566778899AABBCCDDEEFF\n\nAAAA\n-----END EC PRIVATE KEY-----\n",
    );
    let err = load_cfg(&f, &profile("certs/legacy.key", None)).unwrap_err();
    assert_eq!((err.kind, err.line), (ErrorKind::Pem, Some(3)));
    assert!(err.message.contains("openssl pkcs8 -topk8"), "{err}");
}

#[test]
fn ca_directory_collects_every_certificate() {
    let f = files();
    let a = Ca::new("A");
    let b = Ca::new("B");
    let c = Ca::new("C");
    f.dir.write("store/1-a.pem", &a.pem);
    f.dir.write("store/2-bundle.crt", format!("{}{}", b.pem, c.pem));
    f.dir.write("store/3-same-as-a.0", &a.pem);
    f.dir.write("store/README", "not a certificate\n");
    f.dir.write("store/sub/d.pem", &Ca::new("D").pem);
    let text = "[client:default]\nca_path = store\n";
    let d = load_cfg(&f, text).unwrap();
    let anchors: Vec<&[u8]> = d.clients[0].config.trust_anchors.iter().map(|t| t.der()).collect();
    assert_eq!(
        anchors,
        [a.der.as_slice(), b.der.as_slice(), c.der.as_slice()],
        "sorted, deduplicated, no subdirectories"
    );

    // Absolute paths are used as they are.
    let abs = format!("[client:default]\nca_path = \"{}\"\n", f.dir.path().join("store").display());
    assert_eq!(
        KamailioConfig::parse(&abs, "t.cfg", &ParseOptions::default()).unwrap().load("/nonexistent").unwrap(),
        d
    );

    f.dir.write("empty/README", "nothing here\n");
    let err = load_cfg(&f, "[client:default]\nca_path = empty\n").unwrap_err();
    assert_eq!((err.kind, err.line, err.key.as_deref()), (ErrorKind::Pem, Some(2), Some("ca_path")));
    let err = load_cfg(&f, "[client:default]\n\nca_path = missing\n").unwrap_err();
    assert_eq!((err.kind, err.line), (ErrorKind::Io, Some(3)));
    f.dir.write("broken/x.pem", "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n");
    let err = load_cfg(&f, "[client:default]\nca_path = broken\n").unwrap_err();
    assert_eq!((err.kind, err.line), (ErrorKind::Pem, Some(2)));
}

#[test]
fn crl_files_in_pem_and_der() {
    let f = files();
    let (pem, der) = f.ca.crl(&[666, 667]);
    f.dir.write("crl/list.pem", &pem);
    f.dir.write("crl/list.der", &der);
    f.dir.write("crl/not-a-crl.pem", &f.ca.pem);
    f.dir.write("crl/garbage.der", [0x30, 0x03, 0x02, 0x01]);
    let text = |crl: &str| format!("[client:default]\nca_list = certs/ca.crt\ncrl = {crl}\n");
    for name in ["crl/list.pem", "crl/list.der"] {
        let d = load_cfg(&f, &text(name)).unwrap();
        assert_eq!(d.clients[0].config.crls.len(), 1, "{name}");
        assert_eq!(d.clients[0].config.crls[0].der(), der.as_slice(), "{name}");
    }
    let err = load_cfg(&f, &text("crl/not-a-crl.pem")).unwrap_err();
    assert_eq!((err.kind, err.line, err.key.as_deref()), (ErrorKind::Pem, Some(3), Some("crl")));
    let err = load_cfg(&f, &text("crl/garbage.der")).unwrap_err();
    assert_eq!((err.kind, err.line, err.key.as_deref()), (ErrorKind::Invalid, Some(3), Some("crl")));
    // A CRL without verification would check nothing.
    let err = load_cfg(&f, "[client:default]\nverify_certificate = no\ncrl = crl/list.pem\n").unwrap_err();
    assert_eq!((err.kind, err.line), (ErrorKind::Invalid, Some(3)));
}

#[test]
fn methods_map_to_version_ranges() {
    let f = files();
    let allow = ParseOptions::default().with_deprecated_methods(true);
    for (method, range, deprecated) in [
        ("TLSv1.2", (TLS12, TLS12), false),
        ("TLSv1.2+", (TLS12, TLS13), false),
        ("TLSv1.3", (TLS13, TLS13), false),
        ("TLSv1.3+", (TLS13, TLS13), false),
        ("SSLv23", (TLS12, TLS13), false),
        ("TLSv1", (TLS12, TLS12), true),
        ("TLSv1.0", (TLS12, TLS12), true),
        ("TLSv1.1", (TLS12, TLS12), true),
        ("TLSv1+", (TLS12, TLS13), true),
        ("TLSv1.1+", (TLS12, TLS13), true),
        ("SSLv3", (TLS12, TLS12), true),
        ("SSLv2", (TLS12, TLS12), true),
    ] {
        let text = format!("[client:default]\nverify_certificate = no\nmethod = {method}\n");
        let strict = KamailioConfig::parse(&text, "t.cfg", &ParseOptions::default());
        assert_eq!(strict.is_err(), deprecated, "{method}");
        if let Err(e) = strict {
            assert_eq!((e.kind, e.line), (ErrorKind::DeprecatedMethod, Some(3)));
        }
        let d = KamailioConfig::parse(&text, "t.cfg", &allow).unwrap().load(f.dir.path()).unwrap();
        let c = &d.clients[0].config;
        assert_eq!((c.min_version, c.max_version), range, "{method}");
    }
    // No method: sipstls's defaults.
    let d = load_cfg(&f, "[client:default]\nverify_certificate = no\n").unwrap();
    assert_eq!((d.clients[0].config.min_version, d.clients[0].config.max_version), (TLS12, TLS13));
}

#[test]
fn verification_mapping() {
    let f = files();
    let server = |extra: &str| {
        let d = load_cfg(&f, &format!("[server:default]\ncertificate = certs/server.crt\nprivate_key = certs/server.key\nca_list = certs/ca.crt\n{extra}")).unwrap();
        let c = &d.servers[0].config;
        (c.verify_peer, c.require_peer_certificate)
    };
    assert_eq!(server(""), (false, false));
    assert_eq!(server("verify_client = off\n"), (false, false));
    assert_eq!(server("verify_client = optional\n"), (true, false));
    assert_eq!(server("verify_client = on\n"), (true, true));
    assert_eq!(server("verify_certificate = yes\n"), (true, false));
    assert_eq!(server("require_certificate = yes\n"), (true, true), "OpenSSL's FAIL_IF_NO_PEER_CERT verifies");
    assert_eq!(server("verify_certificate = yes\nrequire_certificate = yes\nverify_client = on\n"), (true, true));

    let client = |extra: &str| {
        let d = load_cfg(&f, &format!("[client:default]\nca_list = certs/ca.crt\n{extra}")).unwrap();
        let c = &d.clients[0].config;
        (c.verify_peer, c.require_peer_certificate, c.name_verification)
    };
    let rfc = sipstls_core::NameVerification::Rfc5922;
    assert_eq!(client(""), (true, false, rfc), "sipstls verifies by default (Kamailio does not)");
    assert_eq!(client("verify_certificate = no\n"), (false, false, rfc));
    assert_eq!(client("verify_certificate = no\nrequire_certificate = yes\n"), (true, false, rfc));

    // A verifying client without any CA could never connect: refused, with a hint.
    let err = load_cfg(&f, "\n[client:default]\nverify_certificate = yes\n").unwrap_err();
    assert_eq!((err.kind, err.line), (ErrorKind::Invalid, Some(2)));
    assert!(err.message.contains("set ca_list or ca_path"), "{err}");
    // A server asking for client certificates without a CA, likewise.
    let err = load_cfg(
        &f,
        "[server:default]\ncertificate = certs/server.crt\nprivate_key = certs/server.key\nverify_client = optional\n",
    )
    .unwrap_err();
    assert_eq!((err.kind, err.line), (ErrorKind::Invalid, Some(1)));
}

#[test]
fn load_errors_name_the_file_and_line() {
    let f = files();
    f.dir.write("certs/garbage.crt", "not PEM at all\n");
    f.dir.write("certs/key-as-cert.crt", std::fs::read(f.dir.path().join("certs/server.key")).unwrap());
    let cases = [
        (
            "[server:default]\ncertificate = certs/missing.crt\nprivate_key = certs/server.key\n",
            ErrorKind::Io,
            2,
            "certificate",
        ),
        (
            "[server:default]\ncertificate = certs/server.crt\n\nprivate_key = certs/missing.key\n",
            ErrorKind::Io,
            4,
            "private_key",
        ),
        (
            "[server:default]\ncertificate = certs/garbage.crt\nprivate_key = certs/server.key\n",
            ErrorKind::Pem,
            2,
            "certificate",
        ),
        (
            "[server:default]\ncertificate = certs/key-as-cert.crt\nprivate_key = certs/server.key\n",
            ErrorKind::Pem,
            2,
            "certificate",
        ),
        (
            "[server:default]\ncertificate = certs/server.crt\nprivate_key = certs/server.crt\n",
            ErrorKind::Pem,
            3,
            "private_key",
        ),
        ("[client:default]\nca_list = certs/server.key\n", ErrorKind::Pem, 2, "ca_list"),
        ("[client:default]\ncalist_file = certs/nothing.pem\n", ErrorKind::Io, 2, "calist_file"),
    ];
    for (text, kind, line, key) in cases {
        let err = load_cfg(&f, text).unwrap_err();
        assert_eq!((err.kind, err.line, err.key.as_deref()), (kind, Some(line), Some(key)), "{text}: {err}");
        assert!(err.to_string().starts_with(&format!("t.cfg:{line}: key \"{key}\": ")), "{err}");
    }

    // A backend that cannot honour a domain is named with the profile.
    let d =
        load_cfg(&f, "[client:default]\nverify_certificate = no\ncipher_list = DHE-RSA-AES128-GCM-SHA256\n").unwrap();
    let err = d.build_table(Arc::new(RustlsBackend::new())).unwrap_err();
    assert_eq!((err.kind, err.line), (ErrorKind::Backend, Some(1)), "{err}");
    assert!(err.source.is_some());
}

/// Runs the `openssl` command-line tool (installed on the project's machines); a missing
/// tool fails the test rather than skipping it.
fn openssl(args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the openssl command-line tool is needed to encrypt keys as Kamailio users do");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn keys_encrypted_by_the_openssl_tool() {
    let f = files();
    let key_pem = std::fs::read(f.dir.path().join("certs/server.key")).unwrap();
    let pbkdf2 = openssl(&["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-passout", "pass:kama ilio"], &key_pem);
    let scrypt = openssl(&["pkcs8", "-topk8", "-scrypt", "-passout", "pass:kama ilio"], &key_pem);
    let legacy = openssl(&["ec", "-aes256", "-passout", "pass:kama ilio"], &key_pem);
    assert!(String::from_utf8_lossy(&legacy).contains("Proc-Type: 4,ENCRYPTED"));
    f.dir.write("certs/pbkdf2.key", &pbkdf2);
    f.dir.write("certs/scrypt.key", &scrypt);
    f.dir.write("certs/legacy.key", &legacy);
    let profile = |key: &str, password: &str| {
        format!(
            "[server:default]\ncertificate = certs/server.crt\nprivate_key = {key}\nprivate_key_password = \"{password}\"\n"
        )
    };
    for key in ["certs/pbkdf2.key", "certs/scrypt.key"] {
        let d = load_cfg(&f, &profile(key, "kama ilio")).unwrap();
        assert_eq!(d.servers[0].config.identities[0].key.der(), f.server_key_der.as_slice(), "{key}");
        let err = load_cfg(&f, &profile(key, "kamailio")).unwrap_err();
        assert_eq!((err.kind, err.line), (ErrorKind::WrongPassword, Some(4)), "{key}: {err}");
    }
    let err = load_cfg(&f, &profile("certs/legacy.key", "kama ilio")).unwrap_err();
    assert_eq!((err.kind, err.line, err.key.as_deref()), (ErrorKind::Pem, Some(3), Some("private_key")));
    assert!(err.message.contains("openssl pkcs8 -topk8"), "{err}");
}

#[test]
fn named_server_profiles_of_an_address() {
    let f = files();
    let text = "\
[server:default]
certificate = certs/server.crt
private_key = certs/server.key

[server:127.0.0.1:5061]
server_name = a.example
verify_depth = 1
certificate = certs/server.crt
private_key = certs/server.key

[server:127.0.0.1:5061]
server_name = b.example
verify_depth = 2
certificate = certs/second.crt
private_key = certs/second.key

[server:127.0.0.2:5061]
verify_depth = 3
certificate = certs/server.crt
private_key = certs/server.key

[server:127.0.0.2:5061]
server_name = c.example
verify_depth = 4
certificate = certs/server.crt
private_key = certs/server.key
";
    let d = load_cfg(&f, text).unwrap();
    let flags: Vec<_> =
        d.servers.iter().map(|s| (s.config.verify_depth, s.sni.is_some(), s.listener_default)).collect();
    assert_eq!(
        flags,
        [(9, false, false), (1, true, false), (2, true, true), (3, false, false), (4, true, false)],
        "only the last named profile of an address without a plain one starts its connections"
    );

    let table = d.build_table(Arc::new(RustlsBackend::new())).unwrap();
    let depth = |local: &str| table.server_for(local.parse().unwrap()).unwrap().initial.config().verify_depth;
    assert_eq!(depth("127.0.0.1:5061"), 2, "before SNI: the last named profile, as Kamailio");
    assert_eq!(depth("127.0.0.2:5061"), 3, "the plain profile of the address");
    assert_eq!(depth("127.0.0.3:5061"), 9, "the default profile");
    let sni = table.server_for("127.0.0.1:5061".parse().unwrap()).unwrap().by_sni.unwrap();
    assert_eq!(sni.select("a.example").unwrap().config().verify_depth, 1);
    assert_eq!(sni.select("B.EXAMPLE").unwrap().config().verify_depth, 2);
    assert!(sni.select("c.example").is_none(), "c.example belongs to another address");
}

#[test]
fn paths_starting_with_a_dot_are_relative_to_the_working_directory() {
    let f = files();
    // As Kamailio: "certs/ca.crt" is relative to the base directory, "./..." to the
    // working directory (cargo runs tests in the crate directory).
    let cwd = std::env::current_dir().unwrap();
    let up = "../".repeat(cwd.components().count() - 1);
    let abs_ca = f.dir.path().join("certs/ca.crt");
    let dotted = format!("./{up}{}", abs_ca.strip_prefix("/").unwrap().display());
    assert!(std::path::Path::new(&dotted).is_file(), "{dotted}");

    let d = load_cfg(&f, &format!("[client:default]\nca_list = \"{dotted}\"\n")).unwrap();
    assert_eq!(d.clients[0].config.trust_anchors[0].der(), f.ca.der.as_slice());
    // The same "./" path is not looked up under the base directory.
    let err = load_cfg(&f, "[client:default]\nca_list = ./certs/ca.crt\n").unwrap_err();
    assert_eq!((err.kind, err.line), (ErrorKind::Io, Some(2)), "{err}");
    // Nor is a plain relative path looked up in the working directory.
    let other_base = TempDir::new("empty-base");
    let err = KamailioConfig::parse("[client:default]\nca_list = certs/ca.crt\n", "t.cfg", &ParseOptions::default())
        .unwrap()
        .load(other_base.path())
        .unwrap_err();
    assert!(err.message.contains(&other_base.path().join("certs/ca.crt").display().to_string()), "{err}");
}

/// A `crl` in tls.cfg is enforced end to end: with `verify_client = on` and a CRL revoking
/// one client certificate, that client is refused (`Revoked`) and another is served.
#[test]
fn crl_from_tls_cfg_refuses_a_revoked_client() {
    let dir = TempDir::new("crl-e2e");
    let ca = Ca::new("CRL Test CA");
    let server = ca.leaf("sip.example.test", &["sip.example.test"], 10);
    let good = ca.leaf("good client", &[], 11);
    let revoked = ca.leaf("revoked client", &[], 12);
    dir.write("ca.crt", &ca.pem);
    dir.write("server.crt", &server.cert_pem);
    dir.write("server.key", &server.key_pem);
    dir.write("ca.crl", ca.crl(&[revoked.serial.expect("an explicit serial")]).0);
    let cfg = "[server:default]\nverify_client = on\ncertificate = server.crt\nprivate_key = server.key\n\
               ca_list = ca.crt\ncrl = ca.crl\n";
    let domains = KamailioConfig::parse(cfg, "tls.cfg", &ParseOptions::default()).unwrap().load(dir.path()).unwrap();
    let backend: Arc<dyn Backend> = Arc::new(RustlsBackend::new());
    let table = domains.build_table(backend.clone()).unwrap();

    let run = |leaf: &common::Leaf| {
        let id = sipstls_core::Identity::from_pem(leaf.cert_pem.as_bytes(), leaf.key_pem.as_bytes()).unwrap();
        let roots = sipstls_core::Certificate::all_from_pem(ca.pem.as_bytes()).unwrap();
        let cd = backend.client_domain(&DomainConfig::client(roots).with_identity(id)).unwrap();
        let mut c = cd.connect(Some(&sipstls_core::ServerName::parse("sip.example.test").unwrap())).unwrap();
        let mut s = table.accept("127.0.0.1:5061".parse().unwrap(), None).unwrap();
        let r = handshake(&mut *c, &mut *s);
        (r, s.error().cloned())
    };
    let (ok, _) = run(&good);
    ok.expect("a client whose certificate is not revoked");
    let (failed, server_error) = run(&revoked);
    assert!(failed.is_err(), "the revoked client was served");
    assert_eq!(server_error, Some(Error::Certificate(sipstls_core::CertificateError::Revoked)));
}
