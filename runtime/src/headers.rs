//! Header names of the wire contract, and the deadline header's encoding.

use std::time::Duration;

/// The error code of an error reply (`404`, `NOT_FOUND`, `ORDER_EXPIRED`).
pub const ERROR_CODE: &str = "Nats-Service-Error-Code";
/// The human-readable message of an error reply.
pub const ERROR_MESSAGE: &str = "Nats-Service-Error";
/// The caller's remaining time budget, sent with each request so the server
/// can stop working once nobody waits for the answer. The value is a whole
/// number of microseconds (relative, so clock skew between hosts does not
/// matter).
pub const TIMEOUT: &str = "Nats-Micro-Timeout";

/// Encodes a time budget for the [`TIMEOUT`] header.
///
/// ```
/// use std::time::Duration;
/// use nats_micro_runtime::headers::{encode_timeout, decode_timeout};
/// let value = encode_timeout(Duration::from_millis(1500));
/// assert_eq!(value, "1500000");
/// assert_eq!(decode_timeout(&value), Some(Duration::from_millis(1500)));
/// assert_eq!(decode_timeout("soon"), None);
/// ```
pub fn encode_timeout(budget: Duration) -> String {
    budget.as_micros().to_string()
}

/// Decodes a [`TIMEOUT`] header value; `None` if it is not a whole number.
pub fn decode_timeout(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_micros)
}
