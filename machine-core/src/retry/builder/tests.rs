//! The built-in policy's decisions, one limit at a time, with a seeded random
//! source and a manual clock: no real time passes.

use super::*;
use crate::retry::ManualClock;
use std::sync::Mutex;

const MS: Duration = Duration::from_millis(1);

fn conflict(attempted: u64, current: u64) -> VersionConflict {
    VersionConflict::new("Order", "o-1", attempted, current)
}

/// The attempt `number` of a call whose conflicts are `conflicts`.
fn attempt(number: u32, conflicts: &[VersionConflict]) -> Attempt<'_> {
    let mut attempt = Attempt::first(conflicts.last().expect("at least one conflict"));
    attempt.number = number;
    attempt.conflicts = conflicts;
    attempt
}

#[test]
fn none_gives_up_at_once() {
    assert_eq!(Retry::none().decide(&Attempt::first(&conflict(2, 2))), Action::GiveUp);
}

#[test]
fn fixed_zero_is_factcast_ten_attempts_without_waiting() {
    let policy = Retry::fixed(Duration::ZERO);
    assert_eq!(policy.attempts(), 10);
    let lost = [conflict(2, 2)];
    for number in 1..10 {
        assert_eq!(policy.decide(&attempt(number, &lost)), Action::Retry(Duration::ZERO), "attempt {number}");
    }
    assert_eq!(policy.decide(&attempt(10, &lost)), Action::GiveUp);
}

#[test]
fn fixed_waits_the_same_and_stops_at_the_limit() {
    let policy = Retry::fixed(3 * MS).max_attempts(3);
    let lost = [conflict(2, 2)];
    assert_eq!(policy.decide(&attempt(1, &lost)), Action::Retry(3 * MS));
    assert_eq!(policy.decide(&attempt(2, &lost)), Action::Retry(3 * MS));
    assert_eq!(policy.decide(&attempt(3, &lost)), Action::GiveUp);
}

#[test]
fn exponential_doubles_and_jitter_is_reproducible_with_a_seed() {
    let policy = Retry::exponential(MS).max_delay(5 * MS);
    let waits: Vec<_> = (1..=4).map(|n| policy.delay(n, 1, Duration::ZERO)).collect();
    assert_eq!(waits, [MS, 2 * MS, 4 * MS, 5 * MS]);

    let seeded = || Retry::exponential(MS).jitter(Jitter::Full).rng(Rng::seeded(42));
    let (a, b) = (seeded(), seeded());
    let first: Vec<_> = (1..=8).map(|n| a.delay(n, 1, Duration::ZERO)).collect();
    let second: Vec<_> = (1..=8).map(|n| b.delay(n, 1, Duration::ZERO)).collect();
    assert_eq!(first, second);
}

#[test]
fn adaptive_waits_by_the_gap_of_the_conflict() {
    let policy = Retry::adaptive(MS).max_delay(Duration::from_secs(1));
    assert_eq!(policy.decide(&attempt(1, &[conflict(5, 5)])), Action::Retry(MS), "gap 1: light");
    assert_eq!(policy.decide(&attempt(1, &[conflict(5, 9)])), Action::Retry(5 * MS), "gap 5: proportional");
    assert_eq!(policy.decide(&attempt(2, &[conflict(5, 24)])), Action::Retry(800 * MS), "gap 20: aggressive");
}

#[test]
fn deadline_gives_up_instead_of_waiting_past_it() {
    let policy = Retry::fixed(10 * MS).max_attempts(u32::MAX).deadline(50 * MS);
    let lost = [conflict(2, 2)];
    let mut at = attempt(3, &lost);
    at.elapsed = 39 * MS;
    assert_eq!(policy.decide(&at), Action::Retry(10 * MS), "39 + 10 < 50");
    at.elapsed = 40 * MS;
    assert_eq!(policy.decide(&at), Action::DeadlineExceeded, "40 + 10 reaches the deadline");
}

#[test]
fn thrashing_is_conflicts_in_a_row_at_the_same_current_version() {
    let policy = Retry::fixed(Duration::ZERO).max_attempts(100).thrashing_after(3);
    let progressing = [conflict(2, 3), conflict(4, 5), conflict(6, 7)];
    assert_eq!(policy.decide(&attempt(3, &progressing)), Action::Retry(Duration::ZERO), "the record moves");
    let stuck = [conflict(2, 3), conflict(2, 5), conflict(2, 5)];
    assert_eq!(policy.decide(&attempt(3, &stuck)), Action::Retry(Duration::ZERO), "only two at 5");
    let stuck = [conflict(2, 5), conflict(2, 5), conflict(2, 5)];
    assert_eq!(policy.decide(&attempt(3, &stuck)), Action::Thrashing);
    assert_eq!(policy.decide(&attempt(2, &stuck[..2])), Action::Retry(Duration::ZERO), "fewer than three");
    let other = |id| VersionConflict::new("Order", id, 2, 5);
    let two_records = [other("a"), other("b"), other("a")];
    assert_eq!(policy.decide(&attempt(3, &two_records)), Action::Retry(Duration::ZERO), "different records");
}

#[test]
fn the_default_is_the_documented_policy() {
    let policy = Retry::default();
    assert_eq!(policy.attempts(), 100);
    assert_eq!(policy.rng(Rng::seeded(1)).jitter(Jitter::None).delay(9, 1, Duration::ZERO), 100 * MS, "capped");
    let text = format!("{:?}", Retry::default());
    assert!(text.contains("Exponential(1ms)") && text.contains("Equal") && text.contains("thrashing_after: Some(3)"));
}

#[test]
fn an_empty_budget_stops_retries_and_calls_refill_it() {
    let budget = Budget::new(100).min_per_second(0).clock(ManualClock::new());
    let policy = Retry::fixed(Duration::ZERO).max_attempts(100).budget(budget.clone());
    let lost = [conflict(2, 2)];
    assert_eq!(policy.decide(&attempt(1, &lost)), Action::OverBudget);
    policy.admit(&Call::new("Order", "o-1")).unwrap();
    assert_eq!(budget.available(), 1, "admitting a call deposits");
    assert_eq!(policy.decide(&attempt(1, &lost)), Action::Retry(Duration::ZERO));
    assert_eq!(policy.decide(&attempt(2, &lost)), Action::OverBudget);
}

#[test]
fn limits_are_checked_before_the_budget_is_spent() {
    let budget = Budget::new(0).min_per_second(1).clock(ManualClock::new());
    let policy = Retry::fixed(Duration::ZERO).max_attempts(2).budget(budget.clone());
    assert_eq!(policy.decide(&attempt(2, &[conflict(2, 2)])), Action::GiveUp);
    assert_eq!(budget.available(), 1, "giving up spends no token");
}

#[test]
fn the_breaker_refuses_admission_and_hears_every_ending() {
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::new(1, 5 * MS).clock(clock.clone());
    let policy = Retry::none().circuit_breaker(breaker.clone());
    let call = Call::new("Order", "o-1");
    policy.admit(&call).unwrap();
    policy.finish(&call, Finish::GaveUp);
    assert_eq!(policy.admit(&call), Err(Refused::new(5 * MS)));
    clock.advance(5 * MS);
    policy.admit(&call).unwrap();
    policy.finish(&call, Finish::Committed);
    assert_eq!(breaker.state(&call), crate::retry::CircuitState::Closed { failures: 0 });
}

#[test]
fn the_hook_sees_every_conflict_and_its_decision() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let policy = Retry::fixed(MS).max_attempts(2).on_conflict(move |attempt, action| {
        log.lock().unwrap().push((attempt.number, attempt.conflict.current, *action));
    });
    let lost = [conflict(2, 3), conflict(4, 6)];
    policy.decide(&attempt(1, &lost[..1]));
    policy.decide(&attempt(2, &lost));
    assert_eq!(*seen.lock().unwrap(), [(1, 3, Action::Retry(MS)), (2, 6, Action::GiveUp)]);
}

#[test]
fn debug_names_the_parts_without_printing_closures() {
    let text = format!("{:?}", Retry::default().on_conflict(|_, _| {}));
    assert!(text.contains("Exponential") && text.contains("on_conflict: true"), "{text}");
}
