//! The production store: PostgreSQL, shared by every instance of a service,
//! with single-statement compare-and-set writes.

mod schema;

use super::key::{validate_id, validate_machine};
use super::record::{Change, Check, Commit, Cursor, Listed, Record, Write};
use super::sql::{backend, is_identifier, next_version, out_of_range, version_from_db, version_to_db};
use super::{Feed, Query, Store};
use crate::error::{StoreError, VersionConflict};
use sqlx::postgres::{PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};
use std::sync::Arc;

/// A [`Store`] in PostgreSQL (feature `postgres`).
///
/// - **Writes** are one statement each under Read Committed: an
///   `UPDATE … WHERE machine = $1 AND id = $2 AND version = $3` (or, for a new
///   record, an `INSERT … ON CONFLICT DO NOTHING` guarded by the primary key)
///   whose result feeds the history `INSERT` in the same statement. Zero rows
///   means another writer won: a [`VersionConflict`], nothing written, no lock
///   held, no round trip for `BEGIN`/`COMMIT`.
/// - **Multi-record commits** run in one transaction; read checks lock the
///   checked rows (`FOR SHARE`) until commit so they cannot change unseen.
///   Rows are locked in key order, so commits over the same records queue
///   instead of deadlocking. SQLSTATE `40001` (serialization failure) and
///   `40P01` (deadlock) are reported as conflicts, so the runner retries them
///   like any other. This is PostgreSQL itself: the change feed
///   (`pg_current_xact_id`, `pg_snapshot_xmin`) and the migration lock
///   (advisory locks) use functions that PostgreSQL-compatible distributed
///   databases do not all have, so no claim is made for them.
/// - **Connection loss** and server shutdowns are [`StoreError::Backend`] with
///   `retryable: true`.
/// - **Schema**: tables `machine_records`, `machine_history` and
///   `machine_migrations` in a schema of your choice (`public` by default),
///   created or migrated on connect under an advisory lock, so instances that
///   start together apply each migration once.
/// - **Feed**: history rows carry their transaction id; [`Feed::changes`] orders
///   by `(transaction, sequence)` and only returns rows of transactions older
///   than every transaction still running (`pg_snapshot_xmin`), so a change can
///   never appear behind a cursor already handed out, whatever order concurrent
///   transactions commit in.
///
/// ```no_run
/// # async fn demo() -> Result<(), machine_core::StoreError> {
/// use machine_core::store::Postgres;
///
/// let store = Postgres::options().schema("orders").connect("postgres://postgres@127.0.0.1/test").await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Postgres {
    pool: PgPool,
    sql: Arc<Statements>,
}

/// How to connect: the schema and the pool size.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    schema: String,
    max_connections: u32,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self { schema: "public".to_owned(), max_connections: 16 }
    }
}

impl PostgresOptions {
    /// Keeps the tables in `schema` (created if missing). Lowercase ASCII
    /// letters, digits and `_`, at most 48 bytes; anything else is refused
    /// with [`StoreError::InvalidKey`] when connecting, never spliced into SQL.
    #[must_use]
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The pool size when this store opens its own pool (16 by default).
    #[must_use]
    pub fn max_connections(mut self, connections: u32) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// Connects to `url` with a new pool and migrates the schema.
    pub async fn connect(self, url: &str) -> Result<Postgres, StoreError> {
        let sql = Statements::for_schema(&self.schema)?;
        let pool = PgPoolOptions::new().max_connections(self.max_connections).connect(url).await.map_err(pg_error)?;
        Postgres::open(pool, sql).await
    }

    /// Uses an existing pool (shared with your own queries) and migrates the schema.
    pub async fn from_pool(self, pool: PgPool) -> Result<Postgres, StoreError> {
        let sql = Statements::for_schema(&self.schema)?;
        Postgres::open(pool, sql).await
    }
}

impl Postgres {
    /// Options to set before connecting.
    #[must_use]
    pub fn options() -> PostgresOptions {
        PostgresOptions::default()
    }

    /// Connects to `url` with the default options (schema `public`, 16 connections).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::options().connect(url).await
    }

    /// Uses an existing pool with the default schema.
    pub async fn from_pool(pool: PgPool) -> Result<Self, StoreError> {
        Self::options().from_pool(pool).await
    }

    /// The pool, for your own queries and transactions.
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema the tables live in.
    #[must_use]
    pub fn schema(&self) -> &str {
        &self.sql.schema
    }

    async fn open(pool: PgPool, sql: Statements) -> Result<Self, StoreError> {
        let store = Self { pool, sql: Arc::new(sql) };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(pg_error)?;
        // One migrator per schema at a time; the others wait, then find the
        // work done.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('machine_core:migrate:' || $1))")
            .bind(&self.sql.schema)
            .execute(&mut *tx)
            .await
            .map_err(pg_error)?;
        let schema = &self.sql.schema;
        let setup = format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}.machine_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        );
        sqlx::raw_sql(AssertSqlSafe(setup)).execute(&mut *tx).await.map_err(pg_error)?;
        for (version, script) in schema::migrations(schema) {
            let applied =
                sqlx::query(AssertSqlSafe(format!("SELECT 1 FROM {schema}.machine_migrations WHERE version = $1")))
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(pg_error)?;
            if applied.is_none() {
                sqlx::raw_sql(AssertSqlSafe(script)).execute(&mut *tx).await.map_err(pg_error)?;
                sqlx::query(AssertSqlSafe(format!("INSERT INTO {schema}.machine_migrations (version) VALUES ($1)")))
                    .bind(version)
                    .execute(&mut *tx)
                    .await
                    .map_err(pg_error)?;
            }
        }
        tx.commit().await.map_err(pg_error)
    }

    /// Loads a record through `conn`, for example inside your own transaction.
    pub async fn load_in(
        &self,
        conn: &mut PgConnection,
        machine: &str,
        id: &str,
    ) -> Result<Option<Record>, StoreError> {
        validate_machine(machine)?;
        validate_id(id)?;
        let row =
            Statements::query(&self.sql.load).bind(machine).bind(id).fetch_optional(conn).await.map_err(pg_error)?;
        row.map(|row| super::sql::record(&row, machine, id, pg_error)).transpose()
    }

    /// Applies `commit` through `conn`: inside your own transaction, the
    /// machine's writes commit or roll back with your other statements. A
    /// multi-record commit runs in a savepoint, so a conflict undoes only its
    /// own writes and leaves your transaction usable.
    pub async fn commit_in(&self, conn: &mut PgConnection, commit: Commit<'_>) -> Result<(), StoreError> {
        validate(&commit)?;
        if let ([write], []) = (commit.writes.as_slice(), commit.checks.as_slice()) {
            return self.write(conn, write).await;
        }
        // `begin` opens a transaction, or a savepoint inside the caller's;
        // dropping it unfinished rolls it back.
        let mut tx = conn.begin().await.map_err(pg_error)?;
        self.apply(&mut tx, &commit).await?;
        // Only serializable transactions fail at commit; name the first write.
        let (machine, id, expected) = commit.writes.first().map_or(("", "", 0), |w| (w.machine, w.id, w.expected));
        tx.commit().await.map_err(|e| conflict_or_backend(e, machine, id, expected))
    }

    /// Checks and writes on a connection inside a transaction, in the order
    /// of their records' keys (a record's own writes keep their order): two
    /// commits that touch the same records then lock them in the same order,
    /// so opposite transfers wait for each other instead of deadlocking.
    async fn apply(&self, conn: &mut PgConnection, commit: &Commit<'_>) -> Result<(), StoreError> {
        let mut ops: Vec<(&str, &str, Result<&Check<'_>, &Write<'_>>)> = commit
            .checks
            .iter()
            .map(|check| (check.machine, check.id, Ok(check)))
            .chain(commit.writes.iter().map(|write| (write.machine, write.id, Err(write))))
            .collect();
        ops.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        for (_, _, op) in ops {
            match op {
                Ok(check) => self.check(conn, check).await?,
                Err(write) => self.write(conn, write).await?,
            }
        }
        Ok(())
    }

    /// A read check: the record is still at the version read, and stays so
    /// until the transaction ends (`FOR SHARE`).
    async fn check(&self, conn: &mut PgConnection, check: &Check<'_>) -> Result<(), StoreError> {
        let version: Option<i64> = sqlx::query_scalar(AssertSqlSafe(Arc::clone(&self.sql.lock_version)))
            .bind(check.machine)
            .bind(check.id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| conflict_or_backend(e, check.machine, check.id, check.expected))?;
        let current = version.map_or(Ok(0), |v| version_from_db(check.machine, check.id, v))?;
        if current != check.expected {
            return Err(VersionConflict::new(check.machine, check.id, check.expected.saturating_add(1), current).into());
        }
        Ok(())
    }

    /// One compare-and-set write with its history row, in one statement.
    async fn write(&self, conn: &mut PgConnection, write: &Write<'_>) -> Result<(), StoreError> {
        let next = next_version(write.machine, write.id, write.expected)?;
        let query = if write.expected == 0 {
            Statements::query(&self.sql.create).bind(write.machine).bind(write.id).bind(write.kind).bind(&write.state)
        } else {
            Statements::query(&self.sql.update)
                .bind(write.machine)
                .bind(write.id)
                .bind(version_to_db(write.machine, write.id, write.expected)?)
                .bind(write.kind)
                .bind(&write.state)
        };
        let written = query
            .bind(write.command)
            .bind(next)
            .bind(write.origin.as_str())
            .bind(i64::from(write.schema))
            .execute(&mut *conn)
            .await
            .map_err(|e| conflict_or_backend(e, write.machine, write.id, write.expected))?;
        if written.rows_affected() == 0 {
            let version: Option<i64> = sqlx::query_scalar(AssertSqlSafe(Arc::clone(&self.sql.version)))
                .bind(write.machine)
                .bind(write.id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(pg_error)?;
            let current = version.map_or(Ok(0), |v| version_from_db(write.machine, write.id, v))?;
            return Err(VersionConflict::new(write.machine, write.id, write.expected.saturating_add(1), current).into());
        }
        Ok(())
    }
}

fn validate(commit: &Commit<'_>) -> Result<(), StoreError> {
    let writes = commit.writes.iter().map(|w| (w.machine, w.id));
    for (machine, id) in writes.chain(commit.checks.iter().map(|c| (c.machine, c.id))) {
        validate_machine(machine)?;
        validate_id(id)?;
    }
    Ok(())
}

/// The store's statements, with the schema validated and spliced in once.
#[derive(Debug)]
struct Statements {
    schema: String,
    load: Arc<str>,
    version: Arc<str>,
    lock_version: Arc<str>,
    create: Arc<str>,
    update: Arc<str>,
    history: Arc<str>,
    feed: Arc<str>,
    by_kind: Arc<str>,
    records: Arc<str>,
}

impl Statements {
    fn for_schema(schema: &str) -> Result<Self, StoreError> {
        if !is_identifier(schema) {
            return Err(StoreError::InvalidKey {
                what: "schema name",
                value: schema.chars().take(64).collect(),
                reason: "must be 1 to 48 lowercase ASCII letters, digits or `_`, not starting with a digit",
            });
        }
        let records = format!("{schema}.machine_records");
        let history = format!("{schema}.machine_history");
        let epoch_ms = |column: &str| format!("(extract(epoch from {column}) * 1000)::bigint");
        let change_columns = format!(
            "h.seq, h.tx::text AS tx, h.machine, h.id, h.version, h.command::text AS command, h.origin, h.kind,
             h.state::text AS state, {at} AS at, h.schema_version::bigint AS schema_version",
            at = epoch_ms("h.at")
        );
        Ok(Self {
            schema: schema.to_owned(),
            load: format!(
                "SELECT version, kind, state::text AS state, {updated} AS updated_at, schema_version::bigint AS schema_version
                 FROM {records} WHERE machine = $1 AND id = $2",
                updated = epoch_ms("updated_at")
            )
            .into(),
            version: format!("SELECT version FROM {records} WHERE machine = $1 AND id = $2").into(),
            lock_version: format!("SELECT version FROM {records} WHERE machine = $1 AND id = $2 FOR SHARE").into(),
            // $1 machine, $2 id, $3 kind, $4 state, $5 command, $6 version, $7 origin, $8 schema.
            create: format!(
                "WITH written AS (
                    INSERT INTO {records} (machine, id, version, kind, state, schema_version)
                    VALUES ($1, $2, $6, $3, $4::jsonb, $8::integer)
                    ON CONFLICT (machine, id) DO NOTHING RETURNING version)
                 INSERT INTO {history} (machine, id, version, command, origin, kind, state, schema_version)
                 SELECT $1, $2, version, $5::jsonb, $7, $3, $4::jsonb, $8::integer FROM written"
            )
            .into(),
            // $1 machine, $2 id, $3 expected, $4 kind, $5 state, $6 command, $7 version, $8 origin,
            // $9 schema.
            update: format!(
                "WITH written AS (
                    UPDATE {records} SET version = $7, kind = $4, state = $5::jsonb, updated_at = now(),
                        schema_version = $9::integer
                    WHERE machine = $1 AND id = $2 AND version = $3 RETURNING version)
                 INSERT INTO {history} (machine, id, version, command, origin, kind, state, schema_version)
                 SELECT $1, $2, version, $6::jsonb, $8, $4, $5::jsonb, $9::integer FROM written"
            )
            .into(),
            history: format!(
                "SELECT {change_columns}, LAG(h.kind) OVER record AS kind_before, LAG(h.state::text) OVER record AS state_before,
                        (LAG(h.schema_version) OVER record)::bigint AS schema_before
                 FROM {history} h WHERE h.machine = $1 AND h.id = $2
                 WINDOW record AS (ORDER BY h.version) ORDER BY h.version"
            )
            .into(),
            feed: format!(
                "SELECT {change_columns}, p.kind AS kind_before, p.state::text AS state_before,
                        p.schema_version::bigint AS schema_before
                 FROM {history} h
                 LEFT JOIN {history} p ON p.machine = h.machine AND p.id = h.id AND p.version = h.version - 1
                 WHERE (h.tx, h.seq) > ($1::text::xid8, $2) AND h.tx < pg_snapshot_xmin(pg_current_snapshot())
                 ORDER BY h.tx, h.seq LIMIT $3"
            )
            .into(),
            by_kind: format!(
                "SELECT id, version, kind, state::text AS state, {updated} AS updated_at,
                        schema_version::bigint AS schema_version FROM {records}
                 WHERE machine = $1 AND kind = $2 AND id > $3 ORDER BY id LIMIT $4",
                updated = epoch_ms("updated_at")
            )
            .into(),
            records: format!(
                "SELECT id, version, kind, state::text AS state, {updated} AS updated_at,
                        schema_version::bigint AS schema_version FROM {records}
                 WHERE machine = $1 AND id > $2 ORDER BY id LIMIT $3",
                updated = epoch_ms("updated_at")
            )
            .into(),
        })
    }

    fn query<'q>(sql: &Arc<str>) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        sqlx::query(AssertSqlSafe(Arc::clone(sql)))
    }
}

/// Connection trouble, server shutdown and resource exhaustion may pass.
fn retryable_code(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01")
}

fn pg_error(error: sqlx::Error) -> StoreError {
    backend(error, retryable_code)
}

/// Serialization failures and deadlocks mean another writer got in the way:
/// a conflict the runner retries. `current` is then the version expected,
/// as the database does not say which version won.
fn conflict_or_backend(error: sqlx::Error, machine: &str, id: &str, expected: u64) -> StoreError {
    if let sqlx::Error::Database(db) = &error
        && matches!(db.code().as_deref(), Some("40001" | "40P01"))
    {
        return VersionConflict::new(machine, id, expected.saturating_add(1), expected).into();
    }
    pg_error(error)
}

fn change(row: &PgRow) -> Result<Change, StoreError> {
    super::sql::change(row, Some("tx"), pg_error)
}

impl Store for Postgres {
    async fn load(&self, machine: &str, id: &str) -> Result<Option<Record>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(pg_error)?;
        self.load_in(&mut conn, machine, id).await
    }

    async fn commit(&self, commit: Commit<'_>) -> Result<(), StoreError> {
        // On a pooled connection a single write is its own transaction (one
        // statement), and `commit_in` opens a real transaction for the rest.
        let mut conn = self.pool.acquire().await.map_err(pg_error)?;
        self.commit_in(&mut conn, commit).await
    }

    async fn history(&self, machine: &str, id: &str) -> Result<Vec<Change>, StoreError> {
        validate_machine(machine)?;
        validate_id(id)?;
        let rows = Statements::query(&self.sql.history)
            .bind(machine)
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .map_err(pg_error)?;
        rows.iter().map(change).collect()
    }
}

impl Feed for Postgres {
    async fn changes(&self, after: Cursor, limit: u32) -> Result<Vec<Change>, StoreError> {
        let seq = i64::try_from(after.seq).map_err(|_| out_of_range(format!("cursor {after} is out of range")))?;
        let rows = Statements::query(&self.sql.feed)
            .bind(after.tx.to_string())
            .bind(seq)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(pg_error)?;
        rows.iter().map(change).collect()
    }
}

impl Query for Postgres {
    async fn by_kind(
        &self,
        machine: &str,
        kind: &str,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Listed>, StoreError> {
        validate_machine(machine)?;
        let rows = Statements::query(&self.sql.by_kind)
            .bind(machine)
            .bind(kind)
            .bind(after_id.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(pg_error)?;
        rows.iter().map(|row| super::sql::listed(row, machine, pg_error)).collect()
    }

    async fn records(&self, machine: &str, after_id: Option<&str>, limit: u32) -> Result<Vec<Listed>, StoreError> {
        validate_machine(machine)?;
        let rows = Statements::query(&self.sql.records)
            .bind(machine)
            .bind(after_id.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(pg_error)?;
        rows.iter().map(|row| super::sql::listed(row, machine, pg_error)).collect()
    }
}
