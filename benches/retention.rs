//! Retention on the memory, SQLite and PostgreSQL stores: finished records
//! removed per second by `Runner::remove_terminal` (each one a conditional
//! removal through the pipeline, its history moved out of the record's way
//! and kept in the feed), the same with an archive that reads each record's
//! history first, and history entries pruned per second by
//! `Store::prune_history` in batches of 1,000. Beside them, one writer's
//! `Runner::handle` rate on the same store: what one commit costs there.
//!
//! `DATABASE_URL=postgres://… cargo bench -p machine-workspace --bench retention`
//! (PostgreSQL is skipped when the variable is unset; `RETENTION_RECORDS`
//! sets the records per run, 2,000 by default, each with 5 history entries).

// Rates are computed from counts far below 2^52.
#![allow(clippy::cast_precision_loss)]

use machine_core::prelude::*;
use machine_core::retention::{Archive, ArchiveError, Archived, Terminal};
use machine_core::store::{Commit, Memory, Origin, Postgres, Query, Sqlite, Store, Write};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Ticket {
    #[state(initial)]
    New,
    Open {
        notes: u32,
    },
    #[state(terminal)]
    Closed {
        notes: u32,
    },
}

#[derive(Command, Clone, Debug, Serialize, Deserialize)]
#[command(state = Ticket)]
enum TicketCommand {
    #[command(from(New, Open), to(Open))]
    Note,
    #[command(from(Open), to(Closed))]
    Close,
}

struct Tickets;

impl Machine for Tickets {
    type State = Ticket;
    type Command = TicketCommand;
    type Deps = ();
    type Error = std::convert::Infallible;
    const NAME: &'static str = "Ticket";

    fn transition((): &(), command: &TicketCommand, state: &Ticket) -> Result<Ticket, Self::Error> {
        let notes = match state {
            Ticket::Open { notes } | Ticket::Closed { notes } => *notes,
            Ticket::New => 0,
        };
        Ok(match command {
            TicketCommand::Note => Ticket::Open { notes: notes + 1 },
            TicketCommand::Close => Ticket::Closed { notes },
        })
    }
}

/// Entries per record: four notes, then the close.
const ENTRIES: u64 = 5;

/// Counts what it is handed, as a cheap archive would (the cost measured is
/// reading each record's history and the call, not a sink's I/O).
#[derive(Default)]
struct Counting(AtomicU64);

impl Archive<Tickets> for Counting {
    async fn archive(&self, record: &Archived<TicketCommand, Ticket>) -> Result<(), ArchiveError> {
        self.0.fetch_add(record.history.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

fn main() {
    let records: u64 = std::env::var("RETENTION_RECORDS").ok().and_then(|n| n.parse().ok()).unwrap_or(2_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        println!("{records} closed records of {ENTRIES} history entries each per run; one writer throughout");
        println!(
            "{:<12} {:>12} {:>12} {:>20} {:>18}",
            "store", "handle/s", "removed/s", "archived+removed/s", "entries pruned/s"
        );
        row("memory", Memory::with_retention(machine_core::store::Retention::all()), records).await;
        let path = std::env::temp_dir().join(format!("mcbench-retention-{}.db", std::process::id()));
        let sqlite = Sqlite::open(&path).await.expect("open sqlite");
        row("SQLite", sqlite.clone(), records).await;
        sqlite.pool().close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        match std::env::var("DATABASE_URL") {
            Ok(url) => {
                let schema = format!("mcbench_retention_{}", std::process::id());
                let store = Postgres::options().schema(schema.clone()).connect(&url).await.expect("connect");
                row("PostgreSQL", store.clone(), records).await;
                let drop = format!("DROP SCHEMA {schema} CASCADE");
                sqlx::raw_sql(sqlx::AssertSqlSafe(drop)).execute(store.pool()).await.expect("drop bench schema");
            }
            Err(_) => println!("(PostgreSQL skipped: DATABASE_URL is not set)"),
        }
    });
}

/// Writes `records` closed tickets with `prefix`, each in one commit of
/// [`ENTRIES`] writes (quicker to load than one commit per entry).
async fn load<St: Store>(store: &St, prefix: &str, records: u64) {
    for n in 0..records {
        let id = format!("{prefix}-{n:06}");
        let writes = (0..ENTRIES)
            .map(|expected| {
                let (kind, state) = if expected + 1 == ENTRIES {
                    ("Closed", format!(r#"{{"Closed":{{"notes":{expected}}}}}"#))
                } else {
                    ("Open", format!(r#"{{"Open":{{"notes":{}}}}}"#, expected + 1))
                };
                let command = if expected + 1 == ENTRIES { "\"Close\"" } else { "\"Note\"" };
                Write {
                    machine: "Ticket",
                    id: &id,
                    expected,
                    kind,
                    state,
                    command,
                    origin: Origin::Command,
                    schema: 1,
                    due: None,
                }
            })
            .collect();
        store.commit(Commit { writes, ..Commit::default() }).await.expect("load a record");
    }
}

async fn row<St: Store + Query + Clone>(name: &str, store: St, records: u64) {
    let runner = Runner::<Tickets, _>::new(store.clone(), ());
    // One writer's commands, for scale: one commit each.
    let started = Instant::now();
    for n in 0..records {
        runner.handle(&format!("h-{n:06}"), &TicketCommand::Note).await.expect("handle");
    }
    let handled = records as f64 / started.elapsed().as_secs_f64();

    load(&store, "a", records).await;
    let started = Instant::now();
    let done = runner.remove_terminal(Terminal::default().page(500)).await.expect("remove");
    let removed = done.progress.removed as f64 / started.elapsed().as_secs_f64();
    assert_eq!((done.progress.removed, done.failures.len()), (records, 0));

    load(&store, "b", records).await;
    let counting = Counting::default();
    let started = Instant::now();
    let done = runner.remove_terminal(Terminal::default().page(500).archive(counting)).await.expect("archive");
    let archived = done.progress.removed as f64 / started.elapsed().as_secs_f64();
    assert_eq!((done.progress.removed, done.failures.len()), (records, 0));

    // Everything written so far: the commands' entries, the removed
    // records' entries kept in the feed, and the removal entries.
    let bound = u64::MAX;
    let started = Instant::now();
    let mut pruned = 0;
    loop {
        let batch = store.prune_history(bound, 1_000).await.expect("prune");
        pruned += batch;
        if batch < 1_000 {
            break;
        }
    }
    let pruning = pruned as f64 / started.elapsed().as_secs_f64();
    assert_eq!(pruned, records + 2 * records * (ENTRIES + 1), "every entry pruned");
    println!("{name:<12} {handled:>12.0} {removed:>12.0} {archived:>20.0} {pruning:>18.0}");
}
