//! The Job controller (after upstream's `pkg/controller/job`) and the TTL-after-finished controller.
//!
//! Owns, for every Job: its pods (`<job>-<random>`, labelled with the job's name and uid) up to `parallelism`
//! while completions remain, `status` (startTime, active, ready, succeeded, failed, terminating,
//! completionTime) and the terminal conditions: `SuccessCriteriaMet` + `Complete` once `completions` pods
//! succeeded, `FailureTarget` + `Failed` once more than `backoffLimit` failed or `activeDeadlineSeconds` passed.
//! A finished Job with `ttlSecondsAfterFinished` is deleted when that time is up.
//!
//! Simplified: the NonIndexed completion mode only (Indexed jobs run the same way, without completion indexes),
//! failed pods are replaced at once (no exponential back-off), counts come from the pods that exist (no tracking
//! finalizers), and `suspend` only stops new pods from being created.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::{
    CONTROLLER_MANAGER, Controller, OwnerIndex, RETRY_AFTER_ERROR, WorkQueue, create, delete,
    int_at, is_ready, key_of, new_controller_ref, observe_owned, parse_time, resync_owned, str_at,
    write_status,
};
use crate::meta;
use crate::registry::ResourceDef;
use crate::store::{Event, Inner, ObjKey, Propagation};

/// The field manager of the TTL controller's deletes, as upstream records it.
const TTL_MANAGER: &str = "ttl-after-finished-controller";

/// Reconciles Jobs.
pub(crate) struct JobController {
    jobs: Arc<ResourceDef>,
    pods: Arc<ResourceDef>,
    pod_index: OwnerIndex,
}

/// Whether the Job has a terminal condition, and when it finished.
pub(crate) fn finished(job: &Value) -> Option<(bool, String)> {
    let conds = job
        .pointer("/status/conditions")
        .and_then(Value::as_array)?;
    conds.iter().find_map(|c| {
        let ty = str_at(c, "/type");
        (matches!(ty, "Complete" | "Failed") && str_at(c, "/status") == "True").then(|| {
            (
                ty == "Complete",
                str_at(c, "/lastTransitionTime").to_string(),
            )
        })
    })
}

fn job_condition(ty: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({"type": ty, "status": "True", "reason": reason, "message": message,
           "lastProbeTime": now, "lastTransitionTime": now})
}

impl JobController {
    pub(crate) fn new(jobs: Arc<ResourceDef>, pods: Arc<ResourceDef>) -> Self {
        JobController {
            jobs,
            pods,
            pod_index: OwnerIndex::new("Job"),
        }
    }

    fn new_pod(&self, job: &Value) -> Value {
        let (ns, name) = key_of(job);
        let uid = meta::uid(job);
        let template = job
            .pointer("/spec/template")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let mut l = super::labels(&template).cloned().unwrap_or_default();
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", uid),
            ("batch.kubernetes.io/job-name", name.as_str()),
            ("controller-uid", uid),
            ("job-name", name.as_str()),
        ] {
            l.insert(k.into(), json!(v));
        }
        let mut md = json!({
            "generateName": format!("{name}-"), "namespace": ns, "labels": l,
            "ownerReferences": [new_controller_ref(job)],
        });
        for f in ["annotations", "finalizers"] {
            if let Some(v) = template.pointer(&format!("/metadata/{f}")) {
                md[f] = v.clone();
            }
        }
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": md,
               "spec": template.get("spec").cloned().unwrap_or_else(|| json!({}))})
    }

    /// The TTL-after-finished controller: deletes a finished Job once its TTL is up.
    fn expire(&self, g: &mut Inner, job: &Value, finished_at: &str) -> Option<Duration> {
        let ttl = job
            .pointer("/spec/ttlSecondsAfterFinished")
            .and_then(Value::as_i64)?;
        let at = parse_time(finished_at)? + jiff::SignedDuration::from_secs(ttl.max(0));
        let now = jiff::Timestamp::now();
        if at > now {
            let left = (at - now).get_milliseconds().max(0) as u64;
            return Some(Duration::from_millis(left + 50));
        }
        let (ns, name) = key_of(job);
        let d = crate::store::DeleteOpts {
            propagation: Some(Propagation::Background),
            precondition_uid: Some(meta::uid(job).to_string()),
            ..Default::default()
        };
        if let Err(e) = g.delete(&self.jobs, &ns, &name, &d) {
            tracing::debug!(manager = TTL_MANAGER, job = name, error = %e.message, "TTL delete failed");
        }
        None
    }
}

impl Controller for JobController {
    const NAME: &'static str = "job-controller";

    fn resync(&mut self, g: &Inner, q: &mut WorkQueue) {
        resync_owned(g, &self.jobs, &self.pods, &mut self.pod_index, q);
    }

    fn observe(&mut self, ev: &Event, q: &mut WorkQueue) {
        observe_owned(ev, &self.jobs, &self.pods, &mut self.pod_index, q);
    }

    fn reconcile(&mut self, g: &mut Inner, key: &ObjKey) -> Option<Duration> {
        let job = g.get(&self.jobs, &key.0, &key.1).ok()?;
        if meta::is_deleting(&job) {
            return None;
        }
        if let Some((_, at)) = finished(&job) {
            return self.expire(g, &job, &at);
        }
        let uid = meta::uid(&job).to_string();
        let now = meta::now();
        let pods = self.pod_index.children_of(g, &self.pods, key, &uid);
        let active: Vec<&Arc<Value>> = pods
            .iter()
            .filter(|p| !super::is_terminal(p) && !meta::is_deleting(p))
            .collect();
        let terminating = pods
            .iter()
            .filter(|p| meta::is_deleting(p) && !super::is_terminal(p))
            .count() as i64;
        let succeeded = pods
            .iter()
            .filter(|p| super::phase(p) == "Succeeded")
            .count() as i64;
        let failed = pods.iter().filter(|p| super::phase(p) == "Failed").count() as i64;
        let succeeded = succeeded.max(int_at(&job, "/status/succeeded", 0));
        let failed = failed.max(int_at(&job, "/status/failed", 0));
        let completions = job.pointer("/spec/completions").and_then(Value::as_i64);
        let parallelism = int_at(&job, "/spec/parallelism", 1).max(0);
        let backoff_limit = int_at(&job, "/spec/backoffLimit", 6);
        let suspended = job
            .pointer("/spec/suspend")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let start = match str_at(&job, "/status/startTime") {
            "" if suspended => None,
            "" => Some(now.clone()),
            t => Some(t.to_string()),
        };
        let mut requeue = None;

        let past_deadline = match (
            job.pointer("/spec/activeDeadlineSeconds")
                .and_then(Value::as_i64),
            start.as_deref().and_then(parse_time),
        ) {
            (Some(secs), Some(t)) => {
                let at = t + jiff::SignedDuration::from_secs(secs);
                let now_ts = jiff::Timestamp::now();
                if at <= now_ts {
                    true
                } else {
                    requeue = Some(Duration::from_millis(
                        (at - now_ts).get_milliseconds().max(0) as u64 + 50,
                    ));
                    false
                }
            }
            _ => false,
        };
        let failure = if failed > backoff_limit {
            Some((
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ))
        } else if past_deadline {
            Some((
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            ))
        } else {
            None
        };
        let complete = failure.is_none()
            && match completions {
                Some(c) => succeeded >= c,
                None => succeeded > 0 && active.is_empty(),
            };

        let mut active_count = active.len() as i64;
        if failure.is_some() {
            for p in &active {
                delete(g, &self.pods, p, None, None);
            }
            active_count = 0;
        } else if !complete && !suspended {
            let remaining = completions
                .map(|c| (c - succeeded).max(0))
                .unwrap_or(parallelism);
            let want = parallelism.min(remaining);
            while active_count < want {
                match create(
                    g,
                    &self.pods,
                    &key.0,
                    self.new_pod(&job),
                    CONTROLLER_MANAGER,
                ) {
                    Some(p) => {
                        self.pod_index.record(&p, false);
                        active_count += 1;
                    }
                    None => {
                        requeue = Some(RETRY_AFTER_ERROR);
                        break;
                    }
                }
            }
        }
        let ready = if failure.is_some() {
            0
        } else {
            active.iter().filter(|p| is_ready(p)).count() as i64
        };

        let mut status = Map::new();
        if let Some(s) = &start {
            status.insert("startTime".into(), json!(s));
        }
        if active_count > 0 {
            status.insert("active".into(), json!(active_count));
        }
        status.insert("ready".into(), json!(ready));
        status.insert("terminating".into(), json!(terminating));
        if succeeded > 0 {
            status.insert("succeeded".into(), json!(succeeded));
        }
        if failed > 0 {
            status.insert("failed".into(), json!(failed));
        }
        status.insert("uncountedTerminatedPods".into(), json!({}));
        let mut conditions: Vec<Value> = job
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some((reason, message)) = failure {
            conditions.push(job_condition("FailureTarget", reason, message, &now));
            conditions.push(job_condition("Failed", reason, message, &now));
        } else if complete {
            let msg = "Reached expected number of succeeded pods";
            conditions.push(job_condition(
                "SuccessCriteriaMet",
                "CompletionsReached",
                msg,
                &now,
            ));
            conditions.push(job_condition("Complete", "CompletionsReached", msg, &now));
            status.insert("completionTime".into(), json!(now));
        }
        if !conditions.is_empty() {
            status.insert("conditions".into(), json!(conditions));
        }
        if !write_status(
            g,
            &self.jobs,
            &job,
            Value::Object(status),
            CONTROLLER_MANAGER,
        ) {
            return Some(RETRY_AFTER_ERROR);
        }
        if complete || failure.is_some() {
            // The TTL clock starts now.
            let job = g.get(&self.jobs, &key.0, &key.1).ok()?;
            return self.expire(g, &job, &now);
        }
        requeue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_reads_terminal_conditions() {
        let j = json!({"status": {"conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": "a"},
            {"type": "Complete", "status": "True", "lastTransitionTime": "b"}]}});
        assert_eq!(finished(&j), Some((true, "b".to_string())));
        assert_eq!(finished(&json!({"status": {}})), None);
    }
}
