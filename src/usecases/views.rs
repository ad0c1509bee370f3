//! The views of what runs: one deployment's phase, and everything in a namespace with actual against desired,
//! drift, health, usage and cost. Read from the reflector stores: no API round trip per query.

use std::sync::Arc;

use super::{Broker, Refusal};
use crate::auth::{Operation, Subject};
use crate::domain::{self, DeploymentId, Health, Phase, ResourcesQuery, Size};
use crate::k8s::record::{self, ManagedResource};
use crate::k8s::{self, state};

/// One deployment's phase, for `/v1/status`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusView {
    pub deployment_id: DeploymentId,
    pub phase: Phase,
    pub message: String,
    /// RFC 3339.
    pub last_updated: String,
}

/// Engine, version and size (`size` is `None` when the resources match no size).
#[derive(Debug, Clone, PartialEq)]
pub struct SpecView {
    pub engine: String,
    pub version: Option<String>,
    pub size: Option<Size>,
}

/// What a deployment consumes.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceUsageView {
    /// Millicores, when the metrics API has figures.
    pub cpu_millis: Option<u32>,
    /// MiB, when the metrics API has figures.
    pub memory_mib: Option<u32>,
    /// GiB of all data volumes.
    pub storage_gib: Option<u32>,
    /// Ready replicas.
    pub replicas: u32,
    /// Why usage figures are missing.
    pub unavailable_reason: Option<String>,
}

/// One managed resource, for `/v1/resources`.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceView {
    pub deployment_id: String,
    pub resource_type: String,
    pub resource_name: String,
    pub namespace: String,
    pub phase: Phase,
    pub health: Health,
    pub message: String,
    pub endpoint: Option<String>,
    pub port: Option<u16>,
    pub connection_secret: Option<String>,
    /// What runs; `None` until the workload is observed.
    pub actual: Option<SpecView>,
    pub desired: SpecView,
    pub drift: Vec<String>,
    /// `None` until the workload runs.
    pub usage: Option<ResourceUsageView>,
    pub estimated_monthly_cost: f64,
}

/// Phase, message and last update of a record, with honest defaults before the lifecycle has written status.
fn summarize(rec: &ManagedResource) -> (Phase, String, String) {
    let status = rec.status.clone().unwrap_or_default();
    let message = status.message.clone().unwrap_or_else(|| {
        if record::is_deprovisioning(rec) {
            "Deprovisioning requested".into()
        } else {
            "Provisioning request accepted; waiting to start".into()
        }
    });
    let last = status.last_updated.clone().unwrap_or_else(|| {
        rec.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| k8s::rfc3339(t.0))
            .unwrap_or_else(k8s::now)
    });
    (record::phase_of(rec), message, last)
}

impl Broker {
    /// One deployment's phase. A deployment accepted a moment ago and not yet seen by the watch is looked up in
    /// the API server rather than answered 404. The subject needs `read` in the deployment's namespace; an
    /// unknown id is 404 for every subject (ids are random, so that says nothing worth hiding).
    pub async fn status(
        &self,
        subject: &Subject,
        id: &DeploymentId,
    ) -> Result<StatusView, Refusal> {
        let rec = match self.cluster.record_by_id(id) {
            Some(r) => r,
            None => self
                .cluster
                .find_by_id(id.as_str())
                .await?
                .map(Arc::new)
                .ok_or_else(|| Refusal::NotFound(format!("deployment {id} not found")))?,
        };
        let namespace = rec.metadata.namespace.as_deref().unwrap_or_default();
        self.authorize(subject, Operation::Get, namespace).await?;
        let (phase, message, last_updated) = summarize(&rec);
        Ok(StatusView {
            deployment_id: id.clone(),
            phase,
            message,
            last_updated,
        })
    }

    /// What is deployed in a namespace, filtered, sorted by name; the subject needs `read` there.
    pub async fn resources(
        &self,
        subject: &Subject,
        q: &ResourcesQuery,
    ) -> Result<Vec<ResourceView>, Refusal> {
        self.authorize(subject, Operation::List, &q.namespace)
            .await?;
        if !self.cluster.synced() {
            return Err(Refusal::NotReady(
                "the broker has not finished reading the cluster yet; retry shortly".into(),
            ));
        }
        let mut views: Vec<ResourceView> = self
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
            .filter_map(|r| self.resource_view(&r))
            .collect();
        views.sort_by(|a, b| a.resource_name.cmp(&b.resource_name));
        Ok(views)
    }

    fn resource_view(&self, rec: &ManagedResource) -> Option<ResourceView> {
        let desired = rec.spec.spec.desired()?;
        let (phase, message, _) = summarize(rec);
        let status = rec.status.clone().unwrap_or_default();
        let ns = rec.metadata.namespace.clone().unwrap_or_default();
        let obs = state::observe(
            self.cluster.stores(),
            &ns,
            &rec.spec.resource_name,
            &rec.spec.deployment_id,
        );
        let actual = obs.actual_spec(desired);
        let drift = actual
            .as_ref()
            .map(|a| domain::drift(desired, a))
            .unwrap_or_default();
        let ready = obs.ready_pods();
        let footprint = match &actual {
            Some(a) => domain::actual_footprint(desired, a, obs.volume_gib),
            None => domain::desired_footprint(desired),
        };
        let usage = obs.statefulset.as_ref().map(|_| {
            let (mut cpu, mut mem, mut reason) = (0, 0, None);
            for p in &obs.pods {
                let name = p.metadata.name.clone().unwrap_or_default();
                match self.usage.pod(&ns, &name) {
                    Ok(Some(u)) => {
                        cpu += u.cpu_millis;
                        mem += u.memory_mib;
                    }
                    Ok(None) => {}
                    Err(r) => reason = Some(r),
                }
            }
            let known = reason.is_none();
            ResourceUsageView {
                cpu_millis: known.then_some(cpu),
                memory_mib: known.then_some(mem),
                storage_gib: obs.storage_gib,
                replicas: ready as u32,
                unavailable_reason: reason,
            }
        });
        let engine = desired.engine.as_str().to_string();
        Some(ResourceView {
            deployment_id: rec.spec.deployment_id.clone(),
            resource_type: rec.spec.resource_type.clone(),
            resource_name: rec.spec.resource_name.clone(),
            namespace: ns,
            phase,
            health: Health::of(phase, ready, desired.replicas()),
            message,
            endpoint: status.endpoint,
            port: status.port,
            connection_secret: status.connection_secret,
            actual: actual.as_ref().map(|a| SpecView {
                engine: engine.clone(),
                version: a.version.clone(),
                size: a.size,
            }),
            desired: SpecView {
                engine,
                version: Some(desired.version.clone()),
                size: Some(desired.size),
            },
            drift,
            usage,
            estimated_monthly_cost: domain::monthly_cost(&self.prices, &footprint),
        })
    }
}
