//! The Kamailio harness of the SIP-over-TLS interop tests: a Kamailio started from the
//! templates in `sipstls-examples/tests/fixtures/` with free loopback ports and the run-time test PKI
//! in a scratch directory, stopped by PID. Shared by `sipstls-examples/tests/kamailio.rs` and
//! `sipstls-example-ezk/tests/ezk_tls.rs` (as `#[path]` modules), each using part of it.
#![allow(dead_code)]

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sipstls_conformance::peers::{free_port, ScratchDir};
use sipstls_conformance::pki::{pki, SERVER_NAME};

pub const KAMAILIO_CFG: &str = include_str!("../fixtures/kamailio.cfg.in");
pub const TLS_CFG: &str = include_str!("../fixtures/tls.cfg.in");
pub const PROXY_CFG: &str = include_str!("../fixtures/kamailio-proxy.cfg.in");
pub const INSTALL_HINT: &str = "install kamailio kamailio-tls-modules (scripts/test.sh does)";
/// Bound on Kamailio's start (it listens after ~0.2 s).
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on its orderly shutdown (usually ~0.1 s; now and then its timer process never
/// acts on the SIGTERM and the main process waits for it: then its group is killed).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// The `kamailio` binary (in /usr/sbin, which a non-root PATH may lack). Panics when it is
/// missing: the test command installs it, so a missing peer is a broken machine, not a skip.
pub fn kamailio_bin() -> PathBuf {
    let candidates = [PathBuf::from("kamailio"), PathBuf::from("/usr/sbin/kamailio")];
    for bin in candidates {
        let ok = Command::new(&bin)
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return bin;
        }
    }
    panic!("Kamailio is not installed: {INSTALL_HINT}");
}

/// A Kamailio instance with its own configuration, certificates and run directory, stopped
/// by PID when dropped.
pub struct Kamailio {
    pub child: Child,
    /// TLS listener without client authentication.
    pub tls: SocketAddr,
    /// TLS listener that requires a client certificate.
    pub mtls: SocketAddr,
    /// Its stdout and stderr.
    pub log: PathBuf,
    /// Its configuration, certificates (`certs/`) and run directory.
    pub dir: ScratchDir,
}

impl Kamailio {
    /// Kamailio as a plain-TCP worker that accepts PROXY protocol headers; `tls` and `mtls`
    /// both name its TCP listener.
    pub fn start_proxy_worker(tag: &str) -> Kamailio {
        let dir = ScratchDir::new(&format!("kamailio-{tag}"));
        let run = dir.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        let port = free_port();
        std::fs::write(dir.path().join("kamailio.cfg"), PROXY_CFG.replace("@TCP_PORT@", &port.to_string())).unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        Self::spawn(dir, run, addr, addr)
    }

    pub fn start(tag: &str) -> Kamailio {
        let dir = ScratchDir::new(&format!("kamailio-{tag}"));
        let certs = pki().write_to(&dir.path().join("certs")).expect("write test PKI");
        let run = dir.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        let (tls_port, mtls_port) = (free_port(), free_port());
        assert_ne!(tls_port, mtls_port);
        let fill = |template: &str| {
            template
                .replace("@TLS_PORT@", &tls_port.to_string())
                .replace("@MTLS_PORT@", &mtls_port.to_string())
                .replace("@CERTS@", certs.to_str().unwrap())
                .replace("@TLS_CFG@", dir.path().join("tls.cfg").to_str().unwrap())
                .replace("@RELAY_SNI@", SERVER_NAME)
        };
        std::fs::write(dir.path().join("tls.cfg"), fill(TLS_CFG)).unwrap();
        std::fs::write(dir.path().join("kamailio.cfg"), fill(KAMAILIO_CFG)).unwrap();
        let tls = SocketAddr::from(([127, 0, 0, 1], tls_port));
        let mtls = SocketAddr::from(([127, 0, 0, 1], mtls_port));
        Self::spawn(dir, run, tls, mtls)
    }

    /// Starts Kamailio on `dir/kamailio.cfg` and waits (bounded) for both addresses.
    pub fn spawn(dir: ScratchDir, run: PathBuf, tls: SocketAddr, mtls: SocketAddr) -> Kamailio {
        Self::spawn_with_memory(dir, run, tls, mtls, 64)
    }

    /// As [`Kamailio::spawn`], with `shm_mb` MB of shared memory (`-m`).
    pub fn spawn_with_memory(
        dir: ScratchDir,
        run: PathBuf,
        tls: SocketAddr,
        mtls: SocketAddr,
        shm_mb: u32,
    ) -> Kamailio {
        let bin = kamailio_bin();
        let log = dir.path().join("kamailio.log");
        let out = File::create(&log).unwrap();
        let child = Command::new(bin)
            .args(["-DD", "-E", "-m", &shm_mb.to_string(), "-M", "8", "-f"])
            .arg(dir.path().join("kamailio.cfg"))
            .arg("-Y")
            .arg(&run)
            .arg("-P")
            .arg(run.join("kamailio.pid"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            // Its own process group: Kamailio's shutdown signals its group, never ours.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start kamailio ({e}): {INSTALL_HINT}"));
        let k = Kamailio { child, tls, mtls, log, dir };
        // Both listeners up, bounded; a Kamailio that exits (bad config, no tls module)
        // fails at once with its log.
        let deadline = Instant::now() + START_TIMEOUT;
        let listening = |a: &SocketAddr| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok();
        while !(listening(&k.tls) && listening(&k.mtls)) {
            let exited = k.exited();
            if exited || Instant::now() >= deadline {
                panic!(
                    "kamailio did not listen on {} and {} (exited: {exited}); a missing tls module: \
                     {INSTALL_HINT}\n--- kamailio log ---\n{}",
                    k.tls,
                    k.mtls,
                    k.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        k
    }

    /// True once the main process has exited; it is not reaped (Drop does that), so its PID
    /// and process group id cannot be reused meanwhile.
    pub fn exited(&self) -> bool {
        // SAFETY: waitid on our own child with WNOWAIT only reads its state.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let r = libc::waitid(
                libc::P_PID,
                self.child.id() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            r != 0 || info.si_pid() != 0
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) until Kamailio's log contains `needle`.
    pub fn wait_log(&self, needle: &str) -> bool {
        wait_file(&self.log, needle, Duration::from_secs(5))
    }
}

impl Drop for Kamailio {
    /// SIGTERM to the main PID (Kamailio then stops its worker processes), bounded; any
    /// process left in its group is killed before the main process is reaped, so the group
    /// id cannot have been reused.
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signals to our own child, not yet reaped, and to its process group.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while !self.exited() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as above; normally the group is empty but for the unreaped main process.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = self.child.wait();
        // The scratch directory (a field) is removed after this.
    }
}

/// Waits (bounded) until the file contains `needle`.
pub fn wait_file(path: &Path, needle: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if std::fs::read_to_string(path).is_ok_and(|s| s.contains(needle)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
