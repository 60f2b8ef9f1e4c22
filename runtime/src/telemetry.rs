//! Observability (PROTOCOL §11): W3C trace context in NATS headers, one
//! `tracing` span per request on the server and per call on the client,
//! and the events every runtime logs.
//!
//! Spans and events go through [`tracing`] only: with no subscriber
//! interested they are disabled at their call site, and nothing is
//! formatted or allocated. The spans carry OpenTelemetry's conventions
//! (`otel.name`, `otel.kind`, `otel.status_code` and the §11.2 attributes),
//! so `tracing-opentelemetry` exports them as they are.
//!
//! With the cargo feature `opentelemetry`, clients inject the current
//! span's context as `traceparent`/`tracestate`, services make the
//! extracted context the parent of the request's span, and durations are
//! recorded as the §11.3 histograms through `opentelemetry::global::meter`
//! (install the meter provider before the first request).
//!
//! Parsing follows the W3C rules: an invalid `traceparent` is no context
//! at all, and `tracestate` counts only beside a valid one.
//!
//! ```
//! use nats_micro_runtime::telemetry::TraceContext;
//! let mut headers = async_nats::HeaderMap::new();
//! headers.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
//! headers.insert("tracestate", "vendor=opaque");
//! let context = TraceContext::from_headers(&headers).expect("a valid traceparent");
//! assert!(context.parent.sampled());
//! assert_eq!(context.state.as_deref(), Some("vendor=opaque"));
//!
//! headers.insert("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01");
//! assert!(TraceContext::from_headers(&headers).is_none()); // an all-zero trace id starts a new trace
//! ```

use std::fmt;
use std::time::Duration;

use async_nats::HeaderMap;
use tracing::Span;

use crate::code::Code;
use crate::error::Error;

/// The W3C header that carries the trace id and the caller's span id.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C header that carries vendor-specific trace state.
pub const TRACESTATE: &str = "tracestate";
/// The `tracing` target of the request and call spans.
pub const SPAN_TARGET: &str = "nats_micro_runtime::span";
/// The `tracing` target of the §11.4 events.
pub const EVENT_TARGET: &str = "nats_micro_runtime::event";

/// A valid W3C `traceparent`: version `00`, a trace id and a parent span
/// id (neither all zeros), and the trace flags.
///
/// ```
/// use nats_micro_runtime::telemetry::TraceParent;
/// let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// let parent = TraceParent::parse(value).expect("valid");
/// assert_eq!(parent.to_string(), value);
/// assert!(TraceParent::parse("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").is_none()); // upper case
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace every span of the request belongs to.
    pub trace_id: [u8; 16],
    /// The caller's span.
    pub parent_id: [u8; 8],
    /// The trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` value; `None` for anything the W3C rules reject.
    pub fn parse(value: &str) -> Option<TraceParent> {
        let value = value.trim_matches([' ', '\t']).as_bytes();
        // 00-<32 hex>-<16 hex>-<2 hex>: exactly 55 bytes for version 00.
        if value.len() != 55 || &value[..3] != b"00-" || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let trace_id: [u8; 16] = hex_bytes(&value[3..35])?;
        let parent_id: [u8; 8] = hex_bytes(&value[36..52])?;
        let [flags] = hex_bytes::<1>(&value[53..55])?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent { trace_id, parent_id, flags })
    }

    /// The caller sampled the trace (flag bit 0).
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("00-")?;
        self.trace_id.iter().try_for_each(|byte| write!(f, "{byte:02x}"))?;
        f.write_str("-")?;
        self.parent_id.iter().try_for_each(|byte| write!(f, "{byte:02x}"))?;
        write!(f, "-{:02x}", self.flags)
    }
}

/// Lowercase hex only, as W3C writes it.
fn hex_bytes<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    if text.len() != 2 * N {
        return None;
    }
    let mut bytes = [0u8; N];
    for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(bytes)
}

/// The trace context a request carries: a valid `traceparent` and, beside
/// it only, the `tracestate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// The parsed `traceparent`.
    pub parent: TraceParent,
    /// The `tracestate`, as received (`None` when absent or empty).
    pub state: Option<String>,
}

impl TraceContext {
    /// The context in `headers`; `None` when `traceparent` is missing or invalid
    /// (the request then starts a new trace).
    pub fn from_headers(headers: &HeaderMap) -> Option<TraceContext> {
        let parent = TraceParent::parse(headers.get(TRACEPARENT)?.as_str())?;
        let state = headers.get(TRACESTATE).map(|value| value.as_str().trim()).filter(|value| !value.is_empty());
        Some(TraceContext { parent, state: state.map(str::to_owned) })
    }

    /// Writes `traceparent` and `tracestate` into `headers`, unless the
    /// caller set `traceparent` explicitly (a user's header wins).
    pub fn inject(&self, headers: &mut HeaderMap) {
        if headers.get(TRACEPARENT).is_some() {
            return;
        }
        headers.insert(TRACEPARENT, self.parent.to_string().as_str());
        if let Some(state) = &self.state {
            headers.insert(TRACESTATE, state.as_str());
        }
    }
}

/// The attempt number of a request, read as its handler reads it
/// ([`crate::headers::request_attempt`]); 1 without headers.
pub(crate) fn attempt(headers: Option<&HeaderMap>) -> u32 {
    headers.map_or(1, crate::headers::request_attempt)
}

/// One event per attempt of a call, on its span (§11.2); the header is
/// read only when a subscriber listens.
pub(crate) fn attempt_event(headers: &HeaderMap) {
    tracing::debug!(target: SPAN_TARGET, { nats_micro.attempt = attempt(Some(headers)) }, "attempt");
}

/// What a request's server span is made from.
pub(crate) struct ServerRequest<'a> {
    pub(crate) proto_service: &'a str,
    pub(crate) method: &'a str,
    pub(crate) endpoint: &'a str,
    pub(crate) subject: &'a str,
    pub(crate) headers: Option<&'a HeaderMap>,
    pub(crate) deadline: Option<Duration>,
}

/// The server span of one request (a root, or the child of the caller's
/// trace context with the `opentelemetry` feature). Disabled, and nothing
/// built, when no subscriber wants it.
pub(crate) fn server_span(request: ServerRequest<'_>) -> Span {
    let span = tracing::info_span!(
        target: SPAN_TARGET,
        parent: None,
        "nats_micro.server",
        otel.name = %SpanName(request.proto_service, request.method),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "nats_micro",
        rpc.service = request.proto_service,
        rpc.method = request.method,
        messaging.system = "nats",
        messaging.destination.name = request.subject,
        nats_micro.endpoint = request.endpoint,
        nats_micro.request_id = %nuid::next(),
        nats_micro.deadline_ms = tracing::field::Empty,
        nats_micro.attempt = tracing::field::Empty,
        nats_micro.error_code = tracing::field::Empty,
        nats_micro.duration_ms = tracing::field::Empty,
    );
    if span.is_disabled() {
        return span;
    }
    if let Some(deadline) = request.deadline {
        span.record("nats_micro.deadline_ms", u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX));
    }
    let attempt = attempt(request.headers);
    if attempt > 1 {
        span.record("nats_micro.attempt", attempt);
    }
    #[cfg(feature = "opentelemetry")]
    if let Some(context) = request.headers.and_then(TraceContext::from_headers) {
        otel::set_parent(&span, &context);
    }
    span
}

/// The client span of one call, a child of the current span.
pub(crate) fn client_span(proto_service: &str, method: &str, endpoint: &str, subject: &str) -> Span {
    tracing::info_span!(
        target: SPAN_TARGET,
        "nats_micro.client",
        otel.name = %SpanName(proto_service, method),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        rpc.system = "nats_micro",
        rpc.service = proto_service,
        rpc.method = method,
        messaging.system = "nats",
        messaging.destination.name = subject,
        nats_micro.endpoint = endpoint,
        nats_micro.error_code = tracing::field::Empty,
        nats_micro.duration_ms = tracing::field::Empty,
    )
}

/// `<proto service>/<method>`, or the method alone when the service is unknown.
struct SpanName<'a>(&'a str, &'a str);

impl fmt::Display for SpanName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            "" => f.write_str(self.1),
            service => write!(f, "{service}/{}", self.1),
        }
    }
}

/// Which side a span is on: the status rules differ (§11.2).
#[derive(Clone, Copy)]
pub(crate) enum Side {
    Server,
    Client,
}

/// The names of an RPC, for the metrics' attributes.
#[derive(Clone, Copy)]
#[cfg_attr(not(feature = "opentelemetry"), allow(dead_code, reason = "read by the metrics only"))]
pub(crate) struct Names<'a> {
    pub(crate) proto_service: &'a str,
    pub(crate) method: &'a str,
    pub(crate) endpoint: &'a str,
}

/// Records a request's or call's outcome on its span and, with the
/// `opentelemetry` feature, in the duration histogram. The error code is
/// its name (`NOT_FOUND`), whatever the service sends on the wire, so that
/// every runtime's telemetry reads alike (§11.2).
pub(crate) fn finish(span: &Span, side: Side, names: Names<'_>, elapsed: Duration, error: Option<&Error>) {
    let error_code = error.map(|err| err.code().as_str());
    if !span.is_disabled() {
        // Entered once more: `tracing-opentelemetry` ends a span at its last
        // exit, and a stream's spans are not entered while it runs.
        let _entered = span.enter();
        span.record("nats_micro.duration_ms", elapsed.as_secs_f64() * 1000.0);
        if let Some(code) = error_code {
            span.record("nats_micro.error_code", code);
        }
        let failed = match (side, error) {
            (_, None) => false,
            (Side::Client, Some(_)) => true,
            (Side::Server, Some(err)) => is_server_fault(err.code()),
        };
        if failed {
            span.record("otel.status_code", "error");
        }
    }
    #[cfg(not(feature = "opentelemetry"))]
    let _ = names;
    #[cfg(feature = "opentelemetry")]
    otel::record_duration(names, side, elapsed, error_code.unwrap_or("OK"));
}

/// A client call's span and start, finished once with the call's outcome
/// (for a stream: its end, its error, or the caller dropping it).
pub(crate) struct CallSpan {
    span: Span,
    started: std::time::Instant,
    names: Names<'static>,
}

impl CallSpan {
    /// The span of a call to `subject`, a child of the current span; `None`
    /// when nothing records calls, so that an unobserved call reads no
    /// clock and instruments no future.
    pub(crate) fn start(names: Names<'static>, subject: &str) -> Option<CallSpan> {
        let span = client_span(names.proto_service, names.method, names.endpoint, subject);
        wanted(&span).then(|| CallSpan { span, started: std::time::Instant::now(), names })
    }

    /// The span, for the call's futures to run in.
    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// Records the outcome; the span ends once its last clone is dropped.
    pub(crate) fn finish(self, error: Option<&Error>) {
        finish(&self.span, Side::Client, self.names, self.started.elapsed(), error);
    }
}

/// Whether a call's outcome is recorded at all: its span is enabled, or
/// metrics are built in.
pub(crate) fn wanted(span: &Span) -> bool {
    cfg!(feature = "opentelemetry") || !span.is_disabled()
}

/// The codes that are the service's own failures (gRPC's server span rule).
fn is_server_fault(code: &Code) -> bool {
    matches!(
        code,
        Code::Unknown | Code::DeadlineExceeded | Code::Unimplemented | Code::Internal | Code::Unavailable | Code::DataLoss
    )
}

/// Injects the current span's trace context into `headers` (with the
/// `opentelemetry` feature and a valid current span; a no-op otherwise).
pub(crate) fn inject_current(headers: &mut HeaderMap) {
    #[cfg(feature = "opentelemetry")]
    if let Some(context) = otel::current_context() {
        context.inject(headers);
    }
    #[cfg(not(feature = "opentelemetry"))]
    let _ = headers;
}

/// The §11.4 events, each with `service`, `endpoint` and `subject`.
pub(crate) mod event {
    /// Where a request was: the fields every event carries.
    #[derive(Clone, Copy)]
    pub(crate) struct At<'a> {
        pub(crate) service: &'a str,
        pub(crate) endpoint: &'a str,
        pub(crate) subject: &'a str,
    }

    pub(crate) fn request_malformed(at: At<'_>, error: &dyn std::fmt::Display) {
        tracing::warn!(target: super::EVENT_TARGET, service = at.service, endpoint = at.endpoint, subject = at.subject, error = %error, "request_malformed");
    }

    pub(crate) fn deadline_dropped(at: At<'_>, waited: std::time::Duration) {
        let waited_ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX);
        tracing::warn!(target: super::EVENT_TARGET, service = at.service, endpoint = at.endpoint, subject = at.subject, waited_ms, "deadline_dropped");
    }

    pub(crate) fn request_shed(at: At<'_>, queued: usize) {
        tracing::warn!(target: super::EVENT_TARGET, service = at.service, endpoint = at.endpoint, subject = at.subject, queued, "request_shed");
    }

    pub(crate) fn handler_failed(at: At<'_>, error: &str) {
        tracing::error!(target: super::EVENT_TARGET, service = at.service, endpoint = at.endpoint, subject = at.subject, error, "handler_failed");
    }

    pub(crate) fn handler_panicked(at: At<'_>, panic: &str) {
        tracing::error!(target: super::EVENT_TARGET, service = at.service, endpoint = at.endpoint, subject = at.subject, panic, "handler_panicked");
    }

    pub(crate) fn reply_refused(at: At<'_>, reply: &str, reason: &str) {
        tracing::warn!(target: super::EVENT_TARGET, service = at.service, endpoint = at.endpoint, subject = at.subject, reply, reason, "reply_refused");
    }

    /// A `kv_store` or `object_store` write failed: warn when best effort, error when required.
    pub(crate) fn persist_failed(at: At<'_>, bucket: &str, key: &str, error: &str, required: bool) {
        if required {
            tracing::error!(target: super::EVENT_TARGET, service = at.service, endpoint = at.endpoint, subject = at.subject, bucket, key, error, "persist_failed");
        } else {
            tracing::warn!(target: super::EVENT_TARGET, service = at.service, endpoint = at.endpoint, subject = at.subject, bucket, key, error, "persist_failed");
        }
    }

    pub(crate) fn discovery_failed(at: At<'_>, error: &dyn std::fmt::Display) {
        tracing::warn!(target: super::EVENT_TARGET, service = at.service, endpoint = at.endpoint, subject = at.subject, error = %error, "discovery_failed");
    }
}

/// The OpenTelemetry side, built only with the `opentelemetry` feature.
#[cfg(feature = "opentelemetry")]
mod otel {
    use std::sync::OnceLock;
    use std::time::Duration;

    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
    use opentelemetry::{KeyValue, metrics::Histogram};
    use tracing::Span;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::{Names, Side, TraceContext, TraceParent};

    /// Makes the caller's context the parent of `span`.
    pub(super) fn set_parent(span: &Span, context: &TraceContext) {
        let state = context.state.as_deref().and_then(|state| state.parse::<TraceState>().ok()).unwrap_or_default();
        let remote = SpanContext::new(
            TraceId::from_bytes(context.parent.trace_id),
            SpanId::from_bytes(context.parent.parent_id),
            TraceFlags::new(context.parent.flags),
            true,
            state,
        );
        // Fails only when no OpenTelemetry layer sees the span; then there is no trace to join.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }

    /// The current span's context, when it belongs to a valid trace.
    pub(super) fn current_context() -> Option<TraceContext> {
        let span = Span::current();
        if span.is_none() {
            return None;
        }
        let context = span.context();
        let span_context = context.span().span_context().clone();
        if !span_context.is_valid() {
            return None;
        }
        let state = span_context.trace_state().header();
        Some(TraceContext {
            parent: TraceParent {
                trace_id: span_context.trace_id().to_bytes(),
                parent_id: span_context.span_id().to_bytes(),
                flags: span_context.trace_flags().to_u8(),
            },
            state: (!state.is_empty()).then_some(state),
        })
    }

    /// The §11.3 histograms, made on first use from the global meter provider.
    fn histogram(side: Side) -> &'static Histogram<f64> {
        static SERVER: OnceLock<Histogram<f64>> = OnceLock::new();
        static CLIENT: OnceLock<Histogram<f64>> = OnceLock::new();
        let (cell, name) = match side {
            Side::Server => (&SERVER, "rpc.server.duration"),
            Side::Client => (&CLIENT, "rpc.client.duration"),
        };
        cell.get_or_init(|| opentelemetry::global::meter("nats_micro_runtime").f64_histogram(name).with_unit("ms").build())
    }

    /// Records one duration with the §11.2 attributes.
    pub(super) fn record_duration(names: Names<'_>, side: Side, elapsed: Duration, error_code: &str) {
        let attributes = [
            KeyValue::new("rpc.system", "nats_micro"),
            KeyValue::new("rpc.service", names.proto_service.to_owned()),
            KeyValue::new("rpc.method", names.method.to_owned()),
            KeyValue::new("messaging.system", "nats"),
            KeyValue::new("nats_micro.endpoint", names.endpoint.to_owned()),
            KeyValue::new("nats_micro.error_code", error_code.to_owned()),
        ];
        histogram(side).record(elapsed.as_secs_f64() * 1000.0, &attributes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, *value);
        }
        headers
    }

    #[test]
    fn a_valid_traceparent_round_trips() {
        let parent = TraceParent::parse(VALID).expect("valid");
        assert_eq!(parent.trace_id[0], 0x4b);
        assert_eq!(parent.parent_id[7], 0xb7);
        assert!(parent.sampled());
        assert_eq!(parent.to_string(), VALID);
        assert!(!TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").expect("valid").sampled());
    }

    #[test]
    fn every_w3c_violation_is_no_context() {
        for bad in [
            "",
            "garbage",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // another version: not what §11.1 accepts
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero parent id
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // upper case
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  // short trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",  // short flags
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba9g2b7-01", // not hex
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tracestate_counts_only_beside_a_valid_traceparent() {
        let alone = headers(&[(TRACESTATE, "vendor=1")]);
        assert_eq!(TraceContext::from_headers(&alone), None);
        let invalid = headers(&[(TRACEPARENT, "00-xyz"), (TRACESTATE, "vendor=1")]);
        assert_eq!(TraceContext::from_headers(&invalid), None);
        let valid = headers(&[(TRACEPARENT, VALID), (TRACESTATE, "vendor=1")]);
        assert_eq!(TraceContext::from_headers(&valid).and_then(|context| context.state), Some("vendor=1".to_owned()));
        let empty_state = headers(&[(TRACEPARENT, VALID), (TRACESTATE, " ")]);
        assert_eq!(TraceContext::from_headers(&empty_state).expect("valid").state, None);
    }

    #[test]
    fn a_users_traceparent_wins_over_injection() {
        let context = TraceContext::from_headers(&headers(&[(TRACEPARENT, VALID), (TRACESTATE, "a=b")])).expect("valid");
        let mut user = headers(&[(TRACEPARENT, "00-11111111111111111111111111111111-2222222222222222-00")]);
        context.inject(&mut user);
        assert_eq!(user.get(TRACEPARENT).map(|v| v.as_str()), Some("00-11111111111111111111111111111111-2222222222222222-00"));
        assert!(user.get(TRACESTATE).is_none());
        let mut empty = HeaderMap::new();
        context.inject(&mut empty);
        assert_eq!(empty.get(TRACEPARENT).map(|v| v.as_str()), Some(VALID));
        assert_eq!(empty.get(TRACESTATE).map(|v| v.as_str()), Some("a=b"));
    }

    #[test]
    fn the_attempt_header_defaults_to_one() {
        assert_eq!(attempt(None), 1);
        // As the handler's ctx.attempt(): a value with spaces is not a valid number.
        for (value, expected) in [("2", 2), (" 3 ", 1), ("0", 1), ("-1", 1), ("two", 1), ("", 1)] {
            assert_eq!(attempt(Some(&headers(&[(crate::headers::ATTEMPT, value)]))), expected, "{value:?}");
        }
    }

    #[test]
    fn server_faults_set_the_error_status_others_do_not() {
        for code in
            [Code::Unknown, Code::DeadlineExceeded, Code::Unimplemented, Code::Internal, Code::Unavailable, Code::DataLoss]
        {
            assert!(is_server_fault(&code), "{code:?}");
        }
        for code in [Code::InvalidArgument, Code::NotFound, Code::PermissionDenied, Code::ResourceExhausted, Code::custom("X")] {
            assert!(!is_server_fault(&code), "{code:?}");
        }
    }
}
