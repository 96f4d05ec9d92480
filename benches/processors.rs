//! What a processor delivers, on each store:
//!
//! - **throughput**: `CHANGES` committed changes already in the feed, then
//!   a processor with a trivial handler (it counts) drains them, in batches
//!   of 100 and of 1,000: entries delivered per second, checkpoint saves
//!   included;
//! - **lag under load**: 8 writers commit for `LOAD` while the processor
//!   runs beside them (batch 100, polling every 10 ms); the lag
//!   (`Processor::lag`, changes behind the head) is sampled every 20 ms,
//!   and the writers' commits/s and the processor's deliveries/s are
//!   counted (each writer stops at 5,000 commits, which only the memory
//!   store reaches within the time).
//!
//! 3 rounds each, the median printed.
//!
//! `cargo bench -p machine-workspace --bench processors` (PostgreSQL rows
//! need `DATABASE_URL`).

#![allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]

use machine_core::prelude::*;
use machine_core::process::{Entry, Processor, Stepped};
use machine_core::store::{Checkpoints, Memory, Postgres, Retention, Sqlite};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const CHANGES: u64 = 10_000;
const ROUNDS: usize = 3;
const WRITERS: u64 = 8;
const LOAD: Duration = Duration::from_secs(3);
/// Commits each writer stops at, if `LOAD` has not passed first (only the
/// memory store gets there).
const LOAD_WRITES: u64 = 5_000;

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Tally {
    #[state(initial)]
    Zero,
    Counting {
        n: u64,
    },
}

#[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[command(state = Tally)]
enum TallyCommand {
    #[command(from(Zero, Counting), to(Counting))]
    Add { n: u64 },
}

struct Tallies;
impl Machine for Tallies {
    type State = Tally;
    type Command = TallyCommand;
    type Deps = ();
    type Error = std::convert::Infallible;
    const NAME: &'static str = "Tally";
    fn transition((): &(), TallyCommand::Add { n }: &TallyCommand, state: &Tally) -> Result<Tally, Self::Error> {
        Ok(match state {
            Tally::Zero => Tally::Counting { n: *n },
            Tally::Counting { n: total } => Tally::Counting { n: total + n },
        })
    }
}

/// The trivial handler: counts what it is given.
fn counting(count: &Arc<AtomicU64>) -> impl Fn(Entry<Tallies>) -> std::future::Ready<Result<(), String>> + use<> {
    let count = Arc::clone(count);
    move |_entry: Entry<Tallies>| {
        count.fetch_add(1, Ordering::Relaxed);
        std::future::ready(Ok(()))
    }
}

/// `CHANGES` changes over 8 writers, on records of round `round`.
async fn seed<St: Checkpoints + Clone>(runner: &Runner<Tallies, St>, round: String) {
    let tasks: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (runner, round) = (runner.clone(), round.clone());
            tokio::spawn(async move {
                for n in 0..CHANGES / WRITERS {
                    let id = format!("{round}-{writer}-{:03}", n % 200);
                    runner.handle(&id, &TallyCommand::Add { n }).await.expect("seeds");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("seeder");
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Entries/s a processor, caught up with the head, drains `CHANGES` new
/// changes with.
async fn throughput<St: Checkpoints + Clone>(runner: &Runner<Tallies, St>, batch: u32, label: &str) -> f64 {
    let name = format!("{label}-{batch}");
    let count = Arc::new(AtomicU64::new(0));
    let processor = Processor::new(&name, runner.clone(), counting(&count)).batch(batch);
    // Untimed: what earlier measurements wrote.
    while !matches!(processor.step().await.expect("steps"), Stepped::Idle) {}
    let mut rates = Vec::new();
    for round in 0..ROUNDS {
        count.store(0, Ordering::Relaxed);
        seed(runner, format!("{name}-{round}")).await;
        let start = Instant::now();
        while !matches!(processor.step().await.expect("steps"), Stepped::Idle) {}
        let elapsed = start.elapsed().as_secs_f64();
        assert_eq!(count.load(Ordering::Relaxed), CHANGES);
        rates.push(CHANGES as f64 / elapsed);
    }
    median(rates)
}

struct Load {
    writes: f64,
    delivered: f64,
    mean_lag: f64,
    max_lag: u64,
    drained: Duration,
}

/// 8 writers for `LOAD` beside a running processor; the lag sampled.
async fn under_load<St: Checkpoints + Clone>(runner: &Runner<Tallies, St>, label: &str) -> Load {
    let name = format!("{label}-load");
    let count = Arc::new(AtomicU64::new(0));
    let processor =
        Arc::new(Processor::new(&name, runner.clone(), counting(&count)).batch(100).every(Duration::from_millis(10)));
    while !matches!(processor.step().await.expect("steps"), Stepped::Idle) {}
    let mut rounds = Vec::new();
    for round in 0..ROUNDS {
        let name = format!("{name}-{round}");
        count.store(0, Ordering::Relaxed);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn({
            let processor = Arc::clone(&processor);
            async move {
                processor
                    .run(async {
                        let _ = stopped.await;
                    })
                    .await
            }
        });
        let writing = Arc::new(AtomicBool::new(true));
        let written = Arc::new(AtomicU64::new(0));
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let (runner, writing, written) = (runner.clone(), Arc::clone(&writing), Arc::clone(&written));
                let prefix = format!("{name}-{writer}");
                tokio::spawn(async move {
                    let mut n = 0_u64;
                    while writing.load(Ordering::Relaxed) && n < LOAD_WRITES {
                        let id = format!("{prefix}-{:03}", n % 200);
                        runner.handle(&id, &TallyCommand::Add { n }).await.expect("writes");
                        written.fetch_add(1, Ordering::Relaxed);
                        n += 1;
                    }
                })
            })
            .collect();
        let start = Instant::now();
        let mut lags = Vec::new();
        while start.elapsed() < LOAD && !writers.iter().all(tokio::task::JoinHandle::is_finished) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            lags.push(processor.lag().await.expect("lag"));
        }
        if lags.is_empty() {
            lags.push(processor.lag().await.expect("lag"));
        }
        writing.store(false, Ordering::Relaxed);
        for writer in writers {
            writer.await.expect("writer");
        }
        let elapsed = start.elapsed();
        let (committed, delivered_then) = (written.load(Ordering::Relaxed), count.load(Ordering::Relaxed));
        // How long the processor takes to catch up once the writers stop.
        let stopped_at = Instant::now();
        while count.load(Ordering::Relaxed) < committed {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let drained = stopped_at.elapsed();
        stop.send(()).expect("running");
        running.await.expect("processor");
        rounds.push(Load {
            writes: committed as f64 / elapsed.as_secs_f64(),
            delivered: delivered_then as f64 / elapsed.as_secs_f64(),
            mean_lag: lags.iter().sum::<u64>() as f64 / lags.len() as f64,
            max_lag: lags.iter().copied().max().unwrap_or(0),
            drained,
        });
    }
    // The round with the median mean lag.
    rounds.sort_by(|a, b| a.mean_lag.total_cmp(&b.mean_lag));
    rounds.swap_remove(rounds.len() / 2)
}

async fn measure<St: Checkpoints + Clone>(name: &str, store: St) {
    let runner = Runner::<Tallies, _>::new(store, ());
    for batch in [100, 1_000] {
        let rate = throughput(&runner, batch, name).await;
        println!("{name:<10} drain {CHANGES} changes, batch {batch:>5}: {rate:>9.0} entries/s");
    }
    let load = under_load(&runner, name).await;
    println!(
        "{name:<10} under load ({WRITERS} writers, {LOAD:?}): {:>7.0} commits/s, {:>7.0} delivered/s, \
         lag mean {:.0} max {} changes, caught up {:.0?} after the writers stopped",
        load.writes, load.delivered, load.mean_lag, load.max_lag, load.drained
    );
}

#[tokio::main]
async fn main() {
    // The whole feed kept: a processor behind by more than the default
    // window (100,000 changes) would be told the feed was compacted.
    measure("memory", Memory::with_retention(Retention::all())).await;
    let path = std::env::temp_dir().join(format!("processors-bench-{}.db", std::process::id()));
    let sqlite = Sqlite::open(&path).await.expect("opens SQLite");
    measure("sqlite", sqlite.clone()).await;
    sqlite.pool().close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    if let Ok(url) = std::env::var("DATABASE_URL") {
        let schema = format!("processors_bench_{}", std::process::id());
        let postgres = Postgres::options().schema(&schema).connect(&url).await.expect("connects");
        measure("postgres", postgres.clone()).await;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(postgres.pool())
            .await
            .expect("drops");
    }
}
