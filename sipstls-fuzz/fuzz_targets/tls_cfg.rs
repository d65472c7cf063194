//! The Kamailio tls.cfg parser and the native TOML parser: any text gives a configuration
//! or a typed error naming file and line, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipstls_config::{KamailioConfig, ParseOptions};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let options = ParseOptions::default().with_deprecated_methods(flags & 1 == 1);
    match KamailioConfig::parse(text, "tls.cfg", &options) {
        Ok(cfg) => {
            // Parsing is deterministic.
            assert_eq!(KamailioConfig::parse(text, "tls.cfg", &options).ok(), Some(cfg));
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("tls.cfg"), "an error must name the file: {msg}");
        }
    }
    if flags & 2 == 2 {
        if let Err(e) = KamailioConfig::parse_toml(text, "tls.toml", &options) {
            let msg = e.to_string();
            assert!(msg.starts_with("tls.toml"), "an error must name the file: {msg}");
        }
    }
});
