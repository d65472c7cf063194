//! `sip-server`: a SIP-over-TLS server that answers OPTIONS, keeps REGISTER bindings and
//! relays MESSAGE to a next hop over TLS, in the confined process model (a TLS manager and
//! N plaintext worker processes) or in a single process.
//!
//! ```text
//! sip-server --model confined --workers 4 --listen 127.0.0.1:5061 --cert server.pem --key server.key \
//!            [--ca ca.pem] [--next-hop 127.0.0.1:5071 --next-hop-name sip.example.test]
//! ```

use sipstls_examples::sipserver::{run, SipServerOptions};

fn main() {
    let prog = "sip-server";
    let opts = SipServerOptions::from_env(prog);
    if let Err(e) = run(prog, &opts) {
        eprintln!("{prog}: {e}");
        std::process::exit(2);
    }
}
