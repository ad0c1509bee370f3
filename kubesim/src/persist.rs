//! Durability for `--data-file`: the store written to one JSON file and read back at start, so that objects, their
//! uids and resourceVersions, the resources CRDs define and the global resourceVersion survive a restart.
//!
//! Owns the file format and when it is written: shortly after changes (debounced, so a burst of writes costs one
//! file write) and once more at shutdown, always atomically (temporary file, fsync, rename), so a crash leaves
//! either the old or the new file, never a torn one. It reads the store only through `Inner::export` and builds
//! it only through `Store::from_snapshot`; the change log is not kept, so watches from before a restart get the
//! in-stream 410 and relist, exactly as after an etcd compaction. It never changes an object.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::registry::ResKey;
use crate::store::{Snapshot, Store};

/// The shortest time between two writes. Short enough that a kubesim killed right after a test step has almost
/// certainly saved it; long enough that thousands of writes a second cost a handful of file writes.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// The pause after a write is at least this many times the write's duration, so that writing a large store takes
/// at most a fifth of the wall time (and of a core) however busy the cluster is.
const WRITE_TIME_FACTOR: u32 = 4;
/// Written into the file so that a future format can tell old files apart.
const FORMAT: &str = "kubesim.snapshot/v1";

#[derive(Serialize)]
struct FileOut<'a> {
    format: &'static str,
    #[serde(rename = "resourceVersion")]
    resource_version: String,
    #[serde(rename = "nextClusterIP")]
    next_cluster_ip: u32,
    objects: Vec<EntryOut<'a>>,
}

#[derive(Serialize)]
struct EntryOut<'a> {
    group: &'a str,
    resource: &'a str,
    object: &'a Value,
}

#[derive(Deserialize)]
struct FileIn {
    format: String,
    #[serde(rename = "resourceVersion")]
    resource_version: String,
    #[serde(rename = "nextClusterIP", default)]
    next_cluster_ip: u32,
    objects: Vec<EntryIn>,
}

#[derive(Deserialize)]
struct EntryIn {
    group: String,
    resource: String,
    object: Value,
}

/// Opens the store kept in `path`, or a fresh (seeded) one when the file does not exist yet. A file that exists
/// but cannot be read is an error: starting empty would silently lose the cluster.
pub(crate) fn open(path: &Path, log_cap: usize) -> io::Result<Arc<Store>> {
    let raw = match std::fs::read(path) {
        Ok(raw) => raw,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Store::new(log_cap)),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("reading {}: {e}", path.display()),
            ));
        }
    };
    let invalid = |why: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {why}", path.display()),
        )
    };
    let f: FileIn = serde_json::from_slice(&raw).map_err(|e| invalid(e.to_string()))?;
    if f.format != FORMAT {
        return Err(invalid(format!(
            "unknown format {:?} (expected {FORMAT:?})",
            f.format
        )));
    }
    let rv: u64 = f
        .resource_version
        .parse()
        .map_err(|_| invalid(format!("bad resourceVersion {:?}", f.resource_version)))?;
    // Entries of one resource are written together; group them back without assuming it.
    let mut grouped: BTreeMap<ResKey, Vec<Arc<Value>>> = BTreeMap::new();
    for e in f.objects {
        grouped
            .entry((e.group, e.resource))
            .or_default()
            .push(Arc::new(e.object));
    }
    let objects = grouped.into_iter().collect();
    let store = Store::from_snapshot(
        log_cap,
        Snapshot {
            rv,
            next_cluster_ip: f.next_cluster_ip,
            objects,
        },
    );
    tracing::info!(path = %path.display(), objects = store.lock().object_count(), resource_version = rv, "store loaded");
    Ok(store)
}

/// Writes the store to `path` now; returns the resourceVersion written.
pub(crate) async fn save(store: &Store, path: &Path) -> io::Result<u64> {
    let snap = store.lock().export();
    let rv = snap.rv;
    let path = path.to_path_buf();
    // Serializing a large store takes a while: keep it off the async workers.
    tokio::task::spawn_blocking(move || write_atomically(&path, &snap))
        .await
        .map_err(io::Error::other)??;
    Ok(rv)
}

fn write_atomically(path: &Path, snap: &Snapshot) -> io::Result<()> {
    let out = FileOut {
        format: FORMAT,
        resource_version: snap.rv.to_string(),
        next_cluster_ip: snap.next_cluster_ip,
        objects: snap
            .objects
            .iter()
            .flat_map(|((group, resource), objs)| {
                objs.iter().map(move |object| EntryOut {
                    group,
                    resource,
                    object,
                })
            })
            .collect(),
    };
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    {
        let file = std::fs::File::create(&tmp)?;
        let mut w = io::BufWriter::new(file);
        serde_json::to_writer(&mut w, &out)?;
        w.flush()?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    // Make the rename itself durable; not every filesystem lets a directory be opened, so this is best effort.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The background writer of one data file.
pub(crate) struct Persister {
    path: PathBuf,
    task: JoinHandle<u64>,
}

impl Persister {
    /// Starts writing `store` to `path` after changes, until `shutdown` fires.
    pub(crate) fn spawn(store: Arc<Store>, path: PathBuf, shutdown: watch::Receiver<bool>) -> Self {
        let task = tokio::spawn(run(store, path.clone(), shutdown));
        Persister { path, task }
    }

    /// Waits for the writer to stop and writes the final state. Call after every writer of the store has stopped.
    pub(crate) async fn finish(self, store: &Store) {
        let saved = self.task.await.unwrap_or(0);
        if saved == store.lock().rv {
            return;
        }
        if let Err(e) = save(store, &self.path).await {
            tracing::error!(path = %self.path.display(), error = %e, "final write of the data file failed");
        }
    }
}

/// Writes after changes, at most once per pause; returns the resourceVersion last written.
async fn run(store: Arc<Store>, path: PathBuf, mut shutdown: watch::Receiver<bool>) -> u64 {
    let mut changes = store.subscribe();
    // Zero forces a first write, so the file exists (with the seeded objects) from the start.
    let mut saved_rv = 0;
    let mut pause = DEBOUNCE;
    loop {
        // Notifications up to here are covered by the snapshot about to be taken; later ones trigger the next write.
        while let Ok(_) | Err(TryRecvError::Lagged(_)) = changes.try_recv() {}
        if store.lock().rv != saved_rv {
            let started = Instant::now();
            match save(&store, &path).await {
                Ok(rv) => saved_rv = rv,
                // Retried after the pause (the loop below does not wait for a change while unsaved).
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "writing the data file failed")
                }
            }
            pause = DEBOUNCE.max(started.elapsed() * WRITE_TIME_FACTOR);
        }
        if store.lock().rv == saved_rv {
            tokio::select! {
                r = changes.recv() => {
                    if let Err(RecvError::Closed) = r {
                        return saved_rv;
                    }
                }
                _ = shutdown.changed() => return saved_rv,
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => return saved_rv,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn round_trip_keeps_objects_and_resource_version() {
        let dir = std::env::temp_dir().join(format!("kubesim-persist-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("store.json");
        let store = open(&path, 100).unwrap();
        let created = store.write(|g| {
            let def = g.def("", "configmaps");
            g.create(
                &def,
                Some("default"),
                json!({"metadata": {"name": "kept"}, "data": {"a": "1"}}),
                &Default::default(),
            )
            .unwrap()
        });
        let rv = save(&store, &path).await.unwrap();
        assert!(
            !dir.join("store.json.tmp").exists(),
            "the temporary file was renamed"
        );

        let loaded = open(&path, 100).unwrap();
        let g = loaded.lock();
        assert_eq!(g.rv, rv);
        let def = g.def("", "configmaps");
        let got = g.get(&def, "default", "kept").unwrap();
        assert_eq!(got, created, "same uid, resourceVersion and content");
        assert!(
            g.events_since(rv - 1).is_none(),
            "the log starts empty at the loaded resourceVersion: older watches get 410"
        );
        assert_eq!(g.events_since(rv).map(|e| e.len()), Some(0));
        drop(g);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_an_empty_cluster() {
        let dir = std::env::temp_dir().join(format!("kubesim-persist-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("store.json");
        std::fs::write(&path, b"{\"format\": \"kubesim.snap").unwrap();
        let e = open(&path, 100).err().expect("corrupt file refused");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        std::fs::remove_dir_all(&dir).ok();
    }
}
