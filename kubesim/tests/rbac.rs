//! Authentication and RBAC (`--authorization rbac`) with kube-rs: ServiceAccount tokens from TokenRequest, Roles
//! and ClusterRoles bound by RoleBindings and ClusterRoleBindings to ServiceAccounts, users and groups,
//! resourceNames and subresources, upstream's 403 wording, the self reviews, SubjectAccessReview from RBAC,
//! impersonation and ClusterRole aggregation.

mod common;

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::authentication::v1::{SelfSubjectReview, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    SelfSubjectRulesReview, SelfSubjectRulesReviewSpec, SubjectAccessReview,
    SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::{Client, Config};
use serde_json::{Value, json};

fn client(url: &str, token: Option<&str>) -> Client {
    let mut cfg = Config::new(url.parse().expect("url"));
    cfg.auth_info.token = token.map(|t| t.to_string().into());
    Client::try_from(cfg).expect("client")
}

struct Rbac {
    sim: kubesim::KubeSim,
    admin: Client,
}

async fn start() -> Rbac {
    let sim = kubesim::start(kubesim::Options {
        authorization: kubesim::Authorization::Rbac,
        ..Default::default()
    })
    .await
    .expect("kubesim starts");
    let admin = client(&sim.url(), Some(sim.admin_token()));
    Rbac { sim, admin }
}

impl Rbac {
    async fn apply<K>(&self, ns: Option<&str>, obj: Value) -> K
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::namespaced(self.admin.clone(), ns.unwrap_or("default"));
        api.create(
            &PostParams::default(),
            &serde_json::from_value(obj).unwrap(),
        )
        .await
        .expect("admin creates")
    }

    async fn apply_cluster<K>(&self, obj: Value) -> K
    where
        K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::all(self.admin.clone());
        api.create(
            &PostParams::default(),
            &serde_json::from_value(obj).unwrap(),
        )
        .await
        .expect("admin creates")
    }

    async fn namespace(&self, name: &str) {
        self.apply_cluster::<Namespace>(json!({"metadata": {"name": name}}))
            .await;
    }

    /// A ServiceAccount in `ns` and a token for it.
    async fn service_account(&self, ns: &str, name: &str) -> String {
        self.apply::<ServiceAccount>(Some(ns), json!({"metadata": {"name": name}}))
            .await;
        self.token(ns, name, TokenRequestSpec::default()).await
    }

    async fn token(&self, ns: &str, name: &str, spec: TokenRequestSpec) -> String {
        let sas: Api<ServiceAccount> = Api::namespaced(self.admin.clone(), ns);
        let tr = sas
            .create_token_request(
                name,
                &PostParams::default(),
                &TokenRequest {
                    spec: Some(spec),
                    ..Default::default()
                },
            )
            .await
            .expect("token issued");
        tr.status.expect("status").token.expect("token")
    }

    fn as_token(&self, token: &str) -> Client {
        client(&self.sim.url(), Some(token))
    }
}

/// The API error of a failed call: code and message.
fn api_err<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> (u16, String) {
    match r {
        Err(kube::Error::Api(e)) => (e.code, e.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn forbidden_list(user: &str, resource: &str, group: &str, ns: &str) -> String {
    let qualified = if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    };
    format!(
        "{qualified} is forbidden: User \"{user}\" cannot list resource \"{resource}\" in API group \"{group}\" in the namespace \"{ns}\""
    )
}

const CI: &str = "system:serviceaccount:team:ci";

#[tokio::test]
async fn roles_and_cluster_roles_bound_to_a_service_account() {
    let r = start().await;
    r.namespace("team").await;
    r.namespace("other").await;
    let token = r.service_account("team", "ci").await;
    let ci = r.as_token(&token);
    let pods: Api<Pod> = Api::namespaced(ci.clone(), "team");

    // Nothing bound yet: upstream's wording, with code and reason.
    assert_eq!(
        api_err(pods.list(&ListParams::default()).await),
        (403, forbidden_list(CI, "pods", "", "team"))
    );

    // A Role bound in its namespace (the subject's namespace defaults to the binding's).
    r.apply::<Role>(
        Some("team"),
        json!({"metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]}),
    )
    .await;
    r.apply::<RoleBinding>(
        Some("team"),
        json!({"metadata": {"name": "ci-reads-pods"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "ci"}]}),
    )
    .await;
    pods.list(&ListParams::default())
        .await
        .expect("the Role allows listing pods in team");
    let other_pods: Api<Pod> = Api::namespaced(ci.clone(), "other");
    assert_eq!(
        api_err(other_pods.list(&ListParams::default()).await),
        (403, forbidden_list(CI, "pods", "", "other")),
        "a Role grants nothing outside its namespace"
    );
    assert_eq!(
        api_err(
            pods.create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
                .unwrap()
            )
            .await
        ),
        (
            403,
            format!(
                "pods is forbidden: User \"{CI}\" cannot create resource \"pods\" in API group \"\" in the namespace \"team\""
            )
        ),
        "the Role does not allow create"
    );

    // A ClusterRole bound by a RoleBinding: its rules, in that namespace only.
    r.apply_cluster::<ClusterRole>(json!({"metadata": {"name": "cm-reader"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]}))
        .await;
    r.apply::<RoleBinding>(
        Some("team"),
        json!({"metadata": {"name": "ci-reads-cms"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cm-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "ci", "namespace": "team"}]}),
    )
    .await;
    let team_cms: Api<ConfigMap> = Api::namespaced(ci.clone(), "team");
    team_cms
        .get("kube-root-ca.crt")
        .await
        .expect("the ClusterRole applies in team through the RoleBinding");
    let other_cms: Api<ConfigMap> = Api::namespaced(ci.clone(), "other");
    assert_eq!(
        api_err(other_cms.get("kube-root-ca.crt").await),
        (
            403,
            format!(
                "configmaps \"kube-root-ca.crt\" is forbidden: User \"{CI}\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"other\""
            )
        )
    );

    // A ClusterRoleBinding to the group every ServiceAccount is in: cluster-wide.
    let namespaces: Api<Namespace> = Api::all(ci.clone());
    assert_eq!(
        api_err(namespaces.list(&ListParams::default()).await).0,
        403
    );
    r.apply_cluster::<ClusterRole>(json!({"metadata": {"name": "ns-lister"},
        "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list"]}]}))
        .await;
    r.apply_cluster::<ClusterRoleBinding>(json!({"metadata": {"name": "sas-list-ns"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ns-lister"},
        "subjects": [{"kind": "Group", "name": "system:serviceaccounts", "apiGroup": "rbac.authorization.k8s.io"}]}))
        .await;
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .expect("the group binding allows listing namespaces")
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(names.contains(&"team".to_string()) && names.contains(&"other".to_string()));

    // A binding to a role that does not exist: denied, and the reason says why.
    r.apply::<RoleBinding>(
        Some("team"),
        json!({"metadata": {"name": "dangling"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "missing"},
            "subjects": [{"kind": "ServiceAccount", "name": "ci"}]}),
    )
    .await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(ci.clone(), "team");
    assert_eq!(
        api_err(secrets.list(&ListParams::default()).await),
        (
            403,
            format!(
                "{}: RBAC: role.rbac.authorization.k8s.io \"missing\" not found",
                forbidden_list(CI, "secrets", "", "team")
            )
        )
    );

    // roleRef cannot change.
    let rbs: Api<RoleBinding> = Api::namespaced(r.admin.clone(), "team");
    let err = api_err(
        rbs.patch(
            "dangling",
            &PatchParams::default(),
            &Patch::Merge(json!({"roleRef": {"name": "pod-reader"}})),
        )
        .await,
    );
    assert_eq!(err.0, 422);
    assert!(err.1.contains("roleRef: Invalid value") && err.1.ends_with("cannot change roleRef"));

    // Deleting the ServiceAccount revokes its tokens; unknown tokens get 401.
    let sas: Api<ServiceAccount> = Api::namespaced(r.admin.clone(), "team");
    sas.delete("ci", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        api_err(pods.list(&ListParams::default()).await),
        (401, "Unauthorized".to_string())
    );
    let stranger: Api<Pod> = Api::namespaced(r.as_token("no-such-token"), "team");
    assert_eq!(api_err(stranger.list(&ListParams::default()).await).0, 401);
    r.sim.shutdown().await;
}

const MR_CRD: &str = r#"{
  "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
  "metadata": {"name": "managedresources.kidp.io"},
  "spec": {"group": "kidp.io", "scope": "Namespaced",
    "names": {"plural": "managedresources", "singular": "managedresource", "kind": "ManagedResource"},
    "versions": [{"name": "v1alpha1", "served": true, "storage": true, "subresources": {"status": {}},
      "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
}"#;

#[tokio::test]
async fn resource_names_and_subresources() {
    let r = start().await;
    r.namespace("team").await;
    let token = r.service_account("team", "ci").await;
    let ci = r.as_token(&token);
    for name in ["db", "cache"] {
        r.apply::<StatefulSet>(
            Some("team"),
            json!({"metadata": {"name": name}, "spec": {"serviceName": name, "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}),
        )
        .await;
    }
    r.apply::<Role>(
        Some("team"),
        json!({"metadata": {"name": "scale-db"},
            "rules": [{"apiGroups": ["apps"], "resources": ["statefulsets/scale"], "resourceNames": ["db"],
                "verbs": ["get", "patch"]}]}),
    )
    .await;
    r.apply::<RoleBinding>(
        Some("team"),
        json!({"metadata": {"name": "ci-scales-db"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "scale-db"},
            "subjects": [{"kind": "ServiceAccount", "name": "ci", "namespace": "team"}]}),
    )
    .await;
    let sts: Api<StatefulSet> = Api::namespaced(ci.clone(), "team");
    let two = Patch::Merge(json!({"spec": {"replicas": 2}}));
    let scaled = sts
        .patch_scale("db", &PatchParams::default(), &two)
        .await
        .expect("statefulsets/scale on db is allowed");
    assert_eq!(scaled.spec.and_then(|s| s.replicas), Some(2));
    assert_eq!(
        api_err(
            sts.patch_scale("cache", &PatchParams::default(), &two)
                .await
        ),
        (
            403,
            format!(
                "statefulsets.apps \"cache\" is forbidden: User \"{CI}\" cannot patch resource \"statefulsets/scale\" in API group \"apps\" in the namespace \"team\""
            )
        ),
        "resourceNames limits the rule to db"
    );
    assert_eq!(
        api_err(sts.patch("db", &PatchParams::default(), &two).await),
        (
            403,
            format!(
                "statefulsets.apps \"db\" is forbidden: User \"{CI}\" cannot patch resource \"statefulsets\" in API group \"apps\" in the namespace \"team\""
            )
        ),
        "the scale subresource does not grant the object"
    );

    // A custom resource's status subresource, granted apart from the resource.
    let crds: Api<CustomResourceDefinition> = Api::all(r.admin.clone());
    crds.create(
        &PostParams::default(),
        &serde_json::from_str(MR_CRD).unwrap(),
    )
    .await
    .unwrap();
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kidp.io", "v1alpha1", "ManagedResource"),
        "managedresources",
    );
    let admin_mrs: Api<DynamicObject> = Api::namespaced_with(r.admin.clone(), "team", &ar);
    let mut mr = DynamicObject::new("orders", &ar);
    mr.data = json!({"spec": {"engine": "postgresql"}});
    admin_mrs.create(&PostParams::default(), &mr).await.unwrap();
    r.apply::<Role>(
        Some("team"),
        json!({"metadata": {"name": "status-writer"},
            "rules": [{"apiGroups": ["kidp.io"], "resources": ["managedresources/status"], "verbs": ["patch"]},
                {"apiGroups": ["kidp.io"], "resources": ["managedresources"], "verbs": ["get"]}]}),
    )
    .await;
    r.apply::<RoleBinding>(
        Some("team"),
        json!({"metadata": {"name": "ci-writes-status"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "status-writer"},
            "subjects": [{"kind": "ServiceAccount", "name": "ci"}]}),
    )
    .await;
    let mrs: Api<DynamicObject> = Api::namespaced_with(ci.clone(), "team", &ar);
    let phase = Patch::Merge(json!({"status": {"phase": "Ready"}}));
    let after = mrs
        .patch_status("orders", &PatchParams::default(), &phase)
        .await
        .expect("managedresources/status is allowed");
    assert_eq!(after.data["status"]["phase"], "Ready");
    assert_eq!(
        api_err(mrs.patch("orders", &PatchParams::default(), &phase).await),
        (
            403,
            format!(
                "managedresources.kidp.io \"orders\" is forbidden: User \"{CI}\" cannot patch resource \"managedresources\" in API group \"kidp.io\" in the namespace \"team\""
            )
        )
    );
    r.sim.shutdown().await;
}

fn ssar(ns: &str, verb: &str, group: &str, resource: &str) -> SelfSubjectAccessReview {
    SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(ns.into()),
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn self_reviews_subject_access_reviews_and_aggregation() {
    let r = start().await;
    r.namespace("team").await;
    let token = r.service_account("team", "ci").await;
    let ci = r.as_token(&token);

    // Who am I: the ServiceAccount user and its groups.
    let me = Api::<SelfSubjectReview>::all(ci.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("every authenticated user may ask who it is");
    let info = me.status.unwrap().user_info.unwrap();
    assert_eq!(info.username.as_deref(), Some(CI));
    let groups = info.groups.unwrap();
    for g in [
        "system:serviceaccounts",
        "system:serviceaccounts:team",
        "system:authenticated",
    ] {
        assert!(groups.contains(&g.to_string()), "{g} in {groups:?}");
    }

    // May I: no, then yes once bound, with the binding named.
    let reviews: Api<SelfSubjectAccessReview> = Api::all(ci.clone());
    let ask = |verb: &'static str| {
        let reviews = reviews.clone();
        async move {
            reviews
                .create(&PostParams::default(), &ssar("team", verb, "", "pods"))
                .await
                .unwrap()
                .status
                .unwrap()
        }
    };
    assert!(!ask("list").await.allowed);
    r.apply::<RoleBinding>(
        Some("team"),
        json!({"metadata": {"name": "ci-views"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "ci"}]}),
    )
    .await;
    let yes = ask("list").await;
    assert!(yes.allowed);
    assert_eq!(
        yes.reason.as_deref(),
        Some(
            "RBAC: allowed by RoleBinding \"ci-views/team\" of ClusterRole \"view\" to ServiceAccount \"ci/team\""
        )
    );
    assert!(!ask("delete").await.allowed, "view does not delete");

    // What may I: the rules of view (aggregated) and of the bootstrap self-review role.
    let rules = Api::<SelfSubjectRulesReview>::all(ci.clone())
        .create(
            &PostParams::default(),
            &SelfSubjectRulesReview {
                spec: SelfSubjectRulesReviewSpec {
                    namespace: Some("team".into()),
                },
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .status
        .unwrap();
    assert!(!rules.incomplete);
    assert!(rules.resource_rules.iter().any(|r| {
        r.resources
            .as_ref()
            .is_some_and(|x| x.contains(&"pods".to_string()))
            && r.verbs.contains(&"list".to_string())
    }));
    assert!(rules.resource_rules.iter().any(|r| {
        r.resources
            .as_ref()
            .is_some_and(|x| x.contains(&"selfsubjectaccessreviews".to_string()))
    }));
    assert!(rules.non_resource_rules.iter().any(|r| {
        r.non_resource_urls
            .as_ref()
            .is_some_and(|u| u.contains(&"/version".to_string()))
    }));

    // Aggregation: a ClusterRole labelled aggregate-to-view extends view for everyone bound to it.
    assert!(
        !reviews
            .create(
                &PostParams::default(),
                &ssar("team", "list", "kidp.io", "managedresources")
            )
            .await
            .unwrap()
            .status
            .unwrap()
            .allowed
    );
    r.apply_cluster::<ClusterRole>(json!({"metadata": {"name": "kidp-view",
            "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
        "rules": [{"apiGroups": ["kidp.io"], "resources": ["managedresources"], "verbs": ["get", "list", "watch"]}]}))
        .await;
    common::eventually("view aggregates kidp-view", Duration::from_secs(5), || {
        let reviews = reviews.clone();
        async move {
            reviews
                .create(
                    &PostParams::default(),
                    &ssar("team", "list", "kidp.io", "managedresources"),
                )
                .await
                .ok()?
                .status?
                .allowed
                .then_some(())
        }
    })
    .await;
    let view = Api::<ClusterRole>::all(r.admin.clone())
        .get("view")
        .await
        .unwrap();
    assert!(
        view.rules.unwrap().iter().any(|r| r
            .api_groups
            .as_ref()
            .is_some_and(|g| g.contains(&"kidp.io".to_string()))),
        "the aggregated rules are written into view, as upstream's controller does"
    );

    // SubjectAccessReview about another user and group, from RBAC.
    r.apply_cluster::<ClusterRoleBinding>(json!({"metadata": {"name": "devs-edit"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "Group", "name": "devs", "apiGroup": "rbac.authorization.k8s.io"}]}))
        .await;
    let sar = |user: &str, groups: Vec<String>, verb: &str, resource: &str| SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            groups: Some(groups),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some("team".into()),
                verb: Some(verb.into()),
                group: Some("apps".into()),
                resource: Some(resource.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let sars: Api<SubjectAccessReview> = Api::all(r.admin.clone());
    let decide = |review: SubjectAccessReview| {
        let sars = sars.clone();
        async move {
            sars.create(&PostParams::default(), &review)
                .await
                .unwrap()
                .status
                .unwrap()
                .allowed
        }
    };
    assert!(decide(sar("alice", vec!["devs".into()], "update", "deployments")).await);
    assert!(!decide(sar("alice", vec![], "update", "deployments")).await);
    assert!(
        !decide(sar(
            "alice",
            vec!["devs".into()],
            "update",
            "controllerrevisions"
        ))
        .await,
        "edit does not write controllerrevisions"
    );
    // ServiceAccounts may not ask about others.
    assert_eq!(
        api_err(
            Api::<SubjectAccessReview>::all(ci.clone())
                .create(
                    &PostParams::default(),
                    &sar("alice", vec![], "get", "deployments")
                )
                .await
        )
        .0,
        403
    );
    r.sim.shutdown().await;
}

#[tokio::test]
async fn anonymous_requests_impersonation_and_token_requests() {
    let r = start().await;
    r.namespace("team").await;
    let anon = client(&r.sim.url(), None);
    // Health and version are public; the API is not.
    let v = anon.apiserver_version().await.expect("/version is public");
    assert!(!v.git_version.is_empty());
    let pods: Api<Pod> = Api::namespaced(anon.clone(), "team");
    assert_eq!(
        api_err(pods.list(&ListParams::default()).await),
        (403, forbidden_list("system:anonymous", "pods", "", "team"))
    );

    // The admin impersonates a ServiceAccount; the ServiceAccount may not impersonate the admin.
    let token = r.service_account("team", "ci").await;
    let mut cfg = Config::new(r.sim.url().parse().unwrap());
    cfg.auth_info.token = Some(r.sim.admin_token().to_string().into());
    cfg.auth_info.impersonate = Some(CI.into());
    let as_ci = Client::try_from(cfg).unwrap();
    let who = Api::<SelfSubjectReview>::all(as_ci.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .unwrap();
    assert_eq!(
        who.status.unwrap().user_info.unwrap().username.as_deref(),
        Some(CI)
    );
    assert_eq!(
        api_err(
            Api::<Pod>::namespaced(as_ci, "team")
                .list(&ListParams::default())
                .await
        ),
        (403, forbidden_list(CI, "pods", "", "team"))
    );
    let mut cfg = Config::new(r.sim.url().parse().unwrap());
    cfg.auth_info.token = Some(token.clone().into());
    cfg.auth_info.impersonate = Some("kubesim-admin".into());
    let escalate = Client::try_from(cfg).unwrap();
    assert_eq!(
        api_err(
            Api::<Pod>::namespaced(escalate, "team")
                .list(&ListParams::default())
                .await
        ),
        (
            403,
            format!(
                "users \"kubesim-admin\" is forbidden: User \"{CI}\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
            )
        )
    );

    // TokenRequest: upstream's bounds, a missing ServiceAccount, and a token bound to a pod.
    let sas: Api<ServiceAccount> = Api::namespaced(r.admin.clone(), "team");
    let short = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(599),
            ..Default::default()
        }),
        ..Default::default()
    };
    let (code, msg) = api_err(
        sas.create_token_request("ci", &PostParams::default(), &short)
            .await,
    );
    assert_eq!(code, 422);
    assert!(
        msg.contains(
            "spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"
        ),
        "{msg}"
    );
    assert_eq!(
        api_err(
            sas.create_token_request("nobody", &PostParams::default(), &TokenRequest::default())
                .await
        ),
        (404, "serviceaccounts \"nobody\" not found".to_string())
    );
    let admin_pods: Api<Pod> = Api::namespaced(r.admin.clone(), "team");
    let pod = admin_pods
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "runner"},
                "spec": {"serviceAccountName": "ci", "containers": [{"name": "c", "image": "busybox"}]}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let bound = r
        .token(
            "team",
            "ci",
            TokenRequestSpec {
                audiences: Some(vec!["vault".into()]),
                bound_object_ref: Some(
                    k8s_openapi::api::authentication::v1::BoundObjectReference {
                        kind: Some("Pod".into()),
                        name: Some("runner".into()),
                        uid: pod.metadata.uid.clone(),
                        api_version: Some("v1".into()),
                    },
                ),
                ..Default::default()
            },
        )
        .await;
    // The token is a JWT whose claims name the ServiceAccount and the pod.
    let claims: Value = {
        use base64::Engine;
        let part = bound.split('.').nth(1).expect("three parts");
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(claims["sub"], CI);
    assert_eq!(claims["aud"], json!(["vault"]));
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], "runner");
    let who = Api::<SelfSubjectReview>::all(r.as_token(&bound))
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .unwrap();
    let extra = who.status.unwrap().user_info.unwrap().extra.unwrap();
    assert_eq!(
        extra["authentication.kubernetes.io/pod-name"],
        vec!["runner".to_string()]
    );
    admin_pods
        .delete("runner", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    common::eventually("the pod is gone", Duration::from_secs(5), || {
        let admin_pods = admin_pods.clone();
        async move {
            admin_pods
                .get_opt("runner")
                .await
                .ok()?
                .is_none()
                .then_some(())
        }
    })
    .await;
    assert_eq!(
        api_err(
            Api::<SelfSubjectReview>::all(r.as_token(&bound))
                .create(&PostParams::default(), &SelfSubjectReview::default())
                .await
        )
        .0,
        401,
        "a token bound to a deleted pod is no longer valid"
    );
    r.sim.shutdown().await;
}

#[tokio::test]
async fn without_rbac_every_request_is_allowed_and_tokens_still_authenticate() {
    let s = common::start().await;
    // The default mode: anonymous requests do anything, as before.
    let anon_client = client(&s.sim.url(), None);
    let cms: Api<ConfigMap> = Api::namespaced(anon_client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "open"}})).unwrap(),
    )
    .await
    .unwrap();
    let anon = Api::<SelfSubjectReview>::all(anon_client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .unwrap();
    assert_eq!(
        anon.status.unwrap().user_info.unwrap().username.as_deref(),
        Some("system:anonymous")
    );
    let admin = client(&s.sim.url(), Some(s.sim.admin_token()));
    let me = Api::<SelfSubjectReview>::all(admin.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .unwrap()
        .status
        .unwrap()
        .user_info
        .unwrap();
    assert_eq!(me.username.as_deref(), Some("kubesim-admin"));
    assert!(me.groups.unwrap().contains(&"system:masters".to_string()));
    let can = Api::<SelfSubjectAccessReview>::all(anon_client)
        .create(
            &PostParams::default(),
            &ssar("default", "delete", "", "secrets"),
        )
        .await
        .unwrap();
    assert!(can.status.unwrap().allowed);
    // An unknown token is refused even here, as any apiserver does.
    assert_eq!(
        api_err(
            Api::<ConfigMap>::namespaced(client(&s.sim.url(), Some("bogus")), "default")
                .list(&ListParams::default())
                .await
        )
        .0,
        401
    );
    s.sim.shutdown().await;
}
