//! The PROXY protocol v2 parser: any bytes give a header, "incomplete" or a typed error;
//! a header that parses and re-encodes parses back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipstls::proxy::{Parsed, ProxyHeader};

fuzz_target!(|data: &[u8]| {
    match ProxyHeader::parse(data) {
        Ok(Parsed::Complete { header, consumed }) => {
            assert!(consumed <= data.len());
            if let Ok(bytes) = header.encode() {
                match ProxyHeader::parse(&bytes) {
                    Ok(Parsed::Complete { header: again, consumed }) => {
                        assert_eq!(consumed, bytes.len());
                        assert_eq!(again, header, "re-encoded header differs");
                    }
                    other => panic!("a re-encoded header does not parse: {other:?}"),
                }
            }
        }
        Ok(Parsed::Incomplete { needed }) => assert!(needed > 0),
        Err(_) => {}
    }
});
