//! One call's retries — the conflicts so far, the last wait, the attempt
//! count — and what happens after a lost race: the pipeline's memory of a
//! call, kept apart so the loop itself stays short.

use crate::error::{Error, VersionConflict};
use crate::retry::{Action, Attempt, Clock, Policy};
use std::time::Duration;

pub(crate) struct Tries {
    started: Duration,
    conflicts: Vec<VersionConflict>,
    previous_wait: Duration,
    attempts: u32,
}

impl Tries {
    /// A call starting now on `clock`.
    pub(crate) fn new(clock: &dyn Clock) -> Self {
        Self { started: clock.now(), conflicts: Vec::new(), previous_wait: Duration::ZERO, attempts: 0 }
    }

    /// Counts a new attempt and returns its number (the first is 1).
    pub(crate) fn start(&mut self) -> u32 {
        self.attempts = self.attempts.saturating_add(1);
        self.attempts
    }

    /// The current attempt lost to `conflict`: asks `policy`, then waits
    /// (awaited, never spawned, so dropping the call stops it) before the
    /// next attempt, or returns the error to give up with.
    pub(crate) async fn lost<E>(
        &mut self,
        policy: &dyn Policy,
        clock: &dyn Clock,
        conflict: VersionConflict,
    ) -> Result<(), Error<E>> {
        self.conflicts.push(conflict);
        let elapsed = clock.now().saturating_sub(self.started);
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
            give_up => Err(self.gave_up(give_up, elapsed)),
        }
    }

    /// The error for a policy's decision to stop.
    fn gave_up<E>(&mut self, decision: Action, elapsed: Duration) -> Error<E> {
        let conflicts = std::mem::take(&mut self.conflicts);
        let conflict = conflicts.last().cloned().unwrap_or_else(|| VersionConflict::new("", "", 0, 0));
        let attempts = self.attempts;
        match decision {
            Action::Thrashing => Error::Thrashing { conflict, conflicts, attempts },
            Action::DeadlineExceeded => Error::DeadlineExceeded { conflict, attempts, elapsed },
            Action::OverBudget => Error::BudgetExhausted { conflict, attempts },
            Action::GiveUp | Action::Retry(_) => Error::RetriesExhausted { conflict, attempts },
        }
    }
}
