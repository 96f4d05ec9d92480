//! Derive macros for `machine-core`: `#[derive(State)]` and
//! `#[derive(Command)]`.
//!
//! Use them through `machine_core` (`use machine_core::{Command, State};`),
//! which re-exports both and holds the traits they implement; the generated
//! code names `::machine_core` and does not compile without it. The examples
//! with tests live in `machine_core`'s documentation.
//!
//! Both derives report every mistake of an input at once, each at the token
//! to change and with what to write instead, work with generic enums and any
//! other attributes (serde's included), and generate code that compiles
//! without warnings under `#![deny(warnings, missing_docs, clippy::pedantic)]`.
//! They only read their input: nothing is written to disk while expanding.

mod ast;
mod attr;
mod ctxt;
mod expand;
mod valid;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `machine_core::State` for an enum with one variant per state.
///
/// # What it generates
///
/// For `enum Order { .. }` (any visibility, any generics):
///
/// - `enum OrderKind`, with the enum's visibility and one fieldless variant
///   per state in declaration order, deriving `Clone`, `Copy`, `PartialEq`,
///   `Eq`, `PartialOrd`, `Ord`, `Hash` and `Debug`; inherent
///   `OrderKind::ALL` (every kind, in declaration order) and
///   `OrderKind::as_str()` (the variant's name as written, `"Pending"`);
///   `Display` (the same name, honouring width and alignment); and
///   `machine_core::Kind` (which adds `from_name`).
/// - `impl machine_core::State for Order`: `Kind = OrderKind`, `NAME`,
///   `kind()` (a plain `match`), `initial()`, `is_terminal()`,
///   `is_failure()` and `TERMINAL` (the terminal kinds, in declaration order);
///   with `#[state(due)]` fields also `due()` (a plain `match`: the marked
///   field's `machine_core::timers::Due::deadline()` for its variant, `None`
///   for the others) and `DUE` (the kinds of the variants with a due field,
///   in declaration order). Without any, both keep the trait's defaults
///   (never due).
/// - With a `#[state(failure)]` variant, `impl machine_core::FailureState for
///   Order` (`Command = C` and `Error = E` from the variant's
///   `Failure<C, S, E>`, `E` being `String` when written `Failure<C, S>`;
///   `from_failure`, `failure()`), which the runner needs to record and
///   recover failures.
/// - For each variant, with the enum's visibility and generics: an owned
///   struct named variant then enum (`PendingOrder { items, placed_at }`,
///   a tuple or unit struct for tuple or unit variants) with `From` into the
///   enum, a handler's next state; and a view of its fields by reference
///   (`PendingOrderRef<'_> { items: &Vec<Item>, placed_at: &u64 }`), a
///   handler's current state. `#[derive(Command)]`'s handler traits use
///   them; the enum itself, and so its serde encoding, is left as written.
///   When a variant's fields leave some of the enum's generic parameters
///   unused, the owned struct gets a last field `_marker: PhantomData`.
///
/// # Attributes
///
/// On the enum:
///
/// - `#[state(name = "orders")]`: the name records of this type are stored
///   under (`State::NAME`), a non-empty string literal. Default: the enum's
///   name (`"Order"`). Renaming it orphans stored records.
///
/// On variants (keys may be combined, `#[state(initial, terminal)]`, or
/// spread over several attributes):
///
/// - `#[state(initial)]`: the state a new record starts in; exactly one
///   variant has it. `initial()` builds it with every field
///   `Default::default()`; a field whose type mentions a type parameter adds
///   `FieldType: Default` to the generated impls' `where` clause.
/// - `#[state(terminal)]`: `is_terminal()` is true for it and its kind is in
///   `TERMINAL`; any number of variants.
/// - `#[state(failure)]`: at most one variant, not the initial one, holding
///   exactly one field of type `Failure<C, S>` or `Failure<C, S, E>`:
///   `Failed(Failure<OrderCommand, Order>)` or `Failed { failure:
///   Failure<OrderCommand, Order, PaymentFault> }`, where `C` is the command
///   type, `S` this enum, spelt as its name (`Order`, `Order<T>`,
///   `crate::Order`) or `Self`, and `E` the recorded error (the text of the
///   error when left out); `Failure` may be written with a path
///   (`machine_core::Failure<C, S>`).
///
/// On fields:
///
/// - `#[state(due)]`: the field holds when a record in this state is due,
///   `Pending { items: Vec<Item>, #[state(due)] expires: Deadline }` or
///   `Reminded(#[state(due)] Option<Deadline>)`. Its type implements
///   `machine_core::timers::Due`: `Deadline`, or `Option<Deadline>` for a
///   state due only sometimes (another type is rustc's "`u64` cannot hold a
///   `#[state(due)]` deadline" at the field's type); a type that mentions a
///   type parameter adds `FieldType: Due` to the generated impls' `where`
///   clause. At most one field per variant, and none in the failure variant.
///   The command that fires then is the `#[command(timer)]` one declared
///   `from(..)` this variant; `machine_core::timers::Sweeper` sends it.
///
/// # Errors
///
/// Every mistake of an input is reported in one build, each at the token to
/// change: a struct or union; an enum without variants; no or two `initial`
/// variants; two `failure` variants; `initial` with `failure`; a failure
/// variant without exactly one `Failure<C, S>` field, or whose `S` is not
/// this enum; an unknown key (with the expected keys and a likely typo's
/// fix), a repeated key, a missing comma; a flag given a value; `name` that
/// is not a non-empty string literal, or on a variant or a field; `initial`,
/// `terminal` or `failure` on the enum or on a field; `due` on the enum or
/// on a variant; two `due` fields in one variant; `due` in the failure
/// variant.
#[proc_macro_derive(State, attributes(state))]
pub fn derive_state(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::state::derive(&input).into()
}

/// Derives `machine_core::Command` for an enum with one variant per command,
/// and with `#[command(state = S)]` the declared transition table.
///
/// # What it generates
///
/// For `enum OrderCommand { .. }` (any visibility, any generics):
///
/// - `enum OrderCommandKind`, exactly like the kind enum of
///   `#[derive(State)]` (`ALL`, `as_str()`, `Display`, `machine_core::Kind`).
/// - `impl machine_core::Command for OrderCommand`: `Kind =
///   OrderCommandKind` and `kind()` (a plain `match`).
/// - With `#[command(state = Order)]`: `impl machine_core::Transitions<Order>
///   for OrderCommand`, whose `edge(kind)` returns the declared `Edge { from,
///   to }` of each command, and `None` for `unchecked` ones; and with
///   `#[command(timer)]` commands, `timer(state_kind)` (a plain `match`):
///   `Some` of the timer command whose `from(..)` lists that state, its
///   fields each `Default::default()`, `None` for other states. Beside it, a
///   constant checks at compile time that the timers match the state's
///   `#[state(due)]` fields (`State::DUE`): every due state has a timer
///   command, and every state a timer runs from has a due field; a mismatch
///   is a compile error naming the state. When the state type names the
///   command enum's generic parameters, the constant sits in `timer` and is
///   evaluated when it is instantiated (by the sweeper,
///   `machine_core::timers::check` or the declared diagram) rather than by
///   `cargo check`.
/// - Without `state = ..`: `impl<S: machine_core::State>
///   machine_core::Transitions<S> for OrderCommand` with no edges, so any
///   state type accepts the command unchecked.
/// - With `state = Order` and at least one command declaring edges, the
///   handler traits `OrderCommandHandlers` (for a `Machine`) and
///   `OrderCommandAsyncHandlers` (for an `AsyncMachine`, each method
///   returning a `Send` future): one method per declared command and
///   from-state, `place_draft(deps, items, from: DraftOrderRef<'_>) ->
///   Result<To<Order, order_command::Place>, Self::Error>`, taking the command's
///   fields and the from-state's fields by reference; one method per
///   `unchecked` command taking the whole state; and a provided
///   `dispatch(deps, command, state)` matching every declared pair, which
///   the machine's transition calls; it returns any other pair (only a
///   direct call can pass one: the table refuses them first) as
///   `machine_core::NotDeclared` converted into the machine's error, which
///   must therefore implement `From<NotDeclared>`, and never panics.
///   `To<Order, order_command::Place>` only accepts
///   (`To::new`) the owned structs of the states `Place`'s `to(..)` lists:
///   the markers of module `order_command` implement
///   `machine_core::Declares` for exactly those. The state type must be
///   written as a path ending in the state enum's name (not an alias): the
///   structs are named after it.
///
/// # Attributes
///
/// On the enum:
///
/// - `#[command(state = Order)]`: the state type (any type, such as
///   `Order<T>`) the `from`/`to` lists name variants of. With it, every
///   command must declare its edges or opt out. A generic state type's
///   `State` impl may carry bounds (such as `T: Default` for fields of its
///   initial variant); the command enum then needs the same bounds, declared
///   on it (`enum SlotCommand<T: Default>`).
///
/// On variants:
///
/// - `#[command(from(Draft, Pending), to(Cancelled))]`: the state variants
///   the command may run in and may produce; both lists, non-empty, each
///   state once, written as bare variant names. A name that is not a variant
///   of the state type is a compile error pointing at it.
/// - `#[command(unchecked)]`: leaves the command out of the table (the
///   runner then checks nothing for it); not together with `from`/`to`.
/// - `#[command(timer, from(Pending), to(Expired))]`: the command fired
///   (by `machine_core::timers::Sweeper`, through the runner like any
///   command) when a record in one of its `from(..)` states is due. It
///   carries no data of its own: a unit variant, or fields whose types
///   implement `Default`, built with `Default::default()` (a field type that
///   mentions a type parameter adds `FieldType: Default` to the
///   `Transitions` impl's `where` clause). Each state is in the `from(..)` of
///   at most one timer. Needs `state = ..` and `from`/`to`; handlers and
///   `dispatch` treat it like any declared command.
///
/// # Errors
///
/// Every mistake of an input is reported in one build, each at the token to
/// change: a struct or union; an enum without variants; with `state = ..`, a
/// command with neither `from`/`to` nor `unchecked`; `from` without `to` or the
/// reverse; `from`/`to` without `state = ..`; `unchecked` with `from`/`to`;
/// an empty list; a state listed twice; an entry that is not a bare variant
/// name (a path, a string, fields); a state type written as a string; an
/// unknown or repeated key, a missing comma; a flag given a value; `state` on
/// a variant; `from`, `to`, `unchecked` or `timer` on the enum; `timer`
/// without `state = ..` or with `unchecked`; a state in the `from(..)` of two
/// timers. A state name that is not a variant of the state type is rustc's
/// "no variant named `Drat`" error, pointing at the name in the attribute; a
/// due state without a timer, or a timer from a state without a due field,
/// is a constant's "evaluation panicked: `Order::Pending` has a
/// `#[state(due)]` field, but no `#[command(timer)]` command .." at the
/// state type or at the state's name in `from(..)`; a timer's field without
/// `Default` is rustc's error at the field's type.
#[proc_macro_derive(Command, attributes(command))]
pub fn derive_command(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::command::derive(&input).into()
}
