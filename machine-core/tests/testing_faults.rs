//! `testing::FaultyStore` under the runner: scripted and periodic conflicts
//! drive the retry loop to exact attempt counts, transient errors and lost
//! replies surface as typed retryable store errors, and every call is
//! forwarded to the wrapped store otherwise.

use machine_core::prelude::*;
use machine_core::store::{Commit, Memory, Origin, Store, Write};
use machine_core::testing::{Fault, FaultyStore, InjectedFault, Injection, Op, Schedule};
use machine_core::{StoreError, retry};
use serde::{Deserialize, Serialize};
use std::error::Error as _;
use std::time::Duration;

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Counter {
    #[state(initial)]
    Zero,
    Counting(u64),
}

#[derive(Command, Clone, Debug, Serialize, Deserialize)]
#[command(state = Counter)]
enum Count {
    #[command(from(Zero, Counting), to(Counting))]
    Add(u64),
}

struct Counters;

impl Machine for Counters {
    type State = Counter;
    type Command = Count;
    type Deps = ();
    type Error = std::convert::Infallible;

    fn transition((): &(), Count::Add(n): &Count, state: &Counter) -> Result<Counter, Self::Error> {
        Ok(match state {
            Counter::Zero => Counter::Counting(*n),
            Counter::Counting(total) => Counter::Counting(total + n),
        })
    }
}

/// Retries at once, up to `attempts` times: no timer involved.
fn immediate(attempts: u32) -> retry::Retry {
    Retry::fixed(Duration::ZERO).max_attempts(attempts)
}

fn runner(store: FaultyStore<Memory>) -> Runner<Counters, FaultyStore<Memory>> {
    Runner::<Counters, _>::new(store, ()).retry(immediate(10))
}

fn injected(op: Op, call: u64, fault: Fault) -> Injection {
    Injection { op, call, fault }
}

#[tokio::test]
async fn scripted_conflicts_cost_exactly_the_scripted_attempts() {
    let runner = runner(FaultyStore::new(Memory::new()).conflicts(Schedule::calls([1, 2])));
    let out = runner.handle("c", &Count::Add(5)).await.unwrap();
    assert_eq!((out.state, out.version, out.attempts), (Counter::Counting(5), 1, 3));
    assert_eq!(runner.store().calls(Op::Commit), 3);
    assert_eq!(runner.store().calls(Op::Load), 3, "every attempt reloads");
    assert_eq!(
        runner.store().injected(),
        [injected(Op::Commit, 1, Fault::Conflict), injected(Op::Commit, 2, Fault::Conflict)]
    );
    // The refused attempts wrote nothing: one version, one history entry.
    assert_eq!(runner.history("c").await.unwrap().len(), 1);
}

#[tokio::test]
async fn every_nth_commit_conflicts() {
    let runner = runner(FaultyStore::new(Memory::new()).conflicts(Schedule::every(3)));
    let mut attempts = Vec::new();
    for _ in 0..6 {
        attempts.push(runner.handle("c", &Count::Add(1)).await.unwrap().attempts);
    }
    // Commits 3 and 6 lose: the third and fifth commands need a second attempt.
    assert_eq!(attempts, [1, 1, 2, 1, 2, 1]);
    let current = runner.get("c").await.unwrap().unwrap();
    assert_eq!((current.state, current.version), (Counter::Counting(6), 6));
}

#[tokio::test]
async fn conflicts_on_every_attempt_exhaust_the_policy_and_write_nothing() {
    let store = FaultyStore::new(Memory::new()).conflicts(Schedule::every(1));
    let runner = Runner::<Counters, _>::new(store, ()).retry(immediate(4));
    let error = runner.handle("c", &Count::Add(1)).await.unwrap_err();
    let Error::RetriesExhausted { conflict, attempts } = &error else { panic!("{error:?}") };
    assert_eq!(*attempts, 4);
    assert_eq!((conflict.machine.as_str(), conflict.id.as_str()), ("Counter", "c"));
    assert_eq!((conflict.attempted, conflict.current, conflict.gap()), (1, 1, 1));
    assert_eq!(runner.get("c").await.unwrap(), None);
}

#[tokio::test]
async fn a_transient_commit_error_is_a_typed_retryable_store_error() {
    let runner = runner(FaultyStore::new(Memory::new()).transient(Op::Commit, Schedule::calls([1])));
    let error = runner.handle("c", &Count::Add(1)).await.unwrap_err();
    let Error::Store(store_error) = &error else { panic!("{error:?}") };
    assert!(store_error.is_retryable());
    let source = store_error.source().and_then(|source| source.downcast_ref::<InjectedFault>());
    assert_eq!(source, Some(&InjectedFault(injected(Op::Commit, 1, Fault::Transient))));
    assert_eq!(runner.get("c").await.unwrap(), None, "nothing was written");

    // The next call goes through.
    assert_eq!(runner.handle("c", &Count::Add(1)).await.unwrap().version, 1);
}

#[tokio::test]
async fn a_transient_load_error_stops_before_the_transition() {
    let runner = runner(FaultyStore::new(Memory::new()).transient(Op::Load, Schedule::first(1)));
    let error = runner.handle("c", &Count::Add(1)).await.unwrap_err();
    assert!(matches!(&error, Error::Store(StoreError::Backend { retryable: true, .. })), "{error:?}");
    assert_eq!(runner.store().calls(Op::Commit), 0);
    assert_eq!(error.to_string(), "store error: store backend error: injected transient failure on load #1");
}

#[tokio::test]
async fn a_lost_reply_is_written_but_reported_as_failed() {
    let runner = runner(FaultyStore::new(Memory::new()).lost_replies(Schedule::calls([2])));
    runner.handle("c", &Count::Add(1)).await.unwrap();
    let error = runner.handle("c", &Count::Add(1)).await.unwrap_err();
    assert!(matches!(&error, Error::Store(e) if e.is_retryable()), "{error:?}");
    // The caller saw an error, yet the command was saved: a retry by the
    // caller would apply it twice. This is what the fault exists to show.
    let current = runner.get("c").await.unwrap().unwrap();
    assert_eq!((current.state, current.version), (Counter::Counting(2), 2));
}

#[tokio::test]
async fn the_first_matching_rule_wins_and_clones_share_the_plan() {
    let store = FaultyStore::new(Memory::new())
        .transient(Op::Commit, Schedule::calls([2]))
        .conflicts(Schedule::every(2))
        .transient(Op::History, Schedule::calls([1]));
    let observer = store.clone();
    let runner = runner(store);
    runner.handle("c", &Count::Add(1)).await.unwrap();
    assert!(matches!(runner.handle("c", &Count::Add(1)).await, Err(Error::Store(_))), "commit 2: transient wins");
    assert_eq!(runner.handle("c", &Count::Add(1)).await.unwrap().attempts, 1, "commit 3 passes");
    assert_eq!(runner.handle("c", &Count::Add(1)).await.unwrap().attempts, 2, "commit 4 conflicts, 5 passes");
    assert!(runner.history("c").await.is_err());
    assert_eq!(runner.history("c").await.unwrap().len(), 3);
    assert_eq!(
        observer.injected(),
        [
            injected(Op::Commit, 2, Fault::Transient),
            injected(Op::Commit, 4, Fault::Conflict),
            injected(Op::History, 1, Fault::Transient),
        ]
    );
    assert_eq!(observer.calls(Op::Commit), 5);
}

#[tokio::test]
async fn without_rules_every_call_is_forwarded() {
    let store = FaultyStore::new(Memory::new());
    let write = |expected| Write {
        machine: "M",
        id: "a",
        expected,
        kind: "K",
        state: "1".into(),
        command: "\"c\"",
        origin: Origin::Command,
        schema: 1,
        due: None,
    };
    store.commit(Commit::write(write(0))).await.unwrap();
    let stale = store.commit(Commit::write(write(0))).await.unwrap_err();
    assert_eq!(stale.conflict().map(|c| (c.attempted, c.current)), Some((1, 1)), "the inner store's own conflict");
    assert_eq!(store.load("M", "a").await.unwrap().map(|r| r.version), Some(1));
    assert_eq!(store.inner().load("M", "a").await.unwrap().map(|r| r.version), Some(1));
    assert_eq!(store.history("M", "a").await.unwrap().len(), 1);
    assert!(store.injected().is_empty());
    assert_eq!([Op::Load, Op::Commit, Op::History].map(|op| store.calls(op)), [1, 2, 1]);
}

#[tokio::test]
async fn a_conflict_on_a_check_only_commit_names_the_checked_record() {
    let store = FaultyStore::new(Memory::new()).conflicts(Schedule::first(1));
    let commit = Commit {
        writes: Vec::new(),
        checks: vec![machine_core::store::Check { machine: "M", id: "b", expected: 4 }],
        keys: vec![],
    };
    let conflict = store.commit(commit).await.unwrap_err();
    assert_eq!(conflict.conflict().map(|c| (c.id.as_str(), c.attempted, c.current)), Some(("b", 5, 5)));
}
