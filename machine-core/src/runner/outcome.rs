//! What callers get back from a runner: the saved outcome, a loaded state,
//! and decoded history entries.

use crate::error::DecodeError;
use crate::store::{Change, Origin};

/// The result of a command that was saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome<S> {
    /// The state after the command.
    pub state: S,
    /// The version it was saved at.
    pub version: u64,
    /// How many times the command ran before it was saved (1 without contention).
    pub attempts: u32,
    /// Whether this is the outcome of an earlier call with the same
    /// idempotency key ([`Request::key`](crate::Request::key)), returned
    /// without running the command: `state` and `version` are what that
    /// call wrote (the record may have moved on since). A request handler
    /// answers it as it answered the first time.
    pub replayed: bool,
}

/// A state with the version it was loaded at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<S> {
    /// The state.
    pub state: S,
    /// Its version (1 for a record's first write).
    pub version: u64,
}

/// One saved change of a record, decoded (and migrated to the current
/// schema version when it was stored at an older one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry<C, S> {
    /// The version this change wrote.
    pub version: u64,
    /// The command that produced it (for a recovery, the command replayed);
    /// `None` for a rewrite at the current schema version
    /// ([`Origin::Migration`], by [`Runner::migrate`](crate::Runner::migrate)),
    /// which no command produced.
    pub command: Option<C>,
    /// The state before (`None` for the record's first write).
    pub before: Option<S>,
    /// The state written.
    pub state: S,
    /// Whether a command or a recovery wrote it.
    pub origin: Origin,
    /// When it was written, in milliseconds since the Unix epoch.
    pub at: u64,
    /// The schema version that wrote it (the values above are migrated to
    /// the current one).
    pub schema: u32,
}

/// A history entry this code cannot decode: the entry as stored, and why.
/// [`Runner::history`](crate::Runner::history) returns it in the entry's
/// place, so one bad entry (corrupt JSON, a variant removed without a
/// migration, a newer schema version) leaves the others readable.
#[derive(Debug, Clone)]
pub struct UnreadableEntry {
    /// The entry as the store holds it: its version, origin, time, schema
    /// versions, and the raw JSON of its command and states (boxed: an
    /// unreadable entry is rare, and the `Result` around it stays small).
    pub change: Box<Change>,
    /// Which payload failed, at which schema version, and why.
    pub error: DecodeError,
}

impl std::fmt::Display for UnreadableEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "history entry {} is unreadable: {}", self.change.cursor, self.error)
    }
}

impl std::error::Error for UnreadableEntry {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// One entry of [`Runner::history`](crate::Runner::history): decoded, or
/// returned as stored when it cannot be.
pub type HistoryItem<C, S> = Result<HistoryEntry<C, S>, UnreadableEntry>;
