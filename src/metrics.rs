//! Every metric the broker exports, described once, recorded through the `metrics` facade and rendered by
//! metrics-exporter-prometheus on the metrics port. Label values are bounded: route templates, outcomes, kinds.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUEST_DURATION: &str = "broker_http_request_duration_seconds";
pub const PROVISION_REQUESTS: &str = "broker_provision_requests_total";
pub const DEPROVISION_REQUESTS: &str = "broker_deprovision_requests_total";
pub const KUBERNETES_API_AVAILABLE: &str = "broker_kubernetes_api_available";
pub const KUBERNETES_REQUESTS: &str = "broker_kubernetes_requests_total";
pub const WATCH_ERRORS: &str = "broker_watch_errors_total";

/// Buckets for request latencies: a 202 should take milliseconds, a slow API server seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls return the same handle) and describes every metric.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .expect("static buckets are valid")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        metrics::Unit::Seconds,
        "REST request latency by route template and method"
    );
    describe_counter!(
        PROVISION_REQUESTS,
        "Provision requests by resource type and outcome (success, invalid, conflict, error)"
    );
    describe_counter!(
        DEPROVISION_REQUESTS,
        "Deprovision requests by resource type and outcome (success, invalid, not_found, error)"
    );
    describe_gauge!(
        KUBERNETES_API_AVAILABLE,
        "1 when the last probe of the Kubernetes API server succeeded, else 0"
    );
    describe_counter!(
        KUBERNETES_REQUESTS,
        "Kubernetes API calls by verb and result (ok, error, timeout)"
    );
    describe_counter!(WATCH_ERRORS, "Watch stream failures by resource");
}

pub fn http_request(endpoint: &str, method: &str, elapsed: Duration) {
    histogram!(HTTP_REQUEST_DURATION, "endpoint" => endpoint.to_string(), "method" => method.to_string())
        .record(elapsed.as_secs_f64());
}

pub fn provision_request(resource_type: &str, status: &'static str) {
    counter!(PROVISION_REQUESTS, "resource_type" => resource_type.to_string(), "status" => status)
        .increment(1);
}

pub fn deprovision_request(resource_type: &str, status: &'static str) {
    counter!(DEPROVISION_REQUESTS, "resource_type" => resource_type.to_string(), "status" => status).increment(1);
}

pub fn kubernetes_call(verb: &'static str, result: &'static str) {
    counter!(KUBERNETES_REQUESTS, "verb" => verb, "result" => result).increment(1);
}

pub fn kubernetes_api_available(up: bool) {
    gauge!(KUBERNETES_API_AVAILABLE).set(if up { 1.0 } else { 0.0 });
}

pub fn watch_error(resource: &'static str) {
    counter!(WATCH_ERRORS, "resource" => resource).increment(1);
}
