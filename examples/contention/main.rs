//! The contention harness: W writers (1, 4, 16, 32, 64) on K hot records (1
//! and 16) for each retry policy, on the memory store, printing goodput
//! (commits/s), conflicts per commit, p50/p99 latency of saved commands, and
//! calls that gave up. The figures in `docs/retry-patterns.md` come from it.
//!
//! ```sh
//! cargo run --release -p machine-workspace --example contention                      # tables on stdout
//! cargo run --release -p machine-workspace --example contention -- --svg docs/img    # and the plots
//! cargo run --release -p machine-workspace --example contention -- --ms 100 --quick  # a fast look
//! cargo run --release -p machine-workspace --example contention -- --store memory+1ms # one store
//! ```
//!
//! Two stores: `memory` as is, where a load and a commit never suspend the
//! task (a command takes about a microsecond), so writers only collide through
//! the two worker threads; and `memory+1ms`, the memory store with a
//! database-like round trip of about 1 ms before each commit lands, so every
//! writer that loaded a version races the others for it, and backoff waits
//! are on the scale of a command. PostgreSQL rows come when the PostgreSQL
//! store lands (on another branch).

// Counts and microseconds stay far below 2^52, so f64 conversions are exact.
#![allow(clippy::cast_precision_loss)]

mod svg;

use machine_core::prelude::*;
use machine_core::retry::{Budget, CircuitBreaker};
use machine_core::store::{Change, Commit, Memory, Record, Store};
use machine_core::{Jitter, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Stock {
    #[state(initial)]
    Empty,
    Held(u64),
}

#[derive(Command, Clone, Debug, Serialize, Deserialize)]
#[command(state = Stock)]
enum Take {
    #[command(from(Empty, Held), to(Held))]
    One,
}

struct Stocks;

impl Machine for Stocks {
    type State = Stock;
    type Command = Take;
    type Deps = ();
    type Error = std::convert::Infallible;

    fn transition((): &(), _: &Take, state: &Stock) -> Result<Stock, Self::Error> {
        Ok(Stock::Held(match state {
            Stock::Empty => 1,
            Stock::Held(n) => n + 1,
        }))
    }
}

/// The memory store behind a database-like round trip: a load suspends once,
/// a commit travels for about 1 ms (tokio's timer granularity) before it lands.
#[derive(Clone, Default)]
struct RoundTrip(Memory);

impl Store for RoundTrip {
    async fn load(&self, machine: &str, id: &str) -> Result<Option<Record>, StoreError> {
        tokio::task::yield_now().await;
        self.0.load(machine, id).await
    }
    async fn commit(&self, commit: Commit<'_>) -> Result<(), StoreError> {
        tokio::time::sleep(MS).await;
        self.0.commit(commit).await
    }
    async fn history(&self, machine: &str, id: &str) -> Result<Vec<Change>, StoreError> {
        self.0.history(machine, id).await
    }
}

const MS: Duration = Duration::from_millis(1);

/// Every policy measured, by the name the docs use.
fn policies() -> Vec<(&'static str, Retry)> {
    let exp = || Retry::exponential(MS).max_delay(100 * MS).max_attempts(10);
    vec![
        ("none", Retry::none()),
        ("fixed 0 x10 (FactCast)", Retry::fixed(Duration::ZERO)),
        ("fixed 1ms x10", Retry::fixed(MS)),
        ("exponential x10", exp()),
        ("exp + full jitter x10", exp().jitter(Jitter::Full)),
        ("exp + equal jitter x10", exp().jitter(Jitter::Equal)),
        ("exp + decorrelated x10", exp().jitter(Jitter::Decorrelated)),
        ("adaptive + full x10", Retry::adaptive(MS).max_delay(100 * MS).jitter(Jitter::Full)),
        ("full x10 + budget 20%", exp().jitter(Jitter::Full).budget(Budget::new(20))),
        ("full x10 + breaker", exp().jitter(Jitter::Full).circuit_breaker(CircuitBreaker::new(5, 100 * MS))),
        // Candidates for the runner's default: 25+ attempts so 32 writers on
        // one record do not give up.
        ("exp + full x25", exp().jitter(Jitter::Full).max_attempts(25)),
        ("decorrelated x25", exp().jitter(Jitter::Decorrelated).max_attempts(25)),
        ("full, cap 20ms x50", exp().max_delay(20 * MS).jitter(Jitter::Full).max_attempts(50)),
        ("adaptive + full x25", Retry::adaptive(MS).max_delay(100 * MS).jitter(Jitter::Full).max_attempts(25)),
        // The runner's default (exponential 1 ms, cap 100 ms, equal jitter,
        // 100 attempts); docs/retry-contention.md predates the move from 25
        // attempts and labels it `default (exp+equal x25)`.
        ("default (exp+equal x100)", Retry::default()),
    ]
}

/// One measured cell.
#[derive(Debug, Clone)]
struct Cell {
    policy: &'static str,
    writers: usize,
    records: usize,
    goodput: f64,
    conflicts_per_commit: f64,
    p50: Duration,
    p99: Duration,
    exhausted: u64,
    refused: u64,
}

struct Args {
    window: Duration,
    stores: Vec<&'static str>,
    svg: Option<String>,
    writers: Vec<usize>,
}

fn args() -> Args {
    let mut args = Args {
        window: Duration::from_millis(400),
        stores: vec!["memory", "memory+1ms"],
        svg: None,
        writers: vec![1, 4, 16, 32, 64],
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--ms" => args.window = Duration::from_millis(it.next().and_then(|v| v.parse().ok()).unwrap_or(400)),
            "--svg" => args.svg = it.next(),
            "--store" => {
                let wanted = it.next().unwrap_or_default();
                args.stores.retain(|store| *store == wanted);
            }
            "--quick" => args.writers = vec![1, 16, 64],
            _ => {} // `cargo bench`-style flags are ignored
        }
    }
    args
}

fn main() {
    let args = args();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    println!("# Contention harness output\n");
    println!(
        "`cargo run --release -p machine-workspace --example contention`: commits/s of saved commands, conflicts per saved"
    );
    println!("command, p50/p99 latency of saved commands, calls that gave up (any typed give-up) and calls");
    println!("a circuit breaker refused, for W writers taking turns over K records, on a 2-worker runtime.");
    for &store in &args.stores {
        let mut cells = Vec::new();
        for records in [1, 16] {
            println!("\n### {store} store, {records} hot record(s), {} ms per cell\n", args.window.as_millis());
            println!("| policy | writers | commits/s | conflicts/commit | p50 | p99 | gave up | refused |");
            println!("|---|---:|---:|---:|---:|---:|---:|---:|");
            for index in 0..policies().len() {
                for &writers in &args.writers {
                    // A fresh policy per cell: budgets and breakers must not
                    // carry state from one cell into the next.
                    let (policy, retry) = policies().swap_remove(index);
                    let cell = runtime.block_on(measure(store, policy, retry, writers, records, args.window));
                    println!(
                        "| {} | {} | {:.0} | {:.2} | {} | {} | {} | {} |",
                        cell.policy,
                        cell.writers,
                        cell.goodput,
                        cell.conflicts_per_commit,
                        micros(cell.p50),
                        micros(cell.p99),
                        cell.exhausted,
                        cell.refused
                    );
                    cells.push(cell);
                }
            }
        }
        if let Some(dir) = &args.svg {
            let path = format!("{dir}/retry-goodput-{}.svg", store.replace('+', "-"));
            let panels: Vec<svg::Panel> = [1, 16]
                .into_iter()
                .map(|records| svg::Panel {
                    title: format!("{store} store, {records} hot record{}", if records == 1 { "" } else { "s" }),
                    series: policies()
                        .iter()
                        .map(|(policy, _)| svg::Series {
                            name: (*policy).to_owned(),
                            points: cells
                                .iter()
                                .filter(|c| c.records == records && c.policy == *policy)
                                .map(|c| (c.writers as f64, c.goodput))
                                .collect(),
                        })
                        .collect(),
                })
                .collect();
            std::fs::write(&path, svg::plot(&panels)).expect("write the plot");
            eprintln!("wrote {path}");
        }
    }
}

fn micros(duration: Duration) -> String {
    if duration >= Duration::from_millis(10) {
        format!("{:.0} ms", duration.as_secs_f64() * 1e3)
    } else if duration >= MS {
        format!("{:.1} ms", duration.as_secs_f64() * 1e3)
    } else {
        format!("{} µs", duration.as_micros())
    }
}

async fn measure(
    store: &str,
    policy: &'static str,
    retry: Retry,
    writers: usize,
    records: usize,
    window: Duration,
) -> Cell {
    let conflicts = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&conflicts);
    let retry = retry.on_conflict(move |_, _| {
        counted.fetch_add(1, Ordering::Relaxed);
    });
    let (commits, latencies, exhausted, refused, elapsed) = if store == "memory" {
        run(Runner::<Stocks, _>::new(Memory::new(), ()).retry(retry), writers, records, window).await
    } else {
        run(Runner::<Stocks, _>::new(RoundTrip::default(), ()).retry(retry), writers, records, window).await
    };
    let mut latencies = latencies;
    latencies.sort_unstable();
    let pick = |per_mille: usize| {
        let at = (latencies.len() * per_mille / 1_000).min(latencies.len().saturating_sub(1));
        latencies.get(at).copied().unwrap_or_default()
    };
    Cell {
        policy,
        writers,
        records,
        goodput: commits as f64 / elapsed.as_secs_f64(),
        conflicts_per_commit: conflicts.load(Ordering::Relaxed) as f64 / commits.max(1) as f64,
        p50: pick(500),
        p99: pick(990),
        exhausted,
        refused,
    }
}

/// Runs `writers` tasks for `window`, each sending commands to records in
/// turn; returns commits, latencies of saved commands, gave-up and refused
/// counts, and the wall time.
async fn run<St: Store>(
    runner: Runner<Stocks, St>,
    writers: usize,
    records: usize,
    window: Duration,
) -> (u64, Vec<Duration>, u64, u64, Duration) {
    let ids: Arc<Vec<String>> = Arc::new((0..records).map(|r| format!("sku-{r}")).collect());
    let start = Instant::now();
    let end = start + window;
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let (runner, ids) = (runner.clone(), Arc::clone(&ids));
            tokio::spawn(async move {
                let (mut commits, mut latencies, mut exhausted, mut refused) = (0, Vec::new(), 0, 0);
                let mut turn = writer;
                while Instant::now() < end {
                    let began = Instant::now();
                    match runner.handle(&ids[turn % ids.len()], &Take::One).await {
                        Ok(_) => {
                            commits += 1;
                            latencies.push(began.elapsed());
                        }
                        Err(Error::CircuitOpen { retry_after, .. }) => {
                            refused += 1;
                            // A caller that was refused backs off as told.
                            tokio::time::sleep(retry_after.min(end.saturating_duration_since(Instant::now()))).await;
                        }
                        Err(_) => exhausted += 1,
                    }
                    turn += 1;
                }
                (commits, latencies, exhausted, refused)
            })
        })
        .collect();
    let (mut commits, mut latencies, mut exhausted, mut refused) = (0, Vec::new(), 0, 0);
    for task in tasks {
        let (c, l, e, r) = task.await.expect("writer task");
        commits += c;
        latencies.extend(l);
        exhausted += e;
        refused += r;
    }
    (commits, latencies, exhausted, refused, start.elapsed())
}
