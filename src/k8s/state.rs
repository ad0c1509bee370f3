//! What is really running for a deployment, read from the reflector stores: the StatefulSet's readiness,
//! the pods' health and failures, the actual spec (version from the running images, size from resources,
//! replicas) and storage. Used by the deployment actors (to move phases) and by the HTTP layer (to answer).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use super::observe::Stores;
use super::record::labels;
use super::render;
use crate::domain::{self, ActualSpec, DesiredSpec};

/// Container waiting reasons that mean a pod will not come up by itself.
pub const FAILURE_REASONS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "InvalidImageName",
];

/// One pod problem, for a Failed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodProblem {
    pub pod: String,
    pub reason: String,
    pub message: String,
}

/// What the stores say about one deployment.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    pub statefulset: Option<StatefulSet>,
    pub pods: Vec<Pod>,
    /// The largest data volume's capacity, in GiB (what one replica has).
    pub volume_gib: Option<u32>,
    /// All data volumes' capacity, in GiB.
    pub storage_gib: Option<u32>,
    /// Number of objects of any kind still carrying the deployment's label.
    pub remaining_children: usize,
}

fn has_id<K: kube::Resource>(o: &K, id: &str) -> bool {
    o.meta()
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::DEPLOYMENT_ID))
        .is_some_and(|v| v == id)
}

fn key<K: kube::Resource<DynamicType = ()>>(name: String, namespace: &str) -> ObjectRef<K> {
    ObjectRef::new(&name).within(namespace)
}

/// Reads a deployment's objects from the stores by their names (`<name>`, `<name>-<ordinal>`,
/// `data-<name>-<ordinal>`, `<name>-headless`, `<name>-backup`), checking the deployment-id label: a handful of
/// hash lookups, never a scan of every object in the cluster.
pub fn observe(
    stores: &Stores,
    namespace: &str,
    resource_name: &str,
    deployment_id: &str,
) -> Observation {
    let sts = stores
        .statefulsets
        .get(&ObjectRef::new(resource_name).within(namespace))
        .filter(|s| has_id(s.as_ref(), deployment_id))
        .map(|s| (*s).clone());
    // Ordinals up to the largest replica count anyone asked for or observed, plus a margin for pods still
    // terminating after a scale-down.
    let replicas = sts
        .as_ref()
        .map(|s| {
            let spec = s.spec.replicas.unwrap_or(1);
            let seen = s.status.as_ref().map(|st| st.replicas).unwrap_or(0);
            spec.max(seen).max(0) as usize
        })
        .unwrap_or(0)
        .max(crate::domain::HA_REPLICAS as usize)
        + 2;
    // Backup Job pods carry the deployment's labels too; only the database's own pods count here.
    let pods: Vec<Pod> = (0..replicas)
        .filter_map(|i| {
            stores
                .pods
                .get(&key(format!("{resource_name}-{i}"), namespace))
        })
        .filter(|p| has_id(p.as_ref(), deployment_id))
        .filter(|p| {
            p.labels()
                .get(render::COMPONENT_LABEL)
                .is_none_or(|c| c == render::COMPONENT_DATABASE)
        })
        .map(|p| (*p).clone())
        .collect();
    let mut pvcs: Vec<_> = (0..replicas)
        .filter_map(|i| {
            stores
                .pvcs
                .get(&key(format!("data-{resource_name}-{i}"), namespace))
        })
        .filter(|p| has_id(p.as_ref(), deployment_id))
        .collect();
    let backup_pvc = stores
        .pvcs
        .get(&key(render::backup_name(resource_name), namespace))
        .filter(|p| has_id(p.as_ref(), deployment_id));
    let capacities: Vec<u32> = pvcs
        .iter()
        .filter_map(|p| {
            p.status
                .as_ref()?
                .capacity
                .as_ref()?
                .get("storage")
                .and_then(|q| domain::parse_memory_mib(&q.0))
        })
        .map(|mib| mib.div_ceil(1024))
        .collect();
    let storage_gib = capacities.iter().copied().reduce(|a, b| a + b);
    let volume_gib = capacities.iter().copied().max();
    pvcs.extend(backup_pvc);
    let services = [
        resource_name.to_string(),
        render::headless_service_name(resource_name),
    ]
    .into_iter()
    .filter_map(|n| stores.services.get(&key(n, namespace)))
    .filter(|s| has_id(s.as_ref(), deployment_id))
    .count();
    let cronjobs = stores
        .cronjobs
        .get(&key(render::backup_name(resource_name), namespace))
        .filter(|c| has_id(c.as_ref(), deployment_id))
        .into_iter()
        .count();
    Observation {
        remaining_children: usize::from(sts.is_some())
            + pods.len()
            + pvcs.len()
            + services
            + cronjobs,
        statefulset: sts,
        pods,
        volume_gib,
        storage_gib,
    }
}

impl Observation {
    /// Whether every desired replica is ready and the StatefulSet has seen its latest spec.
    pub fn ready(&self, replicas: u32) -> bool {
        let Some(sts) = &self.statefulset else {
            return false;
        };
        let Some(st) = &sts.status else {
            return false;
        };
        let generation = sts.metadata.generation.unwrap_or(0);
        st.observed_generation.unwrap_or(0) >= generation
            && st.ready_replicas.unwrap_or(0) >= replicas as i32
            && st.replicas >= replicas as i32
    }

    /// Ready pods.
    pub fn ready_pods(&self) -> usize {
        self.pods.iter().filter(|p| pod_ready(p)).count()
    }

    /// The first container stuck in a failure state, if any.
    pub fn problem(&self) -> Option<PodProblem> {
        let mut pods: Vec<&Pod> = self.pods.iter().collect();
        pods.sort_by_key(|p| p.name_any());
        for p in pods {
            let statuses = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.clone())
                .unwrap_or_default();
            for cs in statuses {
                if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref())
                    && let Some(reason) = &w.reason
                    && FAILURE_REASONS.contains(&reason.as_str())
                {
                    return Some(PodProblem {
                        pod: p.name_any(),
                        reason: reason.clone(),
                        message: w.message.clone().unwrap_or_default(),
                    });
                }
            }
        }
        None
    }

    /// The spec actually deployed.
    pub fn actual_spec(&self, desired: &DesiredSpec) -> Option<ActualSpec> {
        let sts = self.statefulset.as_ref()?;
        let spec = &sts.spec;
        let container = spec
            .template
            .spec
            .as_ref()?
            .containers
            .iter()
            .find(|c| c.name == desired.engine.as_str())
            .or_else(|| spec.template.spec.as_ref()?.containers.first())?;
        // The running pods' images win over the template: they are what actually runs.
        let running: BTreeMap<String, usize> = self
            .pods
            .iter()
            .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref())
            .flatten()
            .filter(|cs| cs.name == container.name)
            .fold(BTreeMap::new(), |mut m, cs| {
                *m.entry(cs.image.clone()).or_default() += 1;
                m
            });
        let image = running
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(i, _)| i.clone())
            .or_else(|| container.image.clone())?;
        let res = container.resources.as_ref();
        let cpu = res
            .and_then(|r| r.limits.as_ref().or(r.requests.as_ref()))
            .and_then(|m| m.get("cpu"))
            .and_then(|q| domain::parse_cpu_millis(&q.0));
        let mem = res
            .and_then(|r| r.limits.as_ref().or(r.requests.as_ref()))
            .and_then(|m| m.get("memory"))
            .and_then(|q| domain::parse_memory_mib(&q.0));
        Some(ActualSpec {
            engine: desired.engine,
            version: domain::version_from_image(&image),
            size: match (cpu, mem) {
                (Some(c), Some(m)) => domain::size_from_resources(c, m),
                _ => None,
            },
            replicas: spec.replicas.map(|r| r.max(0) as u32),
            cpu_millis: cpu,
            memory_mib: mem,
        })
    }
}

/// Whether a pod is Running with its Ready condition True.
pub fn pod_ready(p: &Pod) -> bool {
    let Some(st) = &p.status else {
        return false;
    };
    st.phase.as_deref() == Some("Running")
        && st
            .conditions
            .as_ref()
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
