//! Helpers for third-party peers and example binaries on loopback: a child process that is
//! always stopped by its PID, a free port, a scratch directory.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A child process killed and reaped when dropped (also when a test panics).
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Spawns `cmd` with piped stdin/stdout and stderr discarded.
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Self> {
        Ok(ChildGuard(cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?))
    }

    /// Spawns `cmd` with piped stdin/stdout and stderr appended to `log` (for a failure
    /// message that says why the child gave up).
    pub fn spawn_logged(cmd: &mut Command, log: &Path) -> std::io::Result<Self> {
        let err = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        Ok(ChildGuard(cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(err).spawn()?))
    }

    /// Reads the child's stdout until `needle` appears or `timeout` passes; returns what was
    /// read. The read happens on a thread, so a silent child cannot hang the test.
    pub fn read_stdout_until(&mut self, needle: &str, timeout: Duration) -> String {
        let mut out = self.0.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        while !String::from_utf8_lossy(&got).contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(chunk) => got.extend(chunk),
                Err(_) => break,
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("bind loopback")
}

/// Waits until something accepts on `addr` (bounded). A connection to itself does not
/// count: with nothing listening, Linux can pick `addr`'s own port as the source port of a
/// loopback connect, and the socket then connects to itself.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            if s.local_addr().ok() != Some(addr) {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A scratch directory removed when dropped.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Creates a fresh directory under the system temp dir.
    pub fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sipstls-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        ScratchDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `openssl` command-line tool. Panics with an explanation when it is missing: the
/// test command installs it, so a missing tool is a broken machine, not a skip.
pub fn openssl_cli() -> &'static str {
    let ok = Command::new("openssl").arg("version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    assert!(ok, "the `openssl` command-line tool is required (apt-get install openssl)");
    "openssl"
}
