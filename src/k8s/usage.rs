//! Resource usage from the metrics API (`metrics.k8s.io/v1beta1` PodMetrics): one list per namespace that holds
//! managed resources, per interval — never one call per deployment or per query. Where the API is absent,
//! usage is unknown with a reason, never an error.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use tokio_util::sync::CancellationToken;

use super::Cluster;
use crate::domain;

/// How often usage is refreshed; metrics-server itself resolves at 15 s.
pub const INTERVAL: Duration = Duration::from_secs(15);

/// CPU and memory of one pod.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodUsage {
    pub cpu_millis: u32,
    pub memory_mib: u32,
}

/// Usage of every pod of one namespace by pod name, or why there is none.
type NamespaceUsage = Result<HashMap<String, PodUsage>, String>;

/// The latest usage per namespace.
#[derive(Default)]
pub struct UsageCache {
    namespaces: RwLock<HashMap<String, NamespaceUsage>>,
}

impl UsageCache {
    /// Usage of one pod; `Err(reason)` when the namespace has no figures.
    pub fn pod(&self, namespace: &str, pod: &str) -> Result<Option<PodUsage>, String> {
        let g = self.namespaces.read().unwrap_or_else(|p| p.into_inner());
        match g.get(namespace) {
            None => Err("usage not collected yet".into()),
            Some(Err(reason)) => Err(reason.clone()),
            Some(Ok(pods)) => Ok(pods.get(pod).copied()),
        }
    }
}

fn pod_metrics() -> ApiResource {
    ApiResource {
        group: "metrics.k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "metrics.k8s.io/v1beta1".into(),
        kind: "PodMetrics".into(),
        plural: "pods".into(),
    }
}

async fn collect(cluster: &Cluster, ns: &str) -> Result<HashMap<String, PodUsage>, String> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(cluster.client().clone(), ns, &pod_metrics());
    let list = match tokio::time::timeout(Duration::from_secs(5), api.list(&ListParams::default()))
        .await
    {
        Err(_) => return Err("the metrics API did not answer in time".into()),
        Ok(Err(kube::Error::Api(s))) if s.code == 404 => {
            return Err("the metrics API (metrics.k8s.io) is not available in this cluster".into());
        }
        Ok(Err(e)) => return Err(format!("the metrics API failed: {e}")),
        Ok(Ok(l)) => l,
    };
    let mut out = HashMap::new();
    for item in list.items {
        let Some(name) = item.metadata.name.clone() else {
            continue;
        };
        let mut u = PodUsage::default();
        for c in item.data["containers"].as_array().into_iter().flatten() {
            let cpu = c["usage"]["cpu"]
                .as_str()
                .and_then(domain::parse_cpu_millis);
            let mem = c["usage"]["memory"]
                .as_str()
                .and_then(domain::parse_memory_mib);
            u.cpu_millis += cpu.unwrap_or(0);
            u.memory_mib += mem.unwrap_or(0);
        }
        out.insert(name, u);
    }
    Ok(out)
}

/// Refreshes the cache until `stop` is cancelled (or the cluster is dropped); a cancelled refresh is abandoned
/// mid-request rather than awaited, so shutdown never waits on the metrics API.
pub async fn run(cluster: Weak<Cluster>, cache: Arc<UsageCache>, stop: CancellationToken) {
    stop.run_until_cancelled(refresh(cluster, cache)).await;
}

async fn refresh(cluster: Weak<Cluster>, cache: Arc<UsageCache>) {
    let mut tick = tokio::time::interval(INTERVAL);
    loop {
        tick.tick().await;
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        let namespaces: BTreeSet<String> = cluster
            .records()
            .state()
            .iter()
            .filter_map(|r| r.metadata.namespace.clone())
            .collect();
        let mut fresh = HashMap::new();
        for ns in namespaces {
            let r = collect(&cluster, &ns).await;
            fresh.insert(ns, r);
        }
        *cache.namespaces.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    }
}
