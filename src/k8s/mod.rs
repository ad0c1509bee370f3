//! Everything that knows Kubernetes: the client, intent records, reflector stores, and (for `--dev`, in builds
//! with the `dev` feature) the embedded kubesim. It takes no business decisions; callers get typed results and
//! classified errors.

#[cfg(feature = "dev")]
pub mod dev;
pub mod lease;
pub mod observe;
pub mod record;
pub mod render;
pub mod reviews;
pub mod state;
pub mod team;
pub mod usage;
pub mod workload;
mod writes;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::ApiResource;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector;
use kube::{Client, CustomResourceExt};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::observe::{Observed, Stores, Synced};
use self::record::{DeprovisionRequest, ManagedResource, ManagedResourceSpec, labels};

/// The one field manager name for every write the broker makes.
pub const FIELD_MANAGER: &str = "kidp-broker";

/// Upper bound for any single API call: the HTTP handlers answer within this, never hang on the cluster.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `/readiness` waits for the API server before calling it unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A failed Kubernetes call, classified by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    /// The API server did not answer within the call's time limit.
    #[error("kubernetes API not accessible: no answer within {}s", after.as_secs())]
    Timeout { after: Duration },
    /// The API server could not be reached, or is overloaded (5xx, 429): worth trying again.
    #[error("kubernetes API not accessible: {0}")]
    Unavailable(String),
    /// The object does not exist.
    #[error("kubernetes API error: {0}")]
    NotFound(#[source] Box<kube::core::Status>),
    /// The API server refused the request (4xx other than 404: conflict, invalid, forbidden, …).
    #[error("kubernetes API error: {0}")]
    Rejected(#[source] Box<kube::core::Status>),
    /// An object of a kind the broker does not know how to write (a programming error).
    #[error("unsupported object: {0}")]
    Unsupported(String),
    /// An object under a name the deployment derives exists and belongs to someone else: the broker neither
    /// adopts nor overwrites it.
    #[error("{kind} {name} exists and is not managed by deployment {deployment_id}")]
    NotOurs {
        kind: String,
        name: String,
        deployment_id: String,
    },
    /// Anything else (a response kube-rs could not read, ...).
    #[error("kubernetes client error: {0}")]
    Other(#[source] kube::Error),
}

impl K8sError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, K8sError::Rejected(s) if s.is_conflict())
    }

    pub fn is_already_exists(&self) -> bool {
        matches!(self, K8sError::Rejected(s) if s.is_already_exists())
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, K8sError::NotFound(_))
    }

    /// A precondition of the request did not hold (a stale resourceVersion, a failed JSON-patch `test`).
    pub fn is_precondition_failed(&self) -> bool {
        matches!(self, K8sError::Rejected(s) if s.is_conflict() || s.code == 422)
    }

    /// The metric label of a call that ended with this error.
    fn outcome(&self) -> &'static str {
        match self {
            K8sError::Timeout { .. } => "timeout",
            // Expected answers that callers handle (get-or-create, idempotent deletes).
            K8sError::NotFound(_) => "ok",
            e if e.is_already_exists() => "ok",
            _ => "error",
        }
    }
}

/// The result type of this module.
pub type Result<T, E = K8sError> = std::result::Result<T, E>;

fn classify(e: kube::Error) -> K8sError {
    match e {
        kube::Error::Api(s) if s.code >= 500 || s.code == 429 => {
            K8sError::Unavailable(format!("{} ({})", s.message, s.code))
        }
        kube::Error::Api(s) if s.is_not_found() => K8sError::NotFound(s),
        kube::Error::Api(s) => K8sError::Rejected(s),
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
        Err(_) => Err(K8sError::Timeout {
            after: CALL_TIMEOUT,
        }),
    };
    let result = match &out {
        Ok(_) => "ok",
        Err(e) => e.outcome(),
    };
    crate::metrics::kubernetes_call(verb, result);
    out
}

/// The broker's view of the cluster: a client and reflector stores of everything it manages.
pub struct Cluster {
    client: Client,
    stores: Stores,
    synced: Arc<Synced>,
    events: Mutex<Option<mpsc::Receiver<Observed>>>,
    create_namespaces: bool,
    /// Cancelled at shutdown, once the actors are gone: calls still in flight are abandoned.
    stop: CancellationToken,
}

impl Cluster {
    /// A client from an explicit kubeconfig file, or the usual resolution (KUBECONFIG, ~/.kube/config,
    /// in-cluster service account). Its User-Agent names the broker version and the replica, so that the API
    /// server's audit log (and kubesim's faults) can tell replicas apart.
    pub async fn connect(
        kubeconfig: Option<&Path>,
        replica: Option<&str>,
    ) -> Result<Client, kube::Error> {
        let mut cfg = config(kubeconfig).await?;
        let agent = match replica {
            Some(r) => format!("kidp-broker/{} (replica {r})", env!("CARGO_PKG_VERSION")),
            None => format!("kidp-broker/{}", env!("CARGO_PKG_VERSION")),
        };
        if let Ok(v) = http::HeaderValue::from_str(&agent) {
            cfg.headers.push((http::header::USER_AGENT, v));
        }
        Client::try_from(cfg)
    }

    /// The API server's URL, as [`Cluster::connect`] would reach it.
    pub async fn api_server(kubeconfig: Option<&Path>) -> Option<String> {
        config(kubeconfig)
            .await
            .ok()
            .map(|c| c.cluster_url.to_string())
    }

    /// Starts the reflectors on `tasks`. They keep retrying with backoff while the API server is away, and end
    /// when `stop` is cancelled.
    pub fn start(
        client: Client,
        create_namespaces: bool,
        tasks: &TaskTracker,
        stop: &CancellationToken,
    ) -> Arc<Self> {
        let synced = Arc::new(Synced::default());
        let (tx, rx) = observe::channel();
        let stores = observe::start(client.clone(), tx, synced.clone(), tasks, stop);
        Arc::new(Cluster {
            client,
            stores,
            synced,
            events: Mutex::new(Some(rx)),
            create_namespaces,
            stop: stop.clone(),
        })
    }

    /// [`call`], abandoned once `stop` is cancelled. Calls a stopped deployment actor left running (their
    /// results would go to no one) are dropped before the API server goes away, instead of failing against
    /// it and logging errors; `biased` so that a cancelled call is never polled again.
    async fn call<T>(
        &self,
        verb: &'static str,
        f: impl Future<Output = kube::Result<T>>,
    ) -> Result<T> {
        tokio::select! {
            biased;
            _ = self.stop.cancelled() => Err(K8sError::Unavailable("the broker is shutting down".into())),
            r = call(verb, f) => r,
        }
    }

    /// The stream of observed changes; the first caller (the supervisor) gets it.
    pub fn take_events(&self) -> Option<mpsc::Receiver<Observed>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// The client (for the few reads that are not served from stores, such as the metrics API).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// All reflector stores.
    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// The record store (reads never go to the API server).
    pub fn records(&self) -> &reflector::Store<ManagedResource> {
        &self.stores.records
    }

    /// A record by deployment id, from the cache.
    pub fn record_by_id(&self, id: &crate::domain::DeploymentId) -> Option<Arc<ManagedResource>> {
        self.stores
            .record_ids
            .get(&self.stores.records, id.as_str())
    }

    /// Whether every reflector has completed its first list.
    pub fn synced(&self) -> bool {
        self.synced.all()
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
    pub async fn install_crd(client: &Client) -> Result<()> {
        for crd in [ManagedResource::crd(), team::Team::crd()] {
            install_one_crd(client, crd).await?;
        }
        Ok(())
    }

    /// A team's `Team`, from the API server (authoritative: quotas must not be judged on a stale copy).
    pub async fn get_team(&self, name: &str) -> Result<Option<team::Team>> {
        let api: Api<team::Team> = Api::all(self.client.clone());
        self.call("get", api.get_opt(name)).await
    }

    /// Every record of a team in any namespace, from the API server (not the cache, which may not have seen a
    /// record accepted a moment ago).
    pub async fn team_records(&self, team: &str) -> Result<Vec<ManagedResource>> {
        let api: Api<ManagedResource> = Api::all(self.client.clone());
        let lp = ListParams::default().labels(&format!("{}={team}", labels::TEAM));
        Ok(self.call("list", api.list(&lp)).await?.items)
    }

    /// Whether a namespace exists; creates it first when the broker is configured to.
    pub async fn ensure_namespace(&self, ns: &str) -> Result<bool> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        if self.call("get", api.get_opt(ns)).await?.is_some() {
            return Ok(true);
        }
        if !self.create_namespaces {
            return Ok(false);
        }
        let body = json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": {labels::MANAGED_BY: labels::MANAGED_BY_VALUE}}
        });
        self.call(
            "apply",
            api.patch(ns, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(&body)),
        )
        .await?;
        Ok(true)
    }

    /// Reads a record from the API server (authoritative; used where a stale cache could double-accept).
    pub async fn get_record(&self, ns: &str, name: &str) -> Result<Option<ManagedResource>> {
        let api: Api<ManagedResource> = Api::namespaced(self.client.clone(), ns);
        self.call("get", api.get_opt(name)).await
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
        self.call("create", api.create(&pp, &rec)).await
    }

    /// Finds a record by deployment id in any namespace (an API list by label, not the cache, so that an
    /// id accepted a moment ago is found).
    pub async fn find_by_id(&self, id: &str) -> Result<Option<ManagedResource>> {
        let api: Api<ManagedResource> = Api::all(self.client.clone());
        let lp = ListParams::default().labels(&format!("{}={id}", labels::DEPLOYMENT_ID));
        let list = self.call("list", api.list(&lp)).await?;
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
        // A JSON patch whose `test`s make it apply to this very record (uid) of this deployment only: a record
        // deleted and created again under the same name in between is left alone. No resourceVersion
        // precondition: the lifecycle writes status all the time, and a deprovision must not lose that race.
        let patch: json_patch::Patch = serde_json::from_value(json!([
            {"op": "test", "path": "/metadata/uid", "value": rec.metadata.uid},
            {"op": "test", "path": "/spec/deploymentId", "value": rec.spec.deployment_id},
            {"op": "add", "path": "/spec/deprovision", "value": req}
        ]))
        .expect("static JSON patch");
        self.call(
            "patch",
            api.patch(
                &name,
                &PatchParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                },
                &Patch::<()>::Json(patch),
            ),
        )
        .await?;
        Ok(())
    }
}

/// Applies one CRD and waits until it is established.
async fn install_one_crd(client: &Client, crd: CustomResourceDefinition) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
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
        Err(_) => Err(K8sError::Unavailable(format!(
            "the CRD {name} was not established within 30s"
        ))),
    }
}

async fn config(kubeconfig: Option<&Path>) -> Result<kube::Config, kube::Error> {
    match kubeconfig {
        Some(p) => {
            let kc =
                kube::config::Kubeconfig::read_from(p).map_err(kube::Error::InferKubeconfig)?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(kube::Error::InferKubeconfig)
        }
        None => kube::Config::infer()
            .await
            .map_err(kube::Error::InferConfig),
    }
}

/// Whether an object's controller ownerReference is the record with this uid.
pub fn is_owned_by(meta: &kube::api::ObjectMeta, record_uid: &str) -> bool {
    !record_uid.is_empty()
        && meta.owner_references.as_ref().is_some_and(|refs| {
            refs.iter()
                .any(|r| r.uid == record_uid && r.controller == Some(true))
        })
}

/// Whether a pod or claim was made by the StatefulSet `<resource_name>` (its ownerReference, or for claims that
/// outlive it, the claim-template naming `data-<name>-<ordinal>`).
fn made_by_statefulset(meta: &kube::api::ObjectMeta, resource_name: &str) -> bool {
    let owned = meta.owner_references.as_ref().is_some_and(|refs| {
        refs.iter()
            .any(|r| r.kind == "StatefulSet" && r.name == resource_name)
    });
    let name = meta.name.as_deref().unwrap_or_default();
    let claim = name
        .strip_prefix(&format!("data-{resource_name}-"))
        .is_some_and(|ordinal| !ordinal.is_empty() && ordinal.bytes().all(|b| b.is_ascii_digit()));
    owned || claim
}

/// The API resource of a rendered object, from its apiVersion and kind.
/// The apiVersion of a kind the broker renders or owns.
pub fn api_version_of(kind: &str) -> &'static str {
    match kind {
        "StatefulSet" => "apps/v1",
        "CronJob" => "batch/v1",
        "PodDisruptionBudget" => "policy/v1",
        "NetworkPolicy" => "networking.k8s.io/v1",
        _ => "v1",
    }
}

fn api_resource(obj: &serde_json::Value) -> Option<(ApiResource, bool)> {
    let api_version = obj["apiVersion"].as_str()?;
    let kind = obj["kind"].as_str()?;
    let (plural, namespaced) = match kind {
        "Secret" => ("secrets", true),
        "ConfigMap" => ("configmaps", true),
        "Service" => ("services", true),
        "StatefulSet" => ("statefulsets", true),
        "PodDisruptionBudget" => ("poddisruptionbudgets", true),
        "PersistentVolumeClaim" => ("persistentvolumeclaims", true),
        "CronJob" => ("cronjobs", true),
        "Pod" => ("pods", true),
        "NetworkPolicy" => ("networkpolicies", true),
        "ServiceAccount" => ("serviceaccounts", true),
        _ => return None,
    };
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    Some((
        ApiResource {
            group: group.to_string(),
            version: version.to_string(),
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            plural: plural.to_string(),
        },
        namespaced,
    ))
}

/// RFC 3339 UTC, seconds precision.
pub fn now() -> String {
    rfc3339(jiff::Timestamp::now())
}

/// A time as RFC 3339 UTC, seconds precision (what every status and callback carries).
pub fn rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}
