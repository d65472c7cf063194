//! `ezk-ua`: an ezk-sip-core user agent whose SIP over TLS runs through sipstls.
//!
//! ```text
//! ezk-ua [--backend rustls|openssl] --ca ca.pem [--name sip.example.test]
//!        [--listen 127.0.0.1:5061 --cert server.pem --key server.key] [--serve-seconds N]
//!        [--options sip:127.0.0.1:5061;transport=tls] [--message URI --body TEXT] [--via URI]
//! ```
//!
//! `--backend` defaults to `$SIPSTLS_BACKEND`, then rustls. `--options`/`--message` send one
//! request (through `--via`, an outbound proxy, when given) and print its final status;
//! `--listen` answers OPTIONS and MESSAGE with 200 for `--serve-seconds` (default 0, or 60
//! when nothing is sent). Exits 0 when every request sent got a 2xx.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sip_types::uri::SipUri;
use sip_types::Method;
use sipstls_example_ezk::{add_tls, build_table, send_request, Responder};

/// Bound on one request's final response.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Default)]
struct Args {
    backend: Option<String>,
    ca: Option<String>,
    name: Option<String>,
    listen: Option<SocketAddr>,
    cert: Option<String>,
    key: Option<String>,
    serve_seconds: Option<u64>,
    options: Option<String>,
    message: Option<String>,
    body: String,
    via: Option<String>,
}

fn parse_args() -> Result<Args, Error> {
    let mut a = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            let usage: Vec<_> = include_str!("main.rs").lines().skip(3).take(3).map(|l| &l[l.len().min(4)..]).collect();
            println!("{}", usage.join("\n"));
            std::process::exit(0);
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--backend" => a.backend = Some(value),
            "--ca" => a.ca = Some(value),
            "--name" => a.name = Some(value),
            "--listen" => a.listen = Some(value.parse()?),
            "--cert" => a.cert = Some(value),
            "--key" => a.key = Some(value),
            "--serve-seconds" => a.serve_seconds = Some(value.parse()?),
            "--options" => a.options = Some(value),
            "--message" => a.message = Some(value),
            "--body" => a.body = value,
            "--via" => a.via = Some(value),
            _ => return Err(format!("unknown flag {flag}").into()),
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let a = parse_args()?;
    let backend = a.backend.or_else(|| std::env::var("SIPSTLS_BACKEND").ok()).unwrap_or_else(|| "rustls".into());
    let ca = std::fs::read(a.ca.as_deref().ok_or("--ca is required")?)?;
    let identity = match (&a.cert, &a.key) {
        (Some(c), Some(k)) => Some((std::fs::read(c)?, std::fs::read(k)?)),
        (None, None) => None,
        _ => return Err("--cert and --key go together".into()),
    };
    if a.listen.is_some() && identity.is_none() {
        return Err("--listen needs --cert and --key".into());
    }
    let server = identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice()));
    let table = Arc::new(build_table(&backend, &ca, server, a.name.as_deref())?);

    let mut builder = ezk_sip_core::Endpoint::builder();
    builder.user_agent("sipstls-ezk-ua");
    let responder = Responder::default();
    builder.add_layer(responder.handle());
    let (bound, log) = add_tls(&mut builder, table, a.listen).await?;
    let endpoint = builder.build();
    if let Some(bound) = bound {
        println!("listening on tls:{bound} (backend {backend})");
    }

    let via: Option<SipUri> = a.via.as_deref().map(str::parse).transpose()?;
    let mut all_ok = true;
    let mut sent = false;
    let mut held = Vec::new();
    for (method, uri, body) in [(Method::OPTIONS, &a.options, ""), (Method::MESSAGE, &a.message, a.body.as_str())] {
        let Some(uri) = uri else { continue };
        sent = true;
        let uri: SipUri = uri.parse()?;
        // Held, so that the next request to the same peer reuses the connection (ezk opens a
        // new one when the last handle was dropped a moment ago).
        held.push(endpoint.select_transport(via.as_ref().unwrap_or(&uri)).await?);
        let resp =
            tokio::time::timeout(REQUEST_TIMEOUT, send_request(&endpoint, method.clone(), &uri, via.as_ref(), body))
                .await
                .map_err(|_| format!("{method}: no final response within {REQUEST_TIMEOUT:?}"))??;
        println!("{method} -> {} over {}", resp.code, resp.transport);
        all_ok &= (200..300).contains(&resp.code);
    }
    let serve = a.serve_seconds.unwrap_or(if sent { 0 } else { 60 });
    if a.listen.is_some() && serve > 0 {
        tokio::time::sleep(Duration::from_secs(serve)).await;
        for r in responder.answered() {
            println!("answered {} {} from {} over {}", r.method, r.uri, r.source, r.transport);
        }
    }
    for h in log.all() {
        match &h.result {
            Ok(info) => println!("handshake {:?} {}: {} {}", h.side, h.peer, info.version.name(), info.cipher_suite),
            Err(e) => println!("handshake {:?} {}: failed: {e}", h.side, h.peer),
        }
    }
    if all_ok {
        Ok(())
    } else {
        Err("a request got no 2xx".into())
    }
}
