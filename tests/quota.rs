//! Team quotas end to end: a cluster-scoped Team bounds what its team may run, checked before the 202, and two
//! racing requests never both squeeze under a limit.

mod common;

use common::{Env, Receiver, provision};
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::{Value, json};

async fn create_team(env: &Env, name: &str, spec: Value) {
    let ar = ApiResource {
        group: "kidp.io".into(),
        version: "v1alpha1".into(),
        api_version: "kidp.io/v1alpha1".into(),
        kind: "Team".into(),
        plural: "teams".into(),
    };
    let api: Api<DynamicObject> = Api::all_with(env.kube.clone(), &ar);
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kidp.io/v1alpha1", "kind": "Team",
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
}

fn for_team(mut body: Value, team: &str) -> Value {
    body["team"] = json!(team);
    body
}

#[tokio::test]
async fn a_team_is_held_to_its_namespaces_engines_and_limits() {
    let rx = Receiver::start().await;
    let owned = common::start_fast(&[]).await;
    create_team(
        &owned,
        "quota-team",
        json!({
            "namespaces": ["team-q*"],
            "limits": {"deployments": 2, "memory": "12Gi"},
            "allowedEngines": ["postgresql", "redis"],
        }),
    )
    .await;
    let env = &owned;
    let post = |body: Value| async move { env.post("/v1/provision", &body).await };
    let pg = |name: &str, size: &str| {
        for_team(
            provision(name, "team-q1", "postgresql", "16", size, &rx.url),
            "quota-team",
        )
    };
    let (code, resp) = post(pg("first", "small")).await;
    assert_eq!(code, 202, "{resp}");
    // Repeating an accepted request is not one more deployment.
    let (code, resp) = post(pg("first", "small")).await;
    assert_eq!(code, 202, "{resp}");
    // 2Gi held + 16Gi for xlarge is over 12Gi.
    let (code, resp) = post(pg("huge", "xlarge")).await;
    assert_eq!(code, 403, "{resp}");
    assert_eq!(resp["error"], "quota_exceeded");
    assert_eq!(
        resp["message"],
        "team quota-team: memory would be 18Gi of 12Gi"
    );
    let (code, resp) = post(pg("second", "medium")).await;
    assert_eq!(code, 202, "{resp}");
    let (code, resp) = post(pg("third", "small")).await;
    assert_eq!(code, 403, "{resp}");
    assert_eq!(
        resp["message"],
        "team quota-team: deployments would be 3 of 2"
    );
    let (code, resp) = post(for_team(
        provision("elsewhere", "other-ns", "redis", "7.2", "small", &rx.url),
        "quota-team",
    ))
    .await;
    assert_eq!(code, 403, "{resp}");
    assert_eq!(resp["error"], "forbidden");
    assert_eq!(
        resp["message"],
        "team quota-team may not use namespace other-ns"
    );
    let (code, resp) = post(for_team(
        provision("my", "team-q1", "mysql", "8.4", "small", &rx.url),
        "quota-team",
    ))
    .await;
    assert_eq!(
        (code, resp["error"].clone()),
        (403, json!("forbidden")),
        "{resp}"
    );
    // A team without a Team is unlimited unless --require-team.
    let (code, resp) = post(provision(
        "free", "team-q1", "redis", "7.2", "small", &rx.url,
    ))
    .await;
    assert_eq!(code, 202, "{resp}");
    owned.stop().await;
}

#[tokio::test]
async fn racing_requests_never_both_fit_under_one_limit() {
    let rx = Receiver::start().await;
    let env = common::start_fast(&[]).await;
    create_team(
        &env,
        "race-team",
        json!({"namespaces": ["team-race"], "limits": {"deployments": 1}}),
    )
    .await;
    let bodies: Vec<Value> = (0..6)
        .map(|i| {
            for_team(
                provision(
                    &format!("racer-{i}"),
                    "team-race",
                    "redis",
                    "7.2",
                    "small",
                    &rx.url,
                ),
                "race-team",
            )
        })
        .collect();
    let answers =
        futures::future::join_all(bodies.iter().map(|b| env.post("/v1/provision", b))).await;
    let admitted = answers.iter().filter(|(c, _)| *c == 202).count();
    let refused = answers
        .iter()
        .filter(|(c, r)| *c == 403 && r["error"] == "quota_exceeded")
        .count();
    assert_eq!((admitted, refused), (1, 5), "{answers:?}");
    env.stop().await;
}

#[tokio::test]
async fn require_team_refuses_a_team_without_a_team_resource() {
    let rx = Receiver::start().await;
    let env = common::start_fast(&["--require-team"]).await;
    let (code, resp) = env
        .post(
            "/v1/provision",
            &provision("orphan", "team-rt", "redis", "7.2", "small", &rx.url),
        )
        .await;
    assert_eq!(code, 403, "{resp}");
    assert_eq!(resp["error"], "forbidden");
    assert!(
        resp["message"].as_str().unwrap().contains("--require-team"),
        "{resp}"
    );
    env.stop().await;
}
