//! The `Team` custom resource (`kidp.io/v1alpha1`, cluster-scoped): the namespaces a team may use and its limits,
//! checked before a provision is accepted. Its field names are part of the contract.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::{self, Engine, Size, TeamLimits, TeamPolicy};

/// A team's policy.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[kube(
    group = "kidp.io",
    version = "v1alpha1",
    kind = "Team",
    shortname = "kteam",
    category = "kidp",
    printcolumn = r#"{"name":"Namespaces","type":"string","jsonPath":".spec.namespaces"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TeamSpec {
    /// Namespace globs the team may use (`team-*`).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Limits over all of the team's deployments; absent ones are unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<TeamLimitsSpec>,
    /// Engines allowed; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_engines: Option<Vec<String>>,
    /// Sizes allowed; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_sizes: Option<Vec<String>>,
    /// Whether highAvailability may be asked for; yes when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_availability: Option<bool>,
}

/// `spec.limits`: quantities as Kubernetes writes them (`"40"`, `"80Gi"`, `"2Ti"`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct TeamLimitsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployments: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_cost: Option<f64>,
}

/// The policy of a Team, or why it cannot be read (an unknown engine, a malformed quantity).
pub fn policy(team: &Team) -> Result<TeamPolicy, String> {
    let name = team.metadata.name.clone().unwrap_or_default();
    let bad = |what: &str, v: &str| format!("Team {name} has an invalid {what}: {v:?}");
    let l = team.spec.limits.clone().unwrap_or_default();
    let quantity = |what: &str, v: &Option<String>, parse: fn(&str) -> Option<u32>| {
        v.as_deref()
            .map(|q| parse(q).map(u64::from).ok_or_else(|| bad(what, q)))
            .transpose()
    };
    let storage_gib = quantity("limits.storage", &l.storage, domain::parse_memory_mib)?
        .map(|mib| mib.div_ceil(1024));
    let allowed_engines = team
        .spec
        .allowed_engines
        .as_ref()
        .map(|v| {
            v.iter()
                .map(|e| {
                    e.parse::<Engine>()
                        .map_err(|_| bad("allowedEngines entry", e))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let allowed_sizes = team
        .spec
        .allowed_sizes
        .as_ref()
        .map(|v| {
            v.iter()
                .map(|s| s.parse::<Size>().map_err(|_| bad("allowedSizes entry", s)))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    Ok(TeamPolicy {
        namespaces: team.spec.namespaces.clone(),
        limits: TeamLimits {
            deployments: l.deployments,
            cpu_millis: quantity("limits.cpu", &l.cpu, domain::parse_cpu_millis)?,
            memory_mib: quantity("limits.memory", &l.memory, domain::parse_memory_mib)?,
            storage_gib,
            monthly_cost: l.monthly_cost,
        },
        allowed_engines,
        allowed_sizes,
        high_availability: team.spec.high_availability,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_shape_reads_into_a_policy() {
        let team: Team = serde_yaml::from_str(
            r#"
apiVersion: kidp.io/v1alpha1
kind: Team
metadata: {name: platform-team}
spec:
  namespaces: ["team-platform", "team-*"]
  limits: {deployments: 20, cpu: "40", memory: 80Gi, storage: 2Ti, monthlyCost: 5000}
  allowedEngines: [postgresql, redis]
  allowedSizes: [small, medium]
  highAvailability: true
"#,
        )
        .unwrap();
        let p = policy(&team).unwrap();
        assert_eq!(p.limits.deployments, Some(20));
        assert_eq!(p.limits.cpu_millis, Some(40_000));
        assert_eq!(p.limits.memory_mib, Some(80 * 1024));
        assert_eq!(p.limits.storage_gib, Some(2048));
        assert_eq!(p.limits.monthly_cost, Some(5000.0));
        assert_eq!(
            p.allowed_engines,
            Some(vec![Engine::Postgresql, Engine::Redis])
        );
        assert_eq!(p.allowed_sizes, Some(vec![Size::Small, Size::Medium]));
        let mut odd = team.clone();
        odd.spec.allowed_engines = Some(vec!["oracle".into()]);
        assert!(policy(&odd).unwrap_err().contains("oracle"));
        odd.spec.allowed_engines = None;
        odd.spec.limits.as_mut().unwrap().memory = Some("lots".into());
        assert!(policy(&odd).unwrap_err().contains("limits.memory"));
    }
}
