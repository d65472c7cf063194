//! Facts about the run: date, command line, machine and build.

/// Facts printed at the top of every report.
#[derive(Debug, Clone)]
pub struct Meta {
    /// `2026-05-01 12:34:56 UTC`.
    pub date_utc: String,
    /// The command line, shell-quoted where needed.
    pub command: String,
    /// `std::thread::available_parallelism()`, if known.
    pub cores: Option<usize>,
    /// The CPU model from /proc/cpuinfo, or `unknown`.
    pub cpu: String,
    /// The operating system and kernel release.
    pub os: String,
    /// False for a build without optimisations (`debug_assertions` on).
    pub optimised: bool,
    /// `release` or `debug`.
    pub profile: &'static str,
    /// The version of this harness.
    pub version: &'static str,
    /// The 1-minute load average when the run started and when it ended: other processes
    /// competing for the cores show up here (and as noise in the figures).
    pub load: (Option<f64>, Option<f64>),
}

/// Collects the facts about this run.
pub fn collect() -> Meta {
    let optimised = !cfg!(debug_assertions);
    Meta {
        date_utc: date_utc(),
        command: command_line(),
        cores: std::thread::available_parallelism().ok().map(std::num::NonZeroUsize::get),
        cpu: cpu_model().unwrap_or_else(|| "unknown".into()),
        os: os(),
        optimised,
        profile: if optimised { "release" } else { "debug" },
        version: env!("CARGO_PKG_VERSION"),
        load: (load_average(), None),
    }
}

/// The 1-minute load average from /proc/loadavg.
pub fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn date_utc() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// The program's arguments joined with spaces; arguments with shell metacharacters are
/// single-quoted.
fn command_line() -> String {
    std::env::args().map(|a| shell_quote(&a)).collect::<Vec<_>>().join(" ")
}

fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=,:@+%".contains(c));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_owned())
}

fn os() -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned());
    match release {
        Ok(r) => format!("{} {r} ({})", std::env::consts::OS, std::env::consts::ARCH),
        Err(_) => format!("{} ({})", std::env::consts::OS, std::env::consts::ARCH),
    }
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("--json=/tmp/x.json"), "--json=/tmp/x.json");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
