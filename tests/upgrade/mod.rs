//! Opening databases written by the previous release: the schema is migrated
//! on connect and every record and history entry reads back as it was; a
//! migration that cannot carry a row over names it and changes nothing.

use crate::conformance::{database_url, drop_schema, remove_sqlite, unique};
use machine_core::StoreError;
use machine_core::store::{Commit, Cursor, Feed, Origin, Postgres, Query, Sqlite, Store, Write};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, SqlitePool};
use std::path::{Path, PathBuf};

/// The schema of the previous release (schema version 1), verbatim.
const OLD_SQLITE_SCHEMA: &str = "
    CREATE TABLE machine_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);
    INSERT INTO machine_migrations (version, applied_at) VALUES (1, 1700000000000);
    CREATE TABLE IF NOT EXISTS machine_records (
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
    CREATE UNIQUE INDEX IF NOT EXISTS machine_history_record ON machine_history (machine, id, version);";

/// Two records with three history entries, as the previous release wrote them.
const OLD_ROWS: &str = "
    INSERT INTO machine_records VALUES ('Order', 'o-1', 2, 'Paid', '{\"paid\":10}', 1700000000002);
    INSERT INTO machine_records VALUES ('Order', 'o''2 \"quoted\"', 1, 'Draft', '{}', 1700000000003);
    INSERT INTO machine_history (machine, id, version, command, kind, state, at)
        VALUES ('Order', 'o-1', 1, '\"Create\"', 'Draft', '{}', 1700000000001);
    INSERT INTO machine_history (machine, id, version, command, kind, state, at)
        VALUES ('Order', 'o-1', 2, '{\"Pay\":10}', 'Paid', '{\"paid\":10}', 1700000000002);
    INSERT INTO machine_history (machine, id, version, command, kind, state, at)
        VALUES ('Order', 'o''2 \"quoted\"', 1, '\"Create\"', 'Draft', '{}', 1700000000003);";

/// A database file laid out by the previous release, with `rows` in it.
async fn old_sqlite_file(rows: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("{}.db", unique("machine-old")));
    let pool = raw_pool(&path).await;
    sqlx::raw_sql(AssertSqlSafe(format!("{OLD_SQLITE_SCHEMA}{rows}"))).execute(&pool).await.expect("old schema");
    pool.close().await;
    path
}

/// A plain connection to the file, bypassing the store, as the old release
/// opened it (WAL).
async fn raw_pool(path: &Path) -> SqlitePool {
    let options =
        SqliteConnectOptions::new().filename(path).create_if_missing(true).journal_mode(SqliteJournalMode::Wal);
    SqlitePoolOptions::new().max_connections(1).connect_with(options).await.expect("open raw")
}

/// Everything in the file, exactly: the schema and every row of every table.
async fn dump(path: &Path) -> Vec<String> {
    let pool = raw_pool(path).await;
    let mut dump: Vec<String> =
        sqlx::query_scalar("SELECT type || ' ' || name || ': ' || coalesce(sql, '') FROM sqlite_master ORDER BY name")
            .fetch_all(&pool)
            .await
            .unwrap();
    for (table, columns) in [
        ("machine_migrations", "version, applied_at"),
        ("machine_records", "machine, id, version, kind, state, updated_at"),
        ("machine_history", "seq, machine, id, version, command, kind, state, at"),
    ] {
        let exact: Vec<_> = columns.split(", ").map(|c| format!("typeof({c}) || ':' || hex({c})")).collect();
        let sql = format!("SELECT '{table} ' || {} FROM {table} ORDER BY 1", exact.join(" || '|' || "));
        dump.extend(sqlx::query_scalar::<_, String>(AssertSqlSafe(sql)).fetch_all(&pool).await.unwrap());
    }
    pool.close().await;
    dump
}

#[tokio::test]
async fn an_old_sqlite_file_is_upgraded_with_its_records_and_history_intact() {
    let path = old_sqlite_file(OLD_ROWS).await;
    let store = Sqlite::open(&path).await.expect("the old file opens and is migrated");
    let quoted = "o'2 \"quoted\"";

    let paid = store.load("Order", "o-1").await.unwrap().unwrap();
    assert_eq!(
        (paid.version, &*paid.kind, &*paid.state, paid.updated_at),
        (2, "Paid", "{\"paid\":10}", 1_700_000_000_002)
    );
    let draft = store.load("Order", quoted).await.unwrap().unwrap();
    assert_eq!((draft.version, &*draft.kind, &*draft.state, draft.updated_at), (1, "Draft", "{}", 1_700_000_000_003));

    let history = store.history("Order", "o-1").await.unwrap();
    let summary: Vec<_> = history
        .iter()
        .map(|c| (c.cursor.seq, c.version, &*c.command, c.before.as_deref(), &*c.after, c.origin, c.at))
        .collect();
    assert_eq!(
        summary,
        [
            (1, 1, "\"Create\"", None, "{}", Origin::Command, 1_700_000_000_001),
            (2, 2, "{\"Pay\":10}", Some("{}"), "{\"paid\":10}", Origin::Command, 1_700_000_000_002),
        ],
        "old entries read as written, by commands"
    );
    let feed = store.changes(Cursor::START, 10).await.unwrap();
    assert_eq!(feed.iter().map(|c| (&*c.id, c.version)).collect::<Vec<_>>(), [("o-1", 1), ("o-1", 2), (quoted, 1)]);
    let drafts = store.by_kind("Order", "Draft", None, 10).await.unwrap();
    assert_eq!(drafts.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(), [quoted], "the kind index answers");

    // The upgraded schema: the CHECK holds, the index is back, both
    // migrations are recorded.
    let pool = store.pool();
    let zero = sqlx::query("UPDATE machine_records SET version = 0 WHERE id = 'o-1'").execute(pool).await;
    assert!(zero.is_err(), "CHECK (version > 0) refuses version 0: {zero:?}");
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'machine_records' AND sql IS NOT NULL",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(indexes, ["machine_records_kind"]);
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM machine_migrations ORDER BY version").fetch_all(pool).await.unwrap();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6]);
    assert_eq!((paid.schema, draft.schema), (1, 1), "rows from before schema versions read as version 1");

    // Writing carries on from the old versions and sequence numbers.
    let write = Write {
        machine: "Order",
        id: "o-1",
        expected: 2,
        kind: "Shipped",
        state: "{}".into(),
        command: "\"Ship\"",
        origin: Origin::Recovery,
        schema: 1,
    };
    store.commit(Commit::write(write)).await.unwrap();
    let last = store.history("Order", "o-1").await.unwrap().pop().unwrap();
    assert_eq!((last.cursor.seq, last.version, last.origin), (4, 3, Origin::Recovery));
    store.pool().close().await;

    // Opening again applies nothing twice.
    let before = dump(&path).await;
    let again = Sqlite::open(&path).await.unwrap();
    again.pool().close().await;
    assert_eq!(dump(&path).await, before);
    remove_sqlite(&path);
}

#[tokio::test]
async fn an_upgrade_blocked_by_an_invalid_version_names_the_record_and_changes_nothing() {
    let rows = format!(
        "{OLD_ROWS}
        INSERT INTO machine_records VALUES ('Order', 'zero', 0, 'Draft', '{{}}', 1700000000004);
        INSERT INTO machine_records VALUES ('Order', 'negative', -3, 'Draft', '{{}}', 1700000000005);"
    );
    let path = old_sqlite_file(&rows).await;
    let before = dump(&path).await;

    let error = Sqlite::open(&path).await.unwrap_err();
    let StoreError::Corrupt { machine, id, reason } = &error else { panic!("not a Corrupt error: {error:?}") };
    assert_eq!((machine.as_str(), id.as_str()), ("Order", "negative"), "the first such record, by id");
    assert!(reason.starts_with("stored version -3 is not a valid version (versions start at 1)"), "{reason}");
    assert!(reason.contains("CHECK (version > 0)"), "{reason}");
    assert!(!error.is_retryable());
    assert_eq!(dump(&path).await, before, "the file is exactly as it was");

    // Once the rows are repaired, the upgrade goes through.
    let pool = raw_pool(&path).await;
    sqlx::query("UPDATE machine_records SET version = 1 WHERE version < 1").execute(&pool).await.unwrap();
    pool.close().await;
    let store = Sqlite::open(&path).await.expect("upgraded after the repair");
    assert_eq!(store.load("Order", "zero").await.unwrap().unwrap().version, 1);
    assert_eq!(store.load("Order", "o-1").await.unwrap().unwrap().version, 2);
    store.pool().close().await;
    remove_sqlite(&path);
}

#[tokio::test]
#[cfg_attr(not(postgres_tests), ignore = "set DATABASE_URL to run the PostgreSQL tests")]
async fn an_old_postgres_schema_gains_origins_and_keeps_its_history() {
    let url = database_url();
    let schema = unique("mctest");
    let connect = || Postgres::options().schema(schema.clone()).max_connections(2).connect(&url);
    let store = connect().await.unwrap();
    // Back to the previous release's schema, with its history rows.
    let old = format!(
        "ALTER TABLE {schema}.machine_history DROP COLUMN origin;
         DELETE FROM {schema}.machine_migrations WHERE version = 2;
         INSERT INTO {schema}.machine_records (machine, id, version, kind, state) VALUES ('Order', 'o-1', 2, 'Paid', '{{}}');
         INSERT INTO {schema}.machine_history (machine, id, version, command, kind, state)
             VALUES ('Order', 'o-1', 1, '\"Create\"', 'Draft', '{{}}'), ('Order', 'o-1', 2, '\"Pay\"', 'Paid', '{{}}');"
    );
    sqlx::raw_sql(AssertSqlSafe(old)).execute(store.pool()).await.unwrap();
    store.pool().close().await;

    let store = connect().await.expect("the old schema is migrated");
    let history = store.history("Order", "o-1").await.unwrap();
    let summary: Vec<_> = history.iter().map(|c| (c.version, c.origin)).collect();
    assert_eq!(summary, [(1, Origin::Command), (2, Origin::Command)], "old entries read as commands");
    let write = Write {
        machine: "Order",
        id: "o-1",
        expected: 2,
        kind: "Shipped",
        state: "{}".into(),
        command: "\"Ship\"",
        origin: Origin::Recovery,
        schema: 1,
    };
    store.commit(Commit::write(write)).await.unwrap();
    assert_eq!(store.history("Order", "o-1").await.unwrap().pop().unwrap().origin, Origin::Recovery);
    drop_schema(&store).await;
}
