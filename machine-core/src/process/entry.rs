//! What a processor hands its handler: one change of the feed, typed, and
//! the handler trait itself (with closures accepted as handlers).

use crate::machine::AsyncMachine;
use crate::runner::HistoryEntry;
use crate::store::{Cursor, Origin};
use std::fmt;
use std::future::Future;

/// One committed change of a machine `M`'s record, as a processor delivers
/// it: where it is in the feed, which record and version, and the command
/// with the states before and after, decoded (migrated from older schema
/// versions).
pub struct Entry<M: AsyncMachine> {
    /// Where the change is in the feed.
    pub cursor: Cursor,
    /// The record's id.
    pub id: String,
    /// The version the change wrote.
    pub version: u64,
    /// Why it was written (a command, a recovery, a timer, a migration).
    pub origin: Origin,
    /// The command that produced it; `None` for a rewrite at the current
    /// schema version ([`Origin::Migration`]), which no command produced.
    pub command: Option<M::Command>,
    /// The state before (`None` for the record's first write).
    pub before: Option<M::State>,
    /// The state written.
    pub after: M::State,
    /// When it was written, in milliseconds since the Unix epoch.
    pub at: u64,
}

impl<M: AsyncMachine> Entry<M> {
    /// A key that names this change and nothing else (`machine:id:version`):
    /// pass it as the idempotency key ([`Request::key`](crate::Request::key))
    /// of a command the handler sends, so an entry delivered twice applies
    /// that command once.
    #[must_use]
    pub fn key(&self) -> String {
        format!("{}:{}:{}", M::NAME, self.id, self.version)
    }

    pub(crate) fn new(cursor: Cursor, id: String, entry: HistoryEntry<M::Command, M::State>) -> Self {
        Self {
            cursor,
            id,
            version: entry.version,
            origin: entry.origin,
            command: entry.command,
            before: entry.before,
            after: entry.state,
            at: entry.at,
        }
    }
}

impl<M: AsyncMachine> Clone for Entry<M>
where
    M::Command: Clone,
    M::State: Clone,
{
    fn clone(&self) -> Self {
        Self {
            cursor: self.cursor,
            id: self.id.clone(),
            version: self.version,
            origin: self.origin,
            command: self.command.clone(),
            before: self.before.clone(),
            after: self.after.clone(),
            at: self.at,
        }
    }
}

impl<M: AsyncMachine> fmt::Debug for Entry<M>
where
    M::Command: fmt::Debug,
    M::State: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("machine", &M::NAME)
            .field("cursor", &self.cursor)
            .field("id", &self.id)
            .field("version", &self.version)
            .field("origin", &self.origin)
            .field("command", &self.command)
            .field("before", &self.before)
            .field("after", &self.after)
            .field("at", &self.at)
            .finish()
    }
}

/// What a [`Processor`](super::Processor) runs for each entry of its
/// machine.
///
/// An `Err` is retried with the processor's backoff, then the entry is
/// parked as a dead letter with the error's text; a panic counts as an
/// error. Closures `Fn(Entry<M>) -> impl Future<Output = Result<(), E>>`
/// are handlers too (they get the entry by value, so the future may keep
/// it).
pub trait Handler<M: AsyncMachine>: Send + Sync {
    /// The handler's error, kept as text in the dead letter.
    type Error: fmt::Display + Send;

    /// Handles one entry. Called again for the same entry after an error,
    /// and possibly after a crash: make it idempotent.
    fn handle(&self, entry: &Entry<M>) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

impl<M, F, Fut, E> Handler<M> for F
where
    M: AsyncMachine,
    M::Command: Clone + Send + Sync,
    M::State: Clone + Send + Sync,
    F: Fn(Entry<M>) -> Fut + Send + Sync,
    Fut: Future<Output = Result<(), E>> + Send,
    E: fmt::Display + Send,
{
    type Error = E;

    fn handle(&self, entry: &Entry<M>) -> impl Future<Output = Result<(), E>> + Send {
        self(entry.clone())
    }
}
