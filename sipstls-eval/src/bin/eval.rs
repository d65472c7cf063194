//! `sipstls-eval`: measures every sipstls backend on the same in-memory scenarios (full
//! and resumed handshakes, record throughput, heap per idle connection) and writes a
//! markdown report (stdout), optionally JSON and SVG charts. Run `--help` for the options.
//!
//! Every figure is measured in the run that prints it; nothing is copied from a table.
#![deny(unsafe_code)]
#![warn(missing_docs)]

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

/// The harness, one module per concern (files under `src/bin/eval/`).
mod eval {
    pub mod bench;
    pub mod cli;
    pub mod crypto;
    pub mod drive;
    pub mod json;
    pub mod markdown;
    pub mod memory;
    pub mod meta;
    pub mod model;
    pub mod native;
    #[cfg(feature = "mbedtls")]
    pub mod native_mbedtls;
    #[cfg(feature = "wolfssl")]
    pub mod native_wolfssl;
    pub mod overhead;
    pub mod run;
    pub mod stats;
    pub mod svg;
}

use eval::bench::{self, Plan};
use eval::cli;
use eval::model::Report;

fn main() -> ExitCode {
    let started = Instant::now();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("--callgrind-child") {
        // The child of `--instructions`, run under valgrind by this binary.
        return match eval::overhead::callgrind_child(&argv[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sipstls-eval --callgrind-child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let args = <cli::Args as clap::Parser>::parse_from(std::iter::once("sipstls-eval".to_owned()).chain(argv));
    let meta = eval::meta::collect();
    if !meta.optimised {
        eprintln!("WARNING: sipstls-eval was built without optimisations; its figures are meaningless. Use --release.");
    }
    let plan = if args.quick { Plan::QUICK } else { Plan::FULL };
    let (backends, targets) = eval::run::resolve(args.backends.as_ref().map(|b| b.0.as_slice()));
    for b in &backends {
        if let Err(why) = &b.status {
            eprintln!("{}: {why}", b.name);
        }
    }

    eprint!("generating the test PKI (ECDSA P-256 and RSA-2048 leaves) ... ");
    let pki_start = Instant::now();
    let _ = sipstls_conformance::pki::pki();
    eprintln!("{:.1} s", pki_start.elapsed().as_secs_f64());

    // The crypto limits are timed before and after the scenarios (the machine's speed
    // drifts over minutes); the faster of the two is the limit.
    let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
    eprint!("crypto limits (public-key operations of each library), first pass ... ");
    let crypto_before = eval::crypto::measure(&names, &plan);
    eprintln!("done");
    let results = eval::run::all(&bench::scenarios(&plan), &targets, &plan);
    eprint!("crypto limits, second pass ... ");
    let crypto = eval::crypto::fastest(crypto_before, eval::crypto::measure(&names, &plan));
    eprintln!("done");
    let exe = std::env::current_exe().unwrap_or_else(|_| "sipstls-eval".into());
    let overhead = eval::overhead::measure(&targets, &plan, args.instructions, &exe);
    let mut meta = meta;
    meta.load.1 = eval::meta::load_average();
    let report = Report { meta, plan, backends, results, wall: started.elapsed(), overhead, crypto };
    let markdown = eval::markdown::render(&report);
    print!("{markdown}");

    let mut ok = true;
    if let Some(path) = &args.markdown {
        ok &= write(path, &markdown);
    }
    if let Some(path) = &args.json {
        ok &= write(path, &(serde_json::to_string_pretty(&eval::json::report(&report)).unwrap_or_default() + "\n"));
    }
    if let Some(path) = &args.svg {
        let m = &report.meta;
        let caption = [
            format!("sipstls-eval, {} build, {}, {} cores", m.profile, m.date_utc, m.cores.unwrap_or(0)),
            m.command.clone(),
        ];
        ok &= write(path, &eval::svg::document(&eval::svg::charts(&report), &caption));
    }
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Writes `text` to `path`, reporting failure on stderr.
fn write(path: &Path, text: &str) -> bool {
    match std::fs::write(path, text) {
        Ok(()) => {
            eprintln!("wrote {}", path.display());
            true
        }
        Err(e) => {
            eprintln!("sipstls-eval: cannot write {}: {e}", path.display());
            false
        }
    }
}
