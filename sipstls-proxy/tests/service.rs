//! `sipstls-proxy` as an operator runs it: `--check-config` and its line-numbered errors,
//! TLS to a PROXY v2 upstream with failover and refusal, metrics, handshake-failure logs,
//! SIGHUP reload under load, SIGTERM drain, and the switch to an unprivileged user.

mod support;

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipstls_conformance::pki::{pki, SERVER_NAME};
use support::*;

fn one_listener(upstreams: &str, extra: &str) -> String {
    format!(
        "tls = \"tls.cfg\"\n\n[[listen]]\nname = \"sips\"\naddress = \"127.0.0.1:0\"\nupstreams = [{upstreams}]\n{extra}\n\
         [service]\nmetrics = \"127.0.0.1:0\"\ndrain_timeout = 1\n"
    )
}

#[test]
fn check_config_prints_what_would_run() {
    let dir = files("check-ok");
    let config = "tls = \"tls.cfg\"\n[[listen]]\naddress = \"127.0.0.1:5061\"\nupstreams = [\"127.0.0.1:5060\"]\n\
                  [[outbound]]\nname = \"carrier\"\naddress = \"127.0.0.1:5070\"\ndestination = \"127.0.0.1:5999\"\n\
                  server_name = \"sip.example.test\"\n";
    let (ok, out, err) = check_config(&dir, config);
    assert!(ok, "{out}\n{err}");
    assert!(out.starts_with("configuration ok: "), "{out}");
    assert!(out.contains("listen   127.0.0.1:5061 tls://127.0.0.1:5061 -> tcp://127.0.0.1:5060 (PROXY v2"), "{out}");
    assert!(out.contains("outbound carrier tcp://127.0.0.1:5070 -> tls://127.0.0.1:5999 (server name sip.example.test"));
    assert!(out.contains("tls.cfg:2: listener Any, SNI any"), "{out}");
    assert!(out.contains("tls.cfg:7: default"), "{out}");
}

#[test]
fn check_config_names_file_and_line_of_each_error() {
    let dir = files("check-bad");
    let cases: &[(&str, &str)] = &[
        // (configuration, expected error)
        ("tls = \"tls.cfg\"\n[[listen]]\naddress = \"127.0.0.1:5061\"\nupstream = [\"127.0.0.1:5060\"]\n", "proxy.toml:4: unknown field `upstream`"),
        ("tls = \"tls.cfg\"\n[[listen]]\naddress = \"127.0.0.1:99999\"\nupstreams = [\"127.0.0.1:5060\"]\n", "proxy.toml:3: invalid socket address"),
        ("tls = \"tls.cfg\"\nbackend = \"gnutls\"\n[[listen]]\naddress = \"127.0.0.1:5061\"\nupstreams = [\"127.0.0.1:5060\"]\n", "proxy.toml:2: backend \"gnutls\" is not compiled in"),
        ("tls = \"tls.cfg\"\n[[listen]]\naddress = \"127.0.0.1:5061\"\nupstreams = []\n", "proxy.toml:4: upstreams: at least one address"),
        ("tls = \"tls.cfg\"\n[[listen]]\naddress = \"127.0.0.1:5061\"\nupstreams = [\"127.0.0.1:5060\"]\n[[listen]]\naddress = \"127.0.0.1:5061\"\nupstreams = [\"127.0.0.1:5060\"]\n", "proxy.toml:6: address 127.0.0.1:5061 is already used on line 3"),
        ("tls = \"tls.cfg\"\n[[listen]]\naddress = \"127.0.0.1:5061\"\nupstreams = [\"127.0.0.1:5060\"]\n[limits]\nhandshake_timeout = -1\n", "proxy.toml:6: handshake_timeout: -1 is not a number of seconds"),
        ("tls = \"tls.cfg\"\n", "nothing to do"),
        ("tls = \"missing.cfg\"\n[[listen]]\naddress = \"127.0.0.1:5061\"\nupstreams = [\"127.0.0.1:5060\"]\n", "missing.cfg"),
    ];
    for (config, want) in cases {
        let (ok, out, err) = check_config(&dir, config);
        assert!(!ok, "accepted:\n{config}\n{out}");
        assert!(err.starts_with("error: ") && err.contains(want), "for\n{config}\nwant {want:?}, got {err:?}");
        let path = dir.path().join("proxy.toml");
        if want.starts_with("proxy.toml:") {
            assert!(err.contains(&format!("{}:", path.display())), "the file is named: {err}");
        }
    }
    // An error inside the included tls.cfg: its own file and line.
    std::fs::write(dir.path().join("bad-tls.cfg"), "[server:default]\nmethod = TLSv1.2+\ncertificat = x.pem\n")
        .unwrap();
    let (ok, _, err) = check_config(
        &dir,
        "tls = \"bad-tls.cfg\"\n[[listen]]\naddress = \"127.0.0.1:5061\"\nupstreams = [\"127.0.0.1:5060\"]\n",
    );
    assert!(!ok);
    assert!(err.contains("bad-tls.cfg:3:"), "{err}");
    // A certificate that does not exist: refused by the check, not at the first connection.
    std::fs::write(
        dir.path().join("nocert.cfg"),
        "[server:default]\ncertificate = certs/none.pem\nprivate_key = certs/server.key\n",
    )
    .unwrap();
    let (ok, _, err) = check_config(
        &dir,
        "tls = \"nocert.cfg\"\n[[listen]]\naddress = \"127.0.0.1:5061\"\nupstreams = [\"127.0.0.1:5060\"]\n",
    );
    assert!(!ok && err.contains("none.pem"), "{err}");
}

#[test]
fn terminates_tls_to_the_upstream_with_proxy_v2_and_counts_it() {
    let (up, seen) = upstream(16);
    let p = Proxy::start(files("basic"), &one_listener(&format!("\"{up}\""), ""));
    let mut tls = client(p.addr("sips")).expect("TLS through the proxy");
    assert_eq!(round_trip(&mut tls, b"OPTIONS", 10).unwrap(), b"UP:OPTIONS");
    let s = seen.recv_timeout(WAIT).unwrap();
    assert_eq!(s.source, Some(tls.get_ref().local_addr().unwrap()), "the client's address in the header");
    assert_eq!(s.authority.as_deref(), Some(SERVER_NAME), "SNI as AUTHORITY");
    assert_eq!(p.metric("sipstls_handshakes_total{listener=\"sips\"}"), Some(1));
    assert_eq!(p.metric("sipstls_connections_active{listener=\"sips\"}"), Some(1));
    assert_eq!(p.metric(&format!("sipstls_upstream_up{{listener=\"sips\",upstream=\"{up}\"}}")), Some(1));
    assert!(p.metric("sipstls_tls_bytes_received_total{listener=\"sips\"}").unwrap() > 0);
    assert_eq!(p.metric("sipstls_domain_sessions_active{domain=\"server any\"}"), Some(1), "{}", p.metrics());
    drop(tls);
    // Anything but GET /metrics: 404.
    let mut s = std::net::TcpStream::connect(p.addr("metrics")).unwrap();
    std::io::Write::write_all(&mut s, b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
}

#[test]
fn failed_handshakes_are_logged_with_peer_listener_sni_and_reason() {
    let (up, _seen) = upstream(4);
    let p = Proxy::start(files("fail-log"), &one_listener(&format!("\"{up}\""), ""));
    let other = vec![sipstls::Certificate::from_der(pki().other_root_der.clone())];
    let refused = client_with(other, p.addr("sips"), "sip.example.test");
    assert!(refused.is_err());
    let e = p.wait_event("handshake failure", |e| e["message"] == "TLS handshake failed");
    assert_eq!(e["listener"], "sips", "{e}");
    assert_eq!(e["sni"], "sip.example.test", "{e}");
    assert_eq!(e["reason"], "alert_received", "{e}");
    assert!(e["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{e}");
    assert!(e["error"].as_str().unwrap().contains("alert"), "{e}");
    assert_eq!(p.metric("sipstls_handshake_failures_total{listener=\"sips\",reason=\"alert_received\"}"), Some(1));
}

#[test]
fn every_upstream_down_refuses_at_once_with_a_logged_reason() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let p = Proxy::start(files("down"), &one_listener(&format!("\"{dead}\""), "health_check = 0.1\n"));
    p.wait_event("upstream down", |e| e["message"] == "upstream is down");
    let started = Instant::now();
    assert!(client(p.addr("sips")).is_err(), "a connection with no upstream must fail");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    p.wait_event("refusal", |e| e["message"] == "connection refused: no upstream is up");
    assert_eq!(p.metric(&format!("sipstls_upstream_up{{listener=\"sips\",upstream=\"{dead}\"}}")), Some(0));
    assert!(p.metric("sipstls_connections_refused_total{listener=\"sips\"}").unwrap() >= 1);
}

#[test]
fn fails_over_to_a_standby_upstream() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (up, _seen) = upstream(8);
    let p = Proxy::start(files("failover"), &one_listener(&format!("\"{dead}\", \"{up}\""), ""));
    for _ in 0..4 {
        let mut tls = client(p.addr("sips")).unwrap();
        assert_eq!(round_trip(&mut tls, b"x", 4).unwrap(), b"UP:x");
    }
}

/// SIGHUP swaps the certificate while clients keep connecting: no connection fails, the
/// open one keeps working, new ones get the new certificate; a broken file is refused and
/// the service goes on with the old one.
#[test]
fn sighup_reloads_certificates_under_load_without_dropping_connections() {
    let (up, _seen) = upstream(10_000);
    let p = Proxy::start(files("reload"), &one_listener(&format!("\"{up}\""), ""));
    let addr = p.addr("sips");
    let mut long_lived = client(addr).unwrap();
    assert_eq!(round_trip(&mut long_lived, b"a", 4).unwrap(), b"UP:a");
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match client(addr).and_then(|mut t| round_trip(&mut t, b"hi", 5)) {
                        Ok(b) if b == b"UP:hi" => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    let tls_cfg = p.dir.path().join("tls.cfg");
    for round in 0..6 {
        let before = ok.load(Ordering::Relaxed);
        let deadline = Instant::now() + WAIT;
        while ok.load(Ordering::Relaxed) < before + 5 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let cert = if round % 2 == 0 { "server-rsa" } else { "server" };
        std::fs::write(&tls_cfg, TLS_CFG.replace("certs/server.", &format!("certs/{cert}."))).unwrap();
        p.signal(libc::SIGHUP);
        let n = round + 1;
        p.wait_event("reload", |e| e["message"] == "reloaded the TLS domains" && count_reloads(&p) >= n);
    }
    // The last reload installed the ECDSA certificate again; one more to RSA, checked below.
    std::fs::write(&tls_cfg, TLS_CFG.replace("certs/server.", "certs/server-rsa.")).unwrap();
    p.signal(libc::SIGHUP);
    p.wait_event("the 7th reload", |_| count_reloads(&p) >= 7);
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "connections failed during reloads ({} ok)",
        ok.load(Ordering::Relaxed)
    );
    assert!(ok.load(Ordering::Relaxed) >= 30);
    assert_eq!(round_trip(&mut long_lived, b"b", 4).unwrap(), b"UP:b", "the open connection survived 7 reloads");
    let fresh = client(addr).unwrap();
    let leaf = fresh.info().unwrap().peer_chain[0].der().to_vec();
    assert_eq!(leaf, pki().server_rsa.der, "new connections use the reloaded certificate");
    // A broken file: refused, logged, counted; the service keeps serving.
    std::fs::write(&tls_cfg, "[server:default]\ncertificate = certs/missing.pem\n").unwrap();
    p.signal(libc::SIGHUP);
    p.wait_event("a refused reload", |e| e["message"] == "reload refused; the running configuration stays");
    assert_eq!(p.metric("sipstls_reloads_total{result=\"failed\"}"), Some(1));
    let mut after = client(addr).expect("still serving after a refused reload");
    assert_eq!(round_trip(&mut after, b"c", 4).unwrap(), b"UP:c");
}

fn count_reloads(p: &Proxy) -> usize {
    p.events().iter().filter(|e| e["message"] == "reloaded the TLS domains").count()
}

/// SIGTERM: the listener closes at once, open connections go on until the drain timeout,
/// then get close_notify; the process exits 0.
#[test]
fn sigterm_drains_then_closes_with_close_notify() {
    let (up, _seen) = upstream(8);
    let mut p = Proxy::start(files("drain"), &one_listener(&format!("\"{up}\""), ""));
    let addr = p.addr("sips");
    let mut open = client(addr).unwrap();
    assert_eq!(round_trip(&mut open, b"1", 4).unwrap(), b"UP:1");
    p.signal(libc::SIGTERM);
    p.wait_event("draining", |e| e["message"] == "draining: no new connections");
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(round_trip(&mut open, b"2", 4).unwrap(), b"UP:2", "open connections go on while draining");
    let mut rest = Vec::new();
    assert_eq!(open.read_to_end(&mut rest).expect("close_notify at the drain timeout"), 0);
    let status = p.wait_exit(WAIT).expect("exited after the drain");
    assert!(status.success(), "{status}\n{}", p.log());
}

/// `[service] user`: after binding, the process runs as that user (all four ids), and still
/// serves. Not root: the documented refusal.
#[test]
fn switches_to_the_configured_user_after_binding() {
    let (up, _seen) = upstream(4);
    let config = one_listener(&format!("\"{up}\""), "").replace("[service]", "[service]\nuser = \"nobody\"");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        let dir = files("user");
        std::fs::write(dir.path().join("proxy.toml"), &config).unwrap();
        let out =
            std::process::Command::new(bin()).arg("--config").arg(dir.path().join("proxy.toml")).output().unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("not running as root"));
        return;
    }
    let p = Proxy::start(files("user"), &config);
    let status = std::fs::read_to_string(format!("/proc/{}/status", p.pid())).unwrap();
    let ids = |key: &str| -> Vec<String> {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace().skip(1).map(str::to_string).collect()
    };
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    assert_eq!(ids("Uid:"), vec![nobody.uid.to_string(); 4], "{status}");
    assert_eq!(ids("Gid:"), vec![nobody.gid.to_string(); 4], "{status}");
    assert_eq!(ids("Groups:"), Vec::<String>::new(), "no supplementary groups");
    let mut tls = client(p.addr("sips")).unwrap();
    assert_eq!(round_trip(&mut tls, b"u", 4).unwrap(), b"UP:u");
}

#[test]
fn version_lists_the_backends_compiled_in() {
    let out = std::process::Command::new(bin()).arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.starts_with("sipstls-proxy 0.1.0 (backends: rustls (rustls 0."), "{text}");
    assert!(text.contains("openssl (OpenSSL 3."), "{text}");
}

/// The README's configuration for the Kamailio case checks as it is written there (at
/// most 10 lines), with only the tls.cfg path and the user pointed at this machine's.
#[test]
fn the_readme_configuration_checks() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = &readme[readme.find("## sipstls-proxy").expect("the README's sipstls-proxy section")..];
    let block = section.split("```toml\n").nth(1).and_then(|b| b.split("```").next()).expect("a toml block");
    assert!(block.lines().count() <= 10, "{} lines:\n{block}", block.lines().count());
    let dir = files("readme");
    let config = block.replace("/etc/kamailio/tls.cfg", "tls.cfg").replace("\"sipstls-proxy\"", "\"nobody\"");
    let (ok, out, err) = check_config(&dir, &config);
    assert!(ok, "{config}\n{out}\n{err}");
    assert!(out.contains("listen   0.0.0.0:5061 tls://0.0.0.0:5061 -> tcp://127.0.0.1:5060 (PROXY v2"), "{out}");
    assert!(out.contains("user     nobody"), "{out}");
}

/// A dynamic outbound route: the SIP server's connection starts with a PROXY v2 header
/// naming the TLS destination (here the proxy's own TLS listener, in front of the echo
/// upstream) and the server name; bytes go out over TLS and the answer comes back.
#[test]
fn dynamic_outbound_route_takes_the_destination_from_the_proxy_header() {
    let (up, seen) = upstream(8);
    let config = format!(
        "tls = \"tls.cfg\"\n[[listen]]\nname = \"sips\"\naddress = \"127.0.0.1:0\"\nupstreams = [\"{up}\"]\n\
         [[outbound]]\nname = \"dynamic\"\naddress = \"127.0.0.1:0\"\n[service]\nmetrics = \"127.0.0.1:0\"\n"
    );
    let p = Proxy::start(files("dynamic"), &config);
    let mut plain = std::net::TcpStream::connect(p.addr("dynamic")).unwrap();
    plain.set_read_timeout(Some(WAIT)).unwrap();
    let mut header = sipstls::proxy::ProxyHeader::proxy(plain.local_addr().unwrap(), p.addr("sips"));
    header.authority = Some(SERVER_NAME.into());
    let mut first = header.encode().unwrap();
    first.extend_from_slice(b"MESSAGE");
    assert_eq!(round_trip(&mut plain, &first, 10).unwrap(), b"UP:MESSAGE");
    assert_eq!(seen.recv_timeout(WAIT).unwrap().authority.as_deref(), Some(SERVER_NAME), "the header's name as SNI");
    assert_eq!(p.metric("sipstls_handshakes_total{listener=\"dynamic\"}"), Some(1));
    assert_eq!(p.metric("sipstls_handshakes_total{listener=\"sips\"}"), Some(1));
    // A connection without a PROXY header is closed and logged, never left hanging.
    let mut bare = std::net::TcpStream::connect(p.addr("dynamic")).unwrap();
    bare.set_read_timeout(Some(WAIT)).unwrap();
    std::io::Write::write_all(&mut bare, b"OPTIONS sip:x SIP/2.0\r\n\r\n").unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    assert_eq!(bare.read_to_end(&mut rest).unwrap_or(0), 0);
    assert!(started.elapsed() < Duration::from_secs(3), "refused at once, not at a timeout: {:?}", started.elapsed());
    p.wait_event("the refusal", |e| e["message"] == "outbound connection refused");
}
