//! One business decision over several records, of any machine types: read a
//! consistent snapshot, decide, and commit every write together with version
//! checks on what was read, retried as a whole on conflict.

use crate::error::{Error, StoreError};
use crate::machine::{Machine, checked_transition};
use crate::retry::{Clock, Policy, Retry, TokioClock};
use crate::runner::Session;
use crate::store::{Check, Commit, Store, Write};
use crate::tries::Tries;
use crate::{Kind, State};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

/// A transition error from one of a decision's machines, whatever its type.
#[derive(Debug, thiserror::Error)]
#[error("{machine} rejected the command: {source}")]
pub struct Rejection {
    /// The machine whose transition refused.
    pub machine: &'static str,
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
pub struct Key<M: Machine> {
    id: String,
    validated: bool,
    machine: PhantomData<fn() -> M>,
}

impl<M: Machine> Key<M> {
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

impl<M: Machine> Clone for Key<M> {
    fn clone(&self) -> Self {
        Self { id: self.id.clone(), validated: self.validated, machine: PhantomData }
    }
}

impl<M: Machine> fmt::Debug for Key<M> {
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
    /// Commit the commands applied to the draft (if none, nothing is written)
    /// and return `T`.
    Commit(T),
    /// Write nothing and stop, with a reason. Not retried.
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
    /// The closure committed without applying any command: nothing written.
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
}

impl<T> Decided<T> {
    /// Runs `after` if and only if the decision committed, exactly once, and
    /// returns its result beside the decision, so a failing follow-up (an
    /// email, a message) is reported apart from the decision, which stands.
    pub async fn and_then<F, Fut, E>(self, after: F) -> (Self, Option<Result<(), E>>)
    where
        F: FnOnce(&T) -> Fut,
        Fut: Future<Output = Result<(), E>>,
    {
        match &self {
            Self::Committed { value, .. } => {
                let result = after(value).await;
                (self, Some(result))
            }
            Self::Unchanged { .. } | Self::Aborted { .. } => (self, None),
        }
    }

    /// Whether the decision committed writes.
    #[must_use]
    pub fn is_committed(&self) -> bool {
        matches!(self, Self::Committed { .. })
    }
}

/// A record as loaded for this attempt.
struct Loaded {
    machine: &'static str,
    id: String,
    validated: bool,
    version: u64,
    state: Option<Arc<str>>,
}

/// A command's result waiting for the commit.
struct Pending {
    read: usize,
    expected: u64,
    kind: &'static str,
    state: String,
    command: String,
}

/// The snapshot a decision's closure works on: read states, apply commands.
/// Nothing reaches the store until the closure returns [`Verdict::Commit`].
pub struct Draft<'a> {
    loaded: &'a [Loaded],
    pending: Vec<Pending>,
}

impl Draft<'_> {
    fn position<M: Machine>(&self, key: &Key<M>) -> Result<usize, Error<Rejection>> {
        self.loaded
            .iter()
            .position(|l| l.machine == M::NAME && l.id == key.id)
            .ok_or_else(|| Error::NotRead { machine: M::NAME, id: key.id.clone() })
    }

    /// The record's state as the decision sees it: as loaded, or after the
    /// commands this draft already applied to it. A record never written is
    /// its machine's initial state.
    pub fn state<M: Machine>(&self, key: &Key<M>) -> Result<M::State, Error<Rejection>>
    where
        M::State: DeserializeOwned,
    {
        let read = self.position(key)?;
        let (version, json) = match self.pending.iter().rev().find(|p| p.read == read) {
            Some(pending) => (pending.expected + 1, Some(pending.state.as_str())),
            None => (self.loaded[read].version, self.loaded[read].state.as_deref()),
        };
        json.map_or_else(
            || Ok(M::State::initial()),
            |json| {
                serde_json::from_str(json).map_err(|source| Error::Decode {
                    machine: M::NAME,
                    id: key.id.clone(),
                    version,
                    source,
                })
            },
        )
    }

    /// The version the record was read at (0: it did not exist).
    pub fn version<M: Machine>(&self, key: &Key<M>) -> Result<u64, Error<Rejection>> {
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
        let read = self.position(key)?;
        let state = self.state(key)?;
        let expected =
            self.pending.iter().rev().find(|p| p.read == read).map_or(self.loaded[read].version, |p| p.expected + 1);
        let next = checked_transition::<M>(deps, command, &state).map_err(|e| boxed(M::NAME, e))?;
        let encode = |what, source| Error::Encode { machine: M::NAME, id: key.id.clone(), what, source };
        self.pending.push(Pending {
            read,
            expected,
            kind: next.kind().as_str(),
            state: serde_json::to_string(&next).map_err(|e| encode("state", e))?,
            command: serde_json::to_string(command).map_err(|e| encode("command", e))?,
        });
        Ok(next)
    }
}

/// Turns a machine's error into the decision's error type.
fn boxed<E: std::error::Error + Send + Sync + 'static>(machine: &'static str, error: Error<E>) -> Error<Rejection> {
    let rejection = |source: E| Rejection { machine, source: Box::new(source) };
    match error {
        Error::Rejected(e) => Error::Rejected(rejection(e)),
        Error::FailureRecorded { source, version } => Error::FailureRecorded { source: rejection(source), version },
        Error::NotAllowed { machine, command, state } => Error::NotAllowed { machine, command, state },
        Error::Undeclared { machine, command, from, to } => Error::Undeclared { machine, command, from, to },
        Error::RetriesExhausted { conflict, attempts } => Error::RetriesExhausted { conflict, attempts },
        Error::Thrashing { conflict, conflicts, attempts } => Error::Thrashing { conflict, conflicts, attempts },
        Error::DeadlineExceeded { conflict, attempts, elapsed } => {
            Error::DeadlineExceeded { conflict, attempts, elapsed }
        }
        Error::BudgetExhausted { conflict, attempts } => Error::BudgetExhausted { conflict, attempts },
        Error::CircuitOpen { machine, id, retry_after } => Error::CircuitOpen { machine, id, retry_after },
        Error::NotFailed { machine, id, state } => Error::NotFailed { machine, id, state },
        Error::NotRead { machine, id } => Error::NotRead { machine, id },
        Error::Decode { machine, id, version, source } => Error::Decode { machine, id, version, source },
        Error::Encode { machine, id, what, source } => Error::Encode { machine, id, what, source },
        Error::Store(e) => Error::Store(e),
    }
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
}

impl<'s, St: Store> Decision<'s, St> {
    /// A decision over records of `store`, retried by the default [`Retry`] policy.
    pub fn new(store: &'s St) -> Self {
        Self { store, policy: Arc::new(Retry::default()), clock: Arc::new(TokioClock::new()), reads: Vec::new() }
    }

    /// The store the decision reads and writes.
    #[must_use]
    pub fn store(&self) -> &'s St {
        self.store
    }

    /// Adds `key` to the records the decision reads (and may write).
    #[must_use]
    pub fn read<M: Machine>(mut self, key: &Key<M>) -> Self {
        self.reads.push((M::NAME, key.id.clone(), key.validated));
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
    /// applied, all or nothing. When another writer changed a written or a
    /// validated record in between, the whole decision runs again on fresh
    /// data, as the policy allows.
    pub async fn attempt<T, F>(self, decide: F) -> Result<Decided<T>, Error<Rejection>>
    where
        F: FnMut(&mut Draft<'_>) -> Result<Verdict<T>, Error<Rejection>>,
    {
        let store = self.store;
        self.run(store, decide).await
    }

    pub(crate) async fn run<T, F>(
        &self,
        mut session: impl Session,
        mut decide: F,
    ) -> Result<Decided<T>, Error<Rejection>>
    where
        F: FnMut(&mut Draft<'_>) -> Result<Verdict<T>, Error<Rejection>>,
    {
        let mut tries = Tries::new(&*self.clock);
        loop {
            let attempts = tries.start();
            let mut loaded = Vec::with_capacity(self.reads.len());
            for (machine, id, validated) in &self.reads {
                let record = session.load(machine, id).await?;
                loaded.push(Loaded {
                    machine,
                    id: id.clone(),
                    validated: *validated,
                    version: record.as_ref().map_or(0, |r| r.version),
                    state: record.map(|r| r.state),
                });
            }
            let mut draft = Draft { loaded: &loaded, pending: Vec::new() };
            let value = match decide(&mut draft)? {
                Verdict::Abort(reason) => return Ok(Decided::Aborted { reason, attempts }),
                Verdict::Commit(value) if draft.pending.is_empty() => {
                    return Ok(Decided::Unchanged { value, attempts });
                }
                Verdict::Commit(value) => value,
            };
            let writes = draft
                .pending
                .iter()
                .map(|p| Write {
                    machine: loaded[p.read].machine,
                    id: &loaded[p.read].id,
                    expected: p.expected,
                    kind: p.kind,
                    state: p.state.clone(),
                    command: &p.command,
                    origin: crate::store::Origin::Command,
                })
                .collect();
            let checks = loaded
                .iter()
                .enumerate()
                .filter(|(read, l)| l.validated && !draft.pending.iter().any(|p| p.read == *read))
                .map(|(_, l)| Check { machine: l.machine, id: &l.id, expected: l.version })
                .collect();
            match session.commit(Commit { writes, checks }).await {
                Ok(()) => return Ok(Decided::Committed { value, attempts }),
                Err(StoreError::Conflict(conflict)) => tries.lost(&*self.policy, &*self.clock, conflict).await?,
                Err(other) => return Err(Error::Store(other)),
            }
        }
    }
}

impl<St: fmt::Debug> fmt::Debug for Decision<'_, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decision").field("store", &self.store).field("reads", &self.reads).finish_non_exhaustive()
    }
}
