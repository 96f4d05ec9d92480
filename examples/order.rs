//! An order service's machine, written the way the docs recommend: the
//! transition's dependencies sit behind a trait, so unit tests drive the pure
//! transition with mockall mocks and no store at all.
//!
//! `cargo run --example order` runs a short scenario; `cargo test --example order`
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
    #[state(failure)]
    Failed(Failure<OrderCommand, Order>),
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
}

/// Everything the transition needs from outside: a clock and the warehouse.
/// `automock` generates `MockOrderDeps` for the tests below.
#[cfg_attr(test, mockall::automock)]
trait OrderDeps: Send + Sync {
    /// Now, in seconds since the Unix epoch.
    fn now(&self) -> u64;
    /// Holds stock for `items`, or says what is short.
    fn reserve(&self, items: &[Item]) -> Result<(), StockError>;
}

struct OrderMachine;

impl Machine for OrderMachine {
    type State = Order;
    type Command = OrderCommand;
    type Deps = dyn OrderDeps;
    type Error = OrderError;

    fn transition(deps: &dyn OrderDeps, command: &OrderCommand, state: &Order) -> Result<Order, OrderError> {
        match (command, state) {
            (OrderCommand::Place { items }, Order::Draft) => {
                if items.is_empty() {
                    return Err(OrderError::Empty);
                }
                Ok(Order::Pending { items: items.clone(), placed_at: deps.now() })
            }
            (OrderCommand::Confirm, Order::Pending { items, placed_at }) => {
                deps.reserve(items)?;
                Ok(Order::Confirmed { items: items.clone(), placed_at: *placed_at })
            }
            (OrderCommand::Cancel { reason }, _) => Ok(Order::Cancelled { reason: reason.clone() }),
            // Every other pair is refused by the declared table before we get here.
            (_, state) => Ok(state.clone()),
        }
    }
}

/// The real dependencies: the system clock and an in-process warehouse.
struct Warehouse {
    stock: Mutex<HashMap<String, u32>>,
}

impl OrderDeps for Warehouse {
    fn now(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }

    fn reserve(&self, items: &[Item]) -> Result<(), StockError> {
        let mut stock = self.stock.lock().unwrap_or_else(PoisonError::into_inner);
        for item in items {
            let available = stock.get(&item.sku).copied().unwrap_or(0);
            if available < item.quantity {
                return Err(StockError::Short { sku: item.sku.clone(), available });
            }
        }
        for item in items {
            *stock.entry(item.sku.clone()).or_default() -= item.quantity;
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let warehouse: Arc<dyn OrderDeps> = Arc::new(Warehouse { stock: Mutex::new(HashMap::from([("mug".into(), 3)])) });
    let runner = Runner::<OrderMachine, _>::new(Memory::new(), warehouse);

    let mugs = |quantity| vec![Item { sku: "mug".into(), quantity }];
    runner.handle("order-1", &OrderCommand::Place { items: mugs(2) }).await?;
    let confirmed = runner.handle("order-1", &OrderCommand::Confirm).await?;
    println!("order-1: {:?} at v{}", confirmed.state.kind(), confirmed.version);

    runner.handle("order-2", &OrderCommand::Place { items: mugs(2) }).await?;
    // Out of stock is a business refusal: returned, the order left as it was.
    match runner.handle("order-2", &OrderCommand::Confirm).await {
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
        deps.expect_reserve().returning(|_| Ok(()));
        deps
    }

    #[test]
    fn order_lifecycle() {
        let mut suite = suite();

        suite
            .case("place, confirm, cancel")
            .before(|deps| {
                deps.expect_now().times(1).return_const(NOW);
                deps.expect_reserve().never();
            })
            .when(OrderCommand::Place { items: mug(2) })
            .then(Order::Pending { items: mug(2), placed_at: NOW })
            .fork("cancelled while pending", |case| {
                case.when(cancel("changed mind")).then(cancelled("changed mind"));
            })
            .before(|deps| {
                deps.expect_reserve().with(eq(mug(2))).times(1).returning(|_| Ok(()));
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
                deps.expect_reserve()
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
    async fn confirming_survives_lost_races_and_reports_a_flaky_store() {
        let warehouse: Arc<dyn OrderDeps> =
            Arc::new(Warehouse { stock: Mutex::new(HashMap::from([("mug".into(), 10)])) });
        // Commits 2 and 3 (the first two tries of `Confirm`) lose a race;
        // commit 5 fails as a dropped connection would.
        let store = FaultyStore::new(Memory::new())
            .conflicts(Schedule::calls([2, 3]))
            .transient(Op::Commit, Schedule::calls([5]));
        let runner = Runner::<OrderMachine, _>::new(store, warehouse).retry(Retry::fixed(Duration::ZERO));

        runner.handle("order-1", &OrderCommand::Place { items: mug(2) }).await.unwrap();
        let confirmed = runner.handle("order-1", &OrderCommand::Confirm).await.unwrap();
        assert_eq!((confirmed.state.kind(), confirmed.version, confirmed.attempts), (OrderKind::Confirmed, 2, 3));

        let error = runner.handle("order-1", &cancel("late")).await.unwrap_err();
        assert!(matches!(&error, Error::Store(store) if store.is_retryable()), "{error:?}");
        assert_eq!(runner.get("order-1").await.unwrap().map(|v| v.version), Some(2), "nothing written");
        assert_eq!(runner.store().injected().len(), 3);
    }
}
