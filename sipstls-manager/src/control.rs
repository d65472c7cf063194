//! The control channel between the manager and one worker: a `SOCK_SEQPACKET` socketpair
//! (message boundaries kept, so no framing of our own), each message a small JSON head,
//! optionally followed by connection metadata and carrying one file descriptor
//! (`SCM_RIGHTS`).
//!
//! Wire format of one message: `u32` little-endian length of the JSON head, the head, then
//! the metadata bytes (a PROXY protocol v2 header, see [`ConnMeta`](crate::ConnMeta)) up to the end of the
//! message.

use std::io::{IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType};
use serde::{Deserialize, Serialize};

use crate::error::{CloseReason, ConnectError};

/// The largest control message (head + metadata). A client chain of a few certificates is
/// far below it; a message over it is refused by the sender, never truncated.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// A message from the manager to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// A new inbound connection; its plaintext end comes with the message.
    Inbound {
        /// Connection id, unique in this manager.
        conn: u64,
    },
    /// The answer to [`ToManager::Connect`]: a new connection (its end comes with the
    /// message) or, when `reused`, one this worker already holds.
    Connected {
        /// The request this answers.
        req: u64,
        /// Connection id.
        conn: u64,
        /// True when an open connection with the same destination, client domain and SNI
        /// was reused: no descriptor comes with the message.
        reused: bool,
    },
    /// The answer to [`ToManager::Connect`] when no connection could be made.
    ConnectFailed {
        /// The request this answers.
        req: u64,
        /// Why.
        error: ConnectError,
    },
    /// A connection handed to this worker has ended.
    Closed {
        /// Connection id.
        conn: u64,
        /// Why.
        reason: CloseReason,
    },
}

/// A message from a worker to the manager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum ToManager {
    /// Open (or reuse) an outbound TLS connection.
    Connect {
        /// Request id chosen by the worker, echoed in the answer.
        req: u64,
        /// Where and with which client domain.
        target: WireTarget,
    },
}

/// A worker's outbound request as it crosses the control channel: a
/// [`ClientTarget`](sipstls_core::ClientTarget) with its address, and whether an open
/// connection may be reused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct WireTarget {
    /// The TCP destination.
    pub dest: SocketAddr,
    /// An explicit client domain id.
    pub domain_id: Option<String>,
    /// The server name to send as SNI and to verify.
    pub server_name: Option<String>,
    /// Whether an open connection with the same destination, client domain and server
    /// name may be reused.
    pub reuse: bool,
}

impl WireTarget {
    /// `target` on the wire; `None` without an address (the manager connects by address).
    pub fn new(target: &sipstls_core::ClientTarget, reuse: bool) -> Option<Self> {
        Some(WireTarget {
            dest: target.addr?,
            domain_id: target.id.clone(),
            server_name: target.server_name.clone(),
            reuse,
        })
    }

    /// Back to the table's target type.
    pub fn client_target(&self) -> sipstls_core::ClientTarget {
        let mut target = sipstls_core::ClientTarget::addr(self.dest);
        target.id = self.domain_id.clone();
        target.server_name = self.server_name.clone();
        target
    }
}

/// A control channel pair: `(manager end, worker end)`. Create it before `fork()`; the
/// parent keeps the manager end and closes the worker end, the child the other way round.
/// Both ends are close-on-exec.
pub fn channel() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = socket::socketpair(socket::AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)?;
    Ok((a, b))
}

/// Encodes `head` and `meta` into one message.
pub(crate) fn encode<T: Serialize>(head: &T, meta: &[u8]) -> std::io::Result<Vec<u8>> {
    let json = serde_json::to_vec(head).map_err(std::io::Error::other)?;
    let mut out = Vec::with_capacity(4 + json.len() + meta.len());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(meta);
    if out.len() > MAX_MESSAGE {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "control message over 64 KiB"));
    }
    Ok(out)
}

/// Splits a message into its decoded head and the metadata bytes.
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(msg: &[u8]) -> std::io::Result<(T, &[u8])> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("control message: {what}"));
    let len = msg.get(..4).ok_or_else(|| bad("shorter than its length field"))?;
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let head = msg.get(4..4usize.saturating_add(len)).ok_or_else(|| bad("head runs past the end"))?;
    let head = serde_json::from_slice(head).map_err(|e| bad(&e.to_string()))?;
    Ok((head, &msg[4 + len..]))
}

/// Sends one message, with `fd` attached when given. Returns `WouldBlock` on a
/// non-blocking socket whose buffer is full.
pub(crate) fn send(sock: RawFd, msg: &[u8], fd: Option<RawFd>) -> std::io::Result<()> {
    let iov = [IoSlice::new(msg)];
    let fds;
    let cmsgs: &[ControlMessage] = match fd {
        Some(f) => {
            fds = [f];
            &[ControlMessage::ScmRights(&fds)]
        }
        None => &[],
    };
    let n = socket::sendmsg::<()>(sock, &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)?;
    if n != msg.len() {
        return Err(std::io::Error::other("control message sent in part"));
    }
    Ok(())
}

/// Receives one message into `buf`; returns its length (0 at end of stream) and the
/// descriptor that came with it. Descriptors are received close-on-exec; a truncated
/// message is an error (and any descriptor with it is closed).
pub(crate) fn recv(sock: RawFd, buf: &mut [u8]) -> std::io::Result<(usize, Option<OwnedFd>)> {
    let mut cmsg = nix::cmsg_space!([RawFd; 2]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = socket::recvmsg::<()>(sock, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            for r in raw {
                // SAFETY: the kernel just installed `r` in our descriptor table for this
                // message (SCM_RIGHTS); nothing else owns it, so taking ownership is sound.
                fds.push(unsafe { OwnedFd::from_raw_fd(r) });
            }
        }
    }
    let truncated = msg.flags.intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
    let n = msg.bytes;
    if truncated {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "control message truncated"));
    }
    if fds.len() > 1 {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "more than one descriptor"));
    }
    Ok((n, fds.pop()))
}

/// Puts `fd` into non-blocking mode.
pub(crate) fn set_nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_message_and_its_descriptor_cross_the_channel() {
        let (m, w) = channel().unwrap();
        let (mine, theirs) = UnixStream::pair().unwrap();
        let msg = encode(&ToWorker::Inbound { conn: 7 }, b"META").unwrap();
        send(m.as_raw_fd(), &msg, Some(theirs.as_raw_fd())).unwrap();
        drop(theirs);
        let mut buf = vec![0; MAX_MESSAGE];
        let (n, fd) = recv(w.as_raw_fd(), &mut buf).unwrap();
        let (head, meta): (ToWorker, _) = decode(&buf[..n]).unwrap();
        assert_eq!(head, ToWorker::Inbound { conn: 7 });
        assert_eq!(meta, b"META");
        let mut got = UnixStream::from(fd.expect("descriptor"));
        (&mine).write_all(b"ping").unwrap();
        let mut four = [0; 4];
        got.read_exact(&mut four).unwrap();
        assert_eq!(&four, b"ping");
    }

    #[test]
    fn end_of_stream_reads_as_zero() {
        let (m, w) = channel().unwrap();
        drop(m);
        let mut buf = [0; 64];
        assert_eq!(recv(w.as_raw_fd(), &mut buf).unwrap().0, 0);
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        for bad in [&b""[..], b"\x01", b"\xff\xff\xff\xff{}", b"\x02\x00\x00\x00{]", b"\x02\x00\x00\x00{}"] {
            assert!(decode::<ToWorker>(bad).is_err(), "{bad:?}");
        }
        let mut buf = [0; 8];
        let (m, w) = channel().unwrap();
        send(m.as_raw_fd(), &[0; 100], None).unwrap();
        assert_eq!(recv(w.as_raw_fd(), &mut buf).unwrap_err().kind(), std::io::ErrorKind::InvalidData);
    }

    #[test]
    fn oversize_messages_are_refused_by_the_sender() {
        let big = vec![0u8; MAX_MESSAGE];
        assert!(encode(&ToWorker::Inbound { conn: 1 }, &big).is_err());
    }
}
