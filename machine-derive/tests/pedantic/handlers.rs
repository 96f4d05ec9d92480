//! The generated handler traits, implemented for the shapes of
//! `pedantic.rs` (unit, struct and tuple variants, several from-states,
//! unchecked commands, a generic state, an async machine), under the same
//! `deny(warnings, missing_docs, clippy::pedantic)`.

use std::convert::Infallible;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use machine_core::{AsyncMachine, Error, Instance, Machine, State, To};

use super::{
    CancelledOrder, ConfirmedOrder, ConfirmedOrderRef, DraftOrderRef, EmptySlot, EmptySlotRef, FullSlot, FullSlotRef,
    Item, Order, OrderCommand, OrderCommandAsyncHandlers, OrderCommandHandlers, PendingOrder, PendingOrderRef, Slot,
    SlotCommand, SlotCommandHandlers, order_command, slot_command,
};

/// The order machine, written with the generated handlers; the deps are
/// the clock.
pub(crate) struct Orders;

impl Machine for Orders {
    type State = Order;
    type Command = OrderCommand;
    type Deps = u64;
    type Error = Infallible;

    fn transition(now: &u64, command: &OrderCommand, state: &Order) -> Result<Order, Infallible> {
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
    ) -> Result<To<Order, order_command::Place>, Infallible> {
        Ok(To::new(PendingOrder { items: items.clone(), placed_at: *now }))
    }

    fn confirm_pending(_: &u64, from: PendingOrderRef<'_>) -> Result<To<Order, order_command::Confirm>, Infallible> {
        Ok(To::new(ConfirmedOrder { items: from.items.clone(), placed_at: *from.placed_at }))
    }

    fn cancel_draft(
        _: &u64,
        reason: &String,
        _: DraftOrderRef<'_>,
    ) -> Result<To<Order, order_command::Cancel>, Infallible> {
        Ok(cancelled(reason))
    }

    fn cancel_pending(
        _: &u64,
        reason: &String,
        _: PendingOrderRef<'_>,
    ) -> Result<To<Order, order_command::Cancel>, Infallible> {
        Ok(cancelled(reason))
    }

    fn cancel_confirmed(
        _: &u64,
        reason: &String,
        from: ConfirmedOrderRef<'_>,
    ) -> Result<To<Order, order_command::Cancel>, Infallible> {
        Ok(cancelled(&format!("{reason} after {} item(s)", from.items.len())))
    }

    fn abandon_draft(
        _: &u64,
        why: &String,
        _: DraftOrderRef<'_>,
    ) -> Result<To<Order, order_command::Abandon>, Infallible> {
        Ok(cancelled(why))
    }

    fn abandon_pending(
        _: &u64,
        why: &String,
        _: PendingOrderRef<'_>,
    ) -> Result<To<Order, order_command::Abandon>, Infallible> {
        Ok(cancelled(why))
    }

    fn abandon_confirmed(
        _: &u64,
        why: &String,
        _: ConfirmedOrderRef<'_>,
    ) -> Result<To<Order, order_command::Abandon>, Infallible> {
        Ok(cancelled(why))
    }

    fn print(_: &u64, state: &Order) -> Result<Order, Infallible> {
        Ok(state.clone())
    }

    fn log(_: &u64, level: &u8, state: &Order) -> Result<Order, Infallible> {
        Ok(if *level > 3 { Order::Delivered(u32::from(*level), "logged".to_owned()) } else { state.clone() })
    }
}

/// The same machine, async.
pub(crate) struct AsyncOrders;

impl AsyncMachine for AsyncOrders {
    type State = Order;
    type Command = OrderCommand;
    type Deps = u64;
    type Error = Infallible;

    async fn transition(now: &u64, command: &OrderCommand, state: &Order) -> Result<Order, Infallible> {
        Self::dispatch(now, command, state).await
    }
}

impl OrderCommandAsyncHandlers for AsyncOrders {
    async fn place_draft(
        now: &u64,
        items: &Vec<Item>,
        _: DraftOrderRef<'_>,
    ) -> Result<To<Order, order_command::Place>, Infallible> {
        std::future::ready(()).await;
        Ok(To::new(PendingOrder { items: items.clone(), placed_at: *now }))
    }

    async fn confirm_pending(
        _: &u64,
        from: PendingOrderRef<'_>,
    ) -> Result<To<Order, order_command::Confirm>, Infallible> {
        Ok(To::new(ConfirmedOrder { items: from.items.clone(), placed_at: *from.placed_at }))
    }

    async fn cancel_draft(
        _: &u64,
        reason: &String,
        _: DraftOrderRef<'_>,
    ) -> Result<To<Order, order_command::Cancel>, Infallible> {
        Ok(cancelled(reason))
    }

    async fn cancel_pending(
        _: &u64,
        reason: &String,
        _: PendingOrderRef<'_>,
    ) -> Result<To<Order, order_command::Cancel>, Infallible> {
        Ok(cancelled(reason))
    }

    async fn cancel_confirmed(
        _: &u64,
        reason: &String,
        _: ConfirmedOrderRef<'_>,
    ) -> Result<To<Order, order_command::Cancel>, Infallible> {
        Ok(cancelled(reason))
    }

    async fn abandon_draft(
        _: &u64,
        why: &String,
        _: DraftOrderRef<'_>,
    ) -> Result<To<Order, order_command::Abandon>, Infallible> {
        Ok(cancelled(why))
    }

    async fn abandon_pending(
        _: &u64,
        why: &String,
        _: PendingOrderRef<'_>,
    ) -> Result<To<Order, order_command::Abandon>, Infallible> {
        Ok(cancelled(why))
    }

    async fn abandon_confirmed(
        _: &u64,
        why: &String,
        _: ConfirmedOrderRef<'_>,
    ) -> Result<To<Order, order_command::Abandon>, Infallible> {
        Ok(cancelled(why))
    }

    async fn print(_: &u64, state: &Order) -> Result<Order, Infallible> {
        Ok(state.clone())
    }

    async fn log(_: &u64, _: &u8, state: &Order) -> Result<Order, Infallible> {
        Ok(state.clone())
    }
}

/// The generic slot, for `u8`.
pub(crate) struct Slots;

impl Machine for Slots {
    type State = Slot<u8>;
    type Command = SlotCommand<u8>;
    type Deps = ();
    type Error = Infallible;

    fn transition((): &(), command: &SlotCommand<u8>, state: &Slot<u8>) -> Result<Slot<u8>, Infallible> {
        Self::dispatch(&(), command, state)
    }
}

impl SlotCommandHandlers<u8> for Slots {
    fn fill_empty(
        (): &(),
        value: &u8,
        from: EmptySlotRef<'_, u8>,
    ) -> Result<To<Slot<u8>, slot_command::Fill<u8>>, Infallible> {
        Ok(To::new(FullSlot(value + from.value)))
    }

    fn drain_full((): &(), _: FullSlotRef<'_, u8>) -> Result<To<Slot<u8>, slot_command::Drain<u8>>, Infallible> {
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
