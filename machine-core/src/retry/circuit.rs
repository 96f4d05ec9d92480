//! A circuit breaker: after enough calls in a row gave up (on conflicts or a
//! failing store), stop sending calls to the store for a cool-down, then let
//! one probe through to see whether things recovered. It turns a retry storm
//! into fast, typed refusals, and gives the store room to recover.

use super::{Call, Clock, Finish, Refused, TokioClock};
use crate::observe::{self, Phase};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// What a circuit currently does with calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CircuitState {
    /// Calls pass; `failures` calls in a row have failed so far.
    Closed {
        /// Consecutive failed calls (reset by a committed one).
        failures: u32,
    },
    /// Calls are refused for another `retry_after`.
    Open {
        /// Time left in the cool-down.
        retry_after: Duration,
    },
    /// The cool-down is over: the next call is let through as a probe, and the
    /// others are refused until it ends. Its success closes the circuit, its
    /// failure opens it again.
    HalfOpen,
}

/// Closed / open / half-open, with a failure threshold and a cool-down.
///
/// A call *fails* for the breaker when the retry policy gave up on it or the
/// store failed ([`Finish::GaveUp`], [`Finish::StoreFailed`]); a committed
/// call succeeds; other endings (the transition refused) count as neither.
/// After `threshold` failures in a row the circuit opens: calls are refused at
/// once, before the store is touched, for `cool_down`. Then one probe is let
/// through; if it succeeds the circuit closes, if it fails it opens again. A
/// probe whose call was dropped before ending is replaced after another
/// `cool_down`.
///
/// Clones share their circuits, and so do all clones of a runner whose
/// [`Retry`](super::Retry) holds the breaker. One circuit covers every call,
/// or, with [`per_key`](CircuitBreaker::per_key), one per record.
///
/// ```
/// use machine_core::retry::{Call, CircuitBreaker, CircuitState, Finish, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let breaker = CircuitBreaker::new(2, Duration::from_secs(5)).clock(clock.clone());
/// let call = Call::new("Order", "order-1");
/// for _ in 0..2 {
///     breaker.admit(&call).unwrap();
///     breaker.record(&call, Finish::GaveUp);
/// }
/// assert_eq!(breaker.state(&call), CircuitState::Open { retry_after: Duration::from_secs(5) });
/// assert!(breaker.admit(&call).is_err());
/// clock.advance(Duration::from_secs(5));
/// breaker.admit(&call).unwrap(); // the probe
/// breaker.record(&call, Finish::Committed);
/// assert_eq!(breaker.state(&call), CircuitState::Closed { failures: 0 });
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    threshold: u32,
    cool_down: Duration,
    per_key: bool,
    clock: Arc<dyn Clock>,
    circuits: Arc<Circuits>,
}

/// The circuits of a breaker and its clones. When the last clone goes, the
/// circuits it leaves open leave the open-circuits gauge too.
#[derive(Debug, Default)]
struct Circuits(Mutex<HashMap<String, Circuit>>);

impl Drop for Circuits {
    fn drop(&mut self) {
        if cfg!(feature = "observe") {
            let circuits = self.0.get_mut().unwrap_or_else(PoisonError::into_inner);
            observe::circuits_dropped(circuits.values().filter(|c| !matches!(c, Circuit::Closed { .. })).count());
        }
    }
}

/// What `circuit` does with calls, for the observability hooks.
fn phase(circuit: Option<&Circuit>) -> Phase {
    match circuit {
        None | Some(Circuit::Closed { .. }) => Phase::Closed,
        Some(Circuit::Open { .. }) => Phase::Open,
        Some(Circuit::HalfOpen { .. }) => Phase::HalfOpen,
    }
}

#[derive(Debug, Clone, Copy)]
enum Circuit {
    Closed {
        failures: u32,
    },
    Open {
        until: Duration,
    },
    /// `probe`: when the probe in flight was admitted, if there is one.
    HalfOpen {
        probe: Option<Duration>,
    },
}

impl CircuitBreaker {
    /// Opens after `threshold` failed calls in a row (at least 1) and refuses
    /// calls for `cool_down` before probing.
    #[must_use]
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cool_down,
            per_key: false,
            clock: Arc::new(TokioClock::new()),
            circuits: Arc::default(),
        }
    }

    /// Keeps one circuit per record `(machine, id)` instead of one for all, so
    /// one hot record cannot shut out the others.
    #[must_use]
    pub fn per_key(mut self) -> Self {
        self.per_key = true;
        self
    }

    /// Reads time from `clock`.
    #[must_use]
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Lets `call` through, or refuses it with the time left in the cool-down.
    /// Admitting a call after the cool-down makes it the half-open probe.
    pub fn admit(&self, call: &Call<'_>) -> Result<(), Refused> {
        let now = self.clock.now();
        let mut circuits = self.lock();
        let Some(circuit) = circuits.get_mut(&self.key(call)) else { return Ok(()) };
        match *circuit {
            Circuit::Closed { .. } => Ok(()),
            Circuit::Open { until } if now < until => Err(Refused::new(until.saturating_sub(now))),
            Circuit::HalfOpen { probe: Some(since) } if now.saturating_sub(since) < self.cool_down => {
                Err(Refused::new(self.cool_down.saturating_sub(now.saturating_sub(since))))
            }
            Circuit::Open { .. } | Circuit::HalfOpen { .. } => {
                let before = phase(Some(&*circuit));
                *circuit = Circuit::HalfOpen { probe: Some(now) };
                observe::circuit(call.machine, before, Phase::HalfOpen);
                Ok(())
            }
        }
    }

    /// Records how an admitted call ended.
    pub fn record(&self, call: &Call<'_>, ended: Finish) {
        let now = self.clock.now();
        let key = self.key(call);
        let mut circuits = self.lock();
        // Read only when observed: without the feature, no extra lookups.
        let before = if cfg!(feature = "observe") { phase(circuits.get(&key)) } else { Phase::Closed };
        match ended {
            Finish::Committed => {
                if !matches!(circuits.get(&key), Some(Circuit::Open { .. })) {
                    // Closed with no failures is the default: keep no entry.
                    circuits.remove(&key);
                }
            }
            Finish::GaveUp | Finish::StoreFailed => {
                let circuit = circuits.entry(key.clone()).or_insert(Circuit::Closed { failures: 0 });
                match *circuit {
                    Circuit::Closed { failures } if failures.saturating_add(1) < self.threshold => {
                        *circuit = Circuit::Closed { failures: failures + 1 };
                    }
                    Circuit::Closed { .. } | Circuit::HalfOpen { .. } => {
                        *circuit = Circuit::Open { until: now.saturating_add(self.cool_down) };
                    }
                    Circuit::Open { .. } => {}
                }
            }
            _ => {
                if let Some(circuit @ Circuit::HalfOpen { .. }) = circuits.get_mut(&key) {
                    // The probe told us nothing: let the next call probe.
                    *circuit = Circuit::HalfOpen { probe: None };
                }
            }
        }
        if cfg!(feature = "observe") {
            observe::circuit(call.machine, before, phase(circuits.get(&key)));
        }
    }

    /// The state of the circuit `call` goes through.
    #[must_use]
    pub fn state(&self, call: &Call<'_>) -> CircuitState {
        let now = self.clock.now();
        match self.lock().get(&self.key(call)).copied() {
            None => CircuitState::Closed { failures: 0 },
            Some(Circuit::Closed { failures }) => CircuitState::Closed { failures },
            Some(Circuit::Open { until }) if now < until => {
                CircuitState::Open { retry_after: until.saturating_sub(now) }
            }
            Some(Circuit::Open { .. } | Circuit::HalfOpen { .. }) => CircuitState::HalfOpen,
        }
    }

    fn key(&self, call: &Call<'_>) -> String {
        if self.per_key {
            // Ids never contain NUL (the stores refuse it), so the key is unambiguous.
            format!("{}\0{}", call.machine, call.id)
        } else {
            String::new()
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Circuit>> {
        self.circuits.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::ManualClock;

    const SEC: Duration = Duration::from_secs(1);
    const A: Call<'static> = Call::new("Order", "a");
    const B: Call<'static> = Call::new("Order", "b");

    fn breaker(clock: &ManualClock) -> CircuitBreaker {
        CircuitBreaker::new(3, 10 * SEC).clock(clock.clone())
    }

    fn fail(breaker: &CircuitBreaker, call: &Call<'_>) {
        breaker.admit(call).expect("admitted");
        breaker.record(call, Finish::GaveUp);
    }

    #[test]
    fn closed_counts_consecutive_failures_and_a_success_resets_them() {
        let clock = ManualClock::new();
        let breaker = breaker(&clock);
        assert_eq!(breaker.state(&A), CircuitState::Closed { failures: 0 });
        fail(&breaker, &A);
        breaker.admit(&A).unwrap();
        breaker.record(&A, Finish::StoreFailed);
        assert_eq!(breaker.state(&A), CircuitState::Closed { failures: 2 });
        breaker.admit(&A).unwrap();
        breaker.record(&A, Finish::Other);
        assert_eq!(breaker.state(&A), CircuitState::Closed { failures: 2 }, "neither success nor failure");
        breaker.admit(&A).unwrap();
        breaker.record(&A, Finish::Committed);
        assert_eq!(breaker.state(&A), CircuitState::Closed { failures: 0 });
    }

    #[test]
    fn opens_at_the_threshold_and_refuses_for_the_cool_down() {
        let clock = ManualClock::new();
        let breaker = breaker(&clock);
        for _ in 0..3 {
            fail(&breaker, &A);
        }
        assert_eq!(breaker.state(&A), CircuitState::Open { retry_after: 10 * SEC });
        assert_eq!(breaker.admit(&A), Err(Refused::new(10 * SEC)));
        clock.advance(4 * SEC);
        assert_eq!(breaker.admit(&A), Err(Refused::new(6 * SEC)));
        breaker.record(&A, Finish::Committed);
        assert!(matches!(breaker.state(&A), CircuitState::Open { .. }), "a late success does not close it");
    }

    #[test]
    fn half_open_lets_one_probe_through_and_its_failure_reopens() {
        let clock = ManualClock::new();
        let breaker = breaker(&clock);
        (0..3).for_each(|_| fail(&breaker, &A));
        clock.advance(10 * SEC);
        assert_eq!(breaker.state(&A), CircuitState::HalfOpen);
        breaker.admit(&A).expect("the probe");
        assert_eq!(breaker.admit(&A), Err(Refused::new(10 * SEC)), "one probe at a time");
        breaker.record(&A, Finish::GaveUp);
        assert_eq!(breaker.state(&A), CircuitState::Open { retry_after: 10 * SEC });
    }

    #[test]
    fn half_open_probe_success_closes() {
        let clock = ManualClock::new();
        let breaker = breaker(&clock);
        (0..3).for_each(|_| fail(&breaker, &A));
        clock.advance(10 * SEC);
        breaker.admit(&A).expect("the probe");
        breaker.record(&A, Finish::Committed);
        assert_eq!(breaker.state(&A), CircuitState::Closed { failures: 0 });
        assert!(breaker.admit(&A).is_ok() && breaker.admit(&A).is_ok());
    }

    #[test]
    fn an_inconclusive_or_abandoned_probe_is_replaced() {
        let clock = ManualClock::new();
        let breaker = breaker(&clock);
        (0..3).for_each(|_| fail(&breaker, &A));
        clock.advance(10 * SEC);
        breaker.admit(&A).expect("probe 1");
        breaker.record(&A, Finish::Other);
        breaker.admit(&A).expect("probe 2, since probe 1 told nothing");
        // Probe 2's caller drops its future and never reports.
        clock.advance(9 * SEC);
        assert!(breaker.admit(&A).is_err());
        clock.advance(SEC);
        breaker.admit(&A).expect("probe 3 after another cool-down");
    }

    #[test]
    fn one_circuit_for_all_unless_per_key() {
        let clock = ManualClock::new();
        let shared = breaker(&clock);
        (0..3).for_each(|_| fail(&shared, &A));
        assert!(shared.admit(&B).is_err(), "one circuit covers every record");

        let per_key = breaker(&clock).per_key();
        (0..3).for_each(|_| fail(&per_key, &A));
        assert!(per_key.admit(&A).is_err());
        assert!(per_key.admit(&B).is_ok(), "b has its own circuit");
        assert!(per_key.admit(&Call::new("Invoice", "a")).is_ok(), "keys include the machine");
    }

    #[test]
    fn clones_share_circuits() {
        let clock = ManualClock::new();
        let breaker = breaker(&clock);
        let twin = breaker.clone();
        (0..3).for_each(|_| fail(&twin, &A));
        assert!(breaker.admit(&A).is_err());
    }
}
