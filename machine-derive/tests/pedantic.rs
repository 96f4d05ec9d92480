//! The derives on every supported shape of input, in a crate that denies
//! warnings, missing docs and clippy's pedantic lints, followed by checks of
//! what the generated code does (the handler traits in `pedantic/handlers.rs`,
//! due states and timers in `pedantic/timers.rs`).
#![deny(warnings, missing_docs, clippy::pedantic)]

use machine_core::{Command, Failure, FailureState, Kind, State, Transitions};
use serde::{Deserialize, Serialize};

#[path = "pedantic/handlers.rs"]
mod handlers;
#[path = "pedantic/timers.rs"]
mod timers;

/// An item in an order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// What is ordered.
    pub sku: String,
}

/// The design document's order: unit, struct and tuple variants, a named
/// name, a terminal and a tuple failure variant.
#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[state(name = "orders")]
pub enum Order {
    /// Being filled in.
    #[state(initial)]
    Draft,
    /// Placed, waiting for confirmation.
    Pending {
        /// What was ordered.
        items: Vec<Item>,
        /// When, in milliseconds.
        placed_at: u64,
    },
    /// Confirmed.
    Confirmed {
        /// What was ordered.
        items: Vec<Item>,
        /// When, in milliseconds.
        placed_at: u64,
    },
    /// Cancelled for good.
    #[state(terminal)]
    Cancelled {
        /// Why.
        reason: String,
    },
    /// Delivered in parts (a tuple variant).
    #[state(terminal)]
    Delivered(u32, String),
    /// A recorded failure.
    #[state(failure)]
    Failed(Failure<OrderCommand, Order>),
}

/// The commands of [`Order`], every one with declared edges or unchecked.
#[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[command(state = Order)]
pub enum OrderCommand {
    /// Places the order.
    #[command(from(Draft), to(Pending))]
    Place {
        /// What to order.
        items: Vec<Item>,
    },
    /// Confirms it.
    #[command(from(Pending), to(Confirmed))]
    Confirm,
    /// Cancels it (same lists as `Abandon`: two equal match arms).
    #[command(from(Draft, Pending, Confirmed), to(Cancelled))]
    Cancel {
        /// Why.
        reason: String,
    },
    /// Abandons it.
    #[command(from(Draft, Pending, Confirmed), to(Cancelled))]
    Abandon(String),
    /// Prints it; no table check.
    #[command(unchecked)]
    Print,
    /// Logs it; no table check.
    #[command(unchecked)]
    Log(u8),
}

/// A generic state whose initial variant holds a `T` built from `Default`,
/// with a named failure variant.
#[derive(State, Clone, Debug, PartialEq)]
pub enum Slot<T>
where
    T: Clone + Default,
{
    /// Empty, with a default value.
    #[state(initial)]
    Empty {
        /// The default.
        value: T,
        /// A count.
        count: usize,
    },
    /// Full.
    Full(T),
    /// Gone.
    #[state(terminal, failure)]
    Broken {
        /// The failure.
        failure: Failure<SlotCommand<T>, Slot<T>>,
    },
}

/// The commands of [`Slot`], generic as well.
#[derive(Command, Clone, Debug, PartialEq)]
#[command(state = Slot<T>)]
pub enum SlotCommand<T>
where
    T: Clone + Default,
{
    /// Fills the slot.
    #[command(from(Empty), to(Full))]
    Fill(T),
    /// Empties it.
    #[command(from(Full), to(Empty))]
    Drain,
}

/// Renamed by serde, which the derives ignore.
#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Light {
    #[state(initial)]
    #[serde(rename = "x")]
    RedSignal,
    GreenSignal {
        seconds: u16,
    },
    #[state(terminal)]
    #[state(failure)]
    Broken(machine_core::Failure<LightCommand, Self>),
}

/// Commands without a state type: no table.
#[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum LightCommand {
    Switch,
    #[serde(rename = "y")]
    Repair {
        by: String,
    },
    #[command(unchecked)]
    Paint(u8),
}

/// A one-variant state whose only variant is the initial one.
#[derive(State, Debug, PartialEq)]
pub(crate) enum Single {
    #[state(initial, terminal)]
    Only(u8, String),
}

/// A generic command with a lifetime, whose table names no state: every
/// command unchecked.
#[derive(Command, Debug)]
#[command(state = Single)]
pub enum Borrowed<'a, T: Sized> {
    /// Says something.
    #[command(unchecked)]
    Say(&'a str),
    /// Holds a `T`.
    #[command(unchecked)]
    Hold(T),
}

/// A state enum with an initial tuple variant holding a generic type.
#[derive(State, Debug, PartialEq)]
pub enum Wrapped<T> {
    /// Starts with `Vec::new()`.
    #[state(initial)]
    Start(Vec<T>, Option<T>),
}

/// A generic initial field without a declared `Default` bound: the derive
/// adds `T: Default` to the `State` impl only.
#[derive(State, Debug, PartialEq)]
pub enum Boxed<T> {
    /// Starts with `T::default()`.
    #[state(initial)]
    Start(T),
    /// Holds no value.
    Empty,
}

#[test]
fn kinds_match_variants() {
    assert_eq!(Order::Draft.kind(), OrderKind::Draft);
    let items = vec![Item::default()];
    let pending = Order::Pending { items: items.clone(), placed_at: 1 };
    assert_eq!(pending.kind(), OrderKind::Pending);
    assert_eq!(Order::Delivered(1, String::new()).kind(), OrderKind::Delivered);
    assert_eq!(OrderCommand::Place { items }.kind(), OrderCommandKind::Place);
    assert_eq!(OrderCommand::Abandon(String::new()).kind(), OrderCommandKind::Abandon);
    assert_eq!(Light::GreenSignal { seconds: 3 }.kind(), LightKind::GreenSignal);
    assert_eq!(LightCommand::Paint(1).kind(), LightCommandKind::Paint);
    assert_eq!(Slot::Full(3_u8).kind(), SlotKind::Full);
    assert_eq!(SlotCommand::Fill(3_u8).kind(), SlotCommandKind::Fill);
    assert_eq!(Borrowed::<u8>::Say("hi").kind(), BorrowedKind::Say);
    assert_eq!(Single::Only(1, String::new()).kind(), SingleKind::Only);
}

#[test]
fn all_is_in_declaration_order() {
    use OrderKind::{Cancelled, Confirmed, Delivered, Draft, Failed, Pending};
    assert_eq!(OrderKind::ALL, &[Draft, Pending, Confirmed, Cancelled, Delivered, Failed]);
    assert_eq!(<OrderKind as Kind>::ALL, OrderKind::ALL);
    assert_eq!(
        OrderCommandKind::ALL,
        &[
            OrderCommandKind::Place,
            OrderCommandKind::Confirm,
            OrderCommandKind::Cancel,
            OrderCommandKind::Abandon,
            OrderCommandKind::Print,
            OrderCommandKind::Log,
        ]
    );
    assert_eq!(LightKind::ALL, &[LightKind::RedSignal, LightKind::GreenSignal, LightKind::Broken]);
    assert!(OrderKind::Draft < OrderKind::Failed);
}

#[test]
fn names_are_the_variants_as_written() {
    const DRAFT: &str = OrderKind::Draft.as_str();
    assert_eq!(DRAFT, "Draft");
    assert_eq!(Kind::as_str(OrderKind::Pending), "Pending");
    // serde's renames do not change the kind's name.
    assert_eq!(LightKind::RedSignal.as_str(), "RedSignal");
    assert_eq!(LightCommandKind::Repair.as_str(), "Repair");
    assert_eq!(OrderKind::Cancelled.to_string(), "Cancelled");
    assert_eq!(format!("[{:>9}]", OrderKind::Draft), "[    Draft]");
    assert_eq!(OrderKind::from_name("Confirmed"), Some(OrderKind::Confirmed));
    assert_eq!(OrderKind::from_name("confirmed"), None);
    assert_eq!(LightKind::from_name("x"), None);
    assert_eq!(SlotCommandKind::from_name("Drain"), Some(SlotCommandKind::Drain));
    for kind in OrderCommandKind::ALL {
        assert_eq!(OrderCommandKind::from_name(kind.as_str()), Some(*kind));
    }
}

#[test]
fn names_of_state_types() {
    assert_eq!(Order::NAME, "orders");
    assert_eq!(Light::NAME, "Light");
    assert_eq!(<Slot<u8>>::NAME, "Slot");
    assert_eq!(Single::NAME, "Single");
}

#[test]
fn initial_states() {
    assert_eq!(Order::initial(), Order::Draft);
    assert_eq!(Light::initial(), Light::RedSignal);
    assert_eq!(Slot::<String>::initial(), Slot::Empty { value: String::new(), count: 0 });
    assert_eq!(Single::initial(), Single::Only(0, String::new()));
    assert_eq!(Wrapped::<String>::initial(), Wrapped::Start(Vec::new(), None));
    assert_eq!(Boxed::<u16>::initial(), Boxed::Start(0));
    assert_eq!(Boxed::<Item>::Empty.kind(), BoxedKind::Empty);
}

#[test]
fn terminal_and_failure_flags() {
    let cancelled = Order::Cancelled { reason: "late".to_owned() };
    assert!(cancelled.is_terminal());
    assert!(Order::Delivered(2, "door".to_owned()).is_terminal());
    assert!(!Order::Draft.is_terminal());
    assert!(!Order::Draft.is_failure());
    assert!(Single::initial().is_terminal());
    assert!(!Single::initial().is_failure());
    assert!(!Wrapped::<u8>::initial().is_terminal());
    assert!(!Light::RedSignal.is_failure());
    assert_eq!(Order::TERMINAL, &[OrderKind::Cancelled, OrderKind::Delivered]);
    assert_eq!(Single::TERMINAL, &[SingleKind::Only]);
    assert!(Wrapped::<u8>::TERMINAL.is_empty());
}

fn failure<C, S>(command: C, previous: S) -> Failure<C, S> {
    Failure { command, previous: Box::new(previous), error: "out of stock".to_owned(), attempts: 1, failed_at: 7 }
}

#[test]
fn failure_states_round_trip() {
    let recorded = failure(OrderCommand::Confirm, Order::Draft);
    let state = Order::from_failure(recorded.clone());
    assert_eq!(state, Order::Failed(recorded.clone()));
    assert!(state.is_failure());
    assert!(!state.is_terminal());
    assert_eq!(state.kind(), OrderKind::Failed);
    assert_eq!(state.failure(), Some(&recorded));
    assert_eq!(Order::Draft.failure(), None);

    let recorded = failure(SlotCommand::Drain, Slot::Full(5_u8));
    let state = Slot::from_failure(recorded.clone());
    assert!(state.is_failure());
    assert!(state.is_terminal());
    assert_eq!(state.failure(), Some(&recorded));
    assert_eq!(Slot::Full(1_u8).failure(), None);

    let recorded = failure(LightCommand::Switch, Light::RedSignal);
    let state = Light::from_failure(recorded.clone());
    assert_eq!(state.failure(), Some(&recorded));
    assert!(state.is_failure());
}

#[test]
fn declared_edges() {
    use OrderKind::{Cancelled, Confirmed, Draft, Pending};
    let place = <OrderCommand as Transitions<Order>>::edge(OrderCommandKind::Place);
    let place = place.expect("Place declares edges");
    assert_eq!(place.from, &[Draft]);
    assert_eq!(place.to, &[Pending]);
    assert!(place.allows_from(Draft));
    assert!(!place.allows_from(Pending));
    let cancel = OrderCommand::edge(OrderCommandKind::Cancel).expect("Cancel declares edges");
    assert_eq!(cancel.from, &[Draft, Pending, Confirmed]);
    assert_eq!(cancel.to, &[Cancelled]);
    assert_eq!(OrderCommand::edge(OrderCommandKind::Print), None);
    assert_eq!(OrderCommand::edge(OrderCommandKind::Log), None);

    let fill = <SlotCommand<u8> as Transitions<Slot<u8>>>::edge(SlotCommandKind::Fill).expect("Fill declares edges");
    assert_eq!(fill.from, &[SlotKind::Empty]);
    assert_eq!(fill.to, &[SlotKind::Full]);

    assert_eq!(<Borrowed<'_, u8> as Transitions<Single>>::edge(BorrowedKind::Say), None);
}

#[test]
fn no_table_without_a_state_type() {
    for kind in LightCommandKind::ALL {
        assert_eq!(<LightCommand as Transitions<Light>>::edge(*kind), None);
        assert_eq!(<LightCommand as Transitions<Order>>::edge(*kind), None);
    }
}
