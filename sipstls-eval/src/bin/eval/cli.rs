//! The command line, declared with clap.

use std::path::PathBuf;

use clap::Parser;

/// What the command line asks for.
#[derive(Debug, Default, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "sipstls-eval",
    about = "Measures every sipstls backend on the same in-memory scenarios",
    after_help = "Progress goes to stderr; the markdown report goes to stdout. Build with --release: \
                  figures from an unoptimised build are meaningless."
)]
pub struct Args {
    /// Backends to measure, comma-separated (default: every backend compiled in). A name
    /// that is not compiled in gets a "not built" row.
    #[arg(long, value_name = "a,b,...", value_parser = backend_list)]
    pub backends: Option<Backends>,
    /// 3 repetitions with small iteration counts (default: 7, larger).
    #[arg(long)]
    pub quick: bool,
    /// Also write the results as JSON.
    #[arg(long, value_name = "FILE", value_parser = path)]
    pub json: Option<PathBuf>,
    /// Also write the markdown report (it always goes to stdout).
    #[arg(long, value_name = "FILE", value_parser = path)]
    pub markdown: Option<PathBuf>,
    /// Also write two bar charts (TLS 1.3 handshakes/s, bytes per idle connection) as SVG.
    #[arg(long, value_name = "FILE", value_parser = path)]
    pub svg: Option<PathBuf>,
    /// Also count instructions per operation, sipstls against each library's own API,
    /// under valgrind's callgrind (needs valgrind; about a minute more per backend).
    /// Timing ratios are always measured.
    #[arg(long)]
    pub instructions: bool,
}

/// Backend names, in the order given, without duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backends(pub Vec<String>);

/// Splits `a,b,c` into names, dropping empty entries and duplicates (case-insensitive).
fn backend_list(list: &str) -> Result<Backends, String> {
    let mut names: Vec<String> = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            names.push(name.to_owned());
        }
    }
    if names.is_empty() {
        return Err("at least one name".into());
    }
    Ok(Backends(names))
}

fn path(value: &str) -> Result<PathBuf, String> {
    if value.is_empty() {
        return Err("an empty file name".into());
    }
    Ok(PathBuf::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(v: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("sipstls-eval").chain(v.iter().copied()))
    }

    #[test]
    fn options() {
        let a = run(&["--quick", "--backends", "rustls, openssl,,RUSTLS", "--json=x.json", "--svg", "y.svg"]).unwrap();
        assert!(a.quick);
        assert_eq!(a.backends, Some(Backends(vec!["rustls".to_owned(), "openssl".to_owned()])));
        assert_eq!(a.json, Some(PathBuf::from("x.json")));
        assert_eq!(a.svg, Some(PathBuf::from("y.svg")));
        assert_eq!(a.markdown, None);
        assert_eq!(run(&[]).unwrap(), Args::default());
    }

    #[test]
    fn errors_and_help() {
        assert_eq!(run(&["--help"]).unwrap_err().kind(), clap::error::ErrorKind::DisplayHelp);
        assert!(run(&["--json"]).is_err());
        assert!(run(&["--json", ""]).is_err());
        assert!(run(&["--backends", ","]).is_err());
        assert!(run(&["--frobnicate"]).is_err());
        assert!(run(&["--quick=yes"]).is_err());
    }
}
