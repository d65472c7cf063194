//! Allocator hook installation, per backend (a `harness = false` binary: hooks are
//! process-wide, so each scenario needs a process of its own):
//! - installed first, every TLS-library allocation of a session lands in the arena and is
//!   freed back to it when the session ends;
//! - installed after the library's first allocation, the call fails with
//!   `Error::HookTooLate` (checked in a child process);
//! - a backend that does not claim `ALLOCATOR_HOOK` and whose installer refuses must refuse
//!   with `Error::Unsupported { capability: ALLOCATOR_HOOK }` (the two checks above, which
//!   need the hook, are not run for it).

use std::process::Command;
use std::time::Duration;

use sipstls::{Capabilities, Error, ProtocolVersion, Resumption, ServerName};
use sipstls_conformance::checks::{client_cfg, server_cfg};
use sipstls_conformance::fork::{hard_timeout, Tally};
use sipstls_conformance::pki::{pki, SERVER_NAME};
use sipstls_conformance::pump;
use sipstls_core::hooks::AllocatorHooks;
use sipstls_shm::SharedArena;

fn install(backend: &str, hooks: &'static dyn AllocatorHooks) -> Result<(), Error> {
    match backend {
        #[cfg(feature = "openssl")]
        #[cfg(feature = "openssl")]
        "openssl" => sipstls::openssl::install_allocator_hooks(hooks),
        #[cfg(feature = "rustls")]
        "rustls" => sipstls::rustls::install_allocator_hooks(hooks),
        #[cfg(feature = "mbedtls")]
        "mbedtls" => sipstls::mbedtls::install_allocator_hooks(hooks),
        #[cfg(feature = "wolfssl")]
        "wolfssl" => sipstls::wolfssl::install_allocator_hooks(hooks),
        #[cfg(feature = "boring")]
        "boring" => sipstls::boring::install_allocator_hooks(hooks),
        other => panic!("no installer for {other}"),
    }
}

/// Child mode: use the library first, then try to install: must be refused.
fn late(backend: &str) -> i32 {
    let b = sipstls::backend(backend).expect("backend");
    let _ = b.server_domain(&server_cfg(ProtocolVersion::Tls13)).expect("domain"); // first allocations
    let arena = SharedArena::create(16 << 20).expect("arena");
    match install(backend, arena) {
        Err(Error::HookTooLate { .. }) => 0,
        other => {
            eprintln!("{backend}: expected HookTooLate, got {other:?}");
            1
        }
    }
}

fn installing_late_is_refused(backend: &str) {
    let exe = std::env::current_exe().unwrap();
    let status = Command::new(exe).args(["--late", backend]).status().expect("child");
    assert!(status.success(), "{backend}: late installation was not refused with HookTooLate ({status})");
}

/// Sessions of every backend allocate from the arena and give it all back.
fn sessions_live_in_the_arena(arena: &'static SharedArena, hooked: &[&'static str]) {
    for &name in hooked {
        let b = sipstls::backend(name).unwrap();
        let v = ProtocolVersion::Tls13;
        let sd = b.server_domain(&server_cfg(v).with_resumption(Resumption::DISABLED)).unwrap();
        let cd = b.client_domain(&client_cfg(v).with_resumption(Resumption::DISABLED)).unwrap();
        let connect = || {
            let mut c = cd.connect(Some(&ServerName::parse(SERVER_NAME).unwrap())).unwrap();
            let mut s = sd.accept().unwrap();
            pump::handshake(&mut *c, &mut *s).expect("handshake with hooks");
            assert_eq!(pump::send(&mut *c, &mut *s, b"in the arena").unwrap(), b"in the arena");
            (c, s)
        };
        drop(connect()); // warm-up: one-time library tables
        let before = arena.stats();
        let pair = connect();
        let during = arena.stats();
        assert!(
            during.allocations > before.allocations + 20 && during.in_use > before.in_use,
            "{name}: the library's session allocations did not reach the arena ({before:?} -> {during:?})"
        );
        drop(pair);
        let after = arena.stats();
        assert_eq!(after.in_use, before.in_use, "{name}: the session's C allocations were not all freed to the arena");
        println!(
            "    {name}: {} C allocations for one connection pair, {} bytes at its peak, all returned",
            during.allocations - before.allocations,
            during.in_use - before.in_use
        );
    }
}

/// The backends whose allocator hook is checked: those that claim it, and those whose
/// installer accepted the hooks.
fn hooked_backends(installed: &[(&'static str, Result<(), Error>)]) -> Vec<&'static str> {
    installed
        .iter()
        .filter(|(name, r)| {
            r.is_ok() || sipstls::backend(name).is_some_and(|b| b.capabilities().contains(Capabilities::ALLOCATOR_HOOK))
        })
        .map(|(name, _)| *name)
        .collect()
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, backend] = &args[..] {
        if flag == "--late" {
            std::process::exit(late(backend));
        }
    }
    hard_timeout(Duration::from_secs(300));
    // First thing in this process: the hooks, for every backend, into one arena.
    let arena = SharedArena::create(256 << 20).expect("arena");
    let names = sipstls::backend_names();
    let installed: Vec<(&str, Result<(), Error>)> = names.iter().map(|n| (*n, install(n, arena))).collect();
    let _ = pki();
    let mut t = Tally::default();
    let hooked = hooked_backends(&installed);
    for (name, r) in &installed {
        if hooked.contains(name) {
            t.run(&format!("hooks::{name}::installed_before_first_use"), || assert_eq!(r, &Ok(()), "{name}"));
        } else {
            t.run(&format!("hooks::{name}::refused_without_capability"), || match r {
                Err(Error::Unsupported { capability, .. }) => assert_eq!(*capability, Capabilities::ALLOCATOR_HOOK),
                other => panic!("{name} does not claim ALLOCATOR_HOOK, so installing must be Unsupported: {other:?}"),
            });
        }
    }
    if !hooked.is_empty() {
        t.run("hooks::sessions_live_in_the_arena", || sessions_live_in_the_arena(arena, &hooked));
    }
    for name in hooked {
        t.run(&format!("hooks::{name}::installing_late_is_refused"), || installing_late_is_refused(name));
    }
    t.finish()
}
