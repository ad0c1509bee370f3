//! The namespace policy (`--allowed-namespaces`, `--denied-namespaces`): which namespaces the broker provisions
//! into and deprovisions from at all, whoever asks. It protects the cluster's own namespaces from a subject whose
//! grants are broader than intended (`namespaces: ["*"]`).

use crate::domain::glob;

/// Denied unless `--denied-namespaces` says otherwise: the cluster's system namespaces, and `default`, where
/// nothing a team owns should live.
pub const DEFAULT_DENIED: &str = "kube-*,default";

/// Allowed and denied namespace globs. Denied wins: a reserved namespace is opened only by replacing the denied
/// list, never by a broad allowed pattern.
#[derive(Debug, Clone, Default)]
pub struct NamespacePolicy {
    /// When non-empty, only namespaces matching one of these.
    pub allowed: Vec<String>,
    /// Never these.
    pub denied: Vec<String>,
}

impl NamespacePolicy {
    /// The policy from the flags' values; empty entries (an empty environment variable) are dropped.
    pub fn new(allowed: &[String], denied: &[String]) -> NamespacePolicy {
        let clean = |v: &[String]| {
            v.iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        NamespacePolicy {
            allowed: clean(allowed),
            denied: clean(denied),
        }
    }

    /// `Err` with the reason when the broker does not act in `namespace`.
    pub fn check(&self, namespace: &str) -> Result<(), String> {
        if glob::any_matches(&self.denied, namespace) {
            return Err(format!("namespace {namespace} is reserved"));
        }
        if !self.allowed.is_empty() && !glob::any_matches(&self.allowed, namespace) {
            return Err(format!(
                "namespace {namespace} is not one the broker may act in"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> Vec<String> {
        s.split(',').map(str::to_string).collect()
    }

    #[test]
    fn reserved_by_default() {
        let p = NamespacePolicy::new(&[], &list(DEFAULT_DENIED));
        assert_eq!(
            p.check("kube-system").unwrap_err(),
            "namespace kube-system is reserved"
        );
        assert!(p.check("kube-public").is_err());
        assert_eq!(
            p.check("default").unwrap_err(),
            "namespace default is reserved"
        );
        assert!(p.check("team-a").is_ok());
        assert!(p.check("defaults").is_ok());
    }

    #[test]
    fn denied_wins_over_allowed_and_a_value_replaces_the_default() {
        let p = NamespacePolicy::new(&list("*"), &list(DEFAULT_DENIED));
        assert!(p.check("kube-system").is_err());
        let p = NamespacePolicy::new(&list("team-*"), &list("kube-*"));
        assert!(p.check("team-a").is_ok());
        assert_eq!(
            p.check("default").unwrap_err(),
            "namespace default is not one the broker may act in"
        );
        let p = NamespacePolicy::new(&[], &list(""));
        assert!(p.check("default").is_ok());
        assert!(p.check("kube-system").is_ok());
    }
}
