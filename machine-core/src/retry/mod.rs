//! Deciding what to do after losing a race: retry now, retry later, or give
//! up. Policies see only the conflict, never a store.
//!
//! [`Policy`] is the one decision; [`Retry`] is the built-in policy users
//! compose (`Retry::exponential(d).jitter(Jitter::Full).max_attempts(n)`).

mod builder;
mod rng;

pub use builder::{Jitter, Retry};
pub use rng::Rng;

use crate::error::VersionConflict;
use std::fmt::Debug;
use std::time::Duration;

/// Decides, after each version conflict, whether the runner tries again and
/// how long it waits first.
///
/// One policy value is shared by every call of a runner and its clones, so
/// per-call state arrives in [`Attempt`] and shared state (a circuit, a budget)
/// must be synchronised by the policy.
///
/// ```
/// use machine_core::retry::{Attempt, Decision, Policy};
/// use std::time::Duration;
///
/// /// Retries immediately while fewer than three writers overtook us.
/// #[derive(Debug)]
/// struct SmallGaps;
///
/// impl Policy for SmallGaps {
///     fn decide(&self, attempt: &Attempt<'_>) -> Decision {
///         if attempt.conflict.gap() < 3 && attempt.number < 20 {
///             Decision::Retry(Duration::ZERO)
///         } else {
///             Decision::GiveUp
///         }
///     }
/// }
/// ```
pub trait Policy: Send + Sync + Debug {
    /// What to do after attempt `attempt.number` lost a race.
    fn decide(&self, attempt: &Attempt<'_>) -> Decision;
}

/// What a [`Policy`] tells the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Wait this long, then reload and try again.
    Retry(Duration),
    /// Stop and report [`Error::RetriesExhausted`](crate::Error::RetriesExhausted).
    GiveUp,
}

/// What a policy knows when it decides: the attempt that just lost and every
/// conflict of this call so far.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// The attempt that just ended in a conflict (the first is 1).
    pub number: u32,
    /// The conflict this attempt lost.
    pub conflict: &'a VersionConflict,
    /// This call's conflicts, oldest first; the last is `conflict`.
    pub conflicts: &'a [VersionConflict],
    /// How long the runner waited before this attempt (zero before the first).
    pub previous_wait: Duration,
    /// Time since the call started.
    pub elapsed: Duration,
}

impl<'a> Attempt<'a> {
    /// The first attempt of a call, lost to `conflict`: handy when testing a policy.
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

impl<P: Policy + ?Sized> Policy for std::sync::Arc<P> {
    fn decide(&self, attempt: &Attempt<'_>) -> Decision {
        (**self).decide(attempt)
    }
}

impl<P: Policy + ?Sized> Policy for Box<P> {
    fn decide(&self, attempt: &Attempt<'_>) -> Decision {
        (**self).decide(attempt)
    }
}
