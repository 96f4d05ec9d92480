//! The production store: PostgreSQL, shared by every instance of a service,
//! with single-statement compare-and-set writes.

mod migrate;
mod schema;

use super::key::{validate_id, validate_idempotency_key, validate_machine};
use super::record::{Change, Check, Commit, Cursor, Listed, Record, Remove, Timer, Write};
use super::sql::{
    PROCESSORS, acquire_error, backend, connect_timeout, cursor_to_db, fingerprint_to_db, is_identifier, key_taken,
    millis_to_db, next_version, out_of_range, version_from_db, version_to_db,
};
use super::{Checkpoint, Checkpoints, DeadLetter, validate_processor};
use super::{Feed, Query, Remembered, Store};
use super::{Migration, Wait};
use crate::error::{StoreError, VersionConflict};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};
use std::sync::Arc;
use std::time::Duration;

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
///   `retryable: true`. Waits are bounded ([`PostgresOptions`]: connect,
///   acquire, statement); one that runs out is retryable too, with a
///   [`Timeout`](super::Timeout) naming it.
/// - **Schema**: tables `machine_records`, `machine_history`, `machine_keys`,
///   `machine_removed` and `machine_pruned` (retention: see
///   [`Store::remove`], [`Store::prune_history`]) and `machine_migrations` in
///   a schema of your choice (`public` by default),
///   created or migrated on connect under an advisory lock, so instances that
///   start together apply each migration once; or, with
///   [`PostgresOptions::migrate`]`(false)`, only checked, for a role without
///   DDL rights ([`Postgres::migrations`] gives the SQL to apply yourself).
/// - **Feed**: history rows carry their transaction id; [`Feed::changes`] orders
///   by `(transaction, sequence)` and only returns rows of transactions older
///   than every transaction still running (`pg_snapshot_xmin`), so a change can
///   never appear behind a cursor already handed out, whatever order concurrent
///   transactions commit in. A removed record's rows move to `machine_removed`
///   with their positions, and the feed reads both tables in that one order;
///   pruning takes the oldest positions of finished transactions only and
///   leaves its watermark in `machine_pruned`, so a cursor behind it is
///   [`StoreError::FeedCompacted`].
/// - **Removal** ([`Store::remove`]) is one statement: the record's
///   conditional `DELETE` gates the move of its history, the deletion of its
///   keys and the removal entry, so a writer holding the record's row lock
///   commits first and the removal then finds another version and conflicts.
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

/// How to connect: the schema, the pool size, the bounded waits, and whether
/// to migrate the schema on connect.
///
/// The defaults fail fast enough for a request handler (docs/stores.md,
/// "Timeouts" says why these figures):
///
/// | wait | default | bounds |
/// |---|---|---|
/// | [`connect_timeout`](Self::connect_timeout) | 5 s | the first connection, opened by `connect` |
/// | [`acquire_timeout`](Self::acquire_timeout) | 2 s | every operation's wait for a pooled connection, including opening a new one |
/// | [`statement_timeout`](Self::statement_timeout) | 5 s | each statement on the server (`statement_timeout`), lock waits included |
///
/// A wait that runs out is a retryable [`StoreError::Backend`] whose
/// [`StoreError::timeout`] names it. With [`from_pool`](Self::from_pool)
/// your pool's own settings apply instead.
///
/// ```no_run
/// # async fn demo() -> Result<(), machine_core::StoreError> {
/// use machine_core::store::Postgres;
/// use std::time::Duration;
///
/// let store = Postgres::options()
///     .schema("orders")
///     .acquire_timeout(Duration::from_millis(500))
///     .statement_timeout(Duration::from_secs(2))
///     .migrate(false) // the tables were created by a migration job; this role has DML rights only
///     .connect("postgres://app@db.internal/orders")
///     .await?;
/// # let _ = store;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    schema: String,
    max_connections: u32,
    connect_timeout: Duration,
    acquire_timeout: Duration,
    statement_timeout: Duration,
    migrate: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            schema: "public".to_owned(),
            max_connections: 16,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(5),
            migrate: true,
        }
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

    /// How long [`connect`](Self::connect) may take to open its first
    /// connection: TCP, TLS, the server's start-up and authentication (5 s
    /// by default). Past it: a retryable [`Timeout`](super::Timeout) of [`Wait::Connect`]. A
    /// refused connection (nothing listens) fails at once, retryable too.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long an operation may wait for a connection from the pool (2 s
    /// by default): while all are in use, or while the pool opens a new one
    /// (so with the server down, every operation fails after this long).
    /// Past it: a retryable [`Timeout`](super::Timeout) of [`Wait::Acquire`].
    #[must_use]
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// How long the server lets one statement run (5 s by default), waits
    /// for row locks included: PostgreSQL's `statement_timeout`, set on
    /// every connection of the store's pool as a start-up parameter (no
    /// extra round trip), so it applies to your own queries on
    /// [`Postgres::pool`] too (`SET LOCAL statement_timeout` changes it for
    /// one transaction). Past it the server cancels the statement, its
    /// transaction rolls back, and the store reports a retryable [`Timeout`](super::Timeout)
    /// of [`Wait::Statement`]. [`Duration::ZERO`] leaves the setting to the
    /// server, the role or the URL. Migrations run without it.
    #[must_use]
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// Whether connecting migrates the schema (`true` by default). With
    /// `false` no DDL runs: the store only reads `machine_migrations` and
    /// refuses to open with [`StoreError::Unmigrated`], naming the missing
    /// versions, unless every migration it knows is applied. A role with
    /// `SELECT, INSERT, UPDATE, DELETE` on the tables and `USAGE` on the
    /// schema and its sequences is then enough. Apply the migrations with
    /// [`Postgres::migrate`] from a role that may run DDL, or run the SQL of
    /// [`migrations`](Self::migrations) with your own tool.
    #[must_use]
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// The schema's migrations for these options' schema, in order, as SQL
    /// to run yourself (for example with `sqlx::migrate::Migrator`; see
    /// docs/stores.md). Each records its version in `machine_migrations`, so
    /// a store connecting with [`migrate(false)`](Self::migrate) finds them.
    pub fn migrations(&self) -> Result<Vec<Migration>, StoreError> {
        let sql = Statements::for_schema(&self.schema)?;
        Ok(migrate::exported(&sql.schema))
    }

    /// Connects to `url` with a new pool and migrates the schema (or checks
    /// it, with [`migrate(false)`](Self::migrate)).
    pub async fn connect(self, url: &str) -> Result<Postgres, StoreError> {
        let options: PgConnectOptions = url.parse().map_err(pg_error)?;
        self.connect_with(options).await
    }

    /// Connects with connection options you built (host, credentials, TLS,
    /// start-up parameters), then as [`connect`](Self::connect).
    pub async fn connect_with(self, options: PgConnectOptions) -> Result<Postgres, StoreError> {
        let sql = Statements::for_schema(&self.schema)?;
        let options = if self.statement_timeout.is_zero() {
            options
        } else {
            // Whole milliseconds, at least one: 0 would turn it off.
            let millis = self.statement_timeout.as_millis().max(1);
            options.options([("statement_timeout", millis.to_string())])
        };
        // The first connection, opened here under the connect timeout,
        // fails fast with the cause (a refused connection, bad credentials)
        // where the pool would retry until its own timeout; it migrates or
        // checks the schema, then closes.
        let mut first = tokio::time::timeout(self.connect_timeout, PgConnection::connect_with(&options))
            .await
            .map_err(|_| connect_timeout(self.connect_timeout))?
            .map_err(pg_error)?;
        let prepared = if self.migrate {
            migrate::migrate(&mut first, &sql.schema).await
        } else {
            migrate::check(&mut first, &sql.schema).await
        };
        // Best effort: the server drops the session either way.
        let _ = first.close().await;
        prepared?;
        let pool = PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout)
            .connect_lazy_with(options);
        Ok(Postgres { pool, sql: Arc::new(sql) })
    }

    /// Uses an existing pool (shared with your own queries) and migrates the
    /// schema (or checks it). The pool's own timeouts apply.
    pub async fn from_pool(self, pool: PgPool) -> Result<Postgres, StoreError> {
        let sql = Statements::for_schema(&self.schema)?;
        let store = Postgres { pool, sql: Arc::new(sql) };
        if self.migrate {
            store.migrate().await?;
        } else {
            store.check_schema().await?;
        }
        Ok(store)
    }
}

impl Postgres {
    /// Options to set before connecting.
    #[must_use]
    pub fn options() -> PostgresOptions {
        PostgresOptions::default()
    }

    /// Connects to `url` with the default options (schema `public`, 16
    /// connections, the default timeouts, migrating on connect).
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

    /// This store's migrations, in order, as SQL (see
    /// [`PostgresOptions::migrations`]).
    #[must_use]
    pub fn migrations(&self) -> Vec<Migration> {
        migrate::exported(&self.sql.schema)
    }

    /// Applies the migrations not applied yet, as connecting does by
    /// default: in one transaction, under an advisory lock per schema, so
    /// instances that start together apply each once. Needs a role that may
    /// create the schema and its tables.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.acquire().await?;
        migrate::migrate(&mut conn, &self.sql.schema).await
    }

    /// Checks, without DDL, that every migration this version knows is
    /// applied: [`StoreError::Unmigrated`] naming the missing ones if not.
    /// Connecting with [`PostgresOptions::migrate`]`(false)` does this.
    pub async fn check_schema(&self) -> Result<(), StoreError> {
        let mut conn = self.acquire().await?;
        migrate::check(&mut conn, &self.sql.schema).await
    }

    /// A connection from the pool, its wait bounded as every operation's is.
    pub(crate) async fn acquire(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, StoreError> {
        self.pool.acquire().await.map_err(|e| acquire_error(&self.pool, e, pg_error))
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
    /// commit runs in a savepoint, so a conflict (a deadlock or a
    /// serialization failure among them) undoes only its own writes and
    /// leaves your transaction usable for the retry. Outside a transaction
    /// a single write is one statement.
    pub async fn commit_in(&self, conn: &mut PgConnection, commit: Commit<'_>) -> Result<(), StoreError> {
        validate(&commit)?;
        if let ([write], [], []) = (commit.writes.as_slice(), commit.checks.as_slice(), commit.keys.as_slice())
            && !conn.is_in_transaction()
        {
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
        // After the writes: a concurrent commit with the same key holds its
        // record's row lock, so it has committed or rolled back by now.
        for key in &commit.keys {
            let stored = Statements::query(&self.sql.remember)
                .bind(key.machine)
                .bind(key.id)
                .bind(key.key)
                .bind(fingerprint_to_db(key.fingerprint))
                .bind(version_to_db(key.machine, key.id, key.version)?)
                .bind(key.kind)
                .bind(key.state.as_deref())
                .bind(millis_to_db(key.at))
                .bind(millis_to_db(key.expires_at))
                .execute(&mut *conn)
                .await
                .map_err(|e| conflict_or_backend(e, key.machine, key.id, key.version.saturating_sub(1)))?;
            if stored.rows_affected() == 0 {
                return Err(key_taken(key));
            }
        }
        Ok(())
    }

    /// The idempotency key `key` of record `(machine, id)` through `conn`,
    /// for example inside your own transaction.
    pub async fn recall_in(
        &self,
        conn: &mut PgConnection,
        machine: &str,
        id: &str,
        key: &str,
    ) -> Result<Option<Remembered>, StoreError> {
        validate_machine(machine)?;
        validate_id(id)?;
        validate_idempotency_key(key)?;
        let row = Statements::query(&self.sql.recall)
            .bind(machine)
            .bind(id)
            .bind(key)
            .fetch_optional(conn)
            .await
            .map_err(pg_error)?;
        row.map(|row| super::sql::remembered(&row, machine, id, pg_error)).transpose()
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
            .bind(write.due.map(millis_to_db))
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
    let keys = commit.keys.iter().map(|k| (k.machine, k.id));
    for (machine, id) in writes.chain(commit.checks.iter().map(|c| (c.machine, c.id))).chain(keys) {
        validate_machine(machine)?;
        validate_id(id)?;
    }
    for key in &commit.keys {
        validate_idempotency_key(key.key)?;
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
    remember: Arc<str>,
    recall: Arc<str>,
    count: Arc<str>,
    history_page: Arc<str>,
    forget_keys: Arc<str>,
    records: Arc<str>,
    due: Arc<str>,
    disarm: Arc<str>,
    behind: Arc<str>,
    checkpoint: Arc<str>,
    create_checkpoint: Arc<str>,
    update_checkpoint: Arc<str>,
    park: Arc<str>,
    dead_letters: Arc<str>,
    unpark: Arc<str>,
    remove: Arc<str>,
    pruned: Arc<str>,
    prune_lock: Arc<str>,
    oldest: Arc<str>,
    prune: [Arc<str>; 2],
    prune_mark: Arc<str>,
}

impl Statements {
    #[expect(clippy::too_many_lines, reason = "a table of statements, one per field, read top to bottom")]
    fn for_schema(schema: &str) -> Result<Self, StoreError> {
        if !is_identifier(schema) {
            return Err(StoreError::InvalidKey {
                what: "schema name",
                value: schema.chars().take(64).collect(),
                reason: "must be 1 to 48 lowercase ASCII letters, digits or `_`, not starting with a digit",
            });
        }
        let records = format!("{schema}.machine_records");
        let keys = format!("{schema}.machine_keys");
        let history = format!("{schema}.machine_history");
        let processors = format!("{schema}.machine_processors");
        let dead_letters = format!("{schema}.machine_dead_letters");
        // The feed's visibility rule, shared by `feed` and `behind`: only
        // rows of transactions older than every one still running.
        let visible = "h.tx < pg_snapshot_xmin(pg_current_snapshot())";
        let removed = format!("{schema}.machine_removed");
        let pruned = format!("{schema}.machine_pruned");
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
            // $1 machine, $2 id, $3 kind, $4 state, $5 command, $6 version, $7 origin, $8 schema,
            // $9 due.
            create: format!(
                "WITH written AS (
                    INSERT INTO {records} (machine, id, version, kind, state, schema_version, due_at)
                    VALUES ($1, $2, $6, $3, $4::jsonb, $8::integer, $9)
                    ON CONFLICT (machine, id) DO NOTHING RETURNING version)
                 INSERT INTO {history} (machine, id, version, command, origin, kind, state, schema_version)
                 SELECT $1, $2, version, $5::jsonb, $7, $3, $4::jsonb, $8::integer FROM written"
            )
            .into(),
            // $1 machine, $2 id, $3 expected, $4 kind, $5 state, $6 command, $7 version, $8 origin,
            // $9 schema, $10 due.
            update: format!(
                "WITH written AS (
                    UPDATE {records} SET version = $7, kind = $4, state = $5::jsonb, updated_at = now(),
                        schema_version = $9::integer, due_at = $10
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
            // Live history and the history of removed records (with the
            // removal entries), merged in `(tx, seq)` order; `tx_order`
            // carries the transaction id as itself for that order. A
            // removed record's entries chain within their removal, never to
            // a later record under the same id; a removal has no state before.
            feed: {
                let arm = |table: &str, join: &str| {
                    format!(
                        "(SELECT {change_columns}, h.tx AS tx_order, p.kind AS kind_before,
                                 p.state::text AS state_before, p.schema_version::bigint AS schema_before
                          FROM {table} h LEFT JOIN {table} p ON {join}
                          WHERE (h.tx, h.seq) > ($1::text::xid8, $2) AND {visible}
                          ORDER BY h.tx, h.seq LIMIT $3)"
                    )
                };
                let live = arm(&history, "p.machine = h.machine AND p.id = h.id AND p.version = h.version - 1");
                let gone =
                    arm(&removed, "h.origin <> 'removal' AND p.removal = h.removal AND p.version = h.version - 1");
                format!("SELECT * FROM ({live} UNION ALL {gone}) AS feed ORDER BY tx_order, seq LIMIT $3").into()
            },
            // $1 machine, $2 id, $3 version, $4 kind. One statement: the
            // record goes only if still at the version and kind read (a
            // writer holding its row lock commits first, and then the
            // version no longer matches), and only then its history moves,
            // keeping its feed positions, its keys go, and the removal entry
            // takes the history's next sequence number.
            remove: format!(
                "WITH gone AS (
                    DELETE FROM {records} WHERE machine = $1 AND id = $2 AND version = $3 AND kind = $4
                    RETURNING state, schema_version),
                 mark AS (SELECT nextval(pg_get_serial_sequence('{history}', 'seq')) AS seq FROM gone),
                 moved AS (
                    DELETE FROM {history} WHERE machine = $1 AND id = $2 AND EXISTS (SELECT 1 FROM gone)
                    RETURNING seq, tx, machine, id, version, command, origin, kind, state, at, schema_version),
                 kept AS (
                    INSERT INTO {removed} (seq, tx, removal, machine, id, version, command, origin, kind, state, at,
                                           schema_version)
                    SELECT moved.seq, moved.tx, mark.seq, moved.machine, moved.id, moved.version, moved.command,
                           moved.origin, moved.kind, moved.state, moved.at, moved.schema_version
                    FROM moved, mark),
                 forgotten AS (DELETE FROM {keys} WHERE machine = $1 AND id = $2 AND EXISTS (SELECT 1 FROM gone))
                 INSERT INTO {removed} (seq, tx, removal, machine, id, version, command, origin, kind, state, at,
                                        schema_version)
                 SELECT mark.seq, pg_current_xact_id(), mark.seq, $1, $2, $3, 'null'::jsonb, 'removal', $4, gone.state,
                        now(), gone.schema_version
                 FROM gone, mark"
            )
            .into(),
            pruned: format!("SELECT tx::text AS tx, seq FROM {pruned}").into(),
            // The watermark row is written by the migration; put back if
            // something deleted it, so pruning never goes unrecorded.
            prune_lock: format!(
                "WITH kept AS (INSERT INTO {pruned} (tx, seq) VALUES ('0', 0) ON CONFLICT DO NOTHING)
                 SELECT seq FROM {pruned} FOR UPDATE"
            )
            .into(),
            // The feed's oldest `$1` entries that no running transaction can
            // still add to, with their times.
            oldest: {
                let arm = |table: &str| {
                    format!(
                        "(SELECT tx, seq, machine, id, at FROM {table}
                          WHERE tx < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY tx, seq LIMIT $1)"
                    )
                };
                format!(
                    "SELECT tx::text AS tx, seq, machine, id, {at} AS at FROM ({} UNION ALL {}) AS oldest
                     ORDER BY oldest.tx, seq LIMIT $1",
                    arm(&history),
                    arm(&removed),
                    at = epoch_ms("at")
                )
                .into()
            },
            prune: [
                format!("DELETE FROM {history} WHERE (tx, seq) <= ($1::text::xid8, $2)").into(),
                format!("DELETE FROM {removed} WHERE (tx, seq) <= ($1::text::xid8, $2)").into(),
            ],
            prune_mark: format!(
                "UPDATE {pruned} SET tx = $1::text::xid8, seq = $2 WHERE (tx, seq) < ($1::text::xid8, $2)"
            )
            .into(),
            // An expired key is replaced; a standing one means another
            // commit with this key won.
            remember: format!(
                "INSERT INTO {keys} AS k (machine, id, key, fingerprint, version, kind, state, at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9)
                 ON CONFLICT (machine, id, key) DO UPDATE SET
                    fingerprint = excluded.fingerprint, version = excluded.version, kind = excluded.kind,
                    state = excluded.state, at = excluded.at, expires_at = excluded.expires_at
                 WHERE k.expires_at <= excluded.at"
            )
            .into(),
            history_page: format!(
                "SELECT {change_columns}, p.kind AS kind_before, p.state::text AS state_before,
                        p.schema_version::bigint AS schema_before
                 FROM {history} h
                 LEFT JOIN {history} p ON p.machine = h.machine AND p.id = h.id AND p.version = h.version - 1
                 WHERE h.machine = $1 AND h.id = $2 AND h.version > $3 ORDER BY h.version LIMIT $4"
            )
            .into(),
            // Expired keys in batches, skipping rows another deleter holds.
            forget_keys: format!(
                "DELETE FROM {keys} WHERE (machine, id, key) IN
                    (SELECT machine, id, key FROM {keys} WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)"
            )
            .into(),
            count: format!("SELECT count(*) FROM {records} WHERE machine = $1 AND kind = $2").into(),
            recall: format!(
                "SELECT fingerprint, version, kind, state::text AS state, at, expires_at FROM {keys}
                 WHERE machine = $1 AND id = $2 AND key = $3"
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
            // $1 machine, $2 now, $3 after due, $4 after id, $5 limit.
            due: format!(
                "SELECT id, version, due_at FROM {records}
                 WHERE machine = $1 AND due_at IS NOT NULL AND due_at <= $2 AND (due_at, id) > ($3, $4)
                 ORDER BY due_at, id LIMIT $5"
            )
            .into(),
            disarm: format!(
                "UPDATE {records} SET due_at = NULL
                 WHERE machine = $1 AND id = $2 AND version = $3 AND due_at IS NOT NULL"
            )
            .into(),
            // What `feed` could return after ($1 tx, $2 seq), counted.
            // What `feed` could return after the cursor: live history and removed
            // records' entries, under the same visibility rule.
            behind: format!(
                "SELECT (SELECT count(*) FROM {history} h WHERE (h.tx, h.seq) > ($1::text::xid8, $2) AND {visible})
                      + (SELECT count(*) FROM {removed} h WHERE (h.tx, h.seq) > ($1::text::xid8, $2) AND {visible})"
            )
            .into(),
            checkpoint: format!(
                "SELECT cursor_tx, cursor_seq, owner, lease_until, version FROM {processors} WHERE name = $1"
            )
            .into(),
            // $1 name, $2 tx, $3 seq, $4 owner, $5 lease until, $6 version, $7 expected.
            create_checkpoint: format!(
                "INSERT INTO {processors} (name, cursor_tx, cursor_seq, owner, lease_until, version)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING"
            )
            .into(),
            update_checkpoint: format!(
                "UPDATE {processors} SET cursor_tx = $2, cursor_seq = $3, owner = $4, lease_until = $5, version = $6
                 WHERE name = $1 AND version = $7"
            )
            .into(),
            park: format!(
                "INSERT INTO {dead_letters}
                    (processor, cursor_tx, cursor_seq, machine, id, version, error, attempts, parked_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (processor, cursor_tx, cursor_seq) DO UPDATE SET
                    machine = excluded.machine, id = excluded.id, version = excluded.version,
                    error = excluded.error, attempts = excluded.attempts, parked_at = excluded.parked_at"
            )
            .into(),
            dead_letters: format!(
                "SELECT cursor_tx, cursor_seq, machine, id, version, error, attempts, parked_at FROM {dead_letters}
                 WHERE processor = $1 AND (cursor_tx, cursor_seq) > ($2, $3) ORDER BY cursor_tx, cursor_seq LIMIT $4"
            )
            .into(),
            unpark: format!(
                "DELETE FROM {dead_letters} WHERE processor = $1 AND cursor_tx = $2 AND cursor_seq = $3"
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

/// A statement cancelled by `statement_timeout` (`57014`, which an
/// administrator's `pg_cancel_backend` raises too: either way the statement
/// was stopped before it finished) or a lock wait past `lock_timeout`.
fn timeout_code(code: &str) -> Option<Wait> {
    match code {
        "57014" => Some(Wait::Statement),
        "55P03" => Some(Wait::Lock),
        _ => None,
    }
}

fn pg_error(error: sqlx::Error) -> StoreError {
    backend(error, retryable_code, timeout_code)
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
    fn native(&self) -> super::Native<'_> {
        super::Native::Postgres(self)
    }

    async fn load(&self, machine: &str, id: &str) -> Result<Option<Record>, StoreError> {
        let mut conn = self.acquire().await?;
        self.load_in(&mut conn, machine, id).await
    }

    async fn commit(&self, commit: Commit<'_>) -> Result<(), StoreError> {
        // On a pooled connection a single write is its own transaction (one
        // statement), and `commit_in` opens a real transaction for the rest.
        let mut conn = self.acquire().await?;
        self.commit_in(&mut conn, commit).await
    }

    async fn forget_keys(&self, now: u64, limit: u32) -> Result<u64, StoreError> {
        let deleted = Statements::query(&self.sql.forget_keys)
            .bind(millis_to_db(now))
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await
            .map_err(pg_error)?;
        Ok(deleted.rows_affected())
    }

    async fn recall(&self, machine: &str, id: &str, key: &str) -> Result<Option<Remembered>, StoreError> {
        let mut conn = self.acquire().await?;
        self.recall_in(&mut conn, machine, id, key).await
    }

    async fn remove(&self, remove: Remove<'_>) -> Result<(), StoreError> {
        let (machine, id) = (remove.machine, remove.id);
        validate_machine(machine)?;
        validate_id(id)?;
        let mut conn = self.acquire().await?;
        let removed = Statements::query(&self.sql.remove)
            .bind(machine)
            .bind(id)
            .bind(version_to_db(machine, id, remove.expected)?)
            .bind(remove.kind)
            .execute(&mut *conn)
            .await
            .map_err(|e| conflict_or_backend(e, machine, id, remove.expected))?;
        if removed.rows_affected() == 0 {
            let version: Option<i64> = sqlx::query_scalar(AssertSqlSafe(Arc::clone(&self.sql.version)))
                .bind(machine)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(pg_error)?;
            let current = version.map_or(Ok(0), |v| version_from_db(machine, id, v))?;
            return Err(VersionConflict::new(machine, id, remove.expected.saturating_add(1), current).into());
        }
        Ok(())
    }

    async fn prune_history(&self, before: u64, limit: u32) -> Result<u64, StoreError> {
        if limit == 0 {
            return Ok(0);
        }
        let mut conn = self.acquire().await?;
        // Dropped unfinished, the transaction rolls back: watermark and
        // deletions commit together or not at all.
        let mut tx = conn.begin().await.map_err(pg_error)?;
        // One pruner at a time: the watermark only moves forward.
        Statements::query(&self.sql.prune_lock).execute(&mut *tx).await.map_err(pg_error)?;
        let rows =
            Statements::query(&self.sql.oldest).bind(i64::from(limit)).fetch_all(&mut *tx).await.map_err(pg_error)?;
        let mut cut: Option<(String, i64)> = None;
        for row in &rows {
            let machine = super::sql::Fields::new(row, "(unreadable)", "(unreadable)", pg_error).text("machine")?;
            let id = super::sql::Fields::new(row, machine, "(unreadable)", pg_error).text("id")?;
            let fields = super::sql::Fields::new(row, machine, id, pg_error);
            if fields.unsigned("at")? >= before {
                break;
            }
            let seq = i64::try_from(fields.unsigned("seq")?).unwrap_or(i64::MAX);
            cut = Some((fields.text("tx")?.to_owned(), seq));
        }
        let Some((cut_tx, cut_seq)) = cut else { return Ok(0) };
        let mut pruned = 0;
        for delete in &self.sql.prune {
            let deleted =
                Statements::query(delete).bind(&cut_tx).bind(cut_seq).execute(&mut *tx).await.map_err(pg_error)?;
            pruned += deleted.rows_affected();
        }
        Statements::query(&self.sql.prune_mark)
            .bind(&cut_tx)
            .bind(cut_seq)
            .execute(&mut *tx)
            .await
            .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(pruned)
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

    async fn history_page(&self, machine: &str, id: &str, after: u64, limit: u32) -> Result<Vec<Change>, StoreError> {
        validate_machine(machine)?;
        validate_id(id)?;
        let rows = Statements::query(&self.sql.history_page)
            .bind(machine)
            .bind(id)
            .bind(i64::try_from(after).unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(pg_error)?;
        rows.iter().map(change).collect()
    }
}

/// Pruning keeps its watermark, the last position it deleted, in
/// `machine_pruned`. The page is read before the watermark: a prune that
/// commits after the page's statement cannot have taken anything from it,
/// and one that committed before moved the watermark past `after` if it
/// took anything the page would have held. Either way nothing is skipped
/// silently.
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
        let mark = Statements::query(&self.sql.pruned).fetch_optional(&self.pool).await.map_err(pg_error)?;
        if let Some(mark) = mark {
            let fields = super::sql::Fields::new(&mark, "(feed)", "(watermark)", pg_error);
            let tx = fields.text("tx")?;
            let tx: u64 =
                tx.parse().map_err(|_| out_of_range(format!("stored pruning watermark {tx:?} is not a number")))?;
            let pruned = Cursor { tx, seq: fields.unsigned("seq")? };
            if after < pruned {
                return Err(StoreError::FeedCompacted { after, oldest: Cursor { seq: pruned.seq + 1, ..pruned } });
            }
        }
        rows.iter().map(change).collect()
    }

    async fn behind(&self, after: Cursor) -> Result<u64, StoreError> {
        let seq = i64::try_from(after.seq).map_err(|_| out_of_range(format!("cursor {after} is out of range")))?;
        let counted: i64 = sqlx::query_scalar(AssertSqlSafe(Arc::clone(&self.sql.behind)))
            .bind(after.tx.to_string())
            .bind(seq)
            .fetch_one(&self.pool)
            .await
            .map_err(pg_error)?;
        Ok(u64::try_from(counted).unwrap_or(0))
    }
}

/// Checkpoints are saved with one conditional statement each (an insert
/// that does nothing when the name exists, or an update on the version),
/// so two instances can never both win a lease.
impl Checkpoints for Postgres {
    async fn checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, StoreError> {
        validate_processor(name)?;
        let row =
            Statements::query(&self.sql.checkpoint).bind(name).fetch_optional(&self.pool).await.map_err(pg_error)?;
        row.map(|row| super::sql::checkpoint(&row, name, pg_error)).transpose()
    }

    async fn save_checkpoint(
        &self,
        name: &str,
        expected_version: u64,
        cursor: Cursor,
        owner: &str,
        lease_until: u64,
    ) -> Result<bool, StoreError> {
        validate_processor(name)?;
        let next = next_version(PROCESSORS, name, expected_version)?;
        let (tx, seq) = cursor_to_db(cursor)?;
        let statement = if expected_version == 0 { &self.sql.create_checkpoint } else { &self.sql.update_checkpoint };
        let query =
            Statements::query(statement).bind(name).bind(tx).bind(seq).bind(owner).bind(millis_to_db(lease_until));
        let query = query.bind(next);
        let query =
            if expected_version == 0 { query } else { query.bind(version_to_db(PROCESSORS, name, expected_version)?) };
        let saved = query.execute(&self.pool).await.map_err(pg_error)?;
        Ok(saved.rows_affected() == 1)
    }

    async fn park(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        validate_processor(&letter.processor)?;
        let (tx, seq) = cursor_to_db(letter.cursor)?;
        Statements::query(&self.sql.park)
            .bind(&letter.processor)
            .bind(tx)
            .bind(seq)
            .bind(&letter.machine)
            .bind(&letter.id)
            .bind(version_to_db(&letter.machine, &letter.id, letter.version)?)
            .bind(&letter.error)
            .bind(i64::from(letter.attempts))
            .bind(millis_to_db(letter.parked_at))
            .execute(&self.pool)
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn dead_letters(
        &self,
        processor: &str,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        validate_processor(processor)?;
        // (-1, -1) is before every cursor.
        let (tx, seq) = after.map_or(Ok((-1, -1)), cursor_to_db)?;
        let rows = Statements::query(&self.sql.dead_letters)
            .bind(processor)
            .bind(tx)
            .bind(seq)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(pg_error)?;
        rows.iter().map(|row| super::sql::dead_letter(row, processor, pg_error)).collect()
    }

    async fn unpark(&self, processor: &str, cursor: Cursor) -> Result<bool, StoreError> {
        validate_processor(processor)?;
        let (tx, seq) = cursor_to_db(cursor)?;
        let removed = Statements::query(&self.sql.unpark)
            .bind(processor)
            .bind(tx)
            .bind(seq)
            .execute(&self.pool)
            .await
            .map_err(pg_error)?;
        Ok(removed.rows_affected() > 0)
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

    async fn count(&self, machine: &str, kind: &str) -> Result<u64, StoreError> {
        validate_machine(machine)?;
        let counted: i64 = sqlx::query_scalar(AssertSqlSafe(Arc::clone(&self.sql.count)))
            .bind(machine)
            .bind(kind)
            .fetch_one(&self.pool)
            .await
            .map_err(pg_error)?;
        Ok(u64::try_from(counted).unwrap_or(0))
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

    async fn due(
        &self,
        machine: &str,
        now: u64,
        after: Option<(u64, &str)>,
        limit: u32,
    ) -> Result<Vec<Timer>, StoreError> {
        validate_machine(machine)?;
        // Ids are never empty, so (-1, "") is before every position.
        let (after_due, after_id) = after.map_or((-1, ""), |(due, id)| (millis_to_db(due), id));
        let rows = Statements::query(&self.sql.due)
            .bind(machine)
            .bind(millis_to_db(now))
            .bind(after_due)
            .bind(after_id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(pg_error)?;
        rows.iter().map(|row| super::sql::timer(row, machine, pg_error)).collect()
    }

    async fn disarm(&self, machine: &str, id: &str, version: u64) -> Result<bool, StoreError> {
        validate_machine(machine)?;
        validate_id(id)?;
        let disarmed = Statements::query(&self.sql.disarm)
            .bind(machine)
            .bind(id)
            .bind(version_to_db(machine, id, version)?)
            .execute(&self.pool)
            .await
            .map_err(pg_error)?;
        Ok(disarmed.rows_affected() > 0)
    }
}
