//! The ClusterRole aggregation controller (upstream's `clusterroleaggregation`): a ClusterRole with an
//! `aggregationRule` holds the rules of every ClusterRole its selectors match, kept as those roles change.

use std::sync::Arc;
use std::time::Duration;

use super::{Controller, WorkQueue, is_of, update};
use crate::rbac;
use crate::registry::ResourceDef;
use crate::store::{Event, Inner, ObjKey};

const MANAGER: &str = "clusterrole-aggregation-controller";

pub(crate) struct AggregationController {
    cluster_roles: Arc<ResourceDef>,
}

impl AggregationController {
    pub(crate) fn new(cluster_roles: Arc<ResourceDef>) -> Self {
        AggregationController { cluster_roles }
    }

    /// The one key: any ClusterRole change can change any aggregate, and there are few of them.
    fn all() -> ObjKey {
        (String::new(), String::new())
    }
}

impl Controller for AggregationController {
    const NAME: &'static str = "clusterrole-aggregation";

    fn resync(&mut self, _g: &Inner, q: &mut WorkQueue) {
        q.add(Self::all());
    }

    fn observe(&mut self, ev: &Event, q: &mut WorkQueue) {
        if is_of(ev, &self.cluster_roles) {
            q.add(Self::all());
        }
    }

    fn reconcile(&mut self, g: &mut Inner, _key: &ObjKey) -> Option<Duration> {
        for role in g.list(&self.cluster_roles, None) {
            let Some(rules) = rbac::aggregated_rules(g, &role) else {
                continue;
            };
            let rules = serde_json::Value::Array(rules);
            if role.get("rules") == Some(&rules) {
                continue;
            }
            let mut new = (*role).clone();
            new["rules"] = rules;
            update(g, &self.cluster_roles, new, MANAGER);
        }
        None
    }
}
