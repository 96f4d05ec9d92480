//! The embedded, durable store: one SQLite file (or memory), safe for several
//! processes at once.

mod schema;

use super::key::{validate_id, validate_idempotency_key, validate_machine};
use super::record::{Change, Commit, Cursor, Listed, Record, Remove, Timer, Write};
use super::sql::{
    Fields, acquire_error, backend, cursor_to_db, fingerprint_to_db, key_taken, millis_to_db, next_version, now_millis,
    out_of_range, version_to_db,
};
use super::{Checkpoint, Checkpoints, DeadLetter, validate_processor};
use super::{Feed, Query, Remembered, Store};
use super::{Migration, Timeout, Wait};
use crate::error::{StoreError, VersionConflict};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{SqliteConnection, SqlitePool};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OwnedMutexGuard;

/// A record's row: `machine` and `id` are its two parameters.
macro_rules! load_sql {
    () => {
        "SELECT version, kind, state, updated_at, schema_version FROM machine_records WHERE machine = ? AND id = ?"
    };
}

/// A [`Store`] in a SQLite database (feature `sqlite`).
///
/// The file is opened in WAL mode, so readers never block the writer, with a
/// busy timeout, so writers from several processes queue for the lock instead
/// of failing. Every commit runs in a `BEGIN IMMEDIATE` transaction: it takes
/// the write lock before reading the versions it checks, so no other writer,
/// in this process or another, can slip in between the check and the write.
/// The schema is created or migrated on open (or, with
/// [`SqliteOptions::migrate`]`(false)`, only checked). Waits are bounded
/// ([`SqliteOptions`]: busy and acquire timeouts); one that runs out is a
/// retryable [`StoreError::Backend`] with a [`Timeout`] naming it.
///
/// The change feed needs no extra care: SQLite commits one writer at a time
/// and sequence numbers are assigned inside that writer's transaction, so
/// they become visible in order. Retention ([`Store::remove`],
/// [`Store::prune_history`]) runs under the same write lock: a removed
/// record's history moves to `machine_removed` with its sequence numbers
/// (the feed reads both tables in `seq` order), and pruning leaves its
/// watermark in `machine_pruned`, so a cursor behind it is
/// [`StoreError::FeedCompacted`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), machine_core::StoreError> {
/// use machine_core::store::{Sqlite, Store};
///
/// let dir = std::env::temp_dir().join(format!("machine-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let store = Sqlite::open(dir.join("orders.db")).await?;
/// assert_eq!(store.load("Order", "order-1").await?, None);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Sqlite {
    pool: SqlitePool,
    /// This process's writers queue here, in arrival order, before they ask
    /// SQLite for its write lock: a writer that waits inside SQLite sleeps
    /// in growing steps (up to 100 ms) and may be overtaken, which is what
    /// gave contended rows their long tail.
    writer: Arc<tokio::sync::Mutex<Slot>>,
    /// Whether the writers keep a connection of their own between writes
    /// (not when the pool has one connection only: readers need it too,
    /// and an in-memory database is seen by that connection alone).
    keep: bool,
    /// How long a writer waits for its turn in this process (the busy
    /// timeout: the same wait, for the same lock, as inside SQLite).
    busy: Duration,
}

/// How to open: the bounded waits, the pool size, and whether to migrate the
/// schema on open.
///
/// | wait | default | bounds |
/// |---|---|---|
/// | [`busy_timeout`](Self::busy_timeout) | 5 s | a writer's wait for the write lock: its turn among this process's writers, then SQLite's lock against other processes (each bounded, so up to twice in all) |
/// | [`acquire_timeout`](Self::acquire_timeout) | 2 s | an operation's wait for a pooled connection |
///
/// docs/stores.md ("Timeouts") says why. A wait that runs out is a
/// retryable [`StoreError::Backend`] whose [`StoreError::timeout`] names it
/// ([`Wait::Lock`], [`Wait::Acquire`]). With [`from_pool`](Self::from_pool)
/// your pool's own settings apply instead.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), machine_core::StoreError> {
/// use machine_core::store::{Sqlite, Store};
/// use std::time::Duration;
///
/// let store = Sqlite::options().busy_timeout(Duration::from_secs(1)).memory().await?;
/// assert_eq!(store.load("Order", "order-1").await?, None);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    busy_timeout: Duration,
    acquire_timeout: Duration,
    max_connections: u32,
    migrate: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(2),
            max_connections: 8,
            migrate: true,
        }
    }
}

impl SqliteOptions {
    /// How long a writer waits for the write lock (5 s by default): first
    /// for its turn among this process's writers, then inside SQLite for
    /// another process's (SQLite's busy timeout). Each wait has this bound,
    /// so a writer behind both may wait up to twice as long. Past it: a
    /// retryable [`Timeout`] of [`Wait::Lock`].
    #[must_use]
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// How long an operation waits for a connection from the pool (2 s by
    /// default). Past it: a retryable [`Timeout`] of [`Wait::Acquire`].
    #[must_use]
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// The pool size for a file (8 by default); with more than one, the
    /// writers take one out of it to keep between writes, and the pool
    /// opens another in its place. An in-memory database always has one
    /// connection, which readers and writers share.
    #[must_use]
    pub fn max_connections(mut self, connections: u32) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// Whether opening migrates the schema (`true` by default). With `false`
    /// nothing is written on open: the store only reads `machine_migrations`
    /// and refuses to open with [`StoreError::Unmigrated`], naming the
    /// missing versions, unless every migration it knows is applied. Apply
    /// them with [`Sqlite::migrate`] or run the SQL of
    /// [`migrations`](Self::migrations) with your own tool.
    #[must_use]
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// The schema's migrations, in order, as SQL to run yourself. Each
    /// records its version in `machine_migrations`, so a store opened with
    /// [`migrate(false)`](Self::migrate) finds them.
    #[must_use]
    pub fn migrations(&self) -> Vec<Migration> {
        schema::exported()
    }

    /// Opens (creating if needed) the database file at `path`, in WAL mode.
    pub async fn open(self, path: impl AsRef<Path>) -> Result<Sqlite, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(self.busy_timeout)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(sqlite_error)?;
        self.from_pool(pool).await
    }

    /// A private in-memory database, gone when the store is dropped: for tests
    /// that want SQL semantics without a file. One connection, shared in turn.
    pub async fn memory(self) -> Result<Sqlite, StoreError> {
        let options = SqliteConnectOptions::new().in_memory(true).busy_timeout(self.busy_timeout);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(self.acquire_timeout)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(sqlite_error)?;
        self.from_pool(pool).await
    }

    /// Uses an existing pool (your own options: enable WAL and a busy
    /// timeout on it for multi-process use), migrating the schema (or
    /// checking it). This process's writers wait for their turn up to
    /// [`busy_timeout`](Self::busy_timeout).
    pub async fn from_pool(self, pool: SqlitePool) -> Result<Sqlite, StoreError> {
        let keep = pool.options().get_max_connections() > 1;
        let store = Sqlite { pool, writer: Arc::default(), keep, busy: self.busy_timeout };
        if self.migrate {
            store.migrate().await?;
        } else {
            store.check_schema().await?;
        }
        Ok(store)
    }
}

/// What the writers pass on: the connection the last one wrote through, and
/// whether it was left inside a transaction (a writer whose future was
/// dropped).
#[derive(Default, Debug)]
struct Slot {
    conn: Option<Writer>,
    open: bool,
}

/// The writers' connection. From a pool of several, one is taken out of it
/// (detached) and kept between writes: a write then never waits for the
/// pool, nor pays the round trip to SQLite's thread with which the pool
/// checks every connection it gets back (a fifth of a single writer's
/// work), and the pool still closes without it. A one-connection pool's
/// only connection goes back after each write.
#[derive(Debug)]
enum Writer {
    Kept(SqliteConnection),
    Pooled(PoolConnection<sqlx::Sqlite>),
}

impl Writer {
    fn conn(&mut self) -> &mut SqliteConnection {
        match self {
            Self::Kept(conn) => conn,
            Self::Pooled(conn) => conn,
        }
    }

    /// The connection, out of the pool's accounting, to be closed.
    fn into_conn(self) -> SqliteConnection {
        match self {
            Self::Kept(conn) => conn,
            Self::Pooled(conn) => conn.detach(),
        }
    }
}

/// The write lock, taken before a quick plan loads: the runner's fast path
/// (load and write in one `BEGIN IMMEDIATE` transaction, as a hand-written
/// loop would). Dropped unfinished, the transaction is rolled back.
pub(crate) struct Held {
    turn: Option<OwnedMutexGuard<Slot>>,
    /// Whether the connection stays with the writers afterwards.
    keep: bool,
}

impl Held {
    fn conn(&mut self) -> Result<&mut SqliteConnection, StoreError> {
        // `hold` puts a connection in the slot before it makes a `Held`.
        let conn = self.turn.as_mut().and_then(|turn| turn.conn.as_mut());
        conn.map(Writer::conn).ok_or_else(|| StoreError::backend("the held connection is gone", true))
    }

    /// The record, read inside the held transaction.
    pub(crate) async fn load(&mut self, machine: &str, id: &str) -> Result<Option<Record>, StoreError> {
        load_on(self.conn()?, machine, id).await
    }

    /// An idempotency key, read inside the held transaction.
    pub(crate) async fn recall(
        &mut self,
        machine: &str,
        id: &str,
        key: &str,
    ) -> Result<Option<Remembered>, StoreError> {
        recall_on(self.conn()?, machine, id, key).await
    }

    /// Applies `commit` and commits the transaction. The versions are still
    /// checked: another process may share the file, and a read that did
    /// not go through this transaction may be stale.
    pub(crate) async fn commit(mut self, commit: &Commit<'_>) -> Result<(), StoreError> {
        if let ([write], [], []) = (commit.writes.as_slice(), commit.checks.as_slice(), commit.keys.as_slice()) {
            return self.write_and_commit(write).await;
        }
        self.begin().await?;
        apply(self.conn()?, commit).await?;
        self.finish().await
    }

    /// Begins the transaction unless it is open.
    async fn begin(&mut self) -> Result<(), StoreError> {
        if self.turn.as_ref().is_some_and(|turn| turn.open) {
            return Ok(());
        }
        self.set_open(true);
        let begun = sqlx::query("BEGIN IMMEDIATE").execute(self.conn()?).await;
        if let Err(error) = begun {
            // Nothing was begun. A connection that answered (busy, say)
            // stays with the writers; one that did not (its thread gone, an
            // I/O error) is dropped, so the next writer opens another
            // instead of being handed the same dead one.
            self.set_open(false);
            if !matches!(error, sqlx::Error::Database(_))
                && let Some(turn) = self.turn.as_mut()
            {
                forget(turn);
            }
            return Err(sqlite_error(error));
        }
        Ok(())
    }

    /// A commit of one write and nothing else (a single command), in one
    /// round trip once the transaction is open: the record's
    /// compare-and-set, its history row only if that changed the record,
    /// and `COMMIT` ([`UPDATE_AND_COMMIT`]). A conflict commits an empty
    /// transaction.
    async fn write_and_commit(mut self, write: &Write<'_>) -> Result<(), StoreError> {
        let (machine, id) = (write.machine, write.id);
        validate_machine(machine)?;
        validate_id(id)?;
        let next = next_version(machine, id, write.expected)?;
        let expected = version_to_db(machine, id, write.expected)?;
        self.begin().await?;
        let sql = if write.expected == 0 { INSERT_AND_COMMIT } else { UPDATE_AND_COMMIT };
        let done = sqlx::query(sql)
            .bind(machine)
            .bind(id)
            .bind(next)
            .bind(write.kind)
            .bind(&write.state)
            .bind(now_millis())
            .bind(write.schema)
            .bind(write.due.map(millis_to_db))
            .bind(expected)
            .bind(write.command)
            .bind(write.origin.as_str())
            .execute(self.conn()?)
            .await;
        // On an error the transaction is left marked open: dropping `self`
        // rolls back whatever the query left open (an error stops it before
        // `COMMIT`), keeping the connection, and with it an in-memory
        // database, which closing the connection would lose.
        let done = done.map_err(sqlite_error)?;
        self.set_open(false);
        if done.rows_affected() == 0 {
            // Read after the commit, so possibly newer than what beat this
            // write: the conflict only tells the loop to load again.
            let current = current_version(self.conn()?, machine, id).await?;
            return Err(VersionConflict::new(machine, id, write.expected.saturating_add(1), current).into());
        }
        Ok(())
    }

    /// Whether a transaction may be open on the connection (a dropped
    /// `Held` then rolls back).
    fn set_open(&mut self, open: bool) {
        if let Some(turn) = self.turn.as_mut() {
            turn.open = open;
        }
    }

    /// Removes the record and commits the transaction; the version and kind
    /// are checked here, inside it.
    pub(crate) async fn remove(mut self, remove: &Remove<'_>) -> Result<(), StoreError> {
        remove_on(self.conn()?, remove).await?;
        self.finish().await
    }

    /// Commits the held transaction.
    async fn finish(mut self) -> Result<(), StoreError> {
        let committed = sqlx::query("COMMIT").execute(self.conn()?).await;
        if let Err(error) = committed {
            if !self.keep {
                // The pool's one connection holds an in-memory database,
                // which closing it would destroy: roll back what is left
                // open and keep it (a `Held` still marked open rolls back
                // on drop if this cannot).
                if rolled_back(sqlx::query("ROLLBACK").execute(self.conn()?).await) {
                    self.set_open(false);
                }
                return Err(sqlite_error(error));
            }
            // The outcome is unknown: never reuse that connection.
            if let Some(turn) = self.turn.as_mut() {
                forget(turn);
            }
            return Err(sqlite_error(error));
        }
        self.set_open(false);
        Ok(())
    }
}

impl Drop for Held {
    /// A writer that stops inside its transaction (an error, a dropped
    /// future) must not leave SQLite's write lock taken until the next
    /// writer of this process comes: roll back now, on the runtime, before
    /// the turn passes on.
    fn drop(&mut self) {
        let Some(mut turn) = self.turn.take() else { return };
        let keep = self.keep;
        if !turn.open {
            if !keep {
                turn.conn = None;
            }
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let rolled_back = match turn.conn.as_mut() {
                        Some(conn) => rolled_back(sqlx::query("ROLLBACK").execute(conn.conn()).await),
                        None => false,
                    };
                    if rolled_back {
                        turn.open = false;
                        if !keep {
                            turn.conn = None;
                        }
                    } else {
                        forget(&mut turn);
                    }
                });
            }
            Err(_) => forget(&mut turn),
        }
    }
}

/// Whether a `ROLLBACK` left the connection outside any transaction: it
/// ran, or there was none to roll back (a query that failed before its
/// `BEGIN`, or was dropped after its `COMMIT`). SQLite says the latter with
/// a generic error code, so it is told by its message.
fn rolled_back(result: Result<sqlx::sqlite::SqliteQueryResult, sqlx::Error>) -> bool {
    match result {
        Ok(_) => true,
        Err(sqlx::Error::Database(error)) => error.message().contains("no transaction is active"),
        Err(_) => false,
    }
}

/// Closes the slot's connection and waits until SQLite has let go of the
/// file (dropping it would close it on SQLite's thread, some time later).
async fn close_writer(slot: &mut Slot) {
    slot.open = false;
    if let Some(writer) = slot.conn.take() {
        // An error closing a connection that is going anyway changes nothing.
        let _ = sqlx::Connection::close(writer.into_conn()).await;
    }
}

/// Drops the slot's connection without returning it to the pool: closing
/// it rolls back whatever it left open.
fn forget(slot: &mut Slot) {
    drop(slot.conn.take().map(Writer::into_conn));
    slot.open = false;
}

impl Sqlite {
    /// Options to set before opening.
    #[must_use]
    pub fn options() -> SqliteOptions {
        SqliteOptions::default()
    }

    /// Opens (creating if needed) the database file at `path` with the
    /// default options (WAL, 8 connections, the default timeouts, migrating
    /// on open).
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::options().open(path).await
    }

    /// A private in-memory database, gone when the store is dropped: for tests
    /// that want SQL semantics without a file. One connection, shared in turn.
    pub async fn memory() -> Result<Self, StoreError> {
        Self::options().memory().await
    }

    /// Uses an existing pool (your own options), creating or migrating the
    /// schema. Enable WAL and a busy timeout on it for multi-process use.
    pub async fn from_pool(pool: SqlitePool) -> Result<Self, StoreError> {
        Self::options().from_pool(pool).await
    }

    /// The schema's migrations, in order, as SQL (see
    /// [`SqliteOptions::migrations`]).
    #[must_use]
    pub fn migrations() -> Vec<Migration> {
        schema::exported()
    }

    /// Applies the migrations not applied yet, as opening does by default:
    /// all in one `BEGIN IMMEDIATE` transaction, so a file is upgraded
    /// completely or not at all, and processes opening it at once apply
    /// each once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        schema::migrate(&self.pool).await
    }

    /// Checks, without writing, that every migration this version knows is
    /// applied: [`StoreError::Unmigrated`] naming the missing ones if not.
    /// Opening with [`SqliteOptions::migrate`]`(false)` does this.
    pub async fn check_schema(&self) -> Result<(), StoreError> {
        schema::check(&self.pool).await
    }

    /// The pool, for your own queries next to the machine tables. The
    /// writers' own connection is not in it: [`close`](Self::close) closes
    /// both (closing only the pool ends that connection at the next write,
    /// or when the last clone of the store is dropped).
    #[must_use]
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes the pool (waiting for the connections in use to come back)
    /// and the writers' own connection: afterwards nothing of this store
    /// holds the file open, and every operation fails.
    pub async fn close(&self) {
        self.pool.close().await;
        close_writer(&mut *self.writer.lock().await).await;
    }

    /// This process's turn to write, then SQLite's write lock.
    pub(crate) async fn hold(&self) -> Result<Held, StoreError> {
        let mut held = self.turn().await?;
        held.begin().await?;
        Ok(held)
    }

    /// [`hold`](Self::hold), and the record read inside the transaction, in
    /// one round trip to SQLite's thread instead of two.
    pub(crate) async fn hold_and_load(&self, machine: &str, id: &str) -> Result<(Held, Option<Record>), StoreError> {
        // Before the turn: bad input never takes the write lock.
        validate_machine(machine)?;
        validate_id(id)?;
        let mut held = self.turn().await?;
        held.set_open(true);
        // On an error (a busy timeout on `BEGIN`, say) `held` is dropped
        // marked open: its rollback finds a transaction or none, and either
        // way the connection stays.
        let record = fetch_record(held.conn()?, concat!("BEGIN IMMEDIATE; ", load_sql!()), machine, id).await?;
        Ok((held, record))
    }

    /// This process's turn to write, with the writers' connection; no
    /// transaction yet. Writes outside the pipeline (a checkpoint, a dead
    /// letter, a disarmed timer, expired keys) run their one statement in
    /// it too, so they queue with the commands instead of racing them in
    /// SQLite's busy handler (a processor's lease renewal among them).
    async fn turn(&self) -> Result<Held, StoreError> {
        // Uncontended, the turn is free at once: no timer to set up. The
        // mutex is fair, so this never overtakes a waiting writer.
        let mut turn = match Arc::clone(&self.writer).try_lock_owned() {
            Ok(turn) => turn,
            Err(_) => tokio::time::timeout(self.busy, Arc::clone(&self.writer).lock_owned())
                .await
                .map_err(|_| StoreError::from(Timeout::new(Wait::Lock, Some(self.busy), None)))?,
        };
        if turn.open {
            // Left open by a writer whose rollback has not run: start afresh.
            forget(&mut turn);
        }
        if self.pool.is_closed() {
            // A closed pool ends the writers' own connection too (the
            // acquire below then fails as any other would).
            close_writer(&mut turn).await;
        }
        if turn.conn.is_none() {
            let pooled = self.pool.acquire().await.map_err(|e| acquire_error(&self.pool, e, sqlite_error))?;
            turn.conn = Some(if self.keep { Writer::Kept(pooled.detach()) } else { Writer::Pooled(pooled) });
        }
        Ok(Held { turn: Some(turn), keep: self.keep })
    }
}

/// One write and its history row, then `COMMIT`, sent as one query inside
/// the open transaction: the parameters are, in order, machine, id, new
/// version, kind, state, time, schema, due, the version expected (an
/// update only), command, origin. The history row is written only if the
/// record was (`changes()` counts the statement before it), so a conflict
/// changes no row at all, and the changes the query reports (summed over
/// its statements; `COMMIT` repeats the last) are 0 exactly then.
/// `RETURNING` would say so more directly, but costs SQLite a temporary
/// table per call; `BEGIN` is not part of it because it would add the
/// count of whatever the connection last wrote.
///
/// Parameters are numbered (`?NNN`) throughout: sqlx binds a slot a
/// statement skips (8 and 9 in the history row) as if it were a plain `?`,
/// harmlessly here, but a plain `?` added after one would be bound wrongly.
///
/// Several statements in one prepared query are what only sqlx's SQLite
/// driver allows (and its docs call deprecated, sqlx issue 3108); the
/// conformance suite's conflict cases would fail, not pass silently, if
/// a later version ran only the first.
const UPDATE_AND_COMMIT: &str = "\
    UPDATE machine_records SET version = ?3, kind = ?4, state = ?5, updated_at = ?6, schema_version = ?7, due_at = ?8 \
        WHERE machine = ?1 AND id = ?2 AND version = ?9; \
    INSERT INTO machine_history (machine, id, version, command, origin, kind, state, at, schema_version) \
        SELECT ?1, ?2, ?3, ?10, ?11, ?4, ?5, ?6, ?7 WHERE changes() = 1; \
    COMMIT";

/// [`UPDATE_AND_COMMIT`] for a record's first version (`?9` is unused).
const INSERT_AND_COMMIT: &str = "\
    INSERT INTO machine_records (machine, id, version, kind, state, updated_at, schema_version, due_at) \
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING; \
    INSERT INTO machine_history (machine, id, version, command, origin, kind, state, at, schema_version) \
        SELECT ?1, ?2, ?3, ?10, ?11, ?4, ?5, ?6, ?7 WHERE changes() = 1; \
    COMMIT";

async fn load_on(conn: &mut SqliteConnection, machine: &str, id: &str) -> Result<Option<Record>, StoreError> {
    validate_machine(machine)?;
    validate_id(id)?;
    fetch_record(conn, load_sql!(), machine, id).await
}

/// The record `sql` reads (its only row, if any), bound to `machine` and
/// `id` in that order, both validated by the caller.
async fn fetch_record(
    conn: &mut SqliteConnection,
    sql: &'static str,
    machine: &str,
    id: &str,
) -> Result<Option<Record>, StoreError> {
    let row = sqlx::query(sql).bind(machine).bind(id).fetch_optional(conn).await.map_err(sqlite_error)?;
    row.map(|row| super::sql::record(&row, machine, id, sqlite_error)).transpose()
}

async fn recall_on(
    conn: &mut SqliteConnection,
    machine: &str,
    id: &str,
    key: &str,
) -> Result<Option<Remembered>, StoreError> {
    validate_machine(machine)?;
    validate_id(id)?;
    validate_idempotency_key(key)?;
    let row = sqlx::query(
        "SELECT fingerprint, version, kind, state, at, expires_at FROM machine_keys
         WHERE machine = ? AND id = ? AND key = ?",
    )
    .bind(machine)
    .bind(id)
    .bind(key)
    .fetch_optional(conn)
    .await
    .map_err(sqlite_error)?;
    row.map(|row| super::sql::remembered(&row, machine, id, sqlite_error)).transpose()
}

/// Busy and locked databases (any extended code of `SQLITE_BUSY` or
/// `SQLITE_LOCKED`) are worth another try.
fn retryable_code(code: &str) -> bool {
    code.parse::<i64>().is_ok_and(|code| matches!(code & 0xff, 5 | 6))
}

/// `SQLITE_BUSY` itself (not its extended codes, which SQLite returns
/// without waiting) is the busy timeout running out.
fn timeout_code(code: &str) -> Option<Wait> {
    (code == "5").then_some(Wait::Lock)
}

fn sqlite_error(error: sqlx::Error) -> StoreError {
    backend(error, retryable_code, timeout_code)
}

fn change(row: &SqliteRow) -> Result<Change, StoreError> {
    super::sql::change(row, None, sqlite_error)
}

/// The stored version (0: no record). A stored version that is not a valid
/// one is an error here too: taken for 0 it would make every write conflict.
async fn current_version(conn: &mut SqliteConnection, machine: &str, id: &str) -> Result<u64, StoreError> {
    let row = sqlx::query("SELECT version FROM machine_records WHERE machine = ? AND id = ?")
        .bind(machine)
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(sqlite_error)?;
    row.map_or(Ok(0), |row| Fields::new(&row, machine, id, sqlite_error).version("version"))
}

/// Applies `commit` on `conn`, which must be inside a write transaction.
async fn apply(conn: &mut SqliteConnection, commit: &Commit<'_>) -> Result<(), StoreError> {
    for check in &commit.checks {
        validate_machine(check.machine)?;
        validate_id(check.id)?;
        let current = current_version(conn, check.machine, check.id).await?;
        if current != check.expected {
            return Err(VersionConflict::new(check.machine, check.id, check.expected.saturating_add(1), current).into());
        }
    }
    let now = now_millis();
    for write in &commit.writes {
        validate_machine(write.machine)?;
        validate_id(write.id)?;
        let next = next_version(write.machine, write.id, write.expected)?;
        let written = if write.expected == 0 {
            sqlx::query(
                "INSERT INTO machine_records (machine, id, version, kind, state, updated_at, schema_version, due_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(write.machine)
            .bind(write.id)
            .bind(next)
            .bind(write.kind)
            .bind(&write.state)
            .bind(now)
            .bind(write.schema)
            .bind(write.due.map(millis_to_db))
            .execute(&mut *conn)
            .await
        } else {
            sqlx::query(
                "UPDATE machine_records SET version = ?, kind = ?, state = ?, updated_at = ?, schema_version = ?,
                    due_at = ?
                 WHERE machine = ? AND id = ? AND version = ?",
            )
            .bind(next)
            .bind(write.kind)
            .bind(&write.state)
            .bind(now)
            .bind(write.schema)
            .bind(write.due.map(millis_to_db))
            .bind(write.machine)
            .bind(write.id)
            .bind(version_to_db(write.machine, write.id, write.expected)?)
            .execute(&mut *conn)
            .await
        }
        .map_err(sqlite_error)?;
        if written.rows_affected() == 0 {
            let current = current_version(conn, write.machine, write.id).await?;
            return Err(VersionConflict::new(write.machine, write.id, write.expected.saturating_add(1), current).into());
        }
        sqlx::query(
            "INSERT INTO machine_history (machine, id, version, command, origin, kind, state, at, schema_version)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(write.machine)
        .bind(write.id)
        .bind(next)
        .bind(write.command)
        .bind(write.origin.as_str())
        .bind(write.kind)
        .bind(&write.state)
        .bind(now)
        .bind(write.schema)
        .execute(&mut *conn)
        .await
        .map_err(sqlite_error)?;
    }
    for key in &commit.keys {
        validate_machine(key.machine)?;
        validate_id(key.id)?;
        validate_idempotency_key(key.key)?;
        let at = millis_to_db(key.at);
        // An expired key is replaced; a standing one means another commit
        // with this key won, and this one must not apply.
        let stored = sqlx::query(
            "INSERT INTO machine_keys (machine, id, key, fingerprint, version, kind, state, at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (machine, id, key) DO UPDATE SET
                fingerprint = excluded.fingerprint, version = excluded.version, kind = excluded.kind,
                state = excluded.state, at = excluded.at, expires_at = excluded.expires_at
             WHERE machine_keys.expires_at <= excluded.at",
        )
        .bind(key.machine)
        .bind(key.id)
        .bind(key.key)
        .bind(fingerprint_to_db(key.fingerprint))
        .bind(version_to_db(key.machine, key.id, key.version)?)
        .bind(key.kind)
        .bind(key.state.as_deref())
        .bind(at)
        .bind(millis_to_db(key.expires_at))
        .execute(&mut *conn)
        .await
        .map_err(sqlite_error)?;
        if stored.rows_affected() == 0 {
            return Err(key_taken(key));
        }
    }
    Ok(())
}

/// Removes a record as [`Store::remove`] says, on `conn` inside a write
/// transaction: the record only if still at the version and kind read, then
/// its history moved to `machine_removed` with the removal entry, then its
/// keys.
async fn remove_on(conn: &mut SqliteConnection, remove: &Remove<'_>) -> Result<(), StoreError> {
    let (machine, id) = (remove.machine, remove.id);
    validate_machine(machine)?;
    validate_id(id)?;
    let gone = sqlx::query(
        "DELETE FROM machine_records WHERE machine = ? AND id = ? AND version = ? AND kind = ?
         RETURNING state, schema_version",
    )
    .bind(machine)
    .bind(id)
    .bind(version_to_db(machine, id, remove.expected)?)
    .bind(remove.kind)
    .fetch_optional(&mut *conn)
    .await
    .map_err(sqlite_error)?;
    let Some(gone) = gone else {
        let current = current_version(conn, machine, id).await?;
        return Err(VersionConflict::new(machine, id, remove.expected.saturating_add(1), current).into());
    };
    let fields = Fields::new(&gone, machine, id, sqlite_error);
    let (state, schema) = (fields.text("state")?, fields.schema("schema_version")?);
    // The removal's place in the feed: the history's next sequence number,
    // drawn from SQLite's own counter for it (which the next history row
    // then passes), so the two tables never share a number. Under the write
    // lock, so nobody draws in between.
    sqlx::query(
        "INSERT INTO sqlite_sequence (name, seq) SELECT 'machine_history', 0
         WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'machine_history')",
    )
    .execute(&mut *conn)
    .await
    .map_err(sqlite_error)?;
    let seq: i64 = sqlx::query_scalar(
        "UPDATE sqlite_sequence SET seq = max(seq,
            (SELECT coalesce(max(seq), 0) FROM machine_history),
            (SELECT coalesce(max(seq), 0) FROM machine_removed)) + 1
         WHERE name = 'machine_history' RETURNING seq",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(sqlite_error)?;
    sqlx::query(
        "INSERT INTO machine_removed (seq, removal, machine, id, version, command, origin, kind, state, at, schema_version)
         SELECT seq, ?, machine, id, version, command, origin, kind, state, at, schema_version
         FROM machine_history WHERE machine = ? AND id = ?",
    )
    .bind(seq)
    .bind(machine)
    .bind(id)
    .execute(&mut *conn)
    .await
    .map_err(sqlite_error)?;
    sqlx::query("DELETE FROM machine_history WHERE machine = ? AND id = ?")
        .bind(machine)
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(sqlite_error)?;
    sqlx::query(
        "INSERT INTO machine_removed (seq, removal, machine, id, version, command, origin, kind, state, at, schema_version)
         VALUES (?1, ?1, ?2, ?3, ?4, 'null', 'removal', ?5, ?6, ?7, ?8)",
    )
    .bind(seq)
    .bind(machine)
    .bind(id)
    .bind(version_to_db(machine, id, remove.expected)?)
    .bind(remove.kind)
    .bind(state)
    .bind(now_millis())
    .bind(schema)
    .execute(&mut *conn)
    .await
    .map_err(sqlite_error)?;
    sqlx::query("DELETE FROM machine_keys WHERE machine = ? AND id = ?")
        .bind(machine)
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(sqlite_error)?;
    Ok(())
}

/// The feed's oldest `limit` entries, both tables merged by `seq`: what
/// pruning looks at.
const OLDEST: &str =
    "SELECT seq, machine, id, at FROM (SELECT seq, machine, id, at FROM machine_history ORDER BY seq LIMIT ?1)
     UNION ALL SELECT seq, machine, id, at FROM (SELECT seq, machine, id, at FROM machine_removed ORDER BY seq LIMIT ?1)
     ORDER BY seq LIMIT ?1";

/// The columns of a feed entry from table alias `h`, its predecessor `p`.
macro_rules! feed_arm {
    ($table:literal, $join:literal) => {
        concat!(
            "SELECT h.seq, h.machine, h.id, h.version, h.command, h.origin, h.kind, h.state, h.at, h.schema_version,
                    p.kind AS kind_before, p.state AS state_before, p.schema_version AS schema_before
             FROM ",
            $table,
            " h LEFT JOIN ",
            $table,
            " p ON ",
            $join,
            " WHERE h.seq > ?1 ORDER BY h.seq LIMIT ?2"
        )
    };
}

/// The feed: live history and the history of removed records (with the
/// removal entries), merged in `seq` order. A removed record's entries are
/// chained within their removal (`removal`), never to a later record under
/// the same id; a removal entry has no state before.
const FEED: &str = concat!(
    "SELECT * FROM (",
    feed_arm!("machine_history", "p.machine = h.machine AND p.id = h.id AND p.version = h.version - 1"),
    ") UNION ALL SELECT * FROM (",
    feed_arm!("machine_removed", "h.origin <> 'removal' AND p.removal = h.removal AND p.version = h.version - 1"),
    ") ORDER BY seq LIMIT ?2"
);

impl Store for Sqlite {
    async fn load(&self, machine: &str, id: &str) -> Result<Option<Record>, StoreError> {
        validate_machine(machine)?;
        validate_id(id)?;
        let mut conn = self.pool.acquire().await.map_err(|e| acquire_error(&self.pool, e, sqlite_error))?;
        load_on(&mut conn, machine, id).await
    }

    async fn commit(&self, commit: Commit<'_>) -> Result<(), StoreError> {
        // Dropping the transaction unfinished (an error, a cancelled future)
        // rolls it back: nothing of a failed commit is ever written.
        self.turn().await?.commit(&commit).await
    }

    fn native(&self) -> super::Native<'_> {
        super::Native::Sqlite(self)
    }

    async fn remove(&self, remove: Remove<'_>) -> Result<(), StoreError> {
        self.hold().await?.remove(&remove).await
    }

    async fn prune_history(&self, before: u64, limit: u32) -> Result<u64, StoreError> {
        if limit == 0 {
            return Ok(0);
        }
        // Under the write lock: the watermark and the deletions commit
        // together, and no removal moves rows between the two tables meanwhile.
        let mut held = self.hold().await?;
        let rows = sqlx::query(OLDEST).bind(i64::from(limit)).fetch_all(held.conn()?).await.map_err(sqlite_error)?;
        let mut cut = None;
        for row in &rows {
            let machine = Fields::new(row, "(unreadable)", "(unreadable)", sqlite_error).text("machine")?;
            let id = Fields::new(row, machine, "(unreadable)", sqlite_error).text("id")?;
            let fields = Fields::new(row, machine, id, sqlite_error);
            if fields.unsigned("at")? >= before {
                break;
            }
            cut = Some(fields.unsigned("seq")?);
        }
        let Some(cut) = cut else { return Ok(0) };
        let cut = i64::try_from(cut).unwrap_or(i64::MAX);
        let mut pruned = 0;
        for table in ["DELETE FROM machine_history WHERE seq <= ?", "DELETE FROM machine_removed WHERE seq <= ?"] {
            let deleted = sqlx::query(table).bind(cut).execute(held.conn()?).await.map_err(sqlite_error)?;
            pruned += deleted.rows_affected();
        }
        // The row is written by the migration; put back if something
        // deleted it, so pruning never goes unrecorded.
        sqlx::query(
            "INSERT INTO machine_pruned (one, seq) VALUES (1, ?1)
             ON CONFLICT (one) DO UPDATE SET seq = max(seq, excluded.seq)",
        )
        .bind(cut)
        .execute(held.conn()?)
        .await
        .map_err(sqlite_error)?;
        held.finish().await?;
        Ok(pruned)
    }

    async fn forget_keys(&self, now: u64, limit: u32) -> Result<u64, StoreError> {
        // `machine_keys` has no rowid (WITHOUT ROWID): delete by its key.
        let deleted = sqlx::query(
            "DELETE FROM machine_keys WHERE (machine, id, key) IN
                (SELECT machine, id, key FROM machine_keys WHERE expires_at <= ? LIMIT ?)",
        )
        .bind(millis_to_db(now))
        .bind(i64::from(limit))
        .execute(self.turn().await?.conn()?)
        .await
        .map_err(sqlite_error)?;
        Ok(deleted.rows_affected())
    }

    async fn recall(&self, machine: &str, id: &str, key: &str) -> Result<Option<Remembered>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(sqlite_error)?;
        recall_on(&mut conn, machine, id, key).await
    }

    async fn history(&self, machine: &str, id: &str) -> Result<Vec<Change>, StoreError> {
        validate_machine(machine)?;
        validate_id(id)?;
        let rows = sqlx::query(
            "SELECT seq, machine, id, version, command, origin, kind, state, at, schema_version,
                    LAG(kind) OVER record AS kind_before, LAG(state) OVER record AS state_before,
                    LAG(schema_version) OVER record AS schema_before
             FROM machine_history WHERE machine = ? AND id = ?
             WINDOW record AS (ORDER BY version) ORDER BY version",
        )
        .bind(machine)
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(sqlite_error)?;
        rows.iter().map(change).collect()
    }

    async fn history_page(&self, machine: &str, id: &str, after: u64, limit: u32) -> Result<Vec<Change>, StoreError> {
        validate_machine(machine)?;
        validate_id(id)?;
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "SELECT h.seq, h.machine, h.id, h.version, h.command, h.origin, h.kind, h.state, h.at, h.schema_version,
                    p.kind AS kind_before, p.state AS state_before, p.schema_version AS schema_before
             FROM machine_history h
             LEFT JOIN machine_history p ON p.machine = h.machine AND p.id = h.id AND p.version = h.version - 1
             WHERE h.machine = ? AND h.id = ? AND h.version > ? ORDER BY h.version LIMIT ?",
        )
        .bind(machine)
        .bind(id)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(sqlite_error)?;
        rows.iter().map(change).collect()
    }
}

/// Pruning keeps its watermark, the last position it deleted, in
/// `machine_pruned`. The page is read before the watermark: a prune that
/// commits after the page was read cannot have taken anything from it, and
/// one that committed before moved the watermark past `after` if it took
/// anything the page would have held. Either way nothing is skipped
/// silently.
impl Feed for Sqlite {
    async fn changes(&self, after: Cursor, limit: u32) -> Result<Vec<Change>, StoreError> {
        let seq = i64::try_from(after.seq).map_err(|_| out_of_range(format!("cursor {after} is out of range")))?;
        let rows =
            sqlx::query(FEED).bind(seq).bind(i64::from(limit)).fetch_all(&self.pool).await.map_err(sqlite_error)?;
        let pruned: Option<i64> = sqlx::query_scalar("SELECT seq FROM machine_pruned")
            .fetch_optional(&self.pool)
            .await
            .map_err(sqlite_error)?;
        let pruned = u64::try_from(pruned.unwrap_or(0)).unwrap_or(0);
        if after.seq < pruned {
            return Err(StoreError::FeedCompacted { after, oldest: Cursor { tx: 0, seq: pruned + 1 } });
        }
        rows.iter().map(change).collect()
    }

    async fn behind(&self, after: Cursor) -> Result<u64, StoreError> {
        let after = i64::try_from(after.seq).map_err(|_| out_of_range(format!("cursor {after} is out of range")))?;
        // What `changes` could return: live history and removed records' entries.
        let counted: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM machine_history WHERE seq > ?1)
                  + (SELECT count(*) FROM machine_removed WHERE seq > ?1)",
        )
        .bind(after)
        .fetch_one(&self.pool)
        .await
        .map_err(sqlite_error)?;
        Ok(u64::try_from(counted).unwrap_or(0))
    }
}

/// Checkpoints are saved with one conditional statement each (an insert
/// that does nothing when the name exists, or an update on the version), so
/// two instances can never both win a lease.
impl Checkpoints for Sqlite {
    async fn checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, StoreError> {
        validate_processor(name)?;
        let row = sqlx::query(
            "SELECT cursor_tx, cursor_seq, owner, lease_until, version FROM machine_processors WHERE name = ?",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(sqlite_error)?;
        row.map(|row| super::sql::checkpoint(&row, name, sqlite_error)).transpose()
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
        let next = next_version(super::sql::PROCESSORS, name, expected_version)?;
        let (tx, seq) = cursor_to_db(cursor)?;
        let saved = if expected_version == 0 {
            sqlx::query(
                "INSERT INTO machine_processors (name, cursor_tx, cursor_seq, owner, lease_until, version)
                 VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(name)
            .bind(tx)
            .bind(seq)
            .bind(owner)
            .bind(millis_to_db(lease_until))
            .bind(next)
            .execute(self.turn().await?.conn()?)
            .await
        } else {
            sqlx::query(
                "UPDATE machine_processors SET cursor_tx = ?, cursor_seq = ?, owner = ?, lease_until = ?, version = ?
                 WHERE name = ? AND version = ?",
            )
            .bind(tx)
            .bind(seq)
            .bind(owner)
            .bind(millis_to_db(lease_until))
            .bind(next)
            .bind(name)
            .bind(version_to_db(super::sql::PROCESSORS, name, expected_version)?)
            .execute(self.turn().await?.conn()?)
            .await
        }
        .map_err(sqlite_error)?;
        Ok(saved.rows_affected() == 1)
    }

    async fn park(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        validate_processor(&letter.processor)?;
        let (tx, seq) = cursor_to_db(letter.cursor)?;
        sqlx::query(
            "INSERT INTO machine_dead_letters
                (processor, cursor_tx, cursor_seq, machine, id, version, error, attempts, parked_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (processor, cursor_tx, cursor_seq) DO UPDATE SET
                machine = excluded.machine, id = excluded.id, version = excluded.version, error = excluded.error,
                attempts = excluded.attempts, parked_at = excluded.parked_at",
        )
        .bind(&letter.processor)
        .bind(tx)
        .bind(seq)
        .bind(&letter.machine)
        .bind(&letter.id)
        .bind(version_to_db(&letter.machine, &letter.id, letter.version)?)
        .bind(&letter.error)
        .bind(i64::from(letter.attempts))
        .bind(millis_to_db(letter.parked_at))
        .execute(self.turn().await?.conn()?)
        .await
        .map_err(sqlite_error)?;
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
        let rows = sqlx::query(
            "SELECT cursor_tx, cursor_seq, machine, id, version, error, attempts, parked_at FROM machine_dead_letters
             WHERE processor = ? AND (cursor_tx, cursor_seq) > (?, ?) ORDER BY cursor_tx, cursor_seq LIMIT ?",
        )
        .bind(processor)
        .bind(tx)
        .bind(seq)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(sqlite_error)?;
        rows.iter().map(|row| super::sql::dead_letter(row, processor, sqlite_error)).collect()
    }

    async fn unpark(&self, processor: &str, cursor: Cursor) -> Result<bool, StoreError> {
        validate_processor(processor)?;
        let (tx, seq) = cursor_to_db(cursor)?;
        let removed =
            sqlx::query("DELETE FROM machine_dead_letters WHERE processor = ? AND cursor_tx = ? AND cursor_seq = ?")
                .bind(processor)
                .bind(tx)
                .bind(seq)
                .execute(self.turn().await?.conn()?)
                .await
                .map_err(sqlite_error)?;
        Ok(removed.rows_affected() > 0)
    }
}

impl Query for Sqlite {
    async fn by_kind(
        &self,
        machine: &str,
        kind: &str,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Listed>, StoreError> {
        validate_machine(machine)?;
        // Ids are never empty, so "" sorts before every id.
        let rows = sqlx::query(
            "SELECT id, version, kind, state, updated_at, schema_version FROM machine_records
             WHERE machine = ? AND kind = ? AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(machine)
        .bind(kind)
        .bind(after_id.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(sqlite_error)?;
        rows.iter().map(|row| super::sql::listed(row, machine, sqlite_error)).collect()
    }

    async fn count(&self, machine: &str, kind: &str) -> Result<u64, StoreError> {
        validate_machine(machine)?;
        let counted: i64 = sqlx::query_scalar("SELECT count(*) FROM machine_records WHERE machine = ? AND kind = ?")
            .bind(machine)
            .bind(kind)
            .fetch_one(&self.pool)
            .await
            .map_err(sqlite_error)?;
        Ok(u64::try_from(counted).unwrap_or(0))
    }

    async fn records(&self, machine: &str, after_id: Option<&str>, limit: u32) -> Result<Vec<Listed>, StoreError> {
        validate_machine(machine)?;
        let rows = sqlx::query(
            "SELECT id, version, kind, state, updated_at, schema_version FROM machine_records
             WHERE machine = ? AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(machine)
        .bind(after_id.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(sqlite_error)?;
        rows.iter().map(|row| super::sql::listed(row, machine, sqlite_error)).collect()
    }
    async fn due(
        &self,
        machine: &str,
        now: u64,
        after: Option<(u64, &str)>,
        limit: u32,
    ) -> Result<Vec<Timer>, StoreError> {
        validate_machine(machine)?;
        // Ids are never empty, so ("" , -1) is before every position.
        let (after_due, after_id) = after.map_or((-1, ""), |(due, id)| (millis_to_db(due), id));
        let rows = sqlx::query(
            "SELECT id, version, due_at FROM machine_records
             WHERE machine = ? AND due_at IS NOT NULL AND due_at <= ? AND (due_at, id) > (?, ?)
             ORDER BY due_at, id LIMIT ?",
        )
        .bind(machine)
        .bind(millis_to_db(now))
        .bind(after_due)
        .bind(after_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(sqlite_error)?;
        rows.iter().map(|row| super::sql::timer(row, machine, sqlite_error)).collect()
    }

    async fn disarm(&self, machine: &str, id: &str, version: u64) -> Result<bool, StoreError> {
        validate_machine(machine)?;
        validate_id(id)?;
        let disarmed = sqlx::query(
            "UPDATE machine_records SET due_at = NULL
             WHERE machine = ? AND id = ? AND version = ? AND due_at IS NOT NULL",
        )
        .bind(machine)
        .bind(id)
        .bind(version_to_db(machine, id, version)?)
        .execute(self.turn().await?.conn()?)
        .await
        .map_err(sqlite_error)?;
        Ok(disarmed.rows_affected() > 0)
    }
}
