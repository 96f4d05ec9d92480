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
    let runner = Runner::<OrderMachine, _>::new(Memory::new(), warehouse).record_failures();

    let mugs = |quantity| vec![Item { sku: "mug".into(), quantity }];
    runner.handle("order-1", &OrderCommand::Place { items: mugs(2) }).await?;
    let confirmed = runner.handle("order-1", &OrderCommand::Confirm).await?;
    println!("order-1: {:?} at v{}", confirmed.state.kind(), confirmed.version);

    runner.handle("order-2", &OrderCommand::Place { items: mugs(2) }).await?;
    match runner.handle("order-2", &OrderCommand::Confirm).await {
        Err(Error::FailureRecorded { source, version }) => println!("order-2: failed at v{version}: {source}"),
        other => return Err(format!("expected a recorded stock failure, got {other:?}").into()),
    }
    let failed = runner.get("order-2").await?.ok_or("order-2 exists")?;
    if let Some(failure) = failed.state.failure() {
        println!("order-2 keeps {:?} and its previous state {:?}", failure.command, failure.previous.kind());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mockall::predicate::eq;

    fn mug(quantity: u32) -> Vec<Item> {
        vec![Item { sku: "mug".into(), quantity }]
    }

    #[test]
    fn placing_stamps_the_time_from_the_clock() {
        let mut deps = MockOrderDeps::new();
        deps.expect_now().times(1).return_const(1_700_000_000_u64);
        deps.expect_reserve().never();

        let next = OrderMachine::transition(&deps, &OrderCommand::Place { items: mug(1) }, &Order::Draft).unwrap();
        assert_eq!(next, Order::Pending { items: mug(1), placed_at: 1_700_000_000 });
    }

    #[test]
    fn confirming_reserves_exactly_the_items() {
        let mut deps = MockOrderDeps::new();
        deps.expect_reserve().with(eq(mug(2))).times(1).returning(|_| Ok(()));

        let pending = Order::Pending { items: mug(2), placed_at: 5 };
        let next = OrderMachine::transition(&deps, &OrderCommand::Confirm, &pending).unwrap();
        assert_eq!(next, Order::Confirmed { items: mug(2), placed_at: 5 });
    }

    #[test]
    fn a_stock_shortage_is_the_machines_error() {
        let mut deps = MockOrderDeps::new();
        deps.expect_reserve().returning(|_| Err(StockError::Short { sku: "mug".into(), available: 1 }));

        let pending = Order::Pending { items: mug(2), placed_at: 5 };
        let error = OrderMachine::transition(&deps, &OrderCommand::Confirm, &pending).unwrap_err();
        assert_eq!(error.to_string(), "only 1 of mug left");
    }

    #[test]
    fn the_declared_table_refuses_confirming_a_draft_without_calling_deps() {
        // No expectations: any call to the mock would fail the test.
        let deps = MockOrderDeps::new();
        let mut order = Instance::<OrderMachine>::new(&deps, Order::initial());
        let error = order.handle(&OrderCommand::Confirm).unwrap_err();
        assert!(matches!(error, Error::NotAllowed { command: "Confirm", state: "Draft", .. }), "{error:?}");
        assert_eq!(order.state(), &Order::Draft, "unchanged after a refusal");
    }

    #[test]
    fn an_instance_walks_the_happy_path() {
        let mut deps = MockOrderDeps::new();
        deps.expect_now().return_const(9_u64);
        deps.expect_reserve().returning(|_| Ok(()));

        let mut order = Instance::<OrderMachine>::new(&deps, Order::initial());
        order.handle(&OrderCommand::Place { items: mug(1) }).unwrap();
        order.handle(&OrderCommand::Confirm).unwrap();
        assert_eq!(order.state().kind(), OrderKind::Confirmed);
        order.handle(&OrderCommand::Cancel { reason: "changed mind".into() }).unwrap();
        assert!(order.state().is_terminal());
    }
}
