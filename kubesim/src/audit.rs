//! An in-memory record of authorization decisions (`Options::audit`): who asked to do what, and whether RBAC
//! let them. Tests read it to prove a Role least-privilege: every rule is what some request needed and
//! nothing else granted.

use std::sync::Mutex;

use crate::authn::UserInfo;
use crate::rbac::Attributes;

/// The most decisions kept; later ones are dropped (and counted).
const MAX_ENTRIES: usize = 1_000_000;

/// One authorization decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    pub user: String,
    pub groups: Vec<String>,
    pub verb: String,
    /// False for a non-resource request (`/version`, `/apis`, …); then only `path` is set.
    pub resource_request: bool,
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub path: String,
    pub allowed: bool,
}

#[derive(Default)]
pub(crate) struct AuditLog {
    entries: Mutex<(Vec<AuditEntry>, usize)>,
}

impl AuditLog {
    pub(crate) fn record(&self, user: &UserInfo, a: &Attributes, allowed: bool) {
        let mut g = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if g.0.len() >= MAX_ENTRIES {
            g.1 += 1;
            return;
        }
        g.0.push(AuditEntry {
            user: user.username.clone(),
            groups: user.groups.clone(),
            verb: a.verb.clone(),
            resource_request: a.resource_request,
            api_group: a.api_group.clone(),
            resource: a.resource.clone(),
            subresource: a.subresource.clone(),
            namespace: a.namespace.clone(),
            name: a.name.clone(),
            path: a.path.clone(),
            allowed,
        });
    }

    pub(crate) fn entries(&self) -> Vec<AuditEntry> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }
}
