//! A machine command inside the caller's own PostgreSQL transaction: the
//! machine's state and the caller's rows commit together or not at all.

mod conformance;

use conformance::{Counter, CounterCommand, Counters, M, TicketCommand, Tickets};
use machine_core::store::{Postgres, Store};
use machine_core::{Coalescing, Runner};

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

/// A quick command loads and commits through one pooled connection it
/// keeps meanwhile. With a pool of one connection every path must still
/// finish: a command, the same command again under its idempotency key
/// (the key is read on that connection), a decision over two records, a
/// removal (which takes a connection of its own), writers in parallel, and
/// coalesced writers on one record (several versions in one commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(postgres_tests), ignore = "set DATABASE_URL to run the PostgreSQL tests")]
async fn every_path_finishes_with_a_pool_of_one_connection() {
    use machine_core::Request;
    use machine_core::decision::{Decision, Key, Verdict};
    use std::time::Duration;

    let url = conformance::database_url();
    let schema = format!("mcpool_{}_{}", std::process::id(), rand_suffix());
    let store = Postgres::options()
        .schema(schema.clone())
        .max_connections(1)
        // Long enough for 16 tasks queueing for the one connection on a
        // loaded machine; a path that waits for itself still fails here.
        .acquire_timeout(Duration::from_secs(10))
        .connect(&url)
        .await
        .unwrap();
    let runner = Runner::<Counters, _>::new(store.clone(), ());
    let all = async {
        assert_eq!(runner.handle("c-1", &CounterCommand::Increment).await.unwrap().version, 1);
        let keyed = || runner.handle_with("c-1", &CounterCommand::Increment, Request::new().key("k-1"));
        assert_eq!(keyed().await.unwrap().version, 2);
        assert_eq!(keyed().await.unwrap().version, 2, "the key replays the first outcome");
        let (a, b) = (Key::<Counters>::new("c-1"), Key::<Counters>::new("c-2"));
        Decision::new(&store)
            .read(&a)
            .read(&b)
            .attempt(|draft| {
                draft.apply(&a, &(), &CounterCommand::Increment)?;
                draft.apply(&b, &(), &CounterCommand::Increment)?;
                Ok(Verdict::Commit(()))
            })
            .await
            .unwrap();
        let tickets = Runner::<Tickets, _>::new(store.clone(), ());
        tickets.handle("t-1", &TicketCommand::Open).await.unwrap();
        tickets.handle("t-1", &TicketCommand::Flag).await.unwrap();
        assert_eq!(tickets.remove("t-1").await.unwrap().version, 2);
        let writers: Vec<_> = (0..8)
            .map(|writer| {
                let runner = runner.clone();
                tokio::spawn(async move {
                    for _ in 0..10 {
                        runner.handle(&format!("w-{writer}"), &CounterCommand::Increment).await.unwrap();
                    }
                })
            })
            .collect();
        // A coalesced group commits several versions through the connection.
        let grouped = Runner::<Counters, _>::new(store.clone(), ()).coalesce(Coalescing::default());
        let writers = writers.into_iter().chain((0..8).map(|_| {
            let grouped = grouped.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    grouped.handle("hot", &CounterCommand::Increment).await.unwrap();
                }
            })
        }));
        for writer in writers.collect::<Vec<_>>() {
            writer.await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(30), all).await.expect("a path waited for the pool's only connection");
    assert_eq!(store.load(M, "c-1").await.unwrap().unwrap().version, 3);
    assert_eq!(store.load(M, "c-2").await.unwrap().unwrap().version, 1);
    assert_eq!(store.load("Ticket", "t-1").await.unwrap(), None);
    assert_eq!(store.load(M, "w-7").await.unwrap().unwrap().version, 10);
    assert_eq!(store.load(M, "hot").await.unwrap().unwrap().version, 80);
    teardown(&runner).await;
}
