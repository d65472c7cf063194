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
        let mut pids = Vec::with_capacity(n);
        for i in 0..n {
            // SAFETY: fork() is called while this process is single-threaded (the fork
            // check binaries fork before starting any thread), so the child gets a
            // consistent copy of every lock and allocator state.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
            if pid == 0 {
                // SAFETY: alarm() only arms a timer for this process.
                unsafe { libc::alarm(timeout.as_secs().max(1) as libc::c_uint) };
                let code = catch_unwind(AssertUnwindSafe(|| body(i))).unwrap_or(101);
                // SAFETY: _exit() ends the child without unwinding into the parent's
                // frames or running the parent's atexit handlers a second time.
                unsafe { libc::_exit(code) };
            }
            pids.push(pid);
        }
        Workers { pids }
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
