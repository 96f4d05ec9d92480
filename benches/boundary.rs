//! What an idempotency key costs a request handler, side by side in one run:
//! on each store, the runner without a key, the runner with a fresh key per
//! call (`handle_with(.., Request::new().key(k))`, every request unique as
//! from real clients), and, for the SQL stores, the loop a user writes by
//! hand for the same guarantee: in one transaction, look the key up, load,
//! write the record and its history row, insert the key with its expiry
//! (indexed, for the job that deletes expired keys).
//!
//! 3 interleaved rounds of 2 s per row, one writer on its own record; the
//! median round is printed.
//!
//! `cargo bench -p machine-workspace --bench boundary` (PostgreSQL rows need
//! `DATABASE_URL`).

// Rates are computed from counts far below 2^52.
#![allow(clippy::cast_precision_loss)]

mod common;

use common::{Accounts, DEPOSIT};
use machine_core::store::{Memory, Postgres, Sqlite, Store};
use machine_core::{Machine, Request, Runner, State};
use sqlx::{AssertSqlSafe, PgPool, SqlitePool};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const ROUND: Duration = Duration::from_secs(2);
const ROUNDS: usize = 3;

/// Calls per second of `op(n)` for n = 0, 1, … over one round.
async fn rate<F: Future<Output = ()>>(mut op: impl FnMut(u64) -> F) -> f64 {
    let start = Instant::now();
    let mut calls = 0;
    while start.elapsed() < ROUND {
        op(calls).await;
        calls += 1;
    }
    calls as f64 / start.elapsed().as_secs_f64()
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn report(workload: &str, rates: &[(&str, Vec<f64>)]) {
    let medians: Vec<(&str, f64)> = rates.iter().map(|(name, r)| (*name, median(r.clone()))).collect();
    let base = medians[0].1;
    for (name, rate) in medians {
        println!("{workload:<10} {name:<34} {rate:>10.0}/s {:>6.2}x", rate / base);
    }
}

/// One round of the runner without and with keys: fresh ids per round, so
/// each starts on a new record.
async fn runner_round<St: Store>(runner: &Runner<Accounts, St>, tag: &str, round: usize) -> (f64, f64) {
    let id = format!("{tag}-plain-{round}");
    let plain = rate(|_| async {
        runner.handle(&id, &DEPOSIT).await.expect("commits");
    })
    .await;
    let id = format!("{tag}-keyed-{round}");
    let keyed = rate(|n| {
        let id = &id;
        async move {
            let key = format!("req-{n}");
            runner.handle_with(id, &DEPOSIT, Request::new().key(&key)).await.expect("commits");
        }
    })
    .await;
    (plain, keyed)
}

/// A key's expiry, a day from now, as the runner stores it; the hand loops
/// index it too, as anything that deletes expired keys must.
fn expires_at() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX) + 86_400_000
}

/// Interleaved rounds of a hand-written keyed loop (`by_hand(id, key)`)
/// and the runner with and without keys, then their medians.
async fn side_by_side<St: Store, F: Future<Output = ()>>(
    store: &str,
    runner: &Runner<Accounts, St>,
    tag: &str,
    by_hand: impl Fn(String, String) -> F,
) {
    let (mut hand, mut plain, mut keyed) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        hand.push(rate(|n| by_hand(format!("hand-{round}"), format!("req-{n}"))).await);
        let (p, k) = runner_round(runner, tag, round).await;
        plain.push(p);
        keyed.push(k);
    }
    report(store, &[("by hand, a key per call", hand), ("runner, a key per call", keyed), ("runner, no key", plain)]);
}

fn next(state: Option<&str>) -> String {
    let state = state.map_or_else(common::Account::initial, |json| serde_json::from_str(json).expect("valid"));
    let Ok(next) = Accounts::transition(&(), &DEPOSIT, &state);
    serde_json::to_string(&next).expect("encodes")
}

/// The hand-written SQLite loop with a keys table of its own.
async fn sqlite_by_hand(pool: &SqlitePool, id: &str, key: &str, command: &str) {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.expect("begin");
    let seen: Option<i64> = sqlx::query_scalar("SELECT version FROM hand_keys WHERE id = ? AND key = ?")
        .bind(id)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await
        .expect("key");
    if seen.is_some() {
        return;
    }
    let row: Option<(i64, String)> = sqlx::query_as("SELECT version, state FROM hand_records WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .expect("load");
    let version = row.as_ref().map_or(0, |r| r.0) + 1;
    let state = next(row.as_ref().map(|r| r.1.as_str()));
    sqlx::query("INSERT INTO hand_records (id, version, state) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET version = excluded.version, state = excluded.state")
        .bind(id).bind(version).bind(&state).execute(&mut *tx).await.expect("write");
    sqlx::query("INSERT INTO hand_history (id, version, command, state) VALUES (?, ?, ?, ?)")
        .bind(id)
        .bind(version)
        .bind(command)
        .bind(&state)
        .execute(&mut *tx)
        .await
        .expect("history");
    sqlx::query("INSERT INTO hand_keys (id, key, version, state, expires_at) VALUES (?, ?, ?, ?, ?)")
        .bind(id)
        .bind(key)
        .bind(version)
        .bind(&state)
        .bind(expires_at())
        .execute(&mut *tx)
        .await
        .expect("key");
    tx.commit().await.expect("commit");
}

async fn sqlite() {
    let dir = std::env::temp_dir().join(format!("machine-boundary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let store = Sqlite::open(dir.join("runner.db")).await.expect("open");
    let hand = Sqlite::open(dir.join("hand.db")).await.expect("open");
    let pool = hand.pool().clone();
    for table in [
        "CREATE TABLE hand_records (id TEXT PRIMARY KEY, version INTEGER NOT NULL, state TEXT NOT NULL) WITHOUT ROWID",
        "CREATE TABLE hand_history (id TEXT NOT NULL, version INTEGER NOT NULL, command TEXT NOT NULL, state TEXT NOT NULL, PRIMARY KEY (id, version)) WITHOUT ROWID",
        "CREATE TABLE hand_keys (id TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL, state TEXT NOT NULL, expires_at INTEGER NOT NULL, PRIMARY KEY (id, key)) WITHOUT ROWID",
        "CREATE INDEX hand_keys_expiry ON hand_keys (expires_at)",
    ] {
        sqlx::query(AssertSqlSafe(table)).execute(&pool).await.expect("table");
    }
    let command = serde_json::to_string(&DEPOSIT).expect("encodes");
    let runner = Runner::<Accounts, _>::new(store.clone(), ());
    side_by_side("SQLite", &runner, "sqlite", {
        let (pool, command) = (&pool, &command);
        move |id: String, key: String| async move { sqlite_by_hand(pool, &id, &key, command).await }
    })
    .await;
    store.pool().close().await;
    pool.close().await;
    std::fs::remove_dir_all(&dir).ok();
}

async fn postgres_by_hand(pool: &PgPool, id: &str, key: &str, command: &str) {
    let mut tx = pool.begin().await.expect("begin");
    let seen: Option<i64> = sqlx::query_scalar("SELECT version FROM hand_keys WHERE id = $1 AND key = $2")
        .bind(id)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await
        .expect("key");
    if seen.is_some() {
        return;
    }
    let row: Option<(i64, String)> = sqlx::query_as("SELECT version, state::text FROM hand_records WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .expect("load");
    let expected = row.as_ref().map_or(0, |r| r.0);
    let state = next(row.as_ref().map(|r| r.1.as_str()));
    sqlx::query(
        "WITH written AS (
            INSERT INTO hand_records (id, version, state) VALUES ($1, $2 + 1, $3::jsonb)
            ON CONFLICT (id) DO UPDATE SET version = excluded.version, state = excluded.state
            WHERE hand_records.version = $2 RETURNING version)
         INSERT INTO hand_history (id, version, command, state) SELECT $1, version, $4::jsonb, $3::jsonb FROM written",
    )
    .bind(id)
    .bind(expected)
    .bind(&state)
    .bind(command)
    .execute(&mut *tx)
    .await
    .expect("write");
    sqlx::query("INSERT INTO hand_keys (id, key, version, state, expires_at) VALUES ($1, $2, $3, $4::jsonb, $5)")
        .bind(id)
        .bind(key)
        .bind(expected + 1)
        .bind(&state)
        .bind(expires_at())
        .execute(&mut *tx)
        .await
        .expect("key");
    tx.commit().await.expect("commit");
}

async fn postgres(url: &str) {
    static SCHEMA: AtomicU64 = AtomicU64::new(0);
    let schema = format!("bench_boundary_{}_{}", std::process::id(), SCHEMA.fetch_add(1, Ordering::Relaxed));
    let store = Postgres::options().schema(&schema).connect(url).await.expect("connect");
    let pool = PgPool::connect(url).await.expect("connect");
    for statement in [
        "DROP TABLE IF EXISTS hand_keys, hand_history, hand_records",
        "CREATE TABLE hand_records (id text PRIMARY KEY, version bigint NOT NULL, state jsonb NOT NULL)",
        "CREATE TABLE hand_history (id text NOT NULL, version bigint NOT NULL, command jsonb NOT NULL, state jsonb NOT NULL, PRIMARY KEY (id, version))",
        "CREATE TABLE hand_keys (id text NOT NULL, key text NOT NULL, version bigint NOT NULL, state jsonb NOT NULL, expires_at bigint NOT NULL, PRIMARY KEY (id, key))",
        "CREATE INDEX hand_keys_expiry ON hand_keys (expires_at)",
    ] {
        sqlx::query(AssertSqlSafe(statement)).execute(&pool).await.expect("table");
    }
    let command = serde_json::to_string(&DEPOSIT).expect("encodes");
    let runner = Runner::<Accounts, _>::new(store.clone(), ());
    side_by_side("PostgreSQL", &runner, "pg", {
        let (pool, command) = (&pool, &command);
        move |id: String, key: String| async move { postgres_by_hand(pool, &id, &key, command).await }
    })
    .await;
    sqlx::query(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE"))).execute(&pool).await.ok();
    sqlx::query("DROP TABLE IF EXISTS hand_keys, hand_history, hand_records").execute(&pool).await.ok();
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let runner = Runner::<Accounts, _>::new(Memory::new(), ());
        let (mut plain, mut keyed) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let (p, k) = runner_round(&runner, "memory", round).await;
            plain.push(p);
            keyed.push(k);
        }
        report("memory", &[("runner, no key", plain), ("runner, a key per call", keyed)]);
        sqlite().await;
        match std::env::var("DATABASE_URL") {
            Ok(url) => postgres(&url).await,
            Err(_) => println!("(PostgreSQL rows skipped: DATABASE_URL is not set)"),
        }
    });
}
