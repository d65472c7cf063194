//! The hostile-input battery, many times, with the heap measured: for every backend of the
//! build, the in-memory hostile checks (`sipstls_conformance::hostile::IN_MEMORY`: random
//! bytes and records, oversize and cut records, SSLv2 hellos, early data, EOF without
//! close_notify, half-close, a peer that never reads, a peer that floods) run twice to warm
//! up, then `SIPSTLS_HOSTILE_ROUNDS` (default 3) more times; afterwards the process's heap
//! (glibc `mallinfo2`, every byte malloc has handed out and not taken back, C libraries
//! included) must be back within `BOUND` bytes of the baseline. A leak of one session per
//! check would add tens of KB per round.
//!
//! It runs in a child process with glibc's tcache off (`GLIBC_TUNABLES`), whose per-thread
//! caches `mallinfo2` counts as in use. `harness = false`: one process, nothing else
//! allocating while it measures.

use std::time::Instant;

use sipstls_conformance::hostile::IN_MEMORY;

const NO_TCACHE: &str = "glibc.malloc.tcache_count=0";
/// Allowed difference from the baseline after all rounds, bytes.
const BOUND: i64 = 4 * 1024;

/// Bytes malloc has handed out and not taken back (all arenas, mmapped chunks included).
fn heap_in_use() -> i64 {
    // SAFETY: malloc_trim only returns free memory to the system, mallinfo2 only reads the
    // allocator's statistics; neither has preconditions.
    unsafe {
        libc::malloc_trim(0);
        let mi = libc::mallinfo2();
        (mi.uordblks + mi.hblkhd) as i64
    }
}

fn main() {
    if !std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains(NO_TCACHE)) {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .env("GLIBC_TUNABLES", NO_TCACHE)
            .status()
            .expect("re-run the test binary");
        assert!(status.success(), "the measurement without tcache failed: {status}");
        return;
    }
    let rounds: usize = std::env::var("SIPSTLS_HOSTILE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let backends = sipstls::backends();
    assert!(!backends.is_empty());
    let mut failed = Vec::new();
    for b in backends {
        let name = b.info().name;
        let t0 = Instant::now();
        for _ in 0..2 {
            for (_, check) in IN_MEMORY {
                check(&*b);
            }
        }
        let base = heap_in_use();
        let mut per_round = Vec::new();
        for _ in 0..rounds {
            for (_, check) in IN_MEMORY {
                check(&*b);
            }
            per_round.push(heap_in_use() - base);
        }
        let end = heap_in_use() - base;
        println!(
            "{name}: {} checks x {rounds} rounds in {:.1} s; heap baseline {base} B, after each round {per_round:?} B, end {end:+} B",
            IN_MEMORY.len(),
            t0.elapsed().as_secs_f64()
        );
        if end.abs() > BOUND {
            failed.push(format!("{name}: heap {end:+} B after {rounds} rounds (bound {BOUND} B)"));
        }
    }
    assert!(failed.is_empty(), "the heap did not return to its baseline: {failed:?}");
    println!("hostile_memory: ok");
}
