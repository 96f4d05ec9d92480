//! One call's retries — the conflicts so far, the last wait, the attempt
//! count — and what happens after a lost race: the pipeline's memory of a
//! call, kept apart so the loop itself stays short.

use crate::error::{Error, VersionConflict};
use crate::observe;
use crate::retry::{Action, Attempt, Clock, Policy};
use std::time::Duration;

pub(crate) struct Tries {
    /// When the call's first attempt that needed the clock began.
    started: Option<Duration>,
    conflicts: Vec<VersionConflict>,
    previous_wait: Duration,
    attempts: u32,
    /// Whether spans and events may name the record.
    sensitive: bool,
}

impl Tries {
    /// A call about to make its first attempt.
    pub(crate) fn new(sensitive: bool) -> Self {
        Self { started: None, conflicts: Vec::new(), previous_wait: Duration::ZERO, attempts: 0, sensitive }
    }

    /// Starts the call's elapsed time on `clock`, the first time only: a
    /// command committed under a held lock never reads the clock.
    pub(crate) fn clock_from(&mut self, clock: &dyn Clock) {
        if self.started.is_none() {
            self.started = Some(clock.now());
        }
    }

    /// Counts a new attempt and returns its number (the first is 1).
    pub(crate) fn start(&mut self) -> u32 {
        self.attempts = self.attempts.saturating_add(1);
        self.attempts
    }

    /// The current attempt lost to `conflict` on a record of `machine`: asks
    /// `policy`, then waits (awaited, never spawned, so dropping the call
    /// stops it) before the next attempt, or returns the error to give up
    /// with. Both are observed here, whichever driver the call came from.
    pub(crate) async fn lost<E>(
        &mut self,
        policy: &dyn Policy,
        clock: &dyn Clock,
        conflict: VersionConflict,
        machine: &'static str,
    ) -> Result<(), Error<E>> {
        self.conflicts.push(conflict);
        let now = clock.now();
        let elapsed = now.saturating_sub(*self.started.get_or_insert(now));
        let decision = match self.conflicts.last() {
            Some(conflict) => policy.decide(&Attempt {
                number: self.attempts,
                conflict,
                conflicts: &self.conflicts,
                previous_wait: self.previous_wait,
                elapsed,
            }),
            None => Action::GiveUp,
        };
        let wait = match decision {
            Action::Retry(wait) => Some(wait),
            _ => None,
        };
        if let Some(conflict) = self.conflicts.last() {
            observe::conflict(machine, conflict, self.attempts, wait, self.sensitive);
        }
        match decision {
            Action::Retry(wait) => {
                if wait.is_zero() {
                    // Even an immediate retry lets other tasks run first: the
                    // writer that beat us may be on this thread.
                    tokio::task::yield_now().await;
                } else {
                    clock.sleep(wait).await;
                }
                self.previous_wait = wait;
                Ok(())
            }
            give_up => Err(self.gave_up(give_up, elapsed, machine)),
        }
    }

    /// The error for a policy's decision to stop, observed.
    fn gave_up<E>(&mut self, decision: Action, elapsed: Duration, machine: &'static str) -> Error<E> {
        let conflicts = std::mem::take(&mut self.conflicts);
        let conflict = conflicts.last().cloned().unwrap_or_else(|| VersionConflict::new("", "", 0, 0));
        let attempts = self.attempts;
        let reason = match decision {
            Action::Thrashing => "thrashing",
            Action::DeadlineExceeded => "deadline_exceeded",
            Action::OverBudget => "budget_exhausted",
            Action::GiveUp | Action::Retry(_) => "retries_exhausted",
        };
        observe::gave_up(machine, &conflict, attempts, reason, elapsed, self.sensitive);
        match decision {
            Action::Thrashing => Error::Thrashing { conflict, conflicts, attempts },
            Action::DeadlineExceeded => Error::DeadlineExceeded { conflict, attempts, elapsed },
            Action::OverBudget => Error::BudgetExhausted { conflict, attempts },
            Action::GiveUp | Action::Retry(_) => Error::RetriesExhausted { conflict, attempts },
        }
    }
}
