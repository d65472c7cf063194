//! Records the rustls and aws-lc-rs versions this crate is built against (from the
//! workspace's Cargo.lock), since rustls has no run-time version call.

use std::path::Path;

fn locked_version(lock: &str, name: &str, major_minor: &str) -> Option<String> {
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == format!("name = \"{name}\"") {
            let v = lines.next()?.strip_prefix("version = \"")?.strip_suffix('"')?;
            if v.starts_with(major_minor) {
                return Some(v.to_owned());
            }
        }
    }
    None
}

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let lock_path = Path::new(&dir).join("../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock_path.display());
    let lock = std::fs::read_to_string(&lock_path).unwrap_or_default();
    let rustls = locked_version(&lock, "rustls", "0.23.").unwrap_or_else(|| "0.23 (exact version unknown)".into());
    let aws = locked_version(&lock, "aws-lc-rs", "1.").unwrap_or_else(|| "1.x".into());
    println!("cargo:rustc-env=SIPSTLS_RUSTLS_VERSION={rustls}");
    println!("cargo:rustc-env=SIPSTLS_AWS_LC_RS_VERSION={aws}");
}
