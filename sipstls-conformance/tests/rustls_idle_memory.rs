//! An idle rustls session holds no I/O buffers: the heap one established server session
//! keeps after a request and a response (its client gone) and `release_memory()` stays
//! under `BOUND` bytes.
//!
//! rustls's buffered API keeps a 4 KiB read buffer for a connection's whole life (the
//! deframer never shrinks below one read). sipstls-backend-rustls runs rustls's unbuffered API: it
//! keeps its buffers between records while busy and frees them in `release_memory()`
//! (figures: docs/scale.md).
//!
//! The heap is counted by a global allocator that wraps the system's (live bytes as
//! requested, all threads); `harness = false`, so nothing else runs while it counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use sipstls::{ProtocolVersion, Session};
use sipstls_conformance::checks::{client_cfg, server_cfg};
use sipstls_conformance::pki::SERVER_NAME;
use sipstls_conformance::pump;

/// Heap bytes one idle server session may hold: the session and rustls's connection
/// state, two AES-GCM contexts, its statistics entry; no buffer.
const BOUND: isize = 5_000;
const SESSIONS: isize = 200;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call forwards to the system allocator with the caller's arguments; the
// counter is only statistics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract, forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller upholds `realloc`'s contract, forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    let b = sipstls::backend("rustls").expect("the rustls backend is built by default");
    let v = ProtocolVersion::Tls13;
    let server = b.server_domain(&server_cfg(v)).expect("server domain");
    let client = b.client_domain(&client_cfg(v)).expect("client domain");
    let name = sipstls::ServerName::parse(SERVER_NAME).unwrap();
    let req = vec![b'R'; 1024];
    let resp = vec![b'A'; 1024];
    let connect = |keep: &mut Vec<Box<dyn Session>>| {
        let mut s = server.accept().expect("accept");
        let mut c = client.connect(Some(&name)).expect("connect");
        pump::handshake(&mut *c, &mut *s).expect("handshake");
        assert_eq!(pump::send(&mut *c, &mut *s, &req).unwrap(), req);
        assert_eq!(pump::send(&mut *s, &mut *c, &resp).unwrap(), resp);
        // What the confined manager does before a connection waits.
        s.release_memory();
        keep.push(s);
    };
    // Warm up: lazily built tables, the client's ticket cache, the vector's room.
    let mut sessions: Vec<Box<dyn Session>> = Vec::with_capacity(SESSIONS as usize);
    for _ in 0..20 {
        connect(&mut sessions);
    }
    sessions.clear();
    let base = LIVE.load(Ordering::Relaxed);
    for _ in 0..SESSIONS {
        connect(&mut sessions);
    }
    let per_session = (LIVE.load(Ordering::Relaxed) - base) / SESSIONS;
    println!("rustls: {per_session} heap bytes per idle server session (TLS 1.3, after 1 KiB each way)");
    assert!(sessions.iter().all(|s| !s.is_handshaking() && !s.wants_write()));
    assert!(
        per_session < BOUND,
        "an idle rustls session holds {per_session} bytes of heap, at most {BOUND} expected (buffers kept?)"
    );
    drop(sessions);
    println!("1 passed, 0 failed");
}
