//! A retry budget shared by all calls, so a conflict storm cannot multiply the
//! load on a store: retries are allowed as a fraction of first attempts (the
//! idea of tower's `TpsBudget` and Finagle's retry budget), plus a small
//! steady reserve so a quiet service can still retry.

use super::{Clock, TokioClock};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Milli-tokens per token: balances are kept in thousandths so a 20 % budget
/// deposits exactly 200 per first attempt, with no floating point.
const MILLI: u64 = 1_000;

/// A token bucket of retries: every call's first attempt deposits `percent`
/// hundredths of a token, every retry withdraws one whole token, and a
/// reserve of `min_per_second` tokens refills over time.
///
/// With `Budget::new(20)`, a stream of 1,000 calls pays for at most 200
/// retries (plus the reserve), whatever the conflicts do. Clones share the
/// balance, so one budget can be shared by several policies. Use it through
/// [`Retry::budget`](super::Retry::budget), whose refusal is
/// [`Error::BudgetExhausted`](crate::Error::BudgetExhausted).
///
/// ```
/// use machine_core::retry::{Budget, ManualClock};
///
/// let budget = Budget::new(50).min_per_second(0).clock(ManualClock::new());
/// assert!(!budget.withdraw(), "nothing deposited yet");
/// budget.deposit();
/// budget.deposit();
/// assert!(budget.withdraw(), "two first attempts at 50 % pay for one retry");
/// assert!(!budget.withdraw());
/// ```
#[derive(Debug, Clone)]
pub struct Budget {
    deposit: u64,
    max_balance: u64,
    reserve_per_second: u64,
    clock: Arc<dyn Clock>,
    state: Arc<Mutex<Balance>>,
}

#[derive(Debug)]
struct Balance {
    /// Milli-tokens earned by first attempts.
    earned: u64,
    /// Milli-tokens of the steady reserve.
    reserve: u64,
    /// When the reserve was last topped up.
    refilled_at: Duration,
}

impl Budget {
    /// Allows retries up to `percent` % of first attempts (more than 100 is
    /// allowed: 300 pays three retries per call), a reserve of 10 retries per
    /// second, and at most 100 retries saved up.
    #[must_use]
    pub fn new(percent: u32) -> Self {
        let clock = Arc::new(TokioClock::new());
        Self {
            deposit: u64::from(percent) * MILLI / 100,
            max_balance: 100 * MILLI,
            reserve_per_second: 10,
            state: Arc::new(Mutex::new(Balance { earned: 0, reserve: 10 * MILLI, refilled_at: clock.now() })),
            clock,
        }
    }

    /// Retries allowed per second whatever the deposits (default 10; 0 for none).
    #[must_use]
    pub fn min_per_second(mut self, retries: u32) -> Self {
        self.reserve_per_second = u64::from(retries);
        self.lock().reserve = self.reserve_per_second * MILLI;
        self
    }

    /// At most `retries` earned retries are kept (default 100), so a long quiet
    /// spell does not save up an unbounded burst.
    #[must_use]
    pub fn max_balance(mut self, retries: u32) -> Self {
        self.max_balance = u64::from(retries) * MILLI;
        let mut state = self.lock();
        state.earned = state.earned.min(self.max_balance);
        drop(state);
        self
    }

    /// Reads time from `clock` (for the reserve's refill).
    #[must_use]
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self.lock().refilled_at = self.clock.now();
        self
    }

    /// Records a first attempt.
    pub fn deposit(&self) {
        let mut state = self.lock();
        state.earned = state.earned.saturating_add(self.deposit).min(self.max_balance);
    }

    /// Takes one retry from the budget; `false` when it is spent.
    #[must_use = "a withdrawal that is not checked spends a retry for nothing"]
    pub fn withdraw(&self) -> bool {
        let now = self.clock.now();
        let mut state = self.lock();
        self.refill(&mut state, now);
        if state.reserve >= MILLI {
            state.reserve -= MILLI;
            true
        } else if state.earned >= MILLI {
            state.earned -= MILLI;
            true
        } else {
            false
        }
    }

    /// How many whole retries the budget would allow right now.
    #[must_use]
    pub fn available(&self) -> u64 {
        let now = self.clock.now();
        let mut state = self.lock();
        self.refill(&mut state, now);
        state.reserve / MILLI + state.earned / MILLI
    }

    fn refill(&self, state: &mut Balance, now: Duration) {
        let full = self.reserve_per_second * MILLI;
        let since = now.saturating_sub(state.refilled_at);
        // milli-tokens = retries/s × 1000 × seconds, computed in nanoseconds.
        let earned = u128::from(self.reserve_per_second) * since.as_nanos() / 1_000_000;
        let earned = u64::try_from(earned).unwrap_or(u64::MAX);
        if earned > 0 || state.reserve >= full {
            state.reserve = state.reserve.saturating_add(earned).min(full);
            state.refilled_at = now;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Balance> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::ManualClock;

    #[test]
    fn retries_are_a_fraction_of_first_attempts() {
        let budget = Budget::new(20).min_per_second(0).clock(ManualClock::new());
        for _ in 0..10 {
            budget.deposit();
        }
        assert_eq!(budget.available(), 2);
        assert!(budget.withdraw());
        assert!(budget.withdraw());
        assert!(!budget.withdraw(), "ten first attempts at 20 % pay for two retries");
        budget.deposit();
        assert!(!budget.withdraw(), "a fifth of a token is not a retry");
    }

    #[test]
    fn the_reserve_refills_with_time_up_to_its_size() {
        let clock = ManualClock::new();
        let budget = Budget::new(0).min_per_second(2).clock(clock.clone());
        assert!(budget.withdraw() && budget.withdraw(), "starts full");
        assert!(!budget.withdraw());
        clock.advance(Duration::from_millis(500));
        assert!(budget.withdraw(), "half a second at 2/s is one retry");
        assert!(!budget.withdraw());
        clock.advance(Duration::from_hours(1));
        assert_eq!(budget.available(), 2, "the reserve never exceeds one second's worth");
    }

    #[test]
    fn savings_are_capped() {
        let budget = Budget::new(100).min_per_second(0).max_balance(3).clock(ManualClock::new());
        for _ in 0..50 {
            budget.deposit();
        }
        assert_eq!(budget.available(), 3);
    }

    #[test]
    fn clones_share_the_balance() {
        let budget = Budget::new(100).min_per_second(0).clock(ManualClock::new());
        let twin = budget.clone();
        budget.deposit();
        assert!(twin.withdraw());
        assert!(!budget.withdraw());
    }
}
