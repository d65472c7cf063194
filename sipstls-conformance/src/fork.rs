//! Worker processes for the fork conformance checks: forked children that can never
//! return into the parent's code, that die on a hard timeout, and that are killed and
//! reaped by PID when the guard drops.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// Forked workers, killed (SIGKILL) and reaped when dropped.
pub struct Workers {
    pids: Vec<libc::pid_t>,
}

impl Workers {
    /// Forks `n` workers running `body(index)`; a worker's exit status is what `body`
    /// returns (101 if it panics). Each worker gets a hard timeout of `timeout` (SIGALRM
    /// kills it). Call only while the process is single-threaded.
    pub fn spawn(n: usize, timeout: Duration, body: impl Fn(usize) -> i32) -> Workers {
        let mut w = Workers { pids: Vec::with_capacity(n) };
        for i in 0..n {
            w.spawn_one(i, timeout, &body);
        }
        w
    }

    /// Forks one more worker running `body(index)` (a replacement for a killed one, say),
    /// on the same terms as [`spawn`](Workers::spawn); returns its PID.
    pub fn spawn_one(&mut self, index: usize, timeout: Duration, body: impl Fn(usize) -> i32) -> libc::pid_t {
        // SAFETY: fork() is called while this process is single-threaded (the fork
        // check binaries fork before starting any thread), so the child gets a
        // consistent copy of every lock and allocator state.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: alarm() only arms a timer for this process.
            unsafe { libc::alarm(timeout.as_secs().max(1) as libc::c_uint) };
            let code = catch_unwind(AssertUnwindSafe(|| body(index))).unwrap_or(101);
            // SAFETY: _exit() ends the child without unwinding into the parent's
            // frames or running the parent's atexit handlers a second time.
            unsafe { libc::_exit(code) };
        }
        self.pids.push(pid);
        pid
    }

    /// The workers' PIDs.
    pub fn pids(&self) -> &[libc::pid_t] {
        &self.pids
    }

    /// Waits (bounded) for worker `pid` to end; returns its exit code, or the negated
    /// signal number, or `None` on timeout.
    pub fn wait(&mut self, pid: libc::pid_t, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut status = 0;
            // SAFETY: `status` is a valid out-pointer; WNOHANG makes the call non-blocking.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                self.pids.retain(|p| *p != pid);
                return Some(if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -libc::WTERMSIG(status) });
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// True while worker `pid` has not ended.
    pub fn alive(&self, pid: libc::pid_t) -> bool {
        let mut status = 0;
        // SAFETY: as in `wait`; a return of 0 means the child still runs.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        r == 0
    }

    /// Stops worker `pid` (SIGSTOP) and waits, up to `timeout`, until it is stopped, so
    /// that what it holds can be inspected before it is killed. False if it ended instead
    /// (then it is reaped) or did not stop in time.
    pub fn stop(&mut self, pid: libc::pid_t, timeout: Duration) -> bool {
        // SAFETY: `pid` is one of our own unreaped children.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        let deadline = Instant::now() + timeout;
        loop {
            let mut status = 0;
            // SAFETY: as in `wait`; WUNTRACED also reports a stopped child (without reaping).
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG | libc::WUNTRACED) };
            if r == pid {
                if libc::WIFSTOPPED(status) {
                    return true;
                }
                self.pids.retain(|p| *p != pid); // it ended and is reaped
                return false;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Lets a stopped worker go on (SIGCONT).
    pub fn resume(&self, pid: libc::pid_t) {
        // SAFETY: `pid` is one of our own unreaped children.
        unsafe { libc::kill(pid, libc::SIGCONT) };
    }

    /// Sends SIGKILL to `pid`.
    pub fn kill(&self, pid: libc::pid_t) {
        // SAFETY: `pid` is one of our own children (not yet reaped, so not reused).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for &pid in &self.pids {
            let mut status = 0;
            // SAFETY: our own unreaped children; kill then reap so none is left behind.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
        }
    }
}

/// Arms a hard timeout for the whole process (SIGALRM terminates it): a fork check that
/// deadlocks fails CI instead of hanging it.
pub fn hard_timeout(limit: Duration) {
    // SAFETY: alarm() only arms a timer for this process.
    unsafe { libc::alarm(limit.as_secs().max(1) as libc::c_uint) };
}

/// Results of a `harness = false` check binary, printed in the format CI reads.
#[derive(Default)]
pub struct Tally {
    passed: usize,
    failed: Vec<String>,
}

impl Tally {
    /// Runs one named check; a panic is a failure.
    pub fn run(&mut self, name: &str, check: impl FnOnce()) {
        let start = Instant::now();
        match catch_unwind(AssertUnwindSafe(check)) {
            Ok(()) => {
                println!("test {name} ... ok ({:.1} s)", start.elapsed().as_secs_f64());
                self.passed += 1;
            }
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                println!("test {name} ... FAILED: {msg}");
                self.failed.push(name.to_owned());
            }
        }
    }

    /// How many checks failed so far.
    pub fn failures(&self) -> usize {
        self.failed.len()
    }

    /// Prints the closing line and returns the process exit code.
    pub fn finish(self) -> std::process::ExitCode {
        for f in &self.failed {
            println!("failed: {f}");
        }
        println!("{} passed, {} failed", self.passed, self.failed.len());
        if self.failed.is_empty() {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
        }
    }
}

/// Maps a zeroed `MAP_SHARED` anonymous region holding one `T`, for state the parent and
/// its forked children all see (counters, result tables). It lives as long as the process.
///
/// # Safety
/// An all-zero `T` must be a valid value (atomics and arrays of them are), and `T` must
/// hold no pointers into process-private memory.
pub unsafe fn shared_zeroed<T>() -> &'static T {
    let len = std::mem::size_of::<T>().max(1);
    // SAFETY: an anonymous shared mapping with no address hint; the result is checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert!(p != libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
    // SAFETY: the mapping is fresh, page-aligned, zero-filled and never unmapped; the
    // caller promises that zero bytes are a valid `T`.
    unsafe { &*p.cast::<T>() }
}

/// Bytes glibc's malloc has handed out and not taken back in this process (`mallinfo2`:
/// heap chunks plus mmapped ones), C libraries included.
pub fn heap_in_use() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    let mi = unsafe { libc::mallinfo2() };
    mi.uordblks + mi.hblkhd
}

/// Open file descriptors of process `pid` (`/proc/<pid>/fd`).
pub fn open_fds(pid: libc::pid_t) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// True when this process has no child left (every fork was reaped).
pub fn no_children_left() -> bool {
    let mut status = 0;
    // SAFETY: waitpid(-1, WNOHANG) only reports (and reaps) an already ended child.
    let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD)
}

/// A small xorshift generator for kill points and victims; the seed is printed so a run
/// can be repeated (`SIPSTLS_FAULT_SEED`).
pub struct Rng(u64);

impl Rng {
    /// From `SIPSTLS_FAULT_SEED` when set, else from the clock.
    pub fn from_env_or_clock() -> Rng {
        let seed = std::env::var("SIPSTLS_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
        });
        Rng(seed | 1)
    }

    /// The seed (or current state) to print.
    pub fn state(&self) -> u64 {
        self.0
    }

    /// The next value, uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Remote ports of the TCP connections that process `pid` holds open whose local port is
/// `local_port` (the accepted connections of a server listening there): each socket
/// descriptor in `/proc/<pid>/fd` is duplicated with `pidfd_getfd` (Linux 5.6), asked for
/// its addresses, and closed again. Meant for a stopped child, whose descriptors cannot
/// change meanwhile. (`/proc/net/tcp` would do without duplicates, but reading it takes
/// seconds with the thousands of TIME_WAIT entries a load test leaves.)
pub fn accepted_peer_ports(pid: libc::pid_t, local_port: u16) -> Vec<u16> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: pidfd_open takes a PID and flags; the result is checked.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    assert!(pidfd >= 0, "pidfd_open({pid}): {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor that we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    let mut ports = Vec::new();
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("the victim's descriptors");
    for e in dir.flatten() {
        let is_socket = std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:"));
        let Some(target) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        if !is_socket {
            continue;
        }
        // SAFETY: duplicates descriptor `target` of our child into this process; checked.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) };
        if fd < 0 {
            continue; // closed meanwhile: not held
        }
        // SAFETY: a fresh duplicate that we own (closed when dropped, before any kill).
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let addr = |peer: bool| {
            // SAFETY: `sockaddr_in` is plain old data, for which all zeros is a valid value.
            let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let p = std::ptr::addr_of_mut!(sa).cast::<libc::sockaddr>();
            // SAFETY: `sa` is a writable sockaddr_in of `len` bytes.
            let r = unsafe {
                if peer {
                    libc::getpeername(fd.as_raw_fd(), p, &mut len)
                } else {
                    libc::getsockname(fd.as_raw_fd(), p, &mut len)
                }
            };
            (r == 0 && sa.sin_family == libc::AF_INET as libc::sa_family_t).then(|| u16::from_be(sa.sin_port))
        };
        if addr(false) == Some(local_port) {
            ports.extend(addr(true)); // the listener itself has no peer
        }
    }
    ports
}
