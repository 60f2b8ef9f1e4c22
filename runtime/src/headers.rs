//! Header names of the wire contract, and the deadline header's encoding.

use std::time::Duration;

/// The error code of an error reply (`404`, `NOT_FOUND`, `ORDER_EXPIRED`).
pub const ERROR_CODE: &str = "Nats-Service-Error-Code";
/// The human-readable message of an error reply.
pub const ERROR_MESSAGE: &str = "Nats-Service-Error";
/// Marks an error reply whose body is a `google.rpc.Status` holding typed
/// details (PROTOCOL §4.1); its value is [`ERROR_DETAILS_STATUS`].
pub const ERROR_DETAILS: &str = "Nats-Micro-Error-Details";
/// The value of [`ERROR_DETAILS`].
pub const ERROR_DETAILS_STATUS: &str = "google.rpc.Status";
/// The caller's remaining time budget, sent with each request so the server
/// can stop working once nobody waits for the answer. The value is a whole
/// number of microseconds (relative, so clock skew between hosts does not
/// matter).
pub const TIMEOUT: &str = "Nats-Micro-Timeout";
/// Which attempt of a retried call a request is: sent on attempts after the
/// first (`2` for the first retry); absent means 1 (PROTOCOL §10.1).
pub const ATTEMPT: &str = "Nats-Micro-Attempt";

/// The names above as `HeaderName`s, used wherever the runtime reads or
/// writes them (a `&str` name is validated and allocated on every call).
pub(crate) mod name {
    use async_nats::header::HeaderName;

    pub(crate) const ERROR_CODE: HeaderName = HeaderName::from_static(super::ERROR_CODE);
    pub(crate) const ERROR_MESSAGE: HeaderName = HeaderName::from_static(super::ERROR_MESSAGE);
    pub(crate) const ERROR_DETAILS: HeaderName = HeaderName::from_static(super::ERROR_DETAILS);
    pub(crate) const TIMEOUT: HeaderName = HeaderName::from_static(super::TIMEOUT);
    pub(crate) const ATTEMPT: HeaderName = HeaderName::from_static(super::ATTEMPT);
}

/// Encodes a time budget for the [`TIMEOUT`] header.
///
/// ```
/// use std::time::Duration;
/// use nats_micro_runtime::headers::{encode_timeout, decode_timeout};
/// let value = encode_timeout(Duration::from_millis(1500));
/// assert_eq!(value, "1500000");
/// assert_eq!(decode_timeout(&value), Some(Duration::from_millis(1500)));
/// assert_eq!(decode_timeout("soon"), None);
/// assert_eq!(encode_timeout(Duration::ZERO), "0");
/// assert_eq!(encode_timeout(Duration::from_micros(86_400_000_000)), "86400000000");
/// ```
pub fn encode_timeout(budget: Duration) -> String {
    // Every call sends one: the digits by hand, without formatting a u128.
    let mut micros = u64::try_from(budget.as_micros()).unwrap_or(u64::MAX);
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (micros % 10) as u8;
        micros /= 10;
        if micros == 0 {
            break;
        }
    }
    String::from_utf8(digits[at..].to_vec()).unwrap_or_default()
}

/// The longest budget a [`TIMEOUT`] header may carry: 24 hours.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// Decodes a [`TIMEOUT`] header value: 1 to 12 ASCII digits, at most
/// [`MAX_TIMEOUT`] in microseconds. Anything else (signs, spaces, other
/// Unicode digits, an empty value) is `None`: the request is then served
/// with the server's own timeout (`docs/PROTOCOL.md`, section 3.2).
///
/// ```
/// use std::time::Duration;
/// use nats_micro_runtime::headers::decode_timeout;
/// assert_eq!(decode_timeout("000250"), Some(Duration::from_micros(250)));
/// assert_eq!(decode_timeout("+250"), None);
/// assert_eq!(decode_timeout("２５０"), None);
/// assert_eq!(decode_timeout("86400000001"), None);
/// ```
pub fn decode_timeout(value: &str) -> Option<Duration> {
    if value.is_empty() || value.len() > 12 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let budget = Duration::from_micros(value.parse().ok()?);
    (budget <= MAX_TIMEOUT).then_some(budget)
}

/// The caller's budget in a request's headers: the first [`TIMEOUT`] value,
/// decoded by [`decode_timeout`]; later duplicates are ignored.
pub fn request_budget(headers: &async_nats::HeaderMap) -> Option<Duration> {
    headers.get(name::TIMEOUT).and_then(|value| decode_timeout(value.as_str()))
}

/// The attempt number in a request's headers: the first [`ATTEMPT`] value
/// when it is a positive decimal number, else 1.
///
/// ```
/// use nats_micro_runtime::headers::{ATTEMPT, request_attempt};
/// let mut headers = async_nats::HeaderMap::new();
/// assert_eq!(request_attempt(&headers), 1);
/// headers.insert(ATTEMPT, "3");
/// assert_eq!(request_attempt(&headers), 3);
/// headers.insert(ATTEMPT, "0");
/// assert_eq!(request_attempt(&headers), 1);
/// ```
pub fn request_attempt(headers: &async_nats::HeaderMap) -> u32 {
    headers
        .get(name::ATTEMPT)
        .map(|value| value.as_str())
        .filter(|value| !value.is_empty() && value.len() <= 10 && value.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|value| value.parse::<u32>().ok())
        .filter(|&attempt| attempt > 0)
        .unwrap_or(1)
}
