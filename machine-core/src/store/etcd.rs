//! The replicated store: etcd's v3 API, for services that must survive the
//! loss of a machine without losing an acknowledged write, and outgrow what
//! one database server can promise.
//!
//! The key layout and how commits, history and the feed map onto etcd are
//! in [`Etcd`]'s docs, which are public where this module is not.

mod checkpoint;
mod error;
mod layout;
mod read;

pub use error::EtcdError;

use super::key::{validate_id, validate_idempotency_key, validate_machine};
use super::record::{Change, Commit, Cursor, Listed, Origin, Record, Remove, Timer};
use super::{Feed, Query, Remembered, Store};
use crate::error::{StoreError, VersionConflict};
use crate::retry::Rng;
use error::{Sent, store_error};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KeyValue, KvClient, Txn, TxnOp,
    TxnOpResponse, WatchFilterType, WatchOptions,
};
use layout::{EntryHeader, Keys, MAX_VERSION, UNREADABLE, prefix_end};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How many records' revisions a store remembers between a load and a
/// commit; past that it forgets them all and reads before committing.
const REMEMBERED: usize = 16_384;

/// How often a commit re-reads and tries again when what it remembered was
/// stale but the caller's expectations still hold.
const STALE_TRIES: u32 = 3;

/// A [`Store`] in an etcd cluster (feature `etcd`).
///
/// - **Commits** are one transaction each, all or nothing, replicated by
///   Raft before they return: an acknowledged write survives the loss of a
///   minority of members.
/// - **Limits** are typed errors ([`EtcdError`], the source of a
///   [`StoreError::Backend`]): a commit needing more than
///   [`max_txn_ops`](EtcdOptions::max_txn_ops) operations or more than
///   [`max_request_bytes`](EtcdOptions::max_request_bytes) is refused before
///   it is sent; the server's own refusals read the same.
/// - **Outages**: a commit that was sent but not answered (a member or the
///   leader was lost) is [`EtcdError::Ambiguous`], retryable: it may have
///   been applied, so load again before deciding what to do. A read that
///   fails because no member can serve it (an election, a member's
///   connection refused) is sent again for up to
///   [`read_retry`](EtcdOptions::read_retry) (3 s) after its first try.
///
/// ## Key layout
///
/// Every key starts with the store's prefix (`machine/` by default, see
/// [`EtcdOptions::prefix`]); `\0` separates the parts, which no machine name
/// or id can hold ([`validate_id`](super::validate_id)), so keys split back
/// unambiguously and sort by bytes like every other store's ids:
///
/// | key | value |
/// | --- | --- |
/// | `{prefix}r/{machine}\0{id}` | the record: a JSON header line `{"version","kind","updated_at"}`, then the state's JSON verbatim |
/// | `{prefix}h/{machine}\0{id}\0{version:020}` | one history entry: a header line `{"version","command","origin","kind","at","pos"}`, then the state written |
/// | `{prefix}h/{machine}\0{id}\x01{revision:020}` | a removal entry ([`Origin::Removal`]): a history entry's header and the state removed; `revision` is the removed record's last |
/// | `{prefix}k/{machine}\0{kind}\0{id}` | the kind index (empty value) |
/// | `{prefix}d/{machine}\0{due:020}\0{id}` | the due-time index ([`State::due`](crate::State::due)): the record's version; the record's header holds `due` too |
/// | `{prefix}i/{machine}\0{id}\0{key}` | an idempotency key |
/// | `{prefix}p/{name}` | a processor's checkpoint and lease (JSON); its etcd key version is the checkpoint's version |
/// | `{prefix}x/{processor}\0{tx:020}\0{seq:020}` | a processor's dead letter (JSON) |
/// | `{prefix}head` | empty; put by every commit that writes, so its `mod_revision` is the revision of the latest change |
///
/// ## How a commit runs
///
/// One etcd transaction per [`Commit`]: it compares the `mod_revision` of
/// every record written or checked with the one this store last saw (0: the
/// record is absent) and, only if all hold, puts each record once, one
/// history entry per write, the kind index changes and `head`; otherwise it
/// reads the records back, so a [`VersionConflict`] names the version that
/// won. Nothing else is atomic in etcd, and nothing else is needed.
///
/// A key's etcd `version` would be the record version if every commit wrote
/// a record once; but a coalesced group commits several versions of one
/// record in one transaction, and etcd takes one put per key per
/// transaction. So the record version is stored in the value, and the
/// compare is on the key's `mod_revision`, which changes with every put and
/// never repeats (Kubernetes' `resourceVersion` is the same idea). The
/// revisions come from [`Store::load`] (remembered for a bounded number of
/// records) or, when unknown, from one read before the transaction.
///
/// ## The feed
///
/// Every transaction has one cluster-wide revision, and a history entry is
/// written once, so its `mod_revision` orders it: a [`Cursor`] is
/// `revision:position` (the entry's place among its transaction's writes).
/// [`Feed::changes`] watches the history keys from the cursor's revision up
/// to `head`'s. etcd keeps old revisions only until it is compacted: a
/// cursor from before the last compaction is [`StoreError::FeedCompacted`],
/// never a silent gap. History itself ([`Store::history`]) survives
/// compaction, as its keys are current keys.
///
/// The feed is that revision history, whatever became of the keys since:
/// an entry's state before is read as of the entry's own revision, and an
/// entry whose key was deleted since is still delivered. So
/// [`Store::remove`] (one transaction: the record, its kind index entry, its
/// history range and its idempotency keys deleted, a removal entry put,
/// only if the record is unchanged since read) leaves a consumer behind
/// every change it has not read yet, and [`Store::prune_history`] reclaims
/// the keyspace of old entries without touching the feed: only etcd's
/// compaction (`--auto-compaction-retention`, or `compact` by an operator:
/// it is cluster-wide, so this store never runs it) shortens the feed.
///
/// ```no_run
/// # async fn demo() -> Result<(), machine_core::StoreError> {
/// use machine_core::store::Etcd;
///
/// let store = Etcd::options()
///     .prefix("orders/")
///     .connect(&["http://127.0.0.1:23791", "http://127.0.0.1:23792", "http://127.0.0.1:23793"])
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Etcd {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    keys: Keys,
    prefix: String,
    options: EtcdOptions,
    /// What the store last saw of a record, by record key.
    seen: Mutex<HashMap<Vec<u8>, Seen>>,
    /// Spreads the waits of reads tried again (`read.rs`).
    jitter: Rng,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd").field("prefix", &self.inner.prefix).field("options", &self.inner.options).finish()
    }
}

/// A record as last seen: its version, kind and key revision (0: absent).
#[derive(Clone, Debug)]
struct Seen {
    version: u64,
    revision: i64,
    kind: Arc<str>,
    /// The stored due time, whose index key a write must move.
    due: Option<u64>,
}

impl Seen {
    fn absent() -> Self {
        Self { version: 0, revision: 0, kind: Arc::from(""), due: None }
    }

    /// The record `kv` holds for `(machine, id)`, and what it says of it.
    fn of(machine: &str, id: &str, kv: &KeyValue) -> Result<(Record, Self), StoreError> {
        let (record, due) = layout::stored(machine, id, kv.value())?;
        let seen = Self { version: record.version, revision: kv.mod_revision(), kind: record.kind.clone(), due };
        Ok((record, seen))
    }
}

/// How to connect: key prefix, timeouts, and the cluster's limits.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    prefix: String,
    timeout: Duration,
    connect_timeout: Duration,
    max_txn_ops: usize,
    max_request_bytes: usize,
    read_retry: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        Self {
            prefix: "machine/".to_owned(),
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            max_txn_ops: 128,
            max_request_bytes: 1_572_864,
            read_retry: Duration::from_secs(3),
        }
    }
}

impl EtcdOptions {
    /// Keeps every key under `prefix` (`machine/` by default), so several
    /// stores or applications share a cluster. Any text without NUL.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one request may take (5 s by default): a commit past it is
    /// [`EtcdError::Ambiguous`], a read [`EtcdError::Unavailable`].
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long after its first try a read that failed because no member
    /// could serve it (no leader during an election, a member's connection
    /// refused or reset) is tried again, waiting 25 ms, then twice as long
    /// each time up to 400 ms (each wait ±10 %): 3 s by default, enough for
    /// an election with etcd's default timings. A try that waited out the
    /// [`timeout`](Self::timeout) is past that budget and not repeated, so
    /// a read takes at most the budget plus one timeout. [`Duration::ZERO`]
    /// never tries again. Commits are never sent twice: one not answered
    /// is [`EtcdError::Ambiguous`], for the caller to load again.
    #[must_use]
    pub fn read_retry(mut self, budget: Duration) -> Self {
        self.read_retry = budget;
        self
    }

    /// How long connecting may take (3 s by default).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The cluster's `--max-txn-ops` (128 by default, etcd's default).
    #[must_use]
    pub fn max_txn_ops(mut self, operations: usize) -> Self {
        self.max_txn_ops = operations.max(1);
        self
    }

    /// The cluster's `--max-request-bytes` (1.5 MiB by default, etcd's default).
    #[must_use]
    pub fn max_request_bytes(mut self, bytes: usize) -> Self {
        self.max_request_bytes = bytes;
        self
    }

    /// Connects to the cluster's members (`http://host:port`); requests are
    /// balanced over them and move on when one is lost.
    pub async fn connect<E: AsRef<str>>(self, endpoints: &[E]) -> Result<Etcd, StoreError> {
        self.check_prefix()?;
        let connect = ConnectOptions::new()
            .with_timeout(self.timeout)
            .with_connect_timeout(self.connect_timeout)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        let client = Client::connect(endpoints, Some(connect)).await.map_err(|e| store_error(e, Sent::Read))?;
        Ok(Etcd::with(client, self))
    }

    /// Uses a client you connected yourself (its own timeouts apply).
    pub fn from_client(self, client: Client) -> Result<Etcd, StoreError> {
        self.check_prefix()?;
        Ok(Etcd::with(client, self))
    }

    fn check_prefix(&self) -> Result<(), StoreError> {
        if self.prefix.contains('\0') {
            return Err(StoreError::InvalidKey {
                what: "key prefix",
                value: self.prefix.chars().take(64).collect(),
                reason: "must not contain NUL characters",
            });
        }
        Ok(())
    }
}

/// One record a commit touches, with what is known of it.
struct Target<'c> {
    machine: &'c str,
    id: &'c str,
    key: Vec<u8>,
    current: Option<Seen>,
    /// Read from the cluster during this commit (not remembered from before).
    fresh: bool,
}

impl Etcd {
    /// Options to set before connecting.
    #[must_use]
    pub fn options() -> EtcdOptions {
        EtcdOptions::default()
    }

    /// Connects to `endpoints` with the default options.
    pub async fn connect<E: AsRef<str>>(endpoints: &[E]) -> Result<Self, StoreError> {
        Self::options().connect(endpoints).await
    }

    fn with(client: Client, options: EtcdOptions) -> Self {
        let inner = Inner {
            client,
            keys: Keys::new(&options.prefix),
            prefix: options.prefix.clone(),
            options,
            seen: Mutex::new(HashMap::new()),
            jitter: Rng::from_entropy(),
        };
        Self { inner: Arc::new(inner) }
    }

    /// The client, for your own requests.
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The prefix every key of this store starts with.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    fn kv(&self) -> KvClient {
        self.inner.client.kv_client()
    }

    fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    fn note(&self, key: &[u8], seen: Seen) {
        let mut map = self.inner.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = map.get_mut(key) {
            // Revisions only grow: never replace a newer sighting.
            if seen.revision >= known.revision {
                *known = seen;
            }
            return;
        }
        if map.len() >= REMEMBERED {
            map.clear();
        }
        map.insert(key.to_vec(), seen);
    }

    fn noted(&self, key: &[u8]) -> Option<Seen> {
        self.inner.seen.lock().unwrap_or_else(PoisonError::into_inner).get(key).cloned()
    }

    /// A record read from `kv` (or its absence), decoded and remembered.
    fn sighting(&self, target: &Target<'_>, kv: Option<&KeyValue>) -> Result<Seen, StoreError> {
        let seen = match kv {
            None => Seen::absent(),
            Some(kv) => Seen::of(target.machine, target.id, kv)?.1,
        };
        self.note(&target.key, seen.clone());
        Ok(seen)
    }

    /// Reads the targets nothing is known of, in one request.
    async fn fetch(&self, targets: &mut [Target<'_>]) -> Result<(), StoreError> {
        let missing: Vec<usize> = (0..targets.len()).filter(|&n| targets[n].current.is_none()).collect();
        if missing.is_empty() {
            return Ok(());
        }
        for chunk in missing.chunks(self.inner.options.max_txn_ops) {
            let gets = chunk.iter().map(|&n| (targets[n].key.clone(), None));
            let response = self.get_all(gets).await?;
            for (&n, op) in chunk.iter().zip(response.op_responses()) {
                let TxnOpResponse::Get(get) = op else { continue };
                let seen = self.sighting(&targets[n], get.kvs().first())?;
                targets[n].current = Some(seen);
                targets[n].fresh = true;
            }
        }
        Ok(())
    }
}

/// The records of a commit, checks first, each once.
fn targets<'c>(etcd: &Etcd, commit: &Commit<'c>) -> Vec<Target<'c>> {
    let mut targets: Vec<Target<'c>> = Vec::new();
    let named = commit.checks.iter().map(|c| (c.machine, c.id)).chain(commit.writes.iter().map(|w| (w.machine, w.id)));
    for (machine, id) in named {
        if targets.iter().any(|t| t.machine == machine && t.id == id) {
            continue;
        }
        let key = etcd.keys().record(machine, id);
        let current = etcd.noted(&key);
        targets.push(Target { machine, id, key, current, fresh: false });
    }
    targets
}

fn version_of(targets: &[Target<'_>], machine: &str, id: &str) -> u64 {
    targets
        .iter()
        .find(|t| t.machine == machine && t.id == id)
        .and_then(|t| t.current.as_ref())
        .map_or(0, |s| s.version)
}

fn conflict(machine: &str, id: &str, expected: u64, current: u64) -> StoreError {
    VersionConflict::new(machine, id, expected.saturating_add(1), current).into()
}

/// The commit judged against what is known, as the memory store judges it:
/// checks first, then writes in order (a record's second write expects its
/// first's version).
fn judge(commit: &Commit<'_>, targets: &[Target<'_>]) -> Result<(), StoreError> {
    for check in &commit.checks {
        let current = version_of(targets, check.machine, check.id);
        if current != check.expected {
            return Err(conflict(check.machine, check.id, check.expected, current));
        }
    }
    let mut pending: Vec<(&str, &str, u64)> = Vec::new();
    for write in &commit.writes {
        let earlier = pending.iter().rev().find(|(m, id, _)| *m == write.machine && *id == write.id);
        let current = earlier.map_or_else(|| version_of(targets, write.machine, write.id), |&(_, _, v)| v);
        if current != write.expected {
            return Err(conflict(write.machine, write.id, write.expected, current));
        }
        if write.expected >= MAX_VERSION {
            return Err(StoreError::VersionOverflow {
                machine: write.machine.to_owned(),
                id: write.id.to_owned(),
                version: write.expected,
            });
        }
        pending.push((write.machine, write.id, write.expected + 1));
    }
    Ok(())
}

fn now_millis() -> u64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}

/// A transaction ready to send, with what a success makes known.
struct Prepared {
    txn: Txn,
    operations: usize,
    bytes: usize,
    /// The records written and what they hold, their revision to be filled
    /// in from the response.
    written: Vec<(Vec<u8>, Seen)>,
}

impl Etcd {
    /// `stored`: per key of the commit, the revision of the expired key it
    /// replaces (`None`: there is none).
    fn prepare(
        &self,
        commit: &Commit<'_>,
        targets: &[Target<'_>],
        stored: &[Option<i64>],
    ) -> Result<Prepared, StoreError> {
        let keys = self.keys();
        let now = now_millis();
        let mut compares = Vec::with_capacity(targets.len());
        let mut success = Vec::new();
        let mut failure = Vec::with_capacity(targets.len());
        let mut bytes = 0;
        let mut written = Vec::new();
        for target in targets {
            let seen = target.current.clone().unwrap_or_else(Seen::absent);
            bytes += target.key.len() * 2 + 16;
            compares.push(Compare::mod_revision(target.key.clone(), CompareOp::Equal, seen.revision));
            failure.push(TxnOp::get(target.key.clone(), None));
            let Some(last) = commit.writes.iter().rev().find(|w| w.machine == target.machine && w.id == target.id)
            else {
                continue;
            };
            let version = last.expected + 1;
            let value = layout::record_value(version, last.kind, now, last.schema, &last.state, last.due);
            bytes += target.key.len() + value.len() + 8;
            success.push(TxnOp::put(target.key.clone(), value, None));
            if seen.version == 0 || *seen.kind != *last.kind {
                let index = keys.kind(target.machine, last.kind, target.id);
                bytes += index.len() + 8;
                success.push(TxnOp::put(index, Vec::new(), None));
                if seen.version > 0 {
                    let old = keys.kind(target.machine, &seen.kind, target.id);
                    bytes += old.len() + 8;
                    success.push(TxnOp::delete(old, None));
                }
            }
            // The due-time index follows the record: the old entry goes, the
            // new one names the version written.
            if let Some(old) = seen.due.filter(|old| Some(*old) != last.due) {
                let stale = keys.due(target.machine, old, target.id);
                bytes += stale.len() + 8;
                success.push(TxnOp::delete(stale, None));
            }
            if let Some(due) = last.due {
                let index = keys.due(target.machine, due, target.id);
                let value = version.to_string().into_bytes();
                bytes += index.len() + value.len() + 8;
                success.push(TxnOp::put(index, value, None));
            }
            let kind = Arc::from(last.kind);
            written.push((target.key.clone(), Seen { version, revision: 0, kind, due: last.due }));
        }
        for (position, write) in (1_u64..).zip(&commit.writes) {
            let key = keys.history(write.machine, write.id, write.expected + 1);
            let entry = EntryHeader {
                version: write.expected + 1,
                command: write.command,
                origin: write.origin,
                kind: write.kind,
                at: now,
                position,
                schema: write.schema,
            };
            let value = layout::entry_value(&entry, &write.state);
            bytes += key.len() + value.len() + 8;
            success.push(TxnOp::put(key, value, None));
        }
        for (key, seen) in commit.keys.iter().zip(stored) {
            let name = keys.idempotency(key.machine, key.id, key.key);
            let value = layout::key_value(key);
            bytes += name.len() * 2 + value.len() + 24;
            // Absent: it must still be (version 0); expired: unchanged since read.
            compares.push(match seen {
                None => Compare::version(name.clone(), CompareOp::Equal, 0),
                Some(revision) => Compare::mod_revision(name.clone(), CompareOp::Equal, *revision),
            });
            success.push(TxnOp::put(name, value, None));
        }
        if !commit.writes.is_empty() {
            success.push(TxnOp::put(keys.head(), Vec::new(), None));
        }
        let options = &self.inner.options;
        let operations = success.len().max(compares.len());
        if operations > options.max_txn_ops {
            return Err(EtcdError::TooManyOperations { operations, limit: Some(options.max_txn_ops) }.into());
        }
        if bytes > options.max_request_bytes {
            return Err(EtcdError::RequestTooLarge { bytes, limit: Some(options.max_request_bytes) }.into());
        }
        let txn = Txn::new().when(compares).and_then(success).or_else(failure);
        Ok(Prepared { txn, operations, bytes, written })
    }
}

impl Etcd {
    /// The transaction removing a record read at `revision`: only if its key
    /// is still at that revision, the record, its kind index entry, its
    /// history range and its idempotency keys go, and the removal entry and
    /// `head` are put. Otherwise nothing.
    fn prepare_removal(
        &self,
        machine: &str,
        id: &str,
        key: &[u8],
        record: &Record,
        revision: i64,
        due: Option<u64>,
    ) -> Result<Prepared, StoreError> {
        let keys = self.keys();
        let entry = EntryHeader {
            version: record.version,
            command: "null",
            origin: Origin::Removal,
            kind: &record.kind,
            at: now_millis(),
            position: 1,
            schema: record.schema,
        };
        let removal = keys.removal(machine, id, revision);
        let value = layout::entry_value(&entry, &record.state);
        let history = keys.history_of(machine, id);
        let idempotency = keys.idempotency_of(machine, id);
        let index = keys.kind(machine, &record.kind, id);
        let bytes =
            key.len() * 2 + index.len() + history.len() * 2 + idempotency.len() * 2 + removal.len() + value.len() + 64;
        let mut success = vec![
            TxnOp::delete(key.to_vec(), None),
            TxnOp::delete(index, None),
            TxnOp::delete(history.clone(), Some(DeleteOptions::new().with_range(prefix_end(&history)))),
            TxnOp::delete(idempotency.clone(), Some(DeleteOptions::new().with_range(prefix_end(&idempotency)))),
            TxnOp::put(removal, value, None),
            TxnOp::put(keys.head(), Vec::new(), None),
        ];
        // Its timer goes with it.
        if let Some(due) = due {
            success.push(TxnOp::delete(keys.due(machine, due, id), None));
        }
        let operations = success.len();
        if bytes > self.inner.options.max_request_bytes {
            return Err(EtcdError::RequestTooLarge { bytes, limit: Some(self.inner.options.max_request_bytes) }.into());
        }
        let unchanged = Compare::mod_revision(key.to_vec(), CompareOp::Equal, revision);
        let txn = Txn::new().when(vec![unchanged]).and_then(success);
        Ok(Prepared { txn, operations, bytes, written: Vec::new() })
    }

    /// Deletes each key still at the revision it was read at, and returns
    /// how many went: in one transaction per batch, one by one when a key of
    /// the batch changed meanwhile.
    async fn delete_unchanged(&self, doomed: &[(Vec<u8>, i64)]) -> Result<u64, StoreError> {
        let mut deleted = 0;
        for chunk in doomed.chunks(self.inner.options.max_txn_ops) {
            let txn = |chunk: &[(Vec<u8>, i64)]| {
                let compares =
                    chunk.iter().map(|(key, rev)| Compare::mod_revision(key.clone(), CompareOp::Equal, *rev));
                let ops = chunk.iter().map(|(key, _)| TxnOp::delete(key.clone(), None));
                let bytes = chunk.iter().map(|(key, _)| key.len() * 2 + 16).sum();
                (Txn::new().when(compares.collect::<Vec<_>>()).and_then(ops.collect::<Vec<_>>()), bytes)
            };
            let (batch, bytes) = txn(chunk);
            let sent = Sent::Write { operations: chunk.len(), bytes };
            if self.kv().txn(batch).await.map_err(|e| store_error(e, sent))?.succeeded() {
                deleted += chunk.len() as u64;
                continue;
            }
            for one in chunk.chunks(1) {
                let (single, bytes) = txn(one);
                let sent = Sent::Write { operations: 1, bytes };
                deleted += u64::from(self.kv().txn(single).await.map_err(|e| store_error(e, sent))?.succeeded());
            }
        }
        Ok(deleted)
    }

    /// One record's history entries, in version order, each told the state
    /// before it by the entry that precedes it.
    fn entries(&self, kvs: &[KeyValue]) -> Result<Vec<Change>, StoreError> {
        let mut changes: Vec<Change> = Vec::with_capacity(kvs.len());
        for kv in kvs {
            let mut change = layout::change(self.keys(), kv.key(), kv.value(), kv.mod_revision())?;
            if let Some(previous) = changes.last().filter(|p| p.version + 1 == change.version) {
                change.kind_before = Some(previous.kind.clone());
                change.before = Some(previous.after.clone());
                change.schema_before = Some(previous.schema);
            }
            changes.push(change);
        }
        Ok(changes)
    }

    /// The commit's idempotency keys as stored now, read after a commit whose
    /// key compare failed: a standing one means another commit with the key
    /// won ([`StoreError::Conflict`]); an expired one is replaced if it is
    /// still unchanged at the next try.
    async fn standing(&self, commit: &Commit<'_>) -> Result<Vec<Option<i64>>, StoreError> {
        let mut stored = Vec::with_capacity(commit.keys.len());
        for key in &commit.keys {
            let name = self.keys().idempotency(key.machine, key.id, key.key);
            let response = self.get(name, None).await?;
            let Some(kv) = response.kvs().first() else {
                stored.push(None);
                continue;
            };
            let kept = layout::remembered(key.machine, key.id, kv.value())?;
            if kept.expires_at > key.at {
                return Err(VersionConflict::new(key.machine, key.id, key.version, kept.version).into());
            }
            stored.push(Some(kv.mod_revision()));
        }
        Ok(stored)
    }
}

impl Store for Etcd {
    async fn forget_keys(&self, now: u64, limit: u32) -> Result<u64, StoreError> {
        const PAGE: i64 = 500;
        let base = self.keys().all_idempotency();
        let end = prefix_end(&base);
        let mut start = base;
        let mut forgotten = 0;
        while forgotten < u64::from(limit) {
            let options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            let page = self.get(start.clone(), Some(options)).await?;
            for kv in page.kvs() {
                if forgotten >= u64::from(limit) {
                    break;
                }
                // A key that does not parse is left for a person: never
                // deleted on a guess.
                let Ok(kept) = layout::remembered(UNREADABLE, UNREADABLE, kv.value()) else { continue };
                if kept.expires_at > now {
                    continue;
                }
                // Deleted only if unchanged since read: a commit may have
                // stored the key anew in between.
                let unchanged = Compare::mod_revision(kv.key().to_vec(), CompareOp::Equal, kv.mod_revision());
                let txn = Txn::new().when(vec![unchanged]).and_then(vec![TxnOp::delete(kv.key().to_vec(), None)]);
                let sent = Sent::Write { operations: 1, bytes: kv.key().len() };
                let done = self.kv().txn(txn).await.map_err(|e| store_error(e, sent))?;
                forgotten += u64::from(done.succeeded());
            }
            let Some(last) = page.kvs().last().filter(|_| page.more()) else { break };
            // The smallest key after the last one read.
            start = last.key().to_vec();
            start.push(0);
        }
        Ok(forgotten)
    }

    async fn remove(&self, remove: Remove<'_>) -> Result<(), StoreError> {
        let (machine, id) = (remove.machine, remove.id);
        validate_machine(machine)?;
        validate_id(id)?;
        let key = self.keys().record(machine, id);
        let mut stale = 0;
        loop {
            // Read, not remembered: the removal entry carries the state.
            let response = self.get(key.clone(), None).await?;
            let Some(kv) = response.kvs().first() else {
                self.note(&key, Seen::absent());
                return Err(conflict(machine, id, remove.expected, 0));
            };
            let (record, seen) = Seen::of(machine, id, kv)?;
            let (revision, due) = (seen.revision, seen.due);
            self.note(&key, seen);
            if record.version != remove.expected || *record.kind != *remove.kind {
                return Err(conflict(machine, id, remove.expected, record.version));
            }
            let prepared = self.prepare_removal(machine, id, &key, &record, revision, due)?;
            let sent = Sent::Write { operations: prepared.operations, bytes: prepared.bytes };
            let done = self.kv().txn(prepared.txn).await.map_err(|e| store_error(e, sent))?;
            if done.succeeded() {
                self.note(&key, Seen::absent());
                return Ok(());
            }
            // Written since it was read: judged again on what is there now.
            stale += 1;
            if stale >= STALE_TRIES {
                return Err(conflict(machine, id, remove.expected, remove.expected));
            }
        }
    }

    async fn prune_history(&self, before: u64, limit: u32) -> Result<u64, StoreError> {
        const PAGE: i64 = 256;
        let base = self.keys().all_history();
        let end = prefix_end(&base);
        let mut start = base;
        let mut pruned = 0_u64;
        while pruned < u64::from(limit) {
            let options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            let page = self.get(start.clone(), Some(options)).await?;
            let mut doomed: Vec<(Vec<u8>, i64)> = Vec::new();
            for kv in page.kvs() {
                if pruned + doomed.len() as u64 >= u64::from(limit) {
                    break;
                }
                // An entry that does not parse is left for a person: never
                // deleted on a guess.
                let Ok(change) = layout::change(self.keys(), kv.key(), kv.value(), kv.mod_revision()) else { continue };
                if change.at < before {
                    doomed.push((kv.key().to_vec(), kv.mod_revision()));
                }
            }
            pruned += self.delete_unchanged(&doomed).await?;
            let Some(last) = page.kvs().last().filter(|_| page.more()) else { break };
            // The smallest key after the last one read.
            start = last.key().to_vec();
            start.push(0);
        }
        Ok(pruned)
    }

    async fn recall(&self, machine: &str, id: &str, key: &str) -> Result<Option<Remembered>, StoreError> {
        validate_machine(machine)?;
        validate_id(id)?;
        validate_idempotency_key(key)?;
        let name = self.keys().idempotency(machine, id, key);
        let response = self.get(name, None).await?;
        response.kvs().first().map(|kv| layout::remembered(machine, id, kv.value())).transpose()
    }

    async fn load(&self, machine: &str, id: &str) -> Result<Option<Record>, StoreError> {
        validate_machine(machine)?;
        validate_id(id)?;
        let key = self.keys().record(machine, id);
        let response = self.get(key.clone(), None).await?;
        let Some(kv) = response.kvs().first() else {
            self.note(&key, Seen::absent());
            return Ok(None);
        };
        let (record, seen) = Seen::of(machine, id, kv)?;
        self.note(&key, seen);
        Ok(Some(record))
    }

    async fn commit(&self, commit: Commit<'_>) -> Result<(), StoreError> {
        for write in &commit.writes {
            validate_machine(write.machine)?;
            validate_id(write.id)?;
            if write.kind.contains('\0') {
                return Err(StoreError::InvalidKey {
                    what: "kind",
                    value: write.kind.chars().take(64).collect(),
                    reason: "must not contain NUL characters",
                });
            }
        }
        for check in &commit.checks {
            validate_machine(check.machine)?;
            validate_id(check.id)?;
        }
        for key in &commit.keys {
            validate_machine(key.machine)?;
            validate_id(key.id)?;
            validate_idempotency_key(key.key)?;
        }
        if commit.writes.is_empty() && commit.checks.is_empty() {
            return Ok(());
        }
        let mut targets = targets(self, &commit);
        // The runner looked the keys up in this attempt and found them
        // absent (or expired): assumed absent, read only if the
        // transaction says otherwise.
        let mut stored: Vec<Option<i64>> = vec![None; commit.keys.len()];
        let mut tries = 0;
        loop {
            self.fetch(&mut targets).await?;
            if let Err(error) = judge(&commit, &targets) {
                if targets.iter().all(|t| t.fresh) {
                    return Err(error);
                }
                // Judged on remembered versions: read them and judge again.
                for target in targets.iter_mut().filter(|t| !t.fresh) {
                    target.current = None;
                }
                continue;
            }
            let prepared = self.prepare(&commit, &targets, &stored)?;
            let sent = Sent::Write { operations: prepared.operations, bytes: prepared.bytes };
            let response = self.kv().txn(prepared.txn).await.map_err(|e| store_error(e, sent))?;
            if response.succeeded() {
                let revision = response.header().map_or(0, etcd_client::ResponseHeader::revision);
                for (key, seen) in prepared.written {
                    self.note(&key, Seen { revision, ..seen });
                }
                return Ok(());
            }
            // Someone else wrote one of the records: what they wrote came back.
            for (target, op) in targets.iter_mut().zip(response.op_responses()) {
                let TxnOpResponse::Get(get) = op else { continue };
                let seen = self.sighting(target, get.kvs().first())?;
                target.current = Some(seen);
                target.fresh = true;
            }
            judge(&commit, &targets)?;
            // The records held: a key compare failed (a key stored by a
            // winner, or an expired one to replace), or a record was
            // rewritten behind the store's back at the same version.
            if !commit.keys.is_empty() {
                stored = self.standing(&commit).await?;
            }
            tries += 1;
            if tries >= STALE_TRIES {
                let first = &targets[0];
                let version = version_of(&targets, first.machine, first.id);
                return Err(conflict(first.machine, first.id, version, version));
            }
        }
    }

    async fn history(&self, machine: &str, id: &str) -> Result<Vec<Change>, StoreError> {
        validate_machine(machine)?;
        validate_id(id)?;
        let start = self.keys().history_of(machine, id);
        let end = prefix_end(&start);
        let response = self.get(start, Some(GetOptions::new().with_range(end))).await?;
        self.entries(response.kvs())
    }

    async fn history_page(&self, machine: &str, id: &str, after: u64, limit: u32) -> Result<Vec<Change>, StoreError> {
        validate_machine(machine)?;
        validate_id(id)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        // From the entry at `after` itself, for the first entry's state
        // before; it is dropped from the page.
        let start = self.keys().history(machine, id, after.max(1));
        let end = prefix_end(&self.keys().history_of(machine, id));
        let options = GetOptions::new().with_range(end).with_limit(i64::from(limit) + 1);
        let response = self.get(start, Some(options)).await?;
        let mut changes = self.entries(response.kvs())?;
        changes.retain(|change| change.version > after);
        changes.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(changes)
    }
}

/// A feed entry as the watch delivered it.
struct Candidate {
    change: Change,
}

impl Etcd {
    /// Up to `limit` history puts after `after`, as the watch delivers them,
    /// up to the revision of `head` (`head`).
    async fn watched(&self, after: Cursor, head: i64, limit: u32) -> Result<Vec<Candidate>, StoreError> {
        let start = i64::try_from(after.tx.max(1)).unwrap_or(i64::MAX);
        let options =
            WatchOptions::new().with_prefix().with_start_revision(start).with_filters([WatchFilterType::NoDelete]);
        let mut stream = self
            .inner
            .client
            .watch_client()
            .watch(self.keys().all_history(), Some(options))
            .await
            .map_err(|e| store_error(e, Sent::Read))?;
        let mut found = Vec::new();
        loop {
            let Some(response) = stream.message().await.map_err(|e| store_error(e, Sent::Read))? else {
                return Err(EtcdError::Unavailable { reason: "the watch ended before the feed was read" }.into());
            };
            if response.canceled() {
                if response.compact_revision() > 0 {
                    let compacted = u64::try_from(response.compact_revision()).unwrap_or(0);
                    return Err(StoreError::FeedCompacted { after, oldest: Cursor { tx: compacted, seq: 0 } });
                }
                return Err(EtcdError::Unavailable { reason: "the watch was cancelled" }.into());
            }
            let mut top = 0;
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                top = kv.mod_revision();
                if u64::try_from(top).unwrap_or(0) < after.tx {
                    continue;
                }
                let change = match layout::change(self.keys(), kv.key(), kv.value(), top) {
                    Ok(change) => change,
                    // Deleted by hand since: not a change of the feed any more.
                    Err(_) if !self.still_stored(kv.key(), top).await? => continue,
                    Err(error) => return Err(error),
                };
                if change.cursor <= after {
                    continue;
                }
                found.push(Candidate { change });
                if found.len() >= limit as usize {
                    return Ok(found);
                }
            }
            if top >= head {
                return Ok(found);
            }
        }
    }

    /// Whether `key` is still stored as written at `revision`.
    async fn still_stored(&self, key: &[u8], revision: i64) -> Result<bool, StoreError> {
        let response = self.get(key, None).await?;
        Ok(response.kvs().first().is_some_and(|kv| kv.mod_revision() == revision))
    }

    /// Fills in each entry's state before: its record's previous entry as
    /// it stood when the entry was written, read at the entry's own
    /// revision, so a record removed, pruned or created again under the
    /// same id since does not change what its past entries say. Entries are
    /// kept whether or not their keys still exist: the feed is etcd's
    /// revision history, and only compaction shortens it.
    async fn complete(&self, candidates: Vec<Candidate>) -> Result<Vec<Change>, StoreError> {
        let mut changes: Vec<Change> = candidates.into_iter().map(|candidate| candidate.change).collect();
        let mut unread = Vec::new();
        for n in 0..changes.len() {
            let change = &changes[n];
            if change.origin == Origin::Removal || change.version <= 1 {
                continue;
            }
            // The same record's latest entry earlier in the page: its
            // predecessor, unless a removal came between.
            let earlier = changes[..n].iter().rev().find(|e| e.machine == change.machine && e.id == change.id);
            match earlier {
                Some(previous) if previous.origin != Origin::Removal && previous.version + 1 == change.version => {
                    let (kind, after, schema) = (previous.kind.clone(), previous.after.clone(), previous.schema);
                    let change = &mut changes[n];
                    (change.kind_before, change.before, change.schema_before) = (Some(kind), Some(after), Some(schema));
                }
                _ => unread.push(n),
            }
        }
        for chunk in unread.chunks(self.inner.options.max_txn_ops) {
            let gets: Vec<_> = chunk
                .iter()
                .map(|&n| {
                    let change = &changes[n];
                    let key = self.keys().history(&change.machine, &change.id, change.version - 1);
                    let revision = i64::try_from(change.cursor.tx).unwrap_or(i64::MAX);
                    (key, Some(GetOptions::new().with_revision(revision)))
                })
                .collect();
            let response = self.get_all(gets).await?;
            for (&n, op) in chunk.iter().zip(response.op_responses()) {
                let TxnOpResponse::Get(get) = op else { continue };
                let Some(kv) = get.kvs().first() else { continue };
                let before = layout::change(self.keys(), kv.key(), kv.value(), kv.mod_revision())?;
                let change = &mut changes[n];
                change.kind_before = Some(before.kind);
                change.before = Some(before.after);
                change.schema_before = Some(before.schema);
            }
        }
        Ok(changes)
    }

    async fn page(&self, after: Cursor, limit: u32) -> Result<Vec<Change>, StoreError> {
        let head = self.get(self.keys().head(), None).await?;
        let Some(head) = head.kvs().first().map(KeyValue::mod_revision) else { return Ok(Vec::new()) };
        let mut from = after;
        loop {
            if from.tx > u64::try_from(head).unwrap_or(0) {
                return Ok(Vec::new());
            }
            let candidates = self.watched(from, head, limit).await?;
            let (Some(last), full) = (candidates.last().map(|c| c.change.cursor), candidates.len() >= limit as usize)
            else {
                return Ok(Vec::new());
            };
            let changes = self.complete(candidates).await?;
            if !changes.is_empty() || !full {
                return Ok(changes);
            }
            from = last;
        }
    }
}

impl Feed for Etcd {
    async fn changes(&self, after: Cursor, limit: u32) -> Result<Vec<Change>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // The whole page again, watch included, when the cluster is
        // unavailable: a watch cut by an election is opened afresh.
        self.again(|| async {
            match tokio::time::timeout(self.inner.options.timeout, self.page(after, limit)).await {
                Ok(result) => result,
                Err(_) => Err(EtcdError::Unavailable { reason: "reading the feed timed out" }.into()),
            }
        })
        .await
    }
}

impl Query for Etcd {
    async fn by_kind(
        &self,
        machine: &str,
        kind: &str,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Listed>, StoreError> {
        validate_machine(machine)?;
        if limit == 0 || kind.contains('\0') {
            return Ok(Vec::new());
        }
        let base = self.keys().kind_of(machine, kind);
        let end = prefix_end(&base);
        let mut start = base.clone();
        if let Some(after) = after_id {
            // The smallest key past `after`'s: ids hold no NUL.
            start.extend_from_slice(after.as_bytes());
            start.push(0);
        }
        let options = GetOptions::new().with_range(end).with_limit(i64::from(limit)).with_keys_only();
        let index = self.get(start, Some(options)).await?;
        let revision = index.header().map_or(0, etcd_client::ResponseHeader::revision);
        let mut ids = Vec::with_capacity(index.kvs().len());
        for kv in index.kvs() {
            let id = kv.key().strip_prefix(base.as_slice()).and_then(|id| std::str::from_utf8(id).ok());
            let id = id.ok_or_else(|| StoreError::Corrupt {
                machine: machine.to_owned(),
                id: UNREADABLE.to_owned(),
                reason: format!(
                    "kind index entry {:?} is not one this store writes",
                    String::from_utf8_lossy(kv.key())
                ),
            })?;
            ids.push(id.to_owned());
        }
        let mut listed = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(self.inner.options.max_txn_ops) {
            // The records as of the index read: one consistent page.
            let gets: Vec<_> = chunk
                .iter()
                .map(|id| (self.keys().record(machine, id), Some(GetOptions::new().with_revision(revision))))
                .collect();
            let response = self.get_all(gets).await?;
            for (id, op) in chunk.iter().zip(response.op_responses()) {
                let TxnOpResponse::Get(get) = op else { continue };
                let corrupt =
                    |reason: String| StoreError::Corrupt { machine: machine.to_owned(), id: id.clone(), reason };
                let kv =
                    get.kvs().first().ok_or_else(|| corrupt(format!("indexed as {kind:?} but no record is stored")))?;
                let record = layout::record(machine, id, kv.value())?;
                if *record.kind != *kind {
                    return Err(corrupt(format!("indexed as {kind:?} but the stored kind is {:?}", record.kind)));
                }
                listed.push(Listed { id: id.clone(), record });
            }
        }
        Ok(listed)
    }

    async fn count(&self, machine: &str, kind: &str) -> Result<u64, StoreError> {
        validate_machine(machine)?;
        if kind.contains('\0') {
            return Ok(0);
        }
        let base = self.keys().kind_of(machine, kind);
        let options = GetOptions::new().with_range(prefix_end(&base)).with_count_only();
        let counted = self.get(base, Some(options)).await?;
        Ok(u64::try_from(counted.count()).unwrap_or(0))
    }

    async fn records(&self, machine: &str, after_id: Option<&str>, limit: u32) -> Result<Vec<Listed>, StoreError> {
        validate_machine(machine)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let base = self.keys().records_of(machine);
        let end = prefix_end(&base);
        let mut start = base.clone();
        if let Some(after) = after_id {
            // The smallest key past `after`'s: ids hold no NUL.
            start.extend_from_slice(after.as_bytes());
            start.push(0);
        }
        let options = GetOptions::new().with_range(end).with_limit(i64::from(limit));
        let page = self.get(start, Some(options)).await?;
        let mut listed = Vec::with_capacity(page.kvs().len());
        for kv in page.kvs() {
            let id = kv.key().strip_prefix(base.as_slice()).and_then(|id| std::str::from_utf8(id).ok());
            let id = id.ok_or_else(|| StoreError::Corrupt {
                machine: machine.to_owned(),
                id: UNREADABLE.to_owned(),
                reason: format!("record key {:?} is not one this store writes", String::from_utf8_lossy(kv.key())),
            })?;
            listed.push(Listed { id: id.to_owned(), record: layout::record(machine, id, kv.value())? });
        }
        Ok(listed)
    }

    async fn due(
        &self,
        machine: &str,
        now: u64,
        after: Option<(u64, &str)>,
        limit: u32,
    ) -> Result<Vec<Timer>, StoreError> {
        validate_machine(machine)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let keys = self.keys();
        let base = keys.due_of(machine);
        let start = match after {
            // The smallest key past the position's: ids hold no NUL.
            Some((due, id)) => {
                let mut start = keys.due(machine, due, id);
                start.push(0);
                start
            }
            None => base.clone(),
        };
        // Everything due by `now`: keys below the first of `now + 1`.
        let end = match now.checked_add(1) {
            Some(next) => keys.due(machine, next, ""),
            None => prefix_end(&base),
        };
        if start >= end {
            return Ok(Vec::new());
        }
        let options = GetOptions::new().with_range(end).with_limit(i64::from(limit));
        let page = self.get(start, Some(options)).await?;
        let mut timers = Vec::with_capacity(page.kvs().len());
        for kv in page.kvs() {
            let corrupt =
                |reason: String| StoreError::Corrupt { machine: machine.to_owned(), id: UNREADABLE.to_owned(), reason };
            let (due, id) = keys.parse_due(machine, kv.key()).ok_or_else(|| {
                corrupt(format!("due-time key {:?} is not one this store writes", String::from_utf8_lossy(kv.key())))
            })?;
            let version = std::str::from_utf8(kv.value()).ok().and_then(|v| v.parse::<u64>().ok()).filter(|v| *v > 0);
            let version = version.ok_or_else(|| StoreError::Corrupt {
                machine: machine.to_owned(),
                id: id.to_owned(),
                reason: "its due-time entry holds no valid version".to_owned(),
            })?;
            timers.push(Timer { id: id.to_owned(), version, due });
        }
        Ok(timers)
    }

    async fn disarm(&self, machine: &str, id: &str, version: u64) -> Result<bool, StoreError> {
        validate_machine(machine)?;
        validate_id(id)?;
        let key = self.keys().record(machine, id);
        let response = self.get(key.clone(), None).await?;
        let Some(kv) = response.kvs().first() else { return Ok(false) };
        let (record, due) = layout::stored(machine, id, kv.value())?;
        let Some(due) = due.filter(|_| record.version == version) else {
            return Ok(false);
        };
        // The record keeps its version: only its due time is cleared, if
        // nothing wrote it since it was read.
        let value =
            layout::record_value(record.version, &record.kind, record.updated_at, record.schema, &record.state, None);
        let txn = Txn::new()
            .when(vec![Compare::mod_revision(key.clone(), CompareOp::Equal, kv.mod_revision())])
            .and_then(vec![TxnOp::put(key, value, None), TxnOp::delete(self.keys().due(machine, due, id), None)]);
        let sent = Sent::Write { operations: 2, bytes: kv.value().len() + 64 };
        let done = self.kv().txn(txn).await.map_err(|e| store_error(e, sent))?;
        Ok(done.succeeded())
    }
}
