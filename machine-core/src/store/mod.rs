//! Where records live: one small async trait, shaped for multi-record commits
//! with read checks and an appended history, and the stores that implement it.
//!
//! A store moves JSON and versions, never typed states: the
//! [`Runner`](crate::Runner) encodes and decodes, so a store knows nothing of
//! user machines and one store can hold any number of them.

pub(crate) mod body;
mod checkpoint;
#[cfg(feature = "etcd")]
mod etcd;
mod key;
pub(crate) mod memory;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod migration;
#[cfg(feature = "postgres")]
mod postgres;
mod record;
mod remember;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;
mod timeout;

pub use checkpoint::{Checkpoint, Checkpoints, DeadLetter};
#[cfg(feature = "etcd")]
pub use etcd::{Etcd, EtcdError, EtcdOptions};
pub use key::{MAX_KEY_LEN, validate_id, validate_idempotency_key, validate_machine, validate_processor};
pub use memory::{Memory, Retention};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use migration::Migration;
#[cfg(feature = "postgres")]
pub use postgres::{Postgres, PostgresOptions};
pub use record::{Change, Check, Commit, Cursor, CursorParseError, Listed, Origin, Record, Remove, Timer, Write};
pub use remember::{Remember, Remembered};
#[cfg(feature = "sqlite")]
pub use sqlite::{Sqlite, SqliteOptions};
pub use timeout::{Timeout, Wait};

use crate::error::StoreError;
use std::future::Future;

/// A place that keeps versioned records and their history.
///
/// Every implementation gives the same guarantees, which the conformance tests
/// check:
/// - [`commit`](Store::commit) is all or nothing: every [`Write`] and [`Check`]
///   must find the version it expects, or nothing is written and the first
///   mismatch is returned as [`StoreError::Conflict`]. Writes to one record
///   within a commit apply in order (the second expects the first's version).
/// - a write stores version `expected + 1`; `expected == 0` creates the record.
/// - each write appends one [`Change`] to the history in the same commit.
/// - ids and machine names are validated ([`validate_id`]), never spliced into
///   queries, and stored verbatim.
/// - a stored row the store would never have written (a version below 1, a
///   value of the wrong type, text that is not UTF-8, an unknown [`Origin`])
///   is read as [`StoreError::Corrupt`] naming its record, never accepted,
///   repaired or rewritten; other records are not affected.
pub trait Store: Send + Sync + 'static {
    /// The record `(machine, id)`, or `None` if it was never written.
    fn load(&self, machine: &str, id: &str) -> impl Future<Output = Result<Option<Record>, StoreError>> + Send;

    /// Applies `commit` atomically (see the trait docs).
    fn commit(&self, commit: Commit<'_>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The changes of record `(machine, id)`, oldest first.
    fn history(&self, machine: &str, id: &str) -> impl Future<Output = Result<Vec<Change>, StoreError>> + Send;

    /// Up to `limit` changes of record `(machine, id)` with versions above
    /// `after`, oldest first: the history read by pages (pass the last
    /// version of a page to get the next). The default reads the whole
    /// history and cuts it; this crate's stores read only the page.
    fn history_page(
        &self,
        machine: &str,
        id: &str,
        after: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Change>, StoreError>> + Send {
        async move {
            let history = self.history(machine, id).await?;
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            Ok(history.into_iter().filter(|change| change.version > after).take(limit).collect())
        }
    }

    /// The idempotency key `key` of record `(machine, id)` as stored, expired
    /// or not, or `None` if it was never stored (or already deleted).
    ///
    /// Stores that keep no keys leave the default, which fails with
    /// [`StoreError::Unsupported`]: a keyed call then fails before it writes
    /// anything, instead of applying its command twice.
    fn recall(
        &self,
        machine: &str,
        id: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<Remembered>, StoreError>> + Send {
        let _ = (machine, id, key);
        std::future::ready(Err(StoreError::Unsupported { what: "idempotency keys" }))
    }

    /// Deletes up to `limit` idempotency keys that expired before `now`
    /// (milliseconds since the Unix epoch, the runner's clock), and returns
    /// how many it deleted: call it from a periodic job until it returns
    /// less than `limit`. An expired key already reads as absent; this only
    /// reclaims its space. Stores that keep no keys leave the default,
    /// which fails with [`StoreError::Unsupported`].
    fn forget_keys(&self, now: u64, limit: u32) -> impl Future<Output = Result<u64, StoreError>> + Send {
        let _ = (now, limit);
        std::future::ready(Err(StoreError::Unsupported { what: "idempotency keys" }))
    }

    /// Removes record `(machine, id)` — the record, its history and its
    /// idempotency keys — if it is still at `remove.expected` in state
    /// `remove.kind`, all at once: a concurrent writer either commits first
    /// (then this fails with [`StoreError::Conflict`] naming the version
    /// found, 0 when the record is gone, and nothing is removed) or finds
    /// the record gone. Nothing is ever half-removed.
    ///
    /// The change feed gets one entry of origin [`Origin::Removal`] naming
    /// the record and the version removed, with that version's state. The
    /// record's earlier changes stay in the feed, where a consumer behind
    /// still reads them, until [`prune_history`](Store::prune_history) (or
    /// the memory store's [`Retention`]) drops them with everything of their
    /// age. The id is free again: writing it creates a new record at
    /// version 1 with an empty history.
    ///
    /// Stores that cannot remove leave the default, which fails with
    /// [`StoreError::Unsupported`] and removes nothing.
    fn remove(&self, remove: Remove<'_>) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = remove;
        std::future::ready(Err(StoreError::Unsupported { what: "removing records" }))
    }

    /// Deletes up to `limit` of the oldest history entries committed before
    /// `before` (milliseconds since the Unix epoch, the store's clock: the
    /// entries' [`Change::at`]), and returns how many it deleted: call it
    /// from a periodic job until it returns less than `limit`.
    ///
    /// What goes is always the feed's oldest stretch, in feed order, up to
    /// the first entry committed at or after `before`: never a hole in the
    /// middle. A [`Feed`] cursor behind what was deleted then gets
    /// [`StoreError::FeedCompacted`], never a silent gap; one at or after it
    /// reads on. The memory store, whose records may keep more history than
    /// its bounded feed ([`Retention`]), first drops the
    /// entries only records still hold, lowest sequence number first, each
    /// from the front of its record's history.
    /// Records themselves are never deleted, only their past. The
    /// SQL stores and etcd read an entry's state before from the entry
    /// before it, so a record's oldest kept entry then has none
    /// ([`Change::before`] is `None`); the memory store keeps it.
    /// Removal entries ([`Origin::Removal`]) and the history a removal left
    /// in the feed go the same way, by age.
    ///
    /// Stores that cannot prune leave the default, which fails with
    /// [`StoreError::Unsupported`] and deletes nothing.
    fn prune_history(&self, before: u64, limit: u32) -> impl Future<Output = Result<u64, StoreError>> + Send {
        let _ = (before, limit);
        std::future::ready(Err(StoreError::Unsupported { what: "pruning history" }))
    }

    /// Which of this crate's stores this is, so the runner can take its fast
    /// path. Other implementations keep the default.
    #[doc(hidden)]
    fn native(&self) -> Native<'_> {
        Native::Other
    }
}

/// A store the runner has a fast path for (see [`Store::native`]): the
/// memory store keeps typed values; SQLite loads and writes in one
/// immediate transaction; PostgreSQL loads and writes through one pooled
/// connection. Not part of the API.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Native<'a> {
    /// Any other store: the [`Store`] methods only.
    Other,
    /// The in-process store.
    Memory(&'a Memory),
    /// The SQLite store.
    #[cfg(feature = "sqlite")]
    Sqlite(&'a Sqlite),
    /// The PostgreSQL store.
    #[cfg(feature = "postgres")]
    Postgres(&'a Postgres),
}

/// A store-wide, ordered change feed: every write of every record, for
/// projections, outboxes and audits that must not miss one.
///
/// A consumer keeps the [`Cursor`] of the last change it processed and asks
/// for the changes after it. Each store guarantees that a change can never
/// appear *behind* a cursor already handed out, so resuming from a saved
/// cursor after a restart misses nothing and repeats nothing. How each store
/// guarantees that is in its own docs.
///
/// Entries leave the feed only from its old end, by age or count
/// ([`Store::prune_history`], the memory store's [`Retention`], etcd's
/// compaction); a cursor behind them gets [`StoreError::FeedCompacted`]. A
/// removed record ([`Store::remove`]) keeps its changes in the feed and adds
/// a removal entry ([`Origin::Removal`]): a projection deletes the record
/// when it reads that entry.
pub trait Feed: Store {
    /// Up to `limit` changes after `after`, in cursor order.
    ///
    /// A corrupt entry fails, with [`StoreError::Corrupt`] naming its record
    /// and cursor, every page that would hold it, as skipping it would lose a
    /// change for good; pages before it still read.
    fn changes(&self, after: Cursor, limit: u32) -> impl Future<Output = Result<Vec<Change>, StoreError>> + Send;

    /// How many changes after `after` [`changes`](Feed::changes) could
    /// return now: how far a consumer at `after` is behind the head (a
    /// processor's lag). The default pages through `changes`; this crate's
    /// stores count without reading the changes.
    fn behind(&self, after: Cursor) -> impl Future<Output = Result<u64, StoreError>> + Send {
        async move {
            const PAGE: u32 = 1_000;
            let mut counted = 0;
            let mut cursor = after;
            loop {
                let page = self.changes(cursor, PAGE).await?;
                counted += page.len() as u64;
                match page.last() {
                    Some(last) if page.len() == PAGE as usize => cursor = last.cursor,
                    _ => return Ok(counted),
                }
            }
        }
    }
}

/// Listing records by their state's kind ("all `Pending` orders"), paged by id.
pub trait Query: Store {
    /// Up to `limit` records of `machine` whose state is of `kind`, with ids
    /// greater than `after_id` (all when `None`), ordered by id. Pass the last
    /// id of a page to get the next one.
    ///
    /// A corrupt record fails the page that would hold it with
    /// [`StoreError::Corrupt`] naming it; pages after its id still read.
    fn by_kind(
        &self,
        machine: &str,
        kind: &str,
        after_id: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Listed>, StoreError>> + Send;

    /// Up to `limit` records of `machine`, whatever their kind, with ids
    /// greater than `after_id` (all when `None`), ordered by id: every
    /// record, also those whose stored kind the current code no longer has
    /// (what [`Runner::migrate`](crate::Runner::migrate) pages through).
    ///
    /// A corrupt record fails the page that would hold it, as in
    /// [`by_kind`](Query::by_kind).
    fn records(
        &self,
        machine: &str,
        after_id: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Listed>, StoreError>> + Send;

    /// How many records of `machine` are in state `kind`. The default pages
    /// through [`by_kind`](Query::by_kind); this crate's stores count from
    /// their kind index without reading states.
    fn count(&self, machine: &str, kind: &str) -> impl Future<Output = Result<u64, StoreError>> + Send {
        async move {
            let mut counted = 0;
            let mut after: Option<String> = None;
            loop {
                let page = self.by_kind(machine, kind, after.as_deref(), 1_000).await?;
                counted += page.len() as u64;
                match page.last() {
                    Some(last) if page.len() == 1_000 => after = Some(last.id.clone()),
                    _ => return Ok(counted),
                }
            }
        }
    }

    /// Up to `limit` records of `machine` due at or before `now`
    /// (milliseconds since the Unix epoch), earliest first, then by id,
    /// after the `(due, id)` position `after` (from the start when `None`):
    /// what a [`Sweeper`](crate::timers::Sweeper) pages through. Answered
    /// from the due-time index, without reading states. Stores without
    /// timers leave the default, [`StoreError::Unsupported`].
    fn due(
        &self,
        machine: &str,
        now: u64,
        after: Option<(u64, &str)>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Timer>, StoreError>> + Send {
        let _ = (machine, now, after, limit);
        std::future::ready(Err(StoreError::Unsupported { what: "timers" }))
    }

    /// Clears the due time of record `(machine, id)` if it is still at
    /// `version`, without writing a version: the timer of that state will
    /// not be found again. Returns whether it did. A sweeper disarms a timer
    /// whose command was refused, so a refusal is not retried for ever; the
    /// record's next write sets its due time afresh. Stores without timers
    /// leave the default, [`StoreError::Unsupported`].
    fn disarm(&self, machine: &str, id: &str, version: u64) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let _ = (machine, id, version);
        std::future::ready(Err(StoreError::Unsupported { what: "timers" }))
    }
}
