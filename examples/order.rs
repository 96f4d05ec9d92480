//! An order service's machine, written the way the docs recommend: the
//! transition's dependencies sit behind a trait, so unit tests drive the pure
//! transition with mockall mocks and no store at all. The transition only
//! reads through them (a clock, a stock check): under contention the runner
//! may run it several times for one command, so anything with an effect, here
//! reserving the stock, runs after `runner.handle` returned `Ok`, once.
//!
//! `cargo run -p machine-workspace --example order` runs a short scenario; `cargo test --example order`
//! runs the unit tests at the bottom of this file.

use machine_core::prelude::*;
use machine_core::store::Memory;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Item {
    sku: String,
    quantity: u32,
}

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Order {
    #[state(initial)]
    Draft,
    Pending {
        items: Vec<Item>,
        placed_at: u64,
    },
    Confirmed {
        items: Vec<Item>,
        placed_at: u64,
    },
    #[state(terminal)]
    Cancelled {
        reason: String,
    },
}

#[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[command(state = Order)]
enum OrderCommand {
    #[command(from(Draft), to(Pending))]
    Place { items: Vec<Item> },
    #[command(from(Pending), to(Confirmed))]
    Confirm,
    #[command(from(Draft, Pending, Confirmed), to(Cancelled))]
    Cancel { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum StockError {
    #[error("only {available} of {sku} left")]
    Short { sku: String, available: u32 },
}

#[derive(Debug, thiserror::Error)]
enum OrderError {
    #[error("an order needs at least one item")]
    Empty,
    #[error(transparent)]
    Stock(#[from] StockError),
    /// A command in a state its `from(..)` does not list: what the generated
    /// `dispatch` returns when called directly (the table refuses it first).
    #[error(transparent)]
    NotDeclared(#[from] NotDeclared),
}

/// Everything the transition needs from outside: a clock and a look at the
/// warehouse. Read-only on purpose: the transition may run several times for
/// one command (once per attempt under contention), and only the last result
/// is saved, so nothing it calls may change anything.
/// `automock` generates `MockOrderDeps` for the tests below.
#[cfg_attr(test, mockall::automock)]
trait OrderDeps: Send + Sync {
    /// Now, in seconds since the Unix epoch.
    fn now(&self) -> u64;
    /// Says whether `items` are in stock, or what is short; reserves nothing.
    fn check_stock(&self, items: &[Item]) -> Result<(), StockError>;
}

struct OrderMachine;

impl Machine for OrderMachine {
    type State = Order;
    type Command = OrderCommand;
    type Deps = dyn OrderDeps;
    type Error = OrderError;

    // `&Self::Deps` is `&(dyn OrderDeps + 'static)`, what `dispatch` takes;
    // a bare `&dyn OrderDeps` would only live as long as the borrow.
    fn transition(deps: &Self::Deps, command: &OrderCommand, state: &Order) -> Result<Order, OrderError> {
        // One handler per declared (command, state) pair, below, and no
        // catch-all: the compiler checks that every pair the table declares
        // is handled and that each returns a state its `to(..)` lists.
        Self::dispatch(deps, command, state)
    }
}

impl OrderCommandHandlers for OrderMachine {
    fn place_draft(
        deps: &dyn OrderDeps,
        items: &Vec<Item>,
        _: DraftOrderRef<'_>,
    ) -> Result<To<Order, order_command::Place>, OrderError> {
        if items.is_empty() {
            return Err(OrderError::Empty);
        }
        Ok(To::new(PendingOrder { items: items.clone(), placed_at: deps.now() }))
    }

    fn confirm_pending(
        deps: &dyn OrderDeps,
        from: PendingOrderRef<'_>,
    ) -> Result<To<Order, order_command::Confirm>, OrderError> {
        // Only a check: reserving here would reserve once per attempt.
        // The caller reserves after the confirmation is committed.
        deps.check_stock(from.items)?;
        Ok(To::new(ConfirmedOrder { items: from.items.clone(), placed_at: *from.placed_at }))
    }

    fn cancel_draft(
        _: &dyn OrderDeps,
        reason: &String,
        _: DraftOrderRef<'_>,
    ) -> Result<To<Order, order_command::Cancel>, OrderError> {
        Ok(cancelled(reason))
    }

    fn cancel_pending(
        _: &dyn OrderDeps,
        reason: &String,
        _: PendingOrderRef<'_>,
    ) -> Result<To<Order, order_command::Cancel>, OrderError> {
        Ok(cancelled(reason))
    }

    fn cancel_confirmed(
        _: &dyn OrderDeps,
        reason: &String,
        _: ConfirmedOrderRef<'_>,
    ) -> Result<To<Order, order_command::Cancel>, OrderError> {
        Ok(cancelled(reason))
    }
}

/// `Cancel` ends the same way from each of its three states.
fn cancelled(reason: &str) -> To<Order, order_command::Cancel> {
    To::new(CancelledOrder { reason: reason.to_owned() })
}

/// The real dependencies: the system clock and an in-process warehouse.
struct Warehouse {
    stock: Mutex<HashMap<String, u32>>,
}

impl Warehouse {
    fn new(stock: impl IntoIterator<Item = (&'static str, u32)>) -> Self {
        Self { stock: Mutex::new(stock.into_iter().map(|(sku, n)| (sku.to_owned(), n)).collect()) }
    }

    /// How many of `sku` are left.
    fn available(&self, sku: &str) -> u32 {
        self.stock.lock().unwrap_or_else(PoisonError::into_inner).get(sku).copied().unwrap_or(0)
    }

    /// Takes `items` out of stock, all or nothing. Not part of `OrderDeps`:
    /// it has an effect, so the transition never calls it; `confirm` does,
    /// after the commit.
    fn reserve(&self, items: &[Item]) -> Result<(), StockError> {
        let mut stock = self.stock.lock().unwrap_or_else(PoisonError::into_inner);
        Self::short(&stock, items)?;
        for item in items {
            *stock.entry(item.sku.clone()).or_default() -= item.quantity;
        }
        Ok(())
    }

    fn short(stock: &HashMap<String, u32>, items: &[Item]) -> Result<(), StockError> {
        for item in items {
            let available = stock.get(&item.sku).copied().unwrap_or(0);
            if available < item.quantity {
                return Err(StockError::Short { sku: item.sku.clone(), available });
            }
        }
        Ok(())
    }
}

impl OrderDeps for Warehouse {
    fn now(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }

    fn check_stock(&self, items: &[Item]) -> Result<(), StockError> {
        Self::short(&self.stock.lock().unwrap_or_else(PoisonError::into_inner), items)
    }
}

/// Confirms order `id` and then reserves its stock. The reservation runs only
/// after `handle` returned `Ok`, so exactly once per confirmation, however many
/// attempts the commit took. Stock taken by someone else between the check
/// and the reservation cancels the order: a business outcome, not a retry.
async fn confirm<St: machine_core::store::Store>(
    runner: &Runner<OrderMachine, St>,
    warehouse: &Warehouse,
    id: &str,
) -> Result<Outcome<Order>, Error<OrderError>> {
    let confirmed = runner.handle(id, &OrderCommand::Confirm).await?;
    let Order::Confirmed { items, .. } = &confirmed.state else { return Ok(confirmed) };
    match warehouse.reserve(items) {
        Ok(()) => Ok(confirmed),
        Err(short) => runner.handle(id, &OrderCommand::Cancel { reason: short.to_string() }).await,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let warehouse = Arc::new(Warehouse::new([("mug", 3)]));
    let deps: Arc<dyn OrderDeps> = warehouse.clone();
    let runner = Runner::<OrderMachine, _>::new(Memory::new(), deps);

    let mugs = |quantity| vec![Item { sku: "mug".into(), quantity }];
    runner.handle("order-1", &OrderCommand::Place { items: mugs(2) }).await?;
    let confirmed = confirm(&runner, &warehouse, "order-1").await?;
    println!(
        "order-1: {:?} at v{}, {} mug(s) left",
        confirmed.state.kind(),
        confirmed.version,
        warehouse.available("mug")
    );

    // The check inside the transition sees 1 mug left: out of stock is a
    // business refusal, returned with the order left as it was, and nothing
    // is reserved.
    runner.handle("order-2", &OrderCommand::Place { items: mugs(2) }).await?;
    match confirm(&runner, &warehouse, "order-2").await {
        Err(Error::Rejected(error)) => println!("order-2: refused: {error}"),
        other => return Err(format!("expected a stock refusal, got {other:?}").into()),
    }
    let pending = runner.get("order-2").await?.ok_or("order-2 exists")?;
    println!("order-2 is still {:?} at v{}", pending.state.kind(), pending.version);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use machine_core::testing::{Explore, FaultyStore, Op, Schedule, Suite, declared_diagram};
    use mockall::predicate::eq;
    use std::time::Duration;

    // Committed diagrams. `cargo test` runs this example's tests with the
    // current directory at the root of its package, `machine-workspace`,
    // which is the workspace root; spelling the path from CARGO_MANIFEST_DIR
    // makes that explicit and independent of how the test binary is started.
    const DIAGRAM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/diagrams/order.mmd");
    const DECLARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/diagrams/order-declared.mmd");
    const TESTING_DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/testing.md");

    const NOW: u64 = 1_700_000_000;

    fn mug(quantity: u32) -> Vec<Item> {
        vec![Item { sku: "mug".into(), quantity }]
    }

    fn cancel(reason: &str) -> OrderCommand {
        OrderCommand::Cancel { reason: reason.into() }
    }

    fn cancelled(reason: &str) -> Order {
        Order::Cancelled { reason: reason.into() }
    }

    /// Every case gets a fresh `MockOrderDeps`; `|mock| mock` hands it to the
    /// transition as `&dyn OrderDeps`. After each step, `checkpoint` verifies
    /// that step's expectations and clears them, so each step states its own.
    fn suite() -> Suite<OrderMachine, MockOrderDeps> {
        Suite::<OrderMachine, MockOrderDeps>::with_deps_as(MockOrderDeps::new, |mock| mock)
            .after_each(|mock, _| mock.checkpoint())
    }

    /// Deps that answer every call, for exploration.
    fn permissive() -> MockOrderDeps {
        let mut deps = MockOrderDeps::new();
        deps.expect_now().return_const(NOW);
        deps.expect_check_stock().returning(|_| Ok(()));
        deps
    }

    #[test]
    fn order_lifecycle() {
        let mut suite = suite();

        suite
            .case("place, confirm, cancel")
            .before(|deps| {
                deps.expect_now().times(1).return_const(NOW);
                deps.expect_check_stock().never();
            })
            .when(OrderCommand::Place { items: mug(2) })
            .then(Order::Pending { items: mug(2), placed_at: NOW })
            .fork("cancelled while pending", |case| {
                case.when(cancel("changed mind")).then(cancelled("changed mind"));
            })
            .before(|deps| {
                deps.expect_check_stock().with(eq(mug(2))).times(1).returning(|_| Ok(()));
            })
            .when(OrderCommand::Confirm)
            .then(Order::Confirmed { items: mug(2), placed_at: NOW })
            .when(cancel("returned"))
            .then(cancelled("returned"))
            // Terminal: the table allows nothing more, and no deps are called.
            .when(OrderCommand::Confirm)
            .then_error(|error| matches!(error, Error::NotAllowed { command: "Confirm", state: "Cancelled", .. }));

        suite.case("a draft can be cancelled").when(cancel("never mind")).then(cancelled("never mind"));

        suite
            .case("an empty order is refused")
            .when(OrderCommand::Place { items: Vec::new() })
            .then_rejected(|error| matches!(error, OrderError::Empty));

        suite
            .case("a stock shortage is the machine's error")
            .given(Order::Pending { items: mug(2), placed_at: 5 })
            .before(|deps| {
                deps.expect_check_stock()
                    .times(1)
                    .returning(|_| Err(StockError::Short { sku: "mug".into(), available: 1 }));
            })
            .when(OrderCommand::Confirm)
            .then_rejected(|error| error.to_string() == "only 1 of mug left");

        // No expectations: any call to the mock would fail the step.
        suite
            .case("confirming a draft is refused before the transition runs")
            .when(OrderCommand::Confirm)
            .then_error(|error| matches!(error, Error::NotAllowed { command: "Confirm", state: "Draft", .. }));

        suite.assert_covered();
        suite.assert_diagram(DIAGRAM);

        // Every command the cases sent, on every state they reached, two
        // rounds deep: nothing the cases missed.
        let exploration = suite.explore(Explore::seeded(2024).depth(2), permissive);
        assert!(exploration.findings.is_empty(), "{exploration}");
        println!("{}", suite.report());
    }

    #[test]
    fn the_declared_table_is_drawn() {
        declared_diagram::<Order, OrderCommand>().assert_file(DECLARED);
    }

    #[test]
    fn the_testing_guide_embeds_the_committed_diagrams() {
        let guide = std::fs::read_to_string(TESTING_DOC).unwrap().replace("\r\n", "\n");
        for path in [DIAGRAM, DECLARED] {
            let diagram = std::fs::read_to_string(path).expect("committed").replace("\r\n", "\n");
            assert!(
                guide.contains(&format!("```mermaid\n{diagram}```\n")),
                "docs/testing.md must embed {path} in a ```mermaid block; paste the new diagram"
            );
        }
    }

    #[tokio::test]
    async fn stock_gone_after_the_check_cancels_the_confirmed_order() {
        // The transition's check sees 2 mugs; someone takes one before the
        // reservation, which then fails and cancels the order.
        let mut deps = MockOrderDeps::new();
        deps.expect_now().return_const(NOW);
        deps.expect_check_stock().times(1).returning(|_| Ok(()));
        let runner = Runner::<OrderMachine, _>::new(Memory::new(), Arc::new(deps) as Arc<dyn OrderDeps>);
        let warehouse = Warehouse::new([("mug", 1)]);

        runner.handle("order-1", &OrderCommand::Place { items: mug(2) }).await.unwrap();
        let out = confirm(&runner, &warehouse, "order-1").await.unwrap();
        assert_eq!((out.state, out.version), (cancelled("only 1 of mug left"), 3));
        assert_eq!(warehouse.available("mug"), 1, "nothing reserved");
    }

    #[tokio::test]
    async fn confirming_survives_lost_races_and_reports_a_flaky_store() {
        let warehouse = Arc::new(Warehouse::new([("mug", 10)]));
        // Commits 2 and 3 (the first two tries of `Confirm`) lose a race;
        // commit 5 fails as a dropped connection would.
        let store = FaultyStore::new(Memory::new())
            .conflicts(Schedule::calls([2, 3]))
            .transient(Op::Commit, Schedule::calls([5]));
        let deps: Arc<dyn OrderDeps> = warehouse.clone();
        let runner = Runner::<OrderMachine, _>::new(store, deps).retry(Retry::fixed(Duration::ZERO));

        runner.handle("order-1", &OrderCommand::Place { items: mug(2) }).await.unwrap();
        let confirmed = confirm(&runner, &warehouse, "order-1").await.unwrap();
        assert_eq!((confirmed.state.kind(), confirmed.version, confirmed.attempts), (OrderKind::Confirmed, 2, 3));
        // The transition ran three times; the stock was reserved once.
        assert_eq!(warehouse.available("mug"), 8);

        let error = runner.handle("order-1", &cancel("late")).await.unwrap_err();
        assert!(matches!(&error, Error::Store(store) if store.is_retryable()), "{error:?}");
        assert_eq!(runner.get("order-1").await.unwrap().map(|v| v.version), Some(2), "nothing written");
        assert_eq!(runner.store().injected().len(), 3);
    }
}
