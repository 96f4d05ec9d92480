//! `#[state(due)]` and `#[command(timer)]` on every shape they accept
//! (named and tuple fields, `Deadline` and `Option<Deadline>`, a generic
//! due field, timer commands with and without fields, a machine whose only
//! state is due), under the same `deny(warnings, missing_docs,
//! clippy::pedantic)`, and what the generated `due`, `DUE` and `timer`
//! return.

use machine_core::timers::{self, Deadline};
use machine_core::{Command, Failure, Instance, Machine, NotDeclared, State, To, Transitions};
use serde::{Deserialize, Serialize};

/// A payment that waits for its money until a deadline, then is reminded
/// once, then expires.
#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Payment {
    /// Not requested yet.
    #[state(initial)]
    Open,
    /// Requested; due when the money has not come by `expires`.
    Awaiting {
        /// How much.
        amount: u64,
        /// When the payer is reminded.
        #[state(due)]
        expires: Deadline,
    },
    /// Reminded; due again at the second deadline, if one was set (a due
    /// field in the middle of a tuple variant).
    Reminded(u64, #[state(due)] Option<Deadline>, String),
    /// Paid.
    Paid,
    /// Never paid.
    #[state(terminal)]
    Expired,
    /// A recorded failure.
    #[state(failure)]
    Failed(Failure<PaymentCommand, Payment>),
}

/// The commands of [`Payment`]: two timers, one of them with fields.
#[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[command(state = Payment)]
pub(crate) enum PaymentCommand {
    /// Asks for the money.
    #[command(from(Open), to(Awaiting))]
    Request {
        /// How much.
        amount: u64,
        /// Until when.
        expires: Deadline,
    },
    /// The money came.
    #[command(from(Awaiting, Reminded), to(Paid))]
    Pay,
    /// Fired when an awaited payment is due; its fields are built with
    /// `Default`.
    #[command(timer, from(Awaiting), to(Reminded))]
    Remind {
        /// What the reminder says.
        note: String,
        /// How many reminders were sent before.
        count: u8,
    },
    /// Fired when a reminded payment is due again.
    #[command(timer, from(Reminded), to(Expired))]
    Expire,
    /// Looks at the payment; no table check.
    #[command(unchecked)]
    Audit,
}

/// A lease whose deadline type is a parameter: `Deadline` or
/// `Option<Deadline>` (the derive adds `T: Due` to the `State` impl).
#[derive(State, Clone, Debug, PartialEq)]
pub(crate) enum Lease<T> {
    /// Nobody holds it.
    #[state(initial)]
    Free,
    /// Held until `until`.
    Taken {
        /// When the lease lapses.
        #[state(due)]
        until: T,
    },
}

/// The commands of [`Lease`], generic too, with the bound `Lease<T>`'s
/// `State` impl needs: the timer's field is a `T` built with `Default` (the
/// derive adds `T: Default` to the `Transitions` impl).
#[derive(Command, Clone, Debug, PartialEq)]
#[command(state = Lease<T>)]
pub(crate) enum LeaseCommand<T: timers::Due> {
    /// Takes the lease.
    #[command(from(Free), to(Taken))]
    Take(T),
    /// Fired when a taken lease is due.
    #[command(timer, from(Taken), to(Free))]
    Lapse(T),
}

/// A machine whose only state is due, from its start: the timer covers
/// every state, so `timer` has no other arm.
#[derive(State, Clone, Debug, PartialEq)]
pub(crate) enum Countdown {
    /// Counting down to the deadline, if one is set.
    #[state(initial)]
    Running(#[state(due)] Option<Deadline>),
}

/// The commands of [`Countdown`].
#[derive(Command, Clone, Debug, PartialEq)]
#[command(state = Countdown)]
pub(crate) enum CountdownCommand {
    /// Fired at the deadline; starts over without one.
    #[command(timer, from(Running), to(Running))]
    Ring,
}

#[test]
fn due_reads_the_marked_field_of_each_variant() {
    let at = Deadline::from_millis(1_000);
    assert_eq!(Payment::Open.due(), None);
    assert_eq!(Payment::Awaiting { amount: 5, expires: at }.due(), Some(at));
    assert_eq!(Payment::Reminded(5, Some(at), "sent".to_owned()).due(), Some(at));
    assert_eq!(Payment::Reminded(5, None, "sent".to_owned()).due(), None);
    assert_eq!(Payment::Paid.due(), None);
    assert_eq!(Payment::DUE, &[PaymentKind::Awaiting, PaymentKind::Reminded]);

    assert_eq!(Lease::Taken { until: at }.due(), Some(at));
    assert_eq!(Lease::Taken { until: Some(at) }.due(), Some(at));
    assert_eq!(Lease::<Option<Deadline>>::Taken { until: None }.due(), None);
    assert_eq!(Lease::<Deadline>::Free.due(), None);
    assert_eq!(<Lease<Deadline>>::DUE, &[LeaseKind::Taken]);

    assert_eq!(Countdown::initial().due(), None);
    assert_eq!(Countdown::Running(Some(at)).due(), Some(at));
    assert_eq!(Countdown::DUE, &[CountdownKind::Running]);
}

#[test]
fn states_without_due_fields_are_never_due() {
    assert!(super::Order::DUE.is_empty());
    assert_eq!(super::Order::Draft.due(), None);
    assert_eq!(<super::Slot<u8>>::initial().due(), None);
}

#[test]
fn timer_names_the_command_each_due_state_fires() {
    let timer = <PaymentCommand as Transitions<Payment>>::timer;
    assert_eq!(timer(PaymentKind::Awaiting), Some(PaymentCommand::Remind { note: String::new(), count: 0 }));
    assert_eq!(timer(PaymentKind::Reminded), Some(PaymentCommand::Expire));
    for kind in [PaymentKind::Open, PaymentKind::Paid, PaymentKind::Expired, PaymentKind::Failed] {
        assert_eq!(timer(kind), None, "{kind}");
    }
    assert_eq!(
        <LeaseCommand<Deadline> as Transitions<Lease<Deadline>>>::timer(LeaseKind::Taken),
        Some(LeaseCommand::Lapse(Deadline::default()))
    );
    assert_eq!(LeaseCommand::Take(Deadline::from_millis(1)).kind(), LeaseCommandKind::Take);
    assert_eq!(<LeaseCommand<Option<Deadline>> as Transitions<Lease<Option<Deadline>>>>::timer(LeaseKind::Free), None);
    assert_eq!(CountdownCommand::timer(CountdownKind::Running), Some(CountdownCommand::Ring));
    // Commands without timers keep the trait's default.
    for kind in super::OrderKind::ALL {
        assert_eq!(<super::OrderCommand as Transitions<super::Order>>::timer(*kind), None);
    }
}

#[test]
fn the_run_time_check_agrees_with_the_derives() {
    assert_eq!(timers::check::<Payment, PaymentCommand>(), Ok(()));
    assert_eq!(timers::check::<Lease<Deadline>, LeaseCommand<Deadline>>(), Ok(()));
    assert_eq!(timers::check::<Countdown, CountdownCommand>(), Ok(()));
    assert_eq!(timers::check::<super::Order, super::OrderCommand>(), Ok(()));
}

/// The payment machine, written with the generated handlers, timer
/// commands among them.
struct Payments;

impl Machine for Payments {
    type State = Payment;
    type Command = PaymentCommand;
    type Deps = ();
    type Error = NotDeclared;

    fn transition((): &(), command: &PaymentCommand, state: &Payment) -> Result<Payment, NotDeclared> {
        Self::dispatch(&(), command, state)
    }
}

impl PaymentCommandHandlers for Payments {
    fn request_open(
        (): &(),
        amount: &u64,
        expires: &Deadline,
        _: OpenPaymentRef<'_>,
    ) -> Result<To<Payment, payment_command::Request>, NotDeclared> {
        Ok(To::new(AwaitingPayment { amount: *amount, expires: *expires }))
    }

    fn pay_awaiting((): &(), _: AwaitingPaymentRef<'_>) -> Result<To<Payment, payment_command::Pay>, NotDeclared> {
        Ok(To::new(PaidPayment))
    }

    fn pay_reminded((): &(), _: RemindedPaymentRef<'_>) -> Result<To<Payment, payment_command::Pay>, NotDeclared> {
        Ok(To::new(PaidPayment))
    }

    fn remind_awaiting(
        (): &(),
        note: &String,
        count: &u8,
        from: AwaitingPaymentRef<'_>,
    ) -> Result<To<Payment, payment_command::Remind>, NotDeclared> {
        let next = Deadline::from_millis(from.expires.as_millis() + 1_000);
        Ok(To::new(RemindedPayment(*from.amount, Some(next), format!("{note}#{count}"))))
    }

    fn expire_reminded(
        (): &(),
        _: RemindedPaymentRef<'_>,
    ) -> Result<To<Payment, payment_command::Expire>, NotDeclared> {
        Ok(To::new(ExpiredPayment))
    }

    fn audit((): &(), state: &Payment) -> Result<Payment, NotDeclared> {
        Ok(state.clone())
    }
}

#[test]
fn timer_commands_go_through_the_generated_dispatch() -> Result<(), machine_core::Error<NotDeclared>> {
    let mut payment = Instance::<Payments>::new(&(), Payment::initial());
    payment.handle(&PaymentCommand::Request { amount: 7, expires: Deadline::from_millis(10) })?;
    let mut fired = Vec::new();
    while let Some(command) = payment.state().due().and_then(|_| PaymentCommand::timer(payment.state().kind())) {
        fired.push(command.kind());
        payment.handle(&command)?;
    }
    assert_eq!(fired, [PaymentCommandKind::Remind, PaymentCommandKind::Expire]);
    assert_eq!(payment.state(), &Payment::Expired);
    Ok(())
}
