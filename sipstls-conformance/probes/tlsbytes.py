"""Hand-built TLS bytes: records, handshake headers and a ClientHello whose every length
field can be overridden, for probes that must send malformed input no TLS library would
produce. Only `struct` and the standard library; the key shares are real points (X25519
from tlslite-ng's helper, P-256 from python-ecdsa, which tlslite-ng depends on)."""

import os
import struct

# Content types (RFC 8446 5.1).
CT_CCS, CT_ALERT, CT_HANDSHAKE, CT_APPDATA = 20, 21, 22, 23
# Handshake types.
HS_CLIENT_HELLO, HS_SERVER_HELLO = 1, 2

ALERTS = {
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac",
    21: "decryption_failed", 22: "record_overflow", 30: "decompression_failure",
    40: "handshake_failure", 41: "no_certificate", 42: "bad_certificate",
    43: "unsupported_certificate", 44: "certificate_revoked", 45: "certificate_expired",
    46: "certificate_unknown", 47: "illegal_parameter", 48: "unknown_ca",
    49: "access_denied", 50: "decode_error", 51: "decrypt_error", 60: "export_restriction",
    70: "protocol_version", 71: "insufficient_security", 80: "internal_error",
    86: "inappropriate_fallback", 90: "user_canceled", 100: "no_renegotiation",
    109: "missing_extension", 110: "unsupported_extension", 111: "certificate_unobtainable",
    112: "unrecognized_name", 113: "bad_certificate_status_response",
    114: "bad_certificate_hash_value", 115: "unknown_psk_identity",
    116: "certificate_required", 120: "no_application_protocol", 121: "ech_required",
}


def alert_name(code):
    return ALERTS.get(code, "unknown_%d" % code)


# Extension types.
EXT_SNI, EXT_GROUPS, EXT_POINT_FORMATS, EXT_SIG_ALGS = 0, 10, 11, 13
EXT_EMS, EXT_PADDING, EXT_SUPPORTED_VERSIONS, EXT_PSK_MODES = 23, 21, 43, 45
EXT_KEY_SHARE, EXT_RENEGOTIATION_INFO = 51, 0xFF01

GROUP_X25519, GROUP_P256 = 0x001D, 0x0017

# Signature schemes.
ECDSA_P256_SHA256, ECDSA_P384_SHA384 = 0x0403, 0x0503
RSA_PSS_RSAE_SHA256, RSA_PSS_RSAE_SHA384, RSA_PSS_RSAE_SHA512 = 0x0804, 0x0805, 0x0806
RSA_PKCS1_SHA256, RSA_PKCS1_SHA384, RSA_PKCS1_SHA512 = 0x0401, 0x0501, 0x0601
BASE_SIG_ALGS = [ECDSA_P256_SHA256, RSA_PSS_RSAE_SHA256, RSA_PKCS1_SHA256]
RSA_ONLY_SIG_ALGS = [RSA_PSS_RSAE_SHA256, RSA_PSS_RSAE_SHA384, RSA_PSS_RSAE_SHA512,
                     RSA_PKCS1_SHA256, RSA_PKCS1_SHA384, RSA_PKCS1_SHA512]

TLS13_SUITES = [0x1301, 0x1302, 0x1303]
TLS12_ECDSA_SUITES = [0xC02B, 0xC02C, 0xCCA9]
TLS12_RSA_SUITES = [0xC02F, 0xC030, 0xCCA8]
BASE_SUITES = TLS13_SUITES + TLS12_ECDSA_SUITES + TLS12_RSA_SUITES

SNI_NAME = b"sip.example.test"
HRR_RANDOM = bytes.fromhex(
    "CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")

MAX_PLAINTEXT = 2 ** 14


def u8(v):
    return struct.pack(">B", v)


def u16(v):
    return struct.pack(">H", v)


def u24(v):
    return struct.pack(">I", v)[1:]


def vec8(b):
    return u8(len(b)) + b


def vec16(b):
    return u16(len(b)) + b


def record(ct, payload, version=0x0301, length=None):
    """One record; `length` overrides the header's length field."""
    return u8(ct) + u16(version) + u16(len(payload) if length is None else length) + payload


def records(ct, payload, size=MAX_PLAINTEXT, version=0x0301):
    """`payload` cut into records of at most `size` bytes."""
    out = b""
    for i in range(0, len(payload), size):
        out += record(ct, payload[i:i + size], version)
    return out


def handshake(msg_type, body, length=None):
    return u8(msg_type) + u24(len(body) if length is None else length) + body


def ext(ext_type, body):
    return u16(ext_type) + vec16(body)


def x25519_public():
    from tlslite.utils.x25519 import x25519, X25519_G
    return bytes(x25519(bytearray(os.urandom(32)), X25519_G))


def p256_public():
    import ecdsa
    key = ecdsa.SigningKey.generate(curve=ecdsa.NIST256p)
    return b"\x04" + key.get_verifying_key().to_string()


def sni_ext(name=SNI_NAME):
    return ext(EXT_SNI, vec16(u8(0) + vec16(name)))


def groups_ext(groups):
    return ext(EXT_GROUPS, vec16(b"".join(u16(g) for g in groups)))


def sig_algs_ext(schemes):
    return ext(EXT_SIG_ALGS, vec16(b"".join(u16(s) for s in schemes)))


def supported_versions_ext(versions):
    return ext(EXT_SUPPORTED_VERSIONS, vec8(b"".join(u16(v) for v in versions)))


def key_share_ext(groups):
    entries = b""
    for g in groups:
        key = x25519_public() if g == GROUP_X25519 else p256_public()
        entries += u16(g) + vec16(key)
    return ext(EXT_KEY_SHARE, vec16(entries))


def padding_ext(n):
    return ext(EXT_PADDING, b"\x00" * n)


def base_extensions(tls13=True, sig_algs=None, versions=None, key_shares=None,
                    groups=None):
    """The realistic base: SNI, groups x25519+P-256, point formats, signature_algorithms,
    EMS, renegotiation_info and, for TLS 1.3, supported_versions, psk modes, key_share."""
    groups = groups or [GROUP_X25519, GROUP_P256]
    exts = [
        sni_ext(),
        groups_ext(groups),
        ext(EXT_POINT_FORMATS, vec8(b"\x00")),
        sig_algs_ext(sig_algs or BASE_SIG_ALGS),
        ext(EXT_EMS, b""),
        ext(EXT_RENEGOTIATION_INFO, vec8(b"")),
    ]
    if tls13:
        exts += [
            supported_versions_ext(versions or [0x0304, 0x0303]),
            ext(EXT_PSK_MODES, vec8(b"\x01")),
            key_share_ext(key_shares if key_shares is not None else groups),
        ]
    return exts


def minimal_extensions():
    """SNI, groups, signature_algorithms, supported_versions and one X25519 key share."""
    return [sni_ext(), groups_ext([GROUP_X25519, GROUP_P256]), sig_algs_ext(BASE_SIG_ALGS),
            supported_versions_ext([0x0304, 0x0303]), key_share_ext([GROUP_X25519])]


class ClientHello:
    """A ClientHello body kept as fields, so probes can break any one of them."""

    def __init__(self, version=0x0303, suites=None, extensions=None, session_id=None,
                 compression=b"\x00", tls13=True):
        self.version = version
        self.random = os.urandom(32)
        self.session_id = bytes(range(32)) if session_id is None else session_id
        self.suites = b"".join(u16(s) for s in (suites if suites is not None else BASE_SUITES))
        self.compression = compression
        self.extensions = extensions if extensions is not None else base_extensions(tls13)
        # Overrides of the length fields (None: the true length).
        self.session_id_len = None
        self.suites_len = None
        self.compression_len = None
        self.extensions_len = None

    def body(self):
        exts = b"".join(self.extensions)
        out = u16(self.version) + self.random
        out += u8(len(self.session_id) if self.session_id_len is None else self.session_id_len)
        out += self.session_id
        out += u16(len(self.suites) if self.suites_len is None else self.suites_len) + self.suites
        out += u8(len(self.compression) if self.compression_len is None else self.compression_len)
        out += self.compression
        out += u16(len(exts) if self.extensions_len is None else self.extensions_len) + exts
        return out

    def offsets(self):
        """Byte offsets in body() of the field boundaries, for truncation probes."""
        o = {"version": 0, "random": 2, "session_id_len": 34, "session_id": 35}
        o["suites_len"] = 35 + len(self.session_id)
        o["suites"] = o["suites_len"] + 2
        o["compression_len"] = o["suites"] + len(self.suites)
        o["compression"] = o["compression_len"] + 1
        o["extensions_len"] = o["compression"] + len(self.compression)
        o["extensions"] = o["extensions_len"] + 2
        o["end"] = o["extensions"] + sum(len(e) for e in self.extensions)
        return o

    def message(self, length=None):
        return handshake(HS_CLIENT_HELLO, self.body(), length)

    def records(self, size=MAX_PLAINTEXT):
        return records(CT_HANDSHAKE, self.message(), size)


def padded_hello_message(total_len, **kw):
    """A ClientHello handshake message of exactly `total_len` bytes (header included),
    filled with a padding extension."""
    ch = ClientHello(**kw)
    base = len(ch.message())
    need = total_len - base - 4
    if need < 0:
        raise ValueError("hello already longer than %d" % total_len)
    ch.extensions = ch.extensions + [padding_ext(need)]
    msg = ch.message()
    assert len(msg) == total_len, (len(msg), total_len)
    return msg


def parse_server_hello(body):
    """Negotiated version of a ServerHello body: 'TLS1.3', 'TLS1.2', 'HRR', ..."""
    try:
        legacy = struct.unpack(">H", body[:2])[0]
        random = body[2:34]
        sid_len = body[34]
        pos = 35 + sid_len + 3
        version = legacy
        if pos + 2 <= len(body):
            ext_len = struct.unpack(">H", body[pos:pos + 2])[0]
            pos += 2
            end = min(len(body), pos + ext_len)
            while pos + 4 <= end:
                etype, elen = struct.unpack(">HH", body[pos:pos + 4])
                if etype == EXT_SUPPORTED_VERSIONS and elen == 2:
                    version = struct.unpack(">H", body[pos + 4:pos + 6])[0]
                pos += 4 + elen
        name = {0x0304: "TLS1.3", 0x0303: "TLS1.2", 0x0302: "TLS1.1", 0x0301: "TLS1.0",
                0x0300: "SSL3"}.get(version, "0x%04x" % version)
        return ("HRR " if random == HRR_RANDOM else "") + name
    except (IndexError, struct.error):
        return "unparsed"
