//! A minimal reader of the first ClientHello: its SNI and ALPN offer.
//!
//! wolfSSL cannot move a session to another `WOLFSSL_CTX` without its OpenSSL
//! compatibility layer (`wolfSSL_set_SSL_CTX`), and its ALPN choice follows the client's
//! preference. So a server session reads the ClientHello first (it is plaintext in TLS 1.2
//! and 1.3), picks the domain by SNI and the ALPN protocol by the server's preference,
//! and only then creates the wolfSSL session from the chosen domain and gives it every byte
//! received. Anything that does not look like a well-formed ClientHello goes to the
//! default domain unchanged, so wolfSSL itself reports the error.

/// Largest record fragment TLS allows (2^14 plus the TLS 1.2 expansion allowance).
const MAX_RECORD: usize = 16384 + 2048;
/// Largest ClientHello we wait for before handing over to wolfSSL.
const MAX_HELLO: usize = 64 * 1024;

/// What the ClientHello asked for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Hello {
    /// The host_name entry of the server_name extension.
    pub(crate) sni: Option<String>,
    /// The protocols of the ALPN extension, in the client's order; `None` without ALPN.
    pub(crate) alpn: Option<Vec<Vec<u8>>>,
}

/// The outcome of looking at the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Peek {
    /// Not enough bytes yet.
    NeedMore,
    /// A complete ClientHello.
    Hello(Hello),
    /// Not a ClientHello we can read: let wolfSSL deal with it.
    Invalid,
}

/// Looks at the first bytes a client sent.
pub(crate) fn peek(input: &[u8]) -> Peek {
    // Reassemble the handshake message from consecutive handshake records.
    let mut msg = Vec::new();
    let mut rest = input;
    loop {
        if msg.len() >= 4 {
            let len = (usize::from(msg[1]) << 16) | (usize::from(msg[2]) << 8) | usize::from(msg[3]);
            if msg[0] != 1 || len > MAX_HELLO {
                return Peek::Invalid;
            }
            if msg.len() >= 4 + len {
                return match parse_client_hello(&msg[4..4 + len]) {
                    Some(h) => Peek::Hello(h),
                    None => Peek::Invalid,
                };
            }
        }
        if rest.len() < 5 {
            return Peek::NeedMore;
        }
        let (typ, major, len) = (rest[0], rest[1], (usize::from(rest[3]) << 8) | usize::from(rest[4]));
        if typ != 22 || major != 3 || len == 0 || len > MAX_RECORD {
            return Peek::Invalid;
        }
        if rest.len() < 5 + len {
            return Peek::NeedMore;
        }
        msg.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| usize::from(b[0]))
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2).map(|b| (usize::from(b[0]) << 8) | usize::from(b[1]))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(n)
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(n)
    }
}

fn parse_client_hello(body: &[u8]) -> Option<Hello> {
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy_version, random
    r.vec8()?; // session id
    r.vec16()?; // cipher suites
    r.vec8()?; // compression methods
    let mut hello = Hello::default();
    if r.0.is_empty() {
        return Some(hello); // no extensions
    }
    let mut exts = Reader(r.vec16()?);
    while !exts.0.is_empty() {
        let typ = exts.u16()?;
        let mut data = Reader(exts.vec16()?);
        match typ {
            0 => {
                let mut list = Reader(data.vec16()?);
                while !list.0.is_empty() {
                    let kind = list.u8()?;
                    let name = list.vec16()?;
                    if kind == 0 && hello.sni.is_none() {
                        hello.sni = Some(std::str::from_utf8(name).ok()?.to_owned());
                    }
                }
            }
            16 => {
                let mut list = Reader(data.vec16()?);
                let mut protos = Vec::new();
                while !list.0.is_empty() {
                    let p = list.vec8()?;
                    if p.is_empty() {
                        return None;
                    }
                    protos.push(p.to_vec());
                }
                hello.alpn = Some(protos);
            }
            _ => {}
        }
    }
    Some(hello)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello_record(exts: &[u8]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend([0u8; 32]);
        body.push(0); // session id
        body.extend([0, 2, 0x13, 0x01]); // one suite
        body.extend([1, 0]); // null compression
        body.extend((exts.len() as u16).to_be_bytes());
        body.extend(exts);
        let mut msg = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
        msg.extend(body);
        let mut rec = vec![22, 3, 1, (msg.len() >> 8) as u8, msg.len() as u8];
        rec.extend(msg);
        rec
    }

    #[test]
    fn sni_and_alpn() {
        let name = b"sip.example.test";
        let mut sni = vec![0, 0];
        let list_len = 3 + name.len();
        sni.extend(((list_len + 2) as u16).to_be_bytes());
        sni.extend((list_len as u16).to_be_bytes());
        sni.push(0);
        sni.extend((name.len() as u16).to_be_bytes());
        sni.extend(name);
        let mut alpn = vec![0, 16, 0, 8, 0, 6, 3, b's', b'i', b'p', 1, b'x'];
        sni.append(&mut alpn);
        let rec = hello_record(&sni);
        let want = Hello { sni: Some("sip.example.test".into()), alpn: Some(vec![b"sip".to_vec(), b"x".to_vec()]) };
        assert_eq!(peek(&rec), Peek::Hello(want));
        for cut in 0..rec.len() {
            assert_eq!(peek(&rec[..cut]), Peek::NeedMore, "cut {cut}");
        }
    }

    #[test]
    fn garbage_is_invalid() {
        assert_eq!(peek(&[0x17, 3, 3, 0, 1, 0]), Peek::Invalid);
        assert_eq!(peek(&[0x16, 3, 1, 0xFF, 0xFF]), Peek::Invalid);
        assert_eq!(peek(&[0x16, 3, 1, 0, 4, 2, 0, 0, 0]), Peek::Invalid);
    }
}
