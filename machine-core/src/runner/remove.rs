//! Removing finished records: one (`Runner::remove`) or every one a
//! `retention::Terminal` names (`Runner::remove_terminal`), each through the
//! pipeline like a command: loaded, checked to be in a terminal state,
//! removed only if still at the version read (the store's conditional
//! removal), retried by the policy when a writer got there first. A driver,
//! not a loop of its own.

use super::codec::{decode_change, decode_record};
use super::pipeline::{Loads, Plan, Read, Recalled, Step};
use super::retention::{Archive, Archived, Progress, Removed, Terminal};
use super::{Runner, Versioned, widen};
use crate::error::Error;
use crate::machine::AsyncMachine;
use crate::observe::{Ended, Op};
use crate::store::body::Loaded;
use crate::store::{Listed, Query, Remove, Store};
use crate::{Kind, State};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;

/// Why a record was left as it was.
#[derive(Debug, Clone, Copy)]
enum Kept {
    /// There is no such record (any more).
    Missing,
    /// Its state, of this kind, is not terminal.
    NotTerminal(&'static str),
    /// It is no longer at the version the caller saw (and archived).
    Moved,
    /// Its last change is not old enough.
    Recent,
    /// Its kind is not one the run asked for.
    OtherKind,
}

/// What a removal of one record requires of it, besides a terminal state.
struct Removing<'a, M> {
    id: &'a str,
    /// Only at this version (what was archived).
    at: Option<u64>,
    /// Only if its last change was written before this.
    before: Option<u64>,
    /// Only in one of these kinds (empty: any terminal kind).
    kinds: &'a [&'static str],
    /// The stored kind the removal is conditional on, kept here because a
    /// plan borrows from its step.
    kind: Option<Arc<str>>,
    machine: PhantomData<fn() -> M>,
}

impl<'a, M> Removing<'a, M> {
    fn new(id: &'a str) -> Self {
        Self { id, at: None, before: None, kinds: &[], kind: None, machine: PhantomData }
    }
}

/// A plan that removes nothing, and why.
fn kept<'a, T>(why: Kept) -> Plan<'a, Result<T, Kept>> {
    Plan { writes: Vec::new(), keys: Vec::new(), remove: None, value: Err(why) }
}

impl<M> Step for Removing<'_, M>
where
    M: AsyncMachine,
    M::State: Clone + DeserializeOwned + 'static,
{
    type Value = Result<Versioned<M::State>, Kept>;
    type Error = Infallible;

    fn settled(value: &Self::Value) -> &'static str {
        if value.is_ok() { "removed" } else { "unchanged" }
    }

    async fn plan(
        &mut self,
        loaded: Loads,
        _: Vec<Option<Recalled>>,
        _: u32,
        _: bool,
    ) -> Result<Plan<'_, Self::Value>, Error<Infallible>> {
        let Some(record) = loaded.into_iter().next().flatten() else { return Ok(kept(Kept::Missing)) };
        if self.at.is_some_and(|at| at != record.version) {
            return Ok(kept(Kept::Moved));
        }
        // Decoded, so a record this code cannot read (corrupt, or stored by
        // a newer schema version) is never removed on the strength of its
        // stored kind alone.
        let state = match record.state.get::<M::State>().filter(|_| record.schema == M::SCHEMA) {
            Some(state) => state.clone(),
            None => decode_record::<M, Infallible>(self.id, &record)?.state,
        };
        let kind = state.kind().as_str();
        if !state.is_terminal() {
            return Ok(kept(Kept::NotTerminal(kind)));
        }
        if !self.kinds.is_empty() && !self.kinds.contains(&kind) {
            return Ok(kept(Kept::OtherKind));
        }
        if self.before.is_some_and(|before| record.updated_at >= before) {
            return Ok(kept(Kept::Recent));
        }
        let version = record.version;
        let stored_kind = &**self.kind.insert(record.kind);
        let remove = Remove { machine: M::NAME, id: self.id, expected: version, kind: stored_kind };
        Ok(Plan { writes: Vec::new(), keys: Vec::new(), remove: Some(remove), value: Ok(Versioned { state, version }) })
    }
}

impl<M, St> Runner<M, St>
where
    M: AsyncMachine,
    M::State: Clone + Serialize + DeserializeOwned + 'static,
    M::Command: Clone + Serialize + DeserializeOwned + 'static,
    St: Store,
{
    /// Removes record `id`, which must be in a `#[state(terminal)]` state:
    /// the record, its history and its idempotency keys go at once, and the
    /// change feed gets a removal entry ([`Origin::Removal`](crate::store::Origin::Removal)).
    /// Returns the state removed and its version.
    ///
    /// The removal is conditional on the version loaded: a command that
    /// commits first makes it conflict, and the retry policy decides, as
    /// for a command, whether to load again (then a record still terminal
    /// is removed at its new version, one that is not is refused). Never a
    /// half-removed record. Fails with [`Error::NotFound`] when there is no
    /// such record (also when it was just removed: after a lost reply,
    /// `NotFound` means it is gone) and [`Error::NotTerminal`] when its
    /// state is not terminal; nothing is removed then. Once removed, the id
    /// is free: the next command on it starts a new record at version 1.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use machine_core::prelude::*;
    /// use machine_core::store::Memory;
    /// # #[derive(State, Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    /// # enum Ticket { #[state(initial)] Open, #[state(terminal)] Closed }
    /// # #[derive(Command, Clone, Debug, serde::Serialize, serde::Deserialize)]
    /// # #[command(state = Ticket)] enum TicketCommand { #[command(from(Open), to(Open))] Note, #[command(from(Open), to(Closed))] Close }
    /// # struct Tickets;
    /// # impl Machine for Tickets {
    /// #     type State = Ticket; type Command = TicketCommand; type Deps = (); type Error = std::convert::Infallible;
    /// #     fn transition(_: &(), c: &TicketCommand, s: &Ticket) -> Result<Ticket, Self::Error> {
    /// #         Ok(match c { TicketCommand::Note => s.clone(), TicketCommand::Close => Ticket::Closed })
    /// #     }
    /// # }
    /// let runner = Runner::<Tickets, _>::new(Memory::new(), ());
    /// runner.handle("t-1", &TicketCommand::Note).await?;
    /// assert!(matches!(runner.remove("t-1").await, Err(Error::NotTerminal { state: "Open", .. })));
    /// runner.handle("t-1", &TicketCommand::Close).await?;
    /// let removed = runner.remove("t-1").await?;
    /// assert_eq!((removed.state, removed.version), (Ticket::Closed, 2));
    /// assert!(runner.get("t-1").await?.is_none());
    /// assert!(runner.history("t-1").await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn remove(&self, id: &str) -> Result<Versioned<M::State>, Error<M::Error>> {
        self.removal(&mut Removing::new(id), true).await?.map_err(|kept| match kept {
            Kept::NotTerminal(state) => Error::NotTerminal { machine: M::NAME, id: Some(id.to_owned()), state },
            // Without conditions a record is only ever missing or not terminal.
            Kept::Missing | Kept::Moved | Kept::Recent | Kept::OtherKind => {
                Error::NotFound { machine: M::NAME, id: id.to_owned() }
            }
        })
    }

    /// One removal through the pipeline: admitted, attempted, finished.
    /// `strict`: a record left as it was is the call's error (for the
    /// span and the policy too), not a skip.
    async fn removal(
        &self,
        step: &mut Removing<'_, M>,
        strict: bool,
    ) -> Result<Result<Versioned<M::State>, Kept>, Error<M::Error>> {
        let pipeline = self.pipeline();
        let id = step.id;
        let admitted = pipeline.admit(Op::Remove, M::NAME, id)?;
        let reads = [Read::plain(M::NAME, id)];
        let result = match admitted.run(pipeline.attempts(self.direct(), &reads, step)).await {
            Ok((Err(Kept::Missing), _)) if strict => Err(Error::NotFound { machine: M::NAME, id: id.to_owned() }),
            Ok((Err(Kept::NotTerminal(state)), _)) if strict => {
                Err(Error::NotTerminal { machine: M::NAME, id: Some(id.to_owned()), state })
            }
            Ok(done) => Ok(done),
            Err(error) => Err(widen(&error)),
        };
        pipeline.finish(admitted, &result, |(value, attempts)| {
            let ended = Ended::new(if value.is_ok() { "removed" } else { "unchanged" }, *attempts);
            match value {
                Ok(removed) => Ended { version: Some(removed.version), ..ended },
                Err(_) => ended,
            }
        });
        result.map(|(value, _)| value)
    }
}

impl<M, St> Runner<M, St>
where
    M: AsyncMachine,
    M::State: Clone + Serialize + DeserializeOwned + 'static,
    M::Command: Clone + Serialize + DeserializeOwned + 'static,
    St: Store + Query,
{
    /// Removes every record in a terminal state that `terminal` names
    /// (by default all of them; [`Terminal::finished_before`] keeps the
    /// recent ones, [`Terminal::kind`] picks kinds), each as
    /// [`remove`](Runner::remove) does: through the pipeline, only if still
    /// terminal (and old enough) when removed, never half-removed.
    ///
    /// Records are listed by id from the store's kind index, `terminal`'s
    /// page at a time ([`Query::by_kind`] for each terminal kind, merged).
    /// With an [`Archive`] ([`Terminal::archive`]) each record is first read
    /// with its history and handed to it, and removed only if the archive
    /// took it and the record is still at the version archived. A record
    /// that cannot be removed is reported in [`Removed::failures`] and the
    /// run goes on; one changed since it was listed is skipped (a later run
    /// takes it); a store failure while listing ends the run with `Err`
    /// (resume with [`Terminal::after`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use machine_core::prelude::*;
    /// use machine_core::retention::Terminal;
    /// use machine_core::store::Memory;
    /// # #[derive(State, Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    /// # enum Ticket { #[state(initial)] Open, #[state(terminal)] Closed }
    /// # #[derive(Command, Clone, Debug, serde::Serialize, serde::Deserialize)]
    /// # #[command(state = Ticket)] enum TicketCommand { #[command(from(Open), to(Open))] Note, #[command(from(Open), to(Closed))] Close }
    /// # struct Tickets;
    /// # impl Machine for Tickets {
    /// #     type State = Ticket; type Command = TicketCommand; type Deps = (); type Error = std::convert::Infallible;
    /// #     fn transition(_: &(), c: &TicketCommand, s: &Ticket) -> Result<Ticket, Self::Error> {
    /// #         Ok(match c { TicketCommand::Note => s.clone(), TicketCommand::Close => Ticket::Closed })
    /// #     }
    /// # }
    /// let runner = Runner::<Tickets, _>::new(Memory::new(), ());
    /// for id in ["t-1", "t-2", "t-3"] {
    ///     runner.handle(id, &TicketCommand::Close).await?;
    /// }
    /// runner.handle("t-4", &TicketCommand::Note).await?;
    /// let done = runner.remove_terminal(Terminal::default().page(2)).await?;
    /// assert_eq!((done.progress.scanned, done.progress.removed), (3, 3));
    /// assert!(done.failures.is_empty());
    /// assert!(runner.get("t-4").await?.is_some(), "an open ticket stays");
    /// # Ok(()) }
    /// ```
    pub async fn remove_terminal<A: Archive<M>>(
        &self,
        terminal: Terminal<A>,
    ) -> Result<Removed<M::Error>, Error<M::Error>> {
        let kinds = terminal_kinds::<M>(&terminal.kinds)?;
        let mut progress = Progress { last_id: terminal.after.clone(), ..Progress::default() };
        let mut failures = Vec::new();
        let page = usize::try_from(terminal.page).unwrap_or(usize::MAX);
        // A machine without terminal states has nothing to remove.
        while !kinds.is_empty() {
            // The first `page` ids of each kind hold the first `page` ids of
            // all of them; a record that changed kind between two reads is
            // listed once.
            let mut listed: Vec<Listed> = Vec::new();
            let mut more = false;
            for kind in &kinds {
                let of_kind = self.store().by_kind(M::NAME, kind, progress.last_id.as_deref(), terminal.page).await?;
                more |= of_kind.len() >= page;
                listed.extend(of_kind);
            }
            listed.sort_by(|a, b| a.id.cmp(&b.id));
            listed.dedup_by(|a, b| a.id == b.id);
            more |= listed.len() > page;
            listed.truncate(page);
            let Some(last) = listed.last() else { break };
            progress.last_id = Some(last.id.clone());
            for listed in listed {
                progress.scanned += 1;
                match self.remove_listed(&terminal, &kinds, listed).await {
                    Ok(true) => progress.removed += 1,
                    Ok(false) => progress.skipped += 1,
                    Err(failure) => {
                        progress.failed += 1;
                        failures.push(failure);
                    }
                }
            }
            if let Some(report) = &terminal.progress {
                report(&progress);
            }
            if !more {
                break;
            }
        }
        Ok(Removed { progress, failures })
    }

    /// One listed record: archived if asked, then removed if it still
    /// qualifies. `Ok(false)`: left as it was.
    async fn remove_listed<A: Archive<M>>(
        &self,
        terminal: &Terminal<A>,
        kinds: &[&'static str],
        listed: Listed,
    ) -> Result<bool, (String, Error<M::Error>)> {
        // The listing's own time decides first, without a load.
        if terminal.before.is_some_and(|before| listed.record.updated_at >= before) {
            return Ok(false);
        }
        let id = listed.id.clone();
        let at = match &terminal.archive {
            None => None,
            Some(archive) => {
                let Some(archived) = self.archived(listed, kinds).await.map_err(|error| (id.clone(), error))? else {
                    return Ok(false);
                };
                if let Err(source) = archive.archive(&archived).await {
                    let (version, source) = (archived.version, source.into());
                    return Err((id.clone(), Error::Archive { machine: M::NAME, id, version, source }));
                }
                Some(archived.version)
            }
        };
        let mut step = Removing { at, before: terminal.before, kinds, ..Removing::new(&id) };
        match self.removal(&mut step, false).await {
            Ok(removed) => Ok(removed.is_ok()),
            Err(error) => Err((id, error)),
        }
    }

    /// The listed record as an archive gets it, or `None` when it does not
    /// qualify (its decoded state is not terminal, or not of the kinds).
    async fn archived(
        &self,
        listed: Listed,
        kinds: &[&'static str],
    ) -> Result<Option<Archived<M::Command, M::State>>, Error<M::Error>> {
        let Listed { id, record } = listed;
        let updated_at = record.updated_at;
        let Versioned { state, version } = decode_record::<M, M::Error>(&id, &Loaded::from(record))?;
        if !state.is_terminal() || !kinds.contains(&state.kind().as_str()) {
            return Ok(None);
        }
        // Up to the listed version: a write since is not what is archived,
        // and makes the removal at that version skip the record.
        let changes = self.store().history(M::NAME, &id).await?;
        let history = changes
            .into_iter()
            .filter(|change| change.version <= version)
            .map(|change| decode_change::<M>(&id, change));
        let history = history.collect();
        Ok(Some(Archived { id, state, version, updated_at, history }))
    }
}

/// The kind names a run removes: those it was told, each one of the
/// machine's terminal kinds, or all of those.
fn terminal_kinds<M: AsyncMachine>(asked: &[&'static str]) -> Result<Vec<&'static str>, Error<M::Error>> {
    let terminal: Vec<&'static str> = <M::State as State>::TERMINAL.iter().map(|kind| kind.as_str()).collect();
    if asked.is_empty() {
        return Ok(terminal);
    }
    let mut kinds = Vec::with_capacity(asked.len());
    for &kind in asked {
        if !terminal.contains(&kind) {
            return Err(Error::NotTerminal { machine: M::NAME, id: None, state: kind });
        }
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    Ok(kinds)
}
