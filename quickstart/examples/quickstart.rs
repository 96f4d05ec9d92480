//! Quickstart: an order machine persisted in the in-memory store, with several
//! shoppers editing the same order at once.
//!
//! Run it with `cargo run --example quickstart` (in memory: it builds only
//! what that needs), or against a durable store:
//! `cargo run --example quickstart --features sqlite -- --store sqlite:orders.db`
//! or `--features postgres -- --store postgres://postgres@127.0.0.1/test`.
//! Every command goes through the
//! runner's load → transition → save loop; when two shoppers save the same
//! version, one of them loses, reloads the fresh order and tries again, which
//! shows up below as more than one attempt.

use machine_core::prelude::*;
#[cfg(feature = "postgres")]
use machine_core::store::Postgres;
#[cfg(feature = "sqlite")]
use machine_core::store::Sqlite;
use machine_core::store::{Memory, Origin, Store};
use machine_core::{AsyncMachine, RecordFailures};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

// 1. The states an order can be in. `#[state(initial)]` is where every new
//    record starts; `#[state(failure)]` keeps a failed command for recovery,
//    with what went wrong as a typed value (`CatalogFault`).
#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Order {
    #[state(initial)]
    Draft,
    Open {
        lines: Vec<Line>,
        total_cents: u64,
    },
    Placed {
        lines: Vec<Line>,
        total_cents: u64,
    },
    #[state(terminal)]
    Shipped {
        tracking: String,
    },
    #[state(terminal)]
    Cancelled {
        reason: String,
    },
    #[state(failure)]
    Failed(Failure<OrderCommand, Order, CatalogFault>),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Line {
    sku: String,
    cents: u64,
}

// 2. The commands, each declaring the states it may run in and may produce.
//    The runner refuses anything else before (or after) the transition runs.
#[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[command(state = Order)]
enum OrderCommand {
    #[command(from(Draft, Open), to(Open))]
    AddItem { sku: String },
    #[command(from(Open), to(Placed))]
    Place,
    #[command(from(Placed), to(Shipped))]
    Ship { tracking: String },
    #[command(from(Draft, Open, Placed), to(Cancelled))]
    Cancel { reason: String },
}

#[derive(Debug, thiserror::Error)]
enum OrderError {
    /// A business refusal: the caller asked for something that does not exist.
    #[error("unknown item {0:?}")]
    UnknownItem(String),
    /// A technical fault: worth remembering on the order and retrying later.
    #[error("the catalog is unavailable")]
    CatalogDown,
    /// A command in a state its `from(..)` does not list: what the generated
    /// `dispatch` returns when called directly (the table refuses it first).
    #[error(transparent)]
    NotDeclared(#[from] NotDeclared),
}

/// What a recorded failure keeps: a value a program can branch on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum CatalogFault {
    Unavailable,
}

// 3. What the transition may ask of the outside world: an async price lookup,
//    as a real service would make over the network. Tests pass a fake.
trait Catalog: Send + Sync + 'static {
    fn price_cents(&self, sku: &str) -> impl Future<Output = Result<Option<u64>, OrderError>> + Send;
}

/// The shop's price list; the catalog team can add items, and the service
/// can go down, while orders run.
#[derive(Default)]
struct PriceList {
    prices: RwLock<HashMap<String, u64>>,
    down: AtomicBool,
}

impl PriceList {
    fn add(&self, sku: &str, cents: u64) {
        self.prices.write().unwrap_or_else(PoisonError::into_inner).insert(sku.to_owned(), cents);
    }
}

impl Catalog for PriceList {
    async fn price_cents(&self, sku: &str) -> Result<Option<u64>, OrderError> {
        // A lookup takes a moment, like a network call: shoppers really overlap.
        tokio::time::sleep(Duration::from_millis(2)).await;
        if self.down.load(Ordering::Relaxed) {
            return Err(OrderError::CatalogDown);
        }
        Ok(self.prices.read().unwrap_or_else(PoisonError::into_inner).get(sku).copied())
    }
}

// 4. The machine: one function from (deps, command, state) to the next state,
//    written as one handler per declared (command, state) pair. The compiler
//    checks that every pair of the table is handled and that each handler
//    returns a state its command's `to(..)` lists, so there is no catch-all.
//    It awaits its deps but has no other effect, so running it again after a
//    lost race is harmless.
struct OrderMachine;

impl AsyncMachine for OrderMachine {
    type State = Order;
    type Command = OrderCommand;
    type Deps = PriceList;
    type Error = OrderError;

    async fn transition(catalog: &PriceList, command: &OrderCommand, state: &Order) -> Result<Order, OrderError> {
        Self::dispatch(catalog, command, state).await
    }
}

impl OrderCommandAsyncHandlers for OrderMachine {
    async fn add_item_draft(
        catalog: &PriceList,
        sku: &String,
        _: DraftOrderRef<'_>,
    ) -> Result<To<Order, order_command::AddItem>, OrderError> {
        let line = priced(catalog, sku).await?;
        Ok(To::new(OpenOrder { total_cents: line.cents, lines: vec![line] }))
    }

    async fn add_item_open(
        catalog: &PriceList,
        sku: &String,
        from: OpenOrderRef<'_>,
    ) -> Result<To<Order, order_command::AddItem>, OrderError> {
        let line = priced(catalog, sku).await?;
        let total_cents = from.total_cents + line.cents;
        let mut lines = from.lines.clone();
        lines.push(line);
        Ok(To::new(OpenOrder { lines, total_cents }))
    }

    async fn place_open(_: &PriceList, from: OpenOrderRef<'_>) -> Result<To<Order, order_command::Place>, OrderError> {
        Ok(To::new(PlacedOrder { lines: from.lines.clone(), total_cents: *from.total_cents }))
    }

    async fn ship_placed(
        _: &PriceList,
        tracking: &String,
        _: PlacedOrderRef<'_>,
    ) -> Result<To<Order, order_command::Ship>, OrderError> {
        Ok(To::new(ShippedOrder { tracking: tracking.clone() }))
    }

    async fn cancel_draft(
        _: &PriceList,
        reason: &String,
        _: DraftOrderRef<'_>,
    ) -> Result<To<Order, order_command::Cancel>, OrderError> {
        Ok(cancelled(reason))
    }

    async fn cancel_open(
        _: &PriceList,
        reason: &String,
        _: OpenOrderRef<'_>,
    ) -> Result<To<Order, order_command::Cancel>, OrderError> {
        Ok(cancelled(reason))
    }

    async fn cancel_placed(
        _: &PriceList,
        reason: &String,
        _: PlacedOrderRef<'_>,
    ) -> Result<To<Order, order_command::Cancel>, OrderError> {
        Ok(cancelled(reason))
    }
}

/// `sku` with its price, or why there is none.
async fn priced(catalog: &PriceList, sku: &str) -> Result<Line, OrderError> {
    let cents = catalog.price_cents(sku).await?.ok_or_else(|| OrderError::UnknownItem(sku.to_owned()))?;
    Ok(Line { sku: sku.to_owned(), cents })
}

/// `Cancel` ends the same way from each of its three states.
fn cancelled(reason: &str) -> To<Order, order_command::Cancel> {
    To::new(CancelledOrder { reason: reason.to_owned() })
}

// 5. Which errors are failures to record. Everything else is a refusal:
//    returned to the caller, the order left exactly as it was.
impl RecordFailures for OrderMachine {
    fn failure(error: &OrderError) -> Option<CatalogFault> {
        match error {
            OrderError::UnknownItem(_) | OrderError::NotDeclared(_) => None,
            OrderError::CatalogDown => Some(CatalogFault::Unavailable),
        }
    }
}

fn describe(state: &Order) -> String {
    match state {
        Order::Open { lines, total_cents } | Order::Placed { lines, total_cents } => {
            let items = if lines.len() == 1 { "item" } else { "items" };
            format!("{} ({} {items}, {}.{:02} EUR)", state.kind(), lines.len(), total_cents / 100, total_cents % 100)
        }
        other => other.kind().to_string(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `--store memory` (the default), `--store sqlite:PATH` or `--store postgres://…`.
    let args: Vec<String> = std::env::args().collect();
    let target = match args.iter().position(|arg| arg == "--store") {
        Some(at) => args.get(at + 1).ok_or("--store needs a value: memory, sqlite:PATH or postgres://…")?.clone(),
        None => "memory".to_owned(),
    };
    if target == "memory" {
        return demo(Memory::new(), "").await;
    }
    if let Some(path) = target.strip_prefix("sqlite:") {
        #[cfg(feature = "sqlite")]
        {
            println!("store: SQLite file {path}");
            return demo(Sqlite::open(path).await?, &run_suffix()).await;
        }
        #[cfg(not(feature = "sqlite"))]
        return Err(format!("{path}: the SQLite store needs `--features sqlite`").into());
    }
    if target.starts_with("postgres://") || target.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        {
            println!("store: PostgreSQL");
            return demo(Postgres::connect(&target).await?, &run_suffix()).await;
        }
        #[cfg(not(feature = "postgres"))]
        return Err("the PostgreSQL store needs `--features postgres`".into());
    }
    Err(format!("unknown store {target:?}: use memory, sqlite:PATH or postgres://…").into())
}

/// Durable stores keep orders from earlier runs: this run's orders get fresh
/// ids.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn run_suffix() -> String {
    let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("-{}", run.as_millis())
}

/// The demo itself, the same for every store.
async fn demo<St: Store>(store: St, suffix: &str) -> Result<(), Box<dyn std::error::Error>> {
    let prices = Arc::new(PriceList::default());
    for (sku, cents) in [("mug", 1200), ("tea", 650), ("spoon", 300), ("pot", 3400)] {
        prices.add(sku, cents);
    }

    // 6. A runner ties the machine to a store. It is cheap to clone and shared
    //    by every task; the default retry policy handles conflicts.
    let runner = Runner::<OrderMachine, _>::new(store, Arc::clone(&prices)).record_failures();
    let first = format!("order-1001{suffix}");
    let id = first.as_str();

    // Six shoppers add items to the same order at the same moment.
    println!("six shoppers edit {id} concurrently:");
    let start = Arc::new(tokio::sync::Barrier::new(6));
    let shoppers: Vec<_> = ["mug", "tea", "spoon", "pot", "tea", "mug"]
        .into_iter()
        .enumerate()
        .map(|(shopper, sku)| {
            let (runner, start, id) = (runner.clone(), start.clone(), first.clone());
            tokio::spawn(async move {
                start.wait().await;
                let mut steps = Vec::new();
                for _ in 0..3 {
                    let out = runner.handle(&id, &OrderCommand::AddItem { sku: sku.into() }).await?;
                    steps.push((out.version, out.attempts, format!("shopper {shopper}: AddItem {sku:<5}"), out.state));
                }
                Ok::<_, Error<OrderError>>(steps)
            })
        })
        .collect();
    let mut steps = Vec::new();
    for shopper in shoppers {
        steps.extend(shopper.await??);
    }
    // Versions are the order in which saves won; print the story in that order.
    steps.sort_by_key(|(version, ..)| *version);
    for (version, attempts, who, state) in &steps {
        let retried =
            if *attempts > 1 { format!("  <- lost {} race(s), retried", attempts - 1) } else { String::new() };
        println!("  v{version:<2} {who} -> {}{retried}", describe(state));
    }
    let retried = steps.iter().filter(|(_, attempts, ..)| *attempts > 1).count();
    println!("{retried} of {} commands lost a race and were retried on fresh state\n", steps.len());

    // An item the catalog does not know is a refusal: nothing is written.
    let refused = runner.handle(id, &OrderCommand::AddItem { sku: "teapot".into() }).await;
    println!("AddItem teapot -> {}", refused.expect_err("teapot is not in the catalog"));
    // The catalog going down is a failure: recorded as a state that keeps the
    // command, the order as it was and the typed fault, so nothing is lost.
    prices.add("teapot", 5900);
    prices.down.store(true, Ordering::Relaxed);
    match runner.handle(id, &OrderCommand::AddItem { sku: "teapot".into() }).await {
        Err(Error::FailureRecorded { source, version, .. }) => println!("recorded failure at v{version}: {source}"),
        other => return Err(format!("expected a recorded failure, got {other:?}").into()),
    }
    if let Some(failure) = runner.get(id).await?.and_then(|order| order.state.failure().cloned()) {
        println!("  kept: {:?} on {}, fault {:?}", failure.command, describe(&failure.previous), failure.error);
    }
    // The table declares no command from `Failed`, so the order waits for recovery.
    let refused = runner.handle(id, &OrderCommand::Place).await.expect_err("Place is not declared from Failed");
    println!("{refused}");
    // Once the catalog is back, recover() replays the stored command on the
    // stored previous state; the history marks it as a recovery.
    prices.down.store(false, Ordering::Relaxed);
    let recovered = runner.recover(id).await?;
    println!("recovered: v{} {}", recovered.version, describe(&recovered.state));
    let placed = runner.handle(id, &OrderCommand::Place).await?;
    println!("placed: v{} {}\n", placed.version, describe(&placed.state));

    // A fresh order goes through the happy path.
    let second = format!("order-1002{suffix}");
    let id = second.as_str();
    for command in [
        OrderCommand::AddItem { sku: "pot".into() },
        OrderCommand::Place,
        OrderCommand::Ship { tracking: "TRACK-77".into() },
    ] {
        let out = runner.handle(id, &command).await?;
        println!("{id}: {command:?} -> v{} {}", out.version, describe(&out.state));
    }
    let shipped = runner.handle(id, &OrderCommand::Cancel { reason: "too late".into() }).await;
    println!("{id}: cancel after shipping -> {}\n", shipped.expect_err("Shipped is terminal"));

    // Every saved version is in the record's history, with its command.
    let order = runner.get(&first).await?.ok_or("the first order exists")?;
    println!("{first} is {} at version {}; its history:", order.state.kind(), order.version);
    for entry in runner.history(&first).await? {
        let entry = entry?; // an entry this code cannot decode is returned as stored, with why
        let command = serde_json::to_string(&entry.command)?;
        let recovery = if entry.origin == Origin::Recovery { " (recovery)" } else { "" };
        println!("  v{:<2} {:<40} -> {}{recovery}", entry.version, command, describe(&entry.state));
    }
    Ok(())
}
