//! What callers get back from a runner: the saved outcome, a loaded state,
//! and decoded history entries.

use crate::store::Origin;

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

/// One saved change of a record, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry<C, S> {
    /// The version this change wrote.
    pub version: u64,
    /// The command that produced it (for a recovery, the command replayed).
    pub command: C,
    /// The state before (`None` for the record's first write).
    pub before: Option<S>,
    /// The state written.
    pub state: S,
    /// Whether a command or a recovery wrote it.
    pub origin: Origin,
    /// When it was written, in milliseconds since the Unix epoch.
    pub at: u64,
}
