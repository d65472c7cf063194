//! Instruction counts under valgrind's callgrind, for the benchmark binaries
//! (`sipstls-eval --instructions`, `sipstls-hookbench --instructions`): a count does not
//! move with machine load, where timings on a shared machine do.
//!
//! The binary re-runs itself as a child under callgrind; the child does its set-up and
//! warm-up outside the counted function and its measured work inside it, and callgrind
//! counts only that function (`--toggle-collect`), including everything it calls.

use std::path::Path;
use std::process::Command;

/// Runs `exe` with `args` under callgrind, counting only inside functions whose name
/// matches `toggle` (a callgrind pattern such as `*counted_loop*`), and returns the
/// instructions counted divided by `ops`. `tag` keeps concurrent output files apart.
pub fn instructions_per_op(exe: &Path, args: &[&str], toggle: &str, ops: usize, tag: &str) -> Result<f64, String> {
    let out = std::env::temp_dir().join(format!("sipstls-callgrind-{}-{tag}", std::process::id()));
    let status = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(format!("--toggle-collect={toggle}"))
        .arg(exe)
        .args(args)
        .output()
        .map_err(|e| format!("valgrind could not be run ({e}); install valgrind for --instructions"))?;
    let text = std::fs::read_to_string(&out).map_err(|e| {
        format!(
            "no callgrind output ({e}); valgrind said: {}",
            String::from_utf8_lossy(&status.stderr).lines().last().unwrap_or_default()
        )
    })?;
    let _ = std::fs::remove_file(&out);
    if !status.status.success() {
        return Err(format!("the callgrind child failed: {}", String::from_utf8_lossy(&status.stderr)));
    }
    let total = text
        .lines()
        .find_map(|l| l.strip_prefix("summary:").or_else(|| l.strip_prefix("totals:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or("no instruction total in the callgrind output")?;
    if total == 0.0 {
        return Err(format!("callgrind counted nothing: no function matched {toggle}"));
    }
    Ok(total / ops.max(1) as f64)
}
