//! Estimated monthly cost: a price table times a footprint (what is, or would be, deployed).

use serde::{Deserialize, Serialize};

use super::drift::ActualSpec;
use super::request::{DesiredSpec, RetentionPeriod};

/// Monthly prices per unit, in the currency the platform team reports in (the defaults are US dollars).
///
/// Every field has a default, so configuration may override any subset.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PriceTable {
    /// One vCPU for a month.
    pub vcpu_month: f64,
    /// One GiB of memory for a month.
    pub memory_gib_month: f64,
    /// One GiB of provisioned volume for a month.
    pub storage_gib_month: f64,
    /// One GiB of backup dumps kept for a month.
    pub backup_gib_month: f64,
}

impl Default for PriceTable {
    /// Plausible on-demand public-cloud list prices, rounded, so estimates are realistic out of the box:
    /// vCPU 18.00 (general-purpose VMs cost about 0.022–0.03 per vCPU-hour, × 730 hours), memory 2.50 per
    /// GiB (about 0.003 per GiB-hour), SSD-backed volumes 0.10 per GiB (gp3 is 0.08, pd-balanced 0.10), backup
    /// 0.05 per GiB (snapshot/object storage tiers). Teams with negotiated prices configure their own.
    fn default() -> Self {
        PriceTable {
            vcpu_month: 18.0,
            memory_gib_month: 2.5,
            storage_gib_month: 0.10,
            backup_gib_month: 0.05,
        }
    }
}

/// What a deployment consumes: `replicas` pods of the given per-replica resources, plus backups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Footprint {
    /// Pods (each with its own volume).
    pub replicas: u32,
    /// CPU per replica, in millicores.
    pub cpu_millis: u32,
    /// Memory per replica, in MiB.
    pub memory_mib: u32,
    /// Volume per replica, in GiB.
    pub storage_gib: u32,
    /// Backup dumps kept, in GiB, for the whole deployment.
    pub backup_gib: u32,
}

/// The monthly cost of a footprint, rounded to cents.
pub fn monthly_cost(p: &PriceTable, f: &Footprint) -> f64 {
    let per_replica = f64::from(f.cpu_millis) / 1000.0 * p.vcpu_month
        + f64::from(f.memory_mib) / 1024.0 * p.memory_gib_month
        + f64::from(f.storage_gib) * p.storage_gib_month;
    let total = f64::from(f.replicas) * per_replica + f64::from(f.backup_gib) * p.backup_gib_month;
    (total * 100.0).round() / 100.0
}

/// The footprint a spec asks for: its size per replica, [`DesiredSpec::replicas`] replicas (3 with high
/// availability for every engine, 1 otherwise), and the backup estimate of [`backup_gib_estimate`].
pub fn desired_footprint(spec: &DesiredSpec) -> Footprint {
    let size = spec.size.spec();
    Footprint {
        replicas: spec.replicas(),
        cpu_millis: size.cpu_millis,
        memory_mib: size.memory_mib,
        storage_gib: size.storage_gib,
        backup_gib: backup_gib_for(spec, size.storage_gib),
    }
}

/// The footprint of what actually runs: observed replicas, resources and volume size (`storage_gib`, from
/// PVC capacity), each falling back to the desired value while it has not been observed, so an estimate is
/// available from the moment a deployment is accepted.
pub fn actual_footprint(
    desired: &DesiredSpec,
    actual: &ActualSpec,
    storage_gib: Option<u32>,
) -> Footprint {
    let want = desired_footprint(desired);
    // An observed size stands for its resources when the exact figures were not passed along.
    let sized = actual.size.map(|s| s.spec());
    let storage_gib = storage_gib.unwrap_or(want.storage_gib);
    Footprint {
        replicas: actual.replicas.unwrap_or(want.replicas),
        cpu_millis: actual
            .cpu_millis
            .or(sized.map(|s| s.cpu_millis))
            .unwrap_or(want.cpu_millis),
        memory_mib: actual
            .memory_mib
            .or(sized.map(|s| s.memory_mib))
            .unwrap_or(want.memory_mib),
        storage_gib,
        backup_gib: backup_gib_for(desired, storage_gib),
    }
}

fn backup_gib_for(spec: &DesiredSpec, storage_gib: u32) -> u32 {
    if spec.backup.enabled {
        backup_gib_estimate(storage_gib, &spec.backup.effective_retention())
    } else {
        0
    }
}

/// A rough estimate of the backup storage kept: `ceil(storage_gib × retention_days / 7)`.
///
/// The reasoning: one logical dump a day (the default schedule), taken from the primary only, each about a
/// seventh of the provisioned volume (volumes run part-full and dumps compress several-fold), kept for the
/// retention period. So a week's retention costs about one volume's worth. It ignores the schedule's actual
/// frequency: an hourly schedule keeps many more dumps, and the estimate will be low.
pub fn backup_gib_estimate(storage_gib: u32, retention: &RetentionPeriod) -> u32 {
    // In hours to stay in integers: storage × hours / (24 × 7), rounded up. Both factors are bounded
    // (u32 and MAX_RETENTION_HOURS), so the u64 product cannot overflow.
    let gib_hours = u64::from(storage_gib) * retention.hours();
    u32::try_from(gib_hours.div_ceil(24 * 7)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::catalogue::{Engine, Size};
    use crate::domain::request::{Backup, Encryption};

    fn spec(size: Size, ha: bool, backup: Option<&str>) -> DesiredSpec {
        DesiredSpec {
            engine: Engine::Postgresql,
            version: "15".into(),
            size,
            high_availability: ha,
            backup: Backup {
                enabled: backup.is_some(),
                retention: backup.map(|r| RetentionPeriod::parse(r).unwrap()),
                schedule: None,
            },
            encryption: Encryption::default(),
        }
    }

    #[test]
    fn defaults_are_the_documented_prices() {
        let p = PriceTable::default();
        assert_eq!(
            (
                p.vcpu_month,
                p.memory_gib_month,
                p.storage_gib_month,
                p.backup_gib_month
            ),
            (18.0, 2.5, 0.10, 0.05)
        );
    }

    #[test]
    fn price_table_config_may_override_a_subset() {
        let p: PriceTable = serde_json::from_str(r#"{"vcpuMonth": 30.0}"#).unwrap();
        assert_eq!(p.vcpu_month, 30.0);
        assert_eq!(p.memory_gib_month, 2.5);
    }

    #[test]
    fn a_single_medium_database() {
        let f = desired_footprint(&spec(Size::Medium, false, None));
        assert_eq!(
            f,
            Footprint {
                replicas: 1,
                cpu_millis: 2000,
                memory_mib: 4096,
                storage_gib: 50,
                backup_gib: 0
            }
        );
        // 2 × 18 + 4 × 2.5 + 50 × 0.10 = 36 + 10 + 5
        assert_eq!(monthly_cost(&PriceTable::default(), &f), 51.0);
    }

    #[test]
    fn high_availability_triples_every_replica_cost_but_not_backups() {
        let f = desired_footprint(&spec(Size::Medium, true, Some("7d")));
        assert_eq!((f.replicas, f.backup_gib), (3, 50));
        // 3 × 51 + 50 × 0.05
        assert_eq!(monthly_cost(&PriceTable::default(), &f), 155.5);
    }

    #[test]
    fn every_engine_uses_three_replicas_for_ha() {
        for engine in Engine::ALL {
            let mut s = spec(Size::Small, true, None);
            s.engine = engine;
            assert_eq!(desired_footprint(&s).replicas, 3);
        }
    }

    #[test]
    fn backup_estimate_scales_with_retention_and_rounds_up() {
        let r = |s| RetentionPeriod::parse(s).unwrap();
        assert_eq!(backup_gib_estimate(10, &r("7d")), 10);
        assert_eq!(backup_gib_estimate(10, &r("36h")), 3); // 2.14…
        assert_eq!(backup_gib_estimate(50, &r("2w")), 100);
        assert_eq!(backup_gib_estimate(250, &r("3650d")), 130_358); // 130357.14…
        assert_eq!(backup_gib_estimate(0, &r("7d")), 0);
    }

    #[test]
    fn enabled_backup_without_retention_uses_the_default_week() {
        let mut s = spec(Size::Small, false, None);
        s.backup.enabled = true;
        assert_eq!(desired_footprint(&s).backup_gib, 10);
    }

    #[test]
    fn costs_round_to_cents() {
        let f = Footprint {
            replicas: 1,
            cpu_millis: 333,
            memory_mib: 0,
            storage_gib: 0,
            backup_gib: 0,
        };
        // 0.333 × 18 = 5.994
        assert_eq!(monthly_cost(&PriceTable::default(), &f), 5.99);
        assert_eq!(
            monthly_cost(&PriceTable::default(), &Footprint::default()),
            0.0
        );
    }

    #[test]
    fn actual_footprint_prefers_observations_and_falls_back_to_desire() {
        let desired = spec(Size::Medium, true, Some("7d"));
        let nothing_seen = ActualSpec {
            engine: Engine::Postgresql,
            version: None,
            size: None,
            replicas: None,
            cpu_millis: None,
            memory_mib: None,
        };
        assert_eq!(
            actual_footprint(&desired, &nothing_seen, None),
            desired_footprint(&desired)
        );

        let scaled_down = ActualSpec {
            replicas: Some(1),
            cpu_millis: Some(1500),
            ..nothing_seen.clone()
        };
        let f = actual_footprint(&desired, &scaled_down, Some(100));
        assert_eq!(
            f,
            Footprint {
                replicas: 1,
                cpu_millis: 1500,
                memory_mib: 4096,
                storage_gib: 100,
                backup_gib: 100
            }
        );

        let only_size = ActualSpec {
            size: Some(Size::Small),
            ..nothing_seen
        };
        let f = actual_footprint(&desired, &only_size, None);
        assert_eq!((f.cpu_millis, f.memory_mib), (1000, 2048));
    }
}
