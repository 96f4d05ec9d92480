//! The retry queue: bounded capacity, dead letters and re-drive, graceful
//! shutdown, and no command lost. Tokio's clock is paused, so the queue's
//! waits pass instantly and in a fixed order.

mod common;

use common::{Contended, Count, Counter, Counters};
use machine_core::prelude::*;
use machine_core::queue::{DeadLetter, QueueError, QueueStats, RetryQueue, Unfinished};
use std::time::Duration;

const HOUR: Duration = Duration::from_hours(1);

fn runner(store: Contended) -> Runner<Counters, Contended> {
    // Each try is a single attempt, so conflicts come back to the queue.
    Runner::new(store, ()).retry(Retry::none())
}

async fn value(runner: &Runner<Counters, Contended>, id: &str) -> u64 {
    match runner.get(id).await.unwrap().map(|v| v.state) {
        Some(Counter::At(n)) => n,
        _ => 0,
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_hands_the_command_back() {
    let queue = RetryQueue::builder(runner(Contended::default())).capacity(2).start();
    queue.submit("a", Count::Add(1)).unwrap();
    queue.submit("b", Count::Add(2)).unwrap();
    let refused = queue.submit("c", Count::Add(3)).unwrap_err();
    assert!(matches!(refused, QueueError::Full { capacity: 2, .. }), "{refused:?}");
    assert_eq!(refused.to_string(), "retry queue full (2 commands): \"c\" was not queued");
    assert_eq!(refused.into_parts(), ("c".to_owned(), Count::Add(3)), "the caller gets the command back");

    let report = queue.shutdown(HOUR).await;
    assert_eq!((report.completed, report.unfinished.len(), report.dead_letters.len()), (2, 0, 0));
    let late = queue.submit("d", Count::Add(4)).unwrap_err();
    assert!(matches!(late, QueueError::ShutDown { .. }), "{late:?}");
}

#[tokio::test(start_paused = true)]
async fn conflicts_are_tried_again_later_until_they_succeed() {
    let store = Contended::conflicts_on([1, 2]);
    let queue = RetryQueue::builder(runner(store.clone())).max_tries(3).start();
    queue.submit("a", Count::Add(5)).unwrap();
    let report = queue.shutdown(HOUR).await;
    assert_eq!(report.completed, 1);
    assert_eq!(value(&runner(store), "a").await, 5);
}

#[tokio::test(start_paused = true)]
async fn failures_become_dead_letters_that_can_be_inspected_and_redriven() {
    let store = Contended::always();
    let queue = RetryQueue::builder(runner(store.clone())).max_tries(3).start();
    queue.submit("a", Count::Add(1)).unwrap();
    queue.submit("a", Count::Poison).unwrap();
    // Let the queue work through its tries (paused time jumps over the waits).
    while queue.stats().dead < 2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dead = queue.dead_letters();
    assert_eq!(dead.len(), 2);
    let poisoned = dead.iter().find(|d| d.command == Count::Poison).unwrap();
    assert_eq!((poisoned.tries, poisoned.retryable), (1, false), "a refusal is final: no second try");
    assert_eq!(poisoned.error, "refused: poisoned");
    let contended = dead.iter().find(|d| d.command == Count::Add(1)).unwrap();
    assert_eq!((contended.tries, contended.retryable), (3, true), "conflicts ran out of tries");
    assert!(contended.error.starts_with("gave up after 1 attempts: version conflict"), "{}", contended.error);

    // The contention is over: re-drive the dead letters.
    store.set_always(false);
    assert_eq!(queue.redrive(), 2);
    let report = queue.shutdown(HOUR).await;
    assert_eq!(report.completed, 1);
    assert_eq!(report.dead_letters.len(), 1, "the poisoned command fails again");
    assert_eq!(value(&runner(store), "a").await, 1);
}

#[tokio::test(start_paused = true)]
async fn redrive_respects_the_capacity_and_take_empties_the_list() {
    let store = Contended::always();
    let queue = RetryQueue::builder(runner(store.clone())).max_tries(1).capacity(2).start();
    for n in 0..2 {
        queue.submit("a", Count::Add(n)).unwrap();
    }
    while queue.stats().dead < 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    queue.submit("b", Count::Add(9)).unwrap();
    assert_eq!(queue.redrive(), 1, "room for one");
    assert_eq!(queue.stats(), QueueStats { waiting: 2, running: 0, completed: 0, dead: 1 });
    let taken = queue.take_dead_letters();
    assert_eq!(taken.len(), 1);
    assert_eq!(queue.stats().dead, 0);
    let report = queue.shutdown(Duration::ZERO).await;
    assert_eq!(report.unfinished.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn shutdown_reports_what_the_grace_period_did_not_finish() {
    let store = Contended::always();
    let backoff = Retry::fixed(HOUR);
    let queue = RetryQueue::builder(runner(store.clone())).max_tries(5).backoff(backoff).start();
    queue.submit("a", Count::Add(1)).unwrap();
    queue.submit("b", Count::Add(2)).unwrap();
    let report = queue.shutdown(Duration::from_mins(1)).await;
    assert_eq!(report.completed, 0);
    let unfinished: Vec<_> = report.unfinished.iter().map(|u| (u.id.as_str(), u.tries)).collect();
    assert_eq!(unfinished, [("a", 1), ("b", 1)], "tried once each, then waiting an hour");
    let Unfinished { last_error, .. } = &report.unfinished[0];
    assert!(last_error.as_deref().is_some_and(|e| e.contains("version conflict")), "{last_error:?}");
    assert_eq!(report.dead_letters, Vec::<DeadLetter<Count>>::new());
}

#[tokio::test(start_paused = true)]
async fn no_command_is_lost_or_applied_twice_under_contention() {
    const COMMANDS: u64 = 200;
    let store = Contended::conflicts_on((1..2_000).step_by(3));
    let queue = RetryQueue::builder(runner(store.clone())).workers(4).capacity(1_000).max_tries(50).start();
    for n in 0..COMMANDS {
        queue.submit(format!("r{}", n % 4), Count::Add(1)).unwrap();
    }
    let report = queue.shutdown(HOUR).await;
    let (unfinished, dead) = (report.unfinished.len() as u64, report.dead_letters.len() as u64);
    assert_eq!(report.completed + unfinished + dead, COMMANDS, "every command accounted for");
    let runner = runner(store);
    let mut applied = 0;
    for record in 0..4 {
        applied += value(&runner, &format!("r{record}")).await;
    }
    assert_eq!(applied, report.completed, "each completed command applied exactly once");
    assert_eq!(report.completed, COMMANDS, "with 50 tries and an hour's grace, all of them");
}
