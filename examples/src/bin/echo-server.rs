//! `echo-server`: a TLS echo server on any sipstls backend.
//!
//! ```text
//! echo-server --backend rustls --listen 127.0.0.1:5061 --cert server.pem --key server.key [--ca ca.pem]
//! ```

use sipstls_examples::cli::{usage, ServerOptions};
use sipstls_examples::server::{echo, serve};

fn main() {
    let prog = "echo-server";
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{}", usage(prog));
        return;
    }
    let result = ServerOptions::parse(args).and_then(|opts| serve(prog, &opts, std::sync::Arc::new(echo)));
    if let Err(e) = result {
        eprintln!("{prog}: {e}\n{}", usage(prog));
        std::process::exit(2);
    }
}
