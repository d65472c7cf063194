//! `echo-server`: a TLS echo server on any sipstls backend.
//!
//! ```text
//! echo-server --backend rustls --listen 127.0.0.1:5061 --cert server.pem --key server.key [--ca ca.pem]
//! ```

use sipstls_examples::cli::ServerOptions;
use sipstls_examples::server::{echo, serve};

fn main() {
    let prog = "echo-server";
    let opts = ServerOptions::from_env(prog);
    if let Err(e) = serve(prog, &opts, std::sync::Arc::new(echo)) {
        eprintln!("{prog}: {e}");
        std::process::exit(2);
    }
}
