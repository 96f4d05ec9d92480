//! The data a store moves: loaded records, commits of writes and checks, and
//! history entries.

use std::sync::Arc;

/// A stored record: the latest state of one `(machine, id)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Starts at 1 and grows by one per write.
    pub version: u64,
    /// The state's kind name (`"Pending"`), for queries without decoding.
    pub kind: Arc<str>,
    /// The state as JSON.
    pub state: Arc<str>,
    /// When the version was written, in milliseconds since the Unix epoch.
    pub updated_at: u64,
}

/// One new version of a record, written only if the record is at `expected`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write<'a> {
    /// The record's machine.
    pub machine: &'a str,
    /// The record's id.
    pub id: &'a str,
    /// The version the writer loaded (0: the record must not exist yet).
    pub expected: u64,
    /// The new state's kind name.
    pub kind: &'a str,
    /// The new state as JSON.
    pub state: String,
    /// The command that produced it, as JSON, for the history.
    pub command: &'a str,
}

/// A record the commit read but does not write: the commit fails if it is no
/// longer at `expected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check<'a> {
    /// The record's machine.
    pub machine: &'a str,
    /// The record's id.
    pub id: &'a str,
    /// The version read (0: the record did not exist).
    pub expected: u64,
}

/// Writes and checks that succeed or fail together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commit<'a> {
    /// New versions, applied in order.
    pub writes: Vec<Write<'a>>,
    /// Versions that must still hold.
    pub checks: Vec<Check<'a>>,
}

impl<'a> Commit<'a> {
    /// A commit of one write and no checks.
    #[must_use]
    pub fn write(write: Write<'a>) -> Self {
        Self { writes: vec![write], checks: Vec::new() }
    }
}

/// One entry of a record's history: a write, with what produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Position in the store-wide change log: increases with every write.
    pub seq: u64,
    /// The record's machine.
    pub machine: Arc<str>,
    /// The record's id.
    pub id: Arc<str>,
    /// The version this change wrote.
    pub version: u64,
    /// The command that produced it, as JSON.
    pub command: Arc<str>,
    /// The kind of the state before (`None` for the record's creation).
    pub kind_before: Option<Arc<str>>,
    /// The state before, as JSON (`None` for the record's creation).
    pub before: Option<Arc<str>>,
    /// The written state's kind name.
    pub kind: Arc<str>,
    /// The written state, as JSON.
    pub after: Arc<str>,
    /// When it was written, in milliseconds since the Unix epoch.
    pub at: u64,
}
