//! The batch rewrite of old records (`Runner::migrate`) on the memory,
//! SQLite and PostgreSQL stores: records rewritten per second, and what
//! reading an old record costs beside a current one (its migration steps
//! run on every read until it is rewritten). The room machine of
//! docs/evolution.md; every record holds a state stored at schema 1.
//!
//! `DATABASE_URL=postgres://… cargo bench -p machine-workspace --bench migrate`
//! (PostgreSQL is skipped when the variable is unset; `MIGRATE_RECORDS`
//! sets the record count, 5,000 by default).

// Rates are computed from counts far below 2^52.
#![allow(clippy::cast_precision_loss)]

#[allow(unreachable_pub, missing_docs, dead_code, clippy::unnecessary_wraps, clippy::needless_pass_by_value)]
mod machine {
    include!("../docs/snippets/rooms.rs");
}

use machine::rooms::Rooms;
use machine_core::Runner;
use machine_core::evolution::Rewrite;
use machine_core::store::{Commit, Memory, Origin, Postgres, Query, Sqlite, Store, Write};
use std::time::Instant;

fn main() {
    let records: usize = std::env::var("MIGRATE_RECORDS").ok().and_then(|n| n.parse().ok()).unwrap_or(5_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        println!("{records} records, each with one state stored at schema 1, rewritten at schema 3 in pages of 500");
        println!("{:<12} {:>14} {:>16} {:>16}", "store", "rewritten/s", "old reads/s", "current reads/s");
        row("memory", Memory::new(), records).await;
        let path = std::env::temp_dir().join(format!("mcbench-migrate-{}.db", std::process::id()));
        let sqlite = Sqlite::open(&path).await.expect("open sqlite");
        row("SQLite", sqlite.clone(), records).await;
        sqlite.pool().close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        match std::env::var("DATABASE_URL") {
            Ok(url) => {
                let schema = format!("mcbench_migrate_{}", std::process::id());
                let store = Postgres::options().schema(schema.clone()).connect(&url).await.expect("connect");
                row("PostgreSQL", store.clone(), records).await;
                let drop = format!("DROP SCHEMA {schema} CASCADE");
                sqlx::raw_sql(sqlx::AssertSqlSafe(drop)).execute(store.pool()).await.expect("drop bench schema");
            }
            Err(_) => println!("(PostgreSQL skipped: DATABASE_URL is not set)"),
        }
    });
}

/// Loads `records` old records into `store`, reads them all (migrated on
/// the fly), rewrites them, and reads them all again (current).
async fn row<St: Store + Query + Clone>(name: &str, store: St, records: usize) {
    let ids: Vec<String> = (0..records).map(|n| format!("room-{n:06}")).collect();
    for id in &ids {
        let state = format!(r#"{{"Booked":{{"guest":"{id}","nights":3,"phone":"+44 20 7946 0000"}}}}"#);
        let write = Write {
            machine: "Room",
            id,
            expected: 0,
            kind: "Booked",
            state,
            command: r#"{"Hold":{"guest":"ada"}}"#,
            origin: Origin::Command,
            schema: 1,
            due: None,
        };
        store.commit(Commit::write(write)).await.expect("load an old record");
    }
    let runner = Runner::<Rooms, _>::new(store, ());
    let old_reads = reads(&runner, &ids).await;
    let started = Instant::now();
    let migrated = runner.migrate(Rewrite::default().page(500)).await.expect("migrate");
    let rewrite = migrated.progress.rewritten as f64 / started.elapsed().as_secs_f64();
    assert_eq!((migrated.progress.rewritten, migrated.failures.len()), (records as u64, 0));
    let current_reads = reads(&runner, &ids).await;
    println!("{name:<12} {rewrite:>14.0} {old_reads:>16.0} {current_reads:>16.0}");
}

/// `get` of every id, per second.
async fn reads<St: Store>(runner: &Runner<Rooms, St>, ids: &[String]) -> f64 {
    let started = Instant::now();
    for id in ids {
        runner.get(id).await.expect("get").expect("stored");
    }
    ids.len() as f64 / started.elapsed().as_secs_f64()
}
