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
/// Open, ack: `true`, this side accepts batches; data: how many messages
/// the batch holds (PROTOCOL §9.9).
pub const STREAM_BATCH: &str = "Nats-Stream-Batch";

/// The largest batch body a sender packs: a receiver's memory stays
/// bounded by its window of small messages, not of 1 MiB batches.
pub(crate) const MAX_BATCH_BODY: usize = 64 * 1024;

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
    pub(crate) const BATCH: HeaderName = HeaderName::from_static(super::STREAM_BATCH);
}

/// Whether an open or ack announces batches: exactly `true` (PROTOCOL §9.9).
pub(crate) fn announces_batches(headers: &HeaderMap) -> bool {
    headers.get(name::BATCH).is_some_and(|v| v.as_str() == "true")
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
    /// The server accepted the open: where to send, its window (`None`: no
    /// flow control), and whether it accepts batches.
    Ack { inbox: String, credit: Option<u32>, batches: bool },
    /// One message of the peer's direction.
    Data { seq: u32, payload: Bytes },
    /// Messages `seq` to `seq + count - 1` of the peer's direction, length-delimited in `payload`.
    Batch { seq: u32, count: u32, payload: Bytes },
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
        return match headers.get(name::BATCH).map(|v| v.as_str()) {
            None => Ok(Frame::Data { seq, payload: message.payload }),
            Some(count) => match parse_count(count).filter(|count| *count > 0) {
                Some(count) => Ok(Frame::Batch { seq, count, payload: message.payload }),
                None => Err(Error::invalid_argument(format!("malformed {STREAM_BATCH} {count:?}"))),
            },
        };
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
        return Ok(Frame::Ack { inbox: inbox.as_str().to_owned(), credit, batches: announces_batches(&headers) });
    }
    if let Some(credit) = credit {
        return Ok(Frame::Credit(credit));
    }
    if headers.get(name::CANCEL).is_some() {
        return Ok(Frame::Cancel);
    }
    Ok(Frame::Plain(message.payload, headers))
}

/// The `count` messages of a batch body, each preceded by its length as a
/// base-128 varint; anything else (a cut length or message, more or fewer
/// messages) is `INVALID_ARGUMENT`.
pub(crate) fn split_batch(mut body: Bytes, count: u32) -> Result<Vec<Bytes>, Error> {
    let malformed = |what: &str| Error::invalid_argument(format!("a stream batch of {count} messages {what}"));
    // Each message takes at least its one-byte length: a count beyond the body is refused before allocating.
    if count as usize > body.len() {
        return Err(malformed("is shorter than its count"));
    }
    let mut messages = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let len = read_varint(&mut body).ok_or_else(|| malformed("ends inside a length"))?;
        if len > body.len() {
            return Err(malformed("ends inside a message"));
        }
        messages.push(body.split_to(len));
    }
    if !body.is_empty() {
        return Err(malformed("holds more than its count"));
    }
    Ok(messages)
}

/// Reads a base-128 varint of at most 5 bytes (a `uint32`) off the front of `body`.
fn read_varint(body: &mut Bytes) -> Option<usize> {
    let mut value = 0u64;
    for (i, byte) in body.iter().take(5).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let _ = body.split_to(i + 1);
            return u32::try_from(value).ok().map(|v| v as usize);
        }
    }
    None
}

/// Appends `message` to a batch body, preceded by its length (prost's varint).
pub(crate) fn put_batch_record(body: &mut bytes::BytesMut, message: &[u8]) {
    prost::encoding::encode_varint(message.len() as u64, body);
    body.extend_from_slice(message);
}

/// The bytes a message takes in a batch body.
pub(crate) fn batch_record_len(message_len: usize) -> usize {
    prost::encoding::encoded_len_varint(message_len as u64) + message_len
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};

    use super::{batch_record_len, parse_count, put_batch_record, split_batch};

    #[test]
    fn batches_round_trip_and_refuse_every_malformed_body() {
        let messages: Vec<Bytes> = [0usize, 1, 127, 128, 300, 70_000].iter().map(|n| Bytes::from(vec![*n as u8; *n])).collect();
        let mut body = BytesMut::new();
        for message in &messages {
            let before = body.len();
            put_batch_record(&mut body, message);
            assert_eq!(body.len() - before, batch_record_len(message.len()));
        }
        let body = body.freeze();
        assert_eq!(split_batch(body.clone(), messages.len() as u32).expect("splits"), messages);
        let invalid =
            |body: Bytes, count: u32| *split_batch(body, count).expect_err("malformed").code() == crate::Code::InvalidArgument;
        assert!(invalid(body.clone(), messages.len() as u32 - 1), "more than its count");
        assert!(invalid(body.clone(), messages.len() as u32 + 1), "fewer than its count");
        assert!(invalid(body.slice(..body.len() - 1), messages.len() as u32), "cut inside a message");
        assert!(invalid(Bytes::from_static(&[0x80, 0x80]), 1), "cut inside a length");
        assert!(invalid(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), 1), "a length over 5 bytes");
        assert!(invalid(Bytes::new(), u32::MAX >> 1), "a count no body that size can hold");
    }

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
