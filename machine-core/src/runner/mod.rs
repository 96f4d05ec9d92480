//! The load → handle → save loop: runs a machine's pure transition against a
//! store, detects concurrent writers by version, and retries by policy.

mod coalesce;
pub(crate) mod codec;
mod group;
mod held;
#[cfg(feature = "postgres")]
mod join;
pub(crate) mod migrate;
mod outcome;
pub(crate) mod pipeline;
mod query;
mod remove;
pub(crate) mod request;
pub(crate) mod retention;
mod session;
mod tries;

pub use coalesce::Coalescing;
pub use outcome::{HistoryEntry, HistoryItem, Outcome, UnreadableEntry, Versioned};
pub use query::{KindOf, Page};
pub use request::Request;

use crate::FailureState;
use crate::error::Error;
use crate::failure::Failure;
use crate::machine::{AsyncMachine, RecordFailures};
use crate::observe::Ended;
use crate::retry::{Clock, Policy, Retry, TokioClock};
use crate::store::Store;
use crate::{Kind, State};
use coalesce::Coalescer;
pub(crate) use group::Ready;
use group::{Applied, Group, Intent, Opener, Recorder};
use pipeline::{Direct, Pipeline, Read, Session};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
pub struct Runner<M: AsyncMachine, St> {
    store: Arc<St>,
    deps: Arc<M::Deps>,
    policy: Arc<dyn Policy>,
    recorder: Option<Recorder<M>>,
    clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    coalescer: Option<Arc<Coalescer<M, St>>>,
    retry_clock: Arc<dyn Clock>,
    /// How long idempotency keys are kept, in milliseconds.
    key_retention: u64,
    machine: PhantomData<fn() -> M>,
}

/// How long idempotency keys are kept unless the runner says otherwise.
const KEY_RETENTION: Duration = Duration::from_hours(24);

impl<M, St> Runner<M, St>
where
    M: AsyncMachine,
    M::State: Clone + Serialize + DeserializeOwned + 'static,
    M::Command: Clone + Serialize + DeserializeOwned + 'static,
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
            recorder: None,
            clock: Arc::new(unix_millis),
            coalescer: None,
            retry_clock: Arc::new(TokioClock::new()),
            key_retention: millis(KEY_RETENTION),
            machine: PhantomData,
        }
    }

    /// Keeps idempotency keys ([`Request::key`]) for `retention` after the
    /// change they name (24 hours by default: longer than any client retries
    /// a request or a queue redelivers a message, short enough to keep the
    /// key tables small). A key older than this is forgotten: the same key
    /// then runs its command again. Expiry is judged by the runner's
    /// [`clock`](Runner::clock); stores delete expired keys when asked
    /// ([`Store::forget_keys`](crate::store::Store::forget_keys)).
    #[must_use]
    pub fn key_retention(mut self, retention: Duration) -> Self {
        self.key_retention = millis(retention);
        self
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

    /// The pipeline this runner's calls go through.
    fn pipeline(&self) -> Pipeline<'_> {
        Pipeline { policy: &*self.policy, clock: &*self.retry_clock, sensitive: M::SENSITIVE }
    }

    /// Runs `command` on record `id`: load, check, transition, save, retried on
    /// version conflicts by the policy.
    ///
    /// A record never written starts at [`State::initial`](crate::State::initial) and version 0. The
    /// returned future does nothing until polled; dropping it stops the loop
    /// (between attempts nothing is left half-done: a save is a single commit).
    /// Work that must follow the save belongs after this returns `Ok`, which
    /// happens at most once per call.
    pub async fn handle(&self, id: &str, command: &M::Command) -> Result<Outcome<M::State>, Error<M::Error>> {
        match &self.coalescer {
            Some(coalescer) => {
                let intent =
                    coalesce::Owned::Apply((coalescer.clone_command)(command), request::OwnedRequest::default());
                self.handle_coalesced(coalescer, id, intent).await
            }
            None => self.one(self.direct(), id, &Intent::Apply(command, Request::new()), false).await,
        }
    }

    /// Runs `command` on record `id` as `request` says: with an idempotency
    /// key, so that sending it twice applies it once, and with a rule on
    /// whether the record must be new or must exist. This is the call for
    /// request handlers and queue consumers (see "Calling the framework from
    /// a request handler" in `docs/guide.md`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use machine_core::prelude::*;
    /// use machine_core::{Request, store::Memory};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
    /// enum Room { #[state(initial)] Free, Held { guest: String } }
    ///
    /// #[derive(Command, Clone, Debug, Serialize, Deserialize)]
    /// #[command(state = Room)]
    /// enum RoomCommand {
    ///     #[command(from(Free), to(Held))]
    ///     Hold { guest: String },
    /// }
    ///
    /// struct Rooms;
    /// impl Machine for Rooms {
    ///     type State = Room;
    ///     type Command = RoomCommand;
    ///     type Deps = ();
    ///     type Error = std::convert::Infallible;
    ///     fn transition(_: &(), RoomCommand::Hold { guest }: &RoomCommand, _: &Room) -> Result<Room, Self::Error> {
    ///         Ok(Room::Held { guest: guest.clone() })
    ///     }
    /// }
    ///
    /// let runner = Runner::<Rooms, _>::new(Memory::new(), ());
    /// let hold = RoomCommand::Hold { guest: "ada".into() };
    /// let first = runner.handle_with("room-101", &hold, Request::new().key("req-1")).await?;
    /// // The client never saw the reply and sends the request again:
    /// let again = runner.handle_with("room-101", &hold, Request::new().key("req-1")).await?;
    /// assert_eq!((again.version, again.replayed), (first.version, true));
    /// // A typo in the id does not conjure a room up:
    /// let typo = runner.handle_with("room-1O1", &hold, Request::new().update()).await;
    /// assert!(matches!(typo, Err(Error::NotFound { .. })));
    /// # Ok(()) }
    /// ```
    pub async fn handle_with(
        &self,
        id: &str,
        command: &M::Command,
        request: Request<'_>,
    ) -> Result<Outcome<M::State>, Error<M::Error>> {
        // Stores refuse a bad key when they look it up; checked here too so
        // that one caller's bad key never fails a coalesced group it joins.
        if let Some(key) = request.idempotency_key() {
            crate::store::validate_idempotency_key(key)?;
        }
        match &self.coalescer {
            Some(coalescer) => {
                let owned = request::OwnedRequest::new(request);
                let intent = coalesce::Owned::Apply((coalescer.clone_command)(command), owned);
                self.handle_coalesced(coalescer, id, intent).await
            }
            None => self.one(self.direct(), id, &Intent::Apply(command, request), false).await,
        }
    }

    /// The record's current state and version, or `None` if it was never written.
    pub async fn get(&self, id: &str) -> Result<Option<Versioned<M::State>>, Error<M::Error>> {
        let Some(record) = Direct::new(&*self.store, false).load(M::NAME, id).await? else { return Ok(None) };
        match record.state.get::<M::State>().filter(|_| record.schema == M::SCHEMA) {
            Some(state) => Ok(Some(Versioned { state: state.clone(), version: record.version })),
            None => codec::decode_record::<M, _>(id, &record).map(Some),
        }
    }

    /// A session on the runner's own store.
    fn direct(&self) -> Direct<'_, St> {
        Direct::new(&self.store, M::QUICK)
    }

    /// The record's changes, oldest first, each decoded (entries stored at
    /// older schema versions migrated), or, when it cannot be, returned as
    /// stored with why ([`UnreadableEntry`]): one bad entry does not hide
    /// the others. `Err` only when the store itself fails. A busy record's
    /// history is long: [`history_page`](Runner::history_page) reads it by
    /// pages.
    ///
    /// To treat any unreadable entry as an error, collect:
    /// `runner.history(id).await?.into_iter().collect::<Result<Vec<_>, _>>()`.
    pub async fn history(&self, id: &str) -> Result<Vec<HistoryItem<M::Command, M::State>>, Error<M::Error>> {
        let changes = self.store.history(M::NAME, id).await?;
        Ok(changes.into_iter().map(|change| codec::decode_change::<M>(id, change)).collect())
    }

    /// Up to `limit` of the record's changes with versions above `after`
    /// (0 for the first page), oldest first, decoded as by
    /// [`history`](Runner::history). Pass the last version of a page as
    /// `after` to get the next; an empty page is the end.
    pub async fn history_page(
        &self,
        id: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<HistoryItem<M::Command, M::State>>, Error<M::Error>> {
        let changes = self.store.history_page(M::NAME, id, after, limit).await?;
        Ok(changes.into_iter().map(|change| codec::decode_change::<M>(id, change)).collect())
    }

    /// One intent as a group of one, through `session` (`joined`: a
    /// transaction the caller holds): admitted, attempted, finished, like
    /// every call.
    pub(crate) async fn one<S: Session>(
        &self,
        session: S,
        id: &str,
        intent: &Intent<'_, M>,
        joined: bool,
    ) -> Result<Outcome<M::State>, Error<M::Error>> {
        let pipeline = self.pipeline();
        let admitted = pipeline.admit(intent.op(joined), M::NAME, id)?;
        let result = admitted.run(self.alone(session, id, intent)).await;
        pipeline.finish(admitted, &result, settled::<M>);
        result
    }

    /// A synchronous transition on the in-process store, planned and
    /// committed under the record's lock when it can be (`held.rs`);
    /// `None` leaves the call to the pipeline's loop.
    fn held<S: Session>(&self, session: &S, id: &str, intent: &Intent<'_, M>) -> Option<Handled<M>> {
        let memory = session.memory().filter(|_| M::SYNCHRONOUS)?;
        let group = self.group(id, std::slice::from_ref(intent));
        match memory.with_held(M::NAME, id, |slot| group.held(slot)) {
            Ok(held::Planned::Committed(saved)) => Some(outcome::<M>(id, Ok(saved), 1)),
            Ok(held::Planned::Failed(error)) => Some(Err(error)),
            Ok(held::Planned::Later) => None,
            Err(error) => Some(Err(Error::Store(error))),
        }
    }

    /// The attempts of a group of one: [`held`](Self::held) first, then
    /// the pipeline's loop (the caller admits and finishes).
    async fn alone<S: Session>(
        &self,
        session: S,
        id: &str,
        intent: &Intent<'_, M>,
    ) -> Result<Outcome<M::State>, Error<M::Error>> {
        if let Some(result) = self.held(&session, id, intent) {
            return result;
        }
        let mut group = self.group(id, std::slice::from_ref(intent));
        let key = intent.key();
        let keys = key.as_slice();
        let read = Read { keys, ..Read::plain(M::NAME, id) };
        match self.pipeline().attempts(session, &[read], &mut group).await {
            Ok((mut applied, attempts)) => match applied.pop() {
                Some(applied) => outcome::<M>(id, applied, attempts),
                // A group of one plans exactly one result.
                None => Err(Error::NotRead { machine: M::NAME, id: id.to_owned() }),
            },
            Err(error) => Err(widen(&error)),
        }
    }

    /// The group step for `intents` on record `id`.
    fn group<'a>(&'a self, id: &'a str, intents: &'a [Intent<'a, M>]) -> Group<'a, M> {
        Group {
            id,
            deps: &self.deps,
            intents,
            recorder: self.recorder,
            now: &*self.clock,
            key_retention: self.key_retention,
        }
    }
}

/// What a call on one record hands its caller.
type Handled<M> = Result<Outcome<<M as AsyncMachine>::State>, Error<<M as AsyncMachine>::Error>>;

/// How a committed call is counted (see `crate::observe`).
fn settled<M: AsyncMachine>(out: &Outcome<M::State>) -> Ended {
    let ended = Ended::committed(out.attempts, out.version, out.state.kind().as_str());
    if out.replayed { Ended { outcome: "replayed", ..ended } } else { ended }
}

/// A member's result as its caller sees it.
fn outcome<M: AsyncMachine>(
    id: &str,
    applied: Applied<M>,
    attempts: u32,
) -> Result<Outcome<M::State>, Error<M::Error>> {
    let saved = applied?;
    match saved.failed {
        None => Ok(Outcome { state: saved.state, version: saved.version, attempts, replayed: saved.replayed }),
        Some(source) => {
            Err(Error::FailureRecorded { source, machine: M::NAME, id: id.to_owned(), version: saved.version })
        }
    }
}

/// A group-wide error (it never holds a machine error) for one caller.
fn widen<E>(error: &Error<std::convert::Infallible>) -> Error<E> {
    match error.share() {
        Ok(error) => error,
        Err(never) => match *never {},
    }
}

impl<M, St> Runner<M, St>
where
    M: RecordFailures,
    M::State: Clone + Serialize + DeserializeOwned + 'static,
    M::Command: Clone + Serialize + DeserializeOwned + 'static,
    St: Store,
{
    /// Saves the transition errors the machine classifies as failures
    /// ([`RecordFailures::failure`]) as its `#[state(failure)]` state (the
    /// command, the state it failed in, the kept error, a timestamp) instead
    /// of only returning them. The save goes through the same version check
    /// as any other; the call then returns [`Error::FailureRecorded`]. Every
    /// other error is a refusal: returned, nothing written.
    #[must_use]
    pub fn record_failures(mut self) -> Self {
        self.recorder = Some(failure_state::<M>);
        self
    }
}

impl<M, St> Runner<M, St>
where
    M: AsyncMachine,
    M::State: FailureState<Command = M::Command> + Clone + Serialize + DeserializeOwned + 'static,
    M::Command: Clone + Serialize + DeserializeOwned + 'static,
    St: Store,
{
    /// Replays the failed command stored in record `id` on the state it failed
    /// in, as a new version whose history entry is a recovery
    /// ([`Origin::Recovery`](crate::store::Origin::Recovery)). Fails with
    /// [`Error::NotFailed`] when the record is not in its failure state. If
    /// the replay fails again and failures are recorded, the failure is
    /// saved again with its attempt count raised and the original previous
    /// state kept; a refusal leaves the record as it is.
    pub async fn recover(&self, id: &str) -> Result<Outcome<M::State>, Error<M::Error>> {
        self.recover_when(id, None).await
    }

    /// [`recover`](Runner::recover), only if the failure is `ready`
    /// (judged on each attempt's load; [`Error::NotDue`] if not).
    pub(crate) async fn recover_when(
        &self,
        id: &str,
        ready: Option<Ready>,
    ) -> Result<Outcome<M::State>, Error<M::Error>> {
        let open: Opener<M> = open_failure::<M>;
        match &self.coalescer {
            Some(coalescer) => self.handle_coalesced(coalescer, id, coalesce::Owned::Recover(open, ready)).await,
            None => self.one(self.direct(), id, &Intent::Recover(open, ready), false).await,
        }
    }
}

impl<M, St> Runner<M, St>
where
    M: AsyncMachine,
    M::State: Clone + Serialize + DeserializeOwned + 'static,
    M::Command: Clone + Serialize + DeserializeOwned + 'static,
    St: Store,
{
    /// Sends record `id` the command its state declares for when it is due
    /// (`#[command(timer)]`), if that state is due now by the runner's
    /// [`clock`](Runner::clock), as a new version whose history entry says
    /// a timer fired ([`Origin::Timer`](crate::store::Origin::Timer)).
    ///
    /// Whether it is due is judged on the state each attempt loads, so a
    /// call that lost a race to another sweeper (or to a command that moved
    /// the record on) fails with [`Error::NotDue`] instead of firing twice.
    /// Everything else is as for [`handle`](Runner::handle): the declared
    /// table, refusals, recorded failures, retries and coalescing.
    /// [`timers::Sweeper`](crate::timers::Sweeper) calls it for every due
    /// record.
    pub async fn fire(&self, id: &str) -> Result<Outcome<M::State>, Error<M::Error>> {
        let now = self.now();
        match &self.coalescer {
            Some(coalescer) => self.handle_coalesced(coalescer, id, coalesce::Owned::Fire(now)).await,
            None => self.one(self.direct(), id, &Intent::Fire(now), false).await,
        }
    }

    /// The runner's clock reading (milliseconds since the Unix epoch): what
    /// [`fire`](Runner::fire) judges due times by.
    pub(crate) fn now(&self) -> u64 {
        (self.clock)()
    }

    /// The clock retries wait on ([`retry_clock`](Runner::retry_clock)),
    /// for drivers that wait between tries of their own (a processor's
    /// handler retries).
    pub(crate) fn waits(&self) -> &dyn Clock {
        &*self.retry_clock
    }
}

fn failure_state<M>(
    command: &M::Command,
    previous: &M::State,
    error: &M::Error,
    attempts: u32,
    failed_at: u64,
) -> Option<M::State>
where
    M: RecordFailures,
    M::State: Clone,
    M::Command: Clone,
{
    let kept = M::failure(error)?;
    Some(M::State::from_failure(Failure {
        command: command.clone(),
        previous: Box::new(previous.clone()),
        error: kept,
        attempts,
        failed_at,
    }))
}

fn open_failure<M>(state: &M::State) -> Option<(M::Command, M::State, u32, u64)>
where
    M: AsyncMachine,
    M::State: FailureState<Command = M::Command> + Clone,
    M::Command: Clone,
{
    state
        .failure()
        .map(|failure| (failure.command.clone(), (*failure.previous).clone(), failure.attempts, failure.failed_at))
}

/// `duration` in whole milliseconds, saturating.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn unix_millis() -> u64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}

impl<M: AsyncMachine, St> Clone for Runner<M, St> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            deps: Arc::clone(&self.deps),
            policy: Arc::clone(&self.policy),
            recorder: self.recorder,
            clock: Arc::clone(&self.clock),
            coalescer: self.coalescer.clone(),
            retry_clock: Arc::clone(&self.retry_clock),
            key_retention: self.key_retention,
            machine: PhantomData,
        }
    }
}

impl<M: AsyncMachine, St: fmt::Debug> fmt::Debug for Runner<M, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("machine", &M::NAME)
            .field("store", &self.store)
            .field("policy", &self.policy)
            .field("record_failures", &self.recorder.is_some())
            .field("coalescing", &self.coalescer.as_ref().map(|c| c.config))
            .finish_non_exhaustive()
    }
}
