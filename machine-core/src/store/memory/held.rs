//! One record's shard held locked from its load to its commit, for a plan
//! that is ready at once (a synchronous transition): the in-process
//! counterpart of the SQLite store's held write transaction. The record is
//! looked up once, and no writer of this process can come between the load
//! and the commit, so such a command never loses a race here.

use super::{Entry, Ids, Memory, conflict, next_version, now_millis};
use crate::error::StoreError;
use crate::store::key::{validate_id, validate_machine};
use crate::store::memory::Put;
use std::sync::Arc;

/// Where a held record's write goes: the record, or its machine's records
/// when it does not exist yet.
pub(crate) struct Slot<'h> {
    store: &'h Memory,
    machine: &'h Arc<str>,
    at: At<'h>,
}

enum At<'h> {
    Existing(&'h mut Entry),
    Absent(&'h mut Ids),
}

impl Memory {
    /// Runs `work` with record `(machine, id)`'s shard locked, handing it
    /// the [`Slot`] the record is read from and written to. `work` must not
    /// wait on anything: the lock is held throughout.
    pub(crate) fn with_held<R>(
        &self,
        machine: &str,
        id: &str,
        work: impl FnOnce(Slot<'_>) -> R,
    ) -> Result<R, StoreError> {
        validate_machine(machine)?;
        validate_id(id)?;
        let mut shard = self.lock(self.shard_of(machine, id));
        let (name, ids) = shard.ids_mut(machine);
        if let Some(entry) = ids.get_mut(id) {
            return Ok(work(Slot { store: self, machine: name, at: At::Existing(entry) }));
        }
        Ok(work(Slot { store: self, machine: name, at: At::Absent(ids) }))
    }
}

impl Slot<'_> {
    /// The held record's version (0: never written).
    pub(crate) fn version(&self) -> u64 {
        match &self.at {
            At::Existing(entry) => entry.version,
            At::Absent(_) => 0,
        }
    }

    /// The held record's state, borrowed, when the runner wrote it typed
    /// as a `T` at schema version `schema` (`None` when it was never
    /// written, was written as JSON, or at another schema version: the
    /// caller then decodes it the usual way).
    pub(crate) fn typed<T: 'static>(&self, schema: u32) -> Option<&T> {
        match &self.at {
            At::Existing(entry) if entry.schema == schema => entry.state.get::<T>(),
            At::Existing(_) | At::Absent(_) => None,
        }
    }

    /// Writes `put`, the held record's next version, under the lock its
    /// load took: the [`Store::commit`](crate::store::Store::commit) rules
    /// for one write, without a second lookup.
    pub(crate) fn put(self, put: Put<'_>) -> Result<(), StoreError> {
        let current = self.version();
        if current != put.expected {
            return Err(conflict(put.machine, put.id, put.expected, current));
        }
        next_version(&put)?;
        let now = now_millis();
        let mut log = self.store.log();
        let seq = log.next_seq();
        let logged = match self.at {
            At::Existing(entry) => self.store.update(entry, self.machine, put, seq, now),
            At::Absent(ids) => self.store.create(ids, self.machine, put, seq, now),
        };
        log.append(seq, logged, self.store.inner.retention.feed_changes());
        Ok(())
    }
}
