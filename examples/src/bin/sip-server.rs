//! `sip-server`: a SIP-over-TLS server that answers OPTIONS, keeps REGISTER bindings and
//! relays MESSAGE to a next hop over TLS, in the confined process model (a TLS manager and
//! N plaintext worker processes) or in a single process.
//!
//! ```text
//! sip-server --model confined --workers 4 --listen 127.0.0.1:5061 --cert server.pem --key server.key \
//!            [--ca ca.pem] [--next-hop 127.0.0.1:5071 --next-hop-name sip.example.test]
//! ```

use sipstls_examples::sipserver::{run, usage, SipServerOptions};

fn main() {
    let prog = "sip-server";
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{}", usage(prog));
        return;
    }
    let result = SipServerOptions::parse(args).and_then(|opts| run(prog, &opts));
    if let Err(e) = result {
        eprintln!("{prog}: {e}\n{}", usage(prog));
        std::process::exit(2);
    }
}
