#!/usr/bin/env bash
# Fuzz smoke run: every cargo-fuzz target in sipstls-fuzz/ for a short time (FUZZ_SECONDS, default
# 15 s each) on the default backends (rustls + OpenSSL), starting from the seeds in
# sipstls-fuzz/seeds/<target> plus a scratch corpus. Works on the stable toolchain: cargo-fuzz is
# installed from crates.io when missing, and its unstable flags are allowed with
# RUSTC_BOOTSTRAP=1 and `--sanitizer none` (libFuzzer's coverage guidance still works;
# AddressSanitizer needs nightly: FUZZ_SANITIZER=address with a nightly toolchain).
#
#   scripts/fuzz-smoke.sh                     # all targets, 15 s each
#   FUZZ_SECONDS=300 scripts/fuzz-smoke.sh tls_cfg proxy_v2
#   FUZZ_FEATURES="--no-default-features --features wolfssl" scripts/fuzz-smoke.sh server_session
#
# A crash fails the run; its input is kept in sipstls-fuzz/artifacts/<target>/ (replay it with
# `cargo fuzz run <target> <file> --sanitizer none`).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-15}
sanitizer=${FUZZ_SANITIZER:-none}
# Word splitting is wanted here: extra cargo flags.
# shellcheck disable=SC2206
features=(${FUZZ_FEATURES:-})
targets=("$@")
if ((${#targets[@]} == 0)); then
    targets=(tls_cfg proxy_v2 cert_key server_session client_session)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz from crates.io"
    cargo install --locked cargo-fuzz
fi
# Stable rustc accepts the -Z flags cargo-fuzz passes only with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

echo "== fuzz: building ${targets[*]} (sanitizer: $sanitizer)"
for t in "${targets[@]}"; do
    cargo fuzz build --fuzz-dir sipstls-fuzz --sanitizer "$sanitizer" "${features[@]}" "$t"
done
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t"
    echo "== fuzz: $t for ${seconds} s"
    # -timeout: one input taking over 10 s is a hang and fails the run; -rss_limit_mb
    # bounds memory. The log's last lines give executions and coverage.
    if ! cargo fuzz run --fuzz-dir sipstls-fuzz --sanitizer "$sanitizer" "${features[@]}" "$t" \
        "$scratch/$t" "sipstls-fuzz/seeds/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$scratch/$t.log" 2>&1; then
        tail -60 "$scratch/$t.log"
        echo "fuzz-smoke: $t FAILED (input in sipstls-fuzz/artifacts/$t/)" >&2
        exit 1
    fi
    grep -E "^#[0-9]+.*(DONE|pulse)|stat::number_of_executed_units|stat::peak_rss_mb|cov:" "$scratch/$t.log" | tail -3
done
echo "fuzz-smoke: ok (${#targets[@]} targets, ${seconds} s each)"
