//! The transitions: how each input changes the stage, and what every step ends with.

use super::*;

impl Machine {
    /// Takes one input at time `now` and returns what to do.
    pub fn step(&mut self, input: Input, now: Now) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.stopped {
            return fx;
        }
        self.take(input, now, &mut fx);
        self.advance(now, &mut fx);
        fx
    }

    /// Applies an input's news to the state.
    pub(super) fn take(&mut self, input: Input, now: Now, fx: &mut Vec<Effect>) {
        let retry_at = now.at + self.settings.call_retry;
        match input {
            Input::Record(facts) => self.facts = facts,
            Input::Seen(seen) => self.seen = seen,
            Input::Tick => {}
            Input::RecordGone => match self.stage {
                Stage::Done | Stage::Departing => {}
                // Deleted is queued or told already; the finalizer is gone, so is the record.
                Stage::Finalizing { .. } => self.stage = Stage::Departing,
                _ => {
                    fx.push(Effect::Report(Event::RecordVanished));
                    self.leave_permit(fx);
                    self.enqueue(Phase::Deleting, now);
                    // The children carry ownerReferences to the record, so the garbage collector removes
                    // them; the delete by label makes sure of it.
                    fx.push(Effect::DeleteChildren);
                    self.set_stage(Stage::Departing, fx);
                    self.set_message("Resource deleted", now);
                    self.enqueue(Phase::Deleted, now);
                }
            },
            Input::PermitQueued {
                position,
                limit,
                namespace,
            } => {
                if let Stage::Queued { position: p } = &mut self.stage {
                    *p = Some(position);
                    self.set_message(
                        format!(
                            "Queued: position {position} in namespace {namespace} (at most {limit} provision at once)"
                        ),
                        now,
                    );
                }
            }
            Input::PermitGranted => match self.stage {
                Stage::Queued { .. } => {
                    self.set_stage(
                        Stage::Applying {
                            started: now.at,
                            call: Call::Idle,
                            rejections: 0,
                        },
                        fx,
                    );
                    self.set_message("Creating the workload", now);
                    self.enqueue(Phase::Provisioning, now);
                }
                // Granted after the deployment moved on (a deprovision while queued): not needed.
                _ if !self.stage.holds_permit() => fx.push(Effect::ReleasePermit),
                _ => {}
            },
            Input::Applied(result) => match self.stage.clone() {
                Stage::Applying {
                    started,
                    rejections,
                    ..
                } => match result {
                    Ok(()) => {
                        self.stage = Stage::AwaitingReady {
                            started,
                            trouble: None,
                        };
                    }
                    Err(CallError::Foreign(e)) => self.fail(e, now, fx),
                    Err(e) => {
                        let rejections = match e {
                            CallError::Rejected(_) => rejections + 1,
                            CallError::Unavailable(_) | CallError::Foreign(_) => rejections,
                        };
                        if rejections >= self.settings.apply_rejections {
                            self.fail(
                                format!("the Kubernetes API keeps rejecting the workload: {e}"),
                                now,
                                fx,
                            );
                        } else {
                            self.stage = Stage::Applying {
                                started,
                                call: Call::RetryAt(retry_at),
                                rejections,
                            };
                            fx.push(Effect::Report(Event::CallFailed {
                                call: "apply",
                                error: e.to_string(),
                            }));
                            fx.push(Effect::WakeIn(self.settings.call_retry));
                        }
                    }
                },
                Stage::Deleting {
                    record_delete,
                    children_delete,
                    ..
                } => {
                    self.stage = Stage::Deleting {
                        draining_apply: false,
                        record_delete,
                        children_delete,
                    }
                }
                _ => {}
            },
            Input::StatusWritten(result) => {
                self.status = match result {
                    Ok(()) => Call::Done(now.at),
                    Err(e) => {
                        self.written = None;
                        fx.push(Effect::Report(Event::CallFailed {
                            call: "status",
                            error: e.to_string(),
                        }));
                        fx.push(Effect::WakeIn(self.settings.call_retry));
                        Call::RetryAt(retry_at)
                    }
                }
            }
            Input::CallbackDone { result, jitter } => self.callback_done(result, jitter, now, fx),
            Input::RecordDeleted(result) => {
                let next = self.settings.answer("record delete", result, now, fx);
                if let Stage::Deleting { record_delete, .. } = &mut self.stage {
                    *record_delete = next;
                }
            }
            Input::ChildrenDeleted(result) => {
                let next = self.settings.answer("children delete", result, now, fx);
                if let Stage::Deleting {
                    children_delete, ..
                } = &mut self.stage
                {
                    *children_delete = next;
                }
            }
            Input::FinalizerRemoved(result) => {
                let next = self.settings.answer("finalizer removal", result, now, fx);
                if let Stage::Finalizing { finalizer } = &mut self.stage {
                    *finalizer = next;
                }
            }
        }
    }

    /// Takes the next steps given what is known now.
    pub(super) fn advance(&mut self, now: Now, fx: &mut Vec<Effect>) {
        if self.facts.deprovisioning()
            && matches!(
                self.stage,
                Stage::Queued { .. }
                    | Stage::Applying { .. }
                    | Stage::AwaitingReady { .. }
                    | Stage::Ready { .. }
                    | Stage::Failed
            )
        {
            let draining_apply = matches!(
                self.stage,
                Stage::Applying {
                    call: Call::InFlight,
                    ..
                }
            );
            self.leave_permit(fx);
            self.set_stage(
                Stage::Deleting {
                    draining_apply,
                    record_delete: Call::Idle,
                    children_delete: Call::Idle,
                },
                fx,
            );
            self.set_message("Deprovisioning: deleting the workload and its storage", now);
            self.enqueue(Phase::Deleting, now);
        }
        match self.stage.clone() {
            Stage::Queued { .. } | Stage::Failed => {}
            Stage::Applying {
                started,
                call,
                rejections,
            } => {
                if call.due(now.at, None) {
                    self.stage = Stage::Applying {
                        started,
                        call: Call::InFlight,
                        rejections,
                    };
                    // No timer for the provisioning timeout: the periodic resync checks it, and one sleeping
                    // task per apply attempt would pile up while the API server is away.
                    fx.push(Effect::Apply);
                }
                self.check_timeout(started, now, fx);
            }
            Stage::AwaitingReady { started, trouble } => {
                self.await_ready(started, trouble, now, fx)
            }
            Stage::Ready { health } => {
                let h = Health::of(Phase::Ready, self.seen.ready_pods, self.seen.replicas);
                if h != health {
                    self.stage = Stage::Ready { health: h };
                    let msg = match h {
                        Health::Healthy => "Database is running and healthy".to_string(),
                        _ => format!(
                            "Degraded: {} of {} replicas ready",
                            self.seen.ready_pods, self.seen.replicas
                        ),
                    };
                    self.set_message(msg, now);
                }
                if self.seen.drifted && !self.drifted {
                    fx.push(Effect::Report(Event::DriftDetected));
                }
                self.drifted = self.seen.drifted;
            }
            Stage::Deleting {
                draining_apply,
                record_delete,
                children_delete,
            } => self.delete(draining_apply, record_delete, children_delete, now, fx),
            Stage::Finalizing { .. } | Stage::Departing | Stage::Done => {}
        }
        self.finish_step(now, fx)
    }

    pub(super) fn await_ready(
        &mut self,
        started: Instant,
        trouble: Option<Trouble>,
        now: Now,
        fx: &mut Vec<Effect>,
    ) {
        if self.seen.workload_ready {
            self.leave_permit(fx);
            self.set_stage(
                Stage::Ready {
                    health: Health::Healthy,
                },
                fx,
            );
            self.reached_ready = true;
            fx.push(Effect::Report(Event::Provisioned));
            self.set_message("Database provisioned and healthy", now);
            self.enqueue(Phase::Ready, now);
            return;
        }
        let (ready, replicas) = (self.seen.ready_pods, self.seen.replicas);
        match self.seen.problem.clone() {
            Some(problem) => {
                let since = match trouble {
                    Some(t) if t.problem == problem => t.since,
                    _ => {
                        fx.push(Effect::WakeIn(self.settings.failure_grace));
                        now.at
                    }
                };
                self.stage = Stage::AwaitingReady {
                    started,
                    trouble: Some(Trouble {
                        problem: problem.clone(),
                        since,
                    }),
                };
                if now.at >= since + self.settings.failure_grace {
                    let detail = if problem.message.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", problem.message)
                    };
                    let msg = format!("pod {} is in {}{detail}", problem.pod, problem.reason);
                    return self.fail(msg, now, fx);
                }
                self.set_message(
                    format!("Waiting for pod {}: {}", problem.pod, problem.reason),
                    now,
                );
            }
            None => {
                self.stage = Stage::AwaitingReady {
                    started,
                    trouble: None,
                };
                self.set_message(
                    format!("Waiting for replicas: {ready} of {replicas} ready"),
                    now,
                );
            }
        }
        self.check_timeout(started, now, fx);
    }

    pub(super) fn delete(
        &mut self,
        draining_apply: bool,
        mut record_delete: Call,
        mut children_delete: Call,
        now: Now,
        fx: &mut Vec<Effect>,
    ) {
        let recheck = self.settings.delete_recheck;
        if draining_apply {
            // Wait for the apply's answer before anything is deleted, so it cannot re-create objects.
            return;
        }
        if !self.facts.terminating {
            if record_delete.due(now.at, Some(recheck)) {
                record_delete = Call::InFlight;
                fx.push(Effect::DeleteRecord);
                fx.push(Effect::WakeIn(recheck));
            }
        } else {
            let remaining = self.seen.remaining_children;
            if !self.facts.foreground_pending && remaining == 0 {
                self.set_stage(
                    Stage::Finalizing {
                        finalizer: Call::Idle,
                    },
                    fx,
                );
                self.set_message("Resource deleted", now);
                self.enqueue(Phase::Deleted, now);
                return;
            }
            // Without foreground propagation (a `kubectl delete`), or once the garbage collector is done,
            // whatever still carries the deployment's label is deleted by the broker.
            if !self.facts.foreground_pending && children_delete.due(now.at, Some(recheck)) {
                children_delete = Call::InFlight;
                fx.push(Effect::DeleteChildren);
                fx.push(Effect::WakeIn(recheck));
            }
            self.set_message(
                format!("Deprovisioning: waiting for {remaining} objects to be removed"),
                now,
            );
        }
        self.stage = Stage::Deleting {
            draining_apply,
            record_delete,
            children_delete,
        };
    }

    /// Callbacks, status, the finalizer and stopping: what every step ends with.
    pub(super) fn finish_step(&mut self, now: Now, fx: &mut Vec<Effect>) {
        self.pump(now, fx);
        if !matches!(self.stage, Stage::Departing | Stage::Done) {
            self.sync_status(now, fx);
        }
        let retry = self.settings.delete_recheck;
        let told = self.notified == Some(Phase::Deleted) && self.outbox.is_idle();
        let status_current = matches!(self.status, Call::Done(_) | Call::Idle)
            && self.written.as_ref() == Some(&self.view());
        if let Stage::Finalizing { finalizer } = &mut self.stage
            && told
            && status_current
            && finalizer.due(now.at, Some(retry))
        {
            *finalizer = Call::InFlight;
            fx.push(Effect::RemoveFinalizer);
            fx.push(Effect::WakeIn(retry));
        }
        if self.stage == Stage::Departing && self.outbox.is_idle() {
            self.stage = Stage::Done;
        }
        if self.stage == Stage::Done && !self.stopped {
            self.stopped = true;
            fx.push(Effect::Stop);
        }
    }

    pub(super) fn check_timeout(&mut self, started: Instant, now: Now, fx: &mut Vec<Effect>) {
        let limit = self.settings.provision_timeout;
        if now.at >= started + limit {
            let msg = format!(
                "provisioning timed out after {}s ({} of {} replicas ready)",
                limit.as_secs(),
                self.seen.ready_pods,
                self.seen.replicas
            );
            self.fail(msg, now, fx);
        }
    }

    pub(super) fn fail(&mut self, message: String, now: Now, fx: &mut Vec<Effect>) {
        self.leave_permit(fx);
        self.set_stage(Stage::Failed, fx);
        self.set_message(message, now);
        self.enqueue(Phase::Failed, now);
    }

    /// Returns the permit or leaves the queue, if the stage has either.
    pub(super) fn leave_permit(&mut self, fx: &mut Vec<Effect>) {
        if self.stage.holds_permit() || self.stage.in_queue() {
            fx.push(Effect::ReleasePermit);
        }
    }

    pub(super) fn set_stage(&mut self, stage: Stage, fx: &mut Vec<Effect>) {
        let (from, to) = (self.stage.phase(), stage.phase());
        if from != to {
            fx.push(Effect::Report(Event::Phase { from, to }));
        }
        self.stage = stage;
    }

    pub(super) fn set_message(&mut self, message: impl Into<String>, now: Now) {
        let message = message.into();
        if self.message != message {
            self.message = message;
            self.last_changed = now.utc;
        }
    }

    /// What the status should say now.
    pub fn view(&self) -> StatusView {
        StatusView {
            phase: self.phase(),
            health: self.health(),
            message: self.message.clone(),
            last_updated: self.last_changed,
            reached_ready: self.reached_ready,
            observed_generation: self.facts.generation,
            last_notified: self.notified,
        }
    }

    pub(super) fn sync_status(&mut self, now: Now, fx: &mut Vec<Effect>) {
        let want = self.view();
        if self.written.as_ref() == Some(&want) || !self.status.due(now.at, Some(Duration::ZERO)) {
            return;
        }
        self.written = Some(want.clone());
        self.status = Call::InFlight;
        fx.push(Effect::WriteStatus(want));
    }
}

impl Settings {
    /// The next state of a call that answered.
    pub(super) fn answer(
        &self,
        what: &'static str,
        result: Result<(), CallError>,
        now: Now,
        fx: &mut Vec<Effect>,
    ) -> Call {
        match result {
            Ok(()) => Call::Done(now.at),
            Err(e) => {
                fx.push(Effect::Report(Event::CallFailed {
                    call: what,
                    error: e.to_string(),
                }));
                fx.push(Effect::WakeIn(self.call_retry));
                Call::RetryAt(now.at + self.call_retry)
            }
        }
    }
}
