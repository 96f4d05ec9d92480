//! Many writers on one record, on a multi-threaded runtime: every increment
//! lands exactly once. A synchronous machine's commands are planned under the
//! memory store's record lock, so they never conflict within the process; an
//! async machine's go through the optimistic loop and its retries. A
//! coalescing runner's command that is a group of its own is held the same way.

use machine_core::AsyncMachine;
use machine_core::prelude::*;
use machine_core::store::{Memory, Store};
use serde::{Deserialize, Serialize};

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Counter {
    #[state(initial)]
    Missing,
    Open(u64),
}

#[derive(Command, Clone, Debug, Serialize, Deserialize)]
#[command(state = Counter)]
enum CounterCommand {
    #[command(from(Missing), to(Open))]
    Create,
    #[command(from(Open), to(Open))]
    Increment,
}

struct Counters;

impl Machine for Counters {
    type State = Counter;
    type Command = CounterCommand;
    type Deps = ();
    type Error = std::convert::Infallible;

    fn transition((): &(), command: &CounterCommand, state: &Counter) -> Result<Counter, Self::Error> {
        Ok(match (command, state) {
            (CounterCommand::Increment, Counter::Open(n)) => Counter::Open(n + 1),
            _ => Counter::Open(0),
        })
    }
}

/// The same counter with an async transition that yields before it
/// answers, so writers interleave between their load and their commit.
struct YieldingCounters;

impl AsyncMachine for YieldingCounters {
    type State = Counter;
    type Command = CounterCommand;
    type Deps = ();
    type Error = std::convert::Infallible;

    async fn transition((): &(), command: &CounterCommand, state: &Counter) -> Result<Counter, Self::Error> {
        tokio::task::yield_now().await;
        <Counters as Machine>::transition(&(), command, state)
    }
}

const WRITERS: usize = 32;
const INCREMENTS: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_writers_lose_no_update_on_the_memory_store() {
    let retries = hammer(Runner::<Counters, _>::new(Memory::new(), ())).await;
    assert_eq!(retries, 0, "a synchronous machine's commands never conflict within one process");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_async_writers_retry_and_lose_no_update_on_the_memory_store() {
    let retries = hammer(Runner::<YieldingCounters, _>::new(Memory::new(), ())).await;
    // The writers yield between load and commit, so they do race: the
    // optimistic loop is what keeps every increment here.
    assert!(retries > 0, "32 yielding writers on 4 threads conflict at least once");
}

/// 32 writers × 100 increments on one record; checks the record and its
/// history and returns how many retries it took.
async fn hammer<M>(runner: Runner<M, Memory>) -> u32
where
    M: AsyncMachine<State = Counter, Command = CounterCommand, Deps = (), Error = std::convert::Infallible>
        + Send
        + Sync
        + 'static,
{
    runner.handle("hits", &CounterCommand::Create).await.unwrap();

    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(WRITERS));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (runner, barrier) = (runner.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let mut retries = 0;
                for _ in 0..INCREMENTS {
                    let out = runner
                        .handle("hits", &CounterCommand::Increment)
                        .await
                        .expect("default policy never gives up here");
                    retries += out.attempts - 1;
                }
                retries
            })
        })
        .collect();
    let mut retries = 0;
    for task in tasks {
        retries += task.await.unwrap();
    }

    let total = runner.get("hits").await.unwrap().unwrap();
    assert_eq!(total.state, Counter::Open(3200));
    assert_eq!(total.version, 3201, "one create plus 3200 increments, no lost or doubled write");
    let history = runner.store().history(M::NAME, "hits").await.unwrap();
    assert_eq!(history.len(), 3201);
    assert!(history.windows(2).all(|w| w[1].version == w[0].version + 1), "versions are contiguous");
    println!("{retries} retries for {} increments", WRITERS * INCREMENTS);
    retries
}

/// A coalescing runner's single command (a group of one) makes the same
/// held attempt as a plain runner's, so it never conflicts with another
/// runner of the process writing the same record meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_coalesced_single_command_never_conflicts_within_the_process() {
    let store = Memory::new();
    let plain = Runner::<Counters, _>::new(store.clone(), ());
    let coalescing = Runner::<Counters, _>::new(store, ()).coalesce(machine_core::Coalescing::default());
    plain.handle("shared", &CounterCommand::Create).await.unwrap();
    let writers: Vec<_> = (0..3)
        .map(|_| {
            let plain = plain.clone();
            tokio::spawn(async move {
                for _ in 0..INCREMENTS * 10 {
                    plain.handle("shared", &CounterCommand::Increment).await.unwrap();
                }
            })
        })
        .collect();
    // One caller, one command at a time: every group it joins is its own.
    let mut retries = 0;
    for _ in 0..INCREMENTS * 10 {
        retries += coalescing.handle("shared", &CounterCommand::Increment).await.unwrap().attempts - 1;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    assert_eq!(retries, 0, "held under the record's lock, as without coalescing");
    let total = plain.get("shared").await.unwrap().unwrap();
    assert_eq!(total.state, Counter::Open(4 * 1_000));
}
