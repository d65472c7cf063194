//! `sip-client`: sends SIP OPTIONS, MESSAGE or REGISTER over TLS and prints the responses.
//!
//! ```text
//! sip-client --connect 127.0.0.1:5061 --name sip.example.test --ca ca.pem [--method MESSAGE --body hi]
//! ```
//! Exit status: 0 when every request got a final response, 1 on a TLS or SIP failure,
//! 2 on bad options.

use std::io::Write;

use sipstls_examples::client::{run, ClientOptions};

fn main() {
    let prog = "sip-client";
    let opts = ClientOptions::from_env(prog);
    match run(&opts) {
        Ok(r) => {
            if let Some(info) = &r.info {
                eprintln!("{prog}: {} {} resumed={}", info.version, info.cipher_suite, info.resumed);
            }
            let _ = std::io::stdout().write_all(&r.raw);
        }
        Err(e) => {
            eprintln!("{prog}: {e}");
            std::process::exit(1);
        }
    }
}
