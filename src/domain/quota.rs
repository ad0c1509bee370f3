//! Team quotas: what a team (a cluster-scoped `Team` resource named like the request's `team`) may run, and
//! whether one more deployment fits beside what the team already holds. Pure: the caller reads the Team and the
//! team's records; counting is in plan units (what the spec asks for, replicas included), so a deployment still
//! queued counts as much as one running.

use super::catalogue::{Engine, Size};
use super::cost::{PriceTable, desired_footprint, monthly_cost};
use super::request::DesiredSpec;

/// A team's policy, read from its `Team`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TeamPolicy {
    /// Namespace globs the team may use; empty allows none.
    pub namespaces: Vec<String>,
    pub limits: TeamLimits,
    /// Engines allowed; `None` allows every engine.
    pub allowed_engines: Option<Vec<Engine>>,
    /// Sizes allowed; `None` allows every size.
    pub allowed_sizes: Option<Vec<Size>>,
    /// Whether highly-available deployments are allowed (`None`: yes).
    pub high_availability: Option<bool>,
}

/// Upper bounds over all of a team's deployments; `None` is unlimited.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TeamLimits {
    pub deployments: Option<u64>,
    pub cpu_millis: Option<u64>,
    pub memory_mib: Option<u64>,
    pub storage_gib: Option<u64>,
    pub monthly_cost: Option<f64>,
}

/// What a set of deployments takes, in plan units.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TeamUsage {
    pub deployments: u64,
    pub cpu_millis: u64,
    pub memory_mib: u64,
    /// Data volumes of every replica and the backup volume.
    pub storage_gib: u64,
    pub monthly_cost: f64,
}

impl TeamUsage {
    /// The usage of these specs.
    pub fn of<'a>(specs: impl IntoIterator<Item = &'a DesiredSpec>, prices: &PriceTable) -> Self {
        specs.into_iter().fold(TeamUsage::default(), |u, s| {
            let f = desired_footprint(s);
            let r = u64::from(f.replicas);
            TeamUsage {
                deployments: u.deployments + 1,
                cpu_millis: u.cpu_millis + r * u64::from(f.cpu_millis),
                memory_mib: u.memory_mib + r * u64::from(f.memory_mib),
                storage_gib: u.storage_gib + r * u64::from(f.storage_gib) + u64::from(f.backup_gib),
                monthly_cost: u.monthly_cost + monthly_cost(prices, &f),
            }
        })
    }
}

/// Why a request does not fit the team's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaRefusal {
    /// Not allowed at all (namespace, engine, size, high availability).
    Forbidden(String),
    /// Allowed, but over a limit.
    Exceeded(String),
}

fn mem(mib: u64) -> String {
    if mib.is_multiple_of(1024) {
        format!("{}Gi", mib / 1024)
    } else {
        format!("{mib}Mi")
    }
}

fn cpu(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        format!("{}", millis / 1000)
    } else {
        format!("{millis}m")
    }
}

fn storage(gib: u64) -> String {
    if gib >= 1024 && gib.is_multiple_of(1024) {
        format!("{}Ti", gib / 1024)
    } else {
        format!("{gib}Gi")
    }
}

/// Whether `spec` in `namespace` may be added to what the team holds (`held`, in plan units).
pub fn admit(
    team: &str,
    policy: &TeamPolicy,
    namespace: &str,
    spec: &DesiredSpec,
    held: &TeamUsage,
    prices: &PriceTable,
) -> Result<(), QuotaRefusal> {
    if !super::glob::any_matches(&policy.namespaces, namespace) {
        return Err(QuotaRefusal::Forbidden(format!(
            "team {team} may not use namespace {namespace}"
        )));
    }
    if let Some(engines) = &policy.allowed_engines
        && !engines.contains(&spec.engine)
    {
        return Err(QuotaRefusal::Forbidden(format!(
            "team {team} may not use engine {}",
            spec.engine
        )));
    }
    if let Some(sizes) = &policy.allowed_sizes
        && !sizes.contains(&spec.size)
    {
        return Err(QuotaRefusal::Forbidden(format!(
            "team {team} may not use size {}",
            spec.size
        )));
    }
    if spec.high_availability && policy.high_availability == Some(false) {
        return Err(QuotaRefusal::Forbidden(format!(
            "team {team} may not use highAvailability"
        )));
    }
    let after = TeamUsage::of([spec], prices);
    let total = TeamUsage {
        deployments: held.deployments + after.deployments,
        cpu_millis: held.cpu_millis + after.cpu_millis,
        memory_mib: held.memory_mib + after.memory_mib,
        storage_gib: held.storage_gib + after.storage_gib,
        monthly_cost: held.monthly_cost + after.monthly_cost,
    };
    let l = &policy.limits;
    let over = |what: &str, would: String, limit: String| {
        Err(QuotaRefusal::Exceeded(format!(
            "team {team}: {what} would be {would} of {limit}"
        )))
    };
    if let Some(max) = l.deployments
        && total.deployments > max
    {
        return over(
            "deployments",
            total.deployments.to_string(),
            max.to_string(),
        );
    }
    if let Some(max) = l.cpu_millis
        && total.cpu_millis > max
    {
        return over("cpu", cpu(total.cpu_millis), cpu(max));
    }
    if let Some(max) = l.memory_mib
        && total.memory_mib > max
    {
        return over("memory", mem(total.memory_mib), mem(max));
    }
    if let Some(max) = l.storage_gib
        && total.storage_gib > max
    {
        return over("storage", storage(total.storage_gib), storage(max));
    }
    if let Some(max) = l.monthly_cost
        && total.monthly_cost > max + 1e-9
    {
        return over(
            "monthly cost",
            format!("{:.2}", total.monthly_cost),
            format!("{max:.2}"),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Backup, Encryption};

    fn spec(engine: Engine, size: Size, ha: bool) -> DesiredSpec {
        DesiredSpec {
            engine,
            version: "16".into(),
            size,
            high_availability: ha,
            backup: Backup::default(),
            encryption: Encryption::default(),
        }
    }

    fn policy() -> TeamPolicy {
        TeamPolicy {
            namespaces: vec!["team-platform".into(), "team-*".into()],
            limits: TeamLimits {
                deployments: Some(3),
                cpu_millis: Some(10_000),
                memory_mib: Some(16 * 1024),
                storage_gib: None,
                monthly_cost: None,
            },
            allowed_engines: Some(vec![Engine::Postgresql, Engine::Redis]),
            allowed_sizes: Some(vec![Size::Small, Size::Medium]),
            high_availability: Some(true),
        }
    }

    #[test]
    fn namespaces_engines_sizes_and_ha_are_policy() {
        let p = policy();
        let prices = PriceTable::default();
        let none = TeamUsage::default();
        let ok = spec(Engine::Postgresql, Size::Medium, false);
        assert_eq!(admit("t", &p, "team-x", &ok, &none, &prices), Ok(()));
        assert_eq!(
            admit("t", &p, "other", &ok, &none, &prices),
            Err(QuotaRefusal::Forbidden(
                "team t may not use namespace other".into()
            ))
        );
        let mysql = spec(Engine::Mysql, Size::Medium, false);
        assert!(matches!(
            admit("t", &p, "team-x", &mysql, &none, &prices),
            Err(QuotaRefusal::Forbidden(m)) if m.contains("engine mysql")
        ));
        let large = spec(Engine::Redis, Size::Large, false);
        assert!(matches!(
            admit("t", &p, "team-x", &large, &none, &prices),
            Err(QuotaRefusal::Forbidden(m)) if m.contains("size large")
        ));
        let no_ha = TeamPolicy {
            high_availability: Some(false),
            ..p.clone()
        };
        let ha = spec(Engine::Redis, Size::Small, true);
        assert!(matches!(
            admit("t", &no_ha, "team-x", &ha, &none, &prices),
            Err(QuotaRefusal::Forbidden(m)) if m.contains("highAvailability")
        ));
    }

    #[test]
    fn limits_count_what_is_held_in_plan_units() {
        let p = policy();
        let prices = PriceTable::default();
        // Medium: 2 CPU, 4Gi; HA triples it.
        let held = TeamUsage::of([&spec(Engine::Postgresql, Size::Medium, true)], &prices);
        assert_eq!((held.cpu_millis, held.memory_mib), (6000, 12 * 1024));
        let more = spec(Engine::Postgresql, Size::Medium, false);
        assert_eq!(
            admit("platform-team", &p, "team-x", &more, &held, &prices),
            Ok(()),
            "exactly at the limit (16Gi of 16Gi) fits"
        );
        let two = TeamUsage::of(
            [
                &spec(Engine::Postgresql, Size::Medium, true),
                &spec(Engine::Redis, Size::Small, false),
            ],
            &prices,
        );
        assert_eq!(
            admit("platform-team", &p, "team-x", &more, &two, &prices),
            Err(QuotaRefusal::Exceeded(
                "team platform-team: memory would be 18Gi of 16Gi".into()
            ))
        );
        let many = TeamUsage {
            deployments: 3,
            ..TeamUsage::default()
        };
        assert_eq!(
            admit("t", &p, "team-x", &more, &many, &prices),
            Err(QuotaRefusal::Exceeded(
                "team t: deployments would be 4 of 3".into()
            ))
        );
        let cheap = TeamPolicy {
            limits: TeamLimits {
                monthly_cost: Some(10.0),
                ..TeamLimits::default()
            },
            ..p
        };
        assert!(matches!(
            admit("t", &cheap, "team-x", &more, &TeamUsage::default(), &prices),
            Err(QuotaRefusal::Exceeded(m)) if m.starts_with("team t: monthly cost would be")
        ));
    }
}
