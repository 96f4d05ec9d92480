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

    // `&Self::Deps` is `&(dyn OrderDeps + 'static)`, what `dispatch` takes;
    // a bare `&dyn OrderDeps` would only live as long as the borrow.
    fn transition(deps: &Self::Deps, command: &OrderCommand, state: &Order) -> Result<Order, OrderError> {
        Self::dispatch(deps, command, state)
    }
}

impl OrderCommandHandlers for OrderMachine {
    fn place_draft(deps: &dyn OrderDeps, items: &Vec<Item>, _: DraftOrderRef<'_>) -> Result<To<Order, order_command::Place>, OrderError> {
        if items.is_empty() {
            return Err(OrderError::Empty);
        }
        Ok(To::new(PendingOrder { items: items.clone(), placed_at: deps.now() }))
    }

    fn confirm_pending(deps: &dyn OrderDeps, from: PendingOrderRef<'_>) -> Result<To<Order, order_command::Confirm>, OrderError> {
        deps.check_stock(from.items)?;
        Ok(To::new(ConfirmedOrder { items: from.items.clone(), placed_at: *from.placed_at }))
    }

    fn cancel_draft(_: &dyn OrderDeps, reason: &String, _: DraftOrderRef<'_>) -> Result<To<Order, order_command::Cancel>, OrderError> {
        Ok(cancellation(reason))
    }

    fn cancel_pending(_: &dyn OrderDeps, reason: &String, _: PendingOrderRef<'_>) -> Result<To<Order, order_command::Cancel>, OrderError> {
        Ok(cancellation(reason))
    }

    fn cancel_confirmed(_: &dyn OrderDeps, reason: &String, _: ConfirmedOrderRef<'_>) -> Result<To<Order, order_command::Cancel>, OrderError> {
        Ok(cancellation(reason))
    }
}

/// `Cancel` ends the same way from each of its three states.
fn cancellation(reason: &str) -> To<Order, order_command::Cancel> {
    To::new(CancelledOrder { reason: reason.to_owned() })
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
