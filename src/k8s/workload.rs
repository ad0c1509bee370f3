//! The objects of one deployment: rendered from its record and server-side applied, reusing the credentials
//! and TLS material already in the cluster so that re-rendering never rotates a password under a running
//! database.

use k8s_openapi::api::core::v1::Secret;

use super::record::{ManagedResource, labels};
use super::render::{self, Credentials, Owner, RenderContext, TlsMaterial};
use super::{Cluster, K8sError, is_owned_by};

/// How workloads are rendered in this cluster.
#[derive(Debug, Clone, Default)]
pub struct WorkloadOptions {
    /// Prefix for engine images (private registries); `None` uses Docker Hub's official images.
    pub image_registry: Option<String>,
    /// The cluster's DNS domain.
    pub cluster_domain: String,
    /// The StorageClass for `encryption.atRest`.
    pub encrypted_storage_class: Option<String>,
}

/// Fails with [`K8sError::NotOurs`] when an object under one of the deployment's derived names exists and is not
/// the deployment's: owned by its record, or (pods, volume claims) made by its StatefulSet from its template.
async fn ensure_nothing_foreign(
    cluster: &Cluster,
    rec: &ManagedResource,
    ns: &str,
) -> Result<(), K8sError> {
    let uid = rec.metadata.uid.clone().unwrap_or_default();
    let id = &rec.spec.deployment_id;
    for (kind, name) in render::derived_names(&rec.spec.resource_name) {
        let probe = serde_json::json!({
            "apiVersion": super::api_version_of(kind), "kind": kind,
            "metadata": {"name": name, "namespace": ns}
        });
        let Some(found) = cluster.get_rendered(&probe).await? else {
            continue;
        };
        let labelled = found
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::DEPLOYMENT_ID))
            .is_some_and(|v| v == id);
        let ours = is_owned_by(&found.metadata, &uid)
            || (matches!(kind, "Pod" | "PersistentVolumeClaim") && labelled);
        if !ours {
            return Err(K8sError::NotOurs {
                kind: kind.to_string(),
                name,
                deployment_id: id.clone(),
            });
        }
    }
    Ok(())
}

fn secret_field(s: &Option<Secret>, k: &str) -> Option<String> {
    s.as_ref()
        .and_then(|s| s.data.as_ref())
        .and_then(|d| d.get(k))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
}

/// Renders and applies every object of the deployment (idempotent: server-side apply).
pub async fn apply(
    cluster: &Cluster,
    rec: &ManagedResource,
    opts: &WorkloadOptions,
) -> Result<(), K8sError> {
    let Some(desired) = rec.spec.spec.desired() else {
        return Err(K8sError::Unsupported(
            "the stored spec cannot be read".into(),
        ));
    };
    let ns = rec.metadata.namespace.clone().unwrap_or_default();
    let name = &rec.spec.resource_name;
    // Before anything is read or written: nothing under a derived name may belong to someone else, or the
    // broker would adopt it (reuse a foreign password, apply over a foreign workload) and later delete it.
    ensure_nothing_foreign(cluster, rec, &ns).await?;
    // Credentials are generated once and kept: re-rendering must not rotate a password under a running database.
    let existing = cluster
        .get_secret(&ns, &render::credentials_secret_name(name))
        .await?;
    let info = desired.engine.info();
    let credentials = Credentials {
        username: secret_field(&existing, "username")
            .unwrap_or_else(|| info.default_username.to_string()),
        password: secret_field(&existing, "password").unwrap_or_else(render::generate_password),
        database: secret_field(&existing, "database")
            .unwrap_or_else(|| info.default_database.to_string()),
    };
    let tls = if desired.encryption.in_transit {
        let current = cluster.get_secret(&ns, &format!("{name}-tls")).await?;
        match (
            secret_field(&current, "ca.crt"),
            secret_field(&current, "tls.crt"),
            secret_field(&current, "tls.key"),
        ) {
            (Some(ca_crt), Some(tls_crt), Some(tls_key)) => Some(TlsMaterial {
                ca_crt,
                tls_crt,
                tls_key,
            }),
            _ => {
                let names = vec![
                    name.clone(),
                    format!("{name}.{ns}"),
                    format!("{name}.{ns}.svc"),
                    render::endpoint(name, &ns, &opts.cluster_domain),
                    format!(
                        "*.{}.{ns}.svc.{}",
                        render::headless_service_name(name),
                        opts.cluster_domain
                    ),
                ];
                Some(render::generate_tls(&names).map_err(K8sError::Unsupported)?)
            }
        }
    } else {
        None
    };
    let uid = rec.metadata.uid.clone().unwrap_or_default();
    let record_name = rec.metadata.name.clone().unwrap_or_default();
    let ctx = RenderContext {
        owner: Owner {
            api_version: "kidp.io/v1alpha1",
            kind: "ManagedResource",
            name: &record_name,
            uid: &uid,
        },
        namespace: &ns,
        deployment_id: &rec.spec.deployment_id,
        resource_type: &rec.spec.resource_type,
        resource_name: name,
        team: &rec.spec.team,
        image_registry: opts.image_registry.as_deref(),
        storage_class: if desired.encryption.at_rest {
            opts.encrypted_storage_class.as_deref()
        } else {
            None
        },
        credentials: &credentials,
        tls: tls.as_ref(),
        cluster_domain: &opts.cluster_domain,
    };
    for obj in render::render(desired, &ctx) {
        cluster.apply(&obj).await?;
    }
    Ok(())
}
