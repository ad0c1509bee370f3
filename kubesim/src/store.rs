//! The object store: every object of every resource, one global resourceVersion, the change log watches replay
//! from, and the garbage collector and namespace finalizer that run on it.
//!
//! One mutex guards it all. Writes are short (no I/O under the lock) and a single lock makes every write, its
//! resourceVersion and its watch event one atomic step, which is exactly the ordering guarantee etcd gives watches.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast};

use crate::apierror::{ApiError, ApiResult};
use crate::defaults;
use crate::fieldmanager::{self, Scope};
use crate::meta;
use crate::patch;
use crate::registry::{self, Registry, ResKey, ResourceDef};
use crate::validate;

/// `(namespace, name)`; the namespace is "" for cluster-scoped objects.
pub(crate) type ObjKey = (String, String);

/// The type of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed change. `prev` lets filtered watches turn a change into ADDED/DELETED when an object enters or
/// leaves their selector.
#[derive(Debug)]
pub(crate) struct Event {
    pub rv: u64,
    pub res: ResKey,
    pub kind: EventType,
    pub object: Arc<Value>,
    pub prev: Option<Arc<Value>>,
}

/// How dependents are treated when their owner is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Propagation {
    Background,
    Foreground,
    Orphan,
}

/// Options common to every write.
#[derive(Clone, Debug, Default)]
pub(crate) struct WriteOpts {
    pub dry_run: bool,
    pub manager: String,
    pub force: bool,
}

/// DeleteOptions, from the body and the query.
#[derive(Clone, Debug, Default)]
pub(crate) struct DeleteOpts {
    pub propagation: Option<Propagation>,
    pub grace_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

/// The patch document of a PATCH request, by content type.
#[derive(Clone, Debug)]
pub(crate) enum PatchBody {
    Json(Value),
    Merge(Value),
    Strategic(Value),
    Apply(Value),
}

/// What a delete did.
pub(crate) enum DeleteOutcome {
    /// The object is gone; this is its last state.
    Gone(Arc<Value>),
    /// The object stays, marked for deletion (finalizers, foreground, graceful pod).
    Pending(Arc<Value>),
}

/// Work for the garbage collector and the namespace/CRD finalizers.
#[derive(Debug, Clone)]
enum GcWork {
    /// An object with this uid disappeared: its dependents may now be orphans to collect.
    OwnerGone(String),
    /// An owner is being deleted in the foreground.
    Foreground(ResKey, ObjKey),
    /// An owner is being deleted with orphan propagation.
    Orphan(ResKey, ObjKey),
    /// A new object names owners that may not exist.
    Dangling(ResKey, ObjKey),
    /// A namespace is terminating.
    Namespace(String),
    /// A CRD is being deleted: its custom resources go first.
    CrdCleanup(String),
}

/// The finalizer the CRD controller keeps on every CRD until its instances are gone.
const CRD_CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// The field manager the garbage collector writes as.
const GC_MANAGER: &str = "generic-garbage-collector";

/// State guarded by the store's lock.
pub(crate) struct Inner {
    pub rv: u64,
    pub registry: Registry,
    objects: HashMap<ResKey, BTreeMap<ObjKey, Arc<Value>>>,
    log: VecDeque<Arc<Event>>,
    log_cap: usize,
    /// Every event with an RV above this is still in `log`.
    compacted_rv: u64,
    by_uid: HashMap<String, (ResKey, ObjKey)>,
    dependents: HashMap<String, BTreeSet<(ResKey, ObjKey)>>,
    gc_queue: VecDeque<GcWork>,
    tx: broadcast::Sender<Arc<Event>>,
    next_cluster_ip: u32,
    /// Events recorded by kubesim's components, by what makes a repeat the same Event (object uid, type,
    /// reason, message, component), for aggregation into `count`/`series`: the Event's name, namespace and when
    /// it was last seen. Entries whose Event is gone are dropped when next looked up.
    pub(crate) event_series: HashMap<String, (String, String, jiff::Timestamp)>,
}

/// The store shared by the HTTP server, the watchers and the controllers.
pub(crate) struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Event>>,
    gc_wake: Notify,
}

/// Capacity of the broadcast ring that fans events out to watchers; a watcher that falls further behind catches
/// up from the log (or gets 410 when the log no longer reaches back that far).
const FANOUT_CAPACITY: usize = 16_384;

/// The durable part of the store, as `persist` writes it and reads it back. The change log is not part of it: a
/// restored store starts with an empty log compacted at `rv`, so older watches get the in-stream 410.
pub(crate) struct Snapshot {
    pub rv: u64,
    pub next_cluster_ip: u32,
    /// Every object, grouped by resource. CRDs are among them and re-register their resources.
    pub objects: Vec<(ResKey, Vec<Arc<Value>>)>,
}

impl Store {
    pub(crate) fn new(log_cap: usize) -> Arc<Self> {
        let s = Self::empty(log_cap);
        s.seed();
        s
    }

    /// A store holding exactly what `snap` holds (no seeding), with the garbage collector primed for any work the
    /// previous run left pending: terminating namespaces, CRDs and owners, and dependents of vanished owners.
    pub(crate) fn from_snapshot(log_cap: usize, snap: Snapshot) -> Arc<Self> {
        let s = Self::empty(log_cap);
        let pending = {
            let mut g = s.lock();
            g.restore(snap);
            !g.gc_queue.is_empty()
        };
        if pending {
            // Stored as a permit: the collector runs this work as soon as its task starts.
            s.gc_wake.notify_one();
        }
        s
    }

    fn empty(log_cap: usize) -> Arc<Self> {
        let (tx, _) = broadcast::channel(FANOUT_CAPACITY);
        let inner = Inner {
            rv: 1,
            registry: Registry::with_builtins(),
            objects: HashMap::new(),
            log: VecDeque::new(),
            log_cap: log_cap.max(16),
            compacted_rv: 1,
            by_uid: HashMap::new(),
            dependents: HashMap::new(),
            gc_queue: VecDeque::new(),
            tx: tx.clone(),
            next_cluster_ip: 1,
            event_series: HashMap::new(),
        };
        Arc::new(Store {
            inner: Mutex::new(inner),
            tx,
            gc_wake: Notify::new(),
        })
    }

    fn seed(&self) {
        let mut g = self.lock();
        let ns_def = g.def("", "namespaces");
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let _ = g.create(
                &ns_def,
                None,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                &WriteOpts {
                    manager: "kube-apiserver".into(),
                    ..Default::default()
                },
            );
        }
        // The API server's own Service, as kube-apiserver keeps it in `default`.
        let svc_def = g.def("", "services");
        let _ = g.create(
            &svc_def,
            Some("default"),
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kubernetes", "namespace": "default",
                    "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1", "sessionAffinity": "None",
                    "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}}),
            &WriteOpts {
                manager: "kube-apiserver".into(),
                ..Default::default()
            },
        );
        // And its Endpoints, which the API servers keep themselves (the Service has no selector).
        let ep_def = g.def("", "endpoints");
        let _ = g.create(
            &ep_def,
            Some("default"),
            json!({"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": "kubernetes", "namespace": "default",
                    "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                "subsets": [{"addresses": [{"ip": "10.0.0.1"}],
                    "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}]}),
            &WriteOpts {
                manager: "kube-apiserver".into(),
                ..Default::default()
            },
        );
        // The bootstrap RBAC policy kube-apiserver reconciles at every start.
        for (plural, obj) in crate::rbac::bootstrap_objects() {
            let def = g.def(crate::rbac::RBAC_GROUP, plural);
            let r = g.create(
                &def,
                None,
                obj,
                &WriteOpts {
                    manager: "kube-apiserver".into(),
                    ..Default::default()
                },
            );
            if let Err(e) = r {
                tracing::error!(error = %e.message, "bootstrap RBAC object refused");
            }
        }
        let node_def = g.def("", "nodes");
        let _ = g.create(
            &node_def,
            None,
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "kubesim-node", "labels": {"kubernetes.io/hostname": "kubesim-node", "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}}}),
            &WriteOpts {
                manager: "kubelet".into(),
                ..Default::default()
            },
        );
        let node = g
            .get(&node_def, "", "kubesim-node")
            .map(|n| (*n).clone())
            .ok();
        if let Some(mut n) = node {
            n["status"] = json!({
                "capacity": {"cpu": "64", "memory": "256Gi", "pods": "110000", "ephemeral-storage": "1Ti"},
                "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "110000", "ephemeral-storage": "1Ti"},
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": meta::now(), "lastTransitionTime": meta::now()}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "kubesim-node"}],
                "nodeInfo": {"kubeletVersion": crate::discovery::GIT_VERSION, "operatingSystem": "linux", "architecture": "amd64", "containerRuntimeVersion": "kubesim://1", "osImage": "kubesim", "kernelVersion": "kubesim", "kubeProxyVersion": "", "machineID": "", "systemUUID": "", "bootID": ""}
            });
            let _ = g.replace(
                &node_def,
                "",
                "kubesim-node",
                n,
                Scope::Status,
                &WriteOpts {
                    manager: "kubelet".into(),
                    ..Default::default()
                },
            );
        }
    }

    /// Locks the store. Callers must not hold the guard across an await.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the data as consistent as the last completed write; keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs a write under the lock, then wakes the garbage collector if the write gave it work.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut g = self.lock();
        let out = f(&mut g);
        let wake = !g.gc_queue.is_empty();
        drop(g);
        if wake {
            self.gc_wake.notify_one();
        }
        out
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// The garbage collector and namespace/CRD finalizers: runs until `shutdown` fires.
    pub(crate) async fn run_gc(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = self.gc_wake.notified() => {}
                _ = shutdown.changed() => return,
            }
            // Yield once so the client that triggered the work sees its own response first, as with a real
            // asynchronous garbage collector.
            tokio::task::yield_now().await;
            let mut g = self.lock();
            g.process_gc();
        }
    }
}

impl Inner {
    /// A built-in resource definition (panics on a name that is not built in: programming error).
    pub(crate) fn def(&self, group: &str, plural: &str) -> Arc<ResourceDef> {
        self.registry
            .get(&(group.to_string(), plural.to_string()))
            .cloned()
            .unwrap_or_else(|| panic!("built-in resource {plural}.{group} missing"))
    }

    /// One object by prebuilt keys, without allocating and without building an error when it is absent: for
    /// per-request checks on the hot path (the faults ConfigMap), where absence is the common case.
    pub(crate) fn find(&self, res: &ResKey, key: &ObjKey) -> Option<&Arc<Value>> {
        self.objects.get(res)?.get(key)
    }

    pub(crate) fn get(&self, def: &ResourceDef, ns: &str, name: &str) -> ApiResult<Arc<Value>> {
        self.objects
            .get(&def.key())
            .and_then(|b| b.get(&(ns.to_string(), name.to_string())))
            .cloned()
            .ok_or_else(|| ApiError::not_found(def, name))
    }

    /// Objects of a resource, in one namespace or all, ordered by namespace then name (as etcd's key order).
    pub(crate) fn list(&self, def: &ResourceDef, ns: Option<&str>) -> Vec<Arc<Value>> {
        let Some(b) = self.objects.get(&def.key()) else {
            return vec![];
        };
        match ns {
            Some(ns) if def.namespaced => b
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, v)| v.clone())
                .collect(),
            _ => b.values().cloned().collect(),
        }
    }

    /// Objects of a resource in one namespace or all, borrowed, in the same order as [`Inner::list`].
    pub(crate) fn iter<'a>(
        &'a self,
        def: &ResourceDef,
        ns: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Arc<Value>> + 'a {
        let namespaced = def.namespaced;
        self.objects.get(&def.key()).into_iter().flat_map(move |b| {
            let range: Box<dyn Iterator<Item = (&'a ObjKey, &'a Arc<Value>)> + 'a> = match ns {
                Some(ns) if namespaced => Box::new(
                    b.range((ns.to_string(), String::new())..)
                        .take_while(move |((n, _), _)| n == ns),
                ),
                _ => Box::new(b.iter()),
            };
            range.map(|(_, v)| v)
        })
    }

    /// Number of stored objects across all resources.
    pub(crate) fn object_count(&self) -> usize {
        self.objects.values().map(BTreeMap::len).sum()
    }

    /// Events after `rv` for replaying to a watch, or `None` when the log no longer reaches back that far.
    pub(crate) fn events_since(&self, rv: u64) -> Option<Vec<Arc<Event>>> {
        if rv < self.compacted_rv {
            return None;
        }
        let start = self.log.partition_point(|e| e.rv <= rv);
        Some(self.log.iter().skip(start).cloned().collect())
    }

    pub(crate) fn compacted_rv(&self) -> u64 {
        self.compacted_rv
    }

    /// The durable state, cheaply: objects are shared, not copied, so the lock is held only to collect pointers.
    pub(crate) fn export(&self) -> Snapshot {
        let objects = self
            .objects
            .iter()
            .filter(|(_, b)| !b.is_empty())
            .map(|(rk, b)| (rk.clone(), b.values().cloned().collect()))
            .collect();
        Snapshot {
            rv: self.rv,
            next_cluster_ip: self.next_cluster_ip,
            objects,
        }
    }

    /// Loads a snapshot into an empty store (see [`Store::from_snapshot`]).
    fn restore(&mut self, snap: Snapshot) {
        // Every object's resourceVersion is at most the global one; take the larger in case the file was edited.
        let max_obj_rv = snap
            .objects
            .iter()
            .flat_map(|(_, objs)| objs)
            .filter_map(|o| meta::str_field(o, "resourceVersion").parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        self.rv = snap.rv.max(max_obj_rv).max(1);
        self.compacted_rv = self.rv;
        self.next_cluster_ip = snap.next_cluster_ip.max(1);
        let crd_key: ResKey = (
            "apiextensions.k8s.io".into(),
            "customresourcedefinitions".into(),
        );
        // CRDs first, so that the custom resources after them find their definitions.
        let crds = snap.objects.iter().filter(|(rk, _)| *rk == crd_key);
        for crd in crds.flat_map(|(_, objs)| objs) {
            match registry::def_from_crd(crd) {
                Ok(d) => self.registry.insert(d),
                Err(e) => {
                    tracing::warn!(crd = meta::name(crd), error = %e, "stored CRD not served")
                }
            }
        }
        for (rk, o) in snap
            .objects
            .into_iter()
            .flat_map(|(rk, objs)| objs.into_iter().map(move |o| (rk.clone(), o)))
        {
            let Some(def) = self.registry.get(&rk).cloned() else {
                tracing::warn!(group = %rk.0, resource = %rk.1, name = meta::name(&o), "stored object of an unknown resource dropped");
                continue;
            };
            let key = (meta::namespace(&o).to_string(), meta::name(&o).to_string());
            self.index(&def, &key, &o);
            if meta::is_deleting(&o) {
                let fs = meta::finalizers(&o);
                if fs.iter().any(|f| f == "foregroundDeletion") {
                    self.gc_queue
                        .push_back(GcWork::Foreground(rk.clone(), key.clone()));
                }
                if fs.iter().any(|f| f == "orphan") {
                    self.gc_queue
                        .push_back(GcWork::Orphan(rk.clone(), key.clone()));
                }
                if rk == crd_key {
                    self.gc_queue.push_back(GcWork::CrdCleanup(key.1.clone()));
                }
                if def.group.is_empty() && def.plural == "namespaces" {
                    self.gc_queue.push_back(GcWork::Namespace(key.1.clone()));
                }
            }
            if !meta::owner_uids(&o).is_empty() {
                self.gc_queue
                    .push_back(GcWork::Dangling(rk.clone(), key.clone()));
            }
            self.objects.entry(rk).or_default().insert(key, o);
        }
    }

    fn check_namespace(&self, ns: &str, name: &str, def: &ResourceDef) -> ApiResult<()> {
        let ns_key = ("".to_string(), "namespaces".to_string());
        match self
            .objects
            .get(&ns_key)
            .and_then(|b| b.get(&(String::new(), ns.to_string())))
        {
            None => Err(ApiError::namespace_not_found(ns)),
            Some(n) if meta::is_deleting(n) => Err(ApiError::forbidden(format!(
                "{} \"{}\" is forbidden: unable to create new content in namespace {} because it is being terminated",
                def.qualified(),
                name,
                ns
            ))
            .with_forbidden_details(def, name)),
            Some(_) => Ok(()),
        }
    }

    fn check_type(def: &ResourceDef, body: &Value) -> ApiResult<()> {
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON or YAML object",
            ));
        }
        if let Some(av) = body.get("apiVersion").and_then(Value::as_str) {
            let ok = def.versions.iter().any(|v| def.api_version(v) == av);
            if !ok {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version ({})",
                    def.api_version(def.storage_version())
                )));
            }
        }
        if let Some(k) = body.get("kind").and_then(Value::as_str)
            && k != def.kind
        {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                def.kind
            )));
        }
        if body.get("metadata").is_some_and(|m| !m.is_object()) {
            return Err(ApiError::bad_request("metadata must be an object"));
        }
        Ok(())
    }

    /// POST: creates an object.
    pub(crate) fn create(
        &mut self,
        def: &Arc<ResourceDef>,
        url_ns: Option<&str>,
        body: Value,
        opts: &WriteOpts,
    ) -> ApiResult<Arc<Value>> {
        self.create_inner(def, url_ns, body, opts, false)
    }

    fn create_inner(
        &mut self,
        def: &Arc<ResourceDef>,
        url_ns: Option<&str>,
        mut body: Value,
        opts: &WriteOpts,
        managed_by_apply: bool,
    ) -> ApiResult<Arc<Value>> {
        Self::check_type(def, &body)?;
        let now = meta::now();
        let ns = if def.namespaced {
            let Some(url_ns) = url_ns else {
                return Err(ApiError::method_not_allowed(
                    "the server does not allow this method on the requested resource",
                ));
            };
            let body_ns = meta::namespace(&body);
            if !body_ns.is_empty() && body_ns != url_ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            url_ns.to_string()
        } else {
            String::new()
        };
        let mut name = meta::name(&body).to_string();
        if name.is_empty() {
            let gen_name = meta::str_field(&body, "generateName").to_string();
            if gen_name.is_empty() {
                return Err(ApiError::invalid(
                    &def.kind,
                    &def.group,
                    "",
                    &[(
                        "metadata.name".into(),
                        "FieldValueRequired",
                        "Required value: name or generateName is required".into(),
                    )],
                ));
            }
            // Upstream truncates the prefix so that prefix + 5 random characters fits 63.
            let prefix: String = gen_name.chars().take(58).collect();
            loop {
                let candidate = format!("{prefix}{}", meta::random_suffix(5));
                if self.get(def, &ns, &candidate).is_err() {
                    name = candidate;
                    break;
                }
            }
        }
        validate::validate_name(def, &name)?;
        if def.namespaced {
            self.check_namespace(&ns, &name, def)?;
        }
        if self.get(def, &ns, &name).is_ok() {
            return Err(ApiError::already_exists(def, &name));
        }
        {
            let md = meta::metadata_mut(&mut body);
            md.insert("name".into(), json!(name));
            if def.namespaced {
                md.insert("namespace".into(), json!(ns));
            } else {
                md.remove("namespace");
            }
            for f in [
                "resourceVersion",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "selfLink",
                "generation",
            ] {
                md.remove(f);
            }
            md.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            md.insert("creationTimestamp".into(), json!(now));
            if defaults::has_generation(def) {
                md.insert("generation".into(), json!(1));
            }
            if !managed_by_apply {
                md.remove("managedFields");
            }
        }
        body["apiVersion"] = json!(def.api_version(def.storage_version()));
        body["kind"] = json!(def.kind);
        if def.from_crd && def.status {
            // Custom resources with a status subresource start without status.
            if let Some(m) = body.as_object_mut() {
                m.remove("status");
            }
        } else if let Some(st) = defaults::initial_status(def, &body) {
            body["status"] = st;
        }
        defaults::apply_defaults(def, &mut body);
        defaults::on_create(def, &mut body);
        if def.group.is_empty() && def.plural == "pods" {
            defaults::admit_pod(&mut body);
        }
        self.kind_hooks_on_write(def, None, &mut body, &now)?;
        validate::validate_object(def, &name, &body)?;
        validate::validate_metadata(def, &name, &body)?;
        validate::validate_selector(def, &name, &body)?;
        if !managed_by_apply {
            fieldmanager::record_update(
                None,
                &mut body,
                &opts.manager,
                Scope::Main,
                &def.api_version(def.storage_version()),
                &now,
            );
        }
        if opts.dry_run {
            return Ok(Arc::new(body));
        }
        let obj = self.commit_insert(def, body);
        if def.group == "apiextensions.k8s.io"
            && let Ok(d) = registry::def_from_crd(&obj)
        {
            self.registry.insert(d);
        }
        if !meta::owner_uids(&obj).is_empty() {
            self.gc_queue
                .push_back(GcWork::Dangling(def.key(), (ns, name)));
        }
        Ok(obj)
    }

    /// Per-kind work on every create/update: CRD validation and status, Service cluster IPs.
    fn kind_hooks_on_write(
        &mut self,
        def: &ResourceDef,
        old: Option<&Value>,
        body: &mut Value,
        now: &str,
    ) -> ApiResult<()> {
        match (def.group.as_str(), def.plural.as_str()) {
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                let name = meta::name(body).to_string();
                let nd = registry::def_from_crd(body).map_err(|m| {
                    ApiError::invalid(
                        &def.kind,
                        &def.group,
                        &name,
                        &[(
                            m.split(':').next().unwrap_or("spec").to_string(),
                            "FieldValueInvalid",
                            m.split_once(": ").map(|x| x.1).unwrap_or(&m).to_string(),
                        )],
                    )
                })?;
                if let Some(existing) = self.registry.get(&nd.key())
                    && !existing.from_crd
                {
                    return Err(ApiError::invalid(
                        &def.kind,
                        &def.group,
                        &name,
                        &[(
                            "spec.names.plural".into(),
                            "FieldValueInvalid",
                            "Invalid value: the resource is served by a built-in API".into(),
                        )],
                    ));
                }
                if old.is_none() {
                    let mut f = meta::finalizers(body);
                    if !f.iter().any(|x| x == CRD_CLEANUP_FINALIZER) {
                        f.push(CRD_CLEANUP_FINALIZER.into());
                    }
                    meta::set_finalizers(body, &f);
                }
                let keep_time = old
                    .and_then(|o| o.pointer("/status/conditions/0/lastTransitionTime"))
                    .and_then(Value::as_str)
                    .unwrap_or(now)
                    .to_string();
                body["status"] = registry::crd_status(body, &keep_time);
            }
            ("", "services") => {
                let ty = body
                    .pointer("/spec/type")
                    .and_then(Value::as_str)
                    .unwrap_or("ClusterIP")
                    .to_string();
                let old_ip = old
                    .and_then(|o| o.pointer("/spec/clusterIP"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let spec = body.get_mut("spec").and_then(Value::as_object_mut);
                if let Some(spec) = spec {
                    let cur = spec
                        .get("clusterIP")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    if let (Some(o), Some(c)) = (&old_ip, &cur)
                        && o != c
                    {
                        return Err(ApiError::invalid(
                            &def.kind,
                            &def.group,
                            meta::name(body),
                            &[(
                                "spec.clusterIPs[0]".into(),
                                "FieldValueInvalid",
                                format!(
                                    "Invalid value: []string{{\"{c}\"}}: may not change once set"
                                ),
                            )],
                        ));
                    }
                    let ip = match (old_ip, cur) {
                        (Some(o), _) => o,
                        (None, Some(c)) if !c.is_empty() => c,
                        _ if ty == "ExternalName" => return Ok(()),
                        _ => {
                            let n = self.next_cluster_ip;
                            self.next_cluster_ip += 1;
                            format!("10.96.{}.{}", (n / 254) % 256, n % 254 + 1)
                        }
                    };
                    spec.insert("clusterIP".into(), json!(ip.clone()));
                    spec.insert("clusterIPs".into(), json!([ip]));
                    spec.entry("ipFamilies").or_insert(json!(["IPv4"]));
                    spec.entry("ipFamilyPolicy").or_insert(json!("SingleStack"));
                }
                self.allocate_node_ports(def, old, body, &ty)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// The default NodePort range of kube-apiserver (`--service-node-port-range`).
    const NODE_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;

    /// Gives each port of a NodePort or LoadBalancer Service a `nodePort`: the one asked for (in range and not
    /// held by another Service), the one it had before, or a free one at random; other types may not set one.
    fn allocate_node_ports(
        &self,
        def: &ResourceDef,
        old: Option<&Value>,
        body: &mut Value,
        ty: &str,
    ) -> ApiResult<()> {
        let (ns, name) = (
            meta::namespace(body).to_string(),
            meta::name(body).to_string(),
        );
        let needs = ty == "NodePort" || ty == "LoadBalancer";
        let invalid = |field: String, reason: &'static str, msg: String| {
            ApiError::invalid(&def.kind, &def.group, &name, &[(field, reason, msg)])
        };
        let Some(ports) = body
            .pointer_mut("/spec/ports")
            .and_then(Value::as_array_mut)
        else {
            return Ok(());
        };
        if !needs {
            for (i, p) in ports.iter().enumerate() {
                if p.get("nodePort")
                    .and_then(Value::as_i64)
                    .is_some_and(|n| n != 0)
                {
                    return Err(invalid(
                        format!("spec.ports[{i}].nodePort"),
                        "FieldValueForbidden",
                        format!("Forbidden: may not be used when `type` is '{ty}'"),
                    ));
                }
            }
            return Ok(());
        }
        let mut used: std::collections::HashSet<i64> = self
            .list(def, None)
            .iter()
            .filter(|o| !(meta::namespace(o) == ns && meta::name(o) == name))
            .flat_map(|o| {
                o.pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.get("nodePort").and_then(Value::as_i64))
                    .collect::<Vec<_>>()
            })
            .collect();
        let before = |p: &Value| -> Option<i64> {
            old?.pointer("/spec/ports")?
                .as_array()?
                .iter()
                .find(|o| o.get("port") == p.get("port") && o.get("protocol") == p.get("protocol"))?
                .get("nodePort")?
                .as_i64()
        };
        for (i, p) in ports.iter_mut().enumerate() {
            let asked = p
                .get("nodePort")
                .and_then(Value::as_i64)
                .filter(|n| *n != 0);
            let port = match asked.or_else(|| before(p)) {
                Some(n) => {
                    if !Self::NODE_PORTS.contains(&n) {
                        return Err(invalid(
                            format!("spec.ports[{i}].nodePort"),
                            "FieldValueInvalid",
                            format!(
                                "Invalid value: {n}: provided port is not in the valid range. The range of valid ports is 30000-32767"
                            ),
                        ));
                    }
                    if used.contains(&n) {
                        return Err(invalid(
                            format!("spec.ports[{i}].nodePort"),
                            "FieldValueInvalid",
                            format!("Invalid value: {n}: provided port is already allocated"),
                        ));
                    }
                    n
                }
                None => {
                    let free = Self::NODE_PORTS.count() - used.len();
                    if free == 0 {
                        return Err(ApiError::internal(
                            "failed to allocate a nodePort: range is full",
                        ));
                    }
                    loop {
                        let n = rand::random_range(Self::NODE_PORTS);
                        if !used.contains(&n) {
                            break n;
                        }
                    }
                }
            };
            used.insert(port);
            p["nodePort"] = json!(port);
        }
        Ok(())
    }

    /// PUT (main resource or /status).
    pub(crate) fn replace(
        &mut self,
        def: &Arc<ResourceDef>,
        ns: &str,
        name: &str,
        body: Value,
        scope: Scope,
        opts: &WriteOpts,
    ) -> ApiResult<Arc<Value>> {
        Self::check_type(def, &body)?;
        let old = self.get(def, ns, name)?;
        let rv = meta::str_field(&body, "resourceVersion");
        if !rv.is_empty() && rv != meta::str_field(&old, "resourceVersion") {
            return Err(ApiError::modified(def, name));
        }
        self.update_object(def, old, body, scope, opts, true)
    }

    /// PATCH of every kind, on the main resource or /status. Returns the object and whether it was created.
    pub(crate) fn patch(
        &mut self,
        def: &Arc<ResourceDef>,
        ns: &str,
        name: &str,
        body: PatchBody,
        scope: Scope,
        opts: &WriteOpts,
    ) -> ApiResult<(Arc<Value>, bool)> {
        let existing = self.get(def, ns, name).ok();
        let api_version = def.api_version(def.storage_version());
        let now = meta::now();
        match body {
            PatchBody::Apply(applied) => {
                Self::check_type(def, &applied)?;
                if applied.pointer("/metadata/managedFields").is_some() {
                    return Err(ApiError::bad_request("metadata.managedFields must be nil"));
                }
                let body_name = meta::name(&applied);
                if body_name != name {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({body_name}) does not match the name on the URL ({name})"
                    )));
                }
                let merged = fieldmanager::apply(
                    existing.as_deref(),
                    &applied,
                    &opts.manager,
                    opts.force,
                    scope,
                    &api_version,
                    &now,
                )
                .map_err(|e| apply_conflict(def, name, &e))?;
                match existing {
                    None => {
                        if scope == Scope::Status {
                            return Err(ApiError::not_found(def, name));
                        }
                        let ns_opt = def.namespaced.then_some(ns);
                        self.create_inner(def, ns_opt, merged, opts, true)
                            .map(|o| (o, true))
                    }
                    Some(old) => self
                        .update_object(def, old, merged, scope, opts, false)
                        .map(|o| (o, false)),
                }
            }
            other => {
                let Some(old) = existing else {
                    return Err(ApiError::not_found(def, name));
                };
                let mut new = (*old).clone();
                match other {
                    PatchBody::Json(ops) => {
                        patch::json_patch(&mut new, &ops).map_err(patch_error)?
                    }
                    PatchBody::Merge(p) => {
                        if !p.is_object() {
                            return Err(ApiError::bad_request(
                                "the merge patch must be a JSON object",
                            ));
                        }
                        patch::merge_patch(&mut new, &p)
                    }
                    PatchBody::Strategic(p) => {
                        if !p.is_object() {
                            return Err(ApiError::bad_request(
                                "the strategic merge patch must be a JSON object",
                            ));
                        }
                        patch::strategic_merge_patch(&mut new, &p).map_err(patch_error)?
                    }
                    PatchBody::Apply(_) => unreachable!("handled above"),
                }
                // A patch that sets metadata.resourceVersion is a precondition, as upstream.
                let rv = meta::str_field(&new, "resourceVersion");
                if !rv.is_empty() && rv != meta::str_field(&old, "resourceVersion") {
                    return Err(ApiError::modified(def, name));
                }
                self.update_object(def, old, new, scope, opts, true)
                    .map(|o| (o, false))
            }
        }
    }

    /// The common tail of PUT and PATCH: immutable fields, status/spec split, defaults, generation, managed
    /// fields, and the commit (or removal when the last finalizer of a deleting object goes).
    fn update_object(
        &mut self,
        def: &Arc<ResourceDef>,
        old: Arc<Value>,
        mut new: Value,
        scope: Scope,
        opts: &WriteOpts,
        record_manager: bool,
    ) -> ApiResult<Arc<Value>> {
        let name = meta::name(&old).to_string();
        let body_name = meta::name(&new).to_string();
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let body_ns = meta::namespace(&new).to_string();
        if def.namespaced && !body_ns.is_empty() && body_ns != meta::namespace(&old) {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let now = meta::now();
        if scope == Scope::Status {
            // /status writes change status only (and may take managedFields along).
            let status = new.get("status").cloned();
            let mf = new.pointer("/metadata/managedFields").cloned();
            new = (*old).clone();
            match status {
                Some(s) => new["status"] = s,
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            if !record_manager && let Some(mf) = mf {
                meta::metadata_mut(&mut new).insert("managedFields".into(), mf);
            }
        } else if def.status {
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        validate::validate_uid(def, &name, &old, &new)?;
        {
            let old_md = old.get("metadata").cloned().unwrap_or(json!({}));
            let md = meta::metadata_mut(&mut new);
            for f in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "resourceVersion",
            ] {
                match old_md.get(f) {
                    Some(v) => md.insert(f.into(), v.clone()),
                    None => md.remove(f),
                };
            }
            if record_manager {
                // Managed fields are the server's to compute for non-apply writes.
                match old_md.get("managedFields") {
                    Some(v) => md.insert("managedFields".into(), v.clone()),
                    None => md.remove("managedFields"),
                };
            }
        }
        new["apiVersion"] = json!(def.api_version(def.storage_version()));
        new["kind"] = json!(def.kind);
        if scope != Scope::Status {
            defaults::apply_defaults(def, &mut new);
        }
        self.kind_hooks_on_write(def, Some(&old), &mut new, &now)?;
        validate::validate_object(def, &name, &new)?;
        validate::validate_metadata(def, &name, &new)?;
        validate::validate_selector(def, &name, &new)?;
        validate::validate_update(def, &name, &old, &new)?;
        if defaults::has_generation(def) && !meta::spec_part_eq(&old, &new) {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            meta::metadata_mut(&mut new).insert("generation".into(), json!(g + 1));
        }
        if record_manager {
            fieldmanager::record_update(
                Some(&old),
                &mut new,
                &opts.manager,
                scope,
                &def.api_version(def.storage_version()),
                &now,
            );
        }
        if new == *old {
            // Upstream skips the write (and the resourceVersion bump) for a no-op update.
            return Ok(old);
        }
        // As upstream's ShouldDeleteDuringUpdate: the last finalizer going removes the object only once its
        // graceful deletion is complete. A pod its kubelet is still stopping stays until the kubelet's final
        // delete (grace 0); without this a foreground deletion removed pods while their containers ran.
        if meta::is_deleting(&new)
            && meta::finalizers(&new).is_empty()
            && !self.has_spec_finalizers(def, &new)
            && new
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                == 0
        {
            if opts.dry_run {
                return Ok(Arc::new(new));
            }
            self.commit_update(def, &old, new);
            let cur = self.get(def, meta::namespace(&old), &name)?;
            return Ok(self.commit_remove(def, &cur));
        }
        if opts.dry_run {
            return Ok(Arc::new(new));
        }
        let out = self.commit_update(def, &old, new);
        if def.group == "apiextensions.k8s.io"
            && let Ok(d) = registry::def_from_crd(&out)
        {
            self.registry.insert(d);
        }
        Ok(out)
    }

    /// Namespaces are held by `spec.finalizers` (the namespace controller's), not only metadata finalizers.
    fn has_spec_finalizers(&self, def: &ResourceDef, o: &Value) -> bool {
        def.group.is_empty()
            && def.plural == "namespaces"
            && o.pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
    }

    /// DELETE of one object.
    pub(crate) fn delete(
        &mut self,
        def: &Arc<ResourceDef>,
        ns: &str,
        name: &str,
        d: &DeleteOpts,
    ) -> ApiResult<DeleteOutcome> {
        let old = self.get(def, ns, name)?;
        if let Some(uid) = &d.precondition_uid
            && uid != meta::uid(&old)
        {
            return Err(ApiError::conflict(
                def,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta::uid(&old)
                ),
            ));
        }
        if let Some(rv) = &d.precondition_rv
            && rv != meta::str_field(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(
                def,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta::str_field(&old, "resourceVersion")
                ),
            ));
        }
        let opts = WriteOpts {
            dry_run: d.dry_run,
            manager: String::new(),
            force: false,
        };
        let now = meta::now();
        let is_pod = def.group.is_empty() && def.plural == "pods";
        if def.group.is_empty() && def.plural == "namespaces" {
            if meta::is_deleting(&old) {
                return Ok(DeleteOutcome::Pending(old));
            }
            let mut new = (*old).clone();
            meta::metadata_mut(&mut new).insert("deletionTimestamp".into(), json!(now));
            meta::metadata_mut(&mut new).insert("deletionGracePeriodSeconds".into(), json!(0));
            new["status"]["phase"] = json!("Terminating");
            if d.dry_run {
                return Ok(DeleteOutcome::Pending(Arc::new(new)));
            }
            let out = self.commit_update(def, &old, new);
            self.gc_queue.push_back(GcWork::Namespace(name.to_string()));
            return Ok(DeleteOutcome::Pending(out));
        }
        if meta::is_deleting(&old) {
            let forced = is_pod && d.grace_seconds == Some(0);
            if forced && !meta::finalizers(&old).is_empty() {
                // The grace period ends now; the finalizers still hold the pod, and it goes when they do.
                let grace = old
                    .pointer("/metadata/deletionGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                if grace == 0 || d.dry_run {
                    return Ok(DeleteOutcome::Pending(old));
                }
                let mut new = (*old).clone();
                meta::metadata_mut(&mut new).insert("deletionGracePeriodSeconds".into(), json!(0));
                return Ok(DeleteOutcome::Pending(self.commit_update(def, &old, new)));
            }
            if !forced {
                return Ok(DeleteOutcome::Pending(old));
            }
            if d.dry_run {
                return Ok(DeleteOutcome::Gone(old));
            }
            return Ok(DeleteOutcome::Gone(self.commit_remove(def, &old)));
        }
        if is_pod {
            let node = old
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or("");
            let phase = old
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("");
            let grace = d.grace_seconds.unwrap_or_else(|| {
                old.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(30)
            });
            if !node.is_empty() && !matches!(phase, "Failed" | "Succeeded") && grace > 0 {
                // Graceful: the kubelet removes the pod once its containers stopped.
                let mut new = (*old).clone();
                let when = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace);
                let md = meta::metadata_mut(&mut new);
                md.insert("deletionTimestamp".into(), json!(meta::format_time(when)));
                md.insert("deletionGracePeriodSeconds".into(), json!(grace));
                if let Some(p) = d.propagation {
                    add_propagation_finalizer(&mut new, p);
                }
                if d.dry_run {
                    return Ok(DeleteOutcome::Pending(Arc::new(new)));
                }
                let out = self.commit_update(def, &old, new);
                self.queue_propagation(def, &out, d.propagation);
                return Ok(DeleteOutcome::Pending(out));
            }
        }
        let mut new = (*old).clone();
        if let Some(p) = d.propagation {
            add_propagation_finalizer(&mut new, p);
        }
        if !meta::finalizers(&new).is_empty() {
            let md = meta::metadata_mut(&mut new);
            md.insert("deletionTimestamp".into(), json!(now));
            md.insert("deletionGracePeriodSeconds".into(), json!(0));
            if opts.dry_run {
                return Ok(DeleteOutcome::Pending(Arc::new(new)));
            }
            let out = self.commit_update(def, &old, new);
            self.queue_propagation(def, &out, d.propagation);
            return Ok(DeleteOutcome::Pending(out));
        }
        if d.dry_run {
            return Ok(DeleteOutcome::Gone(old));
        }
        Ok(DeleteOutcome::Gone(self.commit_remove(def, &old)))
    }

    fn queue_propagation(&mut self, def: &ResourceDef, o: &Value, p: Option<Propagation>) {
        let key = (meta::namespace(o).to_string(), meta::name(o).to_string());
        match p {
            Some(Propagation::Foreground) => {
                self.gc_queue.push_back(GcWork::Foreground(def.key(), key))
            }
            Some(Propagation::Orphan) => self.gc_queue.push_back(GcWork::Orphan(def.key(), key)),
            _ => {}
        }
        if def.group == "apiextensions.k8s.io" {
            self.gc_queue
                .push_back(GcWork::CrdCleanup(meta::name(o).to_string()));
        }
    }

    // ----- commits: the only places that change `objects`, bump the RV and emit events -----

    fn emit(
        &mut self,
        def: &ResourceDef,
        kind: EventType,
        object: Arc<Value>,
        prev: Option<Arc<Value>>,
    ) {
        let ev = Arc::new(Event {
            rv: self.rv,
            res: def.key(),
            kind,
            object,
            prev,
        });
        self.log.push_back(ev.clone());
        while self.log.len() > self.log_cap {
            if let Some(e) = self.log.pop_front() {
                self.compacted_rv = e.rv;
            }
        }
        let _ = self.tx.send(ev);
    }

    fn commit_insert(&mut self, def: &ResourceDef, mut body: Value) -> Arc<Value> {
        self.rv += 1;
        meta::metadata_mut(&mut body).insert("resourceVersion".into(), json!(self.rv.to_string()));
        let key = (
            meta::namespace(&body).to_string(),
            meta::name(&body).to_string(),
        );
        let obj = Arc::new(body);
        self.index(def, &key, &obj);
        self.objects
            .entry(def.key())
            .or_default()
            .insert(key, obj.clone());
        self.emit(def, EventType::Added, obj.clone(), None);
        obj
    }

    fn commit_update(&mut self, def: &ResourceDef, old: &Arc<Value>, mut new: Value) -> Arc<Value> {
        self.rv += 1;
        meta::metadata_mut(&mut new).insert("resourceVersion".into(), json!(self.rv.to_string()));
        let key = (
            meta::namespace(&new).to_string(),
            meta::name(&new).to_string(),
        );
        let obj = Arc::new(new);
        self.unindex(def, &key, old);
        self.index(def, &key, &obj);
        self.objects
            .entry(def.key())
            .or_default()
            .insert(key, obj.clone());
        self.emit(def, EventType::Modified, obj.clone(), Some(old.clone()));
        obj
    }

    fn commit_remove(&mut self, def: &ResourceDef, old: &Arc<Value>) -> Arc<Value> {
        self.rv += 1;
        let key = (
            meta::namespace(old).to_string(),
            meta::name(old).to_string(),
        );
        if let Some(b) = self.objects.get_mut(&def.key()) {
            b.remove(&key);
        }
        self.unindex(def, &key, old);
        // The DELETED event carries a new resourceVersion, as etcd's delete revision.
        let mut last = (**old).clone();
        meta::metadata_mut(&mut last).insert("resourceVersion".into(), json!(self.rv.to_string()));
        let last = Arc::new(last);
        self.emit(def, EventType::Deleted, last.clone(), Some(old.clone()));
        let uid = meta::uid(old).to_string();
        if self.dependents.get(&uid).is_some_and(|d| !d.is_empty()) {
            self.gc_queue.push_back(GcWork::OwnerGone(uid));
        }
        for (owner, _) in meta::owner_uids(old) {
            if let Some((rk, ok)) = self.by_uid.get(&owner).cloned() {
                self.gc_queue.push_back(GcWork::Foreground(rk, ok));
            }
        }
        if def.namespaced {
            let ns_key = ("".to_string(), "namespaces".to_string());
            if self
                .objects
                .get(&ns_key)
                .and_then(|b| b.get(&(String::new(), key.0.clone())))
                .is_some_and(|n| meta::is_deleting(n))
            {
                self.gc_queue.push_back(GcWork::Namespace(key.0.clone()));
            }
        }
        if def.from_crd {
            let crd_name = format!("{}.{}", def.plural, def.group);
            self.gc_queue.push_back(GcWork::CrdCleanup(crd_name));
        }
        if def.group == "apiextensions.k8s.io"
            && let Ok(d) = registry::def_from_crd(old)
        {
            self.registry.remove(&d.key());
            self.objects.remove(&d.key());
        }
        last
    }

    fn index(&mut self, def: &ResourceDef, key: &ObjKey, o: &Value) {
        let uid = meta::uid(o).to_string();
        self.by_uid.insert(uid, (def.key(), key.clone()));
        for (owner, _) in meta::owner_uids(o) {
            self.dependents
                .entry(owner)
                .or_default()
                .insert((def.key(), key.clone()));
        }
    }

    fn unindex(&mut self, def: &ResourceDef, key: &ObjKey, o: &Value) {
        self.by_uid.remove(meta::uid(o));
        for (owner, _) in meta::owner_uids(o) {
            if let Some(d) = self.dependents.get_mut(&owner) {
                d.remove(&(def.key(), key.clone()));
                if d.is_empty() {
                    self.dependents.remove(&owner);
                }
            }
        }
    }

    fn obj_at(&self, rk: &ResKey, ok: &ObjKey) -> Option<(Arc<ResourceDef>, Arc<Value>)> {
        let def = self.registry.get(rk)?.clone();
        let o = self.objects.get(rk)?.get(ok)?.clone();
        Some((def, o))
    }

    fn gc_write(&mut self, def: &Arc<ResourceDef>, old: Arc<Value>, new: Value) {
        let opts = WriteOpts {
            manager: GC_MANAGER.into(),
            ..Default::default()
        };
        if let Err(e) = self.update_object(def, old, new, Scope::Main, &opts, true) {
            tracing::warn!(error = %e.message, "garbage collector update failed");
        }
    }

    fn gc_delete(&mut self, def: &Arc<ResourceDef>, o: &Value, p: Propagation) {
        let d = DeleteOpts {
            propagation: Some(p),
            ..Default::default()
        };
        if let Err(e) = self.delete(def, meta::namespace(o), meta::name(o), &d)
            && e.code != 404
        {
            tracing::warn!(error = %e.message, "garbage collector delete failed");
        }
    }

    /// Drains the garbage-collector queue.
    pub(crate) fn process_gc(&mut self) {
        // Bounded so that a pathological cycle cannot spin forever under the lock.
        let mut budget = 1_000_000usize;
        while let Some(w) = self.gc_queue.pop_front() {
            budget = budget.saturating_sub(1);
            if budget == 0 {
                tracing::error!("garbage collector budget exhausted; work dropped");
                self.gc_queue.clear();
                return;
            }
            match w {
                GcWork::OwnerGone(uid) => {
                    let deps: Vec<_> = self
                        .dependents
                        .get(&uid)
                        .map(|d| d.iter().cloned().collect())
                        .unwrap_or_default();
                    for (rk, ok) in deps {
                        self.collect_if_orphaned(&rk, &ok);
                    }
                }
                GcWork::Dangling(rk, ok) => self.collect_if_orphaned(&rk, &ok),
                GcWork::Foreground(rk, ok) => self.gc_foreground(&rk, &ok),
                GcWork::Orphan(rk, ok) => self.gc_orphan(&rk, &ok),
                GcWork::Namespace(ns) => self.gc_namespace(&ns),
                GcWork::CrdCleanup(name) => self.gc_crd(&name),
            }
        }
    }

    /// Deletes a dependent whose owners are all gone; drops references to missing owners otherwise.
    fn collect_if_orphaned(&mut self, rk: &ResKey, ok: &ObjKey) {
        let Some((def, o)) = self.obj_at(rk, ok) else {
            return;
        };
        let owners = meta::owner_uids(&o);
        // As upstream's garbage collector: an owner in another namespace (or a namespaced owner of a
        // cluster-scoped object) does not count, so the reference is as good as dangling.
        let missing: Vec<String> = owners
            .iter()
            .filter(|(u, _)| match self.by_uid.get(u) {
                None => true,
                Some((_, (owner_ns, _))) => !owner_ns.is_empty() && *owner_ns != ok.0,
            })
            .map(|(u, _)| u.clone())
            .collect();
        if missing.is_empty() {
            return;
        }
        if missing.len() == owners.len() {
            if !meta::is_deleting(&o) {
                self.gc_delete(&def, &o, Propagation::Background);
            }
        } else {
            let mut new = (*o).clone();
            if let Some(refs) = new
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|r| {
                    !missing
                        .iter()
                        .any(|m| r.get("uid").and_then(Value::as_str) == Some(m))
                });
            }
            self.gc_write(&def, o, new);
        }
    }

    fn gc_foreground(&mut self, rk: &ResKey, ok: &ObjKey) {
        let Some((def, owner)) = self.obj_at(rk, ok) else {
            return;
        };
        if !meta::finalizers(&owner)
            .iter()
            .any(|f| f == "foregroundDeletion")
        {
            return;
        }
        let uid = meta::uid(&owner).to_string();
        let deps: Vec<_> = self
            .dependents
            .get(&uid)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default();
        let mut blocking = 0;
        for (drk, dok) in deps {
            let Some((ddef, dep)) = self.obj_at(&drk, &dok) else {
                continue;
            };
            let blocks = meta::owner_uids(&dep).iter().any(|(u, b)| *u == uid && *b);
            if !meta::is_deleting(&dep) {
                let p = if blocks {
                    Propagation::Foreground
                } else {
                    Propagation::Background
                };
                self.gc_delete(&ddef, &dep, p);
            }
            if blocks && self.obj_at(&drk, &dok).is_some() {
                blocking += 1;
            }
        }
        if blocking == 0
            && let Some((def2, cur)) = self.obj_at(rk, ok)
        {
            let _ = def;
            let mut new = (*cur).clone();
            let f: Vec<String> = meta::finalizers(&cur)
                .into_iter()
                .filter(|f| f != "foregroundDeletion")
                .collect();
            meta::set_finalizers(&mut new, &f);
            self.gc_write(&def2, cur, new);
        }
    }

    fn gc_orphan(&mut self, rk: &ResKey, ok: &ObjKey) {
        let Some((def, owner)) = self.obj_at(rk, ok) else {
            return;
        };
        if !meta::finalizers(&owner).iter().any(|f| f == "orphan") {
            return;
        }
        let uid = meta::uid(&owner).to_string();
        let deps: Vec<_> = self
            .dependents
            .get(&uid)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default();
        for (drk, dok) in deps {
            let Some((ddef, dep)) = self.obj_at(&drk, &dok) else {
                continue;
            };
            let mut new = (*dep).clone();
            if let Some(refs) = new
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(&uid));
                if refs.is_empty()
                    && let Some(md) = new.get_mut("metadata").and_then(Value::as_object_mut)
                {
                    md.remove("ownerReferences");
                }
            }
            self.gc_write(&ddef, dep, new);
        }
        if let Some((_, cur)) = self.obj_at(rk, ok) {
            let mut new = (*cur).clone();
            let f: Vec<String> = meta::finalizers(&cur)
                .into_iter()
                .filter(|f| f != "orphan")
                .collect();
            meta::set_finalizers(&mut new, &f);
            self.gc_write(&def, cur, new);
        }
    }

    fn gc_namespace(&mut self, ns: &str) {
        let ns_def = self.def("", "namespaces");
        let Ok(nso) = self.get(&ns_def, "", ns) else {
            return;
        };
        if !meta::is_deleting(&nso) {
            return;
        }
        let defs: Vec<Arc<ResourceDef>> = self
            .registry
            .all()
            .filter(|d| d.namespaced)
            .cloned()
            .collect();
        let mut remaining = 0;
        for def in defs {
            for o in self.list(&def, Some(ns)) {
                if !meta::is_deleting(&o) {
                    self.gc_delete(&def, &o, Propagation::Background);
                }
            }
            remaining += self.list(&def, Some(ns)).len();
        }
        if remaining == 0 {
            let Ok(cur) = self.get(&ns_def, "", ns) else {
                return;
            };
            let mut new = (*cur).clone();
            if let Some(f) = new.pointer_mut("/spec/finalizers") {
                *f = json!([]);
            }
            self.gc_write(&ns_def, cur, new);
        }
    }

    fn gc_crd(&mut self, crd_name: &str) {
        let crd_def = self.def("apiextensions.k8s.io", "customresourcedefinitions");
        let Ok(crd) = self.get(&crd_def, "", crd_name) else {
            return;
        };
        if !meta::is_deleting(&crd) {
            return;
        }
        let remaining = match registry::def_from_crd(&crd)
            .ok()
            .and_then(|d| self.registry.get(&d.key()).cloned())
        {
            Some(def) => {
                for o in self.list(&def, None) {
                    if !meta::is_deleting(&o) {
                        self.gc_delete(&def, &o, Propagation::Background);
                    }
                }
                self.list(&def, None).len()
            }
            None => 0,
        };
        if remaining == 0 {
            let mut new = (*crd).clone();
            let f: Vec<String> = meta::finalizers(&crd)
                .into_iter()
                .filter(|f| f != CRD_CLEANUP_FINALIZER)
                .collect();
            meta::set_finalizers(&mut new, &f);
            self.gc_write(&crd_def, crd, new);
        }
    }
}

fn add_propagation_finalizer(o: &mut Value, p: Propagation) {
    let f = match p {
        Propagation::Foreground => "foregroundDeletion",
        Propagation::Orphan => "orphan",
        Propagation::Background => return,
    };
    let mut fs = meta::finalizers(o);
    if !fs.iter().any(|x| x == f) {
        fs.push(f.into());
    }
    meta::set_finalizers(o, &fs);
}

fn patch_error(e: patch::PatchError) -> ApiError {
    match e {
        patch::PatchError::Unprocessable(m) => ApiError::unprocessable(m),
        patch::PatchError::BadRequest(m) => ApiError::bad_request(m),
    }
}

fn apply_conflict(def: &ResourceDef, name: &str, e: &fieldmanager::ApplyError) -> ApiError {
    let mut err = ApiError::conflict(def, name, "");
    err.message = e.message();
    err.details =
        Some(json!({"name": name, "group": def.group, "kind": def.plural, "causes": e.causes()}));
    err
}

impl ApiError {
    fn with_forbidden_details(mut self, def: &ResourceDef, name: &str) -> Self {
        self.details = Some(json!({"name": name, "group": def.group, "kind": def.plural}));
        self
    }
}
