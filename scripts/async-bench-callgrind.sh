#!/usr/bin/env bash
# Instructions per operation of an async-bench server, under callgrind (noise-free, unlike
# CPU time on a shared machine). The server runs under valgrind for two fixed operation
# counts, N1 and N2, driven by an async-bench client process; the difference of the two
# programs' totals divided by the difference of the operations the server counted is the
# cost per operation, without the start-up (key loading, aws-lc's entropy seeding) and
# the set-up of the workload (the 1,000 handshakes of rr1000).
#
#   scripts/async-bench-callgrind.sh MODE WORKLOAD N1 N2 [OUTDIR]
#   e.g. scripts/async-bench-callgrind.sh sipstls-rustls rr1 2000 12000
#
# MODE: native-rustls | sipstls-rustls | native-openssl | sipstls-openssl
# WORKLOAD: handshake | rr1 | rr1000
# Needs valgrind and the release binary (cargo build --release -p sipstls-examples
# --features async-bench --bin async-bench); ASYNC_BENCH overrides its path. The profiles
# stay in OUTDIR (default /tmp/async-bench-callgrind) for callgrind_annotate.
set -euo pipefail
MODE=$1 W=$2 N1=$3 N2=$4
OUT=${5:-/tmp/async-bench-callgrind}
BIN=${ASYNC_BENCH:-${CARGO_TARGET_DIR:-target}/release/async-bench}
mkdir -p "$OUT"
[ -d "$OUT/pki" ] || "$BIN" --make-pki "$OUT/pki"

# One run: the server under callgrind, a client for N operations; prints "IR OPS".
run() {
    local n=$1 tag="$MODE.$W.$1"
    local fifo="$OUT/ctl.$tag" srv_out="$OUT/srv.$tag.out"
    rm -f "$fifo" "$srv_out"
    mkfifo "$fifo"
    valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.$tag" \
        "$BIN" --server "$MODE" --workload "$W" --pki "$OUT/pki" <"$fifo" >"$srv_out" 2>"$OUT/srv.$tag.err" &
    local spid=$!
    exec 3>"$fifo"
    for _ in $(seq 600); do grep -q PORT "$srv_out" 2>/dev/null && break; sleep 0.1; done
    local port
    port=$(awk '/^PORT/{print $2}' "$srv_out")
    echo START >&3
    timeout 1800 "$BIN" --client "$W" --port "$port" --pki "$OUT/pki" --count "$n" >"$OUT/cli.$tag.out"
    echo STOP >&3
    for _ in $(seq 600); do grep -q RESULT "$srv_out" && break; sleep 0.1; done
    echo QUIT >&3
    exec 3>&-
    for _ in $(seq 300); do kill -0 "$spid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$spid" 2>/dev/null; then kill -9 "$spid"; fi
    wait "$spid" || true
    rm -f "$fifo"
    local ir ops
    ir=$(callgrind_annotate --auto=no "$OUT/cg.$tag" | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}')
    ops=$(awk '/^RESULT/{print $2}' "$srv_out")
    echo "$ir $ops"
}

read -r ir1 ops1 < <(run "$N1")
read -r ir2 ops2 < <(run "$N2")
echo "$MODE $W: $(( (ir2 - ir1) / (ops2 - ops1) )) instructions per operation (server counted $ops1 and $ops2 operations; totals $ir1 and $ir2)"
