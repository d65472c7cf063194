//! Measures the abstraction's overhead: time per operation through sipstls and through the
//! native API, alternating, in one run; and, with `--instructions`, instruction counts of
//! both under callgrind (stable where timing is noisy).

use std::path::Path;
use std::time::Instant;

use super::bench::Plan;
use super::native::{self, Api, Runner, Work};
use super::run::Target;
use super::stats::Sample;

/// One backend and one kind of work, both ways.
#[derive(Debug, Clone)]
pub struct OverheadRow {
    /// Backend name.
    pub backend: String,
    /// What was done.
    pub work: Work,
    /// Nanoseconds per operation through sipstls, per repetition.
    pub sipstls_ns: Sample,
    /// Nanoseconds per operation through the native API, per repetition.
    pub native_ns: Sample,
    /// Instructions per operation (sipstls, native), when measured under callgrind.
    pub instructions: Option<Result<(f64, f64), String>>,
}

impl OverheadRow {
    /// sipstls time / native time, from the medians.
    pub fn time_ratio(&self) -> f64 {
        self.sipstls_ns.median() / self.native_ns.median()
    }
}

/// The label of a kind of work on `backend` (TLS 1.2 on Mbed TLS, TLS 1.3 elsewhere).
pub fn work_label(w: Work, backend: &str) -> &'static str {
    match (w, native::version_of(backend)) {
        (Work::Handshake, sipstls::ProtocolVersion::Tls12) => "Full handshake, TLS 1.2, ECDSA P-256 (both sides)",
        (Work::Record1k, sipstls::ProtocolVersion::Tls12) => "1 KiB record, TLS 1.2 (encrypt + decrypt)",
        (Work::Handshake, _) => "Full handshake, TLS 1.3, ECDSA P-256 (both sides)",
        (Work::Record1k, _) => "1 KiB record, TLS 1.3 (encrypt + decrypt)",
    }
}

/// Goal for the instruction overhead of a kind of work: at most +2% per handshake, +5% per
/// 1 KiB record.
pub fn goal(w: Work) -> f64 {
    match w {
        Work::Handshake => 0.02,
        Work::Record1k => 0.05,
    }
}

fn iterations(plan: &Plan, w: Work) -> usize {
    match (w, plan.quick) {
        (Work::Handshake, true) => 200,
        (Work::Handshake, false) => 1_000,
        (Work::Record1k, true) => 20_000,
        (Work::Record1k, false) => 100_000,
    }
}

/// Time per operation of `n` operations, in ns.
fn time_per_op(r: &mut dyn Runner, n: usize) -> Result<f64, String> {
    let start = Instant::now();
    for _ in 0..n {
        r.once()?;
    }
    Ok(start.elapsed().as_nanos() as f64 / n as f64)
}

/// Measures every target that has a native twin; `exe` (this binary) is re-run under
/// callgrind when `instructions` is set.
pub fn measure(targets: &[Target], plan: &Plan, instructions: bool, exe: &Path) -> Vec<Result<OverheadRow, String>> {
    let mut rows = Vec::new();
    for t in targets.iter().filter(|t| native::has_native(&t.name)) {
        for work in [Work::Handshake, Work::Record1k] {
            eprint!("overhead: {} {:?} ... ", t.name, work);
            let row = measure_one(t, work, plan).map(|mut row| {
                if instructions {
                    row.instructions = Some(callgrind_pair(exe, &t.name, work));
                }
                row
            });
            match &row {
                Ok(r) => eprintln!("sipstls/native time {:.3}", r.time_ratio()),
                Err(e) => eprintln!("error: {e}"),
            }
            rows.push(row.map_err(|e| format!("{} {work:?}: {e}", t.name)));
        }
    }
    rows
}

fn measure_one(t: &Target, work: Work, plan: &Plan) -> Result<OverheadRow, String> {
    let mut ours = native::runner(&t.backend, Api::Sipstls, work)?;
    let mut theirs = native::runner(&t.backend, Api::Native, work)?;
    let n = iterations(plan, work);
    // Warm-up: lazy initialisation and caches on both paths.
    time_per_op(&mut *ours, n / 10 + 1)?;
    time_per_op(&mut *theirs, n / 10 + 1)?;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for rep in 0..plan.reps {
        // Alternate which path goes first, so drift hits both.
        if rep % 2 == 0 {
            a.push(time_per_op(&mut *ours, n)?);
            b.push(time_per_op(&mut *theirs, n)?);
        } else {
            b.push(time_per_op(&mut *theirs, n)?);
            a.push(time_per_op(&mut *ours, n)?);
        }
    }
    Ok(OverheadRow {
        backend: t.name.clone(),
        work,
        sipstls_ns: Sample::new(a).ok_or("no usable timing")?,
        native_ns: Sample::new(b).ok_or("no usable timing")?,
        instructions: None,
    })
}

/// Operations counted under callgrind per child run.
fn callgrind_ops(work: Work) -> usize {
    match work {
        Work::Handshake => 50,
        Work::Record1k => 2_000,
    }
}

/// Instructions per operation through sipstls and natively.
fn callgrind_pair(exe: &Path, backend: &str, work: Work) -> Result<(f64, f64), String> {
    let ours = callgrind(exe, backend, Api::Sipstls, work)?;
    let theirs = callgrind(exe, backend, Api::Native, work)?;
    Ok((ours, theirs))
}

/// Runs this binary under callgrind as a child that does `callgrind_ops(work)` operations
/// inside [`counted_loop`] (only that function is counted), and returns instructions per
/// operation.
fn callgrind(exe: &Path, backend: &str, api: Api, work: Work) -> Result<f64, String> {
    let n = callgrind_ops(work);
    sipstls_conformance::callgrind::instructions_per_op(
        exe,
        &["--callgrind-child", backend, api_name(api), work_name(work), &n.to_string()],
        "*counted_loop*",
        n,
        &format!("eval-{backend}-{api:?}-{work:?}"),
    )
}

fn api_name(a: Api) -> &'static str {
    match a {
        Api::Sipstls => "sipstls",
        Api::Native => "native",
    }
}

fn work_name(w: Work) -> &'static str {
    match w {
        Work::Handshake => "handshake",
        Work::Record1k => "record1k",
    }
}

/// The child side of `--instructions`: `--callgrind-child BACKEND API WORK N`. Warms up
/// outside the counted function, then runs N operations inside it.
pub fn callgrind_child(args: &[String]) -> Result<(), String> {
    let [backend, api, work, n] = args else { return Err("--callgrind-child BACKEND API WORK N".into()) };
    let b = sipstls::backend(backend).ok_or_else(|| format!("{backend} is not built"))?;
    let api = match api.as_str() {
        "sipstls" => Api::Sipstls,
        "native" => Api::Native,
        other => return Err(format!("unknown api {other}")),
    };
    let work = match work.as_str() {
        "handshake" => Work::Handshake,
        "record1k" => Work::Record1k,
        other => return Err(format!("unknown work {other}")),
    };
    let n: usize = n.parse().map_err(|e| format!("N: {e}"))?;
    let mut r = native::runner(&b, api, work)?;
    for _ in 0..5 {
        r.once()?;
    }
    counted_loop(&mut *r, n)
}

/// The only function callgrind counts in the child (`--toggle-collect`).
#[inline(never)]
fn counted_loop(r: &mut dyn Runner, n: usize) -> Result<(), String> {
    for _ in 0..n {
        r.once()?;
    }
    Ok(())
}
