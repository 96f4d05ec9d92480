//! Commit throughput of the durable stores through the runner, side by side
//! with hand-written SQL on the same driver and pool:
//!
//! - distinct ids (1 and 16 writers): a raw compare-and-set loop issuing the
//!   same statements the store issues (load; one `UPDATE … WHERE version = $3`
//!   feeding the history `INSERT`), decoding and encoding the same JSON;
//! - one hot record (32 writers): `SELECT … FOR UPDATE` serial execution.
//!
//! `cargo bench --bench stores` (PostgreSQL rows need `DATABASE_URL`).

// Rates are computed from counts far below 2^52.
#![allow(clippy::cast_precision_loss)]

mod common;

use common::{Account, Accounts, DEPOSIT};
use machine_core::store::{Postgres, Sqlite};
use machine_core::{Machine, Runner, State};
use sqlx::{AssertSqlSafe, PgPool, SqlitePool};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const RUN: Duration = Duration::from_secs(3);

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        println!("{:<44} {:>12} {:>12} {:>7}", "workload (3 s each)", "baseline/s", "runner/s", "ratio");
        sqlite_rows().await;
        match std::env::var("DATABASE_URL") {
            Ok(url) => postgres_rows(&url).await,
            Err(_) => println!("(PostgreSQL rows skipped: DATABASE_URL is not set)"),
        }
    });
}

fn report(workload: &str, baseline: f64, runner: f64) {
    println!("{workload:<44} {baseline:>12.0} {runner:>12.0} {:>6.2}x", runner / baseline);
}

/// Runs `writers` tasks calling `op(writer, n)` until `RUN` elapses; commits/s.
async fn throughput<F, Fut>(writers: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let (op, done) = (op.clone(), done.clone());
            tokio::spawn(async move {
                while start.elapsed() < RUN {
                    op(writer).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer");
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn next(state: Option<&str>) -> (Account, String) {
    let state = state.map_or_else(Account::initial, |json| serde_json::from_str(json).expect("valid state"));
    let Ok(next) = Accounts::transition(&(), &DEPOSIT, &state);
    let json = serde_json::to_string(&next).expect("encodes");
    (next, json)
}

fn command_json() -> String {
    serde_json::to_string(&DEPOSIT).expect("encodes")
}

// --- SQLite -----------------------------------------------------------------

async fn sqlite_rows() {
    for writers in [1, 16] {
        let (store, path) = sqlite_store().await;
        let pool = store.pool().clone();
        let baseline = throughput(writers, move |w| raw_sqlite(pool.clone(), format!("raw-{w}"))).await;
        let runner = Runner::<Accounts, _>::new(store, ());
        let framework = throughput(writers, move |w| {
            let runner = runner.clone();
            async move {
                runner.handle(&format!("fw-{w}"), &DEPOSIT).await.expect("distinct ids never conflict");
            }
        })
        .await;
        report(&format!("SQLite, {writers} writer(s), distinct ids"), baseline, framework);
        remove(&path);
    }
}

async fn sqlite_store() -> (Sqlite, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!(
        "machine-bench-{}-{}.db",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ));
    remove(&path);
    (Sqlite::open(&path).await.expect("open"), path)
}

fn remove(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
}

/// The store's statements, by hand.
async fn raw_sqlite(pool: SqlitePool, id: String) {
    loop {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT version, state FROM machine_records WHERE machine = 'Account' AND id = ?")
                .bind(&id)
                .fetch_optional(&pool)
                .await
                .expect("load");
        let (version, state) = row.map_or((0, None), |(v, s)| (v, Some(s)));
        let (next, json) = next(state.as_deref());
        let now = 0_i64;
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.expect("begin");
        let written = if version == 0 {
            sqlx::query("INSERT INTO machine_records (machine, id, version, kind, state, updated_at) VALUES ('Account', ?, 1, ?, ?, ?) ON CONFLICT DO NOTHING")
                .bind(&id).bind(next.kind().as_str()).bind(&json).bind(now).execute(&mut *tx).await
        } else {
            sqlx::query("UPDATE machine_records SET version = ?, kind = ?, state = ?, updated_at = ? WHERE machine = 'Account' AND id = ? AND version = ?")
                .bind(version + 1).bind(next.kind().as_str()).bind(&json).bind(now).bind(&id).bind(version).execute(&mut *tx).await
        }
        .expect("write");
        if written.rows_affected() == 1 {
            sqlx::query("INSERT INTO machine_history (machine, id, version, command, kind, state, at) VALUES ('Account', ?, ?, ?, ?, ?, ?)")
                .bind(&id).bind(version + 1).bind(command_json()).bind(next.kind().as_str()).bind(&json).bind(now)
                .execute(&mut *tx).await.expect("history");
            tx.commit().await.expect("commit");
            return;
        }
    }
}

// --- PostgreSQL -------------------------------------------------------------

async fn postgres_rows(url: &str) {
    let schema = format!("mcbench_{}", std::process::id());
    let store = Postgres::options().schema(schema.clone()).max_connections(16).connect(url).await.expect("connect");
    let pool = store.pool().clone();
    let runner = Runner::<Accounts, _>::new(store.clone(), ());

    for writers in [1, 16] {
        let raw_pool = pool.clone();
        let sql = Arc::new(Sql::new(&schema));
        let baseline =
            throughput(writers, move |w| raw_postgres(raw_pool.clone(), sql.clone(), format!("raw-{writers}-{w}")))
                .await;
        let fw = runner.clone();
        let framework = throughput(writers, move |w| {
            let runner = fw.clone();
            async move {
                runner.handle(&format!("fw-{writers}-{w}"), &DEPOSIT).await.expect("distinct ids never conflict");
            }
        })
        .await;
        report(&format!("PostgreSQL, {writers} writer(s), distinct ids"), baseline, framework);
    }

    let raw_pool = pool.clone();
    let sql = Arc::new(Sql::new(&schema));
    let locking = throughput(32, move |_| locked_postgres(raw_pool.clone(), sql.clone())).await;
    let fw = runner.clone();
    let exhausted = Arc::new(AtomicU64::new(0));
    let counted = exhausted.clone();
    let framework = throughput(32, move |_| {
        let (runner, counted) = (fw.clone(), counted.clone());
        async move {
            if runner.handle("hot-fw", &DEPOSIT).await.is_err() {
                counted.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
    .await;
    report("PostgreSQL, 32 writers, one record (vs FOR UPDATE)", locking, framework);
    println!("  exhausted retries on the hot record: {}", exhausted.load(Ordering::Relaxed));

    let drop = format!("DROP SCHEMA {schema} CASCADE");
    sqlx::raw_sql(AssertSqlSafe(drop)).execute(&pool).await.expect("drop bench schema");
}

struct Sql {
    load: Arc<str>,
    create: Arc<str>,
    update: Arc<str>,
    lock: Arc<str>,
    set: Arc<str>,
    history: Arc<str>,
}

impl Sql {
    fn new(schema: &str) -> Self {
        let (records, history) = (format!("{schema}.machine_records"), format!("{schema}.machine_history"));
        Self {
            load: format!("SELECT version, state::text FROM {records} WHERE machine = 'Account' AND id = $1").into(),
            create: format!(
                "WITH written AS (INSERT INTO {records} (machine, id, version, kind, state) VALUES ('Account', $1, 1, $2, $3::jsonb)
                 ON CONFLICT (machine, id) DO NOTHING RETURNING version)
                 INSERT INTO {history} (machine, id, version, command, kind, state) SELECT 'Account', $1, version, $4::jsonb, $2, $3::jsonb FROM written"
            )
            .into(),
            update: format!(
                "WITH written AS (UPDATE {records} SET version = $5, kind = $2, state = $3::jsonb, updated_at = now()
                 WHERE machine = 'Account' AND id = $1 AND version = $6 RETURNING version)
                 INSERT INTO {history} (machine, id, version, command, kind, state) SELECT 'Account', $1, version, $4::jsonb, $2, $3::jsonb FROM written"
            )
            .into(),
            lock: format!("SELECT version, state::text FROM {records} WHERE machine = 'Account' AND id = $1 FOR UPDATE").into(),
            set: format!("UPDATE {records} SET version = $2, kind = $3, state = $4::jsonb, updated_at = now() WHERE machine = 'Account' AND id = $1").into(),
            history: format!("INSERT INTO {history} (machine, id, version, command, kind, state) VALUES ('Account', $1, $2, $3::jsonb, $4, $5::jsonb)").into(),
        }
    }
}

/// The store's compare-and-set statements, by hand.
async fn raw_postgres(pool: PgPool, sql: Arc<Sql>, id: String) {
    loop {
        let row: Option<(i64, String)> =
            sqlx::query_as(AssertSqlSafe(sql.load.clone())).bind(&id).fetch_optional(&pool).await.expect("load");
        let (version, state) = row.map_or((0, None), |(v, s)| (v, Some(s)));
        let (next, json) = next(state.as_deref());
        let query = if version == 0 {
            sqlx::query(AssertSqlSafe(sql.create.clone()))
                .bind(&id)
                .bind(next.kind().as_str())
                .bind(&json)
                .bind(command_json())
        } else {
            sqlx::query(AssertSqlSafe(sql.update.clone()))
                .bind(&id)
                .bind(next.kind().as_str())
                .bind(&json)
                .bind(command_json())
                .bind(version + 1)
                .bind(version)
        };
        if query.execute(&pool).await.expect("write").rows_affected() == 1 {
            return;
        }
    }
}

/// Pessimistic baseline: lock the row, decide, write, commit.
async fn locked_postgres(pool: PgPool, sql: Arc<Sql>) {
    let mut tx = pool.begin().await.expect("begin");
    let row: Option<(i64, String)> =
        sqlx::query_as(AssertSqlSafe(sql.lock.clone())).bind("hot-lock").fetch_optional(&mut *tx).await.expect("lock");
    let Some((version, state)) = row else {
        drop(tx);
        raw_postgres(pool, sql, "hot-lock".to_owned()).await; // create it once
        return;
    };
    let (next, json) = next(Some(&state));
    sqlx::query(AssertSqlSafe(sql.set.clone()))
        .bind("hot-lock")
        .bind(version + 1)
        .bind(next.kind().as_str())
        .bind(&json)
        .execute(&mut *tx)
        .await
        .expect("set");
    sqlx::query(AssertSqlSafe(sql.history.clone()))
        .bind("hot-lock")
        .bind(version + 1)
        .bind(command_json())
        .bind(next.kind().as_str())
        .bind(&json)
        .execute(&mut *tx)
        .await
        .expect("history");
    tx.commit().await.expect("commit");
}
