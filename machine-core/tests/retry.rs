//! The retry policies driven by the runner: conflicts injected on chosen
//! attempts, waits taken on a manual clock, so every test is exact and no
//! test sleeps.

mod common;

use common::{Contended, Count, Counters, conflict};
use machine_core::prelude::*;
use machine_core::retry::{Action, Budget, Call, CircuitBreaker, CircuitState, ManualClock};
use std::error::Error as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

fn runner(store: Contended, policy: Retry, clock: &ManualClock) -> Runner<Counters, Contended> {
    Runner::new(store, ()).retry(policy).retry_clock(clock.clone())
}

#[tokio::test]
async fn conflicts_on_chosen_attempts_are_retried_after_the_policy_waits() {
    let clock = ManualClock::new();
    let runner = runner(Contended::conflicts_on([1, 2, 3]), Retry::exponential(MS).max_attempts(10), &clock);
    let out = runner.handle("c", &Count::Add(1)).await.unwrap();
    assert_eq!((out.attempts, out.version), (4, 4), "three rivals saved first");
    assert_eq!(clock.sleeps(), [MS, 2 * MS, 4 * MS]);
}

#[tokio::test]
async fn factcast_defaults_give_up_after_ten_attempts_without_waiting() {
    let clock = ManualClock::new();
    let runner = runner(Contended::always(), Retry::fixed(Duration::ZERO), &clock);
    let error = runner.handle("c", &Count::Add(1)).await.unwrap_err();
    assert!(matches!(error, Error::RetriesExhausted { attempts: 10, .. }), "{error:?}");
    assert_eq!(error.conflict(), Some(&conflict("c", 10, 10)), "each attempt lost to one rival");
    assert!(clock.sleeps().is_empty(), "no wait between attempts");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn the_deadline_stops_the_loop_before_waiting_past_it() {
    let clock = ManualClock::new();
    let policy = Retry::fixed(10 * MS).max_attempts(u32::MAX).deadline(35 * MS);
    let runner = runner(Contended::always(), policy, &clock);
    let error = runner.handle("c", &Count::Add(1)).await.unwrap_err();
    match &error {
        Error::DeadlineExceeded { attempts: 4, elapsed, conflict } => {
            assert_eq!(*elapsed, 30 * MS, "three waits of 10 ms; a fourth would reach 40 ms");
            assert_eq!(conflict.current, 4);
        }
        other => panic!("expected DeadlineExceeded after 4 attempts, got {other:?}"),
    }
    assert_eq!(clock.sleeps(), [10 * MS; 3]);
    assert!(error.to_string().starts_with("deadline reached after 4 attempts in 30ms: version conflict"), "{error}");
}

#[tokio::test]
async fn thrashing_gives_up_early_with_the_whole_conflict_history() {
    let clock = ManualClock::new();
    let store = Contended::default();
    let runner = runner(store.clone(), Retry::fixed(MS).max_attempts(50).thrashing_after(3), &clock);
    runner.handle("c", &Count::Add(1)).await.unwrap();
    // Loads now come from a replica stuck at version 1.
    store.freeze_loads("Counter", "c").await;
    runner.handle("c", &Count::Add(1)).await.unwrap();
    // The record is at 2 and every attempt loads 1: each loses to the same
    // version, and waiting would not help.
    let error = runner.handle("c", &Count::Add(1)).await.unwrap_err();
    match &error {
        Error::Thrashing { conflicts, attempts: 3, conflict } => {
            assert_eq!(conflicts, &vec![self::conflict("c", 2, 2); 3]);
            assert_eq!(conflicts.last(), Some(conflict));
        }
        other => panic!("expected Thrashing after 3 attempts, got {other:?}"),
    }
    assert_eq!(clock.sleeps(), [MS, MS], "gave up without waiting a third time");
    assert_eq!(error.conflict(), Some(&conflict("c", 2, 2)));
    let source = error.source().and_then(|s| s.downcast_ref::<VersionConflict>());
    assert_eq!(source, Some(&conflict("c", 2, 2)), "reachable through source() for anyhow users");
}

#[tokio::test]
async fn adaptive_waits_grow_with_the_gap_each_conflict_shows() {
    let clock = ManualClock::new();
    // Five rivals overtake the first attempt, one the second.
    let store = Contended::conflicts_on([1]).rivals(5);
    let runner = runner(store, Retry::adaptive(MS), &clock);
    assert_eq!(runner.handle("c", &Count::Add(1)).await.unwrap().attempts, 2);
    assert_eq!(clock.sleeps(), [5 * MS], "gap 5: proportional band");
}

#[tokio::test]
async fn every_conflict_reaches_the_hook_with_its_decision() {
    let clock = ManualClock::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let policy = Retry::fixed(MS).max_attempts(3).on_conflict(move |attempt, action| {
        log.lock().unwrap().push(format!("#{} {}: {action:?}", attempt.number, attempt.conflict));
    });
    let runner = runner(Contended::always(), policy, &clock);
    runner.handle("c", &Count::Add(1)).await.unwrap_err();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "#1 version conflict on Counter \"c\": attempted version 1, current version 1: Retry(1ms)",
            "#2 version conflict on Counter \"c\": attempted version 2, current version 2: Retry(1ms)",
            "#3 version conflict on Counter \"c\": attempted version 3, current version 3: GiveUp",
        ]
    );
}

#[tokio::test]
async fn a_spent_budget_gives_up_with_a_typed_error() {
    let clock = ManualClock::new();
    let budget = Budget::new(0).min_per_second(1).clock(clock.clone());
    let policy = Retry::fixed(MS).max_attempts(10).budget(budget.clone());
    let runner = runner(Contended::always(), policy, &clock);
    let error = runner.handle("c", &Count::Add(1)).await.unwrap_err();
    assert!(matches!(error, Error::BudgetExhausted { attempts: 2, .. }), "the reserve paid one retry: {error:?}");
    assert!(error.to_string().starts_with("retry budget exhausted after 2 attempts"), "{error}");
    assert_eq!(budget.available(), 0);
}

#[tokio::test]
async fn an_open_circuit_fails_fast_without_touching_the_store_in_every_clone() {
    let clock = ManualClock::new();
    let store = Contended::always();
    let breaker = CircuitBreaker::new(2, Duration::from_secs(5)).clock(clock.clone());
    let runner = runner(store.clone(), Retry::none().circuit_breaker(breaker.clone()), &clock);
    for _ in 0..2 {
        assert!(matches!(runner.handle("c", &Count::Add(1)).await, Err(Error::RetriesExhausted { .. })));
    }
    let touched = store.touches();
    let clone = runner.clone();
    let error = clone.handle("other", &Count::Add(1)).await.unwrap_err();
    match &error {
        Error::CircuitOpen { machine: "Counter", id, retry_after } => {
            assert_eq!((id.as_str(), *retry_after), ("other", Duration::from_secs(5)));
        }
        other => panic!("expected CircuitOpen, got {other:?}"),
    }
    assert_eq!(store.touches(), touched, "no load, no commit while open");
    assert!(error.is_retryable() && error.conflict().is_none());

    // After the cool-down one probe goes through; it commits and closes the circuit.
    clock.advance(Duration::from_secs(5));
    store.set_always(false);
    assert_eq!(runner.handle("c", &Count::Add(1)).await.unwrap().attempts, 1);
    assert_eq!(breaker.state(&Call::new("Counter", "c")), CircuitState::Closed { failures: 0 });
}

#[tokio::test]
async fn a_per_key_circuit_refuses_only_the_failing_record() {
    let clock = ManualClock::new();
    let store = Contended::always();
    let breaker = CircuitBreaker::new(1, Duration::from_secs(5)).per_key().clock(clock.clone());
    let runner = runner(store.clone(), Retry::none().circuit_breaker(breaker), &clock);
    runner.handle("hot", &Count::Add(1)).await.unwrap_err();
    assert!(matches!(runner.handle("hot", &Count::Add(1)).await, Err(Error::CircuitOpen { .. })));
    store.set_always(false);
    assert!(runner.handle("cold", &Count::Add(1)).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn dropping_the_handle_future_stops_the_loop() {
    // Tokio's own clock, paused: the runner sleeps for real (an hour).
    let store = Contended::always();
    let runner = Runner::<Counters, _>::new(store.clone(), ()).retry(Retry::fixed(Duration::from_hours(1)));
    let call = tokio::time::timeout(Duration::from_secs(1), runner.handle("c", &Count::Add(1))).await;
    assert!(call.is_err(), "still waiting after the first conflict");
    assert_eq!((store.loads.load(Ordering::SeqCst), store.commits.load(Ordering::SeqCst)), (1, 1));
    tokio::time::advance(Duration::from_hours(2)).await;
    tokio::task::yield_now().await;
    assert_eq!(store.touches(), 2, "nothing kept running after the future was dropped");
}

#[tokio::test]
async fn a_custom_policy_sees_every_conflict_of_the_call() {
    #[derive(Debug)]
    struct UntilGapSum(u64);
    impl machine_core::retry::Policy for UntilGapSum {
        fn decide(&self, attempt: &machine_core::retry::Attempt<'_>) -> Action {
            let total: u64 = attempt.conflicts.iter().map(VersionConflict::gap).sum();
            if total < self.0 { Action::Retry(Duration::ZERO) } else { Action::GiveUp }
        }
    }
    let store = Contended::always().rivals(2);
    let runner = Runner::<Counters, _>::new(store, ()).retry(UntilGapSum(6));
    let error = runner.handle("c", &Count::Add(1)).await.unwrap_err();
    assert!(matches!(error, Error::RetriesExhausted { attempts: 3, .. }), "gaps 2 + 2 + 2: {error:?}");
}
