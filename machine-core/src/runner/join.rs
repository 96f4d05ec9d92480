//! Running a command inside a database transaction the caller already holds,
//! so the caller's own tables and the machine's state commit or roll back
//! together (the "transactor" pattern).

use super::group::Intent;
use super::pipeline::{Keyed, Planned, Recalled, Session};
use super::session::store_commit;
use super::{Outcome, Request, Runner};
use crate::decision::{Decided, Decision, Draft, Rejection, Verdict};
use crate::error::{Error, StoreError};
use crate::machine::AsyncMachine;
use crate::store::body::Loaded;
use crate::store::{Check, Postgres};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgConnection;

/// The caller's connection, inside their transaction.
struct InTransaction<'a> {
    store: &'a Postgres,
    conn: &'a mut PgConnection,
}

impl Session for InTransaction<'_> {
    async fn load(&mut self, machine: &str, id: &str) -> Result<Option<Loaded>, StoreError> {
        Ok(self.store.load_in(self.conn, machine, id).await?.map(Loaded::from))
    }

    async fn recall(&mut self, machine: &str, id: &str, key: &str) -> Result<Option<Recalled>, StoreError> {
        Ok(self.store.recall_in(self.conn, machine, id, key).await?.map(Recalled::from))
    }

    async fn commit(
        &mut self,
        writes: &mut [Planned<'_>],
        checks: Vec<Check<'_>>,
        keys: &[Keyed<'_>],
    ) -> Result<(), StoreError> {
        self.store.commit_in(self.conn, store_commit(writes, checks, keys)?).await
    }
}

impl<M> Runner<M, Postgres>
where
    M: AsyncMachine,
    M::State: Clone + Serialize + DeserializeOwned + 'static,
    M::Command: Clone + Serialize + DeserializeOwned + 'static,
{
    /// Runs `command` on record `id` through `conn`, a connection inside a
    /// transaction you hold (`&mut *tx` for a `sqlx::Transaction`): the new
    /// state and its history row are written in your transaction and become
    /// visible when you commit it, or vanish when you roll it back.
    ///
    /// The same load → transition → compare-and-set loop runs, retries
    /// included: under PostgreSQL's default Read Committed isolation each
    /// attempt reads the latest committed version and a lost race leaves your
    /// transaction usable. (Under Repeatable Read or Serializable a lost race
    /// aborts your transaction; retry the whole transaction then.) Your
    /// commit is what makes the change durable: if it fails, the command did
    /// not happen.
    ///
    /// ```no_run
    /// # use machine_core::{AsyncMachine, Runner, store::Postgres};
    /// # async fn demo<M: AsyncMachine>(runner: Runner<M, Postgres>, command: M::Command) -> Result<(), Box<dyn std::error::Error>>
    /// # where M::State: Clone + serde::Serialize + serde::de::DeserializeOwned + 'static,
    /// #       M::Command: Clone + serde::Serialize + serde::de::DeserializeOwned + 'static {
    /// let mut tx = runner.store().pool().begin().await?;
    /// runner.handle_in(&mut tx, "order-42", &command).await?;
    /// sqlx::query("INSERT INTO invoices (order_id) VALUES ($1)").bind("order-42").execute(&mut *tx).await?;
    /// tx.commit().await?; // both or neither
    /// # Ok(()) }
    /// ```
    pub async fn handle_in(
        &self,
        conn: &mut PgConnection,
        id: &str,
        command: &M::Command,
    ) -> Result<Outcome<M::State>, Error<M::Error>> {
        self.handle_in_with(conn, id, command, Request::new()).await
    }

    /// [`handle_in`](Runner::handle_in) as `request` says (an idempotency
    /// key, create or update; see [`Runner::handle_with`]). The key is
    /// written in your transaction: if you roll back, the key is gone with
    /// the change, and the request may be sent again.
    pub async fn handle_in_with(
        &self,
        conn: &mut PgConnection,
        id: &str,
        command: &M::Command,
        request: Request<'_>,
    ) -> Result<Outcome<M::State>, Error<M::Error>> {
        let session = InTransaction { store: self.store(), conn };
        self.one(session, id, &Intent::Apply(command, request), true).await
    }
}

impl Decision<'_, Postgres> {
    /// Runs the decision through `conn`, a connection inside a transaction you
    /// hold: its writes and checks commit or roll back with your transaction
    /// (in a savepoint, so a lost race leaves your transaction usable and the
    /// decision is retried on fresh data under Read Committed).
    pub async fn attempt_in<T, F>(self, conn: &mut PgConnection, decide: F) -> Result<Decided<T>, Error<Rejection>>
    where
        T: Send,
        F: FnMut(&mut Draft) -> Result<Verdict<T>, Error<Rejection>>,
    {
        let session = InTransaction { store: self.store(), conn };
        self.run(session, crate::decision::Now(decide)).await
    }
}
