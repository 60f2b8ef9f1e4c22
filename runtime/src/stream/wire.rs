//! The stream frames of PROTOCOL §9: header names and the classification of
//! one NATS message into what it means for a stream.

use async_nats::header::HeaderName;
use async_nats::{HeaderMap, Message};
use bytes::Bytes;

use crate::error::Error;

/// Open: the caller's inbox, where the server sends stream messages.
pub const REPLY_TO: &str = "Reply-To";
/// Ack: the server's inbox, where the caller sends its messages and control.
pub const STREAM_INBOX: &str = "Nats-Stream-Inbox";
/// Data: the message's sequence number in its direction, from 1.
pub const STREAM_SEQ: &str = "Nats-Stream-Seq";
/// End: `true` finishes the sender's direction.
pub const STREAM_END: &str = "Nats-Stream-End";
/// Open, ack, control: messages the sender of this header will accept.
pub const STREAM_CREDIT: &str = "Nats-Stream-Credit";
/// Control: the caller abandons the stream.
pub const STREAM_CANCEL: &str = "Nats-Stream-Cancel";

/// The names above as `HeaderName`s, used wherever the runtime reads or
/// writes them: a `&str` name is validated and allocated on every call.
pub(crate) mod name {
    use super::HeaderName;

    pub(crate) const SEQ: HeaderName = HeaderName::from_static(super::STREAM_SEQ);
    pub(crate) const END: HeaderName = HeaderName::from_static(super::STREAM_END);
    pub(crate) const CREDIT: HeaderName = HeaderName::from_static(super::STREAM_CREDIT);
    pub(crate) const CANCEL: HeaderName = HeaderName::from_static(super::STREAM_CANCEL);
    pub(crate) const INBOX: HeaderName = HeaderName::from_static(super::STREAM_INBOX);
    pub(crate) const REPLY_TO: HeaderName = HeaderName::from_static(super::REPLY_TO);
}

/// A sequence number or credit: 1 to 10 ASCII digits, at most 2^31 − 1.
pub(crate) fn parse_count(value: &str) -> Option<u32> {
    if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse::<u64>().ok().filter(|n| *n <= i32::MAX as u64).map(|n| n as u32)
}

/// What one message on a stream inbox is.
#[derive(Debug)]
pub(crate) enum Frame {
    /// The server accepted the open: where to send, and its window (`None`: no flow control).
    Ack { inbox: String, credit: Option<u32> },
    /// One message of the peer's direction.
    Data { seq: u32, payload: Bytes },
    /// The peer's direction is finished: the body and trailing headers, or the stream's error.
    End(Result<(Bytes, HeaderMap), Error>),
    /// More credit for our direction (0: a keepalive).
    Credit(u32),
    /// The caller abandons the stream.
    Cancel,
    /// No stream header: a Go-plugin server's client-streaming result, else ignored.
    Plain(Bytes, HeaderMap),
}

/// Classifies a message; a stream header that does not parse is `INVALID_ARGUMENT`.
pub(crate) fn classify(message: Message) -> Result<Frame, Error> {
    let Some(headers) = message.headers else {
        return Ok(Frame::Plain(message.payload, HeaderMap::new()));
    };
    // The common frame, a data message, has the sequence number as its only
    // header: recognised by one name comparison instead of a hashed lookup
    // for each header name below (what those would conclude for it).
    let mut entries = headers.iter();
    if let (Some((only, values)), None) = (entries.next(), entries.next())
        && *only == name::SEQ
        && let Some(seq) = values.first().map(|v| v.as_str())
    {
        let seq = parse_count(seq).ok_or_else(|| Error::invalid_argument(format!("malformed {STREAM_SEQ} {seq:?}")))?;
        return Ok(Frame::Data { seq, payload: message.payload });
    }
    if let Some(err) = crate::client::error_from_reply(&headers, &message.payload) {
        return Ok(Frame::End(Err(err)));
    }
    if let Some(seq) = headers.get(name::SEQ).map(|v| v.as_str())
        && headers.get(name::END).is_none()
    {
        let seq = parse_count(seq).ok_or_else(|| Error::invalid_argument(format!("malformed {STREAM_SEQ} {seq:?}")))?;
        return Ok(Frame::Data { seq, payload: message.payload });
    }
    if headers.get(name::END).is_some_and(|v| v.as_str().eq_ignore_ascii_case("true")) {
        return Ok(Frame::End(Ok((message.payload, headers))));
    }
    let credit = match headers.get(name::CREDIT).map(|v| v.as_str()) {
        Some(credit) => {
            Some(parse_count(credit).ok_or_else(|| Error::invalid_argument(format!("malformed {STREAM_CREDIT} {credit:?}")))?)
        }
        None => None,
    };
    if let Some(inbox) = headers.get(name::INBOX) {
        return Ok(Frame::Ack { inbox: inbox.as_str().to_owned(), credit });
    }
    if let Some(credit) = credit {
        return Ok(Frame::Credit(credit));
    }
    if headers.get(name::CANCEL).is_some() {
        return Ok(Frame::Cancel);
    }
    Ok(Frame::Plain(message.payload, headers))
}

#[cfg(test)]
mod tests {
    use super::parse_count;

    #[test]
    fn counts_are_short_plain_decimal() {
        assert_eq!(parse_count("1"), Some(1));
        assert_eq!(parse_count("0"), Some(0));
        assert_eq!(parse_count("2147483647"), Some(i32::MAX as u32));
        for bad in ["", "-1", "+1", " 1", "2147483648", "12345678901", "１", "1.0"] {
            assert_eq!(parse_count(bad), None, "{bad:?}");
        }
    }
}
