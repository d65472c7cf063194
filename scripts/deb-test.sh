#!/usr/bin/env bash
# The Debian package of sipstls-proxy, as an operator gets it: built with cargo-deb,
# installed with dpkg, its systemd unit checked with `systemd-analyze verify`, then the
# installed binary run the way the unit runs it (ExecStartPre, ExecStart, ExecReload's
# SIGHUP, KillSignal) with a configuration and test keys made here, TLS through it to an
# upstream, and finally the package purged. This machine has no systemd as PID 1, so the
# unit's command lines are run directly; no service is left running.
#
# Needs root (dpkg). Usage: scripts/deb-test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
    echo "deb-test: installing cargo-deb $CARGO_DEB_VERSION"
    cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION"
fi
[ "$(id -u)" -eq 0 ] || { echo "deb-test: needs root (dpkg -i)" >&2; exit 1; }

echo "deb-test: cargo deb -p sipstls-proxy"
deb=$(cargo deb --locked --strip -p sipstls-proxy 2>/dev/null | tail -n 1)
[ -f "$deb" ] || { echo "deb-test: cargo deb made no package ($deb)" >&2; exit 1; }

work=$(mktemp -d /tmp/sipstls-deb-test.XXXXXX)
pid= upstream_pid=
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    [ -n "$upstream_pid" ] && kill "$upstream_pid" 2>/dev/null || true
    dpkg --purge sipstls-proxy >/dev/null 2>&1 || true
    rm -rf "$work" /etc/sipstls-proxy
}
trap cleanup EXIT
fail() { echo "deb-test: FAILED: $*" >&2; [ -f "$work/proxy.log" ] && sed 's/^/  proxy: /' "$work/proxy.log" >&2; exit 1; }

echo "deb-test: dpkg -i $(basename "$deb")"
dpkg -i "$deb" >/dev/null
[ -x /usr/bin/sipstls-proxy ] || fail "no /usr/bin/sipstls-proxy"
getent passwd sipstls-proxy >/dev/null || fail "postinst made no sipstls-proxy user"
unit=/usr/lib/systemd/system/sipstls-proxy.service
[ -f "$unit" ] || fail "no unit at $unit"

echo "deb-test: systemd-analyze verify"
verify=$(systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify: $verify"
# Warnings that concern the unit itself (not this container's other units) fail the check.
if printf '%s\n' "$verify" | grep -q "sipstls-proxy.service"; then
    fail "systemd-analyze verify complains about the unit: $verify"
fi

# Test keys, made now: a root CA and a server leaf for sip.example.test.
certs=/etc/sipstls-proxy/certs
mkdir -p "$certs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=Test Root" \
    -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=sip.example.test" \
    -keyout "$certs/server.key" -out "$work/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:sip.example.test\nbasicConstraints=CA:FALSE\n' >"$work/ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial -days 2 \
    -extfile "$work/ext" -out "$certs/server.pem" 2>/dev/null
# The key readable by the service's group only, as the packaged tls.cfg asks.
chgrp sipstls-proxy "$certs/server.key"
chmod 640 "$certs/server.key"

# An upstream that reads the PROXY v2 header and answers each read with "UP:" and the data.
cat >"$work/upstream.py" <<'PY'
import socket, sys, threading
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(16)
print(srv.getsockname()[1], flush=True)
def serve(c):
    c.settimeout(30)
    head = b""
    while len(head) < 16:
        d = c.recv(16 - len(head))
        if not d: return
        head += d
    need = int.from_bytes(head[14:16], "big")
    while need > 0:
        d = c.recv(need)
        if not d: return
        need -= len(d)
    while True:
        d = c.recv(4096)
        if not d: return
        c.sendall(b"UP:" + d)
for _ in range(16):
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
coproc UPSTREAM { exec python3 "$work/upstream.py"; }
upstream_pid=$UPSTREAM_PID
read -r -t 10 up_port <&"${UPSTREAM[0]}" || fail "the upstream did not start"

# The packaged configuration, with loopback test ports.
conf=/etc/sipstls-proxy/sipstls-proxy.toml
grep -q '^user = "sipstls-proxy"' "$conf" || fail "the packaged configuration does not switch user"
sed -i -e 's/0.0.0.0:5061/127.0.0.1:0/' -e "s/127.0.0.1:5060/127.0.0.1:$up_port/" \
    -e 's/127.0.0.1:9161/127.0.0.1:0/' -e 's/^\[service\]/[service]\ndrain_timeout = 2/' "$conf"

echo "deb-test: ExecStartPre"
pre=$(sed -n 's/^ExecStartPre=//p' "$unit")
$pre >"$work/check.out" 2>&1 || { cat "$work/check.out" >&2; fail "ExecStartPre (--check-config) failed"; }
grep -q "configuration ok" "$work/check.out" || fail "--check-config printed no verdict"

echo "deb-test: ExecStart"
start=$(sed -n 's/^ExecStart=//p' "$unit")
$start 2>"$work/proxy.log" &
pid=$!
for _ in $(seq 100); do grep -q " ready " "$work/proxy.log" 2>/dev/null && break; sleep 0.1; done
grep -q " ready " "$work/proxy.log" || fail "not ready in 10 s"
port=$(sed -n 's/.*listening.*address=127.0.0.1:\([0-9]*\) kind="tls".*/\1/p' "$work/proxy.log" | head -n 1)
mport=$(sed -n 's/.*listening address=127.0.0.1:\([0-9]*\) kind="metrics".*/\1/p' "$work/proxy.log" | head -n 1)
[ -n "$port" ] && [ -n "$mport" ] || fail "no listening lines with ports"

uid=$(id -u sipstls-proxy)
grep -Eq "^Uid:[[:space:]]+$uid[[:space:]]+$uid[[:space:]]+$uid[[:space:]]+$uid$" "/proc/$pid/status" ||
    fail "not running as sipstls-proxy ($uid): $(grep Uid: /proc/$pid/status)"

tls_round_trip() {
    printf 'OPTIONS' | timeout 10 openssl s_client -quiet -connect "127.0.0.1:$port" -servername sip.example.test \
        -CAfile "$work/ca.pem" -verify_return_error -verify_hostname sip.example.test 2>/dev/null | head -c 10
}
[ "$(tls_round_trip)" = "UP:OPTIONS" ] || fail "no TLS round trip through the installed proxy"

echo "deb-test: ExecReload (SIGHUP) as the unprivileged user"
reload=$(sed -n 's/^ExecReload=//p' "$unit")
MAINPID=$pid eval "${reload//\$MAINPID/$pid}"
for _ in $(seq 100); do grep -q "reloaded the TLS domains" "$work/proxy.log" && break; sleep 0.1; done
grep -q "reloaded the TLS domains" "$work/proxy.log" || fail "SIGHUP did not reload"
[ "$(tls_round_trip)" = "UP:OPTIONS" ] || fail "no TLS round trip after the reload"

exec 3<>"/dev/tcp/127.0.0.1/$mport"
printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3
metrics=$(timeout 5 cat <&3)
exec 3<&-
printf '%s\n' "$metrics" | grep -q '^sipstls_handshakes_total{listener="127.0.0.1:0"} 2$' || fail "metrics: $metrics"
printf '%s\n' "$metrics" | grep -q '^sipstls_reloads_total{result="ok"} 1$' || fail "metrics: no reload counted"

echo "deb-test: KillSignal (SIGTERM): drain and exit"
kill -TERM "$pid"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then fail "still running 10 s after SIGTERM"; fi
wait "$pid" || fail "exit status $? after SIGTERM"
pid=
grep -q "stopped" "$work/proxy.log" || fail "no 'stopped' line"

echo "deb-test: dpkg --purge"
dpkg --purge sipstls-proxy >/dev/null
[ ! -e /usr/bin/sipstls-proxy ] || fail "the binary is still installed"
! getent passwd sipstls-proxy >/dev/null || fail "the user is still there after purge"
pgrep -x sipstls-proxy >/dev/null && fail "a sipstls-proxy process is left"
echo "deb-test: passed"
