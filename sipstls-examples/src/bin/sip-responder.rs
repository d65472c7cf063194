//! `sip-responder`: a minimal SIP-over-TLS responder (OPTIONS -> 200 OK, MESSAGE echoed, CRLF keep-alive) on any sipstls backend.
//!
//! ```text
//! sip-responder --backend rustls --listen 127.0.0.1:5061 --cert server.pem --key server.key [--ca ca.pem]
//! ```

use sipstls_examples::cli::ServerOptions;
use sipstls_examples::server::{serve, sip_responder};

fn main() {
    let prog = "sip-responder";
    let opts = ServerOptions::from_env(prog);
    if let Err(e) = serve(prog, &opts, std::sync::Arc::new(sip_responder)) {
        eprintln!("{prog}: {e}");
        std::process::exit(2);
    }
}
