//! The generated handler traits, implemented for the shapes of
//! `pedantic.rs` (unit, struct and tuple variants, several from-states,
//! unchecked commands, a generic state, an async machine), under the same
//! `deny(warnings, missing_docs, clippy::pedantic)`.

use std::fmt;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use machine_core::{AsyncMachine, Error, FailureState, Instance, Machine, NotDeclared, State, To};

use super::{
    CancelledOrder, ConfirmedOrder, ConfirmedOrderRef, DraftOrderRef, EmptySlot, EmptySlotRef, FullSlot, FullSlotRef,
    Item, Order, OrderCommand, OrderCommandAsyncHandlers, OrderCommandHandlers, PendingOrder, PendingOrderRef, Slot,
    SlotCommand, SlotCommandHandlers, order_command, slot_command,
};

/// The order machine, written with the generated handlers; the deps are
/// the clock. Its handlers never fail, so its error is `NotDeclared`
/// itself, what `dispatch` returns for a pair the table does not declare.
pub(crate) struct Orders;

impl Machine for Orders {
    type State = Order;
    type Command = OrderCommand;
    type Deps = u64;
    type Error = NotDeclared;

    fn transition(now: &u64, command: &OrderCommand, state: &Order) -> Result<Order, NotDeclared> {
        Self::dispatch(now, command, state)
    }
}

/// `Cancel` and `Abandon` end the same way from every state.
fn cancelled<C: machine_core::Declares<CancelledOrder>>(reason: &str) -> To<Order, C> {
    To::new(CancelledOrder { reason: reason.to_owned() })
}

impl OrderCommandHandlers for Orders {
    fn place_draft(
        now: &u64,
        items: &Vec<Item>,
        _: DraftOrderRef<'_>,
    ) -> Result<To<Order, order_command::Place>, NotDeclared> {
        Ok(To::new(PendingOrder { items: items.clone(), placed_at: *now }))
    }

    fn confirm_pending(_: &u64, from: PendingOrderRef<'_>) -> Result<To<Order, order_command::Confirm>, NotDeclared> {
        Ok(To::new(ConfirmedOrder { items: from.items.clone(), placed_at: *from.placed_at }))
    }

    fn cancel_draft(
        _: &u64,
        reason: &String,
        _: DraftOrderRef<'_>,
    ) -> Result<To<Order, order_command::Cancel>, NotDeclared> {
        Ok(cancelled(reason))
    }

    fn cancel_pending(
        _: &u64,
        reason: &String,
        _: PendingOrderRef<'_>,
    ) -> Result<To<Order, order_command::Cancel>, NotDeclared> {
        Ok(cancelled(reason))
    }

    fn cancel_confirmed(
        _: &u64,
        reason: &String,
        from: ConfirmedOrderRef<'_>,
    ) -> Result<To<Order, order_command::Cancel>, NotDeclared> {
        Ok(cancelled(&format!("{reason} after {} item(s)", from.items.len())))
    }

    fn abandon_draft(
        _: &u64,
        why: &String,
        _: DraftOrderRef<'_>,
    ) -> Result<To<Order, order_command::Abandon>, NotDeclared> {
        Ok(cancelled(why))
    }

    fn abandon_pending(
        _: &u64,
        why: &String,
        _: PendingOrderRef<'_>,
    ) -> Result<To<Order, order_command::Abandon>, NotDeclared> {
        Ok(cancelled(why))
    }

    fn abandon_confirmed(
        _: &u64,
        why: &String,
        _: ConfirmedOrderRef<'_>,
    ) -> Result<To<Order, order_command::Abandon>, NotDeclared> {
        Ok(cancelled(why))
    }

    fn print(_: &u64, state: &Order) -> Result<Order, NotDeclared> {
        Ok(state.clone())
    }

    fn log(_: &u64, level: &u8, state: &Order) -> Result<Order, NotDeclared> {
        Ok(if *level > 3 { Order::Delivered(u32::from(*level), "logged".to_owned()) } else { state.clone() })
    }
}

/// The async machine's error: its handlers never fail, so only a pair the
/// table does not declare, from a direct call.
#[derive(Debug, PartialEq)]
pub(crate) enum AsyncError {
    /// A pair the table does not declare.
    NotDeclared(NotDeclared),
}

impl From<NotDeclared> for AsyncError {
    fn from(error: NotDeclared) -> Self {
        Self::NotDeclared(error)
    }
}

impl fmt::Display for AsyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotDeclared(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for AsyncError {}

/// The same machine, async.
pub(crate) struct AsyncOrders;

impl AsyncMachine for AsyncOrders {
    type State = Order;
    type Command = OrderCommand;
    type Deps = u64;
    type Error = AsyncError;

    async fn transition(now: &u64, command: &OrderCommand, state: &Order) -> Result<Order, AsyncError> {
        Self::dispatch(now, command, state).await
    }
}

impl OrderCommandAsyncHandlers for AsyncOrders {
    async fn place_draft(
        now: &u64,
        items: &Vec<Item>,
        _: DraftOrderRef<'_>,
    ) -> Result<To<Order, order_command::Place>, AsyncError> {
        std::future::ready(()).await;
        Ok(To::new(PendingOrder { items: items.clone(), placed_at: *now }))
    }

    async fn confirm_pending(
        _: &u64,
        from: PendingOrderRef<'_>,
    ) -> Result<To<Order, order_command::Confirm>, AsyncError> {
        Ok(To::new(ConfirmedOrder { items: from.items.clone(), placed_at: *from.placed_at }))
    }

    async fn cancel_draft(
        _: &u64,
        reason: &String,
        _: DraftOrderRef<'_>,
    ) -> Result<To<Order, order_command::Cancel>, AsyncError> {
        Ok(cancelled(reason))
    }

    async fn cancel_pending(
        _: &u64,
        reason: &String,
        _: PendingOrderRef<'_>,
    ) -> Result<To<Order, order_command::Cancel>, AsyncError> {
        Ok(cancelled(reason))
    }

    async fn cancel_confirmed(
        _: &u64,
        reason: &String,
        _: ConfirmedOrderRef<'_>,
    ) -> Result<To<Order, order_command::Cancel>, AsyncError> {
        Ok(cancelled(reason))
    }

    async fn abandon_draft(
        _: &u64,
        why: &String,
        _: DraftOrderRef<'_>,
    ) -> Result<To<Order, order_command::Abandon>, AsyncError> {
        Ok(cancelled(why))
    }

    async fn abandon_pending(
        _: &u64,
        why: &String,
        _: PendingOrderRef<'_>,
    ) -> Result<To<Order, order_command::Abandon>, AsyncError> {
        Ok(cancelled(why))
    }

    async fn abandon_confirmed(
        _: &u64,
        why: &String,
        _: ConfirmedOrderRef<'_>,
    ) -> Result<To<Order, order_command::Abandon>, AsyncError> {
        Ok(cancelled(why))
    }

    async fn print(_: &u64, state: &Order) -> Result<Order, AsyncError> {
        Ok(state.clone())
    }

    async fn log(_: &u64, _: &u8, state: &Order) -> Result<Order, AsyncError> {
        Ok(state.clone())
    }
}

/// The generic slot, for `u8`.
pub(crate) struct Slots;

impl Machine for Slots {
    type State = Slot<u8>;
    type Command = SlotCommand<u8>;
    type Deps = ();
    type Error = NotDeclared;

    fn transition((): &(), command: &SlotCommand<u8>, state: &Slot<u8>) -> Result<Slot<u8>, NotDeclared> {
        Self::dispatch(&(), command, state)
    }
}

impl SlotCommandHandlers<u8> for Slots {
    fn fill_empty(
        (): &(),
        value: &u8,
        from: EmptySlotRef<'_, u8>,
    ) -> Result<To<Slot<u8>, slot_command::Fill<u8>>, NotDeclared> {
        Ok(To::new(FullSlot(value + from.value)))
    }

    fn drain_full((): &(), _: FullSlotRef<'_, u8>) -> Result<To<Slot<u8>, slot_command::Drain<u8>>, NotDeclared> {
        Ok(To::new(EmptySlot { value: 0, count: 1 }))
    }
}

#[test]
fn every_declared_pair_runs_its_handler() {
    let mut order = Instance::<Orders>::new(&7, Order::initial());
    let items = vec![Item { sku: "mug".to_owned() }];
    assert_eq!(
        order.handle(&OrderCommand::Place { items: items.clone() }).unwrap(),
        &Order::Pending { items: items.clone(), placed_at: 7 }
    );
    order.handle(&OrderCommand::Confirm).unwrap();
    assert_eq!(order.handle(&OrderCommand::Print).unwrap(), &Order::Confirmed { items, placed_at: 7 });
    let cancelled = order.handle(&OrderCommand::Cancel { reason: "late".to_owned() }).unwrap();
    assert_eq!(cancelled, &Order::Cancelled { reason: "late after 1 item(s)".to_owned() });
    // Refused by the table before the dispatch runs.
    assert!(matches!(order.handle(&OrderCommand::Confirm), Err(Error::NotAllowed { .. })));
    assert_eq!(order.handle(&OrderCommand::Log(9)).unwrap(), &Order::Delivered(9, "logged".to_owned()));

    let mut slot = Instance::<Slots>::new(&(), Slot::initial());
    assert_eq!(slot.handle(&SlotCommand::Fill(4)).unwrap(), &Slot::Full(4));
    assert_eq!(slot.handle(&SlotCommand::Drain).unwrap(), &Slot::Empty { value: 0, count: 1 });
}

#[test]
fn async_handlers_run_through_the_dispatch() {
    block_on(async {
        let mut order = Instance::<AsyncOrders>::new(&3, Order::initial());
        order.handle_async(&OrderCommand::Place { items: Vec::new() }).await.unwrap();
        let abandoned = order.handle_async(&OrderCommand::Abandon("bored".to_owned())).await.unwrap();
        assert_eq!(abandoned, &Order::Cancelled { reason: "bored".to_owned() });
    });
}

#[test]
fn targets_convert_into_the_state_for_free() {
    let to: To<Order, order_command::Place> = To::new(PendingOrder { items: Vec::new(), placed_at: 1 });
    assert_eq!(to.state(), &Order::Pending { items: Vec::new(), placed_at: 1 });
    assert_eq!(format!("{to:?}"), "To(Pending { items: [], placed_at: 1 })");
    assert_eq!(to.clone().into_state(), Order::Pending { items: Vec::new(), placed_at: 1 });
    assert_eq!(Order::from(CancelledOrder { reason: "x".to_owned() }), Order::Cancelled { reason: "x".to_owned() });
}

#[test]
fn a_direct_call_with_an_undeclared_pair_is_a_typed_error() {
    // The table refuses these before the transition runs; called directly,
    // the dispatch returns `NotDeclared` (converted into the machine's
    // error), never panics.
    let confirm_draft = NotDeclared { command: "Confirm", state: "Draft" };
    assert_eq!(<Orders as Machine>::transition(&1, &OrderCommand::Confirm, &Order::Draft), Err(confirm_draft));
    assert_eq!(confirm_draft.to_string(), "command Confirm is not declared from state Draft");
    let cancelled = Order::Cancelled { reason: "late".to_owned() };
    assert_eq!(
        <Orders as Machine>::transition(&1, &OrderCommand::Abandon(String::new()), &cancelled),
        Err(NotDeclared { command: "Abandon", state: "Cancelled" })
    );
    // The failure state is in no `from(..)`.
    let failed = Order::from_failure(machine_core::Failure {
        command: OrderCommand::Confirm,
        previous: Box::new(Order::Draft),
        error: "down".to_owned(),
        attempts: 1,
        failed_at: 0,
    });
    assert_eq!(
        <Orders as Machine>::transition(&1, &OrderCommand::Place { items: Vec::new() }, &failed),
        Err(NotDeclared { command: "Place", state: "Failed" })
    );
    assert_eq!(
        <Slots as Machine>::transition(&(), &SlotCommand::Drain, &Slot::initial()),
        Err(NotDeclared { command: "Drain", state: "Empty" })
    );
    let pending = Order::Pending { items: Vec::new(), placed_at: 1 };
    assert_eq!(
        block_on(<AsyncOrders as AsyncMachine>::transition(&1, &OrderCommand::Place { items: Vec::new() }, &pending)),
        Err(AsyncError::NotDeclared(NotDeclared { command: "Place", state: "Pending" }))
    );
    // Through an `Instance`, the table refuses first: `NotAllowed`, as ever.
    let mut order = Instance::<Orders>::new(&1, Order::Draft);
    assert!(matches!(
        order.handle(&OrderCommand::Confirm),
        Err(Error::NotAllowed { command: "Confirm", state: "Draft", .. })
    ));
}

/// Polls `future` to completion: the handlers here never wait on anything.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
    }
}
