//! What the derive on a command enum provides: its kind and the declared
//! transition table the runner checks every transition against.

use crate::{Kind, State};

/// A command enum: usually `#[derive(Command)]`.
pub trait Command: Sized {
    /// The generated fieldless enum of this command's variants.
    type Kind: Kind;

    /// The variant this value is in. A plain `match`, free at run time.
    fn kind(&self) -> Self::Kind;
}

/// The declared edges of one command: the states it may run in and the
/// states it may produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge<K: 'static> {
    /// States the command may run in (`from(..)`).
    pub from: &'static [K],
    /// States the transition may produce (`to(..)`).
    pub to: &'static [K],
}

impl<K: Kind> Edge<K> {
    /// Whether the command may run in a state of kind `kind`.
    #[must_use]
    pub fn allows_from(&self, kind: K) -> bool {
        self.from.contains(&kind)
    }

    /// Whether the command may produce a state of kind `kind`.
    #[must_use]
    pub fn allows_to(&self, kind: K) -> bool {
        self.to.contains(&kind)
    }
}

/// The declared transition table of a command type for state type `S`.
///
/// `#[derive(Command)]` with `#[command(state = S)]` implements it from the
/// `from(..)`/`to(..)` attributes; without `state = ..` it implements it for
/// every state type with no edges, so nothing is checked. A hand-written
/// command type can opt out with an empty `impl Transitions<MyState> for MyCommand {}`.
pub trait Transitions<S: State>: Command {
    /// The declared edge of commands of kind `command`; `None` when the command
    /// is unchecked (`#[command(unchecked)]` or no table at all).
    fn edge(command: Self::Kind) -> Option<Edge<S::Kind>> {
        let _ = command;
        None
    }

    /// The command that fires when a record in a state of kind `state` is
    /// due ([`State::due`]): the `#[command(timer)]` command declared
    /// `from(..)` that state, or `None`.
    fn timer(state: S::Kind) -> Option<Self> {
        let _ = state;
        None
    }
}
