//! The lifecycle phase of a deployment and, separately, the health of a running one.

use super::catalogue::{UnknownName, named_enum};

/// Where a deployment stands in its lifecycle: `Provisioning → Ready | Failed`, `Deleting → Deleted`, exactly
/// the callback phases of the API reference. Ordered as listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// Accepted; objects are being created or the workload is not ready yet.
    Provisioning,
    /// Every replica is ready.
    Ready,
    /// Provisioning gave up; the message says why.
    Failed,
    /// Deprovisioning was requested and objects are being removed.
    Deleting,
    /// Every object is gone.
    Deleted,
}

impl Phase {
    /// Every phase, in lifecycle order.
    pub const ALL: [Phase; 5] = [
        Self::Provisioning,
        Self::Ready,
        Self::Failed,
        Self::Deleting,
        Self::Deleted,
    ];

    /// The wire name, capitalised as in the API reference.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "Provisioning",
            Self::Ready => "Ready",
            Self::Failed => "Failed",
            Self::Deleting => "Deleting",
            Self::Deleted => "Deleted",
        }
    }

    /// Whether the operation that led here has finished: `Ready`, `Failed` or `Deleted`. Nothing moves on from
    /// a terminal phase without a new request (a deprovision), so timers and throttle permits end here.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Ready | Self::Failed | Self::Deleted)
    }

    /// Whether the broker is still working: `Provisioning` or `Deleting`.
    pub fn is_in_progress(self) -> bool {
        !self.is_terminal()
    }
}

named_enum!(Phase, "phase");

/// How a running deployment is doing; separate from [`Phase`] because a Ready deployment whose pods stop
/// being ready is still Ready (nothing was re-provisioned) but no longer Healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    /// Every replica is ready.
    Healthy,
    /// Some replica is not ready.
    Degraded,
    /// Not observed yet, or not running.
    Unknown,
}

impl Health {
    /// Every health value.
    pub const ALL: [Health; 3] = [Self::Healthy, Self::Degraded, Self::Unknown];

    /// The one rule for health: a Ready deployment is Healthy with every replica ready and Degraded with
    /// fewer; in any other phase (still provisioning, failed, deleting) health is Unknown.
    pub fn of(phase: Phase, ready_pods: usize, replicas: u32) -> Health {
        match phase {
            Phase::Ready if ready_pods >= replicas as usize => Self::Healthy,
            Phase::Ready => Self::Degraded,
            _ => Self::Unknown,
        }
    }

    /// The wire name, capitalised as in the API reference.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "Healthy",
            Self::Degraded => "Degraded",
            Self::Unknown => "Unknown",
        }
    }
}

named_enum!(Health, "health status");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_spelled_as_the_seed() {
        let names: Vec<&str> = Phase::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(
            names,
            ["Provisioning", "Ready", "Failed", "Deleting", "Deleted"]
        );
        for p in Phase::ALL {
            assert_eq!(p.as_str().parse::<Phase>(), Ok(p));
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
        assert!("ready".parse::<Phase>().is_err());
    }

    #[test]
    fn terminal_phases_end_an_operation() {
        let terminal: Vec<Phase> = Phase::ALL.into_iter().filter(|p| p.is_terminal()).collect();
        assert_eq!(terminal, [Phase::Ready, Phase::Failed, Phase::Deleted]);
        assert!(Phase::Provisioning.is_in_progress());
        assert!(Phase::Deleting.is_in_progress());
        assert!(!Phase::Ready.is_in_progress());
    }

    #[test]
    fn health_round_trips() {
        for h in Health::ALL {
            assert_eq!(h.to_string().parse::<Health>(), Ok(h));
            assert_eq!(
                serde_json::from_value::<Health>(h.as_str().into()).unwrap(),
                h
            );
        }
        assert_eq!(Health::Degraded.as_str(), "Degraded");
    }

    #[test]
    fn health_is_known_only_once_ready() {
        assert_eq!(Health::of(Phase::Ready, 3, 3), Health::Healthy);
        assert_eq!(Health::of(Phase::Ready, 2, 3), Health::Degraded);
        for p in [
            Phase::Provisioning,
            Phase::Failed,
            Phase::Deleting,
            Phase::Deleted,
        ] {
            assert_eq!(Health::of(p, 0, 3), Health::Unknown, "{p}");
            assert_eq!(Health::of(p, 3, 3), Health::Unknown, "{p}");
        }
    }
}
