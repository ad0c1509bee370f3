//! The operations of the REST API. Handlers parse into domain types, call one use case, and map its answer to
//! the wire types; business rules live in `crate::usecases`.

use std::sync::Arc;

use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi, Tags};

use super::auth::Caller;
use super::body::{ValidJson, ValidatedBody};
use super::errors::{DeprovisionError, Problem, ProvisionError, QueryBodyError, QueryError};
use super::types::*;
use crate::auth::Subject;
use crate::domain::{self, DeploymentId, ProvisionRequest, ResourcesQuery};
use crate::k8s;
use crate::metrics;
use crate::usecases::{Broker, ResourceView, SpecView};

/// The broker version reported by `/health` and `/readiness`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Tags)]
enum ApiTags {
    /// Liveness and readiness.
    Health,
    /// Provision and deprovision resources.
    Lifecycle,
    /// What is deployed and how it compares with what was asked.
    State,
}

/// The REST API. `state` is `None` only when the spec is generated without a cluster.
pub struct BrokerApi {
    pub state: Option<Arc<Broker>>,
}

impl BrokerApi {
    fn state(&self) -> Result<&Arc<Broker>, Problem> {
        self.state
            .as_ref()
            .ok_or_else(|| Problem::kubernetes("the broker is not connected to a cluster"))
    }
}

#[derive(ApiResponse)]
enum ProvisionResponse {
    /// Accepted: the request is stored in the cluster and will be worked on.
    #[oai(status = 202)]
    Accepted(Json<ProvisionAccepted>),
}

#[derive(ApiResponse)]
enum DeprovisionResponse {
    /// Accepted: the deprovision request is stored in the cluster.
    #[oai(status = 202)]
    Accepted(Json<DeprovisionAccepted>),
}

#[derive(ApiResponse)]
enum ReadinessResponse {
    /// Ready to accept requests.
    #[oai(status = 200)]
    Ready(Json<Readiness>),
    /// Not ready: the reason says why (for example, the Kubernetes API is not accessible).
    #[oai(status = 503)]
    NotReady(Json<Readiness>),
}

/// The validated provision body.
pub struct ProvisionBody(ProvisionRequest);

impl ValidatedBody for ProvisionBody {
    type Schema = ProvisionRequestDoc;
    fn validate(v: &serde_json::Value) -> Result<Self, Problem> {
        Ok(ProvisionBody(domain::parse_provision(v)?))
    }
}

/// The validated deprovision body.
pub struct DeprovisionBody(domain::DeprovisionRequest);

impl ValidatedBody for DeprovisionBody {
    type Schema = DeprovisionRequestDoc;
    fn validate(v: &serde_json::Value) -> Result<Self, Problem> {
        Ok(DeprovisionBody(domain::parse_deprovision(v)?))
    }
}

/// The validated resources query body.
pub struct ResourcesBody(ResourcesQuery);

impl ValidatedBody for ResourcesBody {
    type Schema = ResourcesQueryDoc;
    fn validate(v: &serde_json::Value) -> Result<Self, Problem> {
        Ok(ResourcesBody(domain::parse_resources_query_body(v)?))
    }
}

#[OpenApi]
impl BrokerApi {
    /// Liveness: the process is up.
    #[oai(
        path = "/health",
        method = "get",
        operation_id = "health",
        tag = "ApiTags::Health"
    )]
    async fn health(&self) -> Json<Health> {
        Json(Health {
            status: "healthy".into(),
            version: VERSION.into(),
            time: k8s::now().into(),
        })
    }

    /// Readiness: the Kubernetes API answers, the broker's caches have synced and this replica renews its Lease.
    /// Every ready replica accepts requests; `shards` says whose deployments this one runs.
    #[oai(
        path = "/readiness",
        method = "get",
        operation_id = "readiness",
        tag = "ApiTags::Health"
    )]
    async fn readiness(&self) -> ReadinessResponse {
        // Whether the API server answered, whatever else keeps this replica from being ready.
        let (verdict, api_up) = match self.state() {
            Err(p) => (Err(p.message), false),
            Ok(st) => match st.cluster.probe().await {
                Err(e) => (Err(format!("kubernetes API not accessible: {e}")), false),
                Ok(()) if !st.cluster.synced() => (Err("caches not yet synced".to_string()), true),
                Ok(()) => (st.coordination.check(), true),
            },
        };
        metrics::kubernetes_api_available(api_up);
        let replica = self
            .state
            .as_ref()
            .map(|s| s.coordination.replica().to_string());
        let shards = self.state.as_ref().map(|s| s.coordination.held());
        match verdict {
            Ok(()) => ReadinessResponse::Ready(Json(Readiness {
                ready: true,
                // An open broker is ready, and says on every probe that it is open.
                reason: match self.state.as_ref().and_then(|s| s.access.disabled_by()) {
                    Some(flag) => format!("ok (authentication disabled: {flag})"),
                    None => "ok".into(),
                },
                version: VERSION.into(),
                replica,
                shards,
            })),
            Err(reason) => ReadinessResponse::NotReady(Json(Readiness {
                ready: false,
                reason,
                version: VERSION.into(),
                replica,
                shards,
            })),
        }
    }

    /// Provision a resource. Answers 202 once the request is stored in the cluster; progress is reported by
    /// callback. Repeating an identical request answers 202 with the same deploymentId.
    #[oai(
        path = "/v1/provision",
        method = "post",
        operation_id = "provision",
        tag = "ApiTags::Lifecycle"
    )]
    async fn provision(
        &self,
        caller: Caller,
        body: ValidJson<ProvisionBody>,
    ) -> Result<ProvisionResponse, ProvisionError> {
        let req = body.0.0;
        let out = match self.state() {
            Ok(b) => b
                .accept_provision(&caller.0, req)
                .await
                .map(|a| ProvisionAccepted {
                    status: "accepted".into(),
                    deployment_id: a.deployment_id.to_string(),
                    message: a.message,
                })
                .map_err(Problem::from),
            Err(p) => Err(p),
        };
        // Counted (with every refusal, including bodies refused before this handler) by the audit layer.
        out.map(|a| ProvisionResponse::Accepted(Json(a)))
            .map_err(Into::into)
    }

    /// Deprovision a resource. Answers 202 once the request is stored; repeating it answers 202 again.
    #[oai(
        path = "/v1/deprovision",
        method = "post",
        operation_id = "deprovision",
        tag = "ApiTags::Lifecycle"
    )]
    async fn deprovision(
        &self,
        caller: Caller,
        body: ValidJson<DeprovisionBody>,
    ) -> Result<DeprovisionResponse, DeprovisionError> {
        let req = body.0.0;
        let out = match self.state() {
            Ok(b) => b
                .accept_deprovision(&caller.0, req)
                .await
                .map(|a| DeprovisionAccepted {
                    status: "accepted".into(),
                    message: a.message,
                })
                .map_err(Problem::from),
            Err(p) => Err(p),
        };
        out.map(|a| DeprovisionResponse::Accepted(Json(a)))
            .map_err(Into::into)
    }

    /// The phase of one deployment.
    #[oai(
        path = "/v1/status",
        method = "get",
        operation_id = "getStatus",
        tag = "ApiTags::State"
    )]
    async fn status(
        &self,
        caller: Caller,
        /// Deployment id (`deploy-` + 32 hex characters).
        id: Query<Text<DeploymentIdRule>>,
    ) -> Result<Json<DeploymentStatus>, QueryError> {
        let st = self.state()?;
        let id = DeploymentId::parse(id.0.as_str())
            .ok_or_else(|| Problem::validation("id must look like deploy-<32 hex characters>"))?;
        let v = st.status(&caller.0, &id).await.map_err(Problem::from)?;
        Ok(Json(DeploymentStatus {
            deployment_id: v.deployment_id.to_string(),
            phase: v.phase.into(),
            message: v.message,
            last_updated: v.last_updated.into(),
        }))
    }

    /// What is deployed in a namespace, filtered by type, name or deployment id.
    #[oai(
        path = "/v1/resources",
        method = "get",
        operation_id = "listResources",
        tag = "ApiTags::State"
    )]
    async fn resources(
        &self,
        caller: Caller,
        /// Kubernetes namespace.
        namespace: Query<Text<NamespaceRule>>,
        /// database, cache or topic.
        #[oai(name = "resourceType")]
        resource_type: Query<Option<Text<OrEmpty<ResourceTypeRule>>>>,
        /// Resource name.
        #[oai(name = "resourceName")]
        resource_name: Query<Option<Text<OrEmpty<ResourceNameRule>>>>,
        /// Deployment id.
        #[oai(name = "deploymentId")]
        deployment_id: Query<Option<Text<OrEmpty<DeploymentIdRule>>>>,
    ) -> Result<Json<ResourceList>, QueryError> {
        let q = domain::parse_resources_query(
            Some(namespace.0.as_str()),
            resource_type.0.as_ref().map(Text::as_str),
            resource_name.0.as_ref().map(Text::as_str),
            deployment_id.0.as_ref().map(Text::as_str),
        )
        .map_err(Problem::from)?;
        Ok(Json(self.query(&caller.0, &q).await?))
    }

    /// Same as `GET /v1/resources`, with the query in a JSON body.
    #[oai(
        path = "/v1/resources",
        method = "post",
        operation_id = "queryResources",
        tag = "ApiTags::State"
    )]
    async fn resources_post(
        &self,
        caller: Caller,
        body: ValidJson<ResourcesBody>,
    ) -> Result<Json<ResourceList>, QueryBodyError> {
        Ok(Json(self.query(&caller.0, &body.0.0).await?))
    }
}

impl BrokerApi {
    async fn query(&self, caller: &Subject, q: &ResourcesQuery) -> Result<ResourceList, Problem> {
        let resources: Vec<ResourceState> = self
            .state()?
            .resources(caller, q)
            .await?
            .into_iter()
            .map(resource_state)
            .collect();
        Ok(ResourceList {
            total: resources.len() as u32,
            namespace: q.namespace.clone(),
            resources,
        })
    }
}

fn spec_summary(v: SpecView) -> SpecSummary {
    SpecSummary {
        engine: v.engine,
        version: v.version.unwrap_or_else(|| "unknown".into()),
        size: v
            .size
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|| "custom".into()),
    }
}

fn resource_state(v: ResourceView) -> ResourceState {
    ResourceState {
        deployment_id: v.deployment_id,
        resource_type: v.resource_type,
        resource_name: v.resource_name,
        namespace: v.namespace,
        phase: v.phase.into(),
        health_status: v.health.into(),
        message: v.message,
        last_checked: k8s::now().into(),
        endpoint: v.endpoint,
        port: v.port,
        connection_secret: v.connection_secret,
        actual_spec: v.actual.map(spec_summary),
        desired_spec: spec_summary(v.desired),
        drift_detected: !v.drift.is_empty(),
        drift_details: v.drift,
        resource_usage: v.usage.map(|u| ResourceUsage {
            cpu_usage: u.cpu_millis.map(|c| format!("{c}m")),
            memory_usage: u.memory_mib.map(|m| format!("{m}Mi")),
            storage_usage: u.storage_gib.map(|g| format!("{g}Gi")),
            replicas: u.replicas,
            unavailable_reason: u.unavailable_reason,
        }),
        estimated_monthly_cost: v.estimated_monthly_cost,
    }
}
