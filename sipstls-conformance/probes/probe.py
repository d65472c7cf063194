#!/usr/bin/env python3
"""Differential TLS probes: the same malformed or unusual inputs go to every sipstls
backend's echo-server and to `openssl s_server` (the reference, same key and
certificate) in one run. Each reaction is classified (answer, alert:<description>,
close, hang, spin, crash) and a backend fails a probe when it reacts worse than
s_server, or sends another alert than s_server where the RFC fixes the alert, unless
expectations.toml lists that exact deviation with a reason.

Run through run-probes.sh, which makes the virtual environment and a throwaway key.
"""

import argparse
import inspect
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = None

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tlsbytes as tb  # noqa: E402

REFERENCE = "s_server"
READ_TIMEOUT = 3.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
SPIN_WINDOW = 1.0  # seconds of idle CPU sampling after a probe closes
SPIN_CPU = 0.3  # CPU seconds within SPIN_WINDOW that make it a spin

# --------------------------------------------------------------------------------------
# Reactions


class Reaction:
    """What a server did: kind is answer, alert, close, hang, spin, crash or other.
    version: the TLS version of an answer ('TLS1.3', 'TLS1.2', ...) when known;
    record_version: the record header's version of an alert in the clear (an alert
    whose record version is no 3.x one is still classified as an alert, and judged
    apart: clients such as OpenSSL refuse that record and never see the alert);
    port: the client's local port, which the echo-server's log names."""

    def __init__(self, kind, alert=None, detail="", version=None, record_version=None):
        self.kind, self.alert, self.detail = kind, alert, detail
        self.version, self.record_version = version, record_version
        self.port, self.log_offset = None, 0

    def label(self):
        return "alert:%s" % self.alert if self.kind == "alert" else self.kind

    def bad_record_version(self):
        return self.record_version is not None and self.record_version >> 8 != 3

    def __str__(self):
        return self.label() + (" (%s)" % self.detail if self.detail else "")


def alert_reaction(frag, ver, where=None):
    """An alert record's reaction; `ver` is its record header's version."""
    detail = where or ("fatal" if frag[0] == 2 else "level %d" % frag[0])
    if ver >> 8 != 3:
        detail += ", record version 0x%04x" % ver
    return Reaction("alert", tb.alert_name(frag[1]), detail, record_version=ver)


# Higher is better. `valid` probes are well-formed input a server should answer;
# `invalid` ones are malformed input a server should reject with an alert (answering
# them is as bad as hanging); `either` ones may be answered or rejected alike.
RANK = {
    "valid": {"crash": 0, "spin": 0, "other": 1, "hang": 1, "close": 2, "alert": 3,
              "answer": 4},
    "invalid": {"crash": 0, "spin": 0, "other": 1, "hang": 1, "answer": 1, "close": 2,
                "alert": 3},
    "either": {"crash": 0, "spin": 0, "other": 1, "hang": 1, "close": 2, "alert": 3,
               "answer": 3},
}


def read_reaction(sock, timeout=READ_TIMEOUT, sent_error=None):
    """Reads the server's first meaningful records (bounded by `timeout` in total)."""
    deadline = time.monotonic() + timeout
    buf, hs = b"", b""
    got = 0
    for _ in range(10000):  # bounded: every pass either returns or receives bytes
        while len(buf) >= 5:
            ct, ver, ln = struct.unpack(">BHH", buf[:5])
            # An alert record is read whatever its version field says (judged apart);
            # anything else must look like TLS.
            if ct not in (tb.CT_CCS, tb.CT_ALERT, tb.CT_HANDSHAKE, tb.CT_APPDATA) or (
                    ver >> 8 != 3 and not (ct == tb.CT_ALERT and ln == 2)):
                return Reaction("other", detail="non-TLS bytes %r" % buf[:8])
            if len(buf) < 5 + ln:
                break
            frag, buf = buf[5:5 + ln], buf[5 + ln:]
            if ct == tb.CT_ALERT:
                if len(frag) < 2:
                    return Reaction("other", detail="short alert record")
                return alert_reaction(frag, ver)
            if ct == tb.CT_APPDATA:
                return Reaction("answer", detail="application data before ServerHello")
            if ct == tb.CT_HANDSHAKE:
                hs += frag
                if hs[:1] != bytes([tb.HS_SERVER_HELLO]):
                    return Reaction("other", detail="handshake type %d first" % hs[0])
                if len(hs) >= 4:
                    n = struct.unpack(">I", b"\x00" + hs[1:4])[0]
                    if len(hs) >= 4 + n:
                        version = tb.parse_server_hello(hs[4:4 + n])
                        return Reaction("answer", detail="ServerHello " + version,
                                        version=version.split()[-1])
        left = deadline - time.monotonic()
        if left <= 0:
            if hs:
                return Reaction("answer", detail="partial ServerHello")
            return Reaction("hang", detail="%d bytes, no complete record" % got if got else "")
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return Reaction("close", detail="reset" + (" while sending" if sent_error else ""))
        except OSError as e:
            return Reaction("close", detail=str(e))
        if not data:
            if hs:
                return Reaction("answer", detail="partial ServerHello, then FIN")
            return Reaction("close", detail="FIN" + (" while sending" if sent_error else ""))
        got += len(data)
        buf += data
    return Reaction("other", detail="too many reads")


# --------------------------------------------------------------------------------------
# Probes

SLEEP, SHUT_WR = "sleep", "shut_wr"


class Probe:
    """name; group; kind (valid/invalid/either); rfc: the alerts the RFC allows (None:
    not fixed); steps: bytes to send, (SLEEP, s) or SHUT_WR, or a callable run(sock,
    timeout) -> Reaction for probes that need a real handshake; dos: always sample the
    server's CPU for a full window after it; tls13: the probe checks a TLS 1.3 rule (it
    offers TLS 1.3 alone, or tests RFC 8446 version negotiation), so a backend declared
    TLS 1.2-only that refuses it with an alert or answers it with TLS 1.2 is `n/a` there,
    neither passed nor failed (any other reaction is judged as usual)."""

    def __init__(self, name, group, kind, steps, rfc=None, dos=False, note="", tls13=False):
        self.name, self.group, self.kind, self.steps = name, group, kind, steps
        self.rfc = tuple(rfc) if rfc else None
        self.dos, self.note, self.tls13 = dos, note, tls13


def make_probes():
    P = []
    D = ("decode_error",)
    UM = ("unexpected_message",)
    HF = ("handshake_failure", "insufficient_security")
    PV = ("protocol_version",)
    RO = ("record_overflow",)

    def ch(**kw):
        return tb.ClientHello(**kw)

    def rec(payload, **kw):
        return tb.record(tb.CT_HANDSHAKE, payload, **kw)

    # -- sanity: real handshakes through tlslite-ng
    P.append(Probe("sanity-tls13", "sanity", "valid", lambda s, t: tls_sanity(s, t, (3, 4)),
                   tls13=True))
    P.append(Probe("sanity-tls12", "sanity", "valid", lambda s, t: tls_sanity(s, t, (3, 3))))
    P.append(Probe("sanity-raw-hello", "sanity", "valid", [ch().records()]))

    # -- large hellos (test-large-hello): must be answered, and must not spin
    for pad in (65422, 65428):
        def steps(pad=pad):
            # Only SNI, groups, signature_algorithms, supported_versions and an X25519
            # key share beside the padding, so the extensions fit their 2^16-1 bytes.
            c = ch(extensions=tb.minimal_extensions() + [tb.padding_ext(pad)])
            return [c.records()]
        P.append(Probe("large-padding-%d" % pad, "large-hello", "either", steps, dos=True,
                       note="ClientHello over 2^16 bytes in 2^14-byte records; "
                       "the server may refuse it, but must not hang or spin"))
    for n in (10953, 10948):
        def steps(n=n):
            filler = [0x0A00 + (i % 0x5000) for i in range(n - len(tb.BASE_SUITES))]
            return [ch(suites=filler + tb.BASE_SUITES).records()]
        P.append(Probe("many-ciphers-%d" % n, "large-hello", "valid", steps, dos=True,
                       note="%d cipher suites, the known ones last, over two records" % n))

    # -- fuzzed handshake type byte
    for t, known in ((0, True), (2, True), (4, True), (11, True), (16, True), (20, True),
                     (24, True), (99, False), (255, False)):
        def steps(t=t):
            m = bytearray(ch().message())
            m[0] = t
            return [rec(bytes(m))]
        P.append(Probe("hs-type-%d" % t, "fuzz-type", "invalid", steps,
                       rfc=UM if known else None))

    # -- fuzzed length fields
    def hs_len(delta):
        def steps():
            c = ch()
            n = len(c.body())
            return [rec(c.message(length=max(0, n + delta) if delta is not None else 0))]
        return steps
    P.append(Probe("hs-len-minus-1", "fuzz-length", "invalid", hs_len(-1), rfc=D))
    P.append(Probe("hs-len-minus-9", "fuzz-length", "invalid", hs_len(-9), rfc=D))
    P.append(Probe("hs-len-zero", "fuzz-length", "invalid", hs_len(None), rfc=D))

    def field(attr, value, **kw):
        def steps():
            c = ch(**kw)
            o = c.offsets()
            true = {"session_id_len": len(c.session_id), "suites_len": len(c.suites),
                    "extensions_len": o["end"] - o["extensions"],
                    "compression_len": len(c.compression)}[attr]
            setattr(c, attr, value(true) if callable(value) else value)
            return [c.records()]
        return steps
    for v in (33, 255):
        P.append(Probe("session-id-len-%d" % v, "fuzz-length", "invalid",
                       field("session_id_len", v), rfc=D))
    P.append(Probe("session-id-len-0-with-id", "fuzz-length", "invalid",
                   field("session_id_len", 0)))
    P.append(Probe("suites-len-odd", "fuzz-length", "invalid",
                   field("suites_len", lambda n: n + 1), rfc=D))
    P.append(Probe("suites-len-zero", "fuzz-length", "invalid", field("suites_len", 0)))
    P.append(Probe("suites-len-ffff", "fuzz-length", "invalid",
                   field("suites_len", 0xFFFE), rfc=D))
    P.append(Probe("ext-len-plus-1", "fuzz-length", "invalid",
                   field("extensions_len", lambda n: n + 1), rfc=D))
    P.append(Probe("ext-len-minus-1", "fuzz-length", "invalid",
                   field("extensions_len", lambda n: n - 1), rfc=D))
    P.append(Probe("ext-len-ffff", "fuzz-length", "invalid",
                   field("extensions_len", 0xFFFF), rfc=D))
    P.append(Probe("compression-len-zero", "fuzz-length", "invalid",
                   field("compression_len", 0), rfc=D))
    P.append(Probe("compression-no-null", "fuzz-length", "invalid",
                   lambda: [ch(compression=b"\x01").records()],
                   rfc=("illegal_parameter",), note="RFC 8446 4.1.2"))

    # -- truncated ClientHellos
    def trunc_record(cut, then):
        def steps():
            r = ch().records()
            return [r[:5 + cut], then]
        return steps
    for cut in (0, 1, 60):
        P.append(Probe("trunc-record-%d-then-wait" % cut, "truncated", "either",
                       trunc_record(cut, (SLEEP, 0))))
    for cut in (0, 1, 4, 60, -1):
        name = "end-1" if cut == -1 else str(cut)
        def steps(cut=cut):
            r = ch().records()
            c = len(r) - 6 if cut == -1 else cut
            return [r[:5 + c], SHUT_WR]
        P.append(Probe("trunc-record-%s-then-close" % name, "truncated", "either", steps))

    def trunc_body(point):
        def steps():
            c = ch()
            o = c.offsets()
            at = point(o)
            return [rec(tb.handshake(tb.HS_CLIENT_HELLO, c.body()[:at]))]
        return steps
    for label, point in (("in-version", lambda o: 1), ("after-random", lambda o: 34),
                         ("in-session-id", lambda o: 50),
                         ("after-suites-len", lambda o: o["suites"]),
                         ("in-suites", lambda o: o["suites"] + 3),
                         ("before-compression", lambda o: o["compression_len"] + 1),
                         ("in-extensions", lambda o: o["end"] - 3)):
        P.append(Probe("trunc-body-%s" % label, "truncated", "invalid", trunc_body(point),
                       rfc=D, note="record and handshake lengths match the cut body"))

    # -- record layer fragmentation of the ClientHello (valid)
    def split_at(points):
        def steps():
            m = ch().message()
            out, last = b"", 0
            for p in points(len(m)) + [len(m)]:
                out += rec(m[last:p])
                last = p
            return [out]
        return steps
    P.append(Probe("frag-1-byte-records", "fragmentation", "valid",
                   lambda: [tb.records(tb.CT_HANDSHAKE, ch().message(), 1)]))
    P.append(Probe("frag-after-type-byte", "fragmentation", "valid", split_at(lambda n: [1])))
    P.append(Probe("frag-after-header", "fragmentation", "valid", split_at(lambda n: [4])))
    P.append(Probe("frag-three-records", "fragmentation", "valid",
                   split_at(lambda n: [n // 3, 2 * n // 3])))
    P.append(Probe("frag-header-bytewise-tcp", "fragmentation", "valid",
                   lambda: [x for b in ch().records() for x in (bytes([b]), (SLEEP, 0.002))]))

    def empty_between():
        m = ch().message()
        h = n = len(m) // 2
        return [rec(b"") + rec(m[:h]) + rec(b"") + rec(m[h:])]
    P.append(Probe("frag-empty-records-between", "fragmentation", "either", empty_between,
                   note="zero-length handshake records: senders MUST NOT, receivers not fixed"))

    # -- CCS and other content types around the hello (plaintext)
    ccs = tb.record(tb.CT_CCS, b"\x01")
    P.append(Probe("ccs-before-hello", "ccs", "invalid", lambda: [ccs + ch().records()],
                   rfc=UM, note="RFC 8446 5: CCS before the first ClientHello"))

    def ccs_between():
        m = ch().message()
        return [rec(m[:40]) + ccs + rec(m[40:])]
    P.append(Probe("ccs-between-hello-fragments", "ccs", "invalid", ccs_between, rfc=UM,
                   note="RFC 8446 5.1: no other record inside a fragmented message"))
    P.append(Probe("zero-content-type-before-hello", "content-type", "invalid",
                   lambda: [tb.record(0, ch().message())], rfc=UM))
    P.append(Probe("appdata-before-hello", "content-type", "invalid",
                   lambda: [tb.record(tb.CT_APPDATA, b"INVITE sip:x SIP/2.0\r\n\r\n")], rfc=UM))
    P.append(Probe("empty-alert-before-hello", "content-type", "invalid",
                   lambda: [tb.record(tb.CT_ALERT, b"") + ch().records()]))

    # -- TLS 1.3 after the handshake (tlslite-ng), TLS 1.2 CKE split by CCS
    P.append(Probe("tls13-zero-type-empty", "content-type", "invalid",
                   lambda s, t: tls13_after_handshake(s, t, "zero-empty"), rfc=UM,
                   note="TLSInnerPlaintext of one zero byte (RFC 8446 5.4)",
                   tls13=True))
    P.append(Probe("tls13-zero-type-zero-padding", "content-type", "invalid",
                   lambda s, t: tls13_after_handshake(s, t, "zero-padded"), rfc=UM,
                   note="TLSInnerPlaintext of 32 zero bytes",
                   tls13=True))
    P.append(Probe("tls13-zero-type-with-data", "content-type", "invalid",
                   lambda s, t: tls13_after_handshake(s, t, "zero-data"), rfc=UM,
                   note="data then content type 0: the last non-zero byte is no content type",
                   tls13=True))
    P.append(Probe("tls13-plaintext-overflow", "record-overflow", "invalid",
                   lambda s, t: tls13_after_handshake(s, t, "plain-overflow"), rfc=RO,
                   note="encrypted record whose plaintext is 2^14+1 bytes",
                   tls13=True))
    P.append(Probe("tls13-ciphertext-overflow", "record-overflow", "invalid",
                   lambda s, t: tls13_after_handshake(s, t, "cipher-overflow"), rfc=RO,
                   note="application_data record of 2^14+257 bytes",
                   tls13=True))
    P.append(Probe("tls12-cke-split-by-ccs", "ccs", "invalid",
                   lambda s, t: tls12_cke(s, t, "split")))
    P.append(Probe("tls12-ccs-before-cke", "ccs", "invalid",
                   lambda s, t: tls12_cke(s, t, "ccs-first")))

    # -- legacy_version (test-tls13-legacy-version)
    def legacy(version, versions=None):
        def steps():
            if versions is None:
                return [ch(version=version, tls13=False,
                           suites=tb.TLS12_ECDSA_SUITES + tb.TLS12_RSA_SUITES).records()]
            return [ch(version=version,
                       extensions=tb.base_extensions(versions=versions)).records()]
        return steps
    P.append(Probe("legacy-0304-no-sv", "legacy-version", "valid", legacy(0x0304),
                   note="RFC 8446 4.2.1: negotiate TLS 1.2"))
    P.append(Probe("legacy-ff01-no-sv", "legacy-version", "valid", legacy(0xFF01)))
    P.append(Probe("legacy-0300-no-sv", "legacy-version", "invalid", legacy(0x0300), rfc=PV,
                   note="RFC 7568 3"))
    P.append(Probe("legacy-0304-sv-13", "legacy-version", "valid", legacy(0x0304, [0x0304]),
                   note="RFC 8446 4.2.1: legacy_version ignored with supported_versions",
                   tls13=True))
    P.append(Probe("legacy-0300-sv-13", "legacy-version", "either", legacy(0x0300, [0x0304]),
                   note="RFC 8446 says to ignore legacy_version; OpenSSL refuses SSLv3 there",
                   tls13=True))
    P.append(Probe("sv-only-ssl3", "legacy-version", "invalid",
                   legacy(0x0300, [0x0300, 0x0200]), rfc=PV,
                   note="test-tls13-legacy-version: no version in common"))
    P.append(Probe("sv-only-future-versions", "legacy-version", "invalid",
                   legacy(0x0303, [0x0305, 0x0401]), rfc=PV,
                   note="RFC 8446 4.2.1: no version in common; a TLS 1.2 server, which "
                   "knows no supported_versions, negotiates by legacy_version", tls13=True))

    # -- signature schemes the ECDSA P-256 key cannot make (test-ecdsa-sig-flexibility)
    def sig(schemes, tls13):
        def steps():
            if tls13:
                return [ch(suites=tb.TLS13_SUITES,
                           extensions=tb.base_extensions(sig_algs=schemes,
                                                         versions=[0x0304])).records()]
            return [ch(tls13=False, suites=tb.TLS12_ECDSA_SUITES + tb.TLS12_RSA_SUITES,
                       extensions=tb.base_extensions(tls13=False, sig_algs=schemes)).records()]
        return steps
    P.append(Probe("sigalgs-tls13-rsa-only", "sig-algs", "invalid",
                   sig(tb.RSA_ONLY_SIG_ALGS, True), rfc=HF, tls13=True,
                   note="TLS 1.3 suites and supported_versions 1.3 only"))
    P.append(Probe("sigalgs-tls12-rsa-only", "sig-algs", "invalid",
                   sig(tb.RSA_ONLY_SIG_ALGS, False), rfc=HF))
    P.append(Probe("sigalgs-tls13-ecdsa-p384-only", "sig-algs", "invalid",
                   sig([tb.ECDSA_P384_SHA384], True), rfc=HF,
                   note="TLS 1.3 binds the curve: P-256 key cannot make ecdsa_secp384r1_sha384",
                   tls13=True))
    P.append(Probe("sigalgs-tls12-ecdsa-sha384-only", "sig-algs", "valid",
                   sig([tb.ECDSA_P384_SHA384], False),
                   note="TLS 1.2 pairs (sha384, ecdsa) with any curve"))

    # -- record_overflow before the handshake
    for total in (2 ** 14 + 1, 2 ** 14 + 256 + 1, 2 ** 14 + 2048 + 1, 0xFFFF):
        def steps(total=total):
            return [rec(tb.padded_hello_message(total))]
        P.append(Probe("record-overflow-%d" % total, "record-overflow", "invalid", steps,
                       rfc=RO, note="one plaintext record of %d bytes holding a ClientHello" % total))
    return P


# --------------------------------------------------------------------------------------
# Probes with a real handshake (tlslite-ng)


def tls_settings(version):
    from tlslite import HandshakeSettings
    s = HandshakeSettings()
    s.minVersion = version
    s.maxVersion = version
    s.keyShares = ["x25519"]
    s.eccCurves = ["x25519", "secp256r1"]
    s.use_heartbeat_extension = False
    return s


def tls_exception_reaction(e, where):
    from tlslite.errors import (TLSRemoteAlert, TLSAbruptCloseError, TLSClosedConnectionError,
                                TLSLocalAlert)
    if isinstance(e, TLSRemoteAlert):
        return Reaction("alert", tb.alert_name(e.description), where)
    if isinstance(e, socket.timeout):
        return Reaction("hang", detail=where)
    if isinstance(e, (TLSAbruptCloseError, TLSClosedConnectionError, ConnectionError, EOFError)):
        return Reaction("close", detail=where)
    if isinstance(e, TLSLocalAlert):
        # The server chose a version below the client's minimum (a TLS 1.2 ServerHello to
        # a TLS 1.3-only client): an answer in that version, which the client refused.
        m = re.search(r"Too old version: \((\d+), (\d+)\)", str(e))
        if m and m.group(1) == "3":
            version = {"4": "TLS1.3", "3": "TLS1.2", "2": "TLS1.1", "1": "TLS1.0",
                       "0": "SSL3"}.get(m.group(2), "3.%s" % m.group(2))
            return Reaction("answer", version=version, detail="%s: ServerHello %s, which "
                            "the client (TLS 1.3 only) refused" % (where, version))
        return Reaction("other", detail="%s: client refused: %s" % (where, e))
    if isinstance(e, OSError):
        return Reaction("close", detail="%s: %s" % (where, e))
    return Reaction("other", detail="%s: %s: %s" % (where, type(e).__name__, e))


def tls_handshake(sock, timeout, version):
    from tlslite import TLSConnection
    sock.settimeout(timeout)
    conn = TLSConnection(sock)
    conn.handshakeClientCert(settings=tls_settings(version), serverName="sip.example.test")
    return conn


def tls_read_reaction(conn, timeout):
    """The server's reaction on an established connection: data, alert, close, hang."""
    conn.sock.settimeout(timeout)
    try:
        data = conn.read(max=65536, min=1)
    except Exception as e:  # noqa: BLE001 - every failure is classified
        return tls_exception_reaction(e, "after the handshake")
    if data:
        return Reaction("answer", detail="%d bytes of application data" % len(data))
    return Reaction("close", detail="close_notify or FIN")


def tls_sanity(sock, timeout, version):
    try:
        conn = tls_handshake(sock, timeout, version)
    except Exception as e:  # noqa: BLE001
        return tls_exception_reaction(e, "during the handshake")
    conn.write(b"GET / HTTP/1.0\r\n\r\n")
    return tls_read_reaction(conn, timeout)


def tls13_after_handshake(sock, timeout, what):
    from tlslite.messages import Message
    try:
        conn = tls_handshake(sock, timeout, (3, 4))
    except Exception as e:  # noqa: BLE001
        return tls_exception_reaction(e, "during the handshake")
    try:
        if what == "cipher-overflow":
            conn.sock.sendall(tb.record(tb.CT_APPDATA, os.urandom(2 ** 14 + 257), version=0x0303))
        else:
            msg = {"zero-empty": Message(0, bytearray()),
                   "zero-padded": Message(0, bytearray(31)),
                   "zero-data": Message(0, bytearray(b"GET / HTTP/1.0\r\n\r\n")),
                   "plain-overflow": Message(tb.CT_APPDATA, bytearray(b"A" * (2 ** 14 + 1))),
                   }[what]
            for _ in conn._recordLayer.sendRecord(msg):
                pass
    except OSError as e:
        return Reaction("close", detail="while sending: %s" % e)
    return tls_read_reaction(conn, timeout)


def read_flight(sock, deadline, until_type):
    """Plaintext handshake messages until one of `until_type`: (messages, None) or
    (None, Reaction) when the server did something else."""
    buf, hs, msgs = b"", b"", []
    for _ in range(10000):
        while len(buf) >= 5:
            ct, _, ln = struct.unpack(">BHH", buf[:5])
            if len(buf) < 5 + ln:
                break
            buf_ver = buf[1:3]
            frag, buf = buf[5:5 + ln], buf[5 + ln:]
            if ct == tb.CT_ALERT and len(frag) >= 2:
                return None, alert_reaction(frag, struct.unpack(">H", buf_ver)[0],
                                            "during the handshake")
            if ct != tb.CT_HANDSHAKE:
                return None, Reaction("other", detail="record type %d in the flight" % ct)
            hs += frag
            while len(hs) >= 4:
                n = struct.unpack(">I", b"\x00" + hs[1:4])[0]
                if len(hs) < 4 + n:
                    break
                msgs.append((hs[0], hs[4:4 + n]))
                hs = hs[4 + n:]
                if msgs[-1][0] == until_type:
                    return msgs, None
        left = deadline - time.monotonic()
        if left <= 0:
            return None, Reaction("hang", detail="during the handshake")
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError as e:
            return None, Reaction("close", detail="during the handshake: %s" % e)
        if not data:
            return None, Reaction("close", detail="FIN during the handshake")
        buf += data
    return None, Reaction("other", detail="too many reads")


def tls12_cke(sock, timeout, variant):
    """TLS 1.2 ECDHE-ECDSA up to ServerHelloDone, then a ClientKeyExchange split by a
    ChangeCipherSpec (test-interleaved-CKE-with-CCS), or a CCS before the CKE."""
    hello = tb.ClientHello(tls13=False, suites=tb.TLS12_ECDSA_SUITES,
                           extensions=tb.base_extensions(tls13=False,
                                                         groups=[tb.GROUP_X25519, tb.GROUP_P256]))
    sock.sendall(hello.records())
    msgs, bad = read_flight(sock, time.monotonic() + timeout, 14)
    if bad:
        return bad
    ske = [body for t, body in msgs if t == 12]
    if not ske or ske[0][0] != 3:
        return Reaction("other", detail="no named-curve ServerKeyExchange")
    group = struct.unpack(">H", ske[0][1:3])[0]
    public = tb.x25519_public() if group == tb.GROUP_X25519 else tb.p256_public()
    cke = tb.handshake(16, tb.vec8(public))
    ccs = tb.record(tb.CT_CCS, b"\x01", version=0x0303)
    if variant == "split":
        data = (tb.record(tb.CT_HANDSHAKE, cke[:2], version=0x0303) + ccs +
                tb.record(tb.CT_HANDSHAKE, cke[2:], version=0x0303))
    else:
        data = ccs + tb.record(tb.CT_HANDSHAKE, cke, version=0x0303)
    try:
        sock.sendall(data)
    except OSError as e:
        return read_reaction(sock, timeout, sent_error=e)
    return read_reaction(sock, timeout)


# --------------------------------------------------------------------------------------
# Servers


class Server:
    """One server under test (or the reference), restarted when it dies or spins."""

    def __init__(self, name, argv, log_path, pid_dir, ready_re):
        self.name, self.argv, self.log_path, self.pid_dir = name, argv, log_path, pid_dir
        self.ready_re = re.compile(ready_re)
        self.proc, self.port, self.restarts = None, None, 0

    def start(self):
        with open(self.log_path, "ab") as log:
            log.write(("\n=== probe.py: starting %s\n" % " ".join(self.argv)).encode())
            log.flush()
            start_offset = log.tell()
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        open(os.path.join(self.pid_dir, "%s.%d" % (self.name, self.proc.pid)), "w").close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(start_offset)
                m = self.ready_re.search(f.read().decode(errors="replace"))
            if m:
                self.port = int(m.group(1))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("%s did not start; log tail:\n%s" % (self.name, self.log_tail()))

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(3)
        try:
            os.unlink(os.path.join(self.pid_dir, "%s.%d" % (self.name, self.proc.pid)))
        except FileNotFoundError:
            pass
        self.proc = None

    def restart(self):
        self.stop()
        self.restarts += 1
        self.start()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self):
        try:
            with open("/proc/%d/stat" % self.proc.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, IndexError, ValueError):
            return None

    def log_tail(self, n=15):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
            return "\n".join("    " + line for line in lines[-n:])
        except OSError:
            return "    (no log)"


def cpu_in_window(server, window):
    a = server.cpu_seconds()
    time.sleep(window)
    b = server.cpu_seconds()
    return None if a is None or b is None else b - a


def takes_socket(fn):
    """Probes with a real handshake are callables of (sock, timeout)."""
    params = inspect.signature(fn).parameters.values()
    return len([p for p in params if p.default is inspect.Parameter.empty]) == 2


def run_probe(server, probe, timeout):
    """Runs one probe against one server: a Reaction, with spin and crash detection."""
    try:
        log_offset = os.path.getsize(server.log_path)
    except OSError:
        log_offset = 0
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    port = sock.getsockname()[1]
    reaction = None
    try:
        if callable(probe.steps) and takes_socket(probe.steps):
            reaction = probe.steps(sock, timeout)
        else:
            steps = probe.steps() if callable(probe.steps) else probe.steps
            sent_error = None
            for step in steps:
                try:
                    if isinstance(step, bytes):
                        sock.sendall(step)
                    elif step == SHUT_WR:
                        sock.shutdown(socket.SHUT_WR)
                    elif step[0] == SLEEP:
                        time.sleep(step[1])
                except OSError as e:
                    sent_error = e
                    break
            reaction = read_reaction(sock, timeout, sent_error)
    except Exception as e:  # noqa: BLE001 - a probe bug must not stop the run
        reaction = Reaction("other", detail="probe error: %s: %s" % (type(e).__name__, e))
    finally:
        try:
            sock.close()
        except OSError:
            pass
    # CPU after the client closed: a short look for every probe, the full window for the
    # large-hello probes, hangs and closes, or when the short look saw activity.
    short = 0.2
    used = cpu_in_window(server, short)
    if probe.dos or reaction.kind in ("hang", "close") or (used or 0) > short * SPIN_CPU / SPIN_WINDOW:
        used = cpu_in_window(server, SPIN_WINDOW)
        if used is not None and used > SPIN_CPU:
            reaction = Reaction("spin", detail="%.2f s CPU in %.1f s after close; before: %s"
                                % (used, SPIN_WINDOW, reaction))
    if not server.alive():
        reaction = Reaction("crash", detail="exit %s; before: %s" % (server.proc.returncode, reaction))
    if reaction.kind in ("spin", "crash"):
        server.restart()
    reaction.port, reaction.log_offset = port, log_offset
    return reaction


# --------------------------------------------------------------------------------------
# Comparison


def load_expectations(path):
    """(deviations, tls12_only): the [[deviation]] entries, and {backend: reason} of the
    [[tls12_only]] entries (backends without TLS 1.3)."""
    if not path or not os.path.exists(path):
        return [], {}
    with open(path, "rb") as f:
        if path.endswith(".json"):
            import json
            data = json.load(f)
        else:
            if tomllib is None:
                raise SystemExit("probe.py: expectations in TOML need Python 3.11+")
            data = tomllib.load(f)
    out = data.get("deviation", [])
    for d in out:
        for key in ("backend", "probe", "reaction", "reason"):
            if not d.get(key):
                raise SystemExit("probe.py: expectation %r lacks %s" % (d, key))
    tls12_only = {}
    for d in data.get("tls12_only", []):
        for key in ("backend", "reason"):
            if not d.get(key):
                raise SystemExit("probe.py: tls12_only entry %r lacks %s" % (d, key))
        tls12_only[d["backend"]] = " ".join(d["reason"].split())
    return out, tls12_only


def judge(probe, ref, got, tls12_only=False):
    """(verdict, text): verdict is 'ok', 'note' (reported, not failing), 'n/a' (a TLS 1.3
    probe that a TLS 1.2-only backend refused or answered with TLS 1.2) or 'fail'.
    The record version of an alert is judged apart, in record_version_failure."""
    if probe.tls13 and tls12_only:
        if got.kind == "alert" and not got.bad_record_version():
            return "n/a", "needs TLS 1.3; refused with %s" % got.label()
        if got.kind == "answer" and got.version == "TLS1.2":
            return "n/a", "needs TLS 1.3; answered with TLS 1.2"
    if probe.tls13 and got.kind == "answer" and got.version not in (None, "TLS1.3"):
        return "fail", "answered with %s where only TLS 1.3 applies (s_server: %s)" % (
            got.version, ref.label())
    if ref.kind in ("spin", "crash", "other"):
        return "note", "reference %s" % ref.label()
    rank = RANK[probe.kind]
    if rank[got.kind] < rank[ref.kind]:
        return "fail", "%s is worse than s_server's %s" % (got.label(), ref.label())
    if got.kind == "alert" and ref.kind == "alert" and got.alert != ref.alert:
        if probe.rfc and got.alert not in probe.rfc:
            return "fail", "alert %s, RFC requires %s (s_server: %s)" % (
                got.alert, "/".join(probe.rfc), ref.alert)
        return "note", "alert %s, s_server %s" % (got.alert, ref.alert)
    if got.kind == "alert" and probe.rfc and got.alert not in probe.rfc and ref.kind != "alert":
        return "note", "alert %s, RFC requires %s" % (got.alert, "/".join(probe.rfc))
    if got.kind != ref.kind:
        return "note", "%s, s_server %s" % (got.label(), ref.label())
    return "ok", ""


def record_version_failure(got, listed):
    """An alert in a record whose version is no 3.x one fails unless an entry that
    matched the reaction also names that record_version: OpenSSL's client (s_client,
    Python's ssl) refuses such a first record with "wrong version number" and never
    reads the alert, so the peer learns nothing of why."""
    if got.kind != "alert" or not got.bad_record_version():
        return None
    want = "0x%04x" % got.record_version
    if any(str(e.get("record_version", "")).lower() == want for e in listed):
        return None
    return ("alert %s sent in a record of version %s (not 3.x): OpenSSL clients see "
            "\"wrong version number\", not the alert" % (got.alert, want))


# --------------------------------------------------------------------------------------
# Main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--echo-server", help="path of the echo-server binary")
    ap.add_argument("--backends", default="", help="comma-separated backends; empty: s_server only")
    ap.add_argument("--openssl", default="openssl", help="openssl command for s_server")
    ap.add_argument("--work-dir", required=True, help="logs and pid files")
    ap.add_argument("--expectations", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "expectations.toml"))
    ap.add_argument("--markdown", help="write the results as markdown to FILE")
    ap.add_argument("--timeout", type=float, default=READ_TIMEOUT)
    ap.add_argument("--only", help="run only probes whose name matches this regex")
    ap.add_argument("--tls12-only", default="", help="comma-separated backends without "
                    "TLS 1.3, beside the [[tls12_only]] entries of the expectations")
    ap.add_argument("--list", action="store_true", help="list the probes and exit")
    args = ap.parse_args()

    probes = make_probes()
    if args.only:
        probes = [p for p in probes if re.search(args.only, p.name)]
    if args.list:
        for p in probes:
            print("%-36s %-16s %-8s %-32s %s" % (p.name, p.group, p.kind,
                                                 "/".join(p.rfc or ()) or "-",
                                                 "needs TLS 1.3" if p.tls13 else ""))
        return 0
    backends = [b for b in args.backends.split(",") if b]
    if backends and not args.echo_server:
        ap.error("--backends needs --echo-server")
    expectations, tls12_only = load_expectations(args.expectations)
    for b in args.tls12_only.split(","):
        if b:
            tls12_only.setdefault(b, "--tls12-only")

    pid_dir = os.path.join(args.work_dir, "pids")
    os.makedirs(pid_dir, exist_ok=True)
    servers = [Server(REFERENCE, [args.openssl, "s_server", "-accept", "127.0.0.1:0",
                                  "-cert", args.cert, "-key", args.key, "-www"],
                      os.path.join(args.work_dir, "s_server.log"), pid_dir,
                      r"ACCEPT 127\.0\.0\.1:(\d+)")]
    for b in backends:
        servers.append(Server(b, [args.echo_server, "--cert", args.cert, "--key", args.key,
                                  "--backend", b, "--listen", "127.0.0.1:0"],
                              os.path.join(args.work_dir, "echo-server-%s.log" % b), pid_dir,
                              r"listening on 127\.0\.0\.1:(\d+)"))
    results = {s.name: {} for s in servers}
    started = time.monotonic()
    print_lock = threading.Lock()

    def worker(server):
        for p in probes:
            r = run_probe(server, p, args.timeout)
            results[server.name][p.name] = r
            with print_lock:
                print("%-10s %-36s %s" % (server.name, p.name, r), flush=True)

    try:
        for s in servers:
            s.start()
        threads = [threading.Thread(target=worker, args=(s,), daemon=True) for s in servers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for s in servers:
            s.stop()
    elapsed = time.monotonic() - started
    return report(args, probes, servers, results, expectations, elapsed, tls12_only)


def log_line(server, port, offset=0):
    """The echo-server's log line for the connection from `port` (its typed error), the
    first one written after `offset` (the log's size when the probe began: ports recur)."""
    if not port:
        return None
    try:
        with open(server.log_path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if "127.0.0.1:%d:" % port in line:
            return line.strip()
    return None


def report(args, probes, servers, results, expectations, elapsed, tls12_only=None):
    tls12_only = tls12_only or {}
    passed = failed = not_applicable = 0
    summary = {}
    stale = []
    ref = results[REFERENCE]
    for s in servers[1:]:
        counts = {k: 0 for k in ("answer", "alert", "close", "hang", "spin", "crash", "other")}
        listed, unlisted, notes, na = [], [], [], []
        for p in probes:
            got, ref_r = results[s.name][p.name], ref[p.name]
            counts[got.kind] += 1
            verdict, text = judge(p, ref_r, got, s.name in tls12_only)
            exp = [e for e in expectations
                   if e["backend"] in (s.name, "*") and e["probe"] == p.name]
            match = [e for e in exp if e["reaction"] == got.label()]
            if exp and not match:
                stale.append("%s %s: expected %s, saw %s" % (s.name, p.name,
                                                           exp[0]["reaction"], got.label()))
            if verdict == "fail" and match:
                reason = " ".join(match[0]["reason"].split())
                verdict, text = "listed", "%s [listed: %s]" % (
                    text, reason if len(reason) <= 90 else reason[:87] + "...")
            bad_record = record_version_failure(got, match)
            if bad_record:
                verdict, text = "fail", bad_record + (
                    "; besides: %s" % text if text and verdict != "ok" else "")
            if verdict == "fail":
                failed += 1
                line = log_line(s, got.port, got.log_offset)
                unlisted.append((p.name, got.label(), text + (
                    "\n      log: %s" % line if line else "")))
            elif verdict == "n/a":
                not_applicable += 1
                na.append((p.name, got.label(), "%s (%s)" % (text, got)))
            else:
                passed += 1
                if verdict == "listed":
                    listed.append((p.name, got.label(), text))
                elif verdict == "note":
                    notes.append((p.name, got.label(), text))
        # The declaration is checked against the raw hello, which offers TLS 1.3 and 1.2.
        raw = results[s.name].get("sanity-raw-hello")
        if raw is not None and raw.kind == "answer":
            if s.name in tls12_only and raw.version == "TLS1.3":
                failed += 1
                unlisted.append(("sanity-raw-hello", raw.label(), "declared TLS 1.2-only "
                                 "(tls12_only) but answered TLS 1.3: remove the declaration"))
            elif s.name not in tls12_only and raw.version == "TLS1.2" and \
                    ref["sanity-raw-hello"].version == "TLS1.3":
                notes.append(("sanity-raw-hello", raw.label(), "answered TLS 1.2 where "
                              "s_server answers TLS 1.3; a backend without TLS 1.3 needs a "
                              "[[tls12_only]] entry"))
        summary[s.name] = (counts, listed, unlisted, notes, na)
    if len(servers) == 1:  # reference only: every probe that ran counts as passed
        passed = len(probes)

    out = []
    out.append("")
    out.append("== summary (%d probes, %.0f s)" % (len(probes), elapsed))
    ref_counts = {}
    for p in probes:
        ref_counts[ref[p.name].kind] = ref_counts.get(ref[p.name].kind, 0) + 1
    out.append("%-10s %s" % (REFERENCE, " ".join("%s=%d" % kv for kv in sorted(ref_counts.items()))))
    for p in probes:
        r = ref[p.name]
        if p.rfc and not (r.kind == "alert" and r.alert in p.rfc):
            out.append("  note: s_server %s: %s, RFC: %s" % (p.name, r.label(), "/".join(p.rfc)))
    for name, (counts, listed, unlisted, notes, na) in summary.items():
        out.append("%-10s answer=%d alert=%d close=%d hang=%d spin=%d crash=%d other=%d "
                   "deviations: listed=%d unlisted=%d notes=%d n/a=%d%s" % (
                       name, counts["answer"], counts["alert"], counts["close"], counts["hang"],
                       counts["spin"], counts["crash"], counts["other"], len(listed),
                       len(unlisted), len(notes), len(na),
                       " (TLS 1.2-only: %s)" % tls12_only[name] if name in tls12_only else ""))
        for pname, lab, text in unlisted:
            out.append("  FAIL %s: %s" % (pname, text))
        for pname, lab, text in listed:
            out.append("  listed %s: %s" % (pname, text))
        for pname, lab, text in notes:
            out.append("  note %s: %s" % (pname, text))
        for pname, lab, text in na:
            out.append("  n/a %s: %s" % (pname, text))
        srv = [s for s in servers if s.name == name][0]
        if srv.restarts:
            out.append("  restarted %d times (spin or crash)" % srv.restarts)
        if unlisted:
            out.append("  log tail (%s):" % srv.log_path)
            out.append(srv.log_tail())
    for s in stale:
        out.append("stale expectation (not failing): %s" % s)
    if not_applicable:
        out.append("probes: %d n/a (TLS 1.3 probes against TLS 1.2-only backends: %s), "
                   "counted neither as passed nor as failed" % (
                       not_applicable, ", ".join(n for n in summary if summary[n][4])))
    out.append("probes: %d passed, %d failed" % (passed, failed))
    print("\n".join(out), flush=True)
    if args.markdown:
        write_markdown(args.markdown, probes, servers, results, summary, elapsed, passed, failed,
                       not_applicable)
    return 1 if failed else 0


def write_markdown(path, probes, servers, results, summary, elapsed, passed, failed,
                   not_applicable=0):
    names = [s.name for s in servers]
    md = ["# TLS probe results", "",
          "%d probes, servers: %s, %.0f s. %d passed, %d failed%s." % (
              len(probes), ", ".join(names), elapsed, passed, failed,
              ", %d n/a (TLS 1.3 probes against TLS 1.2-only backends)" % not_applicable
              if not_applicable else ""), "",
          "| probe | kind | RFC alert | " + " | ".join(names) + " |",
          "|---|---|---|" + "---|" * len(names)]
    fails = {n: {p for p, _, _ in summary[n][2]} for n in summary}
    listed = {n: {p for p, _, _ in summary[n][1]} for n in summary}
    na = {n: {p for p, _, _ in summary[n][4]} for n in summary}
    for p in probes:
        cells = []
        for n in names:
            r = results[n][p.name]
            cell = r.label()
            if r.kind == "answer" and r.version:
                cell += " " + r.version
            if r.bad_record_version():
                cell += " in record version 0x%04x" % r.record_version
            if p.name in fails.get(n, ()):
                cell = "**%s** (fail)" % cell
            elif p.name in listed.get(n, ()):
                cell += " (listed)"
            elif p.name in na.get(n, ()):
                cell = "n/a: %s" % cell
            cells.append(cell)
        md.append("| %s | %s | %s | %s |" % (p.name, p.kind, "/".join(p.rfc or ()) or "",
                                             " | ".join(cells)))
    md.append("")
    for n, (counts, lst, unl, notes, n_a) in summary.items():
        md.append("**%s**: %s; listed %d, unlisted %d, n/a %d." % (
            n, ", ".join("%s %d" % kv for kv in counts.items()), len(lst), len(unl), len(n_a)))
        md.append("")
    with open(path, "w") as f:
        f.write("\n".join(md) + "\n")


if __name__ == "__main__":
    sys.exit(main())
