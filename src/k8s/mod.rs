//! Everything that knows Kubernetes: the client, intent records, reflector stores, and (for `--dev`) the
//! embedded kubesim. It takes no business decisions; callers get typed results and classified errors.

pub mod dev;
pub mod record;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, CustomResourceExt};
use serde_json::json;

use self::record::{DeprovisionRequest, ManagedResource, ManagedResourceSpec, labels};

/// The one field manager name for every write the broker makes.
pub const FIELD_MANAGER: &str = "kidp-broker";

/// Upper bound for any single API call: the HTTP handlers answer within this, never hang on the cluster.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `/readiness` waits for the API server before calling it unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A failed Kubernetes call, classified for the HTTP layer.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    /// The API server could not be reached or did not answer in time.
    #[error("kubernetes API not accessible: {0}")]
    Unavailable(String),
    /// The API server answered with an error status.
    #[error("kubernetes API error: {0}")]
    Api(#[source] Box<kube::core::Status>),
    /// Anything else (a response kube-rs could not read, ...).
    #[error("kubernetes client error: {0}")]
    Other(#[source] kube::Error),
}

impl K8sError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, K8sError::Api(s) if s.is_conflict())
    }

    pub fn is_already_exists(&self) -> bool {
        matches!(self, K8sError::Api(s) if s.is_already_exists())
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, K8sError::Api(s) if s.is_not_found())
    }
}

/// The result type of this module.
pub type Result<T, E = K8sError> = std::result::Result<T, E>;

fn classify(e: kube::Error) -> K8sError {
    match e {
        kube::Error::Api(s) if s.code >= 500 || s.code == 429 => {
            K8sError::Unavailable(format!("{} ({})", s.message, s.code))
        }
        kube::Error::Api(s) => K8sError::Api(s),
        kube::Error::HyperError(e) => K8sError::Unavailable(e.to_string()),
        kube::Error::Service(e) => K8sError::Unavailable(e.to_string()),
        other => K8sError::Other(other),
    }
}

/// Runs one API call under [`CALL_TIMEOUT`], counting it by verb and outcome.
async fn call<T>(verb: &'static str, f: impl Future<Output = kube::Result<T>>) -> Result<T> {
    let out = match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(classify(e)),
        Err(_) => Err(K8sError::Unavailable(format!(
            "no answer within {}s",
            CALL_TIMEOUT.as_secs()
        ))),
    };
    let result = match &out {
        Ok(_) => "ok",
        Err(K8sError::Unavailable(m)) if m.starts_with("no answer") => "timeout",
        Err(K8sError::Api(s)) if s.is_not_found() || s.is_already_exists() => "ok",
        Err(_) => "error",
    };
    crate::metrics::kubernetes_call(verb, result);
    out
}

/// The broker's view of the cluster: a client and a reflector store of intent records.
pub struct Cluster {
    client: Client,
    records: reflector::Store<ManagedResource>,
    records_synced: Arc<AtomicBool>,
    create_namespaces: bool,
}

impl Cluster {
    /// A client from an explicit kubeconfig file, or the usual resolution (KUBECONFIG, ~/.kube/config,
    /// in-cluster service account).
    pub async fn connect(kubeconfig: Option<&Path>) -> Result<Client, kube::Error> {
        let config = match kubeconfig {
            Some(p) => {
                let kc =
                    kube::config::Kubeconfig::read_from(p).map_err(kube::Error::InferKubeconfig)?;
                kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .map_err(kube::Error::InferKubeconfig)?
            }
            None => kube::Config::infer()
                .await
                .map_err(kube::Error::InferConfig)?,
        };
        Client::try_from(config)
    }

    /// Starts the record reflector. It keeps retrying with backoff while the API server is away.
    pub fn start(client: Client, create_namespaces: bool) -> Arc<Self> {
        let (reader, writer) = reflector::store();
        let synced = Arc::new(AtomicBool::new(false));
        let api: Api<ManagedResource> = Api::all(client.clone());
        let cfg = watcher::Config::default().labels(&format!(
            "{}={}",
            labels::MANAGED_BY,
            labels::MANAGED_BY_VALUE
        ));
        let stream = reflector(writer, watcher(api, cfg)).default_backoff();
        let flag = synced.clone();
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(watcher::Event::InitDone) => flag.store(true, Ordering::Relaxed),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "record watch failed; retrying");
                        crate::metrics::watch_error("managedresources");
                    }
                }
            }
        });
        Arc::new(Cluster {
            client,
            records: reader,
            records_synced: synced,
            create_namespaces,
        })
    }

    /// The record store (reads never go to the API server).
    pub fn records(&self) -> &reflector::Store<ManagedResource> {
        &self.records
    }

    /// Whether the record store has completed its first list.
    pub fn synced(&self) -> bool {
        self.records_synced.load(Ordering::Relaxed)
    }

    /// `Ok` when the API server answers `/version` within [`PROBE_TIMEOUT`].
    pub async fn probe(&self) -> std::result::Result<(), String> {
        match tokio::time::timeout(PROBE_TIMEOUT, self.client.apiserver_version()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(match classify(e) {
                K8sError::Unavailable(m) => m,
                other => other.to_string(),
            }),
            Err(_) => Err(format!("no answer within {}s", PROBE_TIMEOUT.as_secs())),
        }
    }

    /// Applies the ManagedResource CRD and waits until it is established.
    pub async fn install_crd(&self) -> Result<()> {
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let crd = ManagedResource::crd();
        let name = crd.metadata.name.clone().unwrap_or_default();
        call(
            "apply",
            api.patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&crd),
            ),
        )
        .await?;
        let established = kube::runtime::wait::await_condition(
            api,
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        match tokio::time::timeout(Duration::from_secs(30), established).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(K8sError::Unavailable(e.to_string())),
            Err(_) => Err(K8sError::Unavailable(
                "the ManagedResource CRD was not established within 30s".into(),
            )),
        }
    }

    /// Whether a namespace exists; creates it first when the broker is configured to.
    pub async fn ensure_namespace(&self, ns: &str) -> Result<bool> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        if call("get", api.get_opt(ns)).await?.is_some() {
            return Ok(true);
        }
        if !self.create_namespaces {
            return Ok(false);
        }
        let body = json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": {labels::MANAGED_BY: labels::MANAGED_BY_VALUE}}
        });
        call(
            "apply",
            api.patch(ns, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(&body)),
        )
        .await?;
        Ok(true)
    }

    /// Reads a record from the API server (authoritative; used where a stale cache could double-accept).
    pub async fn get_record(&self, ns: &str, name: &str) -> Result<Option<ManagedResource>> {
        let api: Api<ManagedResource> = Api::namespaced(self.client.clone(), ns);
        call("get", api.get_opt(name)).await
    }

    /// Creates a record. A create (not an apply) so that of two concurrent first requests exactly one wins;
    /// the loser gets AlreadyExists and compares specs.
    pub async fn create_record(
        &self,
        ns: &str,
        name: &str,
        spec: ManagedResourceSpec,
        engine: &str,
    ) -> Result<ManagedResource> {
        let api: Api<ManagedResource> = Api::namespaced(self.client.clone(), ns);
        let mut rec = ManagedResource::new(name, spec);
        rec.metadata.namespace = Some(ns.to_string());
        let mut l = record::common_labels(
            &rec.spec.deployment_id,
            &rec.spec.resource_type,
            &rec.spec.resource_name,
            engine,
        );
        if crate::domain::is_label_value(&rec.spec.team) {
            l.insert(labels::TEAM.to_string(), rec.spec.team.clone());
        }
        rec.metadata.labels = Some(l);
        rec.metadata.finalizers = Some(vec![record::FINALIZER.to_string()]);
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..Default::default()
        };
        call("create", api.create(&pp, &rec)).await
    }

    /// Finds a record by deployment id in any namespace (an API list by label, not the cache, so that an
    /// id accepted a moment ago is found).
    pub async fn find_by_id(&self, id: &str) -> Result<Option<ManagedResource>> {
        let api: Api<ManagedResource> = Api::all(self.client.clone());
        let lp = ListParams::default().labels(&format!("{}={id}", labels::DEPLOYMENT_ID));
        let list = call("list", api.list(&lp)).await?;
        Ok(list.items.into_iter().next())
    }

    /// Persists a deprovision request in the record; the lifecycle then deletes it.
    pub async fn request_deprovision(
        &self,
        rec: &ManagedResource,
        callback_url: Option<String>,
    ) -> Result<()> {
        let ns = rec.metadata.namespace.clone().unwrap_or_default();
        let name = rec.metadata.name.clone().unwrap_or_default();
        let api: Api<ManagedResource> = Api::namespaced(self.client.clone(), &ns);
        let req = DeprovisionRequest {
            requested_at: now(),
            callback_url,
        };
        // A merge patch with a resourceVersion precondition: a concurrent change makes this fail rather than
        // lose either write.
        let patch = json!({
            "metadata": {"resourceVersion": rec.metadata.resource_version},
            "spec": {"deprovision": req}
        });
        call(
            "patch",
            api.patch(
                &name,
                &PatchParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                },
                &Patch::Merge(&patch),
            ),
        )
        .await?;
        Ok(())
    }
}
/// RFC 3339 UTC, seconds precision.
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
