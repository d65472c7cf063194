//! The markdown report.

use std::fmt::Write as _;

use super::bench::{Group, Plan};
use super::model::{Measured, Report, ScenarioResult, CAPABILITY_ROWS};
use super::stats::Sample;

/// Formats a figure for people: thousands separators from 100 up, one decimal from 10,
/// two below.
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    if x.abs() < 10.0 {
        return format!("{x:.2}");
    }
    if x.abs() < 100.0 {
        return format!("{x:.1}");
    }
    let rounded = x.round() as i64;
    let digits = rounded.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
    if rounded < 0 {
        out.insert(0, '-');
    }
    out
}

/// `min–max (spread %)` of a sample; the spread is (max − min) / median.
pub fn range(s: &Sample) -> String {
    format!("{}–{} ({:.0}%)", num(s.min()), num(s.max()), s.spread_percent())
}

/// Escapes `|` so text cannot break a table row.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// Renders the whole report.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    header(&mut out, r);
    backends(&mut out, r);
    capabilities(&mut out, r);
    handshakes(&mut out, r);
    records(&mut out, r);
    overhead(&mut out, r);
    memory(&mut out, r);
    errors(&mut out, r);
    out
}

fn header(out: &mut String, r: &Report) {
    let m = &r.meta;
    let _ = writeln!(out, "# sipstls backend evaluation\n");
    if !m.optimised {
        let _ = writeln!(
            out,
            "> **WARNING: this binary was built WITHOUT optimisations (debug profile). Every \
             figure below is meaningless for comparison. Rebuild with \
             `cargo build --release -p sipstls-eval --bin sipstls-eval`.**\n"
        );
    }
    let cores = m.cores.map_or_else(|| "unknown".into(), |c| c.to_string());
    let _ = writeln!(out, "- Date: {}", m.date_utc);
    let _ = writeln!(out, "- Command: `{}`", m.command);
    let _ = writeln!(out, "- Machine: {cores} cores (available_parallelism), CPU `{}`, {}", m.cpu, m.os);
    let build = if m.optimised { "release (optimised)" } else { "**debug (NOT optimised)**" };
    let _ = writeln!(out, "- Build: {build}, sipstls-eval {}", m.version);
    let load = |l: Option<f64>| l.map_or_else(|| "?".into(), |v| format!("{v:.2}"));
    let _ = writeln!(
        out,
        "- Load average (1 min) at start / end: {} / {} (above ~1 on 2 cores, other processes compete with the measurements)",
        load(m.load.0),
        load(m.load.1)
    );
    let _ = writeln!(out, "- Mode: {}", mode(&r.plan));
    let _ = writeln!(out, "- Run time: {:.1} s (wall, including test PKI generation)\n", r.wall.as_secs_f64());
    let _ = writeln!(
        out,
        "Method: client and server sessions of the same backend run in memory in one thread \
         (sans-I/O: ciphertext is copied between them, no sockets). The time inside each \
         side's session calls is accumulated separately; the figures are **server side** \
         unless a column says client. Each figure is the median of the repetitions, with \
         the min–max range beside it; the repetitions of a figure alternate between \
         backends, so machine noise hits all of them alike. Test certificates are generated \
         at start-up (trusted root → leaf); clients verify the chain and the name \
         (RFC 5922).\n"
    );
}

fn mode(p: &Plan) -> String {
    format!(
        "{} — {} repetitions per figure; per repetition: {} ECDSA / {} RSA full handshakes, \
         {} resumed handshakes, {} × 1 KiB and {} × 16 KiB records, {} idle connections",
        if p.quick { "quick" } else { "full" },
        p.reps,
        p.handshakes,
        p.rsa_handshakes,
        p.resumed,
        p.records_1k,
        p.records_16k,
        p.idle_connections
    )
}

fn backends(out: &mut String, r: &Report) {
    let _ = writeln!(out, "## Backends\n");
    let _ = writeln!(out, "| Backend | Library (as reported by `Backend::info()`) | Licence | Status |");
    let _ = writeln!(out, "|---|---|---|---|");
    for b in &r.backends {
        match &b.status {
            Ok(f) => {
                let _ = writeln!(out, "| {} | {} | {} | built |", f.info.name, cell(&f.info.library), f.info.license);
            }
            Err(why) => {
                let _ = writeln!(out, "| {} | – | – | {} |", cell(&b.name), cell(why));
            }
        }
    }
    out.push('\n');
}

fn capabilities(out: &mut String, r: &Report) {
    let built: Vec<_> = r.built().collect();
    if built.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Capabilities (from `Backend::capabilities()`)\n");
    let names: Vec<&str> = built.iter().map(|(n, _)| *n).collect();
    let _ = writeln!(out, "| Capability | {} |", names.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(names.len()));
    for (flag, label) in CAPABILITY_ROWS {
        let cells: Vec<&str> = built.iter().map(|(_, f)| if f.caps.contains(*flag) { "yes" } else { "no" }).collect();
        let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
    }
    out.push('\n');
}

fn results_of(r: &Report, group: Group) -> impl Iterator<Item = &ScenarioResult> {
    r.results.iter().filter(move |s| s.scenario.group() == group)
}

fn handshakes(out: &mut String, r: &Report) {
    let _ = writeln!(out, "## Handshakes\n");
    let _ = writeln!(
        out,
        "Full handshakes run with resumption disabled on both sides (no tickets issued). \
         Resumed handshakes reuse one client domain and one server domain (TLS 1.3: tickets \
         only; TLS 1.2: session IDs with the server cache, no tickets); every measured \
         connection is checked to be resumed on both sides, else the figure is dropped. \
         A resumed TLS 1.3 handshake still does an (EC)DHE exchange (psk_dhe_ke) and the \
         server issues fresh tickets after it (library default count), so it costs nearly \
         as much as a full one. Server time includes `accept()` and dropping the session; \
         client time includes `connect()` and certificate verification.\n"
    );
    let _ = writeln!(
        out,
        "The crypto limit is the server handshakes per second that the backend's own crypto \
         library allows for the public-key operations alone (one X25519 key generation and \
         agreement, plus one ECDSA P-256 or RSA-2048 PSS signature for a full handshake; X25519 \
         only for a TLS 1.3 resumption), timed in this run; the fraction is the measured server \
         rate over that limit (hashing, key schedule and record protection are left out of the \
         limit, so 100% is out of reach; the operations are timed before and after the \
         scenarios and the faster pass is used, yet a figure over 100% can still mean the \
         machine was faster during the handshakes than during both passes).\n"
    );
    let _ = writeln!(
        out,
        "| Scenario | Backend | Server handshakes/s (median) | min–max | Server µs/handshake | Client handshakes/s (median) | Crypto limit/s (fraction) | Negotiated (server view) |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---|");
    for res in results_of(r, Group::Handshake) {
        for (backend, outcome) in &res.outcomes {
            let limit = r.crypto_of(backend).and_then(|c| c.limit(res.scenario.kind));
            let row = match outcome {
                Ok(m) => handshake_cells(m, limit),
                Err(e) => format!("error: {} | | | | | ", cell(e)),
            };
            let _ = writeln!(out, "| {} | {backend} | {row} |", res.scenario.label);
        }
    }
    out.push('\n');
}

fn handshake_cells(m: &Measured, limit: Option<f64>) -> String {
    let server = &m.server;
    let client = m.client.as_ref().map_or_else(|| "–".into(), |c| num(c.median()));
    let limit = limit.map_or_else(|| "–".into(), |l| format!("{} ({:.0}%)", num(l), 100.0 * server.median() / l));
    format!(
        "**{}** | {} | {} | {} | {} | {}",
        num(server.median()),
        range(server),
        num(1e6 / server.median()),
        client,
        limit,
        cell(&m.negotiated)
    )
}

fn overhead(out: &mut String, r: &Report) {
    use super::overhead::{goal, work_label};
    let _ = writeln!(out, "## Abstraction overhead: sipstls against each library's own API\n");
    let _ = writeln!(
        out,
        "The same work in one thread, in memory, through `sipstls::Session` and through the \
         library's own Rust API (rustls `ServerConnection`/`ClientConnection`; the openssl \
         crate's `SslStream` over an in-memory pipe; for BoringSSL the boring crate's \
         `SslStream`, the same code; wolfSSL has no safe Rust API, so its twin makes the raw \
         wolfssl-sys calls with in-memory I/O callbacks, as sipstls-backend-wolfssl does, and checks \
         the name with `wolfSSL_check_domain_name`; Mbed TLS has no Rust API of its own either: its twin \
         makes the raw calls with in-memory I/O callbacks and the settings sipstls-backend-mbedtls \
         compiles, with Mbed TLS's own host name check), with the same certificates, the same TLS 1.3 suite order \
         (AES-128-GCM-SHA256 first, sipstls's default), TLS 1.3 only, resumption off and the \
         client verifying chain and name. Time: median ns per \
         operation over the repetitions, the two paths alternating. Instructions (with \
         `--instructions`): counted by valgrind's callgrind in the measured loop only. The \
         goals are at most 2% more instructions per handshake and 5% per 1 KiB record.\n"
    );
    if r.overhead.is_empty() {
        let _ = writeln!(out, "No backend of this run has a native twin in the harness.\n");
        return;
    }
    let _ = writeln!(
        out,
        "| Backend | Work | sipstls µs/op | native µs/op | time ratio | sipstls instructions/op | native instructions/op | instruction overhead (goal) |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|");
    for row in &r.overhead {
        match row {
            Ok(o) => {
                let instr = match &o.instructions {
                    None => "not measured (--instructions) | | ".to_owned(),
                    Some(Err(e)) => format!("error: {} | | ", cell(e)),
                    Some(Ok((ours, theirs))) => {
                        let over = ours / theirs - 1.0;
                        let verdict = if over <= goal(o.work) { "met" } else { "not met" };
                        format!(
                            "{} | {} | **{:+.1}%** (≤ {:.0}%: {verdict})",
                            num(*ours),
                            num(*theirs),
                            100.0 * over,
                            100.0 * goal(o.work)
                        )
                    }
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.2} | {:.2} | {:.3} | {instr} |",
                    o.backend,
                    work_label(o.work, &o.backend),
                    o.sipstls_ns.median() / 1e3,
                    o.native_ns.median() / 1e3,
                    o.time_ratio()
                );
            }
            Err(e) => {
                let _ = writeln!(out, "| error: {} | | | | | | | |", cell(e));
            }
        }
    }
    out.push('\n');
    for b in r.backends.iter().filter(|b| b.status.is_ok()) {
        if let Some(why) = super::crypto::no_limit_reason(&b.name) {
            let _ = writeln!(out, "No crypto limit for {}: {why}.\n", b.name);
        }
    }
    let crypto: Vec<_> = r.crypto.iter().collect();
    if !crypto.is_empty() {
        let _ = writeln!(out, "Public-key operations behind the crypto limits (median µs, this run):\n");
        let _ = writeln!(out, "| Backend (library) | X25519 keygen + agree | ECDSA P-256 sign | RSA-2048 PSS sign |");
        let _ = writeln!(out, "|---|---:|---:|---:|");
        for c in crypto {
            match c {
                Ok(c) => {
                    let _ = writeln!(
                        out,
                        "| {} | {:.1} | {:.1} | {:.1} |",
                        c.backend, c.x25519_us, c.ecdsa_sign_us, c.rsa_sign_us
                    );
                }
                Err(e) => {
                    let _ = writeln!(out, "| error: {} | | | |", cell(e));
                }
            }
        }
        out.push('\n');
    }
}

fn records(out: &mut String, r: &Report) {
    let _ = writeln!(out, "## Record throughput\n");
    let _ = writeln!(
        out,
        "One established TLS 1.3 connection per backend; the client writes records (one per \
         write), the server reads them. Encrypt = client `write` + `take_tls`; decrypt = \
         server `feed_tls` + `read`. MB = 10^6 bytes of plaintext.\n"
    );
    let _ = writeln!(
        out,
        "| Scenario | Backend | Decrypt (server) MB/s | min–max | Server records/s | Encrypt (client) MB/s | min–max | Client records/s | Negotiated |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---|");
    for res in results_of(r, Group::Records) {
        let size = res.scenario.record_size().unwrap_or(1) as f64;
        for (backend, outcome) in &res.outcomes {
            let row = match outcome {
                Ok(m) => record_cells(m, size),
                Err(e) => format!("error: {} | | | | | | ", cell(e)),
            };
            let _ = writeln!(out, "| {} | {backend} | {row} |", res.scenario.label);
        }
    }
    out.push('\n');
}

fn record_cells(m: &Measured, size: f64) -> String {
    let per_second = |mb_per_s: f64| num(mb_per_s * 1e6 / size);
    let client = match &m.client {
        Some(c) => format!("{} | {} | {}", num(c.median()), range(c), per_second(c.median())),
        None => "– | – | –".into(),
    };
    format!(
        "**{}** | {} | {} | {client} | {}",
        num(m.server.median()),
        range(&m.server),
        per_second(m.server.median()),
        cell(&m.negotiated)
    )
}

fn memory(out: &mut String, r: &Report) {
    let _ = writeln!(out, "## Memory per idle server connection\n");
    let n = results_of(r, Group::Memory).next().map_or(0, |s| s.scenario.iterations);
    let _ = writeln!(
        out,
        "glibc `mallinfo2()` (`uordblks + hblkhd`) before and after holding {n} server \
         sessions that each completed a TLS 1.3 (or, second table, TLS 1.2) ECDSA handshake (resumption off) and one \
         1 KiB request and response, then `release_memory()` (what the confined manager \
         calls before a connection waits; only rustls keeps buffers it can give back), \
         their client sessions dropped: (after − before) / {n}. \
         This counts the **whole process heap** — Rust and C (OpenSSL, aws-lc) allocations \
         alike — so it includes each connection's buffers (record buffers, handshake \
         leftovers) as the library keeps them while idle; malloc's own per-chunk overhead \
         is included, memory malloc keeps after a free is not.\n"
    );
    for res in results_of(r, Group::Memory) {
        let _ = writeln!(out, "{}:\n", res.scenario.label);
        let _ = writeln!(out, "| Backend | Bytes per connection (median) | min–max | KiB | Negotiated |");
        let _ = writeln!(out, "|---|---:|---:|---:|---|");
        for (backend, outcome) in &res.outcomes {
            let row = match outcome {
                Ok(m) => format!(
                    "**{}** | {} | {:.1} | {}",
                    num(m.server.median()),
                    range(&m.server),
                    m.server.median() / 1024.0,
                    cell(&m.negotiated)
                ),
                Err(e) => format!("error: {} | | | ", cell(e)),
            };
            let _ = writeln!(out, "| {backend} | {row} |");
        }
        out.push('\n');
    }
}

/// Lists every figure that could not be measured, so none disappears silently.
fn errors(out: &mut String, r: &Report) {
    let failed: Vec<String> = r
        .results
        .iter()
        .flat_map(|res| {
            res.outcomes
                .iter()
                .filter_map(move |(b, o)| o.as_ref().err().map(|e| format!("- {} on {b}: {}", res.scenario.label, e)))
        })
        .collect();
    let not_built: Vec<String> =
        r.backends.iter().filter_map(|b| b.status.as_ref().err().map(|e| format!("- {}: {e}", b.name))).collect();
    if failed.is_empty() && not_built.is_empty() {
        let _ = writeln!(out, "All figures were measured; no errors.");
        return;
    }
    let _ = writeln!(out, "## Errors and missing figures\n");
    for line in not_built.iter().chain(&failed) {
        let _ = writeln!(out, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::num;

    #[test]
    fn numbers() {
        assert_eq!(num(14210.4), "14,210");
        assert_eq!(num(1234567.0), "1,234,567");
        assert_eq!(num(999.6), "1,000");
        assert_eq!(num(42.26), "42.3");
        assert_eq!(num(4.567), "4.57");
        assert_eq!(num(-2048.0), "-2,048");
        assert_eq!(num(f64::NAN), "n/a");
    }
}
