//! What a worker learns about a connection, carried as a PROXY protocol v2 header: the
//! standard TLVs (addresses, SNI as AUTHORITY, ALPN, the SSL TLV with version, cipher,
//! group, CN and client certificate) plus three sipstls TLVs in the custom range
//! (0xE0-0xEF) for what the standard has no field for. One encoding serves both the
//! control channel and the optional header written first on the plaintext socket, so a
//! server that speaks PROXY v2 and our own workers see the same facts.

use std::net::SocketAddr;

use sipstls_core::proxy::{Parsed, ProxyError, ProxyHeader};
use sipstls_core::{Certificate, CertificateError, ProtocolVersion, TlsInfo, VerifyResult};

/// sipstls TLV: one byte of flags, bit 0 outbound, bit 1 resumed.
const TLV_FLAGS: u8 = 0xE0;
/// sipstls TLV: the peer's chain after the leaf, each certificate as a 3-byte big-endian
/// length and the DER.
const TLV_CHAIN: u8 = 0xE1;
/// sipstls TLV: the verification outcome, one byte (0 not requested, 1 no certificate,
/// 2 verified, 3 failed) followed, when failed, by the reason as UTF-8.
const TLV_VERIFY: u8 = 0xE2;

/// Which side opened the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::exhaustive_enums)] // closed: a connection is inbound or outbound
pub enum Direction {
    /// A peer connected to one of the manager's listeners.
    Inbound,
    /// The manager connected on a worker's request.
    Outbound,
}

/// A connection's id, addresses and TLS facts, as handed to the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnMeta {
    /// Connection id, unique in the manager.
    pub id: u64,
    /// Who opened it.
    pub direction: Direction,
    /// The TLS peer's address.
    pub peer: SocketAddr,
    /// The manager's local address of the TLS connection.
    pub local: SocketAddr,
    /// The TLS session's facts.
    pub tls: TlsInfo,
}

impl ConnMeta {
    /// The PROXY v2 header: source and destination as the connection was opened (inbound:
    /// peer → local; outbound: local → peer).
    pub fn proxy_header(&self) -> Vec<u8> {
        self.header().encode().unwrap_or_default()
    }

    fn header(&self) -> ProxyHeader {
        let (src, dst) = match self.direction {
            Direction::Inbound => (self.peer, self.local),
            Direction::Outbound => (self.local, self.peer),
        };
        let mut h = ProxyHeader::from_tls(src, dst, &self.tls);
        h.unique_id = Some(self.id.to_be_bytes().to_vec());
        let flags = u8::from(self.direction == Direction::Outbound) | (u8::from(self.tls.resumed) << 1);
        h.other.push((TLV_FLAGS, vec![flags]));
        let mut chain = Vec::new();
        for c in self.tls.peer_chain.iter().skip(1) {
            let len = c.der().len().min(0xFF_FFFF) as u32;
            chain.extend_from_slice(&len.to_be_bytes()[1..]);
            chain.extend_from_slice(&c.der()[..len as usize]);
        }
        if !chain.is_empty() {
            h.other.push((TLV_CHAIN, chain));
        }
        let verify = match &self.tls.verify {
            VerifyResult::NotRequested => vec![0],
            VerifyResult::NoCertificate => vec![1],
            VerifyResult::Verified => vec![2],
            VerifyResult::Failed(e) => [&[3u8][..], e.to_string().as_bytes()].concat(),
        };
        h.other.push((TLV_VERIFY, verify));
        h
    }

    /// The header as sent over the control channel (the same bytes as
    /// [`proxy_header`](ConnMeta::proxy_header)).
    pub(crate) fn encode(&self) -> Vec<u8> {
        self.proxy_header()
    }

    /// Rebuilds the facts from a header written by [`proxy_header`](ConnMeta::proxy_header).
    pub fn decode(bytes: &[u8]) -> Result<ConnMeta, ProxyError> {
        let header = match ProxyHeader::parse(bytes)? {
            Parsed::Complete { header, .. } => header,
            Parsed::Incomplete { .. } => return Err(ProxyError::TlvOverrun { offset: bytes.len() }),
        };
        let missing = || ProxyError::BadTlvLength { tlv: sipstls_core::proxy::tlv::SSL, len: 0 };
        let (src, dst) = header.addresses.ok_or_else(missing)?;
        let ssl = header.ssl.clone().ok_or_else(missing)?;
        let custom = |t: u8| header.other.iter().find(|(k, _)| *k == t).map(|(_, v)| v.as_slice());
        let flags = custom(TLV_FLAGS).and_then(|v| v.first().copied()).unwrap_or(0);
        let direction = if flags & 1 == 1 { Direction::Outbound } else { Direction::Inbound };
        let (peer, local) = match direction {
            Direction::Inbound => (src, dst),
            Direction::Outbound => (dst, src),
        };
        let version = match ssl.version.as_deref() {
            Some(v) if v == ProtocolVersion::Tls13.name() => ProtocolVersion::Tls13,
            Some(v) if v == ProtocolVersion::Tls12.name() => ProtocolVersion::Tls12,
            _ => return Err(missing()),
        };
        let mut peer_chain: Vec<Certificate> =
            ssl.client_cert.iter().map(|d| Certificate::from_der(d.clone())).collect();
        let mut rest = custom(TLV_CHAIN).unwrap_or(&[]);
        while rest.len() >= 3 {
            let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
            let Some(der) = rest.get(3..3 + len) else { return Err(ProxyError::TlvOverrun { offset: 0 }) };
            peer_chain.push(Certificate::from_der(der.to_vec()));
            rest = &rest[3 + len..];
        }
        let verify = match custom(TLV_VERIFY) {
            Some([0]) => VerifyResult::NotRequested,
            Some([1]) => VerifyResult::NoCertificate,
            Some([2]) => VerifyResult::Verified,
            Some([3, why @ ..]) => {
                VerifyResult::Failed(CertificateError::Other(String::from_utf8_lossy(why).into_owned()))
            }
            // A header from elsewhere: the standard fields say as much as they can.
            _ if ssl.client_cert_verified() => VerifyResult::Verified,
            _ => VerifyResult::NoCertificate,
        };
        let id =
            header.unique_id.as_deref().and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_be_bytes).unwrap_or(0);
        let tls = TlsInfo::new(version, ssl.cipher.clone().unwrap_or_default(), peer_chain, verify)
            .with_group(ssl.group.clone())
            .with_sni(header.authority.clone())
            .with_alpn(header.alpn.clone())
            .with_resumed(flags & 2 == 2);
        Ok(ConnMeta { id, direction, peer, local, tls })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(chain: Vec<Certificate>, verify: VerifyResult) -> TlsInfo {
        TlsInfo::new(ProtocolVersion::Tls13, "TLS_AES_128_GCM_SHA256", chain, verify)
            .with_group(Some("x25519".into()))
            .with_sni(Some("sip.example.test".into()))
            .with_alpn(Some(b"sip".to_vec()))
            .with_resumed(true)
    }

    #[test]
    fn every_fact_survives_the_round_trip() {
        for (direction, verify) in [
            (Direction::Inbound, VerifyResult::Verified),
            (Direction::Outbound, VerifyResult::NotRequested),
            (Direction::Inbound, VerifyResult::NoCertificate),
            (Direction::Inbound, VerifyResult::Failed(CertificateError::Other("expired".into()))),
        ] {
            let chain = vec![Certificate::from_der(vec![0x30, 1, 2]), Certificate::from_der(vec![0x30, 3])];
            let meta = ConnMeta {
                id: 0x0102_0304_0506_0708,
                direction,
                peer: "[::1]:40000".parse().unwrap(),
                local: "[::1]:5061".parse().unwrap(),
                tls: info(chain, verify),
            };
            let back = ConnMeta::decode(&meta.proxy_header()).unwrap();
            assert_eq!(back, meta);
        }
    }

    #[test]
    fn the_header_is_standard_proxy_v2() {
        let meta = ConnMeta {
            id: 9,
            direction: Direction::Inbound,
            peer: "127.0.0.1:40000".parse().unwrap(),
            local: "127.0.0.1:5061".parse().unwrap(),
            tls: info(vec![], VerifyResult::NotRequested),
        };
        let bytes = meta.proxy_header();
        assert_eq!(&bytes[..12], &sipstls_core::proxy::SIGNATURE);
        assert_eq!(bytes[12], 0x21, "PROXY command, version 2");
        assert_eq!(bytes[13], 0x11, "TCP over IPv4");
        let Parsed::Complete { header, consumed } = ProxyHeader::parse(&bytes).unwrap() else { panic!() };
        assert_eq!(consumed, bytes.len());
        assert_eq!(header.addresses, Some((meta.peer, meta.local)));
        assert_eq!(header.authority.as_deref(), Some("sip.example.test"));
        assert_eq!(header.ssl.unwrap().version.as_deref(), Some("TLSv1.3"));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(ConnMeta::decode(b"").is_err());
        assert!(ConnMeta::decode(b"GET / HTTP/1.1\r\n\r\n").is_err());
        let meta = ConnMeta {
            id: 1,
            direction: Direction::Inbound,
            peer: "127.0.0.1:1".parse().unwrap(),
            local: "127.0.0.1:2".parse().unwrap(),
            tls: info(vec![], VerifyResult::NotRequested),
        };
        let bytes = meta.proxy_header();
        for cut in 0..bytes.len() {
            assert!(ConnMeta::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
