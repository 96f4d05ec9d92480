//! Running, exporting and checking the schema's migrations (the list itself
//! is in `schema.rs`): applied on connect by default; exported as SQL for a
//! service whose role may not run DDL, which then connects with migrations
//! off and only checks that the schema is current.

use super::{pg_error, schema};
use crate::error::StoreError;
use crate::store::Migration;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// The schema and the table that records applied versions, both created if
/// missing.
fn setup(schema: &str) -> String {
    format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.machine_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
}

/// Every migration as SQL that is complete on its own: the setup, the
/// script, and the row recording its version.
pub(super) fn exported(schema: &str) -> Vec<Migration> {
    let setup = setup(schema);
    schema::migrations(schema)
        .into_iter()
        .map(|(version, script)| Migration {
            version: version.unsigned_abs(),
            sql: format!(
                "{setup};\n{script};\nINSERT INTO {schema}.machine_migrations (version) VALUES ({version});\n"
            ),
        })
        .collect()
}

/// Applies the migrations not yet recorded, in one transaction, under an
/// advisory lock per schema: instances that start together apply each
/// migration once. Without a statement timeout: a migration may
/// legitimately take long on a big table, and waits for the lock while
/// another instance migrates.
pub(super) async fn migrate(conn: &mut PgConnection, schema: &str) -> Result<(), StoreError> {
    let mut tx = conn.begin().await.map_err(pg_error)?;
    sqlx::query("SET LOCAL statement_timeout = 0").execute(&mut *tx).await.map_err(pg_error)?;
    // One migrator per schema at a time; the others wait, then find the
    // work done.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('machine_core:migrate:' || $1))")
        .bind(schema)
        .execute(&mut *tx)
        .await
        .map_err(pg_error)?;
    sqlx::raw_sql(AssertSqlSafe(setup(schema))).execute(&mut *tx).await.map_err(pg_error)?;
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

/// Checks, without DDL, that every migration this version knows is
/// recorded: [`StoreError::Unmigrated`] naming the missing ones if not (all
/// of them when the schema or its `machine_migrations` table does not exist).
/// Versions recorded that this version does not know (a newer release
/// migrated first) are accepted: migrations only add.
pub(super) async fn check(conn: &mut PgConnection, schema: &str) -> Result<(), StoreError> {
    let applied: Vec<i32> =
        match sqlx::query_scalar(AssertSqlSafe(format!("SELECT version FROM {schema}.machine_migrations")))
            .fetch_all(conn)
            .await
        {
            Ok(applied) => applied,
            // undefined_table, invalid_schema_name: nothing was ever applied.
            Err(sqlx::Error::Database(db)) if matches!(db.code().as_deref(), Some("42P01" | "3F000")) => Vec::new(),
            Err(error) => return Err(pg_error(error)),
        };
    let missing: Vec<u32> = schema::migrations(schema)
        .iter()
        .filter(|(version, _)| !applied.contains(version))
        .map(|(version, _)| version.unsigned_abs())
        .collect();
    if missing.is_empty() { Ok(()) } else { Err(StoreError::Unmigrated { schema: schema.to_owned(), missing }) }
}
