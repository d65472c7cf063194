//! What a backend needs to keep its alert promise: a watch over the records a session
//! sends. TLS libraries send a fatal alert for nearly every error, but not all of them for
//! all errors (bytes that are not TLS at all, some fragmentation errors). While this side
//! still sends in the clear, a backend can write the alert itself; [`RecordWatch`]
//! tells when that is, and whether the library's last record already was an alert.

use crate::error::Error;

/// The longest record body in the clear (2^14, RFC 8446 section 5.1, RFC 5246 6.2.1).
const MAX_PLAINTEXT: usize = 1 << 14;
/// The longest protected record body any version allows (2^14 + 2048, RFC 5246 6.2.3).
const MAX_PROTECTED: usize = (1 << 14) + 2048;
/// The longest protected record body of TLS 1.3 (2^14 + 256, RFC 8446 section 5.2).
const MAX_PROTECTED_TLS13: usize = (1 << 14) + 256;

/// Record content types.
const CHANGE_CIPHER_SPEC: u8 = 0x14;
const ALERT: u8 = 0x15;
const APPLICATION_DATA: u8 = 0x17;

/// Follows the record framing of a byte stream: what a session sends (to know whether an
/// alert is still owed) or what its peer sends in the clear (to hold it to the 2^14-byte
/// limit of plaintext records).
#[derive(Debug, Default, Clone)]
pub struct RecordWatch {
    /// The header of the record being written, as far as seen.
    header: [u8; 5],
    header_len: usize,
    /// Body bytes of the current record still to come.
    left: usize,
    /// The last record begun: (content type, body length).
    last: Option<(u8, usize)>,
    /// A ChangeCipherSpec or an encrypted record went by: records are protected from here.
    encrypting: bool,
    /// A record announced more than its kind may carry: 2^14 bytes in the clear, 2^14 +
    /// 2048 once protected (2^14 + 256 under TLS 1.3).
    oversized: bool,
    /// The stream is TLS 1.3 (see [`RecordWatch::tls13`]).
    tls13: bool,
    /// The content type of the stream's first record.
    first_type: Option<u8>,
    /// A record header named a content type TLS does not define (other than 20 to 23).
    unknown_type: bool,
}

impl RecordWatch {
    /// Takes note of `bytes`, the next bytes this side sends.
    pub fn observe(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.left > 0 {
                let n = self.left.min(bytes.len());
                self.left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (5 - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
            self.header_len += n;
            bytes = &bytes[n..];
            if self.header_len == 5 {
                let typ = self.header[0];
                let len = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                let limit = match (self.encrypting, self.tls13) {
                    (false, _) => MAX_PLAINTEXT,
                    (true, false) => MAX_PROTECTED,
                    (true, true) => MAX_PROTECTED_TLS13,
                };
                self.oversized |= len > limit;
                self.first_type.get_or_insert(typ);
                self.unknown_type |= !(CHANGE_CIPHER_SPEC..=APPLICATION_DATA).contains(&typ);
                self.encrypting |= typ == CHANGE_CIPHER_SPEC || typ == APPLICATION_DATA;
                self.last = Some((typ, len));
                self.left = len;
                self.header_len = 0;
            }
        }
    }

    /// Marks the stream as TLS 1.3 (once negotiated): later protected records may carry at
    /// most 2^14 + 256 bytes.
    pub fn tls13(&mut self) {
        self.tls13 = true;
    }

    /// True once a record announced more than it may carry: over 2^14 bytes before the
    /// stream's first ChangeCipherSpec or protected record, over 2^14 + 2048 after it
    /// (the receiver's record_overflow, whatever its library calls it).
    pub fn oversized(&self) -> bool {
        self.oversized
    }

    /// The content type of the first record, once its header was seen.
    pub fn first_type(&self) -> Option<u8> {
        self.first_type
    }

    /// True once a record header named a content type TLS does not define (RFC 8446
    /// section 5: the receiver's unexpected_message).
    pub fn unknown_type(&self) -> bool {
        self.unknown_type
    }

    /// True while nothing this side sent is protected: an alert may go out in the clear.
    pub fn sends_plaintext(&self) -> bool {
        !self.encrypting
    }

    /// True if the last record sent is an alert (in the clear, or encrypted: an alert
    /// record of TLS 1.2, or a TLS 1.3 record as short as an alert).
    pub fn ended_with_alert(&self) -> bool {
        matches!(self.last, Some((ALERT, _)) | Some((APPLICATION_DATA, 19..=40)))
    }

    /// The alert record to send for `e` when the library sent none and this side still
    /// sends in the clear; notes it as sent.
    pub fn missing_alert(&mut self, e: &Error) -> Option<[u8; 7]> {
        if self.ended_with_alert() || !self.sends_plaintext() {
            return None;
        }
        let record = e.alert()?.plaintext_record();
        self.observe(&record);
        Some(record)
    }
}

/// True if the last whole record in `wire` is an alert (see
/// [`RecordWatch::ended_with_alert`]).
pub fn ends_with_alert(wire: &[u8]) -> bool {
    let mut r = RecordWatch::default();
    let mut rest = wire;
    let mut last = None;
    while rest.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if rest.len() < 5 + len {
            break;
        }
        r.observe(&rest[..5 + len]);
        last = r.last;
        rest = &rest[5 + len..];
    }
    r.last = last;
    r.ended_with_alert()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Alert, ProtocolErrorKind};

    #[test]
    fn follows_records_split_anywhere() {
        let mut wire = vec![0x16, 3, 3, 0, 4, 1, 2, 3, 4];
        wire.extend(Alert::DECODE_ERROR.plaintext_record());
        for cut in 0..wire.len() {
            let mut r = RecordWatch::default();
            r.observe(&wire[..cut]);
            r.observe(&wire[cut..]);
            assert!(r.ended_with_alert(), "cut at {cut}");
            assert!(r.sends_plaintext());
        }
        assert!(ends_with_alert(&wire));
        assert!(!ends_with_alert(&wire[..9]));
    }

    #[test]
    fn record_limits_follow_encryption() {
        let header = |typ: u8, len: usize| [typ, 3, 3, (len >> 8) as u8, len as u8];
        let mut r = RecordWatch::default();
        r.observe(&header(0x16, 1 << 14));
        r.observe(&vec![0; 1 << 14]);
        assert!(!r.oversized(), "2^14 in the clear is allowed");
        r.observe(&header(0x16, (1 << 14) + 1));
        assert!(r.oversized(), "2^14 + 1 in the clear is not");
        let mut r = RecordWatch::default();
        r.observe(&[0x14, 3, 3, 0, 1, 1]);
        r.observe(&header(0x17, (1 << 14) + 2048));
        assert!(!r.oversized(), "2^14 + 2048 protected is allowed");
        r.observe(&vec![0; (1 << 14) + 2048]);
        r.observe(&header(0x17, (1 << 14) + 2049));
        assert!(r.oversized());
    }

    #[test]
    fn an_alert_is_owed_only_in_the_clear_and_only_once() {
        let e = Error::protocol(ProtocolErrorKind::Malformed, "test");
        let mut r = RecordWatch::default();
        r.observe(&[0x16, 3, 3, 0, 1, 9]);
        assert_eq!(r.missing_alert(&e), Some([0x15, 3, 3, 0, 2, 2, 50]));
        assert_eq!(r.missing_alert(&e), None, "already sent");
        let mut r = RecordWatch::default();
        r.observe(&[0x14, 3, 3, 0, 1, 1]);
        assert_eq!(r.missing_alert(&e), None, "after ChangeCipherSpec only the library can encrypt one");
        assert_eq!(RecordWatch::default().missing_alert(&Error::UnexpectedEof), None, "no alert for EOF");
    }
}
