//! Replicas share the work through Leases: the namespaces are hashed into [`SHARDS`] shards, each shard is a
//! `coordination.k8s.io` Lease, and a deployment's actor runs only on the replica that holds its namespace's
//! shard. Every replica accepts requests (the record create is the serialization point); only the actors are
//! sharded. A namespace never spans two replicas, so the per-namespace throttle stays exact.
//!
//! Each replica also renews a Lease of its own (`kidp-broker-replica-<id>`): the live ones tell every replica how
//! many share the work, and each aims at holding `ceil(SHARDS / live)` shards — a lone replica holds them all, a
//! new one gets shards from the others as they release their surplus, a dead one's shards are taken once its
//! Leases expire.
//!
//! The safety rule is client-go's leader election, per shard. A holder renews every `retry`; it counts a
//! renewal from the moment it *sent* the request that succeeded, and stops the shard's actors once
//! `renew_deadline` has passed since then (fencing). Another replica takes a shard only when the Lease's
//! resourceVersion has not changed for `duration` of its own clock since it first saw that version. Because
//! `renew_deadline + 2 × retry ≤ duration` (checked at start), the old holder has stopped acting before anyone
//! can take over, whatever the two clocks say.
//!
//! Callbacks stay ordered and at-least-once across a handover because the actor that resumes reads what was
//! told from the record's status (`lastNotifiedPhase`), like a restarted broker; a delivery cut off by the
//! handover is sent again with the same event id.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::ObjectMeta;
use ractor::ActorRef;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::SupervisorMsg;
use crate::k8s::lease::LEASE_LABEL;
use crate::k8s::record::labels;
use crate::k8s::{Cluster, K8sError};

/// How many shards the namespaces are hashed into: the most replicas that can share the work. Every replica
/// must use the same number, so it is not configurable.
pub const SHARDS: u32 = 16;

/// Annotation naming the process (not the replica) that holds a Lease: a replica restarted under the same id
/// takes its Leases back at once, and two processes started with one id notice each other.
const INCARNATION: &str = "kidp.io/incarnation";

/// A replica Lease expired this long is deleted by whoever sees it (replicas come and go with pod names).
const FORGET_REPLICA_AFTER: u32 = 10;

/// The shard of a namespace: FNV-1a (32 bits) of its name, modulo [`SHARDS`]. Stable across versions: it
/// decides which replica acts, and replicas of different versions must agree during a rolling update.
pub fn shard_of(namespace: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in namespace.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % SHARDS
}

/// The Lease of a shard.
pub fn shard_lease_name(shard: u32) -> String {
    format!("kidp-broker-shard-{shard}")
}

/// The Lease a replica renews while it is alive.
pub fn replica_lease_name(replica: &str) -> String {
    format!("kidp-broker-replica-{replica}")
}

/// Lease timings (client-go's names and defaults).
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// Where the Leases live (the broker's own namespace).
    pub namespace: String,
    /// How long a Lease stays valid without renewal, as others judge it.
    pub duration: Duration,
    /// How long a holder keeps acting without a successful renewal.
    pub renew_deadline: Duration,
    /// How often Leases are renewed and free shards looked for.
    pub retry: Duration,
}

impl LeaseSettings {
    /// The fencing rule: a holder must have stopped before another replica may take over.
    pub fn validate(&self) -> Result<(), String> {
        if self.retry.is_zero() || self.renew_deadline <= self.retry {
            return Err("the lease renew deadline must be longer than the retry period".into());
        }
        if self.renew_deadline + self.retry * 2 > self.duration {
            return Err(format!(
                "the lease duration ({}s) must be at least the renew deadline ({}s) plus two retry periods ({}s each)",
                self.duration.as_secs_f64(),
                self.renew_deadline.as_secs_f64(),
                self.retry.as_secs_f64()
            ));
        }
        Ok(())
    }
}

/// What the coordinator tells the rest of the broker (readiness and metrics).
#[derive(Debug)]
pub struct Coordination {
    replica: String,
    renew_deadline: Duration,
    inner: Mutex<CoordinationInner>,
}

#[derive(Debug, Default)]
struct CoordinationInner {
    held: BTreeSet<u32>,
    /// When the replica's own Lease was last renewed (the request's start).
    renewed_at: Option<Instant>,
    last_error: Option<String>,
}

impl Coordination {
    pub fn new(replica: String, renew_deadline: Duration) -> Arc<Self> {
        Arc::new(Coordination {
            replica,
            renew_deadline,
            inner: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CoordinationInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This replica's identity.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// The shards this replica holds now.
    pub fn held(&self) -> Vec<u32> {
        self.lock().held.iter().copied().collect()
    }

    /// `Ok` while this replica takes part in sharing the work (its own Lease renewed within the renew
    /// deadline); otherwise why not.
    pub fn check(&self) -> Result<(), String> {
        let g = self.lock();
        match g.renewed_at {
            Some(t) if t.elapsed() < self.renew_deadline => Ok(()),
            _ => Err(format!(
                "cannot coordinate with other replicas through Leases: {}",
                g.last_error.as_deref().unwrap_or("not yet renewed")
            )),
        }
    }

    fn set_held(&self, held: BTreeSet<u32>) {
        crate::metrics::shards_held(&self.replica, &held);
        self.lock().held = held;
    }
}

struct Held {
    lease: Lease,
    /// Start of the request of the last successful renewal.
    renewed_at: Instant,
}

/// The coordinator of one replica: a task that renews, releases and acquires Leases, and tells the supervisor
/// which shards to run.
pub struct Coordinator {
    cluster: Arc<Cluster>,
    supervisor: ActorRef<SupervisorMsg>,
    settings: LeaseSettings,
    incarnation: String,
    status: Arc<Coordination>,
    held: BTreeMap<u32, Held>,
    /// Each Lease's last seen resourceVersion and when this replica first saw it.
    seen: HashMap<String, (String, Instant)>,
}

fn micro_now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

fn rv(l: &Lease) -> &str {
    l.metadata.resource_version.as_deref().unwrap_or_default()
}

fn holder(l: &Lease) -> Option<&str> {
    l.spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty())
}

fn incarnation(l: &Lease) -> Option<&str> {
    l.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(INCARNATION))
        .map(String::as_str)
}

impl Coordinator {
    pub fn new(
        cluster: Arc<Cluster>,
        supervisor: ActorRef<SupervisorMsg>,
        settings: LeaseSettings,
        status: Arc<Coordination>,
    ) -> Self {
        let incarnation = format!(
            "{:x}-{:x}",
            std::process::id(),
            jiff::Timestamp::now().as_nanosecond()
        );
        Coordinator {
            cluster,
            supervisor,
            settings,
            incarnation,
            status,
            held: BTreeMap::new(),
            seen: HashMap::new(),
        }
    }

    fn replica(&self) -> &str {
        self.status.replica()
    }

    fn ours(&self, l: &Lease) -> bool {
        holder(l) == Some(self.replica()) && incarnation(l) == Some(self.incarnation.as_str())
    }

    fn error(&self, what: &str, e: &K8sError) {
        tracing::warn!(error = %e, "leases: {what}");
        self.status.lock().last_error = Some(format!("{what}: {e}"));
    }

    /// Renews and rebalances every `retry` until `stop`; then releases every Lease it holds. The caller stops
    /// the actors before cancelling `stop`, so the release never lets another replica act alongside this one.
    pub async fn run(mut self, stop: CancellationToken) {
        if let Err(e) = self
            .cluster
            .ensure_namespace(&self.settings.namespace)
            .await
        {
            self.error("cannot read the lease namespace", &e);
        }
        loop {
            let started = Instant::now();
            // A round that hangs on the API server is cut short, so that fencing is checked in time.
            if tokio::time::timeout(self.settings.retry, self.round())
                .await
                .is_err()
            {
                self.status.lock().last_error =
                    Some("the API server did not answer within the retry period".into());
            }
            self.fence().await;
            let mut wake = started + self.settings.retry;
            if let Some(d) = self.next_fence() {
                wake = wake.min(d);
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
        self.release_all().await;
    }

    /// The earliest moment a held shard must be given up unless renewed.
    fn next_fence(&self) -> Option<Instant> {
        self.held
            .values()
            .map(|h| h.renewed_at + self.settings.renew_deadline)
            .min()
    }

    /// Stops the actors of every shard whose renew deadline has passed.
    async fn fence(&mut self) {
        let now = Instant::now();
        let late: Vec<u32> = self
            .held
            .iter()
            .filter(|(_, h)| now >= h.renewed_at + self.settings.renew_deadline)
            .map(|(s, _)| *s)
            .collect();
        for s in late {
            tracing::error!(
                shard = s,
                "lease not renewed within the renew deadline: stopping the shard's deployments"
            );
            self.give_up(s, "fenced").await;
        }
    }

    /// Stops a shard's actors and forgets it (the Lease itself is left alone).
    async fn give_up(&mut self, shard: u32, why: &'static str) {
        let stopped = self
            .supervisor
            .call(
                |reply| SupervisorMsg::ReleaseShard(shard, reply),
                Some(Duration::from_secs(30)),
            )
            .await;
        if !matches!(stopped, Ok(ractor::rpc::CallResult::Success(()))) {
            tracing::error!(
                shard,
                "the supervisor did not confirm the shard's actors stopped"
            );
        }
        self.held.remove(&shard);
        tracing::info!(shard, why, "shard given up");
        crate::metrics::shard_transition(self.replica(), why);
        self.publish_held();
    }

    /// Tells readiness and the metrics which shards this replica holds.
    fn publish_held(&self) {
        self.status.set_held(self.held.keys().copied().collect());
    }

    async fn take(&mut self, shard: u32, lease: Lease, renewed_at: Instant) {
        tracing::info!(shard, "shard acquired");
        self.held.insert(shard, Held { lease, renewed_at });
        let _ = self.supervisor.cast(SupervisorMsg::AcquireShard(shard));
        crate::metrics::shard_transition(self.replica(), "acquired");
        self.publish_held();
    }

    /// Whether another holder's Lease has gone unrenewed for its duration, by this replica's clock.
    fn expired(&self, l: &Lease, now: Instant) -> bool {
        let name = l.metadata.name.as_deref().unwrap_or_default();
        let secs = l
            .spec
            .as_ref()
            .and_then(|s| s.lease_duration_seconds)
            .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)))
            .unwrap_or(self.settings.duration);
        match self.seen.get(name) {
            Some((v, since)) if v == rv(l) => now.duration_since(*since) >= secs,
            _ => false,
        }
    }

    fn lease_body(&self, name: String, kind: &str, prev: Option<&Lease>) -> Lease {
        let now = micro_now();
        let prev_spec = prev.and_then(|l| l.spec.clone()).unwrap_or_default();
        let same_holder = prev.is_some_and(|l| holder(l) == Some(self.replica()));
        let transitions = prev_spec.lease_transitions.unwrap_or(0);
        Lease {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(self.settings.namespace.clone()),
                resource_version: prev.and_then(|l| l.metadata.resource_version.clone()),
                labels: Some(
                    [
                        (LEASE_LABEL.to_string(), kind.to_string()),
                        (
                            labels::MANAGED_BY.to_string(),
                            labels::MANAGED_BY_VALUE.to_string(),
                        ),
                    ]
                    .into(),
                ),
                annotations: Some([(INCARNATION.to_string(), self.incarnation.clone())].into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.replica().to_string()),
                lease_duration_seconds: Some(
                    i32::try_from(self.settings.duration.as_secs().max(1)).unwrap_or(i32::MAX),
                ),
                acquire_time: if same_holder {
                    prev_spec.acquire_time.clone()
                } else {
                    Some(now.clone())
                },
                renew_time: Some(now),
                lease_transitions: Some(if same_holder || prev.is_none() {
                    transitions
                } else {
                    transitions + 1
                }),
                ..Default::default()
            }),
        }
    }

    /// Creates the Lease, or replaces `prev` under its resourceVersion.
    async fn write(
        &self,
        name: String,
        kind: &str,
        prev: Option<&Lease>,
    ) -> Result<Lease, K8sError> {
        let body = self.lease_body(name, kind, prev);
        match prev {
            None => {
                self.cluster
                    .create_lease(&self.settings.namespace, &body)
                    .await
            }
            Some(_) => {
                self.cluster
                    .replace_lease(&self.settings.namespace, &body)
                    .await
            }
        }
    }

    /// One round: read every Lease, renew this replica's own, then renew, release and acquire shards.
    async fn round(&mut self) {
        let ns = self.settings.namespace.clone();
        let started = Instant::now();
        let leases = match self.cluster.list_leases(&ns).await {
            Ok(l) => l,
            Err(e) => return self.error("cannot list Leases", &e),
        };
        for l in &leases {
            let name = l.metadata.name.clone().unwrap_or_default();
            let v = rv(l).to_string();
            if self.seen.get(&name).is_none_or(|(old, _)| *old != v) {
                self.seen.insert(name, (v, started));
            }
        }
        let by_name: HashMap<&str, &Lease> = leases
            .iter()
            .filter_map(|l| Some((l.metadata.name.as_deref()?, l)))
            .collect();

        // This replica's own Lease, and who else is alive.
        let me = replica_lease_name(self.replica());
        match self
            .write(me.clone(), "replica", by_name.get(me.as_str()).copied())
            .await
        {
            Ok(_) => {
                let mut g = self.status.lock();
                g.renewed_at = Some(started);
                g.last_error = None;
            }
            Err(e) => self.error("cannot renew this replica's Lease", &e),
        }
        let mut live = 1u32;
        for l in leases.iter().filter(|l| {
            l.metadata
                .labels
                .as_ref()
                .and_then(|m| m.get(LEASE_LABEL))
                .map(String::as_str)
                == Some("replica")
        }) {
            let name = l.metadata.name.as_deref().unwrap_or_default();
            if name == me || holder(l).is_none() {
                continue;
            }
            if !self.expired(l, started) {
                live += 1;
            } else if self.seen.get(name).is_some_and(|(_, since)| {
                started.duration_since(*since) >= self.settings.duration * FORGET_REPLICA_AFTER
            }) {
                // Long gone: its pod name will not come back.
                let _ = self.cluster.delete_lease(&ns, name, rv(l)).await;
            }
        }
        let target = SHARDS.div_ceil(live) as usize;

        // Shards this replica believes it holds: still its own? Then renew them, all at once.
        let mut lost = vec![];
        for s in self.held.keys() {
            match by_name.get(shard_lease_name(*s).as_str()) {
                Some(l) if self.ours(l) => {}
                Some(l) => {
                    tracing::error!(shard = s, holder = ?holder(l), "shard lease taken by another holder");
                    lost.push(*s);
                }
                None => {
                    tracing::error!(shard = s, "shard lease deleted under this replica");
                    lost.push(*s);
                }
            }
        }
        for s in lost {
            self.give_up(s, "lost").await;
        }
        let renewals = futures::future::join_all(self.held.keys().map(|s| {
            let name = shard_lease_name(*s);
            let prev = by_name.get(name.as_str()).copied();
            let fut = self.write(name, "shard", prev);
            async move { (*s, fut.await) }
        }))
        .await;
        for (s, r) in renewals {
            match r {
                Ok(lease) => {
                    if let Some(h) = self.held.get_mut(&s) {
                        h.lease = lease;
                        h.renewed_at = started;
                    }
                }
                Err(e) if e.is_conflict() => {
                    tracing::error!(shard = s, "shard lease changed under this replica");
                    self.give_up(s, "lost").await;
                }
                Err(e) => self.error("cannot renew a shard Lease", &e),
            }
        }

        // More than a fair share: stop the surplus shards' actors, then hand their Leases back.
        while self.held.len() > target {
            let Some(&s) = self.held.keys().next_back() else {
                break;
            };
            let lease = self.held.get(&s).map(|h| h.lease.clone());
            self.give_up(s, "released").await;
            if let Some(l) = lease {
                self.clear(l).await;
            }
        }

        // Less than a fair share: take free shards, starting at a place of this replica's own so that
        // replicas starting together try different shards first.
        if self.held.len() < target {
            let offset = shard_of(self.replica());
            for i in 0..SHARDS {
                if self.held.len() >= target {
                    break;
                }
                let s = (offset + i) % SHARDS;
                if self.held.contains_key(&s) {
                    continue;
                }
                let name = shard_lease_name(s);
                let prev = by_name.get(name.as_str()).copied();
                let free = match prev {
                    None => true,
                    Some(l) => match holder(l) {
                        None => true,
                        // Ours, from an earlier incarnation of this replica (or a round cut short).
                        Some(h) if h == self.replica() => true,
                        Some(_) => self.expired(l, started),
                    },
                };
                if !free {
                    continue;
                }
                match self.write(name, "shard", prev).await {
                    Ok(lease) => self.take(s, lease, started).await,
                    Err(e) if e.is_conflict() || e.is_already_exists() => {}
                    Err(e) => self.error("cannot acquire a shard Lease", &e),
                }
            }
        }
    }

    /// Hands a Lease back (no holder), so that another replica may take it at once.
    async fn clear(&self, mut lease: Lease) {
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.renew_time = Some(micro_now());
        }
        if let Err(e) = self
            .cluster
            .replace_lease(&self.settings.namespace, &lease)
            .await
            && !e.is_conflict()
        {
            tracing::warn!(error = %e, "cannot hand a shard Lease back; it will expire");
        }
    }

    /// At shutdown (the actors are already stopped): hand every Lease back and delete this replica's own.
    async fn release_all(&mut self) {
        let held: Vec<Lease> = std::mem::take(&mut self.held)
            .into_values()
            .map(|h| h.lease)
            .collect();
        futures::future::join_all(held.into_iter().map(|l| self.clear(l))).await;
        self.status.set_held(BTreeSet::new());
        let me = replica_lease_name(self.replica());
        if let Ok(leases) = self.cluster.list_leases(&self.settings.namespace).await
            && let Some(l) = leases
                .iter()
                .find(|l| l.metadata.name.as_deref() == Some(me.as_str()) && self.ours(l))
        {
            let _ = self
                .cluster
                .delete_lease(&self.settings.namespace, &me, rv(l))
                .await;
        }
        tracing::info!("leases handed back");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_hash_to_stable_shards() {
        // Pinned: replicas of different versions must agree on where a namespace goes.
        assert_eq!(shard_of(""), 0x811c_9dc5 % SHARDS);
        assert_eq!(shard_of("team-a"), shard_of("team-a"));
        let spread: BTreeSet<u32> = (0..200).map(|i| shard_of(&format!("team-{i}"))).collect();
        assert_eq!(
            spread.len(),
            SHARDS as usize,
            "200 namespaces use every shard"
        );
        assert_eq!(shard_lease_name(7), "kidp-broker-shard-7");
    }

    #[test]
    fn fencing_rule_is_checked() {
        let s = |d, r, t| LeaseSettings {
            namespace: "kidp-system".into(),
            duration: Duration::from_secs(d),
            renew_deadline: Duration::from_secs(r),
            retry: Duration::from_secs(t),
        };
        assert!(s(15, 10, 2).validate().is_ok());
        assert!(s(6, 3, 1).validate().is_ok());
        assert!(s(15, 12, 2).validate().is_err(), "12 + 2×2 > 15");
        assert!(
            s(15, 2, 2).validate().is_err(),
            "deadline not longer than retry"
        );
        assert!(s(15, 10, 0).validate().is_err());
    }
}
