//! Timers on every store: due times stored with each write and indexed,
//! cleared when a record leaves its due state, and sweepers that fire each
//! due state once, however many of them sweep at once.

use super::Harness;
use machine_core::prelude::*;
use machine_core::store::{Origin, Store};
use machine_core::timers::{Deadline, Sweeper};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Slot {
    #[state(initial)]
    Free,
    Held {
        guest: String,
        #[state(due)]
        until: Deadline,
    },
    /// The guest was reminded; the hold lapses at `until` unless confirmed.
    Reminded {
        guest: String,
        #[state(due)]
        until: Deadline,
    },
    Lapsed {
        guest: String,
    },
}

#[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[command(state = Slot)]
pub(crate) enum SlotCommand {
    #[command(from(Free, Lapsed), to(Held))]
    Hold { guest: String, until: Deadline },
    #[command(from(Held, Reminded), to(Free))]
    Release,
    /// Fires when a hold is due: remind the guest, lapse 1 s later.
    #[command(timer, from(Held), to(Reminded))]
    Remind,
    #[command(timer, from(Reminded), to(Lapsed))]
    Lapse,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    #[error("a VIP's hold never lapses")]
    Vip,
    #[error(transparent)]
    NotDeclared(#[from] NotDeclared),
}

pub(crate) struct Slots;

impl Machine for Slots {
    type State = Slot;
    type Command = SlotCommand;
    type Deps = ();
    type Error = Refused;
    const NAME: &'static str = "Slot";

    fn transition((): &(), command: &SlotCommand, state: &Slot) -> Result<Slot, Refused> {
        Ok(match (command, state) {
            (SlotCommand::Hold { guest, until }, _) => Slot::Held { guest: guest.clone(), until: *until },
            (SlotCommand::Release, _) => Slot::Free,
            (SlotCommand::Remind, Slot::Held { guest, until }) => {
                Slot::Reminded { guest: guest.clone(), until: Deadline::from_millis(until.as_millis() + 1_000) }
            }
            (SlotCommand::Lapse, Slot::Reminded { guest, .. }) if guest == "vip" => return Err(Refused::Vip),
            (SlotCommand::Lapse, Slot::Reminded { guest, .. }) => Slot::Lapsed { guest: guest.clone() },
            (command, state) => {
                return Err(NotDeclared { command: command.kind().as_str(), state: state.kind().as_str() }.into());
            }
        })
    }
}

/// A runner on `store` whose clock is `now`, moved by the test.
fn runner<St: Store>(store: St, now: &Arc<AtomicU64>) -> Runner<Slots, St> {
    let clock = Arc::clone(now);
    Runner::new(store, ()).clock(move || clock.load(Ordering::SeqCst))
}

fn hold(guest: &str, until: u64) -> SlotCommand {
    SlotCommand::Hold { guest: guest.to_owned(), until: Deadline::from_millis(until) }
}

/// How many history entries of `id` a timer wrote.
async fn timer_entries<St: Store>(runner: &Runner<Slots, St>, id: &str) -> usize {
    let history = runner.history(id).await.unwrap();
    history.iter().filter(|item| item.as_ref().is_ok_and(|entry| entry.origin == Origin::Timer)).count()
}

pub(crate) async fn due_times_are_stored_indexed_and_cleared(store: impl Harness) {
    let now = Arc::new(AtomicU64::new(0));
    let runner = runner(store.clone(), &now);
    runner.handle("b", &hold("bo", 2_000)).await.unwrap();
    runner.handle("a", &hold("al", 2_000)).await.unwrap();
    runner.handle("c", &hold("cy", 1_000)).await.unwrap();
    runner.handle("free", &hold("di", 1_500)).await.unwrap();
    runner.handle("free", &SlotCommand::Release).await.unwrap();

    assert!(store.due("Slot", 999, None, 10).await.unwrap().is_empty(), "nothing is due before its time");
    let due = store.due("Slot", 2_000, None, 10).await.unwrap();
    let order: Vec<(&str, u64, u64)> = due.iter().map(|t| (t.id.as_str(), t.due, t.version)).collect();
    // Earliest first, then by id; the released record left the index.
    assert_eq!(order, [("c", 1_000, 1), ("a", 2_000, 1), ("b", 2_000, 1)]);
    // Paged by the (due, id) position of the last one seen.
    let page = store.due("Slot", 2_000, Some((1_000, "c")), 1).await.unwrap();
    assert_eq!(page.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["a"]);
    let page = store.due("Slot", 2_000, Some((2_000, "a")), 10).await.unwrap();
    assert_eq!(page.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["b"]);
    assert!(store.due("Other", 9_000, None, 10).await.unwrap().is_empty(), "timers are per machine");

    // A new deadline replaces the old one in the index.
    runner.handle("c", &SlotCommand::Release).await.unwrap();
    runner.handle("c", &hold("cy", 5_000)).await.unwrap();
    let due = store.due("Slot", 4_999, None, 10).await.unwrap();
    assert_eq!(due.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    let due = store.due("Slot", 5_000, None, 10).await.unwrap();
    assert_eq!(due.last().map(|t| (t.id.as_str(), t.version)), Some(("c", 3)));

    // Disarming is conditional on the version.
    assert!(!store.disarm("Slot", "a", 2).await.unwrap(), "a is at version 1");
    assert!(store.disarm("Slot", "a", 1).await.unwrap());
    assert!(!store.disarm("Slot", "a", 1).await.unwrap(), "already disarmed");
    assert!(!store.disarm("Slot", "nobody", 1).await.unwrap());
    let due = store.due("Slot", 9_000, None, 10).await.unwrap();
    assert_eq!(due.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["b", "c"]);
    // The record itself is untouched by a disarm.
    assert_eq!(store.load("Slot", "a").await.unwrap().map(|r| r.version), Some(1));
}

pub(crate) async fn fire_judges_the_state_it_loads(store: impl Harness) {
    let now = Arc::new(AtomicU64::new(1_000));
    let runner = runner(store, &now);
    runner.handle("s", &hold("al", 2_000)).await.unwrap();
    let early = runner.fire("s").await.unwrap_err();
    assert!(matches!(early, Error::NotDue { due: Some(2_000), state: "Held", .. }), "{early:?}");
    assert!(matches!(runner.fire("nobody").await, Err(Error::NotDue { due: None, state: "Free", .. })));

    now.store(2_000, Ordering::SeqCst);
    let fired = runner.fire("s").await.unwrap();
    assert_eq!(fired.state, Slot::Reminded { guest: "al".into(), until: Deadline::from_millis(3_000) });
    // The next state is due later: firing again now finds nothing to do.
    assert!(matches!(runner.fire("s").await, Err(Error::NotDue { due: Some(3_000), .. })));
    assert_eq!(timer_entries(&runner, "s").await, 1);
}

pub(crate) async fn two_sweepers_fire_each_due_state_once(store: impl Harness) {
    const RECORDS: u64 = 60;
    let now = Arc::new(AtomicU64::new(0));
    let runner = runner(store, &now);
    for n in 0..RECORDS {
        runner.handle(&format!("slot-{n:03}"), &hold("al", 100 + n * 10)).await.unwrap();
    }
    // Every hold is due, and each reminder (1 s later) too: two due states
    // per record, so two timer entries each, never more.
    now.store(10_000, Ordering::SeqCst);
    let sweepers = [Sweeper::new(runner.clone()).page(7), Sweeper::new(runner.clone()).page(5).concurrency(3)];
    let mut fired = 0;
    let mut skipped = 0;
    for _ in 0..3 {
        let (one, two) = tokio::join!(sweepers[0].sweep(), sweepers[1].sweep());
        let (one, two) = (one.unwrap(), two.unwrap());
        assert_eq!(one.refused + two.refused + one.failed + two.failed + one.retried + two.retried, 0);
        fired += one.fired + two.fired;
        skipped += one.skipped + two.skipped;
    }
    assert_eq!(fired, 2 * RECORDS, "each of the two due states of each record fired once ({skipped} skipped)");
    for n in 0..RECORDS {
        let id = format!("slot-{n:03}");
        assert_eq!(timer_entries(&runner, &id).await, 2, "{id}");
        assert_eq!(runner.get(&id).await.unwrap().unwrap().state, Slot::Lapsed { guest: "al".into() });
    }
    assert_eq!(sweepers[0].sweep().await.unwrap().fired, 0, "nothing is left to fire");
}

pub(crate) async fn a_refused_timer_is_disarmed_not_retried_for_ever(store: impl Harness) {
    let now = Arc::new(AtomicU64::new(0));
    let runner = runner(store.clone(), &now);
    runner.handle("vip", &hold("vip", 100)).await.unwrap();
    runner.handle("guest", &hold("al", 100)).await.unwrap();
    now.store(5_000, Ordering::SeqCst);
    let sweeper = Sweeper::new(runner.clone());
    let first = sweeper.sweep().await.unwrap();
    // Both reminders fire; then (due at 1,100 < 5,000) both lapses are due:
    // the VIP's is refused and disarmed, the guest's fires.
    let second = sweeper.sweep().await.unwrap();
    assert_eq!((first.fired + second.fired, first.refused + second.refused), (3, 1), "{first:?} {second:?}");
    assert_eq!(sweeper.sweep().await.unwrap(), machine_core::timers::Swept::default(), "not retried");
    let vip = runner.get("vip").await.unwrap().unwrap();
    assert!(matches!(vip.state, Slot::Reminded { .. }), "the refused record keeps its state");
    assert!(store.due("Slot", u64::MAX, None, 10).await.unwrap().is_empty());
    // The record's next write arms its new state's timer afresh.
    runner.handle("vip", &SlotCommand::Release).await.unwrap();
    runner.handle("vip", &hold("al", 6_000)).await.unwrap();
    now.store(6_000, Ordering::SeqCst);
    assert_eq!(sweeper.sweep().await.unwrap().fired, 1);
}

pub(crate) async fn a_record_that_moved_on_is_not_fired(store: impl Harness) {
    let now = Arc::new(AtomicU64::new(0));
    let runner = runner(store.clone(), &now);
    runner.handle("s", &hold("al", 100)).await.unwrap();
    // Listed as due, then released before the sweeper's command lands.
    now.store(500, Ordering::SeqCst);
    let listed = store.due("Slot", 500, None, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    runner.handle("s", &SlotCommand::Release).await.unwrap();
    assert!(matches!(runner.fire("s").await, Err(Error::NotDue { state: "Free", due: None, .. })));
    // Released, then held again with a later deadline: not due either.
    runner.handle("s", &hold("bo", 9_000)).await.unwrap();
    assert!(matches!(runner.fire("s").await, Err(Error::NotDue { due: Some(9_000), .. })));
    assert_eq!(timer_entries(&runner, "s").await, 0);
}

pub(crate) async fn coalesced_fires_race_commands_and_fire_once(store: impl Harness) {
    const RECORDS: u64 = 20;
    let now = Arc::new(AtomicU64::new(0));
    let runner = runner(store, &now).coalesce(machine_core::Coalescing::default().max_batch(8));
    for n in 0..RECORDS {
        runner.handle(&format!("c-{n:02}"), &hold("al", 100)).await.unwrap();
    }
    now.store(100, Ordering::SeqCst);
    // Per record: 4 fires and a release race in one coalesced queue. Each
    // fire is judged on the state the group has reached, so at most one
    // reminder fires per record, and none after the release.
    let mut calls = Vec::new();
    for n in 0..RECORDS {
        let id = format!("c-{n:02}");
        for _ in 0..4 {
            let (runner, id) = (runner.clone(), id.clone());
            calls.push(tokio::spawn(async move { runner.fire(&id).await.is_ok() }));
        }
        let (runner, id) = (runner.clone(), id.clone());
        calls.push(tokio::spawn(async move {
            // The release may come first (then no reminder) or after a
            // reminder (released from Reminded).
            runner.handle(&id, &SlotCommand::Release).await.unwrap();
            false
        }));
    }
    let mut fired = 0;
    for call in calls {
        fired += u64::from(call.await.unwrap());
    }
    let mut entries = 0;
    for n in 0..RECORDS {
        let id = format!("c-{n:02}");
        let timers = timer_entries(&runner, &id).await;
        assert!(timers <= 1, "{id}: {timers} reminders");
        entries += timers as u64;
        assert_eq!(runner.get(&id).await.unwrap().unwrap().state, Slot::Free);
    }
    assert_eq!(fired, entries, "every fire that returned Ok wrote one entry");
}
