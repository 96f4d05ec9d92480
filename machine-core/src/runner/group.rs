//! Commands on one record — a single command, a coalesced group, a
//! recovery — applied in order on one load and committed together: the
//! runner's step of the pipeline.

use super::codec::{decode_record, decode_state, encode};
use super::pipeline::{Keyed, Loads, Plan, Planned, Recalled, Staged, Step};
use super::request::{Must, Request, fingerprint};
use crate::error::{Error, StoreError};
use crate::machine::{AsyncMachine, checked};
use crate::observe::{self, Op};
use crate::store::Origin;
use crate::store::body::Body;
use crate::timers::Deadline;
use crate::{Command, Kind, State, Transitions};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::borrow::Cow;
use std::convert::Infallible;

/// The failed command, the state it failed in, how often it failed and when
/// it last did, when a state is a failure (built from `FailureState`, which
/// only some machines have).
pub(crate) type Opener<M> =
    fn(&<M as AsyncMachine>::State) -> Option<(<M as AsyncMachine>::Command, <M as AsyncMachine>::State, u32, u64)>;

/// When a background recovery may replay a failure: not before its backoff
/// after the last failure has passed, and not once it failed `limit` times.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ready {
    /// The clock reading to judge by, in milliseconds since the Unix epoch.
    pub(crate) now: u64,
    pub(crate) backoff: crate::retry::Backoff,
    /// The longest wait, in milliseconds.
    pub(crate) cap: u64,
    pub(crate) limit: u32,
}

impl Ready {
    /// When a failure seen `attempts` times, last at `failed_at`, may be
    /// replayed; `None` once it has failed `limit` times.
    pub(crate) fn at(&self, attempts: u32, failed_at: u64) -> Option<u64> {
        if attempts >= self.limit {
            return None;
        }
        let wait = super::millis(self.backoff.curve(attempts, 0)).min(self.cap);
        Some(failed_at.saturating_add(wait))
    }
}

/// The failure state to save for a transition error, or `None` when the
/// machine calls that error a refusal: `(command, previous, error, attempts,
/// failed_at)`.
pub(crate) type Recorder<M> = fn(
    &<M as AsyncMachine>::Command,
    &<M as AsyncMachine>::State,
    &<M as AsyncMachine>::Error,
    u32,
    u64,
) -> Option<<M as AsyncMachine>::State>;

/// What one member of a group asks for.
pub(crate) enum Intent<'a, M: AsyncMachine> {
    /// Run a command, as the request says.
    Apply(&'a M::Command, Request<'a>),
    /// Replay the recorded failure the record is in (only once it is ready,
    /// when a background recovery asks).
    Recover(Opener<M>, Option<Ready>),
    /// Rewrite the record's state, as decoded (and migrated), at the
    /// current schema version: no command, no transition.
    Rewrite,
    /// Send the declared timer command of the record's state if that state
    /// is due at this time (milliseconds since the Unix epoch); judged on
    /// the state each attempt loads, so a record that moved on is skipped.
    Fire(u64),
}

impl<'a, M: AsyncMachine> Intent<'a, M> {
    /// The call this intent is, for its span and metrics (`joined`: in a
    /// transaction the caller holds).
    pub(crate) fn op(&self, joined: bool) -> Op {
        match self {
            Self::Apply(command, _) if joined => Op::HandleIn(command.kind().as_str()),
            Self::Apply(command, _) => Op::Handle(command.kind().as_str()),
            Self::Recover(..) => Op::Recover,
            Self::Rewrite => Op::Migrate,
            Self::Fire(_) => Op::Fire,
        }
    }

    /// The idempotency key the intent carries.
    pub(crate) fn key(&self) -> Option<&'a str> {
        match self {
            Self::Apply(_, request) => request.idempotency_key(),
            Self::Recover(..) | Self::Rewrite | Self::Fire(_) => None,
        }
    }
}

/// A member's result once its group committed.
pub(crate) struct Saved<M: AsyncMachine> {
    pub(crate) state: M::State,
    /// The machine's error, when `state` is the failure it was recorded as.
    pub(crate) failed: Option<M::Error>,
    pub(crate) version: u64,
    /// The outcome of an earlier call with the same idempotency key.
    pub(crate) replayed: bool,
}

/// One member's result within a group.
pub(crate) type Applied<M> = Result<Saved<M>, Error<<M as AsyncMachine>::Error>>;

/// The group step: the intents, in order, on one record.
pub(crate) struct Group<'a, M: AsyncMachine> {
    pub(crate) id: &'a str,
    pub(crate) deps: &'a M::Deps,
    pub(crate) intents: &'a [Intent<'a, M>],
    pub(crate) recorder: Option<Recorder<M>>,
    pub(crate) now: &'a (dyn Fn() -> u64 + Send + Sync),
    /// How long idempotency keys are kept, in milliseconds.
    pub(crate) key_retention: u64,
}

/// A key this plan stores, and the member whose outcome it names.
struct Planted<'a> {
    key: &'a str,
    fingerprint: u64,
    result: usize,
}

/// Whether a command runs, and with which key to store (and its
/// fingerprint), or replays an earlier outcome.
enum Admit<'a, M: AsyncMachine> {
    Run(Option<(&'a str, u64)>),
    Replay(Saved<M>),
}

/// What one intent produced on the state it saw.
struct Next<'a, M: AsyncMachine> {
    state: M::State,
    failed: Option<M::Error>,
    command: Staged<'a>,
    origin: Origin,
}

impl<'a, M> Group<'a, M>
where
    M: AsyncMachine,
    M::State: Clone + Serialize + DeserializeOwned + 'static,
    M::Command: Clone + Serialize + 'static,
{
    /// `command` as the session keeps it (typed, or JSON).
    fn stage(&self, command: M::Command, typed: bool) -> Result<Staged<'a>, Error<M::Error>> {
        if typed {
            return Ok(Staged::Typed(Body::typed(command)));
        }
        Ok(Staged::Json(encode::<M, _, _>(self.id, "command", &command)?.into()))
    }

    /// The caller's `command` as the session keeps it: lent (copied only
    /// where it is kept), or JSON.
    fn lend(&self, command: &'a M::Command, typed: bool) -> Result<Staged<'a>, Error<M::Error>> {
        if typed {
            return Ok(Staged::Lent(command));
        }
        Ok(Staged::Json(encode::<M, _, _>(self.id, "command", command)?.into()))
    }

    /// The new state as the session keeps it. Typed values are encoded here
    /// only in debug builds, so that a state a durable store would refuse
    /// fails the same way in tests on the memory store.
    fn store_state(&self, state: &M::State, typed: bool) -> Result<Staged<'static>, Error<M::Error>> {
        if typed {
            let body = Body::typed(state.clone());
            if cfg!(debug_assertions) {
                body.json().map_err(|source| Error::Encode {
                    machine: M::NAME,
                    id: self.id.to_owned(),
                    what: "state",
                    source,
                })?;
            }
            return Ok(Staged::Typed(body));
        }
        Ok(Staged::Json(encode::<M, _, _>(self.id, "state", state)?.into()))
    }

    /// What a request's key and existence rule make of a command about to
    /// run on a record at `version`: run it (storing the key, if any), or
    /// replay the outcome the key was stored with. `stored` is the key and
    /// what the store holds under it; `planted` the keys this plan already
    /// stores, whose outcomes are in `results`.
    #[allow(clippy::too_many_arguments)]
    fn admit(
        &self,
        command: &M::Command,
        request: Request<'a>,
        stored: Option<(&'a str, Option<Recalled>)>,
        now: u64,
        version: u64,
        planted: &[Planted<'_>],
        results: &[Applied<M>],
    ) -> Result<Admit<'a, M>, Error<M::Error>> {
        let mut run_key = None;
        if let Some((key, stored)) = stored {
            let fingerprint = fingerprint(command).map_err(|source| Error::Encode {
                machine: M::NAME,
                id: self.id.to_owned(),
                what: "command",
                source: std::sync::Arc::new(source),
            })?;
            let reused =
                |version| Error::KeyReused { machine: M::NAME, id: self.id.to_owned(), key: key.to_owned(), version };
            // The same key twice in one group: the second is a repeat of the
            // first, which this very commit stores.
            if let Some(earlier) = planted.iter().find(|planted| planted.key == key) {
                let Some(Ok(saved)) = results.get(earlier.result) else { return Err(reused(0)) };
                if earlier.fingerprint != fingerprint {
                    return Err(reused(saved.version));
                }
                return Ok(Admit::Replay(Saved {
                    state: saved.state.clone(),
                    failed: None,
                    version: saved.version,
                    replayed: true,
                }));
            }
            if let Some(stored) = stored.filter(|stored| now < stored.expires_at) {
                if stored.fingerprint != fingerprint {
                    return Err(reused(stored.version));
                }
                // A key stored by a decision names no state of this machine.
                let Some(body) = &stored.state else { return Err(reused(stored.version)) };
                let state = decode_state::<M, M::Error>(self.id, stored.version, stored.kind.as_deref(), body)?;
                return Ok(Admit::Replay(Saved { state, failed: None, version: stored.version, replayed: true }));
            }
            run_key = Some((key, fingerprint));
        }
        self.exists_as(request, version)?;
        Ok(Admit::Run(run_key))
    }

    /// Whether the record, at `version`, is as `request` says it must be
    /// (new, or existing).
    pub(super) fn exists_as(&self, request: Request<'_>, version: u64) -> Result<(), Error<M::Error>> {
        match request.must() {
            Must::Create if version > 0 => {
                Err(Error::AlreadyExists { machine: M::NAME, id: self.id.to_owned(), version })
            }
            Must::Update if version == 0 => Err(Error::NotFound { machine: M::NAME, id: self.id.to_owned() }),
            _ => Ok(()),
        }
    }

    /// The key `key` to store with the write of `state` at `version`.
    fn keyed(
        &self,
        key: &'a str,
        fingerprint: u64,
        version: u64,
        kind: &'static str,
        state: &Staged<'static>,
        now: u64,
    ) -> Keyed<'a> {
        Keyed {
            machine: M::NAME,
            id: self.id,
            key,
            fingerprint,
            version,
            kind: Some(kind),
            state: Some(state.clone()),
            at: now,
            expires_at: now.saturating_add(self.key_retention),
        }
    }

    /// Runs `command` on `state`; an error the machine records as a failure
    /// becomes the failure state (`attempts` is how often it has now failed).
    async fn run(
        &self,
        command: &M::Command,
        on: &M::State,
        attempts: u32,
    ) -> Result<(M::State, Option<M::Error>), Error<M::Error>> {
        match checked::<M>(self.deps, Some(self.id), command, on).await {
            Ok(next) => Ok((next, None)),
            Err(Error::Rejected(error)) => {
                match self.recorder.and_then(|record| record(command, on, &error, attempts, (self.now)())) {
                    Some(failure) => Ok((failure, Some(error))),
                    None => Err(Error::Rejected(error)),
                }
            }
            Err(other) => Err(other),
        }
    }

    /// What `intent` writes on `state`, the record being at version
    /// `expected`: the write, and the member's result once it commits.
    pub(crate) async fn write(
        &self,
        intent: &Intent<'a, M>,
        state: &M::State,
        expected: u64,
        typed: bool,
    ) -> Result<(Planned<'a>, Saved<M>), Error<M::Error>> {
        let Some(written) = expected.checked_add(1) else {
            let overflow =
                StoreError::VersionOverflow { machine: M::NAME.to_owned(), id: self.id.to_owned(), version: expected };
            return Err(Error::Store(overflow));
        };
        let next = self.next(intent, state, typed).await?;
        let stored = self.store_state(&next.state, typed)?;
        let write = Planned {
            machine: M::NAME,
            id: self.id,
            expected,
            kind: next.state.kind().as_str(),
            state: stored,
            command: next.command,
            origin: next.origin,
            schema: M::SCHEMA,
            due: next.state.due().map(Deadline::as_millis),
        };
        Ok((write, Saved { state: next.state, failed: next.failed, version: written, replayed: false }))
    }

    async fn next(
        &self,
        intent: &Intent<'a, M>,
        state: &M::State,
        typed: bool,
    ) -> Result<Next<'a, M>, Error<M::Error>> {
        match intent {
            Intent::Apply(command, _) => {
                let staged = self.lend(command, typed)?;
                let (state, failed) = self.run(command, state, 1).await?;
                Ok(Next { state, failed, command: staged, origin: Origin::Command })
            }
            Intent::Recover(open, ready) => {
                let Some((command, previous, attempts, failed_at)) = open(state) else {
                    return Err(Error::NotFailed {
                        machine: M::NAME,
                        id: self.id.to_owned(),
                        state: state.kind().as_str(),
                    });
                };
                // A background recovery judges readiness on the state this
                // attempt loaded: a failure another instance just replayed
                // (and that failed again) waits its backoff afresh.
                if let Some(ready) = ready {
                    let at = ready.at(attempts, failed_at);
                    if at.is_none_or(|at| at > ready.now) {
                        let state = state.kind().as_str();
                        return Err(Error::NotDue { machine: M::NAME, id: self.id.to_owned(), state, due: at });
                    }
                }
                let (state, failed) = self.run(&command, &previous, attempts.saturating_add(1)).await?;
                Ok(Next { state, failed, command: self.stage(command, typed)?, origin: Origin::Recovery })
            }
            Intent::Fire(now) => {
                let due = state.due();
                let timer = due
                    .filter(|due| due.is_due(*now))
                    .and_then(|_| <M::Command as Transitions<M::State>>::timer(state.kind()));
                let Some(command) = timer else {
                    return Err(Error::NotDue {
                        machine: M::NAME,
                        id: self.id.to_owned(),
                        state: state.kind().as_str(),
                        due: due.map(Deadline::as_millis),
                    });
                };
                let staged = self.stage(command.clone(), typed)?;
                let (state, failed) = self.run(&command, state, 1).await?;
                Ok(Next { state, failed, command: staged, origin: Origin::Timer })
            }
            // A migration entry's command is JSON `null` on every store.
            Intent::Rewrite => Ok(Next {
                state: state.clone(),
                failed: None,
                command: Staged::Json(Cow::Borrowed("null")),
                origin: Origin::Migration,
            }),
        }
    }
}

impl<M> Step for Group<'_, M>
where
    M: AsyncMachine,
    M::State: Clone + Serialize + DeserializeOwned + 'static,
    M::Command: Clone + Serialize + 'static,
{
    type Value = Vec<Applied<M>>;
    type Error = Infallible;

    async fn plan(
        &mut self,
        loaded: Loads,
        recalled: Vec<Option<Recalled>>,
        _attempt: u32,
        typed: bool,
    ) -> Result<Plan<'_, Self::Value>, Error<Infallible>> {
        let record = loaded.into_iter().next().flatten();
        let decoded;
        // A state the memory store kept typed is used as it is, unencoded.
        let (base, version) = match &record {
            None => {
                decoded = M::State::initial();
                (&decoded, 0)
            }
            Some(record) => {
                if let Some(state) = record.state.get::<M::State>().filter(|_| record.schema == M::SCHEMA) {
                    (state, record.version)
                } else {
                    decoded = decode_record::<M, Infallible>(self.id, record)?.state;
                    (&decoded, record.version)
                }
            }
        };
        // Whether the state a rewrite would write is stored at the current
        // schema version already (then it writes nothing).
        let base_current = record.as_ref().is_none_or(|record| record.schema == M::SCHEMA);
        let mut writes: Vec<Planned<'_>> = Vec::with_capacity(self.intents.len());
        let mut results: Vec<Applied<M>> = Vec::with_capacity(self.intents.len());
        let mut recalled = recalled.into_iter();
        let mut keys: Vec<Keyed<'_>> = Vec::new();
        let mut planted: Vec<Planted<'_>> = Vec::new();
        let now = if self.intents.iter().any(|intent| intent.key().is_some()) { (self.now)() } else { 0 };
        // Each intent sees the state the last saved one produced (kept in
        // `results`, so states are never cloned).
        let mut last: Option<usize> = None;
        for intent in self.intents {
            let state = match last.and_then(|at| results[at].as_ref().ok()) {
                Some(saved) => &saved.state,
                None => base,
            };
            let expected = version + writes.len() as u64;
            if matches!(intent, Intent::Rewrite) && (base_current || !writes.is_empty()) {
                results.push(Ok(Saved { state: state.clone(), failed: None, version: expected, replayed: false }));
                last = Some(results.len() - 1);
                continue;
            }
            let mut keyed = None;
            if let Intent::Apply(command, request) = intent {
                let stored = request.idempotency_key().map(|key| (key, recalled.next().flatten()));
                match self.admit(command, *request, stored, now, expected, &planted, &results) {
                    Ok(Admit::Run(key)) => keyed = key,
                    Ok(Admit::Replay(saved)) => {
                        results.push(Ok(saved));
                        continue;
                    }
                    Err(error) => {
                        results.push(Err(error));
                        continue;
                    }
                }
            }
            let (write, saved) = match self.write(intent, state, expected, typed).await {
                Ok(written) => written,
                Err(error) => {
                    results.push(Err(error));
                    continue;
                }
            };
            if let Some((key, fingerprint)) = keyed {
                planted.push(Planted { key, fingerprint, result: results.len() });
                keys.push(self.keyed(key, fingerprint, saved.version, write.kind, &write.state, now));
            }
            writes.push(write);
            last = Some(results.len());
            results.push(Ok(saved));
        }
        let to = last.and_then(|at| results[at].as_ref().ok()).map(|saved| saved.state.kind().as_str());
        observe::planned(base.kind().as_str(), to);
        Ok(Plan { writes, keys, remove: None, value: results })
    }
}
