//! The ordered callback outbox: one callback at a time, retried with backoff for at most the delivery
//! lifetime, never a phase twice or out of order.

use std::collections::VecDeque;

use super::*;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    phase: Phase,
    message: String,
    time: jiff::Timestamp,
    attempts: u32,
    first_attempt: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sending {
    Idle,
    InFlight,
    BackingOff(Instant),
}

/// The deployment's callbacks, one at a time, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbox {
    queue: VecDeque<Pending>,
    sending: Sending,
}

impl Outbox {
    pub(super) fn new() -> Self {
        Outbox {
            queue: VecDeque::new(),
            sending: Sending::Idle,
        }
    }

    /// Nothing queued and nothing in flight.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.sending != Sending::InFlight
    }

    /// Callbacks waiting or in flight.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    pub(super) fn last_phase(&self) -> Option<Phase> {
        self.queue.back().map(|p| p.phase)
    }
}

/// The deployment retry delay before attempt `attempt + 1`: doubling from the initial backoff up to the
/// maximum, times `jitter`.
pub fn backoff(s: &Settings, attempt: u32, jitter: f64) -> Duration {
    let exp = s
        .callback_initial_backoff
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    exp.min(s.callback_max_backoff)
        .mul_f64(jitter.clamp(0.5, 1.5))
}

impl Machine {
    /// Queues a callback for `phase` unless the manager was told it or a later one, or it is queued.
    pub(super) fn enqueue(&mut self, phase: Phase, now: Now) {
        let latest = self.outbox.last_phase().or(self.notified);
        if latest.is_some_and(|l| rank(l) >= rank(phase)) {
            return;
        }
        self.outbox.queue.push_back(Pending {
            phase,
            message: self.message.clone(),
            time: now.utc,
            attempts: 0,
            first_attempt: None,
        });
    }

    pub(super) fn pump(&mut self, now: Now, fx: &mut Vec<Effect>) {
        let ready = match self.outbox.sending {
            Sending::Idle => true,
            Sending::InFlight => false,
            Sending::BackingOff(t) => now.at >= t,
        };
        if !ready {
            return;
        }
        let Some(head) = self.outbox.queue.front_mut() else {
            self.outbox.sending = Sending::Idle;
            return;
        };
        head.attempts += 1;
        head.first_attempt.get_or_insert(now.at);
        self.outbox.sending = Sending::InFlight;
        fx.push(Effect::Deliver(Notice {
            phase: head.phase,
            message: head.message.clone(),
            time: head.time,
            attempt: head.attempts,
        }));
    }

    pub(super) fn callback_done(
        &mut self,
        result: Delivery,
        jitter: f64,
        now: Now,
        fx: &mut Vec<Effect>,
    ) {
        if self.outbox.sending != Sending::InFlight {
            return;
        }
        let Some(head) = self.outbox.queue.front() else {
            self.outbox.sending = Sending::Idle;
            return;
        };
        let (phase, attempts) = (head.phase, head.attempts);
        let first = head.first_attempt.unwrap_or(now.at);
        let finished = match result {
            Delivery::Delivered => Some((Finish::Delivered, None)),
            Delivery::Rejected(why) => Some((Finish::Rejected, Some(why))),
            Delivery::Retry(why) => {
                let deadline = first + self.settings.delivery_lifetime;
                if now.at >= deadline {
                    Some((Finish::Abandoned, Some(why)))
                } else {
                    // The last attempt is made at the deadline, not after it.
                    let delay = backoff(&self.settings, attempts, jitter).min(deadline - now.at);
                    self.outbox.sending = Sending::BackingOff(now.at + delay);
                    fx.push(Effect::WakeIn(delay));
                    fx.push(Effect::Report(Event::CallbackRetrying {
                        phase,
                        attempt: attempts,
                        reason: why,
                        delay,
                    }));
                    None
                }
            }
        };
        if let Some((how, reason)) = finished {
            self.outbox.queue.pop_front();
            self.outbox.sending = Sending::Idle;
            self.notified = Some(phase);
            fx.push(Effect::Report(Event::CallbackFinished {
                phase,
                how,
                attempts,
                reason,
            }));
        }
    }
}
