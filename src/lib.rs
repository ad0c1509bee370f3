//! KIDP Deployment Broker: a stateless REST service that provisions databases in Kubernetes namespaces,
//! answers 202 at once, reports every phase by callback and tells what is really running.
//!
//! The map of the crate (see `../shared/DESIGN.md`):
//! - [`config`]: command-line and environment configuration.
//! - [`domain`]: the shared vocabulary, validation, catalogue, cost and drift — pure, no I/O.
//! - `http`: the REST surface (poem-openapi), the error body, Swagger UI and the spec.
//! - `k8s`: the Kubernetes client, intent records, reflector stores, `--dev`'s embedded kubesim.
//! - `auth`: who is calling (token file, Kubernetes TokenReview, `--dev-token`) and the namespace policy.
//! - `usecases`: accepting provisions and deprovisions, and the views of what runs (between `http` and the
//!   cluster; business rules, authorization and quotas live here).
//! - `actors`: the lifecycle — a supervisor and one actor per deployment, the namespace throttle, callbacks.
//! - `metrics`: every exported metric, described once.
//! - [`run`]: wires it together and serves until SIGTERM/SIGINT.
#![forbid(unsafe_code)]

mod actors;
mod auth;
pub mod config;
pub mod domain;
mod http;
mod k8s;
mod metrics;
mod server;
mod usecases;

pub use server::{Running, run, start};

/// How replicas share the work: the shard of a namespace, for tools and tests that need to know which replica
/// runs a deployment (the replica whose `/readiness` lists that shard).
pub mod sharding {
    pub use crate::actors::shards::{SHARDS, shard_lease_name, shard_of};
}

/// The OpenAPI document (JSON) the server serves at `/openapi.json`.
pub fn openapi_json() -> String {
    http::spec_json()
}

/// The OpenAPI document (YAML) the server serves at `/openapi.yaml`.
pub fn openapi_yaml() -> String {
    http::spec_yaml()
}

/// The ManagedResource CRD as YAML.
pub fn crd_yaml() -> String {
    k8s::record::crd_yaml()
}
