//! Who is calling and what they were granted: bearer tokens from a token file, Kubernetes TokenReview (with
//! SubjectAccessReview for the decisions), client certificates (granted by the token file entry of their
//! subject), `--dev-token`, or nothing at all when explicitly configured so; and the namespace policy. Produces a [`Subject`] for the HTTP layer and answers the questions the use cases ask.
//!
//! Knows no HTTP or TLS: the HTTP layer hands in the bearer token it found and the names of the verified
//! client certificate of the connection. Decides nothing on its own: whether a
//! request may go ahead is `crate::usecases`' call, made from what this module reports.

pub mod namespaces;
pub mod token_file;

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use subtle::ConstantTimeEq as _;
use tokio::time::Instant;

use self::namespaces::NamespacePolicy;
use self::token_file::{TokenDigest, TokenFile};
use crate::config::Args;
use crate::k8s::K8sError;
use crate::k8s::reviews::{self, KubeUser};

/// How long a TokenReview or SubjectAccessReview answer is reused. Short enough that a revoked token or
/// RoleBinding stops working within seconds; long enough that a burst of requests from one manager costs one
/// review, not one per request (the API server's own webhook authorizer caches for minutes).
const REVIEW_CACHE_TTL: Duration = Duration::from_secs(10);

/// Most answers kept per cache. Keys are per token and per (user, verb, namespace), so this bounds the memory a
/// caller presenting many distinct tokens can make the broker hold.
const REVIEW_CACHE_MAX: usize = 4096;

/// What a subject may be granted, in the token file's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Provision,
    Deprovision,
    Read,
}

impl Action {
    /// The action's name, as the token file and 403 messages spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Provision => "provision",
            Action::Deprovision => "deprovision",
            Action::Read => "read",
        }
    }
}

/// What one request does to the ManagedResources of a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `POST /v1/provision`.
    Provision,
    /// `POST /v1/deprovision`.
    Deprovision,
    /// `GET /v1/status`: one deployment.
    Get,
    /// `GET`/`POST /v1/resources`: a namespace's deployments.
    List,
}

impl Operation {
    /// The action a token file grant must name.
    pub fn action(self) -> Action {
        match self {
            Operation::Provision => Action::Provision,
            Operation::Deprovision => Action::Deprovision,
            Operation::Get | Operation::List => Action::Read,
        }
    }

    /// The Kubernetes verb on `managedresources.kidp.io` that a SubjectAccessReview asks about: the broker
    /// creates a record to provision and deletes it to deprovision, so RBAC reads naturally.
    pub fn verb(self) -> &'static str {
        match self {
            Operation::Provision => "create",
            Operation::Deprovision => "delete",
            Operation::Get => "get",
            Operation::List => "list",
        }
    }
}

/// One token file entry's grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    /// Who, in audit lines.
    pub subject: String,
    /// Namespace globs.
    pub namespaces: Vec<String>,
    pub actions: Vec<Action>,
}

impl Grants {
    /// Whether these grants cover `action` in `namespace`.
    pub fn allow(&self, action: Action, namespace: &str) -> bool {
        self.actions.contains(&action)
            && crate::domain::glob::any_matches(&self.namespaces, namespace)
    }
}

/// Where a subject's permissions come from.
#[derive(Debug, Clone)]
pub enum Authority {
    /// Everything (`--dev`, `--dev-token`, `--insecure-no-auth`); the namespace policy still applies.
    Unrestricted,
    /// A token file entry.
    TokenFile(Arc<Grants>),
    /// A Kubernetes user: every decision is a SubjectAccessReview.
    Kubernetes(Arc<KubeUser>),
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Subject {
    name: String,
    authority: Authority,
}

impl Subject {
    /// The caller when authentication is disabled.
    pub fn anonymous() -> Subject {
        Subject {
            name: "anonymous".into(),
            authority: Authority::Unrestricted,
        }
    }

    /// The name audit lines carry.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the subject's permissions come from.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a request has no subject.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credentials were presented; says which would do.
    #[error("{0} required")]
    Missing(&'static str),
    /// A verified client certificate names no one (no URI SAN, no CN).
    #[error("the client certificate names no subject (no URI SAN and no CN)")]
    NamelessCertificate,
    /// The token is not known, or the API server does not authenticate it.
    #[error("the bearer token is not valid")]
    Invalid,
    /// The API server could not be asked.
    #[error(transparent)]
    Unavailable(#[from] K8sError),
}

/// Answers kept for a while ([`REVIEW_CACHE_TTL`]), at most [`REVIEW_CACHE_MAX`] of them.
struct ReviewCache<K, V> {
    ttl: Duration,
    // A std mutex: held for a map lookup or insert, never across an await.
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> ReviewCache<K, V> {
    fn new(ttl: Duration) -> Self {
        ReviewCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    fn insert(&self, key: K, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= REVIEW_CACHE_MAX {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            // Still full of live answers (a flood of distinct keys): start over rather than grow. The cost is
            // a round of fresh reviews, never a wrong answer.
            if entries.len() >= REVIEW_CACHE_MAX {
                entries.clear();
            }
        }
        entries.insert(key, (Instant::now(), value));
    }
}

/// `--auth-kubernetes`: TokenReview for who, SubjectAccessReview for what, both cached briefly.
struct KubernetesAuth {
    audiences: Vec<String>,
    client: Option<kube::Client>,
    tokens: ReviewCache<TokenDigest, Option<Arc<KubeUser>>>,
    decisions: ReviewCache<(Arc<KubeUser>, &'static str, String), (bool, String)>,
}

/// Authentication and the namespace policy, as configured.
pub struct Access {
    /// Why no authentication is required, when none is.
    disabled: Option<&'static str>,
    dev_token: Option<TokenDigest>,
    token_file: Option<Arc<TokenFile>>,
    kubernetes: Option<KubernetesAuth>,
    /// Whether verified client certificates authenticate (`--tls-client-ca-file`).
    certificates: bool,
    /// Where the broker provisions and deprovisions at all.
    pub namespaces: NamespacePolicy,
}

impl Access {
    /// The configuration from the flags: at least one way to authenticate, unless `--dev` or
    /// `--insecure-no-auth` says to serve without. A malformed token file is an error here, at start.
    pub fn from_args(args: &Args) -> anyhow::Result<Access> {
        #[cfg(feature = "dev")]
        let (dev, dev_token) = (
            args.dev,
            args.dev_token
                .as_deref()
                .filter(|t| !t.is_empty())
                .map(token_file::digest),
        );
        #[cfg(not(feature = "dev"))]
        let (dev, dev_token): (bool, Option<TokenDigest>) = (false, None);
        let token_file = match args.auth_token_file.as_deref() {
            Some(p) if !p.as_os_str().is_empty() => Some(Arc::new(TokenFile::open(p)?)),
            _ => None,
        };
        let kubernetes = args.auth_kubernetes.then(|| KubernetesAuth {
            audiences: args
                .auth_audience
                .iter()
                .filter(|a| !a.is_empty())
                .cloned()
                .collect(),
            client: None,
            tokens: ReviewCache::new(REVIEW_CACHE_TTL),
            decisions: ReviewCache::new(REVIEW_CACHE_TTL),
        });
        let certificates = args.tls_client_ca_file.is_some();
        if certificates && token_file.is_none() {
            // clap already requires the pair; an empty path must not slip through either.
            anyhow::bail!(
                "--tls-client-ca-file grants certificate subjects through --auth-token-file entries; set --auth-token-file"
            );
        }
        let configured = token_file.is_some() || kubernetes.is_some() || dev_token.is_some();
        let disabled = match (configured, args.insecure_no_auth, dev) {
            (true, true, _) => anyhow::bail!(
                "--insecure-no-auth contradicts the authentication configured (--auth-token-file, --auth-kubernetes, --tls-client-ca-file or --dev-token); choose one"
            ),
            (true, false, _) => None,
            (false, true, _) => Some("--insecure-no-auth"),
            (false, false, true) => Some("--dev"),
            (false, false, false) => anyhow::bail!(
                "no authentication configured: set --auth-token-file PATH and/or --auth-kubernetes (KIDP_AUTH_TOKEN_FILE, KIDP_AUTH_KUBERNETES), or --insecure-no-auth (KIDP_INSECURE_NO_AUTH) to serve without authentication"
            ),
        };
        Ok(Access {
            disabled,
            dev_token,
            token_file,
            kubernetes,
            certificates,
            namespaces: NamespacePolicy::new(&args.allowed_namespaces, &args.denied_namespaces),
        })
    }

    /// Gives `--auth-kubernetes` the client its reviews go through.
    pub fn connect(&mut self, client: &kube::Client) {
        if let Some(k) = &mut self.kubernetes {
            k.client = Some(client.clone());
        }
    }

    /// The flag that switched authentication off, when one did.
    pub fn disabled_by(&self) -> Option<&'static str> {
        self.disabled
    }

    /// The token file, for the task that reloads it.
    pub fn token_file(&self) -> Option<Arc<TokenFile>> {
        self.token_file.clone()
    }

    /// What a request without credentials is missing.
    pub fn missing(&self) -> AuthError {
        AuthError::Missing(if self.certificates {
            "a client certificate or an Authorization: Bearer token is"
        } else {
            "an Authorization: Bearer token is"
        })
    }

    /// Who presents `bearer` (the token of an `Authorization: Bearer` header) over a connection whose verified
    /// client certificate has `certificate` names (URI SANs, then CNs). A token, when presented, decides: one
    /// the file knows by the file, any other by the API server when `--auth-kubernetes` is on. Without one,
    /// the certificate's subject is the first of its names that a token file entry names (else its first
    /// name, granted nothing).
    pub async fn authenticate(
        &self,
        bearer: Option<&str>,
        certificate: Option<&[String]>,
    ) -> Result<Subject, AuthError> {
        if self.disabled.is_some() {
            return Ok(Subject::anonymous());
        }
        let Some(token) = bearer.filter(|t| !t.is_empty()) else {
            return match certificate {
                Some(names) if self.certificates => self.certificate_subject(names),
                _ => Err(self.missing()),
            };
        };
        let presented = token_file::digest(token);
        if let Some(dev) = &self.dev_token
            && bool::from(dev.ct_eq(&presented))
        {
            return Ok(Subject {
                name: "dev".into(),
                authority: Authority::Unrestricted,
            });
        }
        if let Some(file) = &self.token_file
            && let Some(grants) = file.table().lookup(&presented)
        {
            return Ok(Subject {
                name: grants.subject.clone(),
                authority: Authority::TokenFile(grants),
            });
        }
        let Some(k) = &self.kubernetes else {
            return Err(AuthError::Invalid);
        };
        let user = match k.tokens.get(&presented) {
            Some(user) => user,
            None => {
                let client = k.client.as_ref().ok_or_else(not_connected)?;
                let user = reviews::token_review(client, token, &k.audiences)
                    .await?
                    .map(Arc::new);
                k.tokens.insert(presented, user.clone());
                user
            }
        };
        let user = user.ok_or(AuthError::Invalid)?;
        Ok(Subject {
            name: user.username.clone(),
            authority: Authority::Kubernetes(user),
        })
    }

    /// The subject of a verified client certificate.
    fn certificate_subject(&self, names: &[String]) -> Result<Subject, AuthError> {
        let first = names.first().ok_or(AuthError::NamelessCertificate)?;
        let table = self
            .token_file
            .as_ref()
            .map(|f| f.table())
            .unwrap_or_default();
        let grants = names
            .iter()
            .find_map(|n| table.lookup_subject(n))
            .unwrap_or_else(|| {
                // Authenticated, so a refusal is a 403 naming who, not a 401.
                Arc::new(Grants {
                    subject: first.clone(),
                    namespaces: Vec::new(),
                    actions: Vec::new(),
                })
            });
        Ok(Subject {
            name: grants.subject.clone(),
            authority: Authority::TokenFile(grants),
        })
    }

    /// Whether the API server lets `user` do `op` in `namespace` (a SubjectAccessReview, or its cached answer),
    /// with the API server's reason.
    pub async fn kubernetes_allows(
        &self,
        user: &Arc<KubeUser>,
        op: Operation,
        namespace: &str,
    ) -> Result<(bool, String), K8sError> {
        let k = self.kubernetes.as_ref().ok_or_else(not_connected)?;
        let key = (user.clone(), op.verb(), namespace.to_string());
        if let Some(answer) = k.decisions.get(&key) {
            return Ok(answer);
        }
        let client = k.client.as_ref().ok_or_else(not_connected)?;
        let answer = reviews::access_review(client, user, op.verb(), namespace).await?;
        k.decisions.insert(key, answer.clone());
        Ok(answer)
    }
}

fn not_connected() -> K8sError {
    K8sError::Unavailable("the broker is not connected to a cluster".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_need_the_action_and_a_matching_namespace() {
        let g = Grants {
            subject: "manager".into(),
            namespaces: vec!["team-*".into(), "shared".into()],
            actions: vec![Action::Provision, Action::Read],
        };
        assert!(g.allow(Action::Provision, "team-a"));
        assert!(g.allow(Action::Read, "shared"));
        assert!(!g.allow(Action::Deprovision, "team-a"));
        assert!(!g.allow(Action::Provision, "other"));
    }

    #[test]
    fn operations_map_to_actions_and_verbs() {
        assert_eq!(Operation::Provision.verb(), "create");
        assert_eq!(Operation::Deprovision.verb(), "delete");
        assert_eq!(Operation::Get.verb(), "get");
        assert_eq!(Operation::List.verb(), "list");
        assert_eq!(Operation::Get.action(), Action::Read);
        assert_eq!(Operation::List.action(), Action::Read);
    }

    #[test]
    fn cached_answers_expire_and_the_cache_stays_bounded() {
        let expired: ReviewCache<usize, bool> = ReviewCache::new(Duration::ZERO);
        expired.insert(1, true);
        assert_eq!(expired.get(&1), None);
        let c: ReviewCache<usize, bool> = ReviewCache::new(REVIEW_CACHE_TTL);
        c.insert(1, true);
        assert_eq!(c.get(&1), Some(true));
        for i in 0..REVIEW_CACHE_MAX + 10 {
            c.insert(i, false);
        }
        assert!(c.entries.lock().unwrap().len() <= REVIEW_CACHE_MAX);
        assert_eq!(c.get(&(REVIEW_CACHE_MAX + 9)), Some(false));
    }
}
