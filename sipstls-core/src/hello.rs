//! A minimal reader of the first ClientHello: its SNI and ALPN offer. The ClientHello is
//! plaintext in TLS 1.2 and 1.3, so a server can read it before any TLS library does:
//!
//! - [`peek`] joins the whole message over its records, for a backend that must choose
//!   the domain (by SNI) and the ALPN protocol (by the server's preference) before it
//!   creates the library's session. Anything that is not a well-formed ClientHello is
//!   [`Peek::Invalid`]: hand it to the library unchanged, so that the library reports the
//!   error.
//! - [`sni_in_prefix`] reads the server name from whatever part of the first record has
//!   arrived, for a log line about a handshake that then fails.
//!
//! Both read only the bytes given and never panic.

/// Largest record fragment TLS allows (2^14 plus the TLS 1.2 expansion allowance).
const MAX_RECORD: usize = 16384 + 2048;
/// Largest ClientHello we wait for before handing over to wolfSSL.
const MAX_HELLO: usize = 64 * 1024;

/// What the ClientHello asked for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Hello {
    /// The host_name entry of the server_name extension.
    pub sni: Option<String>,
    /// The protocols of the ALPN extension, in the client's order; `None` without ALPN.
    pub alpn: Option<Vec<Vec<u8>>>,
}

/// The outcome of looking at the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
#[allow(clippy::exhaustive_enums)] // the three outcomes of reading a prefix: complete
pub enum Peek {
    /// Not enough bytes yet.
    NeedMore,
    /// A complete ClientHello.
    Hello(Hello),
    /// Not a ClientHello we can read: let wolfSSL deal with it.
    Invalid,
}

/// Looks at the first bytes a client sent: the ClientHello once all its records are in
/// (at most 64 KiB of message).
pub fn peek(input: &[u8]) -> Peek {
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
                return match parse_client_hello(&msg[4..4 + len], false) {
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

/// The server name of a ClientHello at the start of `input`, which holds the first record
/// or a prefix of it: `None` when the bytes are not a ClientHello, carry no name, or end
/// before it.
pub fn sni_in_prefix(input: &[u8]) -> Option<String> {
    let mut r = Reader(input);
    // Record header: handshake (22), any version, length; then the handshake header:
    // ClientHello (1) and its 24-bit length.
    if r.u8()? != 22 {
        return None;
    }
    r.take(4)?;
    if r.u8()? != 1 {
        return None;
    }
    r.take(3)?;
    parse_client_hello(r.0, true)?.sni.filter(|s| !s.is_empty())
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

/// Reads a ClientHello body. With `partial`, the body may end anywhere in the
/// extensions: what is complete by then is read.
fn parse_client_hello(body: &[u8], partial: bool) -> Option<Hello> {
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy_version, random
    r.vec8()?; // session id
    r.vec16()?; // cipher suites
    r.vec8()?; // compression methods
    let mut hello = Hello::default();
    if r.0.is_empty() {
        return Some(hello); // no extensions
    }
    let len = r.u16()?;
    let mut exts = match r.take(len) {
        Some(e) => Reader(e),
        None if partial => Reader(r.0),
        None => return None,
    };
    while !exts.0.is_empty() {
        let (Some(typ), Some(data)) = (exts.u16(), exts.vec16()) else {
            return partial.then_some(hello);
        };
        let mut data = Reader(data);
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

    #[test]
    fn sni_in_every_prefix() {
        let name = b"sip.example.test";
        let mut ext = vec![0, 16, 0, 5, 0, 3, 2, b'h', b'2']; // ALPN first, then SNI
        let list_len = 3 + name.len();
        ext.extend([0, 0]);
        ext.extend(((list_len + 2) as u16).to_be_bytes());
        ext.extend((list_len as u16).to_be_bytes());
        ext.push(0);
        ext.extend((name.len() as u16).to_be_bytes());
        ext.extend(name);
        ext.extend([0, 0x2b, 0, 3, 2, 3, 4]); // supported_versions after it
        let rec = hello_record(&ext);
        assert_eq!(sni_in_prefix(&rec).as_deref(), Some("sip.example.test"));
        let name_end = rec.len() - 7;
        for cut in 0..rec.len() {
            let got = sni_in_prefix(&rec[..cut]);
            let want = (cut >= name_end).then(|| "sip.example.test".to_owned());
            assert_eq!(got, want, "cut {cut}");
        }
        let mut not_hello = rec.clone();
        not_hello[5] = 2; // ServerHello
        assert_eq!(sni_in_prefix(&not_hello), None);
        assert_eq!(sni_in_prefix(&hello_record(&[])), None, "no extensions, no name");
    }
}
