//! The §11.3 metrics on a real nats-server: one call that succeeds and one
//! that fails with NOT_FOUND, read back from an in-memory exporter.
//!
//! A binary of its own: the runtime makes its histograms from the global
//! meter provider on first use, so the provider is installed before any
//! call, and no other test of this process may call first.

#[path = "e2e/support.rs"]
#[allow(dead_code, reason = "the e2e support module has more than this test uses")]
mod support;

use std::collections::BTreeMap;

use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use support::{Fixture, GetOrderRequest};

/// The count of each data point of the histogram `name`, keyed by its
/// attributes (`key=value` sorted), over every export.
fn histogram_counts(exports: &[ResourceMetrics], name: &str) -> BTreeMap<Vec<String>, u64> {
    let mut counts = BTreeMap::new();
    let metrics = exports.iter().flat_map(|export| export.scope_metrics()).flat_map(|scope| scope.metrics());
    for metric in metrics.filter(|metric| metric.name() == name) {
        let AggregatedMetrics::F64(MetricData::Histogram(histogram)) = metric.data() else {
            panic!("{name} is not an f64 histogram: {:?}", metric.data());
        };
        for point in histogram.data_points() {
            let mut attributes: Vec<String> = point.attributes().map(|kv| format!("{}={}", kv.key, kv.value)).collect();
            attributes.sort();
            // Cumulative: the latest export holds the totals.
            counts.insert(attributes, point.count());
        }
    }
    counts
}

fn attributes(method: &str, endpoint: &str, error_code: &str) -> Vec<String> {
    let mut attributes = vec![
        "messaging.system=nats".to_owned(),
        format!("nats_micro.endpoint={endpoint}"),
        format!("nats_micro.error_code={error_code}"),
        format!("rpc.method={method}"),
        "rpc.service=order.v1.OrderService".to_owned(),
        "rpc.system=nats_micro".to_owned(),
    ];
    attributes.sort();
    attributes
}

#[tokio::test]
async fn calls_are_counted_by_code_in_the_server_and_client_duration_histograms() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder().with_reader(PeriodicReader::builder(exporter.clone()).build()).build();
    opentelemetry::global::set_meter_provider(provider.clone());

    let fx = Fixture::start().await;
    fx.client.get_order(GetOrderRequest { id: "o-7".into() }).await.expect("served");
    let err = fx.client.get_order(GetOrderRequest { id: String::new() }).await.expect_err("an empty id is NOT_FOUND");
    assert_eq!(err.code(), support::OrderServiceErrorCode::NotFound);

    provider.force_flush().expect("the metrics export");
    let exports = exporter.get_finished_metrics().expect("exported metrics");
    for name in ["rpc.server.duration", "rpc.client.duration"] {
        let counts = histogram_counts(&exports, name);
        let expected = BTreeMap::from([
            (attributes("GetOrder", "get_order", "NOT_FOUND"), 1),
            (attributes("GetOrder", "get_order", "OK"), 1),
        ]);
        assert_eq!(counts, expected, "{name}: one call each, the code by its name (the service sends 404)");
        assert_eq!(counts.values().sum::<u64>(), 2, "{name}");
    }
    let units: Vec<_> = exports
        .iter()
        .flat_map(|export| export.scope_metrics())
        .flat_map(|scope| scope.metrics())
        .filter(|metric| metric.name().starts_with("rpc."))
        .map(|metric| metric.unit().to_owned())
        .collect();
    assert!(!units.is_empty() && units.iter().all(|unit| unit == "ms"), "{units:?}");
    provider.shutdown().expect("the provider shuts down");
}
