//! The built-in policy, composed with a builder: a backoff curve and jitter,
//! limits (attempts, a deadline, thrashing), a shared budget, a circuit
//! breaker, and a hook that sees every conflict.

use super::backoff::{self, Adaptive, Backoff, Jitter};
use super::{Action, Attempt, Budget, Call, CircuitBreaker, Finish, Policy, Refused, Rng};
use crate::error::VersionConflict;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Called with every conflict and what the policy decided about it.
type Hook = Arc<dyn Fn(&Attempt<'_>, &Action) + Send + Sync>;

/// The built-in retry [`Policy`].
///
/// | constructor | wait before retry *n* (1-based) | default attempts |
/// |---|---|---|
/// | [`Retry::none()`] | never retries | 1 |
/// | [`Retry::fixed(d)`](Retry::fixed) | `d` (FactCast: `Duration::ZERO`) | 10 |
/// | [`Retry::exponential(d)`](Retry::exponential) | `min(max_delay, d × 2ⁿ⁻¹)` | 10 |
/// | [`Retry::adaptive(d)`](Retry::adaptive) | by the version gap, see [`Adaptive`] | 10 |
///
/// Then [`jitter`](Retry::jitter) randomises each wait, and the call gives up
/// at whichever limit comes first: [`max_attempts`](Retry::max_attempts)
/// (every try, the first included), a total [`deadline`](Retry::deadline),
/// [`thrashing_after`](Retry::thrashing_after) conflicts without progress, or
/// an empty shared [`budget`](Retry::budget). A
/// [`circuit_breaker`](Retry::circuit_breaker) refuses calls outright while
/// open. [`on_conflict`](Retry::on_conflict) sees every conflict.
///
/// Waits are computed in nanoseconds, so microsecond bases do not round to
/// zero. Clones share the budget, the breaker and the random source.
///
/// The runner's default, [`Retry::default()`], is
/// `Retry::exponential(1 ms).max_delay(100 ms).jitter(Jitter::Equal).max_attempts(100).thrashing_after(3)`:
/// of the measured policies that let 32 and 64 writers on one in-memory record
/// finish without giving up, the one that wasted the fewest attempts (see
/// `docs/retry-patterns.md`), with 100 attempts because 32 writers on one
/// PostgreSQL or SQLite row needed up to 34 and 39 for one increment of 3,200
/// (`tests/stores.rs`).
///
/// ```
/// use machine_core::{Jitter, Retry};
/// use std::time::Duration;
///
/// let policy = Retry::exponential(Duration::from_micros(200))
///     .max_delay(Duration::from_millis(50))
///     .jitter(Jitter::Full)
///     .max_attempts(10)
///     .deadline(Duration::from_secs(2))
///     .thrashing_after(3)
///     .on_conflict(|attempt, action| eprintln!("{} lost: {action:?}", attempt.conflict));
/// assert_eq!(policy.attempts(), 10);
/// ```
#[derive(Clone)]
pub struct Retry {
    backoff: Backoff,
    jitter: Jitter,
    max_attempts: u32,
    max_delay: Duration,
    deadline: Option<Duration>,
    thrashing_after: Option<u32>,
    budget: Option<Budget>,
    breaker: Option<CircuitBreaker>,
    on_conflict: Option<Hook>,
    rng: Arc<Rng>,
}

impl Retry {
    /// Never retries: the first conflict is reported.
    #[must_use]
    pub fn none() -> Self {
        Self::fixed(Duration::ZERO).max_attempts(1)
    }

    /// Retries after the same wait each time, 10 attempts by default.
    /// `Retry::fixed(Duration::ZERO)` is FactCast's default.
    #[must_use]
    pub fn fixed(wait: Duration) -> Self {
        Self {
            backoff: Backoff::Fixed(wait),
            jitter: Jitter::None,
            max_attempts: 10,
            max_delay: Duration::MAX,
            deadline: None,
            thrashing_after: None,
            budget: None,
            breaker: None,
            on_conflict: None,
            rng: Arc::new(Rng::from_entropy()),
        }
    }

    /// Retries after `base`, then twice that, and so on up to
    /// [`max_delay`](Retry::max_delay) (1 s unless set); 10 attempts by default.
    #[must_use]
    pub fn exponential(base: Duration) -> Self {
        Self { backoff: Backoff::Exponential(base), max_delay: Duration::from_secs(1), ..Self::fixed(base) }
    }

    /// Waits by the version gap of each conflict, in the default bands of
    /// [`Adaptive`] (light up to a gap of 1, proportional up to 10, then
    /// aggressive), capped at 1 s unless set; 10 attempts by default.
    #[must_use]
    pub fn adaptive(base: Duration) -> Self {
        Self::adaptive_bands(Adaptive::new(base))
    }

    /// Like [`adaptive`](Retry::adaptive) with your own band thresholds.
    #[must_use]
    pub fn adaptive_bands(bands: Adaptive) -> Self {
        Self { backoff: Backoff::Adaptive(bands), max_delay: Duration::from_secs(1), ..Self::fixed(bands.base) }
    }

    /// Randomises each wait (see [`Jitter`]).
    #[must_use]
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Gives up after `attempts` tries in all (at least 1).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Caps every wait, jitter included.
    #[must_use]
    pub fn max_delay(mut self, cap: Duration) -> Self {
        self.max_delay = cap;
        self
    }

    /// Gives up with [`Error::DeadlineExceeded`](crate::Error::DeadlineExceeded)
    /// instead of waiting past `total` since the call started.
    #[must_use]
    pub fn deadline(mut self, total: Duration) -> Self {
        self.deadline = Some(total);
        self
    }

    /// Gives up early with [`Error::Thrashing`](crate::Error::Thrashing) after
    /// `conflicts` identical conflicts in a row (at least 2): the same record
    /// found at the same current version by the same attempted write. The
    /// record did not move, yet every attempt lost, so this writer's reads are
    /// stale (a cache, a lagging replica) or the store refuses it for a reason
    /// that waiting will not fix. With fresh reads it never triggers: each
    /// conflict then finds a newer version than the one before.
    #[must_use]
    pub fn thrashing_after(mut self, conflicts: u32) -> Self {
        self.thrashing_after = Some(conflicts.max(2));
        self
    }

    /// Spends retries from `budget`, shared with every clone: each call
    /// deposits into it, each retry withdraws, and when it is empty the call
    /// gives up with [`Error::BudgetExhausted`](crate::Error::BudgetExhausted).
    #[must_use]
    pub fn budget(mut self, budget: Budget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Refuses calls while `breaker` is open, with
    /// [`Error::CircuitOpen`](crate::Error::CircuitOpen) and without touching
    /// the store; every clone of the runner shares it.
    #[must_use]
    pub fn circuit_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// Calls `hook` with every conflict and the decision taken about it, for
    /// logs and metrics. It runs on the caller's task: keep it quick.
    #[must_use]
    pub fn on_conflict(mut self, hook: impl Fn(&Attempt<'_>, &Action) + Send + Sync + 'static) -> Self {
        self.on_conflict = Some(Arc::new(hook));
        self
    }

    /// Draws jitter from `rng`, for reproducible tests.
    #[must_use]
    pub fn rng(mut self, rng: Rng) -> Self {
        self.rng = Arc::new(rng);
        self
    }

    /// The number of attempts this policy allows.
    #[must_use]
    pub fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The wait before retry `retry` (1-based) after a conflict with version
    /// gap `gap`, given the previous wait: the backoff curve, capped, jittered.
    #[must_use]
    pub fn delay(&self, retry: u32, gap: u64, previous_wait: Duration) -> Duration {
        backoff::delay(&self.backoff, self.jitter, self.max_delay, &self.rng, retry, gap, previous_wait)
    }

    fn thrashing(&self, conflicts: &[VersionConflict]) -> bool {
        let Some(limit) = self.thrashing_after else { return false };
        let Ok(limit) = usize::try_from(limit) else { return false };
        let Some(recent) = conflicts.len().checked_sub(limit).map(|from| &conflicts[from..]) else { return false };
        // Fresh loads make a record's current version grow from one conflict
        // to the next; the same record at the same version means they are not fresh.
        recent.windows(2).all(|pair| pair[0] == pair[1])
    }

    fn choose(&self, attempt: &Attempt<'_>) -> Action {
        if self.thrashing(attempt.conflicts) {
            return Action::Thrashing;
        }
        if attempt.number >= self.max_attempts {
            return Action::GiveUp;
        }
        let wait = self.delay(attempt.number, attempt.conflict.gap(), attempt.previous_wait);
        if self.deadline.is_some_and(|deadline| attempt.elapsed.saturating_add(wait) >= deadline) {
            return Action::DeadlineExceeded;
        }
        if self.budget.as_ref().is_some_and(|budget| !budget.withdraw()) {
            return Action::OverBudget;
        }
        Action::Retry(wait)
    }
}

impl Default for Retry {
    fn default() -> Self {
        Self::exponential(Duration::from_millis(1))
            .max_delay(Duration::from_millis(100))
            .jitter(Jitter::Equal)
            .max_attempts(100)
            .thrashing_after(3)
    }
}

impl Policy for Retry {
    fn decide(&self, attempt: &Attempt<'_>) -> Action {
        let decision = self.choose(attempt);
        if let Some(hook) = &self.on_conflict {
            hook(attempt, &decision);
        }
        decision
    }

    fn admit(&self, call: &Call<'_>) -> Result<(), Refused> {
        if let Some(breaker) = &self.breaker {
            breaker.admit(call)?;
        }
        if let Some(budget) = &self.budget {
            budget.deposit();
        }
        Ok(())
    }

    fn finish(&self, call: &Call<'_>, ended: Finish) {
        if let Some(breaker) = &self.breaker {
            breaker.record(call, ended);
        }
    }
}

impl fmt::Debug for Retry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("backoff", &self.backoff)
            .field("jitter", &self.jitter)
            .field("max_attempts", &self.max_attempts)
            .field("max_delay", &self.max_delay)
            .field("deadline", &self.deadline)
            .field("thrashing_after", &self.thrashing_after)
            .field("budget", &self.budget.is_some())
            .field("circuit_breaker", &self.breaker.is_some())
            .field("on_conflict", &self.on_conflict.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
