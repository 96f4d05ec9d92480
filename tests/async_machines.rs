//! Async transitions: a machine that awaits its deps runs through every path
//! (the runner, coalescing, recovery, decisions, `Instance`, the testing
//! suite) on a current-thread runtime, without blocking it, and the futures
//! callers get are `Send`, so they can be spawned.

use machine_core::decision::{Decided, Deciding, Decision, Key, Verdict};
use machine_core::prelude::*;
use machine_core::store::{Memory, Origin, Store};
use machine_core::testing::Suite;
use machine_core::{AsyncMachine, Coalescing};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Wallet {
    #[state(initial)]
    Empty,
    Funded {
        cents: u64,
    },
    #[state(failure)]
    Failed(Failure<Top, Wallet, String>),
}

#[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[command(state = Wallet)]
enum Top {
    /// Converts `amount` at the rate the (async) exchange quotes.
    #[command(from(Empty, Funded), to(Funded))]
    Up { amount: u64 },
}

#[derive(Debug, PartialEq, thiserror::Error)]
enum TopError {
    #[error("the exchange is down")]
    ExchangeDown,
    #[error("amounts must be positive")]
    Zero,
}

/// An exchange whose quote takes a timer tick and a yield: a transition that
/// blocked the thread would deadlock a current-thread runtime here.
#[derive(Default)]
struct Exchange {
    down: AtomicBool,
    quotes: AtomicU32,
}

impl Exchange {
    async fn rate(&self) -> Result<u64, TopError> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        tokio::task::yield_now().await;
        self.quotes.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) { Err(TopError::ExchangeDown) } else { Ok(2) }
    }
}

struct Wallets;

impl AsyncMachine for Wallets {
    type State = Wallet;
    type Command = Top;
    type Deps = Exchange;
    type Error = TopError;

    async fn transition(exchange: &Exchange, Top::Up { amount }: &Top, state: &Wallet) -> Result<Wallet, TopError> {
        if *amount == 0 {
            return Err(TopError::Zero);
        }
        let rate = exchange.rate().await?;
        let held = if let Wallet::Funded { cents } = state { *cents } else { 0 };
        Ok(Wallet::Funded { cents: held + amount * rate })
    }
}

impl RecordFailures for Wallets {
    fn failure(error: &TopError) -> Option<String> {
        matches!(error, TopError::ExchangeDown).then(|| error.to_string())
    }
}

#[tokio::test]
async fn the_runner_awaits_an_async_transition_on_a_current_thread_runtime() {
    let runner = Runner::<Wallets, _>::new(Memory::new(), Exchange::default());
    // Eight callers at once, all on this one thread: they interleave at the
    // transition's awaits and race for the record.
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let runner = runner.clone();
            tokio::spawn(async move { runner.handle("w", &Top::Up { amount: 5 }).await.unwrap() })
        })
        .collect();
    let mut lost = 0;
    for call in calls {
        lost += call.await.unwrap().attempts - 1;
    }
    assert_eq!(runner.get("w").await.unwrap().unwrap().state, Wallet::Funded { cents: 80 });
    assert!(lost > 0, "callers interleaved at the awaits, so some lost a race");
    assert!(runner.deps().quotes.load(Ordering::SeqCst) >= 8 + lost);
}

#[tokio::test]
async fn coalesced_groups_and_recovery_await_async_transitions() {
    let runner =
        Runner::<Wallets, _>::new(Memory::new(), Exchange::default()).record_failures().coalesce(Coalescing::default());
    let calls: Vec<_> = (1..=6)
        .map(|amount| {
            let runner = runner.clone();
            tokio::spawn(async move { runner.handle("w", &Top::Up { amount }).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().attempts, 1, "one process never races itself");
    }
    assert_eq!(runner.get("w").await.unwrap().unwrap().state, Wallet::Funded { cents: 42 });

    runner.deps().down.store(true, Ordering::SeqCst);
    let failed = runner.handle("w", &Top::Up { amount: 1 }).await.unwrap_err();
    assert!(matches!(failed, Error::FailureRecorded { source: TopError::ExchangeDown, version: 7, .. }), "{failed:?}");
    let refused = runner.recover("w").await.unwrap_err();
    assert!(matches!(refused, Error::FailureRecorded { version: 8, .. }), "still down: recorded again, {refused:?}");
    runner.deps().down.store(false, Ordering::SeqCst);
    let recovered = runner.recover("w").await.unwrap();
    assert_eq!((recovered.state, recovered.version), (Wallet::Funded { cents: 44 }, 9));
    let origins: Vec<Origin> =
        runner.history("w").await.unwrap().iter().flatten().skip(6).map(|entry| entry.origin).collect();
    assert_eq!(origins, [Origin::Command, Origin::Recovery, Origin::Recovery]);
}

#[tokio::test]
async fn instances_and_decisions_await_async_transitions() {
    let exchange = Exchange::default();
    let mut wallet = Instance::<Wallets>::new(&exchange, Wallet::initial());
    assert_eq!(wallet.handle_async(&Top::Up { amount: 3 }).await.unwrap(), &Wallet::Funded { cents: 6 });
    assert!(matches!(wallet.handle_async(&Top::Up { amount: 0 }).await, Err(Error::Rejected(TopError::Zero))));
    assert_eq!(wallet.state(), &Wallet::Funded { cents: 6 });

    let store = Memory::new();
    let exchange = std::sync::Arc::new(exchange);
    let (a, b) = (Key::<Wallets>::new("a"), Key::<Wallets>::new("b"));
    let decided = Decision::new(&store)
        .read(&a)
        .read(&b)
        .attempt_async(|draft| -> Deciding<'_, u64> {
            let (a, b, exchange) = (a.clone(), b.clone(), std::sync::Arc::clone(&exchange));
            Box::pin(async move {
                draft.apply_async(&a, &exchange, &Top::Up { amount: 1 }).await?;
                let Wallet::Funded { cents } = draft.apply_async(&b, &exchange, &Top::Up { amount: 2 }).await? else {
                    return Ok(Verdict::Abort("not funded".into()));
                };
                Ok(Verdict::Commit(cents))
            })
        })
        .await
        .unwrap();
    assert_eq!(decided, Decided::Committed { value: 4, attempts: 1 });
    assert_eq!(store.load(Wallets::NAME, "b").await.unwrap().unwrap().version, 1);
}

#[test]
fn the_testing_suite_runs_async_machines() {
    let mut suite = Suite::<Wallets, Exchange>::with_deps(Exchange::default);
    suite.case("tops up").when(Top::Up { amount: 2 }).then(Wallet::Funded { cents: 4 });
    suite.case("refuses zero").when(Top::Up { amount: 0 }).then_rejected(|error| *error == TopError::Zero);
}

/// The futures a service spawns (from a request handler, a worker) are
/// `Send`: each way in runs inside `tokio::spawn`, which would not compile
/// otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_in_runs_in_a_spawned_task() {
    let runner = Runner::<Wallets, _>::new(Memory::new(), Exchange::default()).record_failures();
    let coalesced = runner.clone().coalesce(Coalescing::default());
    let store = Memory::new();
    let tasks = vec![
        tokio::spawn({
            let runner = runner.clone();
            async move { runner.handle("w", &Top::Up { amount: 1 }).await.map(|out| out.version) }
        }),
        tokio::spawn(async move { coalesced.handle("c", &Top::Up { amount: 1 }).await.map(|out| out.version) }),
        tokio::spawn({
            let store = store.clone();
            async move {
                let key = Key::<Wallets>::new("d");
                let decided = Decision::new(&store)
                    .read(&key)
                    .attempt(|draft| Ok(Verdict::Commit(draft.version(&key)?)))
                    .await
                    .map_err(|e| e.to_string());
                Ok(u64::from(matches!(decided, Ok(Decided::Unchanged { value: 0, .. }))))
            }
        }),
        tokio::spawn({
            let store = store.clone();
            async move {
                let (key, exchange) = (Key::<Wallets>::new("d"), std::sync::Arc::new(Exchange::default()));
                let decided = Decision::new(&store)
                    .read(&key)
                    .attempt_async(|draft| -> Deciding<'_, ()> {
                        let (key, exchange) = (key.clone(), std::sync::Arc::clone(&exchange));
                        Box::pin(async move {
                            draft.apply_async(&key, &exchange, &Top::Up { amount: 1 }).await?;
                            Ok(Verdict::Commit(()))
                        })
                    })
                    .await;
                Ok(u64::from(matches!(decided, Ok(Decided::Committed { .. }))))
            }
        }),
    ];
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), 1);
    }
    runner.deps().down.store(true, Ordering::SeqCst);
    let failed = tokio::spawn({
        let runner = runner.clone();
        async move { runner.handle("w", &Top::Up { amount: 1 }).await.map(|out| out.version) }
    });
    assert!(failed.await.unwrap().is_err());
    runner.deps().down.store(false, Ordering::SeqCst);
    let recovered = tokio::spawn(async move { runner.recover("w").await.map(|out| out.version) });
    assert_eq!(recovered.await.unwrap().unwrap(), 3);
}
