#!/usr/bin/env bash
# Differential TLS probes: sends malformed and unusual TLS input to the echo-server of
# each sipstls backend and to `openssl s_server` (the reference) in one run, and fails
# when a backend reacts worse than s_server without a reason in expectations.toml.
#
#   run-probes.sh [--echo-server PATH] [--backends rustls,openssl] [--markdown FILE]
#                 [--only REGEX] [--timeout SECONDS] [--keep-logs]
#   run-probes.sh --self-test   (checks that a spinning server is caught: spin-double.py)
#
# Without --backends (or SIPSTLS_PROBE_BACKENDS) only s_server is probed. ECHO_SERVER and
# SIPSTLS_PROBE_BACKENDS may stand for the first two options. Makes a virtual environment
# with tlslite-ng under ${XDG_CACHE_HOME:-$HOME/.cache}/sipstls/probes-venv and a
# throwaway ECDSA P-256 key and certificate in a temporary directory; every server runs on
# 127.0.0.1 on a port the kernel picks, and is stopped by its PID on exit.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

echo_server="${ECHO_SERVER:-}"
backends="${SIPSTLS_PROBE_BACKENDS:-}"
keep_logs=
self_test=
extra=()
while (($#)); do
    case "$1" in
        --echo-server) echo_server="$2"; shift 2 ;;
        --backends) backends="$2"; shift 2 ;;
        --markdown) extra+=(--markdown "$(realpath -m "$2")"); shift 2 ;;
        --only | --timeout | --expectations) extra+=("$1" "$2"); shift 2 ;;
        --keep-logs) keep_logs=1; shift ;;
        --self-test) self_test=1; shift ;;
        -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "run-probes.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [ -n "$self_test" ]; then
    echo_server="$here/spin-double.py"
    backends=double
    extra+=(--only '^(sanity-raw-hello|large-padding-65422)$' --expectations /dev/null)
fi
if [ -n "$backends" ]; then
    if [ -z "$echo_server" ] || [ ! -x "$echo_server" ]; then
        echo "run-probes.sh: --echo-server PATH (an executable echo-server) is needed for --backends" >&2
        exit 2
    fi
    echo_server="$(realpath "$echo_server")"
fi
command -v openssl >/dev/null || { echo "run-probes.sh: openssl (the command) is missing" >&2; exit 2; }

# The virtual environment, remade when requirements.txt changes.
venv="${XDG_CACHE_HOME:-$HOME/.cache}/sipstls/probes-venv"
stamp="$venv/.requirements"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$here/requirements.txt" "$stamp"; then
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
        else
            echo "run-probes.sh: python3 -m venv does not work (install python3-venv)" >&2
            exit 2
        fi
    fi
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$stamp"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/sipstls-probes.XXXXXX")"
cleanup() {
    local f pid
    # Every server probe.py started and has not reaped is listed as pids/NAME.PID.
    for f in "$work"/pids/*; do
        [ -e "$f" ] || continue
        pid="${f##*.}"
        kill -TERM "$pid" 2>/dev/null || true
    done
    sleep 0.2
    for f in "$work"/pids/*; do
        [ -e "$f" ] || continue
        pid="${f##*.}"
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ -n "$keep_logs" ]; then
        echo "run-probes.sh: logs kept in $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$work/key.pem" -out "$work/cert.pem" -days 2 -subj "/CN=sip.example.test" \
    -addext "subjectAltName=DNS:sip.example.test" 2>/dev/null

args=(--cert "$work/cert.pem" --key "$work/key.pem" --work-dir "$work")
[ -n "$backends" ] && args+=(--echo-server "$echo_server" --backends "$backends")
status=0
if [ -n "$self_test" ]; then
    out="$("$venv/bin/python" "$here/probe.py" "${args[@]}" "${extra[@]}")" || true
    printf '%s\n' "$out"
    if grep -q '^double .*large-padding-65422 .*spin' <<<"$out" \
        && grep -q '^double .*sanity-raw-hello .*hang' <<<"$out"; then
        echo "self-test: 2 passed, 0 failed"
    else
        echo "self-test: 0 passed, 2 failed (the spin or the hang was not seen)"
        status=1
    fi
    exit "$status"
fi
"$venv/bin/python" "$here/probe.py" "${args[@]}" "${extra[@]}" || status=$?
exit "$status"
