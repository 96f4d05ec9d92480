//! The in-process store: the default, and the reference the durable stores
//! are tested against. Same version semantics as a database, never
//! last-writer-wins.

use super::key::{validate_id, validate_machine};
use super::record::{Change, Check, Commit, Cursor, Listed, Record, Write};
use super::{Feed, Query, Store};
use crate::error::{StoreError, VersionConflict};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// Enough shards that writers on different records rarely share a lock on a
/// two-core machine, few enough to lock all of a commit's shards cheaply.
const SHARDS: usize = 64;

/// An in-memory [`Store`]: records and their full history, in this process.
///
/// Cloning is cheap and clones share the same records. Records are spread
/// over independently locked shards, so unrelated ids do not serialise, and no
/// lock is ever held across an `.await`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use machine_core::store::{Commit, Memory, Origin, Store, Write};
///
/// let store = Memory::new();
/// let write = |expected| Write {
///     machine: "Order", id: "order-1", expected, kind: "Draft",
///     state: "\"Draft\"".into(), command: "\"Create\"", origin: Origin::Command,
/// };
/// store.commit(Commit::write(write(0))).await.unwrap();
/// // A second writer that also loaded version 0 loses:
/// let lost = store.commit(Commit::write(write(0))).await.unwrap_err();
/// assert_eq!(lost.conflict().map(|c| (c.attempted, c.current)), Some((1, 1)));
/// assert_eq!(store.load("Order", "order-1").await.unwrap().unwrap().version, 1);
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Memory {
    inner: Arc<Inner>,
}

struct Inner {
    hasher: RandomState,
    shards: [Mutex<Shard>; SHARDS],
    /// The store-wide change feed, in commit order.
    log: Mutex<Vec<Change>>,
}

impl Default for Inner {
    fn default() -> Self {
        Self { hasher: RandomState::new(), shards: std::array::from_fn(|_| Mutex::default()), log: Mutex::default() }
    }
}

/// Records by machine, then id. A store holds few machines, so the outer
/// level is a short list compared by string (cheaper than a second hash);
/// ids are hashed, with a per-store random key as they come from users.
#[derive(Default)]
struct Shard {
    machines: Vec<(Arc<str>, Ids)>,
}

type Ids = HashMap<Arc<str>, Entry>;

impl Shard {
    fn ids(&self, machine: &str) -> Option<&Ids> {
        self.machines.iter().find(|(name, _)| **name == *machine).map(|(_, ids)| ids)
    }

    /// The machine's name as stored and its records, created if new.
    fn ids_mut(&mut self, machine: &str) -> (Arc<str>, &mut Ids) {
        let at = self.machines.iter().position(|(name, _)| **name == *machine).unwrap_or_else(|| {
            self.machines.push((Arc::from(machine), HashMap::new()));
            self.machines.len() - 1
        });
        let (name, ids) = &mut self.machines[at];
        (name.clone(), ids)
    }

    fn entry(&self, machine: &str, id: &str) -> Option<&Entry> {
        self.ids(machine).and_then(|ids| ids.get(id))
    }
}

struct Entry {
    id: Arc<str>,
    record: Record,
    history: Vec<Change>,
}

impl Memory {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn shard_of(&self, machine: &str, id: &str) -> usize {
        let hash = self.inner.hasher.hash_one((machine, id));
        // The modulo keeps the value below SHARDS, so the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation)]
        let shard = (hash % SHARDS as u64) as usize;
        shard
    }

    /// The feed. Taken after the shard locks, by writers only while they hold
    /// them, so a sequence number is handed out and appended in one step and
    /// the feed never shows a later change before an earlier one.
    fn log(&self) -> MutexGuard<'_, Vec<Change>> {
        self.inner.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        // A panic elsewhere cannot leave a shard half-written (every commit
        // validates before it mutates), so a poisoned lock is still consistent.
        self.inner.shards[shard].lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn commit_now(&self, commit: &Commit<'_>) -> Result<(), StoreError> {
        if let ([write], []) = (commit.writes.as_slice(), commit.checks.as_slice()) {
            return self.commit_one(write);
        }
        for (machine, id) in keys(commit) {
            validate_machine(machine)?;
            validate_id(id)?;
        }
        let mut shards: Vec<usize> = keys(commit).map(|(m, id)| self.shard_of(m, id)).collect();
        shards.sort_unstable();
        shards.dedup();
        // Locks are taken in ascending shard order, so two commits can never
        // wait on each other.
        let mut guards: Vec<(usize, MutexGuard<'_, Shard>)> =
            shards.iter().map(|&shard| (shard, self.lock(shard))).collect();
        let shard = |machine: &str, id: &str| -> usize {
            let shard = self.shard_of(machine, id);
            // Every key's shard was locked above, so the search always finds it.
            guards.binary_search_by_key(&shard, |(s, _)| *s).unwrap_or_default()
        };
        let check_at: Vec<usize> = commit.checks.iter().map(|c| shard(c.machine, c.id)).collect();
        let write_at: Vec<usize> = commit.writes.iter().map(|w| shard(w.machine, w.id)).collect();

        // Validate everything before touching anything: all or nothing.
        // Checks see the records as they were before this commit's writes.
        for (check, &at) in commit.checks.iter().zip(&check_at) {
            let current = current_version(&guards[at].1, check.machine, check.id);
            if current != check.expected {
                return Err(conflict(check.machine, check.id, check.expected, current));
            }
        }
        let mut pending: Vec<(&str, &str, u64)> = Vec::with_capacity(commit.writes.len());
        for (write, &at) in commit.writes.iter().zip(&write_at) {
            let earlier = pending.iter().rev().find(|(m, id, _)| *m == write.machine && *id == write.id);
            let current = match earlier {
                Some(&(_, _, version)) => version,
                None => current_version(&guards[at].1, write.machine, write.id),
            };
            if current != write.expected {
                return Err(conflict(write.machine, write.id, write.expected, current));
            }
            let next = write.expected.checked_add(1).ok_or_else(|| StoreError::VersionOverflow {
                machine: write.machine.to_owned(),
                id: write.id.to_owned(),
                version: write.expected,
            })?;
            pending.push((write.machine, write.id, next));
        }

        let now = now_millis();
        let mut log = self.log();
        for (write, &at) in commit.writes.iter().zip(&write_at) {
            let change = apply(&mut guards[at].1, write, next_seq(&log), now);
            log.push(change);
        }
        Ok(())
    }
}

impl Memory {
    /// The common case, a single write: one hash, one lock, no allocation
    /// beyond the stored strings.
    fn commit_one(&self, write: &Write<'_>) -> Result<(), StoreError> {
        validate_machine(write.machine)?;
        validate_id(write.id)?;
        let mut shard = self.lock(self.shard_of(write.machine, write.id));
        let current = current_version(&shard, write.machine, write.id);
        if current != write.expected {
            return Err(conflict(write.machine, write.id, write.expected, current));
        }
        if write.expected == u64::MAX {
            return Err(StoreError::VersionOverflow {
                machine: write.machine.to_owned(),
                id: write.id.to_owned(),
                version: write.expected,
            });
        }
        let mut log = self.log();
        let change = apply(&mut shard, write, next_seq(&log), now_millis());
        log.push(change);
        Ok(())
    }
}

fn keys<'c>(commit: &'c Commit<'_>) -> impl Iterator<Item = (&'c str, &'c str)> {
    let writes = commit.writes.iter().map(|w| (w.machine, w.id));
    writes.chain(commit.checks.iter().map(|c: &Check<'_>| (c.machine, c.id)))
}

fn current_version(shard: &Shard, machine: &str, id: &str) -> u64 {
    shard.entry(machine, id).map_or(0, |entry| entry.record.version)
}

fn conflict(machine: &str, id: &str, expected: u64, current: u64) -> StoreError {
    StoreError::Conflict(VersionConflict::new(machine, id, expected.saturating_add(1), current))
}

fn next_seq(log: &[Change]) -> Cursor {
    Cursor { tx: 0, seq: log.last().map_or(1, |change| change.cursor.seq + 1) }
}

/// Appends `write` to its record (validated by the caller: the version holds
/// and does not overflow) and returns the change for the feed.
fn apply(shard: &mut Shard, write: &Write<'_>, cursor: Cursor, at: u64) -> Change {
    let (machine, ids) = shard.ids_mut(write.machine);
    let version = write.expected.saturating_add(1);
    let state: Arc<str> = Arc::from(write.state.as_str());
    let command: Arc<str> = Arc::from(write.command);
    if let Some(entry) = ids.get_mut(write.id) {
        let previous = &entry.record;
        // Kinds repeat from version to version: share the stored string.
        let kind = if &*previous.kind == write.kind { previous.kind.clone() } else { Arc::from(write.kind) };
        let change = Change {
            cursor,
            machine,
            id: entry.id.clone(),
            version,
            command,
            origin: write.origin,
            kind_before: Some(previous.kind.clone()),
            before: Some(previous.state.clone()),
            kind: kind.clone(),
            after: state.clone(),
            at,
        };
        entry.history.push(change.clone());
        entry.record = Record { version, kind, state, updated_at: at };
        change
    } else {
        let id: Arc<str> = Arc::from(write.id);
        let kind: Arc<str> = Arc::from(write.kind);
        let change = Change {
            cursor,
            machine,
            id: id.clone(),
            version,
            command,
            origin: write.origin,
            kind_before: None,
            before: None,
            kind: kind.clone(),
            after: state.clone(),
            at,
        };
        let record = Record { version, kind, state, updated_at: at };
        ids.insert(id.clone(), Entry { id, record, history: vec![change.clone()] });
        change
    }
}

fn now_millis() -> u64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}

impl Store for Memory {
    async fn load(&self, machine: &str, id: &str) -> Result<Option<Record>, StoreError> {
        validate_machine(machine)?;
        validate_id(id)?;
        let shard = self.lock(self.shard_of(machine, id));
        Ok(shard.entry(machine, id).map(|entry| entry.record.clone()))
    }

    async fn commit(&self, commit: Commit<'_>) -> Result<(), StoreError> {
        self.commit_now(&commit)
    }

    async fn history(&self, machine: &str, id: &str) -> Result<Vec<Change>, StoreError> {
        validate_machine(machine)?;
        validate_id(id)?;
        let shard = self.lock(self.shard_of(machine, id));
        Ok(shard.entry(machine, id).map(|entry| entry.history.clone()).unwrap_or_default())
    }
}

/// The feed is the store-wide log, appended under one short lock in commit
/// order, so a reader never sees a change before an earlier one.
impl Feed for Memory {
    async fn changes(&self, after: Cursor, limit: u32) -> Result<Vec<Change>, StoreError> {
        let log = self.log();
        // Sequence numbers are the log's positions plus one.
        let start = usize::try_from(after.seq).unwrap_or(usize::MAX).min(log.len());
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        Ok(log[start..].iter().take(limit).cloned().collect())
    }
}

/// Scans every shard: the memory store keeps no secondary index.
impl Query for Memory {
    async fn by_kind(
        &self,
        machine: &str,
        kind: &str,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Listed>, StoreError> {
        validate_machine(machine)?;
        let mut found = Vec::new();
        for shard in 0..SHARDS {
            let shard = self.lock(shard);
            let Some(ids) = shard.ids(machine) else { continue };
            found.extend(
                ids.iter()
                    .filter(|(id, entry)| &*entry.record.kind == kind && after_id.is_none_or(|after| &***id > after))
                    .map(|(id, entry)| Listed { id: id.to_string(), record: entry.record.clone() }),
            );
        }
        found.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        found.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(found)
    }
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory").field("changes", &self.log().len()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Origin;

    fn write(id: &'static str, expected: u64, state: &str) -> Write<'static> {
        Write {
            machine: "M",
            id,
            expected,
            kind: "K",
            state: state.to_owned(),
            command: "\"cmd\"",
            origin: Origin::Command,
        }
    }

    fn check(id: &'static str, expected: u64) -> Check<'static> {
        Check { machine: "M", id, expected }
    }

    async fn version(store: &Memory, id: &str) -> u64 {
        store.load("M", id).await.unwrap().map_or(0, |r| r.version)
    }

    #[tokio::test]
    async fn creates_updates_and_refuses_stale_writes() {
        let store = Memory::new();
        store.commit(Commit::write(write("a", 0, "1"))).await.unwrap();
        store.commit(Commit::write(write("a", 1, "2"))).await.unwrap();
        let stale = store.commit(Commit::write(write("a", 1, "3"))).await.unwrap_err();
        assert_eq!(stale.conflict(), Some(&VersionConflict::new("M", "a", 2, 2)));
        let duplicate_create = store.commit(Commit::write(write("a", 0, "3"))).await.unwrap_err();
        assert_eq!(duplicate_create.conflict(), Some(&VersionConflict::new("M", "a", 1, 2)));
        let record = store.load("M", "a").await.unwrap().unwrap();
        assert_eq!((record.version, &*record.state, &*record.kind), (2, "2", "K"));
    }

    #[tokio::test]
    async fn a_multi_record_commit_with_one_stale_record_writes_nothing() {
        let store = Memory::new();
        for id in ["a", "b", "c"] {
            store.commit(Commit::write(write(id, 0, "0"))).await.unwrap();
        }
        let commit = Commit { writes: vec![write("a", 1, "1"), write("b", 0, "1")], checks: vec![check("c", 1)] };
        let error = store.commit(commit).await.unwrap_err();
        assert_eq!(error.conflict().map(|c| c.id.as_str()), Some("b"));
        assert_eq!((version(&store, "a").await, version(&store, "b").await), (1, 1), "nothing applied");
        assert_eq!(store.history("M", "a").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn read_checks_fail_the_commit_when_the_read_record_moved() {
        let store = Memory::new();
        store.commit(Commit::write(write("read", 0, "0"))).await.unwrap();
        let ok = Commit { writes: vec![write("w", 0, "1")], checks: vec![check("read", 1)] };
        store.commit(ok).await.unwrap();
        store.commit(Commit::write(write("read", 1, "1"))).await.unwrap();
        let stale = Commit { writes: vec![write("w", 1, "2")], checks: vec![check("read", 1)] };
        let error = store.commit(stale).await.unwrap_err();
        assert_eq!(error.conflict(), Some(&VersionConflict::new("M", "read", 2, 2)));
        assert_eq!(version(&store, "w").await, 1);
        // A check of a record that must not exist yet.
        let absent = Commit { writes: vec![write("w", 1, "2")], checks: vec![check("never", 0)] };
        store.commit(absent).await.unwrap();
    }

    #[tokio::test]
    async fn writes_to_one_record_in_a_commit_apply_in_order() {
        let store = Memory::new();
        let group = Commit { writes: vec![write("a", 0, "1"), write("a", 1, "2"), write("a", 2, "3")], checks: vec![] };
        store.commit(group).await.unwrap();
        let history = store.history("M", "a").await.unwrap();
        assert_eq!(history.iter().map(|c| (c.version, &*c.after)).collect::<Vec<_>>(), [(1, "1"), (2, "2"), (3, "3")]);
        assert_eq!(history[1].before.as_deref(), Some("1"));
        assert!(history.windows(2).all(|w| w[0].cursor < w[1].cursor));
        let skipping = Commit { writes: vec![write("a", 3, "4"), write("a", 3, "5")], checks: vec![] };
        assert!(store.commit(skipping).await.is_err());
        assert_eq!(version(&store, "a").await, 3);
    }

    #[tokio::test]
    async fn ids_are_validated_and_stored_verbatim() {
        let store = Memory::new();
        let hostile = "'; drop table records --\n\"ключ\"";
        store.commit(Commit::write(write(hostile, 0, "1"))).await.unwrap();
        assert_eq!(store.history("M", hostile).await.unwrap()[0].id.as_ref(), hostile);
        for bad in ["", "a\0"] {
            assert!(matches!(store.load("M", bad).await, Err(StoreError::InvalidKey { .. })));
            assert!(matches!(
                store.commit(Commit::write(write(bad, 0, "1"))).await,
                Err(StoreError::InvalidKey { .. })
            ));
        }
        assert!(matches!(store.load("", "a").await, Err(StoreError::InvalidKey { what: "machine name", .. })));
    }

    #[tokio::test]
    async fn machines_are_separate_namespaces() {
        let store = Memory::new();
        store.commit(Commit::write(write("same", 0, "1"))).await.unwrap();
        let other = Write { machine: "N", ..write("same", 0, "x") };
        store.commit(Commit::write(other)).await.unwrap();
        assert_eq!(&*store.load("N", "same").await.unwrap().unwrap().state, "x");
        assert_eq!(&*store.load("M", "same").await.unwrap().unwrap().state, "1");
    }
}
