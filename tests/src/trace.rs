//! The TraceService of `proto/trace/v1` (one hop of a cross-language
//! trace) and an OpenTelemetry setup that keeps finished spans in memory,
//! as `trace_server` and the observability tests use them.

use nats_micro_runtime::RequestContext;
use opentelemetry::trace::{SpanKind, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::{Map, Value, json};
use tracing_subscriber::layer::SubscriberExt;

use crate::project::trace::v1::trace_service_nats::{TraceService, TraceServiceClient, TraceServiceError};
use crate::project::trace::v1::{HopRequest, HopResponse};

/// The subject prefix of the hop named `name`: `trace.v1.<name>`.
pub fn hop_prefix(name: &str) -> String {
    format!("trace.v1.{name}")
}

/// One hop: answers with its name, after calling the next hop of the route
/// from inside the handler (so that call is a child of this request's span).
#[derive(Clone, Debug)]
pub struct Hop {
    /// The name this hop answers to (`HOP_NAME`).
    pub name: String,
    /// The connection the next hop is called on.
    pub nats: async_nats::Client,
}

impl TraceService for Hop {
    async fn hop(&self, _ctx: RequestContext, request: HopRequest) -> Result<HopResponse, TraceServiceError> {
        let mut visited = vec![self.name.clone()];
        if let Some((next, rest)) = request.route.split_first() {
            let client = TraceServiceClient::new(self.nats.clone()).with_subject_prefix(&hop_prefix(next));
            let answer = client.hop(HopRequest { route: rest.to_vec() }).await?;
            visited.extend(answer.into_inner().visited);
        }
        Ok(HopResponse { visited })
    }
}

/// OpenTelemetry with an in-memory exporter, bridged from `tracing`.
#[derive(Debug)]
pub struct SpanRecorder {
    provider: SdkTracerProvider,
    exporter: InMemorySpanExporter,
}

impl Default for SpanRecorder {
    fn default() -> Self {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        SpanRecorder { provider, exporter }
    }
}

impl SpanRecorder {
    /// A subscriber exporting every span to this recorder.
    pub fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
        let tracer = self.provider.tracer("nats-micro-tests");
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer))
    }

    /// The spans finished so far.
    pub fn spans(&self) -> Vec<SpanData> {
        let _ = self.provider.force_flush();
        self.exporter.get_finished_spans().unwrap_or_default()
    }

    /// The finished spans as `trace.proto` prints them: `name`, `kind`,
    /// `trace_id`, `span_id`, `parent_span_id` ("" for a root), `attributes`.
    pub fn spans_json(&self) -> Value {
        Value::Array(self.spans().iter().map(span_json).collect())
    }
}

/// One span as `trace.proto` prints it.
pub fn span_json(span: &SpanData) -> Value {
    let kind = match span.span_kind {
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Internal => "internal",
    };
    let parent = match span.parent_span_id {
        opentelemetry::trace::SpanId::INVALID => String::new(),
        parent => parent.to_string(),
    };
    let attributes: Map<String, Value> = span
        .attributes
        .iter()
        .map(|kv| {
            let value = match &kv.value {
                opentelemetry::Value::I64(n) => json!(n),
                opentelemetry::Value::F64(n) => json!(n),
                opentelemetry::Value::Bool(b) => json!(b),
                other => json!(other.to_string()),
            };
            (kv.key.to_string(), value)
        })
        .collect();
    json!({
        "name": span.name,
        "kind": kind,
        "trace_id": span.span_context.trace_id().to_string(),
        "span_id": span.span_context.span_id().to_string(),
        "parent_span_id": parent,
        "attributes": attributes,
    })
}
