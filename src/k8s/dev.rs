//! `--dev`: an embedded kubesim set up the way a platform team's cluster would be, so that every example in the
//! API reference works with nothing else installed.

use std::net::SocketAddr;
use std::path::Path;

use k8s_openapi::api::storage::v1::StorageClass;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::FIELD_MANAGER;

/// The encrypting StorageClass `--dev` installs (the seed's examples ask for `encryption.atRest: true`).
pub const DEV_ENCRYPTED_STORAGE_CLASS: &str = "kidp-encrypted";

/// A running embedded cluster.
pub struct DevCluster {
    pub sim: kubesim::KubeSim,
    pub client: Client,
}

/// Starts kubesim on `listen` (its pods real containers with `real_pods`), writes its kubeconfig to
/// `kubeconfig_out` when given, and installs an encrypting StorageClass.
pub async fn start(
    listen: SocketAddr,
    kubeconfig_out: Option<&Path>,
    real_pods: Option<kubesim::realpods::Config>,
) -> anyhow::Result<DevCluster> {
    let sim = kubesim::start(kubesim::Options {
        listen,
        real_pods,
        ..Default::default()
    })
    .await?;
    if let Some(p) = kubeconfig_out {
        std::fs::write(p, sim.kubeconfig())?;
    }
    let client = Client::try_from(kube::Config::new(sim.url().parse()?))?;
    let sc: Api<StorageClass> = Api::all(client.clone());
    let body = json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": DEV_ENCRYPTED_STORAGE_CLASS, "labels": {"app.kubernetes.io/managed-by": "kidp-broker"}},
        "provisioner": "kubesim.io/encrypted",
        "parameters": {"encrypted": "true"},
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
        "allowVolumeExpansion": true
    });
    sc.patch(
        DEV_ENCRYPTED_STORAGE_CLASS,
        &PatchParams::apply(FIELD_MANAGER),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(DevCluster { sim, client })
}
