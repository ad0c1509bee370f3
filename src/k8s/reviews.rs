//! TokenReview and SubjectAccessReview: who a Kubernetes bearer token belongs to, and whether that user may act
//! on the broker's ManagedResources in a namespace. Every call runs under the module's time limit and is
//! counted like any other API call; caching the answers is the caller's business.

use std::collections::BTreeMap;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};

use super::{Result, call};

/// The API group and resource a SubjectAccessReview asks about: the broker's intent records.
pub const RECORD_GROUP: &str = "kidp.io";
/// See [`RECORD_GROUP`].
pub const RECORD_RESOURCE: &str = "managedresources";

/// A user as the API server's authenticator reported it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KubeUser {
    pub username: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The user `token` belongs to, or `None` when the API server does not authenticate it (for one of
/// `audiences`, when given).
pub async fn token_review(
    client: &Client,
    token: &str,
    audiences: &[String],
) -> Result<Option<KubeUser>> {
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: token.to_string(),
            audiences: (!audiences.is_empty()).then(|| audiences.to_vec()),
        },
        ..Default::default()
    };
    let api: Api<TokenReview> = Api::all(client.clone());
    let answer = call("create", api.create(&PostParams::default(), &review)).await?;
    let Some(status) = answer.status else {
        return Ok(None);
    };
    if status.authenticated != Some(true) {
        return Ok(None);
    }
    let Some(user) = status.user else {
        return Ok(None);
    };
    match user.username {
        Some(username) if !username.is_empty() => Ok(Some(KubeUser {
            username,
            uid: user.uid,
            groups: user.groups.unwrap_or_default(),
            extra: user.extra.unwrap_or_default(),
        })),
        _ => Ok(None),
    }
}

/// Whether `user` may `verb` ManagedResources in `namespace`, and the API server's reason.
pub async fn access_review(
    client: &Client,
    user: &KubeUser,
    verb: &str,
    namespace: &str,
) -> Result<(bool, String)> {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.username.clone()),
            uid: user.uid.clone(),
            groups: Some(user.groups.clone()),
            extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(namespace.to_string()),
                verb: Some(verb.to_string()),
                group: Some(RECORD_GROUP.to_string()),
                resource: Some(RECORD_RESOURCE.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let answer = call("create", api.create(&PostParams::default(), &review)).await?;
    let status = answer.status.unwrap_or_default();
    Ok((
        status.allowed && status.denied != Some(true),
        status.reason.unwrap_or_default(),
    ))
}
