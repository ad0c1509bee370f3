//! Accepting provisions and deprovisions: the intent record is written (or found) before the answer, so that
//! nothing accepted lives only in the broker's memory.

use super::{Broker, Refusal};
use crate::domain::{self, DeploymentId, DeprovisionRequest, ProvisionRequest};
use crate::k8s::record::{self, ManagedResource, ManagedResourceSpec, StoredSpec};
use crate::k8s::render;

/// A provision accepted: the deployment id (new, or the one an identical earlier request got).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionAccepted {
    pub deployment_id: DeploymentId,
    pub message: String,
}

/// A deprovision accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeprovisionAccepted {
    pub message: String,
}

/// Rounds of read-then-write before giving up on a record that keeps changing under us.
const ROUNDS: usize = 3;

impl Broker {
    /// Stores a provision request. Repeating an identical request answers with the same deployment id; a
    /// different spec for an existing name, or one being deprovisioned, is a conflict.
    pub async fn accept_provision(
        &self,
        req: ProvisionRequest,
    ) -> Result<ProvisionAccepted, Refusal> {
        if req.spec.encryption.at_rest && self.encrypted_storage_class.is_none() {
            return Err(Refusal::Invalid(
                "spec.encryption.atRest requires an encrypting StorageClass and this broker has none configured (--encrypted-storage-class)".into(),
            ));
        }
        self.callbacks
            .check(&req.callback_url)
            .map_err(Refusal::Invalid)?;
        // Held until the record is created: the quota decision and the create are one step per team.
        let _team_turn = self.team_locks.lock(&req.team).await;
        self.check_quota(&req).await?;
        if !self.cluster.ensure_namespace(&req.namespace).await? {
            return Err(Refusal::Invalid(format!(
                "namespace \"{}\" does not exist",
                req.namespace
            )));
        }
        let rtype = req.resource_type.as_str();
        let name = record::record_name(rtype, &req.resource_name);
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
        let what = format!("{rtype}/{}", req.resource_name);
        let message = match domain::eol_warning(&req.spec) {
            Some(w) => format!("Provisioning request accepted for {what}; {w}"),
            None => format!("Provisioning request accepted for {what}"),
        };
        let accepted = |id: &str| -> Result<ProvisionAccepted, Refusal> {
            let deployment_id = DeploymentId::parse(id).ok_or_else(|| {
                Refusal::Conflict(format!("{what} holds an invalid deployment id"))
            })?;
            Ok(ProvisionAccepted {
                deployment_id,
                message: message.clone(),
            })
        };
        self.ensure_names_free(&req.namespace, rtype, &req.resource_name)?;
        // A concurrent first request may win the create between our read and our write: read again.
        for _ in 0..ROUNDS {
            if let Some(existing) = self.cluster.get_record(&req.namespace, &name).await? {
                return same_request(&existing, &want, &req.namespace).and_then(|id| accepted(&id));
            }
            match self
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
                        action = "provision",
                        deployment_id = %rec.spec.deployment_id,
                        namespace = %req.namespace,
                        resource = %what,
                        team = %req.team,
                        owner = %req.owner,
                        "provision accepted"
                    );
                    return accepted(&rec.spec.deployment_id);
                }
                Err(e) if e.is_already_exists() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Refusal::Conflict(
            "the resource changed concurrently; retry the request".into(),
        ))
    }

    /// Stores a deprovision request for the deployment the id names, which must be the one of this type, name
    /// and namespace. Repeating it is accepted again.
    pub async fn accept_deprovision(
        &self,
        req: DeprovisionRequest,
    ) -> Result<DeprovisionAccepted, Refusal> {
        let rtype = req.resource_type.as_str();
        let name = record::record_name(rtype, &req.resource_name);
        if let Some(url) = &req.callback_url {
            self.callbacks.check(url).map_err(Refusal::Invalid)?;
        }
        let accepted = || DeprovisionAccepted {
            message: format!(
                "Deprovisioning request accepted for deployment {}",
                req.deployment_id
            ),
        };
        for _ in 0..ROUNDS {
            let rec = match self.cluster.get_record(&req.namespace, &name).await? {
                Some(r) if r.spec.deployment_id == req.deployment_id.as_str() => r,
                _ => return Err(self.not_this_deployment(&req).await?),
            };
            if record::is_deprovisioning(&rec) {
                return Ok(accepted());
            }
            match self
                .cluster
                .request_deprovision(&rec, req.callback_url.clone())
                .await
            {
                Ok(()) => {
                    tracing::info!(
                        action = "deprovision",
                        deployment_id = %req.deployment_id,
                        namespace = %req.namespace,
                        resource = %format!("{rtype}/{}", req.resource_name),
                        "deprovision accepted"
                    );
                    return Ok(accepted());
                }
                // The record changed or went between our read and the patch: read again.
                Err(e) if e.is_precondition_failed() || e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Refusal::Conflict(
            "the deployment changed concurrently; retry the request".into(),
        ))
    }

    /// Refuses a resource whose derived object names (`<name>-headless`, `<name>-credentials`, pods, claims, …)
    /// overlap those of another deployment in the namespace: one would take over the other's objects. Read from
    /// the record cache; a race between two such first requests is caught again before the first apply, where
    /// an object owned by another record fails the deployment instead of being adopted.
    fn ensure_names_free(
        &self,
        namespace: &str,
        resource_type: &str,
        resource_name: &str,
    ) -> Result<(), Refusal> {
        let ours = render::derived_names(resource_name);
        for other in self.cluster.records().state() {
            if other.metadata.namespace.as_deref() != Some(namespace)
                || (other.spec.resource_name == resource_name
                    && other.spec.resource_type == resource_type)
            {
                continue;
            }
            let theirs = render::derived_names(&other.spec.resource_name);
            if let Some((kind, name)) = ours.iter().find(|o| theirs.contains(o)) {
                return Err(Refusal::Conflict(format!(
                    "{resource_type}/{resource_name} would share {kind} {name} with {}/{} (deployment {}) in namespace {namespace}; choose another resourceName",
                    other.spec.resource_type, other.spec.resource_name, other.spec.deployment_id
                )));
            }
        }
        Ok(())
    }

    /// Why a deprovision names no record: the id belongs elsewhere (400), or to nothing (404).
    async fn not_this_deployment(&self, req: &DeprovisionRequest) -> Result<Refusal, Refusal> {
        let rtype = req.resource_type.as_str();
        Ok(
            match self.cluster.find_by_id(req.deployment_id.as_str()).await? {
                Some(other) => Refusal::Invalid(format!(
                    "deploymentId {} belongs to {}/{} in namespace {}, not {rtype}/{} in namespace {}",
                    req.deployment_id,
                    other.spec.resource_type,
                    other.spec.resource_name,
                    other.metadata.namespace.as_deref().unwrap_or(""),
                    req.resource_name,
                    req.namespace
                )),
                None => Refusal::NotFound(format!("deployment {} not found", req.deployment_id)),
            },
        )
    }
}

/// Whether an existing record holds the same request; the deploymentId to answer with if so.
fn same_request(
    existing: &ManagedResource,
    want: &ManagedResourceSpec,
    namespace: &str,
) -> Result<String, Refusal> {
    let what = format!("{}/{}", want.resource_type, want.resource_name);
    if record::is_deprovisioning(existing) {
        return Err(Refusal::Conflict(format!(
            "{what} in namespace {namespace} is being deprovisioned (deployment {}); provision it again once it is Deleted",
            existing.spec.deployment_id
        )));
    }
    let same = existing.spec.team == want.team
        && existing.spec.owner == want.owner
        && existing.spec.callback_url == want.callback_url
        && existing.spec.spec == want.spec;
    if same {
        Ok(existing.spec.deployment_id.clone())
    } else {
        Err(Refusal::Conflict(format!(
            "{what} already exists in namespace {namespace} with a different spec (deployment {})",
            existing.spec.deployment_id
        )))
    }
}
