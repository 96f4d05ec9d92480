//! The user's machine (types plus one pure function) and [`Instance`], which
//! runs it in memory with the same declared-table checks as the runner.

use crate::error::Error;
use crate::{Command, Kind, State, Transitions};

/// A state machine: its state and command types, its dependencies, its error,
/// and one pure transition function.
///
/// The transition gets everything it may use as arguments, so a unit test
/// drives it with mocked `deps` and plain values. It must not perform side
/// effects that cannot be repeated: under contention the runner may call it
/// several times for one command, and only the last call's result is saved.
pub trait Machine {
    /// The state enum (`#[derive(State)]`).
    type State: State;
    /// The command enum (`#[derive(Command)]`); its declared table, if any, is
    /// checked around every transition.
    type Command: Command + Transitions<Self::State>;
    /// What the transition may call: clocks, prices, stock checks. Usually
    /// `dyn YourDeps` over a trait mocked in tests, or `()`.
    type Deps: ?Sized + Send + Sync + 'static;
    /// The transition's own error (typically a `thiserror` enum).
    type Error: std::error::Error + Send + Sync + 'static;

    /// The name records are stored under; defaults to the state type's
    /// [`State::NAME`]. Changing it orphans stored records.
    const NAME: &'static str = <Self::State as State>::NAME;

    /// Computes the next state, or refuses with the machine's error.
    fn transition(deps: &Self::Deps, command: &Self::Command, state: &Self::State) -> Result<Self::State, Self::Error>;
}

/// Runs `command` on `state` between the declared-table checks: refused before
/// the transition when `state` is not in `from(..)`, refused after it when the
/// result is not in `to(..)` (a failure state is always accepted).
pub(crate) fn checked_transition<M: Machine>(
    deps: &M::Deps,
    command: &M::Command,
    state: &M::State,
) -> Result<M::State, Error<M::Error>> {
    let command_kind = command.kind();
    let edge = <M::Command as Transitions<M::State>>::edge(command_kind);
    if let Some(edge) = &edge
        && !edge.allows_from(state.kind())
    {
        return Err(Error::NotAllowed {
            machine: M::NAME,
            command: command_kind.as_str(),
            state: state.kind().as_str(),
        });
    }
    let next = M::transition(deps, command, state).map_err(Error::Rejected)?;
    if let Some(edge) = &edge
        && !next.is_failure()
        && !edge.allows_to(next.kind())
    {
        return Err(Error::Undeclared {
            machine: M::NAME,
            command: command_kind.as_str(),
            from: state.kind().as_str(),
            to: next.kind().as_str(),
        });
    }
    Ok(next)
}

/// One machine in memory, for a request or a unit test: no store, no retries.
///
/// The state changes only when the transition succeeds and passes the declared
/// table, exactly as with the [`Runner`](crate::Runner), so a unit test catches
/// undeclared edges before anything is persisted.
///
/// ```
/// use machine_core::prelude::*;
///
/// #[derive(State, Clone, Debug, PartialEq)]
/// enum Light { #[state(initial)] Red, Green }
///
/// #[derive(Command, Clone, Debug)]
/// #[command(state = Light)]
/// enum Switch {
///     #[command(from(Red), to(Green))]
///     Go,
/// }
///
/// struct Traffic;
/// impl Machine for Traffic {
///     type State = Light;
///     type Command = Switch;
///     type Deps = ();
///     type Error = std::convert::Infallible;
///     fn transition(_: &(), _: &Switch, _: &Light) -> Result<Light, Self::Error> {
///         Ok(Light::Green)
///     }
/// }
///
/// let mut light = Instance::<Traffic>::new(&(), Light::initial());
/// assert_eq!(light.handle(&Switch::Go).unwrap(), &Light::Green);
/// // `Go` is declared only from `Red`: refused, state unchanged.
/// assert!(matches!(light.handle(&Switch::Go), Err(Error::NotAllowed { .. })));
/// assert_eq!(light.state(), &Light::Green);
/// ```
pub struct Instance<'d, M: Machine> {
    deps: &'d M::Deps,
    state: M::State,
}

impl<'d, M: Machine> Instance<'d, M> {
    /// An instance in `state` that calls the transition with `deps`.
    pub fn new(deps: &'d M::Deps, state: M::State) -> Self {
        Self { deps, state }
    }

    /// Applies `command`: on success the new state replaces the old one and is
    /// returned; on any error the state is unchanged.
    pub fn handle(&mut self, command: &M::Command) -> Result<&M::State, Error<M::Error>> {
        self.state = checked_transition::<M>(self.deps, command, &self.state)?;
        Ok(&self.state)
    }

    /// The current state.
    pub fn state(&self) -> &M::State {
        &self.state
    }

    /// The current state, consuming the instance.
    pub fn into_state(self) -> M::State {
        self.state
    }
}

impl<M: Machine> std::fmt::Debug for Instance<'_, M>
where
    M::State: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance").field("machine", &M::NAME).field("state", &self.state).finish_non_exhaustive()
    }
}
