//! Outbound listeners: a SIP server connects with plaintext TCP, the manager connects out
//! with TLS to the route's destination and bridges the two until either side ends. The
//! TLS peer's requests come back on the same connection, so the SIP server sees one TCP
//! connection per TLS connection, as if it spoke TLS itself.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sipstls_core::proxy::{Command, Parsed, ProxyHeader};
use sipstls_core::{ClientTarget, Session};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::bridge;
use crate::error::CloseReason;
use crate::manager::{handshake, handshake_failed, Inner, ListenerEntry, Route};
use crate::sock::Watched;

/// Reads the PROXY v2 header that starts a dynamic route's connection (exactly its bytes,
/// within `limit`) and returns the destination address and the AUTHORITY TLV (the server
/// name).
async fn read_destination(plain: &mut TcpStream, limit: Duration) -> Result<(SocketAddr, Option<String>), String> {
    let read = async {
        let mut buf = vec![0u8; 16];
        plain.read_exact(&mut buf).await.map_err(|e| format!("reading the PROXY v2 header: {e}"))?;
        // Anything else is refused at once, not after waiting for a length it never meant.
        if buf[..12] != sipstls_core::proxy::SIGNATURE {
            return Err("the connection does not start with a PROXY v2 header".to_string());
        }
        let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
        buf.resize(16 + len, 0);
        plain.read_exact(&mut buf[16..]).await.map_err(|e| format!("reading the PROXY v2 header: {e}"))?;
        Ok::<_, String>(buf)
    };
    let buf = tokio::time::timeout(limit, read).await.map_err(|_| "no PROXY v2 header in time".to_string())??;
    let header: ProxyHeader = match ProxyHeader::parse(&buf) {
        Ok(Parsed::Complete { header, .. }) => header,
        Ok(Parsed::Incomplete { .. }) => return Err("truncated PROXY v2 header".into()),
        Err(e) => return Err(format!("bad PROXY v2 header: {e}")),
    };
    match (header.command, header.addresses) {
        (Command::Proxy, Some((_, dest))) => Ok((dest, header.authority)),
        _ => Err("the PROXY v2 header names no destination (LOCAL command or UNSPEC family)".into()),
    }
}

/// Serves one connection of an outbound listener.
pub(crate) async fn relay(
    inner: Arc<Inner>,
    mut plain: TcpStream,
    from: SocketAddr,
    route: Arc<Route>,
    entry: Arc<ListenerEntry>,
) {
    let _ = plain.set_nodelay(true);
    let target = match &*route {
        Route::Static(t) => t.clone(),
        Route::ProxyV2 { domain_id } => match read_destination(&mut plain, inner.cfg.handshake_timeout).await {
            Ok((dest, server_name)) => {
                let mut target = ClientTarget::addr(dest);
                target.id = domain_id.clone();
                target.server_name = server_name;
                target
            }
            Err(error) => {
                tracing::warn!(listener = %entry.name, %from, %error, "outbound connection refused");
                let reason = CloseReason::Io(error);
                return inner.ended(0, None, Some(&entry), reason).await;
            }
        },
    };
    // Checked by listen_outbound (static) or set above (PROXY v2).
    let Some(dest) = target.addr else { return };
    let sni = target.server_name.as_deref();
    let session = match inner.table.connect(&target) {
        Ok(s) => s,
        Err(e) => return handshake_failed(&inner, &entry, dest, sni, &e.into()),
    };
    let tcp = match tokio::time::timeout(inner.cfg.connect_timeout, TcpStream::connect(dest)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return handshake_failed(&inner, &entry, dest, sni, &e.into()),
        Err(_) => return handshake_failed(&inner, &entry, dest, sni, &CloseReason::Io("TCP connect timed out".into())),
    };
    let _ = tcp.set_nodelay(true);
    let (tcp, session, leftover) = match handshake(&inner, session, tcp, inner.cfg.handshake_timeout).await {
        Ok(x) => x,
        Err(f) => return handshake_failed(&inner, &entry, dest, sni, &f.reason),
    };
    inner.counters.outbound_ok.fetch_add(1, Ordering::Relaxed);
    entry.handshakes_ok.fetch_add(1, Ordering::Relaxed);
    let conn = inner.next_conn.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(listener = %entry.name, conn, dest = %dest, sni = sni.unwrap_or("-"), "outbound TLS connection up");
    drop(target);
    let (peer, plain) = match (tcp.into_std(), plain.into_std()) {
        (Ok(t), Ok(p)) => match (Watched::new(t), Watched::new(p)) {
            (Ok(t), Ok(p)) => (t, p),
            (Err(e), _) | (_, Err(e)) => return inner.ended(conn, None, Some(&entry), e.into()).await,
        },
        (Err(e), _) | (_, Err(e)) => return inner.ended(conn, None, Some(&entry), e.into()).await,
    };
    let session: Box<dyn Session> = session;
    let (_keep, lost) = watch::channel(false);
    let closing = inner.closing.subscribe();
    let reason =
        bridge::run(session, leftover, Vec::new(), peer, plain, inner.limits(), lost, closing, &entry.traffic).await;
    inner.ended(conn, None, Some(&entry), reason).await;
}
