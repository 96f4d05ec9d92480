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
