//! The body of an error reply (PROTOCOL §4.1): the error data alone, or a
//! `google.rpc.Status` holding the details (and the data beside them) when
//! the reply is marked with `Nats-Micro-Error-Details`.

use bytes::Bytes;
use prost::Message;

use crate::error::Error;
use crate::rpc::{self, Any, DebugInfo, ErrorData, ErrorInfo, Status};

/// The `ErrorInfo` reason appended when details were dropped to fit `max_payload`.
pub(crate) const DETAILS_TRUNCATED: &str = "DETAILS_TRUNCATED";
/// The domain of the truncation marker.
pub(crate) const TRUNCATION_DOMAIN: &str = "nats-micro";

/// An encoded error body; `marked` says whether it needs the details header.
#[derive(Debug)]
pub(crate) struct ErrorBody {
    pub(crate) marked: bool,
    pub(crate) body: Bytes,
    /// How many details were dropped to fit.
    pub(crate) dropped: usize,
}

/// Encodes what a service sends for `err`. Withheld details (DebugInfo, and
/// every detail of an uncoded failure, unless `expose_internal`) are left
/// out; an error left without details is sent as before: its data, byte for
/// byte, unmarked. The body is kept within `budget` bytes by dropping details
/// from the last backwards and appending a `DETAILS_TRUNCATED` ErrorInfo.
pub(crate) fn encode(err: &Error, expose_internal: bool, budget: usize) -> ErrorBody {
    let withheld = !expose_internal && err.internal_text().is_some();
    let details: Vec<&Any> = err
        .details_any()
        .iter()
        .filter(|any| !withheld && (expose_internal || rpc::type_name(&any.type_url) != <DebugInfo as prost::Name>::full_name()))
        .collect();
    if details.is_empty() {
        return ErrorBody { marked: false, body: err.data().clone(), dropped: 0 };
    }
    let message = if withheld || err.internal_text().is_none() { err.message() } else { err.internal_text().unwrap_or_default() };
    let mut status = Status { code: err.code().grpc_number(), message: message.to_owned(), details: Vec::new() };
    if !err.data().is_empty() {
        // The data goes first, so that truncation drops details, not the data.
        status.details.push(rpc::pack(&ErrorData { data: err.data().clone() }));
    }
    let base_len = status.encoded_len();
    let field_len = |any: &Any| {
        let len = any.encoded_len();
        1 + prost::encoding::encoded_len_varint(len as u64) + len
    };
    let sizes: Vec<usize> = details.iter().map(|any| field_len(any)).collect();
    let mut kept = details.len();
    let mut total = base_len + sizes.iter().sum::<usize>();
    let mut marker = None;
    if total > budget {
        loop {
            let truncation = truncation_marker(details.len() - kept);
            let with_marker = total + field_len(&truncation);
            if with_marker <= budget || kept == 0 {
                marker = Some(truncation);
                break;
            }
            kept -= 1;
            total -= sizes[kept];
        }
    }
    status.details.extend(details[..kept].iter().map(|any| (*any).clone()));
    status.details.extend(marker);
    ErrorBody { marked: true, body: Bytes::from(status.encode_to_vec()), dropped: details.len() - kept }
}

fn truncation_marker(dropped: usize) -> Any {
    rpc::pack(&ErrorInfo::new(DETAILS_TRUNCATED, TRUNCATION_DOMAIN, [("dropped", dropped.to_string())]))
}

/// Reads an error body: with the marker `google.rpc.Status`, the details and
/// the data carried beside them; otherwise (no marker, another marker, or a
/// body that does not decode) the body is the data and there are no details.
pub(crate) fn decode(marker: Option<&str>, body: &Bytes) -> (Bytes, Vec<Any>) {
    let status = match marker {
        Some(crate::headers::ERROR_DETAILS_STATUS) => Status::decode(body.clone()).ok(),
        _ => None,
    };
    let Some(status) = status else { return (body.clone(), Vec::new()) };
    let mut data = Bytes::new();
    let mut details = Vec::with_capacity(status.details.len());
    let data_type = <ErrorData as prost::Name>::full_name();
    for any in status.details {
        if rpc::type_name(&any.type_url) == data_type
            && let Ok(carried) = ErrorData::decode(any.value.as_slice())
        {
            data = carried.data;
            continue;
        }
        details.push(any);
    }
    (data, details)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::{LocalizedMessage, RetryInfo};
    use std::time::Duration;

    const BIG: usize = 1 << 20;

    #[test]
    fn an_error_without_details_is_its_data_unmarked() {
        let err = Error::not_found("plain").with_data(&b"\0\xff{\"id\":42}\n"[..]);
        let body = encode(&err, false, BIG);
        assert!(!body.marked);
        assert_eq!(&body.body[..], b"\0\xff{\"id\":42}\n");
    }

    #[test]
    fn details_and_data_round_trip_in_order() {
        let err = Error::failed_precondition("standard")
            .with_data(&b"d"[..])
            .with_retry_info(Duration::from_millis(1500))
            .with_localized_message("fr-FR", "échec");
        let body = encode(&err, false, BIG);
        assert!(body.marked);
        let status = Status::decode(body.body.clone()).unwrap();
        assert_eq!((status.code, status.message.as_str()), (9, "standard"));
        assert_eq!(status.details[0].type_url, "type.googleapis.com/natsmicro.ErrorData");
        assert_eq!(status.details[1].type_url, "type.googleapis.com/google.rpc.RetryInfo");
        let (data, details) = decode(Some("google.rpc.Status"), &body.body);
        assert_eq!(&data[..], b"d");
        assert_eq!(details, err.details_any());
        let back = Error::new(err.code().clone(), "standard").with_details_any(details);
        assert_eq!(back.retry_info().and_then(|info| info.delay()), Some(Duration::from_millis(1500)));
        assert_eq!(back.localized_message().unwrap().message, "échec");
    }

    #[test]
    fn debug_info_is_withheld_unless_exposed() {
        let err = Error::internal("debug").with_debug_info(["frame 1"], "secret").with_error_info(ErrorInfo::new(
            "DEBUGGED",
            "shop.example",
            [("k", "v")],
        ));
        let (_, withheld) = decode(Some("google.rpc.Status"), &encode(&err, false, BIG).body);
        assert_eq!(withheld.len(), 1);
        assert!(withheld[0].type_url.ends_with("/google.rpc.ErrorInfo"));
        let (_, exposed) = decode(Some("google.rpc.Status"), &encode(&err, true, BIG).body);
        assert_eq!(exposed.len(), 2);
        assert_eq!(rpc::unpack::<DebugInfo>(&exposed[0]).unwrap().detail, "secret");
        // Only DebugInfo: nothing left to send, so the reply is unmarked.
        let only_debug = Error::internal("debug").with_debug_info(["frame 1"], "secret");
        assert!(!encode(&only_debug, false, BIG).marked);
    }

    #[test]
    fn an_uncoded_failure_sends_no_details_unless_exposed() {
        let err = Error::from_internal(std::io::Error::other("disk")).with_retry_info(Duration::from_secs(1));
        assert!(!encode(&err, false, BIG).marked);
        let exposed = encode(&err, true, BIG);
        assert!(exposed.marked);
        assert_eq!(Status::decode(exposed.body).unwrap().message, "disk");
    }

    #[test]
    fn oversized_details_are_truncated_with_a_marker() {
        let mut err = Error::invalid_argument("oversized").with_data(&b"kept"[..]);
        for _ in 0..200 {
            err = err.with_localized_message("en", "x".repeat(8192));
        }
        let budget = 100_000;
        let body = encode(&err, false, budget);
        assert!(body.body.len() <= budget, "{} > {budget}", body.body.len());
        let (data, details) = decode(Some("google.rpc.Status"), &body.body);
        assert_eq!(&data[..], b"kept");
        let kept = details.iter().filter_map(rpc::unpack::<LocalizedMessage>).count();
        assert!(kept > 0 && kept < 200, "{kept}");
        assert_eq!(body.dropped, 200 - kept);
        let marker = rpc::unpack::<ErrorInfo>(details.last().unwrap()).unwrap();
        assert_eq!((marker.reason.as_str(), marker.domain.as_str()), (DETAILS_TRUNCATED, TRUNCATION_DOMAIN));
        assert_eq!(marker.metadata["dropped"], (200 - kept).to_string());
        // Exactly as many as fit: one more would not have.
        let one_more = body.body.len() + err.details_any()[0].encoded_len() + 3;
        assert!(one_more > budget);
    }

    #[test]
    fn reading_is_lenient() {
        let retry = rpc::pack(&RetryInfo::new(Duration::from_secs(2)));
        let other_prefix = Any { type_url: "example.com/x/google.rpc.RetryInfo".into(), value: retry.value.clone() };
        let unknown = Any { type_url: "type.googleapis.com/details.v1.Unlisted".into(), value: vec![8, 1] };
        let status = Status { code: 10, message: "m".into(), details: vec![other_prefix, unknown.clone()] };
        let body = Bytes::from(status.encode_to_vec());
        let (data, details) = decode(Some("google.rpc.Status"), &body);
        assert!(data.is_empty());
        let err = Error::aborted("m").with_details_any(details);
        assert_eq!(err.retry_info().and_then(|info| info.delay()), Some(Duration::from_secs(2)));
        assert_eq!(err.details_any()[1], unknown);
        // Re-raised, the unknown detail goes out verbatim.
        let (_, again) = decode(Some("google.rpc.Status"), &encode(&err, false, BIG).body);
        assert_eq!(again[1], unknown);
        // A marked body that is no Status, or another marker: the body is the data.
        let garbage = Bytes::from_static(b"\xff\xff\xff");
        assert_eq!(decode(Some("google.rpc.Status"), &garbage), (garbage.clone(), Vec::new()));
        assert_eq!(decode(Some("google.rpc.Other"), &body), (body.clone(), Vec::new()));
        assert_eq!(decode(None, &body), (body.clone(), Vec::new()));
    }
}
