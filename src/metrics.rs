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
pub const EVENTS_DROPPED: &str = "broker_observed_events_dropped_total";
pub const RESOURCES: &str = "broker_resources_total";
pub const DRIFT_DETECTED: &str = "broker_drift_detected_total";
pub const PROVISION_DURATION: &str = "broker_provision_duration_seconds";
pub const CALLBACKS: &str = "broker_callbacks_total";
pub const CALLBACK_QUEUE: &str = "broker_callback_queue_depth";
pub const PROVISION_QUEUE: &str = "broker_provision_queue_depth";
pub const DEPLOYMENT_ACTORS: &str = "broker_deployment_actors";
pub const HTTP_REFUSALS: &str = "broker_http_refusals_total";
pub const RATE_LIMITED: &str = "broker_rate_limited_total";
pub const OPEN_CONNECTIONS: &str = "broker_open_connections";
pub const CONNECTIONS_CLOSED: &str = "broker_connections_closed_total";
pub const SHARD_HELD: &str = "broker_shard_held";
pub const SHARDS_HELD: &str = "broker_shards_held";
pub const SHARD_TRANSITIONS: &str = "broker_shard_transitions_total";

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
        "Provision requests by resource type and outcome (success, invalid, conflict, not_found, unauthorized, forbidden, rate_limited, too_large, error), refusals before validation included"
    );
    describe_counter!(
        DEPROVISION_REQUESTS,
        "Deprovision requests by resource type and outcome (as for provisions)"
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
    describe_counter!(
        EVENTS_DROPPED,
        "Observed events dropped because the supervisor's queue was full (actors resync on a timer)"
    );
    describe_gauge!(RESOURCES, "Managed resources by namespace, type and phase");
    describe_counter!(
        DRIFT_DETECTED,
        "Times a deployment was found to differ from its desired spec, by namespace and type"
    );
    describe_histogram!(
        PROVISION_DURATION,
        metrics::Unit::Seconds,
        "Time from accepting a provision request to the deployment being Ready"
    );
    describe_counter!(
        CALLBACKS,
        "Callback delivery attempts by phase and result (delivered, retry, rejected)"
    );
    describe_gauge!(
        CALLBACK_QUEUE,
        "Callbacks waiting to be delivered, across deployments"
    );
    describe_gauge!(
        PROVISION_QUEUE,
        "Deployments waiting for a namespace provisioning permit"
    );
    describe_gauge!(DEPLOYMENT_ACTORS, "Live deployment actors");
    describe_counter!(
        HTTP_REFUSALS,
        "Requests answered with an error, by route template and error code"
    );
    describe_counter!(
        RATE_LIMITED,
        "Requests refused with 429 by the per-client rate limit, by route template"
    );
    describe_gauge!(
        OPEN_CONNECTIONS,
        "Open client connections by listener (api, metrics)"
    );
    describe_counter!(
        CONNECTIONS_CLOSED,
        "Client connections the broker closed for a limit, by listener and reason (header_timeout, \
         keep_alive_timeout, idle_timeout, displaced, over_limit)"
    );
    describe_gauge!(
        SHARD_HELD,
        "1 for each shard whose deployments this replica runs, else 0, by replica and shard"
    );
    describe_gauge!(SHARDS_HELD, "Shards this replica holds, by replica");
    describe_counter!(
        SHARD_TRANSITIONS,
        "Shard leases acquired, released (rebalancing, shutdown), lost (taken or deleted) and fenced (not \
         renewed in time), by replica"
    );
}

pub fn http_request(endpoint: &str, method: &str, elapsed: Duration) {
    histogram!(HTTP_REQUEST_DURATION, "endpoint" => endpoint.to_string(), "method" => method.to_string())
        .record(elapsed.as_secs_f64());
}

/// Counts one provision or deprovision by the status it was answered with.
pub fn mutation(action: &str, resource_type: &'static str, status: u16) {
    let outcome = match status {
        200..=299 => "success",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        409 => "conflict",
        413 => "too_large",
        429 => "rate_limited",
        400..=499 => "invalid",
        _ => "error",
    };
    let name = if action == "provision" {
        PROVISION_REQUESTS
    } else {
        DEPROVISION_REQUESTS
    };
    counter!(name, "resource_type" => resource_type, "status" => outcome).increment(1);
}

/// Counts one request answered with an error code.
pub fn http_refusal(endpoint: &'static str, error: &'static str) {
    counter!(HTTP_REFUSALS, "endpoint" => endpoint, "error" => error).increment(1);
}

pub fn kubernetes_call(verb: &'static str, result: &'static str) {
    counter!(KUBERNETES_REQUESTS, "verb" => verb, "result" => result).increment(1);
}

pub fn kubernetes_api_available(up: bool) {
    gauge!(KUBERNETES_API_AVAILABLE).set(if up { 1.0 } else { 0.0 });
}

pub fn event_dropped() {
    counter!(EVENTS_DROPPED).increment(1);
}

pub fn drift_detected(namespace: &str, resource_type: &str) {
    counter!(DRIFT_DETECTED, "namespace" => namespace.to_string(), "type" => resource_type.to_string())
        .increment(1);
}

pub fn provision_duration(resource_type: &str, seconds: f64) {
    histogram!(PROVISION_DURATION, "resource_type" => resource_type.to_string()).record(seconds);
}

pub fn callback(phase: &str, result: &'static str) {
    counter!(CALLBACKS, "phase" => phase.to_string(), "result" => result).increment(1);
}

pub fn callback_queue(delta: f64) {
    gauge!(CALLBACK_QUEUE).increment(delta);
}

pub fn provision_queue(depth: usize) {
    gauge!(PROVISION_QUEUE).set(depth as f64);
}

pub fn deployment_actors(n: usize) {
    gauge!(DEPLOYMENT_ACTORS).set(n as f64);
}

pub fn resources(namespace: &str, resource_type: &str, phase: &str, n: usize) {
    gauge!(RESOURCES, "namespace" => namespace.to_string(), "type" => resource_type.to_string(), "phase" => phase.to_string())
        .set(n as f64);
}

pub fn watch_error(resource: &'static str) {
    counter!(WATCH_ERRORS, "resource" => resource).increment(1);
}

pub fn rate_limited(endpoint: &'static str) {
    counter!(RATE_LIMITED, "endpoint" => endpoint).increment(1);
}

pub fn connection_opened(listener: &'static str) {
    gauge!(OPEN_CONNECTIONS, "listener" => listener).increment(1.0);
}

pub fn connection_dropped(listener: &'static str) {
    gauge!(OPEN_CONNECTIONS, "listener" => listener).decrement(1.0);
}

pub fn connection_closed(listener: &'static str, reason: &'static str) {
    counter!(CONNECTIONS_CLOSED, "listener" => listener, "reason" => reason).increment(1);
}

pub fn shards_held(replica: &str, held: &std::collections::BTreeSet<u32>) {
    for shard in 0..crate::actors::shards::SHARDS {
        gauge!(SHARD_HELD, "replica" => replica.to_string(), "shard" => shard.to_string())
            .set(if held.contains(&shard) { 1.0 } else { 0.0 });
    }
    gauge!(SHARDS_HELD, "replica" => replica.to_string()).set(held.len() as f64);
}

pub fn shard_transition(replica: &str, event: &'static str) {
    counter!(SHARD_TRANSITIONS, "replica" => replica.to_string(), "event" => event).increment(1);
}
