//! In-memory transport under `SslStream`: what the peer sent waits in `input`, what OpenSSL
//! writes collects in `output`. Reading an empty input is `WouldBlock`, which OpenSSL sees
//! as "want read": the session is driven without any socket.

use std::io::{self, Read, Write};

/// Ciphertext buffered from the peer before the session refuses more (back-pressure).
pub(crate) const MAX_INPUT: usize = 64 * 1024;
/// Ciphertext waiting for the caller before plaintext writes are refused (back-pressure).
pub(crate) const MAX_OUTPUT: usize = 256 * 1024;

/// Empties a buffer and gives its memory back when it is larger than a small record, so an
/// idle connection holds no buffer space (the idea of `SSL_MODE_RELEASE_BUFFERS`).
pub(crate) fn release(buf: &mut Vec<u8>) {
    buf.clear();
    if buf.capacity() > 2048 {
        *buf = Vec::new();
    }
}

#[derive(Debug, Default)]
pub(crate) struct MemIo {
    input: Vec<u8>,
    input_pos: usize,
    pub(crate) output: Vec<u8>,
    output_pos: usize,
    /// The framing of everything written, to know whether an alert is still owed.
    pub(crate) records: sipstls_core::record::RecordWatch,
}

impl MemIo {
    /// Appends as much of `data` as fits; returns the count.
    pub(crate) fn push_input(&mut self, data: &[u8]) -> usize {
        if self.input_pos > 0 && self.input_pos == self.input.len() {
            release(&mut self.input);
            self.input_pos = 0;
        }
        let room = MAX_INPUT.saturating_sub(self.input.len() - self.input_pos);
        let n = room.min(data.len());
        self.input.extend_from_slice(&data[..n]);
        n
    }

    pub(crate) fn pending_input(&self) -> usize {
        self.input.len() - self.input_pos
    }

    pub(crate) fn pending_output(&self) -> usize {
        self.output.len() - self.output_pos
    }

    /// Queues the alert for `e` if the library sent none while records still go out in
    /// the clear (OpenSSL sends none for bytes that are not TLS records at all).
    pub(crate) fn alert_if_missing(&mut self, e: &sipstls_core::Error) {
        if let Some(record) = self.records.missing_alert(e) {
            self.output.extend_from_slice(&record);
        }
    }

    pub(crate) fn take_output(&mut self, out: &mut [u8]) -> usize {
        let avail = &self.output[self.output_pos..];
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.output_pos += n;
        if self.output_pos == self.output.len() {
            release(&mut self.output);
            self.output_pos = 0;
        }
        n
    }
}

impl Read for MemIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = &self.input[self.input_pos..];
        if avail.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.input_pos += n;
        if self.input_pos == self.input.len() {
            release(&mut self.input);
            self.input_pos = 0;
        }
        Ok(n)
    }
}

impl Write for MemIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.records.observe(buf);
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
