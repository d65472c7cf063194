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
