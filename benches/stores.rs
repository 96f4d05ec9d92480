//! Commit throughput of the durable stores through the runner, side by side
//! with hand-written SQL on the same driver and pool:
//!
//! - SQLite (1 and 16 writers on their own rows, 8 and 32 on one row): the
//!   loop a user writes by hand, load and write in one `BEGIN IMMEDIATE`
//!   transaction, with p50 and p99 latency;
//! - distinct ids (1 and 16 writers): a raw compare-and-set loop issuing the
//!   same statements the store issues (load; one `UPDATE … WHERE version = $3`
//!   feeding the history `INSERT`), decoding and encoding the same JSON;
//! - one hot record (32 writers): `SELECT … FOR UPDATE` serial execution;
//! - hot records with and without coalescing (8 and 32 writers on 1 and 16
//!   records) against `FOR UPDATE` and a single `UPDATE … SET n = n + 1`,
//!   with p50 and p99 latency.
//!
//! `cargo bench -p machine-workspace --bench stores` (PostgreSQL rows need `DATABASE_URL`);
//! `cargo bench -p machine-workspace --bench stores -- --svg docs/img` also draws the hot-record
//! plot.

// Rates are computed from counts far below 2^52.
#![allow(clippy::cast_precision_loss)]

mod common;
#[path = "../examples/contention/svg.rs"]
mod svg;

use common::{Account, Accounts, DEPOSIT};
use machine_core::store::{Memory, Postgres, Sqlite, Store};
use machine_core::{Coalescing, Machine, Runner, State};
use sqlx::{AssertSqlSafe, PgPool, SqlitePool};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const RUN: Duration = Duration::from_secs(3);

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        println!("{:<44} {:>12} {:>12} {:>7}", "workload", "baseline/s", "runner/s", "ratio");
        sqlite_rows().await;
        if std::env::var_os("SQLITE_ONLY").is_some() {
            return;
        }
        hot_memory_rows().await;
        match std::env::var("DATABASE_URL") {
            Ok(url) => postgres_rows(&url).await,
            Err(_) => println!("(PostgreSQL rows skipped: DATABASE_URL is not set)"),
        }
    });
}

fn report(workload: &str, baseline: f64, runner: f64) {
    println!("{workload:<44} {baseline:>12.0} {runner:>12.0} {:>6.2}x", runner / baseline);
}

/// Runs `writers` tasks calling `op(writer)` until `RUN` elapses; commits/s.
async fn throughput<F, Fut>(writers: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    measure(writers, op).await.rate
}

struct Measured {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Like [`throughput`], with the latency of every call.
async fn measure<F, Fut>(writers: usize, op: F) -> Measured
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while start.elapsed() < RUN {
                    let began = Instant::now();
                    op(writer).await;
                    latencies.push(began.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("writer"));
    }
    let rate = latencies.len() as f64 / start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    // The q-quantile as the index len * q / 100 (q in percent, integer maths).
    let at = |q: usize| latencies.get((latencies.len() * q / 100).min(latencies.len().saturating_sub(1)));
    let ms = |d: Option<&Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    Measured { rate, p50_ms: ms(at(50)), p99_ms: ms(at(99)) }
}

fn report_hot(workload: &str, m: &Measured) {
    println!("  {workload:<40} {:>10.0}/s  p50 {:>7.2} ms  p99 {:>8.2} ms", m.rate, m.p50_ms, m.p99_ms);
}

/// The runner on `store`, coalescing or not, `writers` tasks over `records` hot ids.
async fn hot_runner<St: Store + Clone>(
    store: St,
    coalesce: bool,
    writers: usize,
    records: usize,
    tag: &str,
) -> Measured {
    let runner = Runner::<Accounts, _>::new(store, ());
    let runner = if coalesce { runner.coalesce(Coalescing::default()) } else { runner };
    let tag = Arc::<str>::from(tag);
    measure(writers, move |writer| {
        let (runner, tag) = (runner.clone(), tag.clone());
        async move {
            runner
                .handle(&format!("{tag}-{}", writer % records), &DEPOSIT)
                .await
                .expect("default policy never gives up");
        }
    })
    .await
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

/// SQLite against the loop a careful user writes by hand: load and write in
/// one `BEGIN IMMEDIATE` transaction (SQLite admits one writer at a time, so
/// this loop never conflicts within a process). Own rows (each writer its
/// record) and one hot row, rounds interleaved, with latency percentiles.
async fn sqlite_rows() {
    println!("\nSQLite, hand-written BEGIN IMMEDIATE load+write loop vs runner (3 s each, 2 rounds interleaved):");
    for (writers, hot) in [(1, false), (16, false), (8, true), (32, true)] {
        let (mut by_hand, mut runner) = (Vec::new(), Vec::new());
        for round in 0..2 {
            let (store, path) = sqlite_store().await;
            let pool = store.pool().clone();
            let id = move |w: usize| if hot { format!("hot-{round}") } else { format!("own-{round}-{w}") };
            let fw = Runner::<Accounts, _>::new(store, ());
            let hand = || measure(writers, move |w| immediate_sqlite(pool.clone(), format!("raw-{}", id(w))));
            let framework = || {
                measure(writers, move |w| {
                    let fw = fw.clone();
                    async move {
                        fw.handle(&format!("fw-{}", id(w)), &DEPOSIT).await.expect("default policy never gives up");
                    }
                })
            };
            // Each round starts with the other one, so neither always meets
            // the file (and its WAL) as the first left it.
            if round == 0 {
                by_hand.push(hand().await);
                runner.push(framework().await);
            } else {
                runner.push(framework().await);
                by_hand.push(hand().await);
            }
            remove(&path);
        }
        let (by_hand, runner) = (best(by_hand), best(runner));
        let rows = if hot { "one row" } else { "own rows" };
        report(&format!("SQLite, {writers} writer(s), {rows}"), by_hand.rate, runner.rate);
        println!(
            "  p50/p99 ms: by hand {:.2}/{:.2}, runner {:.2}/{:.2}",
            by_hand.p50_ms, by_hand.p99_ms, runner.p50_ms, runner.p99_ms
        );
    }
}

/// The round with the highest rate (the least disturbed by the machine).
fn best(rounds: Vec<Measured>) -> Measured {
    rounds.into_iter().max_by(|a, b| a.rate.total_cmp(&b.rate)).expect("at least one round")
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

/// By hand: take the write lock, load, transition, write the row and its
/// history, commit. Same pool, same file settings as the store.
async fn immediate_sqlite(pool: SqlitePool, id: String) {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.expect("begin");
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT version, state FROM machine_records WHERE machine = 'Account' AND id = ?")
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await
            .expect("load");
    let (version, state) = row.map_or((0, None), |(v, s)| (v, Some(s)));
    let (next, json) = next(state.as_deref());
    let now = 0_i64;
    if version == 0 {
        sqlx::query("INSERT INTO machine_records (machine, id, version, kind, state, updated_at) VALUES ('Account', ?, 1, ?, ?, ?)")
            .bind(&id).bind(next.kind().as_str()).bind(&json).bind(now).execute(&mut *tx).await
    } else {
        sqlx::query("UPDATE machine_records SET version = ?, kind = ?, state = ?, updated_at = ? WHERE machine = 'Account' AND id = ?")
            .bind(version + 1).bind(next.kind().as_str()).bind(&json).bind(now).bind(&id).execute(&mut *tx).await
    }
    .expect("write");
    sqlx::query("INSERT INTO machine_history (machine, id, version, command, kind, state, at) VALUES ('Account', ?, ?, ?, ?, ?, ?)")
        .bind(&id).bind(version + 1).bind(command_json()).bind(next.kind().as_str()).bind(&json).bind(now)
        .execute(&mut *tx).await.expect("history");
    tx.commit().await.expect("commit");
}

// --- Hot records ----------------------------------------------------------------

async fn hot_memory_rows() {
    println!("\nhot records, memory store (3 s each):");
    for (writers, records) in [(8, 1), (32, 1), (8, 16), (32, 16)] {
        for coalesce in [false, true] {
            let m = hot_runner(Memory::new(), coalesce, writers, records, "hot").await;
            let name =
                format!("{writers} writers, {records} record(s), coalescing {}", if coalesce { "on" } else { "off" });
            report_hot(&name, &m);
        }
    }
}

async fn hot_postgres_rows(store: &Postgres, schema: &str) {
    println!("\nhot records, PostgreSQL (3 s each):");
    let names = [
        "SELECT … FOR UPDATE (by hand)",
        "UPDATE … SET n = n + 1 (by hand)",
        "runner, coalescing off",
        "runner, coalescing on",
    ];
    let mut points: Vec<(usize, usize, usize, f64)> = Vec::new(); // (records, strategy, writers, rate)
    let pool = store.pool().clone();
    let counters = format!("{schema}.bench_counters");
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE TABLE {counters} (id text PRIMARY KEY, n bigint NOT NULL)")))
        .execute(&pool)
        .await
        .expect("counter table");
    for (writers, records) in [(8, 1), (32, 1), (8, 16), (32, 16)] {
        let tag = format!("hot-{writers}-{records}");
        let sql = Arc::new(Sql::new(schema));
        let (lock_pool, lock_sql, lock_tag) = (pool.clone(), sql.clone(), tag.clone());
        let locking = measure(writers, move |writer| {
            locked_postgres_id(lock_pool.clone(), lock_sql.clone(), format!("{lock_tag}-lock-{}", writer % records))
        })
        .await;
        for id in 0..records {
            sqlx::query(AssertSqlSafe(format!("INSERT INTO {counters} VALUES ($1, 0)")))
                .bind(format!("{tag}-{id}"))
                .execute(&pool)
                .await
                .expect("counter row");
        }
        let update = Arc::<str>::from(format!("UPDATE {counters} SET n = n + 1 WHERE id = $1"));
        let (update_pool, update_tag) = (pool.clone(), tag.clone());
        let single = measure(writers, move |writer| {
            let (pool, update, id) =
                (update_pool.clone(), update.clone(), format!("{update_tag}-{}", writer % records));
            async move {
                sqlx::query(AssertSqlSafe(update)).bind(id).execute(&pool).await.expect("update");
            }
        })
        .await;
        let off = hot_runner(store.clone(), false, writers, records, &format!("{tag}-off")).await;
        let on = hot_runner(store.clone(), true, writers, records, &format!("{tag}-on")).await;
        println!(" {writers} writers on {records} record(s):");
        for (strategy, measured) in [&locking, &single, &off, &on].into_iter().enumerate() {
            report_hot(names[strategy], measured);
            points.push((records, strategy, writers, measured.rate));
        }
    }
    let args: Vec<String> = std::env::args().collect();
    if let Some(dir) = args.iter().position(|a| a == "--svg").and_then(|at| args.get(at + 1)) {
        let panels: Vec<svg::Panel> = [1, 16]
            .into_iter()
            .map(|records| svg::Panel {
                title: format!("PostgreSQL, {records} hot record(s): commits/s by writers"),
                series: names
                    .iter()
                    .enumerate()
                    .map(|(strategy, name)| svg::Series {
                        name: (*name).to_owned(),
                        points: points
                            .iter()
                            .filter(|p| p.0 == records && p.1 == strategy)
                            .map(|p| (p.2 as f64, p.3))
                            .collect(),
                    })
                    .collect(),
            })
            .collect();
        let path = format!("{dir}/hot-records-postgres.svg");
        std::fs::write(&path, svg::plot(&panels)).expect("write the plot");
        println!("plot written to {path}");
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

    hot_postgres_rows(&store, &schema).await;

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
    locked_postgres_id(pool, sql, "hot-lock".to_owned()).await;
}

async fn locked_postgres_id(pool: PgPool, sql: Arc<Sql>, id: String) {
    let mut tx = pool.begin().await.expect("begin");
    let row: Option<(i64, String)> =
        sqlx::query_as(AssertSqlSafe(sql.lock.clone())).bind(&id).fetch_optional(&mut *tx).await.expect("lock");
    let Some((version, state)) = row else {
        drop(tx);
        raw_postgres(pool, sql, id).await; // create it once
        return;
    };
    let (next, json) = next(Some(&state));
    sqlx::query(AssertSqlSafe(sql.set.clone()))
        .bind(&id)
        .bind(version + 1)
        .bind(next.kind().as_str())
        .bind(&json)
        .execute(&mut *tx)
        .await
        .expect("set");
    sqlx::query(AssertSqlSafe(sql.history.clone()))
        .bind(&id)
        .bind(version + 1)
        .bind(command_json())
        .bind(next.kind().as_str())
        .bind(&json)
        .execute(&mut *tx)
        .await
        .expect("history");
    tx.commit().await.expect("commit");
}
