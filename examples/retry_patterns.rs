//! Every retry pattern against a contended record, printing what happened.
//!
//! Run it with `cargo run -p machine-workspace --example retry_patterns`. Sixteen shoppers take
//! items from one stock record through a store whose commits take about a
//! millisecond, like a database's, so their saves really collide. Each pattern
//! is one `Retry` value (or the `RetryQueue`); `docs/retry-patterns.md`
//! explains when to use which and has the measured figures.

use machine_core::prelude::*;
use machine_core::queue::RetryQueue;
use machine_core::retry::{Budget, Call, CircuitBreaker};
use machine_core::store::{Change, Commit, Memory, Record, Store};
use machine_core::{Jitter, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Stock {
    #[state(initial)]
    Full,
    Taken(u64),
}

#[derive(Command, Clone, Debug, Serialize, Deserialize)]
#[command(state = Stock)]
enum Take {
    #[command(from(Full, Taken), to(Taken))]
    One,
}

struct Stocks;

impl Machine for Stocks {
    type State = Stock;
    type Command = Take;
    type Deps = ();
    type Error = std::convert::Infallible;

    fn transition((): &(), _: &Take, state: &Stock) -> Result<Stock, Self::Error> {
        Ok(Stock::Taken(match state {
            Stock::Full => 1,
            Stock::Taken(n) => n + 1,
        }))
    }
}

/// The memory store behind a 1 ms commit round trip, with two faults to
/// switch on: loads from a lagging replica, and a database that is down.
#[derive(Clone, Default)]
struct Database {
    inner: Memory,
    replica: Arc<Mutex<Option<Record>>>,
    down: Arc<AtomicBool>,
    calls: Arc<AtomicU32>,
}

impl Store for Database {
    async fn load(&self, machine: &str, id: &str) -> Result<Option<Record>, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let lagging = self.replica.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        if lagging.is_some() {
            return Ok(lagging);
        }
        self.inner.load(machine, id).await
    }
    async fn commit(&self, commit: Commit<'_>) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::backend("connection refused", true));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        self.inner.commit(commit).await
    }
    async fn history(&self, machine: &str, id: &str) -> Result<Vec<Change>, StoreError> {
        self.inner.history(machine, id).await
    }
}

const SHOPPERS: usize = 16;
const TAKES: usize = 10;
const MS: Duration = Duration::from_millis(1);

/// Sixteen shoppers each take ten items from one record; prints a summary.
async fn contend(name: &str, policy: Retry) {
    let runner = Runner::<Stocks, _>::new(Database::default(), ()).retry(policy);
    let started = Instant::now();
    let shoppers: Vec<_> = (0..SHOPPERS)
        .map(|_| {
            let runner = runner.clone();
            tokio::spawn(async move {
                let (mut attempts, mut gave_up) = (Vec::new(), 0);
                for _ in 0..TAKES {
                    match runner.handle("stock", &Take::One).await {
                        Ok(out) => attempts.push(out.attempts),
                        Err(_) => gave_up += 1,
                    }
                }
                (attempts, gave_up)
            })
        })
        .collect();
    let (mut attempts, mut gave_up) = (Vec::new(), 0);
    for shopper in shoppers {
        let (a, g) = shopper.await.expect("shopper");
        attempts.extend(a);
        gave_up += g;
    }
    let saved = runner.get("stock").await.ok().flatten().map_or(0, |v| v.version);
    let conflicts: u32 = attempts.iter().map(|a| a - 1).sum();
    println!(
        "{name:<40} saved {saved:>3}/{} in {:>4} ms, {conflicts:>4} conflicts, most attempts {:>2}, gave up {gave_up}",
        SHOPPERS * TAKES,
        started.elapsed().as_millis(),
        attempts.iter().max().unwrap_or(&0),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("== {SHOPPERS} shoppers x {TAKES} takes on one record (1 ms commits)\n");
    contend("none", Retry::none()).await;
    contend("fixed, no wait, 10 attempts (FactCast)", Retry::fixed(Duration::ZERO)).await;
    contend("exponential 1 ms, no jitter", Retry::exponential(MS)).await;
    contend("exponential + full jitter", Retry::exponential(MS).jitter(Jitter::Full)).await;
    contend("exponential + equal jitter", Retry::exponential(MS).jitter(Jitter::Equal)).await;
    contend("exponential + decorrelated jitter", Retry::exponential(MS).jitter(Jitter::Decorrelated)).await;
    contend("adaptive 1 ms + full jitter", Retry::adaptive(MS).jitter(Jitter::Full)).await;
    contend("full jitter + budget 20 %", Retry::exponential(MS).jitter(Jitter::Full).budget(Budget::new(20))).await;
    contend("deadline 20 ms", Retry::exponential(MS).jitter(Jitter::Full).max_attempts(100).deadline(20 * MS)).await;
    contend("default", Retry::default()).await;

    conflict_detailed().await;
    circuit_breaker().await;
    eventual().await;
}

/// Every conflict through the hook; a lagging replica is detected as
/// thrashing and reported with its history.
async fn conflict_detailed() {
    println!("\n== conflict-detailed: the hook sees every conflict; thrashing gives up early\n");
    let store = Database::default();
    let policy = Retry::exponential(MS).jitter(Jitter::Full).thrashing_after(3).on_conflict(|attempt, action| {
        println!("  conflict #{} (gap {}): {action:?}", attempt.number, attempt.conflict.gap());
    });
    let runner = Runner::<Stocks, _>::new(store.clone(), ()).retry(policy);
    runner.handle("stock", &Take::One).await.expect("no contention yet");
    runner.handle("stock", &Take::One).await.expect("no contention yet");
    // Reads now come from a replica stuck one version behind.
    let stale = store.inner.load(Stocks::NAME, "stock").await.ok().flatten().map(|r| Record { version: 1, ..r });
    *store.replica.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = stale;
    match runner.handle("stock", &Take::One).await {
        Err(Error::Thrashing { conflicts, attempts, .. }) => {
            println!("  gave up after {attempts} attempts: thrashing, history:");
            for conflict in conflicts {
                println!("    {conflict}");
            }
        }
        other => println!("  unexpected: {other:?}"),
    }
}

/// A database outage opens the circuit; calls then fail fast without
/// reaching the store until a probe finds it back.
async fn circuit_breaker() {
    println!("\n== circuit breaker: 3 failures open it for 50 ms\n");
    let store = Database::default();
    let breaker = CircuitBreaker::new(3, 50 * MS);
    let runner = Runner::<Stocks, _>::new(store.clone(), ()).retry(Retry::default().circuit_breaker(breaker.clone()));
    let call = Call::new(Stocks::NAME, "stock");
    store.down.store(true, Ordering::SeqCst);
    for n in 1..=5 {
        let before = store.calls.load(Ordering::SeqCst);
        let result = runner.handle("stock", &Take::One).await;
        let touched = store.calls.load(Ordering::SeqCst) - before;
        let what = result.map_or_else(|e| e.to_string(), |o| format!("saved at version {}", o.version));
        println!("  call {n}: {what} ({touched} store calls) -> {:?}", breaker.state(&call));
    }
    store.down.store(false, Ordering::SeqCst);
    tokio::time::sleep(60 * MS).await;
    let probe = runner.handle("stock", &Take::One).await;
    println!("  after the cool-down, the probe: {:?} -> {:?}", probe.map(|o| o.version), breaker.state(&call));
}

/// Requests hand their commands to the queue and return at once; the queue
/// retries them in the background and drains on shutdown.
async fn eventual() {
    println!("\n== eventual: {} commands through a RetryQueue (each try a single attempt)\n", SHOPPERS * TAKES);
    let runner = Runner::<Stocks, _>::new(Database::default(), ()).retry(Retry::none());
    let queue = RetryQueue::builder(runner.clone()).capacity(1_000).max_tries(50).workers(SHOPPERS).start();
    let started = Instant::now();
    for _ in 0..SHOPPERS * TAKES {
        if let Err(refused) = queue.submit("stock", Take::One) {
            println!("  refused: {refused}");
        }
    }
    println!("  all submitted in {} µs; waiting: {:?}", started.elapsed().as_micros(), queue.stats());
    let report = queue.shutdown(Duration::from_secs(10)).await;
    let saved = runner.get("stock").await.ok().flatten().map_or(0, |v| v.version);
    println!(
        "  drained in {} ms: completed {}, unfinished {}, dead letters {}; record at version {saved}",
        started.elapsed().as_millis(),
        report.completed,
        report.unfinished.len(),
        report.dead_letters.len()
    );
}
