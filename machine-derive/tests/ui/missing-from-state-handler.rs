use machine_core::prelude::*;

#[derive(State, Clone, Debug, PartialEq)]
enum Order {
    #[state(initial)]
    Draft,
    Pending { items: Vec<String>, placed_at: u64 },
    Confirmed { items: Vec<String>, placed_at: u64 },
    #[state(terminal)]
    Cancelled { reason: String },
}

#[derive(Command, Clone, Debug, PartialEq)]
#[command(state = Order)]
enum OrderCommand {
    #[command(from(Draft), to(Pending))]
    Place { items: Vec<String> },
    #[command(from(Pending), to(Confirmed))]
    Confirm,
    #[command(from(Draft, Pending, Confirmed), to(Cancelled))]
    Cancel { reason: String },
}

struct OrderMachine;

impl Machine for OrderMachine {
    type State = Order;
    type Command = OrderCommand;
    type Deps = u64;
    type Error = machine_core::NotDeclared;

    fn transition(now: &u64, command: &OrderCommand, state: &Order) -> Result<Order, Self::Error> {
        Self::dispatch(now, command, state)
    }
}

fn cancelled(reason: &str) -> To<Order, order_command::Cancel> {
    To::new(CancelledOrder { reason: reason.to_owned() })
}

// `cancel_confirmed` is missing: `Cancel` declares `from(.., Confirmed)`.
impl OrderCommandHandlers for OrderMachine {
    fn place_draft(now: &u64, items: &Vec<String>, _: DraftOrderRef<'_>) -> Result<To<Order, order_command::Place>, machine_core::NotDeclared> {
        Ok(To::new(PendingOrder { items: items.clone(), placed_at: *now }))
    }

    fn confirm_pending(_: &u64, from: PendingOrderRef<'_>) -> Result<To<Order, order_command::Confirm>, machine_core::NotDeclared> {
        Ok(To::new(ConfirmedOrder { items: from.items.clone(), placed_at: *from.placed_at }))
    }

    fn cancel_draft(_: &u64, reason: &String, _: DraftOrderRef<'_>) -> Result<To<Order, order_command::Cancel>, machine_core::NotDeclared> {
        Ok(cancelled(reason))
    }

    fn cancel_pending(_: &u64, reason: &String, _: PendingOrderRef<'_>) -> Result<To<Order, order_command::Cancel>, machine_core::NotDeclared> {
        Ok(cancelled(reason))
    }
}

fn main() {}
