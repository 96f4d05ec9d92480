// The order machine of docs/guide.md §1–§3, complete, for the docs' other
// snippets: they include this file in one hidden line, so every snippet
// compiles against the same definitions the guide shows. Not a program of
// its own (examples/order.rs is); machine-core's doctests compile it (see
// machine-core/src/docs.rs).

include!("order_types.rs");

/// What the transition reads from outside. Read-only: the transition may run
/// several times for one command, so it checks stock and never reserves it.
#[mockall::automock]
pub trait OrderDeps: Send + Sync {
    fn now(&self) -> u64;
    fn check_stock(&self, items: &[Item]) -> Result<(), StockError>;
}

pub struct OrderMachine;

impl Machine for OrderMachine {
    type State = Order;
    type Command = OrderCommand;
    type Deps = dyn OrderDeps;
    type Error = OrderError;

    fn transition(deps: &dyn OrderDeps, command: &OrderCommand, state: &Order) -> Result<Order, OrderError> {
        match (command, state) {
            (OrderCommand::Place { items }, Order::Draft) if items.is_empty() => Err(OrderError::Empty),
            (OrderCommand::Place { items }, Order::Draft) => {
                Ok(Order::Pending { items: items.clone(), placed_at: deps.now() })
            }
            (OrderCommand::Confirm, Order::Pending { items, placed_at }) => {
                deps.check_stock(items)?;
                Ok(Order::Confirmed { items: items.clone(), placed_at: *placed_at })
            }
            (OrderCommand::Cancel { reason }, _) => Ok(Order::Cancelled { reason: reason.clone() }),
            (_, state) => Ok(state.clone()),
        }
    }
}

/// The real dependencies: a clock and a warehouse with plenty of mugs.
/// `reserve` is not part of `OrderDeps`: it changes stock, so it runs after
/// the commit, never inside the transition.
pub struct Warehouse;

impl Warehouse {
    pub fn new() -> Self {
        Self
    }

    pub fn reserve(&self, _items: &[Item]) -> Result<(), StockError> {
        Ok(())
    }
}

impl OrderDeps for Warehouse {
    fn now(&self) -> u64 {
        1_700_000_000
    }

    fn check_stock(&self, _items: &[Item]) -> Result<(), StockError> {
        Ok(())
    }
}
