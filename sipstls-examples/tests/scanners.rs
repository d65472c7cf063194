//! Configuration scanners against our `sip-responder`, for every backend of the build, each
//! with its default configuration (no version or cipher options): testssl.sh (Debian's
//! `testssl.sh` package, command `testssl`; `scripts/test.sh` installs it) inside a network
//! namespace of its own (`unshare -n`, loopback only: testssl probes a lot), with
//! `--nodns none -p -s -S -U` (protocols, cipher categories, server defaults and
//! preferences, vulnerabilities; about a minute per backend here). Asserted on its JSON,
//! not its exit code:
//! - no finding of severity HIGH or CRITICAL (except three about the test certificate's
//!   30-day validity and missing revocation URIs: `TEST_PKI_FINDINGS`);
//! - the certificate chain verifies against the test root (`--add-ca`);
//! - SSLv2, SSLv3, TLS 1.0 and TLS 1.1 not offered; TLS 1.2 offered, TLS 1.3 offered when
//!   the backend claims it;
//! - no weak cipher category offered (NULL, anonymous, export, LOW, 3DES/IDEA, and the
//!   "obsoleted"/average CBC category).
//!
//! And sslyze (pip; `scripts/test.sh` installs it in a virtual environment and names the
//! command in `SIPSTLS_SSLYZE`) against the same server in the same kind of namespace,
//! asserted on its JSON: see `sslyze_default_configuration_every_backend`.

use std::path::Path;
use std::process::{Command, Stdio};

use sipstls::Capabilities;
use sipstls_conformance::peers::ScratchDir;
use sipstls_conformance::pki::pki;

/// Runs testssl against the responder with `backend` inside a namespace; returns the JSON
/// findings.
fn scan(backend: &str, dir: &Path) -> Vec<serde_json::Value> {
    let responder = env!("CARGO_BIN_EXE_sip-responder");
    let json = dir.join(format!("testssl-{backend}.json"));
    let log = dir.join(format!("testssl-{backend}.log"));
    let script = format!(
        "ip link set lo up || exit 90\n\
         {responder} --backend {backend} --listen 127.0.0.1:5061 --max-seconds 600 \
         --cert {d}/server.pem --key {d}/server.key > {d}/responder-{backend}.log 2>&1 &\n\
         S=$!\n\
         for i in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/5061) 2>/dev/null && break; sleep 0.05; done\n\
         timeout 400 testssl --quiet --color 0 --warnings off --nodns none --add-ca {d}/ca.pem -p -s -S -U \
         --jsonfile {json} 127.0.0.1:5061 > {log} 2>&1\n\
         rc=$?\n\
         kill $S; wait $S 2>/dev/null\n\
         exit $rc\n",
        d = dir.display(),
        json = json.display(),
        log = log.display(),
    );
    let out = Command::new("timeout")
        .args(["450", "unshare", "-n", "bash", "-c", &script])
        .stdin(Stdio::null())
        .output()
        .expect("unshare");
    // testssl's exit code counts findings; only a timeout (124) or a failed set-up is fatal.
    let code = out.status.code();
    assert!(
        !matches!(code, Some(90) | Some(124) | None),
        "{backend}: the scan did not run ({:?}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!("{backend}: no JSON from testssl ({e}): {}", std::fs::read_to_string(&log).unwrap_or_default())
    });
    let v: serde_json::Value = serde_json::from_str(&text).expect("testssl JSON");
    v.as_array().expect("a JSON array of findings").clone()
}

/// Findings about the test certificate, not the TLS configuration: the run-time test PKI
/// issues 30-day leaves without CRL or OCSP URIs, which testssl rates HIGH. Its root is
/// given with `--add-ca`, so the chain of trust is checked (and must pass).
const TEST_PKI_FINDINGS: &[&str] = &["cert_expirationStatus", "cert_notAfter", "cert_revocation"];

fn finding<'a>(findings: &'a [serde_json::Value], id: &str) -> Option<&'a str> {
    findings.iter().find(|f| f["id"] == id).and_then(|f| f["finding"].as_str())
}

#[test]
fn testssl_default_configuration_every_backend() {
    let ok = Command::new("sh").args(["-c", "command -v testssl && command -v unshare"]).stdout(Stdio::null()).status();
    assert!(ok.is_ok_and(|s| s.success()), "testssl (apt-get install testssl.sh) and unshare are required");
    let dir = ScratchDir::new("testssl");
    pki().write_to(dir.path()).unwrap();
    for backend in sipstls::backend_names() {
        let tls13 = sipstls::backend(backend).unwrap().capabilities().contains(Capabilities::TLS13);
        let findings = scan(backend, dir.path());
        assert!(findings.len() > 20, "{backend}: only {} findings: {findings:?}", findings.len());
        let mut problems = Vec::new();
        for f in &findings {
            let sev = f["severity"].as_str().unwrap_or("");
            if (sev == "HIGH" || sev == "CRITICAL") && !TEST_PKI_FINDINGS.contains(&f["id"].as_str().unwrap_or("")) {
                problems.push(format!("{sev} {}: {}", f["id"], f["finding"]));
            }
        }
        for id in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"] {
            match finding(&findings, id) {
                Some(t) if t.starts_with("not offered") => {}
                other => problems.push(format!("{id} must be 'not offered', got {other:?}")),
            }
        }
        match finding(&findings, "TLS1_2") {
            Some(t) if t.starts_with("offered") => {}
            other => problems.push(format!("TLS1_2 must be offered, got {other:?}")),
        }
        match finding(&findings, "cert_chain_of_trust") {
            Some(t) if t.starts_with("passed") => {}
            other => problems.push(format!("cert_chain_of_trust must pass with the test root, got {other:?}")),
        }
        let want13 = if tls13 { "offered" } else { "not offered" };
        match finding(&findings, "TLS1_3") {
            Some(t) if t.starts_with(want13) => {}
            other => problems.push(format!("TLS1_3 must be '{want13}', got {other:?}")),
        }
        for id in [
            "cipherlist_NULL",
            "cipherlist_aNULL",
            "cipherlist_EXPORT",
            "cipherlist_LOW",
            "cipherlist_3DES_IDEA",
            "cipherlist_AVERAGE",
        ] {
            match finding(&findings, id) {
                Some(t) if t.starts_with("not offered") => {}
                other => problems.push(format!("{id} must be 'not offered', got {other:?}")),
            }
        }
        println!(
            "{backend}: {} findings, severities: {:?}",
            findings.len(),
            ["OK", "INFO", "LOW", "MEDIUM", "HIGH", "CRITICAL", "WARN"]
                .map(|s| (s, findings.iter().filter(|f| f["severity"] == s).count()))
        );
        assert!(problems.is_empty(), "{backend}: testssl findings: {problems:#?}");
    }
}

// ---------------------------------------------------------------------------------------
// sslyze

/// The reason sslyze could not be installed, set by `scripts/test.sh`; the test then
/// asserts that reason instead of scanning.
const SSLYZE_UNAVAILABLE: &str = "SIPSTLS_SSLYZE_UNAVAILABLE";
/// The sslyze command (`scripts/test.sh` installs it with pip in a virtual environment
/// and sets this); `sslyze` from `PATH` otherwise.
const SSLYZE: &str = "SIPSTLS_SSLYZE";

/// `Ok(command)` when sslyze runs; `Err(reason)` when it could not be installed and the
/// environment says why. A missing sslyze without a reason panics.
fn sslyze_command() -> Result<String, String> {
    if let Ok(reason) = std::env::var(SSLYZE_UNAVAILABLE) {
        return Err(reason);
    }
    let cmd = std::env::var(SSLYZE).unwrap_or_else(|_| "sslyze".into());
    match Command::new(&cmd).arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => Ok(cmd),
        other => panic!(
            "sslyze is required for this test (scripts/test.sh installs it: pip install sslyze in a virtual \
             environment, command in {SSLYZE}) and `{cmd} --help` could not run ({other:?}); set {SSLYZE_UNAVAILABLE} \
             to the reason when it cannot be installed"
        ),
    }
}

/// Runs sslyze against the responder with `backend` inside a namespace; returns the scan
/// results of the one server (`server_scan_results[0]`).
fn sslyze_scan(cmd: &str, backend: &str, dir: &Path) -> serde_json::Value {
    let responder = env!("CARGO_BIN_EXE_sip-responder");
    let json = dir.join(format!("sslyze-{backend}.json"));
    let log = dir.join(format!("sslyze-{backend}.log"));
    // The server name for SNI and the certificate check, connecting to 127.0.0.1.
    let target = format!("{}:5061{{127.0.0.1}}", sipstls_conformance::pki::SERVER_NAME);
    let script = format!(
        "ip link set lo up || exit 90\n\
         {responder} --backend {backend} --listen 127.0.0.1:5061 --max-seconds 300 \
         --cert {d}/server.pem --key {d}/server.key > {d}/responder-sslyze-{backend}.log 2>&1 &\n\
         S=$!\n\
         for i in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/5061) 2>/dev/null && break; sleep 0.05; done\n\
         timeout 240 {cmd} --quiet --json_out {json} --mozilla_config disable --certinfo --certinfo_ca_file {d}/ca.pem \
         --sslv2 --sslv3 --tlsv1 --tlsv1_1 --tlsv1_2 --tlsv1_3 --reneg --compression --heartbleed --robot \
         --openssl_ccs --fallback --ems --elliptic_curves '{target}' > {log} 2>&1\n\
         rc=$?\n\
         kill $S; wait $S 2>/dev/null\n\
         exit $rc\n",
        d = dir.display(),
        json = json.display(),
        log = log.display(),
    );
    let out = Command::new("timeout")
        .args(["280", "unshare", "-n", "bash", "-c", &script])
        .stdin(Stdio::null())
        .output()
        .expect("unshare");
    assert!(
        out.status.success(),
        "{backend}: sslyze did not run ({:?}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!("{backend}: no JSON from sslyze ({e}): {}", std::fs::read_to_string(&log).unwrap_or_default())
    });
    let v: serde_json::Value = serde_json::from_str(&text).expect("sslyze JSON");
    v["server_scan_results"][0].clone()
}

/// sslyze (`pip install sslyze`, version pinned in `scripts/test.sh`) against
/// `sip-responder` with each backend's default configuration, in `unshare -n`, SNI
/// `sip.example.test` to 127.0.0.1. Asserted on its JSON:
/// - every scan completed;
/// - SSL 2.0, SSL 3.0, TLS 1.0 and 1.1 refused (no suite accepted); TLS 1.2 accepted,
///   TLS 1.3 exactly when the backend claims it;
/// - every accepted suite has forward secrecy (ECDHE/DHE in TLS 1.2) and an AEAD cipher
///   (GCM, ChaCha20-Poly1305, CCM), is not anonymous, has a key of at least 128 bits and
///   an ephemeral key of at least 253 bits (ECDH) or 2048 (DH); no curve below 256 bits;
/// - no renegotiation accepted from the client (so no insecure renegotiation), not
///   vulnerable to the client renegotiation DoS; no compression, Heartbleed, CCS
///   injection or ROBOT;
/// - the certificate chain validates against the test root (`--certinfo_ca_file`, which
///   includes the host name check) and is sent in a valid order without a SHA-1 signature.
///   The public trust stores (Mozilla and others) fail by design: the test PKI is private.
#[test]
fn sslyze_default_configuration_every_backend() {
    let cmd = match sslyze_command() {
        Ok(cmd) => cmd,
        Err(reason) => {
            println!("sslyze unavailable on this machine: {reason}");
            assert!(!reason.trim().is_empty(), "{SSLYZE_UNAVAILABLE} must carry the reason");
            return;
        }
    };
    let ok = Command::new("sh").args(["-c", "command -v unshare"]).stdout(Stdio::null()).status();
    assert!(ok.is_ok_and(|s| s.success()), "unshare (util-linux) is required");
    let dir = ScratchDir::new("sslyze");
    pki().write_to(dir.path()).unwrap();
    for backend in sipstls::backend_names() {
        let tls13 = sipstls::backend(backend).unwrap().capabilities().contains(Capabilities::TLS13);
        let r = sslyze_scan(&cmd, backend, dir.path());
        let mut problems = Vec::new();
        if r["connectivity_status"] != "COMPLETED" || r["scan_status"] != "COMPLETED" {
            panic!("{backend}: sslyze could not scan: {}", r["connectivity_error_trace"]);
        }
        let scans = &r["scan_result"];
        let result = |name: &str| -> &serde_json::Value {
            let s = &scans[name];
            assert_eq!(
                s["status"],
                "COMPLETED",
                "{backend}: scan {name} did not complete: {}\n{}",
                s["error_reason"],
                s["error_trace"].as_str().unwrap_or_default()
            );
            &s["result"]
        };
        let mut accepted = Vec::new();
        for (scan, want) in [
            ("ssl_2_0_cipher_suites", false),
            ("ssl_3_0_cipher_suites", false),
            ("tls_1_0_cipher_suites", false),
            ("tls_1_1_cipher_suites", false),
            ("tls_1_2_cipher_suites", true),
            ("tls_1_3_cipher_suites", tls13),
        ] {
            let res = result(scan);
            let suites = res["accepted_cipher_suites"].as_array().cloned().unwrap_or_default();
            if res["is_tls_version_supported"] != want || suites.is_empty() == want {
                problems.push(format!(
                    "{scan}: supported must be {want}, got {} with {} suites",
                    res["is_tls_version_supported"],
                    suites.len()
                ));
            }
            accepted.extend(suites.into_iter().map(|s| (scan, s)));
        }
        for (scan, s) in &accepted {
            let name = s["cipher_suite"]["name"].as_str().unwrap_or("");
            let aead = ["_GCM_", "_CHACHA20_POLY1305_", "_CCM"].iter().any(|a| name.contains(a));
            let fs = *scan == "tls_1_3_cipher_suites" || name.starts_with("TLS_ECDHE_") || name.starts_with("TLS_DHE_");
            let key = s["cipher_suite"]["key_size"].as_u64().unwrap_or(0);
            let eph = &s["ephemeral_key"];
            let eph_ok = match eph["type_name"].as_str() {
                Some("ECDH") => eph["size"].as_u64().unwrap_or(0) >= 253,
                Some("DH") => eph["size"].as_u64().unwrap_or(0) >= 2048,
                _ => false,
            };
            if !aead || !fs || key < 128 || s["cipher_suite"]["is_anonymous"] != false || !eph_ok {
                problems.push(format!("{scan}: weak suite {name} (key {key} bits, ephemeral {eph})"));
            }
        }
        const STRONG_CURVES: &[&str] = &[
            "X25519",
            "X448",
            "secp256r1",
            "secp384r1",
            "secp521r1",
            "brainpoolP256r1",
            "brainpoolP384r1",
            "brainpoolP512r1",
        ];
        let curves = result("elliptic_curves")["supported_curves"].as_array().cloned().unwrap_or_default();
        let curve_names: Vec<&str> = curves.iter().filter_map(|c| c["name"].as_str()).collect();
        for c in &curve_names {
            if !STRONG_CURVES.contains(c) {
                problems.push(format!("weak curve {c} accepted"));
            }
        }
        let reneg = result("session_renegotiation");
        if reneg["client_renegotiations_success_count"] != 0
            || reneg["is_vulnerable_to_client_renegotiation_dos"] != false
        {
            problems.push(format!("client-initiated renegotiation accepted: {reneg}"));
        }
        for (scan, field, bad) in [
            ("tls_compression", "supports_compression", true),
            ("heartbleed", "is_vulnerable_to_heartbleed", true),
            ("openssl_ccs_injection", "is_vulnerable_to_ccs_injection", true),
        ] {
            if result(scan)[field] == bad {
                problems.push(format!("{scan}: {field} = {bad}"));
            }
        }
        let robot = result("robot")["robot_result"].as_str().unwrap_or("").to_owned();
        if !robot.starts_with("NOT_VULNERABLE") {
            problems.push(format!("ROBOT: {robot}"));
        }
        let deployment = &result("certificate_info")["certificate_deployments"][0];
        let supplied = deployment["path_validation_results"]
            .as_array()
            .and_then(|v| v.iter().find(|p| p["trust_store"]["name"] == "Supplied CA file"))
            .cloned()
            .unwrap_or_default();
        if supplied["was_validation_successful"] != true {
            problems.push(format!(
                "certificate not valid for {} with the test root: {}",
                sipstls_conformance::pki::SERVER_NAME,
                supplied["validation_error"]
            ));
        }
        if deployment["received_chain_has_valid_order"] != true
            || deployment["verified_chain_has_sha1_signature"] != false
        {
            problems.push(format!(
                "certificate chain order {} / SHA-1 in chain {}",
                deployment["received_chain_has_valid_order"], deployment["verified_chain_has_sha1_signature"]
            ));
        }
        println!(
            "{backend}: sslyze accepted {} suites ({}), curves {curve_names:?}, secure renegotiation indication {}, \
             EMS {}, TLS_FALLBACK_SCSV {}",
            accepted.len(),
            accepted
                .iter()
                .map(|(_, s)| s["cipher_suite"]["name"].as_str().unwrap_or("?"))
                .collect::<Vec<_>>()
                .join(" "),
            reneg["supports_secure_renegotiation"],
            result("tls_extended_master_secret")["supports_ems_extension"],
            result("tls_fallback_scsv")["supports_fallback_scsv"],
        );
        assert!(problems.is_empty(), "{backend}: sslyze findings: {problems:#?}");
    }
}
