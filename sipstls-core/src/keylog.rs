//! Session secrets in the NSS key log format (`SSLKEYLOGFILE`), so Wireshark or tshark can
//! decrypt a captured SIP-over-TLS exchange. Off unless a domain sets
//! [`DomainConfig::key_log`](crate::DomainConfig::key_log): whoever reads the log can read
//! every session it covers.

use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// Receives one secret of one session, as a line of the NSS key log format would carry it:
/// `label` such as `CLIENT_RANDOM` (TLS 1.2) or `CLIENT_HANDSHAKE_TRAFFIC_SECRET` (TLS 1.3),
/// the 32-byte client random that names the session, and the secret.
///
/// Called from inside the TLS library during a handshake: keep it short, never block on the
/// network, never panic (backends catch panics at C callbacks, but the secret is then lost).
pub trait KeyLog: Send + Sync + 'static {
    /// Records one secret.
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]);
}

/// A shared [`KeyLog`], as a [`DomainConfig`](crate::DomainConfig) holds it. Two sinks are
/// equal when they are the same object.
#[derive(Clone)]
pub struct KeyLogSink(Arc<dyn KeyLog>);

impl KeyLogSink {
    /// Wraps a key log.
    pub fn new(log: impl KeyLog) -> Self {
        KeyLogSink(Arc::new(log))
    }

    /// Records one secret.
    pub fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        self.0.log(label, client_random, secret)
    }

    /// Records a complete NSS key log line (`LABEL <client random hex> <secret hex>`), as
    /// OpenSSL's and wolfSSL's callbacks produce it. Returns `false`, recording nothing, when
    /// the line is not in that format.
    pub fn log_nss_line(&self, line: &str) -> bool {
        let mut parts = line.trim_end().split(' ');
        let (Some(label), Some(cr), Some(secret), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        match (from_hex(cr), from_hex(secret)) {
            (Some(cr), Some(secret)) if !label.is_empty() => {
                self.log(label, &cr, &secret);
                true
            }
            _ => false,
        }
    }
}

impl PartialEq for KeyLogSink {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for KeyLogSink {}

impl fmt::Debug for KeyLogSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyLogSink(..)")
    }
}

/// One line of the NSS key log format, newline included.
pub fn nss_line(label: &str, client_random: &[u8], secret: &[u8]) -> String {
    let mut s = String::with_capacity(label.len() + 2 * (client_random.len() + secret.len()) + 3);
    s.push_str(label);
    s.push(' ');
    for b in client_random {
        let _ = write!(s, "{b:02x}");
    }
    s.push(' ');
    for b in secret {
        let _ = write!(s, "{b:02x}");
    }
    s.push('\n');
    s
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// A [`KeyLog`] appending to a file, created with mode 0600 (owner only) when missing.
/// Each line is written with one `write` call under a lock, so lines of concurrent
/// handshakes never interleave.
pub struct KeyLogFile {
    file: Mutex<File>,
}

impl KeyLogFile {
    /// Opens (or creates) `path` for appending.
    pub fn open(path: impl AsRef<Path>) -> Result<KeyLogFile> {
        let path = path.as_ref();
        let mut opts = OpenOptions::new();
        opts.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts
            .open(path)
            .map_err(|e| Error::config("key_log", format!("cannot open key log file {}: {e}", path.display())))?;
        Ok(KeyLogFile { file: Mutex::new(file) })
    }
}

impl KeyLog for KeyLogFile {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let line = nss_line(label, client_random, secret);
        // A poisoned lock only means another writer panicked mid-call; the file is fine.
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        // A key log is a debugging aid: a full disk must not fail the handshake.
        let _ = f.write_all(line.as_bytes());
    }
}

impl fmt::Debug for KeyLogFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyLogFile(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect(Mutex<Vec<String>>);
    impl KeyLog for Arc<Collect> {
        fn log(&self, label: &str, cr: &[u8], secret: &[u8]) {
            self.0.lock().unwrap().push(nss_line(label, cr, secret));
        }
    }

    #[test]
    fn nss_line_format() {
        assert_eq!(nss_line("CLIENT_RANDOM", &[0, 0xab], &[0xff, 1]), "CLIENT_RANDOM 00ab ff01\n");
    }

    #[test]
    fn nss_line_round_trip_and_malformed_lines() {
        let c = Arc::new(Collect::default());
        let sink = KeyLogSink::new(c.clone());
        assert!(sink.log_nss_line("SERVER_TRAFFIC_SECRET_0 0102 a0b0c0\n"));
        for bad in ["", "LABEL", "LABEL 01", "LABEL 0 01", "LABEL 01 zz", "LABEL 01 02 03", " 01 02"] {
            assert!(!sink.log_nss_line(bad), "{bad:?} accepted");
        }
        assert_eq!(*c.0.lock().unwrap(), vec!["SERVER_TRAFFIC_SECRET_0 0102 a0b0c0\n".to_string()]);
        assert_eq!(sink, sink.clone());
        assert_ne!(sink, KeyLogSink::new(c));
    }

    #[test]
    fn key_log_file_appends_owner_only() {
        let path = std::env::temp_dir().join(format!("sipstls-keylog-test-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let f = KeyLogFile::open(&path).unwrap();
        f.log("CLIENT_RANDOM", &[1], &[2]);
        f.log("CLIENT_RANDOM", &[3], &[4]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "CLIENT_RANDOM 01 02\nCLIENT_RANDOM 03 04\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::remove_file(&path).unwrap();
    }
}
