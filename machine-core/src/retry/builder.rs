//! The built-in policy: a backoff curve, optional jitter and an attempt limit,
//! composed with a builder.

use super::{Attempt, Decision, Policy, Rng};
use std::sync::Arc;
use std::time::Duration;

/// How the wait before each retry is randomised, so writers that collided do
/// not collide again in lockstep (the AWS "Exponential Backoff and Jitter"
/// definitions; `d` is the un-jittered wait of this attempt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// Wait exactly `d`.
    #[default]
    None,
    /// Wait uniformly in `[0, d]`.
    Full,
    /// Wait `d/2` plus uniformly in `[0, d/2]`.
    Equal,
    /// Wait uniformly in `[base, 3 × previous wait]`, capped at the maximum delay.
    Decorrelated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backoff {
    Fixed(Duration),
    Exponential(Duration),
}

/// The built-in retry [`Policy`]: a backoff curve, [`Jitter`] and a limit on
/// attempts.
///
/// | constructor | waits before retry *n* (1-based) | default attempts |
/// |---|---|---|
/// | [`Retry::none()`] | never retries | 1 |
/// | [`Retry::fixed(d)`](Retry::fixed) | `d` (`FactCast` uses `Duration::ZERO`) | 10 |
/// | [`Retry::exponential(d)`](Retry::exponential) | `min(max_delay, d × 2ⁿ⁻¹)` | 10 |
///
/// Waits are computed in nanoseconds, so microsecond bases do not round to
/// zero. `max_attempts` counts every try, the first included.
///
/// The runner's default, [`Retry::default()`], is
/// `Retry::exponential(1 ms).max_delay(100 ms).jitter(Jitter::Full).max_attempts(100)`:
/// immediate-ish retries while contention is light, spread out when it is not,
/// and enough attempts that 32 writers on one record do not give up (measured:
/// at most 34 attempts on PostgreSQL and 39 on SQLite for one increment of
/// 3,200, see `tests/stores.rs`).
///
/// ```
/// use machine_core::{Jitter, Retry};
/// use std::time::Duration;
///
/// let policy = Retry::exponential(Duration::from_micros(200))
///     .max_delay(Duration::from_millis(50))
///     .jitter(Jitter::Full)
///     .max_attempts(10);
/// assert_eq!(policy.attempts(), 10);
/// ```
#[derive(Debug, Clone)]
pub struct Retry {
    backoff: Backoff,
    jitter: Jitter,
    max_attempts: u32,
    max_delay: Duration,
    rng: Arc<Rng>,
}

impl Retry {
    /// Never retries: the first conflict is reported.
    #[must_use]
    pub fn none() -> Self {
        Self::fixed(Duration::ZERO).max_attempts(1)
    }

    /// Retries after the same wait each time, 10 attempts by default.
    #[must_use]
    pub fn fixed(wait: Duration) -> Self {
        Self {
            backoff: Backoff::Fixed(wait),
            jitter: Jitter::None,
            max_attempts: 10,
            max_delay: Duration::MAX,
            rng: Arc::new(Rng::from_entropy()),
        }
    }

    /// Retries after `base`, then twice that, and so on up to
    /// [`max_delay`](Retry::max_delay) (1 s unless set); 10 attempts by default.
    #[must_use]
    pub fn exponential(base: Duration) -> Self {
        Self { backoff: Backoff::Exponential(base), max_delay: Duration::from_secs(1), ..Self::fixed(base) }
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

    /// The wait before retry `retry` (1-based) given the previous wait.
    #[must_use]
    pub fn delay(&self, retry: u32, previous_wait: Duration) -> Duration {
        let (base, curve) = match self.backoff {
            Backoff::Fixed(wait) => (wait, wait),
            Backoff::Exponential(base) => {
                let doublings = retry.saturating_sub(1).min(31);
                (base, base.saturating_mul(1_u32 << doublings))
            }
        };
        let curve = nanos(curve.min(self.max_delay));
        let jittered = match self.jitter {
            Jitter::None => curve,
            Jitter::Full => self.rng.below(curve.saturating_add(1)),
            Jitter::Equal => {
                let half = curve / 2;
                half + self.rng.below(curve - half + 1)
            }
            Jitter::Decorrelated => {
                let low = nanos(base);
                let previous = if previous_wait.is_zero() { low } else { nanos(previous_wait) };
                let high = previous.saturating_mul(3).max(low);
                low + self.rng.below(high - low + 1)
            }
        };
        Duration::from_nanos(jittered).min(self.max_delay)
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl Default for Retry {
    fn default() -> Self {
        Self::exponential(Duration::from_millis(1))
            .max_delay(Duration::from_millis(100))
            .jitter(Jitter::Full)
            .max_attempts(100)
    }
}

impl Policy for Retry {
    fn decide(&self, attempt: &Attempt<'_>) -> Decision {
        if attempt.number >= self.max_attempts {
            Decision::GiveUp
        } else {
            Decision::Retry(self.delay(attempt.number, attempt.previous_wait))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VersionConflict;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn none_gives_up_at_once() {
        let conflict = VersionConflict::new("m", "id", 2, 2);
        assert_eq!(Retry::none().decide(&Attempt::first(&conflict)), Decision::GiveUp);
    }

    #[test]
    fn fixed_waits_the_same_and_stops_at_the_limit() {
        let policy = Retry::fixed(3 * MS).max_attempts(3);
        let conflict = VersionConflict::new("m", "id", 2, 2);
        let mut attempt = Attempt::first(&conflict);
        assert_eq!(policy.decide(&attempt), Decision::Retry(3 * MS));
        attempt.number = 2;
        assert_eq!(policy.decide(&attempt), Decision::Retry(3 * MS));
        attempt.number = 3;
        assert_eq!(policy.decide(&attempt), Decision::GiveUp);
    }

    #[test]
    fn exponential_doubles_up_to_the_cap_without_overflow() {
        let policy = Retry::exponential(MS).max_delay(10 * MS);
        let waits: Vec<_> = (1..=6).map(|n| policy.delay(n, Duration::ZERO)).collect();
        assert_eq!(waits, [MS, 2 * MS, 4 * MS, 8 * MS, 10 * MS, 10 * MS]);
        assert_eq!(policy.delay(u32::MAX, Duration::ZERO), 10 * MS);
        let uncapped = Retry::exponential(Duration::from_secs(u64::MAX)).max_delay(Duration::MAX);
        assert_eq!(uncapped.delay(40, Duration::ZERO), Duration::MAX.min(Duration::from_nanos(u64::MAX)));
    }

    #[test]
    fn microsecond_bases_do_not_round_to_zero() {
        let policy = Retry::exponential(Duration::from_micros(3)).jitter(Jitter::Equal).rng(Rng::seeded(1));
        for retry in 1..10 {
            assert!(policy.delay(retry, Duration::ZERO) >= Duration::from_nanos(1500));
        }
    }

    #[test]
    fn full_jitter_stays_within_zero_and_the_curve() {
        let policy = Retry::exponential(MS).max_delay(8 * MS).jitter(Jitter::Full).rng(Rng::seeded(9));
        let waits: Vec<_> = (0..200).map(|i| policy.delay(1 + i % 6, Duration::ZERO)).collect();
        assert!(waits.iter().all(|w| *w <= 8 * MS));
        assert!(waits.iter().any(|w| *w < MS / 2), "full jitter reaches near zero");
    }
}
