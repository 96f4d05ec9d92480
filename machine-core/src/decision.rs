//! One business decision over several records, of any machine types: read a
//! consistent snapshot, decide, and commit every write together with version
//! checks on what was read, retried as a whole on conflict.

use crate::error::Error;
use crate::evolution::Payload;
use crate::machine::{AsyncMachine, Machine, checked, checked_sync};
use crate::retry::{Clock, Policy, Retry, TokioClock};
use crate::runner::codec::decode;
use crate::runner::pipeline::{Direct, Keyed, Loads, Pipeline, Plan, Planned, Read, Recalled, Session, Staged, Step};
use crate::runner::request::fingerprint;
use crate::store::{Origin, Store};
use crate::{Kind, State};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

/// A transition error from one of a decision's machines, whatever its type.
#[derive(Debug, thiserror::Error)]
#[error("{machine} {id:?}: {source}")]
pub struct Rejection {
    /// The machine whose transition refused.
    pub machine: &'static str,
    /// The record it refused for.
    pub id: String,
    /// The machine's own error.
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl Rejection {
    /// The machine's error as its concrete type, when it is an `E`.
    #[must_use]
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.source.downcast_ref()
    }
}

/// A record a decision reads, typed by its machine.
///
/// By default the record's version is checked at commit: if anyone changed it
/// since the snapshot, the decision runs again on fresh data. An
/// [`unvalidated`](Key::unvalidated) read is not checked, which trades
/// exactness for throughput (see `docs/decisions.md`).
pub struct Key<M: AsyncMachine> {
    id: String,
    validated: bool,
    machine: PhantomData<fn() -> M>,
}

impl<M: AsyncMachine> Key<M> {
    /// The record `id` of machine `M`, validated at commit.
    pub fn new(id: impl Into<String>) -> Self {
        Self { id: id.into(), validated: true, machine: PhantomData }
    }

    /// Does not fail the commit when this record changes after it was read
    /// (unless the decision also writes it: writes are always compare-and-set).
    #[must_use]
    pub fn unvalidated(mut self) -> Self {
        self.validated = false;
        self
    }

    /// The record's id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl<M: AsyncMachine> Clone for Key<M> {
    fn clone(&self) -> Self {
        Self { id: self.id.clone(), validated: self.validated, machine: PhantomData }
    }
}

impl<M: AsyncMachine> fmt::Debug for Key<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("machine", &M::NAME)
            .field("id", &self.id)
            .field("validated", &self.validated)
            .finish()
    }
}

/// What a decision's closure returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<T> {
    /// Commit the commands applied to the draft and return `T`. With no
    /// command applied nothing is written, but the validated reads are still
    /// checked, so `T` was computed from one consistent snapshot.
    Commit(T),
    /// Write nothing and stop, with a reason (computed, like a commit's
    /// value, from a snapshot whose validated reads are checked). Not retried
    /// unless that check fails.
    Abort(String),
}

/// How a decision ended, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided<T> {
    /// The writes were committed atomically.
    Committed {
        /// What the closure returned.
        value: T,
        /// How many times the closure ran (1 without contention).
        attempts: u32,
    },
    /// The closure committed without applying any command: nothing written,
    /// and the validated reads were still as read when it returned.
    Unchanged {
        /// What the closure returned.
        value: T,
        /// How many times the closure ran.
        attempts: u32,
    },
    /// The closure aborted; nothing was written.
    Aborted {
        /// The closure's reason.
        reason: String,
        /// How many times the closure ran.
        attempts: u32,
    },
    /// The decision's idempotency key ([`Decision::key`]) was stored by an
    /// earlier decision over the same reads, which committed its writes:
    /// the closure did not run and nothing was written now.
    Replayed {
        /// When the earlier decision committed, in milliseconds since the
        /// Unix epoch.
        committed_at: u64,
    },
}

impl<T> Decided<T> {
    /// Runs `after` if and only if the decision committed, exactly once, and
    /// returns its result beside the decision, so a failing follow-up (an
    /// email, a message) is reported apart from the decision, which stands.
    ///
    /// ```
    /// # use machine_core::decision::Decided;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let decided = Decided::Committed { value: 30_u64, attempts: 1 };
    /// let (decided, mailed) = decided
    ///     .and_then(async |amount: &u64| {
    ///         println!("mail: {amount} moved");
    ///         Ok::<(), std::io::Error>(())
    ///     })
    ///     .await;
    /// assert!(decided.is_committed());
    /// assert!(matches!(mailed, Some(Ok(()))));
    /// # }
    /// ```
    pub async fn and_then<F, E>(self, after: F) -> (Self, Option<Result<(), E>>)
    where
        F: AsyncFnOnce(&T) -> Result<(), E>,
    {
        match &self {
            Self::Committed { value, .. } => {
                let result = after(value).await;
                (self, Some(result))
            }
            Self::Unchanged { .. } | Self::Aborted { .. } | Self::Replayed { .. } => (self, None),
        }
    }

    /// Whether the decision committed writes.
    #[must_use]
    pub fn is_committed(&self) -> bool {
        matches!(self, Self::Committed { .. })
    }

    /// How many times the closure ran (0 for a replay, which runs nothing).
    #[must_use]
    pub fn attempts(&self) -> u32 {
        match self {
            Self::Committed { attempts, .. } | Self::Unchanged { attempts, .. } | Self::Aborted { attempts, .. } => {
                *attempts
            }
            Self::Replayed { .. } => 0,
        }
    }
}

/// A record as loaded for this attempt.
struct Loaded {
    machine: &'static str,
    id: String,
    version: u64,
    state: Option<Arc<str>>,
    /// The schema version the state was stored with.
    schema: u32,
}

/// A command's result waiting for the commit.
struct Pending {
    read: usize,
    expected: u64,
    kind: &'static str,
    state: String,
    command: String,
    /// The writing machine's schema version.
    schema: u32,
    /// When the new state is due.
    due: Option<u64>,
}

/// The snapshot a decision's closure works on: read states, apply commands.
/// Nothing reaches the store until the closure returns [`Verdict::Commit`].
pub struct Draft {
    loaded: Vec<Loaded>,
    pending: Vec<Pending>,
}

impl Draft {
    fn position<M: AsyncMachine>(&self, key: &Key<M>) -> Result<usize, Error<Rejection>> {
        self.loaded
            .iter()
            .position(|l| l.machine == M::NAME && l.id == key.id)
            .ok_or_else(|| Error::NotRead { machine: M::NAME, id: key.id.clone() })
    }

    /// The record's state as the decision sees it: as loaded, or after the
    /// commands this draft already applied to it. A record never written is
    /// its machine's initial state.
    pub fn state<M: AsyncMachine>(&self, key: &Key<M>) -> Result<M::State, Error<Rejection>>
    where
        M::State: DeserializeOwned,
    {
        let read = self.position(key)?;
        let (version, json, schema) = match self.pending.iter().rev().find(|p| p.read == read) {
            Some(pending) => (pending.expected + 1, Some(pending.state.as_str()), pending.schema),
            None => (self.loaded[read].version, self.loaded[read].state.as_deref(), self.loaded[read].schema),
        };
        // Migrated from an older schema version; a newer one is refused, so
        // the decision never writes over it.
        json.map_or_else(
            || Ok(M::State::initial()),
            |json| Ok(decode::<M, _>(&key.id, version, Payload::State, schema, json)?),
        )
    }

    /// The version the record was read at (0: it did not exist).
    pub fn version<M: AsyncMachine>(&self, key: &Key<M>) -> Result<u64, Error<Rejection>> {
        Ok(self.loaded[self.position(key)?].version)
    }

    /// Runs `command` on the record through its machine's transition and
    /// declared table, with `deps`, and keeps the result for the commit.
    /// Any error here should end the closure (`?`): the decision then fails
    /// with it and writes nothing.
    pub fn apply<M: Machine>(
        &mut self,
        key: &Key<M>,
        deps: &M::Deps,
        command: &M::Command,
    ) -> Result<M::State, Error<Rejection>>
    where
        M::State: Serialize + DeserializeOwned,
        M::Command: Serialize,
    {
        let state = self.state(key)?;
        let next = checked_sync::<M>(deps, Some(&key.id), command, &state).map_err(|e| boxed(M::NAME, &key.id, e))?;
        self.keep(key, command, next)
    }

    /// [`apply`](Draft::apply) for an [`AsyncMachine`], awaiting its
    /// transition; for decisions made with
    /// [`attempt_async`](Decision::attempt_async).
    pub async fn apply_async<M: AsyncMachine>(
        &mut self,
        key: &Key<M>,
        deps: &M::Deps,
        command: &M::Command,
    ) -> Result<M::State, Error<Rejection>>
    where
        M::State: Serialize + DeserializeOwned,
        M::Command: Serialize,
    {
        let state = self.state(key)?;
        let next = checked::<M>(deps, Some(&key.id), command, &state).await.map_err(|e| boxed(M::NAME, &key.id, e))?;
        self.keep(key, command, next)
    }

    /// Keeps `next`, produced by `command`, as the record's pending write.
    fn keep<M: AsyncMachine>(
        &mut self,
        key: &Key<M>,
        command: &M::Command,
        next: M::State,
    ) -> Result<M::State, Error<Rejection>>
    where
        M::State: Serialize,
        M::Command: Serialize,
    {
        let read = self.position(key)?;
        let expected =
            self.pending.iter().rev().find(|p| p.read == read).map_or(self.loaded[read].version, |p| p.expected + 1);
        let encode =
            |what, source| Error::Encode { machine: M::NAME, id: key.id.clone(), what, source: Arc::new(source) };
        self.pending.push(Pending {
            read,
            expected,
            kind: next.kind().as_str(),
            state: serde_json::to_string(&next).map_err(|e| encode("state", e))?,
            command: serde_json::to_string(command).map_err(|e| encode("command", e))?,
            schema: M::SCHEMA,
            due: next.due().map(crate::timers::Deadline::as_millis),
        });
        Ok(next)
    }
}

/// Turns a machine's error into the decision's error type.
fn boxed<E: std::error::Error + Send + Sync + 'static>(
    machine: &'static str,
    id: &str,
    error: Error<E>,
) -> Error<Rejection> {
    error.map_rejection(|source| Rejection { machine, id: id.to_owned(), source: Box::new(source) })
}

/// A decision over the records of `store`: name what it reads, then
/// [`attempt`](Decision::attempt) it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use machine_core::decision::{Decided, Decision, Key, Verdict};
/// use machine_core::prelude::*;
/// use machine_core::store::Memory;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
/// enum Account { #[state(initial)] Open(i64) }
///
/// #[derive(Command, Clone, Debug, Serialize, Deserialize)]
/// #[command(state = Account)]
/// enum Money { #[command(from(Open), to(Open))] Add(i64) }
///
/// struct Accounts;
/// impl Machine for Accounts {
///     type State = Account;
///     type Command = Money;
///     type Deps = ();
///     type Error = std::convert::Infallible;
///     fn transition(_: &(), Money::Add(n): &Money, Account::Open(b): &Account) -> Result<Account, Self::Error> {
///         Ok(Account::Open(b + n))
///     }
/// }
///
/// let store = Memory::new();
/// let (from, to) = (Key::<Accounts>::new("alice"), Key::<Accounts>::new("bob"));
/// let decided = Decision::new(&store)
///     .read(&from)
///     .read(&to)
///     .attempt(|draft| {
///         let Account::Open(balance) = draft.state(&from)?;
///         if balance < 30 {
///             return Ok(Verdict::Abort(format!("alice has only {balance}")));
///         }
///         draft.apply(&from, &(), &Money::Add(-30))?;
///         draft.apply(&to, &(), &Money::Add(30))?;
///         Ok(Verdict::Commit(()))
///     })
///     .await?;
/// assert_eq!(decided, Decided::Aborted { reason: "alice has only 0".into(), attempts: 1 });
/// # Ok(()) }
/// ```
pub struct Decision<'s, St> {
    store: &'s St,
    policy: Arc<dyn Policy>,
    clock: Arc<dyn Clock>,
    reads: Vec<(&'static str, String, bool)>,
    /// Whether any read's machine is [`SENSITIVE`](crate::Machine::SENSITIVE).
    sensitive: bool,
    /// The idempotency key, stored under the first read.
    key: Option<String>,
    key_retention: u64,
    now: fn() -> u64,
}

impl<'s, St: Store> Decision<'s, St> {
    /// A decision over records of `store`, retried by the default [`Retry`] policy.
    pub fn new(store: &'s St) -> Self {
        Self {
            store,
            policy: Arc::new(Retry::default()),
            clock: Arc::new(TokioClock::new()),
            reads: Vec::new(),
            sensitive: false,
            key: None,
            key_retention: 24 * 60 * 60 * 1000,
            now: crate::runner::unix_millis,
        }
    }

    /// Makes the decision idempotent under `key`: stored with its writes,
    /// under the first record it reads, in the same commit. A decision sent
    /// again with the same key and the same reads returns
    /// [`Decided::Replayed`] without running its closure (other reads under
    /// the key are [`Error::KeyReused`]). A decision that aborted or wrote
    /// nothing stored no key, and runs again. Kept for `retention` (24 hours
    /// by default, [`key_retention`](Decision::key_retention)).
    #[must_use]
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// How long the decision's key is kept.
    #[must_use]
    pub fn key_retention(mut self, retention: std::time::Duration) -> Self {
        self.key_retention = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Reads the wall clock (milliseconds since the Unix epoch) with `now`,
    /// for the key's expiry; tests pass a fixed one.
    #[must_use]
    pub fn clock(mut self, now: fn() -> u64) -> Self {
        self.now = now;
        self
    }

    /// The store the decision reads and writes.
    #[must_use]
    pub fn store(&self) -> &'s St {
        self.store
    }

    /// Adds `key` to the records the decision reads (and may write).
    #[must_use]
    pub fn read<M: AsyncMachine>(mut self, key: &Key<M>) -> Self {
        self.reads.push((M::NAME, key.id.clone(), key.validated));
        self.sensitive |= M::SENSITIVE;
        self
    }

    /// Times retries with `clock` (tests pass a
    /// [`ManualClock`](crate::retry::ManualClock)).
    #[must_use]
    pub fn retry_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Uses `policy` when the commit loses a race.
    #[must_use]
    pub fn retry(mut self, policy: impl Policy + 'static) -> Self {
        self.policy = Arc::new(policy);
        self
    }

    /// Loads the named records, runs `decide` on them, and commits what it
    /// applied, all or nothing, together with version checks of the
    /// validated reads it did not write. When another writer changed a
    /// written or a validated record in between, the whole decision runs
    /// again on fresh data, as the policy allows (which also hears of the
    /// call before and after, as for a command: its `admit` and `finish`
    /// see the decision's first read).
    ///
    /// Like a transition, `decide` may run more than once: keep effects for
    /// [`Decided::and_then`].
    pub async fn attempt<T, F>(self, decide: F) -> Result<Decided<T>, Error<Rejection>>
    where
        T: Send,
        F: FnMut(&mut Draft) -> Result<Verdict<T>, Error<Rejection>>,
    {
        let store = self.store;
        self.run(Direct::new(store, false), Now(decide)).await
    }

    /// [`attempt`](Decision::attempt) with a closure that awaits, for
    /// decisions over [`AsyncMachine`]s
    /// ([`Draft::apply_async`](Draft::apply_async)). The closure returns its
    /// work boxed, `|draft| Box::pin(async move { … })`: a boxed future is
    /// known to be `Send`, so the decision can run in a spawned task.
    ///
    /// The boxed future may borrow the draft and nothing else of the
    /// closure's surroundings: move what it needs into it (`async move`),
    /// cloning keys and an `Arc` of the deps, as each attempt gets a fresh
    /// future:
    ///
    /// ```
    /// # use machine_core::decision::{Decision, Deciding, Key, Verdict};
    /// # use machine_core::{AsyncMachine, Command, State, store::Memory};
    /// # use std::sync::Arc;
    /// # #[derive(State, Clone, Debug, serde::Serialize, serde::Deserialize)]
    /// # enum Seat { #[state(initial)] Free, Taken }
    /// # #[derive(Command, Clone, Debug, serde::Serialize, serde::Deserialize)]
    /// # #[command(state = Seat)] enum Book { #[command(from(Free), to(Taken))] Take }
    /// # struct Seats;
    /// # impl AsyncMachine for Seats {
    /// #     type State = Seat; type Command = Book; type Deps = (); type Error = std::convert::Infallible;
    /// #     async fn transition(_: &(), _: &Book, _: &Seat) -> Result<Seat, Self::Error> { Ok(Seat::Taken) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (store, deps) = (Memory::new(), Arc::new(()));
    /// let seat = Key::<Seats>::new("12A");
    /// let decided = Decision::new(&store)
    ///     .read(&seat)
    ///     .attempt_async(|draft| -> Deciding<'_, ()> {
    ///         let (seat, deps) = (seat.clone(), Arc::clone(&deps));
    ///         Box::pin(async move {
    ///             draft.apply_async(&seat, &*deps, &Book::Take).await?;
    ///             Ok(Verdict::Commit(()))
    ///         })
    ///     })
    ///     .await?;
    /// assert!(decided.is_committed());
    /// # Ok(()) }
    /// ```
    pub async fn attempt_async<T, F>(self, decide: F) -> Result<Decided<T>, Error<Rejection>>
    where
        F: for<'d> FnMut(&'d mut Draft) -> Deciding<'d, T>,
    {
        let store = self.store;
        self.run(Direct::new(store, false), Later(decide)).await
    }

    pub(crate) async fn run<T, D: Decide<T>>(
        &self,
        session: impl Session,
        decide: D,
    ) -> Result<Decided<T>, Error<Rejection>> {
        let key = self.key.as_deref();
        let keys = key.as_slice();
        let mut reads: Vec<Read<'_>> = self
            .reads
            .iter()
            .map(|(machine, id, validated)| Read { machine, id, validated: *validated, keys: &[] })
            .collect();
        if let Some(first) = reads.first_mut() {
            first.keys = keys;
        }
        let keyed = match key {
            Some(key) => {
                let named: Vec<(&str, &str)> =
                    self.reads.iter().map(|(machine, id, _)| (*machine, id.as_str())).collect();
                let fingerprint = fingerprint(&named).map_err(|source| Error::Encode {
                    machine: reads.first().map_or("", |read| read.machine),
                    id: reads.first().map_or("", |read| read.id).to_owned(),
                    what: "decision key",
                    source: Arc::new(source),
                })?;
                let now = (self.now)();
                Some(DecisionKey { key, fingerprint, now, expires_at: now.saturating_add(self.key_retention) })
            }
            None => None,
        };
        let pipeline = Pipeline { policy: &*self.policy, clock: &*self.clock, sensitive: self.sensitive };
        let mut step = Deliberation { reads: &reads, decide, keyed, value: PhantomData };
        let (deliberated, attempts) = pipeline.call(session, &reads, &mut step).await?;
        Ok(match deliberated {
            Deliberated::Replayed { committed_at } => Decided::Replayed { committed_at },
            Deliberated::Decided(Verdict::Abort(reason), _) => Decided::Aborted { reason, attempts },
            Deliberated::Decided(Verdict::Commit(value), true) => Decided::Committed { value, attempts },
            Deliberated::Decided(Verdict::Commit(value), false) => Decided::Unchanged { value, attempts },
        })
    }
}

/// The work of an async decision's closure ([`Decision::attempt_async`]).
pub type Deciding<'d, T> = Pin<Box<dyn Future<Output = Result<Verdict<T>, Error<Rejection>>> + Send + 'd>>;

/// A decision's closure, sync or async.
pub(crate) trait Decide<T> {
    fn decide<'d>(
        &'d mut self,
        draft: &'d mut Draft,
    ) -> impl Future<Output = Result<Verdict<T>, Error<Rejection>>> + Send;
}

/// A closure that decides at once.
pub(crate) struct Now<F>(pub(crate) F);

impl<T: Send, F> Decide<T> for Now<F>
where
    F: FnMut(&mut Draft) -> Result<Verdict<T>, Error<Rejection>>,
{
    fn decide<'d>(
        &'d mut self,
        draft: &'d mut Draft,
    ) -> impl Future<Output = Result<Verdict<T>, Error<Rejection>>> + Send {
        std::future::ready((self.0)(draft))
    }
}

/// A closure that decides after awaiting.
struct Later<F>(F);

impl<T, F> Decide<T> for Later<F>
where
    F: for<'d> FnMut(&'d mut Draft) -> Deciding<'d, T>,
{
    fn decide<'d>(
        &'d mut self,
        draft: &'d mut Draft,
    ) -> impl Future<Output = Result<Verdict<T>, Error<Rejection>>> + Send {
        (self.0)(draft)
    }
}

/// A decision's step of the pipeline: its closure on a fresh draft.
struct Deliberation<'a, T, D> {
    reads: &'a [Read<'a>],
    decide: D,
    keyed: Option<DecisionKey<'a>>,
    value: PhantomData<fn() -> T>,
}

/// A decision's idempotency key, with what it is stored with.
struct DecisionKey<'a> {
    key: &'a str,
    /// Of the reads' machines and ids, in order.
    fingerprint: u64,
    now: u64,
    expires_at: u64,
}

/// What one attempt of a decision came to.
enum Deliberated<T> {
    /// The verdict, and whether it applied any command.
    Decided(Verdict<T>, bool),
    /// The key was stored by an earlier decision, which committed then.
    Replayed { committed_at: u64 },
}

impl<T, D: Decide<T>> Step for Deliberation<'_, T, D> {
    type Value = Deliberated<T>;
    type Error = Rejection;

    fn settled(value: &Self::Value) -> &'static str {
        match value {
            Deliberated::Replayed { .. } => "replayed",
            Deliberated::Decided(Verdict::Abort(_), _) => "aborted",
            Deliberated::Decided(Verdict::Commit(_), true) => "committed",
            Deliberated::Decided(Verdict::Commit(_), false) => "unchanged",
        }
    }

    async fn plan(
        &mut self,
        loaded: Loads,
        recalled: Vec<Option<Recalled>>,
        _attempt: u32,
        _typed: bool,
    ) -> Result<Plan<'_, Self::Value>, Error<Rejection>> {
        if let (Some(keyed), Some(first)) = (&self.keyed, self.reads.first())
            && let Some(stored) = recalled.into_iter().next().flatten().filter(|stored| keyed.now < stored.expires_at)
        {
            if stored.fingerprint != keyed.fingerprint || stored.state.is_some() {
                return Err(Error::KeyReused {
                    machine: first.machine,
                    id: first.id.to_owned(),
                    key: keyed.key.to_owned(),
                    version: stored.version,
                });
            }
            let value = Deliberated::Replayed { committed_at: stored.at };
            return Ok(Plan { writes: Vec::new(), keys: Vec::new(), remove: None, value });
        }
        let mut drafted: Vec<Loaded> = Vec::with_capacity(loaded.len());
        for (read, record) in self.reads.iter().zip(loaded) {
            let version = record.as_ref().map_or(0, |r| r.version);
            let schema = record.as_ref().map_or(1, |r| r.schema);
            let state = record.map(|r| r.state.json_of(read.machine, read.id, version, "state")).transpose()?;
            drafted.push(Loaded { machine: read.machine, id: read.id.to_owned(), version, state, schema });
        }
        let loaded = drafted;
        let mut draft = Draft { loaded, pending: Vec::new() };
        let verdict = self.decide.decide(&mut draft).await?;
        let pending = match verdict {
            // An abort writes nothing, whatever the closure applied first.
            Verdict::Abort(_) => Vec::new(),
            Verdict::Commit(_) => draft.pending,
        };
        let wrote = !pending.is_empty();
        let mut keys = Vec::new();
        if let (Some(keyed), Some(first), true) = (&self.keyed, draft.loaded.first(), wrote) {
            // The first read's version once the commit is in.
            let version = pending.iter().filter(|p| p.read == 0).map(|p| p.expected + 1).max().unwrap_or(first.version);
            keys.push(Keyed {
                machine: first.machine,
                id: self.reads[0].id,
                key: keyed.key,
                fingerprint: keyed.fingerprint,
                version,
                kind: None,
                state: None,
                at: keyed.now,
                expires_at: keyed.expires_at,
            });
        }
        let writes = pending
            .into_iter()
            .map(|p| Planned {
                machine: self.reads[p.read].machine,
                id: self.reads[p.read].id,
                expected: p.expected,
                kind: p.kind,
                state: Staged::Json(Cow::Owned(p.state)),
                command: Staged::Json(Cow::Owned(p.command)),
                origin: Origin::Command,
                schema: p.schema,
                due: p.due,
            })
            .collect();
        Ok(Plan { writes, keys, remove: None, value: Deliberated::Decided(verdict, wrote) })
    }
}

impl<St: fmt::Debug> fmt::Debug for Decision<'_, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decision").field("store", &self.store).field("reads", &self.reads).finish_non_exhaustive()
    }
}
