//! Observation: one label-selected reflector per kind (records, StatefulSets, Pods, Services, PVCs, CronJobs),
//! shared as stores, with every event routed by the `kidp.io/deployment-id` label to whoever listens (the
//! supervisor). Reads never go to the API server; nothing here polls objects. Every reflector runs on the
//! caller's task tracker and ends when its cancellation token fires, so shutdown can wait for all of them before
//! the API server goes away.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::record::{ManagedResource, labels};

/// Events queued for the supervisor before the reflectors start dropping (and counting) nudges. Deployment
/// actors also re-evaluate on a timer, so a dropped nudge delays a transition, never loses it.
const EVENT_QUEUE: usize = 65_536;

/// What changed in the cluster, as far as deployments are concerned.
#[derive(Debug, Clone)]
pub enum Observed {
    /// A record was created or changed (or listed at start).
    Record(Arc<ManagedResource>),
    /// A record disappeared.
    RecordGone { deployment_id: String },
    /// An object owned by a deployment changed.
    Child { deployment_id: String },
}

/// Records by deployment id, kept beside the record store so that a lookup by id is one hash lookup, not a
/// scan of every record in the cluster. Entries are checked against the store on the way out, so one left
/// behind by a watch gap is never answered.
#[derive(Default)]
pub struct RecordIndex {
    ids: RwLock<HashMap<String, ObjectRef<ManagedResource>>>,
}

impl RecordIndex {
    fn insert(&self, rec: &ManagedResource) {
        let mut ids = self.ids.write().unwrap_or_else(|p| p.into_inner());
        ids.insert(rec.spec.deployment_id.clone(), ObjectRef::from_obj(rec));
    }

    fn remove(&self, id: &str) {
        let mut ids = self.ids.write().unwrap_or_else(|p| p.into_inner());
        ids.remove(id);
    }

    /// The record of deployment `id` in `store`.
    pub fn get(&self, store: &Store<ManagedResource>, id: &str) -> Option<Arc<ManagedResource>> {
        let key = {
            let ids = self.ids.read().unwrap_or_else(|p| p.into_inner());
            ids.get(id)?.clone()
        };
        store.get(&key).filter(|r| r.spec.deployment_id == id)
    }
}

/// The reflector stores of everything the broker manages.
#[derive(Clone)]
pub struct Stores {
    pub records: Store<ManagedResource>,
    /// Records by deployment id.
    pub record_ids: Arc<RecordIndex>,
    pub statefulsets: Store<StatefulSet>,
    pub pods: Store<Pod>,
    pub services: Store<Service>,
    pub pvcs: Store<PersistentVolumeClaim>,
    pub cronjobs: Store<CronJob>,
}

/// How many reflectors have completed their first list.
#[derive(Default)]
pub struct Synced {
    done: AtomicUsize,
}

/// Number of reflectors [`start`] runs.
pub const REFLECTORS: usize = 6;

impl Synced {
    pub fn all(&self) -> bool {
        self.done.load(Ordering::Relaxed) >= REFLECTORS
    }
}

fn selector() -> String {
    format!("{}={}", labels::MANAGED_BY, labels::MANAGED_BY_VALUE)
}

fn deployment_id<K: Resource>(o: &K) -> Option<String> {
    o.meta()
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::DEPLOYMENT_ID))
        .cloned()
}

/// Starts every reflector on `tasks`; each ends when `stop` is cancelled. Events go to `tx`.
pub fn start(
    client: Client,
    tx: mpsc::Sender<Observed>,
    synced: Arc<Synced>,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) -> Stores {
    let record_ids = Arc::new(RecordIndex::default());
    let run = Reflecting {
        client,
        tx,
        synced,
        tasks,
        stop,
        record_ids: record_ids.clone(),
    };
    Stores {
        records: run.reflect::<ManagedResource>("managedresources", true),
        record_ids,
        statefulsets: run.reflect::<StatefulSet>("statefulsets", false),
        pods: run.reflect::<Pod>("pods", false),
        services: run.reflect::<Service>("services", false),
        pvcs: run.reflect::<PersistentVolumeClaim>("persistentvolumeclaims", false),
        cronjobs: run.reflect::<CronJob>("cronjobs", false),
    }
}

/// Queue capacity for [`start`]'s channel.
pub fn channel() -> (mpsc::Sender<Observed>, mpsc::Receiver<Observed>) {
    mpsc::channel(EVENT_QUEUE)
}

fn send(tx: &mpsc::Sender<Observed>, ev: Observed) {
    if tx.try_send(ev).is_err() {
        crate::metrics::event_dropped();
    }
}

/// What every reflector of one [`start`] shares.
struct Reflecting<'a> {
    client: Client,
    tx: mpsc::Sender<Observed>,
    synced: Arc<Synced>,
    tasks: &'a TaskTracker,
    stop: &'a CancellationToken,
    record_ids: Arc<RecordIndex>,
}

impl Reflecting<'_> {
    /// Starts one label-selected reflector of `K` and returns its store.
    fn reflect<K>(&self, resource: &'static str, is_record: bool) -> Store<K>
    where
        K: Resource<DynamicType = ()>
            + Clone
            + std::fmt::Debug
            + DeserializeOwned
            + serde::Serialize
            + Send
            + Sync
            + 'static,
    {
        let (reader, writer) = reflector::store();
        let api: Api<K> = Api::all(self.client.clone());
        let cfg = watcher::Config::default().labels(&selector());
        // managedFields are most of an object's size and the broker never reads them: keep them out of the stores.
        let events = watcher(api, cfg).modify(|o: &mut K| o.meta_mut().managed_fields = None);
        let stream = reflector::reflector(writer, events).default_backoff();
        let (tx, synced, stop) = (self.tx.clone(), self.synced.clone(), self.stop.clone());
        let record_ids = self.record_ids.clone();
        self.tasks.spawn(async move {
            futures::pin_mut!(stream);
            let mut counted = false;
            // Shutdown cancels this before the API server goes away (the embedded one of --dev): the watch is
            // dropped mid-request instead of logging errors about a cluster that is gone.
            while let Some(Some(ev)) = stop.run_until_cancelled(stream.next()).await {
                match ev {
                    Ok(watcher::Event::InitDone) => {
                        if !counted {
                            synced.done.fetch_add(1, Ordering::Relaxed);
                            counted = true;
                        }
                    }
                    Ok(watcher::Event::Init) => {}
                    Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::InitApply(o)) => {
                        if is_record {
                            // The reflector store holds the same object; route a typed copy to the supervisor.
                            if let Ok(v) = serde_json::to_value(&o)
                                && let Ok(rec) = serde_json::from_value::<ManagedResource>(v)
                            {
                                record_ids.insert(&rec);
                                send(&tx, Observed::Record(Arc::new(rec)));
                            }
                        } else if let Some(id) = deployment_id(&o) {
                            send(&tx, Observed::Child { deployment_id: id });
                        }
                    }
                    Ok(watcher::Event::Delete(o)) => {
                        if let Some(id) = deployment_id(&o) {
                            let ev = if is_record {
                                record_ids.remove(&id);
                                Observed::RecordGone { deployment_id: id }
                            } else {
                                Observed::Child { deployment_id: id }
                            };
                            send(&tx, ev);
                        } else if is_record {
                            tracing::warn!(record = %o.name_any(), "a record without a deployment-id label was deleted");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%resource, error = %e, "watch failed; retrying with backoff");
                        crate::metrics::watch_error(resource);
                    }
                }
            }
        });
        reader
    }
}
