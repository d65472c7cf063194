//! Just enough SIP for the examples: framing of messages on a stream transport
//! (Content-Length, RFC 3261 section 18.3), RFC 5626 CRLF keep-alives, and responses.

use std::fmt::Write as _;

/// The largest message accepted (headers + body).
pub const MAX_MESSAGE: usize = 64 * 1024;

/// A parsed SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The request or status line.
    pub start_line: String,
    /// Headers in order, names as received.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// What the framer found at the start of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A whole message, and the bytes it used.
    Message(Message, usize),
    /// A CRLF CRLF keep-alive ping (RFC 5626 section 4.4.1); answer with one CRLF.
    Ping(usize),
    /// A lone CRLF (a pong, or padding), to be skipped.
    Pong(usize),
    /// More bytes are needed.
    Incomplete,
}

/// Malformed input; the connection should be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SipError {
    /// The header section or body is larger than [`MAX_MESSAGE`].
    #[error("message larger than {MAX_MESSAGE} bytes")]
    TooLarge,
    /// A header line without a colon, bad UTF-8, or a bad Content-Length.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
}

/// Expands compact header names (RFC 3261 section 7.3.3).
fn canonical(name: &str) -> String {
    match name.to_ascii_lowercase().as_str() {
        "v" => "via".into(),
        "f" => "from".into(),
        "t" => "to".into(),
        "i" => "call-id".into(),
        "l" => "content-length".into(),
        "c" => "content-type".into(),
        "m" => "contact".into(),
        other => other.to_owned(),
    }
}

impl Message {
    /// All values of a header (case-insensitive, compact forms included).
    pub fn header_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let want = canonical(name);
        self.headers.iter().filter(move |(n, _)| canonical(n) == want).map(|(_, v)| v.as_str())
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).next()
    }

    /// The request method, if this is a request.
    pub fn method(&self) -> Option<&str> {
        let first = self.start_line.split(' ').next()?;
        (!first.starts_with("SIP/")).then_some(first)
    }
}

/// Takes one frame from the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Frame, SipError> {
    if buf.starts_with(b"\r\n\r\n") {
        return Ok(Frame::Ping(4));
    }
    if buf.starts_with(b"\r\n") {
        return Ok(if buf.len() >= 4 || buf.len() == 2 { Frame::Pong(2) } else { Frame::Incomplete });
    }
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_MESSAGE { Err(SipError::TooLarge) } else { Ok(Frame::Incomplete) };
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| SipError::Malformed("not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let start_line = lines.next().unwrap_or_default().to_owned();
    if start_line.split(' ').count() < 3 {
        return Err(SipError::Malformed("start line"));
    }
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            // Folded continuation line.
            let last = headers.last_mut().ok_or(SipError::Malformed("continuation without header"))?;
            last.1.push(' ');
            last.1.push_str(line.trim());
            continue;
        }
        let (n, v) = line.split_once(':').ok_or(SipError::Malformed("header without colon"))?;
        headers.push((n.trim().to_owned(), v.trim().to_owned()));
    }
    let msg = Message { start_line, headers, body: Vec::new() };
    let len: usize = match msg.header("content-length") {
        Some(v) => v.parse().map_err(|_| SipError::Malformed("Content-Length"))?,
        None => 0, // required on streams; tolerated as 0
    };
    let body_start = end + 4;
    if body_start + len > MAX_MESSAGE {
        return Err(SipError::TooLarge);
    }
    if buf.len() < body_start + len {
        return Ok(Frame::Incomplete);
    }
    Ok(Frame::Message(Message { body: buf[body_start..body_start + len].to_vec(), ..msg }, body_start + len))
}

/// A response to `req` with `code reason`, the dialog headers copied (a To tag added),
/// `extra` headers, and `body` with its content type.
pub fn response(
    req: &Message,
    code: u16,
    reason: &str,
    extra: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
) -> Vec<u8> {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for via in req.header_all("via") {
        let _ = write!(out, "Via: {via}\r\n");
    }
    for name in ["From", "Call-ID", "CSeq"] {
        if let Some(v) = req.header(name) {
            let _ = write!(out, "{name}: {v}\r\n");
        }
    }
    if let Some(to) = req.header("to") {
        if to.contains(";tag=") {
            let _ = write!(out, "To: {to}\r\n");
        } else {
            let _ = write!(out, "To: {to};tag=sipstls{:x}\r\n", fxhash(req.header("call-id").unwrap_or_default()));
        }
    }
    out.push_str("Server: sipstls-example\r\n");
    for (n, v) in extra {
        let _ = write!(out, "{n}: {v}\r\n");
    }
    let body = body.unwrap_or(("", b""));
    if !body.1.is_empty() {
        let _ = write!(out, "Content-Type: {}\r\n", body.0);
    }
    let _ = write!(out, "Content-Length: {}\r\n\r\n", body.1.len());
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body.1);
    bytes
}

/// A stable tag from the Call-ID (not security relevant).
fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// The example responder's answer: OPTIONS -> 200 with capabilities, MESSAGE -> 200 with
/// the body echoed, anything else -> 501.
pub fn answer(req: &Message) -> Option<Vec<u8>> {
    let method = req.method()?; // responses are not answered
    Some(match method {
        "OPTIONS" => response(req, 200, "OK", &[("Allow", "OPTIONS, MESSAGE"), ("Accept", "text/plain")], None),
        "MESSAGE" => {
            response(req, 200, "OK", &[], Some((req.header("content-type").unwrap_or("text/plain"), &req.body)))
        }
        "ACK" => return None,
        _ => response(req, 501, "Not Implemented", &[], None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &str = "OPTIONS sip:example.test SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK1\r\nv: SIP/2.0/TLS 10.0.0.1;branch=z9hG4bK0\r\nFrom: <sip:a@example.test>;tag=1\r\nTo: <sip:example.test>\r\nCall-ID: abc\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

    fn msg(s: &str) -> Message {
        match parse(s.as_bytes()).unwrap() {
            Frame::Message(m, n) => {
                assert_eq!(n, s.len());
                m
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn frames_by_content_length() {
        let m = "MESSAGE sip:b@example.test SIP/2.0\r\nl: 5\r\nc: text/plain\r\n\r\nhello";
        let full = format!("{m}OPTIONS");
        match parse(full.as_bytes()).unwrap() {
            Frame::Message(msg, used) => {
                assert_eq!(used, m.len());
                assert_eq!(msg.body, b"hello");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(parse(&m.as_bytes()[..m.len() - 1]).unwrap(), Frame::Incomplete);
        assert_eq!(parse(b"OPTIONS sip:x SIP/2.0\r\nCSeq: 1").unwrap(), Frame::Incomplete);
    }

    #[test]
    fn keepalives() {
        assert_eq!(parse(b"\r\n\r\nOPTIONS").unwrap(), Frame::Ping(4));
        assert_eq!(parse(b"\r\n").unwrap(), Frame::Pong(2));
        assert_eq!(parse(b"\r\n\r").unwrap(), Frame::Incomplete);
    }

    #[test]
    fn malformed_and_oversize() {
        assert!(matches!(parse(b"garbage\r\n\r\n"), Err(SipError::Malformed(_))));
        assert!(matches!(parse(b"OPTIONS sip:x SIP/2.0\r\nno colon\r\n\r\n"), Err(SipError::Malformed(_))));
        assert!(matches!(parse(b"OPTIONS sip:x SIP/2.0\r\nContent-Length: -1\r\n\r\n"), Err(SipError::Malformed(_))));
        assert_eq!(parse(b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 999999\r\n\r\n"), Err(SipError::TooLarge));
        assert_eq!(parse(&vec![b'a'; MAX_MESSAGE + 1]), Err(SipError::TooLarge));
    }

    #[test]
    fn options_answer_copies_dialog_headers() {
        let r = String::from_utf8(answer(&msg(OPTIONS)).unwrap()).unwrap();
        assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");
        assert_eq!(r.matches("Via: ").count(), 2, "both Vias, compact one included: {r}");
        assert!(r.contains("Call-ID: abc\r\n") && r.contains("CSeq: 1 OPTIONS\r\n"));
        assert!(r.contains("To: <sip:example.test>;tag=sipstls"));
        assert!(r.contains("Allow: OPTIONS, MESSAGE\r\n"));
        assert!(r.ends_with("Content-Length: 0\r\n\r\n"), "{r}");
        let again = msg(&r);
        assert_eq!(again.method(), None);
        assert!(answer(&again).is_none(), "responses are not answered");
    }

    #[test]
    fn message_is_echoed_and_unknown_methods_get_501() {
        let m = msg("MESSAGE sip:b@example.test SIP/2.0\r\nCall-ID: x\r\nCSeq: 2 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nhey");
        let r = answer(&m).unwrap();
        assert!(r.ends_with(b"Content-Length: 3\r\n\r\nhey"));
        let inv = msg("INVITE sip:b@example.test SIP/2.0\r\nCall-ID: y\r\nContent-Length: 0\r\n\r\n");
        assert!(String::from_utf8(answer(&inv).unwrap()).unwrap().starts_with("SIP/2.0 501 "));
    }
}
