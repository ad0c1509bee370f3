//! The per-namespace provisioning throttle: at most N deployments of one namespace provision at once, the rest
//! wait in FIFO order. An actor of its own ([`Throttle`]); deployments hold a [`ThrottleRef`] and are told
//! through the callback they registered, so the throttle knows nothing of the deployment actor (no locks:
//! only its mailbox touches the queues).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::domain::DeploymentId;

/// Outcome of asking for a permit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permit {
    /// Go ahead.
    Granted,
    /// Wait; the 1-based position in the namespace's queue.
    Queued(usize),
}

/// Permits per namespace.
#[derive(Debug)]
pub struct NamespaceThrottle {
    limit: usize,
    namespaces: HashMap<String, Lane>,
}

#[derive(Debug, Default)]
struct Lane {
    running: HashSet<String>,
    waiting: VecDeque<String>,
}

impl NamespaceThrottle {
    /// A throttle allowing `limit` concurrent provisions per namespace (at least 1).
    pub fn new(limit: usize) -> Self {
        NamespaceThrottle {
            limit: limit.max(1),
            namespaces: HashMap::new(),
        }
    }

    /// Asks for a permit for deployment `id` in `ns`. Asking again while holding or waiting is idempotent.
    pub fn acquire(&mut self, ns: &str, id: &str) -> Permit {
        let lane = self.namespaces.entry(ns.to_string()).or_default();
        if lane.running.contains(id) {
            return Permit::Granted;
        }
        if let Some(pos) = lane.waiting.iter().position(|w| w == id) {
            return Permit::Queued(pos + 1);
        }
        if lane.running.len() < self.limit && lane.waiting.is_empty() {
            lane.running.insert(id.to_string());
            Permit::Granted
        } else {
            lane.waiting.push_back(id.to_string());
            Permit::Queued(lane.waiting.len())
        }
    }

    /// Returns `id`'s permit (or drops it from the queue). Returns the deployments granted as a result, in order.
    pub fn release(&mut self, ns: &str, id: &str) -> Vec<String> {
        let Some(lane) = self.namespaces.get_mut(ns) else {
            return vec![];
        };
        lane.running.remove(id);
        lane.waiting.retain(|w| w != id);
        let mut granted = vec![];
        while lane.running.len() < self.limit {
            let Some(next) = lane.waiting.pop_front() else {
                break;
            };
            lane.running.insert(next.clone());
            granted.push(next);
        }
        if lane.running.is_empty() && lane.waiting.is_empty() {
            self.namespaces.remove(ns);
        }
        granted
    }

    /// Queue positions of everyone waiting in `ns`, in order (1-based).
    pub fn waiting(&self, ns: &str) -> Vec<(String, usize)> {
        self.namespaces
            .get(ns)
            .map(|l| {
                l.waiting
                    .iter()
                    .enumerate()
                    .map(|(i, id)| (id.clone(), i + 1))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Deployments provisioning in `ns` right now.
    #[cfg(test)]
    fn running(&self, ns: &str) -> usize {
        self.namespaces
            .get(ns)
            .map(|l| l.running.len())
            .unwrap_or(0)
    }

    /// Deployments waiting across all namespaces.
    pub fn queued_total(&self) -> usize {
        self.namespaces.values().map(|l| l.waiting.len()).sum()
    }
}

/// Where the throttle tells a deployment about its permit.
pub type PermitSink = Arc<dyn Fn(Permit) + Send + Sync>;

/// Messages to the throttle.
pub enum ThrottleMsg {
    /// Ask for a permit for a deployment in a namespace; the answer (and every later change of queue
    /// position) goes to `sink`. Asking again while holding or waiting is idempotent.
    Acquire {
        namespace: String,
        id: DeploymentId,
        sink: PermitSink,
    },
    /// Return the permit, or leave the queue.
    Release { namespace: String, id: DeploymentId },
}

/// The throttle actor (state lives in [`ThrottleState`]).
pub struct Throttle;

/// The throttle's state: the queues and who to tell.
pub struct ThrottleState {
    queues: NamespaceThrottle,
    sinks: HashMap<String, PermitSink>,
}

/// A handle to the throttle.
pub type ThrottleRef = ActorRef<ThrottleMsg>;

impl Actor for Throttle {
    type Msg = ThrottleMsg;
    type State = ThrottleState;
    type Arguments = usize;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        limit: usize,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(ThrottleState {
            queues: NamespaceThrottle::new(limit),
            sinks: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ThrottleMsg::Acquire {
                namespace,
                id,
                sink,
            } => {
                let permit = st.queues.acquire(&namespace, id.as_str());
                if permit == Permit::Granted {
                    st.sinks.remove(id.as_str());
                } else {
                    st.sinks.insert(id.as_str().to_string(), sink.clone());
                }
                sink(permit);
            }
            ThrottleMsg::Release { namespace, id } => {
                st.sinks.remove(id.as_str());
                for granted in st.queues.release(&namespace, id.as_str()) {
                    if let Some(sink) = st.sinks.remove(&granted) {
                        sink(Permit::Granted);
                    }
                }
                for (waiting, pos) in st.queues.waiting(&namespace) {
                    if let Some(sink) = st.sinks.get(&waiting) {
                        sink(Permit::Queued(pos));
                    }
                }
            }
        }
        crate::metrics::provision_queue(st.queues.queued_total());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_up_to_the_limit_then_queues_fifo() {
        let mut t = NamespaceThrottle::new(2);
        assert_eq!(t.acquire("a", "1"), Permit::Granted);
        assert_eq!(t.acquire("a", "2"), Permit::Granted);
        assert_eq!(t.acquire("a", "3"), Permit::Queued(1));
        assert_eq!(t.acquire("a", "4"), Permit::Queued(2));
        assert_eq!(
            t.acquire("b", "5"),
            Permit::Granted,
            "namespaces are independent"
        );
        assert_eq!(
            t.acquire("a", "3"),
            Permit::Queued(1),
            "asking again is idempotent"
        );
        assert_eq!(t.release("a", "1"), vec!["3".to_string()]);
        assert_eq!(t.waiting("a"), vec![("4".to_string(), 1)]);
        assert_eq!(t.running("a"), 2);
        assert_eq!(
            t.release("a", "4"),
            Vec::<String>::new(),
            "a waiter can leave the queue"
        );
        assert_eq!(t.release("a", "2"), Vec::<String>::new());
        assert_eq!(t.release("a", "3"), Vec::<String>::new());
        assert_eq!(t.running("a"), 0);
        assert_eq!(t.queued_total(), 0);
    }

    #[tokio::test]
    async fn the_actor_grants_in_order_and_tells_new_positions() {
        use std::sync::Mutex;
        let (t, handle) = Actor::spawn(None, Throttle, 1).await.unwrap();
        let told: Arc<Mutex<Vec<(String, Permit)>>> = Arc::default();
        let ids: Vec<DeploymentId> = (0..3).map(|_| DeploymentId::generate()).collect();
        for (i, id) in ids.iter().enumerate() {
            let told = told.clone();
            let name = format!("d{i}");
            t.cast(ThrottleMsg::Acquire {
                namespace: "ns".into(),
                id: id.clone(),
                sink: Arc::new(move |p| told.lock().unwrap().push((name.clone(), p))),
            })
            .unwrap();
        }
        t.cast(ThrottleMsg::Release {
            namespace: "ns".into(),
            id: ids[0].clone(),
        })
        .unwrap();
        t.drain_and_wait(None).await.unwrap();
        handle.await.unwrap();
        let told = told.lock().unwrap().clone();
        assert_eq!(
            told,
            vec![
                ("d0".to_string(), Permit::Granted),
                ("d1".to_string(), Permit::Queued(1)),
                ("d2".to_string(), Permit::Queued(2)),
                ("d1".to_string(), Permit::Granted),
                ("d2".to_string(), Permit::Queued(1)),
            ]
        );
    }

    #[test]
    fn a_newcomer_never_overtakes_the_queue() {
        let mut t = NamespaceThrottle::new(1);
        assert_eq!(t.acquire("a", "1"), Permit::Granted);
        assert_eq!(t.acquire("a", "2"), Permit::Queued(1));
        assert_eq!(t.release("a", "1"), vec!["2".to_string()]);
        assert_eq!(t.acquire("a", "3"), Permit::Queued(1));
    }
}
