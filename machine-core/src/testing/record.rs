//! What a suite remembers of each step: the kinds a transition went between,
//! or the kind of error it ended in. Kept in ordered sets, so everything drawn
//! or reported from it is the same on every run.

use crate::error::Error;
use crate::{AsyncMachine, Command, Kind, State};
use std::collections::BTreeSet;
use std::fmt;

/// The kind enum of machine `M`'s states (`OrderKind`).
pub type StateKind<M> = <<M as AsyncMachine>::State as State>::Kind;
/// The kind enum of machine `M`'s commands (`OrderCommandKind`).
pub type CommandKind<M> = <<M as AsyncMachine>::Command as Command>::Kind;
/// A [`Transition`] between machine `M`'s kinds.
pub type TransitionOf<M> = Transition<StateKind<M>, CommandKind<M>>;

/// How a step that produced no state ended.
///
/// The order of the variants is the order diagrams and reports list them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The transition returned the machine's own error ([`Error::Rejected`]).
    Rejected,
    /// The declared table does not allow the command in that state
    /// ([`Error::NotAllowed`]); the transition did not run.
    NotAllowed,
    /// The transition produced a state its command does not declare
    /// ([`Error::Undeclared`]): a bug in the transition.
    Undeclared,
    /// The transition panicked. Only exploration reports this; in a case a
    /// panic fails the test.
    Panicked,
    /// Any other error (a run without a store never returns one).
    Other,
}

impl ErrorKind {
    /// The kind of `error`.
    #[must_use]
    pub fn of<E>(error: &Error<E>) -> Self {
        match error {
            Error::Rejected(_) | Error::FailureRecorded { .. } => Self::Rejected,
            Error::NotAllowed { .. } => Self::NotAllowed,
            Error::Undeclared { .. } => Self::Undeclared,
            Error::Panicked { .. } => Self::Panicked,
            _ => Self::Other,
        }
    }

    /// The words diagrams and reports use: `"rejected"`, `"not allowed"`, …
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::NotAllowed => "not allowed",
            Self::Undeclared => "undeclared",
            Self::Panicked => "panicked",
            Self::Other => "error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One transition between kinds: from a state kind, by a command kind, to a
/// state kind or an error.
///
/// Ordered by `from`, then `command`, then `outcome` (states before errors),
/// each in declaration order, which is the order diagrams list them in.
///
/// ```
/// use machine_core::testing::{ErrorKind, Transition};
/// # use machine_core::{Command, State};
/// # #[derive(State)] enum Light { #[state(initial)] Red, Green }
/// # #[derive(Command)] #[command(state = Light)]
/// # enum Switch { #[command(from(Red), to(Green))] Go }
///
/// let go = Transition { from: LightKind::Red, command: SwitchKind::Go, outcome: Ok(LightKind::Green) };
/// assert_eq!(go.to_string(), "Red --Go--> Green");
/// let refused = Transition { outcome: Err(ErrorKind::NotAllowed), ..go };
/// assert_eq!(refused.to_string(), "Red --Go--> ✗ not allowed");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Transition<S, C> {
    /// The kind of the state the command ran in.
    pub from: S,
    /// The command's kind.
    pub command: C,
    /// The kind of the state it produced, or how it failed (the state then
    /// stays as it was).
    pub outcome: Result<S, ErrorKind>,
}

impl<S: Kind, C: Kind> Transition<S, C> {
    /// Whether the command produced a state.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.outcome.is_ok()
    }
}

impl<S: Kind, C: Kind> fmt::Display for Transition<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} --{}--> ", self.from.as_str(), self.command.as_str())?;
        match self.outcome {
            Ok(to) => f.write_str(to.as_str()),
            Err(error) => write!(f, "✗ {error}"),
        }
    }
}

/// Everything the cases exercised: transitions, and the distinct states and
/// commands they used (for exploration), in the order first seen.
pub(crate) struct Recorded<M: AsyncMachine> {
    pub(crate) transitions: BTreeSet<TransitionOf<M>>,
    pub(crate) states: Vec<M::State>,
    pub(crate) commands: Vec<M::Command>,
    state_keys: BTreeSet<String>,
    command_keys: BTreeSet<String>,
}

impl<M: AsyncMachine> Default for Recorded<M> {
    fn default() -> Self {
        Self {
            transitions: BTreeSet::new(),
            states: Vec::new(),
            commands: Vec::new(),
            state_keys: BTreeSet::new(),
            command_keys: BTreeSet::new(),
        }
    }
}

impl<M: AsyncMachine> Recorded<M>
where
    M::State: Clone + fmt::Debug,
    M::Command: Clone + fmt::Debug,
{
    /// Remembers `state` unless an equal one (by its `Debug` text) was seen.
    pub(crate) fn state(&mut self, state: &M::State) {
        if self.state_keys.insert(format!("{state:?}")) {
            self.states.push(state.clone());
        }
    }

    /// Remembers `command` unless an equal one (by its `Debug` text) was seen.
    pub(crate) fn command(&mut self, command: &M::Command) {
        if self.command_keys.insert(format!("{command:?}")) {
            self.commands.push(command.clone());
        }
    }
}
