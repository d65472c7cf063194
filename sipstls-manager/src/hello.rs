//! The server name a client asked for, read from the first bytes of its ClientHello, so
//! that a failed handshake can be logged with its SNI (the session knows it only once the
//! handshake succeeds).

/// The `server_name` (RFC 6066, host_name entry) of a ClientHello at the start of `buf`,
/// which holds the first TLS record or a prefix of it. `None` when the bytes are not a
/// ClientHello, carry no SNI or end before it. Never panics, reads only `buf`.
pub(crate) fn client_hello_sni(buf: &[u8]) -> Option<String> {
    let mut r = Reader(buf);
    // Record header: handshake (22), any version, length.
    if r.u8()? != 22 {
        return None;
    }
    r.skip(4)?;
    // Handshake header: ClientHello (1), 24-bit length.
    if r.u8()? != 1 {
        return None;
    }
    r.skip(3)?;
    r.skip(2 + 32)?; // legacy_version, random
    let n = r.u8()? as usize;
    r.skip(n)?; // legacy_session_id
    let n = r.u16()? as usize;
    r.skip(n)?; // cipher_suites
    let n = r.u8()? as usize;
    r.skip(n)?; // legacy_compression_methods
                // The extensions, or as much of them as the buffer holds.
    let n = r.u16()? as usize;
    let mut exts = Reader(if r.0.len() >= n { r.take(n)? } else { r.0 });
    while let (Some(kind), Some(len)) = (exts.u16(), exts.u16()) {
        let body = exts.take(len as usize)?;
        if kind != 0 {
            continue;
        }
        let mut list = Reader(body);
        let mut list = Reader(list.vec16()?);
        while let Some(name_type) = list.u8() {
            let name = list.vec16()?;
            if name_type == 0 {
                return std::str::from_utf8(name).ok().filter(|s| !s.is_empty()).map(str::to_owned);
            }
        }
        return None;
    }
    None
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a 16-bit length prefix.
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()? as usize;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::client_hello_sni;

    /// A real ClientHello: what a sipstls (rustls) client sends first.
    fn hello(sni: Option<&str>) -> Vec<u8> {
        use sipstls_core::{ClientTarget, DomainConfig, DomainTable};
        let backend = sipstls::backend("rustls").expect("rustls backend");
        let mut table = DomainTable::new(backend);
        table.add_client_default(&DomainConfig::client(sipstls_conformance::pki::pki().roots())).unwrap();
        let target =
            ClientTarget { addr: Some("127.0.0.1:5061".parse().unwrap()), server_name: sni.map(Into::into), id: None };
        let mut s = table.connect(&target).unwrap();
        let mut out = vec![0u8; 4096];
        let n = s.take_tls(&mut out);
        out.truncate(n);
        out
    }

    #[test]
    fn finds_the_name_a_client_sends() {
        let h = hello(Some("sip.example.org"));
        assert_eq!(client_hello_sni(&h).as_deref(), Some("sip.example.org"));
    }

    #[test]
    fn no_name_without_sni() {
        assert_eq!(client_hello_sni(&hello(None)), None);
    }

    #[test]
    fn every_prefix_and_garbage_is_refused_without_panic() {
        let h = hello(Some("sip.example.org"));
        let full = client_hello_sni(&h);
        for n in 0..h.len() {
            let got = client_hello_sni(&h[..n]);
            assert!(got.is_none() || got == full, "prefix {n} gave {got:?}");
        }
        for b in [0u8, 1, 0x15, 0x17, 0xff] {
            let mut bad = h.clone();
            bad[0] = b;
            assert_eq!(client_hello_sni(&bad), None);
        }
        assert_eq!(client_hello_sni(b"OPTIONS sip:x SIP/2.0\r\n"), None);
    }
}
