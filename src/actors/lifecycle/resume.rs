//! Building a deployment's state from its record, and reading it.

use super::*;

impl Machine {
    /// The state of a deployment whose record says `facts` and `stored`, and the first effects: a new
    /// deployment queues for a permit; a restarted one resumes where its status stood and owes the manager
    /// every phase it was not told.
    pub fn resume(
        settings: Settings,
        facts: RecordFacts,
        stored: Stored,
        now: Now,
    ) -> (Machine, Vec<Effect>) {
        let mut fx = Vec::new();
        let phase = stored.phase.unwrap_or(Phase::Provisioning);
        let stage = if facts.deprovisioning() {
            match phase {
                Phase::Deleted => Stage::Finalizing {
                    finalizer: Call::Idle,
                },
                _ => Stage::Deleting {
                    draining_apply: false,
                    record_delete: Call::Idle,
                    children_delete: Call::Idle,
                },
            }
        } else {
            match phase {
                Phase::Provisioning if facts.spec_readable => Stage::Queued { position: None },
                Phase::Provisioning | Phase::Failed => Stage::Failed,
                Phase::Ready => Stage::Ready {
                    health: stored.health.unwrap_or(Health::Unknown),
                },
                Phase::Deleting => Stage::Deleting {
                    draining_apply: false,
                    record_delete: Call::Idle,
                    children_delete: Call::Idle,
                },
                Phase::Deleted => Stage::Finalizing {
                    finalizer: Call::Idle,
                },
            }
        };
        let unreadable = stage == Stage::Failed && phase == Phase::Provisioning;
        let message = if unreadable {
            UNREADABLE_SPEC.to_string()
        } else {
            stored
                .message
                .clone()
                .unwrap_or_else(|| "Provisioning request accepted; waiting to start".to_string())
        };
        let written = match (stored.phase, &stored.message, stored.last_updated) {
            (Some(phase), Some(message), Some(last_updated)) => Some(StatusView {
                phase,
                health: stored.health.unwrap_or(Health::Unknown),
                message: message.clone(),
                last_updated,
                reached_ready: stored.reached_ready,
                observed_generation: stored.observed_generation,
                last_notified: stored.last_notified,
            }),
            _ => None,
        };
        let mut m = Machine {
            settings,
            stage,
            facts,
            seen: Seen::default(),
            message,
            last_changed: if unreadable {
                now.utc
            } else {
                stored.last_updated.unwrap_or(now.utc)
            },
            notified: stored.last_notified,
            outbox: Outbox::new(),
            status: Call::Idle,
            written,
            reached_ready: stored.reached_ready || stored.last_notified == Some(Phase::Ready),
            drifted: false,
            stopped: false,
        };
        if m.stage.in_queue() {
            fx.push(Effect::RequestPermit);
        }
        // What the manager is owed: every phase on the path to where the deployment stands, after the last
        // one it was told.
        let path: &[Phase] = match (&m.stage, phase) {
            (Stage::Queued { .. }, _) => &[],
            (Stage::Failed, _) if unreadable => &[Phase::Failed],
            (Stage::Ready { .. }, _) => &[Phase::Provisioning, Phase::Ready],
            (Stage::Failed, _) => &[Phase::Provisioning, Phase::Failed],
            (Stage::Deleting { .. }, _) => &[Phase::Deleting],
            (_, _) => &[Phase::Deleting, Phase::Deleted],
        };
        for p in path {
            m.enqueue(*p, now);
        }
        m.advance(now, &mut fx);
        (m, fx)
    }

    /// The current stage.
    #[cfg(test)]
    pub fn stage(&self) -> &Stage {
        &self.stage
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.stage.phase()
    }

    /// The current message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The last phase the manager was told (delivered, refused or abandoned).
    #[cfg(test)]
    pub fn notified(&self) -> Option<Phase> {
        self.notified
    }

    /// The callbacks still to send.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The deployment's health: Healthy or Degraded once Ready, Unknown before and after.
    pub fn health(&self) -> Health {
        match self.stage {
            Stage::Ready { health } => health,
            _ => Health::Unknown,
        }
    }
}
