//! A machine command inside the caller's own PostgreSQL transaction: the
//! machine's state and the caller's rows commit together or not at all.

mod conformance;

use conformance::{Counter, CounterCommand, Counters, M};
use machine_core::Runner;
use machine_core::store::{Postgres, Store};

async fn setup() -> (Runner<Counters, Postgres>, String) {
    let url = conformance::database_url();
    let schema = format!("mcjoin_{}_{}", std::process::id(), rand_suffix());
    let store = Postgres::options().schema(schema.clone()).max_connections(4).connect(&url).await.unwrap();
    let table = format!("{schema}.invoices");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE TABLE {table} (order_id text PRIMARY KEY)")))
        .execute(store.pool())
        .await
        .unwrap();
    (Runner::new(store, ()), table)
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_007
}

async fn invoices(runner: &Runner<Counters, Postgres>, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(runner.store().pool())
        .await
        .unwrap()
}

async fn teardown(runner: &Runner<Counters, Postgres>) {
    let sql = format!("DROP SCHEMA {} CASCADE", runner.store().schema());
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(runner.store().pool()).await.unwrap();
}

#[tokio::test]
#[cfg_attr(not(postgres_tests), ignore = "set DATABASE_URL to run the PostgreSQL tests")]
async fn committing_the_callers_transaction_keeps_both() {
    let (runner, table) = setup().await;
    let mut tx = runner.store().pool().begin().await.unwrap();
    let out = runner.handle_in(&mut tx, "order-1", &CounterCommand::Increment).await.unwrap();
    assert_eq!((out.state, out.version), (Counter::Open(1), 1));
    sqlx::query(sqlx::AssertSqlSafe(format!("INSERT INTO {table} VALUES ($1)")))
        .bind("order-1")
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(runner.get("order-1").await.unwrap(), None, "invisible to others before the caller commits");
    tx.commit().await.unwrap();

    assert_eq!(runner.get("order-1").await.unwrap().map(|v| v.version), Some(1));
    assert_eq!(runner.store().history(M, "order-1").await.unwrap().len(), 1);
    assert_eq!(invoices(&runner, &table).await, 1);
    teardown(&runner).await;
}

#[tokio::test]
#[cfg_attr(not(postgres_tests), ignore = "set DATABASE_URL to run the PostgreSQL tests")]
async fn rolling_back_the_callers_transaction_discards_both() {
    let (runner, table) = setup().await;
    runner.handle("order-1", &CounterCommand::Increment).await.unwrap();

    let mut tx = runner.store().pool().begin().await.unwrap();
    let out = runner.handle_in(&mut tx, "order-1", &CounterCommand::Increment).await.unwrap();
    assert_eq!(out.version, 2);
    sqlx::query(sqlx::AssertSqlSafe(format!("INSERT INTO {table} VALUES ($1)")))
        .bind("order-1")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    let stored = runner.get("order-1").await.unwrap().unwrap();
    assert_eq!((stored.state, stored.version), (Counter::Open(1), 1), "the machine's write rolled back");
    assert_eq!(runner.store().history(M, "order-1").await.unwrap().len(), 1, "and its history row");
    assert_eq!(invoices(&runner, &table).await, 0);
    teardown(&runner).await;
}

#[tokio::test]
#[cfg_attr(not(postgres_tests), ignore = "set DATABASE_URL to run the PostgreSQL tests")]
async fn a_joined_command_builds_on_the_latest_committed_version() {
    let (runner, _) = setup().await;
    runner.handle("order-1", &CounterCommand::Increment).await.unwrap();
    let mut tx = runner.store().pool().begin().await.unwrap();
    // Another writer moves the record on outside the transaction first…
    runner.handle("order-1", &CounterCommand::Increment).await.unwrap();
    // …and the joined command still lands on top of it.
    let out = runner.handle_in(&mut tx, "order-1", &CounterCommand::Increment).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!((out.state, out.version), (Counter::Open(3), 3));
    teardown(&runner).await;
}

#[tokio::test]
#[cfg_attr(not(postgres_tests), ignore = "set DATABASE_URL to run the PostgreSQL tests")]
async fn an_idempotency_key_commits_and_rolls_back_with_the_callers_transaction() {
    use machine_core::Request;
    let (runner, _) = setup().await;
    let keyed = Request::new().key("req-1");
    // Rolled back: the key went with the change, so the request runs again.
    let mut tx = runner.store().pool().begin().await.unwrap();
    let out = runner.handle_in_with(&mut tx, "order-1", &CounterCommand::Increment, keyed).await.unwrap();
    assert!(!out.replayed);
    tx.rollback().await.unwrap();
    assert!(runner.store().recall(M, "order-1", "req-1").await.unwrap().is_none());

    let mut tx = runner.store().pool().begin().await.unwrap();
    let out = runner.handle_in_with(&mut tx, "order-1", &CounterCommand::Increment, keyed).await.unwrap();
    assert_eq!((out.version, out.replayed), (1, false));
    // Within the same transaction, the repeat already sees the key.
    let again = runner.handle_in_with(&mut tx, "order-1", &CounterCommand::Increment, keyed).await.unwrap();
    assert_eq!((again.version, again.replayed), (1, true));
    tx.commit().await.unwrap();
    // And outside it, once committed.
    let after = runner.handle_with("order-1", &CounterCommand::Increment, keyed).await.unwrap();
    assert_eq!((after.version, after.replayed), (1, true));
    assert_eq!(runner.store().history(M, "order-1").await.unwrap().len(), 1);
    teardown(&runner).await;
}
