//! Where the loop loads and commits: through the [`Store`] trait, or through
//! the fast path of one of this crate's stores (typed values in memory, one
//! immediate transaction in SQLite, one pooled connection in PostgreSQL).
//! The loop is the same; only this differs.

use super::pipeline::{Keyed, Planned, Recalled};
use crate::error::StoreError;
use crate::store::body::Loaded;
use crate::store::memory::{KeyPut, Memory, Put};
use crate::store::{Check, Commit, Native, Remove, Store};
use std::future::Future;

/// Where an attempt loads and commits: the runner's store, or a transaction
/// the caller already holds (see `join`).
pub(crate) trait Session: Send {
    /// Whether plans may hand over typed values instead of JSON.
    fn typed(&self) -> bool {
        false
    }

    /// The in-process store, when this session writes straight to one (not
    /// in a caller's transaction): a plan that is ready at once is then
    /// planned and committed under the record's lock.
    fn memory(&self) -> Option<&Memory> {
        None
    }

    fn load(&mut self, machine: &str, id: &str) -> impl Future<Output = Result<Option<Loaded>, StoreError>> + Send;

    /// The idempotency key `key` of record `(machine, id)`, as stored.
    fn recall(
        &mut self,
        machine: &str,
        id: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<Recalled>, StoreError>> + Send;

    /// Commits `writes` (moving their values out), `checks` and `keys`
    /// atomically.
    fn commit(
        &mut self,
        writes: &mut [Planned<'_>],
        checks: Vec<Check<'_>>,
        keys: &[Keyed<'_>],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes a record if it is still as read. Only the runner's own store
    /// removes; a transaction the caller holds does not.
    fn remove(&mut self, remove: &Remove<'_>) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = remove;
        std::future::ready(Err(StoreError::Unsupported { what: "removing records in a joined transaction" }))
    }
}

/// The writes as the [`Store`] trait takes them.
pub(crate) fn store_commit<'w>(
    writes: &'w mut [Planned<'_>],
    checks: Vec<Check<'w>>,
    keys: &'w [Keyed<'_>],
) -> Result<Commit<'w>, StoreError> {
    let writes = writes.iter_mut().map(Planned::take_write).collect::<Result<_, _>>()?;
    let keys = keys.iter().map(Keyed::remember).collect::<Result<_, _>>()?;
    Ok(Commit { writes, checks, keys })
}

/// A runner's or a decision's own store.
pub(crate) struct Direct<'s, St> {
    store: &'s St,
    /// The plan is quick (a synchronous transition): SQLite may hold its
    /// write lock from the load to the commit, PostgreSQL a connection.
    #[cfg_attr(
        not(any(feature = "sqlite", feature = "postgres")),
        expect(dead_code, reason = "only SQLite and PostgreSQL have a held path")
    )]
    quick: bool,
    #[cfg(feature = "sqlite")]
    held: Option<crate::store::sqlite::Held>,
    /// PostgreSQL: the pooled connection a quick plan loads and commits
    /// through. The pool checks every connection it gets back with a round
    /// trip to the server; one connection per command pays that once, not
    /// once for the load and again for the commit.
    #[cfg(feature = "postgres")]
    conn: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
}

impl<'s, St: Store> Direct<'s, St> {
    pub(crate) fn new(store: &'s St, quick: bool) -> Self {
        Self {
            store,
            quick,
            #[cfg(feature = "sqlite")]
            held: None,
            #[cfg(feature = "postgres")]
            conn: None,
        }
    }
}

impl<St: Store> Session for Direct<'_, St> {
    fn typed(&self) -> bool {
        matches!(self.store.native(), Native::Memory(_))
    }

    fn memory(&self) -> Option<&Memory> {
        match self.store.native() {
            Native::Memory(memory) => Some(memory),
            _ => None,
        }
    }

    async fn load(&mut self, machine: &str, id: &str) -> Result<Option<Loaded>, StoreError> {
        match self.store.native() {
            Native::Memory(memory) => memory.load_body(machine, id),
            // SQLite admits one writer at a time: a quick plan takes the
            // write lock before it reads, so it never loses a race to this
            // process and never wastes an attempt.
            #[cfg(feature = "sqlite")]
            Native::Sqlite(sqlite) if self.quick => {
                // Boxed: sqlx's futures are large, and every session's
                // future would otherwise carry their size.
                let record = if let Some(held) = &mut self.held {
                    Box::pin(held.load(machine, id)).await?
                } else {
                    let (held, record) = Box::pin(sqlite.hold_and_load(machine, id)).await?;
                    self.held = Some(held);
                    record
                };
                Ok(record.map(Loaded::from))
            }
            // Only for a quick plan: a slow one would keep the connection
            // from the pool while it waits.
            #[cfg(feature = "postgres")]
            Native::Postgres(postgres) if self.quick => {
                let conn = match &mut self.conn {
                    Some(conn) => conn,
                    none => none.insert(Box::pin(postgres.acquire()).await?),
                };
                Ok(Box::pin(postgres.load_in(conn, machine, id)).await?.map(Loaded::from))
            }
            _ => Ok(self.store.load(machine, id).await?.map(Loaded::from)),
        }
    }

    async fn recall(&mut self, machine: &str, id: &str, key: &str) -> Result<Option<Recalled>, StoreError> {
        if let Native::Memory(memory) = self.store.native() {
            return memory.recall_body(machine, id, key);
        }
        // Inside the held transaction, when there is one: the key and the
        // record are then read from one snapshot.
        #[cfg(feature = "sqlite")]
        if let Some(held) = &mut self.held {
            return Ok(Box::pin(held.recall(machine, id, key)).await?.map(Recalled::from));
        }
        // On the connection the load took, when there is one.
        #[cfg(feature = "postgres")]
        if let (Native::Postgres(postgres), Some(conn)) = (self.store.native(), &mut self.conn) {
            return Ok(Box::pin(postgres.recall_in(conn, machine, id, key)).await?.map(Recalled::from));
        }
        Ok(self.store.recall(machine, id, key).await?.map(Recalled::from))
    }

    async fn commit(
        &mut self,
        writes: &mut [Planned<'_>],
        checks: Vec<Check<'_>>,
        keys: &[Keyed<'_>],
    ) -> Result<(), StoreError> {
        if let Native::Memory(memory) = self.store.native() {
            return memory.put(writes.iter_mut().map(put), &checks, keys.iter().map(key_put).collect());
        }
        let commit = store_commit(writes, checks, keys)?;
        #[cfg(feature = "sqlite")]
        if let Some(held) = self.held.take() {
            return Box::pin(held.commit(&commit)).await;
        }
        #[cfg(feature = "postgres")]
        if let (Native::Postgres(postgres), Some(mut conn)) = (self.store.native(), self.conn.take()) {
            return Box::pin(postgres.commit_in(&mut conn, commit)).await;
        }
        self.store.commit(commit).await
    }

    async fn remove(&mut self, remove: &Remove<'_>) -> Result<(), StoreError> {
        if let Native::Memory(memory) = self.store.native() {
            return memory.remove_now(remove);
        }
        // Inside the transaction the load took the write lock in.
        #[cfg(feature = "sqlite")]
        if let Some(held) = self.held.take() {
            return Box::pin(held.remove(remove)).await;
        }
        // The removal takes a connection of its own: give this one back
        // first (a pool of one would otherwise wait for ever).
        #[cfg(feature = "postgres")]
        drop(self.conn.take());
        self.store.remove(*remove).await
    }
}

/// A planned key in the memory store's terms (its state shares the write's).
fn key_put<'k>(keyed: &'k Keyed<'_>) -> KeyPut<'k> {
    KeyPut {
        machine: keyed.machine,
        id: keyed.id,
        key: keyed.key,
        fingerprint: keyed.fingerprint,
        version: keyed.version,
        kind: keyed.kind,
        state: keyed.state.clone().map(super::pipeline::Staged::into_body),
        at: keyed.at,
        expires_at: keyed.expires_at,
    }
}

/// A planned write in the memory store's terms, its values moved out.
pub(crate) fn put<'a>(planned: &mut Planned<'a>) -> Put<'a> {
    let state = std::mem::replace(&mut planned.state, super::pipeline::Staged::Json("".into()));
    let command = std::mem::replace(&mut planned.command, super::pipeline::Staged::Json("".into()));
    into_put(Planned { state, command, ..*planned })
}

/// [`put`] for a write the caller has no further use of.
pub(crate) fn into_put(planned: Planned<'_>) -> Put<'_> {
    let Planned { machine, id, expected, kind, state, command, origin, schema, due } = planned;
    Put { machine, id, expected, kind, state: state.into_body(), command: command.said(), origin, schema, due }
}
