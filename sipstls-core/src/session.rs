//! The sans-I/O session every backend implements.

use crate::config::Role;
use crate::error::{Error, Result};
use crate::info::TlsInfo;

/// What a plaintext [`Session::read`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::exhaustive_enums)] // closed: data, nothing yet, or closed: the whole read contract
pub enum ReadStatus {
    /// This many bytes of plaintext were copied into the buffer (never 0).
    Data(usize),
    /// No plaintext is available now: feed more ciphertext with [`Session::feed_tls`].
    WouldBlock,
    /// The peer sent close_notify: no more plaintext will come.
    Closed,
}

/// One TLS connection, without I/O.
///
/// The caller moves bytes between the session and its transport:
///
/// 1. bytes received from the peer go into [`feed_tls`](Session::feed_tls);
/// 2. while [`wants_write`](Session::wants_write), bytes from
///    [`take_tls`](Session::take_tls) go to the peer;
/// 3. plaintext comes out of [`read`](Session::read) and goes in through
///    [`write`](Session::write) (writes made during the handshake are sent after it).
///
/// Every backend behaves the same way under this contract, which the conformance suite
/// checks. Fatal errors are sticky: after one, every call that can fail returns it again,
/// and [`take_tls`](Session::take_tls) still yields the alert that tells the peer: every
/// fatal error the peer caused queues the alert [`Error::alert`] names, except where a
/// library sends none once records are encrypted and offers no way to (listed in
/// `docs/robustness.md`).
pub trait Session: Send {
    /// Which side this session is.
    fn role(&self) -> Role;

    /// Feeds ciphertext received from the peer and processes it. Returns how many bytes
    /// were taken; fewer than `input.len()` (even 0) means internal buffers are full:
    /// [`read`](Session::read) plaintext and [`take_tls`](Session::take_tls) first, then
    /// feed the rest.
    ///
    /// Progress is guaranteed: a session takes fewer bytes than offered only while
    /// plaintext waits for `read` or ciphertext for `take_tls`. With both drained, a call
    /// with non-empty input takes at least one byte or fails; input the session can never
    /// take (a handshake message larger than the library joins, say) is a typed error with
    /// the alert it calls for, never a refusal that no caller action can end. A driver may
    /// therefore treat a second refusal after a drain as an error.
    fn feed_tls(&mut self, input: &[u8]) -> Result<usize>;

    /// True while ciphertext is waiting for [`take_tls`](Session::take_tls).
    fn wants_write(&self) -> bool;

    /// Copies pending ciphertext for the peer into `out`; returns the byte count (0 when
    /// nothing is pending).
    fn take_tls(&mut self, out: &mut [u8]) -> usize;

    /// True until the handshake has completed.
    fn is_handshaking(&self) -> bool;

    /// Reads decrypted application data.
    fn read(&mut self, buf: &mut [u8]) -> Result<ReadStatus>;

    /// Queues plaintext for encryption; returns how many bytes were accepted (less than
    /// `data.len()`, even 0, when the outgoing buffer is full: drain with
    /// [`take_tls`](Session::take_tls) and retry). Before the handshake completes, the
    /// plaintext is held and sent once it does.
    fn write(&mut self, data: &[u8]) -> Result<usize>;

    /// Queues a close_notify alert. Later writes fail with [`Error::Closed`].
    fn close_notify(&mut self);

    /// A snapshot of the negotiated parameters and the peer's certificate; `None` while
    /// handshaking or after a failed handshake.
    fn info(&self) -> Option<TlsInfo>;

    /// The sticky fatal error, if the session has failed.
    fn error(&self) -> Option<&Error>;

    /// Gives back the memory the session keeps only to be faster: buffers it holds on to
    /// between records (at most a few KiB each) while nothing is in them. Call it when
    /// the connection goes idle (the confined manager does, before each wait); the next
    /// record allocates them again. Data waiting in the session is never dropped. Backends
    /// that keep no such buffers do nothing.
    fn release_memory(&mut self) {}
}

/// Bookkeeping shared by backend implementations: the sticky error and the close state.
#[derive(Debug, Default)]
pub struct SessionState {
    error: Option<Error>,
    sent_close: bool,
}

impl SessionState {
    /// Returns the sticky error, if any, as `Err`.
    pub fn check(&self) -> Result<()> {
        match &self.error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Records `e` as the sticky error (the first one wins) and returns it.
    pub fn fail(&mut self, e: Error) -> Error {
        self.error.get_or_insert(e).clone()
    }

    /// The sticky error.
    pub fn error(&self) -> Option<&Error> {
        self.error.as_ref()
    }

    /// Marks close_notify as sent.
    pub fn mark_closed(&mut self) {
        self.sent_close = true;
    }

    /// Fails with [`Error::Closed`] after close_notify was sent, or with the sticky error.
    pub fn check_writable(&self) -> Result<()> {
        self.check()?;
        if self.sent_close {
            return Err(Error::Closed);
        }
        Ok(())
    }
}
