#!/usr/bin/env bash
# Builds a throwaway crate outside this repository that depends on the facade `sipstls` by
# path with one backend feature and nothing else (no .cargo/config.toml, no environment
# variables for the C libraries), and runs it: one TLS handshake in memory between a server
# and a client domain of that backend (scripts/dependent-crate/main.rs), printing the
# negotiated version. Fails if the build or the handshake fails.
#
# Usage: scripts/dependent-crate.sh [FEATURE...]   (default: wolfssl boring mbedtls)
#
# Each feature is built alone (`default-features = false`). The crate resolves against a
# copy of the workspace's Cargo.lock, offline, and the script fails if it picked a package
# version the workspace's lock does not have. Builds go to a target directory in the
# temporary directory, shared by the features of one run, and removed at the end.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

if (($# == 0)); then
    set -- wolfssl boring mbedtls
fi

for feature in "$@"; do
    case "$feature" in
    wolfssl) ;; # autoconf, automake, libtool, make, patch, libclang-dev
    boring) ;;  # cmake, libclang-dev, a C++ compiler (BoringSSL's cmake build)
    mbedtls) ;; # gcc, libclang-dev; cmake, clang, ninja-build (mbedtls-rs-sys's build step)
    *)
        echo "dependent-crate.sh: unknown feature $feature (wolfssl, boring, mbedtls)" >&2
        exit 1
        ;;
    esac
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
case "$tmp/" in
"$repo"/*)
    echo "dependent-crate.sh: the temporary directory $tmp is inside the repository (TMPDIR?)" >&2
    exit 1
    ;;
esac

# Everything the workspace's lock names, downloaded once, so the builds below run offline.
(cd "$repo" && cargo fetch --locked -q)

# A test PKI for sip.example.test (P-256, valid two days), made fresh for this run.
pki="$tmp/pki"
mkdir "$pki"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=sipstls dependent-crate test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$pki/ca.key" -out "$pki/ca.pem" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=sip.example.test" -keyout "$pki/leaf.key" -out "$pki/leaf.csr" 2>/dev/null
printf '%s\n' "subjectAltName=DNS:sip.example.test" "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth,clientAuth" >"$pki/leaf.ext"
openssl x509 -req -in "$pki/leaf.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 2 -extfile "$pki/leaf.ext" -out "$pki/leaf.pem" 2>/dev/null

crate="$tmp/crate"
mkdir -p "$crate/src"
cp "$repo/scripts/dependent-crate/main.rs" "$crate/src/main.rs"

# name@version of every package in a Cargo.lock.
lock_versions() {
    awk '/^\[\[package\]\]/ { name = "" } /^name = / { name = $3 } /^version = / && name != "" { print name "@" $3 }' "$1" |
        tr -d '"' | sort -u
}

for feature in "$@"; do
    echo "-- dependent crate with sipstls feature \`$feature\`"
    cat >"$crate/Cargo.toml" <<TOML
[package]
name = "sipstls-dependent-check"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
sipstls = { path = "$repo/sipstls", default-features = false, features = ["$feature"] }

# Its own workspace root: nothing is inherited from a workspace above the temporary directory.
[workspace]
TOML
    cp "$repo/Cargo.lock" "$crate/Cargo.lock"
    # Only the feature: no variables a workspace config or a shell might add for the C
    # libraries' builds.
    (cd "$crate" && env -u C_EXTRA_FLAGS -u enable_crl -u CFLAGS \
        CARGO_TARGET_DIR="$tmp/target" cargo build --offline -q)
    extra="$(comm -23 <(lock_versions "$crate/Cargo.lock") <(lock_versions "$repo/Cargo.lock") |
        grep -v '^sipstls-dependent-check@' || true)"
    if [ -n "$extra" ]; then
        echo "dependent-crate.sh: the dependent crate resolved versions the workspace's Cargo.lock does not have:" >&2
        echo "$extra" >&2
        exit 1
    fi
    "$tmp/target/debug/sipstls-dependent-check" "$pki"
done
echo "dependent-crate.sh: passed for ${*}"
