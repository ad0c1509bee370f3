//! `GET pods/{name}/log`: what a kwok-like kubelet can say about a container it only pretends to run. Each
//! container's log is a few synthetic lines built from its status (started, ready, restarted, terminated), so
//! `kubectl logs` answers as it would, and refuses as upstream does for a container that never started.
//!
//! `follow=true` keeps the stream open and writes each new line as the container's status changes (ready,
//! exited), ending when the followed container exits or restarts, or the pod goes away, as a kubelet's stream
//! ends with its container. Simplified: `sinceSeconds`/`sinceTime`/`limitBytes` are ignored.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, watch};

use crate::apierror::{ApiError, ApiResult};
use crate::controllers::str_at;
use crate::meta;
use crate::realpods::Runtime;
use crate::store::{EventType, Store};
use std::path::PathBuf;

/// A `follow=true` log stream of one container.
pub(crate) struct Follow {
    pub pod: Arc<Value>,
    pub container: Option<String>,
    pub timestamps: bool,
    pub runtime: Option<Arc<Runtime>>,
}

impl Follow {
    /// Writes what the container's log gains until it ends, the client goes or kubesim stops.
    pub(crate) async fn run(
        self,
        store: Arc<Store>,
        mut shutdown: watch::Receiver<bool>,
        tx: mpsc::Sender<Bytes>,
    ) {
        if let Some(rt) = self.runtime.clone()
            && let Some(path) = real_log_path(&rt, &self.pod, self.container.as_deref(), false)
        {
            return self.follow_file(rt, path, store, shutdown, tx).await;
        }
        let container = self.container.as_deref();
        let full = |pod: &Value| log(pod, container, false, self.timestamps, None, None).ok();
        let Some(mut sent) = full(&self.pod) else {
            return;
        };
        let (ns, name, uid) = (
            meta::namespace(&self.pod).to_string(),
            meta::name(&self.pod).to_string(),
            meta::uid(&self.pod).to_string(),
        );
        let pods = store.lock().def("", "pods");
        let mut rx = store.subscribe();
        // Between the first read and the subscription the pod may have changed: look once more.
        let mut recheck = true;
        loop {
            let pod = if recheck {
                recheck = false;
                store.lock().get(&pods, &ns, &name).ok()
            } else {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tx.closed() => return,
                    ev = rx.recv() => match ev {
                        Ok(ev) => {
                            if ev.res != pods.key() || meta::uid(&ev.object) != uid {
                                continue;
                            }
                            if ev.kind == EventType::Deleted {
                                return;
                            }
                            Some(ev.object.clone())
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            recheck = true;
                            continue;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                }
            };
            let Some(pod) = pod.filter(|p| meta::uid(p) == uid) else {
                return;
            };
            let Some(now) = full(&pod) else { return };
            // A new container instance (a restart) starts a new log: this stream ends with the old one.
            let Some(added) = now.strip_prefix(sent.as_str()) else {
                return;
            };
            if !added.is_empty() && tx.send(Bytes::from(added.to_string())).await.is_err() {
                return;
            }
            let exited = now.contains(" exited with code ");
            sent = now;
            if exited {
                return;
            }
        }
    }
}

impl Follow {
    /// Follows a real container's log file: what it gains is sent as it comes, until the container exits (its
    /// status leaves `running`), restarts, the pod goes, the client goes or kubesim stops.
    async fn follow_file(
        self,
        rt: Arc<Runtime>,
        path: PathBuf,
        store: Arc<Store>,
        mut shutdown: watch::Receiver<bool>,
        tx: mpsc::Sender<Bytes>,
    ) {
        let mut offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let (ns, name, uid) = (
            meta::namespace(&self.pod).to_string(),
            meta::name(&self.pod).to_string(),
            meta::uid(&self.pod).to_string(),
        );
        let pods = store.lock().def("", "pods");
        let mut pending = String::new();
        let mut last_round = false;
        loop {
            if let Ok(bytes) = std::fs::read(&path)
                && bytes.len() as u64 > offset
            {
                let fresh = &bytes[offset as usize..];
                // Only whole records; a record being written is taken next time.
                let whole = fresh.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                offset += whole as u64;
                let text = render_cri(
                    &String::from_utf8_lossy(&fresh[..whole]),
                    self.timestamps,
                    &mut pending,
                );
                if !text.is_empty() && tx.send(Bytes::from(text)).await.is_err() {
                    return;
                }
            }
            if last_round {
                return;
            }
            let pod = store.lock().get(&pods, &ns, &name).ok();
            let still = pod.filter(|p| meta::uid(p) == uid).is_some_and(|p| {
                real_log_path(&rt, &p, self.container.as_deref(), false).as_ref() == Some(&path)
                    && container_status(&p, self.container.as_deref())
                        .is_some_and(|c| c.pointer("/state/running").is_some())
            });
            if !still {
                last_round = true;
                continue;
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tx.closed() => return,
                _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
            }
        }
    }
}

/// The status of the named container (or the only one).
fn container_status<'a>(pod: &'a Value, container: Option<&str>) -> Option<&'a Value> {
    let name = match container.filter(|c| !c.is_empty()) {
        Some(c) => c.to_string(),
        None => pod
            .pointer("/spec/containers/0/name")
            .and_then(Value::as_str)?
            .to_string(),
    };
    ["initContainerStatuses", "containerStatuses"]
        .iter()
        .filter_map(|k| {
            pod.pointer(&format!("/status/{k}"))
                .and_then(Value::as_array)
        })
        .flatten()
        .find(|c| str_at(c, "/name") == name)
}

/// The log file of a real container's current (or previous) run, when there is one.
fn real_log_path(
    rt: &Runtime,
    pod: &Value,
    container: Option<&str>,
    previous: bool,
) -> Option<PathBuf> {
    let status = container_status(pod, container)?;
    let name = str_at(status, "/name");
    let restarts = status
        .get("restartCount")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let uid = meta::uid(pod);
    let candidates: Vec<i64> = if previous {
        vec![restarts - 1]
    } else {
        // Between runs (a back-off) the current log is the last run's.
        vec![restarts, restarts - 1]
    };
    candidates
        .into_iter()
        .filter(|r| *r >= 0)
        .map(|r| rt.log_file(uid, name, r))
        .find(|p| p.is_file())
}

/// CRI log records (`<time> <stream> <F|P> <text>`) as a container's output, with the times when asked.
/// `pending` carries a partial line across calls.
fn render_cri(records: &str, timestamps: bool, pending: &mut String) -> String {
    let mut out = String::new();
    for rec in records.lines() {
        let mut parts = rec.splitn(4, ' ');
        let (Some(ts), Some(_stream), Some(tag), text) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next().unwrap_or(""),
        ) else {
            continue;
        };
        if pending.is_empty() && timestamps {
            pending.push_str(ts);
            pending.push(' ');
        }
        pending.push_str(text);
        if tag == "F" {
            out.push_str(pending);
            out.push('\n');
            pending.clear();
        }
    }
    out
}

/// The log text of one container of `pod`, as the query (`container`, `previous`, `timestamps`, `tailLines`)
/// asks for it: a real container's output under the container kubelet, otherwise lines built from its status.
pub(crate) fn log(
    pod: &Value,
    container: Option<&str>,
    previous: bool,
    timestamps: bool,
    tail_lines: Option<usize>,
    runtime: Option<&Runtime>,
) -> ApiResult<String> {
    let name = meta::name(pod);
    let spec_names: Vec<&str> = ["initContainers", "containers"]
        .iter()
        .filter_map(|k| pod.pointer(&format!("/spec/{k}")).and_then(Value::as_array))
        .flatten()
        .map(|c| str_at(c, "/name"))
        .collect();
    let regular: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| str_at(c, "/name"))
        .collect();
    let container = match container.filter(|c| !c.is_empty()) {
        Some(c) => c,
        None if regular.len() == 1 => regular[0],
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                regular.join(" ")
            )));
        }
    };
    if !spec_names.contains(&container) {
        return Err(ApiError::bad_request(format!(
            "container {container} is not valid for pod {name}"
        )));
    }
    let status = ["initContainerStatuses", "containerStatuses"]
        .iter()
        .filter_map(|k| {
            pod.pointer(&format!("/status/{k}"))
                .and_then(Value::as_array)
        })
        .flatten()
        .find(|c| str_at(c, "/name") == container);
    if let Some(rt) = runtime
        && let Some(path) = real_log_path(rt, pod, Some(container), previous)
    {
        let records = std::fs::read_to_string(&path).unwrap_or_default();
        let text = render_cri(&records, timestamps, &mut String::new());
        return Ok(match tail_lines {
            Some(n) => {
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(n)..]
                    .iter()
                    .map(|l| format!("{l}\n"))
                    .collect()
            }
            None => text,
        });
    }
    let image = status.map(|c| str_at(c, "/image")).unwrap_or("");
    let restarts = status
        .and_then(|c| c.get("restartCount"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let mut lines: Vec<(String, String)> = Vec::new();
    if previous {
        let Some(last) = status.and_then(|c| c.pointer("/lastState/terminated")) else {
            return Err(ApiError::bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{name}\" not found"
            )));
        };
        lines.push((
            str_at(last, "/startedAt").into(),
            format!("kubesim: container {container} started (image {image})"),
        ));
        lines.push((
            str_at(last, "/finishedAt").into(),
            format!(
                "kubesim: container {container} exited with code {} ({})",
                last.get("exitCode").and_then(Value::as_i64).unwrap_or(0),
                str_at(last, "/reason")
            ),
        ));
    } else if let Some(running) = status.and_then(|c| c.pointer("/state/running")) {
        let at = str_at(running, "/startedAt").to_string();
        lines.push((
            at.clone(),
            format!("kubesim: container {container} started (image {image})"),
        ));
        if restarts > 0 {
            lines.push((
                at.clone(),
                format!("kubesim: restart {restarts} after the container exited"),
            ));
        }
        if status.and_then(|c| c.get("ready")).and_then(Value::as_bool) == Some(true) {
            lines.push((at, format!("kubesim: container {container} is ready")));
        }
    } else if let Some(done) = status.and_then(|c| c.pointer("/state/terminated")) {
        lines.push((
            str_at(done, "/startedAt").into(),
            format!("kubesim: container {container} started (image {image})"),
        ));
        lines.push((
            str_at(done, "/finishedAt").into(),
            format!(
                "kubesim: container {container} exited with code {} ({})",
                done.get("exitCode").and_then(Value::as_i64).unwrap_or(0),
                str_at(done, "/reason")
            ),
        ));
    } else {
        let reason = status
            .map(|c| str_at(c, "/state/waiting/reason"))
            .filter(|r| !r.is_empty())
            .unwrap_or("ContainerCreating");
        let why = if reason.contains("ImagePull") || reason == "ErrImagePull" {
            "trying and failing to pull image".to_string()
        } else {
            reason.to_string()
        };
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {why}"
        )));
    }
    if let Some(n) = tail_lines {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    Ok(lines
        .into_iter()
        .map(|(at, line)| {
            if timestamps {
                format!("{} {line}\n", at.replace('Z', ".000000000Z"))
            } else {
                format!("{line}\n")
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(statuses: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "db"}, {"name": "sidecar"}]},
            "status": {"containerStatuses": statuses}})
    }

    #[test]
    fn a_running_container_tells_when_it_started_and_that_it_is_ready() {
        let p = pod(
            json!([{"name": "db", "image": "postgres:16", "ready": true, "restartCount": 0,
            "state": {"running": {"startedAt": "2026-12-01T10:00:00Z"}}}]),
        );
        let text = log(&p, Some("db"), false, false, None, None).unwrap();
        assert_eq!(
            text,
            "kubesim: container db started (image postgres:16)\nkubesim: container db is ready\n"
        );
        let stamped = log(&p, Some("db"), false, true, Some(1), None).unwrap();
        assert_eq!(
            stamped,
            "2026-12-01T10:00:00.000000000Z kubesim: container db is ready\n"
        );
    }

    #[test]
    fn cri_records_read_back_as_the_output() {
        let records = "2026-12-02T10:00:00.000000001Z stdout F hello\n\
            2026-12-02T10:00:00.000000002Z stderr P par\n\
            2026-12-02T10:00:00.000000003Z stderr F tial\n";
        assert_eq!(
            render_cri(records, false, &mut String::new()),
            "hello\npartial\n"
        );
        assert_eq!(
            render_cri(records, true, &mut String::new()),
            "2026-12-02T10:00:00.000000001Z hello\n2026-12-02T10:00:00.000000002Z partial\n"
        );
    }

    #[test]
    fn refusals_read_as_upstream_s() {
        let p = pod(
            json!([{"name": "db", "image": "postgres:16", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]),
        );
        assert_eq!(
            log(&p, None, false, false, None, None).unwrap_err().message,
            "a container name must be specified for pod p, choose one of: [db sidecar]"
        );
        assert_eq!(
            log(&p, Some("db"), false, false, None, None)
                .unwrap_err()
                .message,
            "container \"db\" in pod \"p\" is waiting to start: trying and failing to pull image"
        );
        assert_eq!(
            log(&p, Some("nope"), false, false, None, None)
                .unwrap_err()
                .code,
            400
        );
        assert!(
            log(&p, Some("db"), true, false, None, None)
                .unwrap_err()
                .message
                .starts_with("previous terminated container")
        );
    }
}
