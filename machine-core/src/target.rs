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

use std::fmt;
use std::marker::PhantomData;

use crate::State;

/// A command with declared edges, as a type: the marker `#[derive(Command)]`
/// generates in the command's module (`order_command::Place`).
pub trait Targets {
    /// The state type the command's `to(..)` names variants of.
    type State: State;
}

/// `Self`, a command's marker, declares the state variant `V` in its
/// `to(..)`; implemented by `#[derive(Command)]` for each declared target.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not declare `{V}` in its `to(..)`",
    label = "not a declared target of this command",
    note = "return one of the states the command's `#[command(from(..), to(..))]` lists (the \
            implementations below), or add this state to its `to(..)`"
)]
pub trait Declares<V>: Targets {}

/// The next state produced by command `C`'s handler: one of the variants its
/// `to(..)` declares, which [`To::new`] checks at compile time.
///
/// A plain wrapper around the state: building and unwrapping it costs
/// nothing at run time.
#[must_use]
pub struct To<C: Targets> {
    /// The state, already converted into the enum.
    state: C::State,
    /// Which command produced it; `fn() -> C` keeps `To` `Send` and `Sync`
    /// whatever the marker is.
    command: PhantomData<fn() -> C>,
}

impl<C: Targets> To<C> {
    /// The next state `variant` (an owned variant struct such as
    /// `order::Pending { .. }`), accepted only when `C` declares it.
    pub fn new<V>(variant: V) -> Self
    where
        C: Declares<V>,
        V: Into<C::State>,
    {
        Self { state: variant.into(), command: PhantomData }
    }

    /// The state, for the generated dispatch.
    pub fn into_state(self) -> C::State {
        self.state
    }

    /// The state, by reference (for tests of one handler).
    #[must_use]
    pub fn state(&self) -> &C::State {
        &self.state
    }
}

impl<C: Targets> fmt::Debug for To<C>
where
    C::State: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("To").field(&self.state).finish()
    }
}

impl<C: Targets> Clone for To<C>
where
    C::State: Clone,
{
    fn clone(&self) -> Self {
        Self { state: self.state.clone(), command: PhantomData }
    }
}

impl<C: Targets> PartialEq for To<C>
where
    C::State: PartialEq,
{
    fn eq(&self, other: &Self) -> bool {
        self.state == other.state
    }
}
