//! The ClientHello reader of `sipstls_core::hello` against what a real client sends: the
//! manager peeks at it to log the SNI of a handshake that fails.

mod tests {
    use sipstls_core::hello::{peek, sni_in_prefix as client_hello_sni, Peek};

    /// A real ClientHello: what a sipstls (rustls) client sends first.
    fn hello(sni: Option<&str>) -> Vec<u8> {
        use sipstls_core::{ClientTarget, DomainConfig, DomainTable};
        let backend = sipstls::backend("rustls").expect("rustls backend");
        let mut table = DomainTable::new(backend);
        table.add_client_default(&DomainConfig::client(sipstls_conformance::pki::pki().roots())).unwrap();
        let mut target = ClientTarget::addr("127.0.0.1:5061".parse().unwrap());
        target.server_name = sni.map(Into::into);
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
    fn the_whole_hello_is_read_once_complete() {
        let h = hello(Some("sip.example.org"));
        let Peek::Hello(got) = peek(&h) else { panic!("a rustls ClientHello did not read: {:?}", peek(&h)) };
        assert_eq!(got.sni.as_deref(), Some("sip.example.org"));
        assert_eq!(peek(&h[..h.len() - 1]), Peek::NeedMore);
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
