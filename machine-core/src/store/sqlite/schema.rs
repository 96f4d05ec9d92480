//! The SQLite schema and its versioned migrations, applied on open under the
//! write lock, all of them in one transaction: a file is upgraded completely
//! or, when a migration is refused, left exactly as it was.

use super::sqlite_error;
use crate::error::StoreError;
use crate::store::sql::now_millis;
use sqlx::{Row, SqlitePool};

/// One schema version.
struct Migration {
    /// Recorded in `machine_migrations` once applied.
    version: i64,
    /// A query for the first row the script cannot carry over, with columns
    /// `machine`, `id` and `reason`: if it finds one, the upgrade stops with
    /// [`StoreError::Corrupt`] naming that record instead of failing midway
    /// with a bare constraint error.
    refuse: Option<&'static str>,
    /// The statements.
    script: &'static str,
}

/// Schema versions, applied in order, each once.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        refuse: None,
        script: "CREATE TABLE IF NOT EXISTS machine_records (
            machine TEXT NOT NULL,
            id TEXT NOT NULL,
            version INTEGER NOT NULL,
            kind TEXT NOT NULL,
            state TEXT NOT NULL,
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (machine, id)
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS machine_records_kind ON machine_records (machine, kind, id);
        CREATE TABLE IF NOT EXISTS machine_history (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            machine TEXT NOT NULL,
            id TEXT NOT NULL,
            version INTEGER NOT NULL,
            command TEXT NOT NULL,
            kind TEXT NOT NULL,
            state TEXT NOT NULL,
            at INTEGER NOT NULL
        );
        CREATE UNIQUE INDEX IF NOT EXISTS machine_history_record ON machine_history (machine, id, version);",
    },
    // SQLite cannot add a CHECK to a table, so the table is rebuilt: the
    // SQLite manual's create-copy-drop-rename procedure. Nothing references
    // `machine_records`, so foreign keys need no care.
    Migration {
        version: 2,
        refuse: Some(
            "SELECT CAST(machine AS TEXT) AS machine, CAST(id AS TEXT) AS id,
                    'stored version ' || quote(version) || ' is not a valid version (versions start at 1); '
                    || 'the upgrade to schema version 2 adds CHECK (version > 0), so repair or delete this row '
                    || 'and open the store again' AS reason
             FROM machine_records WHERE version IS NULL OR NOT (version > 0) ORDER BY machine, id LIMIT 1",
        ),
        script: "CREATE TABLE machine_records_v2 (
            machine TEXT NOT NULL,
            id TEXT NOT NULL,
            version INTEGER NOT NULL CHECK (version > 0),
            kind TEXT NOT NULL,
            state TEXT NOT NULL,
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (machine, id)
        ) WITHOUT ROWID;
        INSERT INTO machine_records_v2 (machine, id, version, kind, state, updated_at)
            SELECT machine, id, version, kind, state, updated_at FROM machine_records;
        DROP TABLE machine_records;
        ALTER TABLE machine_records_v2 RENAME TO machine_records;
        CREATE INDEX machine_records_kind ON machine_records (machine, kind, id);",
    },
    // Rows from before origins existed were all written by commands.
    Migration {
        version: 3,
        refuse: None,
        script: "ALTER TABLE machine_history ADD COLUMN origin TEXT NOT NULL DEFAULT 'command';",
    },
    // Idempotency keys, written in the commits they name.
    Migration {
        version: 4,
        refuse: None,
        script: "CREATE TABLE machine_keys (
            machine TEXT NOT NULL,
            id TEXT NOT NULL,
            key TEXT NOT NULL,
            fingerprint INTEGER NOT NULL,
            version INTEGER NOT NULL,
            kind TEXT,
            state TEXT,
            at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            PRIMARY KEY (machine, id, key)
        ) WITHOUT ROWID;
        CREATE INDEX machine_keys_expiry ON machine_keys (expires_at);",
    },
    // The machine's schema version that wrote each state and command
    // (`Machine::SCHEMA`). Rows from before it was stored were written by
    // machines that had no other version than 1.
    Migration {
        version: 5,
        refuse: None,
        script: "ALTER TABLE machine_records ADD COLUMN schema_version INTEGER NOT NULL DEFAULT 1;
        ALTER TABLE machine_history ADD COLUMN schema_version INTEGER NOT NULL DEFAULT 1;",
    },
    // Retention. A removed record's history leaves `machine_history` (so
    // the id can start afresh, and the unique index on `(machine, id,
    // version)` stays as it is) for `machine_removed`, keeping its sequence
    // numbers, with the removal entry: the feed reads both tables in one
    // order, so a consumer behind still sees every change. `removal` is the
    // removal entry's `seq`, telling one removed incarnation of an id from
    // the next. `machine_pruned` holds the last feed position pruned, so a
    // cursor behind it is refused instead of silently skipping.
    Migration {
        version: 6,
        refuse: None,
        script: "CREATE TABLE machine_removed (
            seq INTEGER PRIMARY KEY,
            removal INTEGER NOT NULL,
            machine TEXT NOT NULL,
            id TEXT NOT NULL,
            version INTEGER NOT NULL,
            command TEXT NOT NULL,
            origin TEXT NOT NULL,
            kind TEXT NOT NULL,
            state TEXT NOT NULL,
            at INTEGER NOT NULL,
            schema_version INTEGER NOT NULL
        );
        CREATE INDEX machine_removed_entry ON machine_removed (removal, version);
        CREATE TABLE machine_pruned (
            one INTEGER PRIMARY KEY CHECK (one = 1),
            seq INTEGER NOT NULL
        );
        INSERT INTO machine_pruned (one, seq) VALUES (1, 0);",
    },
    // When each record's state is due (`State::due`), indexed for sweepers:
    // partial, so records without a timer cost the index nothing.
    Migration {
        version: 7,
        refuse: None,
        script: "ALTER TABLE machine_records ADD COLUMN due_at INTEGER;
        CREATE INDEX machine_records_due ON machine_records (machine, due_at, id) WHERE due_at IS NOT NULL;",
    },
    // Change-feed processors: a checkpoint and lease per name, compared
    // and set by version, and the entries their handlers parked. Cursors
    // are kept as their two integers, so dead letters sort in feed order.
    Migration {
        version: 8,
        refuse: None,
        script: "CREATE TABLE machine_processors (
            name TEXT NOT NULL PRIMARY KEY,
            cursor_tx INTEGER NOT NULL,
            cursor_seq INTEGER NOT NULL,
            owner TEXT NOT NULL,
            lease_until INTEGER NOT NULL,
            version INTEGER NOT NULL CHECK (version > 0)
        ) WITHOUT ROWID;
        CREATE TABLE machine_dead_letters (
            processor TEXT NOT NULL,
            cursor_tx INTEGER NOT NULL,
            cursor_seq INTEGER NOT NULL,
            machine TEXT NOT NULL,
            id TEXT NOT NULL,
            version INTEGER NOT NULL,
            error TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            parked_at INTEGER NOT NULL,
            PRIMARY KEY (processor, cursor_tx, cursor_seq)
        ) WITHOUT ROWID;",
    },
];

/// The table that records applied versions, created if missing.
const SETUP: &str =
    "CREATE TABLE IF NOT EXISTS machine_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)";

/// Every migration as SQL that is complete on its own: the setup, the
/// script, and the row recording its version (at the current time in
/// milliseconds, as the store records it). Without the `refuse` checks:
/// run by another tool, a row the script cannot carry over fails it with
/// the database's constraint error instead.
pub(super) fn exported() -> Vec<crate::store::Migration> {
    MIGRATIONS
        .iter()
        .map(|migration| crate::store::Migration {
            version: u32::try_from(migration.version).unwrap_or(u32::MAX),
            sql: format!(
                "{SETUP};\n{script}\nINSERT INTO machine_migrations (version, applied_at) \
                 VALUES ({version}, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));\n",
                script = migration.script.trim_end(),
                version = migration.version,
            ),
        })
        .collect()
}

/// Checks, without writing, that every migration this version knows is
/// recorded: [`StoreError::Unmigrated`] naming the missing ones if not (all
/// of them when there is no `machine_migrations` table). Versions this
/// version does not know (a newer release migrated first) are accepted.
pub(super) async fn check(pool: &SqlitePool) -> Result<(), StoreError> {
    let table: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'machine_migrations'")
            .fetch_optional(pool)
            .await
            .map_err(sqlite_error)?;
    let applied: Vec<i64> = if table.is_some() {
        sqlx::query_scalar("SELECT version FROM machine_migrations").fetch_all(pool).await.map_err(sqlite_error)?
    } else {
        Vec::new()
    };
    let missing: Vec<u32> = MIGRATIONS
        .iter()
        .filter(|migration| !applied.contains(&migration.version))
        .map(|migration| u32::try_from(migration.version).unwrap_or(u32::MAX))
        .collect();
    if missing.is_empty() { Ok(()) } else { Err(StoreError::Unmigrated { schema: "main".to_owned(), missing }) }
}

/// Applies the migrations not yet recorded, under the write lock, so
/// processes opening the same file at once apply each exactly once.
pub(super) async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    // Dropped unfinished on any error, the transaction rolls back every
    // migration of this call: the file stays as it was.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(sqlite_error)?;
    sqlx::query(SETUP).execute(&mut *tx).await.map_err(sqlite_error)?;
    for migration in MIGRATIONS {
        let applied = sqlx::query("SELECT 1 FROM machine_migrations WHERE version = ?")
            .bind(migration.version)
            .fetch_optional(&mut *tx)
            .await
            .map_err(sqlite_error)?;
        if applied.is_some() {
            continue;
        }
        if let Some(refuse) = migration.refuse
            && let Some(row) = sqlx::query(refuse).fetch_optional(&mut *tx).await.map_err(sqlite_error)?
        {
            let text = |column: &str| row.try_get::<Option<String>, _>(column).ok().flatten().unwrap_or_default();
            return Err(StoreError::Corrupt { machine: text("machine"), id: text("id"), reason: text("reason") });
        }
        sqlx::raw_sql(migration.script).execute(&mut *tx).await.map_err(sqlite_error)?;
        sqlx::query("INSERT INTO machine_migrations (version, applied_at) VALUES (?, ?)")
            .bind(migration.version)
            .bind(now_millis())
            .execute(&mut *tx)
            .await
            .map_err(sqlite_error)?;
    }
    tx.commit().await.map_err(sqlite_error)
}
