//! Deciding what to do after losing a race: retry now, retry later, or give
//! up. Policies see only the conflict, never a store.
//!
//! [`Policy`] is the one decision; [`Retry`] is the built-in policy users
//! compose (`Retry::exponential(d).jitter(Jitter::Full).max_attempts(n)`).
//! The parts it composes stand alone: the backoff arithmetic
//! ([`Backoff`], [`Jitter`], [`delay`]), the [`Budget`] shared by all calls,
//! the [`CircuitBreaker`], and the [`Clock`] everything reads time from.
//! `docs/retry-patterns.md` says when to use which, with measured figures.

mod backoff;
mod budget;
mod builder;
mod circuit;
mod clock;
mod rng;

pub use backoff::{Adaptive, Backoff, Jitter, delay};
pub use budget::Budget;
pub use builder::Retry;
pub use circuit::{CircuitBreaker, CircuitState};
pub use clock::{Clock, ManualClock, Sleep, TokioClock};
pub use rng::Rng;

use crate::error::VersionConflict;
use std::fmt::Debug;
use std::time::Duration;

/// Decides, after each version conflict, whether the runner tries again and
/// how long it waits first.
///
/// [`decide`](Policy::decide) is the one method to write. Two optional hooks
/// frame each call: [`admit`](Policy::admit) runs before the first attempt
/// and may refuse the call without touching the store (a circuit breaker),
/// [`finish`](Policy::finish) hears how the call ended (a budget, a breaker).
///
/// One policy value is shared by every call of a runner and its clones, so
/// per-call state arrives in [`Attempt`] and shared state (a circuit, a budget)
/// must be synchronised by the policy.
///
/// ```
/// use machine_core::retry::{Attempt, Action, Policy};
/// use std::time::Duration;
///
/// /// Retries immediately while fewer than three writers overtook us.
/// #[derive(Debug)]
/// struct SmallGaps;
///
/// impl Policy for SmallGaps {
///     fn decide(&self, attempt: &Attempt<'_>) -> Action {
///         if attempt.conflict.gap() < 3 && attempt.number < 20 {
///             Action::Retry(Duration::ZERO)
///         } else {
///             Action::GiveUp
///         }
///     }
/// }
/// ```
pub trait Policy: Send + Sync + Debug {
    /// What to do after attempt `attempt.number` lost a race.
    fn decide(&self, attempt: &Attempt<'_>) -> Action;

    /// Asked once per call, before its first attempt: `Err` fails the call at
    /// once with [`Error::CircuitOpen`](crate::Error::CircuitOpen), and the
    /// store is not touched. Admits everything unless overridden.
    fn admit(&self, call: &Call<'_>) -> Result<(), Refused> {
        let _ = call;
        Ok(())
    }

    /// Told once per admitted call how it ended. Not called when the call's
    /// future is dropped before it ends. Does nothing unless overridden.
    fn finish(&self, call: &Call<'_>, ended: Finish) {
        let _ = (call, ended);
    }
}

/// What a [`Policy`] tells the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Wait this long, then reload and try again.
    Retry(Duration),
    /// Stop and report [`Error::RetriesExhausted`](crate::Error::RetriesExhausted).
    GiveUp,
    /// Stop early: the conflicts show no progress. Reported as
    /// [`Error::Thrashing`](crate::Error::Thrashing) with every conflict of the call.
    Thrashing,
    /// Stop: waiting and trying again would pass the call's deadline.
    /// Reported as [`Error::DeadlineExceeded`](crate::Error::DeadlineExceeded).
    DeadlineExceeded,
    /// Stop: the shared retry budget is spent. Reported as
    /// [`Error::BudgetExhausted`](crate::Error::BudgetExhausted).
    OverBudget,
}

/// What a policy knows when it decides: the attempt that just lost and every
/// conflict of this call so far.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Attempt<'a> {
    /// The attempt that just ended in a conflict (the first is 1).
    pub number: u32,
    /// The conflict this attempt lost.
    pub conflict: &'a VersionConflict,
    /// This call's conflicts, oldest first; the last is `conflict`.
    pub conflicts: &'a [VersionConflict],
    /// How long the runner waited before this attempt (zero before the first).
    pub previous_wait: Duration,
    /// Time since the call started, on the runner's retry clock.
    pub elapsed: Duration,
}

impl<'a> Attempt<'a> {
    /// The first attempt of a call, lost to `conflict`: handy when testing a
    /// policy (set the public fields to describe later attempts).
    #[must_use]
    pub fn first(conflict: &'a VersionConflict) -> Self {
        Self {
            number: 1,
            conflict,
            conflicts: std::slice::from_ref(conflict),
            previous_wait: Duration::ZERO,
            elapsed: Duration::ZERO,
        }
    }
}

/// The call a policy hook is about: which record of which machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Call<'a> {
    /// The machine's name.
    pub machine: &'a str,
    /// The record's id.
    pub id: &'a str,
}

impl<'a> Call<'a> {
    /// A call on record `(machine, id)`.
    #[must_use]
    pub const fn new(machine: &'a str, id: &'a str) -> Self {
        Self { machine, id }
    }
}

/// How an admitted call ended, as [`Policy::finish`] hears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Finish {
    /// The command was saved.
    Committed,
    /// The policy gave up after conflicts (any reason).
    GaveUp,
    /// The store failed (a backend error, not a conflict).
    StoreFailed,
    /// Anything else: the transition refused, the table refused, bad data.
    /// Says nothing about contention or the store's health.
    Other,
}

/// Why a policy refused a call in [`Policy::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refused {
    /// How long until the policy may admit calls again.
    pub retry_after: Duration,
}

impl Refused {
    /// A refusal that may lift after `retry_after`.
    #[must_use]
    pub const fn new(retry_after: Duration) -> Self {
        Self { retry_after }
    }
}

impl<P: Policy + ?Sized> Policy for std::sync::Arc<P> {
    fn decide(&self, attempt: &Attempt<'_>) -> Action {
        (**self).decide(attempt)
    }
    fn admit(&self, call: &Call<'_>) -> Result<(), Refused> {
        (**self).admit(call)
    }
    fn finish(&self, call: &Call<'_>, ended: Finish) {
        (**self).finish(call, ended);
    }
}

impl<P: Policy + ?Sized> Policy for Box<P> {
    fn decide(&self, attempt: &Attempt<'_>) -> Action {
        (**self).decide(attempt)
    }
    fn admit(&self, call: &Call<'_>) -> Result<(), Refused> {
        (**self).admit(call)
    }
    fn finish(&self, call: &Call<'_>, ended: Finish) {
        (**self).finish(call, ended);
    }
}
