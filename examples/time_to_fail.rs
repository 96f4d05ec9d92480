//! How long each bounded wait of the SQL stores takes to fail, with the
//! default options, in milliseconds (the figures in docs/stores.md,
//! "Timeouts").
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo run --release -p machine-workspace --example time_to_fail
//! ```
//!
//! Without `DATABASE_URL` only the cases that need no server run.

use machine_core::StoreError;
use machine_core::store::{Commit, Origin, Postgres, Sqlite, Store, Write};
use sqlx::{AssertSqlSafe, Connection};
use std::future::Future;
use std::time::Instant;

fn write(id: &str, expected: u64) -> Write<'_> {
    Write {
        machine: "Order",
        id,
        expected,
        kind: "Open",
        state: "{}".to_owned(),
        command: "\"Bump\"",
        origin: Origin::Command,
        schema: 1,
        due: None,
    }
}

/// Prints how long `operation` took and how it failed.
async fn measure<T>(case: &str, operation: impl Future<Output = Result<T, StoreError>>) {
    let started = Instant::now();
    let result = operation.await;
    let millis = started.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(_) => println!("{case:<52} {millis:>8.0} ms  did not fail"),
        Err(error) => {
            let kind = error.timeout().map_or_else(|| "backend".to_owned(), |t| format!("{:?}", t.wait()));
            println!("{case:<52} {millis:>8.0} ms  {kind:<9} retryable={}", error.is_retryable());
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("{:<52} {:>11}  error", "case (default options)", "time to fail");
    measure("postgres: connect, closed port", Postgres::connect("postgres://postgres@127.0.0.1:1/test")).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let silent = format!("postgres://postgres@127.0.0.1:{}/test", listener.local_addr()?.port());
    let listening = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            sockets.push(socket);
        }
    });
    measure("postgres: connect, server accepts and never answers", Postgres::connect(&silent)).await;
    listening.abort();

    if let Some(url) = std::env::var("DATABASE_URL").ok().filter(|url| !url.is_empty()) {
        let schema = format!("mc_time_to_fail_{}", std::process::id());
        let store = Postgres::options().schema(&schema).max_connections(2).connect(&url).await?;
        store.commit(Commit::write(write("o-1", 0))).await?;
        let held = [store.pool().acquire().await?, store.pool().acquire().await?];
        measure("postgres: load, pool exhausted", store.load("Order", "o-1")).await;
        drop(held);

        let mut other = sqlx::PgConnection::connect(&url).await?;
        let mut tx = other.begin().await?;
        sqlx::query(AssertSqlSafe(format!("SELECT 1 FROM {schema}.machine_records FOR UPDATE")))
            .execute(&mut *tx)
            .await?;
        measure("postgres: commit, row locked by another session", store.commit(Commit::write(write("o-1", 1)))).await;
        tx.rollback().await?;
        sqlx::raw_sql(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE"))).execute(&mut other).await?;
    } else {
        println!("(set DATABASE_URL for the PostgreSQL pool and statement cases)");
    }

    let path = std::env::temp_dir().join(format!("machine-time-to-fail-{}.db", std::process::id()));
    let store = Sqlite::open(&path).await?;
    store.commit(Commit::write(write("o-1", 0))).await?;
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await?;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await?;
    measure("sqlite: commit, write lock held by another process", store.commit(Commit::write(write("o-1", 1)))).await;
    sqlx::query("ROLLBACK").execute(&mut other).await?;
    let mut connections = Vec::new();
    for _ in 0..8 {
        connections.push(store.pool().acquire().await?);
    }
    measure("sqlite: load, pool exhausted", store.load("Order", "o-1")).await;
    drop(connections);
    store.pool().close().await;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
    Ok(())
}
