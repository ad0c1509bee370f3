//! The operations of the REST API. Handlers parse into domain types, talk to the cluster layer, and answer;
//! they never build Kubernetes objects themselves.

use std::sync::Arc;

use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi, Tags};

use super::body::{ValidJson, ValidatedBody};
use super::errors::{DeprovisionError, Problem, ProvisionError, QueryBodyError, QueryError};
use super::types::*;
use crate::domain::{self, DeploymentId, ProvisionRequest, ResourcesQuery};
use crate::k8s::record::{ManagedResource, ManagedResourceSpec, StoredSpec, record_name};
use crate::k8s::{self, Cluster, record};
use crate::metrics;

/// The broker version reported by `/health` and `/readiness`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the handlers share.
pub struct AppState {
    pub cluster: Arc<Cluster>,
    /// The StorageClass used for `encryption.atRest`; `None` refuses such requests.
    pub encrypted_storage_class: Option<String>,
    /// Where callbacks may go (checked at provision time).
    pub callbacks: domain::CallbackUrlPolicy,
    /// The price table for cost estimates.
    pub prices: domain::PriceTable,
    /// Pod usage from the metrics API.
    pub usage: Arc<k8s::usage::UsageCache>,
}

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
    pub state: Option<Arc<AppState>>,
}

impl BrokerApi {
    fn state(&self) -> Result<&Arc<AppState>, Problem> {
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

    /// Readiness: the Kubernetes API answers and the broker's caches have synced.
    #[oai(
        path = "/readiness",
        method = "get",
        operation_id = "readiness",
        tag = "ApiTags::Health"
    )]
    async fn readiness(&self) -> ReadinessResponse {
        let verdict = match self.state() {
            Err(p) => Err(p.message),
            Ok(st) => match st.cluster.probe().await {
                Err(e) => Err(format!("kubernetes API not accessible: {e}")),
                Ok(()) if !st.cluster.synced() => Err("caches not yet synced".to_string()),
                Ok(()) => Ok(()),
            },
        };
        metrics::kubernetes_api_available(
            verdict.is_ok() || verdict.as_ref().is_err_and(|e| e.starts_with("caches")),
        );
        match verdict {
            Ok(()) => ReadinessResponse::Ready(Json(Readiness {
                ready: true,
                reason: "ok".into(),
                version: VERSION.into(),
            })),
            Err(reason) => ReadinessResponse::NotReady(Json(Readiness {
                ready: false,
                reason,
                version: VERSION.into(),
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
        body: ValidJson<ProvisionBody>,
    ) -> Result<ProvisionResponse, ProvisionError> {
        let req = body.0.0;
        let rtype = req.resource_type.as_str().to_string();
        let out = self.do_provision(req).await;
        metrics::provision_request(
            &rtype,
            match &out {
                Ok(_) => "success",
                Err(p) if p.status == 409 => "conflict",
                Err(p) if p.status < 500 => "invalid",
                Err(_) => "error",
            },
        );
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
        body: ValidJson<DeprovisionBody>,
    ) -> Result<DeprovisionResponse, DeprovisionError> {
        let req = body.0.0;
        let rtype = req.resource_type.as_str().to_string();
        let out = self.do_deprovision(req).await;
        metrics::deprovision_request(
            &rtype,
            match &out {
                Ok(_) => "success",
                Err(p) if p.status == 404 => "not_found",
                Err(p) if p.status < 500 => "invalid",
                Err(_) => "error",
            },
        );
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
        /// Deployment id (`deploy-` + 32 hex characters).
        id: Query<Text<DeploymentIdRule>>,
    ) -> Result<Json<DeploymentStatus>, QueryError> {
        let st = self.state()?;
        let id = DeploymentId::parse(id.0.as_str())
            .ok_or_else(|| Problem::validation("id must look like deploy-<32 hex characters>"))?;
        let rec = match find_cached(&st.cluster, &id) {
            Some(r) => r,
            // Just accepted and not yet seen by the watch: ask the API server rather than answer 404.
            None => st
                .cluster
                .find_by_id(id.as_str())
                .await
                .map_err(Problem::from)?
                .map(Arc::new)
                .ok_or_else(|| Problem::not_found(format!("deployment {id} not found")))?,
        };
        let (phase, message, last_updated) = summarize(&rec);
        Ok(Json(DeploymentStatus {
            deployment_id: id.to_string(),
            phase: phase.into(),
            message,
            last_updated: last_updated.into(),
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
        Ok(Json(self.query(&q)?))
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
        body: ValidJson<ResourcesBody>,
    ) -> Result<Json<ResourceList>, QueryBodyError> {
        Ok(Json(self.query(&body.0.0)?))
    }
}

impl BrokerApi {
    async fn do_provision(&self, req: ProvisionRequest) -> Result<ProvisionAccepted, Problem> {
        let st = self.state()?;
        if req.spec.encryption.at_rest && st.encrypted_storage_class.is_none() {
            return Err(Problem::validation(
                "spec.encryption.atRest requires an encrypting StorageClass and this broker has none configured (--encrypted-storage-class)",
            ));
        }
        st.callbacks
            .check(&req.callback_url)
            .map_err(Problem::validation)?;
        if !st.cluster.ensure_namespace(&req.namespace).await? {
            return Err(Problem::validation(format!(
                "namespace \"{}\" does not exist",
                req.namespace
            )));
        }
        let rtype = req.resource_type.as_str();
        let name = record_name(rtype, &req.resource_name);
        let want = ManagedResourceSpec {
            deployment_id: DeploymentId::generate().to_string(),
            resource_type: rtype.to_string(),
            resource_name: req.resource_name.clone(),
            team: req.team.clone(),
            owner: req.owner.clone(),
            callback_url: req.callback_url.clone(),
            spec: StoredSpec::Readable(req.spec.clone()),
            deprovision: None,
        };
        let warning = domain::eol_warning(&req.spec);
        let accepted = |id: &str| ProvisionAccepted {
            status: "accepted".into(),
            deployment_id: id.to_string(),
            message: match &warning {
                Some(w) => format!(
                    "Provisioning request accepted for {rtype}/{}; {w}",
                    req.resource_name
                ),
                None => format!(
                    "Provisioning request accepted for {rtype}/{}",
                    req.resource_name
                ),
            },
        };
        // Two rounds at most: a concurrent first request may win the create between our read and our write.
        for _ in 0..2 {
            if let Some(existing) = st.cluster.get_record(&req.namespace, &name).await? {
                return same_request(&existing, &want, &req).map(|id| accepted(&id));
            }
            match st
                .cluster
                .create_record(
                    &req.namespace,
                    &name,
                    want.clone(),
                    req.spec.engine.as_str(),
                )
                .await
            {
                Ok(rec) => {
                    tracing::info!(
                        audit = true,
                        action = "provision",
                        deployment_id = %rec.spec.deployment_id,
                        namespace = %req.namespace,
                        resource = %format!("{rtype}/{}", req.resource_name),
                        team = %req.team,
                        owner = %req.owner,
                        "provision accepted"
                    );
                    return Ok(accepted(&rec.spec.deployment_id));
                }
                Err(e) if e.is_already_exists() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Problem::conflict(
            "the resource changed concurrently; retry the request",
        ))
    }

    async fn do_deprovision(
        &self,
        req: domain::DeprovisionRequest,
    ) -> Result<DeprovisionAccepted, Problem> {
        let st = self.state()?;
        let rtype = req.resource_type.as_str();
        let name = record_name(rtype, &req.resource_name);
        if let Some(url) = &req.callback_url {
            st.callbacks.check(url).map_err(Problem::validation)?;
        }
        let accepted = || DeprovisionAccepted {
            status: "accepted".into(),
            message: format!(
                "Deprovisioning request accepted for deployment {}",
                req.deployment_id
            ),
        };
        for _ in 0..3 {
            let rec = st.cluster.get_record(&req.namespace, &name).await?;
            let rec = match rec {
                Some(r) if r.spec.deployment_id == req.deployment_id.as_str() => r,
                _ => {
                    return Err(
                        match st.cluster.find_by_id(req.deployment_id.as_str()).await? {
                            Some(other) => Problem::validation(format!(
                                "deploymentId {} belongs to {}/{} in namespace {}, not {rtype}/{} in namespace {}",
                                req.deployment_id,
                                other.spec.resource_type,
                                other.spec.resource_name,
                                other.metadata.namespace.as_deref().unwrap_or(""),
                                req.resource_name,
                                req.namespace
                            )),
                            None => Problem::not_found(format!(
                                "deployment {} not found",
                                req.deployment_id
                            )),
                        },
                    );
                }
            };
            if rec.spec.deprovision.is_some() || rec.metadata.deletion_timestamp.is_some() {
                return Ok(accepted());
            }
            match st
                .cluster
                .request_deprovision(&rec, req.callback_url.clone())
                .await
            {
                Ok(()) => {
                    tracing::info!(
                        audit = true,
                        action = "deprovision",
                        deployment_id = %req.deployment_id,
                        namespace = %req.namespace,
                        resource = %format!("{rtype}/{}", req.resource_name),
                        "deprovision accepted"
                    );
                    return Ok(accepted());
                }
                Err(e) if e.is_precondition_failed() || e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Problem::conflict(
            "the deployment changed concurrently; retry the request",
        ))
    }

    fn query(&self, q: &ResourcesQuery) -> Result<ResourceList, Problem> {
        let st = self.state()?;
        if !st.cluster.synced() {
            return Err(Problem::kubernetes(
                "the broker has not finished reading the cluster yet; retry shortly",
            ));
        }
        let mut resources: Vec<ResourceState> = st
            .cluster
            .records()
            .state()
            .into_iter()
            .filter(|r| r.metadata.namespace.as_deref() == Some(q.namespace.as_str()))
            .filter(|r| {
                q.resource_type
                    .is_none_or(|t| r.spec.resource_type == t.as_str())
            })
            .filter(|r| {
                q.resource_name
                    .as_deref()
                    .is_none_or(|n| r.spec.resource_name == n)
            })
            .filter(|r| {
                q.deployment_id
                    .as_ref()
                    .is_none_or(|id| r.spec.deployment_id == id.as_str())
            })
            .filter_map(|r| resource_state(st, &r))
            .collect();
        resources.sort_by(|a, b| a.resource_name.cmp(&b.resource_name));
        Ok(ResourceList {
            total: resources.len() as u32,
            namespace: q.namespace.clone(),
            resources,
        })
    }
}

fn find_cached(cluster: &Cluster, id: &DeploymentId) -> Option<Arc<ManagedResource>> {
    cluster.record_by_id(id)
}

/// Whether an existing record holds the same request; the deploymentId to answer with if so.
fn same_request(
    existing: &ManagedResource,
    want: &ManagedResourceSpec,
    req: &ProvisionRequest,
) -> Result<String, Problem> {
    let what = format!("{}/{}", want.resource_type, want.resource_name);
    if existing.spec.deprovision.is_some() || existing.metadata.deletion_timestamp.is_some() {
        return Err(Problem::conflict(format!(
            "{what} in namespace {} is being deprovisioned (deployment {}); provision it again once it is Deleted",
            req.namespace, existing.spec.deployment_id
        )));
    }
    let same = existing.spec.team == want.team
        && existing.spec.owner == want.owner
        && existing.spec.callback_url == want.callback_url
        && existing.spec.spec == want.spec;
    if same {
        Ok(existing.spec.deployment_id.clone())
    } else {
        Err(Problem::conflict(format!(
            "{what} already exists in namespace {} with a different spec (deployment {})",
            req.namespace, existing.spec.deployment_id
        )))
    }
}

/// Phase, message and last update of a record, with honest defaults before the lifecycle has written status.
fn summarize(rec: &ManagedResource) -> (domain::Phase, String, String) {
    let status = rec.status.clone().unwrap_or_default();
    let created = rec
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| k8s::rfc3339(t.0))
        .unwrap_or_else(k8s::now);
    let phase = record::phase_of(rec);
    let message = status.message.clone().unwrap_or_else(|| {
        if record::is_deprovisioning(rec) {
            "Deprovisioning requested".into()
        } else {
            "Provisioning request accepted; waiting to start".into()
        }
    });
    let last = status.last_updated.clone().unwrap_or(created);
    (phase, message, last)
}

fn resource_state(st: &AppState, rec: &ManagedResource) -> Option<ResourceState> {
    let desired = rec.spec.spec.desired()?.clone();
    let (phase, message, _) = summarize(rec);
    let status = rec.status.clone().unwrap_or_default();
    let ns = rec.metadata.namespace.clone().unwrap_or_default();
    let obs = k8s::state::observe(
        st.cluster.stores(),
        &ns,
        &rec.spec.resource_name,
        &rec.spec.deployment_id,
    );
    let actual = obs.actual_spec(&desired);
    let drift = actual
        .as_ref()
        .map(|a| domain::drift(&desired, a))
        .unwrap_or_default();
    let ready = obs.ready_pods();
    let health = domain::Health::of(phase, ready, desired.replicas());
    let footprint = match &actual {
        Some(a) => domain::actual_footprint(&desired, a, obs.volume_gib),
        None => domain::desired_footprint(&desired),
    };
    let usage = obs.statefulset.as_ref().map(|_| {
        let mut cpu = 0;
        let mut mem = 0;
        let mut reason = None;
        for p in &obs.pods {
            let name = p.metadata.name.clone().unwrap_or_default();
            match st.usage.pod(&ns, &name) {
                Ok(Some(u)) => {
                    cpu += u.cpu_millis;
                    mem += u.memory_mib;
                }
                Ok(None) => {}
                Err(r) => reason = Some(r),
            }
        }
        let known = reason.is_none();
        ResourceUsage {
            cpu_usage: known.then(|| format!("{cpu}m")),
            memory_usage: known.then(|| format!("{mem}Mi")),
            storage_usage: obs.storage_gib.map(|g| format!("{g}Gi")),
            replicas: ready as u32,
            unavailable_reason: reason,
        }
    });
    let summary = |v: Option<String>, size: Option<domain::Size>| SpecSummary {
        engine: desired.engine.as_str().into(),
        version: v.unwrap_or_else(|| "unknown".into()),
        size: size
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|| "custom".into()),
    };
    Some(ResourceState {
        deployment_id: rec.spec.deployment_id.clone(),
        resource_type: rec.spec.resource_type.clone(),
        resource_name: rec.spec.resource_name.clone(),
        namespace: ns,
        phase: phase.into(),
        health_status: health.into(),
        message,
        last_checked: k8s::now().into(),
        endpoint: status.endpoint,
        port: status.port,
        connection_secret: status.connection_secret,
        actual_spec: actual.as_ref().map(|a| summary(a.version.clone(), a.size)),
        desired_spec: SpecSummary {
            engine: desired.engine.as_str().into(),
            version: desired.version.clone(),
            size: desired.size.as_str().into(),
        },
        drift_detected: !drift.is_empty(),
        drift_details: drift,
        resource_usage: usage,
        estimated_monthly_cost: domain::monthly_cost(&st.prices, &footprint),
    })
}
