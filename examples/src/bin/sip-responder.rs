//! `sip-responder`: a minimal SIP-over-TLS responder (OPTIONS -> 200 OK, MESSAGE echoed, CRLF keep-alive) on any sipstls backend.
//!
//! ```text
//! sip-responder --backend rustls --listen 127.0.0.1:5061 --cert server.pem --key server.key [--ca ca.pem]
//! ```

use sipstls_examples::cli::{usage, ServerOptions};
use sipstls_examples::server::{serve, sip_responder};

fn main() {
    let prog = "sip-responder";
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{}", usage(prog));
        return;
    }
    let result = ServerOptions::parse(args).and_then(|opts| serve(prog, &opts, std::sync::Arc::new(sip_responder)));
    if let Err(e) = result {
        eprintln!("{prog}: {e}\n{}", usage(prog));
        std::process::exit(2);
    }
}
