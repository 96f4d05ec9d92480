//! What firing timers costs, side by side in one run on each store: the
//! `timers::Sweeper` (the due-time index, then `Runner::fire` per record)
//! against the loop a user writes without it: page through the records of
//! the due kind (`Runner::list`), decode, keep those whose deadline passed,
//! and send each its command.
//!
//! Each round holds `RECORDS` records, half of them due, and times one
//! sweep that fires the due half; 3 interleaved rounds, the median printed.
//!
//! `cargo bench -p machine-workspace --bench living` (PostgreSQL rows need
//! `DATABASE_URL`).

#![allow(clippy::cast_precision_loss)]

use machine_core::prelude::*;
use machine_core::store::{Memory, Postgres, Query, Sqlite};
use machine_core::timers::{Deadline, Sweeper};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

const RECORDS: u64 = 2_000;
const ROUNDS: usize = 3;
const NOW: u64 = 1_000_000;

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Hold {
    #[state(initial)]
    Free,
    Held {
        guest: String,
        #[state(due)]
        until: Deadline,
    },
    Lapsed,
}

#[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[command(state = Hold)]
enum HoldCommand {
    #[command(from(Free), to(Held))]
    Take { until: Deadline },
    #[command(timer, from(Held), to(Lapsed))]
    Lapse,
}

struct Holds;
impl Machine for Holds {
    type State = Hold;
    type Command = HoldCommand;
    type Deps = ();
    type Error = NotDeclared;
    fn transition((): &(), command: &HoldCommand, _: &Hold) -> Result<Hold, NotDeclared> {
        Ok(match command {
            HoldCommand::Take { until } => Hold::Held { guest: "ada".into(), until: *until },
            HoldCommand::Lapse => Hold::Lapsed,
        })
    }
}

/// Holds `RECORDS` fresh records of round `round`, every other one due.
async fn seed<St: Query>(runner: &Runner<Holds, St>, round: usize) {
    for n in 0..RECORDS {
        let until = if n % 2 == 0 { NOW - 1 } else { NOW + 1_000_000 };
        let command = HoldCommand::Take { until: Deadline::from_millis(until) };
        runner.handle(&format!("r{round}-{n:05}"), &command).await.expect("seeds");
    }
}

/// The hand-written sweep: list the `Held` records, keep the due ones, fire.
async fn by_hand<St: Query>(runner: &Runner<Holds, St>) -> u64 {
    let mut fired = 0;
    let mut after: Option<String> = None;
    loop {
        let page = runner.list(HoldKind::Held, after.as_deref(), 100).await.expect("lists");
        for (id, record) in &page.records {
            if let Hold::Held { until, .. } = record.state
                && until.is_due(NOW)
            {
                runner.handle(id, &HoldCommand::Lapse).await.expect("fires");
                fired += 1;
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return fired,
        }
    }
}

async fn compare<St: Query + Clone>(name: &str, store: St) {
    let now = Arc::new(AtomicU64::new(NOW));
    let clock = Arc::clone(&now);
    let runner = Runner::<Holds, _>::new(store, ()).clock(move || clock.load(Ordering::SeqCst));
    let (mut sweeper_rates, mut hand_rates) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // Each side starts from the same number of due and not-due records.
        seed(&runner, round * 2).await;
        let start = Instant::now();
        let fired = by_hand(&runner).await;
        hand_rates.push(fired as f64 / start.elapsed().as_secs_f64());
        seed(&runner, round * 2 + 1).await;
        let start = Instant::now();
        let swept = Sweeper::new(runner.clone()).sweep().await.expect("sweeps");
        sweeper_rates.push(swept.fired as f64 / start.elapsed().as_secs_f64());
        assert_eq!(swept.fired, RECORDS / 2);
        assert_eq!(fired, RECORDS / 2);
    }
    let median = |mut rates: Vec<f64>| {
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    let (hand, swept) = (median(hand_rates), median(sweeper_rates));
    println!("{name:<10} by hand (list + filter + handle) {hand:>9.0} fired/s");
    println!("{name:<10} Sweeper (due index + fire)     {swept:>9.0} fired/s {:>6.2}x", swept / hand);
}

#[tokio::main]
async fn main() {
    compare("memory", Memory::new()).await;
    let path = std::env::temp_dir().join(format!("living-bench-{}.db", std::process::id()));
    let sqlite = Sqlite::open(&path).await.expect("opens SQLite");
    compare("sqlite", sqlite.clone()).await;
    sqlite.pool().close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    if let Ok(url) = std::env::var("DATABASE_URL") {
        let schema = format!("living_bench_{}", std::process::id());
        let postgres = Postgres::options().schema(&schema).connect(&url).await.expect("connects");
        compare("postgres", postgres.clone()).await;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(postgres.pool())
            .await
            .expect("drops");
    }
}
