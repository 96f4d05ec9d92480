//! A store wrapper that fails on schedule: version conflicts and transient
//! backend errors at chosen calls, so the runner's retry paths are tested
//! deterministically instead of by racing real writers.

use crate::error::{StoreError, VersionConflict};
use crate::store::{Change, Commit, Cursor, Feed, Listed, Query, Record, Remembered, Remove, Store};
use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// A [`Store`] operation, as counted and scheduled by [`FaultyStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Op {
    /// [`Store::load`].
    Load,
    /// [`Store::commit`].
    Commit,
    /// [`Store::history`].
    History,
    /// [`Feed::changes`].
    Changes,
    /// [`Query::by_kind`].
    ByKind,
    /// [`Store::recall`].
    Recall,
    /// [`Query::records`].
    Records,
    /// [`Store::remove`].
    Remove,
    /// [`Store::prune_history`].
    Prune,
}

impl Op {
    /// Every operation, in declaration order.
    pub const ALL: &'static [Op] =
        &[Op::Load, Op::Commit, Op::History, Op::Changes, Op::ByKind, Op::Recall, Op::Records, Op::Remove, Op::Prune];

    fn index(self) -> usize {
        Self::ALL.iter().position(|&op| op == self).unwrap_or(0)
    }

    /// The operation's name: `"load"`, `"commit"`, `"history"`, `"changes"`,
    /// `"by_kind"`, `"recall"`, `"records"`, `"remove"`, `"prune"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Load => "load",
            Op::Commit => "commit",
            Op::History => "history",
            Op::Changes => "changes",
            Op::ByKind => "by_kind",
            Op::Recall => "recall",
            Op::Records => "records",
            Op::Remove => "remove",
            Op::Prune => "prune",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`FaultyStore`] does instead of (or after) an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// Refuse a commit with [`StoreError::Conflict`], writing nothing, as if
    /// another writer had just saved the first record it writes (or checks).
    /// The conflict's `attempted` and `current` are both the version that
    /// writer took, so it has a [`gap`](VersionConflict::gap) of 1.
    Conflict,
    /// Fail with a retryable [`StoreError::Backend`] whose source is an
    /// [`InjectedFault`], doing nothing: a dropped connection or a timeout.
    Transient,
    /// Apply the commit, then fail as [`Transient`](Fault::Transient) does:
    /// the reply was lost, and the caller cannot tell that it was written.
    LostReply,
}

/// Which calls of an operation fail: call numbers count from 1, per
/// operation, across all records of the store (and its clones).
///
/// ```
/// use machine_core::testing::Schedule;
///
/// let every_third = Schedule::every(3);
/// assert_eq!((1..=9).filter(|&call| every_third.hits(call)).collect::<Vec<_>>(), [3, 6, 9]);
/// assert!(Schedule::calls([1, 4]).hits(4));
/// assert!(Schedule::first(2).hits(2) && !Schedule::first(2).hits(3));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule(Repr);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Repr {
    Every(u64),
    First(u64),
    Calls(BTreeSet<u64>),
}

impl Schedule {
    /// Calls `n`, `2n`, `3n`, … (never, for `n == 0`).
    #[must_use]
    pub fn every(n: u64) -> Self {
        Self(Repr::Every(n))
    }

    /// Calls `1..=n`: the first `n`.
    #[must_use]
    pub fn first(n: u64) -> Self {
        Self(Repr::First(n))
    }

    /// Exactly the listed calls: a script, such as `[1, 2]` for "the first
    /// two attempts of the next command lose".
    #[must_use]
    pub fn calls(calls: impl IntoIterator<Item = u64>) -> Self {
        Self(Repr::Calls(calls.into_iter().collect()))
    }

    /// Whether call number `call` (from 1) is scheduled.
    #[must_use]
    pub fn hits(&self, call: u64) -> bool {
        match &self.0 {
            Repr::Every(n) => *n != 0 && call != 0 && call.is_multiple_of(*n),
            Repr::First(n) => (1..=*n).contains(&call),
            Repr::Calls(calls) => calls.contains(&call),
        }
    }
}

/// One fault [`FaultyStore`] injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Injection {
    /// The operation.
    pub op: Op,
    /// Its call number, from 1.
    pub call: u64,
    /// What was done.
    pub fault: Fault,
}

/// The source of the [`StoreError::Backend`] errors [`FaultyStore`] injects,
/// so a test can tell them from real ones with `downcast_ref`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InjectedFault(pub Injection);

impl fmt::Display for InjectedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Injection { op, call, fault } = self.0;
        let what = match fault {
            Fault::Conflict => "conflict",
            Fault::Transient => "transient failure",
            Fault::LostReply => "lost reply",
        };
        write!(f, "injected {what} on {op} #{call}")
    }
}

impl std::error::Error for InjectedFault {}

struct Rule {
    op: Op,
    fault: Fault,
    schedule: Schedule,
}

#[derive(Default)]
struct Plan {
    rules: Vec<Rule>,
    calls: [u64; Op::ALL.len()],
    injected: Vec<Injection>,
}

/// A [`Store`] that forwards to another store and fails on schedule.
///
/// Faults are scheduled per operation by call number ([`Schedule`]); when
/// several rules hit the same call, the first added wins. Clones share the
/// schedule, the counters and the log, so a test keeps a clone (or uses
/// [`Runner::store`](crate::Runner::store)) to see what was injected.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use machine_core::prelude::*;
/// use machine_core::store::Memory;
/// use machine_core::testing::{FaultyStore, Op, Schedule};
/// use std::time::Duration;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)] enum Counter { #[state(initial)] Zero, Counting(u64) }
/// # #[derive(Command, Clone, Debug, Serialize, Deserialize)] #[command(state = Counter)]
/// # enum Count { #[command(from(Zero, Counting), to(Counting))] Add(u64) }
/// # struct Counters;
/// # impl Machine for Counters {
/// #     type State = Counter; type Command = Count; type Deps = (); type Error = std::convert::Infallible;
/// #     fn transition(_: &(), Count::Add(n): &Count, state: &Counter) -> Result<Counter, Self::Error> {
/// #         Ok(match state { Counter::Zero => Counter::Counting(*n), Counter::Counting(t) => Counter::Counting(t + n) })
/// #     }
/// # }
///
/// // The first two commits lose a race that never happened.
/// let store = FaultyStore::new(Memory::new()).conflicts(Schedule::calls([1, 2]));
/// let runner = Runner::<Counters, _>::new(store, ()).retry(Retry::fixed(Duration::ZERO));
/// let out = runner.handle("visits", &Count::Add(1)).await.unwrap();
/// assert_eq!((out.version, out.attempts), (1, 3));
/// assert_eq!(runner.store().calls(Op::Commit), 3);
/// # }
/// ```
pub struct FaultyStore<S> {
    inner: S,
    plan: Arc<Mutex<Plan>>,
}

impl<S> FaultyStore<S> {
    /// Wraps `inner`; without rules every call is forwarded unchanged.
    #[must_use]
    pub fn new(inner: S) -> Self {
        Self { inner, plan: Arc::default() }
    }

    /// Refuses the scheduled commits with a version conflict ([`Fault::Conflict`]).
    #[must_use]
    pub fn conflicts(self, schedule: Schedule) -> Self {
        self.rule(Op::Commit, Fault::Conflict, schedule)
    }

    /// Fails the scheduled calls of `op` with a retryable backend error,
    /// doing nothing ([`Fault::Transient`]).
    #[must_use]
    pub fn transient(self, op: Op, schedule: Schedule) -> Self {
        self.rule(op, Fault::Transient, schedule)
    }

    /// Applies the scheduled commits, then fails them with a retryable
    /// backend error ([`Fault::LostReply`]).
    #[must_use]
    pub fn lost_replies(self, schedule: Schedule) -> Self {
        self.rule(Op::Commit, Fault::LostReply, schedule)
    }

    /// Injects `fault` on the scheduled calls of `op`. [`Fault::Conflict`]
    /// and [`Fault::LostReply`] only mean something for the writing
    /// operations ([`Op::Commit`], [`Op::Remove`]); on the others they fail
    /// as [`Fault::Transient`] does.
    #[must_use]
    pub fn fault(self, op: Op, fault: Fault, schedule: Schedule) -> Self {
        self.rule(op, fault, schedule)
    }

    fn rule(self, op: Op, fault: Fault, schedule: Schedule) -> Self {
        self.plan().rules.push(Rule { op, fault, schedule });
        self
    }

    /// The wrapped store.
    #[must_use]
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// How many times `op` was called, faulty calls included.
    #[must_use]
    pub fn calls(&self, op: Op) -> u64 {
        self.plan().calls[op.index()]
    }

    /// Every fault injected so far, in order.
    #[must_use]
    pub fn injected(&self) -> Vec<Injection> {
        self.plan().injected.clone()
    }

    fn plan(&self) -> MutexGuard<'_, Plan> {
        // The plan is only counters and a log; a panic elsewhere cannot leave
        // it inconsistent.
        self.plan.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a call of `op` and returns the fault due on it, if any.
    fn arrive(&self, op: Op) -> Option<Injection> {
        let mut plan = self.plan();
        let counter = &mut plan.calls[op.index()];
        *counter += 1;
        let call = *counter;
        let fault = plan.rules.iter().find(|rule| rule.op == op && rule.schedule.hits(call))?.fault;
        let injection = Injection { op, call, fault };
        plan.injected.push(injection);
        Some(injection)
    }

    /// For operations that can only fail transiently: counts the call and
    /// fails it when a fault is due.
    fn gate(&self, op: Op) -> Result<(), StoreError> {
        self.arrive(op).map_or(Ok(()), |injection| Err(backend(injection)))
    }
}

fn backend(injection: Injection) -> StoreError {
    StoreError::Backend { source: Arc::new(InjectedFault(injection)), retryable: true }
}

/// The conflict a phantom writer of the commit's first record would cause.
fn phantom_conflict(commit: &Commit<'_>) -> VersionConflict {
    let first = commit
        .writes
        .first()
        .map(|write| (write.machine, write.id, write.expected))
        .or_else(|| commit.checks.first().map(|check| (check.machine, check.id, check.expected)));
    let (machine, id, expected) = first.unwrap_or(("", "", 0));
    let taken = expected.saturating_add(1);
    VersionConflict::new(machine, id, taken, taken)
}

// Every method counts the call, fails it if scheduled, and otherwise
// forwards: a method added to `Store` gets an `Op` variant and three lines.
impl<S: Store> Store for FaultyStore<S> {
    async fn load(&self, machine: &str, id: &str) -> Result<Option<Record>, StoreError> {
        self.gate(Op::Load)?;
        self.inner.load(machine, id).await
    }

    async fn commit(&self, commit: Commit<'_>) -> Result<(), StoreError> {
        let Some(injection) = self.arrive(Op::Commit) else {
            return self.inner.commit(commit).await;
        };
        match injection.fault {
            Fault::Conflict => Err(StoreError::Conflict(phantom_conflict(&commit))),
            Fault::Transient => Err(backend(injection)),
            Fault::LostReply => {
                self.inner.commit(commit).await?;
                Err(backend(injection))
            }
        }
    }

    async fn history(&self, machine: &str, id: &str) -> Result<Vec<Change>, StoreError> {
        self.gate(Op::History)?;
        self.inner.history(machine, id).await
    }

    /// Counted and failed as [`Op::History`].
    async fn history_page(&self, machine: &str, id: &str, after: u64, limit: u32) -> Result<Vec<Change>, StoreError> {
        self.gate(Op::History)?;
        self.inner.history_page(machine, id, after, limit).await
    }

    /// Counted and failed as [`Op::Recall`].
    async fn forget_keys(&self, now: u64, limit: u32) -> Result<u64, StoreError> {
        self.gate(Op::Recall)?;
        self.inner.forget_keys(now, limit).await
    }

    async fn recall(&self, machine: &str, id: &str, key: &str) -> Result<Option<Remembered>, StoreError> {
        self.gate(Op::Recall)?;
        self.inner.recall(machine, id, key).await
    }

    /// Fails as a commit does: a [`Fault::Conflict`] as if a writer had
    /// just saved the record, a [`Fault::LostReply`] after removing it.
    async fn remove(&self, remove: Remove<'_>) -> Result<(), StoreError> {
        let Some(injection) = self.arrive(Op::Remove) else {
            return self.inner.remove(remove).await;
        };
        match injection.fault {
            Fault::Conflict => {
                let taken = remove.expected.saturating_add(1);
                Err(StoreError::Conflict(VersionConflict::new(remove.machine, remove.id, taken, taken)))
            }
            Fault::Transient => Err(backend(injection)),
            Fault::LostReply => {
                self.inner.remove(remove).await?;
                Err(backend(injection))
            }
        }
    }

    async fn prune_history(&self, before: u64, limit: u32) -> Result<u64, StoreError> {
        self.gate(Op::Prune)?;
        self.inner.prune_history(before, limit).await
    }
}

impl<S: Feed> Feed for FaultyStore<S> {
    async fn changes(&self, after: Cursor, limit: u32) -> Result<Vec<Change>, StoreError> {
        self.gate(Op::Changes)?;
        self.inner.changes(after, limit).await
    }
}

impl<S: Query> Query for FaultyStore<S> {
    async fn by_kind(
        &self,
        machine: &str,
        kind: &str,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Listed>, StoreError> {
        self.gate(Op::ByKind)?;
        self.inner.by_kind(machine, kind, after_id, limit).await
    }

    /// Counted and failed as [`Op::ByKind`].
    async fn count(&self, machine: &str, kind: &str) -> Result<u64, StoreError> {
        self.gate(Op::ByKind)?;
        self.inner.count(machine, kind).await
    }

    async fn records(&self, machine: &str, after_id: Option<&str>, limit: u32) -> Result<Vec<Listed>, StoreError> {
        self.gate(Op::Records)?;
        self.inner.records(machine, after_id, limit).await
    }
}

impl<S: Clone> Clone for FaultyStore<S> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), plan: Arc::clone(&self.plan) }
    }
}

impl<S: fmt::Debug> fmt::Debug for FaultyStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plan = self.plan();
        f.debug_struct("FaultyStore")
            .field("inner", &self.inner)
            .field("calls", &plan.calls)
            .field("injected", &plan.injected.len())
            .finish_non_exhaustive()
    }
}
