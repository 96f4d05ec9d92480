//! Per-key coalescing and group commit: many callers on one record through
//! one runner, each with its own outcome, in an order the store agrees with.
//! The cases that depend on the store run on memory and on etcd
//! (`ETCD_ENDPOINTS`, ignored without it; see the root `build.rs`).

mod conformance;

use machine_core::prelude::*;
use machine_core::store::{Memory, Store};
use machine_core::testing::{FaultyStore, Op, Schedule};
use machine_core::{Coalescing, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Tally {
    #[state(initial)]
    Empty,
    Counting {
        total: u64,
        last: u64,
    },
    #[state(failure)]
    Failed(Failure<TallyCommand, Tally>),
}

#[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[command(state = Tally)]
enum TallyCommand {
    /// Adds `n`; odd numbers above 1,000 are refused by the transition.
    #[command(from(Empty, Counting), to(Counting))]
    Add(u64),
}

#[derive(Debug, PartialEq, thiserror::Error)]
#[error("{0} is not welcome")]
struct Unwelcome(u64);

struct Tallies;

impl Machine for Tallies {
    type State = Tally;
    type Command = TallyCommand;
    type Deps = ();
    type Error = Unwelcome;

    fn transition((): &(), TallyCommand::Add(n): &TallyCommand, state: &Tally) -> Result<Tally, Unwelcome> {
        if *n > 1_000 && n % 2 == 1 {
            return Err(Unwelcome(*n));
        }
        let total = match state {
            Tally::Counting { total, .. } => *total,
            _ => 0,
        };
        Ok(Tally::Counting { total: total + n, last: *n })
    }
}

/// Every refusal of a tally is recorded, so the group tests see failure
/// states between commands.
impl RecordFailures for Tallies {
    fn failure(error: &Unwelcome) -> Option<String> {
        Some(error.to_string())
    }
}

fn runner<St: Store>(store: St) -> Runner<Tallies, St> {
    Runner::new(store, ()).coalesce(Coalescing::default().max_batch(16))
}

/// Sends `commands` concurrently, one task each, and collects the outcomes.
async fn send_all<St: Store>(
    runner: &Runner<Tallies, St>,
    commands: impl IntoIterator<Item = u64>,
) -> Vec<(u64, Result<Outcome<Tally>, Error<Unwelcome>>)> {
    let tasks: Vec<_> = commands
        .into_iter()
        .map(|n| {
            let runner = runner.clone();
            tokio::spawn(async move { (n, runner.handle("hot", &TallyCommand::Add(n)).await) })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    outcomes
}

async fn thirty_two_writers_on_one_record_lose_nothing_and_never_conflict<St: Store + Clone>(store: St) {
    let runner = runner(store);
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let runner = runner.clone();
            tokio::spawn(async move {
                let mut most = 0;
                for _ in 0..100 {
                    most = most.max(runner.handle("hot", &TallyCommand::Add(1)).await.unwrap().attempts);
                }
                most
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 1, "callers of one runner never race each other");
    }
    let stored = runner.get("hot").await.unwrap().unwrap();
    assert_eq!((stored.state, stored.version), (Tally::Counting { total: 3200, last: 1 }, 3200));
    assert_eq!(runner.store().history(Tallies::NAME, "hot").await.unwrap().len(), 3200, "one entry per command");
}

async fn outcomes_form_a_serial_order_that_replays_to_the_same_states<St: Store + Clone>(store: St) {
    let runner = runner(store);
    let outcomes = send_all(&runner, (1..=200).map(|n| if n % 10 == 0 { 1_001 + n } else { n })).await;

    // Order the accepted commands by the version each caller was told, and
    // replay them one by one through an in-memory instance.
    let mut by_version = BTreeMap::new();
    for (n, outcome) in &outcomes {
        match outcome {
            Ok(out) => {
                assert!(by_version.insert(out.version, (*n, out.state.clone())).is_none(), "versions are unique");
            }
            Err(Error::Rejected(Unwelcome(m))) => assert_eq!(m, n),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(by_version.len(), 180);
    assert_eq!(by_version.keys().copied().collect::<Vec<_>>(), (1..=180).collect::<Vec<u64>>(), "no gaps");
    let mut instance = Instance::<Tallies>::new(&(), Tally::initial());
    for (version, (n, state)) in &by_version {
        assert_eq!(instance.handle(&TallyCommand::Add(*n)).unwrap(), state, "version {version}");
    }
    assert_eq!(runner.get("hot").await.unwrap().unwrap().state, *instance.state());
}

async fn a_recorded_failure_is_what_the_next_command_in_the_group_sees<St: Store + Clone>(store: St) {
    let runner = runner(store).record_failures();
    let outcomes = send_all(&runner, [1, 2, 1_001, 4, 6]).await;
    let failed = outcomes.iter().find(|(n, _)| *n == 1_001).unwrap();
    let Err(Error::FailureRecorded { source: Unwelcome(1_001), version: failed_at, .. }) = failed.1 else {
        panic!("{:?}", failed.1)
    };
    // Commands that came before the failure were applied; those after it
    // found the record in `Failed`, where `Add` is not declared.
    for (n, outcome) in &outcomes {
        match outcome {
            Ok(out) => assert!(out.version < failed_at, "{n} applied before the failure"),
            Err(Error::NotAllowed { state, .. }) => assert_eq!(*state, "Failed", "{n} saw the failure state"),
            Err(Error::FailureRecorded { .. }) => assert_eq!(*n, 1_001),
            Err(other) => panic!("{n}: {other:?}"),
        }
    }
    let stored = runner.get("hot").await.unwrap().unwrap();
    assert_eq!(stored.version, failed_at);
    assert!(stored.state.is_failure());
}

async fn a_conflict_with_another_process_reapplies_the_whole_group<St: Store + Clone>(store: St) {
    // The store reports a conflict on the first commit, as if another
    // process had written in between; the group is reloaded and reapplied.
    let store = FaultyStore::new(store).conflicts(Schedule::calls([1]));
    let runner = runner(store).retry(Retry::fixed(std::time::Duration::ZERO));
    let outcomes = send_all(&runner, 1..=20).await;
    assert!(outcomes.iter().all(|(_, o)| o.is_ok()), "{outcomes:?}");
    assert!(outcomes.iter().any(|(_, o)| o.as_ref().unwrap().attempts == 2), "the first group was retried");
    assert_eq!(runner.get("hot").await.unwrap().unwrap().version, 20);
}

async fn a_store_error_fails_exactly_the_callers_of_its_group<St: Store + Clone>(store: St) {
    let store = FaultyStore::new(store).transient(Op::Commit, Schedule::calls([2]));
    let runner = runner(store);
    let outcomes = send_all(&runner, 1..=100).await;
    let failed: Vec<_> =
        outcomes.iter().filter(|(_, o)| matches!(o, Err(Error::Store(StoreError::Backend { .. })))).collect();
    assert!(!failed.is_empty(), "the second group failed");
    assert!(outcomes.iter().all(|(_, o)| o.is_ok() || matches!(o, Err(Error::Store(_)))));
    let stored = runner.get("hot").await.unwrap().unwrap();
    assert_eq!(usize::try_from(stored.version).unwrap(), 100 - failed.len(), "every other command was applied once");
    let total: u64 = outcomes.iter().filter(|(_, o)| o.is_ok()).map(|(n, _)| n).sum();
    assert_eq!(
        stored.state,
        Tally::Counting {
            total,
            last: match stored.state {
                Tally::Counting { last, .. } => last,
                _ => 0,
            }
        }
    );
}

async fn cancelled_callers_never_lose_or_duplicate_anyone_elses_command<St: Store + Clone>(store: St) {
    let runner = runner(store);
    let tasks: Vec<_> = (1..=300_u64)
        .map(|n| {
            let runner = runner.clone();
            tokio::spawn(async move { runner.handle("hot", &TallyCommand::Add(n)).await })
        })
        .collect();
    // Abort every third caller, wherever it is.
    let mut kept = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        if i % 3 == 0 {
            task.abort();
        } else {
            kept.push((i as u64 + 1, task));
        }
    }
    let mut answered = Vec::new();
    for (n, task) in kept {
        let outcome = task.await.unwrap().unwrap();
        answered.push((n, outcome.version));
    }
    // Let workers finish what was queued by aborted callers.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let history = runner.store().history(Tallies::NAME, "hot").await.unwrap();
    let applied: Vec<u64> = history
        .iter()
        .map(|c| match serde_json::from_str::<TallyCommand>(&c.command).unwrap() {
            TallyCommand::Add(n) => n,
        })
        .collect();
    let mut unique = applied.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), applied.len(), "no command applied twice");
    for (n, version) in answered {
        assert_eq!(applied.get(usize::try_from(version - 1).unwrap()), Some(&n), "command {n} is at its version");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_runs_commands_on_their_own_instead_of_growing() {
    let runner = Runner::<Tallies, _>::new(Memory::new(), ()).coalesce(Coalescing::default().max_queue(2).max_batch(1));
    let outcomes = send_all(&runner, 1..=64).await;
    assert!(outcomes.iter().all(|(_, o)| o.is_ok()));
    assert_eq!(runner.get("hot").await.unwrap().unwrap().version, 64);
}

/// One test per case and store.
macro_rules! on_every_store {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                super::$case(machine_core::store::Memory::new()).await;
            })*
        }
        mod etcd {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            #[cfg_attr(not(etcd_tests), ignore = "set ETCD_ENDPOINTS to run the etcd tests")]
            async fn $case() {
                let store = super::conformance::etcd().await;
                super::$case(store.clone()).await;
                super::conformance::remove_prefix(&store).await;
            })*
        }
    };
}

on_every_store!(
    thirty_two_writers_on_one_record_lose_nothing_and_never_conflict,
    outcomes_form_a_serial_order_that_replays_to_the_same_states,
    a_recorded_failure_is_what_the_next_command_in_the_group_sees,
    a_conflict_with_another_process_reapplies_the_whole_group,
    a_store_error_fails_exactly_the_callers_of_its_group,
    cancelled_callers_never_lose_or_duplicate_anyone_elses_command,
);
