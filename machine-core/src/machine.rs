//! The user's machine (types plus one pure function) and [`Instance`], which
//! runs it in memory with the same declared-table checks as the runner.

use crate::error::Error;
use crate::evolution::Migration;
use crate::{Command, Edge, FailureState, Kind, State, Transitions};
use std::future::Future;

/// A state machine: its state and command types, its dependencies, its error,
/// and one pure transition function.
///
/// The transition gets everything it may use as arguments, so a unit test
/// drives it with mocked `deps` and plain values. It must not perform side
/// effects that cannot be repeated: under contention the runner may call it
/// several times for one command, and only the last call's result is saved.
///
/// When the dependencies are async (a payment client, an HTTP call, another
/// database), implement [`AsyncMachine`] instead. Every `Machine` is an
/// `AsyncMachine`, so everything that runs machines takes either. A
/// `Machine`'s transition is taken to be quick: the stores run it while
/// they hold the record (the memory store's lock on the record's shard,
/// SQLite's write lock), so one that blocks on something slow holds up
/// every writer of that shard or file meanwhile, and one that blocks on a
/// read of the same store (through a runtime handle, say) may wait on
/// itself.
pub trait Machine {
    /// The state enum (`#[derive(State)]`).
    type State: State + Send + Sync;
    /// The command enum (`#[derive(Command)]`); its declared table, if any, is
    /// checked around every transition.
    type Command: Command + Transitions<Self::State> + Send + Sync;
    /// What the transition may call: clocks, prices, stock checks. Usually
    /// `dyn YourDeps` over a trait mocked in tests, or `()`.
    type Deps: ?Sized + Send + Sync + 'static;
    /// The transition's own error (typically a `thiserror` enum).
    type Error: std::error::Error + Send + Sync + 'static;

    /// The name records are stored under; defaults to the state type's
    /// [`State::NAME`]. Changing it orphans stored records.
    const NAME: &'static str = <Self::State as State>::NAME;

    /// Whether this machine's records are sensitive (ids that are personal
    /// data, say): with the `observe` feature, spans and events about them
    /// name no record id and carry no error or panic text. Metrics never
    /// carry either. Errors returned to the caller are not affected.
    const SENSITIVE: bool = false;

    /// The version of the stored shape of this machine's states and
    /// commands, stored with every write (1 until it first changes). Raise
    /// it by one whenever a change would stop older stored JSON from
    /// decoding, and declare the step in [`MIGRATIONS`](Machine::MIGRATIONS).
    /// Records written by a newer version than the running code are
    /// refused, never overwritten. See [`evolution`](crate::evolution).
    const SCHEMA: u32 = 1;

    /// The steps that carry states and commands stored at older schema
    /// versions forward, one version at a time, applied on every read of an
    /// older payload. Check them with [`evolution::check`](crate::evolution::check).
    const MIGRATIONS: &'static [Migration] = &[];

    /// Computes the next state, or refuses with the machine's error.
    fn transition(deps: &Self::Deps, command: &Self::Command, state: &Self::State) -> Result<Self::State, Self::Error>;
}

/// A state machine whose transition awaits its dependencies.
///
/// The same contract as [`Machine`], with an `async fn transition`: it may
/// await deps (never blocking a runtime thread, on a current-thread runtime
/// too) but must still have no effect that cannot be repeated, because the
/// runner may run it more than once for one command (after a lost race, and
/// for every command of a coalesced group that is reapplied). Start payments,
/// send emails and call other services after the commit, from the caller or
/// a processor, never from here.
///
/// Implemented for every [`Machine`]; the runner, decisions, [`Instance`] and
/// the testing suite take any `AsyncMachine`.
///
/// ```
/// use machine_core::AsyncMachine;
/// use machine_core::prelude::*;
///
/// #[derive(State, Clone, Debug, PartialEq)]
/// enum Quote { #[state(initial)] Empty, Priced(u64) }
///
/// #[derive(Command, Clone, Debug)]
/// #[command(state = Quote)]
/// enum Price { #[command(from(Empty, Priced), to(Priced))] Refresh }
///
/// trait Prices: Send + Sync {
///     fn latest(&self) -> impl std::future::Future<Output = u64> + Send;
/// }
/// struct Fixed;
/// impl Prices for Fixed {
///     async fn latest(&self) -> u64 { 42 }
/// }
///
/// struct Quotes;
/// impl AsyncMachine for Quotes {
///     type State = Quote;
///     type Command = Price;
///     type Deps = Fixed;
///     type Error = std::convert::Infallible;
///     async fn transition(deps: &Fixed, _: &Price, _: &Quote) -> Result<Quote, std::convert::Infallible> {
///         Ok(Quote::Priced(deps.latest().await))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let mut quote = Instance::<Quotes>::new(&Fixed, Quote::initial());
/// assert_eq!(quote.handle_async(&Price::Refresh).await.unwrap(), &Quote::Priced(42));
/// # }
/// ```
pub trait AsyncMachine {
    /// The state enum (`#[derive(State)]`).
    type State: State + Send + Sync;
    /// The command enum (`#[derive(Command)]`).
    type Command: Command + Transitions<Self::State> + Send + Sync;
    /// What the transition may call and await.
    type Deps: ?Sized + Send + Sync + 'static;
    /// The transition's own error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The name records are stored under; defaults to the state type's
    /// [`State::NAME`].
    const NAME: &'static str = <Self::State as State>::NAME;

    /// Whether this machine's records are sensitive; see
    /// [`Machine::SENSITIVE`].
    const SENSITIVE: bool = false;

    /// Whether `transition` finishes without waiting on anything slow (no
    /// network, no disk): a store that admits one writer at a time (SQLite)
    /// may then hold its write lock from the load to the commit, so
    /// conflicts within the process cannot happen, and PostgreSQL keeps the
    /// load's pooled connection for the commit. True for every
    /// [`Machine`]; set it on an async machine whose awaits are quick
    /// (a slow one would keep the lock, or the connection, while it waits).
    const QUICK: bool = false;

    /// Whether this is a synchronous [`Machine`]: its transition never
    /// waits, so the runner may plan a command while an in-process store
    /// holds the record locked. Set by the implementation for every
    /// `Machine`; leave it alone in an `AsyncMachine`.
    #[doc(hidden)]
    const SYNCHRONOUS: bool = false;

    /// The schema version of stored states and commands; see
    /// [`Machine::SCHEMA`].
    const SCHEMA: u32 = 1;

    /// The steps from older schema versions; see [`Machine::MIGRATIONS`].
    const MIGRATIONS: &'static [Migration] = &[];

    /// Computes the next state, or refuses with the machine's error.
    fn transition(
        deps: &Self::Deps,
        command: &Self::Command,
        state: &Self::State,
    ) -> impl Future<Output = Result<Self::State, Self::Error>> + Send;
}

impl<M: Machine> AsyncMachine for M {
    type State = M::State;
    type Command = M::Command;
    type Deps = M::Deps;
    type Error = M::Error;
    const NAME: &'static str = <M as Machine>::NAME;
    const SENSITIVE: bool = <M as Machine>::SENSITIVE;
    const QUICK: bool = true;
    const SYNCHRONOUS: bool = true;
    const SCHEMA: u32 = <M as Machine>::SCHEMA;
    const MIGRATIONS: &'static [Migration] = <M as Machine>::MIGRATIONS;

    // Computed when polled, so the future holds nothing but the borrows.
    async fn transition(
        deps: &Self::Deps,
        command: &Self::Command,
        state: &Self::State,
    ) -> Result<Self::State, Self::Error> {
        <M as Machine>::transition(deps, command, state)
    }
}

/// A machine that records some of its transition errors as failure states
/// instead of refusing.
///
/// By default every transition error is a *refusal*: returned to the caller
/// as [`Error::Rejected`], the state unchanged, nothing written. That is what
/// business rules want ("room already held", "insufficient funds"): the
/// record stays valid and the next caller sees it as it was. A *failure* is
/// different: a technical fault the record should remember (the payment
/// gateway was down), kept as the machine's `#[state(failure)]` state with the
/// command and the previous state, so [`Runner::recover`](crate::Runner::recover)
/// can replay it later. [`failure`](RecordFailures::failure) says which errors
/// are failures and what to keep of them; the runner records them only when
/// built with [`record_failures`](crate::Runner::record_failures).
///
/// ```
/// use machine_core::prelude::*;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
/// enum Payment {
///     #[state(initial)]
///     Due,
///     Paid,
///     #[state(failure)]
///     Failed(Failure<Pay, Payment, Fault>),
/// }
///
/// #[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
/// #[command(state = Payment)]
/// enum Pay { #[command(from(Due), to(Paid))] Charge }
///
/// /// What is kept of a failure: a program can branch on it.
/// #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
/// enum Fault { GatewayDown }
///
/// #[derive(Debug, thiserror::Error)]
/// enum PayError {
///     #[error("card declined")]
///     Declined,
///     #[error("payment gateway unavailable")]
///     GatewayDown,
/// }
///
/// struct Payments;
/// impl Machine for Payments {
///     type State = Payment;
///     type Command = Pay;
///     type Deps = ();
///     type Error = PayError;
///     fn transition(_: &(), _: &Pay, _: &Payment) -> Result<Payment, PayError> {
///         Err(PayError::GatewayDown)
///     }
/// }
///
/// impl RecordFailures for Payments {
///     fn failure(error: &PayError) -> Option<Fault> {
///         match error {
///             PayError::Declined => None, // a refusal: nothing is written
///             PayError::GatewayDown => Some(Fault::GatewayDown),
///         }
///     }
/// }
/// ```
pub trait RecordFailures: AsyncMachine<State: FailureState<Command = Self::Command>> {
    /// `Some(what to keep)` when `error` is a failure to record, `None` when
    /// it is a refusal (returned, nothing written).
    fn failure(error: &Self::Error) -> Option<<Self::State as FailureState>::Error>;
}

/// The declared edge of a machine's command, if it has one.
type EdgeOf<M> = Option<Edge<<<M as AsyncMachine>::State as State>::Kind>>;

/// Refuses `command` before the transition when the declared table does not
/// allow it from `state`; returns the command's edge for [`check_to`].
fn check_from<M: AsyncMachine>(
    id: Option<&str>,
    command: &M::Command,
    state: &M::State,
) -> Result<EdgeOf<M>, Error<M::Error>> {
    let command_kind = command.kind();
    let edge = <M::Command as Transitions<M::State>>::edge(command_kind);
    if let Some(edge) = &edge
        && !edge.allows_from(state.kind())
    {
        return Err(Error::NotAllowed {
            machine: M::NAME,
            id: id.map(str::to_owned),
            command: command_kind.as_str(),
            state: state.kind().as_str(),
        });
    }
    Ok(edge)
}

/// Refuses a result the command's `to(..)` does not declare (a failure state
/// is always accepted).
fn check_to<M: AsyncMachine>(
    id: Option<&str>,
    edge: EdgeOf<M>,
    command: &M::Command,
    state: &M::State,
    next: M::State,
) -> Result<M::State, Error<M::Error>> {
    if let Some(edge) = &edge
        && !next.is_failure()
        && !edge.allows_to(next.kind())
    {
        return Err(Error::Undeclared {
            machine: M::NAME,
            id: id.map(str::to_owned),
            command: command.kind().as_str(),
            from: state.kind().as_str(),
            to: next.kind().as_str(),
        });
    }
    Ok(next)
}

/// Runs `command` on `state` between the declared-table checks, awaiting the
/// transition. A panic in the transition is caught and returned as
/// [`Error::Panicked`], so one bad command cannot take a shared worker (or
/// the caller's task) down with it.
pub(crate) async fn checked<M: AsyncMachine>(
    deps: &M::Deps,
    id: Option<&str>,
    command: &M::Command,
    state: &M::State,
) -> Result<M::State, Error<M::Error>> {
    let edge = check_from::<M>(id, command, state)?;
    let ran = crate::panic::catch(M::transition(deps, command, state)).await;
    after_transition::<M>(id, edge, command, state, ran)
}

/// The synchronous [`checked`], for [`Instance::handle`] and decisions over
/// sync machines; a panic is caught the same way.
pub(crate) fn checked_sync<M: Machine>(
    deps: &M::Deps,
    id: Option<&str>,
    command: &M::Command,
    state: &M::State,
) -> Result<M::State, Error<M::Error>> {
    let edge = check_from::<M>(id, command, state)?;
    let ran = crate::panic::catch_sync(|| <M as Machine>::transition(deps, command, state));
    after_transition::<M>(id, edge, command, state, ran)
}

/// What a transition's run (its result, or the message of its panic) means:
/// a refusal, a panic, or a next state that must pass `to(..)`.
fn after_transition<M: AsyncMachine>(
    id: Option<&str>,
    edge: EdgeOf<M>,
    command: &M::Command,
    state: &M::State,
    ran: Result<Result<M::State, M::Error>, String>,
) -> Result<M::State, Error<M::Error>> {
    match ran {
        Ok(result) => check_to::<M>(id, edge, command, state, result.map_err(Error::Rejected)?),
        Err(message) => Err(Error::Panicked {
            machine: M::NAME,
            id: id.map(str::to_owned),
            command: command.kind().as_str(),
            message,
        }),
    }
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
pub struct Instance<'d, M: AsyncMachine> {
    deps: &'d M::Deps,
    state: M::State,
}

impl<'d, M: AsyncMachine> Instance<'d, M> {
    /// An instance in `state` that calls the transition with `deps`.
    pub fn new(deps: &'d M::Deps, state: M::State) -> Self {
        Self { deps, state }
    }

    /// Applies `command`, awaiting the transition (for [`AsyncMachine`]s; a
    /// [`Machine`] can use the synchronous [`handle`](Instance::handle)). On
    /// success the new state replaces the old one and is returned; on any
    /// error the state is unchanged. A panic in the transition is returned
    /// as [`Error::Panicked`], as the runner does.
    pub async fn handle_async(&mut self, command: &M::Command) -> Result<&M::State, Error<M::Error>> {
        self.state = checked::<M>(self.deps, None, command, &self.state).await?;
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

impl<M: Machine> Instance<'_, M> {
    /// Applies `command`: on success the new state replaces the old one and is
    /// returned; on any error the state is unchanged.
    pub fn handle(&mut self, command: &M::Command) -> Result<&M::State, Error<M::Error>> {
        self.state = checked_sync::<M>(self.deps, None, command, &self.state)?;
        Ok(&self.state)
    }
}

impl<M: AsyncMachine> std::fmt::Debug for Instance<'_, M>
where
    M::State: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance").field("machine", &M::NAME).field("state", &self.state).finish_non_exhaustive()
    }
}
