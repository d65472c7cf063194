#!/usr/bin/env bash
# Runs every sipstls test: unit tests, the conformance suite for each default backend and
# for Mbed TLS, the interop matrix (in-process and against the openssl command-line tool),
# and the example binaries end to end on loopback. Installs what a fresh machine lacks.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the default backends and peers need (Debian names). Kamailio is a peer
# of sipstls-examples/tests/kamailio.rs, which starts its own instances on free loopback ports.
# The bundled C libraries of the other backends, which `cargo test --workspace` builds too:
# gcc and libclang-dev for Mbed TLS 3.6 (sipstls-mbedtls-sys: cc + bindgen), and cmake,
# clang and ninja-build for the build step of mbedtls-rs-sys, whose source it uses; autoconf,
# automake, libtool, make, patch and libclang-dev for wolfSSL (wolfssl-sys: configure +
# bindgen); cmake and libclang-dev also build BoringSSL (boring-sys) for the `boring` run.
need=()
# gnutls-bin and android-boringssl are independent TLS peers (gnutls-cli/-serv, bssl-tool)
# of sipstls-examples/tests/third_party_peers.rs, which runs the servers in `unshare -n` namespaces
# (util-linux) and brings up their loopback with `ip` (iproute2). redis-server: the
# cross-node resumption tests (sipstls-conformance/tests/cross_node.rs, sipstls-redis) start
# their own instances on free loopback ports (never the system service). testssl.sh scans
# the example server of every backend (sipstls-examples/tests/scanners.rs, in `unshare -n`); g++
# builds libFuzzer for the fuzz smoke runs. systemd (systemd-analyze), adduser (the
# package's postinst) and python3 (an upstream stand-in) serve scripts/deb-test.sh.
for pkg in libssl-dev pkg-config openssl gcc kamailio kamailio-tls-modules \
    cmake libclang-dev autoconf automake libtool make patch gnutls-bin android-boringssl \
    util-linux iproute2 redis-server testssl.sh g++ clang ninja-build systemd adduser python3; do
    [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" == "install ok installed" ]] || need+=("$pkg")
done
# tshark (with dumpcap) decrypts a captured SIP-over-TLS exchange with sipstls's key log
# in sipstls-examples/tests/keylog_tshark.rs. It is installed on its own below: if it cannot be,
# that test is told why (SIPSTLS_TSHARK_UNAVAILABLE) and asserts that reason.
want_tshark=
[[ "$(dpkg-query -W -f='${Status}' tshark 2>/dev/null)" == "install ok installed" ]] || want_tshark=1
if ((${#need[@]})) || [ -n "$want_tshark" ]; then
    echo "test.sh: installing ${need[*]} ${want_tshark:+tshark}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "test.sh: need root (or sudo) to install: ${need[*]} ${want_tshark:+tshark}" >&2
        exit 1
    fi
    # Packages must not start system services (Kamailio's would hold SIP ports): a
    # policy-rc.d that refuses every start, unless the machine already has one.
    own_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -qq
    if ((${#need[@]})); then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
    fi
    if [ -n "$want_tshark" ] && ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tshark; then
        export SIPSTLS_TSHARK_UNAVAILABLE="apt-get install tshark failed on this machine"
        echo "test.sh: $SIPSTLS_TSHARK_UNAVAILABLE; keylog_tshark will report it" >&2
    fi
    if [ -n "$own_policy" ]; then
        rm -f /usr/sbin/policy-rc.d
        trap - EXIT
    fi
fi

# sslyze scans the example server of every backend beside testssl.sh
# (sipstls-examples/tests/scanners.rs). Debian 12 does not package it: pip installs a pinned
# version into a virtual environment of its own (wheels for nassl and cryptography, no
# compiler needed). If that fails, the test is told why (SIPSTLS_SSLYZE_UNAVAILABLE) and
# asserts that reason instead of scanning.
SSLYZE_VERSION=6.3.1
if [ -z "${SIPSTLS_SSLYZE:-}" ] && [ -z "${SIPSTLS_SSLYZE_UNAVAILABLE:-}" ]; then
    sslyze_venv="${XDG_CACHE_HOME:-$HOME/.cache}/sipstls/sslyze-$SSLYZE_VERSION"
    if [ ! -x "$sslyze_venv/bin/sslyze" ]; then
        echo "test.sh: installing sslyze $SSLYZE_VERSION with pip into $sslyze_venv"
        if ! python3 -m venv --help >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null || true
        fi
        rm -rf "$sslyze_venv"
        if ! sslyze_err=$({ python3 -m venv "$sslyze_venv" &&
            "$sslyze_venv/bin/pip" install -q --disable-pip-version-check "sslyze==$SSLYZE_VERSION"; } 2>&1); then
            rm -rf "$sslyze_venv"
            export SIPSTLS_SSLYZE_UNAVAILABLE="pip install sslyze==$SSLYZE_VERSION failed on this machine: $(printf '%s' "$sslyze_err" | tail -n 3 | tr '\n' ' ')"
            echo "test.sh: $SIPSTLS_SSLYZE_UNAVAILABLE; the sslyze scan will report it" >&2
        fi
    fi
    if [ -x "$sslyze_venv/bin/sslyze" ]; then
        export SIPSTLS_SSLYZE="$sslyze_venv/bin/sslyze"
    fi
fi

# A test run, not an edit loop: no incremental caches, and line tables only for debug info
# (backtraces keep file:line). About half the disk of a default debug build across the
# several feature builds below, and less to link.
export CARGO_INCREMENTAL=0
export CARGO_PROFILE_DEV_DEBUG=line-tables-only

echo "== formatting"
cargo fmt --all -- --check

# Workspace [lints] (missing_docs, unsafe_op_in_unsafe_fn, undocumented_unsafe_blocks) and
# clippy's defaults, warnings denied, for every crate and target with every backend that
# links beside OpenSSL.
echo "== clippy, warnings denied"
cargo clippy --locked --workspace --all-targets \
    --features sipstls-conformance/wolfssl,sipstls-conformance/mbedtls,sipstls-eval/wolfssl,sipstls-eval/mbedtls -- -D warnings

echo "== cargo test (workspace, default backends: rustls + openssl)"
cargo test --workspace --locked

# The service as an operator installs it: cargo-deb builds the package (a release build),
# dpkg installs it, systemd-analyze verifies its unit, the unit's command lines run the
# installed binary (check, start, SIGHUP, SIGTERM), and the package is purged.
echo "== sipstls-proxy's Debian package (cargo-deb, dpkg, systemd-analyze verify, the unit's commands)"
scripts/deb-test.sh

echo "== README.md's example (the facade's doctest with the tokio adapter)"
cargo test --locked -p sipstls --features tokio --doc

# Each extra backend alone (not default features): the conformance suite, the fork and
# hook checks, interop against the openssl command-line peers. wolfSSL (GPLv3) gets its
# extra compile-time features from sipstls-wolfssl-sys's build script.
# Mbed TLS beside rustls only: its TLS 1.3 identity-selection check needs the rustls crate's
# restricted client.
echo "== sipstls-conformance on Mbed TLS (beside rustls; suite, fork, allocator and lock hooks, interop)"
cargo test --locked -p sipstls-conformance -p sipstls-eval --no-default-features --features rustls,mbedtls
echo "== sipstls-conformance on wolfSSL alone"
cargo test --locked -p sipstls-conformance -p sipstls-eval --no-default-features --features wolfssl

# All four backends in one build: the interop matrix (every client x every server x
# version x client certificate) and the examples (SIP server and responder, Kamailio).
echo "== interop matrix and examples, rustls + OpenSSL + wolfSSL + Mbed TLS"
cargo test --locked -p sipstls-conformance --features wolfssl,mbedtls --test interop
cargo test --locked -p sipstls-examples --features wolfssl,mbedtls

# An independent view: malformed and unusual ClientHellos and records (built by hand and
# with tlslite-ng from PyPI, pinned, in a virtual environment) sent to each backend's
# echo-server and to `openssl s_server` with the same key in one run; a backend whose
# reaction is worse than s_server's fails unless sipstls-conformance/probes/expectations.toml
# lists the deviation with its reason (docs/robustness.md).
echo "== differential TLS probes against openssl s_server: rustls, OpenSSL, wolfSSL, Mbed TLS"
cargo build --locked -q -p sipstls-examples --features wolfssl,mbedtls --bin echo-server
sipstls-conformance/probes/run-probes.sh --echo-server target/debug/echo-server --backends rustls,openssl,wolfssl,mbedtls

# BoringSSL cannot link beside OpenSSL (same C symbols): its own build, rustls beside it.
# The first build compiles BoringSSL with cmake (about 4 minutes on 2 cores).
echo "== cargo test (BoringSSL through the boring crate, beside rustls)"
cargo test --locked -p sipstls-conformance -p sipstls-eval -p sipstls-examples --no-default-features --features rustls,boring
echo "== differential TLS probes against openssl s_server: BoringSSL"
cargo build --locked -q -p sipstls-examples --no-default-features --features rustls,boring --bin echo-server
sipstls-conformance/probes/run-probes.sh --echo-server target/debug/echo-server --backends boring

# A crate outside this workspace (a temporary directory) depending on the facade by path
# with one backend feature and nothing else: no .cargo/config.toml, no variables for the C
# builds. It builds and completes a handshake in memory, once per feature; its own target
# directory, so wolfSSL and BoringSSL are compiled again here (about 5 minutes on 2 cores).
echo "== a dependent crate outside the workspace: sipstls with only the wolfssl / boring / mbedtls feature"
scripts/dependent-crate.sh wolfssl boring mbedtls

echo "== fuzz smoke runs (cargo-fuzz on the stable toolchain, 15 s per target)"
scripts/fuzz-smoke.sh

# Every crate meant to be published, as it would be: its manifest and file list (versions
# on the path dependencies, licences, no file outside the crate), then rebuilt from the
# package alone. The harness and the examples are not published.
echo "== cargo package (every published crate, rebuilt from its package)"
cargo package --workspace --locked -q --exclude sipstls-eval --exclude sipstls-examples --exclude sipstls-example-ezk

echo "== rustdoc of every crate, warnings denied"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked -q

echo "== no leftover test servers"
if pgrep -f "sipstls-proxy|sip-responder|sip-server|confined-bench|echo-server|openssl s_(server|client)|gnutls-(serv|cli)|bssl-tool|(^|/)kamailio( |$)|(^|/)(dumpcap|tshark) |redis-server |(^|/)testssl |/sslyze " >/dev/null; then
    echo "test.sh: a test left a server running:" >&2
    pgrep -fa "sipstls-proxy|sip-responder|sip-server|confined-bench|echo-server|openssl s_(server|client)|gnutls-(serv|cli)|bssl-tool|(^|/)kamailio( |$)|(^|/)(dumpcap|tshark) |redis-server |(^|/)testssl |/sslyze " >&2
    exit 1
fi
echo "test.sh: all tests passed"
