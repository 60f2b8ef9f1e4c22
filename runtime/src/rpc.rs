//! The standard error detail messages of `google/rpc/error_details.proto`
//! and the `google.rpc.Status` that carries them (PROTOCOL §4.1).
//!
//! Add details with the builder methods of [`Error`](crate::Error)
//! (`with_error_info`, `with_retry_info`, …) and read them back with its
//! getters (`error_info()`, `retry_info()`, `detail::<T>()`). These types are
//! plain `prost` messages, with the field numbers of the upstream protos, so
//! they interoperate with any gRPC stack.
//!
//! ```
//! use nats_micro_runtime::Error;
//! use nats_micro_runtime::rpc::ErrorInfo;
//!
//! let err = Error::failed_precondition("stock low")
//!     .with_error_info(ErrorInfo::new("STOCK_LOW", "shop.example", [("sku", "A-1")]))
//!     .with_field_violation("items[0].qty", "must be positive");
//! assert_eq!(err.error_info().unwrap().reason, "STOCK_LOW");
//! assert_eq!(err.bad_request().unwrap().field_violations[0].field, "items[0].qty");
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

pub use prost_types::Any;

/// The prefix of every type URL the runtime writes (any prefix is accepted on reading).
pub const TYPE_URL_PREFIX: &str = "type.googleapis.com/";

/// The type URL of message `M`: [`TYPE_URL_PREFIX`] and its full name.
pub fn type_url<M: prost::Name>() -> String {
    format!("{TYPE_URL_PREFIX}{}", M::full_name())
}

/// Packs a message into an [`Any`] with the `type.googleapis.com/` type URL.
pub fn pack<M: prost::Name>(message: &M) -> Any {
    Any { type_url: type_url::<M>(), value: message.encode_to_vec() }
}

/// Unpacks an [`Any`] holding an `M` (whatever the type URL's prefix);
/// `None` for another type or bytes that do not decode.
pub fn unpack<M: prost::Name + Default>(any: &Any) -> Option<M> {
    if type_name(&any.type_url) != M::full_name() {
        return None;
    }
    M::decode(any.value.as_slice()).ok()
}

/// The message name of a type URL: what follows its last `/`.
pub(crate) fn type_name(type_url: &str) -> &str {
    type_url.rsplit_once('/').map_or(type_url, |(_, name)| name)
}

macro_rules! named {
    ($($ty:ident => $package:literal, $name:literal;)*) => {
        $( impl prost::Name for $ty {
            const NAME: &'static str = $name;
            const PACKAGE: &'static str = $package;
            fn type_url() -> String {
                type_url::<Self>()
            }
        } )*
    };
}

/// `google.rpc.Status`: the body of an error reply that carries details.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    /// The gRPC number of the code (`2`, UNKNOWN, for custom codes).
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// The error message.
    #[prost(string, tag = "2")]
    pub message: String,
    /// The details, in the order they were added.
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<Any>,
}

/// `google.rpc.ErrorInfo`: why an error happened, as a stable machine-readable reason.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ErrorInfo {
    /// The reason, UPPER_SNAKE (e.g. `STOCK_LOW`).
    #[prost(string, tag = "1")]
    pub reason: String,
    /// The logical owner of the reason (e.g. `shop.example`).
    #[prost(string, tag = "2")]
    pub domain: String,
    /// More structured information.
    #[prost(btree_map = "string, string", tag = "3")]
    pub metadata: BTreeMap<String, String>,
}

impl ErrorInfo {
    /// An `ErrorInfo` with `reason`, `domain` and `metadata` pairs.
    pub fn new<K: Into<String>, V: Into<String>>(
        reason: impl Into<String>,
        domain: impl Into<String>,
        metadata: impl IntoIterator<Item = (K, V)>,
    ) -> ErrorInfo {
        ErrorInfo {
            reason: reason.into(),
            domain: domain.into(),
            metadata: metadata.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
        }
    }
}

/// `google.rpc.RetryInfo`: when the caller may try again.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RetryInfo {
    /// How long to wait before retrying.
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<prost_types::Duration>,
}

impl RetryInfo {
    /// A `RetryInfo` with `delay`.
    pub fn new(delay: Duration) -> RetryInfo {
        let delay = prost_types::Duration {
            seconds: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(delay.subsec_nanos()).unwrap_or(0),
        };
        RetryInfo { retry_delay: Some(delay) }
    }

    /// The delay, if set and not negative.
    pub fn delay(&self) -> Option<Duration> {
        let delay = self.retry_delay.as_ref()?;
        let seconds = u64::try_from(delay.seconds).ok()?;
        let nanos = u32::try_from(delay.nanos).ok()?;
        Some(Duration::from_secs(seconds) + Duration::from_nanos(u64::from(nanos)))
    }
}

/// `google.rpc.DebugInfo`: internal diagnostics. Withheld from callers
/// unless the service exposes internal errors.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DebugInfo {
    /// The stack trace.
    #[prost(string, repeated, tag = "1")]
    pub stack_entries: Vec<String>,
    /// Any other internal text.
    #[prost(string, tag = "2")]
    pub detail: String,
}

/// `google.rpc.QuotaFailure`: which quotas were exceeded.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QuotaFailure {
    /// The violations.
    #[prost(message, repeated, tag = "1")]
    pub violations: Vec<QuotaViolation>,
}

/// `google.rpc.QuotaFailure.Violation`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QuotaViolation {
    /// What the quota applies to (e.g. `user:7`).
    #[prost(string, tag = "1")]
    pub subject: String,
    /// How it was exceeded.
    #[prost(string, tag = "2")]
    pub description: String,
    /// The API service of the quota.
    #[prost(string, tag = "3")]
    pub api_service: String,
    /// The quota metric.
    #[prost(string, tag = "4")]
    pub quota_metric: String,
    /// The quota's id.
    #[prost(string, tag = "5")]
    pub quota_id: String,
    /// The quota's dimensions.
    #[prost(btree_map = "string, string", tag = "6")]
    pub quota_dimensions: BTreeMap<String, String>,
    /// The enforced value.
    #[prost(int64, tag = "7")]
    pub quota_value: i64,
    /// A value about to be enforced.
    #[prost(int64, optional, tag = "8")]
    pub future_quota_value: Option<i64>,
}

/// `google.rpc.PreconditionFailure`: which preconditions failed.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PreconditionFailure {
    /// The violations.
    #[prost(message, repeated, tag = "1")]
    pub violations: Vec<PreconditionViolation>,
}

/// `google.rpc.PreconditionFailure.Violation`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PreconditionViolation {
    /// The kind of precondition (e.g. `TOS`).
    #[prost(string, tag = "1")]
    pub r#type: String,
    /// What failed it (e.g. `user:7`).
    #[prost(string, tag = "2")]
    pub subject: String,
    /// How it failed.
    #[prost(string, tag = "3")]
    pub description: String,
}

/// `google.rpc.BadRequest`: which request fields are wrong.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct BadRequest {
    /// The violations.
    #[prost(message, repeated, tag = "1")]
    pub field_violations: Vec<FieldViolation>,
}

/// `google.rpc.BadRequest.FieldViolation`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct FieldViolation {
    /// The field path (e.g. `items[0].qty`).
    #[prost(string, tag = "1")]
    pub field: String,
    /// What is wrong with it.
    #[prost(string, tag = "2")]
    pub description: String,
    /// A stable UPPER_SNAKE reason.
    #[prost(string, tag = "3")]
    pub reason: String,
    /// The description, localized.
    #[prost(message, optional, tag = "4")]
    pub localized_message: Option<LocalizedMessage>,
}

impl FieldViolation {
    /// A violation of `field`, described.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> FieldViolation {
        FieldViolation { field: field.into(), description: description.into(), ..FieldViolation::default() }
    }
}

/// `google.rpc.RequestInfo`: which request failed, for a bug report.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RequestInfo {
    /// The request's id.
    #[prost(string, tag = "1")]
    pub request_id: String,
    /// Data the server used to serve it (e.g. an encrypted trace).
    #[prost(string, tag = "2")]
    pub serving_data: String,
}

/// `google.rpc.ResourceInfo`: which resource the error is about.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ResourceInfo {
    /// The kind of resource (e.g. `order`).
    #[prost(string, tag = "1")]
    pub resource_type: String,
    /// Its name.
    #[prost(string, tag = "2")]
    pub resource_name: String,
    /// Its owner.
    #[prost(string, tag = "3")]
    pub owner: String,
    /// What went wrong with it.
    #[prost(string, tag = "4")]
    pub description: String,
}

/// `google.rpc.Help`: where to read more.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Help {
    /// The links.
    #[prost(message, repeated, tag = "1")]
    pub links: Vec<HelpLink>,
}

/// `google.rpc.Help.Link`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct HelpLink {
    /// What the link is about.
    #[prost(string, tag = "1")]
    pub description: String,
    /// The URL.
    #[prost(string, tag = "2")]
    pub url: String,
}

/// `google.rpc.LocalizedMessage`: the error message in a user's language.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LocalizedMessage {
    /// The BCP 47 locale (e.g. `fr-FR`).
    #[prost(string, tag = "1")]
    pub locale: String,
    /// The message.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// `natsmicro.ErrorData`: an error's opaque data when it travels beside
/// details (PROTOCOL §4.1). The runtime adds and removes it itself.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub(crate) struct ErrorData {
    #[prost(bytes = "bytes", tag = "1")]
    pub(crate) data: bytes::Bytes,
}

named! {
    Status => "google.rpc", "Status";
    ErrorInfo => "google.rpc", "ErrorInfo";
    RetryInfo => "google.rpc", "RetryInfo";
    DebugInfo => "google.rpc", "DebugInfo";
    QuotaFailure => "google.rpc", "QuotaFailure";
    QuotaViolation => "google.rpc", "QuotaFailure.Violation";
    PreconditionFailure => "google.rpc", "PreconditionFailure";
    PreconditionViolation => "google.rpc", "PreconditionFailure.Violation";
    BadRequest => "google.rpc", "BadRequest";
    FieldViolation => "google.rpc", "BadRequest.FieldViolation";
    RequestInfo => "google.rpc", "RequestInfo";
    ResourceInfo => "google.rpc", "ResourceInfo";
    Help => "google.rpc", "Help";
    HelpLink => "google.rpc", "Help.Link";
    LocalizedMessage => "google.rpc", "LocalizedMessage";
    ErrorData => "natsmicro", "ErrorData";
}
