//! PROXY protocol version 2: the binary header a TLS terminator sends ahead of the plaintext
//! so that the SIP worker behind it (Kamailio with `tcp_accept_haproxy`, ...) learns the real
//! client address and what the TLS layer saw (SNI, ALPN, version, cipher, client certificate).
//!
//! The layout follows the HAProxy PROXY protocol specification, section 2.2:
//!
//! ```text
//! 0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A   signature (12 bytes)
//! ver_cmd                               0x20 LOCAL, 0x21 PROXY
//! family/transport                      0x00 UNSPEC, 0x11 TCP4, 0x21 TCP6 (0x12/0x22 UDP, 0x31/0x32 UNIX)
//! len (u16, big-endian)                 bytes that follow: addresses, then TLVs
//! addresses                             TCP4: 4+4+2+2 = 12 bytes; TCP6: 16+16+2+2 = 36 bytes
//! TLVs                                  type u8, length u16 big-endian, value
//! ```
//!
//! What this module supports:
//!
//! - TCP over IPv4 and IPv6 in full, and UNSPEC (no addresses).
//! - UDP and UNIX families are recognised. With the LOCAL command their address block is
//!   skipped (the receiver must use the real connection endpoints anyway) and the TLVs are
//!   still read; with the PROXY command they are refused with
//!   [`ProxyError::UnsupportedFamily`], since a SIP-over-TLS stream is never UDP or UNIX.
//! - TLVs: ALPN, AUTHORITY (the SNI), CRC32C (verified when present, written on request),
//!   UNIQUE_ID, SSL with all its sub-TLVs, NETNS. Any other type (NOOP padding included) is
//!   kept as raw bytes in [`ProxyHeader::other`], in order.
//!
//! Parsing never panics and never reads or allocates beyond the `16 + len` bytes the header
//! announces (at most 65 551 bytes). A known TLV that appears twice is an error
//! ([`ProxyError::DuplicateTlv`]) rather than a silent choice of one of them.
//!
//! ```
//! use sipstls_core::proxy::{Parsed, ProxyHeader};
//!
//! let mut header = ProxyHeader::proxy("192.0.2.1:40000".parse().unwrap(), "192.0.2.2:5061".parse().unwrap());
//! header.authority = Some("sip.example.com".into());
//! let bytes = header.encode().unwrap();
//! assert_eq!(ProxyHeader::parse(&bytes).unwrap(), Parsed::Complete { header, consumed: bytes.len() });
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::error::CertificateError;
use crate::info::{TlsInfo, VerifyResult};
use crate::x509::CertificateInfo;

/// The 12-byte signature that starts every version 2 header.
pub const SIGNATURE: [u8; 12] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];

/// Length of the fixed part: signature, `ver_cmd`, family, `len`.
pub const FIXED_LEN: usize = 16;

/// The largest header that can exist: the fixed part plus a `len` of 65 535.
pub const MAX_HEADER_LEN: usize = FIXED_LEN + u16::MAX as usize;

/// The longest `PP2_TYPE_UNIQUE_ID` value the specification allows.
pub const MAX_UNIQUE_ID_LEN: usize = 128;

/// TLV and sub-TLV type codes of the specification.
pub mod tlv {
    /// Application-Layer Protocol Negotiation: the negotiated protocol, opaque bytes.
    pub const ALPN: u8 = 0x01;
    /// The host name the client asked for (the TLS SNI), UTF-8.
    pub const AUTHORITY: u8 = 0x02;
    /// CRC32C of the whole header (computed with this value zeroed), big-endian u32.
    pub const CRC32C: u8 = 0x03;
    /// Padding, ignored by receivers.
    pub const NOOP: u8 = 0x04;
    /// An opaque connection identifier, at most 128 bytes.
    pub const UNIQUE_ID: u8 = 0x05;
    /// TLS facts: `client` u8, `verify` u32 big-endian, then sub-TLVs.
    pub const SSL: u8 = 0x20;
    /// Sub-TLV of SSL: protocol version (`TLSv1.3`), US-ASCII.
    pub const SSL_VERSION: u8 = 0x21;
    /// Sub-TLV of SSL: the client certificate's subject common name.
    pub const SSL_CN: u8 = 0x22;
    /// Sub-TLV of SSL: the cipher suite (`TLS_AES_128_GCM_SHA256`), US-ASCII.
    pub const SSL_CIPHER: u8 = 0x23;
    /// Sub-TLV of SSL: the algorithm that signed the frontend's (server's) certificate.
    pub const SSL_SIG_ALG: u8 = 0x24;
    /// Sub-TLV of SSL: the key algorithm of the frontend's (server's) certificate.
    pub const SSL_KEY_ALG: u8 = 0x25;
    /// Sub-TLV of SSL: the key-exchange group (`x25519`), US-ASCII.
    pub const SSL_GROUP: u8 = 0x26;
    /// Sub-TLV of SSL: the signature scheme of the handshake, US-ASCII.
    pub const SSL_SIG_SCHEME: u8 = 0x27;
    /// Sub-TLV of SSL: the client's leaf certificate, DER.
    pub const SSL_CLIENT_CERT: u8 = 0x28;
    /// The network namespace name, US-ASCII.
    pub const NETNS: u8 = 0x30;
}

/// Family/transport byte values.
mod family {
    pub const UNSPEC: u8 = 0x00;
    pub const TCP4: u8 = 0x11;
    pub const UDP4: u8 = 0x12;
    pub const TCP6: u8 = 0x21;
    pub const UDP6: u8 = 0x22;
    pub const UNIX_STREAM: u8 = 0x31;
    pub const UNIX_DGRAM: u8 = 0x32;

    /// Size of the address block, or `None` for a byte the specification does not define.
    pub fn address_len(family: u8) -> Option<usize> {
        match family {
            UNSPEC => Some(0),
            TCP4 | UDP4 => Some(12),
            TCP6 | UDP6 => Some(36),
            UNIX_STREAM | UNIX_DGRAM => Some(216),
            _ => None,
        }
    }
}

/// Why a PROXY v2 header could not be parsed or encoded.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The bytes do not start with the 12-byte v2 signature (also reported as soon as the
    /// bytes received so far diverge from it, so a stream reader can give up early).
    #[error("not a PROXY protocol v2 header (bad signature)")]
    BadSignature,
    /// The high nibble of `ver_cmd` is not 2.
    #[error("unsupported PROXY protocol version {0}")]
    UnsupportedVersion(u8),
    /// The low nibble of `ver_cmd` is neither 0 (LOCAL) nor 1 (PROXY).
    #[error("unknown PROXY protocol command {0:#x}")]
    UnknownCommand(u8),
    /// The family/transport byte is not one the specification defines.
    #[error("unknown address family/transport byte {0:#04x}")]
    UnknownFamily(u8),
    /// A defined family this module does not carry with the PROXY command (UDP, UNIX).
    #[error("address family/transport {0:#04x} is not supported with the PROXY command")]
    UnsupportedFamily(u8),
    /// `len` is smaller than the address block of the family.
    #[error("length {len} is shorter than the {needed}-byte address block of family {family:#04x}")]
    LengthTooShort {
        /// The family/transport byte.
        family: u8,
        /// The `len` field.
        len: u16,
        /// The size of that family's address block.
        needed: usize,
    },
    /// A TLV header or value runs past the end of the header.
    #[error("TLV at offset {offset} runs past the end of the header")]
    TlvOverrun {
        /// Offset of the TLV's type byte from the start of the header.
        offset: usize,
    },
    /// A known TLV or SSL sub-TLV appears twice.
    #[error("TLV type {0:#04x} appears more than once")]
    DuplicateTlv(u8),
    /// A TLV whose value has a fixed or maximum size has another length (CRC32C must be 4
    /// bytes, UNIQUE_ID at most 128).
    #[error("TLV type {tlv:#04x} has an invalid length {len}")]
    BadTlvLength {
        /// The TLV type.
        tlv: u8,
        /// Its value's length.
        len: usize,
    },
    /// The SSL TLV is shorter than its 5-byte `client` + `verify` prefix.
    #[error("SSL TLV of {len} bytes is shorter than 5")]
    SslTlvTooShort {
        /// The SSL TLV's value length.
        len: usize,
    },
    /// A sub-TLV of the SSL TLV runs past the end of the SSL TLV.
    #[error("SSL sub-TLV at offset {offset} runs past the end of the SSL TLV")]
    SslSubTlvOverrun {
        /// Offset of the sub-TLV's type byte from the start of the header.
        offset: usize,
    },
    /// A text TLV or sub-TLV is not valid UTF-8.
    #[error("TLV type {tlv:#04x} is not valid UTF-8")]
    InvalidUtf8 {
        /// The TLV or sub-TLV type.
        tlv: u8,
    },
    /// The CRC32C TLV does not match the header.
    #[error("CRC32C mismatch: header says {received:#010x}, computed {computed:#010x}")]
    Crc32cMismatch {
        /// The checksum carried in the header.
        received: u32,
        /// The checksum of the bytes received.
        computed: u32,
    },
    /// Encoding: what follows the fixed 16 bytes (or one TLV value) exceeds 65 535 bytes.
    #[error("PROXY header too long to encode: {len} bytes where at most 65535 fit")]
    TooLong {
        /// The length that did not fit.
        len: usize,
    },
    /// Encoding: [`ProxyHeader::other`] or [`SslInfo::other`] holds a type that has its
    /// own field (it would be written twice).
    #[error("TLV type {0:#04x} has a dedicated field and may not be given as a raw TLV")]
    ReservedTlvType(u8),
}

/// The command of a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::exhaustive_enums)] // closed: the two commands of PROXY v2
pub enum Command {
    /// The connection was made by the proxy itself (health check): the receiver uses the
    /// real connection endpoints and ignores any addresses.
    Local,
    /// The connection is relayed for a client: the addresses are the client's.
    Proxy,
}

bitflags::bitflags! {
    /// The `client` byte of the SSL TLV. Bits the specification does not define are kept.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct ClientFlags: u8 {
        /// `PP2_CLIENT_SSL`: the client connected over TLS.
        const SSL = 0x01;
        /// `PP2_CLIENT_CERT_CONN`: the client presented a certificate in this connection's
        /// handshake.
        const CERT_CONN = 0x02;
        /// `PP2_CLIENT_CERT_SESS`: the client presented a certificate at least once in the
        /// TLS session this connection belongs to (also set on resumption).
        const CERT_SESS = 0x04;
    }
}

/// The contents of a `PP2_TYPE_SSL` TLV.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SslInfo {
    /// The `client` flags.
    pub client: ClientFlags,
    /// The `verify` field: 0 when the client presented a certificate and it verified,
    /// non-zero otherwise. Check [`ClientFlags::CERT_CONN`]/[`ClientFlags::CERT_SESS`]
    /// too, or use [`SslInfo::client_cert_verified`].
    pub verify: u32,
    /// `PP2_SUBTYPE_SSL_VERSION` (`TLSv1.3`).
    pub version: Option<String>,
    /// `PP2_SUBTYPE_SSL_CN`: the client certificate's subject common name.
    pub cn: Option<String>,
    /// `PP2_SUBTYPE_SSL_CIPHER`.
    pub cipher: Option<String>,
    /// `PP2_SUBTYPE_SSL_SIG_ALG`: the algorithm that signed the frontend's certificate.
    pub sig_alg: Option<String>,
    /// `PP2_SUBTYPE_SSL_KEY_ALG`: the key algorithm of the frontend's certificate.
    pub key_alg: Option<String>,
    /// `PP2_SUBTYPE_SSL_GROUP`: the key-exchange group.
    pub group: Option<String>,
    /// `PP2_SUBTYPE_SSL_SIG_SCHEME`: the handshake's signature scheme.
    pub sig_scheme: Option<String>,
    /// `PP2_SUBTYPE_SSL_CLIENT_CERT`: the client's leaf certificate, DER.
    pub client_cert: Option<Vec<u8>>,
    /// Sub-TLVs of other types, `(type, value)`, in order.
    pub other: Vec<(u8, Vec<u8>)>,
}

impl SslInfo {
    /// True when the client presented a certificate (on this connection or earlier in the
    /// session) and it verified.
    pub fn client_cert_verified(&self) -> bool {
        self.client.intersects(ClientFlags::CERT_CONN | ClientFlags::CERT_SESS) && self.verify == 0
    }
}

/// A PROXY protocol v2 header.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyHeader {
    /// LOCAL or PROXY.
    pub command: Command,
    /// `(source, destination)`: the client and the address it connected to. `None` is the
    /// UNSPEC family. With [`Command::Local`] a receiver must ignore them. Encoding two
    /// addresses of different families writes both as IPv6 (the IPv4 one mapped); IPv6
    /// flow info and scope id are not carried.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
    /// `PP2_TYPE_ALPN`: the negotiated application protocol.
    pub alpn: Option<Vec<u8>>,
    /// `PP2_TYPE_AUTHORITY`: the host name the client asked for (SNI).
    pub authority: Option<String>,
    /// `PP2_TYPE_CRC32C`. Encoding: when true, a checksum TLV is written. Parsing: true when
    /// the header carried one, which has then been verified.
    pub crc32c: bool,
    /// `PP2_TYPE_UNIQUE_ID`, at most 128 bytes.
    pub unique_id: Option<Vec<u8>>,
    /// `PP2_TYPE_SSL`: the TLS facts.
    pub ssl: Option<SslInfo>,
    /// `PP2_TYPE_NETNS`: the network namespace name.
    pub netns: Option<String>,
    /// TLVs of other types (NOOP included), `(type, value)`, in order. Encoded after the
    /// typed fields.
    pub other: Vec<(u8, Vec<u8>)>,
}

/// The outcome of [`ProxyHeader::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // returned once per connection and destructured at once; a Box buys nothing
#[allow(clippy::exhaustive_enums)] // closed: a header is complete, needs more bytes, or is not one
pub enum Parsed {
    /// A whole header: what it says and how many bytes of the buffer it took (the bytes
    /// after that belong to the relayed stream).
    Complete {
        /// The header.
        header: ProxyHeader,
        /// Its length in bytes, `16 + len`.
        consumed: usize,
    },
    /// The buffer is a valid beginning of a header, but too short: read at least `needed`
    /// more bytes and parse again from the start. While fewer than 16 bytes are available the
    /// total length is unknown, so `needed` only reaches the end of the fixed part.
    Incomplete {
        /// Bytes missing, at least.
        needed: usize,
    },
}

impl ProxyHeader {
    /// A LOCAL header (UNSPEC family, no TLVs), as sent for health checks.
    pub fn local() -> Self {
        ProxyHeader {
            command: Command::Local,
            addresses: None,
            alpn: None,
            authority: None,
            crc32c: false,
            unique_id: None,
            ssl: None,
            netns: None,
            other: Vec::new(),
        }
    }

    /// A PROXY header for a connection from `source` to `destination`, with no TLVs.
    pub fn proxy(source: SocketAddr, destination: SocketAddr) -> Self {
        ProxyHeader { command: Command::Proxy, addresses: Some((source, destination)), ..Self::local() }
    }

    /// The PROXY header for a TLS connection accepted from `source` on `destination`,
    /// described by the server-side `info`:
    ///
    /// - AUTHORITY is the SNI, ALPN the negotiated protocol.
    /// - SSL: `version`, `cipher` and `group` from `info`; `cn` and `client_cert` from the
    ///   client's leaf certificate (`info.peer`, or parsed from the leaf when `peer` is
    ///   empty). `sig_alg`, `key_alg` and `sig_scheme` are left out: they describe our own
    ///   certificate and handshake signature, which [`TlsInfo`] does not carry.
    /// - Client flags: always `SSL`. When the client presented a certificate, `CERT_SESS`,
    ///   plus `CERT_CONN` if this handshake was a full one (not resumed): on a resumed
    ///   session the certificate was sent on an earlier connection.
    /// - `verify` is 0 only for [`VerifyResult::Verified`]; a failed verification gives the
    ///   matching OpenSSL `X509_V_ERR_*` code (what HAProxy sends), anything else 1
    ///   (`X509_V_ERR_UNSPECIFIED`), including no certificate at all.
    pub fn from_tls(source: SocketAddr, destination: SocketAddr, info: &TlsInfo) -> Self {
        let leaf = info.peer_chain.first();
        let parsed_leaf;
        let peer = match (&info.peer, leaf) {
            (Some(peer), _) => Some(peer),
            (None, Some(leaf)) => {
                parsed_leaf = CertificateInfo::parse(leaf.der()).ok();
                parsed_leaf.as_ref()
            }
            (None, None) => None,
        };
        let presented =
            leaf.is_some() || peer.is_some() || matches!(info.verify, VerifyResult::Verified | VerifyResult::Failed(_));
        let mut client = ClientFlags::SSL;
        if presented {
            client |= ClientFlags::CERT_SESS;
            if !info.resumed {
                client |= ClientFlags::CERT_CONN;
            }
        }
        let verify = match &info.verify {
            VerifyResult::Verified => 0,
            VerifyResult::Failed(e) => x509_verify_code(e),
            VerifyResult::NotRequested | VerifyResult::NoCertificate => X509_V_ERR_UNSPECIFIED,
        };
        let ssl = SslInfo {
            client,
            verify,
            version: Some(info.version.name().to_owned()),
            cn: peer.and_then(|p| p.subject_cn.clone()),
            cipher: Some(info.cipher_suite.clone()),
            group: info.group.clone(),
            client_cert: leaf.map(|c| c.der().to_vec()),
            ..SslInfo::default()
        };
        ProxyHeader {
            alpn: info.alpn.clone(),
            authority: info.sni.clone(),
            ssl: Some(ssl),
            ..Self::proxy(source, destination)
        }
    }

    /// Parses a header at the start of `buf`. Bytes after the header are not looked at.
    pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
        if buf.iter().zip(SIGNATURE.iter()).any(|(a, b)| a != b) {
            return Err(ProxyError::BadSignature);
        }
        let mut fixed = Cursor::new(buf, 0);
        fixed.skip(SIGNATURE.len());
        let command = match fixed.u8() {
            Some(ver_cmd) => parse_ver_cmd(ver_cmd)?,
            None => return Ok(Parsed::Incomplete { needed: FIXED_LEN - buf.len() }),
        };
        let fam = match fixed.u8() {
            Some(fam) => fam,
            None => return Ok(Parsed::Incomplete { needed: FIXED_LEN - buf.len() }),
        };
        let address_len = family::address_len(fam).ok_or(ProxyError::UnknownFamily(fam))?;
        if command == Command::Proxy
            && matches!(fam, family::UDP4 | family::UDP6 | family::UNIX_STREAM | family::UNIX_DGRAM)
        {
            return Err(ProxyError::UnsupportedFamily(fam));
        }
        let Some(len) = fixed.u16() else {
            return Ok(Parsed::Incomplete { needed: FIXED_LEN - buf.len() });
        };
        if usize::from(len) < address_len {
            return Err(ProxyError::LengthTooShort { family: fam, len, needed: address_len });
        }
        let total = FIXED_LEN + usize::from(len);
        let Some(header_bytes) = buf.get(..total) else {
            return Ok(Parsed::Incomplete { needed: total - buf.len() });
        };

        let mut cur = Cursor::new(header_bytes, 0);
        cur.skip(FIXED_LEN);
        let addresses = match fam {
            family::TCP4 => {
                let (src, dst) = (cur.ipv4(), cur.ipv4());
                let (sport, dport) = (cur.u16(), cur.u16());
                match (src, dst, sport, dport) {
                    (Some(s), Some(d), Some(sp), Some(dp)) => {
                        Some((SocketAddr::V4(SocketAddrV4::new(s, sp)), SocketAddr::V4(SocketAddrV4::new(d, dp))))
                    }
                    _ => return Err(ProxyError::LengthTooShort { family: fam, len, needed: address_len }),
                }
            }
            family::TCP6 => {
                let (src, dst) = (cur.ipv6(), cur.ipv6());
                let (sport, dport) = (cur.u16(), cur.u16());
                match (src, dst, sport, dport) {
                    (Some(s), Some(d), Some(sp), Some(dp)) => Some((
                        SocketAddr::V6(SocketAddrV6::new(s, sp, 0, 0)),
                        SocketAddr::V6(SocketAddrV6::new(d, dp, 0, 0)),
                    )),
                    _ => return Err(ProxyError::LengthTooShort { family: fam, len, needed: address_len }),
                }
            }
            _ => {
                // UNSPEC (nothing to skip) or, with LOCAL, a UDP/UNIX block to ignore.
                cur.skip(address_len);
                None
            }
        };

        let mut header = ProxyHeader { command, addresses, ..ProxyHeader::local() };
        let mut crc: Option<(usize, u32)> = None;
        while let Some(t) = cur.tlv().map_err(|offset| ProxyError::TlvOverrun { offset })? {
            match t.kind {
                tlv::ALPN => set_once(&mut header.alpn, t.kind, t.value.to_vec())?,
                tlv::AUTHORITY => set_once(&mut header.authority, t.kind, text(t.kind, t.value)?)?,
                tlv::CRC32C => {
                    let received: [u8; 4] =
                        t.value.try_into().map_err(|_| ProxyError::BadTlvLength { tlv: t.kind, len: t.value.len() })?;
                    set_once(&mut crc, t.kind, (t.value_offset, u32::from_be_bytes(received)))?;
                }
                tlv::UNIQUE_ID => {
                    if t.value.len() > MAX_UNIQUE_ID_LEN {
                        return Err(ProxyError::BadTlvLength { tlv: t.kind, len: t.value.len() });
                    }
                    set_once(&mut header.unique_id, t.kind, t.value.to_vec())?;
                }
                tlv::SSL => set_once(&mut header.ssl, t.kind, parse_ssl(t.value, t.value_offset)?)?,
                tlv::NETNS => set_once(&mut header.netns, t.kind, text(t.kind, t.value)?)?,
                other => header.other.push((other, t.value.to_vec())),
            }
        }
        if let Some((offset, received)) = crc {
            let computed = crc32c_with_zeroed(header_bytes, offset);
            if computed != received {
                return Err(ProxyError::Crc32cMismatch { received, computed });
            }
            header.crc32c = true;
        }
        Ok(Parsed::Complete { header, consumed: total })
    }

    /// The header's bytes. TLVs are written in type order (ALPN, AUTHORITY, CRC32C,
    /// UNIQUE_ID, SSL, NETNS), then [`other`](Self::other) in its order.
    pub fn encode(&self) -> Result<Vec<u8>, ProxyError> {
        const RESERVED: [u8; 6] = [tlv::ALPN, tlv::AUTHORITY, tlv::CRC32C, tlv::UNIQUE_ID, tlv::SSL, tlv::NETNS];
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&SIGNATURE);
        out.push(match self.command {
            Command::Local => 0x20,
            Command::Proxy => 0x21,
        });
        match self.addresses {
            None => out.extend_from_slice(&[family::UNSPEC, 0, 0]),
            Some((SocketAddr::V4(src), SocketAddr::V4(dst))) => {
                out.extend_from_slice(&[family::TCP4, 0, 0]);
                out.extend_from_slice(&src.ip().octets());
                out.extend_from_slice(&dst.ip().octets());
                out.extend_from_slice(&src.port().to_be_bytes());
                out.extend_from_slice(&dst.port().to_be_bytes());
            }
            Some((src, dst)) => {
                let v6 = |ip: IpAddr| match ip {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                    IpAddr::V6(v6) => v6,
                };
                out.extend_from_slice(&[family::TCP6, 0, 0]);
                out.extend_from_slice(&v6(src.ip()).octets());
                out.extend_from_slice(&v6(dst.ip()).octets());
                out.extend_from_slice(&src.port().to_be_bytes());
                out.extend_from_slice(&dst.port().to_be_bytes());
            }
        }
        if let Some(alpn) = &self.alpn {
            put_tlv(&mut out, tlv::ALPN, alpn)?;
        }
        if let Some(authority) = &self.authority {
            put_tlv(&mut out, tlv::AUTHORITY, authority.as_bytes())?;
        }
        let crc_offset = if self.crc32c {
            put_tlv(&mut out, tlv::CRC32C, &[0; 4])?;
            Some(out.len() - 4)
        } else {
            None
        };
        if let Some(id) = &self.unique_id {
            if id.len() > MAX_UNIQUE_ID_LEN {
                return Err(ProxyError::BadTlvLength { tlv: tlv::UNIQUE_ID, len: id.len() });
            }
            put_tlv(&mut out, tlv::UNIQUE_ID, id)?;
        }
        if let Some(ssl) = &self.ssl {
            put_tlv(&mut out, tlv::SSL, &encode_ssl(ssl)?)?;
        }
        if let Some(netns) = &self.netns {
            put_tlv(&mut out, tlv::NETNS, netns.as_bytes())?;
        }
        for (kind, value) in &self.other {
            if RESERVED.contains(kind) {
                return Err(ProxyError::ReservedTlvType(*kind));
            }
            put_tlv(&mut out, *kind, value)?;
        }
        let len = out.len() - FIXED_LEN;
        let len16 = u16::try_from(len).map_err(|_| ProxyError::TooLong { len })?;
        out[14..FIXED_LEN].copy_from_slice(&len16.to_be_bytes());
        if let Some(offset) = crc_offset {
            let sum = crc32c_with_zeroed(&out, offset);
            out[offset..offset + 4].copy_from_slice(&sum.to_be_bytes());
        }
        Ok(out)
    }
}

const X509_V_ERR_UNSPECIFIED: u32 = 1;

/// The OpenSSL `X509_V_ERR_*` code closest to a verification failure.
fn x509_verify_code(e: &CertificateError) -> u32 {
    match e {
        CertificateError::BadSignature => 7,         // X509_V_ERR_CERT_SIGNATURE_FAILURE
        CertificateError::NotYetValid => 9,          // X509_V_ERR_CERT_NOT_YET_VALID
        CertificateError::Expired => 10,             // X509_V_ERR_CERT_HAS_EXPIRED
        CertificateError::UnknownIssuer => 20,       // X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        CertificateError::ChainTooLong => 22,        // X509_V_ERR_CERT_CHAIN_TOO_LONG
        CertificateError::Revoked => 23,             // X509_V_ERR_CERT_REVOKED
        CertificateError::InvalidPurpose => 26,      // X509_V_ERR_INVALID_PURPOSE
        CertificateError::NameMismatch { .. } => 62, // X509_V_ERR_HOSTNAME_MISMATCH
        _ => X509_V_ERR_UNSPECIFIED,
    }
}

fn parse_ver_cmd(ver_cmd: u8) -> Result<Command, ProxyError> {
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::UnsupportedVersion(ver_cmd >> 4));
    }
    match ver_cmd & 0x0F {
        0 => Ok(Command::Local),
        1 => Ok(Command::Proxy),
        other => Err(ProxyError::UnknownCommand(other)),
    }
}

fn parse_ssl(value: &[u8], base: usize) -> Result<SslInfo, ProxyError> {
    let mut cur = Cursor::new(value, base);
    let (Some(client), Some(verify)) = (cur.u8(), cur.u32()) else {
        return Err(ProxyError::SslTlvTooShort { len: value.len() });
    };
    let mut ssl = SslInfo { client: ClientFlags::from_bits_retain(client), verify, ..SslInfo::default() };
    while let Some(t) = cur.tlv().map_err(|offset| ProxyError::SslSubTlvOverrun { offset })? {
        let field = match t.kind {
            tlv::SSL_VERSION => &mut ssl.version,
            tlv::SSL_CN => &mut ssl.cn,
            tlv::SSL_CIPHER => &mut ssl.cipher,
            tlv::SSL_SIG_ALG => &mut ssl.sig_alg,
            tlv::SSL_KEY_ALG => &mut ssl.key_alg,
            tlv::SSL_GROUP => &mut ssl.group,
            tlv::SSL_SIG_SCHEME => &mut ssl.sig_scheme,
            tlv::SSL_CLIENT_CERT => {
                set_once(&mut ssl.client_cert, t.kind, t.value.to_vec())?;
                continue;
            }
            other => {
                ssl.other.push((other, t.value.to_vec()));
                continue;
            }
        };
        set_once(field, t.kind, text(t.kind, t.value)?)?;
    }
    Ok(ssl)
}

fn encode_ssl(ssl: &SslInfo) -> Result<Vec<u8>, ProxyError> {
    let mut out = Vec::with_capacity(64 + ssl.client_cert.as_ref().map_or(0, Vec::len));
    out.push(ssl.client.bits());
    out.extend_from_slice(&ssl.verify.to_be_bytes());
    let texts = [
        (tlv::SSL_VERSION, &ssl.version),
        (tlv::SSL_CN, &ssl.cn),
        (tlv::SSL_CIPHER, &ssl.cipher),
        (tlv::SSL_SIG_ALG, &ssl.sig_alg),
        (tlv::SSL_KEY_ALG, &ssl.key_alg),
        (tlv::SSL_GROUP, &ssl.group),
        (tlv::SSL_SIG_SCHEME, &ssl.sig_scheme),
    ];
    for (kind, value) in texts {
        if let Some(value) = value {
            put_tlv(&mut out, kind, value.as_bytes())?;
        }
    }
    if let Some(cert) = &ssl.client_cert {
        put_tlv(&mut out, tlv::SSL_CLIENT_CERT, cert)?;
    }
    for (kind, value) in &ssl.other {
        if (tlv::SSL_VERSION..=tlv::SSL_CLIENT_CERT).contains(kind) {
            return Err(ProxyError::ReservedTlvType(*kind));
        }
        put_tlv(&mut out, *kind, value)?;
    }
    Ok(out)
}

fn put_tlv(out: &mut Vec<u8>, kind: u8, value: &[u8]) -> Result<(), ProxyError> {
    let len = u16::try_from(value.len()).map_err(|_| ProxyError::TooLong { len: value.len() })?;
    out.push(kind);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
    Ok(())
}

fn set_once<T>(slot: &mut Option<T>, kind: u8, value: T) -> Result<(), ProxyError> {
    if slot.is_some() {
        return Err(ProxyError::DuplicateTlv(kind));
    }
    *slot = Some(value);
    Ok(())
}

fn text(kind: u8, value: &[u8]) -> Result<String, ProxyError> {
    std::str::from_utf8(value).map(str::to_owned).map_err(|_| ProxyError::InvalidUtf8 { tlv: kind })
}

/// One TLV read by [`Cursor::tlv`].
struct Tlv<'a> {
    kind: u8,
    value: &'a [u8],
    /// Offset of `value` from the start of the header.
    value_offset: usize,
}

/// A bounds-checked reader over a slice; `base` is the slice's offset in the header, for
/// error offsets.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Cursor { buf, pos: 0, base }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let bytes = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(bytes)
    }

    fn skip(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n).min(self.buf.len());
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).and_then(|b| b.first().copied())
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).and_then(|b| b.try_into().ok()).map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes)
    }

    fn ipv4(&mut self) -> Option<Ipv4Addr> {
        self.take(4).and_then(|b| <[u8; 4]>::try_from(b).ok()).map(Ipv4Addr::from)
    }

    fn ipv6(&mut self) -> Option<Ipv6Addr> {
        self.take(16).and_then(|b| <[u8; 16]>::try_from(b).ok()).map(Ipv6Addr::from)
    }

    /// The next TLV; `Ok(None)` at the end; `Err(offset of its type byte)` when its header
    /// or value runs past the end.
    fn tlv(&mut self) -> Result<Option<Tlv<'a>>, usize> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let start = self.base + self.pos;
        let (Some(kind), Some(len)) = (self.u8(), self.u16()) else {
            return Err(start);
        };
        let value_offset = self.base + self.pos;
        let value = self.take(usize::from(len)).ok_or(start)?;
        Ok(Some(Tlv { kind, value, value_offset }))
    }
}

/// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

fn crc32c_update(mut crc: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        crc = CRC32C_TABLE[usize::from((crc as u8) ^ b)] ^ (crc >> 8);
    }
    crc
}

/// CRC32C of `bytes` with the four bytes at `offset` read as zero (the checksum field).
fn crc32c_with_zeroed(bytes: &[u8], offset: usize) -> u32 {
    let (before, rest) = bytes.split_at(offset.min(bytes.len()));
    let after = rest.get(4..).unwrap_or(&[]);
    let crc = crc32c_update(!0, before);
    let crc = crc32c_update(crc, &[0; 4]);
    !crc32c_update(crc, after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Certificate, ProtocolVersion};

    fn complete(buf: &[u8]) -> (ProxyHeader, usize) {
        match ProxyHeader::parse(buf).expect("parses") {
            Parsed::Complete { header, consumed } => (header, consumed),
            other => panic!("expected a complete header, got {other:?}"),
        }
    }

    fn err(buf: &[u8]) -> ProxyError {
        ProxyHeader::parse(buf).expect_err("must be rejected")
    }

    /// PROXY TCP4 127.0.0.1:5060 -> 127.0.0.1:5061, AUTHORITY "sip.example.com", SSL TLV
    /// with VERSION "TLSv1.3" and CN "alice".
    #[rustfmt::skip]
    const TCP4_SSL: &[u8] = &[
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, // signature
        0x21,                   // version 2, PROXY
        0x11,                   // TCP over IPv4
        0x00, 0x38,             // len = 56 = 12 address bytes + 18 AUTHORITY + 26 SSL
        127, 0, 0, 1,           // source address
        127, 0, 0, 1,           // destination address
        0x13, 0xC4,             // source port 5060
        0x13, 0xC5,             // destination port 5061
        0x02, 0x00, 0x0F,       // AUTHORITY, 15 bytes
        b's', b'i', b'p', b'.', b'e', b'x', b'a', b'm', b'p', b'l', b'e', b'.', b'c', b'o', b'm',
        0x20, 0x00, 0x17,       // SSL, 23 bytes
        0x07,                   // client: SSL | CERT_CONN | CERT_SESS
        0x00, 0x00, 0x00, 0x00, // verify: 0 (verified)
        0x21, 0x00, 0x07,       // sub-TLV VERSION, 7 bytes
        b'T', b'L', b'S', b'v', b'1', b'.', b'3',
        0x22, 0x00, 0x05,       // sub-TLV CN, 5 bytes
        b'a', b'l', b'i', b'c', b'e',
    ];

    fn tcp4_ssl_header() -> ProxyHeader {
        ProxyHeader {
            authority: Some("sip.example.com".into()),
            ssl: Some(SslInfo {
                client: ClientFlags::SSL | ClientFlags::CERT_CONN | ClientFlags::CERT_SESS,
                verify: 0,
                version: Some("TLSv1.3".into()),
                cn: Some("alice".into()),
                ..SslInfo::default()
            }),
            ..ProxyHeader::proxy("127.0.0.1:5060".parse().unwrap(), "127.0.0.1:5061".parse().unwrap())
        }
    }

    /// PROXY TCP6 [2001:db8::1]:40000 -> [2001:db8::2]:5061, ALPN "sip".
    #[rustfmt::skip]
    const TCP6_ALPN: &[u8] = &[
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, // signature
        0x21,                   // version 2, PROXY
        0x21,                   // TCP over IPv6
        0x00, 0x2A,             // len = 42 = 36 address bytes + 6 ALPN
        0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // source 2001:db8::1
        0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, // destination 2001:db8::2
        0x9C, 0x40,             // source port 40000
        0x13, 0xC5,             // destination port 5061
        0x01, 0x00, 0x03,       // ALPN, 3 bytes
        b's', b'i', b'p',
    ];

    /// LOCAL, UNSPEC, no addresses, no TLVs.
    #[rustfmt::skip]
    const LOCAL: &[u8] = &[
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, // signature
        0x20,                   // version 2, LOCAL
        0x00,                   // UNSPEC
        0x00, 0x00,             // len = 0
    ];

    /// `bytes` with byte `i` replaced.
    fn with(bytes: &[u8], i: usize, value: u8) -> Vec<u8> {
        let mut v = bytes.to_vec();
        v[i] = value;
        v
    }

    #[test]
    fn tcp4_with_authority_and_ssl_parses_and_reencodes_exactly() {
        let mut buf = TCP4_SSL.to_vec();
        buf.extend_from_slice(b"OPTIONS sip:x SIP/2.0\r\n"); // the relayed stream follows
        let (header, consumed) = complete(&buf);
        assert_eq!(consumed, TCP4_SSL.len());
        assert_eq!(header, tcp4_ssl_header());
        assert!(header.ssl.as_ref().unwrap().client_cert_verified());
        assert_eq!(header.encode().unwrap(), TCP4_SSL);
    }

    #[test]
    fn tcp6_with_alpn_parses_and_reencodes_exactly() {
        let (header, consumed) = complete(TCP6_ALPN);
        assert_eq!(consumed, TCP6_ALPN.len());
        let expected = ProxyHeader {
            alpn: Some(b"sip".to_vec()),
            ..ProxyHeader::proxy("[2001:db8::1]:40000".parse().unwrap(), "[2001:db8::2]:5061".parse().unwrap())
        };
        assert_eq!(header, expected);
        assert_eq!(header.encode().unwrap(), TCP6_ALPN);
    }

    #[test]
    fn local_unspec_parses_and_reencodes_exactly() {
        let (header, consumed) = complete(LOCAL);
        assert_eq!((header.clone(), consumed), (ProxyHeader::local(), 16));
        assert_eq!(header.encode().unwrap(), LOCAL);
    }

    #[test]
    fn local_skips_a_unix_address_block_and_reads_tlvs() {
        let mut buf = LOCAL.to_vec();
        buf[13] = 0x31; // UNIX stream
        buf[14..16].copy_from_slice(&(216u16 + 4).to_be_bytes());
        buf.extend_from_slice(&[0xAB; 216]); // two 108-byte paths
        buf.extend_from_slice(&[0xE0, 0x00, 0x01, 0x7F]); // custom TLV 0xE0
        let (header, consumed) = complete(&buf);
        assert_eq!(consumed, buf.len());
        assert_eq!(header.command, Command::Local);
        assert_eq!(header.addresses, None);
        assert_eq!(header.other, vec![(0xE0, vec![0x7F])]);
        // PROXY over UNIX or UDP is refused, with a typed error.
        assert_eq!(err(&with(&buf, 12, 0x21)), ProxyError::UnsupportedFamily(0x31));
        assert_eq!(err(&with(TCP4_SSL, 13, 0x12)), ProxyError::UnsupportedFamily(0x12));
    }

    #[test]
    fn mixed_families_are_encoded_as_ipv4_mapped_ipv6() {
        let h = ProxyHeader::proxy("192.0.2.1:1".parse().unwrap(), "[2001:db8::2]:2".parse().unwrap());
        let (back, _) = complete(&h.encode().unwrap());
        assert_eq!(back.addresses.unwrap().0, "[::ffff:192.0.2.1]:1".parse().unwrap());
        assert_eq!(back.addresses.unwrap().1, "[2001:db8::2]:2".parse().unwrap());
    }

    fn tls_info(resumed: bool, verify: VerifyResult) -> TlsInfo {
        TlsInfo {
            version: ProtocolVersion::Tls12,
            cipher_suite: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into(),
            group: Some("x25519".into()),
            sni: Some("sip.example.com".into()),
            alpn: Some(b"sip".to_vec()),
            resumed,
            peer_chain: vec![Certificate::from_der(b"\x30\x03leaf".to_vec())],
            verify,
            peer: Some(CertificateInfo { subject_cn: Some("alice.example.com".into()), ..CertificateInfo::default() }),
        }
    }

    #[test]
    fn from_tls_with_client_cert_round_trips() {
        let (src, dst) = ("[2001:db8::7]:50000".parse().unwrap(), "[2001:db8::1]:5061".parse().unwrap());
        let mut header = ProxyHeader::from_tls(src, dst, &tls_info(false, VerifyResult::Verified));
        let ssl = header.ssl.clone().unwrap();
        assert_eq!(ssl.client, ClientFlags::SSL | ClientFlags::CERT_CONN | ClientFlags::CERT_SESS);
        assert_eq!(ssl.verify, 0);
        assert_eq!(ssl.version.as_deref(), Some("TLSv1.2"));
        assert_eq!(ssl.cipher.as_deref(), Some("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"));
        assert_eq!(ssl.group.as_deref(), Some("x25519"));
        assert_eq!(ssl.cn.as_deref(), Some("alice.example.com"));
        assert_eq!(ssl.client_cert.as_deref(), Some(&b"\x30\x03leaf"[..]));
        assert_eq!(header.authority.as_deref(), Some("sip.example.com"));
        assert_eq!(header.alpn.as_deref(), Some(&b"sip"[..]));
        assert_eq!(header.addresses, Some((src, dst)));

        header.crc32c = true;
        header.unique_id = Some(b"conn-42".to_vec());
        let bytes = header.encode().unwrap();
        assert_eq!(ProxyHeader::parse(&bytes).unwrap(), Parsed::Complete { header, consumed: bytes.len() });
    }

    #[test]
    fn from_tls_flags_and_verify_follow_the_session() {
        let resumed = ProxyHeader::from_tls(
            "192.0.2.1:1".parse().unwrap(),
            "192.0.2.2:2".parse().unwrap(),
            &tls_info(true, VerifyResult::Verified),
        );
        assert_eq!(resumed.ssl.as_ref().unwrap().client, ClientFlags::SSL | ClientFlags::CERT_SESS);
        assert!(resumed.ssl.as_ref().unwrap().client_cert_verified());

        let expired = tls_info(false, VerifyResult::Failed(CertificateError::Expired));
        let h = ProxyHeader::from_tls("192.0.2.1:1".parse().unwrap(), "192.0.2.2:2".parse().unwrap(), &expired);
        assert_eq!(h.ssl.as_ref().unwrap().verify, 10);
        assert!(!h.ssl.as_ref().unwrap().client_cert_verified());

        let none = TlsInfo { peer_chain: vec![], peer: None, ..tls_info(false, VerifyResult::NoCertificate) };
        let h = ProxyHeader::from_tls("192.0.2.1:1".parse().unwrap(), "192.0.2.2:2".parse().unwrap(), &none);
        let ssl = h.ssl.unwrap();
        assert_eq!((ssl.client, ssl.verify, ssl.cn, ssl.client_cert), (ClientFlags::SSL, 1, None, None));
    }

    #[test]
    fn unknown_tlvs_and_flag_bits_are_kept() {
        let mut buf = LOCAL.to_vec();
        #[rustfmt::skip]
        let tlvs = [
            0x20, 0x00, 0x09,                         // SSL, 9 bytes
            0x81, 0x00, 0x00, 0x00, 0x02,             // client: SSL | undefined 0x80, verify 2
            0x99, 0x00, 0x01, 0x55,                   // unknown sub-TLV 0x99
            0x04, 0x00, 0x02, 0x00, 0x00,             // NOOP, 2 bytes of padding
            0xEE, 0x00, 0x00,                         // custom TLV 0xEE, empty
        ];
        buf[15] = tlvs.len() as u8;
        buf.extend_from_slice(&tlvs);
        let (header, _) = complete(&buf);
        assert_eq!(header.other, vec![(0x04, vec![0, 0]), (0xEE, vec![])]);
        let ssl = header.ssl.clone().unwrap();
        assert_eq!(ssl.client.bits(), 0x81);
        assert_eq!(ssl.verify, 2);
        assert_eq!(ssl.other, vec![(0x99, vec![0x55])]);
        assert_eq!(header.encode().unwrap(), buf);
    }

    #[test]
    fn crc32c_is_written_and_verified() {
        // Standard check value of CRC-32C.
        assert_eq!(!crc32c_update(!0, b"123456789"), 0xE306_9283);
        let header = ProxyHeader { crc32c: true, ..tcp4_ssl_header() };
        let bytes = header.encode().unwrap();
        assert_eq!(complete(&bytes).0, header);
        // Any change elsewhere in the header is caught.
        let i = bytes.len() - 1;
        assert!(matches!(err(&with(&bytes, i, b'x')), ProxyError::Crc32cMismatch { .. }));
        // A CRC32C TLV must be 4 bytes.
        let mut buf = LOCAL.to_vec();
        buf[15] = 5;
        buf.extend_from_slice(&[0x03, 0x00, 0x02, 0x00, 0x00]);
        assert_eq!(err(&buf), ProxyError::BadTlvLength { tlv: 0x03, len: 2 });
    }

    #[test]
    fn bad_signature() {
        assert_eq!(err(&with(TCP4_SSL, 0, 0x0E)), ProxyError::BadSignature);
        assert_eq!(err(&with(TCP4_SSL, 11, 0x0B)), ProxyError::BadSignature);
        // Detected before the fixed part is complete, and for the v1 text format.
        assert_eq!(err(b"\x0D\x0A\x0D\x0B"), ProxyError::BadSignature);
        assert_eq!(err(b"PROXY TCP4 127.0.0.1 127.0.0.1 5060 5061\r\n"), ProxyError::BadSignature);
    }

    #[test]
    fn unsupported_version() {
        assert_eq!(err(&with(TCP4_SSL, 12, 0x11)), ProxyError::UnsupportedVersion(1));
        assert_eq!(err(&with(TCP4_SSL, 12, 0x31)[..13]), ProxyError::UnsupportedVersion(3));
    }

    #[test]
    fn unknown_command() {
        assert_eq!(err(&with(TCP4_SSL, 12, 0x2F)), ProxyError::UnknownCommand(0xF));
    }

    #[test]
    fn unknown_family() {
        assert_eq!(err(&with(TCP4_SSL, 13, 0x13)), ProxyError::UnknownFamily(0x13));
        assert_eq!(err(&with(TCP4_SSL, 13, 0x01)[..14]), ProxyError::UnknownFamily(0x01));
    }

    #[test]
    fn length_shorter_than_address_block() {
        let mut buf = TCP4_SSL.to_vec();
        buf[15] = 11;
        assert_eq!(err(&buf), ProxyError::LengthTooShort { family: 0x11, len: 11, needed: 12 });
        let mut buf = TCP6_ALPN.to_vec();
        buf[15] = 12;
        assert_eq!(err(&buf), ProxyError::LengthTooShort { family: 0x21, len: 12, needed: 36 });
    }

    #[test]
    fn tlv_running_past_the_end() {
        // AUTHORITY (type byte at offset 28) claims 0x010F bytes; 41 remain.
        let buf = with(TCP4_SSL, 29, 0x01);
        assert_eq!(err(&buf), ProxyError::TlvOverrun { offset: 28 });
        // A TLV header cut short: one lone type byte at the end.
        let mut buf = LOCAL.to_vec();
        buf[15] = 1;
        buf.push(0x02);
        assert_eq!(err(&buf), ProxyError::TlvOverrun { offset: 16 });
    }

    #[test]
    fn ssl_tlv_shorter_than_five_bytes() {
        let mut buf = LOCAL.to_vec();
        buf[15] = 7;
        buf.extend_from_slice(&[0x20, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00]);
        assert_eq!(err(&buf), ProxyError::SslTlvTooShort { len: 4 });
    }

    #[test]
    fn ssl_sub_tlv_overrun() {
        // The CN sub-TLV (type byte at offset 64) claims 6 bytes; 5 remain in the SSL TLV.
        let buf = with(TCP4_SSL, 66, 0x06);
        assert_eq!(err(&buf), ProxyError::SslSubTlvOverrun { offset: 64 });
    }

    #[test]
    fn non_utf8_cn() {
        let buf = with(TCP4_SSL, 67, 0xFF); // first byte of "alice"
        assert_eq!(err(&buf), ProxyError::InvalidUtf8 { tlv: 0x22 });
    }

    #[test]
    fn duplicate_tlv() {
        let mut buf = LOCAL.to_vec();
        buf[15] = 8;
        buf.extend_from_slice(&[0x02, 0x00, 0x01, b'a', 0x02, 0x00, 0x01, b'b']);
        assert_eq!(err(&buf), ProxyError::DuplicateTlv(0x02));
    }

    #[test]
    fn truncated_buffer_is_incomplete_with_the_bytes_missing() {
        for cut in 0..TCP4_SSL.len() {
            let needed = if cut < FIXED_LEN { FIXED_LEN - cut } else { TCP4_SSL.len() - cut };
            assert_eq!(ProxyHeader::parse(&TCP4_SSL[..cut]), Ok(Parsed::Incomplete { needed }), "cut at {cut}");
        }
    }

    #[test]
    fn converts_into_the_crate_error() {
        let e: crate::Error = err(&with(LOCAL, 13, 0x13)).into();
        assert_eq!(e, crate::Error::Proxy(ProxyError::UnknownFamily(0x13)));
        assert!(!e.is_peer_fault());
    }

    #[test]
    fn encode_errors() {
        let too_long = ProxyHeader { alpn: Some(vec![0; 65_536]), ..ProxyHeader::local() };
        assert_eq!(too_long.encode(), Err(ProxyError::TooLong { len: 65_536 }));
        let sum_too_long = ProxyHeader { other: vec![(0xE0, vec![0; 40_000]); 2], ..ProxyHeader::local() };
        assert_eq!(sum_too_long.encode(), Err(ProxyError::TooLong { len: 80_006 }));
        let reserved = ProxyHeader { other: vec![(0x02, vec![])], ..ProxyHeader::local() };
        assert_eq!(reserved.encode(), Err(ProxyError::ReservedTlvType(0x02)));
        let long_id = ProxyHeader { unique_id: Some(vec![0; 129]), ..ProxyHeader::local() };
        assert_eq!(long_id.encode(), Err(ProxyError::BadTlvLength { tlv: 0x05, len: 129 }));
    }

    #[test]
    fn mutated_and_truncated_headers_never_panic() {
        let crc_header = ProxyHeader { crc32c: true, unique_id: Some(vec![7; 9]), ..tcp4_ssl_header() };
        let from_tls = ProxyHeader::from_tls(
            "[2001:db8::7]:50000".parse().unwrap(),
            "[2001:db8::1]:5061".parse().unwrap(),
            &tls_info(true, VerifyResult::Verified),
        );
        let seeds = [
            TCP4_SSL.to_vec(),
            TCP6_ALPN.to_vec(),
            LOCAL.to_vec(),
            crc_header.encode().unwrap(),
            from_tls.encode().unwrap(),
        ];
        let check = |buf: &[u8]| match ProxyHeader::parse(buf) {
            Ok(Parsed::Complete { consumed, .. }) => assert!(consumed <= buf.len()),
            Ok(Parsed::Incomplete { needed }) => assert!(needed > 0 && buf.len() + needed <= MAX_HEADER_LEN),
            Err(_) => {}
        };
        let mut runs = 0;
        for seed in &seeds {
            for cut in 0..=seed.len() {
                check(&seed[..cut]);
                runs += 1;
            }
            for i in 0..seed.len() {
                for value in [0x00, 0xFF, seed[i] ^ 0x01, seed[i] ^ 0x80, seed[i].wrapping_add(1)] {
                    let mutated = with(seed, i, value);
                    check(&mutated);
                    // And every truncation of a few mutants, to mix both faults.
                    if value == 0xFF {
                        for cut in 0..=mutated.len() {
                            check(&mutated[..cut]);
                        }
                    }
                    runs += 1;
                }
            }
        }
        // A small deterministic generator (xorshift) for multi-byte mutations.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let seed = &seeds[(next() % seeds.len() as u64) as usize];
            let mut buf = seed.clone();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() % buf.len() as u64) as usize;
                buf[i] = next() as u8;
            }
            let cut = (next() % (buf.len() as u64 + 1)) as usize;
            check(&buf[..cut]);
            runs += 1;
        }
        assert!(runs > 20_000);
    }
}
