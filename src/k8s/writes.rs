//! The broker's writes to the cluster: applying rendered objects, the record's status, deletes, the finalizer,
//! Events — each under the call time limit and counted.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, PropagationPolicy,
};
use serde_json::json;

use super::record::{self, ManagedResource, ManagedResourceStatus, labels};
use super::{
    Cluster, FIELD_MANAGER, K8sError, Result, api_resource, api_version_of, is_owned_by,
    made_by_statefulset, rfc3339,
};

impl Cluster {
    /// The API of a rendered object's kind (in its namespace) and its name.
    fn dynamic_api<'o>(&self, obj: &'o serde_json::Value) -> Result<(Api<DynamicObject>, &'o str)> {
        let (ar, namespaced) = api_resource(obj)
            .ok_or_else(|| K8sError::Unsupported(format!("unsupported kind {}", obj["kind"])))?;
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let api = if namespaced {
            let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default();
            Api::namespaced_with(self.client.clone(), ns, &ar)
        } else {
            Api::all_with(self.client.clone(), &ar)
        };
        Ok((api, name))
    }

    /// Server-side applies one rendered object (force: the broker owns every field it renders).
    pub async fn apply(&self, obj: &serde_json::Value) -> Result<()> {
        let (api, name) = self.dynamic_api(obj)?;
        self.call(
            "apply",
            api.patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(obj),
            ),
        )
        .await?;
        Ok(())
    }

    /// Writes a record's whole status (server-side apply on the status subresource).
    pub async fn write_status(
        &self,
        ns: &str,
        name: &str,
        status: &ManagedResourceStatus,
    ) -> Result<()> {
        let api: Api<ManagedResource> = Api::namespaced(self.client.clone(), ns);
        let body = json!({
            "apiVersion": "kidp.io/v1alpha1",
            "kind": "ManagedResource",
            "metadata": {"name": name},
            "status": status,
        });
        self.call(
            "apply",
            api.patch_status(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            ),
        )
        .await?;
        Ok(())
    }

    /// Deletes a record with foreground propagation: its children go first; the broker's finalizer then keeps
    /// the record until the manager has been told it is Deleted.
    pub async fn delete_record(&self, ns: &str, name: &str) -> Result<()> {
        let api: Api<ManagedResource> = Api::namespaced(self.client.clone(), ns);
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            ..Default::default()
        };
        match self.call("delete", api.delete(name, &dp)).await {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes the broker's finalizer, failing rather than removing someone else's (a JSON-patch `test`).
    pub async fn remove_finalizer(&self, rec: &ManagedResource) -> Result<()> {
        let ns = rec.metadata.namespace.clone().unwrap_or_default();
        let name = rec.metadata.name.clone().unwrap_or_default();
        let Some(i) = rec
            .metadata
            .finalizers
            .as_ref()
            .and_then(|f| f.iter().position(|x| x == record::FINALIZER))
        else {
            return Ok(());
        };
        let patch: json_patch::Patch = serde_json::from_value(json!([
            {"op": "test", "path": format!("/metadata/finalizers/{i}"), "value": record::FINALIZER},
            {"op": "remove", "path": format!("/metadata/finalizers/{i}")}
        ]))
        .expect("static JSON patch");
        let api: Api<ManagedResource> = Api::namespaced(self.client.clone(), &ns);
        match self
            .call(
                "patch",
                api.patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch)),
            )
            .await
        {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(()),
        }
    }

    /// Deletes the deployment's children (used when the record is being deleted without foreground
    /// propagation, e.g. by `kubectl delete`, so that the garbage collector would wait for the broker's
    /// finalizer). Only objects that are provably the deployment's go: carrying its id label and owned by the
    /// record (`uid`), or — pods and volume claims — made by its StatefulSet. Nothing foreign is deleted, even
    /// if it carries the label.
    pub async fn delete_children(
        &self,
        ns: &str,
        deployment_id: &str,
        record_uid: &str,
        resource_name: &str,
    ) -> Result<()> {
        let lp =
            ListParams::default().labels(&format!("{}={deployment_id}", labels::DEPLOYMENT_ID));
        let dp = DeleteParams::background();
        for kind in [
            "StatefulSet",
            "CronJob",
            "PodDisruptionBudget",
            "Service",
            "Secret",
            "PersistentVolumeClaim",
            "Pod",
        ] {
            let (ar, _) = api_resource(&json!({"apiVersion": api_version_of(kind), "kind": kind}))
                .expect("known kinds");
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
            let list = self.call("list", api.list(&lp)).await?;
            for obj in list.items {
                let ours = is_owned_by(&obj.metadata, record_uid)
                    || (matches!(kind, "Pod" | "PersistentVolumeClaim")
                        && made_by_statefulset(&obj.metadata, resource_name));
                if !ours {
                    continue;
                }
                let name = obj.metadata.name.clone().unwrap_or_default();
                match self.call("delete", api.delete(&name, &dp)).await {
                    Err(e) if !e.is_not_found() => return Err(e),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Reads any object the broker renders, by kind and name (for the ownership check before applying).
    pub async fn get_rendered(&self, obj: &serde_json::Value) -> Result<Option<DynamicObject>> {
        let (api, name) = self.dynamic_api(obj)?;
        self.call("get", api.get_opt(name)).await
    }

    /// Records a Kubernetes Event on the record (`kubectl describe managedresource` shows it): `warning` for
    /// what needs a human, normal otherwise.
    pub async fn record_event(
        &self,
        rec: &ManagedResource,
        reason: &str,
        message: &str,
        warning: bool,
    ) -> Result<()> {
        let ns = rec.metadata.namespace.clone().unwrap_or_default();
        let name = rec.metadata.name.clone().unwrap_or_default();
        let now = jiff::Timestamp::now();
        let event = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": format!("{name}."), "namespace": ns},
            "involvedObject": {
                "apiVersion": "kidp.io/v1alpha1", "kind": "ManagedResource",
                "name": name, "namespace": ns, "uid": rec.metadata.uid,
            },
            "reason": reason,
            // Event messages are bounded upstream (1 KiB); ours are short, but a pod's message may not be.
            "message": message.chars().take(1024).collect::<String>(),
            "type": if warning { "Warning" } else { "Normal" },
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "reportingInstance": FIELD_MANAGER,
            "firstTimestamp": rfc3339(now),
            "lastTimestamp": rfc3339(now),
            "count": 1,
        });
        let event: k8s_openapi::api::core::v1::Event =
            serde_json::from_value(event).map_err(|e| K8sError::Unsupported(e.to_string()))?;
        let api: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(self.client.clone(), &ns);
        self.call("create", api.create(&PostParams::default(), &event))
            .await?;
        Ok(())
    }

    /// Reads a Secret (to reuse generated credentials across re-renders).
    pub async fn get_secret(&self, ns: &str, name: &str) -> Result<Option<Secret>> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        self.call("get", api.get_opt(name)).await
    }
}
