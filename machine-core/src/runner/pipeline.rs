//! The one loop every change goes through: admit → load → plan → one commit
//! → policy. A driver (a command, a coalesced group, a decision, a recovery,
//! a joined transaction) only says what to read and how to plan; retries,
//! read checks, the policy's hooks, the error mapping and the observability
//! hooks (spans, metrics: `crate::observe`) live here once. One attempt
//! is made before the loop: a single command whose transition never waits,
//! on the in-process store, is planned and committed under its record's
//! lock (`held.rs`, within the call this pipeline admitted, as the group
//! of one's first attempt); what it cannot take it leaves to the loop.

use super::tries::Tries;
use crate::error::{Error, StoreError};
use crate::observe::{Ended, Op, Watch};
use crate::retry::{Call, Clock, Finish, Policy};
use crate::store::body::{Body, Loaded};
use crate::store::memory::{Lend, Said};
use crate::store::{Check, Origin, Remove, Write};
use std::borrow::Cow;
use std::fmt::Display;
use std::future::Future;

pub(crate) use super::session::{Direct, Session};

/// A record an attempt loads. A `validated` read that the attempt does not
/// write is committed as a version check, so what the plan saw was one
/// consistent snapshot even when it writes nothing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Read<'a> {
    pub(crate) machine: &'static str,
    pub(crate) id: &'a str,
    pub(crate) validated: bool,
    /// Idempotency keys of this record to look up with it, for the plan.
    pub(crate) keys: &'a [&'a str],
}

impl<'a> Read<'a> {
    /// A record read without a version check or keys.
    pub(crate) fn plain(machine: &'static str, id: &'a str) -> Self {
        Self { machine, id, validated: false, keys: &[] }
    }
}

/// An idempotency key as a session read it back: the outcome of the change
/// it was stored with.
pub(crate) struct Recalled {
    pub(crate) fingerprint: u64,
    pub(crate) version: u64,
    pub(crate) kind: Option<std::sync::Arc<str>>,
    pub(crate) state: Option<Body>,
    pub(crate) at: u64,
    pub(crate) expires_at: u64,
}

impl From<crate::store::Remembered> for Recalled {
    fn from(stored: crate::store::Remembered) -> Self {
        Self {
            fingerprint: stored.fingerprint,
            version: stored.version,
            kind: stored.kind,
            state: stored.state.map(Body::Json),
            at: stored.at,
            expires_at: stored.expires_at,
        }
    }
}

/// An idempotency key a plan stores with its writes.
pub(crate) struct Keyed<'a> {
    pub(crate) machine: &'static str,
    pub(crate) id: &'a str,
    pub(crate) key: &'a str,
    pub(crate) fingerprint: u64,
    pub(crate) version: u64,
    pub(crate) kind: Option<&'static str>,
    pub(crate) state: Option<Staged<'static>>,
    pub(crate) at: u64,
    pub(crate) expires_at: u64,
}

impl Keyed<'_> {
    /// The key as the [`Store`](crate::store::Store) trait takes it.
    pub(crate) fn remember(&self) -> Result<crate::store::Remember<'_>, StoreError> {
        let state = match &self.state {
            Some(state) => Some(state.json(self.machine, self.id, "state")?.into_owned()),
            None => None,
        };
        Ok(crate::store::Remember {
            machine: self.machine,
            id: self.id,
            key: self.key,
            fingerprint: self.fingerprint,
            version: self.version,
            kind: self.kind,
            state,
            at: self.at,
            expires_at: self.expires_at,
        })
    }
}

/// A planned state or command: JSON for the stores that keep JSON, the
/// typed value for a session that keeps values typed ([`Session::typed`]).
#[derive(Clone)]
pub(crate) enum Staged<'a> {
    Json(Cow<'a, str>),
    Typed(Body),
    /// The caller's own command, lent to a session that keeps values
    /// typed: the in-process store copies it only into a history entry it
    /// keeps.
    Lent(&'a dyn Lend),
}

impl<'a> Staged<'a> {
    /// The value as the in-process store keeps it.
    pub(crate) fn into_body(self) -> Body {
        match self {
            Self::Json(json) => Body::Json(json.into()),
            Self::Typed(body) => body,
            Self::Lent(command) => command.body(),
        }
    }

    /// The command as the in-process store takes it.
    pub(crate) fn said(self) -> Said<'a> {
        match self {
            Self::Lent(command) => Said::Lent(command),
            owned @ (Self::Json(_) | Self::Typed(_)) => Said::Owned(owned.into_body()),
        }
    }

    fn json(&self, machine: &str, id: &str, what: &str) -> Result<Cow<'_, str>, StoreError> {
        match self {
            Self::Json(json) => Ok(Cow::Borrowed(json)),
            // Only a session that keeps typed values is handed any, so this
            // is a fallback that keeps other sessions correct regardless.
            Self::Typed(body) => body.json_of(machine, id, 0, what).map(|json| Cow::Owned(json.to_string())),
            Self::Lent(command) => {
                Self::Typed(command.body()).json(machine, id, what).map(|json| json.into_owned().into())
            }
        }
    }
}

/// One write an attempt decided on; it owns what it computed (the state, a
/// recovered command) and borrows the rest from the driver.
pub(crate) struct Planned<'a> {
    pub(crate) machine: &'static str,
    pub(crate) id: &'a str,
    pub(crate) expected: u64,
    pub(crate) kind: &'static str,
    pub(crate) state: Staged<'static>,
    pub(crate) command: Staged<'a>,
    pub(crate) origin: Origin,
    /// The writing machine's schema version.
    pub(crate) schema: u32,
    /// When the new state is due, in milliseconds since the Unix epoch.
    pub(crate) due: Option<u64>,
}

impl Planned<'_> {
    /// The write as the [`Store`](crate::store::Store) trait takes it,
    /// moving the state out (a plan is committed once).
    pub(crate) fn take_write(&mut self) -> Result<Write<'_>, StoreError> {
        let state = match std::mem::replace(&mut self.state, Staged::Json(Cow::Borrowed(""))) {
            Staged::Json(json) => json.into_owned(),
            typed @ (Staged::Typed(_) | Staged::Lent(_)) => typed.json(self.machine, self.id, "state")?.into_owned(),
        };
        let command = match &self.command {
            Staged::Json(json) => json,
            Staged::Typed(_) | Staged::Lent(_) => {
                return Err(StoreError::Corrupt {
                    machine: self.machine.to_owned(),
                    id: self.id.to_owned(),
                    reason: "a typed command reached a store that keeps JSON".to_owned(),
                });
            }
        };
        Ok(Write {
            machine: self.machine,
            id: self.id,
            expected: self.expected,
            kind: self.kind,
            state,
            command,
            origin: self.origin,
            schema: self.schema,
            due: self.due,
        })
    }
}

/// What one attempt decided: the writes to commit and what the driver gets
/// back if they commit.
pub(crate) struct Plan<'a, T> {
    pub(crate) writes: Vec<Planned<'a>>,
    /// Idempotency keys to store with the writes (only with writes).
    pub(crate) keys: Vec<Keyed<'a>>,
    /// A record to remove instead of writing anything (a plan has either
    /// writes or a removal, never both).
    pub(crate) remove: Option<Remove<'a>>,
    pub(crate) value: T,
}

/// The records an attempt loaded, one per read in order (`None`: never
/// written).
pub(crate) type Loads = std::vec::IntoIter<Option<Loaded>>;

/// A driver's planning of one attempt, from the records it named. The plan
/// borrows from the step (no lifetime parameter on the trait: with one, the
/// compiler cannot show that a spawned group commit is `Send`).
pub(crate) trait Step {
    /// What a committed attempt hands back.
    type Value;
    /// The machine error type of the errors planning can end with.
    type Error: Display;

    /// The outcome label of a call whose attempts returned `value` (see
    /// `crate::observe`): a decision tells a commit from an abort.
    fn settled(value: &Self::Value) -> &'static str {
        let _ = value;
        "committed"
    }

    /// Plans attempt `attempt` (the first is 1) on `loaded`, one entry per
    /// read in order (`None`: never written), and `recalled`, one entry per
    /// key of the reads in order (`None`: never stored). `typed`: the
    /// session keeps typed values, so states and commands may be staged
    /// typed. An `Err` ends the call; it is never retried.
    fn plan(
        &mut self,
        loaded: Loads,
        recalled: Vec<Option<Recalled>>,
        attempt: u32,
        typed: bool,
    ) -> impl Future<Output = Result<Plan<'_, Self::Value>, Error<Self::Error>>>;
}

/// The policy and the clock a call retries by, and whether what it touches
/// is sensitive (no ids in spans and events).
#[derive(Clone, Copy)]
pub(crate) struct Pipeline<'p> {
    pub(crate) policy: &'p dyn Policy,
    pub(crate) clock: &'p dyn Clock,
    pub(crate) sensitive: bool,
}

/// A call the policy let start, watched until it finishes.
pub(crate) struct Admitted<'i> {
    call: Call<'i>,
    watch: Watch,
}

impl Admitted<'_> {
    /// The call's work, run inside its span.
    pub(crate) fn run<F: Future>(&self, work: F) -> impl Future<Output = F::Output> {
        self.watch.run(work)
    }
}

impl Pipeline<'_> {
    /// Asks the policy to let call `op` on `(machine, id)` start; refused
    /// calls never touch the store (and are counted as `circuit_open`).
    pub(crate) fn admit<'i, E: Display>(
        &self,
        op: Op,
        machine: &'static str,
        id: &'i str,
    ) -> Result<Admitted<'i>, Error<E>> {
        let watch = Watch::start(op, machine, id, self.sensitive);
        let call = Call::new(machine, id);
        match self.policy.admit(&call) {
            Ok(()) => Ok(Admitted { call, watch }),
            Err(refused) => {
                let error = Error::CircuitOpen { machine, id: id.to_owned(), retry_after: refused.retry_after };
                watch.refused(id, &error);
                Err(error)
            }
        }
    }

    /// Tells the policy how an admitted call ended, and counts it (`ok`
    /// describes an `Ok` for the metrics).
    pub(crate) fn finish<T, E: Display>(
        &self,
        admitted: Admitted<'_>,
        result: &Result<T, Error<E>>,
        ok: impl FnOnce(&T) -> Ended,
    ) {
        self.policy.finish(&admitted.call, finish_of(result));
        admitted.watch.finish(admitted.call.id, result, ok);
    }

    /// A whole call (a decision): admitted, its attempts, the policy told how
    /// it ended.
    pub(crate) async fn call<S, P>(
        &self,
        session: S,
        reads: &[Read<'_>],
        step: &mut P,
    ) -> Result<(P::Value, u32), Error<P::Error>>
    where
        S: Session,
        P: Step,
    {
        let (machine, id) = reads.first().map_or(("", ""), |read| (read.machine, read.id));
        let admitted = self.admit(Op::Decide { reads: reads.len() }, machine, id)?;
        let result = admitted.run(self.attempts(session, reads, step)).await;
        self.finish(admitted, &result, |(value, attempts)| Ended::new(P::settled(value), *attempts));
        result
    }

    /// One group commit of a coalesced record: the attempts of `step` (the
    /// group's `size` commands) in a group-commit span. Its callers are
    /// admitted and finished one by one by the driver.
    pub(crate) async fn grouped<S, P>(
        &self,
        session: S,
        reads: &[Read<'_>],
        step: &mut P,
        size: usize,
    ) -> Result<(P::Value, u32), Error<P::Error>>
    where
        S: Session,
        P: Step,
    {
        let (machine, id) = reads.first().map_or(("", ""), |read| (read.machine, read.id));
        let watch = Watch::start(Op::Group { size }, machine, id, self.sensitive);
        let result = watch.run(self.attempts(session, reads, step)).await;
        watch.finish(id, &result, |(value, attempts)| Ended::new(P::settled(value), *attempts));
        result
    }

    /// The loop: load every read, plan, commit once (writes plus checks of
    /// the validated reads not written), and on a conflict ask the policy
    /// whether to go round again. Returns the plan's value and the number of
    /// attempts it took.
    pub(crate) async fn attempts<S, P>(
        &self,
        mut session: S,
        reads: &[Read<'_>],
        step: &mut P,
    ) -> Result<(P::Value, u32), Error<P::Error>>
    where
        S: Session,
        P: Step,
    {
        let mut tries = Tries::new(self.sensitive);
        loop {
            let attempt = tries.start();
            // The call's time starts here: a held attempt (`held.rs`) that
            // committed never needed it, and one that did not took
            // microseconds.
            tries.clock_from(self.clock);
            let mut loaded = Vec::with_capacity(reads.len());
            let mut recalled = Vec::new();
            let mut checks: Vec<Check<'_>> = Vec::new();
            for read in reads {
                let record = session.load(read.machine, read.id).await?;
                // After the load: a key committed since is found here, and
                // one committed later makes this attempt's commit conflict.
                for key in read.keys {
                    recalled.push(session.recall(read.machine, read.id, key).await?);
                }
                if read.validated {
                    let expected = record.as_ref().map_or(0, |r| r.version);
                    checks.push(Check { machine: read.machine, id: read.id, expected });
                }
                loaded.push(record);
            }
            let mut plan = step.plan(loaded.into_iter(), recalled, attempt, session.typed()).await?;
            // A record the plan writes is checked by its compare-and-set.
            checks.retain(|check| !plan.writes.iter().any(|w| w.machine == check.machine && w.id == check.id));
            let committed = match &plan.remove {
                // The removal is conditional on the version read, like a write.
                Some(remove) => session.remove(remove).await,
                None if plan.writes.is_empty() && checks.is_empty() => return Ok((plan.value, attempt)),
                None => session.commit(&mut plan.writes, checks, &plan.keys).await,
            };
            match committed {
                Ok(()) => return Ok((plan.value, attempt)),
                Err(StoreError::Conflict(conflict)) => {
                    // The label is the conflicting read's own `&'static str`.
                    let machine = reads.iter().map(|read| read.machine).find(|m| *m == conflict.machine);
                    tries.lost(self.policy, self.clock, conflict, machine.unwrap_or("unknown")).await?;
                }
                Err(other) => return Err(Error::Store(other)),
            }
        }
    }
}

/// How a call ended, for [`Policy::finish`]: saved (a recorded failure is a
/// successful save), given up after conflicts, a store failure, or anything
/// else (refusals say nothing about contention or the store's health).
pub(crate) fn finish_of<T, E>(result: &Result<T, Error<E>>) -> Finish {
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
