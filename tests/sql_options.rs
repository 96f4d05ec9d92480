//! The SQL stores' options at the service boundary: every wait is bounded
//! and fails typed and retryable within its bound (a closed port, a server
//! that never answers, an exhausted pool, a statement stuck on a lock, a
//! busy SQLite file), and the schema can be left to a migration tool: the
//! exported SQL (run by hand or through `sqlx::migrate`) is complete, a role
//! with DML rights only works against it, and an unmigrated database is a
//! typed error naming what is missing.
//!
//! The timing assertions are the behaviour ("fails within 3× its bound"),
//! not measurements: `examples/time_to_fail.rs` measures.

use machine_core::StoreError;
use machine_core::store::{Commit, Feed, Origin, Postgres, Sqlite, Store, Wait, Write};
use sqlx::migrate::{Migration as SqlxMigration, MigrationType, Migrator};
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, SqlSafeStr};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_millis(500);

static UNIQUE: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), UNIQUE.fetch_add(1, Ordering::Relaxed))
}

fn database_url() -> String {
    std::env::var("DATABASE_URL").ok().filter(|url| !url.is_empty()).expect("set DATABASE_URL to run this test")
}

fn write(id: &str, expected: u64) -> Write<'_> {
    Write {
        machine: "Order",
        id,
        expected,
        kind: "Open",
        state: format!("{{\"n\":{expected}}}"),
        command: "\"Bump\"",
        origin: Origin::Command,
        schema: 1,
        due: None,
    }
}

/// Runs `operation`, which must fail; returns the error and how long it took.
async fn failing<T: std::fmt::Debug>(operation: impl Future<Output = Result<T, StoreError>>) -> (StoreError, Duration) {
    let started = Instant::now();
    let error = operation.await.expect_err("must fail");
    (error, started.elapsed())
}

/// `error` is a retryable timeout of `wait`, reported within 3× `bound`.
fn assert_timeout(error: &StoreError, took: Duration, wait: Wait, bound: Duration) {
    assert!(error.is_retryable(), "{error}");
    let timeout = error.timeout().unwrap_or_else(|| panic!("not a timeout: {error:?}"));
    assert_eq!(timeout.wait(), wait, "{error}");
    assert!(took < bound * 3, "{wait:?} took {took:?}, bound {bound:?}");
}

// ---------------------------------------------------------------------------
// PostgreSQL: what needs no server.

#[tokio::test]
async fn connecting_to_a_closed_port_fails_at_once_and_retryable() {
    let options = Postgres::options().connect_timeout(BOUND);
    let (error, took) = failing(options.connect("postgres://postgres@127.0.0.1:1/test")).await;
    assert!(error.is_retryable(), "{error}");
    assert!(matches!(error, StoreError::Backend { .. }), "{error:?}");
    assert!(took < BOUND * 3, "{took:?}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_on_connect() {
    // Accepts connections and never says a word: the start-up message waits
    // for an answer that never comes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let url = format!("postgres://postgres@127.0.0.1:{port}/test");
    let (error, took) = failing(Postgres::options().connect_timeout(BOUND).connect(&url)).await;
    assert_timeout(&error, took, Wait::Connect, BOUND);
    assert_eq!(error.timeout().and_then(machine_core::store::Timeout::limit), Some(BOUND));
    assert!(error.to_string().contains("timed out connecting to the database after 500ms"), "{error}");
    silent.abort();
}

#[test]
fn invalid_schemas_are_refused_before_any_sql_is_built() {
    let error = Postgres::options().schema("x; DROP TABLE y").migrations().unwrap_err();
    assert!(matches!(error, StoreError::InvalidKey { what: "schema name", .. }), "{error:?}");
}

// ---------------------------------------------------------------------------
// PostgreSQL: against `DATABASE_URL`.

async fn drop_schema(url: &str, schema: &str) {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))).execute(&mut conn).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(postgres_tests), ignore = "set DATABASE_URL to run the PostgreSQL tests")]
async fn an_exhausted_pool_times_out_on_acquire() {
    let (url, schema) = (database_url(), unique("mcwait"));
    let store =
        Postgres::options().schema(&schema).max_connections(2).acquire_timeout(BOUND).connect(&url).await.unwrap();
    store.commit(Commit::write(write("o-1", 0))).await.unwrap();
    let held = [store.pool().acquire().await.unwrap(), store.pool().acquire().await.unwrap()];
    let (error, took) = failing(store.load("Order", "o-1")).await;
    assert_timeout(&error, took, Wait::Acquire, BOUND);
    assert_eq!(error.timeout().and_then(machine_core::store::Timeout::limit), Some(BOUND));
    let (error, took) = failing(store.commit(Commit::write(write("o-1", 1)))).await;
    assert_timeout(&error, took, Wait::Acquire, BOUND);
    let (error, took) = failing(store.recall("Order", "o-1", "key-1")).await;
    assert_timeout(&error, took, Wait::Acquire, BOUND);
    assert_eq!(error.timeout().and_then(machine_core::store::Timeout::limit), Some(BOUND), "recall names its bound");
    drop(held);
    assert_eq!(store.load("Order", "o-1").await.unwrap().unwrap().version, 1, "nothing was written");
    drop_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(postgres_tests), ignore = "set DATABASE_URL to run the PostgreSQL tests")]
async fn a_statement_stuck_on_a_lock_times_out_and_writes_nothing() {
    let (url, schema) = (database_url(), unique("mcwait"));
    let store = Postgres::options().schema(&schema).statement_timeout(BOUND).connect(&url).await.unwrap();
    store.commit(Commit::write(write("o-1", 0))).await.unwrap();
    // Another session holds the row's lock in an open transaction.
    let mut other = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut tx = other.begin().await.unwrap();
    sqlx::query(AssertSqlSafe(format!("SELECT 1 FROM {schema}.machine_records WHERE id = 'o-1' FOR UPDATE")))
        .execute(&mut *tx)
        .await
        .unwrap();
    let (error, took) = failing(store.commit(Commit::write(write("o-1", 1)))).await;
    assert_timeout(&error, took, Wait::Statement, BOUND);
    // A multi-record commit: the lock wait inside its transaction too.
    let two = Commit { writes: vec![write("o-1", 1), write("o-2", 0)], checks: vec![], keys: vec![] };
    let (error, took) = failing(store.commit(two)).await;
    assert_timeout(&error, took, Wait::Statement, BOUND);
    // The pool's connections carry the setting for your own queries too.
    let slept = sqlx::query("SELECT pg_sleep(5)").execute(store.pool()).await.unwrap_err();
    assert_eq!(slept.as_database_error().and_then(sqlx::error::DatabaseError::code).as_deref(), Some("57014"));
    tx.rollback().await.unwrap();
    assert_eq!(store.load("Order", "o-1").await.unwrap().unwrap().version, 1);
    assert_eq!(store.load("Order", "o-2").await.unwrap(), None);
    store.commit(Commit::write(write("o-1", 1))).await.expect("works once the lock is gone");
    drop_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(postgres_tests), ignore = "set DATABASE_URL to run the PostgreSQL tests")]
async fn migrations_off_against_an_unmigrated_schema_name_what_is_missing() {
    let (url, schema) = (database_url(), unique("mcmig"));
    let options = Postgres::options().schema(&schema).migrate(false);
    let error = options.clone().connect(&url).await.unwrap_err();
    let everything: Vec<u32> = options.migrations().unwrap().iter().map(|m| m.version).collect();
    assert!(everything.len() >= 2);
    assert!(
        matches!(&error, StoreError::Unmigrated { schema: s, missing } if *s == schema && *missing == everything),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let created: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_namespace WHERE nspname = $1")
        .bind(&schema)
        .fetch_optional(&mut conn)
        .await
        .unwrap();
    assert_eq!(created, None, "migrations off ran no DDL");
    // The first migration's SQL, run by hand: the rest is named missing.
    let migrations = options.migrations().unwrap();
    sqlx::raw_sql(AssertSqlSafe(migrations[0].sql.clone())).execute(&mut conn).await.unwrap();
    let error = options.clone().connect(&url).await.unwrap_err();
    assert!(matches!(&error, StoreError::Unmigrated { missing, .. } if *missing == everything[1..]), "{error:?}");
    assert!(error.to_string().contains(&format!("schema {schema} lacks migrations 2")), "{error}");
    for migration in &migrations[1..] {
        let mut tx = conn.begin().await.unwrap();
        sqlx::raw_sql(AssertSqlSafe(migration.sql.clone())).execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
    }
    let store = options.connect(&url).await.expect("the exported SQL is the whole schema");
    store.commit(Commit::write(write("o-1", 0))).await.unwrap();
    store.check_schema().await.unwrap();
    store.migrate().await.expect("nothing left to apply");
    drop_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(postgres_tests), ignore = "set DATABASE_URL to run the PostgreSQL tests")]
async fn sqlx_migrate_applies_the_exported_migrations() {
    let (url, schema) = (database_url(), unique("mcsqlx"));
    let migrations = Postgres::options().schema(&schema).migrations().unwrap();
    let mut migrator = Migrator::with_migrations(
        migrations
            .into_iter()
            .map(|m| {
                let description = format!("machine_core {}", m.version).into();
                SqlxMigration::new(
                    m.version.into(),
                    description,
                    MigrationType::Simple,
                    AssertSqlSafe(m.sql).into_sql_str(),
                    false,
                )
            })
            .collect(),
    );
    // Its bookkeeping table next to ours, so tests do not share one.
    migrator.dangerous_set_table_name(format!("{schema}_sqlx_migrations"));
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    migrator.run(&pool).await.unwrap();
    let store = Postgres::options().schema(&schema).migrate(false).from_pool(pool.clone()).await.unwrap();
    store.commit(Commit::write(write("o-1", 0))).await.unwrap();
    drop_schema(&url, &schema).await;
    sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE {schema}_sqlx_migrations"))).execute(&pool).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(postgres_tests), ignore = "set DATABASE_URL to run the PostgreSQL tests")]
async fn a_role_with_dml_rights_only_works_against_a_migrated_schema() {
    let (url, schema, role) = (database_url(), unique("mcdml"), unique("mc_app"));
    // A migration job, with DDL rights, creates the schema.
    let admin = Postgres::options().schema(&schema).connect(&url).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN;
         GRANT USAGE ON SCHEMA {schema} TO {role};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role};
         GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {role};"
    )))
    .execute(admin.pool())
    .await
    .unwrap();
    let as_role = || url.parse::<PgConnectOptions>().unwrap().username(&role);

    let result = async {
        // Migrating on connect needs DDL rights: refused, not retryable.
        let refused = Postgres::options().schema(&schema).connect_with(as_role()).await.unwrap_err();
        assert!(matches!(refused, StoreError::Backend { retryable: false, .. }), "{refused:?}");
        let store = Postgres::options().schema(&schema).migrate(false).connect_with(as_role()).await?;
        store.commit(Commit::write(write("o-1", 0))).await?;
        store.commit(Commit { writes: vec![write("o-1", 1), write("o-2", 0)], checks: vec![], keys: vec![] }).await?;
        assert_eq!(store.load("Order", "o-1").await?.map(|r| r.version), Some(2));
        assert_eq!(store.history("Order", "o-1").await?.len(), 2);
        // The feed only shows transactions older than every running one;
        // these are all committed.
        assert_eq!(store.changes(machine_core::store::Cursor::START, 10).await?.len(), 3);
        // And the role really has no DDL rights.
        let ddl = sqlx::raw_sql(AssertSqlSafe(format!("CREATE TABLE {schema}.intruder (x int)")))
            .execute(store.pool())
            .await
            .unwrap_err();
        assert_eq!(ddl.as_database_error().and_then(sqlx::error::DatabaseError::code).as_deref(), Some("42501"));
        store.pool().close().await;
        Ok::<_, StoreError>(())
    }
    .await;
    drop_schema(&url, &schema).await;
    sqlx::raw_sql(AssertSqlSafe(format!("DROP OWNED BY {role}; DROP ROLE {role}")))
        .execute(admin.pool())
        .await
        .unwrap();
    result.unwrap();
}

// ---------------------------------------------------------------------------
// SQLite.

fn temp_file() -> PathBuf {
    std::env::temp_dir().join(format!("{}.db", unique("machine-options")))
}

fn remove(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writers_time_out_behind_a_lock_held_by_another_process() {
    let path = temp_file();
    let store = Sqlite::options().busy_timeout(BOUND).open(&path).await.unwrap();
    store.commit(Commit::write(write("o-1", 0))).await.unwrap();
    // Another process (here: a connection of its own) holds the write lock.
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await.unwrap();
    // One writer waits inside SQLite, the next for its turn in this process.
    let (first, second) = tokio::join!(
        failing(store.commit(Commit::write(write("o-1", 1)))),
        failing(store.commit(Commit::write(write("o-2", 0))))
    );
    for (error, took) in [first, second] {
        assert_timeout(&error, took, Wait::Lock, BOUND);
    }
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    store.commit(Commit::write(write("o-1", 1))).await.expect("works once the lock is gone");
    store.pool().close().await;
    remove(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_an_exhausted_pool_times_out_on_acquire() {
    let store = Sqlite::options().acquire_timeout(BOUND).memory().await.unwrap();
    let held = store.pool().acquire().await.unwrap();
    let (error, took) = failing(store.load("Order", "o-1")).await;
    assert_timeout(&error, took, Wait::Acquire, BOUND);
    let (error, took) = failing(store.commit(Commit::write(write("o-1", 0)))).await;
    assert_timeout(&error, took, Wait::Acquire, BOUND);
    drop(held);
    store.commit(Commit::write(write("o-1", 0))).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_migrations_off_names_what_is_missing_and_the_exported_sql_is_the_schema() {
    let path = temp_file();
    let options = Sqlite::options().migrate(false);
    let everything: Vec<u32> = Sqlite::migrations().iter().map(|m| m.version).collect();
    let error = options.clone().open(&path).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::Unmigrated { schema, missing } if schema == "main" && *missing == everything),
        "{error:?}"
    );
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_master").fetch_one(&pool).await.unwrap();
    assert_eq!(tables, 0, "migrations off wrote nothing");
    let migrations = options.migrations();
    sqlx::raw_sql(AssertSqlSafe(migrations[0].sql.clone())).execute(&pool).await.unwrap();
    let error = options.clone().from_pool(pool.clone()).await.unwrap_err();
    assert!(matches!(&error, StoreError::Unmigrated { missing, .. } if *missing == everything[1..]), "{error:?}");
    for migration in &migrations[1..] {
        let mut tx = pool.begin().await.unwrap();
        sqlx::raw_sql(AssertSqlSafe(migration.sql.clone())).execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
    }
    let store = options.from_pool(pool.clone()).await.expect("the exported SQL is the whole schema");
    store.commit(Commit::write(write("o-1", 0))).await.unwrap();
    store.migrate().await.expect("nothing left to apply");
    assert_eq!(store.history("Order", "o-1").await.unwrap().len(), 1);
    pool.close().await;
    remove(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sqlx_migrate_applies_the_exported_migrations() {
    let migrator = Migrator::with_migrations(
        Sqlite::migrations()
            .into_iter()
            .map(|m| {
                let description = format!("machine_core {}", m.version).into();
                SqlxMigration::new(
                    m.version.into(),
                    description,
                    MigrationType::Simple,
                    AssertSqlSafe(m.sql).into_sql_str(),
                    false,
                )
            })
            .collect(),
    );
    let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect("sqlite::memory:").await.unwrap();
    migrator.run(&pool).await.unwrap();
    let store = Sqlite::options().migrate(false).from_pool(pool).await.unwrap();
    store.commit(Commit::write(write("o-1", 0))).await.unwrap();
}
