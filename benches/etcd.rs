//! The etcd store against the PostgreSQL store, side by side through the
//! same runner on the same machine: distinct ids with 1 and 16 writers, one
//! hot record with coalescing (32 writers), and two-record decisions (8
//! writers, each on its own pair). Commits per second, 3 s per row.
//!
//! `ETCD_ENDPOINTS=$(scripts/etcd-cluster.sh endpoints) DATABASE_URL=postgres://… \
//!  cargo bench -p machine-workspace --bench etcd` (a store whose variable is unset is skipped).

// Rates are computed from counts far below 2^52.
#![allow(clippy::cast_precision_loss)]

mod common;

use common::{Accounts, DEPOSIT};
use machine_core::decision::{Decision, Key, Verdict};
use machine_core::store::{Etcd, Postgres, Store};
use machine_core::{Coalescing, Runner};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const RUN: Duration = Duration::from_secs(3);

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        println!("{:<48} {:>12}", "workload (3 s each)", "commits/s");
        let tag = std::process::id();
        match std::env::var("DATABASE_URL") {
            Ok(url) => {
                let schema = format!("mcbench_etcd_{tag}");
                let store = Postgres::options().schema(schema.clone()).connect(&url).await.expect("connect");
                rows("PostgreSQL", store.clone()).await;
                let drop = format!("DROP SCHEMA {schema} CASCADE");
                sqlx::raw_sql(sqlx::AssertSqlSafe(drop)).execute(store.pool()).await.expect("drop bench schema");
            }
            Err(_) => println!("(PostgreSQL rows skipped: DATABASE_URL is not set)"),
        }
        match std::env::var("ETCD_ENDPOINTS") {
            Ok(urls) => {
                let endpoints: Vec<&str> = urls.split(',').collect();
                let prefix = format!("mcbench_{tag}/");
                let store = Etcd::options().prefix(prefix.clone()).connect(&endpoints).await.expect("connect");
                rows("etcd, 3 members", store.clone()).await;
                let options = etcd_client::DeleteOptions::new().with_prefix();
                store.client().clone().delete(prefix, Some(options)).await.expect("remove bench keys");
            }
            Err(_) => println!("(etcd rows skipped: ETCD_ENDPOINTS is not set)"),
        }
    });
}

async fn rows<St: Store + Clone>(name: &str, store: St) {
    let runner = Runner::<Accounts, _>::new(store.clone(), ());
    for writers in [1, 16] {
        let runner = runner.clone();
        let rate = throughput(writers, move |w| {
            let runner = runner.clone();
            async move {
                runner.handle(&format!("distinct-{writers}-{w}"), &DEPOSIT).await.expect("distinct ids never conflict");
            }
        })
        .await;
        println!("{:<48} {rate:>12.0}", format!("{name}: {writers} writer(s), distinct ids"));
    }
    let coalesced = Runner::<Accounts, _>::new(store.clone(), ()).coalesce(Coalescing::default());
    let rate = throughput(32, move |_| {
        let runner = coalesced.clone();
        async move {
            runner.handle("hot", &DEPOSIT).await.expect("coalesced callers never exhaust retries");
        }
    })
    .await;
    println!("{:<48} {rate:>12.0}", format!("{name}: one hot record, 32 writers, coalescing"));
    let store = Arc::new(store);
    let rate = throughput(8, move |w| {
        let store = store.clone();
        async move {
            let (a, b) = (Key::<Accounts>::new(format!("pair-{w}-a")), Key::<Accounts>::new(format!("pair-{w}-b")));
            let decided = Decision::new(&*store)
                .read(&a)
                .read(&b)
                .attempt(|d| {
                    d.apply(&a, &(), &DEPOSIT)?;
                    d.apply(&b, &(), &DEPOSIT)?;
                    Ok(Verdict::Commit(()))
                })
                .await
                .expect("own pairs never conflict");
            assert!(decided.is_committed());
        }
    })
    .await;
    println!("{:<48} {rate:>12.0}", format!("{name}: two-record decisions, 8 writers"));
}

/// Runs `writers` tasks calling `op(writer)` until `RUN` elapses; calls/s.
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
