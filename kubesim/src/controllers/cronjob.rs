//! The CronJob controller, after upstream's `cronjob_controllerv2.go`.
//!
//! Owns, for every CronJob: creating a Job `<cronjob>-<minutes since the epoch>` at each scheduled time (the most
//! recent one missed since `lastScheduleTime`, or since creation, within `startingDeadlineSeconds`), the
//! `concurrencyPolicy` (Allow, Forbid, Replace), `suspend`, `status.active` / `lastScheduleTime` /
//! `lastSuccessfulTime`, deleting finished Jobs beyond the history limits, and `spec.timeZone`. It wakes at the
//! next scheduled time rather than polling.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::{Map, Value, json};

use super::job::finished;
use super::schedule::Schedule;
use super::{
    CONTROLLER_MANAGER, Controller, OwnerIndex, RETRY_AFTER_ERROR, WorkQueue, create, delete,
    key_of, new_controller_ref, observe_owned, parse_time, resync_owned, str_at, write_status,
};
use crate::meta;
use crate::registry::ResourceDef;
use crate::store::{Event, Inner, ObjKey, Propagation};

/// The annotation upstream puts on each Job with the time it was scheduled for.
const SCHEDULED_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Missed start times counted before giving up on finding the most recent one (upstream warns past 100).
const MAX_MISSED: usize = 100_000;

/// Reconciles CronJobs.
pub(crate) struct CronJobController {
    cronjobs: Arc<ResourceDef>,
    jobs: Arc<ResourceDef>,
    job_index: OwnerIndex,
}

fn format_ts(t: Timestamp) -> String {
    meta::format_time(t)
}

impl CronJobController {
    pub(crate) fn new(cronjobs: Arc<ResourceDef>, jobs: Arc<ResourceDef>) -> Self {
        CronJobController {
            cronjobs,
            jobs,
            job_index: OwnerIndex::new("CronJob"),
        }
    }

    fn new_job(&self, cj: &Value, scheduled: Timestamp) -> Value {
        let (ns, name) = key_of(cj);
        let jt = cj
            .pointer("/spec/jobTemplate")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let mut md = json!({
            "name": format!("{name}-{}", scheduled.as_second() / 60),
            "namespace": ns,
            "ownerReferences": [new_controller_ref(cj)],
        });
        if let Some(l) = jt.pointer("/metadata/labels") {
            md["labels"] = l.clone();
        }
        let mut ann = jt
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        ann.insert(SCHEDULED_ANNOTATION.into(), json!(format_ts(scheduled)));
        md["annotations"] = Value::Object(ann);
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": md,
               "spec": jt.get("spec").cloned().unwrap_or_else(|| json!({}))})
    }
}

fn job_ref(job: &Value) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job", "name": meta::name(job), "namespace": meta::namespace(job),
        "uid": meta::uid(job), "resourceVersion": meta::str_field(job, "resourceVersion"),
    })
}

impl Controller for CronJobController {
    const NAME: &'static str = "cronjob-controller";

    fn resync(&mut self, g: &Inner, q: &mut WorkQueue) {
        resync_owned(g, &self.cronjobs, &self.jobs, &mut self.job_index, q);
    }

    fn observe(&mut self, ev: &Event, q: &mut WorkQueue) {
        observe_owned(ev, &self.cronjobs, &self.jobs, &mut self.job_index, q);
    }

    fn reconcile(&mut self, g: &mut Inner, key: &ObjKey) -> Option<Duration> {
        let cj = g.get(&self.cronjobs, &key.0, &key.1).ok()?;
        if meta::is_deleting(&cj) {
            return None;
        }
        let uid = meta::uid(&cj).to_string();
        let schedule = match Schedule::parse(str_at(&cj, "/spec/schedule")) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(cronjob = key.1, error = e, "unparseable schedule");
                return None;
            }
        };
        let tz = match str_at(&cj, "/spec/timeZone") {
            "" => TimeZone::UTC,
            name => match TimeZone::get(name) {
                Ok(tz) => tz,
                Err(e) => {
                    tracing::debug!(cronjob = key.1, error = %e, "unknown time zone");
                    return None;
                }
            },
        };
        let now = Timestamp::now();
        let mut jobs = self.job_index.children_of(g, &self.jobs, key, &uid);
        jobs.sort_by(|a, b| {
            (meta::str_field(a, "creationTimestamp"), meta::name(a))
                .cmp(&(meta::str_field(b, "creationTimestamp"), meta::name(b)))
        });
        let prev = cj.get("status").cloned().unwrap_or_else(|| json!({}));
        let mut last_success = prev
            .get("lastSuccessfulTime")
            .and_then(Value::as_str)
            .and_then(parse_time);
        let mut active: Vec<Arc<Value>> = vec![];
        let (mut succeeded_jobs, mut failed_jobs) = (vec![], vec![]);
        for j in &jobs {
            match finished(j) {
                None if !meta::is_deleting(j) => active.push(j.clone()),
                None => {}
                Some((ok, at)) => {
                    if ok {
                        let done = str_at(j, "/status/completionTime");
                        let done = if done.is_empty() { at.as_str() } else { done };
                        if let Some(t) = parse_time(done)
                            && last_success.is_none_or(|l| t > l)
                        {
                            last_success = Some(t);
                        }
                        succeeded_jobs.push(j.clone());
                    } else {
                        failed_jobs.push(j.clone());
                    }
                }
            }
        }
        // History limits: the oldest finished Jobs beyond them are deleted, with their pods.
        for (list, limit_path, default) in [
            (&succeeded_jobs, "/spec/successfulJobsHistoryLimit", 3),
            (&failed_jobs, "/spec/failedJobsHistoryLimit", 1),
        ] {
            let limit = super::int_at(&cj, limit_path, default).max(0) as usize;
            if list.len() > limit {
                for j in &list[..list.len() - limit] {
                    delete(g, &self.jobs, j, None, Some(Propagation::Background));
                }
            }
        }

        let mut last_schedule = prev
            .get("lastScheduleTime")
            .and_then(Value::as_str)
            .and_then(parse_time);
        let mut requeue = None;
        let suspended = cj
            .pointer("/spec/suspend")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if !suspended {
            let created = parse_time(meta::str_field(&cj, "creationTimestamp")).unwrap_or(now);
            let mut earliest = last_schedule.unwrap_or(created);
            let deadline = cj
                .pointer("/spec/startingDeadlineSeconds")
                .and_then(Value::as_i64);
            if let Some(secs) = deadline {
                let floor = now - jiff::SignedDuration::from_secs(secs);
                if floor > earliest {
                    earliest = floor;
                }
            }
            // The most recent scheduled time in (earliest, now].
            let mut most_recent = None;
            let mut t = earliest;
            for _ in 0..MAX_MISSED {
                match schedule.next_after(t, &tz) {
                    Some(n) if n <= now => {
                        most_recent = Some(n);
                        t = n;
                    }
                    _ => break,
                }
            }
            if let Some(scheduled) = most_recent {
                let name = format!("{}-{}", key.1, scheduled.as_second() / 60);
                let exists = g.get(&self.jobs, &key.0, &name).is_ok();
                let policy = str_at(&cj, "/spec/concurrencyPolicy");
                if exists {
                    last_schedule = Some(scheduled);
                } else if policy == "Forbid" && !active.is_empty() {
                    // Skipped; the next scheduled time is tried again.
                } else {
                    if policy == "Replace" {
                        for j in active.drain(..) {
                            delete(g, &self.jobs, &j, None, Some(Propagation::Background));
                        }
                    }
                    match create(
                        g,
                        &self.jobs,
                        &key.0,
                        self.new_job(&cj, scheduled),
                        CONTROLLER_MANAGER,
                    ) {
                        Some(j) => {
                            self.job_index.record(&j, false);
                            active.push(j);
                            last_schedule = Some(scheduled);
                        }
                        None => requeue = Some(RETRY_AFTER_ERROR),
                    }
                }
            }
            if let Some(next) = schedule.next_after(now, &tz) {
                let ms = (next - now).get_milliseconds().max(0) as u64;
                // A little past the minute, so that the next sync sees it as due.
                requeue = super::sooner(requeue, Some(Duration::from_millis(ms + 100)));
            }
        }

        let mut status = Map::new();
        if !active.is_empty() {
            // References keep the resourceVersion they were taken at, as upstream's do.
            let prev_refs = prev.get("active").and_then(Value::as_array);
            let refs: Vec<Value> = active
                .iter()
                .map(|j| {
                    prev_refs
                        .and_then(|rs| rs.iter().find(|r| str_at(r, "/uid") == meta::uid(j)))
                        .cloned()
                        .unwrap_or_else(|| job_ref(j))
                })
                .collect();
            status.insert("active".into(), json!(refs));
        }
        if let Some(t) = last_schedule {
            status.insert("lastScheduleTime".into(), json!(format_ts(t)));
        }
        if let Some(t) = last_success {
            status.insert("lastSuccessfulTime".into(), json!(format_ts(t)));
        }
        if !write_status(
            g,
            &self.cronjobs,
            &cj,
            Value::Object(status),
            CONTROLLER_MANAGER,
        ) {
            return Some(RETRY_AFTER_ERROR);
        }
        requeue
    }
}
