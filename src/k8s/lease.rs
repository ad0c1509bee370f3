//! The Leases (`coordination.k8s.io/v1`) through which replicas share the work: reads and compare-and-swap
//! writes only; what to hold is decided in [`crate::actors::shards`].

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};

use super::{Cluster, FIELD_MANAGER, Result};

/// The label every broker Lease carries, with the kind of lease as its value (`shard` or `replica`).
pub const LEASE_LABEL: &str = "kidp.io/lease";

impl Cluster {
    /// Every broker Lease in `ns` (shards and replicas), straight from the API server: who holds what must
    /// never be judged on a cache.
    pub async fn list_leases(&self, ns: &str) -> Result<Vec<Lease>> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), ns);
        let lp = ListParams::default().labels(LEASE_LABEL);
        Ok(self.call("list", api.list(&lp)).await?.items)
    }

    /// Creates a Lease; AlreadyExists means another replica was first.
    pub async fn create_lease(&self, ns: &str, lease: &Lease) -> Result<Lease> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), ns);
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        self.call("create", api.create(&pp, lease)).await
    }

    /// Replaces a Lease under its `metadata.resourceVersion`: a Conflict means someone wrote it since it was
    /// read, and nothing was changed.
    pub async fn replace_lease(&self, ns: &str, lease: &Lease) -> Result<Lease> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), ns);
        let name = lease.metadata.name.clone().unwrap_or_default();
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        self.call("update", api.replace(&name, &pp, lease)).await
    }

    /// Deletes a Lease if it is still at `resource_version` (a replica that came back in between keeps it).
    pub async fn delete_lease(&self, ns: &str, name: &str, resource_version: &str) -> Result<()> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), ns);
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: Some(resource_version.to_string()),
                uid: None,
            }),
            ..Default::default()
        };
        match self.call("delete", api.delete(name, &dp)).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}
