//! Whether a subject may do an operation in a namespace: the namespace policy first (it binds everyone), then
//! the subject's grants — its token file entry, or a SubjectAccessReview for a Kubernetes user. Every refusal
//! is an audit line, as every accepted mutation is.

use super::{Broker, Refusal};
use crate::auth::{Authority, Operation, Subject};

impl Broker {
    /// `Ok` when `subject` may do `op` in `namespace`; `Refusal::Forbidden` naming the namespace and the action
    /// otherwise. Reads are not bound by the namespace policy: they change nothing, and a namespace reserved
    /// after records were made there stays visible.
    pub async fn authorize(
        &self,
        subject: &Subject,
        op: Operation,
        namespace: &str,
    ) -> Result<(), Refusal> {
        let action = op.action().as_str();
        let mutating = matches!(op, Operation::Provision | Operation::Deprovision);
        if mutating && let Err(reason) = self.access.namespaces.check(namespace) {
            return Err(refuse(subject, action, namespace, reason));
        }
        let denied = match subject.authority() {
            Authority::Unrestricted => None,
            Authority::TokenFile(grants) => (!grants.allow(op.action(), namespace))
                .then(|| format!("subject {subject} may not {action} in namespace {namespace}")),
            Authority::Kubernetes(user) => {
                let (allowed, reason) = self.access.kubernetes_allows(user, op, namespace).await?;
                if !allowed {
                    // The API server's reason goes to the log, not to the caller: it can describe RBAC
                    // objects the caller has no business reading.
                    tracing::info!(%subject, %namespace, verb = op.verb(), %reason, "SubjectAccessReview denied");
                }
                (!allowed).then(|| {
                    format!(
                        "subject {subject} may not {action} in namespace {namespace} (needs {} on managedresources.kidp.io)",
                        op.verb()
                    )
                })
            }
        };
        match denied {
            Some(reason) => Err(refuse(subject, action, namespace, reason)),
            None => Ok(()),
        }
    }
}

fn refuse(subject: &Subject, action: &str, namespace: &str, reason: String) -> Refusal {
    tracing::info!(
        action,
        outcome = "forbidden",
        subject = %subject,
        namespace = %namespace,
        reason = %reason,
        "request refused"
    );
    Refusal::Forbidden(reason)
}
