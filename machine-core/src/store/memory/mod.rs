//! The in-process store: the default, and the reference the durable stores
//! are tested against. Same version semantics as a database, never
//! last-writer-wins; the runner's states are kept typed, so a command costs
//! no JSON unless something reads the store as JSON.

mod checkpoint;
mod held;
mod log;

pub(crate) use held::Slot;

pub use log::Retention;

use super::body::{Body, Loaded};
use super::key::{validate_id, validate_machine};
use super::record::{Change, Check, Commit, Cursor, Listed, Origin, Record, Remove, Timer};
use super::{Feed, Query, Remember, Remembered, Store};
use crate::error::{StoreError, VersionConflict};
use log::{Head, Log, Logged, remember};
pub(crate) use log::{Lend, Said};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// Enough shards that writers on different records rarely share a lock on a
/// two-core machine, few enough to lock all of a commit's shards cheaply.
const SHARDS: usize = 64;

/// An in-memory [`Store`]: records and their recent history, in this process.
///
/// Cloning is cheap and clones share the same records. Records are spread
/// over independently locked shards, so unrelated ids do not serialise, and no
/// lock is ever held across an `.await`.
///
/// A [`Runner`](crate::Runner) hands this store its typed states and commands
/// and gets them back typed: nothing is encoded on the way. The JSON that the
/// [`Store`], [`Feed`] and [`Query`] methods return is encoded when first
/// asked for. In debug builds the runner still encodes every new state once,
/// so a state that cannot be JSON fails in your tests as it would on a
/// durable store; in release builds such a state fails the read that needs
/// its JSON, with [`StoreError::Corrupt`].
///
/// History is kept per [`Retention`] (bounded by default).
/// [`Store::prune_history`] drops entries by age as well, and
/// [`Store::remove`] removes a record under its shard's lock; the feed
/// keeps a removed record's entries, which it shares with the record's
/// history, until retention or pruning drops them.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use machine_core::store::{Commit, Memory, Origin, Store, Write};
///
/// let store = Memory::new();
/// let write = |expected| Write {
///     machine: "Order", id: "order-1", expected, kind: "Draft",
///     state: "\"Draft\"".into(), command: "\"Create\"", origin: Origin::Command, schema: 1, due: None,
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
    /// The shard hash's starting value, random per store.
    salt: u64,
    shards: [Padded<Mutex<Shard>>; SHARDS],
    /// The store-wide change feed, in commit order.
    log: Padded<Mutex<Log>>,
    /// Records with a due time, in due order per machine: the index
    /// [`Query::due`] reads. Taken last, after a shard (and the feed).
    timers: Mutex<BTreeSet<TimerKey>>,
    /// Processor checkpoints and dead letters, apart from the records.
    processors: Mutex<checkpoint::Processors>,
    retention: Retention,
}

/// A value alone on its cache lines (two of them: adjacent lines are
/// fetched in pairs), so that locking one shard (or the feed) does not
/// slow a writer of the next one on another core.
#[repr(align(128))]
#[derive(Default)]
struct Padded<T>(T);

/// `(machine, due, id)`: one machine's timers sort together, earliest first.
type TimerKey = (Arc<str>, u64, Arc<str>);

impl Default for Inner {
    fn default() -> Self {
        Self {
            salt: RandomState::new().hash_one(0xcbf2_9ce4_8422_2325_u64),
            shards: std::array::from_fn(|_| Padded::default()),
            log: Padded::default(),
            timers: Mutex::default(),
            processors: Mutex::default(),
            retention: Retention::default(),
        }
    }
}

/// Records by machine, then id. A store holds few machines, so the outer
/// level is a short list compared by string (cheaper than a second hash);
/// ids are hashed, with a per-store random key as they come from users.
#[derive(Default)]
struct Shard {
    machines: Vec<(Arc<str>, Ids)>,
    /// Idempotency keys of this shard's records (also of records never
    /// written: a decision's key lives under its first read).
    keys: Keys,
}

/// Idempotency keys by `(machine, id, key)`, expired ones dropped as the map
/// grows (every time it doubles since the last sweep), so it stays bounded
/// by the keys stored within one retention.
#[derive(Default)]
struct Keys {
    kept: HashMap<KeyName, Kept>,
    swept_at: usize,
}

/// `machine \0 id \0 key`: none of the three holds a NUL (`validate_id`),
/// so names never collide, and a lookup builds one string.
type KeyName = Box<str>;

fn key_name(machine: &str, id: &str, key: &str) -> String {
    let mut name = String::with_capacity(machine.len() + id.len() + key.len() + 2);
    name.push_str(machine);
    name.push('\0');
    name.push_str(id);
    name.push('\0');
    name.push_str(key);
    name
}

/// A stored idempotency key.
struct Kept {
    fingerprint: u64,
    version: u64,
    kind: Option<Arc<str>>,
    state: Option<Body>,
    at: u64,
    expires_at: u64,
}

impl Keys {
    fn get(&self, machine: &str, id: &str, key: &str) -> Option<&Kept> {
        // Keyed lookups are rare next to plain ones: one string built for
        // the lookup is fine here.
        self.kept.get(key_name(machine, id, key).as_str())
    }

    /// Drops every key of record `(machine, id)`: they go with the record.
    fn forget_record(&mut self, machine: &str, id: &str) {
        let mut prefix = key_name(machine, id, "");
        // `machine \0 id \0`: no other record's names start with it.
        prefix.truncate(machine.len() + id.len() + 2);
        self.kept.retain(|name, _| !name.starts_with(prefix.as_str()));
    }

    fn insert(&mut self, key: KeyPut<'_>) {
        if self.kept.len() >= self.swept_at.saturating_mul(2).max(64) {
            self.kept.retain(|_, kept| kept.expires_at > key.at);
            self.swept_at = self.kept.len();
        }
        let kept = Kept {
            fingerprint: key.fingerprint,
            version: key.version,
            kind: key.kind.map(Arc::from),
            state: key.state,
            at: key.at,
            expires_at: key.expires_at,
        };
        self.kept.insert(key_name(key.machine, key.id, key.key).into_boxed_str(), kept);
    }
}

type Ids = HashMap<Arc<str>, Entry>;

impl Shard {
    fn ids(&self, machine: &str) -> Option<&Ids> {
        self.machines.iter().find(|(name, _)| **name == *machine).map(|(_, ids)| ids)
    }

    /// The machine's name as stored and its records, created if new.
    fn ids_mut(&mut self, machine: &str) -> (&Arc<str>, &mut Ids) {
        let at = self.machines.iter().position(|(name, _)| **name == *machine).unwrap_or_else(|| {
            self.machines.push((Arc::from(machine), HashMap::new()));
            self.machines.len() - 1
        });
        let (name, ids) = &mut self.machines[at];
        (&*name, ids)
    }

    fn entry(&self, machine: &str, id: &str) -> Option<&Entry> {
        self.ids(machine).and_then(|ids| ids.get(id))
    }
}

/// A record: its latest version and its retained history.
struct Entry {
    id: Arc<str>,
    version: u64,
    kind: Arc<str>,
    state: Body,
    updated_at: u64,
    schema: u32,
    due: Option<u64>,
    history: VecDeque<Arc<Logged>>,
}

impl Entry {
    fn loaded(&self) -> Loaded {
        Loaded {
            version: self.version,
            kind: self.kind.clone(),
            state: self.state.clone(),
            updated_at: self.updated_at,
            schema: self.schema,
        }
    }

    /// The record as JSON, for the [`Store`] methods.
    fn record(&self, machine: &str) -> Result<Record, StoreError> {
        self.loaded().record(machine, &self.id)
    }
}

/// One write in the store's own terms: its values as bodies, typed or JSON.
pub(crate) struct Put<'a> {
    pub(crate) machine: &'a str,
    pub(crate) id: &'a str,
    pub(crate) expected: u64,
    pub(crate) kind: &'a str,
    pub(crate) state: Body,
    pub(crate) command: Said<'a>,
    pub(crate) origin: Origin,
    pub(crate) schema: u32,
    pub(crate) due: Option<u64>,
}

/// An idempotency key in the store's own terms, its state as a body.
pub(crate) struct KeyPut<'a> {
    pub(crate) machine: &'a str,
    pub(crate) id: &'a str,
    pub(crate) key: &'a str,
    pub(crate) fingerprint: u64,
    pub(crate) version: u64,
    pub(crate) kind: Option<&'a str>,
    pub(crate) state: Option<Body>,
    pub(crate) at: u64,
    pub(crate) expires_at: u64,
}

impl<'a> From<&'a Remember<'a>> for KeyPut<'a> {
    fn from(key: &'a Remember<'a>) -> Self {
        Self {
            machine: key.machine,
            id: key.id,
            key: key.key,
            fingerprint: key.fingerprint,
            version: key.version,
            kind: key.kind,
            state: key.state.as_deref().map(|json| Body::Json(Arc::from(json))),
            at: key.at,
            expires_at: key.expires_at,
        }
    }
}

impl Memory {
    /// An empty store with the default [`Retention`].
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store keeping history per `retention`.
    #[must_use]
    pub fn with_retention(retention: Retention) -> Self {
        Self { inner: Arc::new(Inner { retention, ..Inner::default() }) }
    }

    /// What this store keeps of its history.
    #[must_use]
    pub fn retention(&self) -> Retention {
        self.inner.retention
    }

    /// The shard of a key: a multiply-and-fold hash over the machine and the
    /// id eight bytes at a time, salted per store. A shard only spreads lock
    /// contention (each shard's map hashes ids with a random key of its
    /// own), so a cheap hash is enough here; a byte at a time it was 4 % of
    /// an in-process command.
    fn shard_of(&self, machine: &str, id: &str) -> usize {
        const MIX: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut hash = self.inner.salt;
        for part in [machine.as_bytes(), id.as_bytes()] {
            let mut words = part.chunks_exact(8);
            for word in &mut words {
                let mut bytes = [0; 8];
                bytes.copy_from_slice(word);
                hash = (hash ^ u64::from_le_bytes(bytes)).wrapping_mul(MIX).rotate_left(29);
            }
            // The tail, and the part's length, so that ("ab", "c") and
            // ("a", "bc") are different keys.
            let mut bytes = [0; 8];
            let tail = words.remainder();
            bytes[..tail.len()].copy_from_slice(tail);
            hash = (hash ^ u64::from_le_bytes(bytes)).wrapping_mul(MIX).rotate_left(29);
            hash = (hash ^ part.len() as u64).wrapping_mul(MIX);
        }
        // The modulo keeps the value below SHARDS, so the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation)]
        let shard = ((hash ^ (hash >> 32)) % SHARDS as u64) as usize;
        shard
    }

    /// The feed. Taken after the shard locks, by writers only while they hold
    /// them, so a sequence number is handed out and appended in one step and
    /// the feed never shows a later change before an earlier one.
    fn log(&self) -> MutexGuard<'_, Log> {
        self.inner.log.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn timers(&self) -> MutexGuard<'_, BTreeSet<TimerKey>> {
        self.inner.timers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves record `(machine, id)` in the timer index from `was` to `now`
    /// (called with its shard locked, so the index follows the record).
    fn retime(&self, machine: &Arc<str>, id: &Arc<str>, was: Option<u64>, now: Option<u64>) {
        if was == now {
            return;
        }
        let mut timers = self.timers();
        if let Some(due) = was {
            timers.remove(&(machine.clone(), due, id.clone()));
        }
        if let Some(due) = now {
            timers.insert((machine.clone(), due, id.clone()));
        }
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        // A panic elsewhere cannot leave a shard half-written (every commit
        // validates before it mutates), so a poisoned lock is still consistent.
        self.inner.shards[shard].0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The record with its state as stored (typed or JSON), for the runner.
    pub(crate) fn load_body(&self, machine: &str, id: &str) -> Result<Option<Loaded>, StoreError> {
        validate_machine(machine)?;
        validate_id(id)?;
        let shard = self.lock(self.shard_of(machine, id));
        Ok(shard.entry(machine, id).map(Entry::loaded))
    }

    /// The idempotency key `key` of record `(machine, id)`, its state as
    /// stored (typed or JSON), for the runner.
    pub(crate) fn recall_body(
        &self,
        machine: &str,
        id: &str,
        key: &str,
    ) -> Result<Option<crate::runner::pipeline::Recalled>, StoreError> {
        validate_machine(machine)?;
        validate_id(id)?;
        super::key::validate_idempotency_key(key)?;
        let shard = self.lock(self.shard_of(machine, id));
        Ok(shard.keys.get(machine, id, key).map(|kept| crate::runner::pipeline::Recalled {
            fingerprint: kept.fingerprint,
            version: kept.version,
            kind: kept.kind.clone(),
            state: kept.state.clone(),
            at: kept.at,
            expires_at: kept.expires_at,
        }))
    }

    /// Applies `puts`, `checks` and `keys` atomically (the
    /// [`Store::commit`] rules). A single write without checks or keys, the
    /// common case, takes the short way and allocates nothing.
    pub(crate) fn put<'p>(
        &self,
        puts: impl IntoIterator<Item = Put<'p>>,
        checks: &[Check<'_>],
        keys: Vec<KeyPut<'_>>,
    ) -> Result<(), StoreError> {
        let mut puts = puts.into_iter();
        let Some(first) = puts.next() else { return self.put_many(Vec::new(), checks, keys) };
        match puts.next() {
            None if checks.is_empty() && keys.is_empty() => self.put_one(first),
            second => self.put_many([first].into_iter().chain(second).chain(puts).collect(), checks, keys),
        }
    }

    fn put_many(
        &self,
        mut puts: Vec<Put<'_>>,
        checks: &[Check<'_>],
        idempotency: Vec<KeyPut<'_>>,
    ) -> Result<(), StoreError> {
        for key in &idempotency {
            super::key::validate_idempotency_key(key.key)?;
        }
        let keys = || {
            puts.iter()
                .map(|p| (p.machine, p.id))
                .chain(checks.iter().map(|c| (c.machine, c.id)))
                .chain(idempotency.iter().map(|k| (k.machine, k.id)))
        };
        for (machine, id) in keys() {
            validate_machine(machine)?;
            validate_id(id)?;
        }
        let mut shards: Vec<usize> = keys().map(|(m, id)| self.shard_of(m, id)).collect();
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
        let check_at: Vec<usize> = checks.iter().map(|c| shard(c.machine, c.id)).collect();
        let put_at: Vec<usize> = puts.iter().map(|p| shard(p.machine, p.id)).collect();
        let key_at: Vec<usize> = idempotency.iter().map(|k| shard(k.machine, k.id)).collect();

        // Validate everything before touching anything: all or nothing.
        // Checks see the records as they were before this commit's writes.
        for (check, &at) in checks.iter().zip(&check_at) {
            let current = current_version(&guards[at].1, check.machine, check.id);
            if current != check.expected {
                return Err(conflict(check.machine, check.id, check.expected, current));
            }
        }
        let mut pending: Vec<(&str, &str, u64)> = Vec::with_capacity(puts.len());
        for (put, &at) in puts.iter().zip(&put_at) {
            let earlier = pending.iter().rev().find(|(m, id, _)| *m == put.machine && *id == put.id);
            let current = match earlier {
                Some(&(_, _, version)) => version,
                None => current_version(&guards[at].1, put.machine, put.id),
            };
            if current != put.expected {
                return Err(conflict(put.machine, put.id, put.expected, current));
            }
            pending.push((put.machine, put.id, next_version(put)?));
        }
        // A key still standing was stored by a commit that won: this one
        // lost the race (its retry finds that key).
        for (key, &at) in idempotency.iter().zip(&key_at) {
            if let Some(kept) = guards[at].1.keys.get(key.machine, key.id, key.key)
                && kept.expires_at > key.at
            {
                return Err(conflict(key.machine, key.id, key.version.saturating_sub(1), kept.version));
            }
        }

        // A lent command is copied into its history entry as its write is
        // applied: with several writes, copy them all first, so that a
        // `Clone` that panics leaves the commit unapplied, never half.
        if puts.len() > 1 && self.inner.retention.keeps_entries() {
            for put in &mut puts {
                put.command.own();
            }
        }
        let now = now_millis();
        let mut log = self.log();
        for (put, at) in puts.into_iter().zip(put_at) {
            let seq = log.next_seq();
            let logged = self.apply(&mut guards[at].1, put, seq, now);
            log.append(seq, logged, self.inner.retention.feed_changes());
        }
        for (key, at) in idempotency.into_iter().zip(key_at) {
            guards[at].1.keys.insert(key);
        }
        Ok(())
    }

    /// The common case, a single write: one hash, one lock, one lookup.
    fn put_one(&self, put: Put<'_>) -> Result<(), StoreError> {
        self.with_held(put.machine, put.id, |slot| slot.put(put))?
    }

    /// Stores `put` in its record (validated by the caller: the version holds
    /// and does not overflow) and returns its history entry for the feed
    /// (`None` when retention keeps no entries).
    fn apply(&self, shard: &mut Shard, put: Put<'_>, seq: u64, at: u64) -> Option<Arc<Logged>> {
        let (machine, ids) = shard.ids_mut(put.machine);
        match ids.get_mut(put.id) {
            Some(entry) => self.update(entry, machine, put, seq, at),
            None => self.create(ids, machine, put, seq, at),
        }
    }

    /// [`apply`](Self::apply) to an existing record.
    fn update(&self, entry: &mut Entry, machine: &Arc<str>, put: Put<'_>, seq: u64, at: u64) -> Option<Arc<Logged>> {
        let version = put.expected.saturating_add(1);
        // Kinds repeat from version to version: share the stored string.
        let kind = if &*entry.kind == put.kind { entry.kind.clone() } else { Arc::from(put.kind) };
        // The entry first: building it copies a lent command (the caller's
        // `Clone`), and a panic there must find the record untouched.
        let logged = self.inner.retention.keeps_entries().then(|| {
            put.command.entry(Head {
                seq,
                machine: machine.clone(),
                id: entry.id.clone(),
                version,
                origin: put.origin,
                before: Some((entry.kind.clone(), entry.state.clone(), entry.schema)),
                kind: kind.clone(),
                after: put.state.clone(),
                at,
                schema: put.schema,
            })
        });
        self.retime(machine, &entry.id, entry.due, put.due);
        if let Some(logged) = &logged {
            remember(&mut entry.history, logged.clone(), self.inner.retention.entries_per_record());
        }
        (entry.version, entry.kind, entry.state, entry.updated_at, entry.schema, entry.due) =
            (version, kind, put.state, at, put.schema, put.due);
        logged
    }

    /// [`apply`](Self::apply) creating the record.
    fn create(&self, ids: &mut Ids, machine: &Arc<str>, put: Put<'_>, seq: u64, at: u64) -> Option<Arc<Logged>> {
        let (id, kind): (Arc<str>, Arc<str>) = (Arc::from(put.id), Arc::from(put.kind));
        let (schema, due) = (put.schema, put.due);
        // The entry first, as in `update`.
        let logged = self.inner.retention.keeps_entries().then(|| {
            put.command.entry(Head {
                seq,
                machine: machine.clone(),
                id: id.clone(),
                version: 1,
                origin: put.origin,
                before: None,
                kind: kind.clone(),
                after: put.state.clone(),
                at,
                schema,
            })
        });
        self.retime(machine, &id, None, due);
        let mut history = VecDeque::new();
        if let Some(logged) = &logged {
            remember(&mut history, logged.clone(), self.inner.retention.entries_per_record());
        }
        ids.insert(id.clone(), Entry { id, version: 1, kind, state: put.state, updated_at: at, schema, due, history });
        logged
    }
}

impl Memory {
    /// Removes a record as [`Store::remove`] says: under its shard's lock,
    /// so no write of the record comes between the check and the removal,
    /// and the removal entry joins the feed in the same step.
    pub(crate) fn remove_now(&self, remove: &Remove<'_>) -> Result<(), StoreError> {
        validate_machine(remove.machine)?;
        validate_id(remove.id)?;
        let mut shard = self.lock(self.shard_of(remove.machine, remove.id));
        let Some(at) = shard.machines.iter().position(|(name, _)| **name == *remove.machine) else {
            return Err(conflict(remove.machine, remove.id, remove.expected, 0));
        };
        let (machine, ids) = &mut shard.machines[at];
        let machine = machine.clone();
        let current = ids.get(remove.id).map(|entry| (entry.version, &*entry.kind == remove.kind));
        match current {
            Some((version, true)) if version == remove.expected => {}
            // The same version in another kind: written behind the store's
            // back; a conflict, so the remover reads it again.
            found => {
                let version = found.map_or(0, |(version, _)| version);
                return Err(conflict(remove.machine, remove.id, remove.expected, version));
            }
        }
        let Some(entry) = ids.remove(remove.id) else {
            return Err(conflict(remove.machine, remove.id, remove.expected, 0));
        };
        // Its timer goes with it, as its row's `due_at` does on the SQL stores.
        self.retime(&machine, &entry.id, entry.due, None);
        shard.keys.forget_record(remove.machine, remove.id);
        let mut log = self.log();
        // The record's own history goes with it; the feed keeps its
        // entries (shared with that history) until retention drops them.
        let logged = Head {
            seq: log.next_seq(),
            machine,
            id: entry.id,
            version: entry.version,
            origin: Origin::Removal,
            before: None,
            kind: entry.kind,
            after: entry.state,
            at: now_millis(),
            schema: entry.schema,
        }
        // A removal's command is JSON `null` on every store.
        .with(Body::Json(Arc::from("null")));
        log.push(logged, self.inner.retention.feed_changes());
        Ok(())
    }

    /// Prunes as [`Store::prune_history`] says, oldest first: first the
    /// entries only records' histories still hold (a record may keep more
    /// than the whole feed does), lowest sequence number first, then the
    /// feed's oldest entries and the same entries from their records'
    /// histories. Every shard and then the feed are locked throughout (in
    /// the order commits lock them), so a prune is one step: no writer
    /// pushes entries out of the feed and no other prune takes entries
    /// while it counts, and what it returns is what it deleted. Writers wait
    /// for it; it is a periodic job's, in batches.
    fn prune(&self, before: u64, limit: u32) -> u64 {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        if limit == 0 {
            return 0;
        }
        let mut shards: Vec<MutexGuard<'_, Shard>> = (0..SHARDS).map(|shard| self.lock(shard)).collect();
        let mut log = self.log();
        let swept = self.sweep(&mut shards, log.trimmed(), before, limit);
        let pruned = log.prune(before, limit - swept);
        drop(log);
        // A record's history is in version order, which is feed order, so
        // once the older entries are gone a pruned entry is at its front if
        // its record still holds it; a record created again under the same
        // id has only later entries.
        for logged in &pruned {
            let head = &logged.head;
            let shard = &mut shards[self.shard_of(&head.machine, &head.id)];
            let Some(ids) = shard.machines.iter_mut().find(|(name, _)| *name == head.machine).map(|(_, ids)| ids)
            else {
                continue;
            };
            if let Some(entry) = ids.get_mut(&*head.id)
                && entry.history.front().is_some_and(|kept| Arc::ptr_eq(kept, logged))
            {
                entry.history.pop_front();
            }
        }
        (swept + pruned.len()) as u64
    }

    /// Drops up to `limit` history entries written before `before` that
    /// the feed no longer holds (sequence numbers up to `out_of_feed`),
    /// lowest sequence numbers first, each from the front of its record's
    /// history (so no record is left with a hole), and returns how many
    /// went: one pass finds the `limit`-th lowest such entry, a second
    /// drops up to it.
    fn sweep(&self, shards: &mut [MutexGuard<'_, Shard>], out_of_feed: u64, before: u64, limit: usize) -> usize {
        if out_of_feed == 0 || self.inner.retention.entries_per_record() == 0 {
            return 0;
        }
        let prunable = |logged: &Arc<Logged>| logged.head.seq <= out_of_feed && logged.head.at < before;
        // The `limit` lowest sequence numbers seen, the highest on top.
        let mut lowest = std::collections::BinaryHeap::new();
        for entry in shards.iter().flat_map(|shard| shard.machines.iter()).flat_map(|(_, ids)| ids.values()) {
            for logged in entry.history.iter().take_while(|logged| prunable(logged)) {
                if lowest.len() == limit && lowest.peek().is_some_and(|&top| top < logged.head.seq) {
                    break;
                }
                lowest.push(logged.head.seq);
                if lowest.len() > limit {
                    lowest.pop();
                }
            }
        }
        let Some(&last) = lowest.peek() else { return 0 };
        let mut swept = 0;
        for entry in shards.iter_mut().flat_map(|shard| shard.machines.iter_mut()).flat_map(|(_, ids)| ids.values_mut())
        {
            while entry.history.front().is_some_and(|logged| prunable(logged) && logged.head.seq <= last) {
                entry.history.pop_front();
                swept += 1;
            }
        }
        swept
    }
}

fn current_version(shard: &Shard, machine: &str, id: &str) -> u64 {
    shard.entry(machine, id).map_or(0, |entry| entry.version)
}

fn next_version(put: &Put<'_>) -> Result<u64, StoreError> {
    put.expected.checked_add(1).ok_or_else(|| StoreError::VersionOverflow {
        machine: put.machine.to_owned(),
        id: put.id.to_owned(),
        version: put.expected,
    })
}

fn conflict(machine: &str, id: &str, expected: u64, current: u64) -> StoreError {
    StoreError::Conflict(VersionConflict::new(machine, id, expected.saturating_add(1), current))
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
        shard.entry(machine, id).map(|entry| entry.record(machine)).transpose()
    }

    async fn commit(&self, commit: Commit<'_>) -> Result<(), StoreError> {
        let puts = commit.writes.into_iter().map(|write| Put {
            machine: write.machine,
            id: write.id,
            expected: write.expected,
            kind: write.kind,
            state: Body::Json(Arc::from(write.state)),
            command: Said::Owned(Body::Json(Arc::from(write.command))),
            origin: write.origin,
            schema: write.schema,
            due: write.due,
        });
        self.put(puts, &commit.checks, commit.keys.iter().map(KeyPut::from).collect())
    }

    async fn recall(&self, machine: &str, id: &str, key: &str) -> Result<Option<Remembered>, StoreError> {
        let Some(recalled) = self.recall_body(machine, id, key)? else { return Ok(None) };
        let state = match &recalled.state {
            Some(body) => Some(body.json_of(machine, id, recalled.version, "idempotency key's state")?),
            None => None,
        };
        Ok(Some(Remembered {
            fingerprint: recalled.fingerprint,
            version: recalled.version,
            kind: recalled.kind,
            state,
            at: recalled.at,
            expires_at: recalled.expires_at,
        }))
    }

    async fn history(&self, machine: &str, id: &str) -> Result<Vec<Change>, StoreError> {
        validate_machine(machine)?;
        validate_id(id)?;
        let kept: Vec<Arc<Logged>> = {
            let shard = self.lock(self.shard_of(machine, id));
            shard.entry(machine, id).map(|entry| entry.history.iter().cloned().collect()).unwrap_or_default()
        };
        kept.iter().map(|logged| logged.change()).collect()
    }

    async fn history_page(&self, machine: &str, id: &str, after: u64, limit: u32) -> Result<Vec<Change>, StoreError> {
        validate_machine(machine)?;
        validate_id(id)?;
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let kept: Vec<Arc<Logged>> = {
            let shard = self.lock(self.shard_of(machine, id));
            shard
                .entry(machine, id)
                .map(|entry| {
                    // Versions are consecutive within what is kept.
                    let skip = entry.history.partition_point(|logged| logged.head.version <= after);
                    entry.history.iter().skip(skip).take(limit).cloned().collect()
                })
                .unwrap_or_default()
        };
        kept.iter().map(|logged| logged.change()).collect()
    }

    async fn forget_keys(&self, now: u64, limit: u32) -> Result<u64, StoreError> {
        let mut left = u64::from(limit);
        let mut forgotten = 0;
        for shard in 0..SHARDS {
            if left == 0 {
                break;
            }
            let mut shard = self.lock(shard);
            shard.keys.kept.retain(|_, kept| {
                let expired = kept.expires_at <= now && left > 0;
                if expired {
                    left -= 1;
                    forgotten += 1;
                }
                !expired
            });
        }
        Ok(forgotten)
    }

    async fn remove(&self, remove: Remove<'_>) -> Result<(), StoreError> {
        self.remove_now(&remove)
    }

    async fn prune_history(&self, before: u64, limit: u32) -> Result<u64, StoreError> {
        Ok(self.prune(before, limit))
    }

    fn native(&self) -> super::Native<'_> {
        super::Native::Memory(self)
    }
}

/// The feed is the store-wide log, appended under one short lock in commit
/// order, so a reader never sees a change before an earlier one. Changes
/// dropped by [`Retention`] make older cursors fail with
/// [`StoreError::FeedCompacted`].
impl Feed for Memory {
    async fn changes(&self, after: Cursor, limit: u32) -> Result<Vec<Change>, StoreError> {
        let page = self.log().after(after, usize::try_from(limit).unwrap_or(usize::MAX))?;
        // Encoded outside the lock: writers never wait for a reader's JSON.
        page.iter().map(|logged| logged.change()).collect()
    }

    async fn behind(&self, after: Cursor) -> Result<u64, StoreError> {
        self.log().behind(after)
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
        self.scan(machine, Some(kind), after_id, limit)
    }

    async fn records(&self, machine: &str, after_id: Option<&str>, limit: u32) -> Result<Vec<Listed>, StoreError> {
        self.scan(machine, None, after_id, limit)
    }

    async fn count(&self, machine: &str, kind: &str) -> Result<u64, StoreError> {
        validate_machine(machine)?;
        let mut counted = 0;
        for shard in 0..SHARDS {
            let shard = self.lock(shard);
            if let Some(ids) = shard.ids(machine) {
                counted += ids.values().filter(|entry| &*entry.kind == kind).count() as u64;
            }
        }
        Ok(counted)
    }

    async fn due(
        &self,
        machine: &str,
        now: u64,
        after: Option<(u64, &str)>,
        limit: u32,
    ) -> Result<Vec<Timer>, StoreError> {
        validate_machine(machine)?;
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let name: Arc<str> = Arc::from(machine);
        let mut position: Option<(u64, Arc<str>)> = after.map(|(due, id)| (due, Arc::from(id)));
        let mut timers = Vec::new();
        // The index names each due record; its version is read from the
        // record, under its shard lock. A record a writer moved between the
        // two reads is passed over, and the index read on past it, so a
        // page comes back short only at the end of what is due.
        while timers.len() < limit {
            let found: Vec<(u64, Arc<str>)> = {
                let index = self.timers();
                let (from_due, from_id) = position.clone().unwrap_or((0, Arc::from("")));
                index
                    .range((name.clone(), from_due, from_id.clone())..)
                    .take_while(|(m, due, _)| *m == name && *due <= now)
                    .filter(|(_, due, id)| position.is_none() || (*due, id) != (from_due, &from_id))
                    .take(limit - timers.len())
                    .map(|(_, due, id)| (*due, id.clone()))
                    .collect()
            };
            let Some(last) = found.last().cloned() else { break };
            for (due, id) in found {
                let shard = self.lock(self.shard_of(machine, &id));
                if let Some(entry) = shard.entry(machine, &id).filter(|entry| entry.due == Some(due)) {
                    timers.push(Timer { id: id.to_string(), version: entry.version, due });
                }
            }
            position = Some(last);
        }
        Ok(timers)
    }

    async fn disarm(&self, machine: &str, id: &str, version: u64) -> Result<bool, StoreError> {
        validate_machine(machine)?;
        validate_id(id)?;
        let mut shard = self.lock(self.shard_of(machine, id));
        let Some((name, ids)) = shard.machines.iter_mut().find(|(name, _)| **name == *machine) else {
            return Ok(false);
        };
        let Some(entry) = ids.get_mut(id).filter(|entry| entry.version == version && entry.due.is_some()) else {
            return Ok(false);
        };
        self.retime(name, &entry.id, entry.due.take(), None);
        Ok(true)
    }
}

impl Memory {
    /// A page of `machine`'s records by id, of `kind` only when given.
    fn scan(
        &self,
        machine: &str,
        kind: Option<&str>,
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
                    .filter(|(id, entry)| {
                        kind.is_none_or(|kind| &*entry.kind == kind) && after_id.is_none_or(|after| &***id > after)
                    })
                    .map(|(id, entry)| (id.clone(), entry.loaded())),
            );
        }
        found.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        found.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        found
            .into_iter()
            .map(|(id, loaded)| Ok(Listed { record: loaded.record(machine, &id)?, id: id.to_string() }))
            .collect()
    }
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory")
            .field("retention", &self.inner.retention)
            .field("feed", &self.log().len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Origin, Write};

    fn write(id: &'static str, expected: u64, state: &str) -> Write<'static> {
        Write {
            machine: "M",
            id,
            expected,
            kind: "K",
            state: state.to_owned(),
            command: "\"cmd\"",
            origin: Origin::Command,
            schema: 1,
            due: None,
        }
    }

    fn check(id: &'static str, expected: u64) -> Check<'static> {
        Check { machine: "M", id, expected }
    }

    async fn version(store: &Memory, id: &str) -> u64 {
        store.load("M", id).await.unwrap().map_or(0, |r| r.version)
    }

    /// Ids that differ in one character (`order-1` … `order-1000`, the
    /// common case) and long ids that differ only past their first eight
    /// bytes spread over every shard, roughly evenly.
    #[test]
    fn similar_ids_spread_over_the_shards() {
        // Each store has its own salt: try a few.
        for store in std::iter::repeat_with(Memory::new).take(20) {
            spread(&store);
        }
    }

    fn spread(store: &Memory) {
        for id in [|n: usize| format!("order-{n}"), |n: usize| format!("customer-0000000000-{n:06}")] {
            let mut per_shard = [0_usize; SHARDS];
            for n in 0..SHARDS * 100 {
                per_shard[store.shard_of("Orders", &id(n))] += 1;
            }
            let (least, most) = (per_shard.iter().min().unwrap(), per_shard.iter().max().unwrap());
            assert!(*least >= 50 && *most <= 170, "{least} .. {most}: {per_shard:?}");
        }
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
        let commit =
            Commit { writes: vec![write("a", 1, "1"), write("b", 0, "1")], checks: vec![check("c", 1)], keys: vec![] };
        let error = store.commit(commit).await.unwrap_err();
        assert_eq!(error.conflict().map(|c| c.id.as_str()), Some("b"));
        assert_eq!((version(&store, "a").await, version(&store, "b").await), (1, 1), "nothing applied");
        assert_eq!(store.history("M", "a").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn read_checks_fail_the_commit_when_the_read_record_moved() {
        let store = Memory::new();
        store.commit(Commit::write(write("read", 0, "0"))).await.unwrap();
        let ok = Commit { writes: vec![write("w", 0, "1")], checks: vec![check("read", 1)], keys: vec![] };
        store.commit(ok).await.unwrap();
        store.commit(Commit::write(write("read", 1, "1"))).await.unwrap();
        let stale = Commit { writes: vec![write("w", 1, "2")], checks: vec![check("read", 1)], keys: vec![] };
        let error = store.commit(stale).await.unwrap_err();
        assert_eq!(error.conflict(), Some(&VersionConflict::new("M", "read", 2, 2)));
        assert_eq!(version(&store, "w").await, 1);
        // A check of a record that must not exist yet.
        let absent = Commit { writes: vec![write("w", 1, "2")], checks: vec![check("never", 0)], keys: vec![] };
        store.commit(absent).await.unwrap();
    }

    #[tokio::test]
    async fn writes_to_one_record_in_a_commit_apply_in_order() {
        let store = Memory::new();
        let group = Commit {
            writes: vec![write("a", 0, "1"), write("a", 1, "2"), write("a", 2, "3")],
            checks: vec![],
            keys: vec![],
        };
        store.commit(group).await.unwrap();
        let history = store.history("M", "a").await.unwrap();
        assert_eq!(history.iter().map(|c| (c.version, &*c.after)).collect::<Vec<_>>(), [(1, "1"), (2, "2"), (3, "3")]);
        assert_eq!(history[1].before.as_deref(), Some("1"));
        assert!(history.windows(2).all(|w| w[0].cursor < w[1].cursor));
        let skipping = Commit { writes: vec![write("a", 3, "4"), write("a", 3, "5")], checks: vec![], keys: vec![] };
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

    #[tokio::test]
    async fn history_keeps_the_last_entries_per_record_with_their_before_states() {
        let store = Memory::with_retention(Retention::default().per_record(3));
        for n in 0..5 {
            store.commit(Commit::write(write("a", n, &n.to_string()))).await.unwrap();
        }
        let history = store.history("M", "a").await.unwrap();
        let kept: Vec<_> = history.iter().map(|c| (c.version, c.before.as_deref(), &*c.after)).collect();
        assert_eq!(kept, [(3, Some("1"), "2"), (4, Some("2"), "3"), (5, Some("3"), "4")]);
        assert_eq!(version(&store, "a").await, 5, "the record itself is never trimmed");
    }

    /// Keeping nothing builds no history entries, and loses nothing else:
    /// records, versions, the due index and the feed's numbering are as
    /// with any retention, on the single-write path and the multi-write one.
    #[tokio::test]
    async fn a_store_that_keeps_no_history_keeps_everything_else() {
        use crate::store::{Feed, Query};
        let store = Memory::with_retention(Retention::default().per_record(0).feed(0));
        store.commit(Commit::write(Write { due: Some(50), ..write("a", 0, "1") })).await.unwrap();
        store.commit(Commit::write(write("b", 0, "1"))).await.unwrap();
        let both = Commit { writes: vec![write("a", 1, "2"), write("b", 1, "2")], checks: vec![], keys: vec![] };
        store.commit(both).await.unwrap();
        store.commit(Commit::write(Write { due: Some(20), ..write("b", 2, "3") })).await.unwrap();
        assert_eq!((version(&store, "a").await, version(&store, "b").await), (2, 3));
        assert_eq!(&*store.load("M", "b").await.unwrap().unwrap().state, "3");
        assert!(store.history("M", "a").await.unwrap().is_empty());
        let due: Vec<_> = store.due("M", 100, None, 10).await.unwrap().into_iter().map(|t| (t.id, t.due)).collect();
        assert_eq!(due, [("b".into(), 20)], "a's due time went with the write that cleared it");
        let at = |seq| Cursor { tx: 0, seq };
        match store.changes(Cursor::START, 10).await {
            Err(StoreError::FeedCompacted { oldest, .. }) => assert_eq!(oldest, at(6), "five writes numbered"),
            other => panic!("{other:?}"),
        }
        assert!(store.changes(at(5), 10).await.unwrap().is_empty(), "the feed's end reads as caught up");
        assert_eq!(store.behind(at(5)).await.unwrap(), 0);
    }

    /// A command whose `Clone` panics: the store copies a lent command into
    /// the history entry it builds, while it holds the records locked.
    #[derive(serde::Serialize)]
    struct Fragile(bool);

    impl Clone for Fragile {
        fn clone(&self) -> Self {
            assert!(!self.0, "a Clone that panics");
            Self(false)
        }
    }

    fn lent<'a>(id: &'a str, expected: u64, command: &'a Fragile, due: Option<u64>) -> Put<'a> {
        Put {
            machine: "M",
            id,
            expected,
            kind: "K",
            state: Body::Json(Arc::from("\"after\"")),
            command: Said::Lent(command),
            origin: Origin::Command,
            schema: 1,
            due,
        }
    }

    /// The caller's code running inside a commit (a lent command's
    /// `Clone`) panics: the commit is applied wholly or not at all, and
    /// the timer index still agrees with the record.
    #[tokio::test]
    async fn a_command_whose_copy_panics_leaves_every_record_as_it_was() {
        use crate::store::Query;
        let store = Memory::new();
        store.commit(Commit::write(Write { due: Some(100), ..write("timed", 0, "1") })).await.unwrap();
        store.commit(Commit::write(write("other", 0, "1"))).await.unwrap();
        let (fine, fragile) = (Fragile(false), Fragile(true));
        let attempt = |puts: Vec<Put<'_>>| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.put(puts, &[], Vec::new()))).is_err()
        };
        // One write: the due time it would have moved stays with the record.
        assert!(attempt(vec![lent("timed", 1, &fragile, Some(500))]), "the Clone panicked");
        let due: Vec<_> = store.due("M", 200, None, 10).await.unwrap().into_iter().map(|t| (t.id, t.due)).collect();
        assert_eq!(due, [("timed".into(), 100)], "the index agrees with the record");
        // Two writes, the second one's copy panicking: neither is applied.
        assert!(attempt(vec![lent("other", 1, &fine, None), lent("timed", 1, &fragile, Some(500))]));
        assert_eq!((version(&store, "other").await, version(&store, "timed").await), (1, 1), "all or nothing");
        assert_eq!(store.history("M", "other").await.unwrap().len(), 1);
        // And the store goes on: the same two writes with copies that work.
        store.put(vec![lent("other", 1, &fine, None), lent("timed", 1, &fine, Some(500))], &[], Vec::new()).unwrap();
        assert_eq!((version(&store, "other").await, version(&store, "timed").await), (2, 2));
        let due: Vec<_> = store.due("M", 600, None, 10).await.unwrap().into_iter().map(|t| (t.id, t.due)).collect();
        assert_eq!(due, [("timed".into(), 500)]);
    }

    /// A record's history can outlive the feed (it keeps more entries per
    /// record than the feed keeps in all): pruning by age still reaches
    /// those entries, oldest first, within the limit, and leaves no hole.
    #[tokio::test]
    async fn pruning_reaches_history_the_feed_no_longer_holds() {
        let store = Memory::with_retention(Retention::default().per_record(100).feed(10));
        for n in 0..30 {
            store.commit(Commit::write(write("old", n, &n.to_string()))).await.unwrap();
        }
        for n in 0..20 {
            store.commit(Commit::write(write("new", n, &n.to_string()))).await.unwrap();
        }
        // `old`'s 30 entries and `new`'s first 10 are out of the feed.
        let versions = |history: Vec<Change>| history.iter().map(|c| c.version).collect::<Vec<_>>();
        assert_eq!(store.history("M", "old").await.unwrap().len(), 30);
        let everything = u64::MAX;
        assert_eq!(store.prune_history(everything, 25).await.unwrap(), 25, "the limit holds");
        assert_eq!(versions(store.history("M", "old").await.unwrap()), (26..=30).collect::<Vec<_>>());
        assert_eq!(store.history("M", "new").await.unwrap().len(), 20, "the oldest go first");
        assert_eq!(store.prune_history(everything, 100).await.unwrap(), 25);
        assert!(store.history("M", "old").await.unwrap().is_empty());
        assert!(store.history("M", "new").await.unwrap().is_empty());
        assert_eq!(store.prune_history(everything, 100).await.unwrap(), 0, "nothing left to prune");
        assert_eq!((version(&store, "old").await, version(&store, "new").await), (30, 20), "records stay");
        // Nothing younger than `before` goes.
        store.commit(Commit::write(write("old", 30, "30"))).await.unwrap();
        assert_eq!(store.prune_history(1, 100).await.unwrap(), 0);
        assert_eq!(versions(store.history("M", "old").await.unwrap()), [31]);
    }

    /// Two pruners taking everything while writers go on, with a feed far
    /// shorter than the records' histories: every history stays a run of
    /// consecutive versions ending at the record's own, and every entry is
    /// counted once, by one of them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pruning_beside_writers_leaves_no_hole_and_counts_each_entry_once() {
        const IDS: [&str; 4] = ["a", "b", "c", "d"];
        const WRITES: u64 = 2_000;
        let store = Memory::with_retention(Retention::default().per_record(5_000).feed(8));
        let writers: Vec<_> = IDS
            .iter()
            .map(|&id| {
                let store = store.clone();
                tokio::spawn(async move {
                    for expected in 0..WRITES {
                        store.commit(Commit::write(write(id, expected, "s"))).await.unwrap();
                        if expected % 16 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pruners: Vec<_> = (0..2)
            .map(|_| {
                let (store, done) = (store.clone(), done.clone());
                tokio::spawn(async move {
                    let mut pruned = 0;
                    while !done.load(std::sync::atomic::Ordering::SeqCst) {
                        pruned += store.prune_history(u64::MAX, 13).await.unwrap();
                        for id in IDS {
                            let history = store.history("M", id).await.unwrap();
                            let versions: Vec<u64> = history.iter().map(|c| c.version).collect();
                            assert!(versions.windows(2).all(|w| w[1] == w[0] + 1), "{id}: a hole in {versions:?}");
                        }
                        tokio::task::yield_now().await;
                    }
                    pruned
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut pruned = 0;
        for pruner in pruners {
            pruned += pruner.await.unwrap();
        }
        for id in IDS {
            let versions: Vec<u64> = store.history("M", id).await.unwrap().iter().map(|c| c.version).collect();
            assert_eq!(versions.last().copied().unwrap_or(WRITES), WRITES, "{id} ends at its version");
            assert!(versions.windows(2).all(|pair| pair[1] == pair[0] + 1), "{id}: a hole in {versions:?}");
        }
        loop {
            let more = store.prune_history(u64::MAX, 50).await.unwrap();
            assert!(more <= 50, "a limit is a limit");
            if more == 0 {
                break;
            }
            pruned += more;
        }
        for id in IDS {
            assert!(store.history("M", id).await.unwrap().is_empty(), "{id} fully pruned");
            assert_eq!(version(&store, id).await, WRITES);
        }
        assert_eq!(pruned, WRITES * IDS.len() as u64, "every entry counted once");
    }

    #[tokio::test]
    async fn a_cursor_older_than_the_kept_feed_is_an_error_never_a_gap() {
        use crate::store::Feed;
        let store = Memory::with_retention(Retention::default().feed(2));
        for n in 0..4 {
            store.commit(Commit::write(write("a", n, "1"))).await.unwrap();
        }
        let at = |seq| Cursor { tx: 0, seq };
        for stale in [Cursor::START, at(1)] {
            match store.changes(stale, 10).await {
                Err(StoreError::FeedCompacted { after, oldest }) => assert_eq!((after, oldest), (stale, at(3))),
                other => panic!("{other:?}"),
            }
        }
        let seqs = |page: Vec<Change>| page.iter().map(|c| c.cursor.seq).collect::<Vec<_>>();
        assert_eq!(seqs(store.changes(at(2), 10).await.unwrap()), [3, 4], "the oldest kept cursor still reads");
        assert_eq!(seqs(store.changes(at(3), 1).await.unwrap()), [4]);
        assert!(store.changes(at(4), 10).await.unwrap().is_empty());
        assert!(store.changes(at(99), 10).await.unwrap().is_empty());
    }
}
