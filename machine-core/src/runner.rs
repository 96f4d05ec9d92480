//! The load → handle → save loop: runs a machine's pure transition against a
//! store, detects concurrent writers by version, and retries by policy.

use crate::coalesce::Coalescer;
use crate::error::{Error, StoreError};
use crate::failure::Failure;
use crate::machine::{Machine, checked_transition};
use crate::retry::{Call, Clock, Finish, Policy, Retry, TokioClock};
use crate::store::{Commit, Record, Store, Write};
use crate::tries::Tries;
use crate::{FailureState, Kind, State};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The result of a command that was saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome<S> {
    /// The state after the command.
    pub state: S,
    /// The version it was saved at.
    pub version: u64,
    /// How many times the command ran before it was saved (1 without contention).
    pub attempts: u32,
}

/// A state with the version it was loaded at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<S> {
    /// The state.
    pub state: S,
    /// Its version (1 for a record's first write).
    pub version: u64,
}

/// One saved change of a record, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry<C, S> {
    /// The version this change wrote.
    pub version: u64,
    /// The command that produced it.
    pub command: C,
    /// The state before (`None` for the record's first write).
    pub before: Option<S>,
    /// The state written.
    pub state: S,
    /// When it was written, in milliseconds since the Unix epoch.
    pub at: u64,
}

/// Turns a failed transition into the failure state to save.
type RecordFailure<M> =
    fn(&<M as Machine>::Command, <M as Machine>::State, &<M as Machine>::Error, u32, u64) -> <M as Machine>::State;

/// Runs commands against persisted machines of type `M` in store `St`.
///
/// Each [`handle`](Runner::handle) loads the record, checks the declared
/// table, runs the transition, and saves the result only if nobody else wrote
/// the record since it was loaded. When somebody did, the retry policy decides
/// whether to reload and try again. A transition error is never retried.
///
/// `Runner` is cheap to clone (clones share the store, deps and policy) and is
/// `Send + Sync`, so one runner can serve a whole service.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use machine_core::prelude::*;
/// use machine_core::store::Memory;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
/// enum Counter { #[state(initial)] Zero, Counting(u64) }
///
/// #[derive(Command, Clone, Debug, Serialize, Deserialize)]
/// #[command(state = Counter)]
/// enum Count {
///     #[command(from(Zero, Counting), to(Counting))]
///     Add(u64),
/// }
///
/// struct Counters;
/// impl Machine for Counters {
///     type State = Counter;
///     type Command = Count;
///     type Deps = ();
///     type Error = std::convert::Infallible;
///     fn transition(_: &(), Count::Add(n): &Count, state: &Counter) -> Result<Counter, Self::Error> {
///         Ok(match state {
///             Counter::Zero => Counter::Counting(*n),
///             Counter::Counting(total) => Counter::Counting(total + n),
///         })
///     }
/// }
///
/// let runner = Runner::<Counters, _>::new(Memory::new(), ());
/// runner.handle("visits", &Count::Add(2)).await?;
/// let out = runner.handle("visits", &Count::Add(3)).await?;
/// assert_eq!((out.state, out.version, out.attempts), (Counter::Counting(5), 2, 1));
/// # Ok(()) }
/// ```
pub struct Runner<M: Machine, St> {
    store: Arc<St>,
    deps: Arc<M::Deps>,
    policy: Arc<dyn Policy>,
    record_failure: Option<RecordFailure<M>>,
    clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    coalescer: Option<Arc<Coalescer<M, St>>>,
    retry_clock: Arc<dyn Clock>,
    machine: PhantomData<fn() -> M>,
}

/// Where the loop loads and saves: the runner's store, or a transaction the
/// caller already holds (see `join`).
pub(crate) trait Session: Send {
    fn load(&mut self, machine: &str, id: &str) -> impl Future<Output = Result<Option<Record>, StoreError>> + Send;
    fn commit(&mut self, commit: Commit<'_>) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl<St: Store> Session for &St {
    fn load(&mut self, machine: &str, id: &str) -> impl Future<Output = Result<Option<Record>, StoreError>> + Send {
        Store::load(*self, machine, id)
    }

    fn commit(&mut self, commit: Commit<'_>) -> impl Future<Output = Result<(), StoreError>> + Send {
        Store::commit(*self, commit)
    }
}

/// What one attempt decided to save.
pub(crate) struct Planned<'c, M: Machine> {
    pub(crate) next: M::State,
    /// The transition's error when `next` is a recorded failure.
    pub(crate) rejected: Option<M::Error>,
    pub(crate) command: Cow<'c, str>,
}

impl<M, St> Runner<M, St>
where
    M: Machine,
    M::State: Serialize + DeserializeOwned + Send + Sync + 'static,
    M::Command: Serialize + DeserializeOwned + Send + Sync + 'static,
    St: Store,
{
    /// A runner over `store` whose transitions get `deps`, with the default
    /// [`Retry`] policy and failures not recorded.
    ///
    /// `deps` is anything that converts into `Arc<M::Deps>`: the value itself
    /// for a sized type (or `()`), or an `Arc<dyn YourDeps>` for a trait object
    /// (`Arc::new(real) as Arc<dyn YourDeps>`).
    pub fn new(store: St, deps: impl Into<Arc<M::Deps>>) -> Self {
        Self {
            store: Arc::new(store),
            deps: deps.into(),
            policy: Arc::new(Retry::default()),
            record_failure: None,
            clock: Arc::new(unix_millis),
            coalescer: None,
            retry_clock: Arc::new(TokioClock::new()),
            machine: PhantomData,
        }
    }

    /// Uses `policy` to decide what happens after a version conflict.
    #[must_use]
    pub fn retry(mut self, policy: impl Policy + 'static) -> Self {
        self.policy = Arc::new(policy);
        self
    }

    /// Uses `clock` (milliseconds since the Unix epoch) for failure timestamps.
    #[must_use]
    pub fn clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    pub(crate) fn set_coalescer(&mut self, coalescer: Coalescer<M, St>) {
        self.coalescer = Some(Arc::new(coalescer));
    }

    pub(crate) fn coalescer(&self) -> Option<Arc<Coalescer<M, St>>> {
        self.coalescer.clone()
    }

    pub(crate) fn policy(&self) -> &dyn Policy {
        &*self.policy
    }

    pub(crate) fn retry_clock_ref(&self) -> &dyn Clock {
        &*self.retry_clock
    }

    /// Times retries with `clock`: the elapsed time policies see and the waits
    /// between attempts. The default is tokio's clock; tests pass a
    /// [`ManualClock`](crate::retry::ManualClock) so waits take no real time.
    #[must_use]
    pub fn retry_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.retry_clock = Arc::new(clock);
        self
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &St {
        &self.store
    }

    /// The dependencies transitions are called with.
    #[must_use]
    pub fn deps(&self) -> &M::Deps {
        &self.deps
    }

    /// Runs `command` on record `id`: load, check, transition, save, retried on
    /// version conflicts by the policy.
    ///
    /// A record never written starts at [`State::initial`] and version 0. The
    /// returned future does nothing until polled; dropping it stops the loop
    /// (between attempts nothing is left half-done: a save is a single commit).
    /// Work that must follow the save belongs after this returns `Ok`, which
    /// happens at most once per call.
    pub async fn handle(&self, id: &str, command: &M::Command) -> Result<Outcome<M::State>, Error<M::Error>> {
        let command_json = encode::<M, _>(id, "command", command)?;
        let step = |state, _| self.plan(command, Cow::Borrowed(&command_json), state);
        let Some(coalescer) = &self.coalescer else {
            return self.run(&*self.store, id, step).await;
        };
        // Coalesced, unless the record's queue is full: then on its own.
        let call = self.admit(id)?;
        let result = match self.handle_coalesced(coalescer, id, command, &command_json).await {
            Some(outcome) => outcome,
            None => self.attempts(&*self.store, id, step).await,
        };
        self.policy.finish(&call, finish_of(&result));
        result
    }

    /// The record's current state and version, or `None` if it was never written.
    pub async fn get(&self, id: &str) -> Result<Option<Versioned<M::State>>, Error<M::Error>> {
        let record = self.store.load(M::NAME, id).await?;
        record.map(|record| decode_record::<M>(id, &record)).transpose()
    }

    /// The record's changes, oldest first, decoded.
    pub async fn history(&self, id: &str) -> Result<Vec<HistoryEntry<M::Command, M::State>>, Error<M::Error>> {
        let changes = self.store.history(M::NAME, id).await?;
        changes
            .into_iter()
            .map(|change| {
                let state = |json: &str| decode::<M, M::State>(id, change.version, json);
                Ok(HistoryEntry {
                    version: change.version,
                    command: decode::<M, _>(id, change.version, &change.command)?,
                    before: change.before.as_deref().map(state).transpose()?,
                    state: state(&change.after)?,
                    at: change.at,
                })
            })
            .collect()
    }

    /// Runs the transition for one attempt and, when it fails and failures are
    /// recorded, turns the error into the failure state to save.
    pub(crate) fn plan<'c>(
        &self,
        command: &M::Command,
        command_json: Cow<'c, str>,
        state: M::State,
    ) -> Result<Planned<'c, M>, Error<M::Error>> {
        match checked_transition::<M>(&self.deps, command, &state) {
            Ok(next) => Ok(Planned { next, rejected: None, command: command_json }),
            Err(Error::Rejected(error)) => match self.record_failure {
                Some(record) => {
                    let next = record(command, state, &error, 1, (self.clock)());
                    Ok(Planned { next, rejected: Some(error), command: command_json })
                }
                None => Err(Error::Rejected(error)),
            },
            Err(other) => Err(other),
        }
    }

    /// One call: admitted by the policy (or refused before the store is
    /// touched), the loop, and the policy told how it ended.
    pub(crate) async fn run<'c, F>(
        &self,
        session: impl Session,
        id: &str,
        step: F,
    ) -> Result<Outcome<M::State>, Error<M::Error>>
    where
        F: FnMut(M::State, u64) -> Result<Planned<'c, M>, Error<M::Error>>,
    {
        let call = self.admit(id)?;
        let result = self.attempts(session, id, step).await;
        self.policy.finish(&call, finish_of(&result));
        result
    }

    /// Asks the policy to let a call on record `id` start.
    pub(crate) fn admit<'i>(&self, id: &'i str) -> Result<Call<'i>, Error<M::Error>> {
        let call = Call::new(M::NAME, id);
        match self.policy.admit(&call) {
            Ok(()) => Ok(call),
            Err(refused) => {
                Err(Error::CircuitOpen { machine: M::NAME, id: id.to_owned(), retry_after: refused.retry_after })
            }
        }
    }

    /// The loop: load, let `step` decide what to save, save if the version
    /// still holds, otherwise ask the policy.
    pub(crate) async fn attempts<'c, F>(
        &self,
        mut session: impl Session,
        id: &str,
        mut step: F,
    ) -> Result<Outcome<M::State>, Error<M::Error>>
    where
        F: FnMut(M::State, u64) -> Result<Planned<'c, M>, Error<M::Error>>,
    {
        let mut tries = Tries::new(&*self.retry_clock);
        loop {
            let attempts = tries.start();
            let (state, version) = match session.load(M::NAME, id).await? {
                Some(record) => {
                    let loaded = decode_record::<M>(id, &record)?;
                    (loaded.state, loaded.version)
                }
                None => (M::State::initial(), 0),
            };
            let planned = step(state, version)?;
            let Some(next_version) = version.checked_add(1) else {
                let overflow = StoreError::VersionOverflow { machine: M::NAME.to_owned(), id: id.to_owned(), version };
                return Err(Error::Store(overflow));
            };
            let write = Write {
                machine: M::NAME,
                id,
                expected: version,
                kind: planned.next.kind().as_str(),
                state: encode::<M, _>(id, "state", &planned.next)?,
                command: &planned.command,
                origin: crate::store::Origin::Command,
            };
            match session.commit(Commit::write(write)).await {
                Ok(()) => {
                    return match planned.rejected {
                        None => Ok(Outcome { state: planned.next, version: next_version, attempts }),
                        Some(source) => Err(Error::FailureRecorded { source, version: next_version }),
                    };
                }
                Err(StoreError::Conflict(conflict)) => tries.lost(&*self.policy, &*self.retry_clock, conflict).await?,
                Err(other) => return Err(Error::Store(other)),
            }
        }
    }
}

impl<M, St> Runner<M, St>
where
    M: Machine,
    M::State: FailureState<Command = M::Command> + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    M::Command: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    St: Store,
{
    /// Saves a failed transition as the machine's `#[state(failure)]` state
    /// (the command, the state it failed in, the error text, a timestamp)
    /// instead of only returning the error. The save goes through the same
    /// version check as any other; the call then returns
    /// [`Error::FailureRecorded`]. Only machines whose state has a failure
    /// variant have this method.
    #[must_use]
    pub fn record_failures(mut self) -> Self {
        self.record_failure = Some(failure_state::<M>);
        self
    }

    /// Replays the failed command stored in record `id` on the state it failed
    /// in, as a new version. Fails with [`Error::NotFailed`] when the record is
    /// not in its failure state. If the replay fails again and failures are
    /// recorded, the failure is saved again with its attempt count raised.
    pub async fn recover(&self, id: &str) -> Result<Outcome<M::State>, Error<M::Error>> {
        self.run(&*self.store, id, |state, _| {
            let Some(failure) = state.failure() else {
                return Err(Error::NotFailed { machine: M::NAME, id: id.to_owned(), state: state.kind().as_str() });
            };
            let command_json = Cow::Owned(encode::<M, _>(id, "command", &failure.command)?);
            let mut planned = self.plan(&failure.command, command_json, (*failure.previous).clone())?;
            if planned.rejected.is_some() {
                // Failed again: keep the original previous state and count the try.
                if let Some(again) = planned.next.failure() {
                    let attempts = failure.attempts.saturating_add(1);
                    let failed_at = again.failed_at;
                    let error = again.error.clone();
                    planned.next = M::State::from_failure(Failure { error, attempts, failed_at, ..(*failure).clone() });
                }
            }
            Ok(planned)
        })
        .await
    }
}

/// How a call ended, for [`Policy::finish`].
pub(crate) fn finish_of<S, E>(result: &Result<Outcome<S>, Error<E>>) -> Finish {
    match result {
        Ok(_) | Err(Error::FailureRecorded { .. }) => Finish::Committed,
        Err(
            Error::RetriesExhausted { .. }
            | Error::Thrashing { .. }
            | Error::DeadlineExceeded { .. }
            | Error::BudgetExhausted { .. },
        ) => Finish::GaveUp,
        Err(Error::Store(StoreError::Backend { .. })) => Finish::StoreFailed,
        Err(_) => Finish::Other,
    }
}

fn failure_state<M: Machine>(
    command: &M::Command,
    previous: M::State,
    error: &M::Error,
    attempts: u32,
    failed_at: u64,
) -> M::State
where
    M::State: FailureState<Command = M::Command>,
    M::Command: Clone,
{
    M::State::from_failure(Failure {
        command: command.clone(),
        previous: Box::new(previous),
        error: error.to_string(),
        attempts,
        failed_at,
    })
}

pub(crate) fn decode_record<M: Machine>(id: &str, record: &Record) -> Result<Versioned<M::State>, Error<M::Error>>
where
    M::State: DeserializeOwned,
{
    let state = decode::<M, _>(id, record.version, &record.state)?;
    Ok(Versioned { state, version: record.version })
}

fn decode<M: Machine, T: DeserializeOwned>(id: &str, version: u64, json: &str) -> Result<T, Error<M::Error>> {
    serde_json::from_str(json).map_err(|source| Error::Decode { machine: M::NAME, id: id.to_owned(), version, source })
}

pub(crate) fn encode<M: Machine, T: Serialize>(
    id: &str,
    what: &'static str,
    value: &T,
) -> Result<String, Error<M::Error>> {
    serde_json::to_string(value).map_err(|source| Error::Encode { machine: M::NAME, id: id.to_owned(), what, source })
}

fn unix_millis() -> u64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}

impl<M: Machine, St> Clone for Runner<M, St> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            deps: Arc::clone(&self.deps),
            policy: Arc::clone(&self.policy),
            record_failure: self.record_failure,
            clock: Arc::clone(&self.clock),
            coalescer: self.coalescer.clone(),
            retry_clock: Arc::clone(&self.retry_clock),
            machine: PhantomData,
        }
    }
}

impl<M: Machine, St: fmt::Debug> fmt::Debug for Runner<M, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("machine", &M::NAME)
            .field("store", &self.store)
            .field("policy", &self.policy)
            .field("record_failures", &self.record_failure.is_some())
            .finish_non_exhaustive()
    }
}
