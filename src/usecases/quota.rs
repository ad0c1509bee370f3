//! The team quota check before a provision is accepted: the request's Team (cluster-scoped, named like the
//! request's `team`) against what the team's records already hold, queued and running alike.

use super::{Broker, Refusal};
use crate::domain::{self, ProvisionRequest, QuotaRefusal, TeamUsage};
use crate::k8s::record;
use crate::k8s::team;

impl Broker {
    /// Refuses a provision its Team does not allow or that would exceed the Team's limits. The caller holds the
    /// team's lock until the record is created, so the records read here are all there is.
    pub(super) async fn check_quota(&self, req: &ProvisionRequest) -> Result<(), Refusal> {
        let Some(team) = self.cluster.get_team(&req.team).await? else {
            if self.require_team {
                return Err(Refusal::Forbidden(format!(
                    "team {} has no Team resource, and this broker requires one (--require-team)",
                    req.team
                )));
            }
            return Ok(());
        };
        let policy = team::policy(&team).map_err(Refusal::Forbidden)?;
        let rtype = req.resource_type.as_str();
        let records = self.cluster.team_records(&req.team).await?;
        let held: Vec<_> = records
            .iter()
            .filter(|r| !record::is_deprovisioning(r))
            // The same request again is not one more deployment.
            .filter(|r| {
                !(r.metadata.namespace.as_deref() == Some(req.namespace.as_str())
                    && r.spec.resource_type == rtype
                    && r.spec.resource_name == req.resource_name)
            })
            .filter_map(|r| r.spec.spec.desired())
            .collect();
        let usage = TeamUsage::of(held.iter().copied(), &self.prices);
        domain::admit(
            &req.team,
            &policy,
            &req.namespace,
            &req.spec,
            &usage,
            &self.prices,
        )
        .map_err(|r| match r {
            QuotaRefusal::Forbidden(m) => Refusal::Forbidden(m),
            QuotaRefusal::Exceeded(m) => Refusal::QuotaExceeded(m),
        })
    }
}
