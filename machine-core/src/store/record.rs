//! The data a store moves: loaded records, commits of writes and checks, and
//! history entries.

use super::Remember;
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
    /// The schema version of the machine that wrote the state
    /// ([`Machine::SCHEMA`](crate::Machine::SCHEMA)); rows from before
    /// schema versions were stored read as 1.
    pub schema: u32,
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
    /// Why the write happened, kept with its history entry.
    pub origin: Origin,
    /// The schema version of the machine that encoded `state` and
    /// `command`, stored with the record and its history entry.
    pub schema: u32,
    /// When the new state is due ([`State::due`](crate::State::due)), in
    /// milliseconds since the Unix epoch: stored with the record and indexed
    /// ([`Query::due`](super::Query::due)); `None` clears it.
    pub due: Option<u64>,
}

/// Why a version was written: what a history entry records so audits and
/// feed consumers can tell a replayed failure from a fresh command.
///
/// Stored as the text of [`as_str`](Origin::as_str); new kinds may be added,
/// so match with a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Origin {
    /// A command handled as sent (the default).
    #[default]
    Command,
    /// A recorded failure's command replayed by
    /// [`Runner::recover`](crate::Runner::recover).
    Recovery,
    /// The record rewritten at the current schema version by
    /// [`Runner::migrate`](crate::Runner::migrate): the same state, no
    /// command (stored as JSON `null`).
    Migration,
    /// The command a due state declares (`#[command(timer)]`), sent by
    /// [`Runner::fire`](crate::Runner::fire) or a
    /// [`Sweeper`](crate::timers::Sweeper).
    Timer,
    /// The record removed ([`Store::remove`](super::Store::remove), by
    /// [`Runner::remove`](crate::Runner::remove) or
    /// [`Runner::remove_terminal`](crate::Runner::remove_terminal)): a feed
    /// entry only, never in a record's history. Its `version`, `kind`,
    /// `after` and `schema` are those of the version removed (the record's
    /// last), its command is JSON `null` and it has no state before. A
    /// consumer that ignores origins sees the last version again, unchanged.
    Removal,
}

impl Origin {
    /// The name stored in the history: `"command"`, `"recovery"`,
    /// `"migration"`, `"timer"` or `"removal"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Command => "command",
            Self::Recovery => "recovery",
            Self::Migration => "migration",
            Self::Timer => "timer",
            Self::Removal => "removal",
        }
    }

    /// Every origin, in declaration order (what error messages list as the
    /// names this version knows).
    pub const ALL: &'static [Self] = &[Self::Command, Self::Recovery, Self::Migration, Self::Timer, Self::Removal];

    /// The names this version knows, for error messages:
    /// `"command, recovery, migration, removal"`.
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres", feature = "etcd")), expect(dead_code))]
    pub(crate) fn known() -> String {
        Self::ALL.iter().map(|origin| origin.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// The origin stored as `text`, or `None` for a name this version does
    /// not know.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "command" => Some(Self::Command),
            "recovery" => Some(Self::Recovery),
            "migration" => Some(Self::Migration),
            "timer" => Some(Self::Timer),
            "removal" => Some(Self::Removal),
            _ => None,
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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

/// A record to remove ([`Store::remove`](super::Store::remove)): only if it
/// is still at version `expected` in state `kind`, which is what the remover
/// read; otherwise the removal conflicts and nothing is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remove<'a> {
    /// The record's machine.
    pub machine: &'a str,
    /// The record's id.
    pub id: &'a str,
    /// The version read (at least 1: a record that exists).
    pub expected: u64,
    /// The kind of the state read at that version.
    pub kind: &'a str,
}

/// Writes and checks that succeed or fail together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commit<'a> {
    /// New versions, applied in order.
    pub writes: Vec<Write<'a>>,
    /// Versions that must still hold.
    pub checks: Vec<Check<'a>>,
    /// Idempotency keys stored with the writes (see [`Remember`]).
    pub keys: Vec<Remember<'a>>,
}

impl<'a> Commit<'a> {
    /// A commit of one write and no checks.
    #[must_use]
    pub fn write(write: Write<'a>) -> Self {
        Self { writes: vec![write], checks: Vec::new(), keys: Vec::new() }
    }
}

/// A position in a store's change feed: what a consumer persists to resume.
///
/// Cursors are totally ordered; [`Feed::changes`](super::Feed::changes)
/// returns the changes after one, in cursor order. `seq` is the store-wide
/// write number; `tx` orders concurrent transactions on stores that run them
/// in parallel (PostgreSQL's transaction id) and is 0 on stores that commit
/// one writer at a time. A cursor prints and parses as `tx:seq`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    /// The committing transaction's order (0 where commits are serial).
    pub tx: u64,
    /// The write's store-wide sequence number.
    pub seq: u64,
}

impl Cursor {
    /// Before every change: a new consumer starts here.
    pub const START: Self = Self { tx: 0, seq: 0 };
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.tx, self.seq)
    }
}

impl std::str::FromStr for Cursor {
    type Err = CursorParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (tx, seq) = text.split_once(':').ok_or(CursorParseError)?;
        Ok(Self { tx: tx.parse().map_err(|_| CursorParseError)?, seq: seq.parse().map_err(|_| CursorParseError)? })
    }
}

/// A string that is not a [`Cursor`] (`tx:seq`, two unsigned integers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a feed cursor: expected `tx:seq`")]
pub struct CursorParseError;

/// A record whose state is due ([`Query::due`](super::Query::due)): its id,
/// the version that stored the deadline, and the deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// The record's id.
    pub id: String,
    /// The version whose state is due.
    pub version: u64,
    /// When it is due, in milliseconds since the Unix epoch.
    pub due: u64,
}

/// One record of a kind query: its id and record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The record's id.
    pub id: String,
    /// The record.
    pub record: Record,
}

/// One entry of a record's history: a write, with what produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Position in the store-wide change feed.
    pub cursor: Cursor,
    /// The record's machine.
    pub machine: Arc<str>,
    /// The record's id.
    pub id: Arc<str>,
    /// The version this change wrote (for a removal, the version removed).
    pub version: u64,
    /// The command that produced it, as JSON.
    pub command: Arc<str>,
    /// Why it was written: a command, a recovery replaying one, a rewrite,
    /// or the record's removal ([`Origin::Removal`]).
    pub origin: Origin,
    /// The kind of the state before (`None` for the record's creation and
    /// a removal; on the SQL stores and etcd, which read it from the entry
    /// before, also once that entry was pruned).
    pub kind_before: Option<Arc<str>>,
    /// The state before, as JSON (`None` exactly when `kind_before` is).
    pub before: Option<Arc<str>>,
    /// The written state's kind name.
    pub kind: Arc<str>,
    /// The written state, as JSON.
    pub after: Arc<str>,
    /// When it was written, in milliseconds since the Unix epoch.
    pub at: u64,
    /// The schema version that encoded `command` and `after`.
    pub schema: u32,
    /// The schema version that encoded `before` (`None` exactly when
    /// `before` is).
    pub schema_before: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::Origin;

    #[test]
    fn origins_round_trip_through_their_stored_names() {
        for &origin in Origin::ALL {
            assert_eq!(Origin::parse(origin.as_str()), Some(origin));
            assert_eq!(origin.to_string(), origin.as_str());
        }
        assert_eq!(Origin::default(), Origin::Command);
        for unknown in ["", "Command", "replay", "command "] {
            assert_eq!(Origin::parse(unknown), None, "{unknown:?}");
        }
    }
}
