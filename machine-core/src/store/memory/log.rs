//! What the memory store remembers of past writes, and for how long: history
//! entries shared between a record's history and the store-wide feed, each
//! trimmed to its [`Retention`].

use super::super::body::{Body, Payload, Typed, json_of};
use super::super::record::{Change, Cursor, Origin};
use crate::error::StoreError;
use std::collections::VecDeque;
use std::sync::Arc;

/// How much history a [`Memory`](super::Memory) store keeps: the last
/// `per_record` entries of each record's history and the last `feed` changes
/// of the store-wide feed. Older entries are dropped as new ones arrive, so a
/// long-running process holds at most `feed + records × per_record` entries
/// (an entry shares the stored states with its record; see
/// docs/performance.md for measured bytes).
///
/// The default keeps 10,000 entries per record and the last 100,000 changes
/// of the feed: every history a test or a demo reads, within a bounded
/// footprint. A feed consumer that falls further behind than `feed` changes
/// gets [`StoreError::FeedCompacted`] rather than a feed with a hole.
///
/// A store that keeps neither (`per_record(0).feed(0)`) builds no history
/// entry at all, which makes an in-process command about a fifth faster;
/// its feed still numbers every write, so a reader learns it missed them.
///
/// ```
/// use machine_core::store::{Memory, Retention};
///
/// let store = Memory::with_retention(Retention::default().per_record(100).feed(1_000));
/// let everything = Memory::with_retention(Retention::all());
/// # drop((store, everything));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    per_record: usize,
    feed: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Self { per_record: 10_000, feed: 100_000 }
    }
}

impl Retention {
    /// Keep everything (memory grows with every write, as a database's
    /// history would): for audits in tests.
    #[must_use]
    pub const fn all() -> Self {
        Self { per_record: usize::MAX, feed: usize::MAX }
    }

    /// Keep the last `entries` history entries of each record.
    #[must_use]
    pub const fn per_record(mut self, entries: usize) -> Self {
        self.per_record = entries;
        self
    }

    /// Keep the last `changes` changes of the store-wide feed.
    #[must_use]
    pub const fn feed(mut self, changes: usize) -> Self {
        self.feed = changes;
        self
    }

    /// History entries kept per record.
    #[must_use]
    pub const fn entries_per_record(&self) -> usize {
        self.per_record
    }

    /// Changes kept in the feed.
    #[must_use]
    pub const fn feed_changes(&self) -> usize {
        self.feed
    }

    /// Whether anything keeps a write's history entry (if not, none is
    /// built).
    pub(super) const fn keeps_entries(&self) -> bool {
        self.per_record > 0 || self.feed > 0
    }
}

/// One write, as both its record's history and the feed hold it, with its
/// command inline: one allocation per entry, whether the command came as
/// JSON (`C` is a [`Body`]) or lent typed by the runner ([`Lend`]).
pub(crate) struct Logged<C: ?Sized = dyn Payload> {
    pub(super) head: Head,
    pub(super) command: C,
}

/// Everything of a history entry but its command.
pub(crate) struct Head {
    pub(super) seq: u64,
    pub(super) machine: Arc<str>,
    pub(super) id: Arc<str>,
    pub(super) version: u64,
    pub(super) origin: Origin,
    /// The previous state's kind, state and schema version (`None` for a
    /// creation).
    pub(super) before: Option<(Arc<str>, Body, u32)>,
    pub(super) kind: Arc<str>,
    pub(super) after: Body,
    pub(super) at: u64,
    /// The schema version of `command` and `after`.
    pub(super) schema: u32,
}

impl Head {
    /// The entry of `command`.
    pub(super) fn with<C: Payload>(self, command: C) -> Arc<Logged> {
        Arc::new(Logged { head: self, command })
    }
}

/// A write's command as the memory store takes it.
pub(crate) enum Said<'a> {
    /// Owned: JSON, or a typed value the runner computed.
    Owned(Body),
    /// The caller's own command, lent: copied into the history entry only
    /// if one is kept.
    Lent(&'a dyn Lend),
}

/// A command the runner lends the memory store (see [`Said::Lent`]).
pub(crate) trait Lend: Send + Sync {
    /// The history entry `head` with a copy of this command inline.
    fn entry(&self, head: Head) -> Arc<Logged>;

    /// A copy of this command, kept typed.
    fn body(&self) -> Body;
}

impl<C: Clone + serde::Serialize + Send + Sync + 'static> Lend for C {
    fn entry(&self, head: Head) -> Arc<Logged> {
        head.with(Typed::new(self.clone()))
    }

    fn body(&self) -> Body {
        Body::typed(self.clone())
    }
}

impl Said<'_> {
    /// Takes a copy of a lent command now (see [`Lend::body`]).
    pub(super) fn own(&mut self) {
        if let Self::Lent(command) = self {
            *self = Self::Owned(command.body());
        }
    }

    /// The history entry `head` with this command.
    pub(super) fn entry(self, head: Head) -> Arc<Logged> {
        match self {
            Self::Owned(body) => head.with(body),
            Self::Lent(command) => command.entry(head),
        }
    }
}

impl Logged {
    /// The entry as the [`Store`](super::super::Store) traits hand it out,
    /// every value as JSON.
    pub(super) fn change(&self) -> Result<Change, StoreError> {
        let head = &self.head;
        let json = |body: &Body, what: &str| body.json_of(&head.machine, &head.id, head.version, what);
        let command = json_of(&self.command, &head.machine, &head.id, head.version, "command")?;
        let before = head
            .before
            .as_ref()
            .map(|(kind, body, schema)| Ok::<_, StoreError>((kind, json(body, "state before")?, *schema)));
        let before = before.transpose()?;
        Ok(Change {
            cursor: Cursor { tx: 0, seq: head.seq },
            machine: head.machine.clone(),
            id: head.id.clone(),
            version: head.version,
            command,
            origin: head.origin,
            kind_before: before.as_ref().map(|(kind, _, _)| Arc::clone(kind)),
            schema_before: before.as_ref().map(|(_, _, schema)| *schema),
            before: before.map(|(_, state, _)| state),
            kind: head.kind.clone(),
            after: json(&head.after, "state")?,
            at: head.at,
            schema: head.schema,
        })
    }
}

/// The store-wide feed: the retained tail of every write, in commit order.
#[derive(Default)]
pub(super) struct Log {
    changes: VecDeque<Arc<Logged>>,
    /// The sequence number of the last write (0: none yet).
    last: u64,
    /// The highest sequence number dropped by retention or pruning (0: none).
    trimmed: u64,
}

impl Log {
    /// The next write's sequence number.
    pub(super) fn next_seq(&self) -> u64 {
        self.last + 1
    }

    /// Appends `logged` (numbered by [`next_seq`](Self::next_seq)), dropping
    /// the oldest change beyond `keep`.
    pub(super) fn push(&mut self, logged: Arc<Logged>, keep: usize) {
        self.last = logged.head.seq;
        self.changes.push_back(logged);
        while self.changes.len() > keep {
            if let Some(dropped) = self.changes.pop_front() {
                self.trimmed = dropped.head.seq;
            }
        }
    }

    /// Appends the entry of the write numbered `seq`; without one (nothing
    /// keeps entries, see [`Retention::keeps_entries`]) the feed moves on
    /// as if it had been appended and dropped at once.
    pub(super) fn append(&mut self, seq: u64, logged: Option<Arc<Logged>>, keep: usize) {
        if let Some(logged) = logged {
            self.push(logged, keep);
        } else {
            (self.last, self.trimmed) = (seq, seq);
        }
    }

    /// Drops up to `limit` of the oldest changes, stopping at the first one
    /// written at or after `before`, and returns them: what
    /// [`Store::prune_history`](super::super::Store::prune_history) takes.
    pub(super) fn prune(&mut self, before: u64, limit: usize) -> Vec<Arc<Logged>> {
        let mut pruned = Vec::new();
        while pruned.len() < limit && self.changes.front().is_some_and(|change| change.head.at < before) {
            if let Some(dropped) = self.changes.pop_front() {
                self.trimmed = dropped.head.seq;
                pruned.push(dropped);
            }
        }
        pruned
    }

    /// Up to `limit` changes after `after`, or an error when retention dropped
    /// some of them.
    pub(super) fn after(&self, after: Cursor, limit: usize) -> Result<Vec<Arc<Logged>>, StoreError> {
        if after.seq < self.trimmed {
            return Err(StoreError::FeedCompacted { after, oldest: Cursor { tx: 0, seq: self.trimmed + 1 } });
        }
        // Sequence numbers are dense, so the first change after `after` sits
        // at a computed position.
        let first = self.changes.front().map_or(self.last + 1, |change| change.head.seq);
        let skip = usize::try_from(after.seq.saturating_add(1).saturating_sub(first)).unwrap_or(usize::MAX);
        Ok(self.changes.range(skip.min(self.changes.len())..).take(limit).cloned().collect())
    }

    /// How many changes come after `after` (what [`after`](Self::after)
    /// would return without a limit), or the same error.
    pub(super) fn behind(&self, after: Cursor) -> Result<u64, StoreError> {
        if after.seq < self.trimmed {
            return Err(StoreError::FeedCompacted { after, oldest: Cursor { tx: 0, seq: self.trimmed + 1 } });
        }
        Ok(self.last.saturating_sub(after.seq))
    }

    /// The highest sequence number the feed no longer holds (0: it holds
    /// every write so far).
    pub(super) fn trimmed(&self) -> u64 {
        self.trimmed
    }

    pub(super) fn len(&self) -> usize {
        self.changes.len()
    }
}

/// Appends `logged` to a record's history, dropping the oldest entry beyond
/// `keep`.
pub(super) fn remember(history: &mut VecDeque<Arc<Logged>>, logged: Arc<Logged>, keep: usize) {
    history.push_back(logged);
    while history.len() > keep {
        history.pop_front();
    }
}
