//! What the generated handlers return: a state the compiler has checked
//! against the command's `to(..)` list, so a transition written with the
//! handler traits of `#[derive(Command)]` cannot produce an undeclared state
//! ([`Error::Undeclared`](crate::Error::Undeclared) never happens for it).
//!
//! The derives supply both halves of the proof: `#[derive(State)]` gives
//! every state variant an owned struct (`order::Pending`, converted into the
//! enum), and `#[derive(Command)]` gives every command with declared edges a
//! marker type (`order_command::Place`) that [`Declares`] each struct its
//! `to(..)` names. [`To::new`] takes only those.
//!
//! The generated `dispatch` matches the declared pairs only; any other pair
//! (which the declared table refuses before a transition runs, so only a
//! direct call can pass one) is returned as a [`NotDeclared`] error, never a
//! panic.

use std::fmt;
use std::marker::PhantomData;

/// A command passed to a generated `dispatch` in a state its `from(..)` does
/// not list: the refusal [`Error::NotAllowed`](crate::Error::NotAllowed)
/// reports when the declared table is checked first, as it always is in the
/// runner, decisions and [`Instance`](crate::Instance). Only a direct call of
/// the transition can meet it.
///
/// The generated `dispatch` returns it through the machine's own error,
/// which converts from it (`Self::Error: From<NotDeclared>`), typically with
/// a variant `#[error(transparent)] NotDeclared(#[from] NotDeclared)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NotDeclared {
    /// The command's kind (`"Confirm"`).
    pub command: &'static str,
    /// The state's kind (`"Draft"`).
    pub state: &'static str,
}

impl fmt::Display for NotDeclared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "command {} is not declared from state {}", self.command, self.state)
    }
}

impl std::error::Error for NotDeclared {}

/// A machine error that can hold a [`NotDeclared`]: what the generated
/// `dispatch` requires of `Self::Error`. Implemented for every type that
/// converts from it (`NotDeclared` itself included); never implement it by
/// hand.
#[diagnostic::on_unimplemented(
    message = "the machine's error `{Self}` cannot hold `machine_core::NotDeclared`, which the generated \
               `dispatch` returns for a command in a state its `from(..)` does not list",
    label = "`{Self}` does not implement `From<machine_core::NotDeclared>`",
    note = "add a variant to the error, `#[error(transparent)] NotDeclared(#[from] machine_core::NotDeclared)`, \
            or, for handlers that never fail, use `type Error = machine_core::NotDeclared;`"
)]
pub trait FromNotDeclared: Sized {
    /// `error`, as this error.
    fn from_not_declared(error: NotDeclared) -> Self;
}

impl<E: From<NotDeclared>> FromNotDeclared for E {
    #[inline]
    fn from_not_declared(error: NotDeclared) -> Self {
        error.into()
    }
}

/// `Self`, a command's marker (`order_command::Place`), declares the state
/// variant `V` in its `to(..)`; implemented by `#[derive(Command)]` for each
/// declared target.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not declare `{V}` in its `to(..)`",
    label = "not a declared target of this command",
    note = "return one of the states the command's `#[command(from(..), to(..))]` lists (the \
            implementations below), or add this state to its `to(..)`"
)]
pub trait Declares<V> {}

/// The next state `S` produced by the handler of command `C` (its marker):
/// one of the variants its `to(..)` declares, which [`To::new`] checks at
/// compile time.
///
/// The state type is a parameter rather than something the marker names, so
/// a public command enum over a private state type still compiles.
///
/// A plain wrapper around the state: building and unwrapping it costs
/// nothing at run time.
#[must_use]
pub struct To<S, C> {
    /// The state, already converted into the enum.
    state: S,
    /// Which command produced it; `fn() -> C` keeps `To` `Send` and `Sync`
    /// whatever the marker is.
    command: PhantomData<fn() -> C>,
}

impl<S, C> To<S, C> {
    /// The next state `variant` (an owned variant struct such as
    /// `order::Pending { .. }`), accepted only when `C` declares it.
    #[inline]
    pub fn new<V>(variant: V) -> Self
    where
        C: Declares<V>,
        V: Into<S>,
    {
        Self { state: variant.into(), command: PhantomData }
    }

    /// The state, for the generated dispatch.
    #[inline]
    pub fn into_state(self) -> S {
        self.state
    }

    /// The state, by reference (for tests of one handler).
    #[must_use]
    #[inline]
    pub fn state(&self) -> &S {
        &self.state
    }
}

impl<S: fmt::Debug, C> fmt::Debug for To<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("To").field(&self.state).finish()
    }
}

impl<S: Clone, C> Clone for To<S, C> {
    fn clone(&self) -> Self {
        Self { state: self.state.clone(), command: PhantomData }
    }
}

impl<S: PartialEq, C> PartialEq for To<S, C> {
    fn eq(&self, other: &Self) -> bool {
        self.state == other.state
    }
}
