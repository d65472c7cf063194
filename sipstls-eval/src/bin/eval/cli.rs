//! Command-line parsing (no dependency: five options do not need a parser crate).

use std::path::PathBuf;

/// The usage text printed by `--help` and after a usage error.
pub const USAGE: &str = "\
sipstls-eval: measures every sipstls backend on the same in-memory scenarios

USAGE:
    sipstls-eval [--backends a,b,...] [--quick] [--json FILE] [--markdown FILE] [--svg FILE]

OPTIONS:
    --backends a,b,...  Backends to measure (default: every backend compiled in).
                        A name that is not compiled in gets a \"not built\" row.
    --quick             3 repetitions with small iteration counts (default: 7, larger).
    --json FILE         Also write the results as JSON.
    --markdown FILE     Also write the markdown report (it always goes to stdout).
    --svg FILE          Also write two bar charts (TLS 1.3 handshakes/s, bytes per idle
                        connection) as SVG.
    --instructions      Also count instructions per operation, sipstls vs each library's
                        own API, under valgrind's callgrind (needs valgrind; adds about
                        a minute per backend). Timing ratios are always measured.
    -h, --help          Print this text.

Progress goes to stderr; the markdown report goes to stdout. Build with --release:
figures from an unoptimised build are meaningless.
";

/// What the command line asks for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Args {
    /// Backend names, in the order given; `None` means every compiled-in backend.
    pub backends: Option<Vec<String>>,
    /// Quick mode: fewer repetitions and iterations.
    pub quick: bool,
    /// Where to write the JSON results.
    pub json: Option<PathBuf>,
    /// Where to write the markdown report.
    pub markdown: Option<PathBuf>,
    /// Where to write the SVG charts.
    pub svg: Option<PathBuf>,
    /// Also count instructions under callgrind (abstraction overhead).
    pub instructions: bool,
}

/// The outcome of parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Run with these arguments.
    Run(Args),
    /// Print the usage and exit.
    Help,
}

/// Parses the arguments after the program name. Options taking a value accept both
/// `--opt value` and `--opt=value`.
pub fn parse(argv: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut args = Args::default();
    let mut it = argv.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline.clone().or_else(|| it.next()).ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--quick" if inline.is_none() => args.quick = true,
            "--instructions" if inline.is_none() => args.instructions = true,
            "--backends" => args.backends = Some(backend_list(&value("--backends")?)?),
            "--json" => args.json = Some(path(value("--json")?)?),
            "--markdown" => args.markdown = Some(path(value("--markdown")?)?),
            "--svg" => args.svg = Some(path(value("--svg")?)?),
            _ => return Err(format!("unknown argument `{arg}`")),
        }
    }
    Ok(Parsed::Run(args))
}

/// Splits `a,b,c` into names, dropping empty entries and duplicates (case-insensitive).
fn backend_list(list: &str) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            names.push(name.to_owned());
        }
    }
    if names.is_empty() {
        return Err("--backends needs at least one name".into());
    }
    Ok(names)
}

fn path(value: String) -> Result<PathBuf, String> {
    if value.is_empty() {
        return Err("an output file name is empty".into());
    }
    Ok(PathBuf::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(v: &[&str]) -> Result<Parsed, String> {
        parse(v.iter().map(|s| s.to_string()))
    }

    #[test]
    fn options() {
        let Ok(Parsed::Run(a)) =
            run(&["--quick", "--backends", "rustls, openssl,,RUSTLS", "--json=x.json", "--svg", "y.svg"])
        else {
            panic!("parse failed")
        };
        assert!(a.quick);
        assert_eq!(a.backends, Some(vec!["rustls".to_owned(), "openssl".to_owned()]));
        assert_eq!(a.json, Some(PathBuf::from("x.json")));
        assert_eq!(a.svg, Some(PathBuf::from("y.svg")));
        assert_eq!(a.markdown, None);
    }

    #[test]
    fn errors_and_help() {
        assert_eq!(run(&["--help"]), Ok(Parsed::Help));
        assert!(run(&["--json"]).is_err());
        assert!(run(&["--backends", ","]).is_err());
        assert!(run(&["--frobnicate"]).is_err());
        assert!(run(&["--quick=yes"]).is_err());
    }
}
