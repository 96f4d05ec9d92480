//! The load → handle → save loop on the memory store: what is saved, what is
//! refused, and that refusals write nothing.

use machine_core::evolution::Payload;
use machine_core::prelude::*;
use machine_core::store::{Change, Commit, Memory, Origin, Record, Store, Write};
use machine_core::{DecodeError, HistoryEntry, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Order {
    #[state(initial)]
    Draft,
    Open {
        items: Vec<String>,
    },
    Paid {
        items: Vec<String>,
    },
    #[state(terminal)]
    Cancelled,
    #[state(failure)]
    Failed(Failure<OrderCommand, Order>),
}

#[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[command(state = Order)]
enum OrderCommand {
    #[command(from(Draft, Open), to(Open))]
    Add(String),
    #[command(from(Open), to(Paid))]
    Pay,
    #[command(from(Draft, Open), to(Cancelled))]
    Cancel,
    /// Declared to open an order, but its transition (a bug) pays it.
    #[command(from(Draft), to(Open))]
    Buggy,
}

#[derive(Debug, thiserror::Error, PartialEq)]
enum OrderError {
    #[error("card declined")]
    Declined,
}

/// In these tests a declined card is a failure worth keeping, so the
/// runner's recording and recovery can be driven by the gateway's answer.
impl RecordFailures for Orders {
    fn failure(error: &OrderError) -> Option<String> {
        Some(error.to_string())
    }
}

/// A payment gateway whose answer the test controls.
#[derive(Default)]
struct Gateway {
    decline: AtomicBool,
    charges: AtomicU32,
}

struct Orders;

impl Machine for Orders {
    type State = Order;
    type Command = OrderCommand;
    type Deps = Gateway;
    type Error = OrderError;

    fn transition(deps: &Gateway, command: &OrderCommand, state: &Order) -> Result<Order, OrderError> {
        use {Order as S, OrderCommand as C};
        Ok(match (command, state) {
            (C::Add(item), S::Draft) => S::Open { items: vec![item.clone()] },
            (C::Add(item), S::Open { items }) => S::Open { items: [items.clone(), vec![item.clone()]].concat() },
            (C::Pay, S::Open { items }) => {
                deps.charges.fetch_add(1, Ordering::SeqCst);
                if deps.decline.load(Ordering::SeqCst) {
                    return Err(OrderError::Declined);
                }
                S::Paid { items: items.clone() }
            }
            (C::Cancel, _) => S::Cancelled,
            (C::Buggy, _) => S::Paid { items: Vec::new() },
            // The declared table refuses every other pair before we get here.
            (_, state) => state.clone(),
        })
    }
}

fn runner() -> Runner<Orders, Memory> {
    Runner::new(Memory::new(), Gateway::default()).clock(|| 1_700_000_000_000)
}

async fn versions(store: &impl Store, id: &str) -> Vec<u64> {
    store.history("Order", id).await.unwrap().iter().map(|c| c.version).collect()
}

#[tokio::test]
async fn saves_each_command_as_the_next_version() {
    let runner = runner();
    assert_eq!(runner.get("o-1").await.unwrap(), None, "never written");
    let first = runner.handle("o-1", &OrderCommand::Add("tea".into())).await.unwrap();
    assert_eq!((first.version, first.attempts), (1, 1));
    let second = runner.handle("o-1", &OrderCommand::Pay).await.unwrap();
    assert_eq!(second.state, Order::Paid { items: vec!["tea".into()] });
    assert_eq!(second.version, 2);
    assert_eq!(runner.get("o-1").await.unwrap(), Some(Versioned { state: second.state.clone(), version: 2 }));

    let history: Vec<_> = runner.history("o-1").await.unwrap().into_iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(
        history.iter().map(|e| (e.version, e.command.clone().unwrap())).collect::<Vec<_>>(),
        [(1, OrderCommand::Add("tea".into())), (2, OrderCommand::Pay)]
    );
    let HistoryEntry { before, state, .. } = &history[1];
    assert_eq!(before.as_ref(), Some(&Order::Open { items: vec!["tea".into()] }));
    assert_eq!(state, &second.state);
    assert_eq!(history[0].before, None);
}

#[tokio::test]
async fn not_allowed_is_refused_before_the_transition_and_writes_nothing() {
    let runner = runner();
    runner.handle("o-1", &OrderCommand::Add("tea".into())).await.unwrap();
    runner.handle("o-1", &OrderCommand::Cancel).await.unwrap();
    let error = runner.handle("o-1", &OrderCommand::Pay).await.unwrap_err();
    match &error {
        Error::NotAllowed { machine, id, command, state } => {
            assert_eq!((*machine, id.as_deref(), *command, *state), ("Order", Some("o-1"), "Pay", "Cancelled"));
        }
        other => panic!("expected NotAllowed, got {other:?}"),
    }
    assert_eq!(error.to_string(), "command Pay is not allowed in state Cancelled of Order \"o-1\"");
    assert_eq!(runner.deps().charges.load(Ordering::SeqCst), 0, "the transition never ran");
    assert_eq!(versions(runner.store(), "o-1").await, [1, 2]);
}

#[tokio::test]
async fn undeclared_results_are_refused_and_write_nothing() {
    let runner = runner();
    let error = runner.handle("o-1", &OrderCommand::Buggy).await.unwrap_err();
    assert!(matches!(error, Error::Undeclared { command: "Buggy", from: "Draft", to: "Paid", .. }), "{error:?}");
    assert_eq!(runner.get("o-1").await.unwrap(), None);
    assert!(versions(runner.store(), "o-1").await.is_empty());
}

#[tokio::test]
async fn user_errors_are_returned_not_retried_and_write_nothing() {
    let runner = runner();
    runner.handle("o-1", &OrderCommand::Add("tea".into())).await.unwrap();
    runner.deps().decline.store(true, Ordering::SeqCst);
    let error = runner.handle("o-1", &OrderCommand::Pay).await.unwrap_err();
    assert!(matches!(error, Error::Rejected(OrderError::Declined)), "{error:?}");
    assert_eq!(error.rejection(), Some(&OrderError::Declined));
    assert_eq!(runner.deps().charges.load(Ordering::SeqCst), 1, "not retried");
    assert_eq!(versions(runner.store(), "o-1").await, [1]);
}

#[tokio::test]
async fn failures_are_recorded_and_recovered() {
    let runner = runner().record_failures();
    runner.handle("o-1", &OrderCommand::Add("tea".into())).await.unwrap();
    runner.deps().decline.store(true, Ordering::SeqCst);

    let error = runner.handle("o-1", &OrderCommand::Pay).await.unwrap_err();
    assert!(matches!(error, Error::FailureRecorded { source: OrderError::Declined, version: 2, .. }), "{error:?}");
    let open = Order::Open { items: vec!["tea".into()] };
    let failed = runner.get("o-1").await.unwrap().unwrap();
    assert_eq!(failed.version, 2);
    let expected = Failure {
        command: OrderCommand::Pay,
        previous: Box::new(open.clone()),
        error: "card declined".into(),
        attempts: 1,
        failed_at: 1_700_000_000_000,
    };
    assert_eq!(failed.state, Order::Failed(expected.clone()));

    // Recovering while the gateway still declines records the failure again.
    let again = runner.recover("o-1").await.unwrap_err();
    assert!(matches!(again, Error::FailureRecorded { version: 3, .. }), "{again:?}");
    let state = runner.get("o-1").await.unwrap().unwrap().state;
    assert_eq!(state, Order::Failed(Failure { attempts: 2, ..expected }), "previous stays the original");

    runner.deps().decline.store(false, Ordering::SeqCst);
    let recovered = runner.recover("o-1").await.unwrap();
    assert_eq!((recovered.state, recovered.version), (Order::Paid { items: vec!["tea".into()] }, 4));

    let history = runner.history("o-1").await.unwrap();
    let commands: Vec<_> = history.iter().flatten().filter_map(|e| Some((e.command.clone()?, e.origin))).collect();
    assert_eq!(
        commands,
        [
            (OrderCommand::Add("tea".into()), Origin::Command),
            (OrderCommand::Pay, Origin::Command),
            (OrderCommand::Pay, Origin::Recovery),
            (OrderCommand::Pay, Origin::Recovery),
        ]
    );

    let nothing = runner.recover("o-1").await.unwrap_err();
    assert!(matches!(nothing, Error::NotFailed { state: "Paid", .. }), "{nothing:?}");
}

#[tokio::test]
async fn a_failure_state_is_not_reported_as_undeclared() {
    // `Pay` declares only `to(Paid)`; the recorded failure state is accepted anyway.
    let runner = runner().record_failures();
    runner.handle("o-1", &OrderCommand::Add("tea".into())).await.unwrap();
    runner.deps().decline.store(true, Ordering::SeqCst);
    let error = runner.handle("o-1", &OrderCommand::Pay).await.unwrap_err();
    assert!(!matches!(error, Error::Undeclared { .. }), "{error:?}");
}

#[tokio::test]
async fn invalid_ids_are_typed_errors() {
    let runner = runner();
    for id in [String::new(), "x".repeat(513), "nul\0byte".into()] {
        let error = runner.handle(&id, &OrderCommand::Cancel).await.unwrap_err();
        assert!(matches!(error, Error::Store(StoreError::InvalidKey { what: "id", .. })), "{error:?}");
        assert!(matches!(runner.get(&id).await, Err(Error::Store(StoreError::InvalidKey { .. }))));
    }
    let longest = "é".repeat(256); // exactly 512 bytes
    assert_eq!(runner.handle(&longest, &OrderCommand::Cancel).await.unwrap().version, 1);
}

#[tokio::test]
async fn corrupt_stored_state_is_a_decode_error_naming_id_and_version() {
    let runner = runner();
    runner.handle("good", &OrderCommand::Add("tea".into())).await.unwrap();
    for (id, json) in [("corrupt", "{not json"), ("unknown", "\"Teleported\"")] {
        let write = Write {
            machine: "Order",
            id,
            expected: 0,
            kind: "Draft",
            state: json.into(),
            command: "null",
            origin: Origin::Command,
            schema: 1,
            due: None,
        };
        runner.store().commit(Commit::write(write)).await.unwrap();
        let error = runner.handle(id, &OrderCommand::Cancel).await.unwrap_err();
        match &error {
            Error::Decode(DecodeError { machine: "Order", id: got, version: 1, what: Payload::State, .. }) => {
                assert_eq!(got, id);
            }
            other => panic!("expected Decode, got {other:?}"),
        }
        assert!(
            error.to_string().starts_with(&format!("cannot decode the state of Order {id:?} at version 1")),
            "{error}"
        );
        assert!(matches!(runner.get(id).await, Err(Error::Decode(_))));
        assert_eq!(versions(runner.store(), id).await, [1], "nothing written over the corrupt record");
    }
    assert_eq!(runner.get("good").await.unwrap().unwrap().version, 1, "other records unaffected");
}

/// A store whose record is already at the highest version.
#[derive(Debug, Clone)]
struct AtMaxVersion;

impl Store for AtMaxVersion {
    async fn load(&self, _: &str, _: &str) -> Result<Option<Record>, StoreError> {
        Ok(Some(Record {
            version: u64::MAX,
            kind: "Draft".into(),
            state: "\"Draft\"".into(),
            updated_at: 0,
            schema: 1,
        }))
    }
    async fn commit(&self, _: Commit<'_>) -> Result<(), StoreError> {
        panic!("a write past u64::MAX must never reach the store")
    }
    async fn history(&self, _: &str, _: &str) -> Result<Vec<Change>, StoreError> {
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn version_overflow_is_a_typed_error() {
    let runner = Runner::<Orders, _>::new(AtMaxVersion, Gateway::default());
    let error = runner.handle("o-1", &OrderCommand::Cancel).await.unwrap_err();
    assert!(matches!(error, Error::Store(StoreError::VersionOverflow { version: u64::MAX, .. })), "{error:?}");
}

/// A store that lets a rival writer in between every load and commit, the
/// first `n` times, so the runner's retry path runs deterministically. The
/// rival writes `rival` (a state JSON and kind) or, if `None`, the same state
/// the runner is about to write.
#[derive(Clone)]
struct Interfering {
    inner: Memory,
    remaining: Arc<AtomicU32>,
    rival: Option<(&'static str, &'static str)>,
}

impl Store for Interfering {
    async fn load(&self, machine: &str, id: &str) -> Result<Option<Record>, StoreError> {
        self.inner.load(machine, id).await
    }
    async fn commit(&self, commit: Commit<'_>) -> Result<(), StoreError> {
        if self.remaining.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            let mut rival = commit.writes[0].clone();
            if let Some((state, kind)) = self.rival {
                (rival.state, rival.kind) = (state.to_owned(), kind);
            }
            self.inner.commit(Commit::write(rival)).await?;
        }
        self.inner.commit(commit).await
    }
    async fn history(&self, machine: &str, id: &str) -> Result<Vec<Change>, StoreError> {
        self.inner.history(machine, id).await
    }
}

fn interfering(times: u32, rival: Option<(&'static str, &'static str)>) -> Runner<Orders, Interfering> {
    let store = Interfering { inner: Memory::new(), remaining: Arc::new(AtomicU32::new(times)), rival };
    Runner::new(store, Gateway::default()).retry(Retry::fixed(std::time::Duration::ZERO).max_attempts(3))
}

#[tokio::test]
async fn conflicts_are_retried_on_fresh_state() {
    // The rival adds the same item first; the retry adds it on top of that.
    let runner = interfering(1, None);
    let out = runner.handle("o-1", &OrderCommand::Add("tea".into())).await.unwrap();
    assert_eq!((out.version, out.attempts), (2, 2));
    assert_eq!(out.state, Order::Open { items: vec!["tea".into(), "tea".into()] });

    // The rival cancels the order first; on the retry the table refuses `Add`
    // in `Cancelled`: the decision is made again on the fresh state.
    let runner = interfering(1, Some(("\"Cancelled\"", "Cancelled")));
    let error = runner.handle("o-2", &OrderCommand::Add("tea".into())).await.unwrap_err();
    assert!(matches!(error, Error::NotAllowed { state: "Cancelled", .. }), "{error:?}");
    assert_eq!(versions(runner.store(), "o-2").await, [1], "only the rival wrote");
}

#[tokio::test]
async fn exhausted_retries_carry_the_last_conflict_and_the_attempt_count() {
    let runner = interfering(u32::MAX, None);
    match runner.handle("o-1", &OrderCommand::Add("tea".into())).await {
        Err(Error::RetriesExhausted { conflict, attempts: 3 }) => {
            assert_eq!(conflict, VersionConflict::new("Order", "o-1", 3, 3), "one rival write overtook each attempt");
        }
        other => panic!("expected RetriesExhausted after 3 attempts, got {other:?}"),
    }
    assert_eq!(versions(runner.store(), "o-1").await, [1, 2, 3], "only the rival wrote");
}

#[tokio::test]
async fn retry_none_reports_the_first_conflict() {
    let runner = interfering(1, None).retry(Retry::none());
    let error = runner.handle("o-1", &OrderCommand::Add("tea".into())).await.unwrap_err();
    assert_eq!(error.conflict(), Some(&VersionConflict::new("Order", "o-1", 1, 1)));
    assert!(matches!(error, Error::RetriesExhausted { attempts: 1, .. }));
}
